//! Azure text to speech, OhMyGPT-style (its exact paths are not public:
//! these are Tollgate's, in [`SYNTHESIS`] and [`VOICES`]). `POST` synthesis
//! takes SSML, or text and a voice (JSON or form), and streams the audio
//! back, billed per character of the spoken text; `GET` voices lists what
//! the provider offers (not billed).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::body::{field_str, parse_fields, parse_json, serde_urlencoded_pairs};
use super::ohmygpt::envelope;
use super::{detached, with_headers, RequestId};
use crate::api::caller::authenticate;
use crate::auth::Principal;
use crate::error::{ApiError, Shape};
use crate::money::MeterUnit;
use crate::pipeline::{self, Metered, Planner};
use crate::providers::client;
use crate::state::App;

pub const SYNTHESIS: &str = "/api/v1/openapi/azure/tts/v1";
pub const VOICES: &str = "/api/v1/openapi/azure/tts/voices";
/// The model billed when a request names none.
const DEFAULT_MODEL: &str = "azure-tts";
const DEFAULT_FORMAT: &str = "audio-24khz-48kbitrate-mono-mp3";
/// Most bytes of SSML one request may send.
const MAX_SSML_BYTES: usize = 64 * 1024;

pub async fn synthesis(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    detached(async move {
        let prepared = async {
            let principal = authenticate(&app, &headers).await?;
            let fields = parse_fields(&headers, &body)?;
            prepare(&app, &id, &principal, fields).await
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
            Err(e) => envelope(Err(e)),
        }
    })
    .await
}

async fn prepare(
    app: &App,
    id: &RequestId,
    principal: &Arc<Principal>,
    mut fields: Map<String, Value>,
) -> Result<pipeline::Prepared, ApiError> {
    fields
        .entry("model")
        .or_insert_with(|| Value::String(DEFAULT_MODEL.into()));
    let body = Bytes::from(serde_json::to_vec(&fields).map_err(|_| ApiError::Internal)?);
    let rewritten = pipeline::rewrite(app, principal, "azure.tts", body).await?;
    let fields: Map<String, Value> = parse_json(&rewritten.body)?;
    let text = |name: &str| field_str(&fields, name).filter(|v| !v.trim().is_empty());
    let model = text("model").unwrap_or_else(|| DEFAULT_MODEL.into());
    let ssml = match (text("ssml"), text("text"), text("voice")) {
        (Some(ssml), _, _) => ssml,
        (None, Some(words), Some(voice)) => {
            let lang = text("lang").unwrap_or_else(|| "en-US".into());
            build_ssml(&words, &voice, &lang)
        }
        _ => {
            return Err(ApiError::BadRequest(
                "Send `ssml`, or `text` and `voice` (e.g. en-US-JennyNeural).".into(),
            ))
        }
    };
    if ssml.len() > MAX_SSML_BYTES {
        return Err(ApiError::BadRequest(format!(
            "The SSML has more than {MAX_SSML_BYTES} bytes."
        )));
    }
    let characters = spoken_characters(&ssml);
    if characters == 0 {
        return Err(ApiError::BadRequest("There is no text to speak.".into()));
    }
    let output_format = text("output_format").unwrap_or_else(|| DEFAULT_FORMAT.into());
    let route = app.route(principal, &model, None)?;
    if route.model.unit != MeterUnit::Characters {
        return Err(ApiError::BadRequest(format!(
            "The model `{model}` is not a text-to-speech model."
        )));
    }
    let planner: Planner = Box::new(move |target| {
        target
            .provider
            .adapter
            .synthesis(target, &ssml, &output_format, characters)
    });
    let metered = Metered {
        principal,
        request_id: &id.0,
        endpoint: "azure.tts",
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
    pipeline::reserve(app, metered).await
}

/// `GET …/voices[?model=…]`: the provider's voice list, as it is.
pub async fn voices(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let listed = async {
        let principal = authenticate(&app, &headers).await?;
        let params = serde_urlencoded_pairs(query.unwrap_or_default().as_bytes());
        let model = params
            .iter()
            .find(|(k, _)| k == "model")
            .map_or(DEFAULT_MODEL.to_string(), |(_, v)| v.clone());
        let route = app.route(&principal, &model, None)?;
        if route.model.unit != MeterUnit::Characters {
            return Err(ApiError::BadRequest(format!(
                "The model `{model}` is not a text-to-speech model."
            )));
        }
        let provider = &route.provider;
        let answer = provider
            .get(
                "/cognitiveservices/voices/list",
                "",
                &[],
                provider.pick_key(&[]),
            )
            .await
            .map_err(|_| ApiError::UpstreamUnreachable)?;
        let status = answer.status();
        let body = tokio::time::timeout(provider.request_timeout, client::read_whole(answer))
            .await
            .map_err(|_| ApiError::UpstreamTimeout)?
            .map_err(|_| ApiError::UpstreamReset)?;
        if !status.is_success() {
            return Err(ApiError::UpstreamFailed(status.as_u16()));
        }
        Ok(body)
    }
    .await;
    match listed {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_else(|_| ApiError::Internal.into_response()),
        Err(e) => envelope(Err(e)),
    }
}

/// SSML speaking `text` (escaped) in `voice`.
fn build_ssml(text: &str, voice: &str, lang: &str) -> String {
    format!(
        "<speak version=\"1.0\" xmlns=\"http://www.w3.org/2001/10/synthesis\" xml:lang=\"{}\"><voice name=\"{}\">{}</voice></speak>",
        escape(lang),
        escape(voice),
        escape(text)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The characters Azure bills: the whole SSML but its `<speak>` and
/// `<voice>` tags (and an XML declaration), an ideograph (Chinese,
/// Japanese, Korean) counting twice.
fn spoken_characters(ssml: &str) -> u64 {
    let mut count = 0u64;
    let mut rest = ssml;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            let tag = rest.split_once('>').map_or(rest, |(tag, _)| tag);
            let name = tag
                .trim_start_matches(['<', '/', '?'])
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or("");
            if matches!(name, "speak" | "voice" | "xml") {
                rest = rest.split_once('>').map_or("", |(_, after)| after);
                continue;
            }
        }
        count += if is_ideograph(c) { 2 } else { 1 };
        rest = &rest[c.len_utf8()..];
    }
    count
}

fn is_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2FFFF) // CJK Extensions B and after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssml_is_built_escaped_and_its_spoken_text_counted() {
        let ssml = build_ssml("Fish & <chips>", "en-US-JennyNeural", "en-US");
        assert!(ssml.contains("Fish &amp; &lt;chips&gt;"), "{ssml}");
        // The text as sent (entities included); other markup counts.
        assert_eq!(
            spoken_characters(&ssml),
            "Fish &amp; &lt;chips&gt;".chars().count() as u64
        );
        let with_break = "<speak><voice name=\"x\">héllo <break time=\"1s\"/>wörld</voice></speak>";
        assert_eq!(
            spoken_characters(with_break),
            "héllo <break time=\"1s\"/>wörld".chars().count() as u64
        );
        assert_eq!(spoken_characters("<speak><voice>你好</voice></speak>"), 4);
        assert_eq!(
            spoken_characters("<?xml version=\"1.0\"?><speak></speak>"),
            0
        );
    }
}
