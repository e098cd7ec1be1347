//! Anthropic wire types: the fields the gateway reads are typed; the rest of
//! a request travels in `extra`, untouched.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::usage::TokenUsage;

/// The body of `POST /v1/messages` (and `/v1/messages/count_tokens`); the
/// rest of it is in `extra` (read by [`crate::extra`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessagesRequest {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::extra::with_extra!(MessagesRequest { model; max_tokens, stream });

impl MessagesRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// Holds a Messages body's `max_tokens` to `limit`, the model's own, when
/// the client asked for more (upstreams refuse a cap above the model's).
/// Extended thinking needs `thinking.budget_tokens` below `max_tokens`, so a
/// budget the new cap would not leave room for is lowered with it.
pub fn clamp_max_tokens(body: &mut Map<String, Value>, limit: Option<u64>) {
    let Some(limit) = limit else { return };
    match body.get("max_tokens").and_then(Value::as_u64) {
        Some(asked) if asked > limit => {
            body.insert("max_tokens".into(), Value::from(limit));
        }
        _ => return,
    }
    if let Some(thinking) = body.get_mut("thinking").and_then(Value::as_object_mut) {
        if let Some(budget) = thinking.get("budget_tokens").and_then(Value::as_u64) {
            if budget >= limit {
                thinking.insert("budget_tokens".into(), Value::from(limit.saturating_sub(1)));
            }
        }
    }
}

/// Anthropic's `usage` object. Fields are optional because `message_delta`
/// events carry only those that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// Overwrites the fields `newer` carries (Anthropic's counts are cumulative).
    pub fn merge(&mut self, newer: &Usage) {
        if newer.input_tokens.is_some() {
            self.input_tokens = newer.input_tokens;
        }
        if newer.output_tokens.is_some() {
            self.output_tokens = newer.output_tokens;
        }
        if newer.cache_creation_input_tokens.is_some() {
            self.cache_creation_input_tokens = newer.cache_creation_input_tokens;
        }
        if newer.cache_read_input_tokens.is_some() {
            self.cache_read_input_tokens = newer.cache_read_input_tokens;
        }
    }

    /// Anthropic's `input_tokens` excludes cache reads and writes; the meter
    /// counts every prompt token as input. The counts come from the upstream,
    /// so their sum saturates rather than wrapping to a small number.
    pub fn to_tokens(&self) -> TokenUsage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        TokenUsage {
            input: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(read)
                .saturating_add(write),
            output: self.output_tokens.unwrap_or(0),
            cached_input: read,
            cache_write: write,
        }
    }

    pub fn from_tokens(t: &TokenUsage) -> Usage {
        Usage {
            input_tokens: Some(t.uncached_input()),
            output_tokens: Some(t.output),
            cache_creation_input_tokens: Some(t.cache_write),
            cache_read_input_tokens: Some(t.cached_input),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct MessageProbe {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The usage of a complete `Message` body.
pub fn body_usage(body: &[u8]) -> Option<TokenUsage> {
    let probe: MessageProbe = serde_json::from_slice(body).ok()?;
    probe.usage.map(|u| u.to_tokens())
}

#[derive(Debug, Default, Deserialize)]
struct EventProbe {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<MessageProbe>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// Accumulates usage from a Messages stream: `message_start` carries the
/// input side, `message_delta` the cumulative output (and, on newer API
/// versions, updated input counts).
#[derive(Debug, Clone, Default)]
pub struct StreamMeter {
    usage: Usage,
    seen: bool,
    /// `message_delta` reported the final output count (`message_start`'s
    /// is a placeholder).
    complete: bool,
}

impl StreamMeter {
    /// Reads one event's `data`; cheap for events that cannot carry usage.
    pub fn observe(&mut self, data: &str) {
        if !data.contains("\"usage\"") {
            return;
        }
        let Ok(probe) = serde_json::from_str::<EventProbe>(data) else {
            return;
        };
        let usage = match probe.kind.as_str() {
            "message_start" => probe.message.and_then(|m| m.usage),
            "message_delta" => probe.usage,
            _ => None,
        };
        if let Some(u) = usage {
            self.usage.merge(&u);
            self.seen = true;
            self.complete |= probe.kind == "message_delta";
        }
    }

    /// Whether the usage seen so far is final: a stream cut off before its
    /// `message_delta` reported only the input side.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn usage(&self) -> Option<TokenUsage> {
        self.seen.then(|| self.usage.to_tokens())
    }
}

/// Anthropic's error envelope: `{"type":"error","error":{"type","message"}}`.
pub fn error_body(kind: &str, message: &str) -> Value {
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// Encodes one named SSE event the way Anthropic does.
pub fn encode_event(name: &str, data: &Value) -> bytes::Bytes {
    let json = data.to_string();
    let mut out = Vec::with_capacity(json.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_meter_merges_start_and_delta() {
        let mut m = StreamMeter::default();
        m.observe(r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":20,"cache_read_input_tokens":5,"cache_creation_input_tokens":3,"output_tokens":1}}}"#);
        m.observe(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"usage"}}"#);
        m.observe(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":42}}"#);
        assert_eq!(
            m.usage(),
            Some(TokenUsage {
                input: 28,
                output: 42,
                cached_input: 5,
                cache_write: 3
            })
        );
    }

    #[test]
    fn huge_counts_saturate_instead_of_wrapping() {
        // u64::MAX input tokens plus one cache read panicked (debug) or
        // wrapped to 0 input tokens (release): a free request.
        let mut m = StreamMeter::default();
        m.observe(&format!(
            r#"{{"type":"message_start","message":{{"usage":{{"input_tokens":{},"cache_read_input_tokens":1,"cache_creation_input_tokens":2}}}}}}"#,
            u64::MAX
        ));
        let u = m.usage().unwrap();
        assert_eq!((u.input, u.cached_input, u.cache_write), (u64::MAX, 1, 2));
    }

    #[test]
    fn max_tokens_is_held_to_the_models_limit_with_room_for_thinking() {
        let mut body = serde_json::json!({
            "model": "m", "max_tokens": 32_000,
            "thinking": {"type": "enabled", "budget_tokens": 31_999}
        })
        .as_object()
        .cloned()
        .unwrap();
        clamp_max_tokens(&mut body, Some(16_384));
        assert_eq!(body["max_tokens"], 16_384);
        assert_eq!(body["thinking"]["budget_tokens"], 16_383);
        // Under the limit, or no limit: untouched.
        let before = body.clone();
        clamp_max_tokens(&mut body, Some(20_000));
        clamp_max_tokens(&mut body, None);
        assert_eq!(body, before);
        // A budget that still fits stays.
        let mut small = serde_json::json!({
            "max_tokens": 64_000, "thinking": {"type": "enabled", "budget_tokens": 2048}
        })
        .as_object()
        .cloned()
        .unwrap();
        clamp_max_tokens(&mut small, Some(8_192));
        assert_eq!(small["max_tokens"], 8_192);
        assert_eq!(small["thinking"]["budget_tokens"], 2048);
        // No cap asked: none added.
        let mut none = Map::new();
        clamp_max_tokens(&mut none, Some(10));
        assert!(none.is_empty());
    }

    #[test]
    fn absurd_usage_saturates_instead_of_overflowing() {
        let u = body_usage(
            format!(
                r#"{{"usage":{{"input_tokens":{m},"cache_read_input_tokens":{m},"cache_creation_input_tokens":{m},"output_tokens":{m}}}}}"#,
                m = u64::MAX
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(u.input, u64::MAX);
        assert_eq!(u.output, u64::MAX);
    }

    #[test]
    fn body_usage_and_round_trip() {
        let u = body_usage(br#"{"type":"message","usage":{"input_tokens":7,"output_tokens":2}}"#)
            .unwrap();
        assert_eq!((u.input, u.output), (7, 2));
        assert_eq!(Usage::from_tokens(&u).to_tokens(), u);
    }
}
