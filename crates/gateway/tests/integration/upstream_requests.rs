//! What the upstream receives: output caps held to the model's
//! `max_output_tokens`, and late system messages (as Claude Code sends
//! them) kept where they are, or sent as user text to a provider that
//! refuses them.

use serde_json::{json, Value};

use crate::common::*;

/// Models with caps, and a provider configured for servers that refuse a
/// system message after the first turn.
const TAIL: &str = r#"
[models."claude-capped"]
provider = "claude"
upstream_model = "claude-up"
input_price = 3
output_price = 15
max_output_tokens = 2048

[providers.strict]
kind = "openai"
base_url = "UPSTREAM"
api_key = "sk-upstream-very-secret-0123456789"
late_system_messages = "as_user"

[models."qwen-test"]
provider = "strict"
upstream_model = "qwen-up"
input_price = 1
output_price = 1
max_output_tokens = 16384
"#;

async fn gateway(mock: &Mock) -> Gateway {
    start_gateway_with(&mock.url, None, "", &TAIL.replace("UPSTREAM", &mock.url)).await
}

async fn post(gw: &Gateway, path: &str, key: &str, body: Value) -> (u16, Value) {
    gw.post_json(path, key, &body).await
}

/// Claude Code's first request, in short: a user turn carrying a
/// system-reminder and the prompt, then a system message with the
/// environment section.
fn claude_code_body(model: &str, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>Skills are available.</system-reminder>"},
                {"type": "text", "text": "say hi"}
            ]},
            {"role": "system", "content": [{"type": "text", "text": "Environment: Linux, cwd /tmp"}]}
        ]
    })
}

#[tokio::test]
async fn output_caps_are_held_to_the_models_limit_on_every_route() {
    let mock = start_mock().await;
    let gw = gateway(&mock).await;
    let (_, key) = gw.user("victor", "default", "1").await;

    // Chat completions (gpt-test allows 1,000), both cap fields.
    let mut chat = chat_body("gpt-test", false);
    chat["max_tokens"] = json!(32_000);
    assert_eq!(post(&gw, "/v1/chat/completions", &key, chat).await.0, 200);
    let mut chat = chat_body("gpt-test", true);
    chat["max_completion_tokens"] = json!(5_000);
    assert_eq!(post(&gw, "/v1/chat/completions", &key, chat).await.0, 200);
    // A cap under the model's is left alone.
    let mut chat = chat_body("gpt-test", false);
    chat["max_tokens"] = json!(10);
    assert_eq!(post(&gw, "/v1/chat/completions", &key, chat).await.0, 200);
    // Messages translated to chat completions.
    let (s, body) = post(
        &gw,
        "/v1/messages",
        &key,
        claude_code_body("gpt-test", 32_000),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // Messages passed through to Anthropic.
    let (s, body) = post(
        &gw,
        "/v1/messages",
        &key,
        claude_code_body("claude-capped", 32_000),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // Chat completions translated to Messages.
    let mut chat = chat_body("claude-capped", false);
    chat["max_completion_tokens"] = json!(32_000);
    let (s, body) = post(&gw, "/v1/chat/completions", &key, chat).await;
    assert_eq!(s, 200, "{body}");

    let sent: Vec<(String, Value)> = mock
        .requests()
        .into_iter()
        .map(|r| (r.path, r.body))
        .collect();
    assert_eq!(sent.len(), 6);
    assert_eq!(sent[0].1["max_tokens"], 1000);
    assert_eq!(sent[1].1["max_completion_tokens"], 1000);
    assert_eq!(sent[1].1.get("max_tokens"), None);
    assert_eq!(sent[2].1["max_tokens"], 10);
    assert_eq!(sent[3].0, "/v1/chat/completions");
    assert_eq!(sent[3].1["max_tokens"], 1000);
    assert_eq!(sent[4].0, "/v1/messages");
    assert_eq!(sent[4].1["max_tokens"], 2048);
    assert_eq!(sent[5].0, "/v1/messages");
    assert_eq!(sent[5].1["max_tokens"], 2048);
    gw.stop().await;
}

#[tokio::test]
async fn late_system_messages_stay_system_messages_unless_the_provider_refuses_them() {
    let mock = start_mock().await;
    let gw = gateway(&mock).await;
    let (_, key) = gw.user("wendy", "default", "1").await;

    let (s, body) = post(&gw, "/v1/messages", &key, claude_code_body("gpt-test", 100)).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = post(
        &gw,
        "/v1/messages",
        &key,
        claude_code_body("qwen-test", 100),
    )
    .await;
    assert_eq!(s, 200, "{body}");

    let sent = mock.requests();
    let roles = |body: &Value| -> Vec<String> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_string())
            .collect()
    };
    // OpenAI takes system messages anywhere: the environment section stays
    // a system message, after the user's prompt, as Claude Code sent it.
    let openai = &sent[0].body;
    assert_eq!(roles(openai), ["system", "user", "system"], "{openai}");
    assert_eq!(
        openai["messages"][2]["content"],
        "Environment: Linux, cwd /tmp"
    );

    // A provider that refuses late system messages gets it as user text,
    // before the prompt, so that the prompt is still what the model answers.
    let strict = &sent[1].body;
    assert_eq!(roles(strict), ["system", "user"], "{strict}");
    let parts = strict["messages"][1]["content"].as_array().unwrap();
    let last = parts.last().unwrap();
    assert_eq!(last["text"], "say hi", "{strict}");
    let text = strict["messages"][1]["content"].to_string();
    assert!(text.contains("Environment: Linux, cwd /tmp"), "{strict}");
    gw.stop().await;
}
