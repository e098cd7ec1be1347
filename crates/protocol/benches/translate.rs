//! Translation cost per stream event, both directions, and the pass-through
//! path for comparison. Run with `cargo bench -p protocol --bench translate`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use protocol::openai::chunk_usage;
use protocol::rewrite::ByteRewriter;
use protocol::sse::SseDecoder;
use protocol::translate::{chat_via_messages, messages_via_chat, responses_via_chat};
use serde_json::{json, Map};

/// A realistic text stream: `n` content chunks, a finish chunk, usage, [DONE].
fn openai_stream(n: usize) -> Vec<String> {
    let mut events: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"chatcmpl-AbC1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini","system_fingerprint":"fp_0ba0d124f1","choices":[{{"index":0,"delta":{{"content":" token{i}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#))
        .collect();
    events.push(r#"{"id":"chatcmpl-AbC1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#.into());
    events.push(r#"{"id":"chatcmpl-AbC1","object":"chat.completion.chunk","created":1732000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":64,"total_tokens":83}}"#.into());
    events.push("[DONE]".into());
    events
}

fn anthropic_stream(n: usize) -> Vec<String> {
    let mut events = vec![
        r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#.to_string(),
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.to_string(),
    ];
    events.extend((0..n).map(|i| format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":" token{i}"}}}}"#)));
    events.push(r#"{"type":"content_block_stop","index":0}"#.into());
    events.push(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":64}}"#.into());
    events.push(r#"{"type":"message_stop"}"#.into());
    events
}

fn bench(c: &mut Criterion) {
    const N: usize = 64;
    let openai = openai_stream(N);
    let anthropic = anthropic_stream(N);
    let mut group = c.benchmark_group("per_event");

    group.throughput(Throughput::Elements(openai.len() as u64));
    group.bench_function("openai_to_anthropic", |b| {
        b.iter(|| {
            let mut t = messages_via_chat::StreamTranslator::new("claude-public");
            let mut out = Vec::with_capacity(8);
            for e in &openai {
                t.push(black_box(e), &mut out);
                out.clear();
            }
            t.finish(&mut out);
            black_box(out.len())
        })
    });

    group.throughput(Throughput::Elements(anthropic.len() as u64));
    group.bench_function("anthropic_to_openai", |b| {
        b.iter(|| {
            let mut t = chat_via_messages::StreamTranslator::new("gpt-public", 1_700_000_000, true);
            let mut out = Vec::with_capacity(8);
            for e in &anthropic {
                t.push(black_box(e), &mut out);
                out.clear();
            }
            t.finish(&mut out);
            black_box(out.len())
        })
    });

    // Responses emulated over chat completions: each chunk becomes Responses
    // events, and the Response object is kept up to date for storage.
    let skeleton = responses_via_chat::response_skeleton(
        &Map::from_iter([("input".to_string(), json!("hi"))]),
        "resp_0123456789abcdef",
        "gpt-public",
        1_700_000_000,
    );
    group.throughput(Throughput::Elements(openai.len() as u64));
    group.bench_function("chat_to_responses", |b| {
        b.iter(|| {
            let mut t = responses_via_chat::StreamTranslator::new(skeleton.clone());
            let mut out = Vec::with_capacity(8);
            t.start(&mut out);
            for e in &openai {
                t.push(black_box(e), &mut out);
                out.clear();
            }
            t.finish(&mut out);
            black_box(out.len())
        })
    });

    // The pass-through path: decode SSE, meter usage, rewrite the model name.
    let raw: Vec<u8> = openai
        .iter()
        .flat_map(|e| format!("data: {e}\n\n").into_bytes())
        .collect();
    let rewriter = ByteRewriter::for_openai("gpt-4o-mini", "public-name", true);
    group.throughput(Throughput::Elements(openai.len() as u64));
    group.bench_function("openai_pass_through", |b| {
        b.iter(|| {
            let mut d = SseDecoder::new();
            d.push(black_box(&raw));
            let mut bytes = 0;
            while let Some(e) = d.next_event() {
                let _ = chunk_usage(&e.data);
                bytes += rewriter.apply(&e.raw).len();
            }
            black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
