//! The Stripe objects the fake keeps, and their JSON as API version
//! 2024-06-20 shows them (the fields a gateway reads; not every field Stripe
//! has).

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Map, Value};

/// A fresh id: `prefix` and `len` random letters and digits.
pub(crate) fn new_id(prefix: &str, len: usize) -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}

/// Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// One `line_items[i]` of a Checkout Session (inline `price_data` only).
#[derive(Clone, Debug)]
pub(crate) struct LineItem {
    pub name: String,
    pub unit_amount: i64,
    pub quantity: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub id: String,
    pub created: i64,
    pub expires_at: i64,
    /// `open`, `complete` or `expired`.
    pub status: &'static str,
    /// `unpaid` or `paid` (`no_payment_required` never: mode is `payment`).
    pub payment_status: &'static str,
    pub currency: String,
    pub line_items: Vec<LineItem>,
    pub amount_total: i64,
    pub client_reference_id: Option<String>,
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    /// `customer_email`, or the email of `customer`: what
    /// `customer_details` shows once paid.
    pub buyer_email: Option<String>,
    pub metadata: Map<String, Value>,
    /// `payment_intent_data[metadata]`: what the charge carries.
    pub payment_metadata: Map<String, Value>,
    pub payment_intent: Option<String>,
    pub success_url: String,
    pub cancel_url: Option<String>,
    /// Paid "asynchronously" (bank debit…), its outcome not reported yet.
    pub async_pending: bool,
}

impl Session {
    pub(crate) fn to_json(&self, base: &str) -> Value {
        // Stripe shows the URL only while the session can still be paid.
        let url = (self.status == "open").then(|| format!("{base}/c/pay/{}", self.id));
        let details = (self.status == "complete").then(|| {
            json!({"email": self.buyer_email, "name": null, "phone": null, "address": null, "tax_exempt": "none", "tax_ids": []})
        });
        json!({
            "id": self.id,
            "object": "checkout.session",
            "amount_subtotal": self.amount_total,
            "amount_total": self.amount_total,
            "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "customer_details": details,
            "customer_email": self.customer_email,
            "expires_at": self.expires_at,
            "invoice": null,
            "livemode": false,
            "metadata": self.metadata,
            "mode": "payment",
            "payment_intent": self.payment_intent,
            "payment_method_types": ["card"],
            "payment_status": self.payment_status,
            "status": self.status,
            "success_url": self.success_url,
            "url": url,
        })
    }

    /// The name the hosted page shows: the first item's (and how many more).
    pub(crate) fn product_name(&self) -> String {
        match self.line_items.as_slice() {
            [] => String::new(),
            [one] => one.name.clone(),
            [first, rest @ ..] => format!("{} and {} more", first.name, rest.len()),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Customer {
    pub id: String,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Customer {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "customer",
            "created": self.created,
            "description": self.description,
            "email": self.email,
            "livemode": false,
            "metadata": self.metadata,
            "name": self.name,
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct InvoiceItem {
    pub id: String,
    pub created: i64,
    pub customer: String,
    /// `None`: pending, on the customer, for a later invoice.
    pub invoice: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub description: Option<String>,
    pub metadata: Map<String, Value>,
}

impl InvoiceItem {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "invoiceitem",
            "amount": self.amount,
            "currency": self.currency,
            "customer": self.customer,
            "date": self.created,
            "description": self.description,
            "invoice": self.invoice,
            "livemode": false,
            "metadata": self.metadata,
            "proration": false,
            "quantity": 1,
            "unit_amount": self.amount,
        })
    }

    /// The invoice's line for this item.
    pub(crate) fn line_json(&self) -> Value {
        json!({
            "id": format!("il_{}", self.id.trim_start_matches("ii_")),
            "object": "line_item",
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "invoice": self.invoice,
            "invoice_item": self.id,
            "livemode": false,
            "metadata": self.metadata,
            "quantity": 1,
            "type": "invoiceitem",
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Invoice {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub currency: String,
    /// `draft`, `open`, `paid`, `void` (`uncollectible` never).
    pub status: &'static str,
    pub collection_method: &'static str,
    pub days_until_due: Option<i64>,
    pub description: Option<String>,
    pub auto_advance: bool,
    pub metadata: Map<String, Value>,
    pub number: Option<String>,
    pub due_date: Option<i64>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
}

impl Invoice {
    /// `items`: its own (the store's items whose `invoice` is this one).
    pub(crate) fn to_json(&self, base: &str, items: &[&InvoiceItem]) -> Value {
        let total: i64 = items.iter().map(|i| i.amount).sum();
        // A credit balance is not owed: the invoice asks for nothing then.
        let due = total.max(0);
        let paid = self.status == "paid";
        let amount_paid = if paid { due } else { 0 };
        let amount_remaining = if paid || self.status == "void" {
            0
        } else {
            due
        };
        let hosted = (self.status != "draft").then(|| format!("{base}/i/{}", self.id));
        let pdf = hosted.as_ref().map(|h| format!("{h}/pdf"));
        let lines: Vec<Value> = items.iter().map(|i| i.line_json()).collect();
        json!({
            "id": self.id,
            "object": "invoice",
            "amount_due": due,
            "amount_paid": amount_paid,
            "amount_remaining": amount_remaining,
            "attempted": paid,
            "auto_advance": self.auto_advance,
            "charge": self.charge,
            "collection_method": self.collection_method,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "customer_email": self.customer_email,
            "customer_name": self.customer_name,
            "days_until_due": self.days_until_due,
            "description": self.description,
            "due_date": self.due_date,
            "hosted_invoice_url": hosted,
            "invoice_pdf": pdf,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": false,
                "total_count": items.len(),
                "url": format!("/v1/invoices/{}/lines", self.id),
            },
            "livemode": false,
            "metadata": self.metadata,
            "number": self.number,
            "paid": paid,
            "payment_intent": self.payment_intent,
            "status": self.status,
            "status_transitions": {
                "finalized_at": self.finalized_at,
                "marked_uncollectible_at": null,
                "paid_at": self.paid_at,
                "voided_at": self.voided_at,
            },
            "subscription": null,
            "subtotal": total,
            "total": total,
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Refund {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub charge: String,
    pub payment_intent: String,
    pub currency: String,
    pub reason: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Refund {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": null,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "metadata": self.metadata,
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "status": "succeeded",
        })
    }
}

/// The successful charge behind a paid session or invoice: what refunds
/// draw on.
#[derive(Clone, Debug)]
pub(crate) struct Charge {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub currency: String,
    pub payment_intent: String,
    pub invoice: Option<String>,
    pub customer: Option<String>,
    pub receipt_email: Option<String>,
    pub metadata: Map<String, Value>,
    /// Oldest first.
    pub refunds: Vec<Refund>,
}

impl Charge {
    pub(crate) fn refunded(&self) -> i64 {
        self.refunds.iter().map(|r| r.amount).sum()
    }

    pub(crate) fn to_json(&self) -> Value {
        let refunded = self.refunded();
        let refunds: Vec<Value> = self.refunds.iter().rev().map(Refund::to_json).collect();
        json!({
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": self.amount,
            "amount_refunded": refunded,
            "captured": true,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "invoice": self.invoice,
            "livemode": false,
            "metadata": self.metadata,
            "paid": true,
            "payment_intent": self.payment_intent,
            "receipt_email": self.receipt_email,
            "refunded": refunded == self.amount,
            "refunds": {
                "object": "list",
                "data": refunds,
                "has_more": false,
                "total_count": self.refunds.len(),
                "url": format!("/v1/charges/{}/refunds", self.id),
            },
            "status": "succeeded",
        })
    }
}

/// `amount` in minor units as Stripe writes it in messages: `$12.34`
/// (zero-decimal currencies without decimals).
pub(crate) fn money(amount: i64, currency: &str) -> String {
    const ZERO_DECIMAL: &[&str] = &[
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    let symbol = match currency {
        "usd" | "cad" | "aud" | "nzd" | "hkd" | "sgd" | "mxn" => "$".to_string(),
        "eur" => "€".to_string(),
        "gbp" => "£".to_string(),
        "jpy" => "¥".to_string(),
        other => format!("{} ", other.to_ascii_uppercase()),
    };
    if ZERO_DECIMAL.contains(&currency) {
        format!("{symbol}{amount}")
    } else {
        let sign = if amount < 0 { "-" } else { "" };
        let abs = amount.unsigned_abs();
        format!("{sign}{symbol}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats() {
        assert_eq!(money(1234, "usd"), "$12.34");
        assert_eq!(money(5, "eur"), "€0.05");
        assert_eq!(money(500, "jpy"), "¥500");
        assert_eq!(money(100, "chf"), "CHF 1.00");
    }

    #[test]
    fn ids() {
        let id = new_id("cs_test_", 58);
        assert!(id.starts_with("cs_test_"));
        assert_eq!(id.len(), 66);
        assert!(id[8..].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
