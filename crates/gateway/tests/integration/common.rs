//! The test harness: the mock upstream (crates/mock-upstream, started in
//! process with the answers below) and a gateway in front of it.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use mock_upstream::{render, Options};
pub use mock_upstream::{Api, Fault, Mock, Script, ToolCall, Usage};

pub const UPSTREAM_KEY: &str = "sk-upstream-very-secret-0123456789";
pub const ADMIN_TOKEN: &str = "tg-admin-test-token";

/// The mock's OpenAI answer: five pieces, so five completion tokens.
pub const PIECES: [&str; 5] = ["Hel", "lo", " wor", "ld", "!"];
pub const PROMPT_TOKENS: u64 = 10;
pub const CACHED_TOKENS: u64 = 2;
pub const COMPLETION_TOKENS: u64 = 5;

/// Cost of one mock answer for `gpt-test` (2.5 / 10 / 1.25 USD per 1M, ×1.5):
/// (8 × 2.5 + 2 × 1.25 + 5 × 10) × 1000 nano × 1.5.
pub const GPT_TEST_COST: i64 = 108_750;

/// The mock's Anthropic answer, in two pieces; its usage: 20 uncached input,
/// 4 cache reads, 6 cache writes, 7 output.
pub const CLAUDE_PIECES: [&str; 2] = ["Hello from", " Claude"];
pub const CLAUDE_TEXT: &str = "Hello from Claude";

/// Cost of one Anthropic mock answer for `claude-test` (3 / 15 / 0.3 / 3.75 USD per 1M):
/// (20 × 3 + 4 × 0.3 + 6 × 3.75 + 7 × 15) × 1000 nano.
pub const CLAUDE_TEST_COST: i64 = 188_700;

/// Native Responses mock usage.
pub const NATIVE_INPUT_TOKENS: u64 = 12;
pub const NATIVE_OUTPUT_TOKENS: u64 = 6;
/// 12 × 1 + 6 × 2 USD per 1M tokens.
pub const GPT_NATIVE_COST: i64 = 24_000;

/// What the tests' upstream answers unless a test scripts otherwise: fixed
/// texts whatever the request offers (no tool calls), fixed usage but for
/// OpenAI's completion tokens (one per piece).
pub fn answers() -> Script {
    Script::new()
        .no_tool_call()
        .for_api(
            Api::OpenAi,
            Script::new().text(PIECES).usage(Usage {
                input: Some(PROMPT_TOKENS),
                cached: Some(CACHED_TOKENS),
                ..Usage::default()
            }),
        )
        .for_api(
            Api::Anthropic,
            Script::new().text(CLAUDE_PIECES).usage(Usage {
                input: Some(20),
                cached: Some(4),
                cache_write: Some(6),
                output: Some(7),
                ..Usage::default()
            }),
        )
        .for_api(
            Api::Responses,
            Script::new().text(PIECES).usage(Usage {
                input: Some(NATIVE_INPUT_TOKENS),
                cached: Some(0),
                output: Some(NATIVE_OUTPUT_TOKENS),
                reasoning: Some(0),
                ..Usage::default()
            }),
        )
}

/// A mock upstream on a free port, recording, checking `UPSTREAM_KEY`,
/// answering [`answers`].
pub async fn start_mock() -> Mock {
    mock_upstream::start(Options {
        keys: vec![UPSTREAM_KEY.into()],
        record: true,
        script: answers(),
        ..Options::default()
    })
    .await
    .expect("the mock upstream starts")
}

/// What the mock answers `model` on `api`, under [`answers`].
fn answer(api: Api, model: &str) -> render::Answer {
    let mut script = Script::new();
    script.merge(&answers(), api, None);
    mock_upstream::answer(api, &json!({"model": model}), &script)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).expect("the mock's answers are JSON")
}

/// The exact SSE bytes the mock streams for a chat completion of `model`.
pub fn mock_stream_events(model: &str, include_usage: bool) -> Vec<String> {
    render::texts(&render::chat_stream(
        &answer(Api::OpenAi, model),
        include_usage,
    ))
}

pub fn mock_completion_body(model: &str) -> Value {
    json_of(&render::chat_whole(&answer(Api::OpenAi, model)))
}

pub fn anthropic_message(model: &str) -> Value {
    json_of(&render::message_whole(&answer(Api::Anthropic, model)))
}

/// The exact SSE bytes the Anthropic mock streams for `model`.
pub fn anthropic_stream_events(model: &str) -> Vec<String> {
    render::texts(&render::message_stream(&answer(Api::Anthropic, model)))
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

    /// Asserts that the user's balance moved from `before` by exactly the
    /// costs of `records`, with nothing left held; returns what they cost.
    pub async fn assert_charged_exactly(
        &self,
        user_id: i64,
        before: (i64, i64),
        records: &[store::UsageRecord],
    ) -> i64 {
        let charged: i64 = records.iter().map(|r| r.cost).sum();
        let after = self.balance(user_id).await;
        assert_eq!(
            (after.0, after.1),
            (before.0 - charged, 0),
            "charged once, nothing held"
        );
        charged
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
                user_id: Some(user_id),
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
            user_id: Some(user_id),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let user = store.get_user(user_id).await.unwrap();
    store.close().await;
    (records, user)
}

/// An OpenAI-compatible provider table `name` at `url` with the mock's key,
/// plus `settings` (more lines of the table, or nothing).
pub fn openai_provider(name: &str, url: &str, settings: &str) -> String {
    format!(
        "\n[providers.{name}]\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key = \"{UPSTREAM_KEY}\"\n{settings}\n"
    )
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
