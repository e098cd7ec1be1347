//! Users' files on both backends — a local folder and a real S3-compatible
//! server (the `moto` server CI starts; `TOLLGATE_TEST_S3_URL`): every
//! route with OhMyGPT's envelope, another user's files invisible
//! everywhere, refused uploads leaving nothing, ranges and ETags, expiry
//! and housekeeping, multipart uploads, and files as model inputs.

use std::path::{Path, PathBuf};

use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Local,
    S3,
}

/// A `[storage]` section on `backend` with `settings` added, and the local
/// folder it uses (`None` on S3). `None` when S3 is not available (a
/// failure instead under `TOLLGATE_REQUIRE_S3=1`).
async fn storage(backend: Backend, settings: &str) -> Option<(String, Option<PathBuf>)> {
    let unique = format!("{:x}", rand_u64());
    match backend {
        Backend::Local => {
            let dir = std::env::temp_dir()
                .join("tollgate-tests")
                .join(format!("files-{unique}"));
            let section = format!(
                "\n[storage]\nbackend = \"local\"\ndir = \"{}\"\n{settings}\n",
                dir.display()
            );
            Some((section, Some(dir)))
        }
        Backend::S3 => {
            let Ok(url) = std::env::var("TOLLGATE_TEST_S3_URL") else {
                assert!(
                    std::env::var("TOLLGATE_REQUIRE_S3").is_err(),
                    "TOLLGATE_REQUIRE_S3 is set but TOLLGATE_TEST_S3_URL is not"
                );
                eprintln!("skipped: no S3 server (set TOLLGATE_TEST_S3_URL)");
                return None;
            };
            let bucket = format!("tollgate-{unique}");
            // moto creates a bucket on an unsigned PUT.
            let created = reqwest::Client::new()
                .put(format!("{url}/{bucket}"))
                .send()
                .await
                .expect("the S3 server answers");
            assert!(created.status().is_success(), "{}", created.status());
            let section = format!(
                "\n[storage]\nbackend = \"s3\"\n{settings}\n[storage.s3]\nendpoint = \"{url}\"\n\
                 bucket = \"{bucket}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\n\
                 secret_access_key = \"test\"\nprefix = \"gw\"\n"
            );
            Some((section, None))
        }
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(store::now_ms() as u64);
    h.finish()
}

/// Bytes that look like nothing in particular (deterministic per seed).
fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A form field: name and value.
type Field = (&'static str, &'static str);

/// Uploads `bytes` as `name` with `fields`; the status and envelope.
async fn upload(
    gw: &Gateway,
    key: &str,
    bytes: Vec<u8>,
    name: &str,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("image/png")
            .unwrap(),
    );
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let resp = gw
        .http
        .post(format!("{}/api/v1/user/files/upload", gw.url))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn manage(gw: &Gateway, key: &str, route: &str, body: Value) -> (u16, Value) {
    gw.post_json(&format!("/api/v1/user/files/{route}"), key, &body)
        .await
}

async fn get(
    gw: &Gateway,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = gw.http.get(format!("{}{path}", gw.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

/// Whether storage still has `id`'s bytes.
async fn stored(gw: &Gateway, id: &str) -> bool {
    match gw.app.files.storage.read(id, None).await {
        Ok(mut stream) => stream.next().await.is_some_and(|r| r.is_ok()),
        Err(_) => false,
    }
}

/// The files in a local folder (partial uploads included).
fn local_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                match e.path().is_dir() {
                    true => walk(&e.path(), out),
                    false => out.push(e.path()),
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

async fn every_route_works_for_the_owner_only(backend: Backend) {
    let Some((section, _)) = storage(backend, "").await else {
        return;
    };
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &section).await;
    let (alice_id, alice) = gw.user("alice", "default", "10").await;
    let (_, bob) = gw.user("bob", "default", "10").await;
    let bytes = bytes_of(5000, 7);
    let (status, uploaded) = upload(
        &gw,
        &alice,
        bytes.clone(),
        "cat.png",
        &[("purpose", "2"), ("tags", "pets"), ("tags", "cats")],
    )
    .await;
    assert_eq!(status, 200, "{uploaded}");
    assert_eq!(uploaded["statusCode"], 200);
    assert_eq!(uploaded["message"], "File Upload Success");
    let id = uploaded["data"]["fileUniqueID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 21);
    assert_eq!(uploaded["data"]["sha256"], sha(&bytes));
    assert_eq!(uploaded["data"]["size"], 5000);
    assert_eq!(uploaded["data"]["purpose"], "CHAT");
    assert_eq!(uploaded["data"]["tags"], json!(["pets", "cats"]));
    assert_eq!(uploaded["data"]["isPublic"], false);

    // The owner downloads it, whole or in part.
    let own = format!("/api/v1/user/files/download/{id}");
    let resp = get(&gw, &own, Some(&alice), &[]).await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", sha(&bytes)));
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline; filename=\"cat.png\""));
    assert_eq!(resp.bytes().await.unwrap(), bytes);
    let part = get(&gw, &own, Some(&alice), &[("range", "bytes=100-199")]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/5000");
    assert_eq!(part.bytes().await.unwrap(), bytes[100..200]);
    let tail = get(&gw, &own, Some(&alice), &[("range", "bytes=-10")]).await;
    assert_eq!(tail.bytes().await.unwrap(), bytes[4990..]);
    let unchanged = get(&gw, &own, Some(&alice), &[("if-none-match", &etag)]).await;
    assert_eq!(unchanged.status(), 304);
    let beyond = get(&gw, &own, Some(&alice), &[("range", "bytes=6000-")]).await;
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], "bytes */5000");

    // Nobody else sees it, anywhere.
    assert_eq!(get(&gw, &own, Some(&bob), &[]).await.status(), 404);
    assert_eq!(get(&gw, &own, None, &[]).await.status(), 401);
    let public = format!("/api/v1/user/files/public/{id}");
    assert_eq!(get(&gw, &public, None, &[]).await.status(), 404);
    assert_eq!(
        get(&gw, &format!("{public}/info"), None, &[])
            .await
            .status(),
        404
    );
    let (_, listed) = manage(&gw, &bob, "list", json!({})).await;
    assert_eq!(listed["data"]["total"], 0);
    let (_, info) = manage(&gw, &bob, "info", json!({"fileUniqueIds": [id]})).await;
    assert_eq!(info["data"], json!([]));
    let (status, _) = manage(
        &gw,
        &bob,
        "update",
        json!({"fileUniqueID": id, "is_public": true}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = manage(&gw, &bob, "delete", json!({"fileUniqueID": id})).await;
    assert_eq!(status, 404);

    // The owner lists, filters, reads and changes it.
    let (_, listed) = manage(
        &gw,
        &alice,
        "list",
        json!({"tags": ["cats"], "purpose": "CHAT"}),
    )
    .await;
    assert_eq!(listed["data"]["total"], 1, "{listed}");
    let (_, listed) = manage(&gw, &alice, "list", json!({"name_prefix": "dog"})).await;
    assert_eq!(listed["data"]["total"], 0);
    let (_, info) = manage(&gw, &alice, "info", json!({"fileUniqueIds": [id, "nope"]})).await;
    assert_eq!(info["data"][0]["fileUniqueID"], id.as_str());
    assert_eq!(info["data"].as_array().unwrap().len(), 1);
    let (status, updated) = manage(
        &gw,
        &alice,
        "update",
        json!({"fileUniqueID": id, "is_public": true, "filename": "renamed.png", "tags": ["c"]}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["filename"], "renamed.png");
    // Public now: anyone with the URL gets it, and what it is.
    let resp = get(&gw, &public, None, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), bytes);
    let info: Value = get(&gw, &format!("{public}/info"), None, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["data"]["filename"], "renamed.png");
    assert!(info["data"].get("tags").is_none(), "only what is public");
    // Deleted: its bytes are gone too.
    assert!(stored(&gw, &id).await);
    let (status, _) = manage(&gw, &alice, "delete", json!({"fileUniqueID": id})).await;
    assert_eq!(status, 200);
    assert_eq!(get(&gw, &public, None, &[]).await.status(), 404);
    assert_eq!(get(&gw, &own, Some(&alice), &[]).await.status(), 404);
    assert!(!stored(&gw, &id).await);
    assert_eq!(gw.app.store.file_rows(alice_id).await.unwrap(), 0);
    gw.stop().await;
}

async fn bad_uploads_are_refused_and_leave_nothing(backend: Backend) {
    let limits = "max_file_bytes = 1000\nmax_total_bytes = 1500\nmax_files = 2\n";
    let Some((section, dir)) = storage(backend, limits).await else {
        return;
    };
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &section).await;
    let (user_id, key) = gw.user("careless", "default", "10").await;
    let ok = [("purpose", "0")];
    // What is wrong, the upload's fields (of ten bytes, or `size`), the
    // status it gets.
    let cases: Vec<(&str, Vec<Field>, u16)> = vec![
        ("no purpose", vec![], 400),
        ("bad purpose", vec![("purpose", "9")], 400),
        (
            "traversal",
            vec![("purpose", "0"), ("filename", "../../etc/passwd")],
            400,
        ),
        (
            "bad date",
            vec![("purpose", "0"), ("expires_at", "next week")],
            400,
        ),
        (
            "past date",
            vec![
                ("purpose", "0"),
                ("expires_at", "2020-01-01T00:00:00+08:00"),
            ],
            400,
        ),
        (
            "bad flag",
            vec![("purpose", "0"), ("is_public", "maybe")],
            400,
        ),
        ("too large", vec![("purpose", "0"), ("size", "1001")], 413),
    ];
    for (what, fields, want) in cases {
        let size = fields
            .iter()
            .find(|f| f.0 == "size")
            .map_or(10, |f| f.1.parse().unwrap());
        let fields: Vec<Field> = fields.into_iter().filter(|f| f.0 != "size").collect();
        let (status, body) = upload(&gw, &key, bytes_of(size, 1), "a.png", &fields).await;
        assert_eq!(status, want, "{what}: {body}");
        assert_eq!(body["statusCode"], want, "{what}");
    }
    // No file part, and not multipart at all.
    let form = reqwest::multipart::Form::new().text("purpose", "0");
    let resp = gw
        .http
        .post(format!("{}/api/v1/user/files/upload", gw.url))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (status, _) = gw
        .post_json("/api/v1/user/files/upload", &key, &json!({"file": "x"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(gw.app.store.file_rows(user_id).await.unwrap(), 0);
    if let Some(dir) = &dir {
        assert_eq!(local_files(dir), Vec::<PathBuf>::new());
    }
    // The account's room: 1000 bytes fit, 600 more do not (1500 in all).
    let (status, body) = upload(&gw, &key, bytes_of(1000, 2), "a.png", &ok).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload(&gw, &key, bytes_of(600, 3), "b.png", &ok).await;
    assert_eq!(status, 413, "{body}");
    let (status, _) = upload(&gw, &key, bytes_of(400, 4), "c.png", &ok).await;
    assert_eq!(status, 200);
    // Two files is the most.
    let (status, body) = upload(&gw, &key, bytes_of(1, 5), "d.png", &ok).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(gw.app.store.file_usage(user_id).await.unwrap(), (1400, 2));
    assert_eq!(gw.app.store.file_rows(user_id).await.unwrap(), 2);
    if let Some(dir) = &dir {
        assert_eq!(local_files(dir).len(), 2, "{:?}", local_files(dir));
    }
    gw.stop().await;
}

async fn expired_files_go_and_the_sweeper_removes_them(backend: Backend) {
    let Some((section, dir)) = storage(backend, "").await else {
        return;
    };
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &section).await;
    let (user_id, key) = gw.user("brief", "default", "10").await;
    // Two seconds from now, written with an offset.
    let at = store::now_ms() + 2000;
    let expires = gateway::time::format_ms(at + 8 * 3_600_000).replace('Z', "+08:00");
    let (status, body) = upload(
        &gw,
        &key,
        bytes_of(100, 9),
        "brief.png",
        &[
            ("purpose", "LLM_TMP"),
            ("expires_at", &expires),
            ("is_public", "true"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["data"]["fileUniqueID"].as_str().unwrap().to_string();
    let public = format!("/api/v1/user/files/public/{id}");
    assert_eq!(get(&gw, &public, None, &[]).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(
        (at - store::now_ms() + 50).max(0) as u64,
    ))
    .await;
    assert_eq!(get(&gw, &public, None, &[]).await.status(), 404, "expired");
    assert!(stored(&gw, &id).await, "until the sweeper passes");
    gateway::files::housekeeping::sweep(&gw.app).await;
    assert!(!stored(&gw, &id).await);
    assert_eq!(gw.app.store.file_rows(user_id).await.unwrap(), 0);
    if let Some(dir) = &dir {
        assert!(local_files(dir).is_empty());
    }
    gw.stop().await;
}

async fn large_files_stream_through_in_parts(backend: Backend) {
    let Some((section, _)) = storage(backend, "").await else {
        return;
    };
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &section).await;
    let (_, key) = gw.user("big", "default", "10").await;
    // Past two 8 MiB parts on S3.
    let bytes = bytes_of(20 * 1024 * 1024 + 123, 11);
    let (status, body) = upload(&gw, &key, bytes.clone(), "big.bin", &[("purpose", "0")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["sha256"], sha(&bytes));
    let id = body["data"]["fileUniqueID"].as_str().unwrap();
    let own = format!("/api/v1/user/files/download/{id}");
    let whole = get(&gw, &own, Some(&key), &[]).await.bytes().await.unwrap();
    assert_eq!(sha(&whole), sha(&bytes));
    let boundary = 8 * 1024 * 1024;
    let range = format!("bytes={}-{}", boundary - 5, boundary + 4);
    let part = get(&gw, &own, Some(&key), &[("range", &range)]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.bytes().await.unwrap(),
        bytes[boundary - 5..boundary + 5]
    );
    gw.stop().await;
}

macro_rules! on_both_backends {
    ($($case:ident),*) => {
        mod local {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::Local).await
            })*
        }
        mod s3 {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Backend::S3).await
            })*
        }
    };
}

on_both_backends!(
    every_route_works_for_the_owner_only,
    bad_uploads_are_refused_and_leave_nothing,
    expired_files_go_and_the_sweeper_removes_them,
    large_files_stream_through_in_parts
);

#[tokio::test]
async fn a_referenced_file_reaches_the_upstream_inline_in_each_protocol() {
    let (section, _) = storage(Backend::Local, "").await.unwrap();
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &section).await;
    let (_, alice) = gw.user("alice", "default", "10").await;
    let (bob_id, bob) = gw.user("bob", "default", "10").await;
    let png = bytes_of(300, 5);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let (_, body) = upload(&gw, &alice, png, "cat.png", &[("purpose", "CHAT")]).await;
    let id = body["data"]["fileUniqueID"].as_str().unwrap().to_string();
    let reference = format!("tollgate-file://{id}");

    let chat = json!({"model": "gpt-test", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": reference}},
        {"type": "image_url", "image_url": {"url": "https://example.com/dog.png"}}]}]});
    let resp = gw.chat(&alice, chat.clone()).await;
    assert_eq!(resp.status(), 200);
    let sent = &mock.requests()[0].body["messages"][0]["content"];
    assert_eq!(
        sent[1]["image_url"]["url"],
        format!("data:image/png;base64,{b64}")
    );
    assert_eq!(sent[2]["image_url"]["url"], "https://example.com/dog.png");

    let messages = json!({"model": "claude-test", "max_tokens": 20, "messages": [{"role": "user",
        "content": [{"type": "image", "source": {"type": "url", "url": reference}},
                    {"type": "text", "text": "What is this?"}]}]});
    let resp = gw
        .http
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", &alice)
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = &mock.requests()[1].body["messages"][0]["content"][0];
    assert_eq!(
        sent["source"],
        json!({"type": "base64", "media_type": "image/png", "data": b64})
    );

    let responses = json!({"model": "gpt-native", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": reference}]}]});
    let (status, answer) = gw.post_json("/v1/responses", &alice, &responses).await;
    assert_eq!(status, 200, "{answer}");
    let sent = &mock.requests()[2].body["input"][0]["content"][0];
    assert_eq!(sent["image_url"], format!("data:image/png;base64,{b64}"));

    // Bob may not use Alice's private file: refused, nothing sent or charged.
    let before = gw.balance(bob_id).await;
    let resp = gw.chat(&bob, chat.clone()).await;
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not yours"));
    assert_eq!(mock.requests().len(), 3);
    assert_eq!(gw.balance(bob_id).await, before);
    // Public, by its URL, anyone's request may carry it.
    let (status, _) = manage(
        &gw,
        &alice,
        "update",
        json!({"fileUniqueID": id, "is_public": true}),
    )
    .await;
    assert_eq!(status, 200);
    let mut by_url = chat;
    by_url["messages"][0]["content"][1]["image_url"]["url"] = json!(gw.app.files.public_url(&id));
    assert_eq!(gw.chat(&bob, by_url).await.status(), 200);
    let sent = &mock.requests()[3].body["messages"][0]["content"];
    assert_eq!(
        sent[1]["image_url"]["url"],
        format!("data:image/png;base64,{b64}")
    );
    gw.stop().await;
}

#[tokio::test]
async fn priced_storage_charges_ended_days_once_and_keeps_deleted_files_until_then() {
    let (section, _) = storage(Backend::Local, "price_per_gb_day = \"0.5\"")
        .await
        .unwrap();
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", &section).await;
    let (user_id, key) = gw.user("payer", "default", "10").await;
    let (_, body) = upload(&gw, &key, bytes_of(1000, 1), "a.png", &[("purpose", "0")]).await;
    let id = body["data"]["fileUniqueID"].as_str().unwrap().to_string();
    let (status, _) = manage(&gw, &key, "delete", json!({"fileUniqueID": id})).await;
    assert_eq!(status, 200);
    // Deleted today: kept (as deleted) for today's charge.
    assert_eq!(gw.app.store.file_rows(user_id).await.unwrap(), 1);
    assert!(!stored(&gw, &id).await);
    gateway::files::housekeeping::sweep(&gw.app).await;
    gateway::files::housekeeping::sweep(&gw.app).await;
    // Priced from now on: no day before is charged (not even yesterday).
    let since: i64 = gw
        .app
        .store
        .get_setting("storage_priced_since")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(since <= store::now_ms());
    assert_eq!(gw.app.store.last_storage_day().await.unwrap(), None);
    assert!(gw
        .app
        .store
        .ledger(user_id, 10)
        .await
        .unwrap()
        .iter()
        .all(|e| e.kind != "storage"));
    // Today's charge (once it has ended) takes the deleted file into
    // account, then lets it go.
    let today = store::now_ms() / 86_400_000;
    let charged = gw
        .app
        .store
        .charge_storage_day(today, 500_000_000, "file storage", since)
        .await
        .unwrap();
    assert!(charged.is_some());
    assert_eq!(gw.app.store.file_rows(user_id).await.unwrap(), 0);
    gw.stop().await;
}
