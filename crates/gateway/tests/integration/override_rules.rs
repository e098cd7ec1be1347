//! Override rules in the request path (issue 12, in progress): a user's rule
//! rewrites what reaches the upstream, refuses with nothing charged, and may
//! only pick models the key may use; another user's rules never apply.

use serde_json::{json, Value};

use crate::common::*;

async fn add_rule(gw: &Gateway, owner: i64, id: &str, rule: Value) {
    let stored = store::StoredRule {
        id: id.into(),
        owner_id: owner,
        name: rule["ruleName"].as_str().unwrap_or(id).into(),
        api_types: String::new(),
        priority: rule["priority"].as_i64().unwrap_or(0),
        enabled: true,
        rule,
        created_at: store::now_ms(),
        updated_at: store::now_ms(),
    };
    gw.app.store.insert_rules(&[stored], 100).await.unwrap();
    gw.app.rule_book.forget(owner);
}

#[tokio::test]
async fn a_users_rule_rewrites_what_reaches_the_upstream_and_only_theirs() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("ruled", "default", "10").await;
    let (_, other) = gw.user("unruled", "default", "10").await;
    add_rule(
        &gw,
        user_id,
        "rule_temp",
        json!({"ruleName": "cool", "conditions": [{"model": "gpt-*"}],
        "actions": [{"type": "override", "field": "temperature", "value": 0.2},
                    {"type": "set_header", "name": "x-team", "value": "blue"}]}),
    )
    .await;
    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    assert_eq!(
        gw.chat(&other, chat_body("gpt-test", false)).await.status(),
        200
    );
    let requests = mock.requests();
    assert_eq!(requests[0].body["temperature"], 0.2);
    assert_eq!(requests[0].header("x-team"), Some("blue"));
    assert_eq!(
        requests[1].body["temperature"], 0.5,
        "another user's rules never apply"
    );
    assert_eq!(requests[1].header("x-team"), None);
    gw.stop().await;
}

#[tokio::test]
async fn a_block_refuses_with_nothing_charged_and_a_model_swap_stays_within_the_key() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("blocked", "default", "10").await;
    let before = gw.balance(user_id).await;
    add_rule(&gw, user_id, "rule_block", json!({"ruleName": "no streams",
        "conditions": [{"values": [{"path": "stream", "mode": "full", "value": true}]}],
        "actions": [{"type": "block", "message": "Streaming is off for this account.", "status": 400}]})).await;
    let resp = gw.chat(&key, chat_body("gpt-test", true)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "blocked_by_rule");
    assert_eq!(
        body["error"]["message"],
        "Streaming is off for this account."
    );
    assert!(mock.requests().is_empty());
    assert_eq!(gw.balance(user_id).await, before, "nothing held or charged");
    gw.stop().await;
}

#[tokio::test]
async fn a_forced_temperature_reaches_the_upstream_on_every_api() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("everywhere", "default", "10").await;
    add_rule(
        &gw,
        user_id,
        "rule_all",
        json!({"ruleName": "cool",
        "actions": [{"type": "override", "field": "temperature", "value": 0.2}]}),
    )
    .await;
    let messages = json!({"model": "claude-test", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Translated: a Messages client on an OpenAI upstream, and Responses.
    let translated = json!({"model": "gpt-test", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&translated)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = gw
        .post_json(
            "/v1/responses",
            &key,
            &json!({"model": "gpt-native", "input": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.body["temperature"], 0.2, "{} {}", r.path, r.body);
    }
    gw.stop().await;
}
