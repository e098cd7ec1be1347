//! Operations endpoints: liveness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::openai::ErrorBody;
use serde_json::json;

use crate::auth::presented_secret;
use crate::config::{resolve_secret, Config};
use crate::secrets::{hash_secret, hashes_equal};
use crate::state::App;

/// `GET|HEAD /`: clients such as Claude Code probe the base URL.
pub async fn root() -> Response {
    Json(json!({"name": "tollgate", "status": "ok"})).into_response()
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /metrics`. The metrics show revenue per model, so they are served
/// to whoever presents `metrics_token` when one is set, and otherwise only
/// on a loopback listener.
pub async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(refusal) = metrics_refusal(&app.config, &headers) {
        return refusal;
    }
    let mut text = app.metrics.render();
    crate::routing::stats::render(&app.catalog.load(), &mut text);
    // Work not yet done: a request that has answered may still be charging.
    for (name, help, value) in [
        (
            "tollgate_in_flight",
            "Upstream exchanges still running (streams are read to their end even when the client left).",
            app.in_flight.count(),
        ),
        (
            "tollgate_settlements_pending",
            "Finished requests whose charge is not yet committed.",
            app.billing.settlements.pending(),
        ),
    ] {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The refusal, in OpenAI's shape, of a scrape that may not see the metrics.
fn metrics_refusal(config: &Config, headers: &HeaderMap) -> Option<Response> {
    let refuse = |status: StatusCode, kind: &str, code: &str, message: &str| {
        (status, Json(ErrorBody::new(message, kind, Some(code)))).into_response()
    };
    match &config.metrics_token {
        Some(token) => {
            let expected = hash_secret(&resolve_secret(token));
            match presented_secret(headers) {
                Some(given) if hashes_equal(&hash_secret(given), &expected) => None,
                _ => Some(refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "invalid_metrics_token",
                    "The metrics need the metrics token: send `Authorization: Bearer <metrics_token>`.",
                )),
            }
        }
        None if config.listens_on_loopback() => None,
        None => Some(refuse(
            StatusCode::FORBIDDEN,
            "permission_error",
            "metrics_token_required",
            "The metrics show revenue per model, so a gateway listening beyond loopback serves them only with a token: set `metrics_token` (a literal or env:VAR) and scrape with `Authorization: Bearer <metrics_token>`.",
        )),
    }
}
