//! The operator's admin API, authenticated with the admin token:
//! users, balances, ledgers, usage and keys (rate limits included).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use store::{KeyUpdate, NewUser, UserUpdate};

use super::body::parse_json;
use super::respond;
use super::usage::{usage_page, UsageQuery};
use crate::accounts::{
    change_balance as change_user_balance, create_key, create_user, key_json, update_key,
    update_user, user_json, KeyOptions,
};
use crate::api::caller::authenticate_admin;
use crate::error::ApiError;
use crate::limits::fields as limit_fields;
use crate::money::{parse_amount, Unit};
use crate::state::App;
use crate::time::parse_timestamp;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/users", post(create).get(list))
        .route("/admin/users/{id}", get(show).patch(update))
        .route("/admin/users/{id}/balance", post(change_balance))
        .route("/admin/users/{id}/ledger", get(ledger))
        .route("/admin/users/{id}/usage", get(usage))
        .route("/admin/users/{id}/keys", get(keys).post(new_key))
        .route("/admin/keys/{id}", patch(change_key))
}

/// A field given, `null` included (`Some(Value::Null)`: a limit removed),
/// told apart from one absent (`None`: left as it is).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The rate-limit fields of a request body, by name.
macro_rules! limit_field {
    ($req:expr) => {
        |name: &str| match name {
            "rpm" => $req.rpm.as_ref(),
            "tpm" => $req.tpm.as_ref(),
            "concurrency" => $req.concurrency.as_ref(),
            _ => None,
        }
    };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    membership_expires_at: Option<String>,
    #[serde(default)]
    rpm: Option<Value>,
    #[serde(default)]
    tpm: Option<Value>,
    #[serde(default)]
    concurrency: Option<Value>,
}

fn parse_time_field(name: &str, value: &str) -> Result<Option<i64>, ApiError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    parse_timestamp(value)
        .map(Some)
        .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is not a valid time.")))
}

async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let req: CreateUser = parse_json(&body)?;
            let new = NewUser {
                name: req.name.trim().to_string(),
                group_name: req.group.unwrap_or_else(|| "default".into()),
                tier: req.tier.unwrap_or_else(|| "free".into()),
                membership_expires_at: match &req.membership_expires_at {
                    Some(t) => parse_time_field("membership_expires_at", t)?,
                    None => None,
                },
                limits: limit_fields::new_limits(limit_field!(req))?,
            };
            let (user, key, secret) = create_user(&app.store, &app.config, &new).await?;
            Ok(Json(json!({
                "user": user_json(&user, &app.config),
                "key": secret,
                "key_id": key.id,
            })))
        }
        .await,
    )
}

async fn list(State(app): State<App>, headers: HeaderMap) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let users = app.store.list_users().await?;
            let data: Vec<Value> = users.iter().map(|u| user_json(u, &app.config)).collect();
            Ok(Json(json!({"object": "list", "data": data})))
        }
        .await,
    )
}

async fn show(State(app): State<App>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let user = app.store.get_user(id).await?;
            Ok(Json(user_json(&user, &app.config)))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    /// A time, or `""` / `null` to clear.
    #[serde(default, with = "double_option")]
    membership_expires_at: Option<Option<String>>,
    /// Each a number to set, `null` to remove, absent to leave.
    #[serde(default, deserialize_with = "present")]
    rpm: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    tpm: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    concurrency: Option<Value>,
}

/// Tells a missing field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

async fn update(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let req: UpdateUser = parse_json(&body)?;
            let expiry = match req.membership_expires_at {
                None => None,
                Some(None) => Some(None),
                Some(Some(t)) => Some(parse_time_field("membership_expires_at", &t)?),
            };
            let update = UserUpdate {
                group_name: req.group,
                tier: req.tier,
                membership_expires_at: expiry,
                limits: limit_fields::update(limit_field!(req))?,
            };
            let user = update_user(&app.store, id, &update).await?;
            // Requests authenticated from now on see the new limits.
            app.auth_cache.clear();
            Ok(Json(user_json(&user, &app.config)))
        }
        .await,
    )
}

/// A credit (positive) or debit (negative `amount_*`, or `"debit": true`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBalance {
    #[serde(default)]
    amount_usd: Option<String>,
    #[serde(default)]
    amount_credits: Option<String>,
    #[serde(default)]
    debit: bool,
    #[serde(default)]
    free: bool,
    reason: String,
}

async fn change_balance(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let req: ChangeBalance = parse_json(&body)?;
            let cpu = app.config.credits_per_usd;
            let amount = match (&req.amount_usd, &req.amount_credits) {
                (Some(usd), None) => parse_amount("amount_usd", usd, Unit::Usd, true),
                (None, Some(credits)) => {
                    parse_amount("amount_credits", credits, Unit::Credits(cpu), true)
                }
                _ => {
                    return Err(ApiError::BadRequest(
                        "Give exactly one of `amount_usd` or `amount_credits`.".into(),
                    ))
                }
            }
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let amount = if req.debit { -amount.abs() } else { amount };
            let user = change_user_balance(&app.store, id, amount, req.free, &req.reason).await?;
            // New requests must see the new balance at once.
            app.auth_cache.clear();
            app.billing.ledger.forget_user(id);
            Ok(Json(user_json(&user, &app.config)))
        }
        .await,
    )
}

#[derive(Deserialize)]
struct LedgerQuery {
    limit: Option<i64>,
}

async fn ledger(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<LedgerQuery>,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let entries = app
                .store
                .ledger(id, q.limit.unwrap_or(100).clamp(1, 1000))
                .await?;
            Ok(Json(json!({"object": "list", "data": entries})))
        }
        .await,
    )
}

async fn usage(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Query(q): Query<UsageQuery>,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let filter = q.to_filter(id)?;
            Ok(Json(usage_page(&app.store, &app.config, &filter).await?))
        }
        .await,
    )
}

async fn keys(State(app): State<App>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let keys = app.store.list_keys(id).await?;
            let data: Vec<Value> = keys.iter().map(|k| key_json(k, &app.config)).collect();
            Ok(Json(json!({"object": "list", "data": data})))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewKeyRequest {
    #[serde(default)]
    remark: String,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    max_fee_credits: Option<String>,
    #[serde(default)]
    rpm: Option<Value>,
    #[serde(default)]
    tpm: Option<Value>,
    #[serde(default)]
    concurrency: Option<Value>,
}

/// A key's spending limit given in credits, in nano-USD.
fn max_fee_nano(app: &App, credits: Option<&str>) -> Result<Option<i64>, ApiError> {
    credits
        .map(|c| {
            parse_amount(
                "max_fee_credits",
                c,
                Unit::Credits(app.config.credits_per_usd),
                false,
            )
            .map_err(|e| ApiError::BadRequest(e.to_string()))
        })
        .transpose()
}

/// The operator may create admin-capable keys (users may not).
async fn new_key(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let req: NewKeyRequest = if body.is_empty() {
                NewKeyRequest::default()
            } else {
                parse_json(&body)?
            };
            let max_fee = max_fee_nano(&app, req.max_fee_credits.as_deref())?.unwrap_or(0);
            let options = KeyOptions {
                remark: req.remark,
                is_admin: req.is_admin,
                permissions: req.permissions,
                max_fee,
                expired_at: None,
                limits: limit_fields::new_limits(limit_field!(req))?,
            };
            let (key, secret) = create_key(&app.store, &app.config, id, options).await?;
            Ok(Json(
                json!({"key": secret, "info": key_json(&key, &app.config)}),
            ))
        }
        .await,
    )
}

/// `PATCH /admin/keys/{id}`: the fields given change, the others stay.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKeyRequest {
    #[serde(default)]
    remark: Option<String>,
    #[serde(default)]
    is_disabled: Option<bool>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    /// Credits; `"0"` for no spending limit.
    #[serde(default)]
    max_fee_credits: Option<String>,
    /// Each a number to set, `null` to remove, absent to leave.
    #[serde(default, deserialize_with = "present")]
    rpm: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    tpm: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    concurrency: Option<Value>,
}

async fn change_key(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let req: UpdateKeyRequest = parse_json(&body)?;
            let max_fee = max_fee_nano(&app, req.max_fee_credits.as_deref())?;
            let update = KeyUpdate {
                remark: req.remark.clone(),
                expired_at: None,
                max_fee,
                permissions: req.permissions.clone(),
                is_disabled: req.is_disabled,
                limits: limit_fields::update(limit_field!(req))?,
            };
            let key = update_key(&app.store, &id, &update).await?;
            // Neither the key's cached principal (its limits, its state) nor
            // its spending figures may outlive the change.
            app.auth_cache.clear();
            app.billing.ledger.forget_key(&key.id);
            Ok(Json(key_json(&key, &app.config)))
        }
        .await,
    )
}
