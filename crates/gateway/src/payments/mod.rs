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
pub use terms::{format_amount, quote, Quote};

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

/// What a reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Objects the processor listed that say something about an order.
    pub checked: usize,
    /// Orders credited now (their webhook never arrived).
    pub credited: Vec<i64>,
    /// Orders ended (expired) now.
    pub ended: Vec<i64>,
    /// Objects that belong to no order of ours.
    pub unknown: usize,
}

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
    ) -> Result<Result<Applied, StoreError>, WebhookError> {
        let notice = self.provider.read_webhook(headers, body)?;
        Ok(self.apply(store, &notice).await)
    }

    /// Applies what a notice says to the order it names. A payment whose
    /// amount or currency differs from the order's is not credited (and
    /// logged for the operator): the processor's object was not made for it.
    pub async fn apply(&self, store: &Store, notice: &Notice) -> Result<Applied, StoreError> {
        let order = match &notice.order {
            Some(reference) => self.find_order(store, reference).await?,
            None => None,
        };
        let mut change = notice.change.clone();
        if let (Some(order), PaymentChange::Paid { .. }) = (&order, &change) {
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
            } => {
                if let Some(order) = found(store.order_by_external(provider, external_id).await)? {
                    return Ok(Some(order));
                }
                // The object was made but its id not yet kept (the process
                // stopped in between): the order id in its metadata names
                // it, if that order is still waiting for one.
                let Some(id) = order_id else { return Ok(None) };
                Ok(found(store.get_order(*id).await)?
                    .filter(|o| o.provider == provider && o.external_id.is_none()))
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

    /// Applies the processor's objects of the last `days` days: credits
    /// every paid order whose webhook never arrived (through the same
    /// exactly-once path) and ends expired ones.
    pub async fn reconcile(&self, store: &Store, days: u32) -> Result<Reconciled, ApiError> {
        let since = store::now_ms() / 1000 - i64::from(days.clamp(1, 90)) * 86_400;
        let notices = self
            .provider
            .recent(since)
            .await
            .map_err(|e| ApiError::PaymentProvider(e.0))?;
        let mut report = Reconciled::default();
        for notice in &notices {
            report.checked += 1;
            match self.apply(store, notice).await? {
                Applied::Changed(order) if order.state == OrderState::Paid => {
                    tracing::warn!(
                        order = order.id,
                        "reconciliation credited an order whose webhook never arrived"
                    );
                    report.credited.push(order.id);
                }
                Applied::Changed(order) => report.ended.push(order.id),
                Applied::NoOrder => report.unknown += 1,
                Applied::Unchanged(_) | Applied::Duplicate => {}
            }
        }
        Ok(report)
    }

    /// Refunds `amount_text` units (all that is left when `None`) of a paid
    /// order through the processor, and takes the credit back at once (the
    /// processor's `charge.refunded` event, when it comes, changes nothing
    /// more).
    pub async fn refund(
        &self,
        store: &Store,
        order_id: i64,
        amount_text: Option<&str>,
    ) -> Result<Order, ApiError> {
        let order = store.get_order(order_id).await?;
        if order.state != OrderState::Paid {
            return Err(ApiError::Conflict(format!(
                "Order #{} is {}: only a paid order can be refunded.",
                order.id,
                order.state.as_str()
            )));
        }
        let left = order.amount - order.refunded_amount;
        let amount = match amount_text.map(str::trim).filter(|t| !t.is_empty()) {
            None => left,
            Some(text) => crate::money::Decimal::parse(text)
                .ok()
                .and_then(|d| d.in_units_of(self.terms.digits))
                .filter(|a| (1..=left).contains(a))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "The refund must be an amount of {} up to the {} left to refund.",
                        order.currency.to_uppercase(),
                        format_amount(&self.terms, left)
                    ))
                })?,
        };
        let refund_id = self
            .provider
            .refund(&order, amount)
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
pub fn order_json(order: &Order, terms: &Terms, config: &Config) -> Value {
    let cpu = config.credits_per_usd;
    json!({
        "id": order.id,
        "user_id": order.user_id,
        "provider": order.provider,
        "method": order.method,
        "state": order.state.as_str(),
        "currency": order.currency,
        "amount": format_amount(terms, order.amount),
        "amount_minor": order.amount,
        "credit": format_credits(order.credit, cpu),
        "credit_usd": format_usd(order.credit),
        "bonus": format_credits(order.bonus, cpu),
        "refunded_amount": format_amount(terms, order.refunded_amount),
        "refunded_credit": format_credits(order.refunded_credit, cpu),
        "external_id": order.external_id,
        "pay_url": (order.state == OrderState::Pending).then_some(order.pay_url.clone()).flatten(),
        "receipt_url": order.receipt_url,
        "created_at": format_ms(order.created_at),
        "paid_at": order.paid_at.map(format_ms),
    })
}
