//! The named scenarios over HTTP: Claude Code's upstream behind its
//! recording front proxy, and Codex's chat upstream.

use mock_upstream::{Options, Scenario};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn claude_code_turns_through_the_recording_front() {
    let dir = std::env::temp_dir().join(format!("mock-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let upstream = mock_upstream::start(Options {
        keys: vec!["sk-up".into()],
        scenario: Some(Scenario::ClaudeCode),
        record_file: Some(dir.join("upstream.jsonl")),
        ..Options::default()
    })
    .await
    .unwrap();
    let base = upstream.url.trim_end_matches("/v1").to_string();
    let front = mock_upstream::start(Options {
        scenario: Some(Scenario::Front {
            target: base.clone(),
        }),
        record_file: Some(dir.join("client.jsonl")),
        ..Options::default()
    })
    .await
    .unwrap();
    let body = json!({"model": "m", "max_tokens": 10, "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 100},
        "tools": [{"name": "Bash", "input_schema": {}}],
        "messages": [{"role": "user", "content": "run it"}]});
    let text = client()
        .post(format!("{}/messages?beta=true", front.url))
        .header("x-api-key", "sk-up")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#""signature":"bW9jay1zaWduYXR1cmUtdG9sbGdhdGU=""#),
        "{text}"
    );
    assert!(text.contains(r#""name":"Bash""#), "{text}");
    // A wrong key: the upstream's 401, through the front.
    let resp = client()
        .post(format!("{}/messages", front.url))
        .header("x-api-key", "sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let _ = resp.text().await;

    let upstream_lines = lines(&dir.join("upstream.jsonl"));
    assert_eq!(upstream_lines.len(), 4, "arrival and answer of each");
    assert_eq!(upstream_lines[1]["reply"], "tool");
    assert_eq!(upstream_lines[1]["usage"]["output_tokens"], 12);
    assert_eq!(upstream_lines[1]["path"], "/v1/messages?beta=true");
    assert_eq!(upstream_lines[3]["reply"], "unauthorized");
    let client_lines = lines(&dir.join("client.jsonl"));
    let answered: Vec<&Value> = client_lines
        .iter()
        .filter(|r| r.get("status").is_some())
        .collect();
    assert_eq!(answered.len(), 2);
    assert_eq!(answered[0]["side"], "client");
    assert!(answered[0]["response_headers"]["content-type"]
        .as_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(answered[0]["response_body"].as_str().unwrap(), text);
    assert_eq!(answered[1]["status"], 401);
    let served: Value = client()
        .get(format!("{base}/__requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["requests"].as_array().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn codex_chat_scripts_a_tool_turn_then_the_final_text() {
    let mock = mock_upstream::start(Options {
        keys: vec!["sk-up".into()],
        scenario: Some(Scenario::CodexChat),
        ..Options::default()
    })
    .await
    .unwrap();
    let tools =
        json!([{"type": "function", "function": {"name": "exec_command", "parameters": {}}}]);
    let turn = |messages: Value| {
        client()
            .post(format!("{}/chat/completions", mock.url))
            .bearer_auth("sk-up")
            .json(&json!({"model": "m", "messages": messages, "tools": tools}))
            .send()
    };
    let first: Value = turn(json!([{"role": "user", "content": "go"}]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = &first["choices"][0]["message"];
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        r#"{"cmd": "echo tollgate-codex-ok"}"#
    );
    assert!(message["reasoning_content"].is_string());
    let second: Value = turn(json!([
        {"role": "user", "content": "go"},
        message,
        {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "tollgate-codex-ok\n"}
    ]))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        second["choices"][0]["message"]["content"],
        "Tollgate Codex round trip done; the command printed: tollgate-codex-ok"
    );
    // A tool message answering nothing is refused, as OpenAI does.
    let resp = turn(json!([{"role": "tool", "tool_call_id": "x", "content": "?"}]))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let records: Value = client()
        .get(format!("{}/__requests", mock.url.trim_end_matches("/v1")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let replies: Vec<&str> = records["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reply"].as_str().unwrap())
        .collect();
    assert_eq!(replies, ["tool", "final", "error"]);
}
