//! `GET /admin/channels`: every channel of every model, as it stands; and
//! an operator's switch to take one out of service or bring it back.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::respond;
use crate::auth::authenticate_admin;
use crate::error::ApiError;
use crate::routing::health::State as Health;
use crate::routing::Channel;
use crate::state::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/channels", get(list))
        .route("/admin/channels/{model}/{index}/disable", post(disable))
        .route("/admin/channels/{model}/{index}/enable", post(enable))
}

fn channel_json(app: &App, model: &str, index: usize, channel: &Channel, now: Instant) -> Value {
    let (ratio, requests) = channel.health.recent(&app.config.failover.health(), now);
    let mut entry = json!({
        "model": model,
        "index": index,
        "provider": channel.provider.name,
        "upstream_model": channel.model.upstream_model,
        "priority": channel.weight.priority,
        "weight": channel.weight.weight,
        "recent_requests": requests,
        "recent_failure_ratio": ratio,
    });
    let (state, detail) = match channel.health.state() {
        Health::Healthy => ("healthy", json!(null)),
        Health::CoolingDown { until, .. } => (
            "cooling_down",
            json!({"seconds_left": until.saturating_duration_since(now).as_secs()}),
        ),
        Health::HalfOpen { .. } => ("half_open", json!(null)),
        Health::Disabled { reason } => ("disabled", json!({"reason": reason})),
    };
    entry["state"] = json!(state);
    if !detail.is_null() {
        entry["detail"] = detail;
    }
    entry
}

async fn list(State(app): State<App>, headers: HeaderMap) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let now = Instant::now();
            let mut models: Vec<&String> = app.channels.keys().collect();
            models.sort();
            let data: Vec<Value> = models
                .into_iter()
                .flat_map(|model| {
                    app.channels[model]
                        .iter()
                        .enumerate()
                        .map(|(i, c)| channel_json(&app, model, i, c, now))
                        .collect::<Vec<_>>()
                })
                .collect();
            Ok(Json(json!({"object": "list", "data": data})))
        }
        .await,
    )
}

fn channel<'a>(app: &'a App, model: &str, index: usize) -> Result<&'a Channel, ApiError> {
    app.channels
        .get(model)
        .and_then(|channels| channels.get(index))
        .ok_or_else(|| ApiError::NotFound(format!("Channel {index} of model `{model}`")))
}

/// An operator's switch on one channel.
#[derive(Clone, Copy)]
enum Switch {
    Disable,
    Enable,
}

async fn disable(
    State(app): State<App>,
    headers: HeaderMap,
    Path((model, index)): Path<(String, usize)>,
) -> Response {
    switch(app, headers, model, index, Switch::Disable).await
}

async fn enable(
    State(app): State<App>,
    headers: HeaderMap,
    Path((model, index)): Path<(String, usize)>,
) -> Response {
    switch(app, headers, model, index, Switch::Enable).await
}

async fn switch(app: App, headers: HeaderMap, model: String, index: usize, to: Switch) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let c = channel(&app, &model, index)?;
            match to {
                Switch::Disable => c.health.disable("disabled by an operator"),
                Switch::Enable => c.health.enable(),
            }
            Ok(Json(channel_json(&app, &model, index, c, Instant::now())))
        }
        .await,
    )
}
