//! Account operations shared by the admin API, the user API and the CLI.

use serde_json::{json, Value};
use store::{ApiKey, NewKey, NewUser, Store, User};

use crate::config::Config;
use crate::error::ApiError;
use crate::money::{format_credits, format_usd};
use crate::secrets::{hash_secret, new_api_key, new_key_id};
use crate::time::format_ms;

/// What a new key may do.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    pub remark: String,
    pub is_admin: bool,
    pub permissions: Vec<String>,
    pub max_fee: i64,
    pub expired_at: Option<i64>,
}

/// Creates a key and returns it with its secret, which is never stored.
pub async fn create_key(
    store: &Store,
    config: &Config,
    user_id: i64,
    options: KeyOptions,
) -> Result<(ApiKey, String), ApiError> {
    let secret = new_api_key();
    let new = NewKey {
        id: new_key_id(),
        user_id,
        key_hash: hash_secret(&secret),
        key_prefix: secret[..7].to_string(),
        key_last4: secret[secret.len() - 4..].to_string(),
        remark: options.remark,
        is_admin: options.is_admin,
        permissions: options.permissions,
        max_fee: options.max_fee,
        expired_at: options.expired_at,
    };
    let key = store.insert_key(&new, config.max_keys_per_user).await?;
    Ok((key, secret))
}

/// Creates a user with a first, admin-capable key (it may manage the user's
/// other keys). Returns the user and that key's secret.
pub async fn create_user(
    store: &Store,
    config: &Config,
    new: &NewUser,
) -> Result<(User, ApiKey, String), ApiError> {
    if new.name.trim().is_empty() {
        return Err(ApiError::BadRequest("A user needs a name.".into()));
    }
    let user = store.create_user(new).await?;
    let (key, secret) = create_key(
        store,
        config,
        user.id,
        KeyOptions {
            remark: "admin".into(),
            is_admin: true,
            ..KeyOptions::default()
        },
    )
    .await?;
    Ok((user, key, secret))
}

/// A user as the admin API and CLI show it.
pub fn user_json(user: &User, config: &Config) -> Value {
    let cpu = config.credits_per_usd;
    json!({
        "id": user.id,
        "name": user.name,
        "group": user.group_name,
        "tier": user.tier,
        "membership_expires_at": user.membership_expires_at.map(format_ms),
        "balance": format_credits(user.balance, cpu),
        "free_balance": format_credits(user.free_balance, cpu),
        "held": format_credits(user.held, cpu),
        "balance_usd": format_usd(user.balance),
        "free_balance_usd": format_usd(user.free_balance),
        "balance_nano_usd": user.balance,
        "free_balance_nano_usd": user.free_balance,
        "created_at": format_ms(user.created_at),
    })
}

/// A key as listings show it: masked, never the secret.
pub fn key_json(key: &ApiKey, config: &Config) -> Value {
    let cpu = config.credits_per_usd;
    json!({
        "id": key.id,
        "key": key.masked(),
        "user_id": key.user_id.to_string(),
        "remark": key.remark,
        "created_at": format_ms(key.created_at),
        "used_at": key.used_at.map(format_ms),
        "expired_at": key.expired_at.map(format_ms),
        "used_times": key.used_times.to_string(),
        "used_fee": format_credits(key.used_fee, cpu),
        "max_fee": format_credits(key.max_fee, cpu),
        "permissions": key.permissions,
        "is_admin": key.is_admin,
        "is_disabled": key.is_disabled,
    })
}
