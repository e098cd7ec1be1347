//! The web console's logins (issue 15, in progress): a session only with
//! the right password, a CSRF token on every state-changing form, logins
//! throttled, the dashboard showing the user's own figures.

use crate::common::*;

pub(crate) async fn console_user(gw: &Gateway, name: &str, password: &str) -> (i64, String) {
    let (id, key) = gw.user(name, "default", "10").await;
    let hash = gateway::console::hash_password(password.to_string())
        .await
        .unwrap();
    gw.app
        .store
        .set_password(id, Some(&hash), None)
        .await
        .unwrap();
    (id, key)
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The CSRF token a page's form carries.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

pub(crate) async fn log_in(
    gw: &Gateway,
    client: &reqwest::Client,
    login: &str,
    password: &str,
) -> reqwest::Response {
    let page = client
        .get(format!("{}/console/login", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .post(format!("{}/console/login", gw.url))
        .form(&[
            ("login", login),
            ("password", password),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_session_comes_only_with_the_right_password_and_ends_with_a_csrf_checked_logout() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    console_user(&gw, "alice", "correct horse battery").await;
    let client = browser();
    let resp = client
        .get(format!("{}/console/", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/console/login");

    let wrong = log_in(&gw, &client, "alice", "wrong password").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("Wrong user name or password."));
    // A form not from our login page is refused.
    let forged = client
        .post(format!("{}/console/login", gw.url))
        .form(&[
            ("login", "alice"),
            ("password", "correct horse battery"),
            ("csrf", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let ok = log_in(&gw, &client, "alice", "correct horse battery").await;
    assert_eq!(ok.status(), 303);
    let set = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let page = client
        .get(format!("{}/console/", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("alice") && html.contains("340000 credits"),
        "10 USD in credits: {html}"
    );
    // In Chinese when asked.
    let zh = client
        .get(format!("{}/console/?lang=zh", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(zh.contains("余额"));

    let no_csrf = client
        .post(format!("{}/console/logout", gw.url))
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let out = client
        .post(format!("{}/console/logout", gw.url))
        .form(&[("csrf", csrf_of(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let after = client
        .get(format!("{}/console/", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303, "logged out");
    gw.stop().await;
}

#[tokio::test]
async fn five_failed_logins_lock_the_account_even_for_the_right_password() {
    let mock = start_mock().await;
    // Behind one proxy: the address is the last of X-Forwarded-For.
    let gw = start_gateway_with(&mock.url, None, "", "[console]\nforwarded_hops = 1\n").await;
    console_user(&gw, "bob", "the right password").await;
    let client = browser();
    for _ in 0..5 {
        assert_eq!(log_in(&gw, &client, "bob", "guess").await.status(), 401);
    }
    let locked = log_in(&gw, &client, "bob", "the right password").await;
    assert_eq!(locked.status(), 429);
    assert!(locked
        .text()
        .await
        .unwrap()
        .contains("Too many failed attempts"));
    // The address is locked too, for any account; another address is not,
    // and an unknown account there is told the same as a wrong password.
    let from = |address: &'static str, login: &'static str| {
        let client = browser();
        let gw = &gw;
        async move {
            let page = client
                .get(format!("{}/console/login", gw.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            client
                .post(format!("{}/console/login", gw.url))
                .header("x-forwarded-for", format!("6.6.6.6, {address}"))
                .form(&[
                    ("login", login),
                    ("password", "whatever"),
                    ("csrf", &csrf_of(&page)),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        from("127.0.0.1", "nobody").await,
        429,
        "the address is locked"
    );
    assert_eq!(from("10.0.0.2", "nobody").await, 401);
    gw.stop().await;
}

#[tokio::test]
async fn keys_are_made_shown_once_disabled_and_deleted_by_their_owner_only() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (carol, _) = console_user(&gw, "carol", "carol's password").await;
    let (dave, dave_key) = console_user(&gw, "dave", "dave's password").await;
    let dave_key_id = gw.app.store.list_keys(dave).await.unwrap()[0].id.clone();
    let client = browser();
    assert_eq!(
        log_in(&gw, &client, "carol", "carol's password")
            .await
            .status(),
        303
    );
    let page = client
        .get(format!("{}/console/keys", gw.url))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    let csrf = csrf_of(&html);
    let made = client
        .post(format!("{}/console/keys", gw.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("remark", "from the console"),
            ("max_fee", "2.5"),
            ("models", "gpt-test"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    let html = made.text().await.unwrap();
    let at = html.find("<code id=\"secret\">").unwrap() + 18;
    let secret = html[at..].split('<').next().unwrap().to_string();
    assert!(secret.starts_with("sk-"), "{secret}");
    // It works, for its models only, and is never shown again.
    assert_eq!(
        gw.chat(&secret, chat_body("gpt-test", false))
            .await
            .status(),
        200
    );
    assert_eq!(
        gw.chat(&secret, chat_body("cheap", false)).await.status(),
        403
    );
    let listed = client
        .get(format!("{}/console/keys", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(&secret) && listed.contains("from the console"));
    let key_id = gw
        .app
        .store
        .list_keys(carol)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.remark == "from the console")
        .unwrap()
        .id;
    // Dave's key is not Carol's to touch; no change without the CSRF token.
    let post = |path: String, csrf: String| {
        let client = client.clone();
        let url = format!("{}{path}", gw.url);
        async move {
            client
                .post(url)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        post(format!("/console/keys/{dave_key_id}/delete"), csrf.clone()).await,
        404
    );
    assert_eq!(
        gw.chat(&dave_key, chat_body("gpt-test", false))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(format!("/console/keys/{key_id}/toggle"), "forged".into()).await,
        403
    );
    assert_eq!(
        post(format!("/console/keys/{key_id}/toggle"), csrf.clone()).await,
        303
    );
    assert_eq!(
        gw.chat(&secret, chat_body("gpt-test", false))
            .await
            .status(),
        403,
        "disabled"
    );
    assert_eq!(
        post(format!("/console/keys/{key_id}/delete"), csrf.clone()).await,
        303
    );
    assert_eq!(
        gw.chat(&secret, chat_body("gpt-test", false))
            .await
            .status(),
        401,
        "deleted"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_usage_page_and_its_csv_show_the_users_own_requests() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (erin, erin_key) = console_user(&gw, "erin", "erin's password").await;
    let (_, frank_key) = console_user(&gw, "frank", "frank's password").await;
    for _ in 0..3 {
        assert_eq!(
            gw.chat(&erin_key, chat_body("gpt-test", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        gw.chat(&frank_key, chat_body("cheap", false))
            .await
            .status(),
        200
    );
    let records = gw.wait_for_usage(erin, 3).await;
    let client = browser();
    assert_eq!(
        log_in(&gw, &client, "erin", "erin's password")
            .await
            .status(),
        303
    );
    let get = |path: &str| {
        let client = client.clone();
        let url = format!("{}{path}", gw.url);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let html = get("/console/usage").await;
    assert_eq!(html.matches("<td class=\"cost\">").count(), 3, "{html}");
    assert!(html.contains(&gateway::money::format_usd(records[0].cost)));
    assert!(!html.contains("cheap"), "frank's request is not erin's");
    let none = get("/console/usage?model=cheap").await;
    assert_eq!(none.matches("<td class=\"cost\">").count(), 0);
    let dashboard = get("/console/").await;
    assert!(
        dashboard.contains("{\"name\":\"gpt-test\",\"cost\":["),
        "the chart has erin's model"
    );
    assert!(!dashboard.contains("\"cheap\""), "and not frank's");
    let models = get("/console/models").await;
    assert!(
        models.contains(
            "<td>gpt-test</td><td>tokens</td><td>2.5 / 10 per 1M (in / out)</td><td>1.5</td>"
        ),
        "{models}"
    );
    let csv = get("/console/usage.csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("time,request_id,model"));
    assert!(lines[1..].iter().all(|l| l.contains(",gpt-test,")));
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_credits_a_user_and_nobody_else_reaches_the_admin_pages() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (root, _) = console_user(&gw, "root", "root's password").await;
    gw.app
        .store
        .set_console_access(root, None, true, false)
        .await
        .unwrap();
    let (gina, _) = console_user(&gw, "gina", "gina's password").await;
    let admin = browser();
    assert_eq!(
        log_in(&gw, &admin, "root", "root's password")
            .await
            .status(),
        303
    );
    let users = admin
        .get(format!("{}/console/admin/users?q=gin", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        users.contains(&format!("/console/admin/users/{gina}\""))
            && !users.contains(&format!("/console/admin/users/{root}\"")),
        "{users}"
    );
    let page = admin
        .get(format!("{}/console/admin/users/{gina}", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let before = gw.balance(gina).await.0;
    let no_reason = admin
        .post(format!("{}/console/admin/users/{gina}/balance", gw.url))
        .form(&[("csrf", csrf.as_str()), ("amount", "2.5"), ("reason", " ")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_reason.status(), 400);
    let credited = admin
        .post(format!("{}/console/admin/users/{gina}/balance", gw.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("amount", "2.5"),
            ("reason", "welcome bonus"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(credited.status(), 303);
    assert_eq!(gw.balance(gina).await.0, before + 2_500_000_000);
    let ledger = gw.app.store.ledger(gina, 1).await.unwrap();
    assert_eq!(ledger[0].reason, "welcome bonus");
    let status = admin
        .get(format!("{}/console/admin/status", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        status.contains("<td>gpt-test</td><td>tokens</td><td>mock (mock-model)</td>"),
        "{status}"
    );
    assert!(status.contains(env!("CARGO_PKG_VERSION")));
    let reloaded = admin
        .post(format!("{}/console/admin/reload", gw.url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        reloaded.status(),
        200,
        "says why when there is no file to read"
    );
    // Gina is no admin: the admin pages do not exist for her.
    let user = browser();
    assert_eq!(
        log_in(&gw, &user, "gina", "gina's password").await.status(),
        303
    );
    for path in [
        "/console/admin/users".to_string(),
        format!("/console/admin/users/{root}"),
        "/console/admin/status".to_string(),
    ] {
        let resp = user.get(format!("{}{path}", gw.url)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let dashboard = user
        .get(format!("{}/console/", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let own_csrf = csrf_of(&dashboard);
    let resp = user
        .post(format!("{}/console/admin/users/{gina}/balance", gw.url))
        .form(&[
            ("csrf", own_csrf.as_str()),
            ("amount", "100"),
            ("reason", "free money"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(gw.balance(gina).await.0, before + 2_500_000_000);
    assert!(!dashboard.contains("nav-users"));
    // The admin moves gina to another group and tier, and disables her:
    // her session ends at once.
    let account = |fields: Vec<(&'static str, String)>| {
        let admin = admin.clone();
        let url = format!("{}/console/admin/users/{gina}/account", gw.url);
        async move {
            admin
                .post(url)
                .form(&fields)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let base = |disabled: bool, password: &str| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("group", "vip".to_string()),
            ("tier", "pro".to_string()),
            ("expires", "2030-01-01".to_string()),
            ("password", password.to_string()),
        ];
        if disabled {
            f.push(("disabled", "true".to_string()));
        }
        f
    };
    assert_eq!(account(base(true, "")).await, 303);
    let moved = gw.app.store.get_user(gina).await.unwrap();
    assert_eq!(
        (moved.group_name.as_str(), moved.tier.as_str()),
        ("vip", "pro")
    );
    assert!(moved.membership_expires_at.is_some());
    let gone = user
        .get(format!("{}/console/", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 303, "disabled: her session is closed");
    assert_eq!(
        log_in(&gw, &user, "gina", "gina's password").await.status(),
        401
    );
    // Enabled again with a password the admin sets.
    assert_eq!(account(base(false, "a reset password")).await, 303);
    assert_eq!(
        log_in(&gw, &user, "gina", "a reset password")
            .await
            .status(),
        303
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_password_change_closes_the_other_sessions_and_sessions_close_one_by_one() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    console_user(&gw, "hal", "hal's first password").await;
    let (laptop, phone) = (browser(), browser());
    for client in [&laptop, &phone] {
        assert_eq!(
            log_in(&gw, client, "hal", "hal's first password")
                .await
                .status(),
            303
        );
    }
    let page = |client: &reqwest::Client, path: &str| {
        let client = client.clone();
        let url = format!("{}{path}", gw.url);
        async move { client.get(url).send().await.unwrap() }
    };
    let settings = page(&laptop, "/console/settings")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(settings.matches("<tr><td>").count(), 2, "two sessions");
    let csrf = csrf_of(&settings);
    let wrong = laptop
        .post(format!("{}/console/settings/password", gw.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("current", "a guess"),
            ("new", "hal's second password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let changed = laptop
        .post(format!("{}/console/settings/password", gw.url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("current", "hal's first password"),
            ("new", "hal's second password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert!(changed.text().await.unwrap().contains("Password changed"));
    assert_eq!(
        page(&laptop, "/console/").await.status(),
        200,
        "this one stays"
    );
    assert_eq!(
        page(&phone, "/console/").await.status(),
        303,
        "the other is closed"
    );
    assert_eq!(
        log_in(&gw, &phone, "hal", "hal's first password")
            .await
            .status(),
        401
    );
    assert_eq!(
        log_in(&gw, &phone, "hal", "hal's second password")
            .await
            .status(),
        303
    );
    // The laptop closes the phone's session.
    let settings = page(&laptop, "/console/settings")
        .await
        .text()
        .await
        .unwrap();
    let prefix = "/console/settings/sessions/";
    let at = settings.find(prefix).unwrap() + prefix.len();
    let other = settings[at..].split('/').next().unwrap().to_string();
    let closed = laptop
        .post(format!(
            "{}/console/settings/sessions/{other}/close",
            gw.url
        ))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 303);
    assert_eq!(page(&phone, "/console/").await.status(), 303);
    gw.stop().await;
}

async fn sign_up(
    gw: &Gateway,
    client: &reqwest::Client,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let page = client
        .get(format!("{}/console/signup", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf", &csrf));
    client
        .post(format!("{}/console/signup", gw.url))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn open_sign_up_makes_a_logged_in_account_with_its_free_balance() {
    let mock = start_mock().await;
    let console = "\n[console]\nsignup = \"open\"\nsignup_free_usd = \"1\"\n";
    let gw = start_gateway_with(&mock.url, None, "", console).await;
    let client = browser();
    let made = sign_up(
        &gw,
        &client,
        &[
            ("name", "ivy"),
            ("email", "ivy@example.com"),
            ("password", "ivy's password"),
        ],
    )
    .await;
    assert_eq!(made.status(), 303);
    assert_eq!(made.headers()["location"], "/console/keys");
    let keys = client
        .get(format!("{}/console/keys", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200, "logged in at once");
    let login = gw.app.store.login_of("ivy@example.com").await.unwrap();
    assert_eq!(login.user.free_balance, 1_000_000_000);
    assert!(!login.is_admin);
    let taken = sign_up(
        &gw,
        &browser(),
        &[("name", "ivy"), ("password", "another password")],
    )
    .await;
    assert_eq!(taken.status(), 400);
    let weak = sign_up(&gw, &browser(), &[("name", "jay"), ("password", "short")]).await;
    assert_eq!(weak.status(), 400);
    gw.stop().await;
}

#[tokio::test]
async fn sign_up_is_closed_by_default_and_by_invitation_needs_a_code() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let closed = browser()
        .get(format!("{}/console/signup", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 404);
    gw.stop().await;
    let console = "\n[console]\nsignup = \"invite\"\ninvite_codes = [\"friends-2026\"]\n";
    let gw = start_gateway_with(&mock.url, None, "", console).await;
    let wrong = sign_up(
        &gw,
        &browser(),
        &[
            ("name", "kim"),
            ("password", "kim's password"),
            ("invite", "nope"),
        ],
    )
    .await;
    assert_eq!(wrong.status(), 400);
    assert!(gw.app.store.login_of("kim").await.is_err());
    let right = sign_up(
        &gw,
        &browser(),
        &[
            ("name", "kim"),
            ("password", "kim's password"),
            ("invite", "friends-2026"),
        ],
    )
    .await;
    assert_eq!(right.status(), 303);
    gw.stop().await;
}

#[tokio::test]
async fn the_one_time_setup_link_makes_the_first_admin_and_then_is_gone() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let token = gateway::console::setup::token_at_start(&gw.app.store)
        .await
        .unwrap()
        .expect("no console admin yet");
    let client = browser();
    let bad = client
        .get(format!("{}/console/setup?token=guess", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 404);
    let page = client
        .get(format!("{}/console/setup?token={token}", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let made = client
        .post(format!("{}/console/setup", gw.url))
        .form(&[
            ("token", token.as_str()),
            ("name", "boss"),
            ("email", "boss@example.com"),
            ("password", "the boss's password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 303);
    assert_eq!(
        log_in(&gw, &client, "boss@example.com", "the boss's password")
            .await
            .status(),
        303
    );
    let admin = client
        .get(format!("{}/console/admin/users", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    let again = client
        .post(format!("{}/console/setup", gw.url))
        .form(&[
            ("token", token.as_str()),
            ("name", "boss2"),
            ("password", "another password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "used once");
    assert_eq!(
        gateway::console::setup::token_at_start(&gw.app.store)
            .await
            .unwrap(),
        None
    );
    gw.stop().await;
}

#[tokio::test]
async fn rules_are_listed_and_toggled_by_their_owner_only() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (lee, lee_key) = console_user(&gw, "lee", "lee's password").await;
    console_user(&gw, "max", "max's password").await;
    let (status, created) = gw
        .post_json(
            "/api/v1/user/override-rules/create",
            &lee_key,
            &serde_json::json!({"ruleName": "cool", "actions": [{"type": "override", "field": "temperature", "value": 0.2}]}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let rule_id = created["data"]["ruleId"].as_str().unwrap().to_string();
    let lee_browser = browser();
    assert_eq!(
        log_in(&gw, &lee_browser, "lee", "lee's password")
            .await
            .status(),
        303
    );
    let page = lee_browser
        .get(format!("{}/console/rules", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("cool") && page.contains("temperature"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let max_browser = browser();
    assert_eq!(
        log_in(&gw, &max_browser, "max", "max's password")
            .await
            .status(),
        303
    );
    let max_page = max_browser
        .get(format!("{}/console/rules", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!max_page.contains("temperature"));
    let theirs = max_browser
        .post(format!("{}/console/rules/{rule_id}/toggle", gw.url))
        .form(&[("csrf", csrf_of(&max_page))])
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    let toggled = lee_browser
        .post(format!("{}/console/rules/{rule_id}/toggle", gw.url))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(toggled.status(), 303);
    assert!(!gw.app.store.get_rule(lee, &rule_id).await.unwrap().enabled);
    gw.stop().await;
}

#[tokio::test]
async fn files_are_listed_downloaded_and_deleted_by_their_owner_only() {
    let mock = start_mock().await;
    let dir = std::env::temp_dir()
        .join("tollgate-tests")
        .join(format!("console-files-{}", std::process::id()));
    let storage = format!(
        "[storage]\nbackend = \"local\"\ndir = \"{}\"\n",
        dir.display()
    );
    let gw = start_gateway_with(&mock.url, None, "", &storage).await;
    let (_, lee_key) = console_user(&gw, "lee", "lee's password").await;
    console_user(&gw, "max", "max's password").await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"private notes".to_vec())
                .file_name("notes.txt")
                .mime_str("text/plain")
                .unwrap(),
        )
        .text("purpose", "COMMON");
    let uploaded: serde_json::Value = gw
        .http
        .post(format!("{}/api/v1/user/files/upload", gw.url))
        .bearer_auth(&lee_key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = uploaded["data"]["fileUniqueID"]
        .as_str()
        .unwrap()
        .to_string();

    let lee_browser = browser();
    log_in(&gw, &lee_browser, "lee", "lee's password").await;
    let page = lee_browser
        .get(format!("{}/console/files", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("notes.txt") && page.contains(&id), "{page}");
    let csrf = csrf_of(&page);
    // The private file downloads with the session, not without it.
    let own = lee_browser
        .get(format!("{}/console/files/{id}/download", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(own.bytes().await.unwrap().as_ref(), b"private notes");
    let anonymous = browser()
        .get(format!("{}/console/files/{id}/download", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 303, "to the login page");

    let max_browser = browser();
    log_in(&gw, &max_browser, "max", "max's password").await;
    let max_page = max_browser
        .get(format!("{}/console/files", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!max_page.contains("notes.txt"));
    let theirs = max_browser
        .get(format!("{}/console/files/{id}/download", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    let theirs = max_browser
        .post(format!("{}/console/files/{id}/delete", gw.url))
        .form(&[("csrf", csrf_of(&max_page))])
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    let forged = lee_browser
        .post(format!("{}/console/files/{id}/delete", gw.url))
        .form(&[("csrf", "not the token")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(gw.app.store.get_file(&id).await.is_ok());

    let deleted = lee_browser
        .post(format!("{}/console/files/{id}/delete", gw.url))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 303);
    let gone = lee_browser
        .get(format!("{}/console/files/{id}/download", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_admin_sees_everyones_usage_filtered_with_its_totals() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (root, _) = console_user(&gw, "root", "root's password").await;
    gw.app
        .store
        .set_console_access(root, None, true, false)
        .await
        .unwrap();
    let (erin, erin_key) = console_user(&gw, "erin", "erin's password").await;
    let (frank, frank_key) = console_user(&gw, "frank", "frank's password").await;
    for _ in 0..2 {
        let status = gw
            .chat(&erin_key, chat_body("gpt-test", false))
            .await
            .status();
        assert_eq!(status, 200);
    }
    let status = gw
        .chat(&frank_key, chat_body("cheap", false))
        .await
        .status();
    assert_eq!(status, 200);
    let erins = gw.wait_for_usage(erin, 2).await;
    let franks = gw.wait_for_usage(frank, 1).await;
    let all_cost = erins.iter().chain(&franks).map(|r| r.cost).sum::<i64>();

    let admin = browser();
    log_in(&gw, &admin, "root", "root's password").await;
    let get = |client: &reqwest::Client, path: &str| {
        let request = client.get(format!("{}{path}", gw.url));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let between = |html: &str, id: &str| {
        let at = html.find(&format!("id=\"{id}\">")).unwrap() + id.len() + 6;
        html[at..].split('<').next().unwrap().to_string()
    };
    let (status, html) = get(&admin, "/console/admin/usage").await;
    assert_eq!(status, 200);
    assert_eq!(html.matches("<td class=\"cost\">").count(), 3, "{html}");
    assert_eq!(between(&html, "total-requests"), "3");
    assert_eq!(
        between(&html, "total-cost"),
        gateway::money::format_usd(all_cost)
    );
    assert!(html.contains("\"days\":["), "a chart");

    let (_, by_name) = get(&admin, "/console/admin/usage?user=erin").await;
    assert_eq!(by_name.matches("<td class=\"cost\">").count(), 2);
    assert_eq!(between(&by_name, "total-requests"), "2");
    let (_, by_id) = get(&admin, &format!("/console/admin/usage?user={frank}")).await;
    assert_eq!(by_id.matches("<td class=\"cost\">").count(), 1);
    let (_, by_model) = get(&admin, "/console/admin/usage?model=cheap").await;
    assert_eq!(between(&by_model, "total-requests"), "1");
    let channel = &franks[0].provider;
    let (_, by_channel) = get(&admin, &format!("/console/admin/usage?channel={channel}")).await;
    let expected = erins
        .iter()
        .chain(&franks)
        .filter(|r| &r.provider == channel)
        .count();
    assert_eq!(between(&by_channel, "total-requests"), expected.to_string());
    let (_, nobody) = get(&admin, "/console/admin/usage?channel=no-such-channel").await;
    assert_eq!(between(&nobody, "total-requests"), "0");
    let (status, unknown) = get(&admin, "/console/admin/usage?user=nobody-here").await;
    assert_eq!(status, 200);
    assert!(
        unknown.contains("No user is named nobody-here."),
        "{unknown}"
    );

    let user = browser();
    log_in(&gw, &user, "erin", "erin's password").await;
    let (status, _) = get(&user, "/console/admin/usage").await;
    assert_eq!(status, 404, "not for a user");
    gw.stop().await;
}

#[tokio::test]
async fn a_key_is_edited_by_its_owner_only_and_bad_values_change_nothing() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (gina, gina_key) = console_user(&gw, "gina", "gina's password").await;
    console_user(&gw, "hank", "hank's password").await;
    let key_id = gw.app.store.list_keys(gina).await.unwrap()[0].id.clone();
    let gina_browser = browser();
    log_in(&gw, &gina_browser, "gina", "gina's password").await;
    let csrf = csrf_of(
        &gina_browser
            .get(format!("{}/console/keys", gw.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let edit = |client: &reqwest::Client, csrf: &str, fields: &[(&str, &str)]| {
        let mut form = vec![("csrf", csrf.to_string())];
        form.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
        client
            .post(format!("{}/console/keys/{key_id}/edit", gw.url))
            .form(&form)
            .send()
    };
    let edited = edit(
        &gina_browser,
        &csrf,
        &[
            ("remark", "bot"),
            ("max_fee", "1.25"),
            ("models", "cheap"),
            ("expires", "2099-01-01"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(edited.status(), 303);
    let key = gw.app.store.get_key(&key_id).await.unwrap();
    assert_eq!(key.remark, "bot");
    assert_eq!(key.max_fee, 1_250_000_000);
    assert_eq!(key.permissions, vec!["cheap".to_string()]);
    assert!(key.expired_at.is_some());
    // The key now serves its one model only.
    let refused = gw.chat(&gina_key, chat_body("gpt-test", false)).await;
    assert_eq!(refused.status(), 403);
    let page = gina_browser
        .get(format!("{}/console/keys", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("value=\"1.25\"") && page.contains("value=\"2099-01-01\""));

    let bad = edit(
        &gina_browser,
        &csrf,
        &[("remark", "x"), ("max_fee", "lots")],
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(gw.app.store.get_key(&key_id).await.unwrap().remark, "bot");
    let forged = edit(&gina_browser, "forged", &[("remark", "forged")])
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let hank_browser = browser();
    log_in(&gw, &hank_browser, "hank", "hank's password").await;
    let hank_csrf = csrf_of(
        &hank_browser
            .get(format!("{}/console/keys", gw.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let theirs = edit(&hank_browser, &hank_csrf, &[("remark", "mine now")])
        .await
        .unwrap();
    assert_eq!(theirs.status(), 404);
    let cleared = edit(&gina_browser, &csrf, &[("remark", "bot")])
        .await
        .unwrap();
    assert_eq!(cleared.status(), 303);
    let key = gw.app.store.get_key(&key_id).await.unwrap();
    assert_eq!(
        (key.max_fee, key.permissions.len(), key.expired_at),
        (0, 0, None)
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_makes_an_account_that_logs_in_and_nobody_else_can() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (root, _) = console_user(&gw, "root", "root's password").await;
    gw.app
        .store
        .set_console_access(root, None, true, false)
        .await
        .unwrap();
    console_user(&gw, "erin", "erin's password").await;
    let admin = browser();
    log_in(&gw, &admin, "root", "root's password").await;
    let page = admin
        .get(format!("{}/console/admin/users", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let create = |client: &reqwest::Client, csrf: &str, name: &str| {
        client
            .post(format!("{}/console/admin/users", gw.url))
            .form(&[
                ("csrf", csrf),
                ("name", name),
                ("email", &format!("{name}@example.com")),
                ("password", "ivy's long password"),
                ("group", "vip"),
            ])
            .send()
    };
    let bad = create(&admin, &csrf, "not a name!").await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("1 to 64 letters"));
    let forged = create(&admin, "forged", "ivy").await.unwrap();
    assert_eq!(forged.status(), 403);
    let user = browser();
    log_in(&gw, &user, "erin", "erin's password").await;
    let not_admin = create(&user, "whatever", "ivy").await.unwrap();
    assert_eq!(not_admin.status(), 404);
    assert!(gw.app.store.find_user_by_name("ivy").await.is_err());

    let made = create(&admin, &csrf, "ivy").await.unwrap();
    assert_eq!(made.status(), 303);
    let ivy = gw.app.store.find_user_by_name("ivy").await.unwrap();
    assert_eq!(ivy.group_name, "vip");
    assert_eq!(
        made.headers()["location"],
        format!("/console/admin/users/{}", ivy.id).as_str()
    );
    let again = create(&admin, &csrf, "ivy").await.unwrap();
    assert_eq!(again.status(), 400, "names are unique");
    let ivy_browser = browser();
    let login = log_in(&gw, &ivy_browser, "ivy@example.com", "ivy's long password").await;
    assert_eq!(login.status(), 303);
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_takes_a_channel_out_of_service_and_back() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (root, _) = console_user(&gw, "root", "root's password").await;
    gw.app
        .store
        .set_console_access(root, None, true, false)
        .await
        .unwrap();
    let (_, erin_key) = console_user(&gw, "erin", "erin's password").await;
    let admin = browser();
    log_in(&gw, &admin, "root", "root's password").await;
    let page = || async {
        admin
            .get(format!("{}/console/admin/channels", gw.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let html = page().await;
    let row = |html: &str| {
        let at = html
            .find("data-channel=\"gpt-test/0\"")
            .expect("the channel's row");
        html[at..].split("</tr>").next().unwrap().to_string()
    };
    assert!(
        row(&html).contains("<td class=\"state\">healthy</td>"),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let switch = |csrf: &str, to: &str, path: &str| {
        admin
            .post(format!("{}/console/admin/channels/{path}", gw.url))
            .form(&[("csrf", csrf), ("to", to)])
            .send()
    };
    assert_eq!(
        switch("forged", "disable", "gpt-test/0")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        switch(&csrf, "disable", "gpt-test/9")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        switch(&csrf, "disable", "gpt-test/0")
            .await
            .unwrap()
            .status(),
        303
    );
    assert!(row(&page().await).contains("<td class=\"state\">disabled</td>"));
    let refused = gw.chat(&erin_key, chat_body("gpt-test", false)).await;
    assert_ne!(refused.status(), 200, "its one channel is out of service");
    assert_eq!(
        switch(&csrf, "enable", "gpt-test/0")
            .await
            .unwrap()
            .status(),
        303
    );
    assert!(row(&page().await).contains("<td class=\"state\">healthy</td>"));
    let served = gw.chat(&erin_key, chat_body("gpt-test", false)).await;
    assert_eq!(served.status(), 200);

    let user = browser();
    log_in(&gw, &user, "erin", "erin's password").await;
    let not_admin = user
        .get(format!("{}/console/admin/channels", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(not_admin.status(), 404);
    gw.stop().await;
}

#[tokio::test]
async fn rules_are_made_edited_and_deleted_in_the_page_by_their_owner_only() {
    let mock = start_mock().await;
    let gw = start_gateway(&mock.url, None).await;
    let (lee, lee_key) = console_user(&gw, "lee", "lee's password").await;
    console_user(&gw, "max", "max's password").await;
    let lee_browser = browser();
    log_in(&gw, &lee_browser, "lee", "lee's password").await;
    let rules_page = |client: &reqwest::Client| {
        let request = client.get(format!("{}/console/rules", gw.url));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let csrf = csrf_of(&rules_page(&lee_browser).await);
    let post = |client: &reqwest::Client, path: &str, csrf: &str, rule: &str| {
        client
            .post(format!("{}{path}", gw.url))
            .form(&[("csrf", csrf), ("rule", rule)])
            .send()
    };
    let count = || async { gw.app.store.list_rules(lee, &all_rules()).await.unwrap().1 };
    // Not JSON, an operator's condition: refused, the text kept, nothing stored.
    let bad = post(&lee_browser, "/console/rules", &csrf, "{not json")
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("{not json</textarea>"));
    let operators = r#"{"conditions": [{"channel": "mock"}], "actions": []}"#;
    let bad = post(&lee_browser, "/console/rules", &csrf, operators)
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let forged =
        r#"{"ruleName": "no", "actions": [{"type": "block", "message": "closed", "status": 403}]}"#;
    assert_eq!(
        post(&lee_browser, "/console/rules", "forged", forged)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(count().await, 0);

    let block = r#"{"ruleName": "shut", "actions": [{"type": "block", "message": "closed by lee", "status": 403}]}"#;
    let made = post(&lee_browser, "/console/rules", &csrf, block)
        .await
        .unwrap();
    assert_eq!(made.status(), 303);
    let refused = gw.chat(&lee_key, chat_body("gpt-test", false)).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("closed by lee"));
    let rule_id = gw.app.store.list_rules(lee, &all_rules()).await.unwrap().0[0]
        .id
        .clone();

    let max_browser = browser();
    log_in(&gw, &max_browser, "max", "max's password").await;
    let max_csrf = csrf_of(&rules_page(&max_browser).await);
    let theirs = post(
        &max_browser,
        &format!("/console/rules/{rule_id}/edit"),
        &max_csrf,
        block,
    )
    .await
    .unwrap();
    assert_eq!(theirs.status(), 404);
    let theirs = post(
        &max_browser,
        &format!("/console/rules/{rule_id}/delete"),
        &max_csrf,
        "",
    )
    .await
    .unwrap();
    assert_eq!(theirs.status(), 404);

    let cool = r#"{"ruleName": "cool", "actions": [{"type": "override", "field": "temperature", "value": 0.2}]}"#;
    let edited = post(
        &lee_browser,
        &format!("/console/rules/{rule_id}/edit"),
        &csrf,
        cool,
    )
    .await
    .unwrap();
    assert_eq!(edited.status(), 303);
    let rule = gw.app.store.get_rule(lee, &rule_id).await.unwrap();
    assert_eq!(rule.name, "cool");
    assert_eq!(rule.rule["ruleId"], rule_id.as_str());
    let served = gw.chat(&lee_key, chat_body("gpt-test", false)).await;
    assert_eq!(served.status(), 200, "the block is gone at once");
    assert!(rules_page(&lee_browser).await.contains("temperature"));

    let deleted = post(
        &lee_browser,
        &format!("/console/rules/{rule_id}/delete"),
        &csrf,
        "",
    )
    .await
    .unwrap();
    assert_eq!(deleted.status(), 303);
    assert_eq!(count().await, 0);
    gw.stop().await;
}

fn all_rules() -> store::RuleFilter {
    store::RuleFilter {
        limit: 100,
        ..Default::default()
    }
}

#[tokio::test]
async fn sign_up_is_limited_per_address_and_in_all_and_a_taken_email_makes_nothing() {
    let mock = start_mock().await;
    let console = "\n[console]\nsignup = \"open\"\nsignups_per_hour = 2\n";
    let gw = start_gateway_with(&mock.url, None, "", console).await;
    let attempt = |name: &'static str, email: &'static str| {
        let gw = &gw;
        async move {
            let fields = [
                ("name", name),
                ("email", email),
                ("password", "a long password"),
            ];
            sign_up(gw, &browser(), &fields).await.status()
        }
    };
    assert_eq!(attempt("ann", "ann@example.com").await, 303);
    // A taken e-mail is refused and leaves no account behind.
    assert_eq!(attempt("bea", "ann@example.com").await, 400);
    assert!(gw.app.store.find_user_by_name("bea").await.is_err());
    assert_eq!(attempt("cat", "").await, 303);
    // Two accounts this hour in all.
    assert_eq!(attempt("dan", "").await, 429);
    assert!(gw.app.store.find_user_by_name("dan").await.is_err());
    // And five attempts per address.
    assert_eq!(attempt("eve", "").await, 429);
    assert_eq!(attempt("fay", "").await, 429);
    gw.stop().await;
}
