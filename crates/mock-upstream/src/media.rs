//! The mock's media routes (issue 14): answers that are not chat — audio
//! from text, for now — deterministic, so that a test can compute what the
//! client must receive byte for byte ([`speech_audio`]).

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use crate::record::{State, Tracker};

/// The pieces a speech answer is streamed in.
pub const SPEECH_PIECE_BYTES: usize = 16 * 1024;

/// The audio the mock "speaks" for `input` in `format`: a header naming
/// the format, then the input's bytes repeated to 64 KiB (several pieces).
pub fn speech_audio(input: &str, format: &str) -> Vec<u8> {
    let mut audio = format!("MOCK-AUDIO {format}\n").into_bytes();
    let text = if input.is_empty() { " " } else { input };
    while audio.len() < 64 * 1024 {
        audio.extend_from_slice(text.as_bytes());
    }
    audio
}

/// The content type of a speech format (OpenAI's).
pub fn speech_content_type(format: &str) -> &'static str {
    match format {
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

/// The media routes.
const ROUTES: [&str; 1] = ["/v1/audio/speech"];

/// Whether `path` is a media route.
pub fn handles(path: &str) -> bool {
    ROUTES.contains(&path)
}

/// The answer of a media route (see [`handles`]).
pub fn answer(path: &str, body: Option<&Value>, tracker: Tracker) -> Response {
    answer_route(path, body, tracker).unwrap_or_else(|| {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap_or_default()
    })
}

fn answer_route(path: &str, body: Option<&Value>, mut tracker: Tracker) -> Option<Response> {
    match path {
        "/v1/audio/speech" => {
            let body = body.cloned().unwrap_or(Value::Null);
            let input = body["input"].as_str().unwrap_or("");
            let format = body["response_format"].as_str().unwrap_or("mp3");
            let audio = speech_audio(input, format);
            let pieces: Vec<Result<Bytes, std::io::Error>> = audio
                .chunks(SPEECH_PIECE_BYTES)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            tracker.update(|e| {
                e.pieces = pieces.len();
                e.status = Some(200);
            });
            tracker.finish(State::Done);
            Some(
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, speech_content_type(format))
                    .body(Body::from_stream(futures_util::stream::iter(pieces)))
                    .unwrap_or_default(),
            )
        }
        _ => None,
    }
}
