//! The operator's hold on the model catalog: `GET /admin/channels`, every
//! channel of every model as it stands; a switch to take one out of
//! service or bring it back; and `POST /admin/reload`, the catalog read
//! again from the configuration file (as `SIGHUP` does).

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::respond;
use crate::api::caller::authenticate_admin;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::routing::health::State as Health;
use crate::routing::Channel;
use crate::state::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/channels", get(list))
        .route("/admin/channels/{model}/{index}/disable", post(disable))
        .route("/admin/channels/{model}/{index}/enable", post(enable))
        .route("/admin/reload", post(reload))
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
    let (served, failed, refused) = channel.stats.attempts();
    let latency = channel.stats.latency();
    let ms = |seconds: f64| (seconds * 1e6).round() / 1e3;
    entry["attempts"] = json!({"served": served, "failed": failed, "refused_key": refused});
    entry["upstream_latency_ms"] = json!({
        "mean": ms(latency.mean()),
        "p95_at_most": latency.quantile_bound(0.95).map(ms),
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
            Ok(Json(json!({"object": "list", "data": all_channels(&app)})))
        }
        .await,
    )
}

/// Every channel of every model as it stands (the console shows the same).
pub(crate) fn all_channels(app: &App) -> Vec<Value> {
    let now = Instant::now();
    let catalog = app.catalog.load();
    let mut models: Vec<&String> = catalog.channels.keys().collect();
    models.sort();
    models
        .into_iter()
        .flat_map(|model| {
            catalog.channels[model]
                .iter()
                .enumerate()
                .map(|(i, c)| channel_json(app, model, i, c, now))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn channel<'a>(catalog: &'a Catalog, model: &str, index: usize) -> Result<&'a Channel, ApiError> {
    catalog
        .channels
        .get(model)
        .and_then(|channels| channels.get(index))
        .ok_or_else(|| ApiError::NotFound(format!("Channel {index} of model `{model}`")))
}

/// An operator's switch on one channel.
#[derive(Clone, Copy)]
pub(crate) enum Switch {
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
            Ok(Json(switch_channel(&app, &model, index, to)?))
        }
        .await,
    )
}

/// Takes a channel out of service or brings it back (on this instance:
/// health is each instance's own); returns it as it now stands.
pub(crate) fn switch_channel(
    app: &App,
    model: &str,
    index: usize,
    to: Switch,
) -> Result<Value, ApiError> {
    let catalog = app.catalog.load();
    let c = channel(&catalog, model, index)?;
    match to {
        Switch::Disable => c.health.disable("disabled by an operator"),
        Switch::Enable => c.health.enable(),
    }
    Ok(channel_json(app, model, index, c, Instant::now()))
}

/// Reloads the catalog; a configuration that does not load is a 400 that
/// changes nothing.
async fn reload(State(app): State<App>, headers: HeaderMap) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let reloading = app.clone();
            let reloaded = tokio::task::spawn_blocking(move || reloading.catalog.reload())
                .await
                .map_err(|_| ApiError::Internal)?
                .map_err(|e| ApiError::BadRequest(format!("The catalog was not reloaded: {e}")))?;
            Ok(Json(json!({
                "reloaded": true,
                "providers": reloaded.providers,
                "models": reloaded.models,
                "channels": reloaded.channels,
            })))
        }
        .await,
    )
}
