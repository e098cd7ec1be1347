//! OpenAI's audio API. `POST /v1/audio/speech` (JSON or form): text to
//! speech, metered in characters (known before the call, held and charged
//! exactly), the audio streamed to the client as the upstream produces it.
//! `POST /v1/audio/transcriptions` and `/translations` (multipart): the
//! audio is spooled to disk as it arrives (never held in memory, sent again
//! on failover) and streamed upstream; metered by the audio's duration as
//! the upstream reports it, else as measured here (WAV), else estimated
//! from its size.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::{parse_fields, parse_json};
use super::form;
use super::{detached, with_headers, RequestId};
use crate::api::caller::Caller;
use crate::auth::Principal;
use crate::error::{ApiError, Shape};
use crate::money::MeterUnit;
use crate::pipeline::{self, Metered, Planner};
use crate::providers::{MultipartCall, Upload};
use crate::relay::transform::Count;
use crate::state::App;

/// Most characters of one speech request (OpenAI's limit).
const MAX_SPEECH_CHARACTERS: usize = 4096;
const SPEECH_FORMATS: [&str; 6] = ["mp3", "opus", "aac", "flac", "wav", "pcm"];

pub async fn speech(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(relay_speech(app, id, principal, headers, body)).await
}

async fn relay_speech(
    app: App,
    id: RequestId,
    principal: Arc<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let prepared = async {
        // Form fields become the JSON the upstream takes.
        let fields = parse_fields(&headers, &body)?;
        let body = Bytes::from(serde_json::to_vec(&fields).map_err(|_| ApiError::Internal)?);
        let rewritten = pipeline::rewrite(&app, &principal, "audio.speech", body).await?;
        let mut request: Map<String, Value> = parse_json(&rewritten.body)?;
        let characters = check_speech(&mut request)?;
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let route = app.route(&principal, &model, None)?;
        if route.model.unit != MeterUnit::Characters {
            return Err(ApiError::BadRequest(format!(
                "The model `{model}` is not a text-to-speech model."
            )));
        }
        let planner: Planner = Box::new(move |target| {
            target
                .provider
                .adapter
                .audio_speech(target, &request, characters)
        });
        let metered = Metered {
            principal: &principal,
            request_id: &id.0,
            endpoint: "audio.speech",
            route,
            stream: true,
            body: &rewritten.body,
            max_output: 0,
            choices: 1,
            images: 0,
            units: Some((characters, None)),
            planner,
            upstream_edits: rewritten.upstream,
            shape: Shape::OpenAi,
        };
        pipeline::reserve(&app, metered).await
    }
    .await;
    match prepared {
        Ok(prepared) => {
            let headers = prepared.limit_headers();
            with_headers(
                pipeline::respond(app, prepared).await.into_response(),
                headers,
            )
        }
        Err(e) => e.render(Shape::OpenAi),
    }
}

/// Most bytes of an audio file to transcribe (OpenAI's limit).
const MAX_AUDIO_BYTES: u64 = 25 * 1024 * 1024;
const TRANSCRIPT_FORMATS: [&str; 5] = ["json", "text", "srt", "verbose_json", "vtt"];
/// Audio whose length its header does not give is held, and charged when
/// the upstream does not say, as if it were this thin (8 kbit/s, the low
/// end of speech codecs: a worst case, so that no answer format is a way
/// to pay less).
const HOLD_BYTES_PER_SECOND: u64 = 1_000;

/// Transcription or translation.
#[derive(Clone, Copy)]
enum Task {
    Transcription,
    Translation,
}

impl Task {
    fn path(self) -> &'static str {
        match self {
            Task::Transcription => "/audio/transcriptions",
            Task::Translation => "/audio/translations",
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Task::Transcription => "audio.transcriptions",
            Task::Translation => "audio.translations",
        }
    }
}

pub async fn transcriptions(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    detached(relay_transcription(
        app,
        id,
        principal,
        multipart,
        Task::Transcription,
    ))
    .await
}

pub async fn translations(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    detached(relay_transcription(
        app,
        id,
        principal,
        multipart,
        Task::Translation,
    ))
    .await
}

async fn relay_transcription(
    app: App,
    id: RequestId,
    principal: Arc<Principal>,
    multipart: Result<Multipart, MultipartRejection>,
    task: Task,
) -> Response {
    let prepared = async {
        let multipart = multipart.map_err(|e| {
            ApiError::BadRequest(format!(
                "A transcription is multipart/form-data with a `file` part: {e}"
            ))
        })?;
        let (mut files, fields) = form::read(multipart, &["file"], MAX_AUDIO_BYTES).await?;
        if files.len() > 1 {
            return Err(ApiError::BadRequest("Send one `file`.".into()));
        }
        let (_, file) = files.pop().ok_or_else(|| {
            ApiError::BadRequest("`file` is required: the audio to transcribe.".into())
        })?;
        // The rules see (and may change) the fields as a JSON object.
        let body = Bytes::from(
            serde_json::to_vec(&form::to_doc(&fields)).map_err(|_| ApiError::Internal)?,
        );
        let rewritten = pipeline::rewrite(&app, &principal, task.endpoint(), body).await?;
        let fields = form::from_doc(&parse_json(&rewritten.body)?);
        let model = check_transcription(&fields)?;
        let route = app.route(&principal, &model, None)?;
        if !matches!(route.model.unit, MeterUnit::Seconds | MeterUnit::Minutes) {
            return Err(ApiError::BadRequest(format!(
                "The model `{model}` does not transcribe audio (it is metered in {}).",
                route.model.unit.name()
            )));
        }
        // A PCM WAV's length is its header's (checked against the file);
        // anything else is held, and charged unless the upstream says
        // otherwise, at the thinnest rate speech is sent at.
        let seconds = match measure(&file.path, file.size).await {
            Some(seconds) => seconds,
            None => file.size.div_ceil(HOLD_BYTES_PER_SECOND),
        }
        .max(1);
        let (hold, fallback) = (seconds, seconds);
        let upload = Upload {
            files: vec![("file".into(), Arc::new(file))],
            fields,
        };
        let planner: Planner = Box::new(move |target| {
            target.provider.adapter.multipart(
                target,
                MultipartCall {
                    path: task.path(),
                    what: "transcription",
                    upload: upload.clone(),
                    count: Count::Seconds { fallback },
                },
            )
        });
        let metered = Metered {
            principal: &principal,
            request_id: &id.0,
            endpoint: task.endpoint(),
            route,
            stream: false,
            body: &rewritten.body,
            max_output: 0,
            choices: 1,
            images: 0,
            units: Some((hold, None)),
            planner,
            upstream_edits: rewritten.upstream,
            shape: Shape::OpenAi,
        };
        pipeline::reserve(&app, metered).await
    }
    .await;
    match prepared {
        Ok(prepared) => {
            let headers = prepared.limit_headers();
            with_headers(
                pipeline::respond(app, prepared).await.into_response(),
                headers,
            )
        }
        Err(e) => e.render(Shape::OpenAi),
    }
}

/// The model, and the fields checked as OpenAI documents them.
fn check_transcription(fields: &[(String, String)]) -> Result<String, ApiError> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let model = match get("model") {
        Some(m) if !m.trim().is_empty() => m.trim().to_string(),
        _ => return Err(ApiError::BadRequest("`model` is required.".into())),
    };
    if let Some(format) = get("response_format") {
        if !TRANSCRIPT_FORMATS.contains(&format) {
            return Err(ApiError::BadRequest(format!(
                "`response_format` must be one of {}.",
                TRANSCRIPT_FORMATS.join(", ")
            )));
        }
    }
    if let Some(t) = get("temperature") {
        if !t
            .trim()
            .parse::<f64>()
            .is_ok_and(|t| (0.0..=1.0).contains(&t))
        {
            return Err(ApiError::BadRequest(
                "`temperature` must be a number from 0 to 1.".into(),
            ));
        }
    }
    Ok(model)
}

/// The audio's whole seconds (rounded up), when its header says (WAV).
async fn measure(path: &std::path::Path, size: u64) -> Option<u64> {
    use tokio::io::AsyncReadExt;
    let mut head = vec![0u8; 4096];
    let mut file = tokio::fs::File::open(path).await.ok()?;
    let n = file.read(&mut head).await.ok()?;
    head.truncate(n);
    wav_seconds(&head, size).map(|s| s.ceil() as u64)
}

/// A WAV file's duration from its header: the `data` chunk's bytes (at most
/// what the file holds after it) over the `fmt ` chunk's bytes per second.
pub fn wav_seconds(head: &[u8], file_size: u64) -> Option<f64> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let u32_at = |i: usize| -> Option<u32> {
        head.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u16_at =
        |i: usize| -> Option<u16> { head.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]])) };
    let mut at = 12;
    let mut byte_rate = None;
    while at + 8 <= head.len() {
        let id = &head[at..at + 4];
        let len = u32_at(at + 4)? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                // PCM only (format 1), its figures consistent: decoders go
                // by sample rate and block size, so must the length.
                let (format, channels) = (u16_at(body)?, u16_at(body + 2)?);
                let (rate, bytes_per_second) = (u32_at(body + 4)?, u32_at(body + 8)?);
                let (block, bits) = (u16_at(body + 12)?, u16_at(body + 14)?);
                let consistent = format == 1
                    && channels > 0
                    && u32::from(block) == u32::from(channels) * u32::from(bits) / 8
                    && Some(bytes_per_second) == rate.checked_mul(u32::from(block))
                    && bytes_per_second > 0;
                byte_rate = consistent.then_some(bytes_per_second);
            }
            b"data" => {
                // A size of 0 (or past the file) is read to the file's end,
                // as decoders do.
                let in_file = file_size.saturating_sub(body as u64);
                let bytes = match len as u64 {
                    0 => in_file,
                    n => n.min(in_file),
                };
                return Some(bytes as f64 / f64::from(byte_rate?));
            }
            _ => {}
        }
        at = body.checked_add(len)?.checked_add(len % 2)?;
    }
    None
}

/// Checks a speech request as OpenAI documents it (numbers sent as form
/// text become numbers); returns its input's length in characters.
fn check_speech(request: &mut Map<String, Value>) -> Result<u64, ApiError> {
    let bad = |message: &str| Err(ApiError::BadRequest(message.to_string()));
    match request.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        _ => return bad("`model` is required."),
    }
    let characters = match request.get("input") {
        Some(Value::String(text)) if !text.is_empty() => text.chars().count(),
        _ => return bad("`input` is required: the text to speak."),
    };
    // gpt-4o-mini-tts's `instructions` are read too: counted and bounded.
    let characters = characters
        + match request.get("instructions") {
            None | Some(Value::Null) => 0,
            Some(Value::String(text)) => text.chars().count(),
            Some(_) => return bad("`instructions` must be text."),
        };
    if characters > MAX_SPEECH_CHARACTERS {
        return Err(ApiError::BadRequest(format!(
            "`input` and `instructions` have {characters} characters; the most is {MAX_SPEECH_CHARACTERS}."
        )));
    }
    match request.get("voice") {
        Some(Value::String(v)) if !v.is_empty() => {}
        Some(Value::Object(v)) if v.contains_key("id") => {}
        _ => return bad("`voice` is required (e.g. \"alloy\")."),
    }
    if let Some(format) = request.get("response_format") {
        if !format.as_str().is_some_and(|f| SPEECH_FORMATS.contains(&f)) {
            return Err(ApiError::BadRequest(format!(
                "`response_format` must be one of {}.",
                SPEECH_FORMATS.join(", ")
            )));
        }
    }
    if let Some(speed) = request.get("speed").cloned() {
        let value = match &speed {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match value.filter(|v| (0.25..=4.0).contains(v)) {
            Some(v) => {
                request.insert("speed".into(), serde_json::json!(v));
            }
            None => return bad("`speed` must be a number from 0.25 to 4.0."),
        }
    }
    Ok(characters as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value) -> Result<u64, ApiError> {
        let mut map = body.as_object().cloned().unwrap();
        check_speech(&mut map)
    }

    /// A WAV header: 16 kHz mono 16-bit (32,000 bytes a second).
    fn wav(data_bytes: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&36u32.wrapping_add(data_bytes).to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&16_000u32.to_le_bytes());
        h.extend_from_slice(&32_000u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_bytes.to_le_bytes());
        h
    }

    #[test]
    fn wav_durations_come_from_the_header_and_the_file() {
        let head = wav(80_000);
        assert_eq!(wav_seconds(&head, 44 + 80_000), Some(2.5));
        // A header claiming more than the file holds (a stream's 0xFFFFFFFF).
        assert_eq!(wav_seconds(&wav(u32::MAX), 44 + 16_000), Some(0.5));
        assert_eq!(wav_seconds(b"ID3\x03mp3 bytes", 1000), None);
        assert_eq!(wav_seconds(&head[..30], 1000), None, "cut before data");
    }

    #[test]
    fn speech_requests_are_checked_and_counted_in_characters() {
        let ok = json!({"model": "tts-1", "input": "héllo", "voice": "alloy"});
        assert_eq!(check(ok.clone()).unwrap(), 5);
        let mut form = ok.as_object().cloned().unwrap();
        form.insert("speed".into(), json!("1.5"));
        check_speech(&mut form).unwrap();
        assert_eq!(form["speed"], json!(1.5), "form text becomes a number");
        for bad in [
            json!({"input": "x", "voice": "alloy"}),
            json!({"model": "tts-1", "voice": "alloy"}),
            json!({"model": "tts-1", "input": "x"}),
            json!({"model": "tts-1", "input": "x".repeat(4097), "voice": "a"}),
            json!({"model": "tts-1", "input": "x", "voice": "a", "response_format": "ogg"}),
            json!({"model": "tts-1", "input": "x", "voice": "a", "speed": 5}),
        ] {
            assert!(check(bad.clone()).is_err(), "{bad}");
        }
    }
}
