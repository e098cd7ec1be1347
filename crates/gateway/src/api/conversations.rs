//! `/v1/conversations`: conversations and their items, each visible only to
//! the user who created it.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use protocol::translate::responses_via_chat::input_items;
use serde_json::{json, Map, Value};
use store::Conversation;

use super::body::parse_json;
use super::list::{list_object, ListQuery};
use super::respond;
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::metadata::metadata_of;
use crate::responses::expires_at;
use crate::responses::history::give_id;
use crate::secrets::new_object_id;
use crate::state::App;

/// Most items one request may add (OpenAI's limit).
const MAX_ITEMS_PER_REQUEST: usize = 20;

pub async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let params: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
                Map::new()
            } else {
                parse_json(&body)?
            };
            let metadata = metadata_of(params.get("metadata"))?;
            let items = new_items(params.get("items"))?;
            let conversation = Conversation {
                id: new_object_id("conv"),
                user_id: principal.user.id,
                metadata,
                created_at: store::now_ms(),
            };
            app.store
                .create_conversation(&conversation, &items, expires_at(&app))
                .await?;
            Ok(Json(object(&conversation)))
        }
        .await,
    )
}

pub async fn retrieve(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let conversation = owned(&app, principal.user.id, &id).await?;
            Ok(Json(object(&conversation)))
        }
        .await,
    )
}

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
            if !app
                .store
                .update_conversation(principal.user.id, &id, &metadata)
                .await?
            {
                return Err(not_found(&id));
            }
            let conversation = owned(&app, principal.user.id, &id).await?;
            Ok(Json(object(&conversation)))
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
            if !app
                .store
                .delete_conversation(principal.user.id, &id)
                .await?
            {
                return Err(not_found(&id));
            }
            Ok(Json(
                json!({"id": id, "object": "conversation.deleted", "deleted": true}),
            ))
        }
        .await,
    )
}

pub async fn add_items(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let params: Map<String, Value> = parse_json(&body)?;
            let items = new_items(params.get("items"))?;
            if items.is_empty() {
                return Err(ApiError::BadRequest(
                    "`items` must list at least one item.".into(),
                ));
            }
            if !app
                .store
                .add_conversation_items(principal.user.id, &id, &items)
                .await?
            {
                return Err(not_found(&id));
            }
            let data = items.into_iter().map(|(_, item)| item).collect();
            Ok(Json(list_object(data, false)))
        }
        .await,
    )
}

pub async fn list_items(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let page = app
                .store
                .list_conversation_items(
                    principal.user.id,
                    &id,
                    query.after.as_deref(),
                    query.limit()?,
                    query.ascending(false)?,
                )
                .await?
                .ok_or_else(|| not_found(&id))?;
            Ok(Json(list_object(page.items, page.has_more)))
        }
        .await,
    )
}

pub async fn get_item(
    State(app): State<App>,
    Path((id, item_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let item = app
                .store
                .get_conversation_item(principal.user.id, &id, &item_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Item with id '{item_id}'")))?;
            Ok(Json(item))
        }
        .await,
    )
}

pub async fn delete_item(
    State(app): State<App>,
    Path((id, item_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let principal = authenticate(&app, &headers).await?;
            let user = principal.user.id;
            if !app
                .store
                .delete_conversation_item(user, &id, &item_id)
                .await?
            {
                return Err(ApiError::NotFound(format!("Item with id '{item_id}'")));
            }
            let conversation = owned(&app, user, &id).await?;
            Ok(Json(object(&conversation)))
        }
        .await,
    )
}

async fn owned(app: &App, user_id: i64, id: &str) -> Result<Conversation, ApiError> {
    app.store
        .get_conversation(user_id, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Conversation with id '{id}'"))
}

/// The conversation as the API shows it.
fn object(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "object": "conversation",
        "created_at": c.created_at / 1000,
        "metadata": c.metadata,
    })
}

/// Items a client adds, normalised like Responses input, each with an id.
fn new_items(items: Option<&Value>) -> Result<Vec<(String, Value)>, ApiError> {
    let Some(items) = items.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    if !items.is_array() {
        return Err(ApiError::BadRequest("`items` must be an array.".into()));
    }
    let mut items = input_items(items).map_err(|e| ApiError::BadRequest(e.0))?;
    if items.len() > MAX_ITEMS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "At most {MAX_ITEMS_PER_REQUEST} items can be added at once."
        )));
    }
    Ok(items
        .drain(..)
        .map(|mut item| {
            give_id(&mut item);
            let id = item["id"].as_str().unwrap_or_default().to_string();
            (id, item)
        })
        .collect())
}
