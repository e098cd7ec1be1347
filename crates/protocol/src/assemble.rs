//! Reassembling a streamed chat completion into the object a non-streaming
//! request would have returned, so that a streamed `store: true` completion
//! can be stored whole. Fed one chunk at a time; keeps only the message.

use serde_json::{json, Map, Value};

/// Accumulates `chat.completion.chunk`s.
#[derive(Debug, Default)]
pub struct ChatAssembler {
    id: Option<String>,
    created: Option<Value>,
    model: Option<Value>,
    system_fingerprint: Option<Value>,
    choices: Vec<Choice>,
    usage: Option<Value>,
}

#[derive(Debug, Default)]
struct Choice {
    content: Option<String>,
    reasoning: Option<String>,
    refusal: Option<String>,
    tool_calls: Vec<Map<String, Value>>,
    finish_reason: Option<Value>,
}

impl ChatAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// The upstream's completion id, once a chunk has carried it.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// One chunk, already parsed.
    pub fn push(&mut self, chunk: &Value) {
        if self.id.is_none() {
            self.id = chunk.get("id").and_then(Value::as_str).map(str::to_string);
        }
        keep_first(&mut self.created, chunk.get("created"));
        keep_first(&mut self.model, chunk.get("model"));
        keep_first(
            &mut self.system_fingerprint,
            chunk.get("system_fingerprint"),
        );
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if index >= 128 {
                continue; // more choices than any upstream sends: not a real chunk
            }
            if self.choices.len() <= index {
                self.choices.resize_with(index + 1, Choice::default);
            }
            self.choices[index].push(choice);
        }
    }

    /// The completion the chunks describe.
    pub fn finish(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(index, c)| c.to_json(index))
            .collect();
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage,
            "system_fingerprint": self.system_fingerprint,
        })
    }
}

fn keep_first(slot: &mut Option<Value>, value: Option<&Value>) {
    if slot.is_none() {
        *slot = value.filter(|v| !v.is_null()).cloned();
    }
}

fn append(slot: &mut Option<String>, piece: Option<&Value>) {
    if let Some(text) = piece.and_then(Value::as_str) {
        slot.get_or_insert_with(String::new).push_str(text);
    }
}

impl Choice {
    fn push(&mut self, choice: &Value) {
        if let Some(finish) = choice.get("finish_reason").filter(|f| !f.is_null()) {
            self.finish_reason = Some(finish.clone());
        }
        let Some(delta) = choice.get("delta") else {
            return;
        };
        append(&mut self.content, delta.get("content"));
        append(&mut self.refusal, delta.get("refusal"));
        append(&mut self.reasoning, delta.get("reasoning_content"));
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.push_tool_call(call);
        }
    }

    fn push_tool_call(&mut self, call: &Value) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        if index >= 128 {
            return;
        }
        if self.tool_calls.len() <= index {
            self.tool_calls.resize_with(index + 1, || {
                let mut m = Map::new();
                m.insert("type".into(), json!("function"));
                m.insert("function".into(), json!({"name": "", "arguments": ""}));
                m
            });
        }
        let slot = &mut self.tool_calls[index];
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            slot.insert("id".into(), json!(id));
        }
        let function = call.get("function");
        for (field, piece) in [
            ("name", function.and_then(|f| f.get("name"))),
            ("arguments", function.and_then(|f| f.get("arguments"))),
        ] {
            if let (Some(text), Some(Value::Object(f))) =
                (piece.and_then(Value::as_str), slot.get_mut("function"))
            {
                let old = f.get(field).and_then(Value::as_str).unwrap_or_default();
                f.insert(field.into(), json!(format!("{old}{text}")));
            }
        }
    }

    fn to_json(&self, index: usize) -> Value {
        let mut message = json!({
            "role": "assistant",
            "content": self.content,
            "refusal": self.refusal,
        });
        if let Some(reasoning) = &self.reasoning {
            message["reasoning_content"] = json!(reasoning);
        }
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = json!(self.tool_calls);
        }
        json!({
            "index": index,
            "message": message,
            "logprobs": null,
            "finish_reason": self.finish_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_tool_call_chunks_become_one_completion() {
        let mut a = ChatAssembler::new();
        let chunks = [
            json!({"id":"c1","created":7,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"content":"lo"}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}),
            json!({"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}),
        ];
        for c in &chunks {
            a.push(c);
        }
        let done = a.finish();
        assert_eq!(done["id"], "c1");
        assert_eq!(done["created"], 7);
        let choice = &done["choices"][0];
        assert_eq!(choice["message"]["content"], "Hello");
        assert_eq!(choice["message"]["tool_calls"][0]["id"], "call_1");
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["name"],
            "get"
        );
        assert_eq!(
            choice["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(done["usage"]["total_tokens"], 7);
    }

    #[test]
    fn absurd_indexes_are_ignored() {
        let mut a = ChatAssembler::new();
        a.push(&json!({"choices":[{"index":1_000_000_000u64,"delta":{"content":"x"}}]}));
        a.push(&json!({"choices":"nope"}));
        assert_eq!(a.finish()["choices"], json!([]));
    }
}
