//! Users, keys (OhMyGPT's management API), balances, usage listings, restarts.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

async fn omg(gw: &Gateway, key: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = gw
        .http
        .post(format!("{}/api/v1/user/admin/{path}", gw.url))
        .bearer_auth(key)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn ohmygpt_key_management_round_trip() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, admin_key) = gw.user("frank", "default", "1").await;

    // Create: form-encoded, like OhMyGPT's documentation.
    let (status, body) = omg(
        &gw,
        &admin_key,
        "new-api-token",
        &[
            ("remark", "ci key"),
            ("max_fee", "3400"),
            ("permissions", "[\"cheap\"]"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["statusCode"], 200);
    let new_key = body["data"].as_str().unwrap().to_string();
    assert!(new_key.starts_with("sk-"));

    // List: masked keys, OhMyGPT's fields.
    let (_, body) = omg(&gw, &admin_key, "get-api-tokens", &[]).await;
    let keys = body["data"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let listed = keys.iter().find(|k| k["remark"] == "ci key").unwrap();
    assert_ne!(listed["key"], new_key.as_str());
    assert!(listed["key"].as_str().unwrap().starts_with(&new_key[..7]));
    assert_eq!(listed["user_id"], id.to_string());
    assert_eq!(listed["max_fee"], "3400");
    assert_eq!(listed["permissions"], json!(["cheap"]));
    assert_eq!(listed["is_admin"], false);
    assert_eq!(listed["is_disabled"], false);
    for field in [
        "created_at",
        "used_at",
        "expired_at",
        "used_times",
        "used_fee",
    ] {
        assert!(listed.get(field).is_some(), "{field}");
    }
    let key_id = listed["id"].as_str().unwrap().to_string();
    // No secret is ever listed.
    assert!(!body.to_string().contains(&new_key));

    // Update by id (JSON body this time).
    let resp = gw
        .http
        .post(format!("{}/api/v1/user/admin/update-api-token", gw.url))
        .bearer_auth(&admin_key)
        .json(&json!({"key": key_id, "remark": "renamed", "permissions": []}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["statusCode"], 200, "{body}");
    assert_eq!(body["data"]["remark"], "renamed");
    assert_eq!(body["data"]["permissions"], json!([]));

    // Admin rights cannot be granted through the API.
    let (status, body) = omg(
        &gw,
        &admin_key,
        "update-api-token",
        &[("key", &new_key), ("is_admin", "true")],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["statusCode"], 400);

    // A non-admin key cannot manage keys.
    let (status, body) = omg(&gw, &new_key, "get-api-tokens", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(body["statusCode"], 403);

    // Delete by the full key, at both paths.
    let (status, _) = omg(&gw, &admin_key, "del-api-token", &[("key", &new_key)]).await;
    assert_eq!(status, 200);
    let (status, _) = omg(&gw, &admin_key, "delete-api-token", &[("key", &new_key)]).await;
    assert_eq!(status, 404);
    let resp = gw.chat(&new_key, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 401);

    // Balance and membership.
    let (_, body) = omg(&gw, &admin_key, "balance", &[]).await;
    assert_eq!(body["data"]["balance"], "34000");
    assert_eq!(body["data"]["free_balance"], "0");
    let (_, body) = omg(&gw, &admin_key, "get-membership-expire-date", &[]).await;
    assert_eq!(body["data"]["tier"], "free");

    // Model rates as they apply to the caller.
    let body: Value = gw
        .http
        .get(format!("{}/api/v1/pay/model-rates", gw.url))
        .bearer_auth(&admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gpt = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "gpt-test")
        .unwrap();
    assert_eq!(gpt["input"]["usd"], "2.5");
    assert_eq!(gpt["model_multiplier"], "1.5");
    assert_eq!(gpt["effective_multiplier"], "1.5");
    gw.stop().await;
}

#[tokio::test]
async fn a_user_holds_at_most_the_configured_number_of_keys() {
    let mock = start_mock().await;
    let db = store::testing::fresh_database_url().await;
    // Two keys at most: the admin key plus one.
    let config = config_text(&mock.url, &db) + "";
    let mut config = gateway::config::Config::parse(&config, "t.toml").unwrap();
    config.max_keys_per_user = 2;
    let built = gateway::build(config).await.unwrap();
    let app = built.app;
    let (user, _, _) = gateway::accounts::create_user(
        &app.store,
        &app.config,
        &store::NewUser {
            name: "gina".into(),
            group_name: "default".into(),
            tier: "free".into(),
            membership_expires_at: None,
            limits: Default::default(),
        },
    )
    .await
    .unwrap();
    let options = gateway::accounts::KeyOptions::default;
    assert!(
        gateway::accounts::create_key(&app.store, &app.config, user.id, options())
            .await
            .is_ok()
    );
    let third = gateway::accounts::create_key(&app.store, &app.config, user.id, options()).await;
    assert!(
        matches!(third, Err(gateway::error::ApiError::Conflict(_))),
        "{third:?}"
    );
    app.store.close().await;
}

#[tokio::test]
async fn admin_balance_changes_are_exact_and_ledgered() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, _) = gw.user("hank", "default", "0").await;

    let path = format!("/admin/users/{id}/balance");
    let (s, u) = gw
        .admin(
            Method::POST,
            &path,
            Some(json!({"amount_usd": "1.000000001", "reason": "top-up"})),
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["balance_nano_usd"], 1_000_000_001);
    let (s, u) = gw
        .admin(
            Method::POST,
            &path,
            Some(json!({"amount_credits": "17000", "reason": "bonus"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["balance_nano_usd"], 1_500_000_001);
    let (s, u) = gw
        .admin(
            Method::POST,
            &path,
            Some(json!({"amount_usd": "0.5", "debit": true, "reason": "refund"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["balance_nano_usd"], 1_000_000_001);
    // A debit beyond the balance is refused and changes nothing.
    let (s, _) = gw
        .admin(
            Method::POST,
            &path,
            Some(json!({"amount_usd": "5", "debit": true, "reason": "x"})),
        )
        .await;
    assert_eq!(s, 400);
    // Bad input: no reason, both amounts, garbage.
    for bad in [
        json!({"amount_usd": "1"}),
        json!({"amount_usd": "1", "amount_credits": "1", "reason": "x"}),
        json!({"amount_usd": "lots", "reason": "x"}),
    ] {
        let (s, _) = gw.admin(Method::POST, &path, Some(bad)).await;
        assert_eq!(s, 400);
    }
    let (_, ledger) = gw
        .admin(Method::GET, &format!("/admin/users/{id}/ledger"), None)
        .await;
    let amounts: Vec<i64> = ledger["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, vec![-500_000_000, 500_000_000, 1_000_000_001]);

    // Group, tier and membership expiry.
    let (s, u) = gw
        .admin(
            Method::PATCH,
            &format!("/admin/users/{id}"),
            Some(json!({"group": "vip", "tier": "pro", "membership_expires_at": "2030-01-01"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["group"], "vip");
    assert_eq!(u["membership_expires_at"], "2030-01-01T00:00:00.000Z");

    // The wrong admin token is refused.
    let resp = gw
        .http
        .get(format!("{}/admin/users", gw.url))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    gw.stop().await;
}

#[tokio::test]
async fn usage_listing_paginates_and_filters() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ivy", "default", "1").await;
    for model in ["cheap", "gpt-test", "cheap", "cheap", "gpt-test"] {
        assert_eq!(gw.chat(&key, chat_body(model, false)).await.status(), 200);
    }
    gw.wait_for_usage(id, 5).await;

    let get = |query: String| {
        let gw = &gw;
        let key = key.clone();
        async move {
            let resp = gw
                .http
                .get(format!("{}/v1/usage?{query}", gw.url))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let page1 = get("limit=2".into()).await;
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    let page2 = get(format!("limit=2&cursor={cursor}")).await;
    let page3 = get(format!(
        "limit=2&cursor={}",
        page2["next_cursor"].as_str().unwrap()
    ))
    .await;
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert_eq!(page3["has_more"], false);
    let mut seen: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| {
            p["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["request_id"].as_str().unwrap().to_string())
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);

    let cheap = get("model=cheap".into()).await;
    assert_eq!(cheap["data"].as_array().unwrap().len(), 3);
    let future = get("since=2100-01-01".into()).await;
    assert_eq!(future["data"].as_array().unwrap().len(), 0);
    let resp = gw
        .http
        .get(format!("{}/v1/usage?since=someday", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A user never sees another user's records.
    let (_, other) = gw.user("jack", "default", "0").await;
    let resp: Value = gw
        .http
        .get(format!("{}/v1/usage", gw.url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["data"].as_array().unwrap().len(), 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_users_keys_balances_and_usage() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let db = gw.database_url.clone();
    let (id, key) = gw.user("kate", "default", "2").await;
    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    gw.wait_for_usage(id, 1).await;
    let balance = gw.balance(id).await;
    gw.stop().await;

    let gw = start_gateway(&mock.url, Some(db)).await;
    assert_eq!(gw.balance(id).await, balance);
    assert_eq!(balance.0, 2_000_000_000 - GPT_TEST_COST);
    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    let records = gw.wait_for_usage(id, 2).await;
    assert_eq!(records.len(), 2);
    assert_eq!(gw.balance(id).await.0, 2_000_000_000 - 2 * GPT_TEST_COST);
    gw.stop().await;
}

#[tokio::test]
async fn health_request_ids_and_metrics() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, key) = gw.user("leo", "default", "1").await;
    let resp = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let a = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let resp = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"].to_str().unwrap(), a);

    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    let text = gw
        .http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("tollgate_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("tollgate_request_duration_seconds_bucket"));
    assert!(text.contains("tollgate_tokens_total{model=\"gpt-test\",direction=\"output\"} 5"));
    assert!(text.contains(&format!(
        "tollgate_cost_nano_usd_total{{model=\"gpt-test\"}} {GPT_TEST_COST}"
    )));
    gw.stop().await;
}
