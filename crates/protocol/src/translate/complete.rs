//! Anthropic's legacy Text Completions API (`POST /v1/complete`) served as a
//! Messages request: the `\n\nHuman: … \n\nAssistant:` prompt becomes turns,
//! and the Messages answer (or stream) becomes a completion again.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{str_field, TranslateError};
use crate::anthropic::{encode_event, StreamMeter};
use crate::usage::TokenUsage;

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

/// Translates a legacy completion request into a Messages request.
pub fn request(body: &Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    let prompt = body
        .get("prompt")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError("`prompt` is required and must be a string.".into()))?;
    let max_tokens = body
        .get("max_tokens_to_sample")
        .and_then(Value::as_u64)
        .ok_or_else(|| TranslateError("`max_tokens_to_sample` is required.".into()))?;
    let (system, messages) = parse_prompt(prompt)?;
    let mut out = Map::new();
    if let Some(model) = body.get("model") {
        out.insert("model".into(), model.clone());
    }
    if !system.is_empty() {
        out.insert("system".into(), json!(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), json!(max_tokens));
    for name in [
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "stream",
    ] {
        if let Some(v) = body.get(name) {
            out.insert(name.into(), v.clone());
        }
    }
    Ok(out)
}

/// Splits `…\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:` into a
/// system text (what precedes the first turn) and alternating messages; a
/// non-empty final assistant turn is kept as a prefill.
fn parse_prompt(prompt: &str) -> Result<(String, Vec<Value>), TranslateError> {
    let first = prompt.find(HUMAN).ok_or_else(|| {
        TranslateError(
            "`prompt` must contain \"\\n\\nHuman:\" turns (legacy prompt format).".into(),
        )
    })?;
    let system = prompt[..first].trim().to_string();
    let mut messages = Vec::new();
    let mut rest = &prompt[first..];
    while !rest.is_empty() {
        let (role, marker) = if rest.starts_with(HUMAN) {
            ("user", HUMAN)
        } else {
            ("assistant", ASSISTANT)
        };
        let body = &rest[marker.len()..];
        let end = [body.find(HUMAN), body.find(ASSISTANT)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(body.len());
        let text = body[..end].trim();
        rest = &body[end..];
        if role == "assistant" && text.is_empty() && rest.is_empty() {
            break; // The final "Assistant:" the model should continue.
        }
        messages.push(json!({"role": role, "content": text}));
    }
    if !prompt.trim_end().ends_with("Assistant:")
        && messages.last().map(|m| m["role"] == "user").unwrap_or(true)
    {
        return Err(TranslateError(
            "`prompt` must end with \"\\n\\nAssistant:\" (legacy prompt format).".into(),
        ));
    }
    Ok((system, messages))
}

fn stop_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" => "max_tokens",
        _ => "stop_sequence",
    }
}

/// Translates a Messages response into a legacy completion.
pub fn response(message: &Value, public_model: &str) -> Value {
    let text: String = message
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| str_field(b, "type") == Some("text"))
                .filter_map(|b| str_field(b, "text"))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "type": "completion",
        "id": str_field(message, "id").map(|id| id.replacen("msg_", "compl_", 1)).unwrap_or_else(|| "compl_tollgate".into()),
        "completion": text,
        "stop_reason": stop_reason(str_field(message, "stop_reason").unwrap_or("end_turn")),
        "stop": message.get("stop_sequence").cloned().unwrap_or(Value::Null),
        "model": public_model,
    })
}

/// Turns a Messages event stream into legacy `completion` events.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    public_model: String,
    meter: StreamMeter,
    stop_reason: Option<&'static str>,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(public_model: &str) -> Self {
        StreamTranslator {
            id: "compl_tollgate".into(),
            public_model: public_model.into(),
            meter: StreamMeter::default(),
            stop_reason: None,
            finished: false,
        }
    }

    pub fn usage(&self) -> Option<TokenUsage> {
        self.meter.usage()
    }

    fn completion(&self, text: &str, stop: Option<&str>) -> Bytes {
        encode_event(
            "completion",
            &json!({"type": "completion", "id": self.id, "completion": text, "stop_reason": stop, "model": self.public_model}),
        )
    }

    /// Feeds one Messages event's `data`; appends completion events to `out`.
    pub fn push(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.meter.observe(data);
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match str_field(&event, "type").unwrap_or_default() {
            "message_start" => {
                if let Some(id) = event.pointer("/message/id").and_then(Value::as_str) {
                    self.id = id.replacen("msg_", "compl_", 1);
                }
            }
            "content_block_delta" => {
                if let Some(text) = event.pointer("/delta/text").and_then(Value::as_str) {
                    out.push(self.completion(text, None));
                }
            }
            "message_delta" => {
                if let Some(stop) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(stop_reason(stop));
                }
            }
            "message_stop" => self.finish(out),
            "ping" => out.push(encode_event("ping", &json!({"type": "ping"}))),
            "error" => {
                out.push(encode_event("error", &event));
                self.finished = true;
            }
            _ => {}
        }
    }

    /// Ends the stream with the final event carrying the stop reason.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        out.push(self.completion("", Some(self.stop_reason.unwrap_or("stop_sequence"))));
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_becomes_turns() {
        let body = json!({
            "model": "claude-2.1",
            "prompt": "You are terse.\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Bye?\n\nAssistant:",
            "max_tokens_to_sample": 50,
            "stop_sequences": ["\n\nHuman:"],
        });
        let out = request(body.as_object().unwrap()).unwrap();
        assert_eq!(out["system"], "You are terse.");
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye?"},
            ])
        );
        assert_eq!(out["max_tokens"], 50);
    }

    #[test]
    fn prefill_and_bad_prompts() {
        let body =
            json!({"prompt": "\n\nHuman: Count\n\nAssistant: 1, 2,", "max_tokens_to_sample": 5});
        let out = request(body.as_object().unwrap()).unwrap();
        assert_eq!(
            out["messages"][1],
            json!({"role": "assistant", "content": "1, 2,"})
        );
        for bad in [
            json!({"prompt": "Hi", "max_tokens_to_sample": 5}),
            json!({"prompt": "\n\nHuman: Hi\n\nAssistant:"}),
        ] {
            assert!(request(bad.as_object().unwrap()).is_err());
        }
    }

    #[test]
    fn message_becomes_completion() {
        let message = json!({"id": "msg_1", "content": [{"type": "text", "text": " Hi"}], "stop_reason": "end_turn"});
        let c = response(&message, "claude-2.1");
        assert_eq!(c["completion"], " Hi");
        assert_eq!(c["stop_reason"], "stop_sequence");
        assert_eq!(c["id"], "compl_1");
    }
}
