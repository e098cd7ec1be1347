//! `/v1/responses` checks its parameters as strictly as chat completions
//! does, and a whole (non-stream) response keeps to the provider's
//! `request_timeout_secs`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

async fn create(gw: &Gateway, key: &str, body: Value) -> (u16, Value) {
    let resp = gw
        .http
        .post(format!("{}/v1/responses", gw.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn invalid_parameters_are_refused_before_anything_is_sent_or_held() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ivan", "default", "1").await;
    let base = json!({"model": "gpt-test", "input": "Say hello"});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let cases = [
        ("max_output_tokens", json!(-1)),
        ("max_output_tokens", json!(1.5)),
        ("max_output_tokens", json!("100")),
        ("max_output_tokens", json!(1e20)),
        ("max_output_tokens", json!(4_294_967_296u64)),
        ("max_output_tokens", json!(u64::MAX)),
        ("max_output_tokens", json!(0)),
        ("max_output_tokens", json!(true)),
        ("stream", json!("true")),
        ("stream", json!(1)),
        ("background", json!("false")),
        ("background", json!(0)),
        ("store", json!("false")),
        ("store", json!({})),
    ];
    for (field, value) in cases {
        let (status, body) = create(&gw, &key, with(field, value.clone())).await;
        assert_eq!(status, 400, "{field} = {value}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{field} = {value}: {message}");
    }
    assert!(mock.requests().is_empty(), "nothing went upstream");
    assert_eq!(gw.balance(id).await, (1_000_000_000, 0));

    // `null` is the same as leaving a field out, as in chat completions.
    let mut nulls = base.clone();
    for field in ["max_output_tokens", "stream", "background", "store"] {
        nulls[field] = Value::Null;
    }
    let (status, body) = create(&gw, &key, nulls).await;
    assert_eq!(status, 200, "{body}");
    // A cap above the model's own is held to the model's (1,000 for gpt-test).
    let (status, body) = create(&gw, &key, with("max_output_tokens", json!(4_000_000))).await;
    assert_eq!(status, 200, "{body}");
    let sent = mock.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].body["max_completion_tokens"], 1000,
        "{}",
        sent[1].body
    );
    gw.stop().await;
}

/// The mock streams a chunk every 2 s (8 chunks, 16 s in all); the provider
/// allows 5 s for a whole call.
#[tokio::test]
async fn a_whole_response_that_outlasts_the_request_timeout_is_a_504_charged_for_what_was_produced()
{
    let mock = start_mock().await;
    mock.set_default(
        Script::new()
            .first_piece_delay_ms(2_000)
            .chunk_delay_ms(2_000),
    );
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("oscar", "default", "1").await;
    let started = Instant::now();
    let (status, body) = create(
        &gw,
        &key,
        json!({"model": "gpt-test", "input": "Say hello", "store": true}),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "api_error", "{body}");
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(9),
        "answered after {waited:?}"
    );

    let records = gw.wait_for_usage(id, 1).await;
    let r = &records[0];
    // What it cost follows from the tokens recorded, at gpt-test's prices
    // (2.5 in, 10 out USD per 1M, × 1.5), rounded up once.
    let expected = ((r.input_tokens * 2_500 + r.output_tokens * 10_000) * 3 + 1) / 2;
    assert_eq!(r.cost, expected, "{r:?}");
    assert!(r.output_tokens <= 2, "at most two pieces in 5 s: {r:?}");
    assert!(
        r.error.as_deref().unwrap_or("").contains("timed out"),
        "{r:?}"
    );
    // The hold is released; the balance is down by exactly the charge.
    for _ in 0..100 {
        if gw.balance(id).await == (1_000_000_000 - r.cost, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.balance(id).await, (1_000_000_000 - r.cost, 0));
    gw.stop().await;
}
