//! OpenAI's multipart image endpoints: `POST /v1/images/edits` (an image,
//! or several as `image[]`, an optional `mask`, a `prompt`) and
//! `/v1/images/variations` (an image). The files are spooled to disk and
//! streamed upstream (see [`super::form`]); billed per image made, at the
//! model's price for the size and quality asked, held for `n`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::parse_json;
use super::form;
use super::{detached, with_headers, RequestId};
use crate::api::caller::Caller;
use crate::auth::Principal;
use crate::error::{ApiError, Shape};
use crate::money::MeterUnit;
use crate::pipeline::{self, Metered, Planner};
use crate::providers::{MultipartCall, Upload};
use crate::relay::transform::Count;
use crate::state::App;

/// Most bytes of one image (gpt-image-1's limit).
const MAX_IMAGE_BYTES: u64 = 50 * 1024 * 1024;
/// Most images of one request.
const MAX_IMAGES: u64 = 10;

#[derive(Clone, Copy)]
enum Task {
    Edit,
    Variation,
}

impl Task {
    fn path(self) -> &'static str {
        match self {
            Task::Edit => "/images/edits",
            Task::Variation => "/images/variations",
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Task::Edit => "images.edits",
            Task::Variation => "images.variations",
        }
    }

    fn file_fields(self) -> &'static [&'static str] {
        match self {
            Task::Edit => &["image", "image[]", "mask"],
            Task::Variation => &["image"],
        }
    }
}

pub async fn edits(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    detached(relay(app, id, principal, multipart, Task::Edit)).await
}

pub async fn variations(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    detached(relay(app, id, principal, multipart, Task::Variation)).await
}

async fn relay(
    app: App,
    id: RequestId,
    principal: Arc<Principal>,
    multipart: Result<Multipart, MultipartRejection>,
    task: Task,
) -> Response {
    let prepared = async {
        let multipart = multipart.map_err(|e| {
            ApiError::BadRequest(format!(
                "An image edit is multipart/form-data with an `image` part: {e}"
            ))
        })?;
        let (files, fields) = form::read(multipart, task.file_fields(), MAX_IMAGE_BYTES).await?;
        if !files.iter().any(|(name, _)| name.starts_with("image")) {
            return Err(ApiError::BadRequest("`image` is required.".into()));
        }
        // The rules see (and may change) the fields as a JSON object.
        let body = Bytes::from(
            serde_json::to_vec(&form::to_doc(&fields)).map_err(|_| ApiError::Internal)?,
        );
        let rewritten = pipeline::rewrite(&app, &principal, task.endpoint(), body).await?;
        let doc: Map<String, Value> = parse_json(&rewritten.body)?;
        let text = |name: &str| doc.get(name).and_then(Value::as_str).map(str::to_string);
        let fields = form::from_doc(&doc);
        let model = text("model")
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| ApiError::BadRequest("`model` is required.".into()))?;
        if matches!(task, Task::Edit) && text("prompt").is_none_or(|p| p.trim().is_empty()) {
            return Err(ApiError::BadRequest("`prompt` is required.".into()));
        }
        let n = match text("n") {
            None => 1,
            Some(n) => n
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_IMAGES).contains(n))
                .ok_or_else(|| ApiError::BadRequest(format!("`n` must be 1 to {MAX_IMAGES}.")))?,
        };
        if text("stream").is_some_and(|s| s.trim() == "true") || doc.contains_key("partial_images")
        {
            return Err(ApiError::BadRequest(
                "Streamed images are not supported: leave `stream` out.".into(),
            ));
        }
        if let Some(format) = text("response_format") {
            if !["url", "b64_json"].contains(&format.as_str()) {
                return Err(ApiError::BadRequest(
                    "`response_format` must be url or b64_json.".into(),
                ));
            }
        }
        let route = app.route(&principal, &model, None)?;
        let by_tokens = route.model.unit == MeterUnit::Tokens && route.model.images;
        if route.model.unit != MeterUnit::Images && !by_tokens {
            return Err(ApiError::BadRequest(format!(
                "The model `{model}` does not edit images (it is metered in {}).",
                route.model.unit.name()
            )));
        }
        let price = route
            .model
            .image_price(text("size").as_deref(), text("quality").as_deref());
        let max_output = route
            .model
            .max_output_tokens
            .unwrap_or(super::media::IMAGE_TOKENS_AT_MOST);
        // The images sent count in a token-priced model's input.
        let files_count = files.len() as u64;
        let upload = Upload {
            files: files
                .into_iter()
                .map(|(name, file)| (name, Arc::new(file)))
                .collect(),
            fields,
        };
        let planner: Planner = Box::new(move |target| {
            target.provider.adapter.multipart(
                target,
                MultipartCall {
                    path: task.path(),
                    what: "image edits",
                    upload: upload.clone(),
                    count: match by_tokens {
                        true => Count::Tokens {
                            worst_output: max_output.saturating_mul(n),
                        },
                        false => Count::DataItems { at_most: n },
                    },
                },
            )
        });
        let metered = Metered {
            principal: &principal,
            request_id: &id.0,
            endpoint: task.endpoint(),
            route,
            stream: false,
            body: &rewritten.body,
            max_output: match by_tokens {
                true => max_output,
                false => 0,
            },
            choices: n,
            images: files_count,
            units: (!by_tokens).then_some((n, Some(price))),
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
