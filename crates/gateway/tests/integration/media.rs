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
