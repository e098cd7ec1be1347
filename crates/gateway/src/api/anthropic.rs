//! Anthropic-native routes: `/v1/messages`, `/v1/messages/count_tokens` and
//! the legacy `/v1/complete`, with Anthropic-shaped errors. Each is served by
//! an Anthropic upstream as is, or by an OpenAI-compatible one through
//! translation.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::anthropic::MessagesRequest;
use protocol::rewrite::ByteRewriter;
use protocol::translate::{complete, messages_via_chat};
use serde_json::{json, Map, Value};

use super::body::parse_json;
use super::{detached, RequestId};
use std::sync::Arc;

use crate::auth::{Caller, Principal};
use crate::billing::{output_allowance, Meter};
use crate::error::{ApiError, Shape};
use crate::providers::ProviderKind;
use crate::relay::transform::{AnthropicPassThrough, BodyTransform, Chain};
use crate::relay::{forward_json, forward_stream, forward_unmetered, Exchange};
use crate::routing::{route, Route};
use crate::state::App;

/// Client headers an Anthropic upstream should see.
const FORWARDED_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

fn forwarded_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    FORWARDED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.clone();
            Some((HeaderName::from_static(name), value))
        })
        .collect()
}

/// An upstream path, body and the client headers to forward.
type UpstreamCall = (&'static str, Vec<u8>, Vec<(HeaderName, HeaderValue)>);

/// The upstream call for a Messages body: as is to an Anthropic upstream,
/// translated to chat completions for an OpenAI-compatible one.
fn plan(
    mut body: Map<String, Value>,
    route: &Route,
    headers: &HeaderMap,
) -> Result<UpstreamCall, ApiError> {
    let upstream = &route.model.upstream_model;
    match route.provider.kind {
        ProviderKind::Anthropic => {
            body.insert("model".into(), json!(upstream));
            let bytes = serde_json::to_vec(&body).map_err(|_| ApiError::Internal)?;
            Ok(("/messages", bytes, forwarded_headers(headers)))
        }
        ProviderKind::Openai => {
            let late_system = route.provider.late_system_messages;
            let translated = messages_via_chat::request_with(&body, upstream, late_system)
                .map_err(|e| ApiError::BadRequest(e.0))?;
            if !translated.dropped.is_empty() {
                tracing::debug!(dropped = ?translated.dropped, "fields without an OpenAI equivalent");
            }
            let bytes = serde_json::to_vec(&translated.body).map_err(|_| ApiError::Internal)?;
            Ok(("/chat/completions", bytes, Vec::new()))
        }
    }
}

struct Prepared {
    exchange: Exchange,
    stream: bool,
}

/// A metered Messages-family call as it arrived, its caller authenticated.
struct Call {
    id: RequestId,
    principal: Arc<Principal>,
    headers: HeaderMap,
    body: Bytes,
}

/// Routes, plans and holds: everything before the upstream call.
async fn prepare(
    app: &App,
    call: &Call,
    endpoint: &'static str,
    to_messages: impl FnOnce(Map<String, Value>) -> Result<Map<String, Value>, ApiError>,
) -> Result<Prepared, ApiError> {
    let Call {
        id,
        principal,
        headers,
        body,
    } = call;
    let request: MessagesRequest = parse_json(body)?;
    let route = route(app, principal, &request.model)?;
    let mut raw: Map<String, Value> = parse_json(body)?;
    raw.insert("model".into(), json!(request.model));
    let mut messages_body = to_messages(raw)?;
    protocol::anthropic::clamp_max_tokens(&mut messages_body, route.model.max_output_tokens);
    let stream = messages_body.get("stream") == Some(&Value::Bool(true));
    let max_output = output_allowance(
        messages_body.get("max_tokens").and_then(Value::as_u64),
        &route.model,
        app.config.default_max_tokens,
    );
    let (path, upstream_body, forwarded) = plan(messages_body, &route, headers)?;
    let mut meter = Meter::new(app, principal, &id.0, endpoint, &route.model, stream, body);
    let worst_case = meter.worst_case(max_output, 1, crate::billing::image_parts(body));
    meter.reserve(app, principal, worst_case).await?;
    Ok(Prepared {
        exchange: Exchange {
            meter,
            provider: route.provider,
            path,
            body: upstream_body,
            forwarded,
            shape: Shape::Anthropic,
        },
        stream,
    })
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
    detached(relay_messages(app, call)).await
}

async fn relay_messages(app: App, call: Call) -> Response {
    let prepared = match prepare(&app, &call, "messages", Ok).await {
        Ok(p) => p,
        Err(e) => return e.render(Shape::Anthropic),
    };
    let model = prepared.exchange.meter.model.clone();
    let kind = prepared.exchange.provider.kind;
    let rewriter = ByteRewriter::for_openai(&model.upstream_model, &model.name, false);
    match (kind, prepared.stream) {
        (ProviderKind::Anthropic, true) => {
            let transform = AnthropicPassThrough::new(rewriter);
            forward_stream(app, prepared.exchange, transform).await
        }
        (ProviderKind::Anthropic, false) => {
            forward_json(app, prepared.exchange, BodyTransform::Anthropic(rewriter)).await
        }
        (ProviderKind::Openai, true) => {
            let translator = messages_via_chat::StreamTranslator::new(&model.name);
            forward_stream(app, prepared.exchange, translator).await
        }
        (ProviderKind::Openai, false) => {
            let transform = BodyTransform::MessagesViaChat {
                public_model: model.name.clone(),
            };
            forward_json(app, prepared.exchange, transform).await
        }
    }
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
    detached(relay_complete(app, call)).await
}

async fn relay_complete(app: App, call: Call) -> Response {
    let to_messages =
        |raw: Map<String, Value>| complete::request(&raw).map_err(|e| ApiError::BadRequest(e.0));
    let prepared = match prepare(&app, &call, "complete", to_messages).await {
        Ok(p) => p,
        Err(e) => return e.render(Shape::Anthropic),
    };
    let model = prepared.exchange.meter.model.clone();
    let kind = prepared.exchange.provider.kind;
    match (kind, prepared.stream) {
        (ProviderKind::Anthropic, true) => {
            let translator = complete::StreamTranslator::new(&model.name);
            forward_stream(app, prepared.exchange, translator).await
        }
        (ProviderKind::Openai, true) => {
            let chain = Chain::new(
                messages_via_chat::StreamTranslator::new(&model.name),
                complete::StreamTranslator::new(&model.name),
            );
            forward_stream(app, prepared.exchange, chain).await
        }
        (kind, false) => {
            let inner = match kind {
                ProviderKind::Anthropic => BodyTransform::Anthropic(ByteRewriter::default()),
                ProviderKind::Openai => BodyTransform::MessagesViaChat {
                    public_model: model.name.clone(),
                },
            };
            let transform = BodyTransform::Complete {
                inner: Box::new(inner),
                public_model: model.name.clone(),
            };
            forward_json(app, prepared.exchange, transform).await
        }
    }
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
        let route = route(&app, &principal, &request.model)?;
        let mut raw: Map<String, Value> = parse_json(&body)?;
        match route.provider.kind {
            ProviderKind::Anthropic => {
                raw.insert("model".into(), json!(route.model.upstream_model));
                let bytes = serde_json::to_vec(&raw).map_err(|_| ApiError::Internal)?;
                Ok(forward_unmetered(
                    &app,
                    &route.provider,
                    "/messages/count_tokens",
                    bytes,
                    &forwarded_headers(&headers),
                    Shape::Anthropic,
                )
                .await)
            }
            ProviderKind::Openai => {
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
