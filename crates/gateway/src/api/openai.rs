//! OpenAI-compatible routes: chat completions, legacy completions, embeddings, models.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::openai::{CompletionRequest, EmbeddingRequest, Model, ModelList};

use super::body::parse_json;
use super::{detached, respond, with_headers, RequestId};
use std::sync::Arc;

use crate::api::caller::{authenticate, Caller};
use crate::auth::Principal;
use crate::billing::{image_parts, output_allowance};
use crate::error::{ApiError, Shape};
use crate::pipeline::{self, Metered, Planner};
use crate::providers::{ChatCall, Reply};
use crate::routing::AffinityKey;
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

/// Chat and legacy completions share everything but the upstream path.
async fn relay_completion(
    app: App,
    id: RequestId,
    principal: Arc<Principal>,
    body: Bytes,
    endpoint: Endpoint,
) -> Response {
    let prepared = async {
        let name = match endpoint {
            Endpoint::Chat => "chat.completions",
            Endpoint::Legacy => "completions",
        };
        let rewritten = pipeline::rewrite(&app, &principal, name, body).await?;
        let body = rewritten.body;
        let mut request: CompletionRequest = parse_json(&body)?;
        let affinity = AffinityKey::of_chat(principal.user.id, &request.extra);
        let route = app.route(&principal, &request.model, affinity)?;
        request.clamp_output_tokens(route.model.max_output_tokens);
        let stream = request.is_stream();
        let max_output = output_allowance(
            request.output_cap(),
            &route.model,
            app.config.default_max_tokens,
        );
        let client_wants_usage = request.client_wants_stream_usage();
        let record = match endpoint {
            Endpoint::Chat => {
                stored_chat::take(&mut request, principal.user.id, &route.model.name)?
            }
            Endpoint::Legacy => None,
        };
        let choices = request.n.unwrap_or(1);
        // Stored as it streams, before the client gets its last bytes;
        // whole answers are stored below.
        let stream_record = record.clone().filter(|_| stream);
        let recorder = app.clone();
        let planner: Planner = Box::new(move |target| {
            let call = ChatCall {
                request: &request,
                stream,
                max_output,
                client_wants_usage,
            };
            let adapter = target.provider.adapter;
            let mut upstream = match endpoint {
                Endpoint::Chat => adapter.chat(target, call)?,
                Endpoint::Legacy => adapter.completions(target, call)?,
            };
            if let Some(record) = &stream_record {
                upstream.reply = match upstream.reply {
                    Reply::Stream(transform) => Reply::Stream(Box::new(
                        stored_chat::Recorded::new(transform, recorder.clone(), record.clone()),
                    )),
                    whole => whole,
                };
            }
            Ok(upstream)
        });
        let metered = Metered {
            principal: &principal,
            request_id: &id.0,
            endpoint: name,
            route,
            stream,
            body: &body,
            max_output,
            choices,
            images: image_parts(&body),
            units: None,
            planner,
            upstream_edits: rewritten.upstream,
            shape: Shape::OpenAi,
        };
        let prepared = pipeline::reserve(&app, metered).await?;
        Ok::<_, ApiError>((prepared, record.filter(|_| !stream)))
    }
    .await;
    let (prepared, whole_record) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let headers = prepared.limit_headers();
    let answer = pipeline::respond(app.clone(), prepared).await;
    let answer = match whole_record {
        Some(record) => stored_chat::record_json(&app, record, answer).await,
        None => answer,
    };
    with_headers(answer.into_response(), headers)
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
        let rewritten = pipeline::rewrite(&app, &principal, "embeddings", body).await?;
        let body = rewritten.body;
        let request: EmbeddingRequest = parse_json(&body)?;
        let route = app.route(&principal, &request.model, None)?;
        let planner: Planner = Box::new(move |target| {
            target
                .provider
                .adapter
                .embeddings(target, &mut request.clone())
        });
        let metered = Metered {
            principal: &principal,
            request_id: &id.0,
            endpoint: "embeddings",
            route,
            stream: false,
            body: &body,
            max_output: 0,
            choices: 1,
            images: 0,
            units: None,
            planner,
            upstream_edits: rewritten.upstream,
            shape: Shape::OpenAi,
        };
        pipeline::reserve(&app, metered).await
    }
    .await;
    match prepared {
        Ok(prepared) => {
            let headers = prepared.limit_headers();
            with_headers(
                pipeline::respond(app, prepared).await.into_response(),
                headers,
            )
        }
        Err(e) => e.into_response(),
    }
}

pub async fn list_models(State(app): State<App>, headers: HeaderMap) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let mut data: Vec<Model> = app
                .catalog
                .load()
                .models
                .values()
                .filter(|m| principal.may_use(&m.name))
                .map(|m| Model {
                    id: m.name.clone(),
                    object: "model".into(),
                    created: 0,
                    owned_by: m.provider.clone(),
                    pricing: Some(m.pricing()),
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
