//! The context a turn continues: the chain of earlier responses named by
//! `previous_response_id`, or a conversation's items. Only the owner's
//! objects are found; anyone else's id is "not found", revealing nothing.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::secrets::new_object_id;
use crate::state::App;

/// The longest `previous_response_id` chain followed (a guard, not a limit
/// anyone should meet).
const MAX_CHAIN: usize = 100_000;

/// Items of a conversation read at once when building its context.
const CONVERSATION_PAGE: usize = 1_000;

/// Every item of the chain ending at response `id`, oldest first: each
/// turn's input items followed by its output items.
pub async fn chain(app: &App, user_id: i64, id: &str) -> Result<Vec<Value>, ApiError> {
    let mut turns = Vec::new();
    let mut next = Some(id.to_string());
    while let Some(id) = next {
        if turns.len() >= MAX_CHAIN {
            return Err(ApiError::BadRequest(
                "The response chain is too long.".into(),
            ));
        }
        let stored = app
            .store
            .get_response(user_id, &id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("Previous response with id '{id}'")))?;
        next = stored.previous_response_id.clone();
        turns.push(stored);
    }
    let mut items = Vec::new();
    for turn in turns.into_iter().rev() {
        items.extend(turn.input_items);
        if let Some(Value::Array(output)) = turn.response.get("output") {
            items.extend(output.iter().cloned());
        }
    }
    Ok(items)
}

/// All of a conversation's items, oldest first.
pub async fn conversation(app: &App, user_id: i64, id: &str) -> Result<Vec<Value>, ApiError> {
    let mut items: Vec<Value> = Vec::new();
    loop {
        let after = items
            .last()
            .and_then(|i| i.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let page = app
            .store
            .list_conversation_items(user_id, id, after.as_deref(), CONVERSATION_PAGE, true)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("Conversation with id '{id}'")))?;
        items.extend(page.items);
        if !page.has_more {
            return Ok(items);
        }
    }
}

/// The `conversation` a request names, as an id or as `{"id": …}`.
pub fn conversation_id(params: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match params.get("conversation") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => Ok(Some(id.clone())),
        Some(Value::Object(o)) => match o.get("id").and_then(Value::as_str) {
            Some(id) => Ok(Some(id.to_string())),
            None => Err(ApiError::BadRequest(
                "`conversation.id` is required.".into(),
            )),
        },
        Some(_) => Err(ApiError::BadRequest(
            "`conversation` must be an id or an object with an `id`.".into(),
        )),
    }
}

/// Gives an item without an id one, with the prefix OpenAI uses for its type.
pub fn give_id(item: &mut Value) {
    let Some(map) = item.as_object_mut() else {
        return;
    };
    if map
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty())
    {
        return;
    }
    let prefix = match map.get("type").and_then(Value::as_str) {
        Some("message") => "msg",
        Some("function_call") => "fc",
        Some("function_call_output") => "fco",
        Some("reasoning") => "rs",
        _ => "item",
    };
    map.insert("id".into(), Value::String(new_object_id(prefix)));
}
