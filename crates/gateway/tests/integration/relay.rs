//! Relaying chat completions, streams, embeddings; exact billing.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn non_stream_body_is_the_upstreams_and_billing_is_exact() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("alice", "default", "10").await;
    let before = gw.balance(id).await.0;
    assert_eq!(before, 10_000_000_000);

    let resp = gw.chat(&key, chat_body("gpt-test", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, mock_completion_body("gpt-test"));

    // The upstream saw its own model name and key, and every client field.
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    let auth = format!("Bearer {UPSTREAM_KEY}");
    assert_eq!(sent.header("authorization"), Some(auth.as_str()));
    assert_eq!(sent.body["model"], "mock-model");
    assert_eq!(sent.body["temperature"], 0.5);
    assert_eq!(sent.body["tools"][0]["function"]["name"], "noop");

    let records = gw.wait_for_usage(id, 1).await;
    assert_eq!(records[0].cost, GPT_TEST_COST);
    assert_eq!(records[0].input_tokens, 10);
    assert_eq!(records[0].output_tokens, 5);
    assert_eq!(records[0].cached_tokens, 2);
    assert_eq!(records[0].status, 200);
    assert_eq!(gw.balance(id).await, (before - GPT_TEST_COST, 0));

    // The key's counters follow, and the ledger has the charge.
    let keys = gw.app.store.list_keys(id).await.unwrap();
    assert_eq!(keys[0].used_fee, GPT_TEST_COST);
    assert_eq!(keys[0].used_times, 1);
    let ledger = gw.app.store.ledger(id, 10).await.unwrap();
    assert_eq!(ledger[0].amount, -GPT_TEST_COST);
    assert_eq!(ledger[0].balance_after, before - GPT_TEST_COST);
    gw.stop().await;
}

#[tokio::test]
async fn group_multiplier_composes_with_the_model_multiplier() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("vip", "vip", "1").await;
    let resp = gw.chat(&key, chat_body("gpt-test", false)).await;
    assert_eq!(resp.status(), 200);
    let records = gw.wait_for_usage(id, 1).await;
    // 72 500 nano × 1.5 × 0.8
    assert_eq!(records[0].cost, 87_000);
    assert_eq!(gw.balance(id).await.0, 1_000_000_000 - 87_000);
    gw.stop().await;
}

async fn read_all(resp: reqwest::Response) -> String {
    String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn stream_is_passed_through_and_usage_chunk_follows_the_clients_wish() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("bob", "default", "10").await;

    // The client asked for usage: the stream is the upstream's, byte for byte
    // but for the public model name.
    let mut body = chat_body("gpt-test", true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = gw.chat(&key, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(
        read_all(resp).await,
        mock_stream_events("gpt-test", true).concat()
    );

    // It did not: the gateway still asked the upstream, but drops that chunk
    // and the `"usage":null` fields asking added.
    let resp = gw.chat(&key, chat_body("gpt-test", true)).await;
    assert_eq!(
        read_all(resp).await,
        mock_stream_events("gpt-test", false).concat()
    );
    let sent = mock.requests().pop().unwrap().body;
    assert_eq!(sent["stream_options"]["include_usage"], true);

    let records = gw.wait_for_usage(id, 2).await;
    assert!(records.iter().all(|r| r.cost == GPT_TEST_COST && r.stream));
    assert_eq!(
        gw.balance(id).await,
        (10_000_000_000 - 2 * GPT_TEST_COST, 0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_streams_charge_exactly_n_times() {
    const N: usize = 200;
    let mock = start_mock().await;
    mock.set_default(Script::new().chunk_delay_ms(5));
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("crowd", "default", "100").await;
    let before = gw.balance(id).await.0;

    let expected = mock_stream_events("gpt-test", false).concat();
    for body in gw.chat_burst(&key, chat_body("gpt-test", true), N).await {
        assert_eq!(body, expected);
    }
    let records = gw.wait_for_usage(id, N).await;
    assert_eq!(records.len(), N);
    let (balance, held) = gw.balance(id).await;
    assert_eq!(balance, before - GPT_TEST_COST * N as i64);
    assert_eq!(held, 0);
    let keys = gw.app.store.list_keys(id).await.unwrap();
    assert_eq!(keys[0].used_times, N as i64);
    assert_eq!(keys[0].held, 0);
    gw.stop().await;
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_charged_for_what_the_upstream_produced() {
    let mock = start_mock().await;
    mock.set_default(Script::new().chunk_delay_ms(100));
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("quitter", "default", "10").await;

    let resp = gw.chat(&key, chat_body("gpt-test", true)).await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream); // hang up after the first chunk

    let records = gw.wait_for_usage(id, 1).await;
    assert_eq!(records[0].output_tokens, 5);
    assert_eq!(records[0].cost, GPT_TEST_COST);
    assert_eq!(gw.balance(id).await, (10_000_000_000 - GPT_TEST_COST, 0));
    gw.stop().await;
}

#[tokio::test]
async fn a_client_leaving_before_the_upstream_answers_leaves_no_hold_behind() {
    let mock = start_mock().await;
    mock.set_default(Script::new().head_delay_ms(400));
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("impatient", "default", "10").await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    for stream in [true, false] {
        let result = impatient
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body("gpt-test", stream))
            .send()
            .await;
        assert!(result.is_err(), "the client gave up first");
    }
    // Both requests still ran to the end upstream and were charged exactly.
    let records = gw.wait_for_usage(id, 2).await;
    assert!(
        records.iter().all(|r| r.cost == GPT_TEST_COST),
        "{records:?}"
    );
    assert_eq!(
        gw.balance(id).await,
        (10_000_000_000 - 2 * GPT_TEST_COST, 0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_writes_every_queued_settlement() {
    const N: usize = 300;
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("burst", "default", "100").await;
    gw.chat_burst(&key, chat_body("gpt-test", false), N).await;
    // Stop at once: whatever is still queued must be written first.
    let db = gw.database_url.clone();
    gw.stop().await;
    let (records, user) = persisted(&db, id).await;
    assert_eq!(records.len(), N);
    assert_eq!(user.balance, 100_000_000_000 - GPT_TEST_COST * N as i64);
}

#[tokio::test]
async fn graceful_shutdown_finishes_streams_and_flushes_settlements() {
    let mock = start_mock().await;
    mock.set_default(Script::new().chunk_delay_ms(150));
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("late", "default", "10").await;
    let resp = gw.chat(&key, chat_body("gpt-test", true)).await;
    let reader = tokio::spawn(async move { resp.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let db = gw.database_url.clone();
    gw.stop().await;
    // The stream in flight completed in full...
    assert_eq!(
        reader.await.unwrap(),
        mock_stream_events("gpt-test", false).concat()
    );
    // ...and its settlement was written before shutdown returned.
    let (records, _) = persisted(&db, id).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].cost, GPT_TEST_COST);
}

#[tokio::test]
async fn legacy_completions_and_embeddings_are_billed() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("embedder", "default", "1").await;

    let resp = gw
        .http
        .post(format!("{}/v1/embeddings", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model": "cheap", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"], json!([0.1, 0.2]));

    let resp = gw
        .http
        .post(format!("{}/v1/completions", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model": "cheap", "prompt": "hello", "max_tokens": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let records = gw.wait_for_usage(id, 2).await;
    let by_endpoint = |e: &str| records.iter().find(|r| r.endpoint == e).unwrap().cost;
    // Embeddings: 10 input tokens × 1 USD/1M = 10 000 nano.
    assert_eq!(by_endpoint("embeddings"), 10_000);
    // Completions: 8 × 1 + 2 × 1 (cached defaults to input) + 5 × 2 = 20 USD/1M.
    assert_eq!(by_endpoint("completions"), 20_000);
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/v1/embeddings", "/v1/completions"]);
    gw.stop().await;
}

#[tokio::test]
async fn stream_without_upstream_usage_is_charged_an_estimate_and_marked() {
    let mock = start_mock().await;
    mock.set_default(Script::new().no_usage());
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("estimated", "default", "1").await;
    let resp = gw.chat(&key, chat_body("cheap", true)).await;
    assert_eq!(
        read_all(resp).await,
        mock_stream_events("cheap", false).concat()
    );
    let records = gw.wait_for_usage(id, 1).await;
    assert!(records[0].cost > 0);
    assert!(records[0].error.as_deref().unwrap().contains("estimated"));
    gw.stop().await;
}

#[tokio::test]
async fn models_lists_what_the_key_may_use() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("lister", "default", "0").await;
    let resp = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "cheap",
            "claude-test",
            "gpt-native",
            "gpt-test",
            "unreachable"
        ]
    );

    let (status, created) = gw
        .admin(
            reqwest::Method::POST,
            &format!("/admin/users/{id}/keys"),
            Some(json!({"permissions": ["cheap"]})),
        )
        .await;
    assert_eq!(status, 200);
    let limited = created["key"].as_str().unwrap();
    let body: Value = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(limited)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], "cheap");
    assert_eq!(body["data"][0]["object"], "model");
    gw.stop().await;
}
