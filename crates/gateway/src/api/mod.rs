//! HTTP routes: one module per API area. Only this layer knows HTTP.

mod admin;
mod anthropic;
mod body;
mod conversations;
mod list;
mod ohmygpt;
mod openai;
mod ops;
mod responses;
mod stored_completions;
mod usage;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::secrets::new_request_id;
use crate::state::App;

/// Largest request body accepted (images and documents travel inline).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The id of the request being served, set by [`request_context`].
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub fn router(app: App) -> Router {
    let omg = "/api/v1/user/admin";
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/v1/chat/completions",
            post(openai::chat_completions).get(stored_completions::list),
        )
        .route(
            "/v1/chat/completions/list",
            post(stored_completions::list_by_post),
        )
        .route(
            "/v1/chat/completions/{id}",
            get(stored_completions::retrieve)
                .post(stored_completions::update)
                .delete(stored_completions::delete),
        )
        .route(
            "/v1/chat/completions/{id}/retrieve",
            post(stored_completions::retrieve),
        )
        .route(
            "/v1/chat/completions/{id}/delete",
            post(stored_completions::delete),
        )
        .route(
            "/v1/chat/completions/{id}/messages",
            get(stored_completions::messages),
        )
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::list_models))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route("/v1/responses/{id}/cancel", post(responses::cancel))
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/conversations", post(conversations::create))
        .route(
            "/v1/conversations/{id}",
            get(conversations::retrieve)
                .post(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/v1/conversations/{id}/items",
            get(conversations::list_items).post(conversations::add_items),
        )
        .route(
            "/v1/conversations/{id}/items/{item_id}",
            get(conversations::get_item).delete(conversations::delete_item),
        )
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/complete", post(anthropic::complete))
        .route("/", get(ops::root).head(ops::root))
        .route("/v1/usage", get(usage::list_own_usage))
        .route(&format!("{omg}/new-api-token"), post(ohmygpt::new_key))
        .route(&format!("{omg}/create-api-token"), post(ohmygpt::new_key))
        .route(
            &format!("{omg}/update-api-token"),
            post(ohmygpt::update_key),
        )
        .route(&format!("{omg}/get-api-tokens"), post(ohmygpt::list_keys))
        .route(&format!("{omg}/del-api-token"), post(ohmygpt::delete_key))
        .route(
            &format!("{omg}/delete-api-token"),
            post(ohmygpt::delete_key),
        )
        .route(&format!("{omg}/balance"), post(ohmygpt::balance))
        .route(
            &format!("{omg}/get-membership-expire-date"),
            post(ohmygpt::membership),
        )
        .route("/api/v1/pay/model-rates", get(ohmygpt::model_rates))
        .merge(admin::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(app.clone(), request_context))
        .with_state(app)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("This route".into())
}

/// Gives every request an id (echoed as `x-request-id`) and records metrics.
async fn request_context(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let id = new_request_id();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    app.metrics.record_request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Runs a metered handler's work in its own task. A client that hangs up
/// drops the handler's future; the work must not be dropped with it, or a
/// hold could be placed and never settled.
pub(crate) async fn detached<F>(work: F) -> Response
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    tokio::spawn(work)
        .await
        .unwrap_or_else(|_| ApiError::Internal.into_response())
}

/// Turns a handler's `Result` into a response.
pub(crate) fn respond<T: IntoResponse>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}
