//! Stripe's error shape: `{"error": {"type", "message", "param"?, "code"?}}`
//! with the HTTP status Stripe gives it.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// An error answer of the fake, in Stripe's shape (also what the
/// [`crate::FakeStripe`] control helpers fail with).
#[derive(Clone, Debug, PartialEq)]
pub struct FakeError {
    /// The HTTP status (400, 401, 404…).
    pub status: u16,
    /// The whole body: `{"error": {...}}`.
    pub body: Value,
}

impl FakeError {
    fn new(
        status: u16,
        kind: &str,
        message: String,
        param: Option<&str>,
        code: Option<&str>,
    ) -> Self {
        let mut error = Map::new();
        error.insert("type".into(), json!(kind));
        if let Some(code) = code {
            error.insert("code".into(), json!(code));
        }
        error.insert("message".into(), json!(message));
        if let Some(param) = param {
            error.insert("param".into(), json!(param));
        }
        FakeError {
            status,
            body: json!({ "error": error }),
        }
    }

    /// A 400 `invalid_request_error` about `param`.
    pub(crate) fn invalid(message: impl Into<String>, param: &str) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            message.into(),
            Some(param),
            None,
        )
    }

    /// A 400 `invalid_request_error` about the object's state (no param).
    pub(crate) fn state(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message.into(), None, None)
    }

    /// A 400 with a `code`, e.g. `charge_already_refunded`.
    pub(crate) fn coded(message: impl Into<String>, param: Option<&str>, code: &str) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            message.into(),
            param,
            Some(code),
        )
    }

    pub(crate) fn missing(param: &str) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            format!("Missing required param: {param}."),
            Some(param),
            Some("parameter_missing"),
        )
    }

    /// The object named in the URL does not exist: a 404 (param `id`).
    pub(crate) fn no_such(kind: &str, id: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            format!("No such {kind}: '{id}'"),
            Some("id"),
            Some("resource_missing"),
        )
    }

    /// An object named by a parameter does not exist: Stripe answers those
    /// with a 400 (same code as the 404 of a URL's object).
    pub(crate) fn no_such_param(kind: &str, id: &str, param: &str) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            format!("No such {kind}: '{id}'"),
            Some(param),
            Some("resource_missing"),
        )
    }

    pub(crate) fn unauthorized(message: String) -> Self {
        Self::new(401, "invalid_request_error", message, None, None)
    }

    pub(crate) fn unknown_url(method: &str, path: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs \
                 or we can help at https://support.stripe.com/."
            ),
            None,
            None,
        )
    }

    pub(crate) fn idempotency(message: String) -> Self {
        Self::new(400, "idempotency_error", message, None, None)
    }

    /// The error's `message`.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message())
    }
}

impl std::error::Error for FakeError {}

impl IntoResponse for FakeError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// A JSON answer with `status`.
pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
