//! Responses → chat-completions: the request body.
//!
//! A Responses request becomes one chat-completions body: `instructions` and
//! the conversation items become messages, function, custom (freeform) and
//! namespace tools become chat functions, and `text` / `reasoning` map to
//! their chat parameters. What has no chat equivalent is named in
//! [`Translated::dropped`], or refused when dropping it would change the
//! answer's meaning.

use serde_json::{json, Map, Value};

use super::{flat_name, CUSTOM_INPUT};
use crate::translate::{str_field, text_of, TranslateError, Translated};

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
            "custom_tool_call" => self.custom_tool_call(item),
            "function_call_output" | "custom_tool_call_output" => {
                self.tool_output(item, at, dropped)
            }
            "reasoning" => self.reasoning(item, at, dropped),
            "item_reference" => {
                return Err(TranslateError(format!(
                    "{at}: item references are not supported for this model; send the item itself."
                )))
            }
            // Hosted tool calls and their results (web search, shell,
            // computer use, MCP, …) and compaction items were produced by
            // tools a chat upstream does not have.
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

    fn function_call(&mut self, item: &Value) {
        let arguments = str_field(item, "arguments")
            .filter(|a| !a.trim().is_empty())
            .unwrap_or("{}");
        self.tool_call(item, arguments);
    }

    /// A custom tool's raw-text input travels as the one string parameter of
    /// the function it was offered as (see [`custom_function`]).
    fn custom_tool_call(&mut self, item: &Value) {
        let input = str_field(item, "input").unwrap_or_default();
        let arguments = json!({ CUSTOM_INPUT: input }).to_string();
        self.tool_call(item, &arguments);
    }

    /// A call joins the assistant turn it belongs to: chat needs all of a
    /// turn's calls in one message, before the `tool` messages answering them.
    fn tool_call(&mut self, item: &Value, arguments: &str) {
        let name = str_field(item, "name").unwrap_or_default();
        let name = match str_field(item, "namespace").filter(|ns| !ns.is_empty()) {
            Some(namespace) => flat_name(namespace, name),
            None => name.to_string(),
        };
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

/// Function and custom tools, namespaces flattened; hosted tools dropped.
/// `tool_choice` and `parallel_tool_calls` only travel with tools (OpenAI
/// refuses them alone).
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
            "custom" => functions.push(custom_function(tool, None, dropped)),
            "namespace" => {
                let namespace = str_field(tool, "name").unwrap_or_default();
                for inner in tool
                    .get("tools")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    match str_field(inner, "type").unwrap_or_default() {
                        "function" => functions.push(chat_function(inner, Some(namespace))),
                        "custom" => {
                            functions.push(custom_function(inner, Some(namespace), dropped))
                        }
                        _ => dropped.push(format!("tools[{namespace}.{}]", tool_label(inner))),
                    }
                }
            }
            // web_search, file_search, local_shell, mcp, tool_search, … run
            // at OpenAI or need their own wire format: a chat upstream cannot.
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

/// A Responses custom (freeform) tool as a chat function with one required
/// string parameter, `input`. A chat model answers a call with JSON
/// arguments only, so the raw text the tool takes travels in that string
/// (the stream turns the call back into a `custom_tool_call`). The
/// parameter's description says what the text must be: for a grammar, its
/// whole definition, which is what lets a chat model write a valid patch for
/// Codex's `apply_patch`.
fn custom_function(tool: &Value, namespace: Option<&str>, dropped: &mut Vec<String>) -> Value {
    let name = str_field(tool, "name").unwrap_or_default();
    let name = match namespace {
        Some(namespace) => flat_name(namespace, name),
        None => name.to_string(),
    };
    let format = tool.get("format").unwrap_or(&Value::Null);
    let definition = str_field(format, "definition").filter(|d| !d.trim().is_empty());
    const RAW_TEXT: &str = "The tool's input, as raw text";
    let input = match (str_field(format, "type"), definition) {
        (Some("grammar"), Some(definition)) => {
            let rule = match str_field(format, "syntax") {
                Some("regex") => "matching this regular expression".to_string(),
                syntax => format!("following this {} grammar", syntax.unwrap_or("lark")),
            };
            format!("{RAW_TEXT} {rule}:\n{definition}")
        }
        (None | Some("text"), _) => format!("{RAW_TEXT}."),
        (Some(other), _) => {
            dropped.push(format!("tools[custom {name}].format ({other})"));
            format!("{RAW_TEXT}.")
        }
    };
    let mut function = Map::new();
    function.insert("name".into(), json!(name));
    if let Some(description) = tool.get("description").filter(|v| !v.is_null()) {
        function.insert("description".into(), description.clone());
    }
    function.insert(
        "parameters".into(),
        json!({
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": input}},
            "required": [CUSTOM_INPUT],
            "additionalProperties": false,
        }),
    );
    json!({"type": "function", "function": function})
}

fn tool_choice(choice: &Value, dropped: &mut Vec<String>) -> Option<Value> {
    match choice {
        Value::String(mode) if ["auto", "none", "required"].contains(&mode.as_str()) => {
            Some(choice.clone())
        }
        _ => match str_field(choice, "type").unwrap_or_default() {
            // A custom tool is a function upstream, under the same name.
            kind @ ("function" | "custom") => {
                let name = str_field(choice, "name");
                if name.is_none() {
                    dropped.push(format!("tool_choice ({kind} without a name)"));
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
