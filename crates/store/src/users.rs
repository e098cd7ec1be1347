//! Users, their balances and the append-only ledger of balance changes.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, Backend, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub group_name: String,
    pub tier: String,
    pub membership_expires_at: Option<i64>,
    /// Paid balance, nano-USD.
    pub balance: i64,
    /// Promotional balance, spent before the paid one, nano-USD.
    pub free_balance: i64,
    /// Sum of the holds of requests in flight, nano-USD.
    pub held: i64,
    /// Rate limits set on this user.
    pub limits: RateLimits,
    /// Bumped by every change of the balances.
    pub revision: i64,
    pub created_at: i64,
}

/// Rate limits set on a user or a key; `None` does not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RateLimits {
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub concurrency: Option<i64>,
}

impl RateLimits {
    /// The limits in the columns `rpm`, `tpm` and `concurrency` of `row`,
    /// each named with `prefix`.
    pub(crate) fn from_row(row: &AnyRow, prefix: &str) -> Result<RateLimits> {
        Ok(RateLimits {
            rpm: row.try_get(format!("{prefix}rpm").as_str())?,
            tpm: row.try_get(format!("{prefix}tpm").as_str())?,
            concurrency: row.try_get(format!("{prefix}concurrency").as_str())?,
        })
    }
}

/// A change of the rate limits of a user or a key. For each limit, `None`
/// leaves it as it is, `Some(None)` clears it and `Some(Some(n))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitsUpdate {
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
    pub concurrency: Option<Option<i64>>,
}

impl RateLimitsUpdate {
    /// `current` with this change made.
    pub fn applied_to(&self, current: RateLimits) -> RateLimits {
        RateLimits {
            rpm: self.rpm.unwrap_or(current.rpm),
            tpm: self.tpm.unwrap_or(current.tpm),
            concurrency: self.concurrency.unwrap_or(current.concurrency),
        }
    }
}

impl User {
    /// What new requests may still reserve.
    pub fn available(&self) -> i64 {
        self.balance + self.free_balance - self.held
    }
}

#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub name: String,
    pub group_name: String,
    pub tier: String,
    pub membership_expires_at: Option<i64>,
    pub limits: RateLimits,
}

/// Fields an operator may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub group_name: Option<String>,
    pub tier: Option<String>,
    /// `Some(None)` clears the expiry.
    pub membership_expires_at: Option<Option<i64>>,
    pub limits: RateLimitsUpdate,
}

/// An operator's credit (positive) or debit (negative) of a balance.
#[derive(Debug, Clone)]
pub struct BalanceChange {
    pub user_id: i64,
    pub amount: i64,
    /// Apply to the promotional balance instead of the paid one.
    pub free: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub user_id: i64,
    pub amount: i64,
    pub balance_after: i64,
    pub kind: String,
    pub reason: String,
    pub request_id: Option<String>,
    pub created_at: i64,
}

pub(crate) const USER_COLUMNS: &str =
    "id, name, group_name, tier, membership_expires_at, balance, \
    free_balance, held, rpm, tpm, concurrency, revision, created_at";

pub(crate) fn user_from_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        group_name: row.try_get("group_name")?,
        tier: row.try_get("tier")?,
        membership_expires_at: row.try_get("membership_expires_at")?,
        balance: row.try_get("balance")?,
        free_balance: row.try_get("free_balance")?,
        held: row.try_get("held")?,
        limits: RateLimits::from_row(row, "")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub async fn create_user(&self, new: &NewUser) -> Result<User> {
        let sql = format!(
            "INSERT INTO users (name, group_name, tier, membership_expires_at, rpm, tpm, \
             concurrency, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(&new.name)
            .bind(&new.group_name)
            .bind(&new.tier)
            .bind(new.membership_expires_at)
            .bind(new.limits.rpm)
            .bind(new.limits.tpm)
            .bind(new.limits.concurrency)
            .bind(now_ms())
            .fetch_one(&self.writer)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    StoreError::Conflict(format!("a user named {:?} already exists", new.name))
                }
                other => other.into(),
            })?;
        user_from_row(&row)
    }

    pub async fn get_user(&self, id: i64) -> Result<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        user_from_row(&row)
    }

    pub async fn find_user_by_name(&self, name: &str) -> Result<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        user_from_row(&row)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn update_user(&self, id: i64, update: &UserUpdate) -> Result<User> {
        let user = self.get_user(id).await?;
        let group = update.group_name.clone().unwrap_or(user.group_name);
        let tier = update.tier.clone().unwrap_or(user.tier);
        let expiry = update
            .membership_expires_at
            .unwrap_or(user.membership_expires_at);
        let limits = update.limits.applied_to(user.limits);
        let sql = format!(
            "UPDATE users SET group_name = $1, tier = $2, membership_expires_at = $3, \
             rpm = $4, tpm = $5, concurrency = $6 WHERE id = $7 RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(group)
            .bind(tier)
            .bind(expiry)
            .bind(limits.rpm)
            .bind(limits.tpm)
            .bind(limits.concurrency)
            .bind(id)
            .fetch_one(&self.writer)
            .await?;
        user_from_row(&row)
    }

    /// Credits or debits a balance and appends the ledger entry, atomically.
    /// A debit that would take the balance below zero is refused.
    pub async fn change_balance(&self, change: &BalanceChange) -> Result<User> {
        let column = if change.free {
            "free_balance"
        } else {
            "balance"
        };
        let mut tx = self.writer.begin().await?;
        let sql = format!(
            "UPDATE users SET {column} = {column} + $1, revision = revision + 1 \
             WHERE id = $2 AND {column} + $1 >= 0 \
             RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(change.amount)
            .bind(change.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let user = match row {
            Some(row) => user_from_row(&row)?,
            None => {
                // Tell a missing user apart from an insufficient balance.
                let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                    .bind(change.user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(match exists {
                    Some(_) => StoreError::InsufficientBalance,
                    None => StoreError::NotFound("user"),
                });
            }
        };
        let kind = match (change.amount >= 0, change.free) {
            (true, false) => "credit",
            (true, true) => "free_credit",
            (false, false) => "debit",
            (false, true) => "free_debit",
        };
        sqlx::query(
            "INSERT INTO ledger (user_id, amount, balance_after, kind, reason, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6)",
        )
        .bind(change.user_id)
        .bind(change.amount)
        .bind(user.balance + user.free_balance)
        .bind(kind)
        .bind(&change.reason)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The newest ledger entries of a user, newest first.
    pub async fn ledger(&self, user_id: i64, limit: i64) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT id, user_id, amount, balance_after, kind, reason, request_id, created_at \
             FROM ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LedgerEntry {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    amount: row.try_get("amount")?,
                    balance_after: row.try_get("balance_after")?,
                    kind: row.try_get("kind")?,
                    reason: row.try_get("reason")?,
                    request_id: row.try_get("request_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}

/// Placeholders `$first, $first+1, …` for `n` values.
/// `n` bind placeholders for parameters `first..first + n`: `$first, …` on
/// PostgreSQL; anonymous `?`s (bound in order) on SQLite, where each numbered
/// parameter costs a name lookup that scans the statement's parameter list —
/// quadratic in a multi-row statement, and the bulk of its cost.
pub(crate) fn placeholders(backend: Backend, first: usize, n: usize) -> String {
    match backend {
        Backend::Sqlite => vec!["?"; n].join(", "),
        Backend::Postgres => (first..first + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `items` in chunks whose lengths are powers of two, at most `max` (itself
/// a power of two), largest first: 37 items go as 32, 4 and 1. A statement
/// built for n rows or ids is parsed once per n and then found in the
/// connection's statement cache (100 statements); with every length from 1
/// to `max` possible, the statements of a busy stream of settlement batches
/// outgrew the cache and each batch was parsed anew, row by row: 9 % of the
/// instructions a request cost (bench/instructions.sh). At most log2(max)+1
/// statements a batch instead of one; ~log2(max)+1 cached statements of each
/// kind.
pub(crate) fn statement_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = rest.len().min(max);
        let (chunk, tail) = rest.split_at(1 << len.ilog2());
        rest = tail;
        Some(chunk)
    })
}

/// Most ids in one `IN (…)` list.
const ID_CHUNK: usize = 512;

/// A user's balance (paid + promotional, nano-USD) as of one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFigures {
    pub user_id: i64,
    pub balance: i64,
    pub revision: i64,
}

/// A key's spending limit and spending (nano-USD) as of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFigures {
    pub key_id: String,
    pub max_fee: i64,
    pub used_fee: i64,
    pub revision: i64,
}

impl Store {
    /// The figures of each of `user_ids` that exists.
    pub async fn balances(&self, user_ids: &[i64]) -> Result<Vec<UserFigures>> {
        let mut out = Vec::with_capacity(user_ids.len());
        for chunk in statement_chunks(user_ids, ID_CHUNK) {
            let sql = format!(
                "SELECT id, balance + free_balance, revision FROM users WHERE id IN ({})",
                placeholders(self.backend(), 1, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (i64, i64, i64)>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            out.extend(query.fetch_all(&self.pool).await?.into_iter().map(
                |(user_id, balance, revision)| UserFigures {
                    user_id,
                    balance,
                    revision,
                },
            ));
        }
        Ok(out)
    }

    /// The figures of each of `key_ids` that exists.
    pub async fn key_spending(&self, key_ids: &[String]) -> Result<Vec<KeyFigures>> {
        let mut out = Vec::with_capacity(key_ids.len());
        for chunk in statement_chunks(key_ids, ID_CHUNK) {
            let sql = format!(
                "SELECT id, max_fee, used_fee, revision FROM api_keys WHERE id IN ({})",
                placeholders(self.backend(), 1, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (String, i64, i64, i64)>(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            out.extend(query.fetch_all(&self.pool).await?.into_iter().map(
                |(key_id, max_fee, used_fee, revision)| KeyFigures {
                    key_id,
                    max_fee,
                    used_fee,
                    revision,
                },
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod statement_chunk_tests {
    use super::statement_chunks;

    fn lengths(n: usize, max: usize) -> Vec<usize> {
        let items: Vec<usize> = (0..n).collect();
        let chunks: Vec<&[usize]> = statement_chunks(&items, max).collect();
        // In order, each item once.
        assert_eq!(chunks.concat(), items);
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        assert_eq!(lengths(0, 64), Vec::<usize>::new());
        assert_eq!(lengths(1, 64), vec![1]);
        assert_eq!(lengths(37, 64), vec![32, 4, 1]);
        assert_eq!(lengths(64, 64), vec![64]);
        assert_eq!(lengths(63, 64), vec![32, 16, 8, 4, 2, 1]);
        assert_eq!(lengths(200, 64), vec![64, 64, 64, 8]);
        for n in 0..300 {
            assert!(lengths(n, 64)
                .iter()
                .all(|l| l.is_power_of_two() && *l <= 64));
        }
    }
}
