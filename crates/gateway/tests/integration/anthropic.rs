//! The Anthropic API: native pass-through, translation in both directions,
//! count_tokens, legacy completions, Anthropic-shaped errors; billing exact.

use serde_json::{json, Value};

use crate::common::*;

async fn post_messages(gw: &Gateway, path: &str, key: &str, body: Value) -> reqwest::Response {
    gw.http
        .post(format!("{}{path}", gw.url))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14",
        )
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn messages_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "stream": stream,
        "metadata": {"user_id": "u-1"},
    })
}

/// Parses an SSE body into (event, data JSON) pairs.
fn events(text: &str) -> Vec<(String, Value)> {
    let mut d = protocol::sse::SseDecoder::new();
    d.push(text.as_bytes());
    let mut out = Vec::new();
    while let Some(e) = d.next_event() {
        let data = serde_json::from_str(&e.data).unwrap_or(Value::String(e.data.clone()));
        out.push((e.event.unwrap_or_default(), data));
    }
    out
}

#[tokio::test]
async fn native_messages_pass_through_with_headers_and_exact_billing() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ann", "default", "1").await;

    let resp = post_messages(
        &gw,
        "/v1/messages?beta=true",
        &key,
        messages_body("claude-test", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, anthropic_message("claude-test"));

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(UPSTREAM_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14")
    );
    // Everything but the model reaches the upstream untouched (cache_control included).
    let mut expected = messages_body("claude-up", false);
    expected["stream"] = json!(false);
    assert_eq!(sent.body, expected);

    let records = gw.wait_for_usage(id, 1).await;
    assert_eq!(records[0].cost, CLAUDE_TEST_COST);
    assert_eq!(
        (
            records[0].input_tokens,
            records[0].cached_tokens,
            records[0].cache_write_tokens,
            records[0].output_tokens
        ),
        (30, 4, 6, 7)
    );

    // Streaming: the upstream's events, byte for byte but for the model name.
    let resp = post_messages(
        &gw,
        "/v1/messages",
        &key,
        messages_body("claude-test", true),
    )
    .await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(
        resp.text().await.unwrap(),
        anthropic_stream_events("claude-test").concat()
    );
    let records = gw.wait_for_usage(id, 2).await;
    assert!(records.iter().all(|r| r.cost == CLAUDE_TEST_COST));
    assert_eq!(
        gw.balance(id).await,
        (1_000_000_000 - 2 * CLAUDE_TEST_COST, 0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn messages_client_served_by_an_openai_upstream() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("bea", "default", "1").await;

    let mut body = messages_body("gpt-test", false);
    body["tools"] = json!([
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
    ]);
    body["tool_choice"] = json!({"type": "auto"});
    let resp = post_messages(&gw, "/v1/messages", &key, body).await;
    assert_eq!(resp.status(), 200);
    let message: Value = resp.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "gpt-test");
    assert_eq!(
        message["content"][0],
        json!({"type": "text", "text": PIECES.concat()})
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["usage"]["input_tokens"], 8);
    assert_eq!(message["usage"]["cache_read_input_tokens"], 2);
    assert_eq!(message["usage"]["output_tokens"], 5);

    // The upstream got a chat-completions request: system first, the
    // function tool mapped, the server tool dropped.
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    let sent = sent.body;
    assert_eq!(sent["model"], "mock-model");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1);
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["user"], "u-1");

    // Streaming through translation.
    let resp = post_messages(&gw, "/v1/messages", &key, messages_body("gpt-test", true)).await;
    let evs = events(&resp.text().await.unwrap());
    assert_eq!(evs.first().unwrap().0, "message_start");
    assert_eq!(evs.last().unwrap().0, "message_stop");
    let text: String = evs
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(String::from))
        .collect();
    assert_eq!(text, PIECES.concat());
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["usage"]["output_tokens"], 5);

    let records = gw.wait_for_usage(id, 2).await;
    assert!(
        records.iter().all(|r| r.cost == GPT_TEST_COST),
        "{records:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn chat_client_served_by_an_anthropic_upstream() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("cat", "default", "1").await;

    // The upstream answers its text and a tool call.
    mock.push(Script::new().tool_call(ToolCall::new(
        "toolu_1",
        "get_weather",
        &["{\"city\": \"Paris\"}"],
    )));
    let body = json!({
        "model": "claude-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "max_tokens": 100,
    });
    let resp = gw.chat(&key, body).await;
    assert_eq!(resp.status(), 200);
    let completion: Value = resp.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "claude-test");
    let message = &completion["choices"][0]["message"];
    assert_eq!(message["content"], CLAUDE_TEXT);
    assert_eq!(message["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(completion["usage"]["prompt_tokens"], 30);
    assert_eq!(
        completion["usage"]["prompt_tokens_details"]["cached_tokens"],
        4
    );

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    let sent = sent.body;
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(sent["max_tokens"], 100);
    assert_eq!(sent["tools"][0]["input_schema"], json!({"type": "object"}));

    // Streaming: OpenAI chunks, the usage chunk only when asked for.
    let mut body = chat_body("claude-test", true);
    body["stream_options"] = json!({"include_usage": true});
    let text = gw.chat(&key, body).await.text().await.unwrap();
    let evs = events(&text);
    assert_eq!(evs.last().unwrap().1, Value::String("[DONE]".into()));
    let content: String = evs
        .iter()
        .filter_map(|(_, d)| {
            d["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(content, CLAUDE_TEXT);
    let usage = &evs[evs.len() - 2].1;
    assert_eq!(usage["usage"]["completion_tokens"], 7);

    // n > 1 cannot be served by an Anthropic upstream: refused, nothing held.
    let mut body = chat_body("claude-test", false);
    body["n"] = json!(2);
    let resp = gw.chat(&key, body).await;
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("`n`"));

    let records = gw.wait_for_usage(id, 2).await;
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.cost == CLAUDE_TEST_COST));
    assert_eq!(
        gw.balance(id).await,
        (1_000_000_000 - 2 * CLAUDE_TEST_COST, 0)
    );
    gw.stop().await;
}

#[tokio::test]
async fn anthropic_routes_answer_errors_in_anthropics_shape() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("dan", "default", "0").await;
    let check = |status: u16, kind: &'static str| {
        move |(s, body): (u16, Value)| {
            assert_eq!(s, status, "{body}");
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind, "{body}");
            assert!(body["error"]["message"].is_string());
        }
    };
    async fn call(gw: &Gateway, key: &str, body: Value) -> (u16, Value) {
        let resp = post_messages(gw, "/v1/messages", key, body).await;
        (resp.status().as_u16(), resp.json().await.unwrap())
    }
    check(401, "authentication_error")(
        call(&gw, "sk-nope", messages_body("claude-test", false)).await,
    );
    check(404, "not_found_error")(call(&gw, &key, messages_body("claude-nope", false)).await);
    check(400, "invalid_request_error")(call(&gw, &key, json!({"messages": []})).await);
    // No balance: Anthropic's "credit balance too low" is a 400.
    check(400, "invalid_request_error")(call(&gw, &key, messages_body("claude-test", false)).await);

    // Upstream client errors keep their status, in Anthropic's shape, scrubbed.
    gw.admin(
        reqwest::Method::POST,
        &format!("/admin/users/{id}/balance"),
        Some(json!({"amount_usd": "1", "reason": "t"})),
    )
    .await;
    mock.set_default(Script::new().status(400));
    let (s, body) = call(&gw, &key, messages_body("gpt-test", false)).await;
    check(400, "invalid_request_error")((s, body.clone()));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key provided: [redacted]"),
        "{body}"
    );
    let (s, body) = call(&gw, &key, messages_body("claude-test", false)).await;
    check(400, "invalid_request_error")((s, body.clone()));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad request for key [redacted]"),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn count_tokens_is_asked_or_estimated_and_free() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("eve", "default", "1").await;
    let body = json!({"model": "claude-test", "messages": [{"role": "user", "content": "Hello there, how are you?"}]});
    // Not the mock's word count (5): what the upstream says is passed on.
    mock.push(Script::new().body(json!({"input_tokens": 42})));
    let resp = post_messages(
        &gw,
        "/v1/messages/count_tokens?beta=true",
        &key,
        body.clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"input_tokens": 42})
    );
    assert_eq!(
        mock.requests().pop().unwrap().path,
        "/v1/messages/count_tokens"
    );

    let mut body = body;
    body["model"] = json!("gpt-test");
    let resp = post_messages(&gw, "/v1/messages/count_tokens", &key, body).await;
    assert_eq!(resp.headers()["x-tollgate-token-count"], "estimate");
    let tokens = resp.json::<Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    assert!((8..20).contains(&tokens), "{tokens}");
    assert_eq!(gw.balance(id).await, (1_000_000_000, 0));
    gw.stop().await;
}

#[tokio::test]
async fn legacy_complete_over_both_upstream_kinds() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("fay", "default", "1").await;
    let body = |model: &str, stream: bool| {
        json!({
            "model": model, "prompt": "\n\nHuman: Say hello\n\nAssistant:",
            "max_tokens_to_sample": 50, "stream": stream,
        })
    };
    for model in ["claude-test", "gpt-test"] {
        let resp = post_messages(&gw, "/v1/complete", &key, body(model, false)).await;
        assert_eq!(resp.status(), 200);
        let c: Value = resp.json().await.unwrap();
        assert_eq!(c["type"], "completion");
        assert_eq!(c["stop_reason"], "stop_sequence");
        assert_eq!(c["model"], model);
        let expected = if model == "gpt-test" {
            PIECES.concat()
        } else {
            CLAUDE_TEXT.to_string()
        };
        assert_eq!(c["completion"], expected.as_str());

        let text = post_messages(&gw, "/v1/complete", &key, body(model, true))
            .await
            .text()
            .await
            .unwrap();
        let evs = events(&text);
        let streamed: String = evs
            .iter()
            .filter_map(|(_, d)| d["completion"].as_str().map(String::from))
            .collect();
        assert_eq!(streamed, expected);
        assert_eq!(evs.last().unwrap().1["stop_reason"], "stop_sequence");
    }
    let records = gw.wait_for_usage(id, 4).await;
    let claude: Vec<_> = records
        .iter()
        .filter(|r| r.model == "claude-test")
        .collect();
    assert!(claude
        .iter()
        .all(|r| r.cost == CLAUDE_TEST_COST && r.endpoint == "complete"));
    let gpt: Vec<_> = records.iter().filter(|r| r.model == "gpt-test").collect();
    assert!(gpt.iter().all(|r| r.cost == GPT_TEST_COST));

    // A prompt not in the legacy format is a clear 400.
    let resp = post_messages(
        &gw,
        "/v1/complete",
        &key,
        json!({"model": "claude-test", "prompt": "Hi", "max_tokens_to_sample": 5}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    gw.stop().await;
}

#[tokio::test]
async fn the_base_url_answers_probes() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let resp = gw.http.head(format!("{}/", gw.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}
