//! `claude-code`: Anthropic Messages (`POST /v1/messages`,
//! `/v1/messages/count_tokens`) and OpenAI chat completions (`POST
//! /v1/chat/completions`) scripting one Claude Code turn, for the real
//! Claude Code CLI through Tollgate.
//!
//! Two records per request (side `upstream`): one when it arrives,
//! `{"side", "seq", "time", "method", "path", "headers", "body"}` (`body`
//! null and `raw_body` when it is not JSON), and the same completed once it
//! is answered (`status`, `reply` = answer|final|tool|side|error|
//! count_tokens|unauthorized|not_found|bad_json, `reply_text`, `usage` as
//! reported). Every request needs the key (`x-api-key` or `Authorization:
//! Bearer`; a 401 in the vendor's shape otherwise); other routes are 404.
//! The answer, statelessly:
//!
//! 0. the first user message holds [`ANSWER_TRIGGER`]: answered as a chat
//!    model answers, [`ANSWER_PREFIX`] + the last text block of the last
//!    user message;
//! 1. the conversation holds a tool result (an Anthropic `tool_result`
//!    block, an OpenAI `tool` message): [`FINAL_PREFIX`] + its text;
//! 2. else the request offers a tool named `Bash`: a call to it running
//!    [`TOOL_COMMAND`], after a short text and reasoning (a signed
//!    `thinking` block when the Anthropic request enables thinking;
//!    `reasoning_content` in OpenAI's format);
//! 3. else (titles, topics, quota probes…): [`SIDE_TEXT`].
//!
//! [`ERROR_TRIGGER`]`NAME` in the first user message answers the vendor's
//! error instead: `overloaded`, `too-long` or `rate-limit` (with
//! `retry-after: 1`). Usage: [`INPUT_TOKENS`] input, [`CACHE_READ_TOKENS`]
//! cache reads, [`CACHE_CREATION_TOKENS`] cache writes (Anthropic);
//! [`TOOL_OUTPUT_TOKENS`] output for the tool call, one per streamed text
//! piece otherwise. count_tokens answers a quarter of the length of the
//! body as Python's `json.dumps` writes it.

use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{
    fields, full_path, headers_json, json_answer, pieces_of, py_dumps, sse_answer, sse_data,
    sse_event, unix_time, Journal,
};

pub const TOOL_NAME: &str = "Bash";
pub const TOOL_COMMAND: &str = "echo tollgate-tool-ok";
pub const TOOL_OUTPUT: &str = "tollgate-tool-ok";
pub const TOOL_CALL_ID_ANTHROPIC: &str = "toolu_mock_bash_1";
pub const TOOL_CALL_ID_OPENAI: &str = "call_mock_bash_1";
pub const FINAL_PREFIX: &str = "Tollgate round trip done; the tool printed: ";
pub const SIDE_TEXT: &str = "Tollgate side answer";
pub const THINKING_TEXT: &str = "The user wants the marker printed; run it with Bash.";
pub const THINKING_SIGNATURE: &str = "bW9jay1zaWduYXR1cmUtdG9sbGdhdGU=";
pub const INPUT_TOKENS: u64 = 100;
pub const CACHE_READ_TOKENS: u64 = 20;
pub const CACHE_CREATION_TOKENS: u64 = 10;
pub const TOOL_OUTPUT_TOKENS: u64 = 12;
pub const ANSWER_TRIGGER: &str = "tollgate-mock-answer";
pub const ANSWER_PREFIX: &str = "You said: ";
pub const ERROR_TRIGGER: &str = "tollgate-mock-error=";

fn tool_input() -> Value {
    json!({"command": TOOL_COMMAND, "description": "Print a marker"})
}

/// Python's truthiness of a JSON value.
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The text of an Anthropic or OpenAI content (a string or blocks).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut out = String::new();
            for block in blocks {
                match block {
                    Value::Object(b) => {
                        if let Some(Value::String(t)) = b.get("text") {
                            out.push_str(t);
                        } else if let Some(inner) = b.get("content") {
                            out.push_str(&text_of(inner));
                        }
                    }
                    Value::String(s) => out.push_str(s),
                    _ => {}
                }
            }
            out
        }
        _ => String::new(),
    }
}

fn messages(body: &Value) -> impl DoubleEndedIterator<Item = &Value> {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn role(m: &Value) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

fn anthropic_tool_result(body: &Value) -> Option<String> {
    for m in messages(body) {
        if role(m) != Some("user") {
            continue;
        }
        if let Some(Value::Array(blocks)) = m.get("content") {
            for b in blocks {
                if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                    return Some(text_of(b.get("content").unwrap_or(&Value::Null)));
                }
            }
        }
    }
    None
}

fn openai_tool_result(body: &Value) -> Option<String> {
    messages(body)
        .find(|m| role(m) == Some("tool"))
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
}

fn offers_bash(body: &Value, openai: bool) -> bool {
    body.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.is_object())
        .any(|t| {
            let name = if openai {
                t.get("function").and_then(|f| f.get("name"))
            } else {
                t.get("name")
            };
            name.and_then(Value::as_str) == Some(TOOL_NAME)
        })
}

fn first_user_text(body: &Value) -> String {
    messages(body)
        .find(|m| m.is_object() && role(m) == Some("user"))
        .map(|m| text_of(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default()
}

/// The last user message's last text block (or its string).
fn last_user_words(body: &Value) -> String {
    let Some(m) = messages(body).rfind(|m| m.is_object() && role(m) == Some("user")) else {
        return String::new();
    };
    match m.get("content") {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .next_back()
            .unwrap_or("")
            .to_string(),
        Some(content) => text_of(content),
        None => String::new(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Answer,
    Final,
    Tool,
    Side,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Answer => "answer",
            Kind::Final => "final",
            Kind::Tool => "tool",
            Kind::Side => "side",
        }
    }
}

fn plan(body: &Value, openai: bool) -> (Kind, Option<String>) {
    if first_user_text(body).contains(ANSWER_TRIGGER) {
        let words = last_user_words(body);
        return (
            Kind::Answer,
            Some(format!("{ANSWER_PREFIX}{}", words.trim())),
        );
    }
    let result = if openai {
        openai_tool_result(body)
    } else {
        anthropic_tool_result(body)
    };
    if let Some(result) = result {
        return (
            Kind::Final,
            Some(format!("{FINAL_PREFIX}{}", result.trim())),
        );
    }
    if offers_bash(body, openai) {
        return (Kind::Tool, None);
    }
    (Kind::Side, Some(SIDE_TEXT.into()))
}

/// A vendor error: status, extra headers, body.
type VendorError = (u16, Vec<(&'static str, &'static str)>, Value);

/// The vendor error a request asks for.
fn scripted_error(body: &Value, openai: bool) -> Option<VendorError> {
    let text = first_user_text(body);
    let (_, after) = text.split_once(ERROR_TRIGGER)?;
    let name = after
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c| ".,;:`'\"".contains(c));
    match name {
        "overloaded" if openai => Some((
            503,
            vec![],
            json!({"error": {"message": "The server is overloaded or not ready yet.", "type": "server_error", "param": null, "code": null}}),
        )),
        "overloaded" => Some((
            529,
            vec![],
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        )),
        "too-long" if openai => Some((
            400,
            vec![],
            json!({"error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 250000 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
        )),
        "too-long" => Some((
            400,
            vec![],
            json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"}}),
        )),
        "rate-limit" if openai => Some((
            429,
            vec![("retry-after", "1")],
            json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
        )),
        "rate-limit" => Some((
            429,
            vec![("retry-after", "1")],
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}}),
        )),
        _ => None,
    }
}

fn output_tokens(kind: &Kind, text: Option<&str>) -> u64 {
    match kind {
        Kind::Tool => TOOL_OUTPUT_TOKENS,
        _ => pieces_of(text.unwrap_or(""), 3).len() as u64,
    }
}

fn anthropic_usage(output: u64) -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "output_tokens": output,
        "service_tier": "standard",
    })
}

fn openai_usage(completion: u64) -> Value {
    json!({
        "prompt_tokens": INPUT_TOKENS,
        "completion_tokens": completion,
        "total_tokens": INPUT_TOKENS + completion,
        "prompt_tokens_details": {"cached_tokens": CACHE_READ_TOKENS},
    })
}

/// `claude-code`: see the module documentation.
pub(super) fn upstream(
    journal: &std::sync::Arc<Journal>,
    keys: &[String],
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &Bytes,
) -> Response {
    let raw: &[u8] = if method == Method::POST { raw } else { &[] };
    let mut arrival = fields([
        ("method", json!(method.as_str())),
        ("path", json!(full_path(uri))),
        ("headers", headers_json(headers)),
    ]);
    let body = if raw.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(raw) {
            Ok(v) => v,
            Err(_) => {
                arrival.insert(
                    "raw_body".into(),
                    json!(String::from_utf8_lossy(raw).into_owned()),
                );
                Value::Null
            }
        }
    };
    // `body` before `raw_body`, as Python wrote them.
    let raw_body = arrival.remove("raw_body");
    arrival.insert("body".into(), body.clone());
    if let Some(r) = raw_body {
        arrival.insert("raw_body".into(), r);
    }
    let seq = journal.add(arrival);
    let finish = |fields: Map<String, Value>| journal.update(seq, fields);
    let path = uri.path();
    let anthropic = path.starts_with("/v1/messages") || path == "/v1/complete";
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let authorized = keys.is_empty()
        || keys
            .iter()
            .any(|k| header("x-api-key") == k || header("authorization") == format!("Bearer {k}"));
    if !authorized {
        finish(super::fields([
            ("status", json!(401)),
            ("reply", json!("unauthorized")),
        ]));
        let error = if anthropic {
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        } else {
            json!({"error": {"message": "Incorrect API key provided to the mock upstream.",
                             "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
        };
        return json_answer(401, &error, &[]);
    }
    let known = [
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/chat/completions",
    ];
    if method != Method::POST || !known.contains(&path) {
        finish(super::fields([
            ("status", json!(404)),
            ("reply", json!("not_found")),
        ]));
        let message = format!("Unknown route {}", full_path(uri));
        return json_answer(
            404,
            &json!({"type": "error", "error": {"type": "not_found_error", "message": message}}),
            &[],
        );
    }
    if !body.is_object() {
        finish(super::fields([
            ("status", json!(400)),
            ("reply", json!("bad_json")),
        ]));
        return json_answer(
            400,
            &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "body is not JSON"}}),
            &[],
        );
    }
    if path == "/v1/messages/count_tokens" {
        let tokens = (py_dumps(&body).chars().count() / 4).max(1);
        finish(super::fields([
            ("status", json!(200)),
            ("reply", json!("count_tokens")),
        ]));
        return json_answer(200, &json!({"input_tokens": tokens}), &[]);
    }
    let openai = path == "/v1/chat/completions";
    if let Some((status, extra, payload)) = scripted_error(&body, openai) {
        finish(super::fields([
            ("status", json!(status)),
            ("reply", json!("error")),
        ]));
        return json_answer(status, &payload, &extra);
    }
    let (kind, text) = plan(&body, openai);
    let out = output_tokens(&kind, text.as_deref());
    let usage = if openai {
        openai_usage(out)
    } else {
        let mut u = anthropic_usage(out);
        if let Some(u) = u.as_object_mut() {
            u.remove("service_tier");
        }
        u
    };
    finish(super::fields([
        ("status", json!(200)),
        ("reply", json!(kind.name())),
        ("reply_text", json!(text)),
        ("usage", usage),
    ]));
    let model = body.get("model").cloned().unwrap_or(json!("mock-model"));
    let stream = truthy(body.get("stream").unwrap_or(&Value::Null));
    if openai {
        if stream {
            openai_stream(&model, &body, &kind, text.as_deref())
        } else {
            openai_whole(&model, &kind, text.as_deref())
        }
    } else {
        let thinking = matches!(
            body.get("thinking")
                .and_then(|t| t.get("type"))
                .and_then(Value::as_str),
            Some("enabled" | "adaptive")
        );
        if stream {
            anthropic_stream(&model, &kind, text.as_deref(), thinking)
        } else {
            anthropic_whole(&model, &kind, text.as_deref(), thinking)
        }
    }
}

fn anthropic_whole(model: &Value, kind: &Kind, text: Option<&str>, thinking: bool) -> Response {
    let (content, stop, out) = if *kind == Kind::Tool {
        let mut content = Vec::new();
        if thinking {
            content.push(json!({"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE}));
        }
        content.push(json!({"type": "text", "text": "Running it."}));
        content.push(json!({"type": "tool_use", "id": TOOL_CALL_ID_ANTHROPIC, "name": TOOL_NAME, "input": tool_input()}));
        (content, "tool_use", TOOL_OUTPUT_TOKENS)
    } else {
        (
            vec![json!({"type": "text", "text": text.unwrap_or("")})],
            "end_turn",
            output_tokens(kind, text),
        )
    };
    json_answer(
        200,
        &json!({
            "id": "msg_mock_json", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": null,
            "usage": anthropic_usage(out),
        }),
        &[("request-id", "req_mock")],
    )
}

fn anthropic_stream(model: &Value, kind: &Kind, text: Option<&str>, thinking: bool) -> Response {
    let mut events = Vec::new();
    let mut event = |name: &str, data: Value| events.push(sse_event(name, &data));
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_mock_stream", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": anthropic_usage(1)}}),
    );
    event("ping", json!({"type": "ping"}));
    let mut index = 0;
    let block_start = |index: usize, block: Value| json!({"type": "content_block_start", "index": index, "content_block": block});
    let delta = |index: usize, delta: Value| json!({"type": "content_block_delta", "index": index, "delta": delta});
    let block_stop = |index: usize| json!({"type": "content_block_stop", "index": index});
    let (stop, out) = if *kind == Kind::Tool {
        if thinking {
            event(
                "content_block_start",
                block_start(
                    index,
                    json!({"type": "thinking", "thinking": "", "signature": ""}),
                ),
            );
            for piece in pieces_of(THINKING_TEXT, 2) {
                event(
                    "content_block_delta",
                    delta(index, json!({"type": "thinking_delta", "thinking": piece})),
                );
            }
            event(
                "content_block_delta",
                delta(
                    index,
                    json!({"type": "signature_delta", "signature": THINKING_SIGNATURE}),
                ),
            );
            event("content_block_stop", block_stop(index));
            index += 1;
        }
        event(
            "content_block_start",
            block_start(index, json!({"type": "text", "text": ""})),
        );
        event(
            "content_block_delta",
            delta(index, json!({"type": "text_delta", "text": "Running it."})),
        );
        event("content_block_stop", block_stop(index));
        index += 1;
        event(
            "content_block_start",
            block_start(
                index,
                json!({"type": "tool_use", "id": TOOL_CALL_ID_ANTHROPIC, "name": TOOL_NAME, "input": {}}),
            ),
        );
        let arguments = py_dumps(&tool_input());
        let mut pieces = vec![String::new()];
        pieces.extend(pieces_of(&arguments, 3));
        for piece in pieces {
            event(
                "content_block_delta",
                delta(
                    index,
                    json!({"type": "input_json_delta", "partial_json": piece}),
                ),
            );
        }
        event("content_block_stop", block_stop(index));
        ("tool_use", TOOL_OUTPUT_TOKENS)
    } else {
        event(
            "content_block_start",
            block_start(index, json!({"type": "text", "text": ""})),
        );
        let pieces = pieces_of(text.unwrap_or(""), 3);
        for piece in &pieces {
            event(
                "content_block_delta",
                delta(index, json!({"type": "text_delta", "text": piece})),
            );
        }
        event("content_block_stop", block_stop(index));
        ("end_turn", pieces.len() as u64)
    };
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
                         "cache_read_input_tokens": CACHE_READ_TOKENS, "output_tokens": out}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    sse_answer(
        "text/event-stream; charset=utf-8",
        events,
        &[("request-id", "req_mock")],
        || {},
    )
}

fn openai_whole(model: &Value, kind: &Kind, text: Option<&str>) -> Response {
    let (message, finish, out) = if *kind == Kind::Tool {
        (
            json!({"role": "assistant", "content": null, "reasoning_content": THINKING_TEXT,
                   "tool_calls": [{"id": TOOL_CALL_ID_OPENAI, "type": "function",
                                   "function": {"name": TOOL_NAME, "arguments": py_dumps(&tool_input())}}]}),
            "tool_calls",
            TOOL_OUTPUT_TOKENS,
        )
    } else {
        (
            json!({"role": "assistant", "content": text}),
            "stop",
            output_tokens(kind, text),
        )
    };
    json_answer(
        200,
        &json!({
            "id": "chatcmpl-mockjson", "object": "chat.completion", "created": unix_time(),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": openai_usage(out),
        }),
        &[],
    )
}

fn openai_stream(model: &Value, body: &Value, kind: &Kind, text: Option<&str>) -> Response {
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));
    let created = unix_time();
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": "chatcmpl-mockstream", "object": "chat.completion.chunk", "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse_data(&c)
    };
    let mut events = Vec::new();
    let (finish, out) = if *kind == Kind::Tool {
        events.push(chunk(
            json!({"role": "assistant", "content": null, "reasoning_content": THINKING_TEXT}),
            Value::Null,
        ));
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": TOOL_CALL_ID_OPENAI, "type": "function",
                                   "function": {"name": TOOL_NAME, "arguments": ""}}]}),
            Value::Null,
        ));
        for piece in pieces_of(&py_dumps(&tool_input()), 3) {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
        ("tool_calls", TOOL_OUTPUT_TOKENS)
    } else {
        events.push(chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ));
        let pieces = pieces_of(text.unwrap_or(""), 3);
        for piece in &pieces {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        ("stop", pieces.len() as u64)
    };
    events.push(chunk(json!({}), json!(finish)));
    if include_usage {
        events.push(sse_data(&json!({
            "id": "chatcmpl-mockstream", "object": "chat.completion.chunk", "created": created,
            "model": model, "choices": [], "usage": openai_usage(out),
        })));
    }
    events.push("data: [DONE]\n\n".into());
    sse_answer("text/event-stream; charset=utf-8", events, &[], || {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_follow_the_conversation() {
        let tools = json!([{"name": "Bash", "input_schema": {}}]);
        let first = json!({"messages": [{"role": "user", "content": "run it"}], "tools": tools});
        assert_eq!(plan(&first, false), (Kind::Tool, None));
        let second = json!({"tools": tools, "messages": [
            {"role": "user", "content": "run it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                          "content": [{"type": "text", "text": "tollgate-tool-ok\n"}]}]}]});
        assert_eq!(
            plan(&second, false),
            (Kind::Final, Some(format!("{FINAL_PREFIX}tollgate-tool-ok")))
        );
        let answer = json!({"messages": [
            {"role": "user", "content": [{"type": "text", "text": "<reminder>"}, {"type": "text", "text": " say hi (tollgate-mock-answer) "}]}]});
        assert_eq!(
            plan(&answer, true),
            (
                Kind::Answer,
                Some("You said: say hi (tollgate-mock-answer)".into())
            )
        );
        assert_eq!(
            plan(&json!({"messages": []}), true),
            (Kind::Side, Some(SIDE_TEXT.into()))
        );
        let limited = json!({"messages": [{"role": "user", "content": "Say hi. tollgate-mock-error=rate-limit"}]});
        let (status, headers, _) = scripted_error(&limited, false).unwrap();
        assert_eq!((status, headers), (429, vec![("retry-after", "1")]));
        assert_eq!(output_tokens(&Kind::Side, Some(SIDE_TEXT)), 3);
    }
}
