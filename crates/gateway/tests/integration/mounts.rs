//! OhMyGPT's coding-agent base URLs reach the same handlers as `/v1`, with
//! errors in the shape of the protocol below the mount.

use serde_json::{json, Value};

use crate::common::*;

const CC: &str = "/api/v1/ai/openai/cc-omg";
const CODEX: &str = "/api/v1/ai/openai/codex-omg/v1";

#[tokio::test]
async fn claude_code_and_codex_mounts_serve_messages_chat_responses_and_models() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("mounts", "default", "10").await;

    let messages = json!({"model": "claude-test", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = gw
        .post_json(&format!("{CC}/v1/messages"), &key, &messages)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "message", "{body}");

    let (status, body) = gw
        .post_json(
            &format!("{CC}/v1/chat/completions"),
            &key,
            &chat_body("cheap", false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion", "{body}");

    let responses = json!({"model": "cheap", "input": "hi"});
    let (status, body) = gw
        .post_json(&format!("{CODEX}/responses"), &key, &responses)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "response", "{body}");

    for models in [format!("{CC}/models"), format!("{CODEX}/models")] {
        let resp = gw
            .http
            .get(format!("{}{models}", gw.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{models}");
        let list: Value = resp.json().await.unwrap();
        assert!(
            list["data"].as_array().is_some_and(|d| !d.is_empty()),
            "{list}"
        );
    }

    // Each is metered like its `/v1` twin.
    let records = gw.wait_for_usage(user_id, 3).await;
    assert_eq!(records.len(), 3);
    assert!(
        records.iter().all(|r| r.status == 200 && r.cost > 0),
        "{records:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn errors_under_a_mount_come_in_the_shape_of_the_protocol_below_it() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let body = json!({"model": "claude-test", "max_tokens": 5, "messages": []});
    let (status, error) = gw
        .post_json(&format!("{CC}/v1/messages"), "sk-wrong", &body)
        .await;
    assert_eq!(status, 401);
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "authentication_error", "{error}");
    let (status, error) = gw
        .post_json(&format!("{CODEX}/responses"), "sk-wrong", &body)
        .await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "invalid_api_key", "{error}");
    assert!(mock.requests().is_empty());
    gw.stop().await;
}
