//! The fake through HTTP, as a gateway (and its tests) would use it, with
//! a webhook receiver that verifies signatures.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn checkout_paid_and_listed() {
    let (fake, receiver) = fake_with_receiver().await;
    let before = fake_stripe_now() - 5;

    let session = create_session(&fake).await;
    let id = session["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cs_test_") && id.len() >= 32, "{id}");
    assert_eq!(session["object"], "checkout.session");
    assert_eq!(session["status"], "open");
    assert_eq!(session["payment_status"], "unpaid");
    assert_eq!(session["amount_total"], 2500);
    assert_eq!(session["currency"], "usd");
    assert_eq!(session["client_reference_id"], "account_7");
    assert_eq!(session["metadata"], json!({"order_id": "42"}));
    assert_eq!(session["payment_intent"], json!(null));
    assert_eq!(session["url"], format!("{}/c/pay/{id}", fake.url));
    let created = session["created"].as_i64().unwrap();
    assert_eq!(session["expires_at"].as_i64().unwrap(), created + 86400);

    // Paying delivers checkout.session.completed before answering.
    let (status, paid) = control(&fake, &format!("/_fake/checkout/{id}/pay"), "").await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["delivery_status"], 200);
    assert_eq!(paid["event"]["type"], "checkout.session.completed");
    let object = &paid["event"]["data"]["object"];
    assert_eq!(object["id"], id.as_str());
    assert_eq!(object["payment_status"], "paid");
    assert!(object["payment_intent"]
        .as_str()
        .unwrap()
        .starts_with("pi_"));
    assert_eq!(receiver.events(), vec![paid["event"].clone()]);
    assert_eq!(
        receiver.received.lock().unwrap().user_agents,
        vec!["Stripe/1.0 (+https://stripe.com/docs/webhooks)"]
    );
    assert_eq!(receiver.received.lock().unwrap().refused, 0);

    let (_, again) = get(&fake, &format!("/v1/checkout/sessions/{id}")).await;
    assert_eq!(again["status"], "complete");
    assert_eq!(again["payment_status"], "paid");
    assert_eq!(again["url"], json!(null));

    // A second, open session: filtered out by status=complete.
    let open = create_session(&fake).await;
    let query = format!("/v1/checkout/sessions?created[gte]={before}&status=complete&limit=5");
    let (status, list) = get(&fake, &query).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["object"], "list");
    assert_eq!(list["url"], "/v1/checkout/sessions");
    assert_eq!(list["has_more"], false);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);

    // Newest first, paginated.
    let (_, page) = get(&fake, "/v1/checkout/sessions?limit=1").await;
    assert_eq!(page["data"][0]["id"], open["id"]);
    assert_eq!(page["has_more"], true);
    let next = format!(
        "/v1/checkout/sessions?limit=1&starting_after={}",
        open["id"].as_str().unwrap()
    );
    let (_, page) = get(&fake, &next).await;
    assert_eq!(page["data"][0]["id"], id.as_str());
    assert_eq!(page["has_more"], false);
    let (_, future) = get(
        &fake,
        &format!("/v1/checkout/sessions?created[gt]={}", created + 3600),
    )
    .await;
    assert_eq!(future["data"], json!([]));

    // Paying twice is refused.
    let (status, err) = control(&fake, &format!("/_fake/checkout/{id}/pay"), "").await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
}

fn fake_stripe_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn idempotency_key_replays() {
    let (fake, _receiver) = fake_with_receiver().await;
    let send = |form: &'static [(&'static str, &'static str)]| {
        let url = format!("{}/v1/checkout/sessions", fake.url);
        async move {
            client()
                .post(url)
                .bearer_auth(KEY)
                .header("Idempotency-Key", "order-42-attempt-1")
                .form(form)
                .send()
                .await
                .unwrap()
        }
    };
    let first = send(SESSION_FORM).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (_, first) = json(first).await;
    let second = send(SESSION_FORM).await;
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let (status, second) = json(second).await;
    assert_eq!(status, 200);
    assert_eq!(first, second);
    let (_, list) = get(&fake, "/v1/checkout/sessions").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // The same key with other parameters is an error.
    let (status, err) = json(send(&[("mode", "payment")]).await).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "idempotency_error");

    // A key belongs to the endpoint it was first used on.
    let customer = client()
        .post(format!("{}/v1/customers", fake.url))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "order-42-attempt-1")
        .form(&[("email", "ada@example.com")]);
    let (status, err) = json(customer.send().await.unwrap()).await;
    assert_eq!(
        (status, &err["error"]["type"]),
        (400, &json!("idempotency_error"))
    );

    let requests = fake.requests();
    let posts: Vec<_> = requests.iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(posts.len(), 4);
    assert_eq!(posts[0]["idempotency_key"], "order-42-attempt-1");
    assert_eq!(
        posts[0]["params"]["line_items"][0]["price_data"]["unit_amount"],
        "1250"
    );
    assert_eq!(posts[1]["replayed"], true);
}

#[tokio::test]
async fn errors_in_stripe_shape() {
    let (fake, _receiver) = fake_with_receiver().await;
    let url = format!("{}/v1/checkout/sessions", fake.url);

    let (status, err) = json(client().post(&url).form(SESSION_FORM).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let wrong = client()
        .post(&url)
        .bearer_auth("sk_test_wrongwrongwrong1234")
        .form(SESSION_FORM);
    let (status, err) = json(wrong.send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(
        err["error"]["message"],
        "Invalid API Key provided: sk_test_***************1234"
    );

    let form: Vec<_> = SESSION_FORM
        .iter()
        .filter(|(k, _)| *k != "line_items[0][quantity]")
        .copied()
        .collect();
    let (status, err) = post_form(&fake, "/v1/checkout/sessions", &form).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "line_items[0][quantity]");
    assert_eq!(
        err["error"]["message"],
        "Missing required param: line_items[0][quantity]."
    );

    let mut form: Vec<_> = SESSION_FORM.to_vec();
    form.push(("line_items[0][price_data][unit_amount]", "12.50"));
    let (status, err) = post_form(&fake, "/v1/checkout/sessions", &form).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["param"],
        "line_items[0][price_data][unit_amount]"
    );

    let (status, err) = get(&fake, "/v1/checkout/sessions/cs_x").await;
    assert_eq!(status, 404);
    assert_eq!(
        err,
        json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
            "message": "No such checkout.session: 'cs_x'", "param": "id"}})
    );
    let (status, err) = get(&fake, "/v1/checkout/sessions?status=done").await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("status"))
    );
    let (status, _) = get(&fake, "/v1/checkout/sessions?limit=101").await;
    assert_eq!(status, 400);
    // Basic auth with the key as user name, as `curl -u KEY:` sends it.
    let basic = client().get(&url).basic_auth(KEY, None::<&str>);
    assert_eq!(basic.send().await.unwrap().status().as_u16(), 200);

    let (status, _) = get(&fake, "/v1/nothing").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn hosted_page_pays_and_redirects() {
    let (fake, receiver) = fake_with_receiver().await;
    let session = create_session(&fake).await;
    let id = session["id"].as_str().unwrap();
    let page_url = session["url"].as_str().unwrap();

    let html = client()
        .get(page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<button id=\"pay\" type=\"submit\">Pay</button>"),
        "{html}"
    );
    assert!(
        html.contains("$25.00") && html.contains("Credits"),
        "{html}"
    );
    assert!(html.contains("href=\"https://shop.test/cancel\""), "{html}");

    let response = client().post(page_url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("https://shop.test/ok?session={id}").as_str()
    );
    assert_eq!(receiver.types(), vec!["checkout.session.completed"]);
}

#[tokio::test]
async fn async_payment_outage_and_resend() {
    let (fake, receiver) = fake_with_receiver().await;
    let id = create_session(&fake).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (_, fired) = control(
        &fake,
        &format!("/_fake/checkout/{id}/pay"),
        r#"{"async": true}"#,
    )
    .await;
    assert_eq!(fired["event"]["data"]["object"]["status"], "complete");
    assert_eq!(fired["event"]["data"]["object"]["payment_status"], "unpaid");

    // The receiver is down: the event is kept, not delivered.
    let (_, config) = control(&fake, "/_fake/webhooks", r#"{"on": false}"#).await;
    assert_eq!(config, json!({"on": false, "url": receiver.url}));
    let (_, fired) = control(
        &fake,
        &format!("/_fake/checkout/{id}/async"),
        r#"{"succeed": true}"#,
    )
    .await;
    assert_eq!(
        fired["event"]["type"],
        "checkout.session.async_payment_succeeded"
    );
    assert_eq!(fired["event"]["data"]["object"]["payment_status"], "paid");
    assert_eq!(fired["delivery_status"], json!(null));
    assert_eq!(receiver.types(), vec!["checkout.session.completed"]);

    // Back up; the resend carries the same event.
    fake.set_delivery(true);
    receiver.answer_with(500);
    let event_id = fired["event"]["id"].as_str().unwrap();
    let (status, resent) = control(&fake, &format!("/_fake/events/{event_id}/resend"), "").await;
    assert_eq!((status, resent), (200, json!({"status": 500})));
    assert_eq!(fake.resend(event_id).await.unwrap(), Some(500));
    let events = receiver.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1], fired["event"]);
    assert_eq!(events[2], fired["event"]);

    let deliveries = fake.deliveries();
    let statuses: Vec<_> = deliveries.iter().map(|d| d["status"].clone()).collect();
    assert_eq!(statuses, vec![json!(200), json!(500), json!(500)]);
    assert_eq!(fake.events().len(), 2);
}

#[tokio::test]
async fn invoice_paid_then_refunded() {
    let (fake, receiver) = fake_with_receiver().await;
    let (_, customer) = post_form(
        &fake,
        "/v1/customers",
        &[("email", "ada@example.com"), ("name", "Ada")],
    )
    .await;
    let customer = customer["id"].as_str().unwrap();
    let (status, invoice) = post_form(
        &fake,
        "/v1/invoices",
        &[
            ("customer", customer),
            ("collection_method", "send_invoice"),
            ("days_until_due", "30"),
            ("currency", "eur"),
            ("metadata[period]", "2024-06"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{invoice}");
    assert_eq!(invoice["status"], "draft");
    let id = invoice["id"].as_str().unwrap();

    let item = [
        ("customer", customer),
        ("invoice", id),
        ("amount", "1999"),
        ("description", "Usage"),
    ];
    let (status, item) = post_form(&fake, "/v1/invoiceitems", &item).await;
    assert_eq!(status, 200, "{item}");
    assert_eq!(item["currency"], "eur");
    let usd = [
        ("customer", customer),
        ("invoice", id),
        ("amount", "1"),
        ("currency", "usd"),
    ];
    let (status, _) = post_form(&fake, "/v1/invoiceitems", &usd).await;
    assert_eq!(status, 400);

    let (status, open) = post_form(&fake, &format!("/v1/invoices/{id}/finalize"), &[]).await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open["status"], "open");
    assert_eq!(open["amount_due"], 1999);
    assert_eq!(open["hosted_invoice_url"], format!("{}/i/{id}", fake.url));
    assert!(open["payment_intent"].as_str().unwrap().starts_with("pi_"));
    fake.settle().await;
    assert_eq!(receiver.types(), vec!["invoice.finalized"]);

    let fired = fake.pay_invoice(id).await.unwrap();
    let types: Vec<_> = fired.iter().map(|f| f.event["type"].clone()).collect();
    assert_eq!(
        types,
        vec![json!("invoice.payment_succeeded"), json!("invoice.paid")]
    );
    assert!(fired.iter().all(|f| f.delivery_status == Some(200)));
    let (_, paid) = get(
        &fake,
        &format!("/v1/invoices?status=paid&customer={customer}"),
    )
    .await;
    assert_eq!(paid["data"][0]["amount_paid"], 1999);
    assert_eq!(paid["data"][0]["amount_remaining"], 0);

    let pi = open["payment_intent"].as_str().unwrap();
    let (status, refund) = post_form(
        &fake,
        "/v1/refunds",
        &[("payment_intent", pi), ("amount", "999")],
    )
    .await;
    assert_eq!(status, 200, "{refund}");
    assert_eq!(refund["status"], "succeeded");
    let (status, err) = post_form(
        &fake,
        "/v1/refunds",
        &[("payment_intent", pi), ("amount", "1001")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "Refund amount (€10.01) is greater than unrefunded amount on charge (€10.00)"
    );
    let (status, rest) = post_form(&fake, "/v1/refunds", &[("payment_intent", pi)]).await;
    assert_eq!((status, rest["amount"].as_i64()), (200, Some(1000)));
    fake.settle().await;

    let refunded: Vec<_> = receiver
        .events()
        .into_iter()
        .filter(|e| e["type"] == "charge.refunded")
        .collect();
    assert_eq!(refunded.len(), 2);
    let charge = &refunded[1]["data"]["object"];
    assert_eq!(charge["amount_refunded"], 1999);
    assert_eq!(charge["refunded"], true);
    assert_eq!(charge["invoice"], id);
    assert_eq!(charge["refunds"]["data"][0]["id"], rest["id"]);
    assert_eq!(
        refunded[1]["request"]["id"]
            .as_str()
            .map(|r| r.starts_with("req_")),
        Some(true)
    );
}
