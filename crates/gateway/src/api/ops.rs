//! Operations endpoints: liveness and Prometheus metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::App;

/// `GET|HEAD /`: clients such as Claude Code probe the base URL.
pub async fn root() -> Response {
    Json(json!({"name": "tollgate", "status": "ok"})).into_response()
}

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
