//! An OpenAI chat-completions client served by an Anthropic Messages upstream.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{
    finish_from_stop_reason, str_field, text_of, tool_call_of, TranslateError, Translated,
};
use crate::anthropic::Usage;
use crate::sse::encode_data;
use crate::usage::TokenUsage;

/// Chat-completions fields with an Anthropic equivalent or a deliberate
/// treatment below; anything else is dropped and reported.
const HANDLED: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stop",
    "temperature",
    "top_p",
    "top_k",
    "user",
    "n",
    "response_format",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "metadata",
    "store",
];

/// Thinking budget for each `reasoning_effort`.
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" | "low" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        _ => None,
    }
}

/// Translates a chat-completions body into a Messages body. `default_max_tokens`
/// fills Anthropic's required `max_tokens` when the client set none.
pub fn request(
    body: &Map<String, Value>,
    upstream_model: &str,
    default_max_tokens: u64,
) -> Result<Translated, TranslateError> {
    let mut dropped: Vec<String> = body
        .keys()
        .filter(|k| !HANDLED.contains(&k.as_str()))
        .cloned()
        .collect();
    if body.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
        return Err(TranslateError(
            "`n` greater than 1 is not supported for this model: its upstream returns one choice per request.".into(),
        ));
    }
    if body.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(TranslateError(
            "`logprobs` is not supported for this model.".into(),
        ));
    }
    match body
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => dropped.push("response_format".into()),
        Some(other) => {
            return Err(TranslateError(format!(
                "`response_format` of type `{other}` is not supported for this model."
            )))
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    let input = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError("`messages` must be an array.".into()))?;
    let (system, messages) = translate_messages(input)?;
    if !system.is_empty() {
        out.insert("system".into(), json!(system));
    }
    out.insert("messages".into(), Value::Array(messages));

    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(default_max_tokens);
    out.insert("max_tokens".into(), json!(max_tokens));
    if let Some(t) = body.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0–2, Anthropic's 0–1.
        if t > 1.0 {
            dropped.push("temperature above 1 (clamped to 1)".into());
        }
        out.insert("temperature".into(), json!(t.min(1.0)));
    }
    for name in ["top_p", "top_k"] {
        if let Some(v) = body.get(name) {
            out.insert(name.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(user) = body.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if body.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), json!(true));
    }
    if let Some(effort) = body.get("reasoning_effort").and_then(Value::as_str) {
        match thinking_budget(effort) {
            Some(budget) if budget < max_tokens => {
                out.insert(
                    "thinking".into(),
                    json!({"type": "enabled", "budget_tokens": budget}),
                );
                // Extended thinking runs at Anthropic's fixed sampling settings.
                for name in ["temperature", "top_p", "top_k"] {
                    if out.remove(name).is_some() {
                        dropped.push(format!("{name} (fixed while thinking)"));
                    }
                }
            }
            _ => dropped.push("reasoning_effort".into()),
        }
    }
    translate_tools(body, &mut out, &mut dropped)?;
    Ok(Translated { body: out, dropped })
}

fn translate_tools(
    body: &Map<String, Value>,
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) -> Result<(), TranslateError> {
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut mapped = Vec::new();
        for tool in tools {
            let Some(function) = tool
                .get("function")
                .filter(|_| str_field(tool, "type") == Some("function"))
            else {
                dropped.push(format!("tools[{}]", str_field(tool, "type").unwrap_or("?")));
                continue;
            };
            let mut t = json!({
                "name": str_field(function, "name").unwrap_or_default(),
                "input_schema": function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = function.get("description") {
                t["description"] = d.clone();
            }
            mapped.push(t);
        }
        if !mapped.is_empty() {
            out.insert("tools".into(), Value::Array(mapped));
        }
    }
    let parallel_off = body.get("parallel_tool_calls") == Some(&Value::Bool(false));
    let choice = match body.get("tool_choice") {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            _ => Some(json!({"type": "auto"})),
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(json!({"type": "tool", "name": name})),
            None => {
                return Err(TranslateError(
                    "`tool_choice` is not a valid tool choice.".into(),
                ))
            }
        },
    };
    if out.contains_key("tools") {
        let mut choice = choice.unwrap_or_else(|| json!({"type": "auto"}));
        if parallel_off && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        out.insert("tool_choice".into(), choice);
    }
    Ok(())
}

/// System text and Anthropic messages, with consecutive same-role turns
/// merged (Anthropic requires user and assistant turns to alternate).
fn translate_messages(input: &[Value]) -> Result<(String, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for (index, message) in input.iter().enumerate() {
        let role = str_field(message, "role").unwrap_or_default();
        let content = message.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.push(text_of(content));
                continue;
            }
            "user" => ("user", user_blocks(content, index)?),
            "assistant" => ("assistant", assistant_blocks(message, index)?),
            "tool" => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": str_field(message, "tool_call_id").unwrap_or_default(),
                    "content": text_of(content),
                })],
            ),
            other => {
                return Err(TranslateError(format!(
                    "messages[{index}].role `{other}` is not supported for this model."
                )))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(existing) = last["content"].as_array_mut() {
                    existing.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    Ok((system.join("\n\n"), messages))
}

fn user_blocks(content: &Value, index: usize) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        Value::String(s) => return Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts,
        Value::Null => return Ok(Vec::new()),
        _ => {
            return Err(TranslateError(format!(
                "messages[{index}].content must be a string or an array of parts."
            )))
        }
    };
    let mut blocks = Vec::new();
    for part in parts {
        match str_field(part, "type").unwrap_or_default() {
            "text" => blocks.push(json!({"type": "text", "text": str_field(part, "text").unwrap_or_default()})),
            "image_url" => {
                let url = part
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .or_else(|| str_field(part, "image_url"))
                    .unwrap_or_default();
                blocks.push(json!({"type": "image", "source": media_source(url)}));
            }
            "file" => {
                let data = part.pointer("/file/file_data").and_then(Value::as_str).unwrap_or_default();
                let source = media_source(data);
                if source["type"] != "base64" {
                    return Err(TranslateError(format!(
                        "messages[{index}]: only inline (base64) files can be sent to this model."
                    )));
                }
                blocks.push(json!({"type": "document", "source": source}));
            }
            other => {
                return Err(TranslateError(format!(
                    "messages[{index}]: content parts of type `{other}` are not supported for this model."
                )))
            }
        }
    }
    Ok(blocks)
}

/// An Anthropic `source` for a data URL or a plain URL.
fn media_source(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((media_type, data)) = rest.split_once(";base64,") {
            return json!({"type": "base64", "media_type": media_type, "data": data});
        }
    }
    json!({"type": "url", "url": url})
}

fn assistant_blocks(message: &Value, index: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    let text = text_of(message.get("content").unwrap_or(&Value::Null));
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let arguments = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let input: Value = if arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(arguments).map_err(|_| {
                    TranslateError(format!(
                        "messages[{index}]: the arguments of tool call `{}` are not valid JSON.",
                        str_field(call, "id").unwrap_or_default()
                    ))
                })?
            };
            blocks.push(json!({
                "type": "tool_use",
                "id": str_field(call, "id").unwrap_or_default(),
                "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
                "input": input,
            }));
        }
    }
    Ok(blocks)
}

/// OpenAI usage from Anthropic usage: every prompt token counts as a prompt token.
fn usage_json(usage: &TokenUsage) -> Value {
    json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.total(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_input},
    })
}

fn completion_id(message_id: Option<&str>) -> String {
    match message_id {
        Some(id) if !id.is_empty() => format!("chatcmpl-{}", id.trim_start_matches("msg_")),
        _ => "chatcmpl-tollgate".to_string(),
    }
}

/// Translates an Anthropic `Message` into a chat completion.
pub fn response(body: &Value, public_model: &str, created: i64) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in body
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        match str_field(block, "type").unwrap_or_default() {
            "text" => text.push_str(str_field(block, "text").unwrap_or_default()),
            "thinking" => reasoning.push_str(str_field(block, "thinking").unwrap_or_default()),
            "tool_use" => tool_calls.push(tool_call_of(block)),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) }});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let usage = body
        .get("usage")
        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
        .unwrap_or_default()
        .to_tokens();
    json!({
        "id": completion_id(str_field(body, "id")),
        "object": "chat.completion",
        "created": created,
        "model": public_model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_from_stop_reason(str_field(body, "stop_reason").unwrap_or("end_turn")),
        }],
        "usage": usage_json(&usage),
    })
}

/// Turns an Anthropic event stream into OpenAI chunks.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    public_model: String,
    created: i64,
    include_usage: bool,
    usage: Usage,
    saw_usage: bool,
    /// Anthropic block index → OpenAI tool-call index, for tool_use blocks.
    tool_blocks: Vec<(u64, u64)>,
    next_tool: u64,
    finished: bool,
}

impl StreamTranslator {
    /// `include_usage`: whether the client asked for the final usage chunk.
    pub fn new(public_model: &str, created: i64, include_usage: bool) -> Self {
        StreamTranslator {
            id: completion_id(None),
            public_model: public_model.to_string(),
            created,
            include_usage,
            usage: Usage::default(),
            saw_usage: false,
            tool_blocks: Vec::new(),
            next_tool: 0,
            finished: false,
        }
    }

    pub fn usage(&self) -> Option<TokenUsage> {
        self.saw_usage.then(|| self.usage.to_tokens())
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn chunk(&self, delta: Value, finish: Value) -> Bytes {
        let mut chunk = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.public_model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        encode_data(&chunk.to_string())
    }

    /// Feeds one upstream event's `data`; appends OpenAI chunks to `out`.
    pub fn push(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match str_field(&event, "type").unwrap_or_default() {
            "message_start" => {
                let message = event.get("message").unwrap_or(&Value::Null);
                self.id = completion_id(str_field(message, "id"));
                self.observe_usage(message.get("usage"));
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            }
            "content_block_start" => {
                let block = event.get("content_block").unwrap_or(&Value::Null);
                if str_field(block, "type") == Some("tool_use") {
                    let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let tool = self.next_tool;
                    self.next_tool += 1;
                    self.tool_blocks.push((index, tool));
                    out.push(self.chunk(
                        json!({"tool_calls": [{
                            "index": tool,
                            "id": str_field(block, "id").unwrap_or_default(),
                            "type": "function",
                            "function": {"name": str_field(block, "name").unwrap_or_default(), "arguments": ""},
                        }]}),
                        Value::Null,
                    ));
                }
            }
            "content_block_delta" => {
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match str_field(delta, "type").unwrap_or_default() {
                    "text_delta" => {
                        let text = str_field(delta, "text").unwrap_or_default();
                        out.push(self.chunk(json!({"content": text}), Value::Null));
                    }
                    "thinking_delta" => {
                        let thinking = str_field(delta, "thinking").unwrap_or_default();
                        out.push(self.chunk(json!({"reasoning_content": thinking}), Value::Null));
                    }
                    "input_json_delta" => {
                        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(&(_, tool)) = self.tool_blocks.iter().find(|(b, _)| *b == index)
                        {
                            let partial = str_field(delta, "partial_json").unwrap_or_default();
                            out.push(self.chunk(
                                json!({"tool_calls": [{"index": tool, "function": {"arguments": partial}}]}),
                                Value::Null,
                            ));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                self.observe_usage(event.get("usage"));
                if let Some(stop) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    out.push(self.chunk(json!({}), json!(finish_from_stop_reason(stop))));
                }
            }
            "message_stop" => self.finish(out),
            "error" => {
                let error = event.get("error").unwrap_or(&Value::Null);
                let body = json!({"error": {
                    "message": str_field(error, "message").unwrap_or("The upstream stream failed."),
                    "type": str_field(error, "type").unwrap_or("api_error"),
                    "param": Value::Null, "code": Value::Null,
                }});
                out.push(encode_data(&body.to_string()));
                self.finished = true;
            }
            _ => {}
        }
    }

    fn observe_usage(&mut self, usage: Option<&Value>) {
        if let Some(u) = usage.and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok()) {
            self.usage.merge(&u);
            self.saw_usage = true;
        }
    }

    /// Ends the stream: the usage chunk if the client asked for it, `[DONE]`.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        if self.include_usage {
            let chunk = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.public_model, "choices": [],
                "usage": usage_json(&self.usage.to_tokens()),
            });
            out.push(encode_data(&chunk.to_string()));
        }
        out.push(encode_data("[DONE]"));
        self.finished = true;
    }
}
