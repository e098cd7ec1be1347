//! A model served by several channels: the highest priority serves, shared
//! by weight within a tier, and each usage record names the channel that
//! served it.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::Value;

use crate::common::*;

/// Two more providers on two more mocks, and a model `multi` on them.
fn channels_config(a: &str, b: &str, channels: &str) -> String {
    format!(
        "{}{}\n[models.multi]\ninput_price = \"1\"\noutput_price = \"2\"\n{channels}\n",
        openai_provider("chan-a", a, ""),
        openai_provider("chan-b", b, "")
    )
}

async fn served_by(gw: &Gateway, user_id: i64, n: usize) -> HashMap<String, usize> {
    let records = gw.wait_for_usage(user_id, n).await;
    assert_eq!(records.len(), n);
    let mut by = HashMap::new();
    for r in records {
        assert_eq!(r.status, 200, "{r:?}");
        *by.entry(format!("{}/{}", r.provider, r.upstream_model))
            .or_insert(0) += 1;
    }
    by
}

#[tokio::test]
async fn the_highest_priority_channel_serves() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let channels = r#"
[[models.multi.channels]]
provider = "chan-b"
priority = 0

[[models.multi.channels]]
provider = "chan-a"
upstream_model = "a-model"
priority = 10
"#;
    let gw = start_gateway_with(
        &main.url,
        None,
        "",
        &channels_config(&a.url, &b.url, channels),
    )
    .await;
    let (user_id, key) = gw.user("prio", "default", "10").await;
    for _ in 0..10 {
        let resp = gw.chat(&key, chat_body("multi", false)).await;
        assert_eq!(resp.status(), 200);
    }
    let by = served_by(&gw, user_id, 10).await;
    assert_eq!(by, HashMap::from([("chan-a/a-model".to_string(), 10)]));
    assert_eq!(a.requests().len(), 10);
    assert!(b.requests().is_empty() && main.requests().is_empty());
    // Under the channel's own name for the model.
    assert_eq!(a.requests()[0].body["model"], "a-model");
    gw.stop().await;
}

#[tokio::test]
async fn a_tier_is_shared_by_weight() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let channels = r#"
[[models.multi.channels]]
provider = "chan-a"
weight = 3

[[models.multi.channels]]
provider = "chan-b"
weight = 1
"#;
    let gw = start_gateway_with(
        &main.url,
        None,
        "",
        &channels_config(&a.url, &b.url, channels),
    )
    .await;
    let (user_id, key) = gw.user("weights", "default", "10").await;
    let n = 400;
    gw.chat_burst(&key, chat_body("multi", false), n).await;
    let by = served_by(&gw, user_id, n).await;
    let on_a = by.get("chan-a/multi").copied().unwrap_or(0);
    let on_b = by.get("chan-b/multi").copied().unwrap_or(0);
    assert_eq!(on_a + on_b, n);
    // 300 expected on `a` (a standard deviation of about 9).
    assert!((250..=350).contains(&on_a), "{by:?}");
    assert_eq!((a.requests().len(), b.requests().len()), (on_a, on_b));
    gw.stop().await;
}

/// `multi` on `chan-a` (priority 10) then `chan-b` (priority 0), and an
/// Anthropic channel last, on the mocks given.
fn tiers(a: &str, b: &str, claude: &str, failover: &str) -> String {
    let channels = r#"
[[models.multi.channels]]
provider = "chan-a"
priority = 10

[[models.multi.channels]]
provider = "chan-b"
priority = 5

[[models.multi.channels]]
provider = "chan-claude"
upstream_model = "claude-up"
priority = 0
"#;
    format!(
        "{}\n[providers.chan-claude]\nkind = \"anthropic\"\nbase_url = \"{claude}\"\napi_key = \"{UPSTREAM_KEY}\"\n{failover}",
        channels_config(a, b, channels)
    )
}

/// The mock behind `[providers.mock]` and the Anthropic channel, the mocks of
/// `chan-a` and `chan-b`, and a gateway serving `multi` on the three tiers
/// of [`tiers`], with a user holding 10 USD.
struct Tiers {
    main: Mock,
    a: Mock,
    b: Mock,
    gw: Gateway,
    user_id: i64,
    key: String,
}

async fn three_tiers(user: &str, failover: &str) -> Tiers {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let config = tiers(&a.url, &b.url, &main.url, failover);
    let gw = start_gateway_with(&main.url, None, "", &config).await;
    let (user_id, key) = gw.user(user, "default", "10").await;
    Tiers {
        main,
        a,
        b,
        gw,
        user_id,
        key,
    }
}

#[tokio::test]
async fn a_channel_failing_before_its_answer_passes_the_request_to_the_next() {
    let Tiers {
        a,
        b,
        gw,
        user_id,
        key,
        ..
    } = three_tiers("failover", "").await;
    a.set_default(Script::new().status(500));
    let before = gw.balance(user_id).await;
    for stream in [false, true] {
        let resp = gw.chat(&key, chat_body("multi", stream)).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("Hel"), "{text}");
    }
    // One record per request, naming the channel that served; charged once.
    let by = served_by(&gw, user_id, 2).await;
    assert_eq!(by, HashMap::from([("chan-b/multi".to_string(), 2)]));
    assert_eq!((a.requests().len(), b.requests().len()), (2, 2));
    let records = gw.wait_for_usage(user_id, 2).await;
    assert!(gw.assert_charged_exactly(user_id, before, &records).await > 0);
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_channel_fails_over_even_to_another_protocol() {
    let (main, b) = (start_mock().await, start_mock().await);
    b.set_default(Script::new().status(503));
    // Nothing listens on port 9 of the loopback.
    let gw = start_gateway_with(
        &main.url,
        None,
        "",
        &tiers("http://127.0.0.1:9/v1", &b.url, &main.url, ""),
    )
    .await;
    let (user_id, key) = gw.user("refused", "default", "10").await;
    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["model"], "multi", "{body}");
    // a refused, b answered 503, the Anthropic channel served (translated).
    let by = served_by(&gw, user_id, 1).await;
    assert_eq!(
        by,
        HashMap::from([("chan-claude/claude-up".to_string(), 1)])
    );
    assert_eq!(b.requests().len(), 1);
    assert!(main
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/messages")));
    gw.stop().await;
}

#[tokio::test]
async fn client_errors_and_exhausted_attempts_are_answered_as_they_are() {
    // A 400 is the client's own fault: no other channel is tried.
    let Tiers { a, b, gw, key, .. } = three_tiers("no-retry", "").await;
    a.set_default(Script::new().status(400));
    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(resp.status(), 400);
    assert!(b.requests().is_empty());
    gw.stop().await;

    // max_attempts = 2: a and b fail, the third channel is never asked.
    let limited = "[failover]\nmax_attempts = 2\n";
    let Tiers {
        main,
        a,
        b,
        gw,
        user_id,
        key,
    } = three_tiers("exhausted", limited).await;
    a.set_default(Script::new().status(502));
    b.set_default(Script::new().status(429));
    let before = gw.balance(user_id).await;
    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(resp.status(), 429, "the last failure is the answer");
    assert!(main.requests().is_empty());
    let records = gw.wait_for_usage(user_id, 1).await;
    assert_eq!(
        (records[0].cost, records[0].provider.as_str()),
        (0, "chan-b")
    );
    assert_eq!(gw.balance(user_id).await, before, "free, nothing held");
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_broken_after_its_first_bytes_is_not_retried() {
    let Tiers {
        main,
        a,
        b,
        gw,
        user_id,
        key,
    } = three_tiers("broken", "").await;
    // The role chunk and one piece, then the connection fails.
    a.set_default(Script::new().break_after(1));
    let resp = gw.chat(&key, chat_body("multi", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("upstream_stream_interrupted"), "{text}");
    assert!(b.requests().is_empty() && main.requests().is_empty());
    let by = served_by(&gw, user_id, 1).await;
    assert_eq!(by, HashMap::from([("chan-a/multi".to_string(), 1)]));
    gw.stop().await;
}

#[tokio::test]
async fn a_channel_that_cannot_serve_the_request_is_passed_over() {
    // Legacy completions have no Anthropic equivalent: the Anthropic channel
    // on top is passed over, before anything is held or sent.
    let (main, b) = (start_mock().await, start_mock().await);
    let channels = r#"
[[models.multi.channels]]
provider = "chan-claude"
upstream_model = "claude-up"
priority = 10

[[models.multi.channels]]
provider = "chan-b"
"#;
    let config = format!(
        "{}\n[providers.chan-claude]\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"{UPSTREAM_KEY}\"\n",
        channels_config(&b.url, &b.url, channels),
        main.url
    );
    let gw = start_gateway_with(&main.url, None, "", &config).await;
    let (user_id, key) = gw.user("passed-over", "default", "10").await;
    let body = serde_json::json!({"model": "multi", "prompt": "Say hello", "max_tokens": 5});
    let (status, answer) = gw.post_json("/v1/completions", &key, &body).await;
    assert_eq!(status, 200, "{answer}");
    let by = served_by(&gw, user_id, 1).await;
    assert_eq!(by, HashMap::from([("chan-b/multi".to_string(), 1)]));
    assert!(main.requests().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_failing_channel_cools_down_and_is_left_out_until_a_probe() {
    let health = "[failover]\nhealth_min_requests = 3\ncooldown_secs = 3600\n";
    let Tiers {
        main,
        a,
        b,
        gw,
        user_id,
        key,
    } = three_tiers("cooling", health).await;
    a.set_default(Script::new().status(500));
    for _ in 0..10 {
        let resp = gw.chat(&key, chat_body("multi", false)).await;
        assert_eq!(resp.status(), 200);
    }
    // Three failures cool `chan-a` down: the other seven go straight to `b`.
    assert_eq!((a.requests().len(), b.requests().len()), (3, 10));
    let by = served_by(&gw, user_id, 10).await;
    assert_eq!(by, HashMap::from([("chan-b/multi".to_string(), 10)]));

    // The operator sees it, and takes `chan-b` out of service too: the
    // Anthropic channel serves.
    let (status, list) = gw.admin(Method::GET, "/admin/channels", None).await;
    assert_eq!(status, 200);
    let multi: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["model"] == "multi")
        .collect();
    let states: Vec<(&str, &str)> = multi
        .iter()
        .map(|c| {
            (
                c["provider"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("chan-a", "cooling_down"),
            ("chan-b", "healthy"),
            ("chan-claude", "healthy")
        ]
    );
    assert_eq!(multi[0]["recent_failure_ratio"], 1.0);
    assert_eq!(
        multi[0]["attempts"],
        serde_json::json!({"served": 0, "failed": 3, "refused_key": 0})
    );
    assert_eq!(multi[1]["attempts"]["served"], 10);
    assert!(multi[1]["upstream_latency_ms"]["mean"].as_f64().unwrap() > 0.0);
    // And Prometheus, per channel.
    let metrics = gw
        .http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = r#"model="multi",provider="chan-a",upstream_model="multi""#;
    for line in [
        format!("tollgate_channel_attempts_total{{{labels},outcome=\"failed\"}} 3"),
        format!("tollgate_channel_state{{{labels},state=\"cooling_down\"}} 1"),
        format!("tollgate_channel_upstream_seconds_count{{{labels}}} 3"),
    ] {
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
    let (status, b_entry) = gw
        .admin(Method::POST, "/admin/channels/multi/1/disable", None)
        .await;
    assert_eq!((status, b_entry["state"].as_str()), (200, Some("disabled")));
    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(b.requests().len(), 10);
    assert!(main
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/messages")));
    let (status, _) = gw
        .admin(Method::POST, "/admin/channels/multi/1/enable", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw
        .admin(Method::POST, "/admin/channels/multi/9/enable", None)
        .await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn when_every_channel_cools_down_the_longest_resting_one_is_tried() {
    // One channel: cooling down never means failing without trying.
    let (main, a) = (start_mock().await, start_mock().await);
    a.set_default(Script::new().status(500));
    let channels = "[[models.multi.channels]]\nprovider = \"chan-a\"\n";
    let config = format!(
        "{}\n[failover]\nhealth_min_requests = 2\ncooldown_secs = 3600\n",
        channels_config(&a.url, &a.url, channels)
    );
    let gw = start_gateway_with(&main.url, None, "", &config).await;
    let (_, key) = gw.user("resting", "default", "10").await;
    for _ in 0..3 {
        let resp = gw.chat(&key, chat_body("multi", false)).await;
        assert_eq!(resp.status(), 502);
    }
    a.clear_default();
    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(
        resp.status(),
        200,
        "tried although cooling down, and served"
    );
    assert_eq!(a.requests().len(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn responses_turns_fail_over_like_chat() {
    let Tiers {
        a,
        b,
        gw,
        user_id,
        key,
        ..
    } = three_tiers("responses-failover", "").await;
    a.set_default(Script::new().status(500));
    let before = gw.balance(user_id).await;
    let turn = |extra: Value| {
        let mut body = serde_json::json!({"model": "multi", "input": "Say hello"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let (status, whole) = gw
        .post_json("/v1/responses", &key, &turn(serde_json::json!({})))
        .await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["status"], "completed");
    let streamed = gw
        .http
        .post(format!("{}/v1/responses", gw.url))
        .bearer_auth(&key)
        .json(&turn(serde_json::json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let text = streamed.text().await.unwrap();
    assert!(text.contains("response.completed"), "{text}");
    let (status, queued) = gw
        .post_json(
            "/v1/responses",
            &key,
            &turn(serde_json::json!({"background": true})),
        )
        .await;
    assert_eq!(status, 200, "{queued}");
    let by = served_by(&gw, user_id, 3).await;
    assert_eq!(by, HashMap::from([("chan-b/multi".to_string(), 3)]));
    assert_eq!((a.requests().len(), b.requests().len()), (3, 3));
    let records = gw.wait_for_usage(user_id, 3).await;
    assert!(records.iter().all(|r| r.cost > 0), "{records:?}");
    gw.assert_charged_exactly(user_id, before, &records).await;
    gw.stop().await;
}

/// `multi` on `chan-keys` alone, whose keys are the mock's and `others`,
/// with one attempt per request: only key rotation can save a request.
async fn keyed(user: &str, others: &[&str]) -> (Mock, Gateway, i64, String) {
    let (main, a) = (start_mock().await, start_mock().await);
    let keys: Vec<String> = others.iter().map(|k| format!("{k:?}")).collect();
    let config = format!(
        r#"
[providers.chan-keys]
kind = "openai"
base_url = "{}"
api_keys = ["{UPSTREAM_KEY}", {}]

[models.multi]
provider = "chan-keys"
input_price = 1
output_price = 2

[failover]
max_attempts = 1
"#,
        a.url,
        keys.join(", ")
    );
    let gw = start_gateway_with(&main.url, None, "", &config).await;
    let (user_id, key) = gw.user(user, "default", "10").await;
    (a, gw, user_id, key)
}

/// How many requests the mock received with each key.
fn by_key(mock: &Mock) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for r in mock.requests() {
        let auth = r.header("authorization").unwrap_or_default();
        *by.entry(auth.trim_start_matches("Bearer ").to_string())
            .or_insert(0) += 1;
    }
    by
}

#[tokio::test]
async fn a_channel_rotates_its_upstream_keys() {
    let (a, gw, user_id, key) = keyed("keys", &["sk-second"]).await;
    a.accept_key("sk-second");
    // Both keys serve, in turn (`sk-second` is rate-limited from the 5th
    // request on).
    for i in 0..8 {
        if i == 4 {
            let limited = Script::new()
                .status(429)
                .header("retry-after", "60")
                .body(serde_json::json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}));
            a.set_default(Script::new().for_key("sk-second", limited));
        }
        let resp = gw.chat(&key, chat_body("multi", i % 2 == 0)).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
    // Requests 0–3 alternate; the 5th or 6th meets the 429 on `sk-second`
    // and is sent again with the first key; `sk-second` then rests
    // (`retry-after: 60`) and the others go to the first key.
    let used = by_key(&a);
    assert_eq!(used.get("sk-second"), Some(&3), "{used:?}");
    assert_eq!(used.get(UPSTREAM_KEY), Some(&6), "{used:?}");
    // One record per request, each charged once; the channel stays healthy.
    let records = gw.wait_for_usage(user_id, 8).await;
    assert!(records.iter().all(|r| r.status == 200 && r.cost > 0));
    let (_, list) = gw.admin(Method::GET, "/admin/channels", None).await;
    let multi = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "multi")
        .unwrap();
    assert_eq!(multi["state"], "healthy", "{multi}");
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_upstream_key_is_set_aside_for_the_channels_next() {
    // `sk-revoked` gets 401 from the mock.
    let (a, gw, _, key) = keyed("revoked", &["sk-revoked"]).await;
    for _ in 0..6 {
        let resp = gw.chat(&key, chat_body("multi", false)).await;
        assert_eq!(resp.status(), 200);
    }
    let used = by_key(&a);
    assert_eq!(
        used.get("sk-revoked"),
        Some(&1),
        "tried once, then resting: {used:?}"
    );
    assert_eq!(used.get(UPSTREAM_KEY), Some(&6));
    let body = gw
        .chat(&key, chat_body("multi", false))
        .await
        .text()
        .await
        .unwrap();
    assert!(!body.contains("sk-revoked"));
    gw.stop().await;
}

#[tokio::test]
async fn a_conversation_sticks_to_the_channel_that_served_its_last_turn() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let channels = "[[models.multi.channels]]\nprovider = \"chan-a\"\n\n[[models.multi.channels]]\nprovider = \"chan-b\"\n";
    let config = format!(
        "{}\n[failover]\nhealth_min_requests = 1\ncooldown_secs = 3600\n",
        channels_config(&a.url, &b.url, channels)
    );
    let gw = start_gateway_with(&main.url, None, "", &config).await;
    let (_, key) = gw.user("sticky", "default", "10").await;
    let served = || (a.requests().len(), b.requests().len());

    // Chat with a prompt_cache_key: every turn on one channel (two equal
    // channels would split 20 requests ten and ten).
    let mut chat = chat_body("multi", false);
    chat["prompt_cache_key"] = "conversation-1".into();
    for _ in 0..20 {
        assert_eq!(gw.chat(&key, chat.clone()).await.status(), 200);
    }
    let (on_a, on_b) = served();
    assert!(on_a == 20 || on_b == 20, "{on_a} / {on_b}");
    let (sticky, other) = if on_a == 20 { (&a, &b) } else { (&b, &a) };

    // It fails: the conversation moves, and sticks to the channel it moved to.
    sticky.set_default(Script::new().status(500));
    for _ in 0..5 {
        assert_eq!(gw.chat(&key, chat.clone()).await.status(), 200);
    }
    assert_eq!(other.requests().len(), 5);
    sticky.clear_default();
    gw.admin(Method::POST, "/admin/channels/multi/0/enable", None)
        .await;
    gw.admin(Method::POST, "/admin/channels/multi/1/enable", None)
        .await;
    for _ in 0..5 {
        assert_eq!(gw.chat(&key, chat.clone()).await.status(), 200);
    }
    assert_eq!(other.requests().len(), 10, "still where it moved");

    // Claude Code's session, through Messages.
    let before = served();
    let messages = serde_json::json!({
        "model": "multi", "max_tokens": 50,
        "metadata": {"user_id": "user_x_account_y_session_z"},
        "messages": [{"role": "user", "content": "Say hello"}],
    });
    for _ in 0..10 {
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
    }
    let after = served();
    let moved = (after.0 - before.0, after.1 - before.1);
    assert!(moved == (10, 0) || moved == (0, 10), "{moved:?}");

    // A Responses chain: each turn continues the one before.
    let before = served();
    let mut previous: Option<String> = None;
    for _ in 0..8 {
        let mut turn = serde_json::json!({"model": "multi", "input": "Say hello"});
        if let Some(id) = &previous {
            turn["previous_response_id"] = id.clone().into();
        }
        let (status, body) = gw.post_json("/v1/responses", &key, &turn).await;
        assert_eq!(status, 200, "{body}");
        previous = body["id"].as_str().map(str::to_string);
    }
    let after = served();
    let moved = (after.0 - before.0, after.1 - before.1);
    assert!(moved == (8, 0) || moved == (0, 8), "{moved:?}");
    gw.stop().await;
}
