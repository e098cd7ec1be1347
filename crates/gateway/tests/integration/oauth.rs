//! OAuth apps (issue 17) over HTTP, as a browser and a third-party app see
//! them: the consent page on the console session, codes bound to their
//! client, redirect URI and PKCE challenge, tokens in OhMyGPT's envelope,
//! charges exactly once within the limits the user approved.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::console::{browser, console_user, csrf_of, log_in};

/// Credits per USD in the test configuration (the default).
const CPU: i64 = 34_000;
const USD: i64 = 1_000_000_000;
const CALLBACK: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

const OAUTH_CONFIG: &str = r#"
[oauth]
platform_fee_percent = 10
"#;

struct Setup {
    gw: Gateway,
    _mock: Mock,
    owner_key: String,
    owner_id: i64,
    client_id: String,
    secret: String,
    payer_id: i64,
    /// The payer's browser, logged in.
    browser: reqwest::Client,
}

async fn setup_with(tail: &str) -> Setup {
    let mock = start_mock().await;
    let gw = start_gateway_with(&mock.url, None, "", tail).await;
    let (owner_id, owner_key) = gw.user("owner", "default", "0").await;
    let (payer_id, _) = console_user(&gw, "payer", "payer password 1").await;
    let (status, body) = omg(
        &gw,
        "/api/v1/user/oauth/apps/create",
        &owner_key,
        json!({
            "name": "Writer Bot",
            "homepage": "https://writer.example",
            "redirect_uris": [CALLBACK, "https://writer.example/cb"],
            "scopes": ["user_info", "balance", "charge", "api", "recharge"],
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let client_id = body["data"]["client_id"].as_str().unwrap().to_string();
    assert_eq!(client_id.len(), 24);
    assert!(client_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let secret = body["data"]["client_secret"].as_str().unwrap().to_string();
    let browser = browser();
    assert_eq!(
        log_in(&gw, &browser, "payer", "payer password 1")
            .await
            .status(),
        303
    );
    Setup {
        gw,
        _mock: mock,
        owner_key,
        owner_id,
        client_id,
        secret,
        payer_id,
        browser,
    }
}

async fn setup() -> Setup {
    setup_with(OAUTH_CONFIG).await
}

/// A POST with a bearer token and a JSON body; the status and the body.
async fn omg(gw: &Gateway, path: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = gw
        .http
        .post(format!("{}{path}", gw.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The consent page for `query` (after the authorize page's redirect).
async fn consent(s: &Setup, query: &[(&str, &str)]) -> reqwest::Response {
    let first = s
        .browser
        .get(format!("{}/next/v1/oauth", s.gw.url))
        .query(query)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 303);
    let location = first.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/console/oauth/authorize?"),
        "{location}"
    );
    s.browser
        .get(format!("{}{location}", s.gw.url))
        .send()
        .await
        .unwrap()
}

/// Approves (or denies) what the consent page shows, with `extra` form
/// fields (chosen limits); returns where the browser is sent.
async fn answer(s: &Setup, page: &str, decision: &str, extra: &[(&str, &str)]) -> String {
    let mut form: Vec<(String, String)> = hidden_fields(page);
    form.push(("decision".into(), decision.into()));
    for (k, v) in extra {
        form.push((k.to_string(), v.to_string()));
    }
    let resp = s
        .browser
        .post(format!("{}/console/oauth/authorize", s.gw.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// The hidden inputs of the consent form (the CSRF token and the request).
fn hidden_fields(page: &str) -> Vec<(String, String)> {
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| {
            let name = rest.split('"').next().unwrap().to_string();
            let value = rest
                .split("value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (name, unescape(value))
        })
        .filter(|(name, _)| name != "next")
        .collect()
}

/// Undoes the template's HTML escaping (named and `&#NN;` entities).
fn unescape(html: &str) -> String {
    let mut text = html.to_string();
    for code in 32u8..127 {
        text = text.replace(&format!("&#{code};"), &(code as char).to_string());
    }
    text.replace("&#43;", "+")
        .replace("&#61;", "=")
        .replace("&#x2f;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let parsed = url::Url::parse(url).unwrap();
    parsed
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

/// Authorizes with `query` and approves: the code.
async fn code_for(s: &Setup, query: &[(&str, &str)], extra: &[(&str, &str)]) -> String {
    let page = consent(s, query).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let location = answer(s, &page, "approve", extra).await;
    query_value(&location, "code").expect("a code")
}

async fn issue(s: &Setup, form: &[(&str, &str)]) -> (u16, Value) {
    let resp =
        s.gw.http
            .post(format!("{}/api/v1/user/oauth/issue-token", s.gw.url))
            .form(form)
            .send()
            .await
            .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn token_for(s: &Setup, scope: &str, extra: &[(&str, &str)]) -> String {
    let code = code_for(
        s,
        &[
            ("response_type", "code"),
            ("client_id", &s.client_id),
            ("redirect_uri", CALLBACK),
            ("scope", scope),
            ("state", "xyz"),
        ],
        extra,
    )
    .await;
    let (status, body) = issue(
        s,
        &[
            ("client_id", &s.client_id),
            ("client_secret", &s.secret),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["token"].as_str().unwrap().to_string()
}

async fn charge(s: &Setup, token: &str, credits: &str, key: &str) -> (u16, Value) {
    omg(
        &s.gw,
        "/api/v1/user/oauth/app/charge-user-fees",
        token,
        json!({"amount": credits, "idempotency_key": key, "description": "one essay"}),
    )
    .await
}

async fn paid_balance(gw: &Gateway, id: i64) -> i64 {
    gw.app.store.get_user(id).await.unwrap().balance
}

#[tokio::test]
async fn the_whole_flow_signs_in_charges_once_and_credits_the_owner_less_the_fee() {
    let s = setup().await;
    s.gw.app
        .store
        .set_console_access(s.payer_id, Some("payer@example.com"), false, false)
        .await
        .unwrap();
    let before = paid_balance(&s.gw, s.payer_id).await;
    assert_eq!(before, 10 * USD);

    let page = consent(
        &s,
        &[
            ("response_type", "code"),
            ("client_id", &s.client_id),
            ("redirect_uri", CALLBACK),
            ("scope", "user_info balance charge"),
            ("state", "st&te 1"),
            ("charge_limit", "68000"),
            ("daily_limit", "102000"),
        ],
    )
    .await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let page = page.text().await.unwrap();
    assert!(page.contains("Writer Bot") && page.contains("data-scope=\"charge\""));
    assert!(page.contains("value=\"68000\""), "the asked limit is shown");
    let location = answer(&s, &page, "approve", &[("choose_daily_limit", "85000")]).await;
    assert!(location.starts_with(CALLBACK), "{location}");
    assert_eq!(query_value(&location, "state").unwrap(), "st&te 1");
    let code = query_value(&location, "code").unwrap();

    let (status, body) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("client_secret", &s.secret),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["message"], "Issue OAuth Token success");
    assert_eq!(body["data"]["user_id"], s.payer_id.to_string());
    assert_eq!(body["data"]["client_id"], s.client_id);
    let token = body["data"]["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("omg-oat-v1-"));
    // Stored hashed only.
    assert!(s
        .gw
        .app
        .store
        .grant_by_token(&token)
        .await
        .unwrap()
        .is_none());

    let (status, info) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/query-user-basic-info",
        &token,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["data"]["userId"], s.payer_id.to_string());
    assert_eq!(info["data"]["userEmail"], "payer@example.com");

    let (status, balance) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/query-user-balance",
        &token,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{balance}");
    assert_eq!(balance["data"]["balance"], "340000");

    // 34,000 credits = 1 USD; the owner gets 90 %.
    let (status, first) = charge(&s, &token, "34000", "essay-1").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"]["replayed"], false);
    assert_eq!(first["data"]["platform_fee"], "3400");
    let (status, again) = charge(&s, &token, "34000", "essay-1").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["data"]["replayed"], true);
    assert_eq!(again["data"]["charge_id"], first["data"]["charge_id"]);
    assert_eq!(paid_balance(&s.gw, s.payer_id).await, 9 * USD);
    assert_eq!(paid_balance(&s.gw, s.owner_id).await, USD * 9 / 10);

    // The same key for another amount is refused, nothing charged.
    let (status, body) = charge(&s, &token, "100", "essay-1").await;
    assert_eq!(status, 409, "{body}");
    // Beyond the per-charge limit the user approved (2 USD).
    let (status, body) = charge(&s, &token, "68001", "essay-2").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errorType"], "oauth_limit_exceeded_error");
    // The user lowered the daily limit to 2.5 USD: 1 spent, 1.5 left.
    let (status, body) = charge(&s, &token, "51001", "essay-3").await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = charge(&s, &token, "51000", "essay-3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(paid_balance(&s.gw, s.payer_id).await, 7_500_000_000);

    // Both ledgers say what happened, naming the app.
    let payer_ledger = s.gw.app.store.ledger(s.payer_id, 10).await.unwrap();
    let charges: Vec<_> = payer_ledger
        .iter()
        .filter(|e| e.kind == "app_charge")
        .collect();
    assert_eq!(charges.len(), 2);
    assert!(charges[0].reason.contains("Writer Bot") && charges[0].reason.contains("one essay"));
    let owner_ledger = s.gw.app.store.ledger(s.owner_id, 10).await.unwrap();
    assert_eq!(
        owner_ledger
            .iter()
            .filter(|e| e.kind == "app_earning")
            .map(|e| e.amount)
            .sum::<i64>(),
        (USD + 1_500_000_000) * 9 / 10
    );
    let (status, earnings) = omg(
        &s.gw,
        "/api/v1/user/oauth/apps/earnings",
        &s.owner_key,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{earnings}");
    assert_eq!(earnings["data"][0]["charges"], 2);
    assert_eq!(earnings["data"][0]["earned"], "76500");

    // The console shows the connection and what it charged; revoking it
    // ends the token at once, in OhMyGPT's shape.
    let apps = s
        .browser
        .get(format!("{}/console/apps", s.gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        apps.contains("Writer Bot") && apps.contains("85000 (") && apps.contains("one essay"),
        "{apps}"
    );
    let grant = s.gw.app.store.connections(s.payer_id).await.unwrap()[0]
        .grant
        .id
        .clone();
    let resp = s
        .browser
        .post(format!(
            "{}/console/apps/connections/{grant}/revoke",
            s.gw.url
        ))
        .form(&[("csrf", csrf_of(&apps))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let (status, body) = charge(&s, &token, "1", "essay-4").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["statusCode"], 401);
    assert_eq!(body["errorType"], "oauth_invalid_token_error");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(paid_balance(&s.gw, s.payer_id).await, 7_500_000_000);
}

#[tokio::test]
async fn a_visitor_logs_in_first_and_comes_back_to_the_consent_page() {
    let s = setup().await;
    let visitor = browser();
    let first = visitor
        .get(format!("{}/oauth/authorize", s.gw.url))
        .query(&[("client_id", s.client_id.as_str()), ("state", "s1")])
        .send()
        .await
        .unwrap();
    let consent_path = first.headers()["location"].to_str().unwrap().to_string();
    let resp = visitor
        .get(format!("{}{consent_path}", s.gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let login = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(login.starts_with("/console/login?next="), "{login}");
    let page = visitor
        .get(format!("{}{login}", s.gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let next: String = hidden_fields(&page.replace("name=\"next\"", "name=\"n3xt\""))
        .into_iter()
        .find(|(k, _)| k == "n3xt")
        .map(|(_, v)| v)
        .unwrap();
    assert_eq!(next, consent_path);
    let resp = visitor
        .post(format!("{}/console/login", s.gw.url))
        .form(&[
            ("login", "payer"),
            ("password", "payer password 1"),
            ("csrf", &csrf_of(&page)),
            ("next", &next),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"].to_str().unwrap(), consent_path);
    // Elsewhere than a console page, the login goes home.
    let page = visitor
        .get(format!(
            "{}/console/login?next=https://evil.example/",
            s.gw.url
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("evil.example"));
}

#[tokio::test]
async fn refusals_show_on_the_page_and_never_reach_a_redirect_uri() {
    let s = setup().await;
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut q: Vec<(&str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", s.client_id.clone()),
            ("redirect_uri", CALLBACK.into()),
            ("scope", "user_info".into()),
            ("state", "s".into()),
        ];
        for (k, v) in extra {
            q.retain(|(name, _)| name != k);
            q.push((k, v.to_string()));
        }
        q
    };
    for (extra, needle) in [
        (
            vec![("redirect_uri", "http://127.0.0.1:9/callback/evil")],
            "redirect_uri",
        ),
        (
            vec![("redirect_uri", "https://writer.example.evil.example/cb")],
            "redirect_uri",
        ),
        (
            vec![("scope", "user_info management_key")],
            "management_key",
        ),
        (vec![("scope", "user_info admin")], "admin"),
        (
            vec![
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "plain"),
            ],
            "S256",
        ),
        (vec![("client_id", "0123456789abcdef01234567")], "client_id"),
        (vec![("response_type", "token")], "response_type"),
    ] {
        let query = base(&extra);
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = consent(&s, &query).await;
        assert_eq!(page.status(), 400, "{extra:?}");
        let text = page.text().await.unwrap();
        assert!(
            text.contains("id=\"error\"") && text.contains(needle),
            "{extra:?}: {text}"
        );
        assert!(!text.contains("id=\"approve\""));
    }
    // A forged answer (a scope the app never registered) is checked again.
    let page = consent(
        &s,
        &base(&[])
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await
    .text()
    .await
    .unwrap();
    let mut form = hidden_fields(&page);
    for (k, v) in form.iter_mut() {
        if k == "scope" {
            *v = "user_info management_key".into();
        }
    }
    form.push(("decision".into(), "approve".into()));
    let resp = s
        .browser
        .post(format!("{}/console/oauth/authorize", s.gw.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Without the session's CSRF token nothing is approved.
    let resp = s
        .browser
        .post(format!("{}/console/oauth/authorize", s.gw.url))
        .form(&[("client_id", s.client_id.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn deny_tells_the_app_and_leaves_nothing_behind() {
    let s = setup().await;
    let page = consent(
        &s,
        &[
            ("client_id", &s.client_id),
            ("redirect_uri", CALLBACK),
            ("scope", "charge"),
            ("state", "abc"),
        ],
    )
    .await
    .text()
    .await
    .unwrap();
    let location = answer(&s, &page, "deny", &[]).await;
    assert_eq!(
        location,
        format!("{CALLBACK}?error=access_denied&state=abc")
    );
    assert!(s
        .gw
        .app
        .store
        .connections(s.payer_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.gw.app.store.open_codes(s.payer_id).await.unwrap(), 0);
}

#[tokio::test]
async fn codes_are_single_use_bound_to_their_client_and_verifier() {
    let s = setup().await;
    // Another app of the same owner.
    let (_, other) = omg(
        &s.gw,
        "/api/v1/user/oauth/apps/create",
        &s.owner_key,
        json!({"name": "Other", "redirect_uris": [CALLBACK], "scopes": ["user_info"]}),
    )
    .await;
    let other_id = other["data"]["client_id"].as_str().unwrap().to_string();
    let other_secret = other["data"]["client_secret"].as_str().unwrap().to_string();

    let challenge = challenge_of(VERIFIER);
    let code = code_for(
        &s,
        &[
            ("client_id", &s.client_id),
            ("redirect_uri", CALLBACK),
            ("scope", "user_info"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        &[],
    )
    .await;
    // For another client, even with that client's own secret.
    let (status, body) = issue(
        &s,
        &[
            ("client_id", &other_id),
            ("client_secret", &other_secret),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorType"], "invalid_grant");
    // Without the verifier, or with the wrong one.
    let (status, body) = issue(&s, &[("client_id", &s.client_id), ("code", &code)]).await;
    assert_eq!(status, 400, "{body}");
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
    let (status, body) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("code", &code),
            ("code_verifier", wrong),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errorType"], "invalid_grant");
    // A wrong secret fails even with the right verifier.
    let (status, _) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("client_secret", "nope"),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 401);
    // The right verifier (a public client: no secret).
    let (status, body) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_string();
    let info = |token: String| {
        let gw = &s.gw;
        async move {
            omg(
                gw,
                "/api/v1/user/oauth/app/query-user-basic-info",
                &token,
                json!({}),
            )
            .await
            .0
        }
    };
    assert_eq!(info(token.clone()).await, 200);
    // Used again: refused, and the token it gave is revoked (it leaked).
    let (status, body) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("code", &code),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(info(token).await, 401);
    // A code without PKCE needs the secret.
    let code = code_for(
        &s,
        &[("client_id", &s.client_id), ("redirect_uri", CALLBACK)],
        &[],
    )
    .await;
    let (status, _) = issue(&s, &[("client_id", &s.client_id), ("code", &code)]).await;
    assert_eq!(status, 401);
    let (status, _) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("client_secret", &s.secret),
            ("code", &code),
            ("redirect_uri", "https://writer.example/cb"),
        ],
    )
    .await;
    assert_eq!(status, 400, "bound to its redirect URI");
    // Scopes: the token has what was approved, not more.
    let token = token_for(&s, "user_info", &[]).await;
    let (status, body) = charge(&s, &token, "1", "k").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errorType"], "oauth_scope_error");
}

#[tokio::test]
async fn codes_expire() {
    let s = setup_with("[oauth]\ncode_ttl_secs = 1\n").await;
    let code = code_for(
        &s,
        &[("client_id", &s.client_id), ("redirect_uri", CALLBACK)],
        &[],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, body) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("client_secret", &s.secret),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn concurrent_charges_take_only_what_the_daily_limit_allows() {
    let s = setup().await;
    // 1 USD a charge at most, 5 USD a day.
    let token = token_for(
        &s,
        "charge",
        &[
            ("choose_charge_limit", "34000"),
            ("choose_daily_limit", "170000"),
        ],
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let gw_url = s.gw.url.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(format!("{gw_url}/api/v1/user/oauth/app/charge-user-fees"))
                .bearer_auth(&token)
                .form(&[
                    ("amount", "34000"),
                    ("idempotency_key", &format!("burst-{i}")),
                    ("description", "a burst"),
                ])
                .send()
                .await
                .unwrap();
            (i, resp.status().as_u16())
        }));
    }
    let mut ok = 0;
    let mut charged_key = None;
    for t in tasks {
        let (i, status) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                charged_key = Some(format!("burst-{i}"));
            }
            // Past the daily limit; or, while ten charges are in flight
            // at once, past what the balance can hold for them all.
            403 | 402 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(paid_balance(&s.gw, s.payer_id).await, 5 * USD);
    assert_eq!(paid_balance(&s.gw, s.owner_id).await, 5 * USD * 9 / 10);
    // Beyond the balance (4 USD after an operator's debit) but within the
    // limits (5 USD a charge by default): 402 in OhMyGPT's shape.
    s.gw.app
        .store
        .change_balance(&store::BalanceChange {
            user_id: s.payer_id,
            amount: -USD,
            free: false,
            reason: "test".into(),
        })
        .await
        .unwrap();
    let big = token_for(&s, "charge", &[]).await;
    let (status, body) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/charge-user-fees",
        &big,
        json!({"amount": 5 * CPU, "idempotency_key": "too-much", "description": "x"}),
    )
    .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["errorType"], "insufficient_balance_error");
    assert_eq!(paid_balance(&s.gw, s.payer_id).await, 4 * USD);
    // The new consent replaced the first grant: its token is dead, and the
    // day's total is the app's, not the grant's (5 USD charged, 20 a day
    // by default: 15 left, not 20).
    let (status, _) = charge(&s, &token, "1", "old-token").await;
    assert_eq!(status, 401);
    assert_eq!(
        s.gw.app.store.connections(s.payer_id).await.unwrap().len(),
        1
    );
    // With nothing left, a retry of a charge made answers with it (not
    // with "insufficient"), under the new token too.
    s.gw.app
        .store
        .change_balance(&store::BalanceChange {
            user_id: s.payer_id,
            amount: -4 * USD,
            free: false,
            reason: "test".into(),
        })
        .await
        .unwrap();
    let (status, body) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/charge-user-fees",
        &big,
        json!({"amount": CPU, "idempotency_key": charged_key.unwrap(), "description": "a burst"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["replayed"], true);
}

#[tokio::test]
async fn the_token_calls_the_model_apis_billed_to_the_user_within_its_limit() {
    let s = setup().await;
    // 0.01 USD of API spending: a request whose worst case is more (1,000
    // output tokens at 15 USD per million) is refused; a cheap one passes.
    let token = token_for(&s, "api", &[("choose_spend_limit", "340")]).await;
    let refused = s.gw.chat(&token, chat_body("gpt-test", false)).await;
    assert_eq!(refused.status(), 429);
    let before = s.gw.balance(s.payer_id).await;
    let resp = s.gw.chat(&token, chat_body("cheap", false)).await;
    assert_eq!(resp.status(), 200);
    let records = s.gw.wait_for_usage(s.payer_id, 1).await;
    s.gw.assert_charged_exactly(s.payer_id, before, &records)
        .await;
    // The key is the grant's: not among the user's own keys.
    let own = s.gw.app.store.list_keys(s.payer_id).await.unwrap();
    assert!(own.iter().all(|k| k.grant_id.is_none()));
    assert!(!own.iter().any(|k| k.id == records[0].key_id));
    // Suspending the app stops the token, restoring brings it back.
    let (status, _) =
        s.gw.admin(
            reqwest::Method::POST,
            &format!("/admin/oauth/apps/{}/suspend", s.client_id),
            Some(json!({"suspended": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.gw.chat(&token, chat_body("cheap", false)).await.status(),
        403
    );
    // Revoked by the app itself: the API refuses it as an unknown key.
    s.gw.admin(
        reqwest::Method::POST,
        &format!("/admin/oauth/apps/{}/suspend", s.client_id),
        Some(json!({"suspended": false})),
    )
    .await;
    let (status, body) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/revoke-token",
        &token,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        s.gw.chat(&token, chat_body("cheap", false)).await.status(),
        401
    );
}

#[tokio::test]
async fn the_keyless_pkce_flow_gives_a_labelled_key_with_the_approved_limit() {
    let s = setup().await;
    let challenge = challenge_of(VERIFIER);
    let code = code_for(
        &s,
        &[
            ("client_id", &s.client_id),
            ("redirect_uri", CALLBACK),
            ("scope", "api"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
        &[("choose_spend_limit", "68000")],
    )
    .await;
    let resp = s
        .gw
        .http
        .post(format!("{}/api/v1/auth/keys", s.gw.url))
        .json(&json!({"code": code, "code_verifier": VERIFIER, "code_challenge_method": "S256"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let key = body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk-"));
    let keys = s.gw.app.store.list_keys(s.payer_id).await.unwrap();
    let made = keys
        .iter()
        .find(|k| k.remark == "Writer Bot (OAuth app)")
        .unwrap();
    assert_eq!(made.max_fee, 2 * USD);
    assert_eq!(
        s.gw.chat(&key, chat_body("cheap", false)).await.status(),
        200
    );
    // Once only.
    let resp =
        s.gw.http
            .post(format!("{}/api/v1/auth/keys", s.gw.url))
            .json(&json!({"code": code, "code_verifier": VERIFIER}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 400);
}

#[tokio::test]
async fn the_management_key_needs_its_own_scope_and_rotates() {
    let s = setup().await;
    s.gw.app
        .store
        .update_app(
            &s.client_id,
            s.owner_id,
            &store::AppUpdate {
                scopes: Some(vec!["user_info".into(), "management_key".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let plain = token_for(&s, "user_info", &[]).await;
    let (status, _) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/query-management-key",
        &plain,
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let token = token_for(&s, "management_key", &[]).await;
    let (status, read) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/query-management-key",
        &token,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    let old_id = read["data"]["id"].as_str().unwrap().to_string();
    let (status, rotated) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/rotate-management-key",
        &token,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["data"]["key"].as_str().unwrap().to_string();
    assert_ne!(rotated["data"]["id"], old_id);
    // The new key manages the user's keys.
    let (status, body) = omg(
        &s.gw,
        "/api/v1/user/admin/get-api-tokens",
        &new_key,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(s.gw.app.store.get_key(&old_id).await.is_err());
}

#[tokio::test]
async fn apps_are_the_owners_to_manage_and_the_operators_to_suspend() {
    let s = setup().await;
    // Not another user's app.
    let (_, stranger_key) = s.gw.user("stranger", "default", "0").await;
    let (status, _) = omg(
        &s.gw,
        "/api/v1/user/oauth/apps/rotate-secret",
        &stranger_key,
        json!({"client_id": s.client_id}),
    )
    .await;
    assert_eq!(status, 404);
    // Bad redirect URIs never register.
    let (status, body) = omg(
        &s.gw,
        "/api/v1/user/oauth/apps/create",
        &s.owner_key,
        json!({"name": "X", "redirect_uris": ["http://evil.example/cb"], "scopes": ["user_info"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A rotated secret replaces the old one at once.
    let (status, body) = omg(
        &s.gw,
        "/api/v1/user/oauth/apps/rotate-secret",
        &s.owner_key,
        json!({"client_id": s.client_id}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let code = code_for(
        &s,
        &[("client_id", &s.client_id), ("redirect_uri", CALLBACK)],
        &[],
    )
    .await;
    let (status, _) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("client_secret", &s.secret),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 401, "the old secret is refused");
    let new_secret = body["data"]["client_secret"].as_str().unwrap();
    let (status, _) = issue(
        &s,
        &[
            ("client_id", &s.client_id),
            ("client_secret", new_secret),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // The operator lists and suspends; a suspended app's page refuses.
    let (status, list) =
        s.gw.admin(reqwest::Method::GET, "/admin/oauth/apps", None)
            .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    s.gw.admin(
        reqwest::Method::POST,
        &format!("/admin/oauth/apps/{}/suspend", s.client_id),
        Some(json!({"suspended": true})),
    )
    .await;
    let page = consent(&s, &[("client_id", &s.client_id)]).await;
    assert_eq!(page.status(), 403);
}

#[tokio::test]
async fn an_app_opens_a_recharge_for_the_user_to_pay() {
    use crate::payments::{payments_config, STRIPE_KEY, WEBHOOK_SECRET};
    let stripe = fake_stripe::start(fake_stripe::Options {
        secret_key: STRIPE_KEY.into(),
        webhook_url: None,
        webhook_secret: WEBHOOK_SECRET.into(),
    })
    .await
    .unwrap();
    let s = setup_with(&format!("{OAUTH_CONFIG}\n{}", payments_config(&stripe.url))).await;
    let plain = token_for(&s, "user_info", &[]).await;
    let (status, _) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/create-stripe-checkout-order",
        &plain,
        json!({"amount": "20"}),
    )
    .await;
    assert_eq!(status, 403, "the recharge scope is needed");
    let token = token_for(&s, "recharge", &[]).await;
    for (path, method) in [
        ("create-stripe-checkout-order", "checkout"),
        ("create-stripe-invoice-order", "invoice"),
    ] {
        let (status, body) = omg(
            &s.gw,
            &format!("/api/v1/user/oauth/app/{path}"),
            &token,
            json!({"amount": "20"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["url"].as_str().unwrap().starts_with("http"));
        let order =
            s.gw.app
                .store
                .get_order(body["data"]["id"].as_i64().unwrap())
                .await
                .unwrap();
        assert_eq!(order.user_id, s.payer_id, "the order is the user's");
        assert_eq!(order.method, method);
    }
    let (status, body) = omg(
        &s.gw,
        "/api/v1/user/oauth/app/create-stripe-checkout-order",
        &token,
        json!({"amount": "1"}),
    )
    .await;
    assert_eq!(status, 400, "below the minimum: {body}");
}

#[tokio::test]
async fn an_app_without_a_callback_shows_the_code_and_templates_shape_the_callback() {
    let s = setup().await;
    let (_, made) = omg(
        &s.gw,
        "/api/v1/user/oauth/apps/create",
        &s.owner_key,
        json!({"name": "CLI tool", "scopes": ["user_info"]}),
    )
    .await;
    let cli = made["data"]["client_id"].as_str().unwrap().to_string();
    let page = consent(&s, &[("client_id", &cli), ("state", "q")])
        .await
        .text()
        .await
        .unwrap();
    let location = answer(&s, &page, "approve", &[]).await;
    assert!(
        location.starts_with("/next/v1/oauth/succeed?code="),
        "{location}"
    );
    let shown = s
        .browser
        .get(format!("{}{location}", s.gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = query_value(&format!("http://x{location}"), "code").unwrap();
    assert!(shown.contains(&format!("<code id=\"code\">{code}</code>")));

    // OhMyGPT's redirect_template: base64 of what follows the redirect URI.
    let template = base64::engine::general_purpose::STANDARD.encode("#/login?c={code}&s={state}");
    let page = consent(
        &s,
        &[
            ("client_id", &s.client_id),
            ("redirect_uri", CALLBACK),
            ("state", "st"),
            ("redirect_template", &template),
        ],
    )
    .await
    .text()
    .await
    .unwrap();
    let location = answer(&s, &page, "approve", &[]).await;
    assert!(
        location.starts_with(&format!("{CALLBACK}#/login?c=")) && location.ends_with("&s=st"),
        "{location}"
    );
}

#[tokio::test]
async fn a_new_consent_does_not_reset_the_days_limit_and_tokens_stay_out_of_user_data() {
    let s = setup().await;
    let first = token_for(&s, "charge api", &[("choose_daily_limit", "68000")]).await;
    let (status, body) = charge(&s, &first, "68000", "a").await;
    assert_eq!(status, 200, "{body}");
    let second = token_for(&s, "charge", &[("choose_daily_limit", "68000")]).await;
    let (status, body) = charge(&s, &second, "1", "b").await;
    assert_eq!(status, 403, "the day's 2 USD are spent: {body}");
    // The first token (and its API key) went with the new consent.
    assert_eq!(
        s.gw.chat(&first, chat_body("cheap", false)).await.status(),
        401
    );
    // A token with the api scope reaches the models, never the user's data.
    let token = token_for(&s, "api", &[]).await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/usage"),
        (reqwest::Method::POST, "/v1/conversations"),
        (reqwest::Method::GET, "/v1/chat/completions"),
        (reqwest::Method::POST, "/api/v1/user/admin/balance"),
        (reqwest::Method::GET, "/api/v1/user/files/list"),
    ] {
        let resp =
            s.gw.http
                .request(method.clone(), format!("{}{path}", s.gw.url))
                .bearer_auth(&token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
    }
    assert_eq!(
        s.gw.chat(&token, chat_body("cheap", false)).await.status(),
        200
    );
}
