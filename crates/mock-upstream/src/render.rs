//! The bytes of an answer, in each protocol: whole (one JSON body) or
//! streamed (Server-Sent Events). Public so that tests can compute what a
//! gateway in front of the mock must pass through, byte for byte.
//!
//! JSON is written by hand (compact, fields in a fixed order) so that the
//! benchmark's fixed answers cost no more than a few string copies.

use std::fmt::Write;

use std::sync::Arc;

use bytes::Bytes;

use crate::script::ToolCall;

/// `created` of every answer.
pub const CREATED: u64 = 1_700_000_000;
pub const CHAT_ID: &str = "chatcmpl-mock";
pub const COMPLETION_ID: &str = "cmpl-mock";
pub const MESSAGE_ID: &str = "msg_mock_1";
pub const RESPONSE_ID: &str = "resp_upstream";
pub const RESPONSE_ITEM_ID: &str = "msg_up";
pub const RESPONSE_CALL_ITEM_ID: &str = "fc_mock_1";

/// The usage an answer reports, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reported {
    Counts(Counts),
    /// `usage: {}`.
    Empty,
    /// No usage field, no usage chunk.
    Omit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counts {
    pub input: u64,
    /// Rendered by OpenAI only when set.
    pub cached: Option<u64>,
    pub cache_write: u64,
    pub output: u64,
    /// Rendered by OpenAI only when set.
    pub reasoning: Option<u64>,
}

/// What to answer, whatever the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The request's model, echoed.
    pub model: String,
    pub text: Arc<[String]>,
    pub tool_call: Option<ToolCall>,
    pub usage: Reported,
}

impl Answer {
    /// Pieces the answer streams: text, then tool-call arguments.
    pub fn pieces(&self) -> usize {
        self.text.len() + self.tool_call.as_ref().map_or(0, |c| c.arguments.len())
    }

    fn text_concat(&self) -> String {
        self.text.concat()
    }
}

/// One event of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub bytes: Bytes,
    /// A piece of the answer (paced by `chunk_delay_ms`, counted by
    /// `break_after`), as opposed to the events around them.
    pub piece: bool,
}

impl Event {
    fn frame(text: String) -> Event {
        Event {
            bytes: Bytes::from(text),
            piece: false,
        }
    }

    fn piece(text: String) -> Event {
        Event {
            bytes: Bytes::from(text),
            piece: true,
        }
    }
}

/// The events' bytes, one string each (for comparisons in tests).
pub fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.bytes).into_owned())
        .collect()
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    push_joined(out, std::slice::from_ref(&s));
}

/// Appends the concatenation of `pieces` as one JSON string.
fn push_joined<S: AsRef<str>>(out: &mut String, pieces: &[S]) {
    out.push('"');
    for c in pieces.iter().flat_map(|p| p.as_ref().chars()) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

fn sse_data(json: &str) -> String {
    format!("data: {json}\n\n")
}

fn sse_event(name: &str, json: &str) -> String {
    format!("event: {name}\ndata: {json}\n\n")
}

// --- OpenAI ------------------------------------------------------------------

/// OpenAI's usage object (`{}` for [`Reported::Empty`]); `None` to omit it.
pub fn openai_usage(usage: &Reported) -> Option<String> {
    match usage {
        Reported::Omit => None,
        Reported::Empty => Some("{}".into()),
        Reported::Counts(c) => {
            let mut out = format!(
                r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}"#,
                c.input,
                c.output,
                c.input + c.output
            );
            if let Some(cached) = c.cached {
                let _ = write!(
                    out,
                    r#","prompt_tokens_details":{{"cached_tokens":{cached}}}"#
                );
            }
            if let Some(reasoning) = c.reasoning {
                let _ = write!(
                    out,
                    r#","completion_tokens_details":{{"reasoning_tokens":{reasoning}}}"#
                );
            }
            out.push('}');
            Some(out)
        }
    }
}

fn tool_call_start(call: &ToolCall) -> String {
    format!(
        r#"[{{"index":0,"id":{},"type":"function","function":{{"name":{},"arguments":""}}}}]"#,
        quoted(&call.id),
        quoted(&call.name)
    )
}

/// A whole chat completion.
pub fn chat_whole(a: &Answer) -> String {
    let mut message = String::from(r#"{"role":"assistant","content":"#);
    if a.text.is_empty() && a.tool_call.is_some() {
        message.push_str("null");
    } else {
        push_joined(&mut message, &a.text);
    }
    if let Some(call) = &a.tool_call {
        let _ = write!(
            message,
            r#","tool_calls":[{{"id":{},"type":"function","function":{{"name":{},"arguments":{}}}}}]"#,
            quoted(&call.id),
            quoted(&call.name),
            quoted(&call.arguments.concat())
        );
    }
    message.push('}');
    let finish = if a.tool_call.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    let mut out = format!(
        r#"{{"id":"{CHAT_ID}","object":"chat.completion","created":{CREATED},"model":{},"choices":[{{"index":0,"message":{message},"finish_reason":"{finish}"}}]"#,
        quoted(&a.model)
    );
    if let Some(usage) = openai_usage(&a.usage) {
        let _ = write!(out, r#","usage":{usage}"#);
    }
    out.push('}');
    out
}

/// A streamed chat completion: the role chunk, a chunk per text piece, the
/// tool call's chunks, the finish chunk, the usage chunk when
/// `include_usage` (and the usage is not omitted), then `[DONE]`. Once
/// usage was asked for, every chunk carries `"usage":null`, as OpenAI's do.
pub fn chat_stream(a: &Answer, include_usage: bool) -> Vec<Event> {
    let usage = if include_usage {
        openai_usage(&a.usage)
    } else {
        None
    };
    let model = quoted(&a.model);
    let usage_null = if usage.is_some() {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |delta: &str, finish: &str| {
        sse_data(&format!(
            r#"{{"id":"{CHAT_ID}","object":"chat.completion.chunk","created":{CREATED},"model":{model},"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]{usage_null}}}"#
        ))
    };
    let mut events = Vec::with_capacity(a.pieces() + 5);
    match &a.tool_call {
        Some(call) if a.text.is_empty() => events.push(Event::frame(chunk(
            &format!(
                r#"{{"role":"assistant","content":null,"tool_calls":{}}}"#,
                tool_call_start(call)
            ),
            "null",
        ))),
        _ => events.push(Event::frame(chunk(
            r#"{"role":"assistant","content":""}"#,
            "null",
        ))),
    }
    for piece in a.text.iter() {
        events.push(Event::piece(chunk(
            &format!(r#"{{"content":{}}}"#, quoted(piece)),
            "null",
        )));
    }
    if let Some(call) = &a.tool_call {
        if !a.text.is_empty() {
            events.push(Event::frame(chunk(
                &format!(r#"{{"tool_calls":{}}}"#, tool_call_start(call)),
                "null",
            )));
        }
        for piece in &call.arguments {
            events.push(Event::piece(chunk(
                &format!(
                    r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":{}}}}}]}}"#,
                    quoted(piece)
                ),
                "null",
            )));
        }
    }
    let finish = if a.tool_call.is_some() {
        r#""tool_calls""#
    } else {
        r#""stop""#
    };
    events.push(Event::frame(chunk("{}", finish)));
    if let Some(usage) = usage {
        events.push(Event::frame(sse_data(&format!(
            r#"{{"id":"{CHAT_ID}","object":"chat.completion.chunk","created":{CREATED},"model":{model},"choices":[],"usage":{usage}}}"#
        ))));
    }
    events.push(Event::frame("data: [DONE]\n\n".into()));
    events
}

/// A whole legacy completion (`/v1/completions`): the text only.
pub fn completion_whole(a: &Answer) -> String {
    let mut out = format!(
        r#"{{"id":"{COMPLETION_ID}","object":"text_completion","created":{CREATED},"model":{},"choices":[{{"text":{},"index":0,"logprobs":null,"finish_reason":"stop"}}]"#,
        quoted(&a.model),
        quoted(&a.text_concat())
    );
    if let Some(usage) = openai_usage(&a.usage) {
        let _ = write!(out, r#","usage":{usage}"#);
    }
    out.push('}');
    out
}

/// A streamed legacy completion: a chunk per text piece, the finish chunk,
/// the usage chunk when asked for, `[DONE]`.
pub fn completion_stream(a: &Answer, include_usage: bool) -> Vec<Event> {
    let model = quoted(&a.model);
    let chunk = |text: &str, finish: &str| {
        sse_data(&format!(
            r#"{{"id":"{COMPLETION_ID}","object":"text_completion","created":{CREATED},"model":{model},"choices":[{{"text":{},"index":0,"logprobs":null,"finish_reason":{finish}}}]}}"#,
            quoted(text)
        ))
    };
    let mut events: Vec<Event> = a
        .text
        .iter()
        .map(|p| Event::piece(chunk(p, "null")))
        .collect();
    events.push(Event::frame(chunk("", r#""stop""#)));
    if let Some(usage) = include_usage.then(|| openai_usage(&a.usage)).flatten() {
        events.push(Event::frame(sse_data(&format!(
            r#"{{"id":"{COMPLETION_ID}","object":"text_completion","created":{CREATED},"model":{model},"choices":[],"usage":{usage}}}"#
        ))));
    }
    events.push(Event::frame("data: [DONE]\n\n".into()));
    events
}

/// An embeddings answer: one two-dimensional vector; usage is the input count.
pub fn embeddings(a: &Answer) -> String {
    let usage = match &a.usage {
        Reported::Omit => String::new(),
        Reported::Empty => r#","usage":{}"#.into(),
        Reported::Counts(c) => format!(
            r#","usage":{{"prompt_tokens":{0},"total_tokens":{0}}}"#,
            c.input
        ),
    };
    format!(
        r#"{{"object":"list","model":{},"data":[{{"object":"embedding","index":0,"embedding":[0.1,0.2]}}]{usage}}}"#,
        quoted(&a.model)
    )
}

// --- Anthropic ---------------------------------------------------------------

/// Anthropic's usage object with `output` output tokens.
fn anthropic_usage(usage: &Reported, output: u64) -> Option<String> {
    match usage {
        Reported::Omit => None,
        Reported::Empty => Some("{}".into()),
        Reported::Counts(c) => Some(format!(
            r#"{{"input_tokens":{},"cache_read_input_tokens":{},"cache_creation_input_tokens":{},"output_tokens":{output}}}"#,
            c.input,
            c.cached.unwrap_or(0),
            c.cache_write
        )),
    }
}

fn output_count(usage: &Reported) -> u64 {
    match usage {
        Reported::Counts(c) => c.output,
        _ => 0,
    }
}

fn tool_input(call: &ToolCall) -> String {
    let arguments = call.arguments.concat();
    match serde_json::from_str::<serde_json::Value>(&arguments) {
        Ok(v) if v.is_object() => v.to_string(),
        _ => "{}".into(),
    }
}

/// Whether the answer has a text block: when it has text, or nothing else.
fn has_text_block(a: &Answer) -> bool {
    !a.text.is_empty() || a.tool_call.is_none()
}

/// A whole Messages answer.
pub fn message_whole(a: &Answer) -> String {
    let mut content = Vec::new();
    if has_text_block(a) {
        content.push(format!(
            r#"{{"type":"text","text":{}}}"#,
            quoted(&a.text_concat())
        ));
    }
    if let Some(call) = &a.tool_call {
        content.push(format!(
            r#"{{"type":"tool_use","id":{},"name":{},"input":{}}}"#,
            quoted(&call.id),
            quoted(&call.name),
            tool_input(call)
        ));
    }
    let stop = if a.tool_call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let mut out = format!(
        r#"{{"id":"{MESSAGE_ID}","type":"message","role":"assistant","model":{},"content":[{}],"stop_reason":"{stop}","stop_sequence":null"#,
        quoted(&a.model),
        content.join(",")
    );
    if let Some(usage) = anthropic_usage(&a.usage, output_count(&a.usage)) {
        let _ = write!(out, r#","usage":{usage}"#);
    }
    out.push('}');
    out
}

/// A streamed Messages answer: `message_start` (the input side of the
/// usage, one output token so far), per block `content_block_start`, its
/// deltas and `content_block_stop` (`ping` after the first block's start),
/// `message_delta` (stop reason, output tokens) and `message_stop`.
pub fn message_stream(a: &Answer) -> Vec<Event> {
    let ev = |name: &str, json: String| sse_event(name, &json);
    let mut events = Vec::with_capacity(a.pieces() + 8);
    let start_usage = anthropic_usage(&a.usage, 1)
        .map(|u| format!(r#","usage":{u}"#))
        .unwrap_or_default();
    events.push(Event::frame(ev(
        "message_start",
        format!(
            r#"{{"type":"message_start","message":{{"id":"{MESSAGE_ID}","type":"message","role":"assistant","model":{},"content":[],"stop_reason":null,"stop_sequence":null{start_usage}}}}}"#,
            quoted(&a.model)
        ),
    )));
    let mut index = 0;
    let mut start_block = |events: &mut Vec<Event>, block: String| {
        events.push(Event::frame(ev(
            "content_block_start",
            format!(r#"{{"type":"content_block_start","index":{index},"content_block":{block}}}"#),
        )));
        if index == 0 {
            events.push(Event::frame(ev("ping", r#"{"type":"ping"}"#.into())));
        }
        index += 1;
        index - 1
    };
    let stop_block = |i: usize| {
        Event::frame(ev(
            "content_block_stop",
            format!(r#"{{"type":"content_block_stop","index":{i}}}"#),
        ))
    };
    if has_text_block(a) {
        let i = start_block(&mut events, r#"{"type":"text","text":""}"#.into());
        for piece in a.text.iter() {
            events.push(Event::piece(ev(
                "content_block_delta",
                format!(
                    r#"{{"type":"content_block_delta","index":{i},"delta":{{"type":"text_delta","text":{}}}}}"#,
                    quoted(piece)
                ),
            )));
        }
        events.push(stop_block(i));
    }
    if let Some(call) = &a.tool_call {
        let i = start_block(
            &mut events,
            format!(
                r#"{{"type":"tool_use","id":{},"name":{},"input":{{}}}}"#,
                quoted(&call.id),
                quoted(&call.name)
            ),
        );
        for piece in &call.arguments {
            events.push(Event::piece(ev(
                "content_block_delta",
                format!(
                    r#"{{"type":"content_block_delta","index":{i},"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                    quoted(piece)
                ),
            )));
        }
        events.push(stop_block(i));
    }
    let stop = if a.tool_call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let delta_usage = match &a.usage {
        Reported::Omit => String::new(),
        Reported::Empty => r#","usage":{}"#.into(),
        Reported::Counts(c) => format!(r#","usage":{{"output_tokens":{}}}"#, c.output),
    };
    events.push(Event::frame(ev(
        "message_delta",
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"{stop}","stop_sequence":null}}{delta_usage}}}"#
        ),
    )));
    events.push(Event::frame(ev(
        "message_stop",
        r#"{"type":"message_stop"}"#.into(),
    )));
    events
}

// --- Responses ---------------------------------------------------------------

fn responses_usage(usage: &Reported) -> String {
    match usage {
        Reported::Omit => "null".into(),
        Reported::Empty => "{}".into(),
        Reported::Counts(c) => format!(
            r#"{{"input_tokens":{},"input_tokens_details":{{"cached_tokens":{}}},"output_tokens":{},"output_tokens_details":{{"reasoning_tokens":{}}},"total_tokens":{}}}"#,
            c.input,
            c.cached.unwrap_or(0),
            c.output,
            c.reasoning.unwrap_or(0),
            c.input + c.output
        ),
    }
}

fn response_items(a: &Answer) -> Vec<String> {
    let mut items = Vec::new();
    if has_text_block(a) {
        items.push(format!(
            r#"{{"id":"{RESPONSE_ITEM_ID}","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_text","text":{},"annotations":[]}}]}}"#,
            quoted(&a.text_concat())
        ));
    }
    if let Some(call) = &a.tool_call {
        items.push(call_item(call, &call.arguments.concat(), "completed"));
    }
    items
}

fn call_item(call: &ToolCall, arguments: &str, status: &str) -> String {
    format!(
        r#"{{"id":"{RESPONSE_CALL_ITEM_ID}","type":"function_call","status":"{status}","call_id":{},"name":{},"arguments":{}}}"#,
        quoted(&call.id),
        quoted(&call.name),
        quoted(arguments)
    )
}

fn response_object(a: &Answer, status: &str, output: &str, usage: &str) -> String {
    format!(
        r#"{{"id":"{RESPONSE_ID}","object":"response","created_at":{CREATED},"status":"{status}","model":{},"output":{output},"usage":{usage}}}"#,
        quoted(&a.model)
    )
}

/// A whole Response (`"stream": false`).
pub fn response_whole(a: &Answer) -> String {
    let output = format!("[{}]", response_items(a).join(","));
    response_object(a, "completed", &output, &responses_usage(&a.usage))
}

/// A streamed Response: `response.created`, per output item
/// `response.output_item.added`, its deltas and `response.output_item.done`,
/// then `response.completed` with the usage. Every event carries its
/// `sequence_number`.
pub fn response_stream(a: &Answer) -> Vec<Event> {
    let mut bodies: Vec<(String, bool)> = Vec::new();
    bodies.push((
        format!(
            r#"{{"type":"response.created","response":{}"#,
            response_object(a, "in_progress", "[]", "null")
        ),
        false,
    ));
    let items = response_items(a);
    let mut index = 0;
    if has_text_block(a) {
        bodies.push((
            format!(
                r#"{{"type":"response.output_item.added","output_index":{index},"item":{{"id":"{RESPONSE_ITEM_ID}","type":"message","status":"in_progress","role":"assistant","content":[]}}"#
            ),
            false,
        ));
        for piece in a.text.iter() {
            bodies.push((
                format!(
                    r#"{{"type":"response.output_text.delta","item_id":"{RESPONSE_ITEM_ID}","output_index":{index},"content_index":0,"delta":{}"#,
                    quoted(piece)
                ),
                true,
            ));
        }
        bodies.push((
            format!(
                r#"{{"type":"response.output_item.done","output_index":{index},"item":{}"#,
                items[index]
            ),
            false,
        ));
        index += 1;
    }
    if let Some(call) = &a.tool_call {
        bodies.push((
            format!(
                r#"{{"type":"response.output_item.added","output_index":{index},"item":{}"#,
                call_item(call, "", "in_progress")
            ),
            false,
        ));
        for piece in &call.arguments {
            bodies.push((
                format!(
                    r#"{{"type":"response.function_call_arguments.delta","item_id":"{RESPONSE_CALL_ITEM_ID}","output_index":{index},"delta":{}"#,
                    quoted(piece)
                ),
                true,
            ));
        }
        bodies.push((
            format!(
                r#"{{"type":"response.output_item.done","output_index":{index},"item":{}"#,
                items[index]
            ),
            false,
        ));
    }
    let output = format!("[{}]", items.join(","));
    bodies.push((
        format!(
            r#"{{"type":"response.completed","response":{}"#,
            response_object(a, "completed", &output, &responses_usage(&a.usage))
        ),
        false,
    ));
    bodies
        .into_iter()
        .enumerate()
        .map(|(n, (body, piece))| {
            // The event's name is its `type`, the first field.
            let name = body
                .split('"')
                .nth(3)
                .unwrap_or("response.unknown")
                .to_string();
            let text = sse_event(&name, &format!(r#"{body},"sequence_number":{n}}}"#));
            Event {
                bytes: Bytes::from(text),
                piece,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn answer(text: &[&str], call: Option<ToolCall>) -> Answer {
        Answer {
            model: "m\"1".into(),
            text: text
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .into(),
            tool_call: call,
            usage: Reported::Counts(Counts {
                input: 10,
                cached: Some(2),
                cache_write: 1,
                output: 5,
                reasoning: None,
            }),
        }
    }

    fn data(e: &Event) -> Value {
        let text = std::str::from_utf8(&e.bytes).unwrap();
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(data).unwrap_or(Value::String(data.into()))
    }

    fn weather() -> ToolCall {
        ToolCall::new("call_1", "get_weather", &["{\"city\":", "\"Paris\"}"])
    }

    #[test]
    fn push_str_escapes_as_json_does() {
        let s = "a\"b\\c\nd\u{1}e\u{8}\u{c}é\t";
        assert_eq!(quoted(s), serde_json::to_string(s).unwrap());
    }

    #[test]
    fn chat_answers_are_valid_json() {
        let whole: Value = serde_json::from_str(&chat_whole(&answer(&["a", "b"], None))).unwrap();
        assert_eq!(whole["model"], "m\"1");
        assert_eq!(whole["choices"][0]["message"]["content"], "ab");
        assert_eq!(whole["usage"]["total_tokens"], 15);
        assert_eq!(whole["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
        let tool: Value = serde_json::from_str(&chat_whole(&answer(&[], Some(weather())))).unwrap();
        assert_eq!(tool["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            tool["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(tool["choices"][0]["finish_reason"], "tool_calls");

        let events = chat_stream(&answer(&["a", "b"], None), true);
        let values: Vec<Value> = events.iter().map(data).collect();
        assert_eq!(values.len(), 6);
        assert_eq!(values[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(values[1].get("usage").unwrap().is_null());
        assert_eq!(values[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(values[4]["usage"]["completion_tokens"], 5);
        assert_eq!(values[5], "[DONE]");
        assert_eq!(
            events.iter().map(|e| e.piece).collect::<Vec<_>>(),
            [false, true, true, false, false, false]
        );
        let events = chat_stream(&answer(&["a"], Some(weather())), false);
        let values: Vec<Value> = events.iter().map(data).collect();
        assert!(values[0].get("usage").is_none());
        assert_eq!(
            values[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_1"
        );
        assert_eq!(
            values[4]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "\"Paris\"}"
        );
        assert_eq!(values[5]["choices"][0]["finish_reason"], "tool_calls");
        let mut omitted = answer(&["a"], None);
        omitted.usage = Reported::Omit;
        assert!(chat_stream(&omitted, true)
            .iter()
            .all(|e| !std::str::from_utf8(&e.bytes).unwrap().contains("usage")));
    }

    #[test]
    fn legacy_completions_and_embeddings_are_valid_json() {
        let whole: Value =
            serde_json::from_str(&completion_whole(&answer(&["a", "b"], None))).unwrap();
        assert_eq!(whole["choices"][0]["text"], "ab");
        let events = completion_stream(&answer(&["a", "b"], None), true);
        let values: Vec<Value> = events.iter().map(data).collect();
        assert_eq!(values[1]["choices"][0]["text"], "b");
        assert_eq!(values[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(values[3]["usage"]["prompt_tokens"], 10);
        let e: Value = serde_json::from_str(&embeddings(&answer(&[], None))).unwrap();
        assert_eq!(e["usage"], json!({"prompt_tokens": 10, "total_tokens": 10}));
    }

    #[test]
    fn anthropic_answers_are_valid_json() {
        let whole: Value =
            serde_json::from_str(&message_whole(&answer(&["a"], Some(weather())))).unwrap();
        assert_eq!(whole["content"][0], json!({"type": "text", "text": "a"}));
        assert_eq!(whole["content"][1]["input"], json!({"city": "Paris"}));
        assert_eq!(whole["stop_reason"], "tool_use");
        assert_eq!(
            whole["usage"],
            json!({"input_tokens": 10, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 1, "output_tokens": 5})
        );
        let events = message_stream(&answer(&["a", "b"], Some(weather())));
        let types: Vec<String> = events
            .iter()
            .map(|e| data(e)["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for e in &events {
            let text = std::str::from_utf8(&e.bytes).unwrap();
            let name = text
                .strip_prefix("event: ")
                .unwrap()
                .lines()
                .next()
                .unwrap();
            assert_eq!(data(e)["type"], name);
        }
        assert_eq!(data(&events[0])["message"]["usage"]["output_tokens"], 1);
        assert_eq!(data(&events[10])["usage"], json!({"output_tokens": 5}));
        assert_eq!(events.iter().filter(|e| e.piece).count(), 4);
    }

    #[test]
    fn responses_are_valid_json() {
        let whole: Value =
            serde_json::from_str(&response_whole(&answer(&["a"], Some(weather())))).unwrap();
        assert_eq!(whole["output"][0]["content"][0]["text"], "a");
        assert_eq!(whole["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(whole["usage"]["total_tokens"], 15);
        let events = response_stream(&answer(&["a", "b"], None));
        for (n, e) in events.iter().enumerate() {
            let text = std::str::from_utf8(&e.bytes).unwrap();
            let name = text
                .strip_prefix("event: ")
                .unwrap()
                .lines()
                .next()
                .unwrap();
            assert_eq!(data(e)["type"], name);
            assert_eq!(data(e)["sequence_number"], n);
        }
        let last = data(events.last().unwrap());
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "ab");
        assert_eq!(last["response"]["usage"]["input_tokens"], 10);
    }
}
