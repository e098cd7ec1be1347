//! Rate limits made visible: `GET /v1/usage/limits` tells a caller its own
//! limits and what is left of them (OpenAI's error shape); the operator's
//! `GET /admin/rate-limits/top` lists the keys refused most.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::respond;
use crate::api::caller::{authenticate, authenticate_admin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::refusals::KeyRefusals;
use crate::limits::{Headroom, ScopeKind, ScopeStatus};
use crate::pipeline::limits::peek;
use crate::state::App;
use crate::time::format_ms;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/v1/usage/limits", get(own_limits))
        .route("/admin/rate-limits/top", get(top_limited))
}

#[derive(Debug, Default, Deserialize)]
struct LimitsQuery {
    /// Include this model's limits (all users of the model together).
    model: Option<String>,
}

/// `GET /v1/usage/limits[?model=NAME]`: every limit the caller's next
/// request would be counted in, and what is left of each right now. Nothing
/// is taken. A scope is named only by what is the caller's own (its key, its
/// user, group and tier) or public (the model).
async fn own_limits(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<LimitsQuery>, QueryRejection>,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
            let model = match query.model.as_deref() {
                None => None,
                Some(name) => {
                    // As a request for the model would be answered: no
                    // limits told of a model the key may not use.
                    let catalog = app.catalog.load();
                    let spec = catalog
                        .model(name)
                        .ok_or_else(|| ApiError::ModelNotFound(name.to_string()))?;
                    if !principal.may_use(&spec.name) {
                        return Err(ApiError::ModelNotAllowed(name.to_string()));
                    }
                    Some(spec.name.clone())
                }
            };
            let statuses = peek(&app, &principal, model.as_deref()).await?;
            let limits: Vec<Value> = statuses
                .iter()
                .map(|s| scope_json(s, &principal, model.as_deref()))
                .collect();
            Ok(Json(json!({"object": "rate_limits", "limits": limits})))
        }
        .await,
    )
}

/// One scope as its caller sees it.
fn scope_json(status: &ScopeStatus, principal: &Principal, model: Option<&str>) -> Value {
    let kind = ScopeKind::of(&status.scope);
    let name = match kind {
        ScopeKind::Key => Some(principal.key.id.as_str()),
        ScopeKind::User => Some(principal.user.name.as_str()),
        ScopeKind::Group => Some(principal.user.group_name.as_str()),
        ScopeKind::Tier => Some(principal.user.tier.as_str()),
        ScopeKind::Model => model,
        ScopeKind::Global => None,
    };
    let rate = |room: Option<Headroom>| match room {
        Some(room) => json!({
            "limit": room.limit,
            "remaining": room.remaining,
            "reset_seconds": seconds(room.reset),
        }),
        None => Value::Null,
    };
    let concurrency = match status.limits.concurrency {
        Some(limit) => json!({
            "limit": limit,
            "in_use": status.in_use,
            "remaining": limit.saturating_sub(status.in_use),
        }),
        None => Value::Null,
    };
    json!({
        "scope": kind.as_str(),
        "name": name,
        "rpm": rate(status.requests),
        "tpm": rate(status.tokens),
        "concurrency": concurrency,
    })
}

/// Seconds, to the millisecond.
fn seconds(d: std::time::Duration) -> f64 {
    d.as_millis() as f64 / 1_000.0
}

#[derive(Debug, Default, Deserialize)]
struct TopQuery {
    limit: Option<usize>,
}

const DEFAULT_TOP: usize = 20;
const MAX_TOP: usize = 1_000;

/// `GET /admin/rate-limits/top[?limit=N]`: the keys rate limits refused
/// most since this instance started (with Redis: by all instances together),
/// most first.
async fn top_limited(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<TopQuery>, QueryRejection>,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
            let limit = query.limit.unwrap_or(DEFAULT_TOP);
            if !(1..=MAX_TOP).contains(&limit) {
                return Err(ApiError::BadRequest(format!(
                    "`limit` must be between 1 and {MAX_TOP}."
                )));
            }
            let top = match &app.shared {
                // Counted by every instance together.
                Some(shared) => shared
                    .top_refused(limit)
                    .await
                    .map_err(|_| ApiError::LimitsUnavailable)?,
                None => app.rate_refusals.top(limit),
            };
            let data: Vec<Value> = top.iter().map(refusals_json).collect();
            Ok(Json(json!({"object": "list", "data": data})))
        }
        .await,
    )
}

fn refusals_json(key: &KeyRefusals) -> Value {
    let by_scope: serde_json::Map<String, Value> = ScopeKind::ALL
        .iter()
        .zip(key.by_scope)
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| (kind.as_str().to_string(), n.into()))
        .collect();
    let [requests, tokens, concurrency] = key.by_limit;
    json!({
        "key_id": key.key_id,
        "user_id": key.user_id,
        "count": key.count,
        "last_refused_at": format_ms(key.last_at_ms),
        "by_scope": by_scope,
        "by_limit": {"requests": requests, "tokens": tokens, "concurrency": concurrency},
    })
}
