//! The Response object: the skeleton announced first, usage in the
//! Responses shape, and the final object for a whole (non-streamed) chat
//! completion.

use serde_json::{json, Map, Value};

use super::StreamTranslator;
use crate::usage::TokenUsage;

/// The Response object as it is first announced: `in_progress`, no output,
/// and the request's settings echoed with OpenAI's defaults, field for field
/// as OpenAI returns it.
pub fn response_skeleton(
    params: &Map<String, Value>,
    id: &str,
    model: &str,
    created_at: i64,
) -> Value {
    let get = |name: &str, default: Value| {
        params
            .get(name)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let mut reasoning = json!({"effort": null, "summary": null});
    merge(&mut reasoning, params.get("reasoning"));
    let mut text = json!({"format": {"type": "text"}, "verbosity": "medium"});
    merge(&mut text, params.get("text"));
    let mut response = json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": get("background", json!(false)),
        "completed_at": null,
        "error": null,
        "frequency_penalty": get("frequency_penalty", json!(0.0)),
        "incomplete_details": null,
        "instructions": get("instructions", Value::Null),
        "max_output_tokens": get("max_output_tokens", Value::Null),
        "max_tool_calls": get("max_tool_calls", Value::Null),
        "model": model,
        "output": [],
        "parallel_tool_calls": get("parallel_tool_calls", json!(true)),
        "presence_penalty": get("presence_penalty", json!(0.0)),
        "previous_response_id": get("previous_response_id", Value::Null),
        "prompt_cache_key": get("prompt_cache_key", Value::Null),
        "prompt_cache_retention": get("prompt_cache_retention", Value::Null),
        "reasoning": reasoning,
        "safety_identifier": get("safety_identifier", Value::Null),
        "service_tier": get("service_tier", json!("auto")),
        "store": get("store", json!(true)),
        "temperature": get("temperature", json!(1.0)),
        "text": text,
        "tool_choice": get("tool_choice", json!("auto")),
        "tools": get("tools", json!([])),
        "top_logprobs": get("top_logprobs", json!(0)),
        "top_p": get("top_p", json!(1.0)),
        "truncation": get("truncation", json!("disabled")),
        "usage": null,
        "user": get("user", Value::Null),
        "metadata": get("metadata", json!({})),
    });
    let conversation = match params.get("conversation") {
        Some(Value::String(id)) => Some(json!({"id": id})),
        Some(Value::Object(c)) => c.get("id").map(|id| json!({"id": id})),
        _ => None,
    };
    if let Some(conversation) = conversation {
        response["conversation"] = conversation;
    }
    if let Some(prompt) = params.get("prompt").filter(|p| !p.is_null()) {
        response["prompt"] = prompt.clone();
    }
    response
}

/// Overlays the non-null fields of `over` (an object) on `base`.
fn merge(base: &mut Value, over: Option<&Value>) {
    if let (Value::Object(base), Some(Value::Object(over))) = (base, over) {
        for (key, value) in over {
            if !value.is_null() {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Usage in the Responses shape.
pub fn usage_json(usage: &TokenUsage, reasoning_tokens: u64) -> Value {
    json!({
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cached_input},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": usage.total(),
    })
}

/// The final Response object for a whole (non-streamed) chat completion.
///
/// The completion is replayed as one chunk through [`StreamTranslator`], so
/// the items, ids and usage are exactly those the streamed path produces.
pub fn response_from_chat(skeleton: Value, completion: &Value) -> (Value, Option<TokenUsage>) {
    let mut translator = StreamTranslator::silent(skeleton);
    let mut sink = Vec::new();
    let chunk = match completion.get("error").filter(|e| !e.is_null()) {
        Some(error) => json!({"error": error}),
        None => chunk_of_completion(completion),
    };
    translator.push_chunk(&chunk, &mut sink);
    translator.finish(&mut sink);
    let usage = translator.usage();
    (translator.into_response(), usage)
}

/// A whole completion as the one stream chunk that would carry all of it.
fn chunk_of_completion(completion: &Value) -> Value {
    let choice = completion.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut delta = Map::new();
    for field in ["reasoning_content", "reasoning", "content", "refusal"] {
        if let Some(value) = message.get(field) {
            delta.insert(field.into(), value.clone());
        }
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let mut call = call.clone();
                if let Value::Object(fields) = &mut call {
                    fields.insert("index".into(), json!(index));
                }
                call
            })
            .collect();
        delta.insert("tool_calls".into(), Value::Array(calls));
    }
    json!({
        "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason").cloned().unwrap_or(Value::Null)}],
        "usage": completion.get("usage").cloned().unwrap_or(Value::Null),
    })
}
