//! Top-ups: recharge orders, the processor that takes the money, and the
//! one exactly-once path every report of a payment goes through (webhook,
//! reconciliation, refund), [`Payments::apply`] on top of
//! [`store::Store::apply_payment`].

pub mod provider;
pub mod stripe;
pub mod terms;

use std::sync::Arc;

use axum::http::HeaderMap;
use serde_json::{json, Value};
use store::{Applied, Order, OrderState, PaymentChange, PaymentEvent, Store, StoreError};

use crate::config::{Config, Terms};
use crate::error::ApiError;
use crate::money::{format_credits, format_usd};
use crate::time::format_ms;
use provider::{Notice, OrderRef, Payer, PaymentProvider, ReturnUrls, WebhookError};
pub use terms::{format_amount, format_minor, quote, Quote};

/// How a user pays an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A hosted checkout page (cards, wallets, bank debits).
    Checkout,
    /// An invoice to pay by its hosted page or bank transfer (companies).
    Invoice,
}

impl Method {
    pub fn parse(text: &str) -> Option<Method> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "checkout" | "stripe_checkout" => Some(Method::Checkout),
            "invoice" | "stripe_invoice" => Some(Method::Invoice),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Checkout => "checkout",
            Method::Invoice => "invoice",
        }
    }
}

/// Most days one reconciliation looks back.
pub const MAX_RECONCILE_DAYS: u32 = 90;

/// What a reconciliation found (the API and the CLI print it as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// The days looked back.
    pub days: u32,
    /// Objects the processor listed that say something about an order.
    pub checked: usize,
    /// Orders credited now (their webhook never arrived).
    pub credited: Vec<i64>,
    /// Orders ended (expired) now.
    pub ended: Vec<i64>,
    /// Orders whose refund was taken back now (its webhook never arrived).
    pub refunded: Vec<i64>,
    /// Objects that belong to no order of ours.
    pub unknown: usize,
}

/// Most pending orders one reconciliation reads back.
const MAX_PENDING_CHECKED: i64 = 500;
/// Most unpaid orders a user may open in a day (each is an object at the
/// processor, an invoice a numbered document).
const MAX_UNPAID_PER_DAY: usize = 10;

pub struct Payments {
    terms: Terms,
    provider: Arc<dyn PaymentProvider>,
    /// Where the processor sends users back to (the console).
    public_url: String,
}

impl Payments {
    /// The configured processor, or `None` when top-ups are off.
    pub fn new(config: &Config) -> Option<Payments> {
        let payments = &config.payments;
        let provider: Arc<dyn PaymentProvider> =
            Arc::new(stripe::Stripe::new(payments.stripe.as_ref()?));
        // The terms were checked at load.
        let terms = payments.terms().ok()?;
        let public_url = payments
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen))
            .trim_end_matches('/')
            .to_string();
        Some(Payments {
            terms,
            provider,
            public_url,
        })
    }

    pub fn terms(&self) -> &Terms {
        &self.terms
    }

    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    /// Makes an order of `amount_text` units for `user_id` and opens it at
    /// the processor. A bad amount is refused before anything is written;
    /// an order the processor would not open is kept as `failed`.
    pub async fn open_order(
        &self,
        store: &Store,
        user_id: i64,
        method: Method,
        amount_text: &str,
    ) -> Result<Order, ApiError> {
        let quote = quote(&self.terms, amount_text).map_err(|e| ApiError::BadRequest(e.0))?;
        let day_ago = store::now_ms() - 86_400_000;
        let unpaid = store
            .list_orders(&store::OrderFilter {
                user_id: Some(user_id),
                state: Some(OrderState::Pending),
                limit: MAX_UNPAID_PER_DAY as i64,
                ..Default::default()
            })
            .await?;
        if unpaid.iter().filter(|o| o.created_at > day_ago).count() >= MAX_UNPAID_PER_DAY {
            return Err(ApiError::RateLimited {
                what: format!("{MAX_UNPAID_PER_DAY} unpaid top-up orders a day; pay or wait for one to expire"),
                retry_after_secs: None,
            });
        }
        let user = store.get_user(user_id).await?;
        let payer = Payer {
            user_id,
            name: user.name.clone(),
            email: store.email_of(user_id).await?,
        };
        let order = store
            .insert_order(&store::NewOrder {
                user_id,
                provider: self.provider.name().into(),
                method: method.as_str().into(),
                currency: self.terms.currency.clone(),
                amount: quote.amount,
                credit: quote.credit,
                bonus: quote.bonus,
            })
            .await?;
        let opened = match method {
            Method::Checkout => {
                let urls = ReturnUrls {
                    success: format!(
                        "{}/console/topup?order={}&paid=1",
                        self.public_url, order.id
                    ),
                    cancel: format!(
                        "{}/console/topup?order={}&cancelled=1",
                        self.public_url, order.id
                    ),
                };
                self.provider.open_checkout(&order, &payer, &urls).await
            }
            Method::Invoice => match self.customer(store, &payer).await {
                Ok(customer) => self.provider.open_invoice(&order, &customer).await,
                Err(e) => Err(e),
            },
        };
        match opened {
            Ok(opened) => Ok(store
                .order_opened(
                    order.id,
                    &opened.external_id,
                    &opened.pay_url,
                    opened.receipt_url.as_deref(),
                )
                .await?),
            Err(e) => {
                store.order_not_opened(order.id).await?;
                Err(ApiError::PaymentProvider(e.0))
            }
        }
    }

    /// The user's customer at the processor, made the first time.
    async fn customer(
        &self,
        store: &Store,
        payer: &Payer,
    ) -> Result<String, provider::ProviderError> {
        let name = self.provider.name();
        let failed =
            |e: StoreError| provider::ProviderError(format!("cannot keep the customer: {e}"));
        if let Some(id) = store
            .customer_of(payer.user_id, name)
            .await
            .map_err(failed)?
        {
            return Ok(id);
        }
        let made = self.provider.create_customer(payer).await?;
        store
            .keep_customer(payer.user_id, name, &made)
            .await
            .map_err(failed)
    }

    /// A webhook delivery: verified, then applied exactly once.
    pub async fn handle_webhook(
        &self,
        store: &Store,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Result<Applied, ApiError>, WebhookError> {
        let notice = self.provider.read_webhook(headers, body)?;
        Ok(self.apply(store, &notice).await)
    }

    /// Applies what a notice says to the order it names, exactly once.
    ///
    /// A refund can come before the payment it refunds is known here
    /// (deliveries retried out of order after an outage): the payment is
    /// then read from the processor and applied first, so that the refund
    /// is never spent on an unpaid order and lost.
    pub async fn apply(&self, store: &Store, notice: &Notice) -> Result<Applied, ApiError> {
        let mut order = self.order_of(store, notice).await?;
        if let PaymentChange::Refunded { .. } = notice.change {
            let unpaid = order
                .as_ref()
                .is_none_or(|o| !matches!(o.state, OrderState::Paid | OrderState::Refunded));
            if unpaid {
                let payment = match (&order, &notice.order) {
                    (Some(order), _) => self.provider.status(order).await,
                    (None, Some(OrderRef::Payment { payment_id, .. })) => {
                        self.provider.find_payment(payment_id).await
                    }
                    _ => Ok(None),
                }
                .map_err(|e| ApiError::PaymentProvider(e.0))?;
                if let Some(payment) =
                    payment.filter(|p| matches!(p.change, PaymentChange::Paid { .. }))
                {
                    let paid_order = self.order_of(store, &payment).await?;
                    self.apply_to(store, &payment, paid_order).await?;
                    order = self.order_of(store, notice).await?;
                }
            }
        }
        self.apply_to(store, notice, order).await
    }

    async fn order_of(&self, store: &Store, notice: &Notice) -> Result<Option<Order>, StoreError> {
        match &notice.order {
            Some(reference) => self.find_order(store, reference).await,
            None => Ok(None),
        }
    }

    /// Applies `notice` to `order` (its order, found). A payment whose
    /// amount or currency differs from the order's is not credited (and
    /// logged for the operator): the processor's object was not made for
    /// it. A refund of a charge in another currency or amount (the
    /// processor converted it) takes the same share of the order.
    async fn apply_to(
        &self,
        store: &Store,
        notice: &Notice,
        order: Option<Order>,
    ) -> Result<Applied, ApiError> {
        let mut change = notice.change.clone();
        match (&order, &mut change) {
            (Some(order), PaymentChange::Paid { .. }) => {
                let expected = (order.amount, order.currency.clone());
                if notice.paid.as_ref() != Some(&expected) {
                    tracing::error!(
                        order = order.id,
                        event = %notice.event.id,
                        paid = ?notice.paid,
                        ?expected,
                        "a payment does not match its order: not credited"
                    );
                    change = PaymentChange::Nothing;
                }
            }
            (Some(order), PaymentChange::Refunded { refunded_total }) => {
                if let Some((charged, _)) = notice.paid.as_ref().filter(|(a, _)| *a > 0) {
                    if *charged != order.amount {
                        // i128: both are at most a payment's few digits.
                        let share = i128::from((*refunded_total).min(*charged))
                            * i128::from(order.amount)
                            / i128::from(*charged);
                        *refunded_total = share as i64;
                    }
                }
            }
            _ => {}
        }
        let applied = store
            .apply_payment(&notice.event, order.as_ref().map(|o| o.id), &change)
            .await?;
        if let Applied::Changed(order) = &applied {
            tracing::info!(
                order = order.id,
                user = order.user_id,
                state = order.state.as_str(),
                event = %notice.event.id,
                kind = %notice.event.kind,
                "payment order changed"
            );
        }
        Ok(applied)
    }

    async fn find_order(
        &self,
        store: &Store,
        reference: &OrderRef,
    ) -> Result<Option<Order>, StoreError> {
        let provider = self.provider.name();
        let found = |r: Result<Order, StoreError>| match r {
            Ok(order) => Ok(Some(order)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        };
        match reference {
            OrderRef::External {
                external_id,
                order_id,
                user_id,
            } => {
                if let Some(order) = found(store.order_by_external(provider, external_id).await)? {
                    return Ok(Some(order));
                }
                // The object was made but its id not kept (the process
                // stopped, or the processor's answer was lost, in between):
                // the order and user ids in its metadata name it, if that
                // order of that user is still waiting for one.
                let Some(id) = order_id else { return Ok(None) };
                Ok(found(store.get_order(*id).await)?.filter(|o| {
                    o.provider == provider && o.external_id.is_none() && Some(o.user_id) == *user_id
                }))
            }
            OrderRef::Payment {
                payment_id,
                external_id,
            } => {
                if let Some(order) = found(store.order_by_payment(provider, payment_id).await)? {
                    return Ok(Some(order));
                }
                match external_id {
                    Some(ext) => found(store.order_by_external(provider, ext).await),
                    None => Ok(None),
                }
            }
        }
    }

    /// Brings orders in line with the processor: every pending order is
    /// read back (a payment whose webhook never arrived is credited through
    /// the same exactly-once path; an ended one is ended), the objects made
    /// in the last `days` days are listed (which finds an order whose
    /// object's id was never kept), and the refunds of orders paid in those
    /// days are read (a lost `charge.refunded` is taken back).
    pub async fn reconcile(&self, store: &Store, days: u32) -> Result<Reconciled, ApiError> {
        let now = store::now_ms();
        let days = days.clamp(1, MAX_RECONCILE_DAYS);
        let since = now / 1000 - i64::from(days) * 86_400;
        let provider = |e: provider::ProviderError| ApiError::PaymentProvider(e.0);
        let mut notices = self.provider.recent(since).await.map_err(provider)?;
        let pending = store
            .list_orders(&store::OrderFilter {
                state: Some(OrderState::Pending),
                limit: MAX_PENDING_CHECKED,
                ..Default::default()
            })
            .await?;
        for order in pending.iter().filter(|o| o.external_id.is_some()) {
            notices.extend(self.provider.status(order).await.map_err(provider)?);
        }
        // Refunds of the orders paid in those days whose event was lost.
        let paid = store
            .list_orders(&store::OrderFilter {
                state: Some(OrderState::Paid),
                limit: MAX_PENDING_CHECKED,
                ..Default::default()
            })
            .await?;
        for order in paid
            .iter()
            .filter(|o| o.paid_at.is_some_and(|t| t / 1000 >= since))
        {
            notices.extend(self.provider.refunded(order).await.map_err(provider)?);
        }
        let mut report = Reconciled {
            days,
            ..Reconciled::default()
        };
        for notice in &notices {
            report.checked += 1;
            match (self.apply(store, notice).await?, &notice.change) {
                (Applied::Changed(order), PaymentChange::Paid { .. }) => {
                    tracing::warn!(
                        order = order.id,
                        "reconciliation credited an order whose webhook never arrived"
                    );
                    report.credited.push(order.id);
                }
                (Applied::Changed(order), PaymentChange::Refunded { .. }) => {
                    tracing::warn!(
                        order = order.id,
                        "reconciliation took back a refund whose webhook never arrived"
                    );
                    report.refunded.push(order.id);
                }
                (Applied::Changed(order), _) => report.ended.push(order.id),
                (Applied::NoOrder, _) => report.unknown += 1,
                (Applied::Unchanged(_) | Applied::Duplicate, _) => {}
            }
        }
        report.credited.sort_unstable();
        report.credited.dedup();
        Ok(report)
    }

    /// Refunds `amount_text` units (all that is left when `None`) of a paid
    /// order through the processor, and takes the credit back at once (the
    /// processor's `charge.refunded` event, when it comes, changes nothing
    /// more). `request_key` (a form's nonce, an API caller's key) makes the
    /// same request sent twice one refund.
    pub async fn refund(
        &self,
        store: &Store,
        order_id: i64,
        amount_text: Option<&str>,
        request_key: Option<&str>,
    ) -> Result<Order, ApiError> {
        if let Some(key) = request_key {
            let fine = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            if key.is_empty() || key.len() > 64 || !key.bytes().all(fine) {
                return Err(ApiError::BadRequest(
                    "`idempotency_key` has 1 to 64 letters, digits, dashes or underscores.".into(),
                ));
            }
        }
        let order = store.get_order(order_id).await?;
        if order.state != OrderState::Paid {
            return Err(ApiError::Conflict(format!(
                "Order #{} is {}: only a paid order can be refunded.",
                order.id,
                order.state.as_str()
            )));
        }
        let left = order.amount - order.refunded_amount;
        let digits = crate::config::currency_digits(&order.currency);
        let amount = match amount_text.map(str::trim).filter(|t| !t.is_empty()) {
            None => left,
            Some(text) => crate::money::Decimal::parse(text)
                .ok()
                .and_then(|d| d.in_units_of(digits))
                .filter(|a| (1..=left).contains(a))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "The refund must be an amount of {} up to the {} left to refund.",
                        order.currency.to_uppercase(),
                        format_minor(&order.currency, left)
                    ))
                })?,
        };
        let refund_id = self
            .provider
            .refund(&order, amount, request_key)
            .await
            .map_err(|e| ApiError::PaymentProvider(e.0))?;
        let notice = Notice {
            event: PaymentEvent {
                provider: self.provider.name().into(),
                id: format!("refund:{refund_id}"),
                kind: "refund.created".into(),
            },
            order: order
                .payment_id
                .clone()
                .map(|payment_id| OrderRef::Payment {
                    payment_id,
                    external_id: order.external_id.clone(),
                }),
            change: PaymentChange::Refunded {
                refunded_total: order.refunded_amount + amount,
            },
            paid: None,
        };
        self.apply(store, &notice).await?;
        Ok(store.get_order(order.id).await?)
    }
}

/// An order as the APIs and pages show it: money in the currency's units
/// and in credits.
pub fn order_json(order: &Order, config: &Config) -> Value {
    let cpu = config.credits_per_usd;
    json!({
        "id": order.id,
        "user_id": order.user_id,
        "provider": order.provider,
        "method": order.method,
        "state": order.state.as_str(),
        "currency": order.currency,
        "amount": format_minor(&order.currency, order.amount),
        "amount_minor": order.amount,
        "credit": format_credits(order.credit, cpu),
        "credit_usd": format_usd(order.credit),
        "bonus": format_credits(order.bonus, cpu),
        "refunded_amount": format_minor(&order.currency, order.refunded_amount),
        "refunded_credit": format_credits(order.refunded_credit, cpu),
        "external_id": order.external_id,
        "pay_url": (order.state == OrderState::Pending).then_some(order.pay_url.clone()).flatten(),
        "receipt_url": order.receipt_url,
        "created_at": format_ms(order.created_at),
        "paid_at": order.paid_at.map(format_ms),
    })
}
