//! Account operations shared by the admin API, the user API and the CLI.

use serde_json::{json, Value};
use store::{
    ApiKey, BalanceChange, KeyUpdate, NewKey, NewUser, RateLimits, Store, User, UserUpdate,
};

use crate::config::Config;
use crate::error::ApiError;
use crate::limits::fields as limit_fields;
use crate::money::{format_credits, format_usd, MAX_AMOUNT_NANO};
use crate::secrets::{hash_secret, new_api_key, new_key_id};
use crate::time::format_ms;

/// Longest user, group and tier name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest remark of a key.
pub const MAX_REMARK_CHARS: usize = 256;
/// Longest reason of a balance change (it is kept in the ledger).
pub const MAX_REASON_CHARS: usize = 1024;
/// Longest model name in a key's permissions, and most names it may list.
pub const MAX_MODEL_NAME_CHARS: usize = 128;
pub const MAX_PERMISSIONS: usize = 1024;

/// Refuses a text longer than `max` characters, naming its field.
pub fn check_length(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(ApiError::BadRequest(format!(
            "`{field}` is too long: {chars} characters (at most {max})."
        )));
    }
    Ok(())
}

/// A key's remark and model list, when given, within their limits.
fn check_key_fields(remark: Option<&str>, permissions: Option<&[String]>) -> Result<(), ApiError> {
    if let Some(remark) = remark {
        check_length("remark", remark, MAX_REMARK_CHARS)?;
    }
    let permissions = permissions.unwrap_or_default();
    if permissions.len() > MAX_PERMISSIONS {
        return Err(ApiError::BadRequest(format!(
            "`permissions` lists {} models (at most {MAX_PERMISSIONS}).",
            permissions.len()
        )));
    }
    for model in permissions {
        let chars = model.chars().count();
        if chars > MAX_MODEL_NAME_CHARS {
            return Err(ApiError::BadRequest(format!(
                "`permissions` names a model of {chars} characters (at most {MAX_MODEL_NAME_CHARS})."
            )));
        }
    }
    Ok(())
}

/// What a new key may do.
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    pub remark: String,
    pub is_admin: bool,
    pub permissions: Vec<String>,
    pub max_fee: i64,
    pub expired_at: Option<i64>,
    /// Rate limits of this key alone (the user's still apply).
    pub limits: RateLimits,
}

/// Creates a key and returns it with its secret, which is never stored.
pub async fn create_key(
    store: &Store,
    config: &Config,
    user_id: i64,
    options: KeyOptions,
) -> Result<(ApiKey, String), ApiError> {
    check_key_fields(Some(&options.remark), Some(&options.permissions))?;
    check_max_fee("max_fee", options.max_fee)?;
    limit_fields::check(&options.limits)?;
    let secret = new_api_key();
    let new = key_row(user_id, &secret, options);
    let key = store.insert_key(&new, config.max_keys_per_user).await?;
    Ok((key, secret))
}

/// The row of a new key whose `secret` (a generated, ASCII key or token)
/// only the caller sees: its hash and its masked ends.
pub fn key_row(user_id: i64, secret: &str, options: KeyOptions) -> NewKey {
    NewKey {
        id: new_key_id(),
        user_id,
        key_hash: hash_secret(secret),
        key_prefix: secret[..7].to_string(),
        key_last4: secret[secret.len() - 4..].to_string(),
        remark: options.remark,
        is_admin: options.is_admin,
        permissions: options.permissions,
        max_fee: options.max_fee,
        expired_at: options.expired_at,
        limits: options.limits,
    }
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
    check_length("name", &new.name, MAX_NAME_CHARS)?;
    check_length("group", &new.group_name, MAX_NAME_CHARS)?;
    check_length("tier", &new.tier, MAX_NAME_CHARS)?;
    limit_fields::check(&new.limits)?;
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

/// Changes a user's group, tier, membership expiry or rate limits.
pub async fn update_user(store: &Store, id: i64, update: &UserUpdate) -> Result<User, ApiError> {
    limit_fields::check_update(&update.limits)?;
    if let Some(group) = &update.group_name {
        check_length("group", group, MAX_NAME_CHARS)?;
    }
    if let Some(tier) = &update.tier {
        check_length("tier", tier, MAX_NAME_CHARS)?;
    }
    Ok(store.update_user(id, update).await?)
}

/// Changes a key's remark, spending limit, models, expiry, state or rate limits.
pub async fn update_key(store: &Store, id: &str, update: &KeyUpdate) -> Result<ApiKey, ApiError> {
    check_key_fields(update.remark.as_deref(), update.permissions.as_deref())?;
    limit_fields::check_update(&update.limits)?;
    if let Some(max_fee) = update.max_fee {
        check_max_fee("max_fee", max_fee)?;
    }
    Ok(store.update_key(id, update).await?)
}

/// A key's spending limit (nano-USD, 0 = none) within what Tollgate keeps.
fn check_max_fee(field: &str, max_fee: i64) -> Result<(), ApiError> {
    if !(0..=MAX_AMOUNT_NANO).contains(&max_fee) {
        return Err(ApiError::BadRequest(format!(
            "`{field}` must be between 0 and {} USD.",
            format_usd(MAX_AMOUNT_NANO)
        )));
    }
    Ok(())
}

/// An operator's credit (positive `amount`, nano-USD) or debit (negative)
/// of a user's paid or free balance, with its reason for the ledger. A
/// balance never goes below zero, nor above [`MAX_AMOUNT_NANO`].
pub async fn change_balance(
    store: &Store,
    user_id: i64,
    amount: i64,
    free: bool,
    reason: &str,
) -> Result<User, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::BadRequest(
            "A balance change needs a `reason`.".into(),
        ));
    }
    check_length("reason", reason, MAX_REASON_CHARS)?;
    if amount == 0 {
        return Err(ApiError::BadRequest("The amount must not be zero.".into()));
    }
    if !(-MAX_AMOUNT_NANO..=MAX_AMOUNT_NANO).contains(&amount) {
        return Err(ApiError::BadRequest(format!(
            "The amount is too large: at most {} USD.",
            format_usd(MAX_AMOUNT_NANO)
        )));
    }
    if amount > 0 {
        let user = store.get_user(user_id).await?;
        let current = if free {
            user.free_balance
        } else {
            user.balance
        };
        if current.saturating_add(amount) > MAX_AMOUNT_NANO {
            return Err(ApiError::BadRequest(format!(
                "This credit would take the balance to {} USD; a balance holds at most {} USD.",
                format_usd(current.saturating_add(amount)),
                format_usd(MAX_AMOUNT_NANO)
            )));
        }
    }
    Ok(store
        .change_balance(&BalanceChange {
            user_id,
            amount,
            free,
            reason: reason.to_string(),
        })
        .await?)
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
        "rpm": user.limits.rpm,
        "tpm": user.limits.tpm,
        "concurrency": user.limits.concurrency,
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
        "rpm": key.limits.rpm,
        "tpm": key.limits.tpm,
        "concurrency": key.limits.concurrency,
    })
}
