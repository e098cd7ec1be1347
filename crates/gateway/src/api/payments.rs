//! Top-ups over HTTP: a user's recharge orders (an admin-capable key, with
//! OhMyGPT's envelope), the processor's webhook, and the operator's orders,
//! daily totals, reconciliation and refunds (the admin token). All paths
//! are in [`routes`] and the README.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{Applied, OrderFilter, OrderState};

use super::body::{field_str, parse_fields};
use super::ohmygpt::{admin_principal, envelope};
use super::respond;
use crate::api::caller::authenticate_admin;
use crate::error::ApiError;
use crate::payments::{
    format_amount, format_minor, order_json, Method, Payments, MAX_RECONCILE_DAYS,
};
use crate::state::App;

/// The webhook endpoint to register at the processor.
pub const STRIPE_WEBHOOK: &str = "/api/v1/pay/stripe/webhook";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/pay/terms", get(terms))
        .route("/api/v1/pay/orders/create", post(create_order))
        .route("/api/v1/pay/orders/list", post(list_orders))
        .route("/api/v1/pay/orders/info", post(order_info))
        .route(STRIPE_WEBHOOK, post(stripe_webhook))
        .route("/admin/payments/orders", get(admin_orders))
        .route("/admin/payments/daily", get(admin_daily))
        .route("/admin/payments/reconcile", post(admin_reconcile))
        .route("/admin/payments/orders/{id}/refund", post(admin_refund))
}

pub(crate) fn payments(app: &App) -> Result<&Arc<Payments>, ApiError> {
    app.payments.as_ref().ok_or(ApiError::PaymentsOff)
}

/// What users may order: currency, limits, presets and bonus tiers.
pub fn terms_json(payments: &Payments) -> Value {
    let terms = payments.terms();
    let amount = |units: i64| format_amount(terms, units);
    json!({
        "provider": payments.provider_name(),
        "currency": terms.currency,
        "min_amount": amount(terms.min_amount),
        "max_amount": amount(terms.max_amount),
        "preset_amounts": terms.presets.iter().map(|p| amount(*p)).collect::<Vec<_>>(),
        "bonus": terms.bonus.iter().map(|(from, percent)| json!({
            "from": amount(*from), "percent": percent.to_string()
        })).collect::<Vec<_>>(),
        "methods": ["checkout", "invoice"],
    })
}

/// A `state` filter: absent or empty for all.
fn order_state(text: Option<&str>) -> Result<Option<OrderState>, ApiError> {
    match text.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => OrderState::parse(s).map(Some).ok_or_else(|| {
            ApiError::BadRequest(
                "`state` must be pending, paid, expired, failed or refunded.".into(),
            )
        }),
    }
}

async fn terms(State(app): State<App>) -> Response {
    envelope(payments(&app).map(|p| ("Top-up terms".to_string(), terms_json(p))))
}

async fn create_order(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let payments = payments(&app)?;
            let principal = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let amount = field_str(&fields, "amount")
                .ok_or_else(|| ApiError::BadRequest("`amount` is required.".into()))?;
            let method_text = field_str(&fields, "method").unwrap_or_default();
            let method = Method::parse(&method_text).ok_or_else(|| {
                ApiError::BadRequest("`method` must be `checkout` or `invoice`.".into())
            })?;
            let order = payments
                .open_order(&app.store, principal.user.id, method, &amount)
                .await?;
            let mut data = order_json(&order, &app.config);
            data["url"] = json!(order.pay_url);
            Ok(("Create recharge order success".to_string(), data))
        }
        .await,
    )
}

/// A page of the caller's orders, newest first: `limit` (≤ 100) and
/// `before_id` (the last id of the previous page).
async fn list_orders(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            payments(&app)?;
            let principal = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let number = |name: &str| -> Result<Option<i64>, ApiError> {
                field_str(&fields, name)
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.trim().parse::<i64>().map_err(|_| {
                            ApiError::BadRequest(format!("`{name}` must be an integer."))
                        })
                    })
                    .transpose()
            };
            let state = order_state(field_str(&fields, "state").as_deref())?;
            let orders = app
                .store
                .list_orders(&OrderFilter {
                    user_id: Some(principal.user.id),
                    state,
                    before_id: number("before_id")?,
                    limit: number("limit")?.unwrap_or(20).clamp(1, 100),
                })
                .await?;
            let data: Vec<Value> = orders.iter().map(|o| order_json(o, &app.config)).collect();
            Ok(("Query recharge orders success".to_string(), json!(data)))
        }
        .await,
    )
}

async fn order_info(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            payments(&app)?;
            let principal = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let id: i64 = field_str(&fields, "id")
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ApiError::BadRequest("`id` must be an order id.".into()))?;
            let order = app.store.get_order(id).await?;
            // Another user's order does not exist, as far as this key knows.
            if order.user_id != principal.user.id {
                return Err(ApiError::NotFound("Order".into()));
            }
            Ok((
                "Query recharge order success".to_string(),
                order_json(&order, &app.config),
            ))
        }
        .await,
    )
}

/// Stripe's deliveries: 2xx once applied (or known, or not about an
/// order), 400 when the signature or body is bad (nothing changes), 500
/// when the database failed (Stripe retries).
async fn stripe_webhook(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(payments) = app.payments.as_ref() else {
        return envelope(Err(ApiError::PaymentsOff));
    };
    match payments.handle_webhook(&app.store, &headers, &body).await {
        Err(refused) => {
            tracing::warn!(error = %refused, "a webhook delivery was refused");
            envelope(Err(ApiError::BadRequest(refused.to_string())))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a webhook could not be applied; Stripe will retry");
            envelope(Err(ApiError::Internal))
        }
        Ok(Ok(applied)) => {
            let outcome = match applied {
                Applied::Changed(_) => "applied",
                Applied::Unchanged(_) => "unchanged",
                Applied::Duplicate => "duplicate",
                Applied::NoOrder => "ignored",
            };
            (
                StatusCode::OK,
                Json(json!({"received": true, "outcome": outcome})),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminOrderQuery {
    #[serde(default)]
    user: Option<i64>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    before_id: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn admin_orders(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<AdminOrderQuery>,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            payments(&app)?;
            let state = order_state(query.state.as_deref())?;
            let orders = app
                .store
                .list_orders(&OrderFilter {
                    user_id: query.user,
                    state,
                    before_id: query.before_id,
                    limit: query.limit.unwrap_or(50).clamp(1, 500),
                })
                .await?;
            let data: Vec<Value> = orders.iter().map(|o| order_json(o, &app.config)).collect();
            Ok(Json(json!({"object": "list", "data": data})))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaysQuery {
    #[serde(default)]
    days: Option<u32>,
}

/// Paid orders per UTC day and currency: count, amount paid, credit given
/// and amount refunded since.
async fn admin_daily(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<DaysQuery>,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            payments(&app)?;
            let days = i64::from(query.days.unwrap_or(30).clamp(1, 3660));
            let since = (store::now_ms() / 86_400_000 - days + 1) * 86_400_000;
            let rows = app.store.paid_by_day(since).await?;
            let cpu = app.config.credits_per_usd;
            let data: Vec<Value> = rows
                .iter()
                .map(|d| {
                    json!({
                        "day": crate::time::format_day(d.day),
                        "currency": d.currency,
                        "orders": d.orders,
                        "amount": format_minor(&d.currency, d.amount),
                        "credit": crate::money::format_credits(d.credit, cpu),
                        "refunded_amount": format_minor(&d.currency, d.refunded_amount),
                    })
                })
                .collect();
            Ok(Json(json!({"object": "list", "data": data})))
        }
        .await,
    )
}

/// Applies what Stripe lists for the last `days` (default 3): see
/// [`Payments::reconcile`].
async fn admin_reconcile(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let payments = payments(&app)?;
            let fields = parse_fields(&headers, &body)?;
            let days = match field_str(&fields, "days").filter(|s| !s.trim().is_empty()) {
                None => 3,
                Some(s) => s
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=MAX_RECONCILE_DAYS).contains(d))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "`days` must be between 1 and {MAX_RECONCILE_DAYS}."
                        ))
                    })?,
            };
            Ok(Json(payments.reconcile(&app.store, days).await?))
        }
        .await,
    )
}

/// Refunds a paid order through Stripe: `amount` in the currency (all
/// that is left by default). The credit is taken back at once.
async fn admin_refund(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let payments = payments(&app)?;
            let fields = parse_fields(&headers, &body)?;
            let amount = field_str(&fields, "amount");
            let key = field_str(&fields, "idempotency_key");
            let order = payments
                .refund(&app.store, id, amount.as_deref(), key.as_deref())
                .await?;
            Ok(Json(order_json(&order, &app.config)))
        }
        .await,
    )
}
