//! Authentication: a bearer key becomes a [`Principal`], or an
//! [`AuthError`]. It works on the key cache and the store it is given, not
//! on the gateway's state; the HTTP side (the `Caller` extractor, the
//! errors in the client's shape) is `api::caller`.

use hashbrown::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use store::{ApiKey, Store, StoreError, User};

use crate::secrets::{hash_secret, hashes_equal};

/// Why a caller is not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no such API key")]
    InvalidApiKey,
    #[error("the key is disabled")]
    KeyDisabled,
    #[error("the key has expired")]
    KeyExpired,
    #[error("the operation needs an admin-capable key")]
    AdminKeyRequired,
    #[error("invalid admin token")]
    InvalidAdminToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is calling: the key used and the user it belongs to.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: ApiKey,
    pub user: User,
}

impl Principal {
    /// Whether this key may use `model` (an empty permission list allows all).
    pub fn may_use(&self, model: &str) -> bool {
        self.key.permissions.is_empty() || self.key.permissions.iter().any(|m| m == model)
    }

    pub fn require_admin_key(&self) -> Result<(), AuthError> {
        if self.key.is_admin {
            Ok(())
        } else {
            Err(AuthError::AdminKeyRequired)
        }
    }
}

/// The secret a client presented: `Authorization: Bearer …` or `x-api-key`.
pub fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Most keys remembered before the cache starts over.
const AUTH_CACHE_CAPACITY: usize = 100_000;

/// Recently authenticated keys, so that a busy key costs no database read per
/// request. Entries live for a short time (`auth_cache_ttl_ms`); changes made
/// through this instance clear the cache at once, changes made elsewhere (the
/// CLI, another instance) take effect within the time to live.
pub struct AuthCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, (Arc<Principal>, Instant)>>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> AuthCache {
        AuthCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<Arc<Principal>> {
        let entries = self.entries.read().ok()?;
        let (principal, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| principal.clone())
    }

    fn put(&self, hash: String, principal: Arc<Principal>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= AUTH_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(hash, (principal, Instant::now()));
        }
    }

    /// Forgets every key: called after any change to keys or users.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

/// Resolves the caller's key, refusing unknown, disabled and expired keys.
pub async fn authenticate(
    cache: &AuthCache,
    store: &Store,
    headers: &HeaderMap,
) -> Result<Arc<Principal>, AuthError> {
    let secret = presented_secret(headers).ok_or(AuthError::InvalidApiKey)?;
    let hash = hash_secret(secret);
    let principal = match cache.get(&hash) {
        Some(p) => p,
        None => {
            let (key, user) = store
                .find_key_by_hash(&hash)
                .await?
                .ok_or(AuthError::InvalidApiKey)?;
            let principal = Arc::new(Principal { key, user });
            cache.put(hash, principal.clone());
            principal
        }
    };
    if principal.key.is_disabled {
        return Err(AuthError::KeyDisabled);
    }
    if principal
        .key
        .expired_at
        .is_some_and(|at| at <= store::now_ms())
    {
        return Err(AuthError::KeyExpired);
    }
    Ok(principal)
}

/// Checks the operator's admin token against its hash.
pub fn authenticate_admin(token_hash: &str, headers: &HeaderMap) -> Result<(), AuthError> {
    let secret = presented_secret(headers).ok_or(AuthError::InvalidAdminToken)?;
    if hashes_equal(&hash_secret(secret), token_hash) {
        Ok(())
    } else {
        Err(AuthError::InvalidAdminToken)
    }
}
