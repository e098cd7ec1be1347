//! Channels failing in every way before their answer begins: the request
//! moves to the next channel, is charged once, and its usage record names
//! the channel that served. Then a thousand requests while channels fail at
//! random: no client sees a failure, and the charges add up exactly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;

use crate::common::*;

/// `multi` on `first` (priority 10, `first_settings` in its table), then
/// `chan-b` (priority 5), then `chan-c` (priority 0).
fn tiers(first: &str, first_settings: &str, b: &str, c: &str, tail: &str) -> String {
    format!(
        r#"{}{}{}
[models.multi]
input_price = "1"
output_price = "2"

[[models.multi.channels]]
provider = "chan-a"
priority = 10

[[models.multi.channels]]
provider = "chan-b"
priority = 5

[[models.multi.channels]]
provider = "chan-c"
priority = 0
{tail}
"#,
        openai_provider("chan-a", first, first_settings),
        openai_provider("chan-b", b, "request_timeout_secs = 1"),
        openai_provider("chan-c", c, "")
    )
}

#[tokio::test]
async fn every_way_a_channel_fails_before_answering_moves_the_request() {
    let ways = ["refused", "reset", "500", "429", "timeout", "tls-silent"];
    for way in ways {
        // A listener that accepts and never says a word: a TLS handshake
        // to it never finishes, and only the connect timeout (which covers
        // DNS, TCP and TLS) ends the attempt, well before the call's.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = format!("https://{}/v1", silent.local_addr().unwrap());
        let holding = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = silent.accept().await {
                held.push(tcp);
            }
        });
        let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
        let (first, settings) = match way {
            // Nothing listens on port 9 of the loopback.
            "refused" => ("http://127.0.0.1:9/v1".to_string(), ""),
            // The mock reads the request, then resets the connection (RST)
            // without answering.
            "reset" => {
                a.set_default(Script::new().fault(Fault::Reset));
                (a.url.clone(), "")
            }
            "500" => {
                a.set_default(Script::new().status(500));
                (a.url.clone(), "")
            }
            "429" => {
                a.set_default(Script::new().status(429));
                (a.url.clone(), "")
            }
            "tls-silent" => (
                silent_url,
                "connect_timeout_secs = 1\nrequest_timeout_secs = 60",
            ),
            _ => {
                a.set_default(Script::new().head_delay_ms(3_000));
                (a.url.clone(), "request_timeout_secs = 1")
            }
        };
        let config = tiers(&first, settings, &b.url, &main.url, "");
        let gw = start_gateway_with(&main.url, None, "", &config).await;
        let (user_id, key) = gw.user(&format!("way-{way}"), "default", "10").await;
        let before = gw.balance(user_id).await;
        let started = std::time::Instant::now();
        for stream in [false, true] {
            let resp = gw.chat(&key, chat_body("multi", stream)).await;
            assert_eq!(resp.status(), 200, "{way}, stream {stream}");
            let text = resp.text().await.unwrap();
            assert!(text.contains("Hel"), "{way}: {text}");
        }
        // A whole Responses turn too: its wait for the answer starts when a
        // channel answers, not before the failed attempt.
        let turn = serde_json::json!({"model": "multi", "input": "Say hello"});
        let (status, body) = gw.post_json("/v1/responses", &key, &turn).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("completed")),
            "{way}: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{way}: three requests took {:?}",
            started.elapsed()
        );
        holding.abort();
        let records = gw.wait_for_usage(user_id, 3).await;
        assert_eq!(records.len(), 3, "{way}: one record per request");
        for r in &records {
            assert_eq!((r.provider.as_str(), r.status), ("chan-b", 200), "{way}");
            assert!(r.cost > 0);
        }
        gw.assert_charged_exactly(user_id, before, &records).await;
        assert_eq!(b.requests().len(), 3, "{way}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn a_thousand_requests_while_channels_fail_at_random_all_succeed_and_charge_exactly() {
    let (a, b, c) = (start_mock().await, start_mock().await, start_mock().await);
    // `chan-c` never fails; `chan-a` and `chan-b` fail at random, in every
    // way a mock can, switching every few milliseconds.
    let health = "[failover]\nhealth_min_requests = 4\ncooldown_secs = 1\n";
    let config = tiers(&a.url, "request_timeout_secs = 1", &b.url, &c.url, health);
    let gw = start_gateway_with(&c.url, None, "", &config).await;
    let (user_id, key) = gw.user("chaos", "default", "100").await;
    let before = gw.balance(user_id).await;

    let chaos = {
        let mocks = [a.control(), b.control()];
        tokio::spawn(async move {
            loop {
                for mock in &mocks {
                    let roll: u32 = rand::thread_rng().gen_range(0..10);
                    let (status, delay) = match roll {
                        0..=3 => (0, 0),
                        4 => (500, 0),
                        5 => (502, 0),
                        6 => (503, 0),
                        7 => (429, 0),
                        8 => (529, 0),
                        _ => (0, 1_500),
                    };
                    let mut script = Script::new().head_delay_ms(delay);
                    if status != 0 {
                        script = script.status(status);
                    }
                    mock.set_default(script);
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };

    let n = 1_000;
    let gate = Arc::new(Semaphore::new(64));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let request = gw
                .http
                .post(format!("{}/v1/chat/completions", gw.url))
                .bearer_auth(&key)
                .json(&chat_body("multi", i % 2 == 0));
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let resp = request.send().await.unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap();
                (status, text)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        let (status, text) = task.await.unwrap();
        if status != 200 || !text.contains("Hel") {
            failures.push((status, text));
        }
    }
    chaos.abort();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        failures.first()
    );

    // One record per request, each served and charged once.
    let records = gw.wait_for_usage(user_id, n).await;
    assert_eq!(records.len(), n);
    let mut by: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.cost > 0);
        *by.entry(r.provider.as_str()).or_default() += 1;
    }
    assert!(by.get("chan-c").copied().unwrap_or(0) > 0, "{by:?}");
    let ids: std::collections::HashSet<&str> =
        records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids.len(), n);
    gw.assert_charged_exactly(user_id, before, &records).await;
    gw.stop().await;
}
