//! Pure, streaming-aware translation between client and upstream protocols.
//!
//! Each direction is a module with three parts: `request` (client body →
//! upstream body), `response` (upstream body → client body) and a stream
//! state machine fed one upstream event at a time. Inputs are JSON values, so
//! a malformed or unexpected field can never panic: it is mapped, dropped
//! (and named in `Translated::dropped`, for a debug log), or refused with a
//! [`TranslateError`] when dropping it would change the answer's meaning.

pub mod chat_via_messages;
pub mod complete;
pub mod messages_via_chat;
pub mod responses_via_chat;

use std::fmt;

use serde_json::{Map, Value};

/// A request that cannot be translated without changing its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError(pub String);

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TranslateError {}

/// A translated request body and the fields that had no equivalent.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub body: Map<String, Value>,
    pub dropped: Vec<String>,
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason_from_finish(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_from_stop_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// The text of a string or of an array of text blocks/parts.
pub(crate) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => String::new(),
    }
}

/// An Anthropic `tool_use` block as an OpenAI `tool_calls[]` entry.
pub(crate) fn tool_call_of(block: &Value) -> Value {
    serde_json::json!({
        "id": str_field(block, "id").unwrap_or_default(),
        "type": "function",
        "function": {
            "name": str_field(block, "name").unwrap_or_default(),
            "arguments": block.get("input").map(Value::to_string).unwrap_or_else(|| "{}".into()),
        },
    })
}

pub(crate) fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}
