//! Console sessions: a random token in an `HttpOnly`, `SameSite=Lax` cookie
//! (`Secure` when the console is reached over HTTPS), only its SHA-256 in
//! the database, so any instance serves it. Each session has a CSRF token
//! that every state-changing form carries.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};

use crate::secrets::hash_secret;
use crate::state::App;

pub const COOKIE: &str = "tg_session";
/// A session lives this long after its last use.
pub const TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// However it is used, a session ends this long after its login.
pub const MAX_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;
/// A session's expiry is pushed on at most this often.
const TOUCH_EVERY_MS: i64 = 5 * 60 * 1000;

/// A logged-in visitor.
pub struct Member(pub store::Session);

impl FromRequestParts<App> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let login = || Redirect::to("/console/login").into_response();
        let Some(token) = cookie(&parts.headers, COOKIE) else {
            return Err(login());
        };
        let id_hash = hash_secret(&token);
        let session = match app.store.session(&id_hash).await {
            Ok(session) => session,
            Err(store::StoreError::NotFound(_)) => return Err(login()),
            Err(e) => {
                tracing::error!(error = %e, "a console session could not be read");
                return Err(crate::error::ApiError::Internal.into_response());
            }
        };
        let now = store::now_ms();
        let ends = session.created_at.saturating_add(MAX_LIFETIME_MS);
        if now >= ends {
            if let Err(e) = app.store.close_session(session.user.id, &id_hash).await {
                tracing::warn!(error = %e, "a console session past its lifetime was not closed");
            }
            return Err(login());
        }
        if now - session.last_seen_at > TOUCH_EVERY_MS {
            let expires = (now + TTL_MS).min(ends);
            if let Err(e) = app.store.touch_session(&id_hash, expires).await {
                tracing::warn!(error = %e, "a console session's expiry was not pushed on");
            }
        }
        Ok(Member(session))
    }
}

/// The value of cookie `name`, if the request has it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether cookies are `Secure`: always when configured so, else when the
/// request came over HTTPS.
pub fn secure_cookies(app: &App, headers: &HeaderMap) -> bool {
    app.config.console.secure_cookies || over_https(headers)
}

/// Whether the console was reached over HTTPS (directly, or through a proxy
/// that says so).
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value of a session `token` (empty and expired: the
/// cookie is removed).
pub fn set_cookie(token: &str, secure: bool) -> String {
    let lifetime = match token.is_empty() {
        true => "Max-Age=0".to_string(),
        false => format!("Max-Age={}", TTL_MS / 1000),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Lax; {lifetime}{secure}")
}

/// Whether `given` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(session: &store::Session, given: Option<&str>) -> bool {
    given.is_some_and(|g| crate::secrets::hashes_equal(g, &session.csrf_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_set_safely() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; tg_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        let set = set_cookie("abc", true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.ends_with("Secure")
        );
        assert!(set_cookie("", false).contains("Max-Age=0"));
        assert!(!set_cookie("abc", false).contains("Secure"));
    }
}
