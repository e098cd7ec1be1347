//! Stripe: Checkout Sessions and Invoices to take the money, webhooks
//! (signed `Stripe-Signature: t=…,v1=…`) to learn it arrived, list calls to
//! reconcile, and refunds. Requests are form-encoded with Stripe's bracket
//! notation, pinned to one API version, and carry an `Idempotency-Key`
//! derived from the order, so a retried call never opens a second checkout
//! or refunds twice.

use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use store::{Order, PaymentChange, PaymentEvent};

use super::provider::{
    BoxFuture, Notice, Opened, OrderRef, Payer, PaymentProvider, ProviderError, ReturnUrls,
    WebhookError,
};
use crate::config::{resolve_secret, StripeConfig};

/// The API version requests are made in, and webhook objects expected in
/// (set the webhook endpoint to the same version).
pub const API_VERSION: &str = "2024-06-20";
/// How old a signed webhook may be (Stripe's libraries use 300 s).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Most pages one reconciliation reads per object kind (100 objects each).
const MAX_LIST_PAGES: usize = 100;

pub struct Stripe {
    client: reqwest::Client,
    api_base: String,
    secret_key: String,
    webhook_secrets: Vec<String>,
    days_until_due: u32,
}

impl Stripe {
    pub fn new(config: &StripeConfig) -> Stripe {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Stripe {
            client,
            api_base: config.api_base.trim_end_matches('/').to_string(),
            secret_key: resolve_secret(&config.secret_key),
            webhook_secrets: config
                .webhook_secrets
                .iter()
                .map(|s| resolve_secret(s))
                // Never an empty key (refused at load too): anyone could sign.
                .filter(|s| !s.trim().is_empty())
                .collect(),
            days_until_due: config.invoice_days_until_due,
        }
    }

    /// POSTs a form to the API; `idempotency_key` makes a retry return the
    /// first call's result.
    async fn post(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, ProviderError> {
        let request = self
            .client
            .post(format!("{}{path}", self.api_base))
            .header("Idempotency-Key", idempotency_key)
            .form(form);
        self.send(request).await
    }

    async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, ProviderError> {
        let request = self
            .client
            .get(format!("{}{path}", self.api_base))
            .query(query);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, ProviderError> {
        let response = request
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", API_VERSION)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "Stripe could not be reached");
                ProviderError("Stripe could not be reached.".into())
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|_| ProviderError(format!("Stripe's answer ({status}) broke off.")))?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ProviderError(format!(
                "Stripe answered {status} with a body that is not JSON."
            ))
        })?;
        if status.is_success() {
            return Ok(body);
        }
        if status.as_u16() == 401 {
            // Stripe's message quotes part of the key: keep it out.
            tracing::error!("Stripe refused the configured secret key");
            return Err(ProviderError(
                "Stripe refused the gateway's API key.".into(),
            ));
        }
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        tracing::warn!(%status, %message, "Stripe refused a request");
        Err(ProviderError(format!(
            "Stripe refused ({status}): {message}"
        )))
    }

    /// Every object of a list endpoint matching `query`, newest first,
    /// following `has_more` pages.
    async fn list_all(
        &self,
        path: &str,
        query: Vec<(String, String)>,
    ) -> Result<Vec<Value>, ProviderError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut page_query = query.clone();
            page_query.push(("limit".into(), "100".into()));
            if let Some(id) = &after {
                page_query.push(("starting_after".into(), id.clone()));
            }
            let page = self.get(path, &page_query).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            after = data.last().and_then(|o| o["id"].as_str()).map(String::from);
            all.extend(data);
            if !page["has_more"].as_bool().unwrap_or(false) || after.is_none() {
                return Ok(all);
            }
        }
        tracing::warn!(path, "reconciliation stopped after {MAX_LIST_PAGES} pages");
        Ok(all)
    }
}

fn pair(key: &str, value: impl ToString) -> (String, String) {
    (key.to_string(), value.to_string())
}

fn id_of(value: &Value) -> Result<String, ProviderError> {
    value["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| ProviderError("Stripe answered without an object id.".into()))
}

impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn open_checkout<'a>(
        &'a self,
        order: &'a Order,
        payer: &'a Payer,
        urls: &'a ReturnUrls,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>> {
        Box::pin(async move {
            let mut form = vec![
                pair("mode", "payment"),
                pair("client_reference_id", order.id),
                pair("success_url", &urls.success),
                pair("cancel_url", &urls.cancel),
                pair("line_items[0][quantity]", 1),
                pair("line_items[0][price_data][currency]", &order.currency),
                pair("line_items[0][price_data][unit_amount]", order.amount),
                pair(
                    "line_items[0][price_data][product_data][name]",
                    format!("Balance top-up (order #{})", order.id),
                ),
                pair(ORDER_KEY, order.id),
                pair(USER_KEY, order.user_id),
                pair("payment_intent_data[metadata][tollgate_order_id]", order.id),
            ];
            if let Some(email) = &payer.email {
                form.push(pair("customer_email", email));
            }
            let session = self
                .post(
                    "/v1/checkout/sessions",
                    &form,
                    &format!("tollgate-order-{}-checkout", order.id),
                )
                .await?;
            let url = session["url"]
                .as_str()
                .ok_or_else(|| ProviderError("Stripe's session has no URL.".into()))?;
            Ok(Opened {
                external_id: id_of(&session)?,
                pay_url: url.to_string(),
                receipt_url: None,
            })
        })
    }

    fn create_customer<'a>(
        &'a self,
        payer: &'a Payer,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let mut form = vec![pair("name", &payer.name), pair(USER_KEY, payer.user_id)];
            if let Some(email) = &payer.email {
                form.push(pair("email", email));
            }
            let customer = self
                .post(
                    "/v1/customers",
                    &form,
                    &format!("tollgate-customer-{}", payer.user_id),
                )
                .await?;
            id_of(&customer)
        })
    }

    fn open_invoice<'a>(
        &'a self,
        order: &'a Order,
        customer: &'a str,
    ) -> BoxFuture<'a, Result<Opened, ProviderError>> {
        Box::pin(async move {
            let key = |step: &str| format!("tollgate-order-{}-invoice-{step}", order.id);
            let invoice = self
                .post(
                    "/v1/invoices",
                    &[
                        pair("customer", customer),
                        pair("collection_method", "send_invoice"),
                        pair("days_until_due", self.days_until_due),
                        pair("currency", &order.currency),
                        pair("auto_advance", "false"),
                        pair("pending_invoice_items_behavior", "exclude"),
                        pair(
                            "description",
                            format!("Balance top-up (order #{})", order.id),
                        ),
                        pair(ORDER_KEY, order.id),
                        pair(USER_KEY, order.user_id),
                    ],
                    &key("create"),
                )
                .await?;
            let invoice_id = id_of(&invoice)?;
            self.post(
                "/v1/invoiceitems",
                &[
                    pair("customer", customer),
                    pair("invoice", &invoice_id),
                    pair("amount", order.amount),
                    pair("currency", &order.currency),
                    pair(
                        "description",
                        format!("Balance top-up (order #{})", order.id),
                    ),
                    pair(ORDER_KEY, order.id),
                ],
                &key("item"),
            )
            .await?;
            let finalized = self
                .post(
                    &format!("/v1/invoices/{invoice_id}/finalize"),
                    &[],
                    &key("finalize"),
                )
                .await?;
            let url = finalized["hosted_invoice_url"]
                .as_str()
                .ok_or_else(|| ProviderError("Stripe's invoice has no hosted URL.".into()))?;
            Ok(Opened {
                external_id: invoice_id,
                pay_url: url.to_string(),
                receipt_url: finalized["invoice_pdf"].as_str().map(String::from),
            })
        })
    }

    fn read_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Notice, WebhookError> {
        let header = headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::BadSignature)?;
        verify_signature(header, body, &self.webhook_secrets, store::now_ms() / 1000)?;
        let event: Value =
            serde_json::from_slice(body).map_err(|e| WebhookError::BadBody(e.to_string()))?;
        notice_of_event(&event)
    }

    fn recent<'a>(&'a self, since_secs: i64) -> BoxFuture<'a, Result<Vec<Notice>, ProviderError>> {
        Box::pin(async move {
            let since = vec![pair("created[gte]", since_secs)];
            let mut notices = Vec::new();
            for session in self
                .list_all("/v1/checkout/sessions", since.clone())
                .await?
            {
                notices.extend(reconciled_session(&session));
            }
            let mut paid = since;
            paid.push(pair("status", "paid"));
            for invoice in self.list_all("/v1/invoices", paid).await? {
                notices.extend(reconciled_invoice(&invoice));
            }
            Ok(notices)
        })
    }

    fn status<'a>(
        &'a self,
        order: &'a Order,
    ) -> BoxFuture<'a, Result<Option<Notice>, ProviderError>> {
        Box::pin(async move {
            let Some(id) = order.external_id.as_deref() else {
                return Ok(None);
            };
            // Ids come from Stripe; still, nothing but an id goes in a path.
            if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Ok(None);
            }
            Ok(match order.method.as_str() {
                "invoice" => {
                    reconciled_invoice(&self.get(&format!("/v1/invoices/{id}"), &[]).await?)
                }
                _ => reconciled_session(
                    &self
                        .get(&format!("/v1/checkout/sessions/{id}"), &[])
                        .await?,
                ),
            })
        })
    }

    fn find_payment<'a>(
        &'a self,
        payment_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Notice>, ProviderError>> {
        Box::pin(async move {
            let page = self
                .get(
                    "/v1/checkout/sessions",
                    &[pair("payment_intent", payment_id), pair("limit", 1)],
                )
                .await?;
            Ok(page["data"]
                .as_array()
                .and_then(|d| d.first())
                .and_then(reconciled_session))
        })
    }

    fn refunded<'a>(
        &'a self,
        order: &'a Order,
    ) -> BoxFuture<'a, Result<Option<Notice>, ProviderError>> {
        Box::pin(async move {
            let Some(payment) = order.payment_id.as_deref() else {
                return Ok(None);
            };
            let page = self
                .get(
                    "/v1/charges",
                    &[pair("payment_intent", payment), pair("limit", 10)],
                )
                .await?;
            Ok(page["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["amount_refunded"].as_i64().unwrap_or(0) > 0)
                .and_then(reconciled_refund))
        })
    }

    fn refund<'a>(
        &'a self,
        order: &'a Order,
        amount: i64,
        request_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(async move {
            let payment = order.payment_id.as_deref().ok_or_else(|| {
                ProviderError("This order has no Stripe payment to refund.".into())
            })?;
            let refund = self
                .post(
                    "/v1/refunds",
                    &[
                        pair("payment_intent", payment),
                        pair("amount", amount),
                        pair(ORDER_KEY, order.id),
                    ],
                    // The same refund asked twice (a double click, a retry
                    // of the same form) is one refund.
                    &match request_key {
                        Some(key) => format!("tollgate-order-{}-refund-{key}", order.id),
                        None => format!(
                            "tollgate-order-{}-refund-{}-{amount}",
                            order.id, order.refunded_amount
                        ),
                    },
                )
                .await?;
            id_of(&refund)
        })
    }
}

/// Checks a `Stripe-Signature` header (`t=…,v1=…[,v1=…]`) against the raw
/// body: some `v1` must be the HMAC-SHA256 of `"{t}.{body}"` under one of
/// `secrets` (compared in constant time), and `t` within the tolerance of
/// `now_secs`.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secrets: &[String],
    now_secs: i64,
) -> Result<(), WebhookError> {
    let mut timestamp: Option<i64> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse().ok(),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::BadSignature)?;
    if now_secs.abs_diff(timestamp) > SIGNATURE_TOLERANCE_SECS.unsigned_abs() {
        return Err(WebhookError::BadSignature);
    }
    for secret in secrets {
        for signature in &signatures {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                continue;
            };
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            // `verify_slice` compares in constant time.
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(WebhookError::BadSignature)
}

/// The header Stripe would send for `body` at `timestamp` (tests, and the
/// fake's counterpart).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The metadata keys Tollgate writes on what it makes at Stripe: its own
/// names, so another integration's objects on the same account (their
/// `client_reference_id`, their `order_id`) are never taken for ours.
const ORDER_KEY: &str = "metadata[tollgate_order_id]";
const USER_KEY: &str = "metadata[tollgate_user_id]";

fn metadata_id(object: &Value, key: &str) -> Option<i64> {
    object["metadata"][key]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// The order (and its user) an object of ours names in its metadata.
fn external(object: &Value) -> Option<OrderRef> {
    Some(OrderRef::External {
        external_id: text(&object["id"])?,
        order_id: metadata_id(object, "tollgate_order_id"),
        user_id: metadata_id(object, "tollgate_user_id"),
    })
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(String::from)
}

/// What a verified event says. Types Tollgate does not act on are read as
/// being about no order.
pub fn notice_of_event(event: &Value) -> Result<Notice, WebhookError> {
    let id = event["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| WebhookError::BadBody("no event id".into()))?;
    let kind = event["type"]
        .as_str()
        .ok_or_else(|| WebhookError::BadBody("no event type".into()))?;
    let object = &event["data"]["object"];
    let session = || external(object);
    let paid = || PaymentChange::Paid {
        payment_id: text(&object["payment_intent"]),
    };
    let (order, change) = match kind {
        "checkout.session.completed" if object["payment_status"] == "paid" => (session(), paid()),
        // Completed, but a delayed method (a bank debit) has not paid yet:
        // an `async_payment_*` event follows.
        "checkout.session.completed" => (session(), PaymentChange::Nothing),
        "checkout.session.async_payment_succeeded" => (session(), paid()),
        "checkout.session.async_payment_failed" => (session(), PaymentChange::Failed),
        "checkout.session.expired" => (session(), PaymentChange::Expired),
        "invoice.paid" => (session(), paid()),
        // Closed unpaid: the order's pay link is dead.
        "invoice.voided" => (session(), PaymentChange::Expired),
        "invoice.marked_uncollectible" => (session(), PaymentChange::Failed),
        "charge.refunded" => (
            text(&object["payment_intent"]).map(|payment_id| OrderRef::Payment {
                payment_id,
                external_id: text(&object["invoice"]),
            }),
            PaymentChange::Refunded {
                refunded_total: object["amount_refunded"].as_i64().unwrap_or(0),
            },
        ),
        _ => (None, PaymentChange::Nothing),
    };
    Ok(Notice {
        event: PaymentEvent {
            provider: "stripe".into(),
            id: id.to_string(),
            kind: kind.to_string(),
        },
        order,
        change,
        paid: paid_figures(kind, object),
    })
}

/// What the object says was paid (minor units, currency), to check it
/// against the order before crediting.
/// For a refunded charge, the charge's own amount and currency: the
/// refunded share is taken of it.
fn paid_figures(kind: &str, object: &Value) -> Option<(i64, String)> {
    let amount = if kind.starts_with("invoice.") || object["object"] == "invoice" {
        // The invoice's total: part of it may be paid from the customer's
        // Stripe balance, which is still paid.
        object["total"]
            .as_i64()
            .or_else(|| object["amount_paid"].as_i64())
    } else if kind == "charge.refunded" {
        object["amount"].as_i64()
    } else {
        object["amount_total"].as_i64()
    }?;
    Some((amount, text(&object["currency"])?))
}

/// A listed session as reconciliation reads it: paid ones credit, expired
/// ones end their order; others say nothing.
fn reconciled_session(session: &Value) -> Option<Notice> {
    let id = session["id"].as_str()?;
    let (suffix, change) = match (
        session["status"].as_str(),
        session["payment_status"].as_str(),
    ) {
        (Some("complete"), Some("paid")) => (
            "paid",
            PaymentChange::Paid {
                payment_id: text(&session["payment_intent"]),
            },
        ),
        (Some("expired"), _) => ("expired", PaymentChange::Expired),
        _ => return None,
    };
    Some(Notice {
        event: PaymentEvent {
            provider: "stripe".into(),
            id: format!("reconcile:{id}:{suffix}"),
            kind: format!("reconcile.checkout.session.{suffix}"),
        },
        order: external(session),
        change,
        paid: paid_figures("checkout.session", session),
    })
}

/// A listed charge with refunds, as reconciliation reads it: the id names
/// the cumulative amount, so the same refunds read twice are one notice.
fn reconciled_refund(charge: &Value) -> Option<Notice> {
    let id = charge["id"].as_str()?;
    let refunded = charge["amount_refunded"].as_i64()?;
    Some(Notice {
        event: PaymentEvent {
            provider: "stripe".into(),
            id: format!("reconcile:{id}:refunded:{refunded}"),
            kind: "reconcile.charge.refunded".into(),
        },
        order: Some(OrderRef::Payment {
            payment_id: text(&charge["payment_intent"])?,
            external_id: text(&charge["invoice"]),
        }),
        change: PaymentChange::Refunded {
            refunded_total: refunded,
        },
        paid: paid_figures("charge.refunded", charge),
    })
}

fn reconciled_invoice(invoice: &Value) -> Option<Notice> {
    let id = invoice["id"].as_str()?;
    (invoice["status"] == "paid").then(|| Notice {
        event: PaymentEvent {
            provider: "stripe".into(),
            id: format!("reconcile:{id}:paid"),
            kind: "reconcile.invoice.paid".into(),
        },
        order: external(invoice),
        change: PaymentChange::Paid {
            payment_id: text(&invoice["payment_intent"]),
        },
        paid: paid_figures("invoice.paid", invoice),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn a_signature_is_accepted_with_any_current_secret_and_refused_otherwise() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let header = sign(SECRET, now, body);
        let secrets = vec![SECRET.to_string()];
        assert_eq!(verify_signature(&header, body, &secrets, now), Ok(()));
        // Within the tolerance either way.
        assert_eq!(verify_signature(&header, body, &secrets, now + 300), Ok(()));
        assert_eq!(verify_signature(&header, body, &secrets, now - 300), Ok(()));
        let bad = Err(WebhookError::BadSignature);
        assert_eq!(verify_signature(&header, body, &secrets, now + 301), bad);
        assert_eq!(verify_signature(&header, b"{}", &secrets, now), bad);
        assert_eq!(
            verify_signature(&header, body, &["whsec_other".to_string()], now),
            bad
        );
        // While a secret is rolled: the old one among several, and several
        // `v1`s of which one matches.
        let rolled = vec!["whsec_new".to_string(), SECRET.to_string()];
        assert_eq!(verify_signature(&header, body, &rolled, now), Ok(()));
        let new_sig = sign("whsec_new", now, body);
        let both = format!(
            "{header},v1={}",
            &new_sig[new_sig.find("v1=").unwrap() + 3..]
        );
        assert_eq!(verify_signature(&both, body, &secrets, now), Ok(()));
        for malformed in [
            "",
            "t=abc,v1=00",
            "v1=00",
            "t=1700000000",
            "t=1700000000,v1=zz",
        ] {
            assert_eq!(verify_signature(malformed, body, &secrets, now), bad);
        }
    }

    fn event(kind: &str, object: Value) -> Value {
        json!({"id": "evt_1", "object": "event", "type": kind, "data": {"object": object}})
    }

    #[test]
    fn checkout_events_name_their_session_and_credit_only_when_paid() {
        let session = |payment_status: &str| {
            json!({"id": "cs_1", "object": "checkout.session", "client_reference_id": "7",
                   "metadata": {"tollgate_order_id": "7", "tollgate_user_id": "3"},
                   "payment_status": payment_status,
                   "payment_intent": "pi_1", "amount_total": 2500, "currency": "usd"})
        };
        let paid = notice_of_event(&event("checkout.session.completed", session("paid"))).unwrap();
        assert_eq!(
            paid.order,
            Some(OrderRef::External {
                external_id: "cs_1".into(),
                order_id: Some(7),
                user_id: Some(3),
            })
        );
        assert_eq!(
            paid.change,
            PaymentChange::Paid {
                payment_id: Some("pi_1".into())
            }
        );
        assert_eq!(paid.paid, Some((2500, "usd".into())));
        let waiting =
            notice_of_event(&event("checkout.session.completed", session("unpaid"))).unwrap();
        assert_eq!(waiting.change, PaymentChange::Nothing);
        for (kind, change) in [
            (
                "checkout.session.async_payment_succeeded",
                PaymentChange::Paid {
                    payment_id: Some("pi_1".into()),
                },
            ),
            (
                "checkout.session.async_payment_failed",
                PaymentChange::Failed,
            ),
            ("checkout.session.expired", PaymentChange::Expired),
        ] {
            assert_eq!(
                notice_of_event(&event(kind, session("unpaid")))
                    .unwrap()
                    .change,
                change
            );
        }
    }

    #[test]
    fn invoices_refunds_and_other_events() {
        let invoice = json!({"id": "in_1", "object": "invoice", "metadata": {"tollgate_order_id": "9"},
                              "payment_intent": "pi_9", "amount_paid": 10000, "currency": "usd"});
        let paid = notice_of_event(&event("invoice.paid", invoice)).unwrap();
        assert_eq!(paid.paid, Some((10000, "usd".into())));
        assert!(matches!(
            paid.order,
            Some(OrderRef::External {
                order_id: Some(9),
                ..
            })
        ));
        let charge = json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_9",
                            "amount": 10000, "amount_refunded": 2500, "invoice": "in_1"});
        let refund = notice_of_event(&event("charge.refunded", charge)).unwrap();
        assert_eq!(
            refund.change,
            PaymentChange::Refunded {
                refunded_total: 2500
            }
        );
        assert_eq!(
            refund.order,
            Some(OrderRef::Payment {
                payment_id: "pi_9".into(),
                external_id: Some("in_1".into())
            })
        );
        let other = notice_of_event(&event("customer.created", json!({"id": "cus_1"}))).unwrap();
        assert_eq!((other.order, other.change), (None, PaymentChange::Nothing));
        assert!(notice_of_event(&json!({"type": "invoice.paid"})).is_err());
    }

    #[test]
    fn reconciliation_reads_paid_and_expired_sessions_and_paid_invoices() {
        let paid = json!({"id": "cs_2", "status": "complete", "payment_status": "paid",
                          "client_reference_id": "3", "payment_intent": "pi_2"});
        let notice = reconciled_session(&paid).unwrap();
        assert_eq!(notice.event.id, "reconcile:cs_2:paid");
        let open = json!({"id": "cs_3", "status": "open", "payment_status": "unpaid"});
        assert!(reconciled_session(&open).is_none());
        let waiting = json!({"id": "cs_4", "status": "complete", "payment_status": "unpaid"});
        assert!(reconciled_session(&waiting).is_none());
        let expired = json!({"id": "cs_5", "status": "expired", "payment_status": "unpaid"});
        assert_eq!(
            reconciled_session(&expired).unwrap().change,
            PaymentChange::Expired
        );
        let invoice = json!({"id": "in_2", "status": "paid", "payment_intent": "pi_3"});
        assert_eq!(
            reconciled_invoice(&invoice).unwrap().event.id,
            "reconcile:in_2:paid"
        );
    }
}
