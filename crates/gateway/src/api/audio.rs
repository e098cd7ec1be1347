//! OpenAI's audio API. `POST /v1/audio/speech` (JSON or form): text to
//! speech, metered in characters (known before the call, held and charged
//! exactly), the audio streamed to the client as the upstream produces it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::{parse_fields, parse_json};
use super::{detached, with_headers, RequestId};
use crate::api::caller::Caller;
use crate::auth::Principal;
use crate::error::{ApiError, Shape};
use crate::money::MeterUnit;
use crate::pipeline::{self, Metered, Planner};
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
    if characters > MAX_SPEECH_CHARACTERS {
        return Err(ApiError::BadRequest(format!(
            "`input` has {characters} characters; the most is {MAX_SPEECH_CHARACTERS}."
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
