//! Models metered in other units than tokens (issue 14, in progress):
//! text to speech, priced per character, its audio streamed through byte
//! for byte and charged exactly; bad input refused with nothing charged.

use serde_json::{json, Value};

use crate::common::*;

/// A text-to-speech model at 15 USD per 1M characters.
const TTS_MODEL: &str =
    "\n[models.tts-test]\nprovider = \"mock\"\nunit = \"characters\"\nprice = \"15\"\n";

#[tokio::test]
async fn speech_streams_the_upstreams_audio_and_charges_its_characters() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", TTS_MODEL).await;
    let (user_id, key) = gw.user("speaker", "default", "10").await;
    let before = gw.balance(user_id).await;
    let input = "Hello there, ünïcode!";
    let resp = gw
        .http
        .post(format!("{}/v1/audio/speech", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model": "tts-test", "input": input, "voice": "alloy", "response_format": "opus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/opus");
    let audio = resp.bytes().await.unwrap();
    assert_eq!(audio, mock_upstream::media::speech_audio(input, "opus"));
    // As a form, the speed a number for the upstream.
    let resp = gw
        .http
        .post(format!("{}/v1/audio/speech", gw.url))
        .bearer_auth(&key)
        .form(&[
            ("model", "tts-test"),
            ("input", "Hi"),
            ("voice", "nova"),
            ("speed", "1.25"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.unwrap(),
        mock_upstream::media::speech_audio("Hi", "mp3")
    );
    let sent = mock.requests();
    assert_eq!(sent[0].path, "/v1/audio/speech");
    assert_eq!(sent[1].body["speed"], json!(1.25));

    let records = gw.wait_for_usage(user_id, 2).await;
    let mut costs: Vec<(i64, i64, &str)> = records
        .iter()
        .map(|r| (r.input_tokens, r.cost, r.unit.as_str()))
        .collect();
    costs.sort();
    // 21 and 2 characters at 15 USD per 1M: 315,000 and 30,000 nano-USD.
    assert_eq!(
        costs,
        [(2, 30_000, "characters"), (21, 315_000, "characters")]
    );
    assert!(records
        .iter()
        .all(|r| r.endpoint == "audio.speech" && r.status == 200));
    gw.assert_charged_exactly(user_id, before, &records).await;
    gw.stop().await;
}

#[tokio::test]
async fn bad_speech_requests_and_wrong_models_cost_nothing() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", TTS_MODEL).await;
    let (user_id, key) = gw.user("careless", "default", "10").await;
    let before = gw.balance(user_id).await;
    let speech = |body: Value| {
        let gw = &gw;
        let key = key.clone();
        async move {
            let resp = gw
                .http
                .post(format!("{}/v1/audio/speech", gw.url))
                .bearer_auth(&key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    for body in [
        json!({"model": "tts-test", "input": "x".repeat(4097), "voice": "alloy"}),
        json!({"model": "tts-test", "input": "x", "voice": "alloy", "speed": 9}),
        json!({"model": "tts-test", "voice": "alloy"}),
        json!({"model": "gpt-test", "input": "x", "voice": "alloy"}),
    ] {
        let (status, error) = speech(body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert!(error["error"]["message"].is_string());
    }
    // A speech model does not chat.
    let resp = gw.chat(&key, chat_body("tts-test", false)).await;
    assert_eq!(resp.status(), 400);
    assert!(mock.requests().is_empty());
    assert_eq!(gw.balance(user_id).await, before);
    // And its unit and price are shown.
    let models: Value = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tts = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "tts-test")
        .unwrap();
    assert_eq!(
        tts["pricing"],
        json!({"unit": "characters", "per": 1_000_000, "price": "15"})
    );
    gw.stop().await;
}

/// An image model (0.04 USD an image; more for tall and HD ones) and two
/// moderation models, one free.
const IMAGE_AND_MODERATION_MODELS: &str = r#"
[models.img-test]
provider = "mock"
unit = "images"
price = "0.04"
image_prices = { "1024x1792" = "0.08", "1024x1792/hd" = "0.12" }

[models.mod-free]
provider = "mock"
unit = "calls"
price = "0"

[models.mod-paid]
provider = "mock"
unit = "calls"
price = "0.001"
"#;

#[tokio::test]
async fn images_are_charged_per_image_made_at_their_size_and_quality() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", IMAGE_AND_MODERATION_MODELS).await;
    let (user_id, key) = gw.user("painter", "default", "10").await;
    let before = gw.balance(user_id).await;
    // Three asked, two made: held for three, charged for two.
    let (status, body) = gw
        .post_json(
            "/v1/images/generations",
            &key,
            &json!({"model": "img-test", "prompt": "a cat", "n": 3, "size": "1024x1792",
                    "quality": "hd", "mock_images_made": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (status, body) = gw
        .post_json(
            "/v1/images/generations",
            &key,
            &json!({"model": "img-test", "prompt": "a dog", "response_format": "b64_json"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"][0]["b64_json"],
        mock_upstream::media::mock_image_b64("a dog", 0)
    );
    assert_eq!(mock.requests()[0].body["model"], "img-test");
    let records = gw.wait_for_usage(user_id, 2).await;
    let mut costs: Vec<(i64, i64)> = records.iter().map(|r| (r.input_tokens, r.cost)).collect();
    costs.sort();
    // Two tall HD ones at 0.12; one of the upstream's default size and
    // quality at the dearest they may be, 0.12.
    assert_eq!(costs, [(1, 120_000_000), (2, 240_000_000)]);
    assert!(records
        .iter()
        .all(|r| r.unit == "images" && r.endpoint == "images.generations"));
    gw.assert_charged_exactly(user_id, before, &records).await;
    // Bad input costs nothing.
    let (status, _) = gw
        .post_json(
            "/v1/images/generations",
            &key,
            &json!({"model": "img-test", "prompt": "a cat", "size": "huge"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = gw
        .post_json(
            "/v1/images/generations",
            &key,
            &json!({"model": "gpt-test", "prompt": "x"}),
        )
        .await;
    assert_eq!(status, 400, "a chat model makes no images");
    assert_eq!(mock.requests().len(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn moderations_are_free_or_charged_per_call() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", IMAGE_AND_MODERATION_MODELS).await;
    let (user_id, key) = gw.user("moderator", "default", "10").await;
    let before = gw.balance(user_id).await;
    for model in ["mod-free", "mod-paid"] {
        let (status, body) = gw
            .post_json(
                "/v1/moderations",
                &key,
                &json!({"model": model, "input": ["hello", "world"]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"].as_array().unwrap().len(), 2);
        assert_eq!(body["model"], model, "the public name");
    }
    let records = gw.wait_for_usage(user_id, 2).await;
    let mut costs: Vec<(&str, i64, i64)> = records
        .iter()
        .map(|r| (r.model.as_str(), r.input_tokens, r.cost))
        .collect();
    costs.sort();
    assert_eq!(costs, [("mod-free", 1, 0), ("mod-paid", 1, 1_000_000)]);
    gw.assert_charged_exactly(user_id, before, &records).await;
    // Without a model: OpenAI's default, which is not configured here.
    let (status, _) = gw
        .post_json("/v1/moderations", &key, &json!({"input": "hello"}))
        .await;
    assert_eq!(status, 404);
    gw.stop().await;
}

/// Google CSE and Serper on the mock, each billed per call; and a Google
/// provider whose key the upstream refuses.
fn search_providers(mock_url: &str) -> String {
    format!(
        r#"
[providers.google]
kind = "google_cse"
base_url = "{mock_url}"
api_key = "{UPSTREAM_KEY}"
params = {{ cx = "engine-1" }}

[providers.google-bad]
kind = "google_cse"
base_url = "{mock_url}"
api_key = "not-the-key"

[providers.serper]
kind = "serper"
base_url = "{mock_url}"
api_key = "{UPSTREAM_KEY}"

[models.google-search]
provider = "google"
unit = "calls"
price = "0.005"

[models.google-refused]
provider = "google-bad"
unit = "calls"
price = "0.005"

[models.serper]
provider = "serper"
unit = "calls"
price = "0.001"
"#
    )
}

#[tokio::test]
async fn searches_pass_through_and_are_charged_per_successful_call() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &search_providers(&mock.url)).await;
    let (user_id, key) = gw.user("searcher", "default", "10").await;
    let before = gw.balance(user_id).await;
    let google = |query: String, bearer: Option<String>| {
        let gw = &gw;
        async move {
            let mut request = gw.http.get(format!(
                "{}/api/v1/openapi/search/google-search/v1?{query}",
                gw.url
            ));
            if let Some(key) = bearer {
                request = request.bearer_auth(key);
            }
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = google("q=rust+lang&num=5".into(), Some(key.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    let request = &body["queries"]["request"][0];
    assert_eq!(
        (&request["searchTerms"], &request["cx"], &request["num"]),
        (&json!("rust lang"), &json!("engine-1"), &json!("5"))
    );
    // The key as `key=`, as Google's own API takes it.
    let (status, _) = google(format!("q=tollgate&key={key}"), None).await;
    assert_eq!(status, 200);
    let sent = mock.requests();
    assert_eq!(sent[0].header("x-goog-api-key"), Some(UPSTREAM_KEY));
    assert!(
        !sent[1].query.as_deref().unwrap_or("").contains("key="),
        "the caller's key stays here: {:?}",
        sent[1].query
    );
    // Serper, as a form.
    let resp = gw
        .http
        .post(format!("{}/api/v1/openapi/search/serper/v1", gw.url))
        .bearer_auth(&key)
        .form(&[("q", "rust"), ("gl", "us"), ("num", "10")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["organic"].as_array().unwrap().len(), 2);
    assert_eq!(
        mock.requests()[2].body,
        json!({"q": "rust", "gl": "us", "num": 10})
    );
    assert_eq!(mock.requests()[2].header("x-api-key"), Some(UPSTREAM_KEY));

    // Refused by the upstream, or without a query: nothing charged.
    let (status, _) = google("q=x&model=google-refused".into(), Some(key.clone())).await;
    assert_eq!(status, 502);
    let (status, body) = google("num=5".into(), Some(key.clone())).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["statusCode"], 400);

    let records = gw.wait_for_usage(user_id, 4).await;
    let mut costs: Vec<(&str, i64, i64)> = records
        .iter()
        .map(|r| (r.model.as_str(), r.status, r.cost))
        .collect();
    costs.sort();
    assert_eq!(
        costs,
        [
            ("google-refused", 502, 0),
            ("google-search", 200, 5_000_000),
            ("google-search", 200, 5_000_000),
            ("serper", 200, 1_000_000)
        ]
    );
    gw.assert_charged_exactly(user_id, before, &records).await;
    gw.stop().await;
}

/// A transcription model at 0.006 USD a minute, charged by the second.
const WHISPER_MODEL: &str =
    "\n[models.whisper-test]\nprovider = \"mock\"\nunit = \"minutes\"\nprice = \"0.006\"\n";

/// A WAV file: 16 kHz mono 16-bit, `seconds` long (32,000 bytes a second).
fn wav(seconds: f64) -> Vec<u8> {
    let data = (seconds * 32_000.0) as u32;
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    for v in [16_000u32, 32_000] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    for v in [2u16, 16] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data.to_le_bytes());
    h.resize(44 + data as usize, 0);
    h
}

async fn transcribe(
    gw: &Gateway,
    key: &str,
    path: &str,
    audio: Vec<u8>,
    name: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(audio)
            .file_name(name.to_string())
            .mime_str("audio/wav")
            .unwrap(),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let resp = gw
        .http
        .post(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn transcriptions_are_charged_by_the_seconds_reported_measured_or_estimated() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", WHISPER_MODEL).await;
    let (user_id, key) = gw.user("listener", "default", "10").await;
    let before = gw.balance(user_id).await;
    let audio = wav(2.5);
    let path = "/v1/audio/transcriptions";
    // Reported by the upstream (2.5 s, rounded up to 3).
    let (status, body) = transcribe(
        &gw,
        &key,
        path,
        audio.clone(),
        "a.wav",
        &[("model", "whisper-test"), ("mock_duration", "2.5")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["text"],
        mock_upstream::media::transcript(audio.len())
    );
    // Not reported (text): measured from the WAV header, 3 s too.
    let (status, body) = transcribe(
        &gw,
        &key,
        "/v1/audio/translations",
        audio.clone(),
        "a.wav",
        &[("response_format", "text"), ("model", "whisper-test")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!("{}\n", mock_upstream::media::transcript(audio.len()))
    );
    // Neither: the worst case for its size (48,000 bytes at 1,000 a second).
    let (status, _) = transcribe(
        &gw,
        &key,
        path,
        vec![7u8; 48_000],
        "a.mp3",
        &[("model", "whisper-test"), ("response_format", "srt")],
    )
    .await;
    assert_eq!(status, 200);
    let sent = mock.requests();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[0].body["file_bytes"], audio.len());
    assert_eq!(sent[0].body["file_name"], "a.wav");
    assert_eq!(sent[0].body["model"], "whisper-test");
    assert_eq!(sent[1].path, "/v1/audio/translations");

    let records = gw.wait_for_usage(user_id, 3).await;
    let mut costs: Vec<(i64, i64)> = records.iter().map(|r| (r.input_tokens, r.cost)).collect();
    costs.sort();
    // At 0.006 USD a minute: 3 s is 300,000 nano-USD, 48 s 4,800,000.
    assert_eq!(costs, [(3, 300_000), (3, 300_000), (48, 4_800_000)]);
    assert!(records.iter().all(|r| r.unit == "seconds"));
    gw.assert_charged_exactly(user_id, before, &records).await;

    // Refused before anything is sent: nothing charged.
    for fields in [
        vec![("response_format", "mp3"), ("model", "whisper-test")],
        vec![("model", "gpt-test")],
        vec![],
    ] {
        let (status, body) = transcribe(&gw, &key, path, audio.clone(), "a.wav", &fields).await;
        assert_eq!(status, 400, "{fields:?}: {body}");
    }
    let form = reqwest::multipart::Form::new().text("model", "whisper-test");
    let resp = gw
        .http
        .post(format!("{}{path}", gw.url))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "no file");
    assert_eq!(mock.requests().len(), 3);
    assert_eq!(gw.balance(user_id).await.0, before.0 - 5_400_000);
    gw.stop().await;
}

#[tokio::test]
async fn image_edits_and_variations_stream_their_files_and_cost_per_image() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", IMAGE_AND_MODERATION_MODELS).await;
    let (user_id, key) = gw.user("editor", "default", "10").await;
    let before = gw.balance(user_id).await;
    let png = |n: usize| reqwest::multipart::Part::bytes(vec![9u8; n]).file_name("x.png");
    let form = reqwest::multipart::Form::new()
        .text("model", "img-test")
        .text("prompt", "add a hat")
        .text("n", "2")
        .text("size", "1024x1792")
        .text("quality", "standard")
        .part("image", png(3000))
        .part("mask", png(1000));
    let resp = gw
        .http
        .post(format!("{}/v1/images/edits", gw.url))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v1/images/edits");
    assert_eq!(sent.body["prompt"], "add a hat");
    let files: Vec<(String, u64)> = sent.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap().to_string(),
                f["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [("image".to_string(), 3000), ("mask".to_string(), 1000)]
    );
    let form = reqwest::multipart::Form::new()
        .text("model", "img-test")
        .text("size", "256x256")
        .part("image", png(2000));
    let resp = gw
        .http
        .post(format!("{}/v1/images/variations", gw.url))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let records = gw.wait_for_usage(user_id, 2).await;
    let mut costs: Vec<(&str, i64, i64)> = records
        .iter()
        .map(|r| (r.endpoint.as_str(), r.input_tokens, r.cost))
        .collect();
    costs.sort();
    assert_eq!(
        costs,
        [
            ("images.edits", 2, 160_000_000),
            ("images.variations", 1, 40_000_000)
        ]
    );
    gw.assert_charged_exactly(user_id, before, &records).await;
    // No image, or an edit without a prompt: refused, nothing sent.
    for (path, form) in [
        (
            "/v1/images/edits",
            reqwest::multipart::Form::new()
                .text("model", "img-test")
                .text("prompt", "x"),
        ),
        (
            "/v1/images/edits",
            reqwest::multipart::Form::new()
                .text("model", "img-test")
                .part("image", png(10)),
        ),
    ] {
        let resp = gw
            .http
            .post(format!("{}{path}", gw.url))
            .bearer_auth(&key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    assert_eq!(mock.requests().len(), 2);
    gw.stop().await;
}

fn azure_provider(mock_url: &str) -> String {
    format!(
        "\n[providers.azure]\nkind = \"azure_tts\"\nbase_url = \"{mock_url}\"\napi_key = \"{UPSTREAM_KEY}\"\n\n[models.azure-tts]\nprovider = \"azure\"\nunit = \"characters\"\nprice = \"16\"\n"
    )
}

#[tokio::test]
async fn azure_speech_from_text_or_ssml_is_streamed_and_charged_per_spoken_character() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &azure_provider(&mock.url)).await;
    let (user_id, key) = gw.user("narrator", "default", "10").await;
    let before = gw.balance(user_id).await;
    let resp = gw
        .http
        .post(format!("{}/api/v1/openapi/azure/tts/v1", gw.url))
        .bearer_auth(&key)
        .form(&[("text", "Fish & chips"), ("voice", "en-US-JennyNeural")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let audio = resp.bytes().await.unwrap();
    let sent = &mock.requests()[0];
    let ssml = sent.body["ssml"].as_str().unwrap().to_string();
    assert!(
        ssml.contains("<voice name=\"en-US-JennyNeural\">Fish &amp; chips</voice>"),
        "{ssml}"
    );
    assert_eq!(sent.body["content_type"], "application/ssml+xml");
    assert_eq!(
        sent.header("x-microsoft-outputformat"),
        Some("audio-24khz-48kbitrate-mono-mp3")
    );
    assert_eq!(
        audio,
        mock_upstream::media::azure_audio(&ssml, "audio-24khz-48kbitrate-mono-mp3")
    );
    let own = "<speak version=\"1.0\" xml:lang=\"en-US\"><voice name=\"en-US-JennyNeural\">Hi <break time=\"1s\"/>there</voice></speak>";
    let resp = gw
        .http
        .post(format!("{}/api/v1/openapi/azure/tts/v1", gw.url))
        .bearer_auth(&key)
        .json(&json!({"ssml": own, "output_format": "riff-16khz-16bit-mono-pcm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(mock.requests()[1].body["ssml"], own);
    // The voices, not billed.
    let voices: Value = gw
        .http
        .get(format!("{}/api/v1/openapi/azure/tts/voices", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(voices[0]["ShortName"], "en-US-JennyNeural");
    let records = gw.wait_for_usage(user_id, 2).await;
    let mut costs: Vec<(i64, i64)> = records.iter().map(|r| (r.input_tokens, r.cost)).collect();
    costs.sort();
    // "Fish &amp; chips" (16) and "Hi <break time="1s"/>there" (26): the
    // SSML but its speak and voice tags, at 16 USD per 1M characters.
    assert_eq!(costs, [(16, 256_000), (26, 416_000)]);
    gw.assert_charged_exactly(user_id, before, &records).await;
    // Nothing to speak: refused, in OhMyGPT's envelope.
    let resp = gw
        .http
        .post(format!("{}/api/v1/openapi/azure/tts/v1", gw.url))
        .bearer_auth(&key)
        .json(&json!({"text": "no voice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["statusCode"], 400);
    gw.stop().await;
}

const DRAW_MODELS: &str = r#"
[models.flux-schnell]
provider = "mock"
unit = "images"
price = "0.003"

[models."flux-pro-1.1"]
provider = "mock"
unit = "images"
price = "0.04"
image_prices = { "16:9" = "0.05" }

[models.nd-imagine]
provider = "mock"
unit = "images"
price = "0.02"
"#;

#[tokio::test]
async fn ohmygpt_drawing_routes_answer_in_their_shapes_and_cost_per_image() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", DRAW_MODELS).await;
    let (user_id, key) = gw.user("artist", "default", "10").await;
    let before = gw.balance(user_id).await;
    let resp = gw
        .http
        .post(format!("{}/api/v1/ai/draw/flux/schnell", gw.url))
        .bearer_auth(&key)
        .form(&[
            ("prompt", "a cat"),
            ("response_format", "b64_json"),
            ("seed", "42"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["statusCode"], 200);
    assert_eq!(
        body["data"]["outputs"][0]["b64_json"],
        mock_upstream::media::mock_image_b64("a cat", 0)
    );
    let sent = &mock.requests()[0];
    assert_eq!(
        (&sent.body["model"], &sent.body["seed"], &sent.body["n"]),
        (&json!("flux-schnell"), &json!(42), &json!(1))
    );
    let (status, body) = gw
        .post_json(
            "/api/v1/ai/draw/flux/pro-11",
            &key,
            &json!({"prompt": "a wide sea", "aspect_ratio": "16:9"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["outputs"][0]["url"].is_string());
    let (status, body) = gw
        .post_json(
            "/api/v1/ai/draw/nd/imagine",
            &key,
            &json!({"prompt": "a castle", "negative_prompt": "fog", "size": "512x512"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"][0]["url"].is_string());
    assert_eq!(mock.requests()[2].body["negative_prompt"], "fog");
    let records = gw.wait_for_usage(user_id, 3).await;
    let mut costs: Vec<(&str, i64)> = records.iter().map(|r| (r.model.as_str(), r.cost)).collect();
    costs.sort();
    assert_eq!(
        costs,
        [
            ("flux-pro-1.1", 50_000_000),
            ("flux-schnell", 3_000_000),
            ("nd-imagine", 20_000_000)
        ]
    );
    gw.assert_charged_exactly(user_id, before, &records).await;
    // An unknown variant, or no prompt: OhMyGPT's envelope, nothing sent.
    let (status, body) = gw
        .post_json("/api/v1/ai/draw/flux/max", &key, &json!({"prompt": "x"}))
        .await;
    assert_eq!((status, body["statusCode"].clone()), (404, json!(404)));
    let (status, body) = gw
        .post_json(
            "/api/v1/ai/draw/nd/imagine",
            &key,
            &json!({"size": "512x512"}),
        )
        .await;
    assert_eq!((status, body["statusCode"].clone()), (400, json!(400)));
    assert_eq!(mock.requests().len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn a_token_priced_image_model_is_charged_the_tokens_reported() {
    let model = "\n[models.gpt-image-test]\nprovider = \"mock\"\ninput_price = 5\noutput_price = 40\nmax_output_tokens = 5000\nimages = true\n";
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", model).await;
    let (user_id, key) = gw.user("tokens", "default", "10").await;
    let before = gw.balance(user_id).await;
    let (status, body) = gw
        .post_json(
            "/v1/images/generations",
            &key,
            &json!({"model": "gpt-image-test", "prompt": "a fox", "n": 2, "mock_usage": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let records = gw.wait_for_usage(user_id, 1).await;
    let r = &records[0];
    assert_eq!(
        (r.input_tokens, r.output_tokens, r.unit.as_str()),
        (50, 2000, "")
    );
    // (50 × 5 + 2,000 × 40) USD per 1M tokens.
    assert_eq!(r.cost, 80_250_000);
    // An answer without usage is charged what was held for its output.
    let (status, _) = gw
        .post_json(
            "/v1/images/generations",
            &key,
            &json!({"model": "gpt-image-test", "prompt": "a fox", "n": 1}),
        )
        .await;
    assert_eq!(status, 200);
    let records = gw.wait_for_usage(user_id, 2).await;
    let unreported = records.iter().find(|r| r.output_tokens == 5000).unwrap();
    assert_eq!(unreported.cost, 5000 * 40 * 1000);
    gw.assert_charged_exactly(user_id, before, &records).await;
    gw.stop().await;
}
