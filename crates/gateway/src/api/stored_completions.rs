//! Stored chat completions (`store: true`): OpenAI's list, retrieve, update,
//! delete and messages routes, plus POST forms of list, retrieve and delete
//! for clients that only POST (OhMyGPT documents its "Store" API that way).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};
use store::{CompletionFilter, StoredCompletion};

use super::body::parse_json;
use super::list::{list_object, page, ListQuery};
use super::respond;
use crate::auth::{authenticate, Principal};
use crate::error::ApiError;
use crate::metadata::metadata_of;
use crate::state::App;

/// `GET /v1/chat/completions?model=…&metadata[k]=v&after=…&limit=…&order=…`
pub async fn list(
    State(app): State<App>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let mut params = Map::new();
    let mut metadata = Map::new();
    for (name, value) in pairs {
        match name
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            Some(key) => {
                metadata.insert(key.to_string(), json!(value));
            }
            None => {
                params.insert(name, json!(value));
            }
        }
    }
    params.insert("metadata".into(), Value::Object(metadata));
    respond(list_with(&app, &headers, params).await)
}

/// `POST /v1/chat/completions/list` with the same parameters in a JSON body.
pub async fn list_by_post(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let params = optional_json(&body)?;
            list_with(&app, &headers, params).await
        }
        .await,
    )
}

async fn list_with(
    app: &App,
    headers: &HeaderMap,
    params: Map<String, Value>,
) -> Result<Json<Value>, ApiError> {
    let principal = authenticate(app, headers).await?;
    let text = |name: &str| match params.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let query = ListQuery {
        after: text("after"),
        limit: match text("limit") {
            Some(l) => Some(
                l.parse()
                    .map_err(|_| ApiError::BadRequest("`limit` must be a number.".into()))?,
            ),
            None => None,
        },
        order: text("order"),
    };
    let filter = CompletionFilter {
        user_id: principal.user.id,
        model: text("model"),
        metadata: metadata_of(params.get("metadata"))?,
        after: query.after.clone(),
        limit: query.limit()?,
        ascending: query.ascending(true)?,
    };
    let mut found = app.store.list_completions(&filter).await?;
    let has_more = found.len() > filter.limit;
    found.truncate(filter.limit);
    let data = found
        .into_iter()
        .map(|mut c| {
            c.completion["metadata"] = json!(c.metadata);
            c.completion
        })
        .collect();
    Ok(Json(list_object(data, has_more)))
}

pub async fn retrieve(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            Ok(Json(owned(&app, &principal, &id).await?.completion))
        }
        .await,
    )
}

/// `POST /v1/chat/completions/{id}`: replaces the metadata.
pub async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let params: Map<String, Value> = parse_json(&body)?;
            let metadata = metadata_of(params.get("metadata"))?;
            let user = principal.user.id;
            let mut updated = app
                .store
                .update_completion_metadata(user, &id, &metadata)
                .await?
                .ok_or_else(|| not_found(&id))?;
            // The stored object carries its metadata; keep the two in step.
            updated.completion["metadata"] = json!(metadata);
            Ok(Json(updated.completion))
        }
        .await,
    )
}

pub async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            if !app.store.delete_completion(principal.user.id, &id).await? {
                return Err(not_found(&id));
            }
            Ok(Json(
                json!({"object": "chat.completion.deleted", "id": id, "deleted": true}),
            ))
        }
        .await,
    )
}

pub async fn messages(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let stored = owned(&app, &principal, &id).await?;
            Ok(Json(page(stored.messages, &query, true)?))
        }
        .await,
    )
}

async fn owned(app: &App, principal: &Principal, id: &str) -> Result<StoredCompletion, ApiError> {
    let mut stored = app
        .store
        .get_completion(principal.user.id, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    stored.completion["metadata"] = json!(stored.metadata);
    Ok(stored)
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Chat completion with id '{id}'"))
}

fn optional_json(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Map::new())
    } else {
        parse_json(body)
    }
}
