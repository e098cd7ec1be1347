//! `/v1/conversations`: conversations and their items, each visible only to
//! the user who created it.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Json;
use protocol::translate::responses_via_chat::input_items;
use serde_json::{json, Map, Value};
use store::Conversation;

use super::body::parse_json;
use super::list::{list_object, ListQuery};
use crate::api::caller::Caller;
use crate::error::ApiError;
use crate::metadata::metadata_of;
use crate::responses::expires_at;
use crate::responses::history::give_id;
use crate::secrets::new_object_id;
use crate::state::App;

/// Most items one request may add (OpenAI's limit).
const MAX_ITEMS_PER_REQUEST: usize = 20;

type Answer = Result<Json<Value>, ApiError>;

pub async fn create(State(app): State<App>, Caller(caller): Caller, body: Bytes) -> Answer {
    let params: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_json(&body)?
    };
    let metadata = metadata_of(params.get("metadata"))?;
    let items = new_items(params.get("items"))?;
    let conversation = Conversation {
        id: new_object_id("conv"),
        user_id: caller.user.id,
        metadata,
        created_at: store::now_ms(),
    };
    app.store
        .create_conversation(&conversation, &items, expires_at(&app))
        .await?;
    Ok(Json(object(&conversation)))
}

pub async fn retrieve(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Answer {
    Ok(Json(object(&owned(&app, caller.user.id, &id).await?)))
}

pub async fn update(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let params: Map<String, Value> = parse_json(&body)?;
    let metadata = metadata_of(params.get("metadata"))?;
    if !app
        .store
        .update_conversation(caller.user.id, &id, &metadata)
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(Json(object(&owned(&app, caller.user.id, &id).await?)))
}

pub async fn delete(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Answer {
    if !app.store.delete_conversation(caller.user.id, &id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(
        json!({"id": id, "object": "conversation.deleted", "deleted": true}),
    ))
}

pub async fn add_items(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let params: Map<String, Value> = parse_json(&body)?;
    let items = new_items(params.get("items"))?;
    if items.is_empty() {
        return Err(ApiError::BadRequest(
            "`items` must list at least one item.".into(),
        ));
    }
    if !app
        .store
        .add_conversation_items(caller.user.id, &id, &items)
        .await?
    {
        return Err(not_found(&id));
    }
    let data = items.into_iter().map(|(_, item)| item).collect();
    Ok(Json(list_object(data, false)))
}

pub async fn list_items(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Answer {
    let page = app
        .store
        .list_conversation_items(
            caller.user.id,
            &id,
            query.after.as_deref(),
            query.limit()?,
            query.ascending(false)?,
        )
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(Json(list_object(page.items, page.has_more)))
}

pub async fn get_item(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((id, item_id)): Path<(String, String)>,
) -> Answer {
    let item = app
        .store
        .get_conversation_item(caller.user.id, &id, &item_id)
        .await?
        .ok_or_else(|| item_not_found(&item_id))?;
    Ok(Json(item))
}

pub async fn delete_item(
    State(app): State<App>,
    Caller(caller): Caller,
    Path((id, item_id)): Path<(String, String)>,
) -> Answer {
    let user = caller.user.id;
    if !app
        .store
        .delete_conversation_item(user, &id, &item_id)
        .await?
    {
        return Err(item_not_found(&item_id));
    }
    Ok(Json(object(&owned(&app, user, &id).await?)))
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

fn item_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Item with id '{id}'"))
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
