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

/// The media routes, by method.
const ROUTES: [(&str, &str); 5] = [
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/moderations"),
    ("GET", "/v1/customsearch/v1"),
    ("POST", "/v1/search"),
];

/// Whether `method` `path` is a media route.
pub fn handles(method: &str, path: &str) -> bool {
    ROUTES.contains(&(method, path))
}

/// The answer of a media route (see [`handles`]).
pub fn answer(path: &str, query: Option<&str>, body: Option<&Value>, tracker: Tracker) -> Response {
    answer_route(path, query, body, tracker).unwrap_or_else(|| {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap_or_default()
    })
}

fn answer_route(
    path: &str,
    query: Option<&str>,
    body: Option<&Value>,
    mut tracker: Tracker,
) -> Option<Response> {
    match path {
        "/v1/customsearch/v1" => {
            // Google CSE: the query echoed, and three results.
            let params: Vec<(String, String)> = query
                .unwrap_or("")
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect();
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let q = get("q");
            let items: Vec<Value> = (1..=3)
                .map(|i| {
                    serde_json::json!({"kind": "customsearch#result",
                        "title": format!("Result {i} for {q}"),
                        "link": format!("https://example.com/{i}"), "snippet": "A mock result."})
                })
                .collect();
            Some(json_answer(
                tracker,
                serde_json::json!({"kind": "customsearch#search",
                    "queries": {"request": [{"searchTerms": q, "cx": get("cx"), "num": get("num")}]},
                    "items": items}),
            ))
        }
        "/v1/search" => {
            // Serper: the parameters echoed, and two organic results.
            let body = body.cloned().unwrap_or(Value::Null);
            let q = body["q"].as_str().unwrap_or("").to_string();
            let organic: Vec<Value> = (1..=2)
                .map(|i| {
                    serde_json::json!({"title": format!("Result {i} for {q}"),
                        "link": format!("https://example.com/{i}"), "position": i})
                })
                .collect();
            Some(json_answer(
                tracker,
                serde_json::json!({"searchParameters": body, "organic": organic}),
            ))
        }
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
        "/v1/images/generations" => {
            let body = body.cloned().unwrap_or(Value::Null);
            let prompt = body["prompt"].as_str().unwrap_or("");
            // `mock_images_made` in the body makes fewer images than `n`.
            let n = body["n"].as_u64().unwrap_or(1);
            let made = body["mock_images_made"].as_u64().unwrap_or(n).min(n);
            let b64 = body["response_format"].as_str() == Some("b64_json");
            let data: Vec<Value> = (0..made)
                .map(|i| match b64 {
                    true => serde_json::json!({"b64_json": mock_image_b64(prompt, i)}),
                    false => {
                        serde_json::json!({"url": format!("https://mock.example/images/{i}.png"),
                                                "revised_prompt": prompt})
                    }
                })
                .collect();
            Some(json_answer(
                tracker,
                serde_json::json!({"created": 1_700_000_000, "data": data}),
            ))
        }
        "/v1/moderations" => {
            let body = body.cloned().unwrap_or(Value::Null);
            let inputs = match &body["input"] {
                Value::Array(items) => items.len(),
                _ => 1,
            };
            let result = serde_json::json!({
                "flagged": false,
                "categories": {"harassment": false, "hate": false, "self-harm": false,
                               "sexual": false, "violence": false},
                "category_scores": {"harassment": 0.0001, "hate": 0.0001, "self-harm": 0.0001,
                                    "sexual": 0.0001, "violence": 0.0001},
            });
            Some(json_answer(
                tracker,
                serde_json::json!({"id": "modr-mock", "model": body["model"],
                                   "results": vec![result; inputs]}),
            ))
        }
        _ => None,
    }
}

/// The base64 "image" the mock makes for `prompt`, the `i`th.
pub fn mock_image_b64(prompt: &str, i: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("MOCK-IMAGE {i}: {prompt}"))
}

fn json_answer(mut tracker: Tracker, body: Value) -> Response {
    tracker.update(|e| e.status = Some(200));
    tracker.finish(State::Done);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// A query string's part, decoded (`+` is a space).
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
