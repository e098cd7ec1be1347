//! HTTP routes: one module per API area. Only this layer knows HTTP.

mod admin;
mod answer;
mod anthropic;
mod audio;
mod azure_tts;
mod body;
pub mod caller;
pub(crate) mod channels;
mod conversations;
pub mod files;
mod form;
mod image_edits;
mod list;
mod media;
pub(crate) mod oauth;
mod ohmygpt;
mod openai;
mod operator_rules;
mod ops;
pub(crate) mod override_rules;
pub(crate) mod payments;
mod rate_limits;
mod responses;
mod search;
mod stored_completions;
pub(crate) mod usage;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tracing::Instrument;

use crate::error::{ApiError, Shape};
use crate::secrets::new_request_id;
use crate::state::App;

/// `a=1&b=two` pairs of a form body, decoded.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body::serde_urlencoded_pairs(body)
}

/// The id of the request being served, set by [`request_context`].
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub fn router(app: App) -> Router {
    let limits = &app.config.limits;
    // Each area has its own body limit. Metered handlers take their
    // `Caller` before their body, so an anonymous client cannot make the
    // gateway buffer megabytes.
    let inference = inference_routes().layer(DefaultBodyLimit::max(limits.inference_body_bytes));
    let embeddings = Router::new()
        .route("/v1/embeddings", post(openai::embeddings))
        .layer(DefaultBodyLimit::max(limits.embeddings_body_bytes));
    let mut routes = management_routes()
        .layer(DefaultBodyLimit::max(limits.management_body_bytes))
        .merge(files::routes(limits.management_body_bytes))
        .merge(crate::console::routes().layer(DefaultBodyLimit::max(limits.management_body_bytes)))
        .merge(inference.clone())
        .merge(embeddings);
    for mount in AGENT_MOUNTS {
        routes = routes
            .nest(mount, inference.clone())
            .route(&format!("{mount}/models"), get(openai::list_models))
            .route(&format!("{mount}/v1/models"), get(openai::list_models));
    }
    routes
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), request_context))
        .with_state(app)
}

/// OhMyGPT's base URLs for coding agents: Claude Code set to
/// `…/cc-omg` (`/v1/messages`, `/v1/chat/completions`, `/models` below it)
/// and Codex set to `…/codex-omg/v1` (`/responses`) reach the same handlers,
/// with every route of [`inference_routes`] and the model list.
pub const AGENT_MOUNTS: [&str; 2] = ["/api/v1/ai/openai/cc-omg", "/api/v1/ai/openai/codex-omg"];

/// The body limit of the image edit routes: an image and a mask.
const IMAGE_UPLOAD_BYTES: usize = 110 * 1024 * 1024;

/// The routes that carry prompts: large bodies, metered.
fn inference_routes() -> Router<App> {
    Router::new()
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
        .route("/v1/audio/speech", post(audio::speech))
        .route("/v1/audio/transcriptions", post(audio::transcriptions))
        .route("/v1/audio/translations", post(audio::translations))
        .route("/v1/images/generations", post(media::image_generations))
        // An image and its mask may be 50 MB each.
        .route(
            "/v1/images/edits",
            post(image_edits::edits).layer(DefaultBodyLimit::max(IMAGE_UPLOAD_BYTES)),
        )
        .route(
            "/v1/images/variations",
            post(image_edits::variations).layer(DefaultBodyLimit::max(IMAGE_UPLOAD_BYTES)),
        )
        .route("/v1/moderations", post(media::moderations))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/complete", post(anthropic::complete))
}

/// Health, metrics, models, usage, key management and the admin API.
fn management_routes() -> Router<App> {
    let omg = "/api/v1/user/admin";
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/models", get(openai::list_models))
        .route("/", get(ops::root).head(ops::root))
        .route("/v1/usage", get(usage::list_own_usage))
        .route(search::GOOGLE, get(search::google))
        .route(azure_tts::SYNTHESIS, post(azure_tts::synthesis))
        .route(media::FLUX, post(media::flux))
        .route(media::IMAGINE, post(media::imagine))
        .route(azure_tts::VOICES, get(azure_tts::voices))
        .route(search::SERPER, post(search::serper))
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
        .merge(channels::routes())
        .merge(rate_limits::routes())
        .merge(override_rules::routes())
        .merge(operator_rules::routes())
        .merge(payments::routes())
        .merge(oauth::routes())
}

/// Longest request target accepted; hyper's own limit (its read buffer)
/// is far above, and would answer without a body.
const MAX_URI_BYTES: usize = 16 * 1024;
/// Most header bytes accepted, likewise.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuses a request target or headers too long: hyper's own limits (its
/// read buffer) are far above, and would answer without a body.
fn oversized(request: &Request, shape: Option<Shape>) -> Option<Response> {
    let uri = request.uri();
    let target_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if target_len > MAX_URI_BYTES {
        let message = format!("The request target is longer than {MAX_URI_BYTES} bytes.");
        return Some(shaped_error(shape, StatusCode::URI_TOO_LONG, message));
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let message = format!("The request headers are larger than {MAX_HEADER_BYTES} bytes.");
        return Some(shaped_error(
            shape,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            message,
        ));
    }
    None
}

/// The framework's own rejections (a body over its limit, a bad path or
/// query parameter, a wrong method) come as plain text; clients expect
/// their protocol's error shape, like every other error.
async fn reshape_framework_error(shape: Option<Shape>, response: Response) -> Response {
    let status = response.status();
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json") || v.starts_with("text/html"));
    // Streams are never errors; anything already JSON (or a console page)
    // is ours.
    if !(status.is_client_error() || status.is_server_error()) || ours {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "The request body is too large for this route.".to_string()
        }
        StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed on this route.".to_string(),
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("The request was refused.")
            .to_string(),
        _ => text,
    };
    let mut shaped = shaped_error(shape, status, message);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

/// An error of `status` in the client protocol's shape (`None`: OhMyGPT's envelope).
fn shaped_error(shape: Option<Shape>, status: StatusCode, message: String) -> Response {
    match shape {
        Some(Shape::OpenAi) => {
            let (kind, code) = match status {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ("invalid_request_error", Some("request_too_large"))
                }
                StatusCode::METHOD_NOT_ALLOWED => {
                    ("invalid_request_error", Some("method_not_allowed"))
                }
                StatusCode::URI_TOO_LONG => ("invalid_request_error", Some("uri_too_long")),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                    ("invalid_request_error", Some("headers_too_large"))
                }
                s if s.is_server_error() => ("api_error", None),
                _ => ("invalid_request_error", None),
            };
            let body = protocol::openai::ErrorBody::new(message, kind, code);
            (status, axum::Json(body)).into_response()
        }
        Some(Shape::Anthropic) => {
            let kind = match status {
                StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
                StatusCode::NOT_FOUND => "not_found_error",
                s if s.is_server_error() => "api_error",
                _ => "invalid_request_error",
            };
            let body = protocol::anthropic::error_body(kind, &message);
            (status, axum::Json(body)).into_response()
        }
        None => {
            let body = serde_json::json!({"statusCode": status.as_u16(), "message": message, "data": null});
            (status, axum::Json(body)).into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("This route".into())
}

/// Gives every request an id (echoed as `x-request-id`), answers every
/// error in the client protocol's shape, and records metrics. One layer for
/// all three: each layer costs every request a boxed future.
async fn request_context(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let id = new_request_id();
    let shape = Shape::of_path(request.uri().path());
    // Every log line of the request, in whichever task, carries its id.
    let span = tracing::info_span!("request", id = %id);
    let refused = oversized(&request, shape).or_else(|| oauth_token_refused(&request, shape));
    let mut response = match refused {
        Some(refused) => refused,
        None => {
            request.extensions_mut().insert(RequestId(id.clone()));
            let response = next.run(request).instrument(span).await;
            reshape_framework_error(shape, response).await
        }
    };
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

/// An OAuth token (not a key) reaches only the model APIs and the open
/// API: not the user's files, stored objects, usage or key management,
/// which the user never approved for the app.
fn oauth_token_refused(request: &Request, shape: Option<Shape>) -> Option<Response> {
    let token = crate::auth::presented_secret(request.headers())?;
    if !token.starts_with(crate::secrets::OAUTH_TOKEN_PREFIX)
        || crate::oauth::token_may_call(request.method(), request.uri().path())
    {
        return None;
    }
    let refusal = crate::oauth::oauth_error(
        403,
        "oauth_scope_error",
        "An OAuth token may call only the model APIs and the OAuth open API.",
    );
    Some(match shape {
        Some(shape) => refusal.render(shape),
        None => ohmygpt::envelope(Err(refusal)),
    })
}

/// Runs a metered handler's work so that a client hanging up cannot cancel
/// it: the connection polls it in place, and if the connection drops it
/// unfinished, the rest runs in a task of its own — a hold once placed is
/// always settled ([`Finishing`](crate::finishing::Finishing)).
///
/// Not an `async fn`: the work is boxed at once, and the handler's future
/// holds only the box (an `async fn` would hold the whole work, kilobytes,
/// copied into each future on the way).
pub(crate) fn detached<F>(work: F) -> impl std::future::Future<Output = Response>
where
    F: std::future::Future<Output = Response> + Send + 'static,
{
    use futures_util::FutureExt;
    crate::finishing::Finishing::new(work)
        .map(|answered| answered.unwrap_or_else(|| ApiError::Internal.into_response()))
}

/// Turns a handler's `Result` into a response.
/// `response` with `headers` added (e.g. a request's rate-limit headroom).
pub(crate) fn with_headers(
    mut response: Response,
    headers: Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
) -> Response {
    let map = response.headers_mut();
    map.reserve(headers.len());
    for (name, value) in headers {
        map.insert(name, value);
    }
    response
}

pub(crate) fn respond<T: IntoResponse>(result: Result<T, ApiError>) -> Response {
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}
