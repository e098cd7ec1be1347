//! Fault injection for the stream translators and the usage meters (issue
//! 9, "money stays exact under faults").
//!
//! Plausible upstream streams are generated with random content and random,
//! bounded usage. Hostile ones are made from them by dropping, repeating,
//! reordering and truncating events, by poisoning values (`u64::MAX`,
//! `1e30`, `-1`, strings where numbers belong, …), by random JSON and by
//! cutting the byte stream short. Everything is framed with LF, CRLF or CR
//! line ends and read in random pieces, as the relay reads an upstream.
//!
//! Every translator and meter must never panic and always emit well-formed
//! output: one SSE event per emitted chunk, JSON data (or `[DONE]`), the
//! client protocol's event grammar. For plausible streams the usage must
//! come through exact, both as metered and as told to the client; for any
//! stream it must never wrap around. Seeds are fixed, so failures repeat,
//! and a failing case prints its stream.
//!
//! Deliberately not asserted on hostile streams: that translators and the
//! pass-through meter agree (a translator stops reading at the end of the
//! message it told its client, the pass-through meter reads on), and that a
//! stream ended by an error event told its client the usage (error events
//! carry none, in either protocol).

mod common;

use bytes::Bytes;
use common::streams::{
    assert_well_formed_anthropic, assert_well_formed_openai, concat, decode, feed,
};
use common::Rng;
use protocol::anthropic::StreamMeter;
use protocol::assemble::ChatAssembler;
use protocol::openai::chunk_usage;
use protocol::sse::SseDecoder;
use protocol::translate::{chat_via_messages, complete, messages_via_chat, responses_via_chat};
use protocol::TokenUsage;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Plausible upstream streams
// ---------------------------------------------------------------------------

/// An upstream stream as its events' data, with what it says.
struct Stream {
    events: Vec<String>,
    /// The usage a meter must report, if the stream reports any.
    usage: Option<TokenUsage>,
    /// The answer's text.
    text: String,
}

/// A token count: often small, sometimes up to 2^40 (far beyond any real
/// request, yet with room for sums).
fn count(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => 0,
        1 => rng.below(100),
        2 => rng.below(100_000),
        _ => rng.below(1 << 40),
    }
}

/// Text pieces: multi-byte, quotes, escapes, a newline, empty.
const PIECES: &[&str] = &["Hel", "lo", " wörld", "😀", "\"q\"", "\\", "\n", ""];

fn piece(rng: &mut Rng) -> &'static str {
    PIECES[rng.below(PIECES.len() as u64) as usize]
}

/// What an Anthropic Messages upstream streams: message_start with the input
/// side of usage (cache fields sometimes absent), text, thinking and tool_use
/// blocks, pings, message_delta with the output count (and, as newer API
/// versions do, sometimes updated input counts), message_stop.
fn anthropic_stream(rng: &mut Rng) -> Stream {
    let mut events = Vec::new();
    let mut text = String::new();
    let mut usage = json!({"input_tokens": count(rng), "output_tokens": rng.below(3)});
    for field in ["cache_creation_input_tokens", "cache_read_input_tokens"] {
        if rng.below(2) == 0 {
            usage[field] = json!(count(rng));
        }
    }
    events.push(json!({"type": "message_start", "message": {
        "id": "msg_gen", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage.clone(),
    }}));
    for index in 0..rng.below(5) {
        let (block, deltas): (Value, Vec<Value>) = match rng.below(4) {
            0 => {
                let pieces: Vec<&str> = (0..rng.below(4)).map(|_| piece(rng)).collect();
                text.extend(pieces.iter().copied());
                (
                    json!({"type": "text", "text": ""}),
                    pieces
                        .iter()
                        .map(|p| json!({"type": "text_delta", "text": p}))
                        .collect(),
                )
            }
            1 => (
                json!({"type": "thinking", "thinking": ""}),
                vec![
                    json!({"type": "thinking_delta", "thinking": piece(rng)}),
                    json!({"type": "signature_delta", "signature": "c2ln"}),
                ],
            ),
            2 => (
                json!({"type": "tool_use", "id": format!("toolu_{index}"), "name": "f", "input": {}}),
                ["{\"a\"", ": 1}"]
                    .iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
            _ => (
                json!({"type": "redacted_thinking", "data": "x"}),
                Vec::new(),
            ),
        };
        events.push(json!({"type": "content_block_start", "index": index, "content_block": block}));
        for delta in deltas {
            events.push(json!({"type": "content_block_delta", "index": index, "delta": delta}));
            if rng.below(8) == 0 {
                events.push(json!({"type": "ping"}));
            }
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    let mut delta_usage = json!({"output_tokens": count(rng)});
    if rng.below(3) == 0 {
        for field in [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ] {
            delta_usage[field] = json!(count(rng));
        }
    }
    let stop = [
        "end_turn",
        "max_tokens",
        "tool_use",
        "stop_sequence",
        "refusal",
    ][rng.below(5) as usize];
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": delta_usage.clone()}));
    events.push(json!({"type": "message_stop"}));

    // Later counts replace earlier ones; every prompt token counts as input.
    let last = |field: &str| {
        delta_usage
            .get(field)
            .or(usage.get(field))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (read, write) = (
        last("cache_read_input_tokens"),
        last("cache_creation_input_tokens"),
    );
    Stream {
        events: events.iter().map(Value::to_string).collect(),
        usage: Some(TokenUsage {
            input: last("input_tokens") + read + write,
            output: last("output_tokens"),
            cached_input: read,
            cache_write: write,
        }),
        text,
    }
}

/// What an OpenAI chat upstream streams: a role chunk, content, reasoning
/// and tool-call chunks (one call after another), a finish chunk, usually
/// the usage chunk `include_usage` asks for, `[DONE]`.
fn openai_stream(rng: &mut Rng) -> Stream {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-gen", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let mut text = String::new();
    let mut tools = 0u64;
    for _ in 0..rng.below(12) {
        let delta = match rng.below(4) {
            0 => {
                let p = piece(rng);
                text.push_str(p);
                json!({"content": p})
            }
            1 => json!({"reasoning_content": piece(rng)}),
            2 => {
                tools += 1;
                json!({"tool_calls": [{"index": tools - 1, "id": format!("call_{tools}"), "type": "function", "function": {"name": "f", "arguments": ""}}]})
            }
            _ if tools > 0 => {
                json!({"tool_calls": [{"index": tools - 1, "function": {"arguments": "{\"a\":1}"}}]})
            }
            _ => json!({}),
        };
        events.push(chunk(delta, Value::Null));
    }
    let finish = ["stop", "length", "tool_calls", "content_filter"][rng.below(4) as usize];
    events.push(chunk(json!({}), json!(finish)));
    let usage = (rng.below(4) > 0).then(|| {
        let (prompt, completion) = (count(rng), count(rng));
        let cached = rng.below(prompt + 1);
        let mut u = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
        if rng.below(2) == 0 {
            u["prompt_tokens_details"] = json!({"cached_tokens": cached});
        }
        events.push(json!({"id": "chatcmpl-gen", "object": "chat.completion.chunk", "choices": [], "usage": u}));
        TokenUsage {
            input: prompt,
            output: completion,
            cached_input: if u.get("prompt_tokens_details").is_some() {
                cached
            } else {
                0
            },
            cache_write: 0,
        }
    });
    let mut events: Vec<String> = events.iter().map(Value::to_string).collect();
    events.push("[DONE]".into());
    Stream {
        events,
        usage,
        text,
    }
}

// ---------------------------------------------------------------------------
// Hostile streams
// ---------------------------------------------------------------------------

/// Values that break naive code: the largest counts, overflow bait, floats
/// too big for any integer, negatives, strings, nulls, wrong shapes.
fn hostile_value(rng: &mut Rng) -> Value {
    match rng.below(13) {
        0 => json!(u64::MAX),
        1 => json!(u64::MAX - 1),
        2 => json!(1u64 << 63),
        3 => json!(1e30),
        4 => json!(-1),
        5 => json!(i64::MIN),
        6 => json!(1.5),
        7 => json!("12"),
        8 => Value::Null,
        9 => json!(true),
        10 => json!([]),
        11 => json!({}),
        _ => json!(""),
    }
}

const KEYS: &[&str] = &[
    "type",
    "index",
    "delta",
    "usage",
    "message",
    "content_block",
    "text",
    "partial_json",
    "stop_reason",
    "choices",
    "finish_reason",
    "tool_calls",
    "id",
    "function",
    "arguments",
    "error",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "cached_tokens",
    "content",
    "reasoning_content",
];

const TYPES: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "text_delta",
    "input_json_delta",
    "thinking_delta",
    "tool_use",
    "text",
];

/// Random JSON over the protocols' own vocabulary, so that it often looks
/// like an event and reaches deep into the translators.
fn random_json(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 3 } else { 6 }) {
        0 => hostile_value(rng),
        1 => json!(TYPES[rng.below(TYPES.len() as u64) as usize]),
        2 => json!(rng.below(1_000)),
        3 => Value::Array(
            (0..rng.below(3))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut object = serde_json::Map::new();
            if rng.below(2) == 0 {
                object.insert(
                    "type".into(),
                    json!(TYPES[rng.below(TYPES.len() as u64) as usize]),
                );
            }
            for _ in 0..rng.below(4) {
                let key = KEYS[rng.below(KEYS.len() as u64) as usize];
                object.insert(key.into(), random_json(rng, depth - 1));
            }
            Value::Object(object)
        }
    }
}

/// JSON pointers to every node of `v`, and whether it is a number.
fn nodes(v: &Value, at: String, out: &mut Vec<(String, bool)>) {
    out.push((at.clone(), v.is_number()));
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                nodes(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                nodes(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Replaces one node of an event with a hostile value: a usage count half
/// the time when it has one (they are what money depends on), else a
/// number two times in three, else any node.
fn poison(rng: &mut Rng, data: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(data) else {
        return data.to_string();
    };
    let mut all = Vec::new();
    nodes(&v, String::new(), &mut all);
    let pick = |rng: &mut Rng, from: &[&(String, bool)]| {
        from[rng.below(from.len() as u64) as usize].0.clone()
    };
    let counts: Vec<&(String, bool)> = all
        .iter()
        .filter(|(at, n)| *n && at.contains("usage"))
        .collect();
    let numbers: Vec<&(String, bool)> = all.iter().filter(|(_, n)| *n).collect();
    let target = if !counts.is_empty() && rng.below(2) == 0 {
        pick(rng, &counts)
    } else if !numbers.is_empty() && rng.below(3) > 0 {
        pick(rng, &numbers)
    } else {
        pick(rng, &all.iter().collect::<Vec<_>>())
    };
    if let Some(node) = v.pointer_mut(&target) {
        *node = hostile_value(rng);
    }
    v.to_string()
}

/// An event that belongs somewhere in a stream, for putting it elsewhere:
/// lifecycle events twice or out of place, errors, usage at odd moments.
fn stray_event(rng: &mut Rng, anthropic: bool) -> String {
    let events = if anthropic {
        vec![
            json!({"type": "message_start", "message": {"id": "msg_2", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            json!({"type": "message_stop"}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
            json!({"type": "content_block_start", "index": rng.below(4), "content_block": {"type": "tool_use", "id": "t", "name": "g", "input": {}}}),
            json!({"type": "content_block_delta", "index": rng.below(4), "delta": {"type": "input_json_delta", "partial_json": "{"}}),
            json!({"type": "content_block_stop", "index": rng.below(4)}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]
    } else {
        vec![
            json!("[DONE]"),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": rng.below(3), "function": {"arguments": "}"}}]}}]}),
            json!({"error": {"message": "boom"}}),
            json!({"choices": [{"index": 0, "delta": {"content": "late"}}], "error": null}),
        ]
    };
    match events[rng.below(events.len() as u64) as usize].clone() {
        Value::String(s) => s,
        v => v.to_string(),
    }
}

/// 1–4 faults applied to a plausible stream's events.
fn mutate(rng: &mut Rng, events: &mut Vec<String>, anthropic: bool) {
    for _ in 0..1 + rng.below(4) {
        let n = events.len() as u64;
        let at = rng.below(n) as usize;
        match rng.below(9) {
            // An event lost (message_start, a stop, the usage chunk, …).
            0 if n > 0 => {
                events.remove(at);
            }
            // An event repeated (duplicated stop events, usage twice, …).
            1 if n > 0 => events.insert(at, events[at].clone()),
            // Two events swapped.
            2 if n > 0 => {
                let other = rng.below(n) as usize;
                events.swap(at, other);
            }
            // An event cut short: truncated JSON.
            3 if n > 0 => {
                let e = &events[at];
                let mut cut = rng.below(e.len() as u64) as usize;
                while !e.is_char_boundary(cut) {
                    cut -= 1;
                }
                events[at] = e[..cut].to_string();
            }
            // A value poisoned; events with usage are few, so they are
            // aimed at half the time.
            4 if n > 0 => {
                let with_usage: Vec<usize> = (0..events.len())
                    .filter(|&i| events[i].contains("\"usage\""))
                    .collect();
                let at = match with_usage.len() as u64 {
                    k if k > 0 && rng.below(2) == 0 => with_usage[rng.below(k) as usize],
                    _ => at,
                };
                events[at] = poison(rng, &events[at]);
            }
            // Random JSON among the events.
            5 => events.insert(at, random_json(rng, 3).to_string()),
            // A lifecycle, usage or error event out of place.
            6 => events.insert(at, stray_event(rng, anthropic)),
            // The first event lost: no message_start, no role chunk.
            7 if n > 0 => {
                events.remove(0);
            }
            // Data that is not JSON, or is a bare string.
            _ => events.insert(
                at,
                ["", "{", "[DONE]x", "nul\0", "\"usage\""][rng.below(5) as usize].into(),
            ),
        }
    }
}

/// The largest token count anywhere in the events, for bounding usage.
fn largest_count(events: &[String]) -> u64 {
    fn walk(v: &Value) -> u64 {
        match v {
            Value::Number(n) => n.as_u64().unwrap_or(0),
            Value::Array(a) => a.iter().map(walk).max().unwrap_or(0),
            Value::Object(m) => m.values().map(walk).max().unwrap_or(0),
            _ => 0,
        }
    }
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .map(|v| walk(&v))
        .max()
        .unwrap_or(0)
}

/// Frames events as SSE, named by their `type` for Anthropic, with one kind
/// of line end throughout.
fn frame(events: &[String], anthropic: bool, eol: &str) -> Vec<u8> {
    let mut s = String::new();
    for data in events {
        if anthropic {
            let name = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(String::from));
            if let Some(name) = name {
                s += &format!("event: {name}{eol}");
            }
        }
        s += &format!("data: {data}{eol}{eol}");
    }
    s.into_bytes()
}

/// A framed stream and read boundaries; one in six is cut off mid-byte
/// stream, as when an upstream connection drops.
fn bytes_and_cuts(rng: &mut Rng, events: &[String], anthropic: bool) -> (Vec<u8>, Vec<usize>) {
    let eol = ["\n", "\n", "\r\n", "\r"][rng.below(4) as usize];
    let mut bytes = frame(events, anthropic, eol);
    if rng.below(6) == 0 {
        bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
    }
    let cuts = rng.cuts(bytes.len());
    (bytes, cuts)
}

// ---------------------------------------------------------------------------
// Running translators and checking their output
// ---------------------------------------------------------------------------

/// Checks that every emitted chunk is exactly one SSE event with JSON data
/// (or `[DONE]`), and that the client, decoding the concatenation, sees the
/// same events. Returns (event name, data).
fn frames(out: &[Bytes]) -> Vec<(Option<String>, String)> {
    let events: Vec<(Option<String>, String)> = out
        .iter()
        .map(|chunk| {
            let mut dec = SseDecoder::new();
            dec.push(chunk);
            let e = dec.next_event().expect("a chunk is a whole event");
            assert_eq!(&e.raw, chunk, "a chunk is exactly one event");
            assert_eq!(dec.finish(), None);
            if e.data != "[DONE]" {
                serde_json::from_str::<Value>(&e.data)
                    .unwrap_or_else(|err| panic!("{err}: data {:?}", e.data));
            }
            (e.event, e.data)
        })
        .collect();
    assert_eq!(decode(&concat(out)), events, "the client decodes the same");
    events
}

/// (name, parsed data) of a stream of named events.
fn named(out: &[Bytes]) -> Vec<(String, Value)> {
    frames(out)
        .into_iter()
        .map(|(name, data)| {
            (
                name.expect("a named event"),
                serde_json::from_str(&data).unwrap(),
            )
        })
        .collect()
}

/// The grammar of a legacy completion stream: `completion` events with no
/// stop reason, pings, then one `completion` with its stop reason, or an
/// `error`, last.
fn assert_well_formed_completion(events: &[(String, Value)]) {
    let last = events.len() - 1;
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        match name.as_str() {
            "completion" => {
                assert!(data["completion"].is_string());
                assert_eq!(data["stop_reason"].is_string(), i == last, "{events:?}");
            }
            "ping" => assert!(i < last),
            "error" => assert_eq!(i, last, "error ends the stream"),
            other => panic!("unknown event {other}"),
        }
    }
}

const TERMINAL: &[&str] = &[
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// The outline of a Responses stream (tests/responses_via_chat.rs checks
/// the items in depth): named by type, gap-free sequence numbers, created
/// and in_progress first, exactly one terminal event, last.
fn assert_well_formed_responses(events: &[(String, Value)]) {
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i);
        let terminal = TERMINAL.contains(&name.as_str());
        assert_eq!(terminal, i == events.len() - 1, "{name} at {i}");
    }
    assert_eq!(events[0].0, "response.created");
    assert_eq!(events[1].0, "response.in_progress");
}

/// Usage never wraps around and is never absurd: cache counts are part of
/// the input, and no count exceeds what the upstream's largest number
/// allows (the input sums at most three counts).
fn assert_sane(usage: Option<TokenUsage>, largest: u64, what: &str) {
    let Some(u) = usage else { return };
    assert!(
        u.cached_input.saturating_add(u.cache_write) <= u.input,
        "{what}: cache counts beyond the input: {u:?}"
    );
    assert!(
        u.input <= largest.saturating_mul(3) && u.output <= largest,
        "{what}: more tokens than the upstream said ({largest}): {u:?}"
    );
}

/// An OpenAI `usage` object the gateway wrote: counts and a total that did
/// not wrap.
fn assert_sane_openai_usage(usage: &Value, largest: u64) {
    let field = |name: &str| usage[name].as_u64().unwrap_or_else(|| panic!("{usage}"));
    let (prompt, completion, total) = (
        field("prompt_tokens"),
        field("completion_tokens"),
        field("total_tokens"),
    );
    assert_eq!(total, prompt.saturating_add(completion), "{usage}");
    assert!(prompt <= largest.saturating_mul(3) && completion <= largest);
}

/// What an OpenAI stream gives through each translator that reads one.
struct FromOpenAi {
    /// messages_via_chat: the Anthropic events and the usage it metered.
    anthropic: Vec<(String, Value)>,
    anthropic_usage: Option<TokenUsage>,
    /// The Anthropic events re-metered, as a client or a chained meter would.
    anthropic_metered: Option<TokenUsage>,
    /// The Anthropic events translated again into a legacy completion, as
    /// the gateway serves `/v1/complete` from an OpenAI upstream.
    completion: Vec<(String, Value)>,
    completion_usage: Option<TokenUsage>,
    /// responses_via_chat: the events and the usage it metered.
    responses: Vec<(String, Value)>,
    responses_usage: Option<TokenUsage>,
    /// The pass-through meter: the last chunk that carried usage.
    pass_through_usage: Option<TokenUsage>,
}

fn from_openai(stream: &[u8], cuts: &[usize]) -> FromOpenAi {
    let mut messages = messages_via_chat::StreamTranslator::new("claude-public");
    let skeleton =
        responses_via_chat::response_skeleton(&serde_json::Map::new(), "resp_gen", "gpt-public", 1);
    let mut responses = responses_via_chat::StreamTranslator::new(skeleton);
    let mut assembler = ChatAssembler::new();
    let (mut to_messages, mut to_responses) = (Vec::new(), Vec::new());
    let mut pass_through_usage = None;
    feed(stream, cuts, |data| {
        messages.push(data, &mut to_messages);
        responses.push(data, &mut to_responses);
        if let Some(u) = chunk_usage(data) {
            pass_through_usage = Some(u.usage);
        }
        if let Ok(chunk) = serde_json::from_str::<Value>(data) {
            assembler.push(&chunk);
        }
    });
    messages.finish(&mut to_messages);
    responses.finish(&mut to_responses);
    assert!(assembler.finish().is_object());

    let mut meter = StreamMeter::default();
    let mut legacy = complete::StreamTranslator::new("claude-2.1");
    let mut to_legacy = Vec::new();
    feed(&concat(&to_messages), &[], |data| {
        meter.observe(data);
        legacy.push(data, &mut to_legacy);
    });
    legacy.finish(&mut to_legacy);
    FromOpenAi {
        anthropic: named(&to_messages),
        anthropic_usage: messages.usage(),
        anthropic_metered: meter.usage(),
        completion: named(&to_legacy),
        completion_usage: legacy.usage(),
        responses: named(&to_responses),
        responses_usage: responses.usage(),
        pass_through_usage,
    }
}

/// What an Anthropic stream gives through each translator that reads one.
struct FromAnthropic {
    /// chat_via_messages: the OpenAI chunks' data and the usage it metered.
    openai: Vec<String>,
    openai_usage: Option<TokenUsage>,
    /// complete: the legacy completion events and the usage it metered.
    completion: Vec<(String, Value)>,
    completion_usage: Option<TokenUsage>,
    /// The pass-through meter.
    pass_through_usage: Option<TokenUsage>,
}

fn from_anthropic(stream: &[u8], cuts: &[usize], include_usage: bool) -> FromAnthropic {
    let mut chat = chat_via_messages::StreamTranslator::new("gpt-public", 1, include_usage);
    let mut legacy = complete::StreamTranslator::new("claude-2.1");
    let mut meter = StreamMeter::default();
    let (mut to_chat, mut to_legacy) = (Vec::new(), Vec::new());
    feed(stream, cuts, |data| {
        chat.push(data, &mut to_chat);
        legacy.push(data, &mut to_legacy);
        meter.observe(data);
    });
    chat.finish(&mut to_chat);
    legacy.finish(&mut to_legacy);
    let openai = frames(&to_chat).into_iter().map(|(_, d)| d).collect();
    FromAnthropic {
        openai,
        openai_usage: chat.usage(),
        completion: named(&to_legacy),
        completion_usage: legacy.usage(),
        pass_through_usage: meter.usage(),
    }
}

/// The usage an OpenAI client is told, from the dedicated usage chunk.
fn told_openai_usage(data: &[String]) -> Option<TokenUsage> {
    data.iter()
        .filter_map(|d| chunk_usage(d))
        .map(|u| u.usage)
        .next_back()
}

fn anthropic_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect()
}

fn completion_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d["completion"].as_str())
        .collect()
}

fn openai_text(data: &[String]) -> String {
    data.iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Prints the stream of a failing case, to reproduce it by hand.
struct Case<'a>(&'a [u8]);

impl Drop for Case<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failing stream: {:?}", String::from_utf8_lossy(self.0));
        }
    }
}

/// Plausible OpenAI streams, however read: the Anthropic, legacy completion
/// and Responses streams made of them are well-formed, keep the text, and
/// carry the upstream's usage exactly, both as metered and as the client
/// is told.
#[test]
fn plausible_openai_streams_keep_text_and_usage_exact() {
    for seed in [11, 0xB0B, 0x1234_5678_9ABC] {
        let mut rng = Rng(seed);
        for _ in 0..150 {
            let s = openai_stream(&mut rng);
            let stream = frame(
                &s.events,
                false,
                ["\n", "\r\n", "\r"][rng.below(3) as usize],
            );
            let cuts = rng.cuts(stream.len());
            let _case = Case(&stream);
            let out = from_openai(&stream, &cuts);

            assert_well_formed_anthropic(&out.anthropic);
            assert_eq!(anthropic_text(&out.anthropic), s.text);
            assert_eq!(out.anthropic_usage, s.usage);
            assert_eq!(out.pass_through_usage, s.usage);
            assert_eq!(out.responses_usage, s.usage);
            if let Some(usage) = s.usage {
                // What the Anthropic client is told meters to the same.
                assert_eq!(out.anthropic_metered, Some(usage));
                assert_eq!(out.completion_usage, Some(usage));
                let told = &out.responses.last().unwrap().1["response"]["usage"];
                assert_eq!(told["input_tokens"], usage.input);
                assert_eq!(told["output_tokens"], usage.output);
                assert_eq!(told["total_tokens"], usage.input + usage.output);
            }
            assert_well_formed_completion(&out.completion);
            assert_eq!(completion_text(&out.completion), s.text);
            assert_well_formed_responses(&out.responses);
        }
    }
}

/// Plausible Anthropic streams, however read: the OpenAI chunks and legacy
/// completion events made of them are well-formed, keep the text, and carry
/// the upstream's usage exactly (an OpenAI client has no cache-write field:
/// those tokens are in its prompt count).
#[test]
fn plausible_anthropic_streams_keep_text_and_usage_exact() {
    for seed in [12, 0xA5A5, 0xFEED_FACE] {
        let mut rng = Rng(seed);
        for _ in 0..300 {
            let s = anthropic_stream(&mut rng);
            let stream = frame(&s.events, true, ["\n", "\r\n", "\r"][rng.below(3) as usize]);
            let cuts = rng.cuts(stream.len());
            let _case = Case(&stream);
            let include_usage = rng.below(2) == 0;
            let out = from_anthropic(&stream, &cuts, include_usage);

            assert_well_formed_openai(&out.openai);
            assert_eq!(openai_text(&out.openai), s.text);
            assert_eq!(out.openai_usage, s.usage);
            assert_eq!(out.completion_usage, s.usage);
            assert_eq!(out.pass_through_usage, s.usage);
            let told = told_openai_usage(&out.openai);
            if include_usage {
                let usage = s.usage.unwrap();
                assert_eq!(
                    told,
                    Some(TokenUsage {
                        cache_write: 0,
                        ..usage
                    })
                );
            } else {
                assert_eq!(told, None);
            }
            assert_well_formed_completion(&out.completion);
            assert_eq!(completion_text(&out.completion), s.text);
        }
    }
}

/// Faulty OpenAI streams (events lost, repeated, swapped, truncated,
/// poisoned, stray; random JSON; the connection cut): no translator or
/// meter panics, every output is well-formed, usage never wraps, and what
/// the client is told matches what is metered.
#[test]
fn hostile_openai_streams_never_break_output_or_usage() {
    for seed in [21, 0xBAD, 0x0DDB_A110] {
        let mut rng = Rng(seed);
        for _ in 0..300 {
            let mut events = openai_stream(&mut rng).events;
            mutate(&mut rng, &mut events, false);
            let largest = largest_count(&events);
            let (stream, cuts) = bytes_and_cuts(&mut rng, &events, false);
            let _case = Case(&stream);
            let out = from_openai(&stream, &cuts);

            assert_well_formed_anthropic(&out.anthropic);
            assert_well_formed_completion(&out.completion);
            assert_well_formed_responses(&out.responses);
            for (what, usage) in [
                ("messages_via_chat", out.anthropic_usage),
                ("re-metered Anthropic stream", out.anthropic_metered),
                ("legacy completion", out.completion_usage),
                ("responses_via_chat", out.responses_usage),
                ("chunk_usage", out.pass_through_usage),
            ] {
                assert_sane(usage, largest, what);
            }
            // A stream that ends in message_stop told its usage in
            // message_delta; one that ends in an error event told none.
            let stopped = out.anthropic.last().unwrap().0 == "message_stop";
            if let (true, Some(usage)) = (stopped, out.anthropic_usage) {
                assert_eq!(out.anthropic_metered, Some(usage));
                assert_eq!(out.completion_usage, Some(usage));
            }
            let told = &out.responses.last().unwrap().1["response"]["usage"];
            if let Some(usage) = out.responses_usage {
                assert_eq!(told["input_tokens"], usage.input);
                assert_eq!(told["output_tokens"], usage.output);
                assert_eq!(
                    told["total_tokens"],
                    usage.input.saturating_add(usage.output)
                );
            }
        }
    }
}

/// Faulty Anthropic streams (missing message_start, duplicated stop events,
/// poisoned usage, …): no translator or meter panics, every output is
/// well-formed, usage never wraps, and the usage chunk an OpenAI client is
/// told matches what is metered.
#[test]
fn hostile_anthropic_streams_never_break_output_or_usage() {
    for seed in [22, 0xC0DE, 0x5151_5151] {
        let mut rng = Rng(seed);
        for _ in 0..700 {
            let mut events = anthropic_stream(&mut rng).events;
            mutate(&mut rng, &mut events, true);
            let largest = largest_count(&events);
            let (stream, cuts) = bytes_and_cuts(&mut rng, &events, true);
            let _case = Case(&stream);
            let include_usage = rng.below(2) == 0;
            let out = from_anthropic(&stream, &cuts, include_usage);

            assert_well_formed_openai(&out.openai);
            assert_well_formed_completion(&out.completion);
            for (what, usage) in [
                ("chat_via_messages", out.openai_usage),
                ("legacy completion", out.completion_usage),
                ("StreamMeter", out.pass_through_usage),
            ] {
                assert_sane(usage, largest, what);
            }
            // Both translators stop reading at message_stop or error, so they
            // meter the same events; the pass-through meter reads on (a usage
            // delta after message_stop, say), so it may differ here.
            assert_eq!(out.completion_usage, out.openai_usage);
            for chunk in out
                .openai
                .iter()
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            {
                if chunk["usage"].is_object() {
                    assert_sane_openai_usage(&chunk["usage"], largest);
                }
            }
            // A stream that ends in [DONE] told its usage in the usage chunk;
            // one that ends in an error chunk told none.
            let done = out.openai.last().unwrap() == "[DONE]";
            if let (true, true, Some(usage)) = (include_usage, done, out.openai_usage) {
                let told = told_openai_usage(&out.openai).expect("a usage chunk");
                assert_eq!((told.input, told.output), (usage.input, usage.output));
            }
        }
    }
}
