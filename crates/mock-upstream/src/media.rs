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
const ROUTES: [(&str, &str); 11] = [
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/moderations"),
    ("GET", "/v1/customsearch/v1"),
    ("POST", "/v1/search"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/translations"),
    ("POST", "/v1/images/edits"),
    ("POST", "/v1/images/variations"),
    ("POST", "/v1/cognitiveservices/v1"),
    ("GET", "/v1/cognitiveservices/voices/list"),
];

/// What a media route is asked.
pub struct MediaRequest<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The body, when it is JSON.
    pub json: Option<&'a Value>,
    pub raw: &'a Bytes,
    pub content_type: &'a str,
    /// Azure's `X-Microsoft-OutputFormat`.
    pub output_format: &'a str,
}

/// Whether `method` `path` is a media route.
pub fn handles(method: &str, path: &str) -> bool {
    ROUTES.contains(&(method, path))
}

/// The answer of a media route (see [`handles`]).
pub async fn answer(request: MediaRequest<'_>, tracker: Tracker) -> Response {
    if request.path == "/v1/cognitiveservices/v1" {
        return azure_speak(request, tracker);
    }
    if request.path.starts_with("/v1/audio/trans") {
        return transcribe(request, tracker).await;
    }
    if request.path.starts_with("/v1/images/") && request.path != "/v1/images/generations" {
        return edit_images(request, tracker).await;
    }
    answer_route(request.path, request.query, request.json, tracker).unwrap_or_else(|| {
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
        "/v1/cognitiveservices/voices/list" => Some(json_answer(
            tracker,
            serde_json::json!([{"Name": "Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)",
                "ShortName": "en-US-JennyNeural", "Locale": "en-US", "Gender": "Female"}]),
        )),
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
            let mut answer = serde_json::json!({"created": 1_700_000_000, "data": data});
            // A token-priced image model's usage (gpt-image-1's shape):
            // 50 input tokens, 1,000 output tokens an image.
            if body["mock_usage"] == true {
                answer["usage"] = serde_json::json!({"input_tokens": 50,
                    "output_tokens": 1000 * made, "total_tokens": 50 + 1000 * made,
                    "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}});
            }
            Some(json_answer(tracker, answer))
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

/// The text the mock "hears" in `bytes` bytes of audio.
pub fn transcript(bytes: usize) -> String {
    format!("mock transcript of {bytes} bytes")
}

/// A transcription or translation: the multipart form read (recorded as
/// its fields and the file's size), and an answer in the format asked.
/// The audio's duration is reported only when the form has
/// `mock_duration` (seconds), as `usage` in json and as `duration` in
/// verbose_json.
async fn transcribe(request: MediaRequest<'_>, mut tracker: Tracker) -> Response {
    let Some(mut fields) = read_form(&request).await else {
        return not_multipart(tracker);
    };
    fields.remove("files");
    let file_bytes = fields
        .get("file_bytes")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let format = fields
        .get("response_format")
        .and_then(Value::as_str)
        .unwrap_or("json")
        .to_string();
    let duration = fields
        .get("mock_duration")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<f64>().ok());
    tracker.update(|e| e.body = Value::Object(fields.clone()));
    let text = transcript(file_bytes);
    let (content_type, body) = match format.as_str() {
        "text" => ("text/plain", format!("{text}\n")),
        "srt" => (
            "text/plain",
            format!("1\n00:00:00,000 --> 00:00:01,000\n{text}\n"),
        ),
        "vtt" => (
            "text/plain",
            format!("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n"),
        ),
        "verbose_json" => (
            "application/json",
            serde_json::json!({"task": "transcribe", "language": "english",
                "duration": duration.unwrap_or(0.0), "text": text, "segments": []})
            .to_string(),
        ),
        _ => {
            let mut answer = serde_json::json!({"text": text});
            if let Some(seconds) = duration {
                answer["usage"] = serde_json::json!({"type": "duration", "seconds": seconds});
            }
            ("application/json", answer.to_string())
        }
    };
    tracker.update(|e| e.status = Some(200));
    tracker.finish(State::Done);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_default()
}

/// A multipart form's fields as JSON: text fields as they are; each file as
/// `{field, name, type, bytes}` in `files`, the `file` field's also as
/// `file_name`, `file_type` and `file_bytes`.
async fn read_form(request: &MediaRequest<'_>) -> Option<serde_json::Map<String, Value>> {
    let boundary = multer::parse_boundary(request.content_type).ok()?;
    let raw = request.raw.clone();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(raw) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            Some(file_name) => {
                let content_type = field.content_type().map(|m| m.to_string());
                let bytes = field.bytes().await.map(|b| b.len()).unwrap_or(0);
                if name == "file" {
                    fields.insert("file_name".into(), file_name.clone().into());
                    fields.insert("file_type".into(), content_type.clone().into());
                    fields.insert("file_bytes".into(), bytes.into());
                }
                files.push(serde_json::json!({"field": name, "name": file_name,
                    "type": content_type, "bytes": bytes}));
            }
            None => {
                fields.insert(name, field.text().await.unwrap_or_default().into());
            }
        }
    }
    fields.insert("files".into(), Value::Array(files));
    Some(fields)
}

fn not_multipart(mut tracker: Tracker) -> Response {
    tracker.finish(State::Rejected);
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .body(Body::from("not multipart"))
        .unwrap_or_default()
}

/// An image edit or variation: `n` images (as for generations) for the
/// form's prompt.
async fn edit_images(request: MediaRequest<'_>, tracker: Tracker) -> Response {
    let Some(fields) = read_form(&request).await else {
        return not_multipart(tracker);
    };
    tracker.update(|e| e.body = Value::Object(fields.clone()));
    let n = fields
        .get("n")
        .and_then(Value::as_str)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(1);
    let mut body = serde_json::json!({"n": n,
        "prompt": fields.get("prompt").cloned().unwrap_or(Value::Null),
        "response_format": fields.get("response_format").cloned().unwrap_or(Value::Null)});
    if let Some(made) = fields.get("mock_images_made").and_then(Value::as_str) {
        body["mock_images_made"] = made.parse::<u64>().unwrap_or(n).into();
    }
    answer_route("/v1/images/generations", None, Some(&body), tracker).unwrap_or_default()
}

/// The audio the mock "speaks" for Azure: the output format, then the SSML
/// repeated to 32 KiB.
pub fn azure_audio(ssml: &str, format: &str) -> Vec<u8> {
    let mut audio = format!("MOCK-AZURE {format}\n").into_bytes();
    while audio.len() < 32 * 1024 {
        audio.extend_from_slice(ssml.as_bytes());
    }
    audio
}

/// Azure synthesis: SSML in (recorded as `{ssml}`), audio out in pieces.
fn azure_speak(request: MediaRequest<'_>, mut tracker: Tracker) -> Response {
    let ssml = String::from_utf8_lossy(request.raw).into_owned();
    let audio = azure_audio(&ssml, request.output_format);
    tracker.update(|e| {
        e.body = serde_json::json!({"ssml": ssml, "content_type": request.content_type});
        e.status = Some(200);
    });
    tracker.finish(State::Done);
    let pieces: Vec<Result<Bytes, std::io::Error>> = audio
        .chunks(SPEECH_PIECE_BYTES)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "audio/mpeg")
        .body(Body::from_stream(futures_util::stream::iter(pieces)))
        .unwrap_or_default()
}
