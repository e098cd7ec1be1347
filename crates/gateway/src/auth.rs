//! Authentication: a bearer key becomes a [`Principal`], or an error.

use axum::http::HeaderMap;
use store::{ApiKey, User};

use crate::error::ApiError;
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

/// Resolves the caller's key, refusing unknown, disabled and expired keys.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let secret = presented_secret(headers).ok_or(ApiError::InvalidApiKey)?;
    let (key, user) = app
        .store
        .find_key_by_hash(&hash_secret(secret))
        .await?
        .ok_or(ApiError::InvalidApiKey)?;
    if key.is_disabled {
        return Err(ApiError::KeyDisabled);
    }
    if key.expired_at.is_some_and(|at| at <= store::now_ms()) {
        return Err(ApiError::KeyExpired);
    }
    Ok(Principal { key, user })
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
