//! A payment processor as Tollgate uses it. Stripe is one implementation
//! (`stripe.rs`); another processor (an epay / Alipay-style gateway) is one
//! more module implementing this trait and one line in `Payments::new`.

use std::future::Future;
use std::pin::Pin;

use axum::http::HeaderMap;
use store::{Order, PaymentChange, PaymentEvent};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the processor sends the user after a checkout.
#[derive(Debug, Clone)]
pub struct ReturnUrls {
    pub success: String,
    pub cancel: String,
}

/// A checkout or invoice the processor opened for an order.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The processor's id for it (a Checkout Session or an Invoice).
    pub external_id: String,
    /// Where the user pays.
    pub pay_url: String,
    /// A receipt or invoice document, when there is one.
    pub receipt_url: Option<String>,
}

/// The user an order is for, as the processor's customer records name them.
#[derive(Debug, Clone)]
pub struct Payer {
    pub user_id: i64,
    pub name: String,
    pub email: Option<String>,
}

/// Which order an event is about, as the processor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    /// The processor's object (session, invoice), with the order id the
    /// object carries in its metadata, if any.
    External {
        external_id: String,
        order_id: Option<i64>,
        user_id: Option<i64>,
    },
    /// The processor's payment (a refund names only the payment), or the
    /// invoice it paid.
    Payment {
        payment_id: String,
        external_id: Option<String>,
    },
}

/// What one processor event (or one reconciled object) says.
#[derive(Debug, Clone)]
pub struct Notice {
    pub event: PaymentEvent,
    /// `None`: about nothing Tollgate orders.
    pub order: Option<OrderRef>,
    pub change: PaymentChange,
    /// What the processor's object says was paid (minor units, currency):
    /// a payment is credited only when it matches the order.
    pub paid: Option<(i64, String)>,
}

/// A processor failed or refused; the message is safe to show (no secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

/// Why a webhook delivery is refused (answered 400: the processor keeps
/// it for a retry or the operator's eyes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("The webhook signature is missing, malformed, stale or does not match.")]
    BadSignature,
    #[error("The webhook body is not an event: {0}")]
    BadBody(String),
}

pub trait PaymentProvider: Send + Sync {
    /// Its name in orders and events (`stripe`).
    fn name(&self) -> &'static str;

    /// Opens a hosted checkout for `order`.
    fn open_checkout<'a>(
        &'a self,
        order: &'a Order,
        payer: &'a Payer,
        urls: &'a ReturnUrls,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>>;

    /// Makes the payer a customer (for invoices); the caller keeps the id.
    fn create_customer<'a>(
        &'a self,
        payer: &'a Payer,
    ) -> BoxFuture<'a, Result<String, ProviderError>>;

    /// Opens (finalizes) an invoice for `order`, addressed to `customer`.
    fn open_invoice<'a>(
        &'a self,
        order: &'a Order,
        customer: &'a str,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>>;

    /// Verifies and reads a webhook delivery.
    fn read_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Notice, WebhookError>;

    /// Payments (and endings) of objects made since `since_secs`, as
    /// notices with their own stable ids: what reconciliation applies.
    fn recent<'a>(&'a self, since_secs: i64) -> BoxFuture<'a, Result<Vec<Notice>, ProviderError>>;

    /// What the processor says now of an order's object (paid, ended),
    /// with a stable notice id; `None` while it is open.
    fn status<'a>(
        &'a self,
        order: &'a Order,
    ) -> BoxFuture<'a, Result<Option<Notice>, ProviderError>>;

    /// The payment notice of the object a payment (a refund's) paid, when
    /// it is one of the processor's checkouts.
    fn find_payment<'a>(
        &'a self,
        payment_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Notice>, ProviderError>>;

    /// What has been refunded of a paid order's payment so far, as a
    /// refund notice with a stable id; `None` when nothing has been.
    fn refunded<'a>(
        &'a self,
        order: &'a Order,
    ) -> BoxFuture<'a, Result<Option<Notice>, ProviderError>>;

    /// Refunds `amount` minor units of a paid order; returns the refund's
    /// id. The processor's refund event takes the credit back too.
    /// `request_key` (a form's nonce) makes a repeated request one refund.
    fn refund<'a>(
        &'a self,
        order: &'a Order,
        amount: i64,
        request_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, ProviderError>>;
}
