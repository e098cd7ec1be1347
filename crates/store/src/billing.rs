//! Holds and settlement: the two writes that make money exact.
//!
//! `reserve` holds a request's worst-case cost against the user's balance and
//! the key's limit before anything is sent upstream. `settle` then charges the
//! exact cost, releases the hold and records the usage, in one transaction
//! keyed by the request id, so a request is charged exactly once however often
//! settlement is attempted.

use crate::{now_ms, Result, Store};

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

/// The final account of one request.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
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
    /// Exact cost in nano-USD; 0 for failed requests.
    pub cost: i64,
    pub latency_ms: i64,
    pub status: i64,
    pub error: Option<String>,
    pub created_at: i64,
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
        let mut tx = self.writer.begin().await?;
        let outcome = settle_in(&mut tx, s).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Settles many requests in one transaction (group commit): the batch
    /// commits whole or not at all, and each request still only once.
    pub async fn settle_many(&self, batch: &[Settlement]) -> Result<Vec<SettleOutcome>> {
        let mut tx = self.writer.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for s in batch {
            outcomes.push(settle_in(&mut tx, s).await?);
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

/// The statements of one settlement, inside the caller's transaction.
async fn settle_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    s: &Settlement,
) -> Result<SettleOutcome> {
    let inserted = sqlx::query(
        "INSERT INTO usage_records (request_id, user_id, key_id, endpoint, model, provider, \
         upstream_model, stream, input_tokens, output_tokens, cached_tokens, cost, latency_ms, \
         status, error, created_at, cache_write_tokens) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (request_id) DO NOTHING",
    )
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
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(SettleOutcome::AlreadySettled);
    }
    // The sweeper may already have released an expired hold: then there
    // is nothing left to release.
    let held: i64 = sqlx::query_scalar("DELETE FROM holds WHERE request_id = $1 RETURNING amount")
        .bind(&s.request_id)
        .fetch_optional(&mut **tx)
        .await?
        .unwrap_or(0);
    let balance_after: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET \
           free_balance = free_balance - (CASE WHEN free_balance >= $1 THEN $1 WHEN free_balance > 0 THEN free_balance ELSE 0 END), \
           balance = balance - ($1 - (CASE WHEN free_balance >= $1 THEN $1 WHEN free_balance > 0 THEN free_balance ELSE 0 END)), \
           held = held - $2 \
         WHERE id = $3 RETURNING balance + free_balance",
    )
    .bind(s.cost)
    .bind(held)
    .bind(s.user_id)
    .fetch_optional(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE api_keys SET used_fee = used_fee + $1, held = held - $2, \
         used_times = used_times + 1, used_at = $3 WHERE id = $4",
    )
    .bind(s.cost)
    .bind(held)
    .bind(now_ms())
    .bind(&s.key_id)
    .execute(&mut **tx)
    .await?;
    if s.cost != 0 {
        sqlx::query(
            "INSERT INTO ledger (user_id, amount, balance_after, kind, reason, request_id, created_at) \
             VALUES ($1, $2, $3, 'charge', $4, $5, $6)",
        )
        .bind(s.user_id)
        .bind(-s.cost)
        .bind(balance_after.unwrap_or(0))
        .bind(format!("{} {}", s.endpoint, s.model))
        .bind(&s.request_id)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    }
    Ok(SettleOutcome::Charged)
}
