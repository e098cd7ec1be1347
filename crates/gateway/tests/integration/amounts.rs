//! Money a person types (admin credits, key limits) and text fields: an
//! amount that does not fit, or a text too long, is a 400 that changes
//! nothing — never a wrapped number in the ledger.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

async fn omg_json(gw: &Gateway, key: &str, path: &str, body: Value) -> (u16, Value) {
    gw.post_json(&format!("/api/v1/user/admin/{path}"), key, &body)
        .await
}

/// A 400 in OpenAI's shape whose message contains every one of `words`.
fn assert_openai_400(status: u16, body: &Value, words: &[&str]) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for word in words {
        assert!(message.contains(word), "{word:?} not in {message:?}");
    }
}

/// A 400 in OhMyGPT's envelope whose message contains every one of `words`.
fn assert_envelope_400(status: u16, body: &Value, words: &[&str]) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    for word in words {
        assert!(message.contains(word), "{word:?} not in {message:?}");
    }
}

#[tokio::test]
async fn a_balance_change_too_large_to_keep_is_refused_and_changes_nothing() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, _) = gw.user("mallory", "default", "0").await;
    let path = format!("/admin/users/{id}/balance");

    // Once recorded as a debit of about 6.93 billion USD.
    for (field, amount) in [
        ("amount_usd", "999999999999999999"),
        ("amount_usd", "-999999999999999999"),
        ("amount_usd", "999999999999999999.999999999999"),
        ("amount_usd", "1000000000.000000001"),
        ("amount_credits", "999999999999999999"),
        ("amount_credits", "34000000000000.1"),
    ] {
        let (s, body) = gw
            .admin(
                Method::POST,
                &path,
                Some(json!({field: amount, "reason": "fat finger"})),
            )
            .await;
        assert_openai_400(s, &body, &[field, "too large"]);
    }
    // More digits than a decimal may have is refused as malformed.
    let (s, body) = gw
        .admin(
            Method::POST,
            &path,
            Some(json!({"amount_usd": "1".repeat(40), "reason": "x"})),
        )
        .await;
    assert_openai_400(s, &body, &["amount_usd"]);

    let (_, ledger) = gw
        .admin(Method::GET, &format!("/admin/users/{id}/ledger"), None)
        .await;
    assert_eq!(ledger["data"], json!([]), "nothing was recorded");
    assert_eq!(gw.balance(id).await, (0, 0));

    // The largest change allowed is exact, and the balance cannot be pushed
    // beyond what it can hold.
    let (s, u) = gw
        .admin(
            Method::POST,
            &path,
            Some(json!({"amount_usd": "1000000000", "reason": "max"})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["balance_nano_usd"], 1_000_000_000_000_000_000i64);
    let (s, body) = gw
        .admin(
            Method::POST,
            &path,
            Some(json!({"amount_usd": "0.000000001", "reason": "one more"})),
        )
        .await;
    assert_openai_400(s, &body, &["balance"]);
    assert_eq!(gw.balance(id).await.0, 1_000_000_000_000_000_000);
    gw.stop().await;
}

#[tokio::test]
async fn a_key_limit_that_does_not_fit_is_refused() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, admin_key) = gw.user("trent", "default", "1").await;

    // OhMyGPT's API: 18 to 30 digits once wrapped to a negative limit.
    for max_fee in [
        "999999999999999999",
        "123456789012345678.123456789012",
        "34000000000000.001",
    ] {
        let (s, body) = omg_json(
            &gw,
            &admin_key,
            "new-api-token",
            json!({"remark": "x", "max_fee": max_fee}),
        )
        .await;
        assert_envelope_400(s, &body, &["max_fee", "too large"]);
    }
    let (s, body) = omg_json(
        &gw,
        &admin_key,
        "new-api-token",
        json!({"max_fee": "1234567890123456789012345678901234567890"}),
    )
    .await;
    assert_envelope_400(s, &body, &["max_fee"]);
    let (s, body) = omg_json(&gw, &admin_key, "new-api-token", json!({"max_fee": "-5"})).await;
    assert_envelope_400(s, &body, &["max_fee"]);

    // The largest limit is accepted and shown exactly.
    let (s, body) = omg_json(
        &gw,
        &admin_key,
        "new-api-token",
        json!({"remark": "big", "max_fee": "34000000000000"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (_, listed) = omg_json(&gw, &admin_key, "get-api-tokens", json!({})).await;
    let big = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["remark"] == "big")
        .unwrap()
        .clone();
    assert_eq!(big["max_fee"], "34000000000000");

    // Updating to a limit that does not fit changes nothing.
    let (s, body) = omg_json(
        &gw,
        &admin_key,
        "update-api-token",
        json!({"key": big["id"], "max_fee": "999999999999999999"}),
    )
    .await;
    assert_envelope_400(s, &body, &["max_fee", "too large"]);

    // The admin API's key limit is checked the same way.
    let (s, body) = gw
        .admin(
            Method::POST,
            &format!("/admin/users/{id}/keys"),
            Some(json!({"max_fee_credits": "999999999999999999"})),
        )
        .await;
    assert_openai_400(s, &body, &["max_fee_credits", "too large"]);
    let (s, body) = gw
        .admin(
            Method::POST,
            &format!("/admin/users/{id}/keys"),
            Some(json!({"max_fee_credits": "3400"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["info"]["max_fee"], "3400");

    let (_, listed) = omg_json(&gw, &admin_key, "get-api-tokens", json!({})).await;
    for key in listed["data"].as_array().unwrap() {
        let fee = key["max_fee"].as_str().unwrap();
        assert!(!fee.starts_with('-'), "{key}");
    }
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    gw.stop().await;
}

#[tokio::test]
async fn text_fields_have_length_limits_that_name_the_field() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, admin_key) = gw.user("peggy", "default", "1").await;
    let long = |n: usize| "é".repeat(n);

    // Users: name, group and tier, on creation and update.
    for (body, field) in [
        (json!({"name": long(65)}), "name"),
        (json!({"name": "ok", "group": long(65)}), "group"),
        (json!({"name": "ok", "tier": long(65)}), "tier"),
    ] {
        let (s, out) = gw.admin(Method::POST, "/admin/users", Some(body)).await;
        assert_openai_400(s, &out, &[&format!("`{field}`"), "64"]);
    }
    let (s, out) = gw
        .admin(
            Method::POST,
            "/admin/users",
            Some(json!({"name": long(64)})),
        )
        .await;
    assert_eq!(s, 200, "{out}");
    for (body, field) in [
        (json!({"group": long(65)}), "group"),
        (json!({"tier": long(65)}), "tier"),
    ] {
        let (s, out) = gw
            .admin(Method::PATCH, &format!("/admin/users/{id}"), Some(body))
            .await;
        assert_openai_400(s, &out, &[&format!("`{field}`"), "64"]);
    }

    // A balance change's reason.
    let (s, out) = gw
        .admin(
            Method::POST,
            &format!("/admin/users/{id}/balance"),
            Some(json!({"amount_usd": "1", "reason": long(1025)})),
        )
        .await;
    assert_openai_400(s, &out, &["`reason`", "1024"]);
    let (s, out) = gw
        .admin(
            Method::POST,
            &format!("/admin/users/{id}/balance"),
            Some(json!({"amount_usd": "1", "reason": long(1024)})),
        )
        .await;
    assert_eq!(s, 200, "{out}");

    // Keys: the remark and the model list, through both APIs.
    let (s, out) = gw
        .admin(
            Method::POST,
            &format!("/admin/users/{id}/keys"),
            Some(json!({"remark": long(257)})),
        )
        .await;
    assert_openai_400(s, &out, &["`remark`", "256"]);
    let (s, out) = omg_json(
        &gw,
        &admin_key,
        "new-api-token",
        json!({"remark": long(257)}),
    )
    .await;
    assert_envelope_400(s, &out, &["`remark`", "256"]);
    let (s, out) = omg_json(
        &gw,
        &admin_key,
        "new-api-token",
        json!({"permissions": [long(129)]}),
    )
    .await;
    assert_envelope_400(s, &out, &["`permissions`", "128"]);
    let (s, out) = omg_json(
        &gw,
        &admin_key,
        "new-api-token",
        json!({"remark": long(256)}),
    )
    .await;
    assert_eq!(s, 200, "{out}");
    let (_, listed) = omg_json(&gw, &admin_key, "get-api-tokens", json!({})).await;
    let key_id = listed["data"][0]["id"].as_str().unwrap().to_string();
    let (s, out) = omg_json(
        &gw,
        &admin_key,
        "update-api-token",
        json!({"key": key_id, "remark": long(257)}),
    )
    .await;
    assert_envelope_400(s, &out, &["`remark`", "256"]);
    gw.stop().await;
}
