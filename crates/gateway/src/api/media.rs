//! OpenAI's JSON media endpoints, each metered in its own unit:
//! `POST /v1/images/generations` per image (by the model's price for the
//! size and quality asked; held for `n`, charged for the images made) and
//! `POST /v1/moderations` per call (free when its price is 0).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::parse_json;
use super::{detached, with_headers, RequestId};
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
/// The moderation model when a request names none (OpenAI's default).
const DEFAULT_MODERATION_MODEL: &str = "omni-moderation-latest";

/// One media endpoint: how its request is checked and what it costs.
#[derive(Clone, Copy)]
enum Endpoint {
    ImageGeneration,
    Moderation,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::ImageGeneration => "images.generations",
            Endpoint::Moderation => "moderations",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::ImageGeneration => "/images/generations",
            Endpoint::Moderation => "/moderations",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Endpoint::ImageGeneration => "image generation",
            Endpoint::Moderation => "moderation",
        }
    }

    fn unit(self) -> MeterUnit {
        match self {
            Endpoint::ImageGeneration => MeterUnit::Images,
            Endpoint::Moderation => MeterUnit::Calls,
        }
    }

    /// Checks `request` (filling in defaults); returns the most units it
    /// can cost and how its answer is counted.
    fn check(self, request: &mut Map<String, Value>) -> Result<(u64, Count), ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
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
            Endpoint::ImageGeneration => Some(model.image_price(
                request.get("size").and_then(Value::as_str),
                request.get("quality").and_then(Value::as_str),
            )),
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
        if route.model.unit != endpoint.unit() {
            return Err(ApiError::BadRequest(format!(
                "The model `{model}` does not offer {} (it is metered in {}).",
                endpoint.what(),
                route.model.unit.name()
            )));
        }
        let price = endpoint.price(&route.model, &request);
        let planner: Planner = Box::new(move |target| {
            target.provider.adapter.media(
                target,
                MediaCall {
                    path: endpoint.path(),
                    what: endpoint.what(),
                    body: &request,
                    count,
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
            max_output: 0,
            choices: 1,
            images: 0,
            units: Some((at_most, price)),
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
