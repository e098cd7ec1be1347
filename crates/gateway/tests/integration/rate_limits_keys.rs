//! Rate limits set on keys and users (admin API, OhMyGPT's key API): a
//! key's limit binds that key alone, a user's binds all of its keys,
//! clearing one lifts it at once, a bad value changes nothing; callers read
//! their limits at `/v1/usage/limits`, operators the keys refused most.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

/// Creates a key for `user_id` through the admin API with `body`; returns
/// its secret and its id.
async fn new_key(gw: &Gateway, user_id: i64, body: Value) -> (String, String) {
    let (status, created) = gw
        .admin(
            Method::POST,
            &format!("/admin/users/{user_id}/keys"),
            Some(body),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    (
        created["key"].as_str().unwrap().to_string(),
        created["info"]["id"].as_str().unwrap().to_string(),
    )
}

/// `n` chat requests with `key` at once: each one's status, `retry-after`,
/// `x-ratelimit-limit-requests` and body.
async fn burst(
    gw: &Gateway,
    key: &str,
    n: usize,
) -> Vec<(u16, Option<u64>, Option<String>, Value)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let request = gw
                .http
                .post(format!("{}/v1/chat/completions", gw.url))
                .bearer_auth(key)
                .json(&chat_body("cheap", false));
            tokio::spawn(async move {
                let resp = request.send().await.unwrap();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap().to_string())
                };
                let retry = header("retry-after").map(|v| v.parse().unwrap());
                let limit = header("x-ratelimit-limit-requests");
                let status = resp.status().as_u16();
                (
                    status,
                    retry,
                    limit,
                    resp.json().await.unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// `GET /v1/usage/limits{query}` with `key`.
async fn own_limits(gw: &Gateway, key: &str, query: &str) -> (u16, Value) {
    let resp = gw
        .http
        .get(format!("{}/v1/usage/limits{query}", gw.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn scope<'a>(limits: &'a Value, kind: &str) -> &'a Value {
    limits["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scope"] == kind)
        .unwrap_or_else(|| panic!("no {kind} scope in {limits}"))
}

#[tokio::test]
async fn a_key_given_60_rpm_through_the_admin_api_gets_60_of_a_burst_of_200() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, other_key) = gw.user("keyed", "default", "10").await;
    let (key, key_id) = new_key(&gw, user_id, json!({"remark": "limited"})).await;
    // Served once without a limit: its principal is now in the auth cache,
    // which must not keep serving it once the limit is set.
    let resp = gw.chat(&key, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-ratelimit-limit-requests"));
    let (status, body) = gw
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{key_id}"),
            Some(json!({"rpm": 60})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["rpm"], &body["tpm"]), (&json!(60), &Value::Null));
    assert_eq!(body["remark"], "limited", "other fields stay");

    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for (status, retry, limit, body) in burst(&gw, &key, 200).await {
        *by_status.entry(status).or_default() += 1;
        match status {
            200 => assert_eq!(limit.as_deref(), Some("60")),
            429 => {
                assert!(retry.is_some_and(|r| (1..=2).contains(&r)), "{retry:?}");
                assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains("requests per minute of your API key"),
                    "{message}"
                );
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(by_status, HashMap::from([(200, 60), (429, 140)]));
    assert_eq!(
        mock.requests().len(),
        1 + 60,
        "refused requests never reach the upstream"
    );

    // The user's other key is not limited by it.
    let resp = gw.chat(&other_key, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-ratelimit-limit-requests"));

    // The operator sees the limited key first among those refused.
    let (status, top) = gw
        .admin(Method::GET, "/admin/rate-limits/top?limit=5", None)
        .await;
    assert_eq!(status, 200, "{top}");
    let first = &top["data"][0];
    assert_eq!(first["key_id"], key_id.as_str());
    assert_eq!(first["user_id"], user_id);
    assert_eq!(first["count"], 140);
    assert_eq!(first["by_scope"], json!({"key": 140}));
    assert_eq!(first["by_limit"]["requests"], 140);
    assert!(first["last_refused_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(top["data"].as_array().unwrap().len(), 1);
    let (status, _) = gw
        .admin(Method::GET, "/admin/rate-limits/top?limit=0", None)
        .await;
    assert_eq!(status, 400);
    let anonymous = gw
        .http
        .get(format!("{}/admin/rate-limits/top", gw.url))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "a user key is no admin token");

    // Clearing the limit lifts it at once.
    let (status, body) = gw
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{key_id}"),
            Some(json!({"rpm": null})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rpm"], Value::Null);
    let resp = gw.chat(&key, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-ratelimit-limit-requests"));
    gw.stop().await;
}

#[tokio::test]
async fn a_users_limit_counts_all_of_its_keys_and_clearing_it_lifts_it() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, first) = gw.user("shared", "default", "10").await;
    let (second, _) = new_key(&gw, user_id, json!({})).await;
    let path = format!("/admin/users/{user_id}");
    let (status, user) = gw
        .admin(Method::PATCH, &path, Some(json!({"rpm": 3})))
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["rpm"], 3);

    for (key, remaining) in [(&first, "2"), (&second, "1"), (&first, "0")] {
        let resp = gw.chat(key, chat_body("cheap", false)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], remaining);
    }
    let refused = gw.chat(&second, chat_body("cheap", false)).await;
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("requests per minute of your account"),
        "{message}"
    );

    let (status, user) = gw
        .admin(Method::PATCH, &path, Some(json!({"rpm": null})))
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["rpm"], Value::Null);
    for key in [&first, &second] {
        let resp = gw.chat(key, chat_body("cheap", false)).await;
        assert_eq!(resp.status(), 200);
        assert!(!resp.headers().contains_key("x-ratelimit-limit-requests"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn invalid_limits_get_a_400_and_change_nothing() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, admin_key) = gw.user("strict", "default", "10").await;
    let (key, key_id) = new_key(&gw, user_id, json!({"remark": "kept", "rpm": 30})).await;
    let bad = [
        json!({"rpm": 0}),
        json!({"rpm": -1}),
        json!({"rpm": "lots"}),
        json!({"tpm": 1.5}),
        json!({"tpm": true}),
        json!({"concurrency": 4_294_967_296u64}),
        json!({"rpm": 10, "concurrency": 0}),
    ];
    for body in &bad {
        for path in [
            format!("/admin/keys/{key_id}"),
            format!("/admin/users/{user_id}"),
        ] {
            let (status, answer) = gw.admin(Method::PATCH, &path, Some(body.clone())).await;
            assert_eq!(status, 400, "{path} {body}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("must be a whole number from 1 to"),
                "{message}"
            );
        }
    }
    // With another field that is fine: neither is written.
    let (status, _) = gw
        .admin(
            Method::PATCH,
            &format!("/admin/keys/{key_id}"),
            Some(json!({"remark": "changed", "rpm": 0})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = gw
        .admin(
            Method::POST,
            "/admin/users",
            Some(json!({"name": "never", "tpm": 0})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = gw
        .admin(
            Method::POST,
            &format!("/admin/users/{user_id}/keys"),
            Some(json!({"concurrency": -5})),
        )
        .await;
    assert_eq!(status, 400);
    // OhMyGPT's key API, form-encoded: the same rules, in its envelope.
    for (path, form) in [
        ("new-api-token", vec![("rpm", "abc")]),
        (
            "update-api-token",
            vec![("key", key_id.as_str()), ("rpm", "0")],
        ),
    ] {
        let resp = gw
            .http
            .post(format!("{}/api/v1/user/admin/{path}", gw.url))
            .bearer_auth(&admin_key)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["statusCode"], 400, "{body}");
    }

    // Nothing changed: the key keeps its remark and limit, the user has no
    // limit, no user or key was created.
    let (_, keys) = gw
        .admin(Method::GET, &format!("/admin/users/{user_id}/keys"), None)
        .await;
    let keys = keys["data"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let kept = keys.iter().find(|k| k["id"] == key_id.as_str()).unwrap();
    assert_eq!(
        (&kept["remark"], &kept["rpm"]),
        (&json!("kept"), &json!(30))
    );
    let (_, user) = gw
        .admin(Method::GET, &format!("/admin/users/{user_id}"), None)
        .await;
    assert_eq!(
        (&user["rpm"], &user["tpm"], &user["concurrency"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let (_, users) = gw.admin(Method::GET, "/admin/users", None).await;
    assert!(!users.to_string().contains("never"));
    let resp = gw.chat(&key, chat_body("cheap", false)).await;
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "30");
    gw.stop().await;
}

#[tokio::test]
async fn ohmygpt_keys_take_limits_as_numbers_or_strings_and_list_them() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, admin_key) = gw.user("omg-limits", "default", "10").await;
    let omg = |path: &str| {
        gw.http
            .post(format!("{}/api/v1/user/admin/{path}", gw.url))
            .bearer_auth(&admin_key)
    };
    let created: Value = omg("new-api-token")
        .form(&[("remark", "omg"), ("rpm", "30"), ("concurrency", "2")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["statusCode"], 200, "{created}");
    let key = created["data"].as_str().unwrap().to_string();
    let listed: Value = omg("get-api-tokens")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["remark"] == "omg")
        .unwrap()
        .clone();
    assert_eq!(
        (&entry["rpm"], &entry["tpm"], &entry["concurrency"]),
        (&json!(30), &Value::Null, &json!(2))
    );
    // JSON numbers and null; an empty form field removes a limit too.
    let key_id = entry["id"].as_str().unwrap();
    let updated: Value = omg("update-api-token")
        .json(&json!({"key": key_id, "tpm": 100000, "rpm": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["statusCode"], 200, "{updated}");
    assert_eq!(
        (&updated["data"]["rpm"], &updated["data"]["tpm"]),
        (&Value::Null, &json!(100_000))
    );
    let updated: Value = omg("update-api-token")
        .form(&[("key", key_id), ("concurrency", "")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["data"]["concurrency"], Value::Null, "{updated}");
    let resp = gw.chat(&key, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit-tokens"], "100000");
    assert!(!resp.headers().contains_key("x-ratelimit-limit-requests"));
    gw.stop().await;
}

#[tokio::test]
async fn usage_limits_show_what_is_left_without_taking_it() {
    let mock = start_mock().await;
    // Limits low enough that none refills by one unit while the test runs
    // (one every 5 s, 10 s, 6 s).
    let limits = "[rate_limits]\nrpm = 12\n[rate_limits.models.cheap]\nrpm = 6\n\
                  [rate_limits.groups.vip]\ntpm = 600\n";
    let gw = start_gateway_with(&mock.url, None, "", limits).await;
    let (user_id, _) = gw.user("watcher", "vip", "10").await;
    let (key, key_id) = new_key(&gw, user_id, json!({"rpm": 10, "concurrency": 2})).await;

    let (status, fresh) = own_limits(&gw, &key, "").await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["object"], "rate_limits");
    let kinds: Vec<&str> = fresh["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scope"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["key", "group", "global"], "no model unless asked");
    assert_eq!(
        scope(&fresh, "key"),
        &json!({
            "scope": "key", "name": key_id,
            "rpm": {"limit": 10, "remaining": 10, "reset_seconds": 0.0},
            "tpm": null,
            "concurrency": {"limit": 2, "in_use": 0, "remaining": 2},
        })
    );
    assert_eq!(scope(&fresh, "group")["name"], "vip");
    assert_eq!(scope(&fresh, "group")["tpm"]["remaining"], 600);
    assert_eq!(scope(&fresh, "global")["name"], Value::Null);
    // Reading took nothing.
    let (_, again) = own_limits(&gw, &key, "").await;
    assert_eq!(again, fresh);

    // Each request served leaves one less.
    // Small requests (some 60 tokens estimated, 15 used), so that the
    // group's 600 tokens a minute (10 a second back) show them for seconds.
    let mut small = chat_body("cheap", false);
    small["max_tokens"] = json!(10);
    for remaining in [9, 8] {
        assert_eq!(gw.chat(&key, small.clone()).await.status(), 200);
        let (_, now) = own_limits(&gw, &key, "").await;
        let rpm = &scope(&now, "key")["rpm"];
        assert_eq!(rpm["remaining"], remaining, "{now}");
        let reset = rpm["reset_seconds"].as_f64().unwrap();
        assert!(reset > 0.0 && reset <= 12.0, "{reset}");
        assert_eq!(
            scope(&now, "global")["rpm"]["remaining"],
            12 - 10 + remaining
        );
    }
    let (_, now) = own_limits(&gw, &key, "").await;
    assert!(scope(&now, "group")["tpm"]["remaining"].as_u64().unwrap() < 600);

    // A model's limits when asked for; none told of a model not usable.
    let (status, with_model) = own_limits(&gw, &key, "?model=cheap").await;
    assert_eq!(status, 200);
    let model = scope(&with_model, "model");
    assert_eq!(
        (&model["name"], &model["rpm"]["limit"]),
        (&json!("cheap"), &json!(6))
    );
    assert_eq!(model["rpm"]["remaining"], 4);
    let (status, body) = own_limits(&gw, &key, "?model=nope").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("model_not_found"))
    );
    let (narrow, _) = new_key(&gw, user_id, json!({"permissions": ["gpt-test"]})).await;
    let (status, body) = own_limits(&gw, &narrow, "?model=cheap").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("model_not_allowed"))
    );
    let (status, body) = own_limits(&gw, "sk-nobody", "").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_api_key"))
    );

    // Another user sees only its own scopes and the gateway's, never the
    // first user's.
    let (_, stranger) = gw.user("stranger", "default", "0").await;
    let (status, theirs) = own_limits(&gw, &stranger, "").await;
    assert_eq!(status, 200);
    assert_eq!(theirs["limits"].as_array().unwrap().len(), 1);
    assert_eq!(scope(&theirs, "global")["rpm"]["limit"], 12);
    let text = theirs.to_string();
    assert!(!text.contains(&key_id) && !text.contains("watcher") && !text.contains("vip"));
    gw.stop().await;
}
