//! Stored chat completions (`store: true`): OpenAI's list, retrieve, update,
//! delete and messages routes, plus POST forms of list, retrieve and delete
//! for clients that only POST (OhMyGPT documents its "Store" API that way).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Map, Value};
use store::{CompletionFilter, StoredCompletion};

use super::body::parse_json;
use super::list::{list_object, page, ListQuery};
use crate::api::caller::Caller;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::metadata::metadata_of;
use crate::state::App;

type Answer = Result<Json<Value>, ApiError>;

/// `GET /v1/chat/completions?model=…&metadata[k]=v&after=…&limit=…&order=…`
pub async fn list(
    State(app): State<App>,
    Caller(caller): Caller,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Answer {
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
    list_with(&app, &caller, params).await
}

/// `POST /v1/chat/completions/list` with the same parameters in a JSON body.
pub async fn list_by_post(State(app): State<App>, Caller(caller): Caller, body: Bytes) -> Answer {
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_json(&body)?
    };
    list_with(&app, &caller, params).await
}

async fn list_with(app: &App, caller: &Principal, params: Map<String, Value>) -> Answer {
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
        user_id: caller.user.id,
        model: text("model"),
        metadata: metadata_of(params.get("metadata"))?,
        after: query.after.clone(),
        limit: query.limit()?,
        ascending: query.ascending(true)?,
    };
    let mut found = app.store.list_completions(&filter).await?;
    let has_more = found.len() > filter.limit;
    found.truncate(filter.limit);
    let data = found.into_iter().map(shown).collect();
    Ok(Json(list_object(data, has_more)))
}

pub async fn retrieve(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Answer {
    Ok(Json(shown(owned(&app, &caller, &id).await?)))
}

/// `POST /v1/chat/completions/{id}`: replaces the metadata.
pub async fn update(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let params: Map<String, Value> = parse_json(&body)?;
    let metadata = metadata_of(params.get("metadata"))?;
    let updated = app
        .store
        .update_completion_metadata(caller.user.id, &id, &metadata)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(shown(updated)))
}

pub async fn delete(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Answer {
    if !app.store.delete_completion(caller.user.id, &id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(
        json!({"object": "chat.completion.deleted", "id": id, "deleted": true}),
    ))
}

pub async fn messages(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Answer {
    let stored = owned(&app, &caller, &id).await?;
    Ok(Json(page(stored.messages, &query, true)?))
}

/// The completion as the API shows it, with its current metadata (the
/// stored object carries the metadata it was created with).
fn shown(mut stored: StoredCompletion) -> Value {
    stored.completion["metadata"] = json!(stored.metadata);
    stored.completion
}

async fn owned(app: &App, caller: &Principal, id: &str) -> Result<StoredCompletion, ApiError> {
    app.store
        .get_completion(caller.user.id, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Chat completion with id '{id}'"))
}
