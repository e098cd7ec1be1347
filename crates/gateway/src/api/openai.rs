//! OpenAI-compatible routes: chat completions, legacy completions, embeddings, models.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::openai::{CompletionRequest, EmbeddingRequest, Model, ModelList};

use super::body::parse_json;
use super::{respond, RequestId};
use crate::auth::{authenticate, Principal};
use crate::billing::Meter;
use crate::config::ModelSpec;
use crate::error::ApiError;
use crate::providers::Provider;
use crate::relay::{forward_json, forward_stream};
use crate::state::App;

pub async fn chat_completions(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    relay_completion(
        app,
        id,
        headers,
        body,
        "/chat/completions",
        "chat.completions",
    )
    .await
}

pub async fn completions(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    relay_completion(app, id, headers, body, "/completions", "completions").await
}

/// Resolves the model a request names, if this key may use it.
fn resolve_model(
    app: &App,
    principal: &Principal,
    model: &str,
) -> Result<(Arc<ModelSpec>, Arc<Provider>), ApiError> {
    let spec = app
        .model(model)
        .cloned()
        .ok_or_else(|| ApiError::ModelNotFound(model.to_string()))?;
    principal.check_model(model)?;
    let provider = app
        .providers
        .get(&spec.provider)
        .cloned()
        .ok_or(ApiError::Internal)?;
    Ok((spec, provider))
}

/// Chat and legacy completions share everything but the upstream path.
async fn relay_completion(
    app: App,
    id: RequestId,
    headers: HeaderMap,
    body: Bytes,
    path: &'static str,
    endpoint: &'static str,
) -> Response {
    let prepared = async {
        // Authentication comes first so an anonymous caller learns nothing,
        // not even whether its JSON parses.
        let principal = authenticate(&app, &headers).await?;
        let mut request: CompletionRequest = parse_json(&body)?;
        let (spec, provider) = resolve_model(&app, &principal, &request.model)?;
        let stream = request.is_stream();
        let meter = Meter::new(&app, &principal, &id.0, endpoint, &spec, stream, body.len());
        let max_output = request
            .output_cap()
            .or(spec.max_output_tokens)
            .unwrap_or(app.config.default_max_tokens);
        meter
            .reserve(&app, meter.worst_case(max_output, request.n.unwrap_or(1)))
            .await?;
        let client_wants_usage = request.client_wants_stream_usage();
        request.model = spec.upstream_model.clone();
        if stream {
            request.request_stream_usage();
        }
        let upstream_body = serde_json::to_vec(&request).map_err(|_| ApiError::Internal)?;
        Ok::<_, ApiError>((meter, provider, upstream_body, stream, client_wants_usage))
    }
    .await;
    match prepared {
        Ok((meter, provider, upstream_body, true, wants_usage)) => {
            forward_stream(app, meter, provider, path, upstream_body, wants_usage).await
        }
        Ok((meter, provider, upstream_body, false, _)) => {
            forward_json(app, meter, provider, path, upstream_body).await
        }
        Err(e) => e.into_response(),
    }
}

pub async fn embeddings(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let prepared = async {
        let principal = authenticate(&app, &headers).await?;
        let mut request: EmbeddingRequest = parse_json(&body)?;
        let (spec, provider) = resolve_model(&app, &principal, &request.model)?;
        let meter = Meter::new(
            &app,
            &principal,
            &id.0,
            "embeddings",
            &spec,
            false,
            body.len(),
        );
        meter.reserve(&app, meter.worst_case(0, 1)).await?;
        request.model = spec.upstream_model.clone();
        let upstream_body = serde_json::to_vec(&request).map_err(|_| ApiError::Internal)?;
        Ok::<_, ApiError>((meter, provider, upstream_body))
    }
    .await;
    match prepared {
        Ok((meter, provider, upstream_body)) => {
            forward_json(app, meter, provider, "/embeddings", upstream_body).await
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
