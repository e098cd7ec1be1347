//! An operator's `HTTP_PROXY` still carries the upstream calls: a provider
//! the environment sends through a proxy is called with reqwest's client
//! (which speaks to proxies), not hyper's direct one. A test binary of its
//! own: the proxy settings are the process's environment, read when the
//! gateway starts, and would reach every other test's gateway.

#[allow(dead_code, unused_imports)]
#[path = "integration/common.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use common::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A forward proxy on a free port: it counts the requests it carries and
/// passes each on to the absolute URI it names, streaming the answer back.
async fn start_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let carried = Arc::new(AtomicUsize::new(0));
    let count = carried.clone();
    let onward = reqwest::Client::builder().no_proxy().build().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (onward, count) = (onward.clone(), count.clone());
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let (onward, count) = (onward.clone(), count.clone());
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let answer = onward
                            .request(parts.method, parts.uri.to_string())
                            .headers(parts.headers)
                            .body(body)
                            .send()
                            .await?;
                        Ok::<_, BoxError>(hyper::Response::<reqwest::Body>::from(answer))
                    }
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    (url, carried)
}

#[tokio::test]
async fn an_upstream_behind_the_environments_proxy_is_called_through_it() {
    let mock = start_mock().await;
    let (proxy, carried) = start_proxy().await;
    // The gateway reaches the mock as `localhost`, through the proxy; the
    // test reaches the gateway on 127.0.0.1, directly.
    std::env::set_var("HTTP_PROXY", &proxy);
    std::env::set_var("NO_PROXY", "127.0.0.1");
    let gw = start_gateway(&mock.url.replace("127.0.0.1", "localhost"), None).await;
    let (id, key) = gw.user("alice", "default", "10").await;
    let before = gw.balance(id).await;

    let resp = gw.chat(&key, chat_body("gpt-test", false)).await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, mock_completion_body("gpt-test"));

    let resp = gw.chat(&key, chat_body("gpt-test", true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("[DONE]"), "the stream ends: {text}");

    // Both calls went through the proxy, with the upstream key, and were
    // charged exactly.
    assert_eq!(carried.load(Ordering::SeqCst), 2);
    let auth = format!("Bearer {UPSTREAM_KEY}");
    assert!(mock
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(auth.as_str())));
    let records = gw.wait_for_usage(id, 2).await;
    assert!(records.iter().all(|r| r.cost == GPT_TEST_COST));
    gw.assert_charged_exactly(id, before, &records).await;
    gw.stop().await;
}
