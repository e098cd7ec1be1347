//! Events and their webhook deliveries.
//!
//! Every state change makes an Event holding a snapshot of the object at
//! that moment. Its JSON is serialized once and kept as bytes, so a resend
//! carries exactly the same body (only the signature's timestamp changes),
//! as Stripe's retries do.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::objects::{new_id, now};
use crate::state::{State, Store};

pub(crate) const API_VERSION: &str = "2024-06-20";
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";

pub(crate) struct StoredEvent {
    pub id: String,
    pub json: Value,
    /// The exact bytes every delivery of the event sends.
    pub body: Vec<u8>,
}

/// An event a control call made, and what its delivery got.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// The event's JSON.
    pub event: Value,
    /// The receiver's HTTP status; `None` when nothing was delivered
    /// (delivery off, no webhook URL, or the request failed).
    pub delivery_status: Option<u16>,
}

impl Fired {
    pub(crate) fn to_json(&self) -> Value {
        json!({"event": self.event, "delivery_status": self.delivery_status})
    }
}

/// The API request an event came from (`request` of the event): Stripe
/// names it for events caused by an API call, and leaves it null for those
/// of the dashboard or of payments (here: the control routes).
pub(crate) struct Origin<'a> {
    pub request_id: &'a str,
    pub idempotency_key: Option<&'a str>,
}

impl Store {
    /// Records an event of `kind` about `object` (a snapshot); its id.
    pub(crate) fn emit(&mut self, kind: &str, object: Value, origin: Option<&Origin>) -> String {
        let id = new_id("evt_", 24);
        let request = match origin {
            Some(o) => json!({"id": o.request_id, "idempotency_key": o.idempotency_key}),
            None => json!({"id": null, "idempotency_key": null}),
        };
        let json = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": {"object": object},
            "livemode": false,
            "pending_webhooks": 1,
            "request": request,
            "type": kind,
        });
        let body = json.to_string().into_bytes();
        self.events.push(StoredEvent {
            id: id.clone(),
            json,
            body,
        });
        id
    }
}

/// Delivers event `id` to the webhook URL, if delivery is on (or `force`,
/// for resends) and a URL is set; records the attempt. The receiver's
/// status, or `None` when nothing was sent or the request failed.
pub(crate) async fn deliver(state: &State, id: &str, force: bool) -> Option<u16> {
    let (url, body) = {
        let store = state.lock();
        let event = store.event(id)?;
        if !(store.delivery_on || force) {
            return None;
        }
        (store.webhook_url.clone()?, event.body.clone())
    };
    let timestamp = now();
    let signature = crate::sign(&state.webhook_secret, timestamp, &body);
    let sent = state
        .client
        .post(&url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", USER_AGENT)
        .header("Stripe-Signature", signature)
        .body(body)
        .send()
        .await;
    let (status, error) = match sent {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut store = state.lock();
    let kind = store.event(id).map(|e| e.json["type"].clone());
    store.deliveries.push(json!({
        "event": id,
        "type": kind,
        "status": status,
        "error": error,
        "url": url,
        "timestamp": timestamp,
        "resend": force,
    }));
    status
}

/// Delivers, in order, what the control routes fire: after the queued
/// deliveries of earlier API calls, so the receiver sees events in the order
/// they happened.
pub(crate) async fn deliver_now(state: &State, events: Vec<String>) -> Vec<Fired> {
    state.settle().await;
    let mut fired = Vec::with_capacity(events.len());
    for id in events {
        let delivery_status = deliver(state, &id, false).await;
        let event = state
            .lock()
            .event(&id)
            .map(|e| e.json.clone())
            .unwrap_or(Value::Null);
        fired.push(Fired {
            event,
            delivery_status,
        });
    }
    fired
}

/// The background task delivering the events of API calls (finalize,
/// refund…) one at a time, in order, without holding up the API answer.
pub(crate) async fn worker(state: Arc<State>, mut queue: mpsc::UnboundedReceiver<String>) {
    while let Some(id) = queue.recv().await {
        deliver(&state, &id, false).await;
        state.delivered_one();
    }
}
