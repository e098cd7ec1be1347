//! Rate limits from `[rate_limits]`: exactly the limit gets through a burst,
//! the rest get a 429 in the client's shape with `retry-after`, nothing
//! refused is charged, and admitted answers tell the client its headroom.

use std::collections::HashMap;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_model_at_60_rpm_admits_60_of_a_burst_of_200() {
    let mock = start_mock().await;
    let limits = "[rate_limits.models.cheap]\nrpm = 60\n";
    let gw = start_gateway_with(&mock.url, None, "", limits).await;
    let (user_id, key) = gw.user("limited", "default", "10").await;
    let before = gw.balance(user_id).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let request = gw
                .http
                .post(format!("{}/v1/chat/completions", gw.url))
                .bearer_auth(&key)
                .json(&chat_body("cheap", false));
            tokio::spawn(async move {
                let resp = request.send().await.unwrap();
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                (status, headers, resp.text().await.unwrap())
            })
        })
        .collect();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for task in tasks {
        let (status, headers, body) = task.await.unwrap();
        *by_status.entry(status).or_default() += 1;
        match status {
            200 => {
                assert_eq!(headers["x-ratelimit-limit-requests"], "60");
                let remaining: u64 = headers["x-ratelimit-remaining-requests"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(remaining < 60);
                assert!(headers.contains_key("x-ratelimit-reset-requests"));
            }
            429 => {
                let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry), "{retry}");
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains("requests per minute of the model `cheap`"),
                    "{message}"
                );
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(by_status, HashMap::from([(200, 60), (429, 140)]));
    // Only what was admitted reached the upstream and was charged.
    assert_eq!(mock.requests().len(), 60);
    let records = gw.wait_for_usage(user_id, 60).await;
    assert_eq!(records.len(), 60);
    gw.assert_charged_exactly(user_id, before, &records).await;
    // Another model is not limited.
    let resp = gw.chat(&key, chat_body("gpt-test", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-ratelimit-limit-requests"));
    gw.stop().await;
}

#[tokio::test]
async fn a_group_limits_each_of_its_users_and_anthropic_clients_get_its_headers() {
    let mock = start_mock().await;
    let limits = "[rate_limits.groups.vip]\nrpm = 2\nconcurrency = 5\n";
    let gw = start_gateway_with(&mock.url, None, "", limits).await;
    let (_, first) = gw.user("vip-one", "vip", "10").await;
    let (_, second) = gw.user("vip-two", "vip", "10").await;
    let messages = json!({
        "model": "claude-test", "max_tokens": 50,
        "messages": [{"role": "user", "content": "Say hello"}],
    });
    let send = |key: String| {
        let request = gw
            .http
            .post(format!("{}/v1/messages", gw.url))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&messages);
        async move { request.send().await.unwrap() }
    };
    for expected_remaining in ["1", "0"] {
        let resp = send(first.clone()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["anthropic-ratelimit-requests-limit"], "2");
        assert_eq!(
            resp.headers()["anthropic-ratelimit-requests-remaining"],
            expected_remaining
        );
        assert!(resp.headers()["anthropic-ratelimit-requests-reset"]
            .to_str()
            .unwrap()
            .ends_with('Z'));
    }
    let refused = send(first.clone()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // Each user of the group has the group's limit.
    assert_eq!(send(second).await.status(), 200);
    gw.stop().await;
}
