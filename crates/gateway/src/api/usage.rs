//! Usage records: a user lists its own with pagination and filters.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{UsageFilter, UsageRecord};

use super::respond;
use crate::api::caller::authenticate;
use crate::config::Config;
use crate::error::ApiError;
use crate::money::{format_credits, format_usd};
use crate::time::{format_ms, parse_timestamp};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

/// Query parameters of a usage listing.
#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    /// Records at or after this time (ISO 8601 or Unix seconds).
    pub since: Option<String>,
    /// Records before this time.
    pub until: Option<String>,
    pub model: Option<String>,
    /// A key id.
    pub key: Option<String>,
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl UsageQuery {
    pub fn to_filter(&self, user_id: i64) -> Result<UsageFilter, ApiError> {
        let time = |name: &str, v: &Option<String>| match v {
            None => Ok(None),
            Some(t) => parse_timestamp(t)
                .map(Some)
                .ok_or_else(|| ApiError::BadRequest(format!("`{name}` is not a valid time."))),
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "`limit` must be between 1 and {MAX_LIMIT}."
            )));
        }
        let before = match &self.cursor {
            None => None,
            Some(c) => Some(parse_cursor(c).ok_or_else(|| {
                ApiError::BadRequest("`cursor` is not a cursor this API returned.".into())
            })?),
        };
        Ok(UsageFilter {
            user_id: Some(user_id),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            model: self.model.clone(),
            key_id: self.key.clone(),
            provider: None,
            before,
            // One more than asked, to know whether another page follows.
            limit: limit + 1,
        })
    }
}

fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('_')?;
    Some((at.parse().ok()?, id.to_string()))
}

fn record_json(r: &UsageRecord, config: &Config) -> Value {
    let mut record = json!({
        "request_id": r.request_id,
        "created_at": format_ms(r.created_at),
        "key_id": r.key_id,
        "endpoint": r.endpoint,
        "model": r.model,
        "provider": r.provider,
        "upstream_model": r.upstream_model,
        "stream": r.stream,
        "input_tokens": r.input_tokens,
        "output_tokens": r.output_tokens,
        "cached_tokens": r.cached_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "cost": format_credits(r.cost, config.credits_per_usd),
        "cost_usd": format_usd(r.cost),
        "cost_nano_usd": r.cost,
        "latency_ms": r.latency_ms,
        "status": r.status,
        "error": r.error,
    });
    // A model metered in another unit: what it counted, and how many.
    if !r.unit.is_empty() {
        record["unit"] = r.unit.clone().into();
        record["quantity"] = r.input_tokens.into();
    }
    record
}

/// Lists records for `filter` as a page: `{object, data, has_more, next_cursor}`.
pub async fn usage_page(
    store: &store::Store,
    config: &Config,
    filter: &UsageFilter,
) -> Result<Value, ApiError> {
    let mut records = store.list_usage(filter).await?;
    let has_more = records.len() as i64 >= filter.limit;
    if has_more {
        records.truncate((filter.limit - 1) as usize);
    }
    let next_cursor = match (has_more, records.last()) {
        (true, Some(last)) => Some(format!("{}_{}", last.created_at, last.request_id)),
        _ => None,
    };
    Ok(json!({
        "object": "list",
        "data": records.iter().map(|r| record_json(r, config)).collect::<Vec<_>>(),
        "has_more": has_more,
        "next_cursor": next_cursor,
    }))
}

/// `GET /v1/usage`: an admin-capable key sees all of its user's records;
/// any other key sees only its own.
pub async fn list_own_usage(
    State(app): State<crate::state::App>,
    headers: HeaderMap,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
            let mut filter = query.to_filter(principal.user.id)?;
            if !principal.key.is_admin {
                if filter
                    .key_id
                    .as_deref()
                    .is_some_and(|k| k != principal.key.id)
                {
                    return Err(ApiError::AdminKeyRequired);
                }
                filter.key_id = Some(principal.key.id.clone());
            }
            Ok(Json(usage_page(&app.store, &app.config, &filter).await?))
        }
        .await,
    )
}
