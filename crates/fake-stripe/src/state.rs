//! What a fake keeps: its objects, events, deliveries, the request log and
//! the idempotency replays, behind one mutex (never held across an await:
//! webhook deliveries happen after it is released).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::events::StoredEvent;
use crate::objects::{Charge, Customer, Invoice, InvoiceItem, Session};

/// A stored answer to an idempotent POST.
pub(crate) struct Replay {
    /// `POST /v1/…`: a key is bound to its first endpoint.
    pub endpoint: String,
    /// The first call's parameters: a reuse with others is an error, as on
    /// Stripe.
    pub params: Value,
    pub status: u16,
    pub body: Value,
    pub request_id: String,
}

#[derive(Default)]
pub(crate) struct Store {
    /// Every list is oldest first; Stripe's lists (newest first) walk them
    /// backwards.
    pub sessions: Vec<Session>,
    pub customers: Vec<Customer>,
    pub invoices: Vec<Invoice>,
    pub items: Vec<InvoiceItem>,
    pub charges: Vec<Charge>,
    pub events: Vec<StoredEvent>,
    pub deliveries: Vec<Value>,
    pub requests: Vec<Value>,
    /// Keyed by Idempotency-Key.
    pub replays: HashMap<String, Replay>,
    pub webhook_url: Option<String>,
    pub delivery_on: bool,
    /// For invoice numbers.
    pub finalized: u32,
}

impl Store {
    pub(crate) fn session(&self, id: &str) -> Option<&Session> {
        self.sessions.iter().find(|s| s.id == id)
    }

    pub(crate) fn session_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    pub(crate) fn customer(&self, id: &str) -> Option<&Customer> {
        self.customers.iter().find(|c| c.id == id)
    }

    pub(crate) fn invoice(&self, id: &str) -> Option<&Invoice> {
        self.invoices.iter().find(|i| i.id == id)
    }

    pub(crate) fn invoice_mut(&mut self, id: &str) -> Option<&mut Invoice> {
        self.invoices.iter_mut().find(|i| i.id == id)
    }

    /// The invoice items on invoice `id`, oldest first.
    pub(crate) fn items_of(&self, id: &str) -> Vec<&InvoiceItem> {
        self.items
            .iter()
            .filter(|i| i.invoice.as_deref() == Some(id))
            .collect()
    }

    /// The invoice's total (its items' amounts).
    pub(crate) fn invoice_total(&self, id: &str) -> i64 {
        self.items_of(id).iter().map(|i| i.amount).sum()
    }

    pub(crate) fn invoice_json(&self, base: &str, invoice: &Invoice) -> Value {
        invoice.to_json(base, &self.items_of(&invoice.id))
    }

    pub(crate) fn charge_mut(&mut self, id: &str) -> Option<&mut Charge> {
        self.charges.iter_mut().find(|c| c.id == id)
    }

    pub(crate) fn event(&self, id: &str) -> Option<&StoredEvent> {
        self.events.iter().find(|e| e.id == id)
    }
}

pub(crate) struct State {
    /// `http://127.0.0.1:PORT`: where the hosted pages are.
    pub base: String,
    pub secret_key: String,
    pub webhook_secret: String,
    pub client: reqwest::Client,
    store: Mutex<Store>,
    /// Events from API calls, delivered in order by a background task.
    queue: mpsc::UnboundedSender<String>,
    /// How many of them are not delivered yet.
    pending: watch::Sender<usize>,
}

impl State {
    pub(crate) fn new(
        base: String,
        options: crate::Options,
    ) -> (Arc<State>, mpsc::UnboundedReceiver<String>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let (pending, _) = watch::channel(0);
        let client = reqwest::Client::builder()
            .timeout(crate::events::DELIVERY_TIMEOUT)
            .build()
            .unwrap_or_default();
        let store = Store {
            webhook_url: options.webhook_url,
            delivery_on: true,
            ..Store::default()
        };
        let state = State {
            base,
            secret_key: options.secret_key,
            webhook_secret: options.webhook_secret,
            client,
            store: Mutex::new(store),
            queue,
            pending,
        };
        (Arc::new(state), receiver)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking handler must not wedge the fake for the other tests.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues events for the background delivery task.
    pub(crate) fn enqueue(&self, events: Vec<String>) {
        for id in events {
            self.pending.send_modify(|n| *n += 1);
            if self.queue.send(id).is_err() {
                // The task is gone (the fake is shutting down).
                self.pending.send_modify(|n| *n = n.saturating_sub(1));
            }
        }
    }

    pub(crate) fn delivered_one(&self) {
        self.pending.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Waits until the queued deliveries are done.
    pub(crate) async fn settle(&self) {
        let mut pending = self.pending.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }
}
