//! The Responses API (emulated over chat completions and Anthropic, and
//! passed through to a native upstream), its stored state, conversations and
//! stored chat completions; billing exact, every object private to its owner.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

impl Gateway {
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn status(&self, method: Method, path: &str, key: &str) -> u16 {
        self.call(method, path, key, None).await.0
    }

    /// Creates a streamed response; returns its events.
    async fn respond_streamed(&self, key: &str, body: Value) -> Vec<(String, Value)> {
        let resp = self
            .http
            .post(format!("{}/v1/responses", self.url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        events(&resp.text().await.unwrap())
    }

    async fn respond(&self, key: &str, body: Value) -> Value {
        let (status, body) = self
            .call(Method::POST, "/v1/responses", key, Some(body))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Parses an SSE body into (event name, data JSON) pairs.
fn events(text: &str) -> Vec<(String, Value)> {
    let mut d = protocol::sse::SseDecoder::new();
    d.push(text.as_bytes());
    let mut out = Vec::new();
    while let Some(e) = d.next_event() {
        let data = serde_json::from_str(&e.data).unwrap_or(Value::String(e.data.clone()));
        out.push((e.event.unwrap_or_default(), data));
    }
    out
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect()
}

/// The chat messages of the last request the mock received.
fn last_upstream(mock: &Mock) -> Value {
    mock.requests().last().unwrap().body.clone()
}

#[tokio::test]
async fn emulated_response_is_billed_stored_and_retrievable() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ann", "default", "1").await;
    let (before, _) = gw.balance(id).await;

    let response = gw
        .respond(&key, json!({"model": "gpt-test", "input": "Say hello", "instructions": "Be brief.", "metadata": {"k": "v"}}))
        .await;
    assert!(response["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(response["status"], "completed");
    assert_eq!(response["model"], "gpt-test");
    assert_eq!(output_text(&response), "Hello world!");
    assert_eq!(response["usage"]["input_tokens"], PROMPT_TOKENS);
    assert_eq!(response["usage"]["output_tokens"], COMPLETION_TOKENS);
    assert_eq!(response["metadata"], json!({"k": "v"}));

    let upstream = last_upstream(&mock);
    assert_eq!(upstream["model"], "mock-model");
    assert_eq!(
        upstream["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(upstream["messages"][1]["role"], "user");

    gw.wait_for_usage(id, 1).await;
    let (after, held) = gw.balance(id).await;
    assert_eq!(before - after, GPT_TEST_COST);
    assert_eq!(held, 0);

    let rid = response["id"].as_str().unwrap();
    let (status, stored) = gw
        .call(Method::GET, &format!("/v1/responses/{rid}"), &key, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored, response);
    let (status, items) = gw
        .call(
            Method::GET,
            &format!("/v1/responses/{rid}/input_items"),
            &key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{items}");
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"].as_array().unwrap().len(), 1);
    assert!(items["data"][0]["id"].as_str().unwrap().starts_with("msg_"));

    let (status, deleted) = gw
        .call(Method::DELETE, &format!("/v1/responses/{rid}"), &key, None)
        .await;
    assert_eq!((status, deleted["deleted"].clone()), (200, json!(true)));
    assert_eq!(
        gw.status(Method::GET, &format!("/v1/responses/{rid}"), &key)
            .await,
        404
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_three_turn_chain_reaches_the_upstream_as_the_full_history() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, key) = gw.user("ann", "default", "1").await;

    let first = gw
        .respond(
            &key,
            json!({"model": "gpt-test", "input": "one", "instructions": "Only for turn one."}),
        )
        .await;
    let second = gw
        .respond(
            &key,
            json!({"model": "gpt-test", "input": "two", "previous_response_id": first["id"]}),
        )
        .await;
    let stream = gw
        .respond_streamed(
            &key,
            json!({"model": "gpt-test", "input": [{"role": "user", "content": "three"}],
                   "previous_response_id": second["id"], "stream": true}),
        )
        .await;
    assert_eq!(stream.last().unwrap().0, "response.completed");

    let messages = last_upstream(&mock)["messages"].clone();
    let said: Vec<(String, String)> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap().to_string(), text)
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("user", "one"),
        ("assistant", "Hello world!"),
        ("user", "two"),
        ("assistant", "Hello world!"),
        ("user", "three"),
    ]
    .iter()
    .map(|(r, t)| (r.to_string(), t.to_string()))
    .collect();
    // Earlier turns' instructions do not carry over.
    assert_eq!(said, expected, "{messages}");
    gw.stop().await;
}

#[tokio::test]
async fn streamed_emulation_has_contiguous_sequence_numbers_and_matches_the_stored_object() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ann", "default", "1").await;
    let (before, _) = gw.balance(id).await;
    for model in ["gpt-test", "claude-test"] {
        let stream = gw
            .respond_streamed(
                &key,
                json!({"model": model, "input": "Say hello", "stream": true}),
            )
            .await;
        for (n, (name, data)) in stream.iter().enumerate() {
            assert_eq!(data["sequence_number"], json!(n), "{model}: {data}");
            assert_eq!(&data["type"], name);
        }
        assert_eq!(stream[0].0, "response.created");
        let (last, done) = stream.last().unwrap();
        assert_eq!(last, "response.completed");
        let rid = done["response"]["id"].as_str().unwrap();
        let (_, stored) = gw
            .call(Method::GET, &format!("/v1/responses/{rid}"), &key, None)
            .await;
        assert_eq!(stored, done["response"], "{model}");
    }
    gw.wait_for_usage(id, 2).await;
    let (after, _) = gw.balance(id).await;
    // claude-test: 20 uncached + 4 cache reads + 6 cache writes in, 7 out.
    let claude = (20 * 3_000 + 4 * 300 + 6 * 3_750 + 7 * 15_000) as i64;
    assert_eq!(before - after, GPT_TEST_COST + claude);
    gw.stop().await;
}

#[tokio::test]
async fn a_native_upstream_is_passed_through_under_our_id_and_billed_from_its_usage() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ann", "default", "1").await;
    let (before, _) = gw.balance(id).await;
    let first = gw
        .respond(&key, json!({"model": "gpt-native", "input": "Say hello"}))
        .await;
    assert_eq!(output_text(&first), "Hello world!");
    assert_eq!(first["model"], "gpt-native");
    let rid = first["id"].as_str().unwrap();
    assert!(rid.starts_with("resp_") && rid != "resp_upstream");

    let stream = gw
        .respond_streamed(
            &key,
            json!({"model": "gpt-native", "input": "again", "previous_response_id": rid, "stream": true}),
        )
        .await;
    for (n, (_, data)) in stream.iter().enumerate() {
        assert_eq!(data["sequence_number"], json!(n));
        if let Some(r) = data.get("response") {
            assert_ne!(r["id"], "resp_upstream");
            assert_eq!(r["model"], "gpt-native");
        }
    }
    // The upstream keeps no state for us: it gets the whole history, inline.
    let upstream = last_upstream(&mock);
    assert_eq!(upstream["model"], "native-up");
    assert_eq!(upstream["store"], false);
    assert!(upstream.get("previous_response_id").is_none());
    assert_eq!(upstream["input"].as_array().unwrap().len(), 3, "{upstream}");

    gw.wait_for_usage(id, 2).await;
    let (after, _) = gw.balance(id).await;
    assert_eq!(before - after, 2 * GPT_NATIVE_COST);
    gw.stop().await;
}

#[tokio::test]
async fn a_background_response_can_be_polled_followed_and_cancelled() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ann", "default", "1").await;

    let queued = gw
        .respond(
            &key,
            json!({"model": "gpt-test", "input": "Say hello", "background": true}),
        )
        .await;
    assert_eq!(queued["status"], "queued");
    let rid = queued["id"].as_str().unwrap().to_string();
    let mut done = Value::Null;
    for _ in 0..100 {
        let (_, r) = gw
            .call(Method::GET, &format!("/v1/responses/{rid}"), &key, None)
            .await;
        if r["status"] == "completed" {
            done = r;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(output_text(&done), "Hello world!");
    // Its events can be streamed again from a cursor once it is over.
    let resp = gw
        .http
        .get(format!(
            "{}/v1/responses/{rid}?stream=true&starting_after=2",
            gw.url
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let replay = events(&resp.text().await.unwrap());
    assert_eq!(replay[0].1["sequence_number"], 3);
    assert_eq!(replay.last().unwrap().0, "response.completed");

    // A slow one, cancelled part-way: charged for what was produced only.
    mock.set_default(Script::new().chunk_delay_ms(300));
    gw.wait_for_usage(id, 1).await;
    let (before, _) = gw.balance(id).await;
    let slow = gw
        .respond(
            &key,
            json!({"model": "gpt-test", "input": "Say hello", "background": true}),
        )
        .await;
    let sid = slow["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, cancelled) = gw
        .call(
            Method::POST,
            &format!("/v1/responses/{sid}/cancel"),
            &key,
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let records = gw.wait_for_usage(id, 2).await;
    let record = records
        .iter()
        .find(|r| r.error.is_some())
        .expect("the cancelled run's record");
    assert!(
        record.output_tokens < COMPLETION_TOKENS as i64,
        "{record:?}"
    );
    let (after, held) = gw.balance(id).await;
    assert!(record.cost > 0);
    assert_eq!(before - after, record.cost);
    assert_eq!(held, 0);
    gw.stop().await;
}

#[tokio::test]
async fn conversations_give_context_and_collect_each_turn() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, key) = gw.user("ann", "default", "1").await;
    let (status, conv) = gw
        .call(Method::POST, "/v1/conversations", &key,
              Some(json!({"metadata": {"topic": "demo"}, "items": [{"type": "message", "role": "user", "content": "Remember 42."}]})))
        .await;
    assert_eq!(status, 200, "{conv}");
    assert_eq!(conv["object"], "conversation");
    let cid = conv["id"].as_str().unwrap();

    gw.respond(
        &key,
        json!({"model": "gpt-test", "input": "What number?", "conversation": cid}),
    )
    .await;
    let messages = last_upstream(&mock)["messages"].clone();
    assert_eq!(messages.as_array().unwrap().len(), 2, "{messages}");

    let (status, items) = gw
        .call(
            Method::GET,
            &format!("/v1/conversations/{cid}/items?order=asc"),
            &key,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let data = items["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{items}");
    assert_eq!(data[2]["role"], "assistant");
    let item_id = data[0]["id"].as_str().unwrap();
    let (status, item) = gw
        .call(
            Method::GET,
            &format!("/v1/conversations/{cid}/items/{item_id}"),
            &key,
            None,
        )
        .await;
    assert_eq!((status, item["id"].as_str()), (200, Some(item_id)));
    assert_eq!(
        gw.status(
            Method::DELETE,
            &format!("/v1/conversations/{cid}/items/{item_id}"),
            &key
        )
        .await,
        200
    );
    let (_, items) = gw
        .call(
            Method::GET,
            &format!("/v1/conversations/{cid}/items?limit=1"),
            &key,
            None,
        )
        .await;
    assert_eq!(items["has_more"], true);

    let (status, updated) = gw
        .call(
            Method::POST,
            &format!("/v1/conversations/{cid}"),
            &key,
            Some(json!({"metadata": {"topic": "new"}})),
        )
        .await;
    assert_eq!(
        (status, updated["metadata"]["topic"].as_str()),
        (200, Some("new"))
    );
    assert_eq!(
        gw.status(Method::DELETE, &format!("/v1/conversations/{cid}"), &key)
            .await,
        200
    );
    assert_eq!(
        gw.status(Method::GET, &format!("/v1/conversations/{cid}/items"), &key)
            .await,
        404
    );
    gw.stop().await;
}

#[tokio::test]
async fn stored_chat_completions_can_be_listed_updated_and_deleted() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, key) = gw.user("ann", "default", "1").await;
    let mut body = chat_body("gpt-test", false);
    body["store"] = json!(true);
    body["metadata"] = json!({"topic": "a"});
    let first: Value = gw.chat(&key, body.clone()).await.json().await.unwrap();
    body["stream"] = json!(true);
    body["metadata"] = json!({"topic": "b"});
    let streamed = gw.chat(&key, body).await.text().await.unwrap();
    let stream_id = events(&streamed)[0].1["id"].as_str().unwrap().to_string();
    // Not stored: not listed.
    gw.chat(&key, chat_body("gpt-test", false))
        .await
        .text()
        .await
        .unwrap();
    // The upstream never hears of storage.
    assert!(last_upstream(&mock).get("store").is_none());

    let (status, list) = gw
        .call(Method::GET, "/v1/chat/completions", &key, None)
        .await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![first["id"].as_str().unwrap(), stream_id.as_str()]);
    assert_eq!(
        list["data"][1]["choices"][0]["message"]["content"],
        "Hello world!"
    );

    let (_, only_b) = gw
        .call(
            Method::GET,
            "/v1/chat/completions?metadata[topic]=b",
            &key,
            None,
        )
        .await;
    assert_eq!(only_b["data"].as_array().unwrap().len(), 1);
    let (_, by_post) = gw
        .call(
            Method::POST,
            "/v1/chat/completions/list",
            &key,
            Some(json!({"metadata": {"topic": "a"}})),
        )
        .await;
    assert_eq!(by_post["data"][0]["id"], first["id"]);

    let fid = first["id"].as_str().unwrap();
    let (status, updated) = gw
        .call(
            Method::POST,
            &format!("/v1/chat/completions/{fid}"),
            &key,
            Some(json!({"metadata": {"topic": "c"}})),
        )
        .await;
    assert_eq!(
        (status, updated["metadata"]["topic"].as_str()),
        (200, Some("c"))
    );
    let (_, messages) = gw
        .call(
            Method::GET,
            &format!("/v1/chat/completions/{fid}/messages"),
            &key,
            None,
        )
        .await;
    assert_eq!(messages["data"][0]["content"], "Say hello");
    assert_eq!(
        gw.status(Method::DELETE, &format!("/v1/chat/completions/{fid}"), &key)
            .await,
        200
    );
    assert_eq!(
        gw.status(Method::GET, &format!("/v1/chat/completions/{fid}"), &key)
            .await,
        404
    );
    gw.stop().await;
}

#[tokio::test]
async fn stored_objects_are_private_to_their_owner() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (_, ann) = gw.user("ann", "default", "1").await;
    let (_, bob) = gw.user("bob", "default", "1").await;
    let response = gw
        .respond(&ann, json!({"model": "gpt-test", "input": "secret"}))
        .await;
    let rid = response["id"].as_str().unwrap();
    let (_, conv) = gw
        .call(
            Method::POST,
            "/v1/conversations",
            &ann,
            Some(json!({"items": [{"role": "user", "content": "secret"}]})),
        )
        .await;
    let cid = conv["id"].as_str().unwrap();
    let mut chat = chat_body("gpt-test", false);
    chat["store"] = json!(true);
    let completion: Value = gw.chat(&ann, chat).await.json().await.unwrap();
    let chat_id = completion["id"].as_str().unwrap();

    for (method, path) in [
        (Method::GET, format!("/v1/responses/{rid}")),
        (Method::DELETE, format!("/v1/responses/{rid}")),
        (Method::GET, format!("/v1/responses/{rid}/input_items")),
        (Method::POST, format!("/v1/responses/{rid}/cancel")),
        (Method::GET, format!("/v1/conversations/{cid}")),
        (Method::DELETE, format!("/v1/conversations/{cid}")),
        (Method::GET, format!("/v1/conversations/{cid}/items")),
        (Method::GET, format!("/v1/chat/completions/{chat_id}")),
        (Method::DELETE, format!("/v1/chat/completions/{chat_id}")),
        (
            Method::GET,
            format!("/v1/chat/completions/{chat_id}/messages"),
        ),
    ] {
        let (status, body) = gw.call(method.clone(), &path, &bob, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(!body.to_string().contains("secret"));
    }
    let (status, body) = gw
        .call(
            Method::POST,
            "/v1/responses",
            &bob,
            Some(json!({"model": "gpt-test", "input": "x", "previous_response_id": rid})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (_, list) = gw
        .call(Method::GET, "/v1/chat/completions", &bob, None)
        .await;
    assert_eq!(list["data"], json!([]));
    // Ann's objects are intact.
    assert_eq!(
        gw.status(Method::GET, &format!("/v1/responses/{rid}"), &ann)
            .await,
        200
    );
    assert_eq!(
        gw.status(Method::GET, &format!("/v1/conversations/{cid}/items"), &ann)
            .await,
        200
    );
    assert_eq!(
        gw.status(
            Method::GET,
            &format!("/v1/chat/completions/{chat_id}"),
            &ann
        )
        .await,
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_background_response_deleted_while_it_runs_stays_deleted() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ann", "default", "1").await;
    mock.set_default(Script::new().chunk_delay_ms(100));
    let queued = gw
        .respond(
            &key,
            json!({"model": "gpt-test", "input": "Say hello", "background": true}),
        )
        .await;
    let rid = queued["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        gw.status(Method::DELETE, &format!("/v1/responses/{rid}"), &key)
            .await,
        200
    );
    // The run stops and settles; saving its end must not bring the row back.
    gw.wait_for_usage(id, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = gw
        .call(Method::GET, &format!("/v1/responses/{rid}"), &key, None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (_, held) = gw.balance(id).await;
    assert_eq!(held, 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_history_too_large_for_any_upstream_is_refused_and_costs_nothing() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (id, key) = gw.user("ann", "default", "1").await;
    let (_, conv) = gw
        .call(Method::POST, "/v1/conversations", &key, Some(json!({})))
        .await;
    let cid = conv["id"].as_str().unwrap();
    // Three items of 25 MB: each request is within the body limit, together not.
    let big = "x".repeat(25_000_000);
    for _ in 0..3 {
        let items = json!({"items": [{"type": "message", "role": "user", "content": big}]});
        let path = format!("/v1/conversations/{cid}/items");
        let (status, _) = gw.call(Method::POST, &path, &key, Some(items)).await;
        assert_eq!(status, 200);
    }
    let (before, _) = gw.balance(id).await;
    let (status, body) = gw
        .call(
            Method::POST,
            "/v1/responses",
            &key,
            Some(json!({"model": "gpt-test", "input": "Summarise.", "conversation": cid})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too long"));
    assert!(mock.requests().is_empty());
    assert_eq!(gw.balance(id).await, (before, 0));
    gw.stop().await;
}
