//! The mock over HTTP: routes, keys, scripts and their layers, faults,
//! breaks, pacing and the request log.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_upstream::{answers, Api, Fault, Mock, Options, Script, State, ToolCall, Usage};
use serde_json::{json, Value};

const KEY: &str = "sk-test-key";

async fn mock() -> Mock {
    mock_upstream::start(Options {
        keys: vec![KEY.into()],
        record: true,
        ..Options::default()
    })
    .await
    .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn claude(stream: bool) -> Value {
    json!({"model": "c", "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(mock: &Mock, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", mock.url))
        .bearer_auth(KEY)
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn post_json(mock: &Mock, path: &str, body: &Value) -> (u16, Value) {
    let resp = post(mock, path, body).await;
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// The `data:` payloads of an SSE body.
fn data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.into())))
        .collect()
}

fn control(mock: &Mock, method: reqwest::Method, route: &str) -> reqwest::RequestBuilder {
    let base = mock.url.trim_end_matches("/v1");
    client().request(method, format!("{base}/__mock/{route}"))
}

#[tokio::test]
async fn built_in_answers_in_both_protocols() {
    let mock = mock().await;
    let (s, body) = post_json(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(s, 200);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        answers::OPENAI_TEXT.concat()
    );
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert_eq!(body["usage"]["prompt_tokens"], answers::OPENAI_INPUT);

    let mut tools = chat(true);
    tools["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    tools["stream_options"] = json!({"include_usage": true});
    let text = post(&mock, "/chat/completions", &tools)
        .await
        .text()
        .await
        .unwrap();
    let chunks = data(&text);
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\":\"Paris\"}");
    assert_eq!(chunks[chunks.len() - 2]["usage"]["completion_tokens"], 2);
    assert_eq!(chunks.last().unwrap(), "[DONE]");

    let (s, message) = post_json(&mock, "/messages", &claude(false)).await;
    assert_eq!(s, 200);
    assert_eq!(message["content"][0]["text"], answers::CLAUDE_TEXT.concat());
    assert_eq!(message["usage"]["cache_creation_input_tokens"], 2);
    let text = post(&mock, "/messages", &claude(true))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

    let (s, count) = post_json(
        &mock,
        "/messages/count_tokens",
        &json!({"model": "c", "system": "Be brief.", "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .await;
    assert_eq!((s, count), (200, json!({"input_tokens": 5})));

    let (s, e) = post_json(&mock, "/embeddings", &json!({"model": "e", "input": "x"})).await;
    assert_eq!((s, &e["usage"]["prompt_tokens"]), (200, &json!(12)));
    let (s, r) = post_json(&mock, "/responses", &json!({"model": "r", "input": "x"})).await;
    assert_eq!(
        (s, &r["output"][0]["content"][0]["text"]),
        (200, &json!("Hello from the mock"))
    );
    let (s, c) = post_json(&mock, "/completions", &json!({"model": "l", "prompt": "x"})).await;
    assert_eq!(
        (s, &c["choices"][0]["text"]),
        (200, &json!("Hello from the mock"))
    );
    assert!(mock.requests().iter().all(|r| r.state == State::Done));
}

#[tokio::test]
async fn keys_routes_bodies_and_anthropic_checks_are_refused_without_a_script() {
    let mock = mock().await;
    mock.push(Script::new().status(500));
    let http = client();
    let resp = http
        .post(format!("{}/chat/completions", mock.url))
        .bearer_auth("sk-wrong")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let resp = http
        .post(format!("{}/messages", mock.url))
        .header("x-api-key", KEY)
        .json(&claude(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "anthropic-version: header is required"
    );
    let (s, body) = post_json(&mock, "/nowhere", &chat(false)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let resp = post(&mock, "/chat/completions", &json!([1])).await;
    assert_eq!(resp.status(), 400);
    let (s, body) = post_json(
        &mock,
        "/messages",
        &json!({"model": "c", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let states: Vec<(State, Option<u16>)> = mock
        .requests()
        .iter()
        .map(|r| (r.state, r.status))
        .collect();
    assert_eq!(
        states,
        [
            (State::Rejected, Some(401)),
            (State::Rejected, Some(401)),
            (State::Rejected, Some(404)),
            (State::Rejected, Some(400)),
            (State::Rejected, Some(400))
        ]
    );
    // The queued script is still waiting for a request that passes.
    let (s, body) = post_json(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(s, 500);
    assert_eq!(
        body["error"]["message"],
        format!("Incorrect API key provided: {KEY}")
    );
    assert_eq!(mock.requests().last().unwrap().state, State::Failed);
}

#[tokio::test]
async fn scripts_stack_in_their_layers() {
    let mock = mock_upstream::start(Options {
        record: true,
        script: Script::new()
            .text(["a"])
            .for_api(Api::Anthropic, Script::new().text(["c"])),
        ..Options::default()
    })
    .await
    .unwrap();
    // Start-up script, per API.
    let (_, body) = post_json(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(body["choices"][0]["message"]["content"], "a");
    let (_, body) = post_json(&mock, "/messages", &claude(false)).await;
    assert_eq!(body["content"][0]["text"], "c");
    // A default over it, a queue over the default, in order.
    let resp = control(&mock, reqwest::Method::PUT, "default")
        .json(&json!({"usage": {"output": 99}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = control(&mock, reqwest::Method::POST, "script")
        .json(&json!([{"status": 429, "headers": {"retry-after": "7"}}, {"text": ["q"]}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"queued": 2}));
    let resp = post(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    let (_, body) = post_json(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(body["choices"][0]["message"]["content"], "q");
    assert_eq!(body["usage"]["completion_tokens"], 99);
    let (_, body) = post_json(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(body["choices"][0]["message"]["content"], "a");
    // A script in the prompt, and one in a header over it.
    let mut marked = chat(false);
    marked["messages"][0]["content"] =
        json!("x [mock-script:{\"text\": [\"p\"], \"usage\": null}] y");
    let (_, body) = post_json(&mock, "/chat/completions", &marked).await;
    assert_eq!(body["choices"][0]["message"]["content"], "p");
    assert!(body.get("usage").is_none());
    let resp = client()
        .post(format!("{}/chat/completions", mock.url))
        .header("x-mock-script", r#"{"openai": {"text": ["h"]}}"#)
        .json(&marked)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "h");
    // The default removed, a bad script refused.
    control(&mock, reqwest::Method::DELETE, "default")
        .send()
        .await
        .unwrap();
    let (_, body) = post_json(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(body["usage"]["completion_tokens"], 1);
    let resp = control(&mock, reqwest::Method::POST, "script")
        .json(&json!({"statu": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(format!("{}/chat/completions", mock.url))
        .header("x-mock-script", "{")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "mock_error");
}

#[tokio::test]
async fn several_keys_and_a_script_per_key() {
    let mock = mock().await;
    let with_key = |key: &'static str| {
        client()
            .post(format!("{}/chat/completions", mock.url))
            .bearer_auth(key)
            .json(&chat(false))
            .send()
    };
    assert_eq!(with_key("sk-second").await.unwrap().status(), 401);
    mock.accept_key("sk-second");
    assert_eq!(with_key("sk-second").await.unwrap().status(), 200);
    mock.control().set_default(Script::new().for_key(
        "sk-second",
        Script::new().status(429).header("retry-after", "60"),
    ));
    let resp = with_key("sk-second").await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "60");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Incorrect API key provided: sk-second"
    );
    assert_eq!(with_key(KEY).await.unwrap().status(), 200);
    let keys: Vec<Option<String>> = mock
        .requests()
        .iter()
        .map(|r| r.header("authorization").map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(keys[3].as_deref(), Some("Bearer sk-test-key"));
}

#[tokio::test]
async fn a_scripted_body_and_tool_call_are_answered_as_written() {
    let mock = mock().await;
    mock.push(Script::new().body(json!({"input_tokens": 42})));
    let (s, body) = post_json(&mock, "/messages/count_tokens", &claude(false)).await;
    assert_eq!((s, body), (200, json!({"input_tokens": 42})));
    mock.push(
        Script::new()
            .text(["Let me look."])
            .tool_call(ToolCall::new("toolu_9", "lookup", &["{\"q\":", "1}"]))
            .usage(Usage {
                input: Some(1),
                ..Usage::default()
            }),
    );
    let (_, body) = post_json(&mock, "/messages", &claude(false)).await;
    assert_eq!(body["content"][0]["text"], "Let me look.");
    assert_eq!(body["content"][1]["input"], json!({"q": 1}));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["usage"]["input_tokens"], 1);
    assert_eq!(body["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn faults_end_the_connection_before_any_byte() {
    let mock = mock().await;
    for fault in [Fault::Close, Fault::Reset] {
        mock.push(Script::new().fault(fault));
        let result = client()
            .post(format!("{}/chat/completions", mock.url))
            .bearer_auth(KEY)
            .json(&chat(false))
            .send()
            .await;
        let error = result.expect_err("no answer");
        assert!(!error.is_timeout(), "{error:?}");
        assert_eq!(mock.requests().last().unwrap().state, State::Failed);
    }
    // The mock still answers on new connections.
    assert_eq!(
        post_json(&mock, "/chat/completions", &chat(false)).await.0,
        200
    );
}

#[tokio::test]
async fn a_reset_is_seen_as_one_by_the_client() {
    let mock = mock().await;
    mock.push(Script::new().fault(Fault::Reset));
    let mut tcp = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
    let body = chat(false).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tcp.read(&mut buf).await;
    assert_eq!(
        read.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
    mock.push(Script::new().fault(Fault::Close));
    let mut tcp = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(
        tcp.read(&mut buf).await.unwrap(),
        0,
        "closed without a byte"
    );
}

#[tokio::test]
async fn breaks_cut_answers_after_their_pieces() {
    let mock = mock().await;
    mock.push(Script::new().text(["a", "b", "c", "d"]).break_after(2));
    let resp = post(&mock, "/chat/completions", &chat(true)).await;
    assert_eq!(resp.status(), 200);
    let mut got = String::new();
    let mut stream = resp.bytes_stream();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => got.push_str(std::str::from_utf8(&bytes).unwrap()),
            Err(_) => failed = true,
        }
    }
    assert!(failed, "the body ends in an error");
    let content: String = data(&got)
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "ab");
    let last = mock.requests().pop().unwrap();
    assert_eq!((last.state, last.sent, last.pieces), (State::Broken, 2, 4));

    // `[break]` in a streamed prompt: after two pieces.
    let mut marked = chat(true);
    marked["messages"][0]["content"] = json!("[break] now");
    let resp = post(&mock, "/chat/completions", &marked).await;
    assert!(resp.text().await.is_err());
    assert_eq!(mock.requests().pop().unwrap().sent, 2);

    // A whole answer: half of it, then the break.
    mock.push(Script::new().break_after(0));
    let resp = post(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
    assert_eq!(mock.requests().pop().unwrap().state, State::Broken);
}

#[tokio::test]
async fn pieces_are_paced_and_a_client_leaving_is_recorded() {
    let mock = mock().await;
    mock.push(
        Script::new()
            .text(["a", "b", "c"])
            .head_delay_ms(100)
            .first_piece_delay_ms(150)
            .chunk_delay_ms(50),
    );
    let started = Instant::now();
    let resp = post(&mock, "/chat/completions", &chat(true)).await;
    let head = started.elapsed();
    let mut stream = resp.bytes_stream();
    let mut at = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if std::str::from_utf8(&chunk)
            .unwrap()
            .contains("\"delta\":{\"content\":")
        {
            at.push(started.elapsed());
        }
    }
    assert!(head >= Duration::from_millis(100), "{head:?}");
    assert!(at[0] >= Duration::from_millis(250), "{at:?}");
    assert!(at[2] >= Duration::from_millis(350), "{at:?}");

    // A whole answer waits for all of its pieces.
    mock.push(Script::new().first_piece_delay_ms(100).chunk_delay_ms(100));
    let started = Instant::now();
    assert_eq!(
        post_json(&mock, "/chat/completions", &chat(false)).await.0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(400));

    // `[slow]`: fifty pieces, 100 ms apart; the client leaves after a few.
    let mut slow = chat(true);
    slow["messages"][0]["content"] = json!("[slow] count");
    let resp = post(&mock, "/chat/completions", &slow).await;
    let mut stream = resp.bytes_stream();
    let _ = stream.next().await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    drop(stream);
    let mut last = mock.requests().pop().unwrap();
    for _ in 0..50 {
        if last.state != State::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = mock.requests().pop().unwrap();
    }
    assert_eq!(last.state, State::Aborted);
    assert_eq!(last.pieces, answers::SLOW_PIECES);
    assert!((2..10).contains(&last.sent), "{}", last.sent);
}

#[tokio::test]
async fn the_log_is_served_and_filtered() {
    let mock = mock().await;
    let mut marked = chat(false);
    marked["messages"][0]["content"] = json!("find mk0123 here");
    post_json(&mock, "/chat/completions", &marked).await;
    post_json(&mock, "/chat/completions", &chat(false)).await;
    let log: Value = control(&mock, reqwest::Method::GET, "requests?marker=mk0123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = log["requests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (e["seq"].as_u64(), e["api"].as_str(), e["state"].as_str()),
        (Some(0), Some("openai"), Some("done"))
    );
    assert_eq!(e["headers"]["authorization"], format!("Bearer {KEY}"));
    assert_eq!(
        (e["pieces"].as_u64(), e["sent"].as_u64()),
        (Some(4), Some(4))
    );
    control(&mock, reqwest::Method::DELETE, "requests")
        .send()
        .await
        .unwrap();
    assert!(mock.requests().is_empty());
    post_json(&mock, "/chat/completions", &chat(false)).await;
    assert_eq!(mock.requests()[0].seq, 2);
    // Without recording, the log is not kept.
    let quiet = mock_upstream::start(Options::default()).await.unwrap();
    let resp = control(&quiet, reqwest::Method::GET, "requests")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
