//! The control routes under `/_fake/` (no key): what a customer or Stripe
//! itself would do (pay, let a payment succeed or fail, expire), the
//! webhook switch, resends, and the logs. Routes that fire events deliver
//! them before answering, so a test sees the receiver's status in the
//! answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::error::{json_response, FakeError};
use crate::events::{deliver, deliver_now, Fired};
use crate::form;
use crate::state::State;

// --- the actions, shared with `FakeStripe`'s methods ---------------------------------

pub(crate) async fn pay_checkout(
    state: &State,
    id: &str,
    asynchronous: bool,
) -> Result<Fired, FakeError> {
    let events = state.lock().pay_session(&state.base, id, asynchronous)?;
    Ok(one(deliver_now(state, events).await))
}

pub(crate) async fn settle_async(
    state: &State,
    id: &str,
    succeed: bool,
) -> Result<Fired, FakeError> {
    let events = state
        .lock()
        .settle_async_payment(&state.base, id, succeed)?;
    Ok(one(deliver_now(state, events).await))
}

pub(crate) async fn expire_checkout(state: &State, id: &str) -> Result<Fired, FakeError> {
    let events = state.lock().expire_session(&state.base, id)?;
    Ok(one(deliver_now(state, events).await))
}

pub(crate) async fn pay_invoice(state: &State, id: &str) -> Result<Vec<Fired>, FakeError> {
    let events = state.lock().pay_invoice(&state.base, id, None)?;
    Ok(deliver_now(state, events).await)
}

/// Delivers event `id` again (even with delivery off: a resend is asked
/// for); the receiver's status, `None` if the request failed.
pub(crate) async fn resend(state: &State, id: &str) -> Result<Option<u16>, FakeError> {
    {
        let store = state.lock();
        if store.event(id).is_none() {
            return Err(FakeError::no_such("event", id));
        }
        if store.webhook_url.is_none() {
            return Err(FakeError::state(
                "No webhook URL is set: nowhere to resend to.",
            ));
        }
    }
    state.settle().await;
    Ok(deliver(state, id, true).await)
}

/// The one event of an action that fires one.
fn one(mut fired: Vec<Fired>) -> Fired {
    fired.pop().unwrap_or(Fired {
        event: Value::Null,
        delivery_status: None,
    })
}

// --- the routes ---------------------------------------------------------------------------

type Shared = AxumState<Arc<State>>;

/// A control body: a JSON object, or nothing.
fn object(body: &[u8]) -> Result<Map<String, Value>, FakeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FakeError::state("The body must be a JSON object.")),
        Err(e) => Err(FakeError::state(format!("The body is not JSON: {e}"))),
    }
}

fn flag(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, FakeError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(FakeError::invalid(
            format!("{name} must be true or false"),
            name,
        )),
    }
}

fn answer(result: Result<Value, FakeError>) -> Response {
    match result {
        Ok(body) => json_response(200, &body),
        Err(e) => e.into_response(),
    }
}

/// `{"event", "delivery_status"}` of the last event, and all of them under
/// `events` when there were several.
fn fired_json(fired: &[Fired]) -> Value {
    let mut body = fired
        .last()
        .map(Fired::to_json)
        .unwrap_or_else(|| json!({}));
    if fired.len() > 1 {
        body["events"] = fired.iter().map(Fired::to_json).collect();
    }
    body
}

pub(crate) async fn checkout_pay(
    AxumState(state): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let asynchronous = flag(&object(&body)?, "async")?.unwrap_or(false);
        pay_checkout(&state, &id, asynchronous).await
    };
    answer(result.await.map(|f| f.to_json()))
}

pub(crate) async fn checkout_async(
    AxumState(state): Shared,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        let succeed =
            flag(&object(&body)?, "succeed")?.ok_or_else(|| FakeError::missing("succeed"))?;
        settle_async(&state, &id, succeed).await
    };
    answer(result.await.map(|f| f.to_json()))
}

pub(crate) async fn checkout_expire(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    answer(expire_checkout(&state, &id).await.map(|f| f.to_json()))
}

pub(crate) async fn invoice_pay(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    answer(pay_invoice(&state, &id).await.map(|f| fired_json(&f)))
}

fn webhook_config(state: &State) -> Value {
    let store = state.lock();
    json!({"on": store.delivery_on, "url": store.webhook_url})
}

pub(crate) async fn webhooks_get(AxumState(state): Shared) -> Response {
    json_response(200, &webhook_config(&state))
}

/// `{"on": bool}` switches delivery; `{"url": "…"}` (or null) sets the URL.
pub(crate) async fn webhooks_set(AxumState(state): Shared, body: Bytes) -> Response {
    let result = (|| {
        let body = object(&body)?;
        let on = flag(&body, "on")?;
        let url = match body.get("url") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(u)) => Some(Some(u.clone())),
            Some(_) => return Err(FakeError::invalid("url must be a string or null", "url")),
        };
        let mut store = state.lock();
        if let Some(on) = on {
            store.delivery_on = on;
        }
        if let Some(url) = url {
            store.webhook_url = url;
        }
        Ok(())
    })();
    answer(result.map(|()| webhook_config(&state)))
}

pub(crate) async fn event_resend(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    answer(
        resend(&state, &id)
            .await
            .map(|status| json!({"status": status})),
    )
}

/// All events, oldest first; `?type=T` keeps those of type T.
pub(crate) async fn events(AxumState(state): Shared, RawQuery(query): RawQuery) -> Response {
    let pairs = form::pairs(query.unwrap_or_default().as_bytes());
    let kind = pairs
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.as_str());
    let store = state.lock();
    let events: Vec<Value> = store
        .events
        .iter()
        .filter(|e| kind.is_none() || e.json["type"].as_str() == kind)
        .map(|e| e.json.clone())
        .collect();
    json_response(200, &Value::Array(events))
}

/// The API requests, oldest first.
pub(crate) async fn requests(AxumState(state): Shared) -> Response {
    json_response(200, &Value::Array(state.lock().requests.clone()))
}

/// The webhook deliveries, oldest first.
pub(crate) async fn deliveries(AxumState(state): Shared) -> Response {
    json_response(200, &Value::Array(state.lock().deliveries.clone()))
}

/// Waits for the deliveries of API calls' events still queued, then
/// answers the deliveries.
pub(crate) async fn settle(AxumState(state): Shared) -> Response {
    state.settle().await;
    deliveries(AxumState(state)).await
}
