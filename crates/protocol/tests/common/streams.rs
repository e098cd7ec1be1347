//! Driving stream translators the way the relay does, and the grammar every
//! translated stream must follow. Shared by the stream test files; each uses
//! only some of it (see the `allow(dead_code)` in `mod.rs`).

use bytes::Bytes;
use protocol::sse::{SseDecoder, SseEvent};
use serde_json::Value;

/// Pushes `stream` into `dec` read by read (cut at `cuts`), taking the
/// events after every read as the relay does; `finish` is left to the caller.
pub fn read_cut(
    dec: &mut SseDecoder,
    stream: &[u8],
    cuts: &[usize],
    mut on_event: impl FnMut(SseEvent),
) {
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(last, stream.len());
        dec.push(&stream[last..cut]);
        last = cut;
        while let Some(e) = dec.next_event() {
            on_event(e);
        }
    }
}

/// Feeds an upstream SSE byte stream, read by read (cut at `cuts`), to
/// `push` one event's data at a time, as the relay does: events are taken
/// after every read, and `finish` gives the unterminated tail at EOF.
pub fn feed(stream: &[u8], cuts: &[usize], mut push: impl FnMut(&str)) {
    let mut dec = SseDecoder::new();
    read_cut(&mut dec, stream, cuts, |e| push(&e.data));
    if let Some(e) = dec.finish() {
        push(&e.data);
    }
}

/// Splits a byte stream into (event name, data) pairs.
pub fn decode(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let mut d = SseDecoder::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(e) = d.next_event() {
        out.push((e.event, e.data));
    }
    out.extend(d.finish().map(|e| (e.event, e.data)));
    out
}

pub fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks.iter().flat_map(|b| b.to_vec()).collect()
}

/// Checks Anthropic's stream grammar: message_start; blocks started, delta'd
/// and stopped in index order, one at a time; message_delta; message_stop —
/// or an `error` event as the very last event.
pub fn assert_well_formed_anthropic(events: &[(String, Value)]) {
    assert!(!events.is_empty());
    // An upstream that fails before its first chunk yields a lone error event.
    assert!(
        events[0].0 == "message_start" || (events.len() == 1 && events[0].0 == "error"),
        "{events:?}"
    );
    let mut open: Option<(u64, String)> = None;
    let mut next_index = 0;
    let mut saw_delta = false;
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "event name matches its type");
        let last = i == events.len() - 1;
        match name.as_str() {
            "message_start" => assert_eq!(i, 0),
            "content_block_start" => {
                assert!(
                    open.is_none(),
                    "a block starts while another is open: {events:?}"
                );
                assert_eq!(data["index"], next_index);
                let kind = data["content_block"]["type"].as_str().unwrap().to_string();
                open = Some((next_index, kind));
            }
            "content_block_delta" => {
                let (index, kind) = open.clone().expect("delta outside a block");
                assert_eq!(data["index"], index);
                let delta = data["delta"]["type"].as_str().unwrap();
                let allowed: &[&str] = match kind.as_str() {
                    "text" => &["text_delta"],
                    "tool_use" => &["input_json_delta"],
                    "thinking" => &["thinking_delta", "signature_delta"],
                    other => panic!("unexpected block type {other}"),
                };
                assert!(allowed.contains(&delta), "{delta} in a {kind} block");
            }
            "content_block_stop" => {
                let (index, _) = open.take().expect("stop without a block");
                assert_eq!(data["index"], index);
                next_index += 1;
            }
            "message_delta" => {
                assert!(open.is_none());
                assert!(!saw_delta, "one message_delta");
                saw_delta = true;
                assert!(data["delta"]["stop_reason"].is_string());
                assert!(data["usage"]["output_tokens"].is_u64());
            }
            "message_stop" => {
                assert!(
                    last && saw_delta,
                    "message_stop ends the stream after message_delta"
                );
            }
            "error" => assert!(last, "error ends the stream"),
            "ping" => {}
            other => panic!("unknown event {other}"),
        }
    }
    let end = events.last().unwrap().0.as_str();
    assert!(
        end == "message_stop" || end == "error",
        "exactly one final event: {end}"
    );
}

/// Checks an OpenAI chunk stream: JSON chunks then exactly one `[DONE]` (or
/// an error chunk last); tool calls introduced in index order with id and name.
pub fn assert_well_formed_openai(data: &[String]) {
    assert!(!data.is_empty());
    let mut next_tool = 0;
    let mut finishes = 0;
    for (i, d) in data.iter().enumerate() {
        let last = i == data.len() - 1;
        if d == "[DONE]" {
            assert!(last, "[DONE] is last");
            continue;
        }
        let chunk: Value = serde_json::from_str(d).expect("chunk is JSON");
        if chunk.get("error").is_some() {
            assert!(last, "an error chunk ends the stream");
            continue;
        }
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-public");
        let Some(choice) = chunk["choices"].get(0) else {
            assert!(
                chunk["usage"]["prompt_tokens"].is_u64(),
                "a choiceless chunk carries usage"
            );
            continue;
        };
        if choice["finish_reason"].is_string() {
            finishes += 1;
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let index = call["index"].as_u64().unwrap();
            if call.get("id").is_some() {
                assert_eq!(index, next_tool, "tool calls are introduced in order");
                assert!(call["function"]["name"].is_string());
                next_tool += 1;
            } else {
                assert!(index < next_tool, "arguments for a known tool call");
            }
        }
    }
    assert!(finishes <= 1, "one finish_reason: {data:?}");
    let end = data.last().unwrap();
    assert!(end == "[DONE]" || end.contains("\"error\""));
}
