//! The console's channels page (a console admin only; anyone else gets
//! 404): every channel of every model with its health, recent failures,
//! attempts and upstream latency, as `GET /admin/channels` gives them, and
//! the same switch to take one out of service or bring it back.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;

use super::session::{csrf_ok, Member};
use super::{form, language, page, Lang, Texts};
use crate::api::channels::{all_channels, switch_channel, Switch};
use crate::error::ApiError;
use crate::state::App;

struct Row {
    model: String,
    /// The model as a path segment.
    model_path: String,
    index: u64,
    provider: String,
    upstream_model: String,
    priority: String,
    state: String,
    disabled: bool,
    failures: String,
    served: u64,
    failed: u64,
    latency: String,
}

#[derive(Template)]
#[template(path = "console/channels.html")]
struct ChannelsPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    channels: Vec<Row>,
}

fn row(c: &Value) -> Row {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    };
    let ratio = c["recent_failure_ratio"].as_f64().unwrap_or(0.0);
    Row {
        model: text(&c["model"]),
        model_path: utf8_percent_encode(&text(&c["model"]), NON_ALPHANUMERIC).to_string(),
        index: c["index"].as_u64().unwrap_or(0),
        provider: text(&c["provider"]),
        upstream_model: text(&c["upstream_model"]),
        priority: format!("{} / {}", text(&c["priority"]), text(&c["weight"])),
        state: match &c["detail"]["seconds_left"] {
            Value::Number(n) => format!("{} ({n} s)", text(&c["state"])),
            _ => text(&c["state"]),
        },
        disabled: c["state"] == "disabled",
        failures: format!(
            "{:.0} % / {}",
            ratio * 100.0,
            c["recent_requests"].as_u64().unwrap_or(0)
        ),
        served: c["attempts"]["served"].as_u64().unwrap_or(0),
        failed: c["attempts"]["failed"].as_u64().unwrap_or(0),
        latency: match c["upstream_latency_ms"]["mean"].as_f64() {
            Some(ms) if ms > 0.0 => format!("{ms:.1} ms"),
            _ => "—".into(),
        },
    }
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    if !session.is_admin {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let (t, remember) = language(&headers, &lang);
    let html = ChannelsPage {
        t,
        title: t.channels,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        channels: all_channels(&app).iter().map(row).collect(),
    }
    .render();
    page(html, &remember.into_iter().collect::<Vec<_>>())
}

#[derive(Deserialize)]
struct SwitchForm {
    csrf: String,
    /// `disable` or `enable`.
    to: String,
}

/// `POST /console/admin/channels/{model}/{index}`: the switch.
pub async fn switch(
    State(app): State<App>,
    headers: HeaderMap,
    Path((model, index)): Path<(String, usize)>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    if !session.is_admin {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let (t, _) = language(&headers, &Lang::default());
    let Ok(f) = form::<SwitchForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&f.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let to = match f.to.as_str() {
        "disable" => Switch::Disable,
        "enable" => Switch::Enable,
        _ => return (StatusCode::BAD_REQUEST, t.bad_form).into_response(),
    };
    match switch_channel(&app, &model, index, to) {
        Ok(_) => Redirect::to("/console/admin/channels").into_response(),
        Err(ApiError::NotFound(_)) => (StatusCode::NOT_FOUND, "Not found").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}
