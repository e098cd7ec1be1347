//! API keys. Only a key's SHA-256 hash is stored; its id is stable and safe to show.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::users::{RateLimits, RateLimitsUpdate, User};
use crate::{now_ms, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub user_id: i64,
    /// The first characters of the key, for a masked display.
    pub key_prefix: String,
    pub key_last4: String,
    pub remark: String,
    pub is_admin: bool,
    pub is_disabled: bool,
    /// Models the key may use; empty means all.
    pub permissions: Vec<String>,
    /// Spending limit in nano-USD; 0 means unlimited.
    pub max_fee: i64,
    pub used_fee: i64,
    pub held: i64,
    /// Rate limits set on this key.
    pub limits: RateLimits,
    /// Bumped by every change of its spending or its limit.
    pub revision: i64,
    pub used_times: i64,
    pub created_at: i64,
    pub used_at: Option<i64>,
    pub expired_at: Option<i64>,
    /// The OAuth grant whose API access this key is (such a key belongs to
    /// the grant: it is not listed or managed with the user's own keys).
    pub grant_id: Option<String>,
}

impl ApiKey {
    /// `sk-abcd…wxyz`: enough to recognise a key, useless to an attacker.
    pub fn masked(&self) -> String {
        format!("{}…{}", self.key_prefix, self.key_last4)
    }
}

/// A key to insert; `key_hash` is computed by the caller, which alone sees the key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub user_id: i64,
    pub key_hash: String,
    pub key_prefix: String,
    pub key_last4: String,
    pub remark: String,
    pub is_admin: bool,
    pub permissions: Vec<String>,
    pub max_fee: i64,
    pub expired_at: Option<i64>,
    pub limits: RateLimits,
}

/// Fields a key's owner may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub remark: Option<String>,
    pub expired_at: Option<Option<i64>>,
    pub max_fee: Option<i64>,
    pub permissions: Option<Vec<String>>,
    pub is_disabled: Option<bool>,
    pub limits: RateLimitsUpdate,
}

const KEY_COLUMNS: &str = "k.id, k.user_id, k.key_prefix, k.key_last4, k.remark, k.is_admin, \
    k.is_disabled, k.permissions, k.max_fee, k.used_fee, k.held, k.rpm, k.tpm, k.concurrency, k.revision, k.used_times, \
    k.created_at, k.used_at, k.expired_at, k.grant_id";

fn key_from_row(row: &AnyRow) -> Result<ApiKey> {
    let permissions: String = row.try_get("permissions")?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        key_prefix: row.try_get("key_prefix")?,
        key_last4: row.try_get("key_last4")?,
        remark: row.try_get("remark")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        is_disabled: row.try_get::<i64, _>("is_disabled")? != 0,
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        max_fee: row.try_get("max_fee")?,
        used_fee: row.try_get("used_fee")?,
        held: row.try_get("held")?,
        limits: RateLimits::from_row(row, "")?,
        revision: row.try_get("revision")?,
        used_times: row.try_get("used_times")?,
        created_at: row.try_get("created_at")?,
        used_at: row.try_get("used_at")?,
        expired_at: row.try_get("expired_at")?,
        grant_id: row.try_get("grant_id")?,
    })
}

/// Writes a key's row; `grant_id` marks the key of an OAuth grant.
pub(crate) async fn insert_key_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: &NewKey,
    grant_id: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, key_hash, key_prefix, key_last4, remark, is_admin, \
         permissions, max_fee, created_at, expired_at, rpm, tpm, concurrency, grant_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&new.id)
    .bind(new.user_id)
    .bind(&new.key_hash)
    .bind(&new.key_prefix)
    .bind(&new.key_last4)
    .bind(&new.remark)
    .bind(new.is_admin as i64)
    .bind(permissions_json(&new.permissions))
    .bind(new.max_fee)
    .bind(now_ms())
    .bind(new.expired_at)
    .bind(new.limits.rpm)
    .bind(new.limits.tpm)
    .bind(new.limits.concurrency)
    .bind(grant_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn permissions_json(permissions: &[String]) -> String {
    serde_json::to_string(permissions).unwrap_or_else(|_| "[]".to_string())
}

impl Store {
    /// Inserts a key unless its user already holds `max_keys` keys.
    pub async fn insert_key(&self, new: &NewKey, max_keys: i64) -> Result<ApiKey> {
        let mut tx = self.writer.begin().await?;
        // Writing first takes SQLite's write lock (and PostgreSQL's row lock on
        // the user), so two concurrent inserts cannot both pass the count.
        let touched = sqlx::query("UPDATE users SET id = id WHERE id = $1")
            .bind(new.user_id)
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND grant_id IS NULL",
        )
        .bind(new.user_id)
        .fetch_one(&mut *tx)
        .await?;
        if count >= max_keys {
            return Err(StoreError::Conflict(format!(
                "this user already holds the maximum of {max_keys} API keys"
            )));
        }
        insert_key_row(&mut tx, new, None).await?;
        tx.commit().await?;
        self.get_key(&new.id).await
    }

    pub async fn get_key(&self, id: &str) -> Result<ApiKey> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("API key"))?;
        key_from_row(&row)
    }

    /// The key with this hash and its owner, for authentication.
    pub async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<(ApiKey, User)>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, u.id AS u_id, u.name, u.group_name, u.tier, \
             u.membership_expires_at, u.balance, u.free_balance, u.held AS u_held, \
             u.rpm AS u_rpm, u.tpm AS u_tpm, u.concurrency AS u_concurrency, \
             u.revision AS u_revision, u.created_at AS u_created_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let key = key_from_row(&row)?;
        let user = User {
            id: row.try_get("u_id")?,
            name: row.try_get("name")?,
            group_name: row.try_get("group_name")?,
            tier: row.try_get("tier")?,
            membership_expires_at: row.try_get("membership_expires_at")?,
            balance: row.try_get("balance")?,
            free_balance: row.try_get("free_balance")?,
            held: row.try_get("u_held")?,
            limits: RateLimits::from_row(&row, "u_")?,
            revision: row.try_get("u_revision")?,
            created_at: row.try_get("u_created_at")?,
        };
        Ok(Some((key, user)))
    }

    /// The id of the user's key matching `id_or_hash` (either its id or its hash).
    pub async fn resolve_user_key(&self, user_id: i64, id: &str, hash: &str) -> Result<ApiKey> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 AND k.grant_id IS NULL \
             AND (k.id = $2 OR k.key_hash = $3)"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(id)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("API key"))?;
        key_from_row(&row)
    }

    pub async fn list_keys(&self, user_id: i64) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 AND k.grant_id IS NULL \
             ORDER BY k.created_at, k.id"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    pub async fn update_key(&self, id: &str, update: &KeyUpdate) -> Result<ApiKey> {
        let key = self.get_key(id).await?;
        let limits = update.limits.applied_to(key.limits);
        sqlx::query(
            "UPDATE api_keys SET remark = $1, expired_at = $2, max_fee = $3, permissions = $4, \
             is_disabled = $5, rpm = $6, tpm = $7, concurrency = $8, revision = revision + 1 \
             WHERE id = $9",
        )
        .bind(update.remark.clone().unwrap_or(key.remark))
        .bind(update.expired_at.unwrap_or(key.expired_at))
        .bind(update.max_fee.unwrap_or(key.max_fee))
        .bind(permissions_json(
            update.permissions.as_deref().unwrap_or(&key.permissions),
        ))
        .bind(update.is_disabled.unwrap_or(key.is_disabled) as i64)
        .bind(limits.rpm)
        .bind(limits.tpm)
        .bind(limits.concurrency)
        .bind(id)
        .execute(&self.writer)
        .await?;
        self.get_key(id).await
    }

    pub async fn delete_key(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("API key"));
        }
        Ok(())
    }
}
