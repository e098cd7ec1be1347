//! OAuth apps over HTTP: the code exchange, the open API an app calls with
//! an OAuth token, the owner's app management and the operator's.
//!
//! OhMyGPT documents `GET /next/v1/oauth` (the authorize page),
//! `/next/v1/oauth/succeed` (the code display page),
//! `POST /api/v1/user/oauth/issue-token` and
//! `POST /api/v1/user/oauth/app/query-user-basic-info`; OpenRouter
//! documents `POST /api/v1/auth/keys`. The other paths are Tollgate's own,
//! all in [`routes`] and in the README. Answers use OhMyGPT's envelope.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use store::{ChargeOutcome, OAuthApp};

use super::body::{field_list, field_str, parse_fields, parse_json};
use super::ohmygpt::{admin_principal, envelope};
use super::payments::payments;
use super::respond;
use crate::api::caller::authenticate_admin;
use crate::error::ApiError;
use crate::money::{format_credits, format_usd};
use crate::oauth::{self, oauth_error, AppFields, ChargeRequest, Exchange, Scope};
use crate::payments::{order_json, Method};
use crate::state::App;
use crate::time::format_ms;

/// OhMyGPT's authorize page, and the conventional path; both lead to the
/// console's consent page (where the session cookie is sent).
pub const AUTHORIZE_PAGES: [&str; 2] = ["/next/v1/oauth", "/oauth/authorize"];
pub const CONSENT_PAGE: &str = "/console/oauth/authorize";
/// Where the code is shown to a user whose app has no callback.
pub const SUCCEED_PAGE: &str = "/next/v1/oauth/succeed";
pub const ISSUE_TOKEN: &str = "/api/v1/user/oauth/issue-token";
/// OpenRouter's keyless PKCE exchange: a code for a plain API key.
pub const AUTH_KEYS: &str = "/api/v1/auth/keys";
/// The open API, called with an OAuth token.
const OPEN: &str = "/api/v1/user/oauth/app";
/// A user's own apps, managed with an admin-capable key.
const APPS: &str = "/api/v1/user/oauth/apps";

pub fn routes() -> Router<App> {
    let mut router = Router::new()
        .route(ISSUE_TOKEN, post(issue_token))
        .route(AUTH_KEYS, post(auth_keys))
        .route(&format!("{OPEN}/query-user-basic-info"), post(user_info))
        .route(&format!("{OPEN}/query-user-balance"), post(balance))
        .route(&format!("{OPEN}/charge-user-fees"), post(charge))
        .route(
            &format!("{OPEN}/create-stripe-checkout-order"),
            post(|s: State<App>, h: HeaderMap, b: Bytes| recharge(s, h, b, Method::Checkout)),
        )
        .route(
            &format!("{OPEN}/create-stripe-invoice-order"),
            post(|s: State<App>, h: HeaderMap, b: Bytes| recharge(s, h, b, Method::Invoice)),
        )
        .route(
            &format!("{OPEN}/query-management-key"),
            post(management_key),
        )
        .route(
            &format!("{OPEN}/rotate-management-key"),
            post(rotate_management_key),
        )
        .route(&format!("{OPEN}/revoke-token"), post(revoke_token))
        .route(&format!("{APPS}/create"), post(create_app))
        .route(&format!("{APPS}/list"), post(list_apps))
        .route(&format!("{APPS}/update"), post(update_app))
        .route(&format!("{APPS}/rotate-secret"), post(rotate_secret))
        .route(&format!("{APPS}/delete"), post(delete_app))
        .route(&format!("{APPS}/earnings"), post(earnings))
        .route("/admin/oauth/apps", get(admin_list))
        .route("/admin/oauth/apps/{client_id}/suspend", post(admin_suspend));
    for page in AUTHORIZE_PAGES {
        router = router.route(page, get(to_consent));
    }
    router
}

/// The authorize page is the console's consent page, query and all.
async fn to_consent(RawQuery(query): RawQuery) -> Redirect {
    match query {
        Some(q) => Redirect::to(&format!("{CONSENT_PAGE}?{q}")),
        None => Redirect::to(CONSENT_PAGE),
    }
}

fn exchange_of(headers: &HeaderMap, body: &[u8]) -> Result<Exchange, ApiError> {
    let fields = parse_fields(headers, body)?;
    let text = |name: &str| field_str(&fields, name);
    Ok(Exchange {
        client_id: text("client_id"),
        client_secret: text("client_secret"),
        code_verifier: text("code_verifier"),
        code_challenge_method: text("code_challenge_method"),
        redirect_uri: text("redirect_uri"),
        code: text("code"),
    })
}

async fn issue_token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let request = exchange_of(&headers, &body)?;
            let issued = oauth::issue_token(&app, &request).await?;
            Ok((
                "Issue OAuth Token success".to_string(),
                json!({
                    "user_id": issued.user_id.to_string(),
                    "client_id": issued.client_id,
                    "token": issued.token,
                }),
            ))
        }
        .await,
    )
}

/// OpenRouter's shape: `{"key", "user_id"}`, errors `{"error": {"code",
/// "message"}}`.
async fn auth_keys(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let request = exchange_of(&headers, &body)?;
        oauth::issue_key(&app, &request).await
    }
    .await;
    match result {
        Ok(issued) => Json(json!({
            "key": issued.secret,
            "user_id": issued.user_id.to_string(),
            "app": issued.app_name,
        }))
        .into_response(),
        Err(e) => {
            let status = e.status();
            let body = json!({"error": {"code": status.as_u16(), "message": e.to_string()}});
            (status, Json(body)).into_response()
        }
    }
}

async fn user_info(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let caller = oauth::token_caller(&app, &headers, Scope::UserInfo).await?;
            let email = app.store.email_of(caller.user.id).await?;
            Ok((
                "Query user basic info success".to_string(),
                json!({
                    "userId": caller.user.id.to_string(),
                    "userEmail": email,
                    "userName": caller.user.name,
                }),
            ))
        }
        .await,
    )
}

async fn balance(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let caller = oauth::token_caller(&app, &headers, Scope::Balance).await?;
            let user = &caller.user;
            let cpu = app.config.credits_per_usd;
            Ok((
                "Query user balance success".to_string(),
                json!({
                    "balance": format_credits(user.balance, cpu),
                    "free_balance": format_credits(user.free_balance, cpu),
                    "balance_usd": format_usd(user.balance + user.free_balance),
                }),
            ))
        }
        .await,
    )
}

fn charge_json(app: &App, charge: &store::Charge, replayed: bool) -> Value {
    let cpu = app.config.credits_per_usd;
    json!({
        "charge_id": charge.id.to_string(),
        "user_id": charge.user_id.to_string(),
        "amount": format_credits(charge.amount, cpu),
        "amount_usd": format_usd(charge.amount),
        "platform_fee": format_credits(charge.fee, cpu),
        "idempotency_key": charge.idempotency_key,
        "description": charge.description,
        "created_at": format_ms(charge.created_at),
        "replayed": replayed,
    })
}

/// Charges the user `amount` credits, once per `idempotency_key` (the
/// field, or the `Idempotency-Key` header), with a `description`.
async fn charge(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let caller = oauth::token_caller(&app, &headers, Scope::Charge).await?;
            let fields = parse_fields(&headers, &body)?;
            let amount_text = field_str(&fields, "amount")
                .ok_or_else(|| oauth_error(400, "invalid_request", "amount is required."))?;
            let amount = oauth::credits(&app, "amount", &amount_text)?;
            let idempotency_key = field_str(&fields, "idempotency_key")
                .or_else(|| {
                    headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let request = ChargeRequest {
                amount,
                idempotency_key,
                description: field_str(&fields, "description").unwrap_or_default(),
            };
            let cpu = app.config.credits_per_usd;
            match oauth::charge(&app, &caller, &request).await? {
                ChargeOutcome::Charged {
                    charge,
                    balance_after,
                } => {
                    let mut data = charge_json(&app, &charge, false);
                    data["balance"] = json!(format_credits(balance_after, cpu));
                    Ok(("Charge user fees success".to_string(), data))
                }
                ChargeOutcome::Replayed(charge) => Ok((
                    "Charge user fees success (already charged with this idempotency key)"
                        .to_string(),
                    charge_json(&app, &charge, true),
                )),
                ChargeOutcome::OverLimit {
                    per_charge,
                    left_today,
                } => Err(oauth_error(
                    403,
                    "oauth_limit_exceeded_error",
                    if per_charge {
                        format!(
                            "The amount exceeds the {} credits per charge the user approved.",
                            format_credits(caller.grant.charge_limit, cpu)
                        )
                    } else {
                        format!(
                            "The amount exceeds what is left of the daily limit the user approved ({} credits left today).",
                            format_credits(left_today, cpu)
                        )
                    },
                )),
                ChargeOutcome::Insufficient => Err(oauth_error(
                    402,
                    "insufficient_balance_error",
                    "User balance is insufficient, your request has been rejected; the user should recharge.",
                )),
                ChargeOutcome::KeyReused => Err(oauth_error(
                    409,
                    "idempotency_key_reused_error",
                    "This idempotency key was used for a charge of another amount.",
                )),
                ChargeOutcome::Revoked => Err(oauth::invalid_token()),
            }
        }
        .await,
    )
}

/// Opens a top-up order for the user (`amount` in the payment currency);
/// the app sends the user to its `url` to pay.
async fn recharge(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
    method: Method,
) -> Response {
    envelope(
        async {
            let caller = oauth::token_caller(&app, &headers, Scope::Recharge).await?;
            let payments = payments(&app)?;
            let fields = parse_fields(&headers, &body)?;
            let amount = field_str(&fields, "amount")
                .ok_or_else(|| oauth_error(400, "invalid_request", "amount is required."))?;
            let order = payments
                .open_order(&app.store, caller.user.id, method, &amount)
                .await?;
            let mut data = order_json(&order, &app.config);
            data["url"] = json!(order.pay_url);
            Ok(("Create recharge order success".to_string(), data))
        }
        .await,
    )
}

fn management_key_json(key: &store::ApiKey) -> Value {
    json!({
        "id": key.id,
        "key": key.masked(),
        "created_at": format_ms(key.created_at),
        "used_at": key.used_at.map(format_ms),
    })
}

/// The user's management key as stored: its id and masked form (a key is
/// shown in full only once, when made; rotate to get a new one).
async fn management_key(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let caller = oauth::token_caller(&app, &headers, Scope::ManagementKey).await?;
            let key = app
                .store
                .management_key(caller.user.id)
                .await?
                .ok_or_else(|| ApiError::NotFound("Management key".into()))?;
            Ok((
                "Query management key success".to_string(),
                management_key_json(&key),
            ))
        }
        .await,
    )
}

async fn rotate_management_key(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let caller = oauth::token_caller(&app, &headers, Scope::ManagementKey).await?;
            let (key, secret) = oauth::rotate_management_key(&app, caller.user.id).await?;
            let mut data = management_key_json(&key);
            data["key"] = json!(secret);
            Ok(("Rotate management key success".to_string(), data))
        }
        .await,
    )
}

/// The app gives up its token (any scope may).
async fn revoke_token(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let token = crate::auth::presented_secret(&headers).unwrap_or_default();
            let hash = crate::secrets::hash_secret(token);
            let (grant, _) = app
                .store
                .grant_by_token(&hash)
                .await?
                .ok_or_else(oauth::invalid_token)?;
            oauth::revoke(&app, &grant.id, grant.user_id).await?;
            Ok(("Revoke OAuth token success".to_string(), Value::Null))
        }
        .await,
    )
}

pub fn app_json(registered: &OAuthApp) -> Value {
    json!({
        "client_id": registered.client_id,
        "name": registered.name,
        "homepage": registered.homepage,
        "redirect_uris": registered.redirect_uris,
        "scopes": registered.scopes,
        "owner_id": registered.owner_id.to_string(),
        "suspended": registered.is_suspended,
        "created_at": format_ms(registered.created_at),
        "updated_at": format_ms(registered.updated_at),
    })
}

fn app_fields(fields: &Map<String, Value>) -> Result<AppFields, ApiError> {
    Ok(AppFields {
        name: field_str(fields, "name"),
        homepage: field_str(fields, "homepage"),
        redirect_uris: field_list(fields, "redirect_uris")?,
        scopes: field_list(fields, "scopes")?,
    })
}

fn client_id_of(fields: &Map<String, Value>) -> Result<String, ApiError> {
    field_str(fields, "client_id")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("`client_id` is required.".into()))
}

async fn create_app(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let owner = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let (registered, secret) =
                oauth::register(&app, owner.user.id, &app_fields(&fields)?).await?;
            let mut data = app_json(&registered);
            data["client_secret"] = json!(secret);
            Ok(("Create OAuth app success".to_string(), data))
        }
        .await,
    )
}

async fn list_apps(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let owner = admin_principal(&app, &headers).await?;
            let apps = app.store.list_apps(Some(owner.user.id)).await?;
            let data: Vec<Value> = apps.iter().map(app_json).collect();
            Ok(("List OAuth apps success".to_string(), json!(data)))
        }
        .await,
    )
}

async fn update_app(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let owner = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let client_id = client_id_of(&fields)?;
            let updated =
                oauth::update(&app, owner.user.id, &client_id, &app_fields(&fields)?).await?;
            Ok(("Update OAuth app success".to_string(), app_json(&updated)))
        }
        .await,
    )
}

async fn rotate_secret(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let owner = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let client_id = client_id_of(&fields)?;
            let (updated, secret) = oauth::rotate_secret(&app, owner.user.id, &client_id).await?;
            let mut data = app_json(&updated);
            data["client_secret"] = json!(secret);
            Ok(("Rotate OAuth app secret success".to_string(), data))
        }
        .await,
    )
}

async fn delete_app(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let owner = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let client_id = client_id_of(&fields)?;
            oauth::delete(&app, owner.user.id, &client_id).await?;
            Ok(("Delete OAuth app success".to_string(), Value::Null))
        }
        .await,
    )
}

pub fn earnings_json(app: &App, e: &store::Earnings) -> Value {
    let cpu = app.config.credits_per_usd;
    json!({
        "client_id": e.client_id,
        "name": e.app_name,
        "charges": e.charges,
        "users": e.users,
        "charged": format_credits(e.charged, cpu),
        "platform_fees": format_credits(e.fees, cpu),
        "earned": format_credits(e.earned, cpu),
        "earned_usd": format_usd(e.earned),
    })
}

async fn earnings(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let owner = admin_principal(&app, &headers).await?;
            let rows = app.store.earnings(owner.user.id).await?;
            let data: Vec<Value> = rows.iter().map(|e| earnings_json(&app, e)).collect();
            Ok(("Query OAuth app earnings success".to_string(), json!(data)))
        }
        .await,
    )
}

async fn admin_list(State(app): State<App>, headers: HeaderMap) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let apps = app.store.list_apps(None).await?;
            let data: Vec<Value> = apps.iter().map(app_json).collect();
            Ok(Json(json!({"object": "list", "data": data})))
        }
        .await,
    )
}

#[derive(serde::Deserialize)]
struct SuspendRequest {
    suspended: bool,
}

async fn admin_suspend(
    State(app): State<App>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let suspended = if body.iter().all(u8::is_ascii_whitespace) {
                true
            } else {
                parse_json::<SuspendRequest>(&body)?.suspended
            };
            let updated = oauth::suspend(&app, &client_id, suspended).await?;
            Ok((StatusCode::OK, Json(app_json(&updated))))
        }
        .await,
    )
}
