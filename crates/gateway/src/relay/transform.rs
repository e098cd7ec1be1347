//! What happens to an upstream response on its way to the client: passed
//! through (with byte-level rewrites) or translated into the client's
//! protocol — for whole bodies and, event by event, for streams. Each
//! transform also meters the upstream's usage as it passes.

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use protocol::anthropic::StreamMeter;
use protocol::openai::chunk_usage;
use protocol::rewrite::ByteRewriter;
use protocol::sse::{SseDecoder, SseEvent};
use protocol::translate::{chat_via_messages, complete, messages_via_chat};
use protocol::TokenUsage;
use serde_json::Value;

/// How a complete (non-streaming) upstream body reaches the client.
pub enum BodyTransform {
    /// OpenAI upstream, OpenAI client.
    OpenAi(ByteRewriter),
    /// Anthropic upstream, Anthropic client.
    Anthropic(ByteRewriter),
    /// OpenAI upstream, Anthropic Messages client.
    MessagesViaChat { public_model: String },
    /// Anthropic upstream, OpenAI chat client.
    ChatViaMessages { public_model: String },
    /// A legacy Anthropic completion, served by `inner` as a Messages body.
    Complete {
        inner: Box<BodyTransform>,
        public_model: String,
    },
    /// An OpenAI body passed through whose usage is counted in the model's
    /// unit (images, calls), not reported in tokens.
    Counted {
        rewriter: ByteRewriter,
        count: Count,
    },
    /// An OpenAI images answer as OhMyGPT's Flux answers: `{statusCode,
    /// message, data: {outputs: data}}`, counted likewise.
    Outputs { count: Count },
}

/// How a [`BodyTransform::Counted`] answer is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Known before the call (one call).
    Fixed(u64),
    /// The entries of its `data` array (images made), at most this many.
    DataItems { at_most: u64 },
    /// Tokens, as an images answer reports them (`usage.input_tokens`,
    /// `output_tokens`: gpt-image-1), for a model priced in tokens; an
    /// answer that reports none is charged `worst_output` output tokens
    /// (what was held), never nothing.
    Tokens { worst_output: u64 },
    /// The audio's seconds as the upstream reports them (`usage.seconds`,
    /// or verbose_json's `duration`), rounded up; `fallback` when it does
    /// not say (text, srt and vtt answers).
    Seconds { fallback: u64 },
}

impl Count {
    /// The usage `body` is charged for: tokens as reported, or the count
    /// in the model's unit (as `input`).
    pub fn usage(self, body: &[u8]) -> TokenUsage {
        match self {
            Count::Tokens { worst_output } => image_token_usage(body).unwrap_or(TokenUsage {
                output: worst_output,
                ..TokenUsage::default()
            }),
            other => TokenUsage {
                input: other.of(body),
                ..TokenUsage::default()
            },
        }
    }

    /// The quantity `body` (an upstream answer) is charged for.
    pub fn of(self, body: &[u8]) -> u64 {
        match self {
            Count::Fixed(n) => n,
            Count::DataItems { at_most } => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("data").and_then(Value::as_array).map(Vec::len))
                .map_or(0, |n| (n as u64).min(at_most)),
            Count::Tokens { .. } => 0,
            Count::Seconds { fallback } => serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| {
                    let usage = v.get("usage").filter(|u| u["type"] == "duration");
                    usage
                        .and_then(|u| u.get("seconds"))
                        .or_else(|| v.get("duration"))
                        .and_then(Value::as_f64)
                })
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map_or(fallback, |s| s.ceil() as u64),
        }
    }
}

impl BodyTransform {
    /// The client's body, and — for a transform that counts in the model's
    /// unit (images, calls, seconds) — the usage to charge; `None` when a
    /// body that must be translated is not the JSON it should be. Token
    /// usage the upstream reports is read by the caller's
    /// [`UsageWatch`](crate::billing::estimate::UsageWatch), once: it is
    /// not parsed here again.
    pub fn apply(&self, body: Bytes) -> Option<(Bytes, Option<TokenUsage>)> {
        match self {
            BodyTransform::Counted { rewriter, count } => {
                let usage = count.usage(&body);
                Some((rewrite(rewriter, body), Some(usage)))
            }
            BodyTransform::Outputs { count } => {
                let usage = count.usage(&body);
                let value: Value = serde_json::from_slice(&body).ok()?;
                let answer = serde_json::json!({
                    "statusCode": 200,
                    "message": "success",
                    "data": {"outputs": value.get("data").cloned().unwrap_or_default()},
                });
                Some((Bytes::from(answer.to_string()), Some(usage)))
            }
            BodyTransform::OpenAi(rewriter) | BodyTransform::Anthropic(rewriter) => {
                Some((rewrite(rewriter, body), None))
            }
            BodyTransform::MessagesViaChat { public_model } => {
                let value: Value = serde_json::from_slice(&body).ok()?;
                let message = messages_via_chat::response(&value, public_model);
                Some((Bytes::from(message.to_string()), None))
            }
            BodyTransform::ChatViaMessages { public_model } => {
                let value: Value = serde_json::from_slice(&body).ok()?;
                let completion = chat_via_messages::response(&value, public_model, unix_now());
                Some((Bytes::from(completion.to_string()), None))
            }
            BodyTransform::Complete {
                inner,
                public_model,
            } => {
                let (message, usage) = inner.apply(body)?;
                let value: Value = serde_json::from_slice(&message).ok()?;
                let completion = complete::response(&value, public_model);
                Some((Bytes::from(completion.to_string()), usage))
            }
        }
    }
}

fn rewrite(rewriter: &ByteRewriter, body: Bytes) -> Bytes {
    match rewriter.apply(&body) {
        std::borrow::Cow::Borrowed(_) => body,
        std::borrow::Cow::Owned(edited) => Bytes::from(edited),
    }
}

pub fn unix_now() -> i64 {
    store::now_ms() / 1000
}

/// Transforms an upstream SSE stream one event at a time.
pub trait StreamTransform: Send + 'static {
    /// One upstream event; bytes for the client are appended to `out`.
    fn event(&mut self, event: &SseEvent, out: &mut BytesMut);
    /// The upstream stream ended cleanly.
    fn end(&mut self, out: &mut BytesMut);
    /// The upstream stream broke or stalled; `message` says how.
    fn fail(&mut self, message: &str, out: &mut BytesMut);
    /// The upstream's usage, once it has passed.
    fn usage(&self) -> Option<TokenUsage>;
    /// Work to finish after a clean end and before the client gets the last
    /// bytes (e.g. storing what the stream produced, so that the client can
    /// read it back as soon as its stream is over).
    fn finisher(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        None
    }
}

/// A transform chosen at run time (by a provider's adapter).
impl StreamTransform for Box<dyn StreamTransform> {
    fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        (**self).event(event, out)
    }
    fn end(&mut self, out: &mut BytesMut) {
        (**self).end(out)
    }
    fn fail(&mut self, message: &str, out: &mut BytesMut) {
        (**self).fail(message, out)
    }
    fn usage(&self) -> Option<TokenUsage> {
        (**self).usage()
    }
    fn finisher(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        (**self).finisher()
    }
}

fn extend(out: &mut BytesMut, chunks: Vec<Bytes>) {
    for c in chunks {
        out.extend_from_slice(&c);
    }
}

/// OpenAI upstream, OpenAI client: events pass through, except the usage
/// chunk the gateway asked for when the client did not.
pub struct OpenAiPassThrough {
    pub rewriter: ByteRewriter,
    pub client_wants_usage: bool,
    pub usage: Option<TokenUsage>,
    /// The upstream's `[DONE]` passed: the stream is whole.
    pub done: bool,
}

impl OpenAiPassThrough {
    pub fn new(rewriter: ByteRewriter, client_wants_usage: bool) -> Self {
        OpenAiPassThrough {
            rewriter,
            client_wants_usage,
            usage: None,
            done: false,
        }
    }
}

/// An error chunk, which the OpenAI SDKs raise as an `APIError`: a stream
/// cut short must not look like a complete answer.
fn openai_stream_error(message: &str, out: &mut BytesMut) {
    let chunk = serde_json::json!({"error": {
        "message": message, "type": "api_error", "param": null, "code": "upstream_stream_interrupted"
    }});
    out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
}

impl StreamTransform for OpenAiPassThrough {
    fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        if event.data.starts_with("[DONE]") {
            self.done = true;
        } else if let Some(usage) = chunk_usage(&event.data) {
            self.usage = Some(usage.usage);
            if usage.usage_only && !self.client_wants_usage {
                return;
            }
        }
        out.extend_from_slice(&self.rewriter.apply(&event.raw));
    }
    fn end(&mut self, out: &mut BytesMut) {
        if !self.done {
            openai_stream_error("The upstream stream ended before it was complete.", out);
        }
    }
    fn fail(&mut self, message: &str, out: &mut BytesMut) {
        if !self.done {
            openai_stream_error(message, out);
        }
    }
    fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }
}

/// Anthropic upstream, Anthropic client: events pass through untouched but
/// for the model name.
pub struct AnthropicPassThrough {
    pub rewriter: ByteRewriter,
    pub meter: StreamMeter,
    /// `message_stop` passed: the stream is whole.
    pub stopped: bool,
}

impl AnthropicPassThrough {
    pub fn new(rewriter: ByteRewriter) -> Self {
        AnthropicPassThrough {
            rewriter,
            meter: StreamMeter::default(),
            stopped: false,
        }
    }
}

/// An `error` event, which the Anthropic SDKs raise.
fn anthropic_stream_error(message: &str, out: &mut BytesMut) {
    out.extend_from_slice(&protocol::anthropic::encode_event(
        "error",
        &protocol::anthropic::error_body("api_error", message),
    ));
}

impl StreamTransform for AnthropicPassThrough {
    fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        self.meter.observe(&event.data);
        if event.data.contains("\"message_stop\"") {
            self.stopped = true;
        }
        out.extend_from_slice(&self.rewriter.apply(&event.raw));
    }
    fn end(&mut self, out: &mut BytesMut) {
        if !self.stopped {
            anthropic_stream_error("The upstream stream ended before it was complete.", out);
        }
    }
    fn fail(&mut self, message: &str, out: &mut BytesMut) {
        if !self.stopped {
            anthropic_stream_error(message, out);
        }
    }
    fn usage(&self) -> Option<TokenUsage> {
        self.meter.usage()
    }
}

/// The translators of `protocol::translate` share one shape (`push` an
/// event's data, `finish`, `usage`); this adapts each to [`StreamTransform`].
/// `$fail` turns a broken upstream into the client protocol's error event.
macro_rules! translator_transform {
    ($translator:ty, $fail:expr) => {
        impl StreamTransform for $translator {
            fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
                let mut chunks = Vec::new();
                self.push(&event.data, &mut chunks);
                extend(out, chunks);
            }
            fn end(&mut self, out: &mut BytesMut) {
                let mut chunks = Vec::new();
                self.finish(&mut chunks);
                extend(out, chunks);
            }
            fn fail(&mut self, message: &str, out: &mut BytesMut) {
                let mut chunks = Vec::new();
                let fail: fn(&mut $translator, &str, &mut Vec<Bytes>) = $fail;
                fail(self, message, &mut chunks);
                extend(out, chunks);
            }
            fn usage(&self) -> Option<TokenUsage> {
                <$translator>::usage(self)
            }
        }
    };
}

/// An Anthropic `error` event's data, for translators that read Anthropic events.
fn anthropic_error(message: &str) -> String {
    serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
        .to_string()
}

translator_transform!(messages_via_chat::StreamTranslator, |t, message, chunks| {
    t.fail(&serde_json::json!({ "message": message }), chunks)
});
translator_transform!(chat_via_messages::StreamTranslator, |t, message, chunks| {
    t.push(&anthropic_error(message), chunks)
});
translator_transform!(complete::StreamTranslator, |t, message, chunks| {
    t.push(&anthropic_error(message), chunks)
});

/// Two transforms in a row: the first's output is decoded as SSE again and
/// fed to the second (a legacy completion served by an OpenAI upstream goes
/// OpenAI → Messages → completion).
pub struct Chain<A, B> {
    pub first: A,
    pub second: B,
    decoder: SseDecoder,
}

impl<A: StreamTransform, B: StreamTransform> Chain<A, B> {
    pub fn new(first: A, second: B) -> Self {
        Chain {
            first,
            second,
            decoder: SseDecoder::new(),
        }
    }

    fn relay(&mut self, middle: BytesMut, out: &mut BytesMut) {
        self.decoder.push(&middle);
        while let Some(event) = self.decoder.next_event() {
            self.second.event(&event, out);
        }
    }
}

impl<A: StreamTransform, B: StreamTransform> StreamTransform for Chain<A, B> {
    fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        let mut middle = BytesMut::new();
        self.first.event(event, &mut middle);
        self.relay(middle, out);
    }
    fn end(&mut self, out: &mut BytesMut) {
        let mut middle = BytesMut::new();
        self.first.end(&mut middle);
        self.relay(middle, out);
        self.second.end(out);
    }
    fn fail(&mut self, message: &str, out: &mut BytesMut) {
        let mut middle = BytesMut::new();
        self.first.fail(message, &mut middle);
        self.relay(middle, out);
        self.second.fail(message, out);
    }
    fn usage(&self) -> Option<TokenUsage> {
        self.first.usage().or_else(|| self.second.usage())
    }
}

/// An images answer's token usage (gpt-image-1: `input_tokens`,
/// `output_tokens`, cached input in `input_tokens_details.cached_tokens`).
fn image_token_usage(body: &[u8]) -> Option<TokenUsage> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let usage = value.get("usage")?;
    let input = usage.get("input_tokens")?.as_u64()?;
    let output = usage.get("output_tokens")?.as_u64()?;
    let cached = usage
        .pointer("/input_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(TokenUsage {
        input,
        output,
        cached_input: cached.min(input),
        cache_write: 0,
    })
}
