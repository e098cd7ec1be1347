//! Stream translation, both directions: recorded vendor streams (fixtures)
//! and generated streams, checked for well-formed output. No panics, ever.

mod common;

use common::streams::{
    assert_well_formed_anthropic, assert_well_formed_openai, concat, decode, feed,
};
use common::{fixture, Rng};
use protocol::translate::{chat_via_messages, messages_via_chat};
use serde_json::{json, Value};

/// Feeds `stream` (OpenAI SSE) to the translator in pieces cut at `cuts`.
fn openai_to_anthropic(
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<(String, Value)>, messages_via_chat::StreamTranslator) {
    let mut t = messages_via_chat::StreamTranslator::new("claude-public");
    let mut out = Vec::new();
    feed(stream, cuts, |data| t.push(data, &mut out));
    t.finish(&mut out);
    let events = decode(&concat(&out))
        .into_iter()
        .map(|(name, data)| {
            (
                name.unwrap_or_default(),
                serde_json::from_str(&data).expect("JSON data"),
            )
        })
        .collect();
    (events, t)
}

fn anthropic_to_openai(
    stream: &[u8],
    cuts: &[usize],
    include_usage: bool,
) -> (Vec<String>, chat_via_messages::StreamTranslator) {
    let mut t =
        chat_via_messages::StreamTranslator::new("gpt-public", 1_700_000_000, include_usage);
    let mut out = Vec::new();
    feed(stream, cuts, |data| t.push(data, &mut out));
    t.finish(&mut out);
    let data = decode(&concat(&out)).into_iter().map(|(_, d)| d).collect();
    (data, t)
}

fn text_of_anthropic(events: &[(String, Value)], delta_type: &str, field: &str) -> String {
    events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == delta_type)
        .map(|(_, d)| d["delta"][field].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn openai_text_fixture_becomes_anthropic_events() {
    let (events, t) = openai_to_anthropic(fixture("openai_text.sse").as_bytes(), &[]);
    assert_well_formed_anthropic(&events);
    assert_eq!(
        text_of_anthropic(&events, "text_delta", "text"),
        "Hello! How can I help?"
    );
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 19, "output_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
    assert_eq!(events[0].1["message"]["model"], "claude-public");
    assert_eq!(t.usage().unwrap().output, 9);
}

#[test]
fn openai_tool_fixture_becomes_tool_use_blocks() {
    let (events, t) = openai_to_anthropic(fixture("openai_tools.sse").as_bytes(), &[]);
    assert_well_formed_anthropic(&events);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| &d["content_block"])
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0]["name"], "get_weather");
    assert_eq!(starts[0]["id"], "call_A1");
    assert_eq!(starts[1]["name"], "get_time");
    assert_eq!(
        text_of_anthropic(&events, "input_json_delta", "partial_json"),
        "{\"city\": \"Paris\"}{\"tz\": \"CET\"}"
    );
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    // 85 prompt tokens of which 64 cached: 21 uncached input, 64 cache reads.
    assert_eq!(delta["usage"]["input_tokens"], 21);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 64);
    let usage = t.usage().unwrap();
    assert_eq!(
        (usage.input, usage.cached_input, usage.output),
        (85, 64, 40)
    );
}

#[test]
fn openai_reasoning_becomes_a_thinking_block() {
    let (events, _) = openai_to_anthropic(fixture("openai_reasoning.sse").as_bytes(), &[]);
    assert_well_formed_anthropic(&events);
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    assert_eq!(
        text_of_anthropic(&events, "thinking_delta", "thinking"),
        "The user greets me. Reply kindly."
    );
    assert_eq!(
        text_of_anthropic(&events, "text_delta", "text"),
        "Hi there!"
    );
    assert_eq!(
        events[events.len() - 2].1["delta"]["stop_reason"],
        "max_tokens"
    );
}

#[test]
fn openai_error_mid_stream_ends_with_an_anthropic_error() {
    let (events, _) = openai_to_anthropic(fixture("openai_error.sse").as_bytes(), &[]);
    assert_well_formed_anthropic(&events);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert!(data["error"]["message"]
        .as_str()
        .unwrap()
        .contains("server had an error"));
}

fn openai_text(data: &[String], pick: impl Fn(&Value) -> Option<String>) -> String {
    data.iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"].get(0).and_then(&pick))
        .collect()
}

#[test]
fn anthropic_text_fixture_becomes_openai_chunks() {
    let (data, t) = anthropic_to_openai(fixture("anthropic_text.sse").as_bytes(), &[], true);
    assert_well_formed_openai(&data);
    assert_eq!(
        openai_text(&data, |c| c["delta"]["content"].as_str().map(String::from)),
        "Hello! How can I help?"
    );
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 25);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 12);
    assert_eq!(t.usage().unwrap().output, 12);
    // Without include_usage: no usage chunk, no usage fields.
    let (data, _) = anthropic_to_openai(fixture("anthropic_text.sse").as_bytes(), &[], false);
    assert!(data.iter().all(|d| !d.contains("usage")));
}

#[test]
fn anthropic_tool_fixture_becomes_tool_call_deltas() {
    let (data, t) = anthropic_to_openai(fixture("anthropic_tools.sse").as_bytes(), &[], true);
    assert_well_formed_openai(&data);
    let args = openai_text(&data, |c| {
        c["delta"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .map(String::from)
    });
    assert_eq!(args, "{\"location\": \"San Francisco, CA\"}");
    assert!(data
        .iter()
        .any(|d| d.contains("\"finish_reason\":\"tool_calls\"")));
    let usage = t.usage().unwrap();
    // Prompt = 472 uncached + 100 cache writes + 2048 cache reads.
    assert_eq!(
        (
            usage.input,
            usage.cached_input,
            usage.cache_write,
            usage.output
        ),
        (2620, 2048, 100, 89)
    );
}

#[test]
fn anthropic_thinking_becomes_reasoning_content() {
    let (data, _) = anthropic_to_openai(fixture("anthropic_thinking.sse").as_bytes(), &[], false);
    assert_well_formed_openai(&data);
    let reasoning = openai_text(&data, |c| {
        c["delta"]["reasoning_content"].as_str().map(String::from)
    });
    assert_eq!(reasoning, "Let me solve this step by step.");
    assert!(data
        .iter()
        .any(|d| d.contains("\"finish_reason\":\"length\"")));
}

#[test]
fn anthropic_error_mid_stream_becomes_an_openai_error_chunk() {
    let (data, _) = anthropic_to_openai(fixture("anthropic_error.sse").as_bytes(), &[], true);
    assert_well_formed_openai(&data);
    assert!(data.last().unwrap().contains("overloaded_error"));
}

#[test]
fn huge_anthropic_usage_saturates_in_the_openai_usage_chunk() {
    // input_tokens u64::MAX plus cache reads and output tokens overflowed
    // both the prompt count and total_tokens of the usage chunk.
    let stream = format!(
        "event: message_start\ndata: {}\n\nevent: message_delta\ndata: {}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
        json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 5}}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
    );
    let (data, t) = anthropic_to_openai(stream.as_bytes(), &[], true);
    assert_well_formed_openai(&data);
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": u64::MAX, "completion_tokens": 7, "total_tokens": u64::MAX,
               "prompt_tokens_details": {"cached_tokens": 5}})
    );
    assert_eq!(t.usage().unwrap().input, u64::MAX);
}

#[test]
fn a_repeated_message_delta_gives_one_finish_reason() {
    // An upstream (or a retrying proxy) repeating message_delta made two
    // chunks with a finish_reason; the later usage still counts.
    let delta = |stop: &str, output: u64| {
        format!(
            "event: message_delta\ndata: {}\n\n",
            json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": output}})
        )
    };
    let stream = format!(
        "event: message_start\ndata: {}\n\n{}{}",
        json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 4}}}),
        delta("max_tokens", 5),
        delta("end_turn", 9),
    );
    let (data, t) = anthropic_to_openai(stream.as_bytes(), &[], true);
    assert_well_formed_openai(&data);
    let finishes: Vec<&String> = data
        .iter()
        .filter(|d| d.contains("\"finish_reason\":\""))
        .collect();
    assert_eq!(finishes.len(), 1, "{data:?}");
    assert!(finishes[0].contains("\"finish_reason\":\"length\""));
    assert_eq!(t.usage().unwrap().output, 9);
}

#[test]
fn a_null_error_field_is_not_an_error() {
    // A chunk carrying `"error": null` beside its content used to end the
    // Anthropic stream with an error event, losing the rest of the answer
    // and its usage (the Responses emulation already ignored it).
    let stream = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"error\":null}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1},\"error\":null}\n\n",
        "data: [DONE]\n\n",
    );
    let (events, t) = openai_to_anthropic(stream.as_bytes(), &[]);
    assert_well_formed_anthropic(&events);
    assert_eq!(events.last().unwrap().0, "message_stop");
    assert_eq!(text_of_anthropic(&events, "text_delta", "text"), "Hi");
    assert_eq!(t.usage().unwrap().input, 3);
}

/// A plausible OpenAI stream: any mix of content, reasoning and tool calls,
/// a finish, maybe usage, maybe [DONE] (a cut-off stream has none).
fn random_openai_stream(rng: &mut Rng) -> String {
    let mut s = String::new();
    let mut tools = 0;
    for _ in 0..rng.below(12) {
        let delta = match rng.below(5) {
            0 => json!({"content": format!("t{}", rng.below(100))}),
            1 => json!({"reasoning_content": "hmm"}),
            2 => {
                tools += 1;
                json!({"tool_calls": [{"index": tools - 1, "id": format!("call_{tools}"), "type": "function", "function": {"name": "f", "arguments": ""}}]})
            }
            3 if tools > 0 => {
                json!({"tool_calls": [{"index": tools - 1, "function": {"arguments": "{\"a\":1}"}}]})
            }
            _ => json!({}),
        };
        s += &format!(
            "data: {}\n\n",
            json!({"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        );
    }
    if rng.below(4) > 0 {
        let finish = ["stop", "length", "tool_calls"][rng.below(3) as usize];
        s += &format!(
            "data: {}\n\n",
            json!({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        );
    }
    if rng.below(2) == 0 {
        s += "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n";
    }
    if rng.below(5) == 0 {
        s += "data: {\"error\":{\"message\":\"boom\"}}\n\n";
    }
    if rng.below(4) > 0 {
        s += "data: [DONE]\n\n";
    }
    s
}

/// A well-formed Anthropic stream with random blocks.
fn random_anthropic_stream(rng: &mut Rng) -> String {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut s = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_r", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    );
    for index in 0..rng.below(5) {
        let (block, delta) = match rng.below(3) {
            0 => (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": "x"}),
            ),
            1 => (
                json!({"type": "thinking", "thinking": ""}),
                json!({"type": "thinking_delta", "thinking": "y"}),
            ),
            _ => (
                json!({"type": "tool_use", "id": format!("toolu_{index}"), "name": "f", "input": {}}),
                json!({"type": "input_json_delta", "partial_json": "{}"}),
            ),
        };
        s += &ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        for _ in 0..rng.below(4) {
            s += &ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        if rng.below(6) == 0 {
            s += &ev("ping", json!({"type": "ping"}));
        }
        s += &ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }
    if rng.below(6) == 0 {
        return s
            + &ev(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            );
    }
    s += &ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
    );
    if rng.below(5) > 0 {
        s += &ev("message_stop", json!({"type": "message_stop"}));
    }
    s
}

#[test]
fn generated_openai_streams_always_translate_to_well_formed_anthropic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2_000 {
        let stream = random_openai_stream(&mut rng);
        let cuts = rng.cuts(stream.len());
        let (events, _) = openai_to_anthropic(stream.as_bytes(), &cuts);
        assert_well_formed_anthropic(&events);
    }
}

#[test]
fn generated_anthropic_streams_always_translate_to_well_formed_openai() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..2_000 {
        let stream = random_anthropic_stream(&mut rng);
        let cuts = rng.cuts(stream.len());
        let include_usage = rng.below(2) == 0;
        let (data, _) = anthropic_to_openai(stream.as_bytes(), &cuts, include_usage);
        assert_well_formed_openai(&data);
    }
}

#[test]
fn malformed_input_never_panics() {
    let mut rng = Rng(42);
    let alphabet = b"data: {}[]\"\n:event,0123abcusagechoicesdelta_";
    for _ in 0..5_000 {
        let len = rng.below(300) as usize;
        let garbage: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let (events, _) = openai_to_anthropic(&garbage, &[]);
        assert_well_formed_anthropic(&events);
        let _ = anthropic_to_openai(&garbage, &[], true);
    }
    // Truncations of real streams.
    for name in ["openai_tools.sse", "anthropic_tools.sse"] {
        let f = fixture(name);
        for end in (0..f.len()).step_by(7) {
            let (events, _) = openai_to_anthropic(&f.as_bytes()[..end], &[]);
            assert_well_formed_anthropic(&events);
            let (data, _) = anthropic_to_openai(&f.as_bytes()[..end], &[], true);
            assert!(data
                .last()
                .map(|d| d == "[DONE]" || d.contains("error"))
                .unwrap_or(false));
        }
    }
}
