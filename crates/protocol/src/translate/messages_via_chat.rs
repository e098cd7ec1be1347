//! An Anthropic Messages client served by an OpenAI chat-completions upstream.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    stop_reason_from_finish, str_field, text_of, tool_call_of, TranslateError, Translated,
};
use crate::anthropic::{encode_event, Usage};
use crate::openai::Usage as OpenAiUsage;
use crate::usage::TokenUsage;

/// Anthropic request fields with a direct chat-completions equivalent or a
/// deliberate treatment below; anything else is dropped and reported.
const HANDLED: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stream",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "metadata",
];

/// How a `system` message after the first turn reaches the upstream.
/// Claude Code sends them (its environment section right after the first
/// user turn), and Anthropic takes them where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LateSystemMessages {
    /// A `system` message where it was: OpenAI accepts system messages
    /// anywhere, and the user's prompt stays what the model answers.
    #[default]
    Keep,
    /// User text, for servers that refuse a system message after the first
    /// turn (Qwen chat templates in vLLM, llama.cpp, Ollama; MiniMax). It
    /// goes into the user turn just before it, ahead of the user's own
    /// words, so that those stay what the model answers.
    AsUser,
}

/// Translates a Messages request body into a chat-completions body, late
/// system messages kept as system messages.
pub fn request(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<Translated, TranslateError> {
    request_with(body, upstream_model, LateSystemMessages::Keep)
}

/// Translates a Messages request body into a chat-completions body, late
/// system messages as `late_system` says.
pub fn request_with(
    body: &Map<String, Value>,
    upstream_model: &str,
    late_system: LateSystemMessages,
) -> Result<Translated, TranslateError> {
    let mut dropped: Vec<String> = body
        .keys()
        .filter(|k| !HANDLED.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));

    let mut messages = Vec::new();
    if let Some(system) = body.get("system") {
        let text = text_of(system);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    let input = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError("`messages` must be an array.".into()))?;
    for (i, message) in input.iter().enumerate() {
        translate_message(message, i, late_system, &mut messages, &mut dropped)?;
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(max) = body.get("max_tokens") {
        out.insert("max_tokens".into(), max.clone());
    }
    for name in ["temperature", "top_p"] {
        if let Some(v) = body.get(name) {
            out.insert(name.into(), v.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(user) = body
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(openai_user(user)));
    }
    if body.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let mut tool_names = Vec::new();
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let mut functions = Vec::new();
        for tool in tools {
            // A deferred tool is a placeholder for tool search, not a tool
            // the model may call.
            if tool.get("defer_loading") == Some(&Value::Bool(true)) {
                dropped.push(format!(
                    "tools[{}] (deferred)",
                    str_field(tool, "name").unwrap_or("?")
                ));
                continue;
            }
            match tool.get("input_schema") {
                Some(schema) => {
                    let name = str_field(tool, "name").unwrap_or_default();
                    tool_names.push(name.to_string());
                    let mut function = json!({"name": name, "parameters": schema});
                    if let Some(d) = tool.get("description") {
                        function["description"] = d.clone();
                    }
                    functions.push(json!({"type": "function", "function": function}));
                }
                // Server tools (web search, code execution, …) run at
                // Anthropic; an OpenAI upstream cannot run them.
                None => dropped.push(format!(
                    "tools[{}]",
                    str_field(tool, "name")
                        .or(str_field(tool, "type"))
                        .unwrap_or("?")
                )),
            }
        }
        if !functions.is_empty() {
            out.insert("tools".into(), Value::Array(functions));
        }
    }
    if let Some(choice) = body.get("tool_choice") {
        if out.contains_key("tools") {
            let kind = str_field(choice, "type").unwrap_or("auto");
            let mapped = match kind {
                "any" => json!("required"),
                "none" => json!("none"),
                "tool" => {
                    let name = str_field(choice, "name").unwrap_or_default();
                    if !tool_names.iter().any(|t| t == name) {
                        return Err(TranslateError(format!(
                            "`tool_choice` names the tool `{name}`, which is not among `tools`."
                        )));
                    }
                    json!({"type": "function", "function": {"name": name}})
                }
                _ => json!("auto"),
            };
            out.insert("tool_choice".into(), mapped);
            if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                out.insert("parallel_tool_calls".into(), json!(false));
            }
        }
    }
    Ok(Translated { body: out, dropped })
}

/// OpenAI caps `user` at 64 characters; longer ids (Claude Code sends a JSON
/// blob) are replaced by a stable hash, which still tells users apart.
fn openai_user(user_id: &str) -> String {
    const MAX_USER_LEN: usize = 64;
    if user_id.len() <= MAX_USER_LEN {
        return user_id.to_string();
    }
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same id always maps to the same value.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    user_id.hash(&mut hasher);
    format!("user-{:016x}", hasher.finish())
}

fn translate_message(
    message: &Value,
    index: usize,
    late_system: LateSystemMessages,
    out: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let role = str_field(message, "role").unwrap_or_default();
    let content = message.get("content").cloned().unwrap_or(Value::Null);
    match role {
        "system" => {
            let text = text_of(&content);
            let late = out.iter().any(|m| m["role"] != "system");
            if text.is_empty() {
                dropped.push(format!("messages[{index}] (an empty system message)"));
            } else if late && late_system == LateSystemMessages::AsUser {
                dropped.push(format!("messages[{index}].role system (sent as user)"));
                system_as_user(text, out);
            } else {
                out.push(json!({"role": "system", "content": text}));
            }
        }
        "user" => translate_user(&content, index, out, dropped)?,
        "assistant" => translate_assistant(&content, index, out, dropped),
        other => {
            return Err(TranslateError(format!(
                "messages[{index}].role `{other}` is not one of user, assistant, system."
            )))
        }
    }
    Ok(())
}

/// A late system message as user text, marked as not the user's own: put
/// into the user turn just before it, after the reminders it opens with and
/// ahead of the user's words (which stay last, and are what the model
/// answers), or as a user message of its own.
fn system_as_user(text: String, out: &mut Vec<Value>) {
    const OPEN: &str = "<system-reminder>";
    let reminder = format!("{OPEN}\n{text}\n</system-reminder>");
    match out.last_mut() {
        Some(last) if last["role"] == "user" => match &mut last["content"] {
            Value::Array(parts) => {
                let at = parts
                    .iter()
                    .take_while(|p| p["text"].as_str().is_some_and(|t| t.starts_with(OPEN)))
                    .count();
                parts.insert(at, json!({"type": "text", "text": reminder}));
            }
            content => {
                let words = text_of(content);
                *content = json!(format!("{reminder}\n\n{words}"));
            }
        },
        _ => out.push(json!({"role": "user", "content": reminder})),
    }
}

fn translate_user(
    content: &Value,
    index: usize,
    out: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) -> Result<(), TranslateError> {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(TranslateError(format!(
                "messages[{index}].content must be a string or an array of blocks."
            )))
        }
    };
    let mut parts = Vec::new();
    for block in blocks {
        match str_field(block, "type").unwrap_or_default() {
            "text" => parts.push(
                json!({"type": "text", "text": str_field(block, "text").unwrap_or_default()}),
            ),
            "image" => parts.push(image_part(block, index)?),
            "document" => parts.push(document_part(block, index)?),
            // Tool results become `tool` messages, which must directly follow
            // the assistant turn that called the tools.
            "tool_result" => {
                let id = str_field(block, "tool_use_id").unwrap_or_default();
                let mut text = text_of(block.get("content").unwrap_or(&Value::Null));
                if block.get("is_error") == Some(&Value::Bool(true)) && !text.starts_with("Error") {
                    text = format!("Error: {text}");
                }
                out.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            other => dropped.push(format!("messages[{index}].content[{other}]")),
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn image_part(block: &Value, index: usize) -> Result<Value, TranslateError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let url = match str_field(source, "type") {
        Some("base64") => format!(
            "data:{};base64,{}",
            str_field(source, "media_type").unwrap_or("image/png"),
            str_field(source, "data").unwrap_or_default()
        ),
        Some("url") => str_field(source, "url").unwrap_or_default().to_string(),
        _ => {
            return Err(TranslateError(format!(
            "messages[{index}]: this image source cannot be sent to an OpenAI-compatible upstream."
        )))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn document_part(block: &Value, index: usize) -> Result<Value, TranslateError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    match str_field(source, "type") {
        Some("base64") => {
            let media = str_field(source, "media_type").unwrap_or("application/pdf");
            Ok(json!({"type": "file", "file": {
                "filename": str_field(block, "title").unwrap_or("document.pdf"),
                "file_data": format!("data:{media};base64,{}", str_field(source, "data").unwrap_or_default()),
            }}))
        }
        Some("text") => Ok(json!({"type": "text", "text": str_field(source, "data").unwrap_or_default()})),
        Some("content") => Ok(json!({"type": "text", "text": text_of(source.get("content").unwrap_or(&Value::Null))})),
        _ => Err(TranslateError(format!(
            "messages[{index}]: this document source cannot be sent to an OpenAI-compatible upstream."
        ))),
    }
}

fn translate_assistant(
    content: &Value,
    index: usize,
    out: &mut Vec<Value>,
    dropped: &mut Vec<String>,
) {
    let blocks = match content {
        Value::String(s) => {
            out.push(json!({"role": "assistant", "content": s}));
            return;
        }
        Value::Array(blocks) => blocks.as_slice(),
        _ => &[],
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match str_field(block, "type").unwrap_or_default() {
            "text" => text.push_str(str_field(block, "text").unwrap_or_default()),
            // Reasoning that came from this kind of upstream goes back as
            // `reasoning_content` (DeepSeek requires it with tool calls);
            // the signature only means something to Anthropic.
            "thinking" => reasoning.push_str(str_field(block, "thinking").unwrap_or_default()),
            "tool_use" => tool_calls.push(tool_call_of(block)),
            // Redacted thinking and anything newer have no chat equivalent.
            other => dropped.push(format!("messages[{index}].content[{other}]")),
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    out.push(message);
}

/// Anthropic usage from OpenAI usage (cached tokens are cache reads).
fn usage_json(usage: &TokenUsage) -> Value {
    serde_json::to_value(Usage::from_tokens(usage)).unwrap_or_else(|_| json!({}))
}

fn openai_usage(v: &Value) -> Option<TokenUsage> {
    serde_json::from_value::<OpenAiUsage>(v.clone())
        .ok()
        .map(|u| TokenUsage::from(&u))
}

/// The Anthropic message id for an OpenAI completion id.
fn message_id(openai_id: Option<&str>) -> String {
    match openai_id {
        Some(id) if !id.is_empty() => format!("msg_{}", id.trim_start_matches("chatcmpl-")),
        _ => "msg_tollgate".to_string(),
    }
}

/// Translates a chat completion into an Anthropic `Message`.
pub fn response(body: &Value, public_model: &str) -> Value {
    let choice = body.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    for field in ["reasoning_content", "reasoning"] {
        if let Some(r) = str_field(message, field).filter(|r| !r.is_empty()) {
            content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
            break;
        }
    }
    if let Some(text) = str_field(message, "content").filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let arguments = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            content.push(json!({
                "type": "tool_use",
                "id": str_field(call, "id").unwrap_or_default(),
                "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
                "input": serde_json::from_str::<Value>(arguments).unwrap_or_else(|_| json!({})),
            }));
        }
    }
    let finish = str_field(choice, "finish_reason").unwrap_or("stop");
    let usage = body.get("usage").and_then(openai_usage).unwrap_or_default();
    json!({
        "id": message_id(str_field(body, "id")),
        "type": "message",
        "role": "assistant",
        "model": public_model,
        "content": content,
        "stop_reason": stop_reason_from_finish(finish),
        "stop_sequence": Value::Null,
        "usage": usage_json(&usage),
    })
}

/// Which kind of content block is open in the Anthropic stream.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    None,
    Thinking,
    Text,
    /// A tool call, by the OpenAI `tool_calls[].index` it comes from.
    Tool(u64),
}

/// Turns an OpenAI chunk stream into an Anthropic event stream.
///
/// Anthropic's `message_delta` must carry the final usage, which OpenAI sends
/// in a chunk *after* the one with `finish_reason`; so the closing events are
/// emitted by [`StreamTranslator::finish`], at `[DONE]` or at the end.
#[derive(Debug)]
pub struct StreamTranslator {
    public_model: String,
    started: bool,
    finished: bool,
    block: Block,
    next_index: u64,
    stop_reason: Option<&'static str>,
    usage: Option<TokenUsage>,
}

impl StreamTranslator {
    pub fn new(public_model: &str) -> Self {
        StreamTranslator {
            public_model: public_model.to_string(),
            started: false,
            finished: false,
            block: Block::None,
            next_index: 0,
            stop_reason: None,
            usage: None,
        }
    }

    /// The upstream's usage, once its usage chunk has passed.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// Feeds one upstream event's `data`; appends Anthropic events to `out`.
    pub fn push(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        if data.trim() == "[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return;
        };
        // `"error": null` beside a chunk's content is no error.
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            self.fail(error, out);
            return;
        }
        self.start(str_field(&chunk, "id"), out);
        if let Some(u) = chunk
            .get("usage")
            .filter(|u| !u.is_null())
            .and_then(openai_usage)
        {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for field in ["reasoning_content", "reasoning"] {
            if let Some(r) = str_field(delta, field).filter(|r| !r.is_empty()) {
                self.open(Block::Thinking, out);
                self.delta(json!({"type": "thinking_delta", "thinking": r}), out);
                break;
            }
        }
        if let Some(text) = str_field(delta, "content").filter(|t| !t.is_empty()) {
            self.open(Block::Text, out);
            self.delta(json!({"type": "text_delta", "text": text}), out);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let tool_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                if self.block != Block::Tool(tool_index) {
                    self.close(out);
                    let block = json!({
                        "type": "tool_use",
                        "id": str_field(call, "id").unwrap_or_default(),
                        "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
                        "input": {},
                    });
                    self.open_with(Block::Tool(tool_index), block, out);
                }
                if let Some(args) = call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
                {
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": args}),
                        out,
                    );
                }
            }
        }
        if let Some(finish) = str_field(choice, "finish_reason") {
            self.stop_reason = Some(stop_reason_from_finish(finish));
        }
    }

    /// Closes the stream: the open block, `message_delta` with the stop
    /// reason and usage, `message_stop`. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.start(None, out);
        self.close(out);
        let usage = self.usage.unwrap_or_default();
        out.push(encode_event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": Value::Null},
                "usage": usage_json(&usage),
            }),
        ));
        out.push(encode_event(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
        self.finished = true;
    }

    /// Ends the stream with Anthropic's `error` event.
    pub fn fail(&mut self, error: &Value, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        let message = str_field(error, "message").unwrap_or("The upstream stream failed.");
        out.push(encode_event(
            "error",
            &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        ));
        self.finished = true;
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(encode_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": message_id(id), "type": "message", "role": "assistant",
                "model": self.public_model, "content": [], "stop_reason": Value::Null,
                "stop_sequence": Value::Null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ));
    }

    fn open(&mut self, block: Block, out: &mut Vec<Bytes>) {
        if self.block == block {
            return;
        }
        let start = match block {
            Block::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
            _ => json!({"type": "text", "text": ""}),
        };
        self.close(out);
        self.open_with(block, start, out);
    }

    fn open_with(&mut self, block: Block, content_block: Value, out: &mut Vec<Bytes>) {
        out.push(encode_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next_index, "content_block": content_block}),
        ));
        self.block = block;
    }

    fn delta(&mut self, delta: Value, out: &mut Vec<Bytes>) {
        out.push(encode_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.next_index, "delta": delta}),
        ));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if self.block == Block::None {
            return;
        }
        out.push(encode_event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.next_index}),
        ));
        self.block = Block::None;
        self.next_index += 1;
    }
}
