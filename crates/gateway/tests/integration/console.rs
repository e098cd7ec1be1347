//! The web console's logins (issue 15, in progress): a session only with
//! the right password, a CSRF token on every state-changing form, logins
//! throttled, the dashboard showing the user's own figures.

use crate::common::*;

async fn console_user(gw: &Gateway, name: &str, password: &str) -> (i64, String) {
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

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The CSRF token a page's form carries.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

async fn log_in(
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
    let gw = start_gateway(&mock.url, None).await;
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
    // An unknown account is told the same as a wrong password.
    let unknown = log_in(&gw, &client, "nobody", "whatever").await;
    assert_eq!(unknown.status(), 401);
    gw.stop().await;
}
