//! OhMyGPT's web search routes, billed per call (failed calls cost
//! nothing): Google Custom Search, `GET` with CSE's query parameters, and
//! Serper, `POST` with form (or JSON) fields. The caller's key comes as a
//! bearer token or, for Google's form, as `key=`. The upstream's JSON is
//! passed through.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::{field_str, parse_fields, parse_json, serde_urlencoded_pairs};
use super::ohmygpt::envelope;
use super::{detached, with_headers, RequestId};
use crate::api::caller::authenticate;
use crate::auth::Principal;
use crate::error::{ApiError, Shape};
use crate::money::MeterUnit;
use crate::pipeline::{self, Metered, Planner};
use crate::state::App;

/// The routes (OhMyGPT's paths).
pub const GOOGLE: &str = "/api/v1/openapi/search/google-search/v1";
pub const SERPER: &str = "/api/v1/openapi/search/serper/v1";

/// What a search route calls, and the model it bills when none is named.
#[derive(Clone, Copy)]
struct Search {
    endpoint: &'static str,
    default_model: &'static str,
}

const GOOGLE_SEARCH: Search = Search {
    endpoint: "search.google",
    default_model: "google-search",
};
const SERPER_SEARCH: Search = Search {
    endpoint: "search.serper",
    default_model: "serper",
};

/// `GET …/google-search/v1?q=…`.
pub async fn google(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = serde_urlencoded_pairs(query.unwrap_or_default().as_bytes());
    detached(relay(app, id, headers, params, GOOGLE_SEARCH)).await
}

/// `POST …/serper/v1` (form or JSON: `q`, `gl`, `hl`, `page`, `num`).
pub async fn serper(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match parse_fields(&headers, &body) {
        Ok(fields) => fields
            .keys()
            .filter_map(|k| field_str(&fields, k).map(|v| (k.clone(), v)))
            .collect(),
        Err(e) => return envelope(Err(e)),
    };
    detached(relay(app, id, headers, params, SERPER_SEARCH)).await
}

/// The caller: a bearer token, else the `key` parameter (taken out).
async fn caller(
    app: &App,
    headers: &HeaderMap,
    params: &mut Vec<(String, String)>,
) -> Result<Arc<Principal>, ApiError> {
    let key = params
        .iter()
        .position(|(k, _)| k == "key")
        .map(|i| params.remove(i).1);
    match (headers.contains_key("authorization"), key) {
        (false, Some(key)) => {
            let mut with_key = HeaderMap::new();
            let bearer = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| ApiError::InvalidApiKey)?;
            with_key.insert("authorization", bearer);
            authenticate(app, &with_key).await
        }
        _ => authenticate(app, headers).await,
    }
}

async fn relay(
    app: App,
    id: RequestId,
    headers: HeaderMap,
    mut params: Vec<(String, String)>,
    search: Search,
) -> Response {
    let prepared = async {
        let principal = caller(&app, &headers, &mut params).await?;
        // The rules see (and may change) the search as a JSON object.
        let mut doc: Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        doc.entry("model")
            .or_insert_with(|| Value::String(search.default_model.into()));
        let body = Bytes::from(serde_json::to_vec(&doc).map_err(|_| ApiError::Internal)?);
        let rewritten = pipeline::rewrite(&app, &principal, search.endpoint, body).await?;
        let doc: Map<String, Value> = parse_json(&rewritten.body)?;
        let model = doc
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(search.default_model)
            .to_string();
        let params: Vec<(String, String)> = doc
            .iter()
            .filter(|(k, _)| k.as_str() != "model")
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), s.clone())),
                Value::Number(n) => Some((k.clone(), n.to_string())),
                Value::Bool(b) => Some((k.clone(), b.to_string())),
                _ => None,
            })
            .collect();
        let route = app.route(&principal, &model, None)?;
        if route.model.unit != MeterUnit::Calls {
            return Err(ApiError::BadRequest(format!(
                "The model `{model}` is not a search service."
            )));
        }
        let planner: Planner =
            Box::new(move |target| target.provider.adapter.search(target, &params));
        let metered = Metered {
            principal: &principal,
            request_id: &id.0,
            endpoint: search.endpoint,
            route,
            stream: false,
            body: &rewritten.body,
            max_output: 0,
            choices: 1,
            images: 0,
            units: Some((1, None)),
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
        Err(e) => envelope(Err(e)),
    }
}
