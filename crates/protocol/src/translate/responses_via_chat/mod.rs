//! An OpenAI Responses client served by an OpenAI chat-completions upstream.
//!
//! The gateway keeps the conversation state a Responses client relies on
//! (`previous_response_id`, `conversation`, `store`, `background`); this
//! module sees only values. [`input_items`] normalises a request's `input`,
//! [`request()`] turns the whole conversation into one chat-completions body,
//! and [`StreamTranslator`] turns the upstream's chunks back into the
//! Responses event stream while keeping the Response object it describes.
//! [`response_from_chat`] does the same for a whole (non-streamed) completion
//! by feeding it through the stream state machine, so both paths agree.
//!
//! Wire shapes follow OpenAI's API reference and SDK types (openai-node
//! `resources/responses/responses.ts`, openai-python `types/responses`) and a
//! recorded OpenAI stream: every event carries `type` and a 0-based,
//! gap-free `sequence_number`, and is framed as `event: <type>\ndata: <json>`.
//!
//! One file per job: `request` (the chat body), `response` (the Response
//! object: skeleton, usage, whole completions) and `stream` (the event state
//! machine). This file holds what they share and the `input` normalisation
//! the gateway also uses for stored items.

mod request;
mod response;
mod stream;

use serde_json::{json, Map, Value};

use super::{str_field, TranslateError};

/// One SSE frame with an `event:` line; shared with the Anthropic encoder.
pub use crate::anthropic::encode_event;
pub use request::request;
pub use response::{response_from_chat, response_skeleton, usage_json};
pub use stream::StreamTranslator;

/// Joins a namespace and a tool name into the one flat function name a chat
/// upstream sees. Codex names MCP tools this way (`mcp__server__tool`).
const NAMESPACE_DELIMITER: &str = "__";

fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}{NAMESPACE_DELIMITER}{name}")
}

/// The one string parameter of the chat function a custom (freeform) tool
/// is offered as; a call's `{"input": …}` arguments carry the tool's input.
const CUSTOM_INPUT: &str = "input";

// ---------------------------------------------------------------------------
// Input items
// ---------------------------------------------------------------------------

/// A Responses `input` (string or array of items) as a list of input items.
///
/// A string becomes one user message. Array elements that are messages
/// without `type` get `"type": "message"`, and a message's string `content`
/// becomes one text part (`input_text`, or `output_text` for the assistant),
/// so stored items always have the shape the API returns for them.
pub fn input_items(input: &Value) -> Result<Vec<Value>, TranslateError> {
    match input {
        Value::String(text) => Ok(vec![text_message("user", text)]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| normalize_item(item, index))
            .collect(),
        _ => Err(TranslateError(
            "`input` must be a string or an array of input items.".into(),
        )),
    }
}

fn text_message(role: &str, text: &str) -> Value {
    json!({"type": "message", "role": role, "content": [text_part(role, text)]})
}

fn text_part(role: &str, text: &str) -> Value {
    let kind = if role == "assistant" {
        "output_text"
    } else {
        "input_text"
    };
    json!({"type": kind, "text": text})
}

fn normalize_item(item: &Value, index: usize) -> Result<Value, TranslateError> {
    let Value::Object(fields) = item else {
        return Err(TranslateError(format!("input[{index}] must be an object.")));
    };
    let is_message = match fields.get("type") {
        None | Some(Value::Null) => fields.contains_key("role"),
        Some(kind) => kind == "message",
    };
    if !is_message {
        return Ok(item.clone());
    }
    // Rebuilt so that `type` comes first, as in the API's own items.
    let mut message = Map::new();
    message.insert("type".into(), json!("message"));
    for (key, value) in fields {
        if key != "type" {
            message.insert(key.clone(), value.clone());
        }
    }
    if let Some(Value::String(text)) = fields.get("content") {
        let role = str_field(item, "role").unwrap_or("user");
        message.insert("content".into(), json!([text_part(role, text)]));
    }
    Ok(Value::Object(message))
}
