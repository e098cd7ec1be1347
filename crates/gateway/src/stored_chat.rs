//! Chat completions created with `store: true`: the gateway keeps them (the
//! upstream is not asked to), under an id of its own so that no two stored
//! completions can collide, whatever ids the upstream hands out.

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use protocol::assemble::ChatAssembler;
use protocol::openai::CompletionRequest;
use protocol::sse::{SseDecoder, SseEvent};
use protocol::TokenUsage;
use serde_json::{json, Map, Value};
use store::StoredCompletion;

use crate::error::ApiError;
use crate::metadata::metadata_of;
use crate::relay::transform::StreamTransform;
use crate::relay::Answer;
use crate::responses::expires_at;
use crate::secrets::new_object_id;
use crate::state::App;

/// Largest completion body read back to be stored.
const MAX_STORED_BODY: usize = 64 * 1024 * 1024;

/// What will be stored once the completion is known.
#[derive(Debug, Clone)]
pub struct ChatRecord {
    pub id: String,
    pub user_id: i64,
    pub model: String,
    pub metadata: Map<String, Value>,
    pub messages: Vec<Value>,
}

/// Takes `store` and `metadata` out of the request (they are the gateway's
/// business, not the upstream's) and says what to record, if anything.
pub fn take(
    request: &mut CompletionRequest,
    user_id: i64,
    public_model: &str,
) -> Result<Option<ChatRecord>, ApiError> {
    let store = request.extra.remove("store");
    let metadata = request.extra.remove("metadata");
    if store != Some(Value::Bool(true)) {
        return Ok(None);
    }
    let id = new_object_id("chatcmpl");
    let messages = request
        .extra
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| {
            let mut m = m.clone();
            if let Some(map) = m.as_object_mut() {
                map.insert("id".into(), json!(format!("{id}-{i}")));
            }
            m
        })
        .collect();
    Ok(Some(ChatRecord {
        id,
        user_id,
        model: public_model.to_string(),
        metadata: metadata_of(metadata.as_ref())?,
        messages,
    }))
}

/// The completion as stored and listed: the client's object under the
/// gateway's id, with its metadata.
fn stored_object(record: &ChatRecord, mut completion: Value) -> Value {
    completion["id"] = json!(record.id);
    completion["metadata"] = json!(record.metadata);
    completion
}

async fn save(app: &App, record: &ChatRecord, completion: Value) {
    let stored = StoredCompletion {
        id: record.id.clone(),
        user_id: record.user_id,
        model: record.model.clone(),
        metadata: record.metadata.clone(),
        messages: record.messages.clone(),
        completion,
        created_at: store::now_ms(),
    };
    if let Err(e) = app.store.insert_completion(&stored, expires_at(app)).await {
        tracing::warn!(error = %e, id = %record.id, "could not store a chat completion");
    }
}

/// Stores a whole (non-streamed) completion and answers the client with it,
/// under the gateway's id. Errors pass through unstored.
pub async fn record_json(app: &App, record: ChatRecord, answer: Answer) -> Answer {
    let Answer::Whole {
        status,
        content_type,
        body,
    } = answer
    else {
        return answer;
    };
    let unchanged = |body| Answer::Whole {
        status,
        content_type: content_type.clone(),
        body,
    };
    if !status.is_success() {
        return unchanged(body);
    }
    if body.len() > MAX_STORED_BODY {
        tracing::warn!(id = %record.id, bytes = body.len(), "a chat completion too large to store was answered unstored");
        return unchanged(body);
    }
    // Only a completion object is stored; anything else passes through as is.
    let Ok(completion @ Value::Object(_)) = serde_json::from_slice::<Value>(&body) else {
        return unchanged(body);
    };
    let object = stored_object(&record, completion);
    save(app, &record, object.clone()).await;
    unchanged(Bytes::from(object.to_string()))
}

/// A chat stream on its way to the client, reassembled to be stored when it
/// ends; its chunks carry the gateway's id.
pub struct Recorded<T> {
    inner: T,
    app: App,
    record: ChatRecord,
    decoder: SseDecoder,
    assembler: ChatAssembler,
    /// The stream's `[DONE]`, held back until the completion is stored: a
    /// client that reads it may ask for the stored completion at once.
    done: Option<Bytes>,
}

impl<T: StreamTransform> Recorded<T> {
    pub fn new(inner: T, app: App, record: ChatRecord) -> Self {
        Recorded {
            inner,
            app,
            record,
            decoder: SseDecoder::new(),
            assembler: ChatAssembler::new(),
            done: None,
        }
    }

    /// Reads what `inner` produced, re-labelled with the stored id.
    fn relabel(&mut self, produced: BytesMut, out: &mut BytesMut) {
        self.decoder.push(&produced);
        while let Some(event) = self.decoder.next_event() {
            match serde_json::from_str::<Value>(&event.data) {
                Ok(mut chunk) if chunk.is_object() => {
                    self.assembler.push(&chunk);
                    chunk["id"] = json!(self.record.id);
                    out.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
                }
                _ if event.data.starts_with("[DONE]") => self.done = Some(event.raw.clone()),
                _ => out.extend_from_slice(&event.raw),
            }
        }
    }

    /// The held-back `[DONE]`, last: `end` and `fail` output reaches the
    /// client after the stream is stored (see `relay::pump`).
    fn release_done(&mut self, out: &mut BytesMut) {
        if let Some(done) = self.done.take() {
            out.extend_from_slice(&done);
        }
    }
}

impl<T: StreamTransform> StreamTransform for Recorded<T> {
    fn event(&mut self, event: &SseEvent, out: &mut BytesMut) {
        let mut produced = BytesMut::new();
        self.inner.event(event, &mut produced);
        self.relabel(produced, out);
    }
    fn end(&mut self, out: &mut BytesMut) {
        let mut produced = BytesMut::new();
        self.inner.end(&mut produced);
        self.relabel(produced, out);
        self.release_done(out);
    }
    fn fail(&mut self, message: &str, out: &mut BytesMut) {
        let mut produced = BytesMut::new();
        self.inner.fail(message, &mut produced);
        self.relabel(produced, out);
        self.release_done(out);
    }
    fn usage(&self) -> Option<TokenUsage> {
        self.inner.usage()
    }
    fn finisher(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let app = self.app.clone();
        let record = self.record.clone();
        let completion = stored_object(&record, self.assembler.finish());
        Some(Box::pin(
            async move { save(&app, &record, completion).await },
        ))
    }
}
