//! OpenAI-compatible routes: chat completions, legacy completions, embeddings, models.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::openai::{CompletionRequest, EmbeddingRequest, Model, ModelList};
use protocol::rewrite::ByteRewriter;
use protocol::translate::chat_via_messages;
use serde_json::Value;

use super::body::parse_json;
use super::{detached, respond, RequestId};
use std::sync::Arc;

use crate::auth::{authenticate, Caller, Principal};
use crate::billing::{output_allowance, Meter};
use crate::error::{ApiError, Shape};
use crate::providers::ProviderKind;
use crate::relay::transform::{BodyTransform, OpenAiPassThrough, StreamTransform};
use crate::relay::{forward_json, forward_stream, Exchange};
use crate::routing::route;
use crate::state::App;
use crate::stored_chat;

pub async fn chat_completions(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    detached(relay_completion(app, id, principal, body, Endpoint::Chat)).await
}

pub async fn completions(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    detached(relay_completion(app, id, principal, body, Endpoint::Legacy)).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Legacy,
}

/// How a prepared completion request is sent and answered.
enum Plan {
    Native { client_wants_usage: bool },
    ViaMessages { client_wants_usage: bool },
}

/// Chat and legacy completions share everything but the upstream path.
async fn relay_completion(
    app: App,
    id: RequestId,
    principal: Arc<Principal>,
    body: Bytes,
    endpoint: Endpoint,
) -> Response {
    let prepared = async {
        let mut request: CompletionRequest = parse_json(&body)?;
        let route = route(&app, &principal, &request.model)?;
        request.clamp_output_tokens(route.model.max_output_tokens);
        let stream = request.is_stream();
        let name = match endpoint {
            Endpoint::Chat => "chat.completions",
            Endpoint::Legacy => "completions",
        };
        let mut meter = Meter::new(&app, &principal, &id.0, name, &route.model, stream, &body);
        let max_output = output_allowance(
            request.output_cap(),
            &route.model,
            app.config.default_max_tokens,
        );
        let client_wants_usage = request.client_wants_stream_usage();
        let record = match endpoint {
            Endpoint::Chat => stored_chat::take(&mut request, principal.user.id, &route.model.name)?,
            Endpoint::Legacy => None,
        };
        let (path, upstream_body, plan) = match (route.provider.kind, endpoint) {
            (ProviderKind::Openai, _) => {
                request.model = route.model.upstream_model.clone();
                if stream {
                    request.request_stream_usage();
                }
                let path = match endpoint {
                    Endpoint::Chat => "/chat/completions",
                    Endpoint::Legacy => "/completions",
                };
                let body = serde_json::to_vec(&request).map_err(|_| ApiError::Internal)?;
                (path, body, Plan::Native { client_wants_usage })
            }
            (ProviderKind::Anthropic, Endpoint::Chat) => {
                let Ok(Value::Object(map)) = serde_json::to_value(&request) else {
                    return Err(ApiError::Internal);
                };
                let translated =
                    chat_via_messages::request(&map, &route.model.upstream_model, max_output)
                        .map_err(|e| ApiError::BadRequest(e.0))?;
                if !translated.dropped.is_empty() {
                    tracing::debug!(dropped = ?translated.dropped, "fields without an Anthropic equivalent");
                }
                let body = serde_json::to_vec(&translated.body).map_err(|_| ApiError::Internal)?;
                (
                    "/messages",
                    body,
                    Plan::ViaMessages { client_wants_usage },
                )
            }
            (ProviderKind::Anthropic, Endpoint::Legacy) => {
                return Err(ApiError::BadRequest(format!(
                    "The model `{}` is served by an Anthropic upstream, which has no legacy completions; use /v1/chat/completions.",
                    route.model.name
                )))
            }
        };
        let worst_case = meter.worst_case(
            max_output,
            request.n.unwrap_or(1),
            crate::billing::image_parts(&body),
        );
        meter.reserve(&app, &principal, worst_case).await?;
        let exchange = Exchange {
            meter,
            provider: route.provider,
            path,
            body: upstream_body,
            forwarded: Vec::new(),
            shape: Shape::OpenAi,
        };
        Ok::<_, ApiError>((exchange, stream, plan, record))
    }
    .await;
    let (exchange, stream, plan, record) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let model = exchange.meter.model.clone();
    match (plan, stream) {
        (Plan::Native { client_wants_usage }, true) => {
            let transform = OpenAiPassThrough::new(
                ByteRewriter::for_openai(&model.upstream_model, &model.name, !client_wants_usage),
                client_wants_usage,
            );
            stream_recorded(app, exchange, transform, record).await
        }
        (Plan::ViaMessages { client_wants_usage }, true) => {
            let translator = chat_via_messages::StreamTranslator::new(
                &model.name,
                crate::relay::transform::unix_now(),
                client_wants_usage,
            );
            stream_recorded(app, exchange, translator, record).await
        }
        (plan, false) => {
            let transform = match plan {
                Plan::Native { .. } => BodyTransform::OpenAi(ByteRewriter::for_openai(
                    &model.upstream_model,
                    &model.name,
                    false,
                )),
                Plan::ViaMessages { .. } => BodyTransform::ChatViaMessages {
                    public_model: model.name.clone(),
                },
            };
            let response = forward_json(app.clone(), exchange, transform).await;
            match record {
                Some(record) => stored_chat::record_json(&app, record, response).await,
                None => response,
            }
        }
    }
}

/// Streams a completion, storing it on the way when the client asked to.
async fn stream_recorded<T: StreamTransform>(
    app: App,
    exchange: Exchange,
    transform: T,
    record: Option<stored_chat::ChatRecord>,
) -> Response {
    match record {
        Some(record) => {
            let recorded = stored_chat::Recorded::new(transform, app.clone(), record);
            forward_stream(app, exchange, recorded).await
        }
        None => forward_stream(app, exchange, transform).await,
    }
}

pub async fn embeddings(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    detached(relay_embeddings(app, id, principal, body)).await
}

async fn relay_embeddings(
    app: App,
    id: RequestId,
    principal: Arc<Principal>,
    body: Bytes,
) -> Response {
    let prepared = async {
        let mut request: EmbeddingRequest = parse_json(&body)?;
        let route = route(&app, &principal, &request.model)?;
        if route.provider.kind != ProviderKind::Openai {
            return Err(ApiError::BadRequest(format!(
                "The model `{}` does not offer embeddings.",
                route.model.name
            )));
        }
        let mut meter = Meter::new(
            &app,
            &principal,
            &id.0,
            "embeddings",
            &route.model,
            false,
            &body,
        );
        let worst_case = meter.worst_case(0, 1, 0);
        meter.reserve(&app, &principal, worst_case).await?;
        request.model = route.model.upstream_model.clone();
        let upstream_body = serde_json::to_vec(&request).map_err(|_| ApiError::Internal)?;
        Ok::<_, ApiError>(Exchange {
            meter,
            provider: route.provider,
            path: "/embeddings",
            body: upstream_body,
            forwarded: Vec::new(),
            shape: Shape::OpenAi,
        })
    }
    .await;
    match prepared {
        Ok(exchange) => {
            let model = exchange.meter.model.clone();
            let rewriter = ByteRewriter::for_openai(&model.upstream_model, &model.name, false);
            forward_json(app, exchange, BodyTransform::OpenAi(rewriter)).await
        }
        Err(e) => e.into_response(),
    }
}

/// The models this key may use, in OpenAI's list format.
pub async fn list_models(State(app): State<App>, headers: HeaderMap) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let mut data: Vec<Model> = app
                .models
                .values()
                .filter(|m| principal.check_model(&m.name).is_ok())
                .map(|m| Model {
                    id: m.name.clone(),
                    object: "model".into(),
                    created: 0,
                    owned_by: m.provider.clone(),
                })
                .collect();
            data.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(Json(ModelList {
                object: "list".into(),
                data,
            }))
        }
        .await,
    )
}
