//! `/v1/refunds` (and the charges they draw on): refunds of a paid
//! session's or invoice's payment, whole or in parts.

use serde_json::Value;

use super::Ctx;
use crate::error::FakeError;
use crate::objects::{money, new_id, now, Refund};
use crate::params::Params;
use crate::state::Store;

pub(super) fn create(store: &mut Store, ctx: &mut Ctx, p: &Params) -> Result<Value, FakeError> {
    let charge_id = charge_to_refund(store, p)?;
    let amount = p.int("amount")?;
    let reason = p
        .field("reason")
        .one_of(&["duplicate", "fraudulent", "requested_by_customer"])?;
    let metadata = p.metadata("metadata")?;
    let Some(charge) = store.charge_mut(&charge_id) else {
        return Err(FakeError::no_such_param("charge", &charge_id, "charge"));
    };
    let remaining = charge.amount - charge.refunded();
    if remaining <= 0 {
        return Err(FakeError::coded(
            format!("Charge {} has already been refunded.", charge.id),
            None,
            "charge_already_refunded",
        ));
    }
    let amount = match amount {
        None => remaining,
        Some(a) if a < 1 => {
            return Err(FakeError::invalid(
                "This value must be greater than or equal to 1.",
                "amount",
            ))
        }
        Some(a) if a > remaining => {
            return Err(FakeError::invalid(
                format!(
                    "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                    money(a, &charge.currency),
                    money(remaining, &charge.currency)
                ),
                "amount",
            ))
        }
        Some(a) => a,
    };
    let refund = Refund {
        id: new_id("re_", 24),
        created: now(),
        amount,
        charge: charge.id.clone(),
        payment_intent: charge.payment_intent.clone(),
        currency: charge.currency.clone(),
        reason: reason.map(str::to_string),
        metadata,
    };
    let json = refund.to_json();
    charge.refunds.push(refund);
    let snapshot = charge.to_json();
    ctx.emit(store, "charge.refunded", snapshot);
    Ok(json)
}

/// The charge named by `payment_intent` (or `charge`).
fn charge_to_refund(store: &Store, p: &Params) -> Result<String, FakeError> {
    if let Some(id) = p.str("charge")? {
        return match store.charges.iter().find(|c| c.id == id) {
            Some(c) => Ok(c.id.clone()),
            None => Err(FakeError::no_such_param("charge", id, "charge")),
        };
    }
    let Some(pi) = p.str("payment_intent")? else {
        return Err(FakeError::missing("payment_intent"));
    };
    if let Some(charge) = store.charges.iter().find(|c| c.payment_intent == pi) {
        return Ok(charge.id.clone());
    }
    // A payment intent of a session or invoice not paid (yet).
    let known = store
        .sessions
        .iter()
        .any(|s| s.payment_intent.as_deref() == Some(pi))
        || store
            .invoices
            .iter()
            .any(|i| i.payment_intent.as_deref() == Some(pi));
    if known {
        return Err(FakeError::invalid(
            format!("This PaymentIntent ({pi}) does not have a successful charge to refund."),
            "payment_intent",
        ));
    }
    Err(FakeError::no_such_param(
        "payment_intent",
        pi,
        "payment_intent",
    ))
}

pub(super) fn retrieve(store: &Store, id: &str) -> Result<Value, FakeError> {
    store
        .charges
        .iter()
        .flat_map(|c| &c.refunds)
        .find(|r| r.id == id)
        .map(Refund::to_json)
        .ok_or_else(|| FakeError::no_such("refund", id))
}

pub(super) fn retrieve_charge(store: &Store, id: &str) -> Result<Value, FakeError> {
    store
        .charges
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.to_json())
        .ok_or_else(|| FakeError::no_such("charge", id))
}

/// `GET /v1/charges`: newest first, filtered by `payment_intent`,
/// `customer` and `created`, as Stripe lists them.
pub(super) fn list_charges(store: &Store, p: &Params) -> Result<Value, FakeError> {
    let query = super::list::ListQuery::parse(p)?;
    let payment_intent = p.str("payment_intent")?;
    let customer = p.str("customer")?;
    query.page(
        &store.charges,
        |c| &c.id,
        |c| {
            query.created.contains(c.created)
                && super::list::wanted(payment_intent, Some(&c.payment_intent))
                && super::list::wanted(customer, c.customer.as_deref())
        },
        |c| c.to_json(),
        "charge",
        "/v1/charges",
    )
}
