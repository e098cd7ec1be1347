//! Top-ups against the fake Stripe in `crates/fake-stripe` (Stripe's
//! documented shapes, form bodies and `Stripe-Signature`): an order opens a
//! checkout or an invoice, the signed webhook credits it exactly once
//! however often and however concurrently it comes, bad signatures change
//! nothing, delayed payments, expiries, refunds and reconciliation.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use store::{OrderFilter, OrderState};

use crate::common::*;

pub(crate) const WEBHOOK_SECRET: &str = "whsec_test_current";
const OLD_WEBHOOK_SECRET: &str = "whsec_test_old";
pub(crate) const STRIPE_KEY: &str = "sk_test_tollgate_fake";
/// 1 USD in nano-USD.
const USD: i64 = 1_000_000_000;

struct Setup {
    gw: Gateway,
    stripe: fake_stripe::FakeStripe,
    http: reqwest::Client,
    _mock: Mock,
}

pub(crate) fn payments_config(stripe_url: &str) -> String {
    format!(
        r#"
[payments]
currency = "usd"
min_amount = 5
max_amount = 1000
preset_amounts = [10, 50]
public_url = "http://console.example"

[[payments.bonus]]
from = 100
percent = 5

[payments.stripe]
secret_key = "{STRIPE_KEY}"
webhook_secrets = ["{WEBHOOK_SECRET}", "{OLD_WEBHOOK_SECRET}"]
api_base = "{stripe_url}"
"#
    )
}

async fn setup() -> Setup {
    let mock = start_mock().await;
    let stripe = fake_stripe::start(fake_stripe::Options {
        secret_key: STRIPE_KEY.into(),
        webhook_url: None,
        webhook_secret: WEBHOOK_SECRET.into(),
    })
    .await
    .unwrap();
    let gw = start_gateway_with(&mock.url, None, "", &payments_config(&stripe.url)).await;
    let http = reqwest::Client::new();
    let setup = Setup {
        gw,
        stripe,
        http,
        _mock: mock,
    };
    setup
        .control(
            "/_fake/webhooks",
            json!({"on": true, "url": format!("{}/api/v1/pay/stripe/webhook", setup.gw.url)}),
        )
        .await;
    setup
}

impl Setup {
    /// Calls a control route of the fake Stripe.
    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.stripe.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn fake_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.stripe.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Orders `amount` with `key`; returns the envelope's status and data.
    async fn order(&self, key: &str, amount: &str, method: &str) -> (u16, Value) {
        let (status, body) = self
            .gw
            .post_json(
                "/api/v1/pay/orders/create",
                key,
                &json!({"amount": amount, "method": method}),
            )
            .await;
        (status, body)
    }

    async fn paid_order(&self, key: &str, amount: &str) -> (i64, String) {
        let (status, body) = self.order(key, amount, "checkout").await;
        assert_eq!(status, 200, "{body}");
        let session = body["data"]["external_id"].as_str().unwrap().to_string();
        let paid = self
            .control(&format!("/_fake/checkout/{session}/pay"), json!({}))
            .await;
        assert_eq!(paid["delivery_status"], 200, "{paid}");
        (body["data"]["id"].as_i64().unwrap(), session)
    }

    async fn balance(&self, user: i64) -> i64 {
        self.gw.app.store.get_user(user).await.unwrap().balance
    }

    async fn state(&self, order: i64) -> OrderState {
        self.gw.app.store.get_order(order).await.unwrap().state
    }

    /// POSTs `body` to the webhook with `signature` (or none).
    async fn deliver(&self, body: &str, signature: Option<String>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/api/v1/pay/stripe/webhook", self.gw.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn last_event(&self, kind: &str) -> Value {
        let events = self.fake_get("/_fake/events").await;
        events
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event"))
            .clone()
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_paid_checkout_credits_once_however_often_and_concurrently_its_event_comes() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    let (status, body) = s.order(&key, "100", "checkout").await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["state"], "pending");
    assert_eq!(data["amount"], "100");
    assert_eq!(data["credit_usd"], "105");
    let url = data["url"].as_str().unwrap();
    let session = data["external_id"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/c/pay/cs_", s.stripe.url)),
        "{url}"
    );

    // What Stripe was asked: a payment-mode session for the order.
    let requests = s.fake_get("/_fake/requests").await;
    let create = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "/v1/checkout/sessions")
        .unwrap()
        .clone();
    let text = create.to_string();
    for expected in [
        "\"payment\"",
        "\"usd\"",
        "10000",
        "console.example/console/topup",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert_eq!(
        create["idempotency_key"],
        format!("tollgate-order-{}-checkout", data["id"])
    );

    let paid = s
        .control(&format!("/_fake/checkout/{session}/pay"), json!({}))
        .await;
    assert_eq!(paid["delivery_status"], 200, "{paid}");
    assert_eq!(s.balance(user).await, 105 * USD);
    let event_id = paid["event"]["id"].as_str().unwrap().to_string();

    // The same event 10 times in a row, then 10 at once.
    for _ in 0..10 {
        let again = s
            .control(&format!("/_fake/events/{event_id}/resend"), json!({}))
            .await;
        assert_eq!(again["status"], 200, "{again}");
    }
    let mut at_once = Vec::new();
    for _ in 0..10 {
        let http = s.http.clone();
        let url = format!("{}/_fake/events/{event_id}/resend", s.stripe.url);
        at_once.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    for task in at_once {
        assert_eq!(task.await.unwrap()["status"], 200);
    }
    assert_eq!(s.balance(user).await, 105 * USD);
    let ledger = s.gw.app.store.ledger(user, 10).await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].kind, "topup");
    assert_eq!(ledger[0].amount, 105 * USD);
    let order_id = data["id"].as_i64().unwrap();
    assert_eq!(
        ledger[0].request_id.as_deref(),
        Some(format!("order:{order_id}").as_str())
    );
    assert_eq!(s.state(order_id).await, OrderState::Paid);

    // The user sees it; another user does not.
    let (status, info) =
        s.gw.post_json("/api/v1/pay/orders/info", &key, &json!({"id": order_id}))
            .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["data"]["state"], "paid");
    assert_eq!(info["data"]["pay_url"], Value::Null);
    let (_, other_key) = s.gw.user("other", "default", "0").await;
    let (status, body) =
        s.gw.post_json(
            "/api/v1/pay/orders/info",
            &other_key,
            &json!({"id": order_id}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, list) =
        s.gw.post_json("/api/v1/pay/orders/list", &other_key, &json!({}))
            .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn a_bad_or_stale_signature_is_refused_and_changes_nothing() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    // Deliveries off: the paid event is made but not sent; it is replayed
    // by hand with good and bad signatures.
    s.control("/_fake/webhooks", json!({"on": false})).await;
    let (order_id, _) = {
        let (status, body) = s.order(&key, "20", "checkout").await;
        assert_eq!(status, 200, "{body}");
        let session = body["data"]["external_id"].as_str().unwrap().to_string();
        s.control(&format!("/_fake/checkout/{session}/pay"), json!({}))
            .await;
        (body["data"]["id"].as_i64().unwrap(), session)
    };
    let event = s.last_event("checkout.session.completed").await.to_string();
    let now = now_secs();
    let forged = fake_stripe::sign("whsec_not_ours", now, event.as_bytes());
    let stale = fake_stripe::sign(WEBHOOK_SECRET, now - 301, event.as_bytes());
    let other_body = fake_stripe::sign(WEBHOOK_SECRET, now, b"{\"id\":\"evt_x\"}");
    for signature in [
        None,
        Some("t=abc,v1=nothex".to_string()),
        Some(forged),
        Some(stale),
        Some(other_body),
    ] {
        let (status, body) = s.deliver(&event, signature.clone()).await;
        assert_eq!(status, 400, "{signature:?}: {body}");
        assert_eq!(body["statusCode"], 400);
    }
    assert_eq!(s.balance(user).await, 0);
    assert_eq!(s.state(order_id).await, OrderState::Pending);
    // Signed with the previous secret, while it is being rolled: accepted.
    let rolled = fake_stripe::sign(OLD_WEBHOOK_SECRET, now, event.as_bytes());
    let (status, body) = s.deliver(&event, Some(rolled)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "applied");
    assert_eq!(s.balance(user).await, 20 * USD);
    // Bad JSON with a good signature: 400, nothing.
    let junk = "not json";
    let (status, _) = s
        .deliver(
            junk,
            Some(fake_stripe::sign(WEBHOOK_SECRET, now, junk.as_bytes())),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn delayed_payments_credit_on_success_only_and_expired_sessions_never() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        let (status, body) = s.order(&key, "10", "checkout").await;
        assert_eq!(status, 200, "{body}");
        orders.push((
            body["data"]["id"].as_i64().unwrap(),
            body["data"]["external_id"].as_str().unwrap().to_string(),
        ));
    }
    // A bank debit: completed but unpaid, then it clears.
    let (ok_order, ok_session) = &orders[0];
    let done = s
        .control(
            &format!("/_fake/checkout/{ok_session}/pay"),
            json!({"async": true}),
        )
        .await;
    assert_eq!(done["delivery_status"], 200);
    assert_eq!(s.balance(user).await, 0);
    assert_eq!(s.state(*ok_order).await, OrderState::Pending);
    s.control(
        &format!("/_fake/checkout/{ok_session}/async"),
        json!({"succeed": true}),
    )
    .await;
    assert_eq!(s.balance(user).await, 10 * USD);
    assert_eq!(s.state(*ok_order).await, OrderState::Paid);
    // One that bounces.
    let (bad_order, bad_session) = &orders[1];
    s.control(
        &format!("/_fake/checkout/{bad_session}/pay"),
        json!({"async": true}),
    )
    .await;
    s.control(
        &format!("/_fake/checkout/{bad_session}/async"),
        json!({"succeed": false}),
    )
    .await;
    assert_eq!(s.state(*bad_order).await, OrderState::Failed);
    // One never paid.
    let (expired_order, expired_session) = &orders[2];
    s.control(
        &format!("/_fake/checkout/{expired_session}/expire"),
        json!({}),
    )
    .await;
    assert_eq!(s.state(*expired_order).await, OrderState::Expired);
    assert_eq!(s.balance(user).await, 10 * USD);
    assert_eq!(s.gw.app.store.ledger(user, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_invoice_is_opened_for_a_customer_made_once_and_credits_when_paid() {
    let s = setup().await;
    let (user, key) = s.gw.user("company", "default", "0").await;
    let mut invoices = Vec::new();
    for amount in ["250", "40.5"] {
        let (status, body) = s.order(&key, amount, "invoice").await;
        assert_eq!(status, 200, "{body}");
        let url = body["data"]["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{}/i/in_", s.stripe.url)), "{url}");
        assert!(body["data"]["receipt_url"].as_str().is_some());
        invoices.push((
            body["data"]["id"].as_i64().unwrap(),
            body["data"]["external_id"].as_str().unwrap().to_string(),
        ));
    }
    let requests = s.fake_get("/_fake/requests").await;
    let customers = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"] == "/v1/customers")
        .count();
    assert_eq!(customers, 1, "one Stripe customer per user");
    let (order, invoice) = &invoices[0];
    let paid = s
        .control(&format!("/_fake/invoices/{invoice}/pay"), json!({}))
        .await;
    assert_eq!(paid["delivery_status"], 200, "{paid}");
    // 250 USD with the 5 % bonus.
    assert_eq!(s.balance(user).await, 262_500_000_000);
    assert_eq!(s.state(*order).await, OrderState::Paid);
    assert_eq!(s.state(invoices[1].0).await, OrderState::Pending);
}

#[tokio::test]
async fn refunds_from_the_admin_or_from_stripe_take_back_their_share_once() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    let (order, _) = s.paid_order(&key, "100").await;
    assert_eq!(s.balance(user).await, 105 * USD);
    // The admin refunds 25 USD: a quarter of the credit comes back off.
    let (status, body) =
        s.gw.admin(
            reqwest::Method::POST,
            &format!("/admin/payments/orders/{order}/refund"),
            Some(json!({"amount": "25"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["refunded_amount"], "25");
    assert_eq!(s.balance(user).await, 105 * USD - 26_250_000_000);
    // Stripe's own event for it followed and changed nothing more.
    s.control("/_fake/settle", json!({})).await;
    assert_eq!(s.balance(user).await, 105 * USD - 26_250_000_000);
    let refunded = s.last_event("charge.refunded").await;
    assert_eq!(refunded["data"]["object"]["amount_refunded"], 2500);
    // The user spends most of what is left.
    s.gw.admin(
        reqwest::Method::POST,
        &format!("/admin/users/{user}/balance"),
        Some(json!({"amount_usd": "-70", "reason": "spent"})),
    )
    .await;
    // The rest is refunded from Stripe's dashboard: only its event tells.
    let payment =
        s.gw.app
            .store
            .get_order(order)
            .await
            .unwrap()
            .payment_id
            .unwrap();
    let response = s
        .http
        .post(format!("{}/v1/refunds", s.stripe.url))
        .bearer_auth(STRIPE_KEY)
        .form(&[("payment_intent", payment.as_str())])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    // Stripe sends the refund's event after answering: wait for it.
    s.control("/_fake/settle", json!({})).await;
    // The whole credit is back off: the balance is owed.
    assert_eq!(s.balance(user).await, -70 * USD);
    assert_eq!(s.state(order).await, OrderState::Refunded);
    let kinds: Vec<String> =
        s.gw.app
            .store
            .ledger(user, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
    assert_eq!(kinds, ["refund", "debit", "refund", "topup"]);
    // A refunded order cannot be refunded again.
    let (status, _) =
        s.gw.admin(
            reqwest::Method::POST,
            &format!("/admin/payments/orders/{order}/refund"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 409);
    // The day's totals.
    let (status, daily) =
        s.gw.admin(reqwest::Method::GET, "/admin/payments/daily", None)
            .await;
    assert_eq!(status, 200);
    assert_eq!(daily["data"][0]["orders"], 1);
    assert_eq!(daily["data"][0]["amount"], "100");
    assert_eq!(daily["data"][0]["refunded_amount"], "100");
}

#[tokio::test]
async fn reconciliation_credits_a_payment_whose_webhook_never_arrived_once() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    s.control("/_fake/webhooks", json!({"on": false})).await;
    let (order, _) = {
        let (status, body) = s.order(&key, "30", "checkout").await;
        assert_eq!(status, 200, "{body}");
        let session = body["data"]["external_id"].as_str().unwrap().to_string();
        s.control(&format!("/_fake/checkout/{session}/pay"), json!({}))
            .await;
        (body["data"]["id"].as_i64().unwrap(), session)
    };
    let (_, invoice_body) = s.order(&key, "60", "invoice").await;
    let invoice = invoice_body["data"]["external_id"].as_str().unwrap();
    s.control(&format!("/_fake/invoices/{invoice}/pay"), json!({}))
        .await;
    // Another open order stays as it is.
    let (_, open_body) = s.order(&key, "15", "checkout").await;
    let open = open_body["data"]["id"].as_i64().unwrap();
    assert_eq!(s.balance(user).await, 0);

    let (status, report) =
        s.gw.admin(
            reqwest::Method::POST,
            "/admin/payments/reconcile",
            Some(json!({"days": 2})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let mut credited: Vec<i64> = report["credited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    credited.sort();
    let invoice_order = invoice_body["data"]["id"].as_i64().unwrap();
    assert_eq!(credited, vec![order, invoice_order]);
    assert_eq!(s.balance(user).await, 90 * USD);
    assert_eq!(s.state(open).await, OrderState::Pending);
    // Again: nothing more. Then the webhooks come back late: nothing more.
    let (_, again) =
        s.gw.admin(
            reqwest::Method::POST,
            "/admin/payments/reconcile",
            Some(json!({})),
        )
        .await;
    assert_eq!(again["credited"], json!([]));
    s.control("/_fake/webhooks", json!({"on": true})).await;
    let late = s.last_event("checkout.session.completed").await;
    let resent = s
        .control(
            &format!("/_fake/events/{}/resend", late["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(resent["status"], 200);
    assert_eq!(s.balance(user).await, 90 * USD);
    assert_eq!(s.gw.app.store.ledger(user, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_bad_amount_is_refused_with_nothing_made_anywhere() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    for (amount, method) in [
        ("4.99", "checkout"),
        ("1000.01", "checkout"),
        ("10.001", "checkout"),
        ("ten", "invoice"),
        ("-10", "checkout"),
        ("10", "wire"),
    ] {
        let (status, body) = s.order(&key, amount, method).await;
        assert_eq!(status, 400, "{amount} {method}: {body}");
        assert_eq!(body["statusCode"], 400);
    }
    let orders =
        s.gw.app
            .store
            .list_orders(&OrderFilter {
                user_id: Some(user),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
    assert!(orders.is_empty());
    assert_eq!(s.fake_get("/_fake/requests").await, json!([]));
    // The terms say what is allowed.
    let terms: Value = s
        .http
        .get(format!("{}/api/v1/pay/terms", s.gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(terms["data"]["min_amount"], "5");
    assert_eq!(terms["data"]["preset_amounts"], json!(["10", "50"]));
    // A key that is not admin-capable may not order.
    let (status, _) =
        s.gw.post_json(
            "/api/v1/pay/orders/create",
            "sk-not-a-key",
            &json!({"amount": "10"}),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn without_stripe_configured_top_ups_are_not_found() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, key) = gw.user("payer", "default", "0").await;
    let (status, body) = gw
        .post_json("/api/v1/pay/orders/create", &key, &json!({"amount": "10"}))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = gw
        .post_json("/api/v1/pay/stripe/webhook", &key, &json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_console_tops_up_through_checkout_and_the_admin_refunds_there() {
    use crate::console::{browser, console_user, csrf_of, log_in};
    let s = setup().await;
    let (user, _) = console_user(&s.gw, "buyer", "correct horse battery").await;
    // console_user starts the user with 10 USD.
    let start = s.balance(user).await;
    let client = browser();
    let login = log_in(&s.gw, &client, "buyer", "correct horse battery").await;
    assert_eq!(login.status(), 303);
    let page = client
        .get(format!("{}/console/topup", s.gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"topup-form\""), "{page}");
    assert!(page.contains("data-amount=\"50\""));
    let csrf = csrf_of(&page);
    // Without the CSRF token: refused, nothing made.
    let forged = client
        .post(format!("{}/console/topup", s.gw.url))
        .form(&[("amount", "20"), ("method", "checkout"), ("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // Below the minimum: the page says why, nothing made.
    let low = client
        .post(format!("{}/console/topup", s.gw.url))
        .form(&[("amount", "1"), ("method", "checkout"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(low.status(), 400);
    assert!(low.text().await.unwrap().contains("between 5 and 1000 USD"));
    assert_eq!(s.fake_get("/_fake/requests").await, json!([]));
    // The order: the browser is sent to Stripe's checkout page.
    let ordered = client
        .post(format!("{}/console/topup", s.gw.url))
        .form(&[("amount", "20"), ("method", "checkout"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(ordered.status(), 303);
    let location = ordered.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/c/pay/cs_", s.stripe.url)),
        "{location}"
    );
    let session = location.rsplit('/').next().unwrap();
    s.control(&format!("/_fake/checkout/{session}/pay"), json!({}))
        .await;
    assert_eq!(s.balance(user).await, start + 20 * USD);
    let page = client
        .get(format!("{}/console/topup?paid=1", s.gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"notice\""));
    let order =
        s.gw.app
            .store
            .list_orders(&OrderFilter {
                user_id: Some(user),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .remove(0);
    assert!(page.contains(&format!("/console/topup/orders/{}", order.id)));
    let receipt = client
        .get(format!("{}/console/topup/orders/{}", s.gw.url, order.id))
        .send()
        .await
        .unwrap();
    assert_eq!(receipt.status(), 200);
    assert!(receipt.text().await.unwrap().contains("20 USD"));
    // Someone else's receipt, and the admin pages, are 404 to this user.
    let (_, other_key) = s.gw.user("other", "default", "0").await;
    let (status, other) = s.order(&other_key, "10", "checkout").await;
    assert_eq!(status, 200);
    for path in [
        format!("/console/topup/orders/{}", other["data"]["id"]),
        "/console/admin/orders".to_string(),
    ] {
        let response = client
            .get(format!("{}{path}", s.gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }

    // The admin refunds half from the orders page.
    let (_admin, _) = console_user(&s.gw, "boss", "another long password").await;
    s.gw.app
        .store
        .set_console_access(_admin, None, true, false)
        .await
        .unwrap();
    let admin = browser();
    log_in(&s.gw, &admin, "boss", "another long password").await;
    let orders_page = admin
        .get(format!("{}/console/admin/orders", s.gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        orders_page.contains(&format!("id=\"order-{}\"", order.id)),
        "{orders_page}"
    );
    let refunded = admin
        .post(format!(
            "{}/console/admin/orders/{}/refund",
            s.gw.url, order.id
        ))
        .form(&[("amount", "10"), ("csrf", &csrf_of(&orders_page))])
        .send()
        .await
        .unwrap();
    assert_eq!(refunded.status(), 303);
    s.control("/_fake/settle", json!({})).await;
    assert_eq!(s.balance(user).await, start + 10 * USD);
    let reconciled = admin
        .post(format!("{}/console/admin/orders/reconcile", s.gw.url))
        .form(&[("csrf", &csrf_of(&orders_page))])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(reconciled.contains("0 credited"), "{reconciled}");
}

#[tokio::test]
async fn a_refund_that_arrives_before_its_payment_applies_both_in_order() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    // The endpoint is down: the payment and its refund both wait at Stripe.
    s.control("/_fake/webhooks", json!({"on": false})).await;
    let (status, body) = s.order(&key, "20", "checkout").await;
    assert_eq!(status, 200, "{body}");
    let order = body["data"]["id"].as_i64().unwrap();
    let session = body["data"]["external_id"].as_str().unwrap().to_string();
    s.control(&format!("/_fake/checkout/{session}/pay"), json!({}))
        .await;
    let paid_session: Value = s
        .http
        .get(format!("{}/v1/checkout/sessions/{session}", s.stripe.url))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payment = paid_session["payment_intent"].as_str().unwrap().to_string();
    let refunded = s
        .http
        .post(format!("{}/v1/refunds", s.stripe.url))
        .bearer_auth(STRIPE_KEY)
        .form(&[("payment_intent", payment.as_str())])
        .send()
        .await
        .unwrap();
    assert!(refunded.status().is_success());
    s.control("/_fake/settle", json!({})).await;
    // Back up; the refund's event is retried first.
    s.control("/_fake/webhooks", json!({"on": true})).await;
    let refund_event = s.last_event("charge.refunded").await;
    let resent = s
        .control(
            &format!(
                "/_fake/events/{}/resend",
                refund_event["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(resent["status"], 200, "{resent}");
    // The payment was read from Stripe and credited, then refunded.
    assert_eq!(s.balance(user).await, 0);
    assert_eq!(s.state(order).await, OrderState::Refunded);
    let kinds: Vec<String> =
        s.gw.app
            .store
            .ledger(user, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
    assert_eq!(kinds, ["refund", "topup"]);
    // The payment's own event, late: nothing more.
    let paid_event = s.last_event("checkout.session.completed").await;
    s.control(
        &format!(
            "/_fake/events/{}/resend",
            paid_event["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    assert_eq!(s.balance(user).await, 0);
    assert_eq!(s.gw.app.store.ledger(user, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn only_tollgates_own_metadata_names_an_order_whose_checkout_id_was_lost() {
    let s = setup().await;
    let (user, _) = s.gw.user("payer", "default", "0").await;
    // An order whose Stripe session was made but whose id was never kept
    // (the process stopped in between).
    let order =
        s.gw.app
            .store
            .insert_order(&store::NewOrder {
                user_id: user,
                provider: "stripe".into(),
                method: "checkout".into(),
                currency: "usd".into(),
                amount: 1500,
                credit: 15 * USD,
                bonus: 0,
            })
            .await
            .unwrap();
    let event = |id: &str, metadata: Value, reference: Value| {
        json!({"id": id, "object": "event", "type": "checkout.session.completed",
               "data": {"object": {"id": format!("cs_other_{id}"), "object": "checkout.session",
                 "payment_status": "paid", "status": "complete", "amount_total": 1500,
                 "currency": "usd", "payment_intent": format!("pi_{id}"),
                 "client_reference_id": reference, "metadata": metadata}}})
        .to_string()
    };
    let id = order.id.to_string();
    // Another integration on the same Stripe account: its own order ids.
    for (event_id, metadata, reference) in [
        ("evt_a", json!({"order_id": id}), json!(id)),
        ("evt_b", json!({}), json!(id)),
        // Our key, but another user.
        (
            "evt_c",
            json!({"tollgate_order_id": id, "tollgate_user_id": (user + 1).to_string()}),
            Value::Null,
        ),
    ] {
        let body = event(event_id, metadata, reference);
        let (status, answer) = s
            .deliver(
                &body,
                Some(fake_stripe::sign(
                    WEBHOOK_SECRET,
                    now_secs(),
                    body.as_bytes(),
                )),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["outcome"], "ignored", "{event_id}");
    }
    assert_eq!(s.balance(user).await, 0);
    // Ours: credited.
    let body = event(
        "evt_d",
        json!({"tollgate_order_id": id, "tollgate_user_id": user.to_string()}),
        json!(id),
    );
    let (status, answer) = s
        .deliver(
            &body,
            Some(fake_stripe::sign(
                WEBHOOK_SECRET,
                now_secs(),
                body.as_bytes(),
            )),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "applied");
    assert_eq!(s.balance(user).await, 15 * USD);
}

#[tokio::test]
async fn a_user_may_leave_only_so_many_orders_unpaid_in_a_day() {
    let s = setup().await;
    let (_, key) = s.gw.user("payer", "default", "0").await;
    for _ in 0..10 {
        let (status, body) = s.order(&key, "5", "checkout").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = s.order(&key, "5", "checkout").await;
    assert_eq!(status, 429, "{body}");
}

#[tokio::test]
async fn reconciliation_takes_back_a_refund_whose_webhook_never_arrived() {
    let s = setup().await;
    let (user, key) = s.gw.user("payer", "default", "0").await;
    let (order, _) = s.paid_order(&key, "40").await;
    assert_eq!(s.balance(user).await, 40 * USD);
    // Refunded in Stripe's dashboard while the endpoint is down.
    s.control("/_fake/webhooks", json!({"on": false})).await;
    let payment =
        s.gw.app
            .store
            .get_order(order)
            .await
            .unwrap()
            .payment_id
            .unwrap();
    let response = s
        .http
        .post(format!("{}/v1/refunds", s.stripe.url))
        .bearer_auth(STRIPE_KEY)
        .form(&[("payment_intent", payment.as_str()), ("amount", "1000")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    s.control("/_fake/settle", json!({})).await;
    assert_eq!(s.balance(user).await, 40 * USD);
    for expected in [json!([order]), json!([])] {
        let (status, report) =
            s.gw.admin(
                reqwest::Method::POST,
                "/admin/payments/reconcile",
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["refunded"], expected, "{report}");
        assert_eq!(s.balance(user).await, 30 * USD);
    }
    // The late event changes nothing more.
    s.control("/_fake/webhooks", json!({"on": true})).await;
    let late = s.last_event("charge.refunded").await;
    s.control(
        &format!("/_fake/events/{}/resend", late["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    assert_eq!(s.balance(user).await, 30 * USD);
    assert_eq!(s.state(order).await, OrderState::Paid);
}
