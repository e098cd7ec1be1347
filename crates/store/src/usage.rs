//! Reading usage records back: paginated, filtered, newest first.

use serde::Serialize;
use sqlx::Row;

use crate::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: String,
    pub endpoint: String,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub stream: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost: i64,
    pub latency_ms: i64,
    pub status: i64,
    pub error: Option<String>,
    pub created_at: i64,
    /// Empty for tokens; else the unit whose quantity `input_tokens` holds.
    pub unit: String,
}

/// Which records to list. Pagination is by cursor: pass the last record's
/// `(created_at, request_id)` as `before` to get the next page.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub user_id: i64,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

impl Store {
    /// What `user_id` spent since `since` (Unix ms): nano-USD, and requests.
    pub async fn spend_since(&self, user_id: i64, since: i64) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) AS spent, COUNT(*) AS requests \
             FROM usage_records WHERE user_id = $1 AND created_at >= $2",
        )
        .bind(user_id)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("spent")?, row.try_get("requests")?))
    }

    /// `user_id`'s usage per UTC day (days since 1970) and model since
    /// `since`: (day, model, nano-USD, input + output tokens), by day.
    pub async fn daily_usage(
        &self,
        user_id: i64,
        since: i64,
    ) -> Result<Vec<(i64, String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT created_at / 86400000 AS day, model, CAST(SUM(cost) AS BIGINT) AS cost, \
             CAST(SUM(input_tokens + output_tokens) AS BIGINT) AS tokens FROM usage_records \
             WHERE user_id = $1 AND created_at >= $2 GROUP BY created_at / 86400000, model \
             ORDER BY day, model",
        )
        .bind(user_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("day")?,
                    r.try_get("model")?,
                    r.try_get("cost")?,
                    r.try_get("tokens")?,
                ))
            })
            .collect()
    }

    pub async fn list_usage(&self, f: &UsageFilter) -> Result<Vec<UsageRecord>> {
        // Every optional filter is written as "$N IS NULL OR …" so that one
        // prepared statement serves all combinations on both backends.
        let (before_at, before_id) = match &f.before {
            Some((at, id)) => (Some(*at), Some(id.clone())),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT request_id, user_id, key_id, endpoint, model, provider, upstream_model, stream, \
             input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost, latency_ms, status, error, created_at, unit \
             FROM usage_records WHERE user_id = $1 \
             AND ($2 IS NULL OR created_at >= $2) \
             AND ($3 IS NULL OR created_at < $3) \
             AND ($4 IS NULL OR model = $4) \
             AND ($5 IS NULL OR key_id = $5) \
             AND ($6 IS NULL OR created_at < $6 OR (created_at = $6 AND request_id < $7)) \
             ORDER BY created_at DESC, request_id DESC LIMIT $8",
        )
        .bind(f.user_id)
        .bind(f.since)
        .bind(f.until)
        .bind(&f.model)
        .bind(&f.key_id)
        .bind(before_at)
        .bind(before_id)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageRecord {
                    request_id: row.try_get("request_id")?,
                    user_id: row.try_get("user_id")?,
                    key_id: row.try_get("key_id")?,
                    endpoint: row.try_get("endpoint")?,
                    model: row.try_get("model")?,
                    provider: row.try_get("provider")?,
                    upstream_model: row.try_get("upstream_model")?,
                    stream: row.try_get::<i64, _>("stream")? != 0,
                    input_tokens: row.try_get("input_tokens")?,
                    output_tokens: row.try_get("output_tokens")?,
                    cached_tokens: row.try_get("cached_tokens")?,
                    cache_write_tokens: row.try_get("cache_write_tokens")?,
                    unit: row.try_get("unit")?,
                    cost: row.try_get("cost")?,
                    latency_ms: row.try_get("latency_ms")?,
                    status: row.try_get("status")?,
                    error: row.try_get("error")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
