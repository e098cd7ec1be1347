//! The caller of an API route: authentication (`crate::auth`) on the
//! gateway's key cache and store, its errors in the route's shape.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::auth::{self, Principal};
use crate::error::{ApiError, Shape};
use crate::state::App;

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

/// The caller's key, authenticated.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Arc<Principal>, ApiError> {
    Ok(auth::authenticate(&app.auth_cache, &app.store, headers).await?)
}

/// The operator's admin token, checked.
pub fn authenticate_admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    Ok(auth::authenticate_admin(&app.admin_token_hash, headers)?)
}
