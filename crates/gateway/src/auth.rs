//! Authentication: a bearer key becomes a [`Principal`], or an error.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use store::{ApiKey, User};

use crate::error::{ApiError, Shape};
use crate::secrets::{hash_secret, hashes_equal};
use crate::state::App;

/// Who is calling: the key used and the user it belongs to.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: ApiKey,
    pub user: User,
}

impl Principal {
    /// Whether this key may use `model` (an empty permission list allows all).
    pub fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if self.key.permissions.is_empty() || self.key.permissions.iter().any(|m| m == model) {
            Ok(())
        } else {
            Err(ApiError::ModelNotAllowed(model.to_string()))
        }
    }

    pub fn require_admin_key(&self) -> Result<(), ApiError> {
        if self.key.is_admin {
            Ok(())
        } else {
            Err(ApiError::AdminKeyRequired)
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

/// The authenticated caller, as a handler argument. Put it before the
/// arguments that read the request, so that an anonymous caller learns
/// nothing — not even whether its input is well formed. As an extractor it
/// runs before the body is read (axum extracts the body last), so a request
/// without a valid key is refused before its body is buffered; the refusal
/// is in the route's error shape.
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<App> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        authenticate(app, &parts.headers)
            .await
            .map(Caller)
            .map_err(|e| match Shape::of_path(parts.uri.path()) {
                Some(shape) => e.render(shape),
                None => e.into_response(),
            })
    }
}

/// Resolves the caller's key, refusing unknown, disabled and expired keys.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
    let secret = presented_secret(headers).ok_or(ApiError::InvalidApiKey)?;
    let hash = hash_secret(secret);
    let principal = match app.auth_cache.get(&hash) {
        Some(p) => p,
        None => {
            let (key, user) = app
                .store
                .find_key_by_hash(&hash)
                .await?
                .ok_or(ApiError::InvalidApiKey)?;
            let principal = Arc::new(Principal { key, user });
            app.auth_cache.put(hash, principal.clone());
            principal
        }
    };
    if principal.key.is_disabled {
        return Err(ApiError::KeyDisabled);
    }
    if principal
        .key
        .expired_at
        .is_some_and(|at| at <= store::now_ms())
    {
        return Err(ApiError::KeyExpired);
    }
    Ok(principal)
}

/// Checks the operator's admin token.
pub fn authenticate_admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let secret = presented_secret(headers).ok_or(ApiError::InvalidAdminToken)?;
    if hashes_equal(&hash_secret(secret), &app.admin_token_hash) {
        Ok(())
    } else {
        Err(ApiError::InvalidAdminToken)
    }
}
