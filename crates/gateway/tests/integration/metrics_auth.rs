//! `/metrics` shows revenue per model: with `metrics_token` it needs that
//! bearer token; without one it is served only on a loopback listener.

use serde_json::Value;

use crate::common::*;

async fn scrape(gw: &Gateway, token: Option<&str>) -> (u16, String) {
    let mut req = gw.http.get(format!("{}/metrics", gw.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn openai_error(text: &str) -> Value {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    assert!(body["error"]["message"].is_string(), "{text}");
    body
}

#[tokio::test]
async fn a_metrics_token_is_required_when_set() {
    let mock = start_mock().await;
    let gw = start_gateway_with(
        &mock.url,
        None,
        "metrics_token = \"scrape-me-0123456789\"",
        "",
    )
    .await;
    for token in [None, Some("wrong"), Some("scrape-me-012345678")] {
        let (status, text) = scrape(&gw, token).await;
        assert_eq!(status, 401, "{token:?}: {text}");
        let body = openai_error(&text);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(!text.contains("tollgate_"), "{text}");
    }
    let (status, text) = scrape(&gw, Some("scrape-me-0123456789")).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("tollgate_in_flight"), "{text}");
    gw.stop().await;
}

#[tokio::test]
async fn a_metrics_token_can_come_from_the_environment() {
    std::env::set_var("TOLLGATE_TEST_METRICS_TOKEN_H1", "from-the-env-42");
    let mock = start_mock().await;
    let gw = start_gateway_with(
        &mock.url,
        None,
        "metrics_token = \"env:TOLLGATE_TEST_METRICS_TOKEN_H1\"",
        "",
    )
    .await;
    assert_eq!(scrape(&gw, None).await.0, 401);
    assert_eq!(
        scrape(&gw, Some("env:TOLLGATE_TEST_METRICS_TOKEN_H1"))
            .await
            .0,
        401
    );
    assert_eq!(scrape(&gw, Some("from-the-env-42")).await.0, 200);
    gw.stop().await;
}

#[tokio::test]
async fn without_a_token_metrics_are_refused_on_a_public_listener() {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "listen = \"0.0.0.0:8080\"", "").await;
    let (status, text) = scrape(&gw, None).await;
    assert_eq!(status, 403, "{text}");
    let body = openai_error(&text);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("metrics_token"),
        "{text}"
    );
    assert!(!text.contains("tollgate_"), "{text}");
    // Health checks stay open.
    let resp = gw
        .http
        .get(format!("{}/healthz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn without_a_token_a_loopback_listener_serves_metrics() {
    let mock = start_mock().await;
    for listen in ["127.0.0.1:8080", "[::1]:8080", "localhost:8080"] {
        let top = format!("listen = \"{listen}\"");
        let gw = start_gateway_with(&mock.url, None, &top, "").await;
        let (status, text) = scrape(&gw, None).await;
        assert_eq!(status, 200, "{listen}: {text}");
        gw.stop().await;
    }
}
