//! A webhook receiver that checks Stripe's signature as a real endpoint
//! would, and small HTTP helpers over reqwest.

#![allow(dead_code)] // each test file uses a part

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use fake_stripe::{FakeStripe, Options};
use serde_json::Value;

pub const KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
pub const SECRET: &str = "whsec_test_secret";

/// What the receiver got: the verified events, and the requests it refused.
#[derive(Default)]
pub struct Received {
    pub events: Vec<Value>,
    pub user_agents: Vec<String>,
    pub refused: usize,
}

pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Received>>,
    /// The status it answers verified events with.
    pub status: Arc<AtomicU16>,
}

impl Receiver {
    pub fn events(&self) -> Vec<Value> {
        self.received.lock().unwrap().events.clone()
    }

    pub fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

/// Checks `Stripe-Signature` the way Stripe's libraries do: `t` and every
/// `v1`, HMAC-SHA256 of "t.body" under the secret, 5 minutes' tolerance.
pub fn verify(header: &str, body: &[u8], secret: &str) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let expected = hex::encode(fake_stripe::hmac_sha256(
        secret.as_bytes(),
        &[t.to_string().as_bytes(), b".", body],
    ));
    signatures.contains(&expected)
}

async fn receive(
    State((received, status)): State<(Arc<Mutex<Received>>, Arc<AtomicU16>)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut received = received.lock().unwrap();
    if !verify(header, &body, SECRET) || content_type != "application/json; charset=utf-8" {
        received.refused += 1;
        return StatusCode::BAD_REQUEST;
    }
    let agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    received.user_agents.push(agent.to_string());
    received.events.push(serde_json::from_slice(&body).unwrap());
    StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
}

pub async fn receiver() -> Receiver {
    let received = Arc::new(Mutex::new(Received::default()));
    let status = Arc::new(AtomicU16::new(200));
    let app = Router::new()
        .route("/webhook", post(receive))
        .with_state((received.clone(), status.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://{addr}/webhook"),
        received,
        status,
    }
}

/// A fake delivering to a fresh receiver.
pub async fn fake_with_receiver() -> (FakeStripe, Receiver) {
    let receiver = receiver().await;
    let fake = fake_stripe::start(Options {
        secret_key: KEY.into(),
        webhook_url: Some(receiver.url.clone()),
        webhook_secret: SECRET.into(),
    })
    .await
    .unwrap();
    (fake, receiver)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The status and JSON of an answer.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

/// POST /v1/… with a form body.
pub async fn post_form(fake: &FakeStripe, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .post(format!("{}{path}", fake.url))
        .bearer_auth(KEY)
        .form(form)
        .send()
        .await
        .unwrap();
    json(response).await
}

pub async fn get(fake: &FakeStripe, path_and_query: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{}{path_and_query}", fake.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    json(response).await
}

/// POST to a control route with a JSON body.
pub async fn control(fake: &FakeStripe, path: &str, body: &str) -> (u16, Value) {
    let response = client()
        .post(format!("{}{path}", fake.url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    json(response).await
}

pub const SESSION_FORM: &[(&str, &str)] = &[
    ("mode", "payment"),
    (
        "success_url",
        "https://shop.test/ok?session={CHECKOUT_SESSION_ID}",
    ),
    ("cancel_url", "https://shop.test/cancel"),
    ("client_reference_id", "account_7"),
    ("customer_email", "ada@example.com"),
    ("metadata[order_id]", "42"),
    ("line_items[0][price_data][currency]", "usd"),
    ("line_items[0][price_data][unit_amount]", "1250"),
    ("line_items[0][price_data][product_data][name]", "Credits"),
    ("line_items[0][quantity]", "2"),
    ("payment_intent_data[metadata][order_id]", "42"),
];

pub async fn create_session(fake: &FakeStripe) -> Value {
    let (status, session) = post_form(fake, "/v1/checkout/sessions", SESSION_FORM).await;
    assert_eq!(status, 200, "{session}");
    session
}
