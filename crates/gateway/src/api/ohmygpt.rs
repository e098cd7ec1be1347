//! OhMyGPT's user management API: key management with an admin-capable key,
//! balance, membership and model rates. Responses use OhMyGPT's envelope
//! `{"statusCode", "message", "data"}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use store::KeyUpdate;

use super::body::{field_bool, field_list, field_str, parse_fields};
use crate::accounts::{create_key, key_json, update_key as update_key_fields, KeyOptions};
use crate::api::caller::authenticate;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::fields as limit_fields;
use crate::money::{format_credits, parse_amount, Decimal, MeterUnit, Unit};
use crate::secrets::hash_secret;
use crate::state::App;
use crate::time::{format_ms, parse_timestamp};

pub(crate) fn envelope(result: Result<(String, Value), ApiError>) -> Response {
    match result {
        Ok((message, data)) => {
            Json(json!({"statusCode": 200, "message": message, "data": data})).into_response()
        }
        Err(e) => {
            let status = e.status();
            let error_type = e.openai_body().error.code.unwrap_or_else(|| "error".into());
            (
                status,
                Json(json!({
                    "statusCode": status.as_u16(),
                    "message": e.to_string(),
                    "errorType": error_type,
                    "data": Value::Null,
                })),
            )
                .into_response()
        }
    }
}

pub(crate) async fn admin_principal(
    app: &App,
    headers: &HeaderMap,
) -> Result<Arc<Principal>, ApiError> {
    let principal = authenticate(app, headers).await?;
    principal.require_admin_key()?;
    Ok(principal)
}

/// `max_fee` in credits (0 = unlimited) → nano-USD.
fn max_fee(app: &App, fields: &Map<String, Value>) -> Result<Option<i64>, ApiError> {
    match field_str(fields, "max_fee") {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(Some(0)),
        Some(s) => parse_amount(
            "max_fee",
            &s,
            Unit::Credits(app.config.credits_per_usd),
            false,
        )
        .map(Some)
        .map_err(|e| ApiError::BadRequest(e.to_string())),
    }
}

/// `expired_at`: empty or 0 means never; else a timestamp.
fn expired_at(fields: &Map<String, Value>) -> Result<Option<Option<i64>>, ApiError> {
    match field_str(fields, "expired_at") {
        None => Ok(None),
        Some(s) if s.trim().is_empty() || s.trim() == "0" => Ok(Some(None)),
        Some(s) => parse_timestamp(&s).map(|t| Some(Some(t))).ok_or_else(|| {
            ApiError::BadRequest(
                "`expired_at` must be an ISO 8601 date or time, or Unix seconds.".into(),
            )
        }),
    }
}

fn refuse_admin_grant(fields: &Map<String, Value>) -> Result<(), ApiError> {
    if field_bool(fields, "is_admin")? == Some(true) {
        return Err(ApiError::BadRequest(
            "Admin rights cannot be granted through the API.".into(),
        ));
    }
    Ok(())
}

pub async fn new_key(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let principal = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            refuse_admin_grant(&fields)?;
            let options = KeyOptions {
                remark: field_str(&fields, "remark").unwrap_or_default(),
                is_admin: false,
                permissions: field_list(&fields, "permissions")?.unwrap_or_default(),
                max_fee: max_fee(&app, &fields)?.unwrap_or(0),
                expired_at: expired_at(&fields)?.flatten(),
                // A key's own limits only restrict it further: its owner
                // may set them freely.
                limits: limit_fields::new_limits(|name| fields.get(name))?,
            };
            let (_, secret) =
                create_key(&app.store, &app.config, principal.user.id, options).await?;
            Ok(("Create API key success".to_string(), Value::String(secret)))
        }
        .await,
    )
}

/// The caller's key named by `key` (the full key or its id).
async fn named_key(
    app: &App,
    principal: &Principal,
    fields: &Map<String, Value>,
) -> Result<store::ApiKey, ApiError> {
    let named = field_str(fields, "key")
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("`key` is required (the key or its id).".into()))?;
    let named = named.trim();
    Ok(app
        .store
        .resolve_user_key(principal.user.id, named, &hash_secret(named))
        .await?)
}

pub async fn update_key(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let principal = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            refuse_admin_grant(&fields)?;
            let key = named_key(&app, &principal, &fields).await?;
            let update = KeyUpdate {
                remark: field_str(&fields, "remark"),
                expired_at: expired_at(&fields)?,
                max_fee: max_fee(&app, &fields)?,
                permissions: field_list(&fields, "permissions")?,
                is_disabled: field_bool(&fields, "is_disabled")?,
                limits: limit_fields::update(|name| fields.get(name))?,
            };
            let key = update_key_fields(&app.store, &key.id, &update).await?;
            app.auth_cache.clear();
            app.billing.ledger.forget_key(&key.id);
            Ok((
                "Update API key success".to_string(),
                key_json(&key, &app.config),
            ))
        }
        .await,
    )
}

pub async fn list_keys(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let principal = admin_principal(&app, &headers).await?;
            let keys = app.store.list_keys(principal.user.id).await?;
            let data: Vec<Value> = keys.iter().map(|k| key_json(k, &app.config)).collect();
            Ok((
                format!("Get API keys success, total keys: {}", data.len()),
                Value::Array(data),
            ))
        }
        .await,
    )
}

pub async fn delete_key(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    envelope(
        async {
            let principal = admin_principal(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            let key = named_key(&app, &principal, &fields).await?;
            if key.is_admin {
                return Err(ApiError::BadRequest(
                    "An admin-capable key cannot be deleted through the API.".into(),
                ));
            }
            app.store.delete_key(&key.id).await?;
            app.auth_cache.clear();
            Ok(("Delete API key success".to_string(), Value::Null))
        }
        .await,
    )
}

pub async fn balance(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let principal = authenticate(&app, &headers).await?;
            let user = app.store.get_user(principal.user.id).await?;
            let cpu = app.config.credits_per_usd;
            Ok((
                "Get user balance success".to_string(),
                json!({
                    "balance": format_credits(user.balance, cpu),
                    "free_balance": format_credits(user.free_balance, cpu),
                }),
            ))
        }
        .await,
    )
}

pub async fn membership(State(app): State<App>, headers: HeaderMap) -> Response {
    envelope(
        async {
            let principal = authenticate(&app, &headers).await?;
            let user = &principal.user;
            Ok((
                "Get membership expire date success".to_string(),
                json!({
                    "tier": user.tier,
                    "membership_expire_date": user.membership_expires_at.map(format_ms),
                }),
            ))
        }
        .await,
    )
}

/// Every model the caller's key may use, with its prices and multipliers as
/// they apply to the caller's group.
pub async fn model_rates(State(app): State<App>, headers: HeaderMap) -> Response {
    let result = async {
        let principal = authenticate(&app, &headers).await?;
        let catalog = app.catalog.load();
        let group = catalog.group_multiplier(&principal.user.group_name);
        let cpu = Decimal::parse(&app.config.credits_per_usd.to_string()).unwrap_or(Decimal::ONE);
        let mut rows: Vec<Value> = catalog
            .models
            .values()
            .filter(|m| principal.may_use(&m.name))
            .map(|m| {
                let effective = m.multiplier.times(&group);
                let per_m = |price: &Decimal| {
                    json!({
                        "usd": price.to_string(),
                        "credits": price.times(&cpu).to_string(),
                        "effective_credits": price.times(&cpu).times(&effective).to_string(),
                    })
                };
                let mut row = json!({
                    "model": m.name,
                    "provider": m.provider,
                    "model_multiplier": m.multiplier.to_string(),
                    "group_multiplier": group.to_string(),
                    "effective_multiplier": effective.to_string(),
                });
                match m.unit {
                    MeterUnit::Tokens => {
                        row["unit"] = "per 1M tokens".into();
                        row["input"] = per_m(&m.prices.input);
                        row["output"] = per_m(&m.prices.output);
                        row["cached_input"] = per_m(&m.prices.cached_input);
                        row["cache_write"] = per_m(&m.prices.cache_write);
                    }
                    unit => {
                        row["unit"] = match unit {
                            MeterUnit::Characters => "per 1M characters",
                            MeterUnit::Seconds => "per second",
                            MeterUnit::Minutes => "per minute",
                            MeterUnit::Images => "per image",
                            _ => "per call",
                        }
                        .into();
                        row["price"] = per_m(&m.unit_price);
                        if !m.image_prices.is_empty() {
                            row["image_prices"] = m
                                .image_prices
                                .iter()
                                .map(|(k, v)| (k.clone(), per_m(v)))
                                .collect::<Map<_, _>>()
                                .into();
                        }
                    }
                }
                row
            })
            .collect();
        rows.sort_by(|a, b| a["model"].as_str().cmp(&b["model"].as_str()));
        Ok(("Get model rates success".to_string(), Value::Array(rows)))
    }
    .await;
    let mut response = envelope(result);
    if response.status() == StatusCode::OK {
        response
            .headers_mut()
            .insert("cache-control", "no-store".parse().expect("static header"));
    }
    response
}
