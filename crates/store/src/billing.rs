//! Holds and settlement: the two writes that make money exact.
//!
//! `reserve` holds a request's worst-case cost against the user's balance and
//! the key's limit before anything is sent upstream. `settle` then charges the
//! exact cost, releases the hold and records the usage, in one transaction
//! keyed by the request id, so a request is charged exactly once however often
//! settlement is attempted.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use crate::users::{placeholders, statement_chunks};
use crate::{now_ms, Backend, Result, Store};

/// A hold to place before forwarding a request.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: String,
    pub amount: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    Held,
    InsufficientBalance,
    KeyLimitReached,
}

/// The final account of one request. Serialized compactly (zeros and
/// `None` left out), as the gateway's journal writes one per request.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settlement {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: String,
    pub endpoint: String,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub stream: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub input_tokens: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub output_tokens: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cached_tokens: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write_tokens: i64,
    /// Exact cost in nano-USD; 0 for failed requests.
    #[serde(skip_serializing_if = "is_zero")]
    pub cost: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub latency_ms: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub status: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: i64,
    /// The unit of a model not metered in tokens (its quantity is in
    /// `input_tokens`); empty for tokens.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unit: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    Charged,
    /// The request id was settled before; nothing changed.
    AlreadySettled,
}

impl Store {
    pub async fn reserve(&self, r: &Reservation) -> Result<ReserveOutcome> {
        let mut tx = self.writer.begin().await?;
        let user = sqlx::query(
            "UPDATE users SET held = held + $1 WHERE id = $2 AND balance + free_balance - held >= $1",
        )
        .bind(r.amount)
        .bind(r.user_id)
        .execute(&mut *tx)
        .await?;
        if user.rows_affected() == 0 {
            return Ok(ReserveOutcome::InsufficientBalance);
        }
        let key = sqlx::query(
            "UPDATE api_keys SET held = held + $1 \
             WHERE id = $2 AND (max_fee = 0 OR used_fee + held + $1 <= max_fee)",
        )
        .bind(r.amount)
        .bind(&r.key_id)
        .execute(&mut *tx)
        .await?;
        if key.rows_affected() == 0 {
            return Ok(ReserveOutcome::KeyLimitReached);
        }
        sqlx::query(
            "INSERT INTO holds (request_id, user_id, key_id, amount, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.request_id)
        .bind(r.user_id)
        .bind(&r.key_id)
        .bind(r.amount)
        .bind(r.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReserveOutcome::Held)
    }

    /// Charges `s.cost`, releases the request's hold and records its usage.
    /// The promotional balance is spent first.
    pub async fn settle(&self, s: &Settlement) -> Result<SettleOutcome> {
        let outcomes = self.settle_many(std::slice::from_ref(s)).await?;
        Ok(outcomes
            .into_iter()
            .next()
            .unwrap_or(SettleOutcome::AlreadySettled))
    }

    /// Settles many requests in one transaction (group commit) with a few
    /// multi-row statements: the batch commits whole or not at all, and each
    /// request id is charged once, ever. Returns one outcome per settlement.
    pub async fn settle_many(&self, batch: &[Settlement]) -> Result<Vec<SettleOutcome>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend();
        let mut tx = self.writer.begin().await?;
        // Nearly always every request id is new: the records go in without
        // RETURNING (on SQLite each row returned is one more message from
        // its worker thread), and the row counts prove it. Otherwise (a
        // replay, a retry, an id twice in the batch) the batch starts over,
        // asking which ids the insert adds. `None`: all of them.
        let mut added: Option<HashSet<String>> = None;
        for chunk in statement_chunks(batch, ROWS_PER_STATEMENT) {
            if insert_usage(&mut tx, backend, chunk).await? != chunk.len() as u64 {
                tx.rollback().await?;
                tx = self.writer.begin().await?;
                let mut ids = HashSet::new();
                for chunk in statement_chunks(batch, ROWS_PER_STATEMENT) {
                    ids.extend(insert_usage_returning_new(&mut tx, backend, chunk).await?);
                }
                added = Some(ids);
                break;
            }
        }
        // The first occurrence of each newly inserted id is the one charged.
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut fresh: Vec<&Settlement> = Vec::new();
        for s in batch {
            let new = added
                .as_mut()
                .is_none_or(|ids| ids.remove(s.request_id.as_str()));
            if new {
                outcomes.push(SettleOutcome::Charged);
                fresh.push(s);
            } else {
                outcomes.push(SettleOutcome::AlreadySettled);
            }
        }
        if !fresh.is_empty() {
            charge(&mut tx, backend, &fresh).await?;
            add_to_daily_totals(&mut tx, backend, &fresh).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Releases a hold without charging (used when a request never reaches a
    /// billable state and records nothing). Idempotent.
    pub async fn release(&self, request_id: &str) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let hold: Option<(i64, String, i64)> = sqlx::query_as(
            "DELETE FROM holds WHERE request_id = $1 RETURNING user_id, key_id, amount",
        )
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((user_id, key_id, amount)) = hold {
            release_amount(&mut tx, user_id, &key_id, amount).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Releases holds whose requests died with their process. Returns how many.
    pub async fn sweep_expired_holds(&self) -> Result<u64> {
        let expired: Vec<String> =
            sqlx::query_scalar("SELECT request_id FROM holds WHERE expires_at < $1")
                .bind(now_ms())
                .fetch_all(&self.pool)
                .await?;
        for request_id in &expired {
            self.release(request_id).await?;
        }
        Ok(expired.len() as u64)
    }
}

async fn release_amount(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    key_id: &str,
    amount: i64,
) -> Result<()> {
    sqlx::query("UPDATE users SET held = held - $1 WHERE id = $2")
        .bind(amount)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE api_keys SET held = held - $1 WHERE id = $2")
        .bind(amount)
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Most rows in one multi-row statement (18 parameters each in the widest),
/// a power of two ([`statement_chunks`]). SQLite statements use anonymous
/// placeholders, whose binding is linear (see `placeholders`); numbered ones
/// made larger statements cost more, not less.
const ROWS_PER_STATEMENT: usize = 64;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Inserts usage records, skipping ids already settled; returns how many
/// were inserted.
async fn insert_usage(tx: &mut Tx<'_>, backend: Backend, chunk: &[Settlement]) -> Result<u64> {
    let sql = usage_insert_sql(backend, chunk.len(), "");
    let query = bind_usage(sqlx::query(&sql), chunk);
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// Inserts usage records, skipping ids already settled; returns the ids inserted.
async fn insert_usage_returning_new(
    tx: &mut Tx<'_>,
    backend: Backend,
    chunk: &[Settlement],
) -> Result<Vec<String>> {
    let sql = usage_insert_sql(backend, chunk.len(), " RETURNING request_id");
    let rows = bind_usage(sqlx::query(&sql), chunk)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<std::result::Result<_, _>>()?)
}

fn usage_insert_sql(backend: Backend, rows: usize, returning: &str) -> String {
    const COLUMNS: usize = 18;
    let rows: Vec<String> = (0..rows)
        .map(|r| format!("({})", placeholders(backend, r * COLUMNS + 1, COLUMNS)))
        .collect();
    format!(
        "INSERT INTO usage_records (request_id, user_id, key_id, endpoint, model, provider, \
         upstream_model, stream, input_tokens, output_tokens, cached_tokens, cost, latency_ms, \
         status, error, created_at, cache_write_tokens, unit) VALUES {} \
         ON CONFLICT (request_id) DO NOTHING{returning}",
        rows.join(", ")
    )
}

/// Binds the settlements' 18 columns each, in `usage_insert_sql`'s order.
fn bind_usage<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    chunk: &'q [Settlement],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for s in chunk {
        query = query
            .bind(&s.request_id)
            .bind(s.user_id)
            .bind(&s.key_id)
            .bind(&s.endpoint)
            .bind(&s.model)
            .bind(&s.provider)
            .bind(&s.upstream_model)
            .bind(s.stream as i64)
            .bind(s.input_tokens)
            .bind(s.output_tokens)
            .bind(s.cached_tokens)
            .bind(s.cost)
            .bind(s.latency_ms)
            .bind(s.status)
            .bind(&s.error)
            .bind(s.created_at)
            .bind(s.cache_write_tokens)
            .bind(&s.unit);
    }
    query
}

/// Releases the holds of `fresh` settlements, charges users and keys (one
/// statement per distinct user and key) and appends the ledger entries.
async fn charge(tx: &mut Tx<'_>, backend: Backend, fresh: &[&Settlement]) -> Result<()> {
    // Holds placed in the database (holds = "database"); the sweeper may
    // already have released an expired one, and memory holds have no row.
    let mut held: HashMap<&str, i64> = HashMap::new();
    for chunk in statement_chunks(fresh, ROWS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM holds WHERE request_id IN ({}) RETURNING request_id, amount",
            placeholders(backend, 1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql);
        for s in chunk {
            query = query.bind(&s.request_id);
        }
        for (id, amount) in query.fetch_all(&mut **tx).await? {
            if let Some(s) = chunk.iter().find(|s| s.request_id == id) {
                held.insert(s.request_id.as_str(), amount);
            }
        }
    }
    let held_of = |s: &Settlement| held.get(s.request_id.as_str()).copied().unwrap_or(0);

    // Users, in first-seen order: spending c1 then c2 from the promotional
    // balance first is the same as spending c1 + c2 at once.
    let mut users: Vec<(i64, i64, i64)> = Vec::new();
    for s in fresh {
        match users.iter_mut().find(|u| u.0 == s.user_id) {
            Some(u) => {
                u.1 += s.cost;
                u.2 += held_of(s);
            }
            None => users.push((s.user_id, s.cost, held_of(s))),
        }
    }
    let mut balance_after: HashMap<i64, i64> = HashMap::new();
    for (user_id, cost, hold) in users {
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET \
               free_balance = free_balance - (CASE WHEN free_balance >= $1 THEN $1 WHEN free_balance > 0 THEN free_balance ELSE 0 END), \
               balance = balance - ($1 - (CASE WHEN free_balance >= $1 THEN $1 WHEN free_balance > 0 THEN free_balance ELSE 0 END)), \
               held = held - $2, revision = revision + 1 \
             WHERE id = $3 RETURNING balance + free_balance",
        )
        .bind(cost)
        .bind(hold)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?;
        balance_after.insert(user_id, balance.unwrap_or(0));
    }

    let mut keys: Vec<(&str, i64, i64, i64)> = Vec::new();
    for s in fresh {
        match keys.iter_mut().find(|k| k.0 == s.key_id) {
            Some(k) => {
                k.1 += s.cost;
                k.2 += held_of(s);
                k.3 += 1;
            }
            None => keys.push((s.key_id.as_str(), s.cost, held_of(s), 1)),
        }
    }
    let now = now_ms();
    for (key_id, cost, hold, times) in keys {
        sqlx::query(
            "UPDATE api_keys SET used_fee = used_fee + $1, held = held - $2, \
             used_times = used_times + $3, used_at = $4, revision = revision + 1 WHERE id = $5",
        )
        .bind(cost)
        .bind(hold)
        .bind(times)
        .bind(now)
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    }

    // Ledger entries in batch order; each one's balance_after is the final
    // balance plus what the user's later entries in this batch took.
    let charged: Vec<&&Settlement> = fresh.iter().filter(|s| s.cost != 0).collect();
    let mut after = Vec::with_capacity(charged.len());
    let mut later: HashMap<i64, i64> = HashMap::new();
    for s in charged.iter().rev() {
        let spent_later = later.entry(s.user_id).or_insert(0);
        after.push(balance_after.get(&s.user_id).copied().unwrap_or(0) + *spent_later);
        *spent_later += s.cost;
    }
    after.reverse();
    let rows: Vec<(&&&Settlement, i64)> = charged.iter().zip(after).collect();
    for chunk in statement_chunks(&rows, ROWS_PER_STATEMENT) {
        const COLUMNS: usize = 6;
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let p = r * COLUMNS;
                format!(
                    "({}, 'charge', {})",
                    placeholders(backend, p + 1, 3),
                    placeholders(backend, p + 4, 3)
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO ledger (user_id, amount, balance_after, kind, reason, request_id, created_at) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (s, balance) in chunk {
            query = query
                .bind(s.user_id)
                .bind(-s.cost)
                .bind(*balance)
                .bind(format!("{} {}", s.endpoint, s.model))
                .bind(&s.request_id)
                .bind(now);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Adds the `fresh` settlements to `usage_daily`, the per-day totals the
/// console's dashboards and charts read (in the records' transaction, so
/// they always agree): one row per user, UTC day, model and channel. Rows
/// are summed here first, as one statement may not touch a row twice.
/// A day's tokens stop growing past this (far beyond any real day; what
/// one statement adds stays far below `i64::MAX` minus it).
const TOKENS_CEILING: i64 = 4_000_000_000_000_000_000;

async fn add_to_daily_totals(
    tx: &mut Tx<'_>,
    backend: Backend,
    fresh: &[&Settlement],
) -> Result<()> {
    // (user, day, model, channel) and [requests, cost, tokens].
    type Totals<'a> = ((i64, i64, &'a str, &'a str), [i64; 3]);
    let mut totals: Vec<Totals> = Vec::new();
    for s in fresh {
        let key = (
            s.user_id,
            s.created_at.div_euclid(crate::usage::DAY_MS),
            s.model.as_str(),
            s.provider.as_str(),
        );
        // Tokens only (a record metered in another unit counts that unit),
        // and no more than any real request has: an upstream's absurd
        // figure must not overflow the day's sum.
        let tokens = match s.unit.is_empty() {
            true => s
                .input_tokens
                .max(0)
                .saturating_add(s.output_tokens.max(0))
                .min(crate::usage::MOST_TOKENS_PER_RECORD),
            false => 0,
        };
        match totals.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sums)) => {
                sums[0] += 1;
                sums[1] = sums[1].saturating_add(s.cost);
                sums[2] = sums[2].saturating_add(tokens);
            }
            None => totals.push((key, [1, s.cost, tokens])),
        }
    }
    for chunk in statement_chunks(&totals, ROWS_PER_STATEMENT) {
        const COLUMNS: usize = 7;
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| format!("({})", placeholders(backend, r * COLUMNS + 1, COLUMNS)))
            .collect();
        let sql = format!(
            "INSERT INTO usage_daily (user_id, day, model, provider, requests, cost, tokens) \
             VALUES {} ON CONFLICT (user_id, day, model, provider) DO UPDATE SET \
             requests = usage_daily.requests + excluded.requests, \
             cost = usage_daily.cost + excluded.cost, \
             tokens = CASE WHEN usage_daily.tokens > {TOKENS_CEILING} THEN usage_daily.tokens \
             ELSE usage_daily.tokens + excluded.tokens END",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for ((user_id, day, model, provider), [requests, cost, tokens]) in chunk {
            query = query
                .bind(*user_id)
                .bind(*day)
                .bind(*model)
                .bind(*provider)
                .bind(*requests)
                .bind(*cost)
                .bind(*tokens);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
