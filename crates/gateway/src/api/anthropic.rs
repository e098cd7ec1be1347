//! Anthropic-native routes: `/v1/messages`, `/v1/messages/count_tokens` and
//! the legacy `/v1/complete`, with Anthropic-shaped errors. Each is served by
//! an Anthropic upstream as is, or by an OpenAI-compatible one through
//! translation.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::anthropic::MessagesRequest;
use protocol::translate::complete;
use serde_json::{json, Map, Value};

use super::body::parse_json;
use super::{detached, with_headers, RequestId};
use std::sync::Arc;

use crate::api::caller::Caller;
use crate::auth::Principal;
use crate::billing::{image_parts, output_allowance};
use crate::error::{ApiError, Shape};
use crate::pipeline::{self, Metered, Planner, Prepared};
use crate::providers::MessagesCall;
use crate::relay::forward_unmetered;
use crate::routing::AffinityKey;
use crate::state::App;

/// The Anthropic client protocols served here, each a Messages body upstream.
#[derive(Clone, Copy)]
enum Ingress {
    Messages,
    Complete,
}

impl Ingress {
    /// The endpoint named in usage records.
    fn endpoint(self) -> &'static str {
        match self {
            Ingress::Messages => "messages",
            Ingress::Complete => "complete",
        }
    }

    /// The client's body as a Messages body.
    fn to_messages(self, raw: Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
        match self {
            Ingress::Messages => Ok(raw),
            Ingress::Complete => complete::request(&raw).map_err(|e| ApiError::BadRequest(e.0)),
        }
    }
}

/// A metered Messages-family call as it arrived, its caller authenticated.
struct Call {
    id: RequestId,
    principal: Arc<Principal>,
    headers: HeaderMap,
    body: Bytes,
}

/// Routes, plans and holds: everything before the upstream call.
async fn prepare(app: &App, call: &Call, ingress: Ingress) -> Result<Prepared, ApiError> {
    let Call {
        id,
        principal,
        headers,
        body,
    } = call;
    let rewritten = pipeline::rewrite(app, principal, ingress.endpoint(), body.clone()).await?;
    let body = &rewritten.body;
    let request: MessagesRequest = parse_json(body)?;
    let affinity = AffinityKey::of_messages(principal.user.id, &request.extra);
    let route = app.route(principal, &request.model, affinity)?;
    let mut raw: Map<String, Value> = parse_json(body)?;
    raw.insert("model".into(), json!(request.model));
    let mut messages_body = ingress.to_messages(raw)?;
    protocol::anthropic::clamp_max_tokens(&mut messages_body, route.model.max_output_tokens);
    let stream = messages_body.get("stream") == Some(&Value::Bool(true));
    let max_output = output_allowance(
        messages_body.get("max_tokens").and_then(Value::as_u64),
        &route.model,
        app.config.default_max_tokens,
    );
    let client_headers = headers.clone();
    let planner: Planner = Box::new(move |target| {
        let adapter = target.provider.adapter;
        let messages = MessagesCall {
            body: &messages_body,
            stream,
            forwarded: adapter.forwarded(&client_headers),
        };
        match ingress {
            Ingress::Messages => adapter.messages(target, messages),
            Ingress::Complete => adapter.complete(target, messages),
        }
    });
    let metered = Metered {
        principal,
        request_id: &id.0,
        endpoint: ingress.endpoint(),
        route,
        stream,
        body,
        max_output,
        choices: 1,
        images: image_parts(body),
        units: None,
        planner,
        upstream_edits: rewritten.upstream,
        shape: Shape::Anthropic,
    };
    pipeline::reserve(app, metered).await
}

/// Sends a prepared Messages-family call and answers the client.
async fn relay(app: App, call: Call, ingress: Ingress) -> Response {
    match prepare(&app, &call, ingress).await {
        Ok(prepared) => {
            let headers = prepared.limit_headers();
            with_headers(
                pipeline::respond(app, prepared).await.into_response(),
                headers,
            )
        }
        Err(e) => e.render(Shape::Anthropic),
    }
}

/// `POST /v1/messages` (any query string, e.g. `?beta=true`, is accepted).
pub async fn messages(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        id,
        principal,
        headers,
        body,
    };
    detached(relay(app, call, Ingress::Messages)).await
}

/// `POST /v1/complete`: the legacy Text Completions API, served as Messages.
pub async fn complete(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = Call {
        id,
        principal,
        headers,
        body,
    };
    detached(relay(app, call, Ingress::Complete)).await
}

/// `POST /v1/messages/count_tokens`: asked of an Anthropic upstream; for
/// other upstreams, estimated locally with a BPE tokenizer. Free of charge.
pub async fn count_tokens(
    State(app): State<App>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let request: MessagesRequest = parse_json(&body)?;
        let route = app.route(&principal, &request.model, None)?;
        let mut raw: Map<String, Value> = parse_json(&body)?;
        match route.provider.adapter.count_tokens() {
            Some(path) => {
                raw.insert("model".into(), json!(route.model.upstream_model));
                let bytes = serde_json::to_vec(&raw).map_err(|_| ApiError::Internal)?;
                let forwarded = route.provider.adapter.forwarded(&headers);
                Ok(forward_unmetered(
                    &app,
                    &route.provider,
                    path,
                    bytes,
                    &forwarded,
                    Shape::Anthropic,
                )
                .await
                .into_response())
            }
            None => {
                let tokens =
                    tokio::task::spawn_blocking(move || crate::tokens::estimate_messages(&raw))
                        .await
                        .map_err(|_| ApiError::Internal)?;
                let mut response = Json(json!({"input_tokens": tokens})).into_response();
                response.headers_mut().insert(
                    "x-tollgate-token-count",
                    HeaderValue::from_static("estimate"),
                );
                Ok(response)
            }
        }
    }
    .await;
    result.unwrap_or_else(|e: ApiError| e.render(Shape::Anthropic))
}
