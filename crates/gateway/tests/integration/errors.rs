//! Every refusal has the documented status and shape, and changes nothing.

use serde_json::{json, Value};

use crate::common::*;

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert!(resp.headers().get("x-request-id").is_some());
    let text = resp.text().await.unwrap();
    assert!(!text.contains(UPSTREAM_KEY), "upstream key leaked: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

async fn post_raw(gw: &Gateway, key: &str, body: &str) -> reqwest::Response {
    gw.http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_errors_are_refused_and_nothing_is_charged() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("carol", "default", "1").await;
    let before = gw.balance(id).await;

    let (status, body) = error_of(post_raw(&gw, &key, "{\"model\": ").await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    let (status, body) = error_of(post_raw(&gw, &key, "{\"messages\": []}").await).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("model"),
        "{body}"
    );

    let (status, body) = error_of(gw.chat(&key, chat_body("no-such-model", false)).await).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");

    let (status, body) = error_of(gw.chat("sk-wrong", chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .json(&chat_body("gpt-test", false))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await.0, 401);

    // A disabled key, through the OhMyGPT management API.
    let disabled = new_key(&gw, &key, json!({"remark": "to disable"})).await;
    let resp = gw
        .http
        .post(format!("{}/api/v1/user/admin/update-api-token", gw.url))
        .bearer_auth(&key)
        .form(&[("key", disabled.as_str()), ("is_disabled", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = error_of(gw.chat(&disabled, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "key_disabled");

    // A key limited to other models.
    let limited = new_key(&gw, &key, json!({"permissions": ["cheap"]})).await;
    let (status, body) = error_of(gw.chat(&limited, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "model_not_allowed");

    // A key whose spending limit (1 credit) cannot cover the worst case.
    let capped = new_key(&gw, &key, json!({"max_fee": "1"})).await;
    let (status, body) = error_of(gw.chat(&capped, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], "insufficient_quota");

    // An expired key.
    let expired = new_key(&gw, &key, json!({"expired_at": "2020-01-01T00:00:00Z"})).await;
    let (status, body) = error_of(gw.chat(&expired, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "key_expired");

    assert_eq!(gw.balance(id).await, before);
    assert!(mock.requests().is_empty(), "nothing may reach the upstream");
    let usage = gw
        .app
        .store
        .list_usage(&store::UsageFilter {
            user_id: Some(id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(usage.is_empty());
    gw.stop().await;
}

async fn new_key(gw: &Gateway, admin_key: &str, fields: Value) -> String {
    let resp = gw
        .http
        .post(format!("{}/api/v1/user/admin/new-api-token", gw.url))
        .bearer_auth(admin_key)
        .json(&fields)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["statusCode"], 200, "{body}");
    body["data"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_empty_balance_gets_insufficient_quota() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("broke", "default", "0").await;
    let (status, body) = error_of(gw.chat(&key, chat_body("gpt-test", true)).await).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(gw.balance(id).await, (0, 0));
    gw.stop().await;
}

#[tokio::test]
async fn upstream_failures_cost_nothing_and_never_leak_the_upstream_key() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("dave", "default", "1").await;
    let before = gw.balance(id).await;

    // Unreachable upstream → 502.
    let (status, body) = error_of(gw.chat(&key, chat_body("unreachable", false)).await).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_unreachable");

    // Upstream refuses our key → 502, and its message (quoting the key) is not shown.
    mock.set_default(Script::new().status(401));
    let (status, body) = error_of(gw.chat(&key, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_auth_failed");

    // Other upstream 4xx pass through, scrubbed.
    mock.set_default(Script::new().status(400));
    let (status, body) = error_of(gw.chat(&key, chat_body("gpt-test", true)).await).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "mock_failure");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("[redacted]"));

    // Upstream 5xx → 502; overloaded (503/529) → 503, which clients retry.
    mock.set_default(Script::new().status(500));
    let (status, _) = error_of(gw.chat(&key, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 502);
    mock.set_default(Script::new().status(529));
    let (status, body) = error_of(gw.chat(&key, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "upstream_overloaded");

    let records = gw.wait_for_usage(id, 5).await;
    assert!(records.iter().all(|r| r.cost == 0 && r.status >= 400));
    assert_eq!(gw.balance(id).await, before);
    gw.stop().await;
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let mock = start_mock().await;
    // The mock answers after 6 s; the provider's request timeout is 5 s.
    mock.set_default(Script::new().first_piece_delay_ms(6_000));
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("erin", "default", "1").await;
    let (status, body) = error_of(gw.chat(&key, chat_body("gpt-test", false)).await).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout");
    // Streams time out per chunk (read_timeout_secs = 3): the stream ends,
    // and a stream that produced nothing costs nothing.
    let resp = gw.chat(&key, chat_body("gpt-test", true)).await;
    assert_eq!(resp.status(), 200);
    let _ = resp.text().await;
    let records = gw.wait_for_usage(id, 2).await;
    assert!(records.iter().all(|r| r.cost == 0));
    assert!(records
        .iter()
        .any(|r| r.error.as_deref().unwrap_or("").contains("stalled")));
    assert_eq!(gw.balance(id).await, (1_000_000_000, 0));
    gw.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_openai_shaped_404s() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let resp = gw
        .http
        .get(format!("{}/v1/nothing", gw.url))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(resp).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    gw.stop().await;
}
