//! An OpenAI Responses client served by an OpenAI chat-completions upstream.
//!
//! The gateway keeps the conversation state a Responses client relies on
//! (`previous_response_id`, `conversation`, `store`, `background`); this
//! module sees only values. [`input_items`] normalises a request's `input`,
//! [`request`] turns the whole conversation into one chat-completions body,
//! and [`StreamTranslator`] turns the upstream's chunks back into the
//! Responses event stream while keeping the Response object it describes.
//! [`response_from_chat`] does the same for a whole (non-streamed) completion
//! by feeding it through the stream state machine, so both paths agree.
//!
//! Wire shapes follow OpenAI's API reference and SDK types (openai-node
//! `resources/responses/responses.ts`, openai-python `types/responses`) and a
//! recorded OpenAI stream: every event carries `type` and a 0-based,
//! gap-free `sequence_number`, and is framed as `event: <type>\ndata: <json>`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{str_field, text_of, TranslateError, Translated};
use crate::openai::Usage as OpenAiUsage;
use crate::usage::TokenUsage;

/// One SSE frame with an `event:` line; shared with the Anthropic encoder.
pub use crate::anthropic::encode_event;

/// Joins a namespace and a tool name into the one flat function name a chat
/// upstream sees. Codex names MCP tools this way (`mcp__server__tool`).
const NAMESPACE_DELIMITER: &str = "__";

/// Request fields the gateway acts on itself (conversation state, storage,
/// streaming); they have no place in the upstream body and are not "dropped".
const GATEWAY_FIELDS: &[&str] = &[
    "model",
    "input",
    "previous_response_id",
    "conversation",
    "store",
    "background",
    "metadata",
    "include",
    "stream",
    "stream_options",
    "truncation",
    "max_output_tokens",
];

/// Request fields a chat-completions body takes under the same name.
const PASS_THROUGH: &[&str] = &[
    "temperature",
    "top_p",
    "user",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "service_tier",
    "frequency_penalty",
    "presence_penalty",
];

/// Request fields translated (or deliberately refused) below.
const TRANSLATED: &[&str] = &[
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "prompt",
];

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

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

/// The chat-completions request body for a Responses request.
///
/// `params` is the client's Responses body (its conversation-state fields are
/// the gateway's business and ignored here); `items` is the whole
/// conversation, earlier turns first. `max_output`, when set, becomes
/// `max_completion_tokens`. The body always streams with usage.
pub fn request(
    params: &Map<String, Value>,
    items: &[Value],
    upstream_model: &str,
    max_output: Option<u64>,
) -> Result<Translated, TranslateError> {
    let mut dropped: Vec<String> = params
        .iter()
        .filter(|(key, value)| {
            !value.is_null()
                && ![GATEWAY_FIELDS, PASS_THROUGH, TRANSLATED]
                    .iter()
                    .any(|list| list.contains(&key.as_str()))
        })
        .map(|(key, _)| key.clone())
        .collect();
    if params.get("prompt").is_some_and(|p| !p.is_null()) {
        return Err(TranslateError(
            "Prompt templates (`prompt`) are not supported for this model; send `instructions` and `input` instead."
                .into(),
        ));
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert(
        "messages".into(),
        Value::Array(messages(params, items, &mut dropped)?),
    );
    out.insert("stream".into(), json!(true));
    out.insert("stream_options".into(), json!({"include_usage": true}));
    if let Some(max) = max_output {
        out.insert("max_completion_tokens".into(), json!(max));
    }
    for name in PASS_THROUGH {
        if let Some(value) = params.get(*name).filter(|v| !v.is_null()) {
            out.insert((*name).into(), value.clone());
        }
    }
    translate_text(params.get("text"), &mut out, &mut dropped);
    translate_reasoning(params.get("reasoning"), &mut out, &mut dropped);
    translate_tools(params, &mut out, &mut dropped);
    Ok(Translated { body: out, dropped })
}

/// `instructions` and the conversation items as chat messages.
fn messages(
    params: &Map<String, Value>,
    items: &[Value],
    dropped: &mut Vec<String>,
) -> Result<Vec<Value>, TranslateError> {
    let mut chat = Chat::default();
    match params.get("instructions") {
        Some(Value::String(text)) if !text.is_empty() => chat.system(text, "instructions", dropped),
        // An echoed prompt template's instructions are a list of items.
        Some(Value::Array(list)) => {
            for (index, item) in list.iter().enumerate() {
                chat.item(item, &format!("instructions[{index}]"), dropped)?;
            }
        }
        _ => {}
    }
    for (index, item) in items.iter().enumerate() {
        chat.item(item, &format!("input[{index}]"), dropped)?;
    }
    if !chat.reasoning.is_empty() {
        dropped.push("reasoning with no assistant turn after it".into());
    }
    Ok(chat.messages)
}

/// Builds the chat transcript one Responses item at a time.
#[derive(Default)]
struct Chat {
    messages: Vec<Value>,
    /// The last message is an assistant turn that later `function_call`
    /// items (and reasoning) still belong to.
    assistant_open: bool,
    /// Reasoning text waiting for the assistant message it preceded.
    reasoning: String,
}

impl Chat {
    fn item(
        &mut self,
        item: &Value,
        at: &str,
        dropped: &mut Vec<String>,
    ) -> Result<(), TranslateError> {
        if !item.is_object() {
            return Err(TranslateError(format!("{at} must be an object.")));
        }
        let kind = match str_field(item, "type") {
            Some(kind) => kind,
            None if item.get("role").is_some() => "message",
            None => "item_reference",
        };
        match kind {
            "message" => self.message(item, at, dropped)?,
            "function_call" => self.function_call(item),
            "function_call_output" => self.tool_output(item, at, dropped),
            "reasoning" => self.reasoning(item, at, dropped),
            "item_reference" => {
                return Err(TranslateError(format!(
                    "{at}: item references are not supported for this model; send the item itself."
                )))
            }
            // Hosted tool calls and their results (web search, shell,
            // computer use, MCP, …), custom tool calls and compaction items
            // were produced by tools a chat upstream does not have.
            other => dropped.push(format!("{at} ({other})")),
        }
        Ok(())
    }

    fn message(
        &mut self,
        item: &Value,
        at: &str,
        dropped: &mut Vec<String>,
    ) -> Result<(), TranslateError> {
        let content = item.get("content").unwrap_or(&Value::Null);
        match str_field(item, "role").unwrap_or_default() {
            "system" | "developer" => self.system(&text_of(content), at, dropped),
            "user" => {
                let content = user_content(content, at, dropped)?;
                self.push(json!({"role": "user", "content": content}));
            }
            "assistant" => self.assistant_says(assistant_text(content)),
            other => {
                return Err(TranslateError(format!(
                    "{at}: the role `{other}` is not one of user, assistant, system, developer."
                )))
            }
        }
        Ok(())
    }

    /// A system or developer message. Leading ones merge into one system
    /// message, and later ones travel as user text: many OpenAI-compatible
    /// servers (Qwen chat templates in vLLM, llama.cpp) accept a single
    /// system message only at the start. Developer becomes system, which
    /// every chat upstream knows.
    fn system(&mut self, text: &str, at: &str, dropped: &mut Vec<String>) {
        if self.messages.iter().all(|m| m["role"] == "system") {
            match self.messages.first_mut() {
                Some(Value::Object(first)) => {
                    let joined = format!(
                        "{}\n\n{text}",
                        first
                            .get("content")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    );
                    first.insert("content".into(), json!(joined));
                }
                _ => self
                    .messages
                    .push(json!({"role": "system", "content": text})),
            }
        } else {
            dropped.push(format!("{at} (late system message sent as user)"));
            self.push(json!({"role": "user", "content": text}));
        }
    }

    fn push(&mut self, message: Value) {
        self.messages.push(message);
        self.assistant_open = false;
    }

    /// An assistant message's text. Everything the model produced in one turn
    /// (messages, calls, reasoning, in any order) becomes one chat message:
    /// the `tool` messages answering its calls must follow it directly.
    fn assistant_says(&mut self, text: String) {
        if self.assistant_open {
            if let Some(Value::Object(last)) = self.messages.last_mut() {
                if !self.reasoning.is_empty() {
                    append_reasoning(last, &std::mem::take(&mut self.reasoning));
                }
                let joined = match last.get("content").and_then(Value::as_str) {
                    Some(existing) if !existing.is_empty() && !text.is_empty() => {
                        format!("{existing}\n\n{text}")
                    }
                    Some(existing) if text.is_empty() => existing.to_string(),
                    _ => text,
                };
                last.insert("content".into(), json!(joined));
                return;
            }
        }
        self.assistant(json!({"role": "assistant", "content": text}));
    }

    /// A new assistant message; it takes the reasoning that preceded it.
    fn assistant(&mut self, mut message: Value) {
        if !self.reasoning.is_empty() {
            message["reasoning_content"] = json!(std::mem::take(&mut self.reasoning));
        }
        self.messages.push(message);
        self.assistant_open = true;
    }

    /// A call joins the assistant turn it belongs to: chat needs all of a
    /// turn's calls in one message, before the `tool` messages answering them.
    fn function_call(&mut self, item: &Value) {
        let name = str_field(item, "name").unwrap_or_default();
        let name = match str_field(item, "namespace").filter(|ns| !ns.is_empty()) {
            Some(namespace) => flat_name(namespace, name),
            None => name.to_string(),
        };
        let arguments = str_field(item, "arguments")
            .filter(|a| !a.trim().is_empty())
            .unwrap_or("{}");
        let call = json!({
            "id": str_field(item, "call_id").unwrap_or_default(),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        });
        if self.assistant_open {
            if let Some(Value::Object(last)) = self.messages.last_mut() {
                if !self.reasoning.is_empty() {
                    append_reasoning(last, &std::mem::take(&mut self.reasoning));
                }
                match last.get_mut("tool_calls") {
                    Some(Value::Array(calls)) => calls.push(call),
                    _ => {
                        last.insert("tool_calls".into(), json!([call]));
                    }
                }
                return;
            }
        }
        self.assistant(json!({"role": "assistant", "content": Value::Null, "tool_calls": [call]}));
    }

    fn tool_output(&mut self, item: &Value, at: &str, dropped: &mut Vec<String>) {
        let output = item.get("output").unwrap_or(&Value::Null);
        if let Value::Array(parts) = output {
            if parts
                .iter()
                .any(|p| str_field(p, "type").is_some_and(|t| t != "input_text" && t != "text"))
            {
                // Chat `tool` messages carry text only.
                dropped.push(format!("{at}.output (non-text parts)"));
            }
        }
        self.push(json!({
            "role": "tool",
            "tool_call_id": str_field(item, "call_id").unwrap_or_default(),
            "content": text_of(output),
        }));
    }

    /// Reasoning text goes back as `reasoning_content` on the assistant turn
    /// it belongs to, as the reasoning models behind chat APIs produced it
    /// (DeepSeek requires it alongside tool calls). Encrypted reasoning from
    /// OpenAI means nothing to another upstream.
    fn reasoning(&mut self, item: &Value, at: &str, dropped: &mut Vec<String>) {
        let text = reasoning_text(item);
        if text.is_empty() {
            dropped.push(format!("{at} (reasoning)"));
            return;
        }
        match self.messages.last_mut() {
            Some(Value::Object(last)) if self.assistant_open => append_reasoning(last, &text),
            _ => {
                if !self.reasoning.is_empty() {
                    self.reasoning.push_str("\n\n");
                }
                self.reasoning.push_str(&text);
            }
        }
    }
}

fn append_reasoning(message: &mut Map<String, Value>, text: &str) {
    let joined = match message.get("reasoning_content").and_then(Value::as_str) {
        Some(existing) if !existing.is_empty() => format!("{existing}\n\n{text}"),
        _ => text.to_string(),
    };
    message.insert("reasoning_content".into(), json!(joined));
}

/// The readable text of a reasoning item: its raw reasoning content when it
/// has some, else its summary.
fn reasoning_text(item: &Value) -> String {
    for field in ["content", "summary"] {
        let text = text_of(item.get(field).unwrap_or(&Value::Null));
        if !text.is_empty() {
            return text;
        }
    }
    String::new()
}

/// A user message's content: a plain string when it is only text (some
/// chat servers, DeepSeek among them, take nothing else), else parts.
fn user_content(
    content: &Value,
    at: &str,
    dropped: &mut Vec<String>,
) -> Result<Value, TranslateError> {
    let parts = match content {
        Value::String(text) => return Ok(json!(text)),
        Value::Array(parts) => parts,
        Value::Null => return Ok(json!("")),
        _ => {
            return Err(TranslateError(format!(
                "{at}.content must be a string or an array of content parts."
            )))
        }
    };
    let mut out = Vec::new();
    for part in parts {
        match str_field(part, "type").unwrap_or_default() {
            "input_text" | "output_text" | "text" => {
                out.push(json!({"type": "text", "text": str_field(part, "text").unwrap_or_default()}))
            }
            "input_image" => out.push(image_part(part, at)?),
            "input_audio" => out.push(json!({"type": "input_audio", "input_audio": part.get("input_audio").cloned().unwrap_or(Value::Null)})),
            "input_file" => {
                return Err(TranslateError(format!(
                    "{at}: file inputs (`input_file`) are not supported for this model."
                )))
            }
            other => dropped.push(format!("{at}.content[{other}]")),
        }
    }
    if out.iter().all(|p| p["type"] == "text") {
        return Ok(json!(text_of(&Value::Array(out))));
    }
    Ok(Value::Array(out))
}

fn image_part(part: &Value, at: &str) -> Result<Value, TranslateError> {
    let Some(url) = str_field(part, "image_url").filter(|u| !u.is_empty()) else {
        return Err(TranslateError(format!(
            "{at}: images given by `file_id` are not supported here (files are not supported for this model); send the image as a URL or a data URL."
        )));
    };
    let mut image = json!({"url": url});
    // Chat knows these three; `original` and anything newer fall back to auto.
    if let Some(detail) = str_field(part, "detail").filter(|d| ["auto", "low", "high"].contains(d))
    {
        image["detail"] = json!(detail);
    }
    Ok(json!({"type": "image_url", "image_url": image}))
}

/// An assistant message's text; a refusal is kept as text, since not every
/// chat upstream accepts the `refusal` field.
fn assistant_text(content: &Value) -> String {
    let parts = match content {
        Value::String(text) => return text.clone(),
        Value::Array(parts) => parts,
        _ => return String::new(),
    };
    let texts: Vec<&str> = parts
        .iter()
        .filter_map(|p| str_field(p, "text").or_else(|| str_field(p, "refusal")))
        .collect();
    texts.join("\n\n")
}

fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}{NAMESPACE_DELIMITER}{name}")
}

/// `text.format` → `response_format`; `text.verbosity` passes.
fn translate_text(text: Option<&Value>, out: &mut Map<String, Value>, dropped: &mut Vec<String>) {
    let Some(text) = text else { return };
    if let Some(verbosity) = text.get("verbosity").filter(|v| !v.is_null()) {
        out.insert("verbosity".into(), verbosity.clone());
    }
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return;
    };
    match str_field(format, "type").unwrap_or_default() {
        "text" => {}
        "json_object" => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        "json_schema" => {
            let mut schema = Map::new();
            for name in ["name", "schema", "strict", "description"] {
                if let Some(value) = format.get(name).filter(|v| !v.is_null()) {
                    schema.insert(name.into(), value.clone());
                }
            }
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": schema}),
            );
        }
        other => dropped.push(format!("text.format ({other})")),
    }
}

/// `reasoning.effort` → `reasoning_effort`; a chat upstream has no summaries.
fn translate_reasoning(
    reasoning: Option<&Value>,
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) {
    let Some(reasoning) = reasoning else { return };
    if let Some(effort) = reasoning.get("effort").filter(|e| !e.is_null()) {
        out.insert("reasoning_effort".into(), effort.clone());
    }
    for name in ["summary", "generate_summary"] {
        if reasoning.get(name).is_some_and(|v| !v.is_null()) {
            dropped.push(format!("reasoning.{name}"));
        }
    }
}

/// Function tools, namespaces flattened; hosted tools dropped. `tool_choice`
/// and `parallel_tool_calls` only travel with tools (OpenAI refuses them
/// alone).
fn translate_tools(
    params: &Map<String, Value>,
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
) {
    let mut functions = Vec::new();
    for tool in params
        .get("tools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        match str_field(tool, "type").unwrap_or_default() {
            "function" => functions.push(chat_function(tool, None)),
            "namespace" => {
                let namespace = str_field(tool, "name").unwrap_or_default();
                for inner in tool
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    if str_field(inner, "type") == Some("function") {
                        functions.push(chat_function(inner, Some(namespace)));
                    } else {
                        dropped.push(format!("tools[{namespace}.{}]", tool_label(inner)));
                    }
                }
            }
            // web_search, file_search, custom, local_shell, mcp, … run at
            // OpenAI or need their own wire format: a chat upstream cannot.
            _ => dropped.push(format!("tools[{}]", tool_label(tool))),
        }
    }
    if functions.is_empty() {
        return;
    }
    out.insert("tools".into(), Value::Array(functions));
    if let Some(choice) = params.get("tool_choice").filter(|c| !c.is_null()) {
        if let Some(choice) = tool_choice(choice, dropped) {
            out.insert("tool_choice".into(), choice);
        }
    }
    if let Some(parallel) = params.get("parallel_tool_calls").filter(|p| p.is_boolean()) {
        out.insert("parallel_tool_calls".into(), parallel.clone());
    }
}

fn tool_label(tool: &Value) -> String {
    let kind = str_field(tool, "type").unwrap_or("?");
    match str_field(tool, "name") {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_string(),
    }
}

/// A Responses function tool (flat, `name` at the top) as a chat tool.
/// `defer_loading` is ignored: with no tool search upstream, a deferred tool
/// is only usable if the model sees it from the start.
fn chat_function(tool: &Value, namespace: Option<&str>) -> Value {
    let name = str_field(tool, "name").unwrap_or_default();
    let name = match namespace {
        Some(namespace) => flat_name(namespace, name),
        None => name.to_string(),
    };
    let mut function = Map::new();
    function.insert("name".into(), json!(name));
    for field in ["description", "parameters", "strict"] {
        if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
            function.insert(field.into(), value.clone());
        }
    }
    json!({"type": "function", "function": function})
}

fn tool_choice(choice: &Value, dropped: &mut Vec<String>) -> Option<Value> {
    match choice {
        Value::String(mode) if ["auto", "none", "required"].contains(&mode.as_str()) => {
            Some(choice.clone())
        }
        _ => match str_field(choice, "type").unwrap_or_default() {
            "function" => {
                let name = str_field(choice, "name");
                if name.is_none() {
                    dropped.push("tool_choice (function without a name)".into());
                }
                name.map(|name| json!({"type": "function", "function": {"name": name}}))
            }
            // The restriction to a subset has no portable chat equivalent;
            // its mode still says whether a call is required.
            "allowed_tools" => {
                dropped.push("tool_choice.allowed_tools (restriction)".into());
                Some(json!(str_field(choice, "mode")
                    .filter(|m| *m == "required")
                    .unwrap_or("auto")))
            }
            other => {
                dropped.push(format!("tool_choice ({other})"));
                None
            }
        },
    }
}

// ---------------------------------------------------------------------------
// The Response object
// ---------------------------------------------------------------------------

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
        "total_tokens": usage.input + usage.output,
    })
}

/// The final Response object for a whole (non-streamed) chat completion.
///
/// The completion is replayed as one chunk through [`StreamTranslator`], so
/// the items, ids and usage are exactly those the streamed path produces.
pub fn response_from_chat(skeleton: Value, completion: &Value) -> (Value, Option<TokenUsage>) {
    let mut translator = StreamTranslator::new(skeleton);
    translator.silent = true;
    let mut sink = Vec::new();
    let chunk = match completion.get("error").filter(|e| !e.is_null()) {
        Some(error) => json!({"error": error}),
        None => chunk_of_completion(completion),
    };
    translator.push_chunk(&chunk, &mut sink);
    translator.finish(&mut sink);
    let usage = translator.usage();
    (translator.response, usage)
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

// ---------------------------------------------------------------------------
// Stream
// ---------------------------------------------------------------------------

/// The kind of content part open in a message item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Text,
    Refusal,
}

/// The output item receiving deltas. OpenAI streams one item at a time, so
/// a new kind of delta closes the open item before opening the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Reasoning {
        output: usize,
    },
    Message {
        output: usize,
        content: usize,
        part: Part,
    },
    /// A function call, by its position in `StreamTranslator::calls`.
    Call {
        slot: usize,
    },
}

/// A tool call seen in the upstream stream and the output item it became.
#[derive(Debug, Clone)]
struct CallSlot {
    tool_index: u64,
    call_id: String,
    output: usize,
}

/// Turns a chat-completions chunk stream into the Responses event stream,
/// keeping the Response object it describes.
///
/// The Response object is the one source of truth: deltas are appended to
/// its items in place, the `.done` events and the terminal event read them
/// back, and [`StreamTranslator::response`] is always current.
#[derive(Debug)]
pub struct StreamTranslator {
    response: Value,
    /// The response id without `resp_`, for deterministic item ids.
    suffix: String,
    sequence: u64,
    started: bool,
    done: bool,
    open: Open,
    calls: Vec<CallSlot>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    reasoning_tokens: u64,
    produced: String,
    /// Flattened chat name → (namespace, name), from the client's tools.
    namespaced: Vec<(String, String, String)>,
    completed_at: Option<i64>,
    /// Count events without encoding them (the non-streamed path).
    silent: bool,
}

impl StreamTranslator {
    /// `skeleton` from [`response_skeleton`]. Item ids derive from the
    /// response id: for `resp_abc`, `msg_abc_0`, `fc_abc_1`, `rs_abc_2`
    /// (kind, id, output index).
    pub fn new(skeleton: Value) -> Self {
        let mut response = match skeleton {
            Value::Object(_) => skeleton,
            _ => json!({}),
        };
        if !response.get("output").is_some_and(Value::is_array) {
            response["output"] = json!([]);
        }
        let id = str_field(&response, "id").unwrap_or("resp_tollgate");
        let suffix = id.strip_prefix("resp_").unwrap_or(id).to_string();
        let namespaced = namespaced_tools(response.get("tools"));
        StreamTranslator {
            response,
            suffix,
            sequence: 0,
            started: false,
            done: false,
            open: Open::None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            reasoning_tokens: 0,
            produced: String::new(),
            namespaced,
            completed_at: None,
            silent: false,
        }
    }

    /// The time recorded as `completed_at` when the response completes
    /// (default: `created_at`; this module reads no clock).
    pub fn set_completed_at(&mut self, unix_seconds: i64) {
        self.completed_at = Some(unix_seconds);
    }

    /// Emits `response.created` and `response.in_progress`. Once; implied by
    /// the first `push`, `finish` or `fail`.
    pub fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started || self.done {
            return;
        }
        self.started = true;
        // `created` shows the status the gateway announced (`queued` for a
        // background response); from here on the response is in progress.
        let created = self.response.clone();
        self.emit("response.created", json!({"response": created}), out);
        self.response["status"] = json!("in_progress");
        let in_progress = self.response.clone();
        self.emit(
            "response.in_progress",
            json!({"response": in_progress}),
            out,
        );
    }

    /// Feeds one upstream chunk's SSE `data`. `[DONE]` and anything that is
    /// not a JSON object are ignored; an `error` object fails the response.
    pub fn push(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data.trim()) else {
            return;
        };
        self.push_chunk(&chunk, out);
    }

    fn push_chunk(&mut self, chunk: &Value, out: &mut Vec<Bytes>) {
        if self.done || !chunk.is_object() {
            return;
        }
        self.start(out);
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = str_field(error, "message")
                .or_else(|| error.as_str())
                .unwrap_or("The upstream stream failed.");
            self.fail(message, out);
            return;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.observe_usage(usage);
        }
        let Some(choice) = first_choice(chunk) else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for field in ["reasoning_content", "reasoning"] {
            if let Some(text) = str_field(delta, field).filter(|t| !t.is_empty()) {
                self.reasoning_delta(text, out);
                break;
            }
        }
        if let Some(text) = str_field(delta, "content").filter(|t| !t.is_empty()) {
            self.message_delta(Part::Text, text, out);
        }
        if let Some(text) = str_field(delta, "refusal").filter(|t| !t.is_empty()) {
            self.message_delta(Part::Refusal, text, out);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls.iter().filter(|c| c.is_object()) {
                self.tool_call_delta(call, out);
            }
        }
        if let Some(finish) = str_field(choice, "finish_reason") {
            self.finish_reason = Some(finish.to_string());
        }
    }

    fn observe_usage(&mut self, usage: &Value) {
        if let Ok(parsed) = OpenAiUsage::deserialize(usage) {
            self.usage = Some(TokenUsage::from(&parsed));
            self.reasoning_tokens = usage
                .pointer("/completion_tokens_details/reasoning_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
    }

    /// Upstream ended: closes the open item, then `response.completed`, or
    /// `response.incomplete` when the upstream stopped at its token limit
    /// (`length`) or its content filter. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.start(out);
        let incomplete = match self.finish_reason.as_deref() {
            Some("length") => Some("max_output_tokens"),
            Some("content_filter") => Some("content_filter"),
            _ => None,
        };
        self.close(
            if incomplete.is_some() {
                "incomplete"
            } else {
                "completed"
            },
            out,
        );
        let completed_at = self
            .completed_at
            .or_else(|| self.response.get("created_at").and_then(Value::as_i64));
        let (status, kind) = match incomplete {
            Some(reason) => {
                self.response["incomplete_details"] = json!({"reason": reason});
                ("incomplete", "response.incomplete")
            }
            None => {
                self.response["completed_at"] = json!(completed_at);
                ("completed", "response.completed")
            }
        };
        self.end(status, kind, out);
    }

    /// Upstream broke: `response.failed` with a `server_error`. Items so far
    /// stay in the output; the one cut short is `incomplete`.
    pub fn fail(&mut self, message: &str, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.start(out);
        self.abandon_open_item();
        self.response["error"] = json!({"code": "server_error", "message": message});
        self.end("failed", "response.failed", out);
    }

    /// The client cancelled a background response. OpenAI's stream has no
    /// cancellation event, so nothing is emitted; the Response object shows
    /// status `cancelled` with the item cut short `incomplete`.
    pub fn cancel(&mut self, _out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.abandon_open_item();
        self.response["status"] = json!("cancelled");
        self.set_usage();
        self.done = true;
    }

    fn end(&mut self, status: &str, kind: &'static str, out: &mut Vec<Bytes>) {
        self.response["status"] = json!(status);
        self.set_usage();
        let response = self.response.clone();
        self.emit(kind, json!({"response": response}), out);
        self.done = true;
    }

    fn set_usage(&mut self) {
        if let Some(usage) = self.usage {
            self.response["usage"] = usage_json(&usage, self.reasoning_tokens);
        }
    }

    /// The upstream's usage, once its usage chunk has passed.
    pub fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    /// The Response object as it stands (final after finish/fail/cancel).
    pub fn response(&self) -> &Value {
        &self.response
    }

    /// Everything the model produced so far (text, refusals, reasoning,
    /// function arguments), to estimate output tokens when no usage came.
    pub fn produced_text(&self) -> String {
        self.produced.clone()
    }

    /// True after finish, fail or cancel.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Events emitted so far, which is the next `sequence_number`.
    pub fn events_emitted(&self) -> u64 {
        self.sequence
    }

    // --- events ------------------------------------------------------------

    /// Emits one event: `type` first, then `fields`, then its sequence number.
    fn emit(&mut self, kind: &'static str, fields: Value, out: &mut Vec<Bytes>) {
        let sequence = self.sequence;
        self.sequence += 1;
        if self.silent {
            return;
        }
        let mut event = Map::new();
        event.insert("type".into(), json!(kind));
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        event.insert("sequence_number".into(), json!(sequence));
        out.push(encode_event(kind, &Value::Object(event)));
    }

    fn output_len(&self) -> usize {
        self.response["output"].as_array().map_or(0, Vec::len)
    }

    fn item(&self, output: usize) -> &Value {
        self.response["output"].get(output).unwrap_or(&Value::Null)
    }

    fn item_mut(&mut self, output: usize) -> Option<&mut Value> {
        self.response.get_mut("output")?.get_mut(output)
    }

    fn item_id(&self, output: usize) -> Value {
        self.item(output).get("id").cloned().unwrap_or(Value::Null)
    }

    /// Adds an output item and announces it.
    fn add_item(&mut self, item: Value, out: &mut Vec<Bytes>) -> usize {
        let output = self.output_len();
        if let Some(Value::Array(items)) = self.response.get_mut("output") {
            items.push(item.clone());
        }
        self.emit(
            "response.output_item.added",
            json!({"item": item, "output_index": output}),
            out,
        );
        output
    }

    /// Marks an item finished and announces it whole.
    fn done_item(&mut self, output: usize, status: &str, out: &mut Vec<Bytes>) {
        if let Some(item) = self.item_mut(output) {
            // Reasoning items carry a status only when cut short, as OpenAI's.
            if item["type"] != "reasoning" || status != "completed" {
                item["status"] = json!(status);
            }
        }
        let item = self.item(output).clone();
        self.emit(
            "response.output_item.done",
            json!({"item": item, "output_index": output}),
            out,
        );
    }

    /// Appends `delta` to the string at `pointer` inside item `output`.
    fn append(&mut self, output: usize, pointer: &str, delta: &str) {
        if let Some(Value::String(text)) =
            self.item_mut(output).and_then(|i| i.pointer_mut(pointer))
        {
            text.push_str(delta);
        }
        self.produced.push_str(delta);
    }

    fn text_at(&self, output: usize, pointer: &str) -> String {
        self.item(output)
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    // --- reasoning ---------------------------------------------------------

    fn reasoning_delta(&mut self, text: &str, out: &mut Vec<Bytes>) {
        let output = match self.open {
            Open::Reasoning { output } => output,
            _ => {
                self.close("completed", out);
                self.open_reasoning(out)
            }
        };
        self.append(output, "/summary/0/text", text);
        let item_id = self.item_id(output);
        self.emit(
            "response.reasoning_summary_text.delta",
            json!({"delta": text, "item_id": item_id, "output_index": output, "summary_index": 0}),
            out,
        );
    }

    fn open_reasoning(&mut self, out: &mut Vec<Bytes>) -> usize {
        let id = format!("rs_{}_{}", self.suffix, self.output_len());
        let output = self.add_item(json!({"id": id, "type": "reasoning", "summary": []}), out);
        let part = json!({"type": "summary_text", "text": ""});
        if let Some(item) = self.item_mut(output) {
            item["summary"] = json!([part]);
        }
        self.emit(
            "response.reasoning_summary_part.added",
            json!({"item_id": id, "output_index": output, "part": part, "summary_index": 0}),
            out,
        );
        self.open = Open::Reasoning { output };
        output
    }

    fn close_reasoning(&mut self, output: usize, status: &str, out: &mut Vec<Bytes>) {
        let item_id = self.item_id(output);
        let text = self.text_at(output, "/summary/0/text");
        self.emit(
            "response.reasoning_summary_text.done",
            json!({"item_id": item_id, "output_index": output, "summary_index": 0, "text": text}),
            out,
        );
        self.emit(
            "response.reasoning_summary_part.done",
            json!({"item_id": item_id, "output_index": output, "part": {"type": "summary_text", "text": text}, "summary_index": 0}),
            out,
        );
        self.done_item(output, status, out);
    }

    // --- message -----------------------------------------------------------

    fn message_delta(&mut self, part: Part, text: &str, out: &mut Vec<Bytes>) {
        let (output, content) = match self.open {
            Open::Message {
                output,
                content,
                part: open,
            } if open == part => (output, content),
            Open::Message {
                output,
                content,
                part: open,
            } => {
                self.close_part(output, content, open, out);
                let content = self.add_part(output, part, out);
                (output, content)
            }
            _ => {
                self.close("completed", out);
                let id = format!("msg_{}_{}", self.suffix, self.output_len());
                let output = self.add_item(
                    json!({"id": id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}),
                    out,
                );
                (output, self.add_part(output, part, out))
            }
        };
        self.open = Open::Message {
            output,
            content,
            part,
        };
        let item_id = self.item_id(output);
        match part {
            Part::Text => {
                self.append(output, &format!("/content/{content}/text"), text);
                self.emit(
                    "response.output_text.delta",
                    json!({"content_index": content, "delta": text, "item_id": item_id, "logprobs": [], "output_index": output}),
                    out,
                );
            }
            Part::Refusal => {
                self.append(output, &format!("/content/{content}/refusal"), text);
                self.emit(
                    "response.refusal.delta",
                    json!({"content_index": content, "delta": text, "item_id": item_id, "output_index": output}),
                    out,
                );
            }
        }
    }

    fn add_part(&mut self, output: usize, part: Part, out: &mut Vec<Bytes>) -> usize {
        let value = match part {
            Part::Text => {
                json!({"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
            }
            Part::Refusal => json!({"type": "refusal", "refusal": ""}),
        };
        let mut content = 0;
        if let Some(Value::Array(parts)) = self.item_mut(output).and_then(|i| i.get_mut("content"))
        {
            content = parts.len();
            parts.push(value.clone());
        }
        let item_id = self.item_id(output);
        self.emit(
            "response.content_part.added",
            json!({"content_index": content, "item_id": item_id, "output_index": output, "part": value}),
            out,
        );
        content
    }

    fn close_part(&mut self, output: usize, content: usize, part: Part, out: &mut Vec<Bytes>) {
        let item_id = self.item_id(output);
        match part {
            Part::Text => {
                let text = self.text_at(output, &format!("/content/{content}/text"));
                self.emit(
                    "response.output_text.done",
                    json!({"content_index": content, "item_id": item_id, "logprobs": [], "output_index": output, "text": text}),
                    out,
                );
            }
            Part::Refusal => {
                let refusal = self.text_at(output, &format!("/content/{content}/refusal"));
                self.emit(
                    "response.refusal.done",
                    json!({"content_index": content, "item_id": item_id, "output_index": output, "refusal": refusal}),
                    out,
                );
            }
        }
        let value = self
            .item(output)
            .pointer(&format!("/content/{content}"))
            .cloned()
            .unwrap_or(Value::Null);
        self.emit(
            "response.content_part.done",
            json!({"content_index": content, "item_id": item_id, "output_index": output, "part": value}),
            out,
        );
    }

    // --- function calls ----------------------------------------------------

    /// One `tool_calls[]` piece. The first piece of a call names it; later
    /// pieces add argument fragments and are matched by `id` when they
    /// repeat one, else by `index` (some servers number every call 0 but
    /// give each its own id).
    fn tool_call_delta(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let tool_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = str_field(call, "id").filter(|id| !id.is_empty());
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let slot = match self.find_call(tool_index, id) {
            Some(slot) => slot,
            None => self.open_call(tool_index, id, name, out),
        };
        let output = self.calls[slot].output;
        if self.open != (Open::Call { slot }) {
            // A fragment for a call already closed (a server interleaving its
            // calls, which OpenAI never does). Its `output_item.done` has
            // gone out; the stored item must stay what that event said.
            self.produced.push_str(arguments);
            return;
        }
        if !name.is_empty() && self.text_at(output, "/name").is_empty() {
            let (name, namespace) = self.native_name(name);
            if let Some(item) = self.item_mut(output) {
                item["name"] = json!(name);
                if let Some(namespace) = namespace {
                    item["namespace"] = json!(namespace);
                }
            }
        }
        if arguments.is_empty() {
            return;
        }
        self.append(output, "/arguments", arguments);
        let item_id = self.item_id(output);
        self.emit(
            "response.function_call_arguments.delta",
            json!({"delta": arguments, "item_id": item_id, "output_index": output}),
            out,
        );
    }

    fn find_call(&self, tool_index: u64, id: Option<&str>) -> Option<usize> {
        if let Some(id) = id {
            return self.calls.iter().position(|c| c.call_id == id);
        }
        if let Open::Call { slot } = self.open {
            if self.calls[slot].tool_index == tool_index {
                return Some(slot);
            }
        }
        self.calls.iter().rposition(|c| c.tool_index == tool_index)
    }

    fn open_call(
        &mut self,
        tool_index: u64,
        id: Option<&str>,
        name: &str,
        out: &mut Vec<Bytes>,
    ) -> usize {
        self.close("completed", out);
        let output = self.output_len();
        let call_id = id
            .map(str::to_string)
            .unwrap_or_else(|| format!("call_{}_{output}", self.suffix));
        let (name, namespace) = self.native_name(name);
        let mut item = json!({
            "id": format!("fc_{}_{output}", self.suffix),
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        });
        if let Some(namespace) = namespace {
            item["namespace"] = json!(namespace);
        }
        self.add_item(item, out);
        self.calls.push(CallSlot {
            tool_index,
            call_id,
            output,
        });
        let slot = self.calls.len() - 1;
        self.open = Open::Call { slot };
        slot
    }

    /// A chat function name as the client named the tool: a flattened
    /// namespaced tool goes back to its `namespace` and `name`.
    fn native_name(&self, name: &str) -> (String, Option<String>) {
        match self.namespaced.iter().find(|(flat, _, _)| flat == name) {
            Some((_, namespace, inner)) => (inner.clone(), Some(namespace.clone())),
            None => (name.to_string(), None),
        }
    }

    fn close_call(&mut self, slot: usize, status: &str, out: &mut Vec<Bytes>) {
        let output = self.calls[slot].output;
        let mut arguments = self.text_at(output, "/arguments");
        // A call without parameters may stream no arguments at all; clients
        // parse them as JSON, and OpenAI sends `{}` then.
        if arguments.trim().is_empty() && status == "completed" {
            arguments = "{}".into();
            if let Some(item) = self.item_mut(output) {
                item["arguments"] = json!(arguments);
            }
        }
        let item_id = self.item_id(output);
        let name = self
            .item(output)
            .get("name")
            .cloned()
            .unwrap_or(Value::Null);
        self.emit(
            "response.function_call_arguments.done",
            json!({"arguments": arguments, "item_id": item_id, "name": name, "output_index": output}),
            out,
        );
        self.done_item(output, status, out);
    }

    // --- closing -------------------------------------------------------------

    /// Closes the open item with its `.done` events.
    fn close(&mut self, status: &str, out: &mut Vec<Bytes>) {
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Reasoning { output } => self.close_reasoning(output, status, out),
            Open::Message {
                output,
                content,
                part,
            } => {
                self.close_part(output, content, part, out);
                self.done_item(output, status, out);
            }
            Open::Call { slot } => self.close_call(slot, status, out),
        }
    }

    /// Marks the open item `incomplete` without events (the stream ends).
    fn abandon_open_item(&mut self) {
        let output = match std::mem::replace(&mut self.open, Open::None) {
            Open::None => return,
            Open::Reasoning { output } | Open::Message { output, .. } => output,
            Open::Call { slot } => self.calls[slot].output,
        };
        if let Some(item) = self.item_mut(output) {
            item["status"] = json!("incomplete");
        }
    }
}

/// The choice with index 0 (the only one a Responses client asked for).
fn first_choice(chunk: &Value) -> Option<&Value> {
    let choices = chunk.get("choices")?.as_array()?;
    choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        .filter(|c| c.is_object())
}

/// Flattened chat name → (namespace, inner name) for each function inside a
/// `namespace` tool, unless a top-level function already has that name.
fn namespaced_tools(tools: Option<&Value>) -> Vec<(String, String, String)> {
    let tools = tools
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let top_level: Vec<&str> = tools
        .iter()
        .filter(|t| str_field(t, "type") == Some("function"))
        .filter_map(|t| str_field(t, "name"))
        .collect();
    let mut map = Vec::new();
    for tool in tools
        .iter()
        .filter(|t| str_field(t, "type") == Some("namespace"))
    {
        let namespace = str_field(tool, "name").unwrap_or_default();
        for inner in tool
            .get("tools")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if str_field(inner, "type") != Some("function") {
                continue;
            }
            let name = str_field(inner, "name").unwrap_or_default();
            let flat = flat_name(namespace, name);
            if !top_level.contains(&flat.as_str()) {
                map.push((flat, namespace.to_string(), name.to_string()));
            }
        }
    }
    map
}
