//! `fake-stripe`: a fake of the Stripe API (version 2024-06-20) for
//! Tollgate's tests, which cannot reach Stripe. In process through
//! [`start`], or as the `fake-stripe` binary.
//!
//! # API routes (`Authorization: Bearer <secret key>`, form bodies)
//!
//! | Route | Does |
//! |---|---|
//! | `POST /v1/checkout/sessions` | a Checkout Session, `mode=payment`, inline `price_data` line items |
//! | `GET /v1/checkout/sessions/{id}` | the session |
//! | `GET /v1/checkout/sessions` | the list: `limit`, `starting_after`, `ending_before`, `created[gt\|gte\|lt\|lte]`, `status`, `customer`, `payment_intent` |
//! | `POST /v1/customers`, `GET /v1/customers/{id}` | customers |
//! | `POST /v1/invoices` | a draft invoice |
//! | `POST /v1/invoiceitems` | an item on a draft invoice (or pending on the customer) |
//! | `POST /v1/invoices/{id}/finalize` | draft → open (`invoice.finalized`); a zero invoice is paid at once |
//! | `POST /v1/invoices/{id}/void` | open → void (`invoice.voided`) |
//! | `GET /v1/invoices/{id}`, `GET /v1/invoices` | the invoice; the list (`status`, `customer`, `collection_method` and the pagination above) |
//! | `POST /v1/refunds` | a refund of a paid session's or invoice's `payment_intent` (or `charge`) (`charge.refunded`) |
//! | `GET /v1/refunds/{id}`, `GET /v1/charges/{id}` | a refund; a charge |
//! | `GET /v1/charges` | charges (`payment_intent`, `customer` and the pagination above) |
//!
//! Errors come in Stripe's shape (`{"error": {"type", "message", "param",
//! "code"}}`): 401 for a missing or wrong key, 400 for a bad parameter
//! (`param` in bracket notation) or a state that does not allow the call,
//! 404 for an unknown object in the URL or an unknown URL. A POST with an
//! `Idempotency-Key` already used (successfully) on the same path gets the
//! first answer again (`Idempotent-Replayed: true`, nothing created), or a
//! 400 `idempotency_error` if its parameters or path differ, as on Stripe
//! (keys do not expire). Parameters the fake does not know are ignored (and
//! logged). `Authorization: Basic` with the key as user name works too.
//!
//! # Hosted pages (no key)
//!
//! `GET /c/pay/{id}`: the session's payment page (amount, currency, product
//! name, `<button id="pay">` posting to `POST /c/pay/{id}`, which pays like
//! the control route and redirects (303) to `success_url` with
//! `{CHECKOUT_SESSION_ID}` filled in; `<a id="cancel">` to `cancel_url`).
//! `GET /i/{id}`: the hosted invoice page; `GET /i/{id}/pdf`: a stand-in PDF.
//!
//! # Control routes (`/_fake/`, no key, JSON)
//!
//! | Route | Does |
//! |---|---|
//! | `POST /_fake/checkout/{id}/pay` `{"async": bool}`? | pays an open session (`checkout.session.completed`); async: complete but unpaid |
//! | `POST /_fake/checkout/{id}/async` `{"succeed": bool}` | the async payment's outcome (`…async_payment_succeeded` / `…async_payment_failed`) |
//! | `POST /_fake/checkout/{id}/expire` | open → expired (`checkout.session.expired`) |
//! | `POST /_fake/invoices/{id}/pay` | open → paid (`invoice.payment_succeeded`, `invoice.paid`) |
//! | `GET`/`POST /_fake/webhooks` `{"on": bool, "url": str\|null}` | the delivery switch and URL |
//! | `POST /_fake/events/{id}/resend` | delivers the event again: `{"status": n\|null}` |
//! | `GET /_fake/events[?type=T]`, `/_fake/requests`, `/_fake/deliveries` | the logs, oldest first |
//! | `POST /_fake/settle` | waits for the queued deliveries (see below); the deliveries |
//!
//! The routes that fire events answer `{"event": …, "delivery_status":
//! n|null}` (for two events: the last one, and both under `events`).
//!
//! # Webhooks
//!
//! Events (`evt_…`, a snapshot of the object in `data.object`) are POSTed
//! to the webhook URL, while delivery is on, signed as Stripe signs them
//! (see [`sign`]), with a 10 s timeout and no retries. Events of control
//! routes and of the Pay button are delivered before the route answers.
//! Events of API calls (finalize, void, refund) are delivered after the
//! API answers, as Stripe's are, by one background task in order;
//! [`FakeStripe::settle`] (or `POST /_fake/settle`) waits for them.

mod actions;
mod api;
mod control;
mod error;
mod events;
mod form;
mod objects;
mod pages;
mod params;
mod sign;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use error::FakeError;
pub use events::Fired;
pub use sign::{hmac_sha256, sign};

use state::State;

/// How a fake behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// The API key requests must carry (`Authorization: Bearer …`).
    pub secret_key: String,
    /// Where events are POSTed; none: they are only kept.
    pub webhook_url: Option<String>,
    /// The endpoint secret signing them (`whsec_…`).
    pub webhook_secret: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secret_key: "sk_test_fake".into(),
            webhook_url: None,
            webhook_secret: "whsec_fake".into(),
        }
    }
}

/// A running fake. Dropping it stops the server.
pub struct FakeStripe {
    /// `http://127.0.0.1:PORT`: the API base (its routes are under `/v1/`).
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts a fake on a free port of 127.0.0.1, on the current Tokio runtime.
pub async fn start(options: Options) -> std::io::Result<FakeStripe> {
    start_on(0, options).await
}

/// Starts a fake on `port` of 127.0.0.1 (0: a free one).
pub async fn start_on(port: u16, options: Options) -> std::io::Result<FakeStripe> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let (state, queue) = State::new(url.clone(), options);
    let app = router(state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let worker = tokio::spawn(events::worker(state.clone(), queue));
    Ok(FakeStripe {
        url,
        addr,
        state,
        tasks: vec![server, worker],
    })
}

fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v1/{*rest}", any(api::handle))
        .route(
            "/c/pay/{id}",
            get(pages::checkout_page).post(pages::checkout_submit),
        )
        .route("/i/{id}", get(pages::invoice_page))
        .route("/i/{id}/pdf", get(pages::invoice_pdf))
        .route("/_fake/checkout/{id}/pay", post(control::checkout_pay))
        .route("/_fake/checkout/{id}/async", post(control::checkout_async))
        .route(
            "/_fake/checkout/{id}/expire",
            post(control::checkout_expire),
        )
        .route("/_fake/invoices/{id}/pay", post(control::invoice_pay))
        .route(
            "/_fake/webhooks",
            get(control::webhooks_get).post(control::webhooks_set),
        )
        .route("/_fake/events", get(control::events))
        .route("/_fake/events/{id}/resend", post(control::event_resend))
        .route("/_fake/requests", get(control::requests))
        .route("/_fake/deliveries", get(control::deliveries))
        .route("/_fake/settle", post(control::settle))
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                FakeError::unknown_url(method.as_str(), uri.path())
            },
        )
        .with_state(state)
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeStripe {
    /// Sets where events are delivered.
    pub fn set_webhook_url(&self, url: &str) {
        self.state.lock().webhook_url = Some(url.to_string());
    }

    /// Switches delivery on or off (off: an outage of the receiver; events
    /// are still kept, and can be resent).
    pub fn set_delivery(&self, on: bool) {
        self.state.lock().delivery_on = on;
    }

    /// All events so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.state
            .lock()
            .events
            .iter()
            .map(|e| e.json.clone())
            .collect()
    }

    /// The API requests so far, oldest first: `{"request_id", "method",
    /// "path", "params" (unfolded), "form" ([name, value] pairs),
    /// "idempotency_key", "stripe_version", "status", "replayed"}`.
    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().requests.clone()
    }

    /// The webhook deliveries so far, oldest first: `{"event", "type",
    /// "status" (null if the request failed), "error", "url", "timestamp",
    /// "resend"}`.
    pub fn deliveries(&self) -> Vec<Value> {
        self.state.lock().deliveries.clone()
    }

    /// Pays an open session by card (`POST /_fake/checkout/{id}/pay`).
    pub async fn pay_checkout(&self, id: &str) -> Result<Fired, FakeError> {
        control::pay_checkout(&self.state, id, false).await
    }

    /// Completes an open session with an asynchronous payment, unpaid until
    /// [`FakeStripe::finish_async_payment`] (`{"async": true}`).
    pub async fn pay_checkout_async(&self, id: &str) -> Result<Fired, FakeError> {
        control::pay_checkout(&self.state, id, true).await
    }

    /// The outcome of the session's asynchronous payment
    /// (`POST /_fake/checkout/{id}/async`).
    pub async fn finish_async_payment(&self, id: &str, succeed: bool) -> Result<Fired, FakeError> {
        control::settle_async(&self.state, id, succeed).await
    }

    /// Expires an open session (`POST /_fake/checkout/{id}/expire`).
    pub async fn expire_checkout(&self, id: &str) -> Result<Fired, FakeError> {
        control::expire_checkout(&self.state, id).await
    }

    /// Pays an open invoice: `invoice.payment_succeeded` then
    /// `invoice.paid` (`POST /_fake/invoices/{id}/pay`).
    pub async fn pay_invoice(&self, id: &str) -> Result<Vec<Fired>, FakeError> {
        control::pay_invoice(&self.state, id).await
    }

    /// Delivers event `id` again, same body, fresh signature (even with
    /// delivery off); the receiver's status (`None`: the request failed).
    pub async fn resend(&self, event_id: &str) -> Result<Option<u16>, FakeError> {
        control::resend(&self.state, event_id).await
    }

    /// Waits until the events of API calls (finalize, void, refund) are
    /// delivered.
    pub async fn settle(&self) {
        self.state.settle().await;
    }
}
