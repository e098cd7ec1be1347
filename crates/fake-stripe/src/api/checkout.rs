//! `/v1/checkout/sessions`: create (payment mode, inline `price_data`
//! line items only), retrieve, list.

use serde_json::Value;

use super::list::{wanted, ListQuery};
use super::Ctx;
use crate::error::FakeError;
use crate::objects::{new_id, now, LineItem, Session};
use crate::params::{Field, Params};
use crate::state::Store;

/// Stripe's bounds on `expires_at`: 30 minutes to 24 hours after creation.
const MIN_EXPIRY: i64 = 30 * 60;
const MAX_EXPIRY: i64 = 24 * 60 * 60;

pub(super) fn create(store: &mut Store, ctx: &mut Ctx, p: &Params) -> Result<Value, FakeError> {
    let mode = p.field("mode");
    mode.one_of(&["payment", "setup", "subscription"])?;
    if mode.required_str()? != "payment" {
        return Err(FakeError::invalid(
            "The fake Stripe supports only mode=payment.",
            "mode",
        ));
    }
    let success_url =
        url(p.field("success_url"))?.ok_or_else(|| FakeError::missing("success_url"))?;
    let cancel_url = url(p.field("cancel_url"))?;

    let (currency, line_items) = line_items(p.field("line_items"))?;
    let mut amount_total: i64 = 0;
    for (i, item) in line_items.iter().enumerate() {
        amount_total = item
            .unit_amount
            .checked_mul(item.quantity)
            .and_then(|a| a.checked_add(amount_total))
            .ok_or_else(|| {
                FakeError::invalid(
                    "The total amount is too large.",
                    &format!("line_items[{i}][quantity]"),
                )
            })?;
    }

    let client_reference_id = p.str("client_reference_id")?;
    if client_reference_id.is_some_and(|c| c.chars().count() > 200) {
        return Err(FakeError::invalid(
            "client_reference_id can have up to 200 characters.",
            "client_reference_id",
        ));
    }
    let customer = p.str("customer")?;
    let customer_email = p.str("customer_email")?;
    if customer.is_some() && customer_email.is_some() {
        return Err(FakeError::state(
            "You may only specify one of these parameters: customer, customer_email.",
        ));
    }
    let customer_record = match customer {
        Some(id) => Some(
            store
                .customer(id)
                .ok_or_else(|| FakeError::no_such_param("customer", id, "customer"))?,
        ),
        None => None,
    };

    let created = now();
    let expires_at = match p.int("expires_at")? {
        None => created + MAX_EXPIRY,
        Some(t) if t < created + MIN_EXPIRY => {
            return Err(FakeError::invalid(
                "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                "expires_at",
            ))
        }
        Some(t) if t > created + MAX_EXPIRY => {
            return Err(FakeError::invalid(
                "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                "expires_at",
            ))
        }
        Some(t) => t,
    };

    let session = Session {
        id: new_id("cs_test_", 58),
        created,
        expires_at,
        status: "open",
        payment_status: "unpaid",
        currency,
        line_items,
        amount_total,
        client_reference_id: client_reference_id.map(str::to_string),
        customer: customer.map(str::to_string),
        customer_email: customer_email.map(str::to_string),
        buyer_email: customer_email
            .map(str::to_string)
            .or_else(|| customer_record.and_then(|c| c.email.clone())),
        metadata: p.metadata("metadata")?,
        payment_metadata: p.field("payment_intent_data").key("metadata").metadata()?,
        payment_intent: None,
        success_url: success_url.to_string(),
        cancel_url: cancel_url.map(str::to_string),
        async_pending: false,
    };
    let json = session.to_json(ctx.base);
    store.sessions.push(session);
    Ok(json)
}

/// An absolute http(s) URL.
fn url<'a>(field: Field<'a>) -> Result<Option<&'a str>, FakeError> {
    match field.str()? {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => Err(
            FakeError::invalid(format!("Not a valid URL: {u}"), field.name()),
        ),
        other => Ok(other),
    }
}

/// The line items (at least one, one currency) and their currency.
fn line_items(field: Field<'_>) -> Result<(String, Vec<LineItem>), FakeError> {
    let count = field.array()?.map_or(0, Vec::len);
    if count == 0 {
        return Err(FakeError::missing(field.name()));
    }
    let mut currency: Option<String> = None;
    let mut items = Vec::with_capacity(count);
    for i in 0..count {
        let item = field.index(i);
        if item.key("price").is_present() {
            return Err(FakeError::invalid(
                "The fake Stripe has no Prices: give the line item inline price_data.",
                item.key("price").name(),
            ));
        }
        let price_data = item.key("price_data");
        if !price_data.is_present() {
            return Err(FakeError::missing(price_data.name()));
        }
        let this_currency = price_data
            .key("currency")
            .currency()?
            .ok_or_else(|| FakeError::missing(price_data.key("currency").name()))?;
        match &currency {
            Some(c) if *c != this_currency => {
                return Err(FakeError::invalid(
                    "All line items of a Checkout Session must have the same currency.",
                    price_data.key("currency").name(),
                ))
            }
            _ => currency = Some(this_currency),
        }
        let unit_amount = price_data.key("unit_amount");
        let unit = unit_amount.required_int()?;
        if unit < 0 {
            return Err(FakeError::invalid(
                "This value must be greater than or equal to 0.",
                unit_amount.name(),
            ));
        }
        let name = price_data.key("product_data").key("name").required_str()?;
        let quantity_field = item.key("quantity");
        let quantity = quantity_field.required_int()?;
        if quantity < 1 {
            return Err(FakeError::invalid(
                "This value must be greater than or equal to 1.",
                quantity_field.name(),
            ));
        }
        items.push(LineItem {
            name: name.to_string(),
            unit_amount: unit,
            quantity,
        });
    }
    // `count > 0`, so the loop set it.
    Ok((currency.unwrap_or_default(), items))
}

pub(super) fn retrieve(store: &Store, ctx: &Ctx, id: &str) -> Result<Value, FakeError> {
    store
        .session(id)
        .map(|s| s.to_json(ctx.base))
        .ok_or_else(|| FakeError::no_such("checkout.session", id))
}

pub(super) fn list(store: &Store, ctx: &Ctx, p: &Params) -> Result<Value, FakeError> {
    let query = ListQuery::parse(p)?;
    let status = p.field("status").one_of(&["open", "complete", "expired"])?;
    let customer = p.str("customer")?;
    let payment_intent = p.str("payment_intent")?;
    query.page(
        &store.sessions,
        |s| &s.id,
        |s| {
            query.created.contains(s.created)
                && wanted(status, Some(s.status))
                && wanted(customer, s.customer.as_deref())
                && wanted(payment_intent, s.payment_intent.as_deref())
        },
        |s| s.to_json(ctx.base),
        "checkout.session",
        "/v1/checkout/sessions",
    )
}
