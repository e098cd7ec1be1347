//! The Stripe API under `/v1/`: authentication, form parameters, the
//! `Idempotency-Key` replays and the request log around each endpoint.
//!
//! An endpoint runs with the store locked from the idempotency check to the
//! stored answer, so two calls with one key cannot both create an object.
//! The events it fires are delivered afterwards by the background task (as
//! Stripe's webhooks follow an API call rather than hold it up).

mod checkout;
mod customers;
mod invoices;
mod list;
mod refunds;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::{json_response, FakeError};
use crate::events::{Origin, API_VERSION};
use crate::form;
use crate::objects::new_id;
use crate::params::Params;
use crate::state::{Replay, State, Store};

/// What an endpoint needs beside its parameters.
pub(crate) struct Ctx<'a> {
    pub base: &'a str,
    pub request_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// The events the call fired, for delivery once the store is released.
    pub events: Vec<String>,
}

impl Ctx<'_> {
    pub(crate) fn emit(&mut self, store: &mut Store, kind: &str, object: Value) {
        let origin = Origin {
            request_id: self.request_id,
            idempotency_key: self.idempotency_key,
        };
        let id = store.emit(kind, object, Some(&origin));
        self.events.push(id);
    }
}

struct Outcome {
    status: u16,
    body: Value,
    /// The first call's request id when this answer is a replay.
    replay_of: Option<String>,
}

impl From<Result<Value, FakeError>> for Outcome {
    fn from(result: Result<Value, FakeError>) -> Self {
        let (status, body) = match result {
            Ok(body) => (200, body),
            Err(e) => (e.status, e.body),
        };
        Outcome {
            status,
            body,
            replay_of: None,
        }
    }
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Every `/v1/…` request.
pub(crate) async fn handle(
    AxumState(state): AxumState<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let request_id = new_id("req_", 14);
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // Stripe ignores the key on GETs (they change nothing).
    let idempotency_key = text("idempotency-key").filter(|_| method == Method::POST);
    let raw: &[u8] = if method == Method::POST {
        &body
    } else {
        uri.query().unwrap_or_default().as_bytes()
    };
    let pairs = form::pairs(raw);
    let mut ctx = Ctx {
        base: &state.base,
        request_id: &request_id,
        idempotency_key,
        events: Vec::new(),
    };

    let mut store = state.lock();
    let (outcome, params) = match check(&state, &method, &headers, &pairs) {
        Err(e) => (Outcome::from(Err(e)), Value::Null),
        Ok(params) => {
            let outcome = run(&mut store, &mut ctx, &method, &path, &params);
            (outcome, params.json().clone())
        }
    };
    store.requests.push(json!({
        "request_id": request_id,
        "method": method.as_str(),
        "path": path,
        "params": params,
        "form": pairs,
        "idempotency_key": idempotency_key,
        "stripe_version": text("stripe-version"),
        "status": outcome.status,
        "replayed": outcome.replay_of.is_some(),
    }));
    drop(store);
    state.enqueue(std::mem::take(&mut ctx.events));

    let mut response = json_response(outcome.status, &outcome.body);
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("request-id", &request_id);
    set("stripe-version", API_VERSION);
    if let Some(key) = idempotency_key {
        set("idempotency-key", key);
    }
    if let Some(original) = &outcome.replay_of {
        set("idempotent-replayed", "true");
        set("original-request", original);
    }
    response
}

/// The key, the body's type and the parameters' syntax.
fn check(
    state: &State,
    method: &Method,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<Params, FakeError> {
    authorize(&state.secret_key, headers)?;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if *method == Method::POST && json_body {
        return Err(FakeError::state(
            "Invalid request: Stripe's API takes application/x-www-form-urlencoded bodies, not JSON.",
        ));
    }
    let map = form::unfold(pairs).map_err(FakeError::state)?;
    Ok(Params::new(map))
}

fn authorize(secret_key: &str, headers: &HeaderMap) -> Result<(), FakeError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(key_of);
    match given.as_deref() {
        Some(key) if key == secret_key => Ok(()),
        Some(key) => Err(FakeError::unauthorized(format!(
            "Invalid API Key provided: {}",
            redact(key)
        ))),
        None => Err(FakeError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization \
             header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See \
             https://stripe.com/docs/api#authentication for details, or we can help at \
             https://support.stripe.com/."
                .to_string(),
        )),
    }
}

/// The key of `Bearer KEY`, or of `Basic base64(KEY:)` (the key as the
/// user name, as `curl -u KEY:` sends it).
fn key_of(authorization: &str) -> Option<String> {
    if let Some(key) = authorization.strip_prefix("Bearer ") {
        return Some(key.trim().to_string());
    }
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = BASE64.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    Some(user.to_string())
}

/// `sk_test_abcdefgh1234` → `sk_test_********1234`, as Stripe shows it.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

/// The idempotency replay, or the endpoint (its answer then stored under
/// the key when it succeeded: Stripe keeps no result for a request its
/// validation refused, so a corrected retry with the same key works). As on
/// Stripe, a key belongs to one endpoint and one set of parameters.
fn run(store: &mut Store, ctx: &mut Ctx, method: &Method, path: &str, params: &Params) -> Outcome {
    let endpoint = format!("{method} {path}");
    if let Some(key) = ctx.idempotency_key {
        if let Err(e) = check_replay(store, key, &endpoint, params) {
            return Outcome::from(Err(e));
        }
        if let Some(replay) = store.replays.get(key) {
            return Outcome {
                status: replay.status,
                body: replay.body.clone(),
                replay_of: Some(replay.request_id.clone()),
            };
        }
    }
    let outcome = Outcome::from(dispatch(store, ctx, method, path, params));
    if let (Some(key), 200) = (ctx.idempotency_key, outcome.status) {
        let replay = Replay {
            endpoint,
            params: params.json().clone(),
            status: outcome.status,
            body: outcome.body.clone(),
            request_id: ctx.request_id.to_string(),
        };
        store.replays.insert(key.to_string(), replay);
    }
    outcome
}

/// Whether `key` may be used for this request.
fn check_replay(
    store: &Store,
    key: &str,
    endpoint: &str,
    params: &Params,
) -> Result<(), FakeError> {
    if key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(FakeError::idempotency(format!(
            "Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY} characters long."
        )));
    }
    let Some(replay) = store.replays.get(key) else {
        return Ok(());
    };
    if replay.endpoint != endpoint {
        return Err(FakeError::idempotency(format!(
            "Keys for idempotent requests can only be used for the same endpoint they were first \
             used for ('{}' vs '{endpoint}'). Try using a key other than '{key}' if you meant to \
             execute a different request.",
            replay.endpoint
        )));
    }
    if replay.params != *params.json() {
        return Err(FakeError::idempotency(format!(
            "Keys for idempotent requests can only be used with the same parameters they were \
             first used with. Try using a key other than '{key}' if you meant to execute a \
             different request."
        )));
    }
    Ok(())
}

fn dispatch(
    store: &mut Store,
    ctx: &mut Ctx,
    method: &Method,
    path: &str,
    p: &Params,
) -> Result<Value, FakeError> {
    let rest = path.strip_prefix("/v1/").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').collect();
    let post = *method == Method::POST;
    let get = *method == Method::GET;
    match segments.as_slice() {
        ["checkout", "sessions"] if post => checkout::create(store, ctx, p),
        ["checkout", "sessions"] if get => checkout::list(store, ctx, p),
        ["checkout", "sessions", id] if get => checkout::retrieve(store, ctx, id),
        ["customers"] if post => customers::create(store, p),
        ["customers", id] if get => customers::retrieve(store, id),
        ["invoices"] if post => invoices::create(store, ctx, p),
        ["invoices"] if get => invoices::list(store, ctx, p),
        ["invoices", id] if get => invoices::retrieve(store, ctx, id),
        ["invoices", id, "finalize"] if post => invoices::finalize(store, ctx, id),
        ["invoices", id, "void"] if post => invoices::void(store, ctx, id),
        ["invoiceitems"] if post => invoices::create_item(store, p),
        ["refunds"] if post => refunds::create(store, ctx, p),
        ["refunds", id] if get => refunds::retrieve(store, id),
        ["charges"] if get => refunds::list_charges(store, p),
        ["charges", id] if get => refunds::retrieve_charge(store, id),
        _ => Err(FakeError::unknown_url(method.as_str(), path)),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_like_stripe() {
        assert_eq!(redact("sk_test_abcdefgh1234"), "sk_test_********1234");
        assert_eq!(redact("short"), "*****");
    }
}
