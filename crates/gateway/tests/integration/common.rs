//! The test harness: a scriptable mock upstream and a gateway in front of it.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const UPSTREAM_KEY: &str = "sk-upstream-very-secret-0123456789";
pub const ADMIN_TOKEN: &str = "tg-admin-test-token";

/// The mock's fixed answer: five pieces, so five completion tokens.
pub const PIECES: [&str; 5] = ["Hel", "lo", " wor", "ld", "!"];
pub const PROMPT_TOKENS: u64 = 10;
pub const CACHED_TOKENS: u64 = 2;
pub const COMPLETION_TOKENS: u64 = 5;

/// Cost of one mock answer for `gpt-test` (2.5 / 10 / 1.25 USD per 1M, ×1.5):
/// (8 × 2.5 + 2 × 1.25 + 5 × 10) × 1000 nano × 1.5.
pub const GPT_TEST_COST: i64 = 108_750;

#[derive(Default)]
pub struct MockState {
    /// Every request received: (path, authorization header, body).
    pub requests: Mutex<Vec<(String, String, Value)>>,
    pub chunk_delay_ms: AtomicU64,
    /// When non-zero, every request fails with this status.
    pub fail_status: AtomicU16,
    /// When set, streams never send a usage chunk.
    pub omit_usage: AtomicBool,
    /// Delay before the response head (stream or not).
    pub head_delay_ms: AtomicU64,
    /// When non-zero, a stream (OpenAI or Anthropic) breaks off — the
    /// connection fails — after this many events.
    pub break_after: AtomicU64,
    /// When set, OpenAI answers carry `usage: {}`.
    pub empty_usage: AtomicBool,
    /// When above 1, every token count reported is multiplied by it (an
    /// upstream over-reporting its usage).
    pub usage_factor: AtomicU64,
    /// When set, the OpenAI answer's text pieces (one token each).
    pub pieces: Mutex<Option<Vec<String>>>,
    /// Upstream keys rate-limited: a request with one is answered 429 with
    /// `retry-after: 60`.
    pub limited_keys: Mutex<Vec<String>>,
    /// Upstream keys accepted besides `UPSTREAM_KEY`.
    pub other_keys: Mutex<Vec<String>>,
}

impl MockState {
    fn pieces(&self) -> Vec<String> {
        match &*self.pieces.lock().unwrap() {
            Some(p) => p.clone(),
            None => PIECES.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn factor(&self) -> u64 {
        self.usage_factor.load(Ordering::SeqCst).max(1)
    }

    /// The usage an OpenAI answer of `pieces` pieces reports.
    fn openai_usage(&self, pieces: usize) -> Value {
        if self.empty_usage.load(Ordering::SeqCst) {
            return json!({});
        }
        let f = self.factor();
        json!({
            "prompt_tokens": PROMPT_TOKENS * f,
            "completion_tokens": pieces as u64 * f,
            "total_tokens": (PROMPT_TOKENS + pieces as u64) * f,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS * f}
        })
    }

    /// `events` as a response body, breaking off after `break_after` of them.
    fn stream(&self, events: Vec<String>, delay: Duration) -> Response {
        let break_after = self.break_after.load(Ordering::SeqCst) as usize;
        let stream = futures_util::stream::unfold(
            (events.into_iter(), 0usize),
            move |(mut it, sent)| async move {
                if break_after > 0 && sent == break_after {
                    // Give the gateway the events so far before failing.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let reset =
                        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "mock break");
                    return Some((Err(reset), (it, usize::MAX)));
                }
                if sent == usize::MAX {
                    return None;
                }
                let event = it.next()?;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok::<_, std::io::Error>(Bytes::from(event)), (it, sent + 1)))
            },
        );
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    }
}

pub struct Mock {
    pub url: String,
    pub state: Arc<MockState>,
}

impl Mock {
    pub fn requests(&self) -> Vec<(String, String, Value)> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn usage_json() -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}
    })
}

/// The exact SSE bytes the mock streams for `model`.
pub fn mock_stream_events(model: &str, include_usage: bool) -> Vec<String> {
    let pieces: Vec<String> = PIECES.iter().map(|p| p.to_string()).collect();
    stream_events(model, &pieces, include_usage.then(usage_json))
}

/// The SSE bytes of an OpenAI stream of `pieces`, with `usage` when given.
pub fn stream_events(model: &str, pieces: &[String], usage: Option<Value>) -> Vec<String> {
    let include_usage = usage.is_some();
    let mut events = Vec::new();
    // Like OpenAI, every chunk carries `"usage":null` once usage was asked for.
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c.to_string()
    };
    events.push(format!(
        "data: {}\n\n",
        chunk(json!({"role": "assistant", "content": ""}), Value::Null)
    ));
    for piece in pieces {
        events.push(format!(
            "data: {}\n\n",
            chunk(json!({"content": piece}), Value::Null)
        ));
    }
    events.push(format!("data: {}\n\n", chunk(json!({}), json!("stop"))));
    if let Some(usage) = usage {
        let usage = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1700000000,
            "model": model, "choices": [], "usage": usage
        });
        events.push(format!("data: {usage}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

pub fn mock_completion_body(model: &str) -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": PIECES.concat()},
                     "finish_reason": "stop"}],
        "usage": usage_json()
    })
}

/// Records an OpenAI-style request (path, `authorization`, body); returns
/// the authorization header and the parsed body.
fn record_openai_request(
    state: &MockState,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (String, Value) {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    state
        .requests
        .lock()
        .unwrap()
        .push((path.to_string(), auth.clone(), body.clone()));
    (auth, body)
}

async fn mock_handler(
    State(state): State<Arc<MockState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (auth, body) = record_openai_request(&state, uri.path(), &headers, &body);
    let head_delay = state.head_delay_ms.load(Ordering::SeqCst);
    if head_delay > 0 {
        tokio::time::sleep(Duration::from_millis(head_delay)).await;
    }
    let fail = state.fail_status.load(Ordering::SeqCst);
    if fail != 0 {
        let error = json!({"error": {"message": format!("Incorrect API key provided: {UPSTREAM_KEY}"),
                                     "type": "invalid_request_error", "code": "mock_failure"}});
        return (StatusCode::from_u16(fail).unwrap(), axum::Json(error)).into_response();
    }
    let limited = state.limited_keys.lock().unwrap().clone();
    if limited.iter().any(|k| auth == format!("Bearer {k}")) {
        let error = json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}});
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "60")],
            axum::Json(error),
        )
            .into_response();
    }
    let other_keys = state.other_keys.lock().unwrap().clone();
    let accepted = std::iter::once(UPSTREAM_KEY)
        .chain(other_keys.iter().map(String::as_str))
        .any(|k| auth == format!("Bearer {k}"));
    if !accepted {
        return (StatusCode::UNAUTHORIZED, "bad upstream key").into_response();
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    if uri.path().ends_with("/embeddings") {
        return axum::Json(json!({
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS}
        }))
        .into_response();
    }
    let delay = Duration::from_millis(state.chunk_delay_ms.load(Ordering::SeqCst));
    let pieces = state.pieces();
    if body["stream"] != json!(true) {
        tokio::time::sleep(delay).await;
        let mut answer = mock_completion_body(&model);
        answer["choices"][0]["message"]["content"] = json!(pieces.concat());
        answer["usage"] = state.openai_usage(pieces.len());
        if state.break_after.load(Ordering::SeqCst) > 0 {
            // Half the body, then the connection fails.
            let text = answer.to_string();
            let (head, tail) = text.split_at(text.len() / 2);
            return state.stream(vec![head.to_string(), tail.to_string()], delay);
        }
        return axum::Json(answer).into_response();
    }
    let include_usage = body["stream_options"]["include_usage"] == json!(true)
        && !state.omit_usage.load(Ordering::SeqCst);
    let events = stream_events(
        &model,
        &pieces,
        include_usage.then(|| state.openai_usage(pieces.len())),
    );
    state.stream(events, delay)
}

/// Anthropic mock usage: 20 uncached input, 4 cache reads, 6 cache writes, 7 output.
pub fn anthropic_usage() -> Value {
    json!({"input_tokens": 20, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 6, "output_tokens": 7})
}

/// Cost of one Anthropic mock answer for `claude-test` (3 / 15 / 0.3 / 3.75 USD per 1M):
/// (20 × 3 + 4 × 0.3 + 6 × 3.75 + 7 × 15) × 1000 nano.
pub const CLAUDE_TEST_COST: i64 = 188_700;
pub const CLAUDE_TEXT: &str = "Hello from Claude";

pub fn anthropic_message(model: &str, with_tool: bool) -> Value {
    let mut content = vec![json!({"type": "text", "text": CLAUDE_TEXT})];
    if with_tool {
        content.push(json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}));
    }
    json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": if with_tool { "tool_use" } else { "end_turn" },
        "stop_sequence": null, "usage": anthropic_usage()
    })
}

/// The exact SSE bytes the Anthropic mock streams for `model`.
pub fn anthropic_stream_events(model: &str) -> Vec<String> {
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut start_usage = anthropic_usage();
    start_usage["output_tokens"] = json!(1);
    vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev("ping", json!({"type": "ping"})),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello from"}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " Claude"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 7}}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
}

async fn anthropic_handler(
    State(state): State<Arc<MockState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let seen = format!(
        "x-api-key={};version={};beta={}",
        header("x-api-key"),
        header("anthropic-version"),
        header("anthropic-beta")
    );
    state
        .requests
        .lock()
        .unwrap()
        .push((uri.path().to_string(), seen, body.clone()));
    let fail = state.fail_status.load(Ordering::SeqCst);
    if fail != 0 {
        let error = json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("bad request for key {UPSTREAM_KEY}")}});
        return (StatusCode::from_u16(fail).unwrap(), axum::Json(error)).into_response();
    }
    if header("x-api-key") != UPSTREAM_KEY || header("anthropic-version").is_empty() {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}))).into_response();
    }
    if uri.path().ends_with("/count_tokens") {
        return axum::Json(json!({"input_tokens": 42})).into_response();
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    if body["stream"] != json!(true) {
        let with_tool = body.get("tools").is_some();
        return axum::Json(anthropic_message(&model, with_tool)).into_response();
    }
    let events = anthropic_stream_events(&model);
    state.stream(events, Duration::ZERO)
}

/// Native Responses mock usage.
pub const NATIVE_INPUT_TOKENS: u64 = 12;
pub const NATIVE_OUTPUT_TOKENS: u64 = 6;
/// 12 × 1 + 6 × 2 USD per 1M tokens.
pub const GPT_NATIVE_COST: i64 = 24_000;

/// The events of a Responses stream as OpenAI sends them, under the
/// upstream's own response id and model name.
pub fn native_stream_events(model: &str) -> Vec<String> {
    let item = json!({"id": "msg_up", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": PIECES.concat(), "annotations": []}]});
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": "resp_upstream", "object": "response", "created_at": 1700000000, "status": status,
            "model": model, "output": output, "usage": usage,
        })
    };
    let usage = json!({"input_tokens": NATIVE_INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": NATIVE_OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": NATIVE_INPUT_TOKENS + NATIVE_OUTPUT_TOKENS});
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0,
               "item": {"id": "msg_up", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
    ];
    for piece in PIECES {
        events.push(
            json!({"type": "response.output_text.delta", "item_id": "msg_up", "output_index": 0,
                           "content_index": 0, "delta": piece}),
        );
    }
    events.push(
        json!({"type": "response.output_item.done", "output_index": 0, "item": item.clone()}),
    );
    events.push(json!({"type": "response.completed", "response": response("completed", json!([item]), usage)}));
    events
        .into_iter()
        .enumerate()
        .map(|(n, mut e)| {
            e["sequence_number"] = json!(n);
            format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())
        })
        .collect()
}

async fn responses_handler(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, body) = record_openai_request(&state, "/v1/responses", &headers, &body);
    let model = body["model"].as_str().unwrap_or("").to_string();
    let events = native_stream_events(&model).concat();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(events))
        .unwrap()
}

pub async fn start_mock() -> Mock {
    let state = Arc::new(MockState::default());
    let app = Router::new()
        .route("/v1/chat/completions", post(mock_handler))
        .route("/v1/completions", post(mock_handler))
        .route("/v1/embeddings", post(mock_handler))
        .route("/v1/messages", post(anthropic_handler))
        .route("/v1/messages/count_tokens", post(anthropic_handler))
        .route("/v1/responses", post(responses_handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Mock { url, state }
}

/// One journal per database: a gateway restarted on the same database
/// replays what the one before it left.
pub fn journal_dir(database_url: &str) -> String {
    let name: String = database_url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::env::temp_dir()
        .join(format!("tollgate-journal-{name}"))
        .display()
        .to_string()
}

pub fn config_text(upstream_url: &str, database_url: &str) -> String {
    // CI runs the suite once more with holds in the database.
    let holds = std::env::var("TOLLGATE_TEST_HOLDS").unwrap_or_else(|_| "memory".into());
    let journal_dir = journal_dir(database_url);
    format!(
        r#"
holds = "{holds}"
journal_dir = "{journal_dir}"
database_url = "{database_url}"
admin_token = "{ADMIN_TOKEN}"
shutdown_grace_secs = 10

[groups.vip]
multiplier = 0.8

[providers.mock]
kind = "openai"
base_url = "{upstream_url}"
api_key = "{UPSTREAM_KEY}"
request_timeout_secs = 5
read_timeout_secs = 3

[providers.dead]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-dead"
connect_timeout_secs = 2

[models."gpt-test"]
provider = "mock"
upstream_model = "mock-model"
input_price = 2.5
output_price = 10
cached_input_price = 1.25
multiplier = 1.5
max_output_tokens = 1000

[models.cheap]
provider = "mock"
input_price = "1"
output_price = "2"

[providers.claude]
kind = "anthropic"
base_url = "{upstream_url}"
api_key = "{UPSTREAM_KEY}"
request_timeout_secs = 5
read_timeout_secs = 3

[models."claude-test"]
provider = "claude"
upstream_model = "claude-up"
input_price = 3
output_price = 15
cached_input_price = 0.3
cache_write_price = 3.75

[providers.native]
kind = "openai"
base_url = "{upstream_url}"
api_key = "{UPSTREAM_KEY}"
responses_api = true

[models."gpt-native"]
provider = "native"
upstream_model = "native-up"
input_price = 1
output_price = 2

[models.unreachable]
provider = "dead"
input_price = 1
output_price = 1
"#
    )
}

pub struct Gateway {
    pub url: String,
    pub database_url: String,
    pub app: gateway::state::App,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

pub async fn start_gateway(upstream_url: &str, database_url: Option<String>) -> Gateway {
    start_gateway_with(upstream_url, database_url, "", "").await
}

/// A gateway on the test configuration with `top` (top-level settings)
/// before it and `tail` (more tables) after it.
pub async fn start_gateway_with(
    upstream_url: &str,
    database_url: Option<String>,
    top: &str,
    tail: &str,
) -> Gateway {
    let database_url = match database_url {
        Some(u) => u,
        None => store::testing::fresh_database_url().await,
    };
    let text = format!(
        "{top}\n{}\n{tail}",
        config_text(upstream_url, &database_url)
    );
    let config = gateway::config::Config::parse(&text, "test.toml").unwrap();
    start_gateway_config(config, database_url).await
}

/// A gateway on `config` (whose database is `database_url`).
pub async fn start_gateway_config(
    config: gateway::config::Config,
    database_url: String,
) -> Gateway {
    let gw = gateway::build(config).await.unwrap();
    let app = gw.app.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        gateway::serve(gw.app, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Gateway {
        url,
        database_url,
        app,
        http: reqwest::Client::new(),
        shutdown: Some(tx),
        handle: Some(handle),
    }
}

impl Gateway {
    /// Graceful shutdown; returns when every settlement is written.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("shutdown within 30 s")
                .unwrap();
        }
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Creates a user in `group` with `usd` of balance; returns (id, admin key).
    pub async fn user(&self, name: &str, group: &str, usd: &str) -> (i64, String) {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/admin/users",
                Some(json!({"name": name, "group": group})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let id = body["user"]["id"].as_i64().unwrap();
        if usd != "0" {
            let (status, body) = self
                .admin(
                    reqwest::Method::POST,
                    &format!("/admin/users/{id}/balance"),
                    Some(json!({"amount_usd": usd, "reason": "test top-up"})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        (id, body["key"].as_str().unwrap().to_string())
    }

    /// The user's paid balance in nano-USD, and what is held.
    pub async fn balance(&self, id: i64) -> (i64, i64) {
        let u = self.app.store.get_user(id).await.unwrap();
        (u.balance + u.free_balance, u.held)
    }

    /// POSTs `body` as JSON to `path` with `key`; returns the status and the
    /// JSON answer (`null` when it is not JSON).
    pub async fn post_json(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn chat(&self, key: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/chat/completions", self.url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Sends `n` chat requests at once; each must answer 200. Returns the bodies.
    pub async fn chat_burst(&self, key: &str, body: Value, n: usize) -> Vec<String> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let request = self
                    .http
                    .post(format!("{}/v1/chat/completions", self.url))
                    .bearer_auth(key)
                    .json(&body);
                tokio::spawn(async move {
                    let resp = request.send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.text().await.unwrap()
                })
            })
            .collect();
        let mut bodies = Vec::with_capacity(n);
        for t in tasks {
            bodies.push(t.await.unwrap());
        }
        bodies
    }

    /// Waits (bounded) until the user has `n` usage records.
    pub async fn wait_for_usage(&self, user_id: i64, n: usize) -> Vec<store::UsageRecord> {
        for _ in 0..200 {
            let filter = store::UsageFilter {
                user_id,
                limit: 10_000,
                ..Default::default()
            };
            let records = self.app.store.list_usage(&filter).await.unwrap();
            if records.len() >= n {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("user {user_id} never reached {n} usage records");
    }
}

/// What a fresh connection to the database holds for `user_id` (after the
/// gateway stopped): its usage records and its balance.
pub async fn persisted(database_url: &str, user_id: i64) -> (Vec<store::UsageRecord>, store::User) {
    let store = store::Store::connect(database_url).await.unwrap();
    let records = store
        .list_usage(&store::UsageFilter {
            user_id,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let user = store.get_user(user_id).await.unwrap();
    store.close().await;
    (records, user)
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
        "stream": stream,
        "temperature": 0.5,
        "tools": [{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}],
    })
}
