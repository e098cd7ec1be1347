//! Override rules in the request path (issue 12, in progress): a user's rule
//! rewrites what reaches the upstream, refuses with nothing charged, and may
//! only pick models the key may use; another user's rules never apply.

use serde_json::{json, Value};

use crate::common::*;

async fn add_rule(gw: &Gateway, owner: i64, id: &str, rule: Value) {
    let stored = store::StoredRule {
        id: id.into(),
        owner_id: owner,
        name: rule["ruleName"].as_str().unwrap_or(id).into(),
        api_types: String::new(),
        priority: rule["priority"].as_i64().unwrap_or(0),
        enabled: true,
        rule,
        created_at: store::now_ms(),
        updated_at: store::now_ms(),
    };
    gw.app.store.insert_rules(&[stored], 100).await.unwrap();
    gw.app.rule_book.forget(owner);
}

#[tokio::test]
async fn a_users_rule_rewrites_what_reaches_the_upstream_and_only_theirs() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("ruled", "default", "10").await;
    let (_, other) = gw.user("unruled", "default", "10").await;
    add_rule(
        &gw,
        user_id,
        "rule_temp",
        json!({"ruleName": "cool", "conditions": [{"model": "gpt-*"}],
        "actions": [{"type": "override", "field": "temperature", "value": 0.2},
                    {"type": "set_header", "name": "x-team", "value": "blue"}]}),
    )
    .await;
    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    assert_eq!(
        gw.chat(&other, chat_body("gpt-test", false)).await.status(),
        200
    );
    let requests = mock.requests();
    assert_eq!(requests[0].body["temperature"], 0.2);
    assert_eq!(requests[0].header("x-team"), Some("blue"));
    assert_eq!(
        requests[1].body["temperature"], 0.5,
        "another user's rules never apply"
    );
    assert_eq!(requests[1].header("x-team"), None);
    gw.stop().await;
}

#[tokio::test]
async fn a_block_refuses_with_nothing_charged_and_a_model_swap_stays_within_the_key() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("blocked", "default", "10").await;
    let before = gw.balance(user_id).await;
    add_rule(&gw, user_id, "rule_block", json!({"ruleName": "no streams",
        "conditions": [{"values": [{"path": "stream", "mode": "full", "value": true}]}],
        "actions": [{"type": "block", "message": "Streaming is off for this account.", "status": 400}]})).await;
    let resp = gw.chat(&key, chat_body("gpt-test", true)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "blocked_by_rule");
    assert_eq!(
        body["error"]["message"],
        "Streaming is off for this account."
    );
    assert!(mock.requests().is_empty());
    assert_eq!(gw.balance(user_id).await, before, "nothing held or charged");
    gw.stop().await;
}

#[tokio::test]
async fn a_forced_temperature_reaches_the_upstream_on_every_api() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("everywhere", "default", "10").await;
    add_rule(
        &gw,
        user_id,
        "rule_all",
        json!({"ruleName": "cool",
        "actions": [{"type": "override", "field": "temperature", "value": 0.2},
                    {"type": "set_header", "name": "x-team", "value": "blue"}]}),
    )
    .await;
    let messages = json!({"model": "claude-test", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Translated: a Messages client on an OpenAI upstream, and Responses.
    let translated = json!({"model": "gpt-test", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&translated)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, body) = gw
        .post_json(
            "/v1/responses",
            &key,
            &json!({"model": "gpt-native", "input": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.body["temperature"], 0.2, "{} {}", r.path, r.body);
        assert_eq!(r.header("x-team"), Some("blue"), "{}", r.path);
    }
    gw.stop().await;
}

/// POSTs to the rule API's `route` with `key`; returns the status and the
/// envelope.
async fn rule_api(gw: &Gateway, key: &str, route: &str, body: Value) -> (u16, Value) {
    gw.post_json(&format!("/api/v1/user/override-rules/{route}"), key, &body)
        .await
}

#[tokio::test]
async fn the_rule_api_manages_a_users_rules_and_no_one_elses() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, key) = gw.user("author", "default", "10").await;
    let (_, stranger) = gw.user("stranger", "default", "10").await;
    let rule = json!({"ruleName": "cool", "priority": 1,
        "conditions": [{"scope": "api", "apiType": "chat.completions", "secretKey": key, "model": "gpt-*"}],
        "actions": [{"type": "override", "field": "temperature", "value": 0.2}]});
    let (status, created) = rule_api(&gw, &key, "create", rule.clone()).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["statusCode"], 200);
    let id = created["data"]["ruleId"].as_str().unwrap().to_string();
    let key_id = created["data"]["conditions"][0]["secretKey"]
        .as_str()
        .unwrap();
    assert!(
        key_id.starts_with("key_"),
        "the key is kept as its id, never in clear"
    );
    // It applies at once.
    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    assert_eq!(mock.requests()[0].body["temperature"], 0.2);
    let (_, stats) = rule_api(&gw, &key, "stats", json!({})).await;
    assert_eq!(stats["data"][0]["ruleId"], id);
    assert_eq!(stats["data"][0]["hits"], 1);
    assert!(stats["data"][0]["lastHitAt"].is_string());
    // Names are unique; the name check says so.
    let (status, _) = rule_api(&gw, &key, "create", rule.clone()).await;
    assert_eq!(status, 409);
    let (_, check) = rule_api(&gw, &key, "check-name", json!({"ruleName": "cool"})).await;
    assert_eq!(check["data"]["available"], false);
    // Reading, listing, updating.
    let (_, got) = rule_api(&gw, &key, "get", json!({"ruleId": id})).await;
    assert_eq!(got["data"]["ruleName"], "cool");
    let (_, listed) = rule_api(&gw, &key, "list", json!({"apiType": "chat.completions"})).await;
    assert_eq!(listed["data"]["total"], 1);
    let (status, updated) = rule_api(
        &gw,
        &key,
        "update",
        json!({"ruleId": id, "actions": [
        {"type": "override", "field": "temperature", "value": 0.3}]}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["ruleName"], "cool");
    // Another user sees none of it.
    let (status, _) = rule_api(&gw, &stranger, "get", json!({"ruleId": id})).await;
    assert_eq!(status, 404);
    let (status, _) = rule_api(&gw, &stranger, "delete", json!({"ruleId": id})).await;
    assert_eq!(status, 404);
    // Testing shows what a request would become, sending nothing.
    let sent = mock.requests().len();
    let mut sample = chat_body("gpt-test", false);
    sample["temperature"] = json!(1);
    let (_, tested) = rule_api(&gw, &key, "test", json!({ "request": sample })).await;
    assert_eq!(tested["data"]["request"]["temperature"], 0.3);
    assert_eq!(tested["data"]["matched"], json!([id]));
    assert_eq!(mock.requests().len(), sent);
    // …which is what the same request then sends (under the upstream's
    // name for the model).
    assert_eq!(gw.chat(&key, sample).await.status(), 200);
    let sent_body = &mock.requests()[sent].body;
    for (field, value) in tested["data"]["request"].as_object().unwrap() {
        if field != "model" {
            assert_eq!(&sent_body[field], value, "{field}");
        }
    }
    // Disabled: no longer applied.
    let (_, toggled) = rule_api(
        &gw,
        &key,
        "batch-toggle",
        json!({"ruleIds": [id], "enabled": false}),
    )
    .await;
    assert_eq!(toggled["data"]["updated"], 1);
    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    assert_eq!(mock.requests().last().unwrap().body["temperature"], 0.5);
    // Export, then import: names made unique, all or none.
    let (_, exported) = rule_api(&gw, &key, "export", json!({})).await;
    let rules = exported["data"].clone();
    assert_eq!(rules.as_array().unwrap().len(), 1);
    let mut broken = rules[0].clone();
    broken["actions"][0]["type"] = json!("explode");
    let (status, imported) =
        rule_api(&gw, &key, "import", json!({"rules": [rules[0], broken]})).await;
    assert_eq!(status, 400, "{imported}");
    assert!(imported["message"].as_str().unwrap().contains("rules[1]"));
    let mut renamed = rules[0].clone();
    renamed["ruleName"] = json!("warm");
    let (status, imported) = rule_api(
        &gw,
        &key,
        "import",
        json!({"rules": [rules[0], renamed, renamed]}),
    )
    .await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["data"]["imported"], 3);
    let (_, listed) = rule_api(&gw, &key, "list", json!({})).await;
    let mut names: Vec<&str> = listed["data"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ruleName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cool", "cool (2)", "warm", "warm (2)"]);
    // Bad rules are refused, naming what is wrong.
    let (status, refused) = rule_api(&gw, &key, "create", json!({"ruleName": "bad",
        "actions": [{"type": "override", "field": "stream_options.include_usage", "value": false}]})).await;
    assert_eq!(status, 400);
    assert!(
        refused["message"].as_str().unwrap().contains("reserved"),
        "{refused}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_model_swap_routes_and_bills_the_new_model_within_the_keys_models() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (user_id, key) = gw.user("swapper", "default", "10").await;
    add_rule(
        &gw,
        user_id,
        "rule_swap",
        json!({"ruleName": "cheaper",
        "conditions": [{"model": "gpt-test"}],
        "actions": [{"type": "override", "field": "model", "value": "cheap"}]}),
    )
    .await;
    assert_eq!(
        gw.chat(&key, chat_body("gpt-test", false)).await.status(),
        200
    );
    assert_eq!(mock.requests()[0].body["model"], "cheap");
    let records = gw.wait_for_usage(user_id, 1).await;
    assert_eq!(records[0].model, "cheap", "billed as the model it became");
    // A key limited to gpt-test may not be swapped onto another model.
    let (status, created) = gw
        .admin(
            reqwest::Method::POST,
            &format!("/admin/users/{user_id}/keys"),
            Some(json!({"permissions": ["gpt-test"]})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let narrow = created["key"].as_str().unwrap();
    let resp = gw.chat(narrow, chat_body("gpt-test", false)).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_allowed");
    assert_eq!(mock.requests().len(), 1);
    gw.stop().await;
}

#[tokio::test]
async fn the_operators_rules_run_after_the_users_and_may_name_groups() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, vip) = gw.user("vip-user", "vip", "10").await;
    let (_, plain) = gw.user("plain-user", "default", "10").await;
    let (status, _) = rule_api(
        &gw,
        &vip,
        "create",
        json!({"ruleName": "mine",
        "actions": [{"type": "override", "field": "temperature", "value": 0.1}]}),
    )
    .await;
    assert_eq!(status, 200);
    // A user may not condition on groups: that is the operator's.
    let (status, refused) = rule_api(
        &gw,
        &vip,
        "create",
        json!({"ruleName": "g",
        "conditions": [{"group": "vip"}], "actions": []}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let (status, created) = gw
        .admin(
            reqwest::Method::POST,
            "/admin/rules",
            Some(
                json!({"ruleName": "vip cap", "conditions": [{"group": "vip"}],
                "actions": [{"type": "override", "field": "temperature", "value": 0.9}]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        gw.chat(&vip, chat_body("gpt-test", false)).await.status(),
        200
    );
    assert_eq!(
        gw.chat(&plain, chat_body("gpt-test", false)).await.status(),
        200
    );
    let requests = mock.requests();
    assert_eq!(
        requests[0].body["temperature"], 0.9,
        "the operator has the last word"
    );
    assert_eq!(
        requests[1].body["temperature"], 0.5,
        "other groups untouched"
    );
    let id = created["ruleId"].as_str().unwrap();
    let (status, _) = gw
        .admin(reqwest::Method::DELETE, &format!("/admin/rules/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        gw.chat(&vip, chat_body("gpt-test", false)).await.status(),
        200
    );
    assert_eq!(mock.requests()[2].body["temperature"], 0.1);
    gw.stop().await;
}

#[tokio::test]
async fn rules_in_the_configuration_run_as_the_operators() {
    let mock = start_mock().await;
    let rules = r#"
[[rules]]
ruleName = "cap max_tokens"
conditions = [{ values = [{ path = "max_tokens", mode = "gt", value = 100 }] }]
actions = [{ type = "override", field = "max_tokens", value = 100 }]
"#;
    let gw = start_gateway_with(&mock.url, None, "", rules).await;
    let (_, key) = gw.user("capped", "default", "10").await;
    let mut body = chat_body("gpt-test", false);
    body["max_tokens"] = json!(900);
    assert_eq!(gw.chat(&key, body).await.status(), 200);
    assert_eq!(mock.requests()[0].body["max_tokens"], 100);
    gw.stop().await;
    // A rule that cannot run is a configuration error, naming it.
    let bad = "[[rules]]\nruleName = \"bad\"\nactions = [{ type = \"block\", status = 200 }]\n";
    let text = format!("{}\n{bad}", config_text(&mock.url, "sqlite:///tmp/x.db"));
    let error = gateway::config::Config::parse(&text, "t.toml").unwrap_err();
    assert!(
        error.0.contains("rules[0]") && error.0.contains("4xx"),
        "{}",
        error.0
    );
    let unknown = "[[rules]]\nruleName = \"typo\"\nconditions = [{ channel = \"mokc\" }]\n";
    let text = format!(
        "{}\n{unknown}",
        config_text(&mock.url, "sqlite:///tmp/x.db")
    );
    let error = gateway::config::Config::parse(&text, "t.toml").unwrap_err();
    assert!(error.0.contains("\"mokc\""), "{}", error.0);
}

/// `multi` on two channels: `chan-a` first, then `chan-b`.
fn two_channels(a: &str, b: &str) -> String {
    format!(
        "{}{}\n[models.multi]\ninput_price = \"1\"\noutput_price = \"2\"\n\
         [[models.multi.channels]]\nprovider = \"chan-a\"\npriority = 10\n\
         [[models.multi.channels]]\nprovider = \"chan-b\"\npriority = 0\n",
        openai_provider("chan-a", a, ""),
        openai_provider("chan-b", b, "")
    )
}

async fn operator_rule(gw: &Gateway, rule: Value) -> (u16, Value) {
    gw.admin(reqwest::Method::POST, "/admin/rules", Some(rule))
        .await
}

#[tokio::test]
async fn rules_naming_a_channel_edit_that_channels_call_and_a_block_there_moves_on() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let gw = start_gateway_with(&main.url, None, "", &two_channels(&a.url, &b.url)).await;
    let (user_id, key) = gw.user("channelled", "default", "10").await;
    // A channel no provider has is refused, and so is one in a user's rule.
    let (status, refused) = operator_rule(
        &gw,
        json!({"ruleName": "typo", "conditions": [{"channel": "chan-z"}], "actions": []}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let (status, _) = rule_api(
        &gw,
        &key,
        "create",
        json!({"ruleName": "mine", "conditions": [{"channel": "chan-b"}], "actions": []}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, on_b) = operator_rule(
        &gw,
        json!({"ruleName": "b's dialect", "conditions": [{"channel": "chan-b", "model": "multi"}],
        "actions": [{"type": "move", "from": "max_tokens", "to": "max_completion_tokens"},
                    {"type": "set_header", "name": "x-channel", "value": "b"},
                    {"type": "override", "field": "n", "value": 3}]}),
    )
    .await;
    assert_eq!(status, 200, "{on_b}");
    let (status, block_a) = operator_rule(
        &gw,
        json!({"ruleName": "a is closed to streams", "conditions": [{"channel": "chan-a",
            "values": [{"path": "stream", "mode": "full", "value": true}]}],
        "actions": [{"type": "block", "message": "no streams on a", "status": 403}]}),
    )
    .await;
    assert_eq!(status, 200, "{block_a}");

    // Served by chan-a, which no rule changes.
    let mut body = chat_body("multi", false);
    body["max_tokens"] = json!(50);
    assert_eq!(gw.chat(&key, body.clone()).await.status(), 200);
    assert_eq!(a.requests().len(), 1);
    assert_eq!(a.requests()[0].body["max_tokens"], 50);
    assert_eq!(a.requests()[0].header("x-channel"), None);
    // A stream is refused on chan-a and goes to chan-b, edited for it.
    body["stream"] = json!(true);
    let resp = gw.chat(&key, body.clone()).await;
    assert_eq!(resp.status(), 200);
    let _ = resp.text().await.unwrap();
    assert_eq!(a.requests().len(), 1, "chan-a never saw the stream");
    let on_b = &b.requests()[0];
    assert_eq!(on_b.body["max_completion_tokens"], 50, "{}", on_b.body);
    assert!(on_b.body.get("max_tokens").is_none());
    assert_eq!(on_b.body["n"], 1, "never more choices than were held");
    assert_eq!(on_b.header("x-channel"), Some("b"));
    // Channel rules see the call as the channel gets it: a Responses turn
    // reaches chan-a as a streamed chat completion, which chan-a refuses.
    let (status, answer) = gw
        .post_json(
            "/v1/responses",
            &key,
            &json!({"model": "multi", "input": "hi", "stream": false}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(a.requests().len(), 1);
    let turn = &b.requests()[1];
    assert_eq!(turn.body["stream"], true, "{}", turn.body);
    assert_eq!(turn.header("x-channel"), Some("b"));
    let records = gw.wait_for_usage(user_id, 3).await;
    assert!(records.iter().all(|r| r.status == 200), "{records:?}");

    // With chan-b closed as well, the client gets the block, charged nothing.
    let (status, _) = operator_rule(
        &gw,
        json!({"ruleName": "b too", "conditions": [{"channel": "chan-b"}],
        "actions": [{"type": "block", "message": "closed", "status": 403}]}),
    )
    .await;
    assert_eq!(status, 200);
    let before = gw.balance(user_id).await;
    let resp = gw.chat(&key, body).await;
    assert_eq!(resp.status(), 403);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "blocked_by_rule");
    assert_eq!(error["error"]["message"], "no streams on a");
    assert_eq!(b.requests().len(), 2);
    assert_eq!(gw.balance(user_id).await, before);

    // Hits are counted for the channel rules too (each call they edit).
    let (status, listed) = gw.admin(reqwest::Method::GET, "/admin/rules", None).await;
    assert_eq!(status, 200, "{listed}");
    let hits = |name: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ruleName"] == name)
            .map(|r| r["hits"].as_i64().unwrap())
    };
    assert_eq!(hits("a is closed to streams"), Some(3));
    assert_eq!(hits("b's dialect"), Some(3));
    assert_eq!(hits("b too"), Some(1));
    gw.stop().await;
}
