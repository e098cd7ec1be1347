//! How an upstream stream becomes the Responses event stream: emulated over
//! chat completions, over Anthropic messages (via chat chunks), or passed
//! through from an upstream that speaks Responses itself. Each keeps the
//! Response object it describes, for storage and non-streaming clients.

use bytes::Bytes;
use protocol::sse::{SseDecoder, SseEvent};
use protocol::translate::{chat_via_messages, responses_via_chat};
use protocol::TokenUsage;
use serde_json::{json, Value};

/// One Responses run's event source. Every `Bytes` pushed to `out` is one
/// whole SSE frame, so a frame's index in the run is its `sequence_number`.
pub trait ResponseEvents: Send + 'static {
    /// The events that open the stream, before the upstream's first byte.
    fn start(&mut self, out: &mut Vec<Bytes>);
    fn push(&mut self, event: &SseEvent, out: &mut Vec<Bytes>);
    /// The upstream ended cleanly.
    fn finish(&mut self, out: &mut Vec<Bytes>);
    /// The upstream broke.
    fn fail(&mut self, message: &str, out: &mut Vec<Bytes>);
    /// The client cancelled a background run.
    fn cancel(&mut self, out: &mut Vec<Bytes>);
    /// The upstream's own usage, once it has passed.
    fn usage(&self) -> Option<TokenUsage>;
    /// The Response object as it stands.
    fn response(&self) -> &Value;
    /// What the model has produced so far, to estimate a cancelled run's cost.
    fn produced_text(&self) -> String;
}

/// Emulation over an OpenAI chat-completions upstream.
pub struct ViaChat(pub responses_via_chat::StreamTranslator);

impl ResponseEvents for ViaChat {
    fn start(&mut self, out: &mut Vec<Bytes>) {
        self.0.start(out)
    }
    fn push(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) {
        self.0.push(&event.data, out)
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.0.finish(out)
    }
    fn fail(&mut self, message: &str, out: &mut Vec<Bytes>) {
        self.0.fail(message, out)
    }
    fn cancel(&mut self, out: &mut Vec<Bytes>) {
        self.0.cancel(out)
    }
    fn usage(&self) -> Option<TokenUsage> {
        self.0.usage()
    }
    fn response(&self) -> &Value {
        self.0.response()
    }
    fn produced_text(&self) -> String {
        self.0.produced_text()
    }
}

/// Emulation over an Anthropic upstream: its events become chat chunks,
/// which the chat emulation turns into Responses events. The usage comes
/// from the Anthropic events, which alone carry prompt-cache writes.
pub struct ViaMessages {
    messages: chat_via_messages::StreamTranslator,
    decoder: SseDecoder,
    responses: responses_via_chat::StreamTranslator,
}

impl ViaMessages {
    pub fn new(public_model: &str, responses: responses_via_chat::StreamTranslator) -> Self {
        ViaMessages {
            messages: chat_via_messages::StreamTranslator::new(
                public_model,
                crate::relay::transform::unix_now(),
                true,
            ),
            decoder: SseDecoder::new(),
            responses,
        }
    }

    fn relay(&mut self, chunks: Vec<Bytes>, out: &mut Vec<Bytes>) {
        for chunk in chunks {
            self.decoder.push(&chunk);
        }
        while let Some(event) = self.decoder.next_event() {
            self.responses.push(&event.data, out);
        }
    }
}

impl ResponseEvents for ViaMessages {
    fn start(&mut self, out: &mut Vec<Bytes>) {
        self.responses.start(out)
    }
    fn push(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) {
        let mut chunks = Vec::new();
        self.messages.push(&event.data, &mut chunks);
        self.relay(chunks, out);
    }
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        let mut chunks = Vec::new();
        self.messages.finish(&mut chunks);
        self.relay(chunks, out);
        self.responses.finish(out)
    }
    fn fail(&mut self, message: &str, out: &mut Vec<Bytes>) {
        self.responses.fail(message, out)
    }
    fn cancel(&mut self, out: &mut Vec<Bytes>) {
        self.responses.cancel(out)
    }
    fn usage(&self) -> Option<TokenUsage> {
        self.messages.usage()
    }
    fn response(&self) -> &Value {
        self.responses.response()
    }
    fn produced_text(&self) -> String {
        self.responses.produced_text()
    }
}

/// An upstream that speaks Responses: its events pass through with the
/// gateway's response id and public model name put in place of the
/// upstream's, and renumbered so that a frame's index is its sequence number.
pub struct Native {
    response: Value,
    /// Output items completed so far, to describe a run that is cut short.
    done_items: Vec<Value>,
    produced: String,
    usage: Option<TokenUsage>,
    next_sequence: u64,
    finished: bool,
}

impl Native {
    /// `skeleton`: the Response object as the gateway announces it.
    pub fn new(skeleton: Value) -> Self {
        Native {
            response: skeleton,
            done_items: Vec::new(),
            produced: String::new(),
            usage: None,
            next_sequence: 0,
            finished: false,
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut Vec<Bytes>) {
        data["sequence_number"] = json!(self.next_sequence);
        self.next_sequence += 1;
        out.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
    }

    /// Puts the gateway's id and model into an upstream Response object and
    /// keeps it as the current state.
    fn adopt(&mut self, upstream: &Value) -> Value {
        let mut response = upstream.clone();
        for field in [
            "id",
            "model",
            "created_at",
            "previous_response_id",
            "store",
            "background",
            "metadata",
            "conversation",
        ] {
            if let Some(ours) = self.response.get(field) {
                response[field] = ours.clone();
            }
        }
        self.response = response.clone();
        response
    }

    fn end_with(&mut self, status: &str, error: Value, kind: &str, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.response["status"] = json!(status);
        self.response["output"] = Value::Array(self.done_items.clone());
        if !error.is_null() {
            self.response["error"] = error;
        }
        if !kind.is_empty() {
            let response = self.response.clone();
            self.emit(kind, json!({"type": kind, "response": response}), out);
        }
    }
}

impl ResponseEvents for Native {
    fn start(&mut self, _out: &mut Vec<Bytes>) {}

    fn push(&mut self, event: &SseEvent, out: &mut Vec<Bytes>) {
        // Only objects are events; anything else (`[DONE]`, garbage) is skipped.
        let Ok(mut data @ Value::Object(_)) = serde_json::from_str::<Value>(&event.data) else {
            return;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(upstream) = data.get("response").filter(|r| r.is_object()).cloned() {
            data["response"] = self.adopt(&upstream);
            if let Some(usage) = upstream.get("usage").filter(|u| !u.is_null()) {
                self.usage = Some(responses_usage(usage));
            }
        }
        match kind.as_str() {
            "response.output_item.done" => {
                if let Some(item) = data.get("item") {
                    self.done_items.push(item.clone());
                }
            }
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                if let Some(delta) = data.get("delta").and_then(Value::as_str) {
                    self.produced.push_str(delta);
                }
            }
            "response.completed" | "response.failed" | "response.incomplete" => {
                self.finished = true;
            }
            _ => {}
        }
        self.emit(&kind, data, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        // An upstream that ends without a terminal event did not complete.
        let error = json!({"code": "server_error", "message": "The upstream stream ended early."});
        self.end_with("failed", error, "response.failed", out);
    }

    fn fail(&mut self, message: &str, out: &mut Vec<Bytes>) {
        let error = json!({"code": "server_error", "message": message});
        self.end_with("failed", error, "response.failed", out);
    }

    fn cancel(&mut self, out: &mut Vec<Bytes>) {
        self.end_with("cancelled", Value::Null, "", out);
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.usage
    }

    fn response(&self) -> &Value {
        &self.response
    }

    fn produced_text(&self) -> String {
        self.produced.clone()
    }
}

/// A Responses `usage` object as token counts.
fn responses_usage(usage: &Value) -> TokenUsage {
    let get = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    TokenUsage {
        input: get("/input_tokens"),
        output: get("/output_tokens"),
        cached_input: get("/input_tokens_details/cached_tokens"),
        cache_write: 0,
    }
}
