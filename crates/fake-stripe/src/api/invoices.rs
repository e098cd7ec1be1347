//! `/v1/invoices` and `/v1/invoiceitems`: one-off invoices built from
//! invoice items, finalized, voided, listed. Paying one is a control route
//! (`/_fake/invoices/{id}/pay`), as a customer's payment would be.

use serde_json::Value;

use super::list::{wanted, ListQuery};
use super::Ctx;
use crate::error::FakeError;
use crate::events::Origin;
use crate::objects::{new_id, now, Invoice, InvoiceItem};
use crate::params::Params;
use crate::state::Store;

pub(super) fn create(store: &mut Store, ctx: &Ctx, p: &Params) -> Result<Value, FakeError> {
    let customer_id = p.required_str("customer")?;
    let customer = store
        .customer(customer_id)
        .ok_or_else(|| FakeError::no_such_param("customer", customer_id, "customer"))?;
    let collection_method = p
        .field("collection_method")
        .one_of(&["charge_automatically", "send_invoice"])?
        .unwrap_or("charge_automatically");
    let days_until_due = p.int("days_until_due")?;
    match (collection_method, days_until_due) {
        ("send_invoice", None) => return Err(FakeError::invalid(
            "Invoices with `collection_method=send_invoice` need `days_until_due` or `due_date`.",
            "days_until_due",
        )),
        ("charge_automatically", Some(_)) => {
            return Err(FakeError::invalid(
                "`days_until_due` can only be set when `collection_method=send_invoice`.",
                "days_until_due",
            ))
        }
        (_, Some(d)) if d < 0 => {
            return Err(FakeError::invalid(
                "This value must be greater than or equal to 0.",
                "days_until_due",
            ))
        }
        _ => {}
    }
    let behavior = p
        .field("pending_invoice_items_behavior")
        .one_of(&["exclude", "include"])?
        .unwrap_or("exclude");
    let invoice = Invoice {
        id: new_id("in_", 24),
        created: now(),
        customer: customer.id.clone(),
        customer_email: customer.email.clone(),
        customer_name: customer.name.clone(),
        currency: p
            .field("currency")
            .currency()?
            .unwrap_or_else(|| "usd".into()),
        status: "draft",
        collection_method: if collection_method == "send_invoice" {
            "send_invoice"
        } else {
            "charge_automatically"
        },
        days_until_due,
        description: p.str("description")?.map(str::to_string),
        auto_advance: p.field("auto_advance").bool()?.unwrap_or(false),
        metadata: p.metadata("metadata")?,
        number: None,
        due_date: None,
        payment_intent: None,
        charge: None,
        finalized_at: None,
        paid_at: None,
        voided_at: None,
    };
    // `include`: the customer's pending items (of the invoice's currency)
    // move onto it, as Stripe does.
    if behavior == "include" {
        for item in store.items.iter_mut().filter(|i| {
            i.invoice.is_none() && i.customer == invoice.customer && i.currency == invoice.currency
        }) {
            item.invoice = Some(invoice.id.clone());
        }
    }
    let json = store.invoice_json(ctx.base, &invoice);
    store.invoices.push(invoice);
    Ok(json)
}

pub(super) fn create_item(store: &mut Store, p: &Params) -> Result<Value, FakeError> {
    let customer = p.required_str("customer")?;
    if store.customer(customer).is_none() {
        return Err(FakeError::no_such_param("customer", customer, "customer"));
    }
    let currency = p.field("currency").currency()?;
    let invoice = match p.str("invoice")? {
        None => None,
        Some(id) => {
            let invoice = store
                .invoice(id)
                .ok_or_else(|| FakeError::no_such_param("invoice", id, "invoice"))?;
            if invoice.status != "draft" {
                return Err(FakeError::invalid(
                    format!("Invoice {id} is not a draft: invoice items can only be added to draft invoices."),
                    "invoice",
                ));
            }
            if invoice.customer != customer {
                return Err(FakeError::invalid(
                    format!(
                        "Invoice {id} belongs to customer {}, not {customer}.",
                        invoice.customer
                    ),
                    "invoice",
                ));
            }
            if let Some(c) = &currency {
                if *c != invoice.currency {
                    return Err(FakeError::invalid(
                        format!(
                            "The currency of the invoice item ({c}) must match the invoice's ({}).",
                            invoice.currency
                        ),
                        "currency",
                    ));
                }
            }
            Some(invoice)
        }
    };
    let currency = match (currency, invoice) {
        (Some(c), _) => c,
        (None, Some(invoice)) => invoice.currency.clone(),
        (None, None) => return Err(FakeError::missing("currency")),
    };
    let item = InvoiceItem {
        id: new_id("ii_", 24),
        created: now(),
        customer: customer.to_string(),
        invoice: invoice.map(|i| i.id.clone()),
        amount: p.field("amount").required_int()?,
        currency,
        description: p.str("description")?.map(str::to_string),
        metadata: p.metadata("metadata")?,
    };
    let json = item.to_json();
    store.items.push(item);
    Ok(json)
}

pub(super) fn retrieve(store: &Store, ctx: &Ctx, id: &str) -> Result<Value, FakeError> {
    store
        .invoice(id)
        .map(|i| store.invoice_json(ctx.base, i))
        .ok_or_else(|| FakeError::no_such("invoice", id))
}

pub(super) fn list(store: &Store, ctx: &Ctx, p: &Params) -> Result<Value, FakeError> {
    let query = ListQuery::parse(p)?;
    let status = p
        .field("status")
        .one_of(&["draft", "open", "paid", "void", "uncollectible"])?;
    let customer = p.str("customer")?;
    let collection_method = p
        .field("collection_method")
        .one_of(&["charge_automatically", "send_invoice"])?;
    query.page(
        &store.invoices,
        |i| &i.id,
        |i| {
            query.created.contains(i.created)
                && wanted(status, Some(i.status))
                && wanted(customer, Some(&i.customer))
                && wanted(collection_method, Some(i.collection_method))
        },
        |i| store.invoice_json(ctx.base, i),
        "invoice",
        "/v1/invoices",
    )
}

pub(super) fn finalize(store: &mut Store, ctx: &mut Ctx, id: &str) -> Result<Value, FakeError> {
    let origin = Origin {
        request_id: ctx.request_id,
        idempotency_key: ctx.idempotency_key,
    };
    let events = store.finalize_invoice(ctx.base, id, Some(&origin))?;
    ctx.events.extend(events);
    retrieve(store, ctx, id)
}

pub(super) fn void(store: &mut Store, ctx: &mut Ctx, id: &str) -> Result<Value, FakeError> {
    let invoice = store
        .invoice_mut(id)
        .ok_or_else(|| FakeError::no_such("invoice", id))?;
    if invoice.status != "open" {
        return Err(FakeError::state(format!(
            "You can only void open invoices; {id} is {}.",
            invoice.status
        )));
    }
    invoice.status = "void";
    invoice.voided_at = Some(now());
    let json = retrieve(store, ctx, id)?;
    ctx.emit(store, "invoice.voided", json.clone());
    Ok(json)
}
