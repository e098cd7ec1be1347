//! A model served by several channels: the highest priority serves, shared
//! by weight within a tier, and each usage record names the channel that
//! served it.

use std::collections::HashMap;

use crate::common::*;

/// Two more providers on two more mocks, and a model `multi` on them.
fn channels_config(a: &str, b: &str, channels: &str) -> String {
    format!(
        r#"
[providers.chan-a]
kind = "openai"
base_url = "{a}"
api_key = "{UPSTREAM_KEY}"

[providers.chan-b]
kind = "openai"
base_url = "{b}"
api_key = "{UPSTREAM_KEY}"

[models.multi]
input_price = "1"
output_price = "2"
{channels}
"#
    )
}

async fn served_by(gw: &Gateway, user_id: i64, n: usize) -> HashMap<String, usize> {
    let records = gw.wait_for_usage(user_id, n).await;
    assert_eq!(records.len(), n);
    let mut by = HashMap::new();
    for r in records {
        assert_eq!(r.status, 200, "{r:?}");
        *by.entry(format!("{}/{}", r.provider, r.upstream_model))
            .or_insert(0) += 1;
    }
    by
}

#[tokio::test]
async fn the_highest_priority_channel_serves() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let channels = r#"
[[models.multi.channels]]
provider = "chan-b"
priority = 0

[[models.multi.channels]]
provider = "chan-a"
upstream_model = "a-model"
priority = 10
"#;
    let gw = start_gateway_with(
        &main.url,
        None,
        "",
        &channels_config(&a.url, &b.url, channels),
    )
    .await;
    let (user_id, key) = gw.user("prio", "default", "10").await;
    for _ in 0..10 {
        let resp = gw.chat(&key, chat_body("multi", false)).await;
        assert_eq!(resp.status(), 200);
    }
    let by = served_by(&gw, user_id, 10).await;
    assert_eq!(by, HashMap::from([("chan-a/a-model".to_string(), 10)]));
    assert_eq!(a.requests().len(), 10);
    assert!(b.requests().is_empty() && main.requests().is_empty());
    // Under the channel's own name for the model.
    let (_, _, body) = &a.requests()[0];
    assert_eq!(body["model"], "a-model");
    gw.stop().await;
}

#[tokio::test]
async fn a_tier_is_shared_by_weight() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let channels = r#"
[[models.multi.channels]]
provider = "chan-a"
weight = 3

[[models.multi.channels]]
provider = "chan-b"
weight = 1
"#;
    let gw = start_gateway_with(
        &main.url,
        None,
        "",
        &channels_config(&a.url, &b.url, channels),
    )
    .await;
    let (user_id, key) = gw.user("weights", "default", "10").await;
    let n = 400;
    gw.chat_burst(&key, chat_body("multi", false), n).await;
    let by = served_by(&gw, user_id, n).await;
    let on_a = by.get("chan-a/multi").copied().unwrap_or(0);
    let on_b = by.get("chan-b/multi").copied().unwrap_or(0);
    assert_eq!(on_a + on_b, n);
    // 300 expected on `a` (a standard deviation of about 9).
    assert!((250..=350).contains(&on_a), "{by:?}");
    assert_eq!((a.requests().len(), b.requests().len()), (on_a, on_b));
    gw.stop().await;
}
