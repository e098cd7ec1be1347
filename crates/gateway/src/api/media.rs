//! JSON media endpoints, each metered in its own unit: OpenAI's
//! `POST /v1/images/generations` per image (by the model's price for the
//! size and quality asked; held for `n`, charged for the images made) and
//! `POST /v1/moderations` per call (free when its price is 0); OhMyGPT's
//! drawing routes, one image each from an OpenAI-images-compatible upstream
//! — Flux (`POST /api/v1/ai/draw/flux/{variant}`, its answer in OhMyGPT's
//! envelope as `data.outputs`) and `POST /api/v1/ai/draw/nd/imagine`
//! (`data[0].url`) — JSON or form.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::{parse_fields, parse_json};
use super::ohmygpt::envelope;
use super::{detached, with_headers, RequestId};
use crate::api::caller::authenticate;
use crate::api::caller::Caller;
use crate::auth::Principal;
use crate::config::ModelSpec;
use crate::error::{ApiError, Shape};
use crate::money::{Decimal, MeterUnit};
use crate::pipeline::{self, Metered, Planner};
use crate::providers::MediaCall;
use crate::relay::transform::Count;
use crate::state::App;

/// Most characters of an image prompt (OpenAI's largest, gpt-image-1's).
const MAX_IMAGE_PROMPT: usize = 32_000;
/// Most images of one request.
const MAX_IMAGES: u64 = 10;
/// Output tokens held for one image of a model priced in tokens that sets
/// no `max_output_tokens` (gpt-image-1's largest high-quality image takes
/// 6,240).
pub(crate) const IMAGE_TOKENS_AT_MOST: u64 = 10_000;
/// The moderation model when a request names none (OpenAI's default).
const DEFAULT_MODERATION_MODEL: &str = "omni-moderation-latest";

/// One media endpoint: how its request is checked and what it costs.
#[derive(Clone, Copy)]
enum Endpoint {
    ImageGeneration,
    Moderation,
    Flux,
    Imagine,
}

/// Flux's variants (the path's last segment) and the model each bills
/// when a request names none.
const FLUX_VARIANTS: [(&str, &str); 5] = [
    ("schnell", "flux-schnell"),
    ("dev", "flux-dev"),
    ("pro", "flux-pro"),
    ("pro-11", "flux-pro-1.1"),
    ("pro-ultra-11", "flux-pro-1.1-ultra"),
];
/// The paths of OhMyGPT's drawing routes.
pub const FLUX: &str = "/api/v1/ai/draw/flux/{variant}";
pub const IMAGINE: &str = "/api/v1/ai/draw/nd/imagine";

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::ImageGeneration => "images.generations",
            Endpoint::Moderation => "moderations",
            Endpoint::Flux => "draw.flux",
            Endpoint::Imagine => "draw.imagine",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::ImageGeneration | Endpoint::Flux | Endpoint::Imagine => "/images/generations",
            Endpoint::Moderation => "/moderations",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Endpoint::ImageGeneration | Endpoint::Flux | Endpoint::Imagine => "image generation",
            Endpoint::Moderation => "moderation",
        }
    }

    fn unit(self) -> MeterUnit {
        match self {
            Endpoint::ImageGeneration | Endpoint::Flux | Endpoint::Imagine => MeterUnit::Images,
            Endpoint::Moderation => MeterUnit::Calls,
        }
    }

    /// Checks `request` (filling in defaults); returns the most units it
    /// can cost and how its answer is counted.
    fn check(self, request: &mut Map<String, Value>) -> Result<(u64, Count), ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        // Streamed images are not counted here: refused rather than free.
        if self.unit() == MeterUnit::Images
            && (request.get("stream") == Some(&Value::Bool(true))
                || request.contains_key("partial_images"))
        {
            return bad("Streamed images are not supported: leave `stream` out.".into());
        }
        match self {
            Endpoint::ImageGeneration => {
                match request.get("prompt") {
                    Some(Value::String(p)) if !p.is_empty() => {
                        if p.chars().count() > MAX_IMAGE_PROMPT {
                            return bad(format!(
                                "`prompt` has at most {MAX_IMAGE_PROMPT} characters."
                            ));
                        }
                    }
                    _ => return bad("`prompt` is required.".into()),
                }
                let n = match request.get("n") {
                    None | Some(Value::Null) => 1,
                    Some(v) => match v.as_u64().filter(|n| (1..=MAX_IMAGES).contains(n)) {
                        Some(n) => n,
                        None => return bad(format!("`n` must be 1 to {MAX_IMAGES}.")),
                    },
                };
                for field in ["size", "quality", "style", "response_format"] {
                    if let Some(v) = request.get(field) {
                        if !v.is_string() {
                            return bad(format!("`{field}` must be a string."));
                        }
                    }
                }
                if let Some(size) = request.get("size").and_then(Value::as_str) {
                    if !valid_size(size) {
                        return bad(format!(
                            "`size` must be WIDTHxHEIGHT (e.g. 1024x1024) or auto, not {size:?}."
                        ));
                    }
                }
                if let Some(format) = request.get("response_format").and_then(Value::as_str) {
                    if !["url", "b64_json"].contains(&format) {
                        return bad("`response_format` must be url or b64_json.".into());
                    }
                }
                Ok((n, Count::DataItems { at_most: n }))
            }
            Endpoint::Flux | Endpoint::Imagine => {
                match request.get("prompt") {
                    Some(Value::String(p)) if !p.trim().is_empty() => {}
                    _ => return bad("`prompt` is required.".into()),
                }
                // One image a call.
                if request.get("n").is_some_and(|n| n.as_u64() != Some(1)) {
                    return bad("These routes make one image a call.".into());
                }
                request.insert("n".into(), 1.into());
                if let Some(ratio) = request.get("aspect_ratio") {
                    let valid =
                        ratio
                            .as_str()
                            .and_then(|r| r.split_once(':'))
                            .is_some_and(|(w, h)| {
                                [w, h].iter().all(|d| {
                                    !d.is_empty()
                                        && d.len() <= 2
                                        && d.bytes().all(|b| b.is_ascii_digit())
                                })
                            });
                    if !valid {
                        return bad("`aspect_ratio` must be W:H (e.g. 16:9).".into());
                    }
                }
                if let Some(size) = request.get("size") {
                    if !size.as_str().is_some_and(valid_size) {
                        return bad("`size` must be WIDTHxHEIGHT (e.g. 1024x1024).".into());
                    }
                }
                if let Some(format) = request.get("response_format") {
                    if !format
                        .as_str()
                        .is_some_and(|f| ["url", "b64_json"].contains(&f))
                    {
                        return bad("`response_format` must be url or b64_json.".into());
                    }
                }
                Ok((1, Count::DataItems { at_most: 1 }))
            }
            Endpoint::Moderation => {
                match request.get("input") {
                    Some(Value::String(_)) | Some(Value::Array(_)) => {}
                    _ => return bad("`input` is required: a text, or a list of inputs.".into()),
                }
                request
                    .entry("model")
                    .or_insert_with(|| Value::String(DEFAULT_MODERATION_MODEL.into()));
                Ok((1, Count::Fixed(1)))
            }
        }
    }

    /// The price of one unit for `request` (an image's by its size and
    /// quality), when it is not the model's own.
    fn price(self, model: &ModelSpec, request: &Map<String, Value>) -> Option<Decimal> {
        match self {
            Endpoint::ImageGeneration | Endpoint::Imagine => Some(model.image_price(
                request.get("size").and_then(Value::as_str),
                request.get("quality").and_then(Value::as_str),
            )),
            // Priced by aspect ratio when image_prices names it.
            Endpoint::Flux => {
                Some(model.image_price(request.get("aspect_ratio").and_then(Value::as_str), None))
            }
            Endpoint::Moderation => None,
        }
    }
}

fn valid_size(size: &str) -> bool {
    size == "auto"
        || size.split_once('x').is_some_and(|(w, h)| {
            [w, h]
                .iter()
                .all(|d| !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit()))
        })
}

pub async fn image_generations(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    detached(relay(app, id, principal, body, Endpoint::ImageGeneration)).await
}

pub async fn moderations(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    detached(relay(app, id, principal, body, Endpoint::Moderation)).await
}

/// `POST /api/v1/ai/draw/flux/{variant}` (JSON or form).
pub async fn flux(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Path(variant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((_, model)) = FLUX_VARIANTS.iter().find(|(v, _)| *v == variant) else {
        return envelope(Err(ApiError::NotFound(format!("Flux variant {variant:?}"))));
    };
    detached(platform(app, id, headers, body, Endpoint::Flux, model)).await
}

/// `POST /api/v1/ai/draw/nd/imagine` (JSON or form).
pub async fn imagine(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(platform(
        app,
        id,
        headers,
        body,
        Endpoint::Imagine,
        "nd-imagine",
    ))
    .await
}

/// An OhMyGPT drawing route: its caller, its fields as JSON (numbers sent
/// as form text become numbers), `default_model` when none is named.
async fn platform(
    app: App,
    id: RequestId,
    headers: HeaderMap,
    body: Bytes,
    endpoint: Endpoint,
    default_model: &str,
) -> Response {
    let read = async {
        let principal = authenticate(&app, &headers).await?;
        let mut fields = parse_fields(&headers, &body)?;
        for name in ["n", "seed", "safety_tolerance", "image_prompt_strength"] {
            if let Some(Value::String(text)) = fields.get(name) {
                if let Ok(number) = serde_json::from_str::<serde_json::Number>(text.trim()) {
                    fields.insert(name.into(), Value::Number(number));
                }
            }
        }
        if let Some(Value::String(text)) = fields.get("raw") {
            let raw = text.trim() == "true";
            fields.insert("raw".into(), raw.into());
        }
        fields
            .entry("model")
            .or_insert_with(|| Value::String(default_model.into()));
        let body = Bytes::from(serde_json::to_vec(&fields).map_err(|_| ApiError::Internal)?);
        Ok::<_, ApiError>((principal, body))
    }
    .await;
    match read {
        Ok((principal, body)) => relay(app, id, principal, body, endpoint).await,
        Err(e) => envelope(Err(e)),
    }
}

async fn relay(
    app: App,
    id: RequestId,
    principal: Arc<Principal>,
    body: Bytes,
    endpoint: Endpoint,
) -> Response {
    let prepared = async {
        let rewritten = pipeline::rewrite(&app, &principal, endpoint.name(), body).await?;
        let mut request: Map<String, Value> = parse_json(&rewritten.body)?;
        let (at_most, count) = endpoint.check(&mut request)?;
        let model = match request.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => return Err(ApiError::BadRequest("`model` is required.".into())),
        };
        let route = app.route(&principal, &model, None)?;
        // An image model priced in tokens (gpt-image-1) is charged the
        // tokens its answer reports, held for its worst case.
        let by_tokens = route.model.unit == MeterUnit::Tokens
            && route.model.images
            && endpoint.unit() == MeterUnit::Images;
        if route.model.unit != endpoint.unit() && !by_tokens {
            return Err(ApiError::BadRequest(format!(
                "The model `{model}` does not offer {} (it is metered in {}).",
                endpoint.what(),
                route.model.unit.name()
            )));
        }
        let price = endpoint.price(&route.model, &request);
        let per_image = route
            .model
            .max_output_tokens
            .unwrap_or(IMAGE_TOKENS_AT_MOST);
        let (count, units, max_output) = match by_tokens {
            true => (
                Count::Tokens {
                    worst_output: per_image.saturating_mul(at_most),
                },
                None,
                per_image,
            ),
            false => (count, Some((at_most, price)), 0),
        };
        let planner: Planner = Box::new(move |target| {
            target.provider.adapter.media(
                target,
                MediaCall {
                    path: endpoint.path(),
                    what: endpoint.what(),
                    body: &request,
                    count,
                    outputs_envelope: matches!(endpoint, Endpoint::Flux),
                },
            )
        });
        let metered = Metered {
            principal: &principal,
            request_id: &id.0,
            endpoint: endpoint.name(),
            route,
            stream: false,
            body: &rewritten.body,
            max_output,
            choices: at_most,
            images: 0,
            units,
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
        Err(e) if matches!(endpoint, Endpoint::Flux | Endpoint::Imagine) => envelope(Err(e)),
        Err(e) => e.render(Shape::OpenAi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(endpoint: Endpoint, body: Value) -> Result<(u64, Count), ApiError> {
        endpoint.check(&mut body.as_object().cloned().unwrap())
    }

    #[test]
    fn media_requests_are_checked_and_bounded() {
        let images = Endpoint::ImageGeneration;
        assert_eq!(
            check(
                images,
                json!({"prompt": "a cat", "n": 3, "size": "1024x1792"})
            )
            .unwrap(),
            (3, Count::DataItems { at_most: 3 })
        );
        for bad in [
            json!({"n": 1}),
            json!({"prompt": "a cat", "n": 11}),
            json!({"prompt": "a cat", "n": 0}),
            json!({"prompt": "a cat", "size": "big"}),
            json!({"prompt": "a cat", "response_format": "gif"}),
            json!({"prompt": "x".repeat(32_001)}),
        ] {
            assert!(check(images, bad.clone()).is_err(), "{bad}");
        }
        let mut moderation = json!({"input": ["a", "b"]}).as_object().cloned().unwrap();
        assert_eq!(
            Endpoint::Moderation.check(&mut moderation).unwrap(),
            (1, Count::Fixed(1))
        );
        assert_eq!(moderation["model"], DEFAULT_MODERATION_MODEL);
        assert!(check(Endpoint::Moderation, json!({"model": "m"})).is_err());
    }
}
