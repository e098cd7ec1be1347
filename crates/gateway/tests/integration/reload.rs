//! Reloading the model catalog (`POST /admin/reload`, `SIGHUP`): the new
//! catalog serves new requests, requests in flight finish as they began,
//! and a configuration that does not load changes nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::common::*;

/// `multi` served by `chan` alone at `price` USD per 1M input tokens
/// (twice that for output), plus `extra` (more tables).
fn catalog(a: &str, b: &str, chan: &str, price: u32, extra: &str) -> String {
    format!(
        "{}{}\n[models.multi]\nprovider = \"{chan}\"\ninput_price = {price}\noutput_price = {}\n{extra}\n",
        openai_provider("chan-a", a, ""),
        openai_provider("chan-b", b, ""),
        price * 2
    )
}

/// A configuration file whose catalog tail can be rewritten.
struct ConfigFile {
    path: PathBuf,
    head: String,
}

impl ConfigFile {
    /// Replaces the file at once (a reload, this test's or a `SIGHUP`
    /// another test sends, never reads half of it).
    fn write(&self, tail: &str) {
        let next = self.path.with_extension("next");
        std::fs::write(&next, format!("{}\n{tail}", self.head)).unwrap();
        std::fs::rename(&next, &self.path).unwrap();
    }
}

/// A gateway started from a file (so that it can reload it) on the test
/// configuration plus `tail`.
async fn gateway_on_file(main: &Mock, tail: &str) -> (Gateway, ConfigFile) {
    let database_url = store::testing::fresh_database_url().await;
    let head = config_text(&main.url, &database_url);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-reload-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = ConfigFile {
        path: dir.join("tollgate.toml"),
        head,
    };
    file.write(tail);
    let mut config = gateway::config::Config::parse(
        &std::fs::read_to_string(&file.path).unwrap(),
        "tollgate.toml",
    )
    .unwrap();
    config.source = Some(gateway::config::Source {
        path: file.path.clone(),
        env: Vec::new(),
    });
    (start_gateway_config(config, database_url).await, file)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

async fn reload(gw: &Gateway) -> (u16, Value) {
    gw.admin(Method::POST, "/admin/reload", None).await
}

/// Waits (bounded) until `mock` has received `n` requests.
async fn received(mock: &Mock, n: usize) {
    for _ in 0..200 {
        if mock.requests().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the mock never received {n} requests");
}

fn remove(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn a_reload_serves_new_requests_from_the_new_catalog_and_lets_old_ones_finish() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let (gw, file) = gateway_on_file(&main, &catalog(&a.url, &b.url, "chan-a", 1, "")).await;
    let (user_id, key) = gw.user("reload", "default", "10").await;

    // A slow stream on `chan-a` at the old prices…
    a.set_default(Script::new().first_piece_delay_ms(150).chunk_delay_ms(150));
    let in_flight = {
        let request = gw
            .http
            .post(format!("{}/v1/chat/completions", gw.url))
            .bearer_auth(&key)
            .json(&chat_body("multi", true));
        tokio::spawn(async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        })
    };
    received(&a, 1).await;

    // …while the catalog moves `multi` to `chan-b` at ten times the price
    // and adds a model.
    let fresh = "[models.fresh]\nprovider = \"chan-b\"\ninput_price = 1\n";
    file.write(&catalog(&a.url, &b.url, "chan-b", 10, fresh));
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["models"].as_u64(),
        Some(gw.app.catalog.load().models.len() as u64)
    );

    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(resp.status(), 200);
    let (status, text) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!((a.requests().len(), b.requests().len()), (1, 1));

    // Each charged at the prices it was routed under: the same usage, ten
    // times the cost.
    let records = gw.wait_for_usage(user_id, 2).await;
    let cost_on = |provider: &str| {
        let r = records.iter().find(|r| r.provider == provider).unwrap();
        assert_eq!(r.status, 200);
        (r.cost, r.input_tokens, r.output_tokens)
    };
    let (old, old_in, old_out) = cost_on("chan-a");
    let (new, new_in, new_out) = cost_on("chan-b");
    assert_eq!((old_in, old_out), (new_in, new_out));
    assert!(old > 0);
    assert_eq!(new, old * 10);

    let models = gw
        .http
        .get(format!("{}/v1/models", gw.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(models.contains("\"fresh\""), "{models}");

    // A file that does not load is refused, and changes nothing.
    file.write("[models.broken]\ninput_price = 1\n");
    let (status, body) = reload(&gw).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("broken"), "{body}");
    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(b.requests().len(), 2);

    // SIGHUP reloads too.
    file.write(&catalog(&a.url, &b.url, "chan-a", 1, ""));
    a.clear_default();
    // SAFETY: kill(2) with this process's own id and a signal the gateway handles.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let mut moved = false;
    for _ in 0..100 {
        if !gw.app.catalog.load().models.contains_key("fresh") {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "SIGHUP did not reload the catalog");
    let resp = gw.chat(&key, chat_body("multi", false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(a.requests().len(), 2);
    gw.stop().await;
    remove(&file.path);
}

#[tokio::test]
async fn a_channel_keeps_its_health_across_reloads_even_when_its_provider_is_edited() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let (gw, file) = gateway_on_file(&main, &catalog(&a.url, &b.url, "chan-a", 1, "")).await;
    let (status, _) = gw
        .admin(Method::POST, "/admin/channels/multi/0/disable", None)
        .await;
    assert_eq!(status, 200);
    let disabled = |gw: &Gateway| {
        let catalog = gw.app.catalog.load();
        matches!(
            catalog.channels["multi"][0].health.state(),
            gateway::routing::health::State::Disabled { .. }
        )
    };
    // Another model added: `chan-a` is unchanged and stays disabled.
    file.write(&catalog(
        &a.url,
        &b.url,
        "chan-a",
        1,
        "[models.other]\nprovider = \"chan-b\"\ninput_price = 1\n",
    ));
    assert_eq!(reload(&gw).await.0, 200);
    assert!(disabled(&gw), "an operator's disable survives a reload");

    // `chan-a`'s settings edited (a timeout, another key): a new provider
    // (its new settings in force), the same channel, still disabled.
    let edited = catalog(&a.url, &b.url, "chan-a", 1, "").replace(
        "[providers.chan-a]\n",
        "[providers.chan-a]\nread_timeout_secs = 7\napi_keys = [\"sk-more\"]\n",
    );
    file.write(&edited);
    assert_eq!(reload(&gw).await.0, 200);
    assert!(disabled(&gw));
    assert_eq!(
        gw.app.catalog.load().providers["chan-a"].key_count(),
        2,
        "the edited provider is in force"
    );

    // A channel the catalog no longer has is gone; serving it again later
    // starts afresh.
    file.write(&catalog(&a.url, &b.url, "chan-b", 1, ""));
    assert_eq!(reload(&gw).await.0, 200);
    file.write(&catalog(&a.url, &b.url, "chan-a", 1, ""));
    assert_eq!(reload(&gw).await.0, 200);
    assert!(!disabled(&gw));
    gw.stop().await;
    remove(&file.path);
}

#[tokio::test]
async fn reloads_under_load_drop_nothing_and_charge_exactly() {
    let (main, a, b) = (start_mock().await, start_mock().await, start_mock().await);
    let (gw, file) = gateway_on_file(&main, &catalog(&a.url, &b.url, "chan-a", 1, "")).await;
    let (user_id, key) = gw.user("reload-load", "default", "10").await;
    let before = gw.balance(user_id).await;
    a.set_default(Script::new().chunk_delay_ms(5));
    b.set_default(Script::new().chunk_delay_ms(5));
    // 20 waves of 15 requests, half of them streams, a reload after each
    // wave while its requests run.
    let (waves, per_wave) = (20, 15);
    let n = waves * per_wave;
    let mut tasks = Vec::new();
    for wave in 0..waves {
        for i in 0..per_wave {
            let request = gw
                .http
                .post(format!("{}/v1/chat/completions", gw.url))
                .bearer_auth(&key)
                .json(&chat_body("multi", i % 2 == 0));
            tasks.push(tokio::spawn(async move {
                let resp = request.send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            }));
        }
        let chan = if wave % 2 == 0 { "chan-b" } else { "chan-a" };
        file.write(&catalog(&a.url, &b.url, chan, 1, ""));
        let (status, body) = reload(&gw).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for task in tasks {
        let (status, text) = task.await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("Hel"), "{text}");
    }
    let records = gw.wait_for_usage(user_id, n).await;
    assert_eq!(records.len(), n);
    assert!(records.iter().all(|r| r.status == 200 && r.cost > 0));
    let on_a = records.iter().filter(|r| r.provider == "chan-a").count();
    assert!(
        on_a > 0 && on_a < n,
        "both catalogs served: {on_a} of {n} on chan-a"
    );
    assert_eq!(on_a, a.requests().len());
    assert_eq!(n - on_a, b.requests().len());
    gw.assert_charged_exactly(user_id, before, &records).await;
    gw.stop().await;
    remove(&file.path);
}
