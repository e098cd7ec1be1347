//! The one place an [`Answer`] becomes HTTP: a whole body, an event
//! stream, or an error in the client's protocol (the upstream's own client
//! errors passed through, reshaped when the protocols differ).

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::billing::estimate::Wire;
use crate::error::{ApiError, Shape};
use crate::relay::{Answer, FailureKind, UpstreamFailure};

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Whole {
                status,
                content_type,
                body,
            } => {
                let mut response = (status, body).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
                response
            }
            Answer::Stream(rx) => {
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(Body::from_stream(stream))
                    .unwrap_or_else(|_| ApiError::Internal.into_response())
            }
            Answer::Bytes { content_type, rx } => {
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Body::from_stream(stream))
                    .unwrap_or_else(|_| ApiError::Internal.into_response())
            }
            Answer::Error(error, shape) => error.render(shape),
            Answer::Refused {
                failure,
                upstream,
                client,
            } => refusal(failure, upstream, client),
        }
    }
}

/// The client's error for an upstream failure, from an upstream speaking
/// `upstream`.
fn refusal(failure: UpstreamFailure, upstream: Wire, client: Shape) -> Response {
    let mut response = match failure.kind {
        FailureKind::Gateway(e) => e.render(client),
        FailureKind::PassThrough(status, body) => {
            let same_protocol = matches!(
                (upstream, client),
                (Wire::OpenAi, Shape::OpenAi) | (Wire::Anthropic, Shape::Anthropic)
            );
            let body = if same_protocol {
                body
            } else {
                Bytes::from(reshape_error(&body, status, client).to_string())
            };
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
    };
    for (name, value) in failure.headers {
        response.headers_mut().insert(name, value);
    }
    response
}

/// An upstream error body in the other protocol's shape.
fn reshape_error(body: &[u8], status: StatusCode, client: Shape) -> Value {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = parsed
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    match client {
        Shape::OpenAi => {
            let kind = parsed
                .pointer("/error/type")
                .and_then(Value::as_str)
                .unwrap_or("invalid_request_error");
            serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
        Shape::Anthropic => {
            let kind = match status.as_u16() {
                400 | 422 => "invalid_request_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                _ => "api_error",
            };
            protocol::anthropic::error_body(kind, &message)
        }
    }
}
