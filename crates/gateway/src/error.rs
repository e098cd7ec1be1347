//! The gateway's errors and their one mapping to each client protocol's shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::openai::ErrorBody;

/// Everything a request can fail with, as the client should understand it.
/// Messages never contain upstream keys or internal details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("Incorrect API key provided. You can find your API key in your Tollgate account.")]
    InvalidApiKey,
    #[error("This API key has been disabled.")]
    KeyDisabled,
    #[error("This API key has expired.")]
    KeyExpired,
    #[error("This API key may not use the model `{0}`.")]
    ModelNotAllowed(String),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("You exceeded your current quota: the balance cannot cover this request.")]
    InsufficientBalance,
    #[error("This API key reached its spending limit.")]
    KeyLimitReached,
    /// A rate limit refused the request: `what` names it (e.g. "requests
    /// per minute for this model"); retry after `retry_after_secs` (`None`:
    /// waiting does not help — the request asks more than the limit).
    #[error("Rate limit reached: {what}.{}", retry_hint(*.retry_after_secs))]
    RateLimited {
        what: String,
        retry_after_secs: Option<u64>,
    },
    #[error("This operation needs an admin-capable API key.")]
    AdminKeyRequired,
    #[error("Invalid admin token.")]
    InvalidAdminToken,
    #[error("{0} not found.")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("The upstream provider could not be reached.")]
    UpstreamUnreachable,
    #[error("The upstream provider did not answer in time.")]
    UpstreamTimeout,
    #[error("The upstream provider failed (status {0}).")]
    UpstreamFailed(u16),
    #[error("The upstream provider rejected the gateway's credentials.")]
    UpstreamAuth,
    #[error("The upstream provider is overloaded; retry shortly.")]
    UpstreamOverloaded,
    #[error("The gateway is overloaded; retry shortly.")]
    Overloaded,
    /// Redis, where limits and balances are shared, cannot be reached and
    /// the policy is to refuse.
    #[error("Rate limits and balances cannot be checked right now; retry shortly.")]
    LimitsUnavailable,
    #[error("The upstream stream was reset before it finished.")]
    UpstreamReset,
    #[error("The gateway failed to process the request.")]
    Internal,
    /// An override rule refused the request (`status` is a 4xx).
    #[error("{message}")]
    Blocked { status: u16, message: String },
    /// A body (an upload) past what is allowed: the message says what.
    #[error("{0}")]
    TooLarge(String),
    /// Users' files cannot be read or written right now.
    #[error("File storage is unavailable; retry shortly.")]
    StorageUnavailable,
    /// Top-ups are not configured on this gateway.
    #[error("Top-ups are not enabled on this gateway.")]
    PaymentsOff,
    /// The payment processor failed or refused: the message says what,
    /// without secrets.
    #[error("The payment processor failed: {0}")]
    PaymentProvider(String),
    /// The OAuth flow or the open API refused: `kind` is OhMyGPT's
    /// `errorType` (or RFC 6749's error code), `status` a 4xx.
    #[error("{message}")]
    OAuth {
        status: u16,
        kind: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            InvalidApiKey | KeyExpired | InvalidAdminToken => StatusCode::UNAUTHORIZED,
            KeyDisabled | ModelNotAllowed(_) | AdminKeyRequired => StatusCode::FORBIDDEN,
            ModelNotFound(_) | NotFound(_) => StatusCode::NOT_FOUND,
            BadRequest(_) => StatusCode::BAD_REQUEST,
            Conflict(_) => StatusCode::CONFLICT,
            InsufficientBalance | KeyLimitReached | RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            UpstreamUnreachable | UpstreamFailed(_) | UpstreamAuth => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            UpstreamOverloaded | Overloaded | LimitsUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamReset => StatusCode::BAD_GATEWAY,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Blocked { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN)
            }
            TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            PaymentsOff => StatusCode::NOT_FOUND,
            PaymentProvider(_) => StatusCode::BAD_GATEWAY,
            OAuth { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
        }
    }

    /// OpenAI's `type` and `code` for this error.
    fn openai_kind(&self) -> (&'static str, Option<&'static str>) {
        use ApiError::*;
        match self {
            InvalidApiKey => ("invalid_request_error", Some("invalid_api_key")),
            KeyExpired => ("invalid_request_error", Some("key_expired")),
            InvalidAdminToken => ("invalid_request_error", Some("invalid_admin_token")),
            KeyDisabled => ("permission_error", Some("key_disabled")),
            ModelNotAllowed(_) => ("permission_error", Some("model_not_allowed")),
            AdminKeyRequired => ("permission_error", Some("admin_key_required")),
            ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            NotFound(_) => ("invalid_request_error", Some("not_found")),
            BadRequest(_) => ("invalid_request_error", None),
            Conflict(_) => ("invalid_request_error", Some("conflict")),
            InsufficientBalance => ("insufficient_quota", Some("insufficient_quota")),
            KeyLimitReached => ("insufficient_quota", Some("key_limit_reached")),
            RateLimited { .. } => ("requests", Some("rate_limit_exceeded")),
            UpstreamUnreachable => ("api_error", Some("upstream_unreachable")),
            UpstreamTimeout => ("api_error", Some("upstream_timeout")),
            UpstreamFailed(_) => ("api_error", Some("upstream_error")),
            UpstreamAuth => ("api_error", Some("upstream_auth_failed")),
            UpstreamOverloaded => ("api_error", Some("upstream_overloaded")),
            Overloaded => ("api_error", Some("gateway_overloaded")),
            LimitsUnavailable => ("api_error", Some("limits_unavailable")),
            UpstreamReset => ("api_error", Some("upstream_reset")),
            Internal => ("api_error", Some("internal_error")),
            Blocked { .. } => ("invalid_request_error", Some("blocked_by_rule")),
            TooLarge(_) => ("invalid_request_error", Some("too_large")),
            StorageUnavailable => ("api_error", Some("storage_unavailable")),
            PaymentsOff => ("invalid_request_error", Some("payments_disabled")),
            PaymentProvider(_) => ("api_error", Some("payment_provider_error")),
            OAuth { kind, .. } => ("invalid_request_error", Some(kind)),
        }
    }

    pub fn openai_body(&self) -> ErrorBody {
        let (kind, code) = self.openai_kind();
        ErrorBody::new(self.to_string(), kind, code)
    }
}

/// The error shape a client expects: its protocol's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error": {"message", "type", "param", "code"}}`
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}`
    Anthropic,
}

impl Shape {
    /// The shape a path's clients expect (`None`: OhMyGPT's envelope).
    pub fn of_path(path: &str) -> Option<Shape> {
        // Under a coding-agent mount, the path below it decides.
        let path = crate::api::AGENT_MOUNTS
            .iter()
            .find_map(|mount| path.strip_prefix(mount))
            .unwrap_or(path);
        if path.starts_with("/api/") {
            None
        } else if path.starts_with("/v1/messages") || path.starts_with("/v1/complete") {
            Some(Shape::Anthropic)
        } else {
            Some(Shape::OpenAi)
        }
    }
}

impl ApiError {
    /// Anthropic's status and error `type` for this error. Anthropic answers
    /// an exhausted balance with 400 `invalid_request_error` ("credit balance
    /// too low"), which clients do not retry, unlike a 429.
    fn anthropic_kind(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            InvalidApiKey | KeyExpired | InvalidAdminToken => {
                (StatusCode::UNAUTHORIZED, "authentication_error")
            }
            KeyDisabled | ModelNotAllowed(_) | AdminKeyRequired => {
                (StatusCode::FORBIDDEN, "permission_error")
            }
            ModelNotFound(_) | NotFound(_) | PaymentsOff => {
                (StatusCode::NOT_FOUND, "not_found_error")
            }
            BadRequest(_) | Conflict(_) | InsufficientBalance | KeyLimitReached => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            Blocked { .. } | TooLarge(_) | OAuth { .. } => (self.status(), "invalid_request_error"),
            UpstreamUnreachable | UpstreamFailed(_) | UpstreamAuth | UpstreamReset | Internal
            | PaymentProvider(_) => (self.status(), "api_error"),
            UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error"),
            // Anthropic's own "overloaded" status, which its clients retry.
            UpstreamOverloaded | Overloaded | LimitsUnavailable | StorageUnavailable => (
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "overloaded_error",
            ),
        }
    }

    /// This error as `shape` expects it.
    pub fn render(&self, shape: Shape) -> Response {
        let mut response = match shape {
            Shape::OpenAi => (self.status(), Json(self.openai_body())).into_response(),
            Shape::Anthropic => {
                let (status, kind) = self.anthropic_kind();
                let body = protocol::anthropic::error_body(kind, &self.to_string());
                (status, Json(body)).into_response()
            }
        };
        if let ApiError::RateLimited {
            retry_after_secs: Some(secs),
            ..
        } = self
        {
            // The official SDKs wait this long before their retry.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*secs),
            );
        }
        response
    }
}

/// OpenAI routes (and the admin API) answer errors in OpenAI's shape.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.render(Shape::OpenAi)
    }
}

fn retry_hint(retry_after_secs: Option<u64>) -> String {
    match retry_after_secs {
        Some(secs) => format!(" Retry after {secs} s."),
        None => " The request asks more than the limit allows at all.".into(),
    }
}

/// Each layer's errors become the client's here, and nowhere else.
impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::InvalidApiKey => ApiError::InvalidApiKey,
            AuthError::KeyDisabled => ApiError::KeyDisabled,
            AuthError::KeyExpired => ApiError::KeyExpired,
            AuthError::AdminKeyRequired => ApiError::AdminKeyRequired,
            AuthError::InvalidAdminToken => ApiError::InvalidAdminToken,
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<crate::routing::RouteError> for ApiError {
    fn from(e: crate::routing::RouteError) -> Self {
        use crate::routing::RouteError;
        match e {
            RouteError::ModelNotFound(model) => ApiError::ModelNotFound(model),
            RouteError::ModelNotAllowed(model) => ApiError::ModelNotAllowed(model),
            RouteError::NoChannel => ApiError::UpstreamUnreachable,
        }
    }
}

impl From<crate::billing::BillingError> for ApiError {
    fn from(e: crate::billing::BillingError) -> Self {
        use crate::billing::BillingError;
        match e {
            BillingError::InsufficientBalance => ApiError::InsufficientBalance,
            BillingError::KeyLimitReached => ApiError::KeyLimitReached,
            BillingError::Overloaded => ApiError::Overloaded,
            BillingError::Store(message) => {
                tracing::error!(error = %message, "store error while holding");
                ApiError::Internal
            }
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::NotFound(what) => ApiError::NotFound(capitalise(what)),
            store::StoreError::Conflict(msg) => ApiError::Conflict(msg),
            store::StoreError::InsufficientBalance => {
                ApiError::BadRequest("The balance is too low for this debit.".into())
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal
            }
        }
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
