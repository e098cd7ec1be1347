//! Several instances sharing limits and balances through a real Redis:
//! two gateways on one database and one `redis-server`, the load split
//! between them, admit together exactly what one would. And when Redis goes
//! away, the configured policy holds and nothing is charged twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::redis_server::RedisServer;

/// Instance `n` of a deployment on `database_url` and `redis`: holds in
/// Redis, a journal of its own, then `tail`.
async fn instance(
    mock_url: &str,
    database_url: &str,
    redis: &RedisServer,
    n: usize,
    redis_settings: &str,
    tail: &str,
) -> Gateway {
    let text: String = config_text(mock_url, database_url)
        .lines()
        .map(|line| {
            if line.starts_with("holds = ") {
                format!("holds = \"redis\"\nredis_url = \"{}\"", redis.url)
            } else if let Some(dir) = line.strip_prefix("journal_dir = ") {
                format!("journal_dir = {}-{n}\"", dir.trim_end_matches('"'))
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("{text}\n[redis]\n{redis_settings}\n{tail}");
    let config = gateway::config::Config::parse(&text, "test.toml").unwrap();
    start_gateway_config(config, database_url.to_string()).await
}

const CLOSED: &str = "on_failure = \"closed\"";
const LOCAL: &str = "on_failure = \"local\"";

/// A model whose worst case is exactly its cost: no input price, and
/// requests asking for the 5 output tokens the mock answers.
const EXACT_MODEL: &str = "\n[models.exact]\nprovider = \"mock\"\ninput_price = 0\ncached_input_price = 0\noutput_price = 10\n";
/// 5 output tokens at 10 USD per 1M.
const EXACT_COST: i64 = 50_000;

fn exact_body() -> Value {
    json!({"model": "exact", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends `n` requests at once, alternating between `gateways`; returns the
/// count per status and the bodies of the refusals.
async fn burst(gateways: &[&Gateway], key: &str, body: &Value, n: usize) -> HashMap<u16, usize> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gw = gateways[i % gateways.len()];
            let request = gw
                .http
                .post(format!("{}/v1/chat/completions", gw.url))
                .bearer_auth(key)
                .json(body);
            tokio::spawn(async move {
                let resp = request.send().await.unwrap();
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap();
                (status, text)
            })
        })
        .collect();
    let mut by_status = HashMap::new();
    for task in tasks {
        let (status, text) = task.await.unwrap();
        assert!(matches!(status, 200 | 429), "{status}: {text}");
        *by_status.entry(status).or_default() += 1;
    }
    by_status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_60_rpm_limit() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let limits = "[rate_limits.models.cheap]\nrpm = 60\n";
    let a = instance(&mock.url, &database_url, &redis, 1, CLOSED, limits).await;
    let b = instance(&mock.url, &database_url, &redis, 2, CLOSED, limits).await;
    let (user_id, key) = a.user("shared-rpm", "default", "10").await;
    let before = a.balance(user_id).await;
    let by_status = burst(&[&a, &b], &key, &chat_body("cheap", false), 200).await;
    assert_eq!(
        by_status,
        HashMap::from([(200, 60), (429, 140)]),
        "60 in all, not 120"
    );
    assert_eq!(mock.requests().len(), 60);
    let records = a.wait_for_usage(user_id, 60).await;
    assert_eq!(records.len(), 60);
    a.stop().await;
    b.stop().await;
    let (_, user) = persisted(&database_url, user_id).await;
    let charged: i64 = records.iter().map(|r| r.cost).sum();
    assert_eq!(user.balance + user.free_balance, before.0 - charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_admit_more_than_the_balance_covers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let a = instance(&mock.url, &database_url, &redis, 1, CLOSED, EXACT_MODEL).await;
    let b = instance(&mock.url, &database_url, &redis, 2, CLOSED, EXACT_MODEL).await;
    // A balance covering exactly 10 requests, in two rounds: each instance
    // sees the other's charges, not only its holds.
    let (user_id, key) = a.user("shared-balance", "default", "0.0005").await;
    assert_eq!(a.balance(user_id).await.0, 10 * EXACT_COST);
    let first = burst(&[&a, &b], &key, &exact_body(), 6).await;
    assert_eq!(first, HashMap::from([(200, 6)]));
    a.wait_for_usage(user_id, 6).await;
    let second = burst(&[&b, &a], &key, &exact_body(), 40).await;
    assert_eq!(
        second,
        HashMap::from([(200, 4), (429, 36)]),
        "exactly 10 in all"
    );
    let records = a.wait_for_usage(user_id, 10).await;
    assert!(records
        .iter()
        .all(|r| r.cost == EXACT_COST && r.status == 200));
    a.stop().await;
    b.stop().await;
    let (records, user) = persisted(&database_url, user_id).await;
    assert_eq!(records.len(), 10);
    assert_eq!((user.balance + user.free_balance, user.held), (0, 0));
    // Redis released every hold once its charge was committed, and keeps
    // the balance the database has.
    let figures = redis_figures(&redis, user_id).await;
    assert_eq!(figures, (Some(0), Some(0), 0), "balance, held, holds left");
}

/// What Redis keeps of a user: (balance, held, holds in its set).
async fn redis_figures(redis: &RedisServer, user_id: i64) -> (Option<i64>, Option<i64>, usize) {
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let (balance, held): (Option<i64>, Option<i64>) = ::redis::cmd("HMGET")
        .arg(format!("{{tollgate}}:u:{user_id}"))
        .arg("bal")
        .arg("held")
        .query_async(&mut connection)
        .await
        .unwrap();
    let holds: usize = ::redis::cmd("ZCARD")
        .arg(format!("{{tollgate}}:uh:{user_id}"))
        .query_async(&mut connection)
        .await
        .unwrap();
    (balance, held, holds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_taken_as_estimated_are_given_back_at_settlement() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let limits = "[rate_limits.models.cheap]\ntpm = 1000\n";
    let a = instance(&mock.url, &database_url, &redis, 1, CLOSED, limits).await;
    let b = instance(&mock.url, &database_url, &redis, 2, CLOSED, limits).await;
    let (_, key) = a.user("shared-tpm", "default", "10").await;
    // Each request is estimated at over 600 tokens and uses 15: without
    // reconciliation the second would wait some 40 s for the minute's.
    let mut body = chat_body("cheap", false);
    body["max_tokens"] = json!(600);
    let started = Instant::now();
    let mut remaining = Vec::new();
    for i in 0..5 {
        let gw = [&a, &b][i % 2];
        let resp = loop {
            let resp = gw.chat(&key, body.clone()).await;
            if resp.status() != 429 {
                break resp;
            }
            // Settlement reconciles in a task of its own, just after.
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never reconciled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-ratelimit-limit-tokens"], "1000");
        remaining.push(
            resp.headers()["x-ratelimit-remaining-tokens"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    // Each time, what is left is the minute less this request's estimate
    // and the few tokens the earlier ones used.
    assert!(
        remaining.iter().all(|r| (250..400).contains(r)),
        "{remaining:?}"
    );
    // An estimate beyond the whole minute is refused without a retry-after.
    body["max_tokens"] = json!(5_000);
    let resp = a.chat(&key, body).await;
    assert_eq!(resp.status(), 429);
    assert!(!resp.headers().contains_key("retry-after"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_concurrency_lease_expires() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let limits = "[rate_limits]\nlease_ttl_secs = 2\n[rate_limits.models.cheap]\nconcurrency = 1\n";
    let a = instance(&mock.url, &database_url, &redis, 1, CLOSED, limits).await;
    let b = instance(&mock.url, &database_url, &redis, 2, CLOSED, limits).await;
    let (_, key) = a.user("shared-lease", "default", "10").await;
    // Instance A takes the model's one lease for a request and dies before
    // returning it: the lease is taken and never settled.
    let checks = [gateway::limits::Check {
        scope: "model:cheap".into(),
        limits: gateway::limits::Limits {
            concurrency: Some(1),
            ..Default::default()
        },
    }];
    let shared = a.app.shared.clone().unwrap();
    let taken_at = Instant::now();
    let ticket = shared.admit(&checks, 0, None).await.unwrap();
    std::mem::forget(ticket);
    a.stop().await;
    // B is refused while the lease lives, and served once it expired.
    let resp = b.chat(&key, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrent requests"),
        "{body}"
    );
    let served_at = loop {
        let resp = b.chat(&key, chat_body("cheap", false)).await;
        if resp.status() == 200 {
            break taken_at.elapsed();
        }
        assert!(
            taken_at.elapsed() < Duration::from_secs(10),
            "the lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(served_at >= Duration::from_millis(1_900), "{served_at:?}");
    // B's own leases are returned: the next requests pass one after another.
    for _ in 0..3 {
        assert_eq!(b.chat(&key, chat_body("cheap", false)).await.status(), 200);
    }
    b.stop().await;
}

/// Polls `gw` until a chat request gets `status`.
async fn wait_for_status(gw: &Gateway, key: &str, status: u16) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = gw.chat(key, chat_body("cheap", false)).await;
        if resp.status() == status {
            return resp;
        }
        assert!(Instant::now() < deadline, "never got {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics(gw: &Gateway) -> String {
    gw.http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_closed_gateway_refuses_and_charges_nothing() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let limits = "[rate_limits.models.cheap]\nrpm = 100\n";
    let gw = instance(&mock.url, &database_url, &redis, 1, CLOSED, limits).await;
    let (user_id, key) = gw.user("redis-closed", "default", "10").await;
    let before = gw.balance(user_id).await;
    wait_for_status(&gw, &key, 200).await;
    redis.kill();
    let resp = wait_for_status(&gw, &key, 503).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "limits_unavailable", "{body}");
    // Anthropic's clients get their own retryable "overloaded".
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "cheap", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    assert!(metrics(&gw)
        .await
        .contains("tollgate_redis_failures_total{op=\"admit\"}"));
    // Back, on the same port: shared again.
    redis.restart();
    let resp = wait_for_status(&gw, &key, 200).await;
    assert!(!resp.headers().contains_key("x-tollgate-limits"));
    let served = mock.requests().len();
    let records = gw.wait_for_usage(user_id, served).await;
    assert_eq!(
        records.len(),
        served,
        "one record per request served, none for the refused"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.stop().await;
    let (records, user) = persisted(&database_url, user_id).await;
    let charged: i64 = records.iter().map(|r| r.cost).sum();
    assert_eq!(user.balance + user.free_balance, before.0 - charged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_local_gateway_counts_alone_and_says_so() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let limits = "[rate_limits.models.cheap]\nrpm = 3\n";
    let gw = instance(&mock.url, &database_url, &redis, 1, LOCAL, limits).await;
    let (user_id, key) = gw.user("redis-local", "default", "10").await;
    let before = gw.balance(user_id).await;
    let resp = wait_for_status(&gw, &key, 200).await;
    assert!(!resp.headers().contains_key("x-tollgate-limits"));
    redis.kill();
    // Counted on this instance alone, from nothing: its 3 of the minute.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = gw.chat(&key, chat_body("cheap", false)).await;
        if resp.status() == 200 {
            assert_eq!(resp.headers()["x-tollgate-limits"], "local");
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let text = metrics(&gw).await;
    assert!(text.contains("tollgate_admitted_locally_total 3"), "{text}");
    let records = gw.wait_for_usage(user_id, 4).await;
    assert_eq!(records.len(), 4, "each request served recorded once");
    gw.stop().await;
    let (records, user) = persisted(&database_url, user_id).await;
    let charged: i64 = records.iter().map(|r| r.cost).sum();
    assert_eq!(
        (user.balance + user.free_balance, user.held),
        (before.0 - charged, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_limit_is_shared_and_each_instance_tells_what_is_left_of_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let a = instance(&mock.url, &database_url, &redis, 1, CLOSED, "").await;
    let b = instance(&mock.url, &database_url, &redis, 2, CLOSED, "").await;
    let (user_id, _) = a.user("shared-key", "default", "10").await;
    let (status, created) = a
        .admin(
            reqwest::Method::POST,
            &format!("/admin/users/{user_id}/keys"),
            Some(json!({"rpm": 10})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let by_status = burst(&[&a, &b], &key, &chat_body("cheap", false), 30).await;
    assert_eq!(by_status, HashMap::from([(200, 10), (429, 20)]));
    // Either instance reads the one shared count.
    for gw in [&a, &b] {
        let limits: Value = gw
            .http
            .get(format!("{}/v1/usage/limits", gw.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rpm = &limits["limits"][0]["rpm"];
        assert_eq!(limits["limits"][0]["scope"], "key", "{limits}");
        assert_eq!(
            (&rpm["limit"], &rpm["remaining"]),
            (&json!(10), &json!(0)),
            "{limits}"
        );
    }
    // The operator sees the refusals of both instances together.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, top) = b
            .admin(reqwest::Method::GET, "/admin/rate-limits/top", None)
            .await;
        assert_eq!(status, 200, "{top}");
        if top["data"][0]["count"] == 20 {
            assert_eq!(top["data"][0]["user_id"], user_id);
            assert_eq!(top["data"][0]["by_scope"], json!({"key": 20}));
            assert_eq!(top["data"][0]["by_limit"]["requests"], 20);
            break;
        }
        assert!(Instant::now() < deadline, "{top}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_requests_hold_nothing_and_leave_nothing_held() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let free = "\n[models.free]\nprovider = \"mock\"\ninput_price = 0\noutput_price = 0\n";
    let gw = instance(&mock.url, &database_url, &redis, 1, CLOSED, free).await;
    let (user_id, key) = gw.user("free-rider", "default", "0").await;
    for _ in 0..3 {
        let resp = gw
            .chat(
                &key,
                json!({"model": "free", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    gw.wait_for_usage(user_id, 3).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis_figures(&redis, user_id).await != (Some(0), Some(0), 0) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            redis_figures(&redis, user_id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_whose_answer_timed_out_is_undone() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mock = start_mock().await;
    let database_url = store::testing::fresh_database_url().await;
    let limits = "[rate_limits.models.cheap]\nconcurrency = 1\n";
    let settings = "on_failure = \"closed\"\ntimeout_ms = 100";
    let gw = instance(&mock.url, &database_url, &redis, 1, settings, limits).await;
    let (user_id, key) = gw.user("paused", "default", "10").await;
    wait_for_status(&gw, &key, 200).await;
    // Redis stalls longer than the timeout: the admission is sent, times
    // out, and runs once Redis resumes — taking the model's one lease and
    // a hold that nobody would return but the undoing.
    let client = ::redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(600)
        .arg("ALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    let resp = gw.chat(&key, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 503);
    // Served again, the lease back: without the undoing it would be held
    // for its whole lifetime (an hour) and every request refused.
    wait_for_status(&gw, &key, 200).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, held, holds) = redis_figures(&redis, user_id).await;
        if (held, holds) == (Some(0), 0) {
            break;
        }
        assert!(Instant::now() < deadline, "held {held:?}, holds {holds}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}
