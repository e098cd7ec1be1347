//! The state changes a payment makes (paying, expiring, finalizing), shared
//! by the control routes, the hosted pages and the API. Each checks the
//! object's state, changes it and records its events (ids returned, in
//! order); delivering them is the caller's business.

use serde_json::Map;

use crate::error::FakeError;
use crate::events::Origin;
use crate::objects::{new_id, now, Charge};
use crate::state::Store;

impl Store {
    /// Pays an open session: synchronously (a card: paid now), or
    /// asynchronously (a bank debit: complete but unpaid until
    /// [`Store::settle_async_payment`]).
    pub(crate) fn pay_session(
        &mut self,
        base: &str,
        id: &str,
        asynchronous: bool,
    ) -> Result<Vec<String>, FakeError> {
        let session = self
            .session_mut(id)
            .ok_or_else(|| FakeError::no_such("checkout.session", id))?;
        if session.status != "open" {
            return Err(FakeError::state(format!(
                "Checkout Session {id} is {}, not open: it cannot be paid.",
                session.status
            )));
        }
        session.status = "complete";
        session.payment_intent = Some(new_id("pi_", 24));
        session.async_pending = asynchronous;
        if !asynchronous {
            self.charge_session(id);
        }
        let snapshot = self.session_json(base, id);
        Ok(vec![self.emit(
            "checkout.session.completed",
            snapshot,
            None,
        )])
    }

    /// Reports the outcome of an asynchronous payment.
    pub(crate) fn settle_async_payment(
        &mut self,
        base: &str,
        id: &str,
        succeed: bool,
    ) -> Result<Vec<String>, FakeError> {
        let session = self
            .session_mut(id)
            .ok_or_else(|| FakeError::no_such("checkout.session", id))?;
        if !session.async_pending {
            return Err(FakeError::state(format!(
                "Checkout Session {id} has no asynchronous payment waiting for its outcome \
                 (pay it with {{\"async\": true}} first)."
            )));
        }
        session.async_pending = false;
        let kind = if succeed {
            self.charge_session(id);
            "checkout.session.async_payment_succeeded"
        } else {
            "checkout.session.async_payment_failed"
        };
        let snapshot = self.session_json(base, id);
        Ok(vec![self.emit(kind, snapshot, None)])
    }

    pub(crate) fn expire_session(
        &mut self,
        base: &str,
        id: &str,
    ) -> Result<Vec<String>, FakeError> {
        let session = self
            .session_mut(id)
            .ok_or_else(|| FakeError::no_such("checkout.session", id))?;
        if session.status != "open" {
            return Err(FakeError::state(format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired; {id} is {}.",
                session.status
            )));
        }
        session.status = "expired";
        let snapshot = self.session_json(base, id);
        Ok(vec![self.emit("checkout.session.expired", snapshot, None)])
    }

    /// Marks the session paid and makes the charge behind its payment intent.
    fn charge_session(&mut self, id: &str) {
        let Some(session) = self.session_mut(id) else {
            return;
        };
        session.payment_status = "paid";
        let charge = Charge {
            id: new_id("ch_", 24),
            created: now(),
            amount: session.amount_total,
            currency: session.currency.clone(),
            payment_intent: session.payment_intent.clone().unwrap_or_default(),
            invoice: None,
            customer: session.customer.clone(),
            receipt_email: session.buyer_email.clone(),
            metadata: session.payment_metadata.clone(),
            refunds: Vec::new(),
        };
        self.charges.push(charge);
    }

    fn session_json(&self, base: &str, id: &str) -> serde_json::Value {
        self.session(id)
            .map(|s| s.to_json(base))
            .unwrap_or_default()
    }

    fn invoice_snapshot(&self, base: &str, id: &str) -> serde_json::Value {
        self.invoice(id)
            .map(|i| self.invoice_json(base, i))
            .unwrap_or_default()
    }

    /// Draft → open (`invoice.finalized`). An invoice owing nothing is paid
    /// at once, as on Stripe.
    pub(crate) fn finalize_invoice(
        &mut self,
        base: &str,
        id: &str,
        origin: Option<&Origin>,
    ) -> Result<Vec<String>, FakeError> {
        let status = self
            .invoice(id)
            .map(|i| i.status)
            .ok_or_else(|| FakeError::no_such("invoice", id))?;
        if status != "draft" {
            return Err(FakeError::state(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            ));
        }
        let total = self.invoice_total(id);
        self.finalized += 1;
        let number = format!("FAKE-{:04}", self.finalized);
        let Some(invoice) = self.invoice_mut(id) else {
            return Err(FakeError::no_such("invoice", id));
        };
        let at = now();
        invoice.status = "open";
        invoice.finalized_at = Some(at);
        invoice.number = Some(number);
        invoice.due_date = invoice.days_until_due.map(|d| at + d * 86_400);
        if total > 0 {
            invoice.payment_intent = Some(new_id("pi_", 24));
        }
        let snapshot = self.invoice_snapshot(base, id);
        let mut events = vec![self.emit("invoice.finalized", snapshot, origin)];
        if total <= 0 {
            events.extend(self.pay_invoice(base, id, origin)?);
        }
        Ok(events)
    }

    /// Open → paid (`invoice.payment_succeeded`, then `invoice.paid`).
    pub(crate) fn pay_invoice(
        &mut self,
        base: &str,
        id: &str,
        origin: Option<&Origin>,
    ) -> Result<Vec<String>, FakeError> {
        let total = self.invoice_total(id).max(0);
        let invoice = self
            .invoice_mut(id)
            .ok_or_else(|| FakeError::no_such("invoice", id))?;
        if invoice.status != "open" {
            return Err(FakeError::state(format!(
                "Invoice {id} is {}, not open: it cannot be paid.",
                invoice.status
            )));
        }
        invoice.status = "paid";
        invoice.paid_at = Some(now());
        // A zero invoice is paid without a payment (nothing to refund).
        if let Some(payment_intent) = invoice.payment_intent.clone() {
            let charge = Charge {
                id: new_id("ch_", 24),
                created: now(),
                amount: total,
                currency: invoice.currency.clone(),
                payment_intent,
                invoice: Some(invoice.id.clone()),
                customer: Some(invoice.customer.clone()),
                receipt_email: invoice.customer_email.clone(),
                metadata: Map::new(),
                refunds: Vec::new(),
            };
            invoice.charge = Some(charge.id.clone());
            self.charges.push(charge);
        }
        let snapshot = self.invoice_snapshot(base, id);
        Ok(vec![
            self.emit("invoice.payment_succeeded", snapshot.clone(), origin),
            self.emit("invoice.paid", snapshot, origin),
        ])
    }
}
