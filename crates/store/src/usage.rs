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
    /// One user's records; `None`: everyone's (the admin's view).
    pub user_id: Option<i64>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub model: Option<String>,
    pub key_id: Option<String>,
    /// The channel (provider) that served.
    pub provider: Option<String>,
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// Milliseconds in a day: records are totalled per UTC day.
pub(crate) const DAY_MS: i64 = 86_400_000;
/// The most tokens one record counts for in the totals (an upstream may
/// report anything).
pub(crate) const MOST_TOKENS_PER_RECORD: i64 = 1_000_000_000_000_000;

impl Store {
    /// What `user_id` spent from the UTC day `first_day` (days since
    /// 1970) on: nano-USD, and requests. From the daily totals.
    pub async fn spend_since_day(&self, user_id: i64, first_day: i64) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT) AS spent, \
             CAST(COALESCE(SUM(requests), 0) AS BIGINT) AS requests \
             FROM usage_daily WHERE user_id = $1 AND day >= $2",
        )
        .bind(user_id)
        .bind(first_day)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("spent")?, row.try_get("requests")?))
    }

    /// `user_id`'s usage per UTC day and model from the day `first_day` on:
    /// (day, model, nano-USD, tokens), by day. From the daily totals.
    pub async fn daily_usage(
        &self,
        user_id: i64,
        first_day: i64,
    ) -> Result<Vec<(i64, String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT day, model, CAST(SUM(cost) AS BIGINT) AS cost, \
             CAST(SUM(tokens) AS BIGINT) AS tokens FROM usage_daily \
             WHERE user_id = $1 AND day >= $2 GROUP BY day, model ORDER BY day, model",
        )
        .bind(user_id)
        .bind(first_day)
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
        let mut sql = Selection::new(
            "SELECT request_id, user_id, key_id, endpoint, model, provider, upstream_model, stream, \
             input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost, latency_ms, status, error, created_at, unit \
             FROM usage_records",
            "created_at",
            f,
        );
        if let Some((at, id)) = &f.before {
            let at = sql.bind(Value::Int(*at));
            let id = sql.bind(Value::Text(id.clone()));
            sql.text +=
                &format!(" AND (created_at < {at} OR (created_at = {at} AND request_id < {id}))");
        }
        let limit = sql.bind(Value::Int(f.limit));
        sql.text += &format!(" ORDER BY created_at DESC, request_id DESC LIMIT {limit}");
        let rows = sql.fetch_all(&self.pool).await?;
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

    /// The selection's totals per UTC day (days since 1970), by day:
    /// requests, nano-USD, tokens. `before` and `limit` are not used. Read
    /// from the daily totals when the selection is whole days and no key
    /// (the totals are not kept per key), else from the records.
    pub async fn usage_by_day(&self, f: &UsageFilter) -> Result<Vec<DayTotals>> {
        let whole_day = |t: Option<i64>| t.is_none_or(|t| t.rem_euclid(DAY_MS) == 0);
        let sql = match f.key_id.is_none() && whole_day(f.since) && whole_day(f.until) {
            true => {
                let days = UsageFilter {
                    since: f.since.map(|t| t / DAY_MS),
                    until: f.until.map(|t| t / DAY_MS),
                    ..f.clone()
                };
                let mut sql = Selection::new(
                    "SELECT day, CAST(SUM(requests) AS BIGINT) AS requests, \
                     CAST(SUM(cost) AS BIGINT) AS cost, CAST(SUM(tokens) AS BIGINT) AS tokens \
                     FROM usage_daily",
                    "day",
                    &days,
                );
                sql.text += " GROUP BY day ORDER BY day";
                sql
            }
            false => {
                let mut sql = Selection::new(
                    "SELECT created_at / 86400000 AS day, COUNT(*) AS requests, \
                     CAST(SUM(cost) AS BIGINT) AS cost, \
                     CAST(SUM(CASE WHEN unit <> '' THEN 0 \
                     WHEN input_tokens > 1000000000000000 OR output_tokens > 1000000000000000 \
                     THEN 1000000000000000 ELSE input_tokens + output_tokens END) \
                     AS BIGINT) AS tokens FROM usage_records",
                    "created_at",
                    f,
                );
                sql.text += " GROUP BY created_at / 86400000 ORDER BY day";
                sql
            }
        };
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(DayTotals {
                    day: r.try_get("day")?,
                    requests: r.try_get("requests")?,
                    cost: r.try_get("cost")?,
                    tokens: r.try_get("tokens")?,
                })
            })
            .collect()
    }
}

/// One day of a selection of usage records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotals {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub requests: i64,
    /// Nano-USD.
    pub cost: i64,
    pub tokens: i64,
}

/// A statement on usage records with only the filters given, so that each
/// combination is its own statement and the database uses the index that
/// fits (`$n IS NULL OR …` would keep SQLite from any index). Placeholders
/// are numbered (`$n`), which both backends read.
struct Selection {
    text: String,
    values: Vec<Value>,
}

enum Value {
    Int(i64),
    Text(String),
}

impl Selection {
    /// `select` filtered by `f`, whose times are compared with `time`.
    fn new(select: &str, time: &str, f: &UsageFilter) -> Self {
        let mut sql = Selection {
            text: format!("{select} WHERE 1 = 1"),
            values: Vec::new(),
        };
        let conditions = [
            ("user_id =", f.user_id.map(Value::Int)),
            (">=", f.since.map(Value::Int)),
            ("<", f.until.map(Value::Int)),
            ("model =", f.model.clone().map(Value::Text)),
            ("key_id =", f.key_id.clone().map(Value::Text)),
            ("provider =", f.provider.clone().map(Value::Text)),
        ];
        for (test, value) in conditions {
            if let Some(value) = value {
                let placeholder = sql.bind(value);
                // The time comparisons name their column here.
                let column = match test.starts_with(['<', '>']) {
                    true => time,
                    false => "",
                };
                sql.text += &format!(" AND {column} {test} {placeholder}");
            }
        }
        sql
    }

    /// Adds a value; returns its placeholder.
    fn bind(&mut self, value: Value) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    async fn fetch_all(self, pool: &sqlx::AnyPool) -> Result<Vec<sqlx::any::AnyRow>> {
        let mut query = sqlx::query(&self.text);
        for value in self.values {
            query = match value {
                Value::Int(v) => query.bind(v),
                Value::Text(v) => query.bind(v),
            };
        }
        Ok(query.fetch_all(pool).await?)
    }
}
