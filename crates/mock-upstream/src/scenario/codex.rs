//! The Codex CLI's scenarios.
//!
//! **`codex-chat`**: an OpenAI chat-completions upstream for Codex through
//! Tollgate's Responses emulation. One record per request once it is
//! answered: `{"seq", "time", "method", "path", "headers", "body", "status",
//! "reply", "usage"}` (`reply`: tool, final, side or error, with `error`
//! then). `POST /v1/chat/completions` (stream and not; the usage chunk only
//! with `stream_options.include_usage`) needs the key (else 401) and a body
//! OpenAI would take: `model`, non-empty `messages` with known roles,
//! well-formed function `tools`, `tool_choice` / `parallel_tool_calls` only
//! beside tools, every `tool` message answering a `tool_calls` id of the
//! assistant message before it (else 400). The answer, statelessly:
//!
//! 1. the last message is a `tool` message: the text [`FINAL_PREFIX`] +
//!    [`TOOL_OUTPUT`] when it holds it (else + `<no marker>`); usage
//!    [`FINAL_COMPLETION_TOKENS`];
//! 2. else a user message holds [`CALL_DIRECTIVE`]`NAME`: a call to the
//!    offered function named NAME or ending with NAME (a flattened
//!    namespace tool), with `{"target": "no-such-agent"}` for `close_agent`,
//!    `{<its one string parameter>: PATCH}` for `apply_patch`, `{}`
//!    otherwise; none offered: the text [`NO_TOOL_PREFIX`] + NAME;
//! 3. else the request offers Codex's shell tool (`exec_command`, or
//!    `shell_command` / `shell` of older versions): a call to it running
//!    [`TOOL_COMMAND`];
//! 4. else (e.g. a compaction request, without tools): [`SIDE_TEXT`].
//!
//! A tool call is preceded by reasoning (`reasoning_content`, as
//! DeepSeek-style models send it) and reports [`TOOL_COMPLETION_TOKENS`]
//! ([`REASONING_TOKENS`] of them reasoning); every answer reports
//! [`PROMPT_TOKENS`] prompt tokens, [`CACHED_TOKENS`] of them cached.
//!
//! **`codex-responses`**: OpenAI's Responses API, for Codex with no gateway
//! between. One record per request, before its answer: `{"seq", "time",
//! "method", "path", "headers", "body", "status", "reply"}` (`body` null and
//! `raw_body_b64` when it is not JSON). `POST …/responses` streams a
//! Response: a tool result in `input` gets the final text; else an offered
//! shell tool gets a `reasoning` item (summary and `encrypted_content`) and a
//! `function_call`; else [`SIDE_TEXT`]. Anything else is recorded and
//! answered 404. After `--max-responses N` JSON requests, a 400 (`reply`
//! `limit`), so that a run that would loop ends.

use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{
    base64, fields, full_path, headers_json, json_answer, pieces_of, py_dumps, sse_answer,
    sse_data, sse_event, unix_time, Journal,
};

pub const TOOL_NAME: &str = "exec_command";
pub const TOOL_COMMAND: &str = "echo tollgate-codex-ok";
pub const TOOL_OUTPUT: &str = "tollgate-codex-ok";
pub const TOOL_CALL_ID: &str = "call_mock_codex_exec_1";
pub const FINAL_PREFIX: &str = "Tollgate Codex round trip done; the command printed: ";
pub const SIDE_TEXT: &str = "Tollgate side answer";
pub const REASONING_TEXT: &str = "The user wants the marker printed; run it with exec_command.";
pub const NO_TOOL_PREFIX: &str = "The upstream was offered no function for ";
pub const CALL_DIRECTIVE: &str = "tollgate-call=";
pub const PATCH_FILE: &str = "tollgate-patch.txt";
pub const PATCH_LINE: &str = "written by apply_patch through tollgate";
pub const PROMPT_TOKENS: u64 = 100;
pub const CACHED_TOKENS: u64 = 20;
pub const TOOL_COMPLETION_TOKENS: u64 = 12;
pub const FINAL_COMPLETION_TOKENS: u64 = 7;
pub const REASONING_TOKENS: u64 = 4;
pub const SIDE_COMPLETION_TOKENS: u64 = 3;

fn patch() -> String {
    format!("*** Begin Patch\n*** Add File: {PATCH_FILE}\n+{PATCH_LINE}\n*** End Patch\n")
}

fn usage(completion: u64, reasoning: u64) -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_TOKENS + completion,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })
}

/// The text of a chat message's content (a string or a list of parts).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn function_names(tools: Option<&Value>) -> Vec<&str> {
    tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .filter_map(|t| t.get("function")?.get("name")?.as_str())
        .collect()
}

/// (name, arguments) calling the shell tool the request offers.
fn shell_call(tools: Option<&Value>) -> Option<(String, String)> {
    let names = function_names(tools);
    if names.contains(&TOOL_NAME) {
        return Some((TOOL_NAME.into(), py_dumps(&json!({"cmd": TOOL_COMMAND}))));
    }
    if names.contains(&"shell_command") {
        return Some((
            "shell_command".into(),
            py_dumps(&json!({"command": TOOL_COMMAND})),
        ));
    }
    if names.contains(&"shell") {
        return Some((
            "shell".into(),
            py_dumps(&json!({"command": ["bash", "-lc", TOOL_COMMAND]})),
        ));
    }
    None
}

/// The call a [`CALL_DIRECTIVE`] in the user's messages asks for: `(name,
/// arguments)`, `("", NAME)` when no offered function matches, or `None`.
fn directed_call(body: &Value) -> Option<(String, String)> {
    let mut wanted = None;
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if m.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        let text = text_of(m.get("content").unwrap_or(&Value::Null));
        if let Some((_, after)) = text.split_once(CALL_DIRECTIVE) {
            let word = after.split_whitespace().next().unwrap_or("");
            wanted = Some(word.trim_matches(|c| "`.,;:)".contains(c)).to_string());
        }
    }
    let wanted = wanted?;
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(function) = tool.get("function").filter(|f| f.is_object()) else {
            continue;
        };
        let Some(name) = function.get("name").and_then(Value::as_str) else {
            continue;
        };
        if name != wanted && !name.ends_with(&wanted) {
            continue;
        }
        if wanted == "apply_patch" {
            let strings: Vec<&String> = function
                .get("parameters")
                .and_then(|p| p.get("properties"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.get("type").and_then(Value::as_str) == Some("string"))
                .map(|(k, _)| k)
                .collect();
            if strings.len() != 1 {
                return Some((String::new(), wanted));
            }
            let mut arguments = Map::new();
            arguments.insert(strings[0].clone(), Value::String(patch()));
            return Some((name.into(), py_dumps(&Value::Object(arguments))));
        }
        let arguments = if wanted == "close_agent" {
            json!({"target": "no-such-agent"})
        } else {
            json!({})
        };
        return Some((name.into(), py_dumps(&arguments)));
    }
    Some((String::new(), wanted))
}

/// An OpenAI-style complaint about a chat request, or `None`.
fn validate(body: &Value) -> Option<String> {
    if !matches!(body.get("model"), Some(Value::String(m)) if !m.is_empty()) {
        return Some("you must provide a model parameter".into());
    }
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Some("'messages' must be a non-empty array".into());
    };
    let tools = body.get("tools");
    if let Some(tools) = tools {
        let Some(list) = tools.as_array().filter(|l| !l.is_empty()) else {
            return Some("'tools' must be a non-empty array when present".into());
        };
        for (i, t) in list.iter().enumerate() {
            let function = t.get("function").filter(|f| f.is_object());
            if t.get("type").and_then(Value::as_str) != Some("function") || function.is_none() {
                let shown: String = py_dumps(t).chars().take(200).collect();
                return Some(format!(
                    "tools[{i}]: only tools of type 'function' are supported, got {shown}"
                ));
            }
            if !function.is_some_and(|f| f.get("name").is_some_and(Value::is_string)) {
                return Some(format!("tools[{i}].function.name: missing"));
            }
        }
    }
    let has_tools = tools.is_some_and(|t| t.as_array().is_some_and(|l| !l.is_empty()));
    for key in ["tool_choice", "parallel_tool_calls"] {
        if body.get(key).is_some() && !has_tools {
            return Some(format!(
                "Invalid value for '{key}': '{key}' is only allowed when 'tools' are specified."
            ));
        }
    }
    let mut open: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if !m.is_object()
            || !matches!(
                role,
                Some("system" | "developer" | "user" | "assistant" | "tool")
            )
        {
            return Some(format!("messages[{i}]: invalid role"));
        }
        if role == Some("tool") {
            let id = m.get("tool_call_id").cloned().unwrap_or(Value::Null);
            let Some(at) = open.iter().position(|o| *o == id) else {
                return Some(format!(
                    "messages[{i}]: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'"
                ));
            };
            open.remove(at);
            continue;
        }
        if !open.is_empty() {
            let mut missing: Vec<String> = open
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect();
            missing.sort();
            return Some(format!(
                "messages[{i}]: an assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'; missing {missing:?}"
            ));
        }
        if role == Some("assistant") {
            open = m
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| c.is_object())
                .map(|c| c.get("id").cloned().unwrap_or(Value::Null))
                .collect();
            open.dedup();
        }
    }
    None
}

/// `codex-chat`: see the module documentation.
pub(super) fn chat(
    journal: &std::sync::Arc<Journal>,
    keys: &[String],
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let path = full_path(uri);
    let record = |body: &Value, status: u16, reply: &str, extra: Map<String, Value>| {
        let mut f = fields([
            ("method", json!(method.as_str())),
            ("path", json!(path)),
            ("headers", headers_json(headers)),
            ("body", body.clone()),
            ("status", json!(status)),
            ("reply", json!(reply)),
        ]);
        f.extend(extra);
        f
    };
    let error = |body: &Value, status: u16, message: &str, code: Option<&str>| {
        journal.add(record(
            body,
            status,
            "error",
            fields([("error", json!(message))]),
        ));
        json_answer(
            status,
            &json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}),
            &[],
        )
    };
    if method != Method::POST {
        let message = format!("Unknown route {method} {path}");
        return error(&Value::Null, 404, &message, Some("not_found"));
    }
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !keys.is_empty() && !keys.iter().any(|k| auth == format!("Bearer {k}")) {
        return error(
            &body,
            401,
            "Incorrect API key provided to the mock upstream.",
            Some("invalid_api_key"),
        );
    }
    if uri.path() != "/v1/chat/completions" {
        let message = format!("Unknown route POST {path}");
        return error(&body, 404, &message, Some("not_found"));
    }
    if !body.is_object() {
        return error(&body, 400, "The body is not a JSON object.", None);
    }
    if let Some(problem) = validate(&body) {
        return error(&body, 400, &problem, None);
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let call = directed_call(&body).or_else(|| shell_call(body.get("tools")));
    let last_is_tool = messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("tool");
    let (reply, text, answer_usage) = if last_is_tool {
        let result = text_of(
            messages
                .last()
                .and_then(|m| m.get("content"))
                .unwrap_or(&Value::Null),
        );
        let marker = if result.contains(TOOL_OUTPUT) {
            TOOL_OUTPUT
        } else {
            "<no marker>"
        };
        (
            "final",
            Some(format!("{FINAL_PREFIX}{marker}")),
            usage(FINAL_COMPLETION_TOKENS, 0),
        )
    } else {
        match &call {
            Some((name, wanted)) if name.is_empty() => (
                "side",
                Some(format!("{NO_TOOL_PREFIX}{wanted}")),
                usage(SIDE_COMPLETION_TOKENS, 0),
            ),
            Some(_) => (
                "tool",
                None,
                usage(TOOL_COMPLETION_TOKENS, REASONING_TOKENS),
            ),
            None => (
                "side",
                Some(SIDE_TEXT.into()),
                usage(SIDE_COMPLETION_TOKENS, 0),
            ),
        }
    };
    let model = body["model"].clone();
    let created = unix_time();
    let done = {
        let journal = journal.clone();
        let entry = record(&body, 200, reply, fields([("usage", answer_usage.clone())]));
        move || {
            journal.add(entry);
        }
    };
    let call = call.filter(|(name, _)| text.is_none() && !name.is_empty());
    if body.get("stream") != Some(&Value::Bool(true)) {
        let message = match (&text, &call) {
            (None, Some((name, arguments))) => json!({
                "role": "assistant", "content": null, "reasoning_content": REASONING_TEXT,
                "tool_calls": [{"id": TOOL_CALL_ID, "type": "function",
                                "function": {"name": name, "arguments": arguments}}],
            }),
            _ => json!({"role": "assistant", "content": text.clone().unwrap_or_default()}),
        };
        let finish = if text.is_none() { "tool_calls" } else { "stop" };
        let response = json_answer(
            200,
            &json!({
                "id": "chatcmpl-codex-mock", "object": "chat.completion", "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": answer_usage,
            }),
            &[],
        );
        done();
        return response;
    }
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": "chatcmpl-codex-mock", "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse_data(&c)
    };
    let mut events = Vec::new();
    let finish = match (&text, &call) {
        (None, Some((name, arguments))) => {
            events.push(chunk(
                json!({"role": "assistant", "content": null, "reasoning_content": ""}),
                Value::Null,
            ));
            for piece in pieces_of(REASONING_TEXT, 3) {
                events.push(chunk(json!({"reasoning_content": piece}), Value::Null));
            }
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": TOOL_CALL_ID, "type": "function",
                                       "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for piece in pieces_of(arguments, 3) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
            "tool_calls"
        }
        _ => {
            events.push(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            ));
            for piece in pieces_of(text.as_deref().unwrap_or(""), 3) {
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
            "stop"
        }
    };
    events.push(chunk(json!({}), json!(finish)));
    if include_usage {
        events.push(sse_data(&json!({
            "id": "chatcmpl-codex-mock", "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [], "usage": answer_usage,
        })));
    }
    events.push("data: [DONE]\n\n".into());
    sse_answer("text/event-stream", events, &[], done)
}

// --- codex-responses -------------------------------------------------------------------

const REASONING_SUMMARY: &str =
    "**Running the marker command**\n\nThe user wants the marker printed.";
const REASONING_ENCRYPTED: &str = "gAAAAB-mock-encrypted-reasoning-tollgate==";
const CALL_ID: &str = "call_mock_codex_1";
const TOOL_RESULT_TYPES: [&str; 5] = [
    "function_call_output",
    "custom_tool_call_output",
    "local_shell_call_output",
    "tool_search_output",
    "mcp_tool_call_output",
];

fn responses_usage() -> Value {
    json!({
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 20},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 112,
    })
}

/// (name, arguments) calling Codex's shell tool, as the Responses API offers it.
fn responses_shell_call(tools: Option<&Value>) -> Option<(&'static str, String)> {
    let names: Vec<&str> = tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    if names.contains(&"exec_command") {
        Some((
            "exec_command",
            py_dumps(&json!({"cmd": TOOL_COMMAND, "yield_time_ms": 10000})),
        ))
    } else if names.contains(&"shell_command") {
        Some(("shell_command", py_dumps(&json!({"command": TOOL_COMMAND}))))
    } else if names.contains(&"shell") {
        Some((
            "shell",
            py_dumps(&json!({"command": ["bash", "-lc", TOOL_COMMAND]})),
        ))
    } else {
        None
    }
}

/// The text of a tool output (a string, content items, or an object).
fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        Value::Object(o) => {
            let inner = [o.get("content"), o.get("output")]
                .into_iter()
                .flatten()
                .find(|v| super::claude_code::truthy(v))
                .cloned()
                .unwrap_or(Value::String(String::new()));
            output_text(&inner)
        }
        _ => String::new(),
    }
}

fn tool_result(body: &Value) -> Option<String> {
    let items = body.get("input")?.as_array()?;
    let last = items.iter().rfind(|i| {
        i.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| TOOL_RESULT_TYPES.contains(&t))
    })?;
    Some(output_text(last.get("output").unwrap_or(&Value::Null)))
}

fn message_item(text: &str) -> Value {
    json!({
        "type": "message", "id": "msg_mock_1", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    })
}

fn reasoning_item() -> Value {
    json!({
        "type": "reasoning", "id": "rs_mock_1",
        "summary": [{"type": "summary_text", "text": REASONING_SUMMARY}],
        "encrypted_content": REASONING_ENCRYPTED,
    })
}

fn call_item(name: &str, arguments: &str) -> Value {
    json!({
        "type": "function_call", "id": "fc_mock_1", "status": "completed", "call_id": CALL_ID,
        "name": name, "arguments": arguments,
    })
}

/// The events of a streamed Response holding `items`.
fn response_events(body: &Value, items: &[Value]) -> Vec<String> {
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut event = |kind: &str, payload: Value| {
        let mut data = json!({"type": kind, "sequence_number": seq});
        if let (Some(d), Value::Object(p)) = (data.as_object_mut(), payload) {
            d.extend(p);
        }
        seq += 1;
        events.push(sse_event(kind, &data));
    };
    let response = json!({
        "id": "resp_mock_1", "object": "response", "created_at": unix_time(), "status": "in_progress",
        "model": body.get("model"),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls").cloned().unwrap_or(Value::Bool(true)),
        "tool_choice": body.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": [], "usage": null,
    });
    event("response.created", json!({"response": response}));
    event("response.in_progress", json!({"response": response}));
    for (index, item) in items.iter().enumerate() {
        let id = item["id"].clone();
        match item["type"].as_str() {
            Some("message") => {
                let text = item["content"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["content"] = json!([]);
                event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
                );
                for piece in pieces_of(&text, 3) {
                    event(
                        "response.output_text.delta",
                        json!({"item_id": id, "output_index": index, "content_index": 0, "delta": piece, "logprobs": []}),
                    );
                }
                event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                let mut done_part = part;
                done_part["text"] = json!(text);
                event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": done_part}),
                );
            }
            Some("function_call") => {
                let arguments = item["arguments"].as_str().unwrap_or("").to_string();
                let mut added = item.clone();
                added["status"] = json!("in_progress");
                added["arguments"] = json!("");
                event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                for piece in pieces_of(&arguments, 3) {
                    event(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": index, "delta": piece}),
                    );
                }
                event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                );
            }
            _ => {
                let mut added = item.clone();
                added["summary"] = json!([]);
                event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                let summary = item["summary"][0]["text"].clone();
                event(
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": ""}}),
                );
                event(
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": summary}),
                );
                event(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": summary}),
                );
                event(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": summary}}),
                );
            }
        }
        event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }
    let mut completed = response;
    completed["status"] = json!("completed");
    completed["output"] = Value::Array(items.to_vec());
    completed["usage"] = responses_usage();
    event("response.completed", json!({"response": completed}));
    events
}

/// `codex-responses`: see the module documentation.
pub(super) fn responses(
    journal: &std::sync::Arc<Journal>,
    max_responses: Option<usize>,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let path = full_path(uri);
    let record = |status: u16, reply: &str, body: Option<&Value>| {
        let mut f = fields([
            ("method", json!(method.as_str())),
            ("path", json!(path)),
            ("headers", headers_json(headers)),
            ("body", body.cloned().unwrap_or(Value::Null)),
            ("status", json!(status)),
            ("reply", json!(reply)),
        ]);
        if body.is_none() && !raw.is_empty() {
            f.insert("raw_body_b64".into(), json!(base64(raw)));
        }
        journal.add(f);
    };
    let error = |status: u16, message: String, code: Option<&str>| {
        json_answer(
            status,
            &json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}),
            &[],
        )
    };
    if method == Method::HEAD {
        record(404, "not_found", None);
        return json_answer(404, &Value::Null, &[]).map(|_| axum::body::Body::empty());
    }
    if method != Method::POST || !uri.path().ends_with("/responses") {
        record(404, "not_found", None);
        return error(
            404,
            format!("Unknown route {method} {path}"),
            Some("not_found"),
        );
    }
    let body = match serde_json::from_slice::<Value>(raw) {
        Ok(v) if v.is_object() => v,
        _ => {
            record(400, "bad_body", None);
            return error(400, "body is not a JSON object".into(), None);
        }
    };
    if let Some(limit) = max_responses.filter(|n| *n > 0) {
        if journal.with_body() >= limit {
            record(400, "limit", Some(&body));
            return error(400, "mock: --max-responses reached".into(), None);
        }
    }
    let (reply, items) = match (tool_result(&body), responses_shell_call(body.get("tools"))) {
        (Some(result), _) => {
            let marker = if result.contains(TOOL_OUTPUT) {
                TOOL_OUTPUT
            } else {
                "<no marker>"
            };
            (
                "final",
                vec![message_item(&format!("{FINAL_PREFIX}{marker}"))],
            )
        }
        (None, Some((name, arguments))) => {
            ("tool", vec![reasoning_item(), call_item(name, &arguments)])
        }
        (None, None) => ("side", vec![message_item(SIDE_TEXT)]),
    };
    record(200, reply, Some(&body));
    sse_answer(
        "text/event-stream",
        response_events(&body, &items),
        &[("x-request-id", "req_mock_responses")],
        || {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_requests_are_checked_as_openai_does() {
        let ok = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "out"}]});
        assert_eq!(validate(&ok), None);
        let orphan = json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "x"}]});
        assert!(validate(&orphan).unwrap().contains("preceeding"));
        let unanswered = json!({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1"}]}, {"role": "user", "content": "?"}]});
        assert!(validate(&unanswered).unwrap().contains("missing [\"c1\"]"));
        let choice = json!({"model": "m", "messages": [{"role": "user"}], "tool_choice": "auto"});
        assert!(validate(&choice).unwrap().contains("tool_choice"));
        let custom =
            json!({"model": "m", "messages": [{"role": "user"}], "tools": [{"type": "custom"}]});
        assert!(validate(&custom)
            .unwrap()
            .contains("only tools of type 'function'"));
    }

    #[test]
    fn calls_follow_the_directive_or_the_shell_tool() {
        let tools = json!([
            {"type": "function", "function": {"name": "exec_command"}},
            {"type": "function", "function": {"name": "multi_agent_v1__close_agent"}},
            {"type": "function", "function": {"name": "apply_patch",
                "parameters": {"properties": {"input": {"type": "string"}}}}}
        ]);
        let asking =
            |text: &str| json!({"messages": [{"role": "user", "content": text}], "tools": tools});
        assert_eq!(
            directed_call(&asking("go tollgate-call=close_agent now")),
            Some((
                "multi_agent_v1__close_agent".into(),
                r#"{"target": "no-such-agent"}"#.into()
            ))
        );
        let (name, arguments) = directed_call(&asking("tollgate-call=apply_patch.")).unwrap();
        assert_eq!(name, "apply_patch");
        assert!(
            arguments.starts_with(r#"{"input": "*** Begin Patch\n"#),
            "{arguments}"
        );
        assert_eq!(
            directed_call(&asking("tollgate-call=nothing")),
            Some((String::new(), "nothing".into()))
        );
        assert_eq!(directed_call(&asking("plain")), None);
        assert_eq!(
            shell_call(Some(&tools)),
            Some((
                "exec_command".into(),
                r#"{"cmd": "echo tollgate-codex-ok"}"#.into()
            ))
        );
    }

    #[test]
    fn responses_find_the_last_tool_result() {
        let body = json!({"input": [
            {"type": "message", "role": "user", "content": []},
            {"type": "function_call_output", "output": "first"},
            {"type": "custom_tool_call_output", "output": [{"text": "tollgate-"}, {"text": "codex-ok"}]}]});
        assert_eq!(tool_result(&body).as_deref(), Some("tollgate-codex-ok"));
        assert_eq!(tool_result(&json!({"input": "hi"})), None);
        let events = response_events(
            &json!({"model": "m"}),
            &[reasoning_item(), call_item("shell", "{}")],
        );
        assert!(events[0].starts_with("event: response.created\n"));
        assert!(events.last().unwrap().contains("\"total_tokens\":112"));
    }
}
