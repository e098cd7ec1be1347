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
    let mut text = app.metrics.render();
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
            app.settlements.pending(),
        ),
    ] {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
