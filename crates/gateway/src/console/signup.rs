//! Sign-up (`[console] signup`): closed (the default: accounts are the
//! operator's to make), open, or by invitation code. A new account gets its
//! first API key as any account does (`crate::accounts::create_user`),
//! `signup_free_usd` on its free balance, and a session at once.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::logins::{self, NewLogin};
use super::{form, language, page, session, Lang, Texts};
use crate::config::{resolve_secret, Signup};
use crate::secrets::{hash_secret, hashes_equal, new_admin_token};
use crate::state::App;

const CSRF_COOKIE: &str = "tg_signup_csrf";

#[derive(Template)]
#[template(path = "console/signup.html")]
struct SignupPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    invite: bool,
    name: String,
    email: String,
}

fn render(
    app: &App,
    headers: &HeaderMap,
    t: &'static Texts,
    remember: Option<String>,
    error: Option<String>,
    name: String,
    email: String,
) -> Response {
    let csrf = new_admin_token();
    let secure = if session::secure_cookies(app, headers) {
        "; Secure"
    } else {
        ""
    };
    let mut cookies = vec![format!(
        "{CSRF_COOKIE}={csrf}; Path=/console; HttpOnly; SameSite=Strict{secure}"
    )];
    cookies.extend(remember);
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let html = SignupPage {
        t,
        title: t.sign_up,
        user_name: None,
        is_admin: false,
        csrf,
        error,
        invite: app.config.console.signup == Signup::Invite,
        name,
        email,
    }
    .render();
    let mut response = page(html, &cookies);
    *response.status_mut() = status;
    response
}

pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    if app.config.console.signup == Signup::Closed {
        return (StatusCode::NOT_FOUND, t.signup_closed).into_response();
    }
    render(
        &app,
        &headers,
        t,
        remember,
        None,
        String::new(),
        String::new(),
    )
}

#[derive(Deserialize)]
struct SignupForm {
    csrf: String,
    name: String,
    #[serde(default)]
    email: String,
    password: String,
    #[serde(default)]
    invite: String,
}

pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let console = &app.config.console;
    if console.signup == Signup::Closed {
        return (StatusCode::NOT_FOUND, t.signup_closed).into_response();
    }
    let Ok(f) = form::<SignupForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    let expected = session::cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !hashes_equal(&expected, &f.csrf) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let again = |error: String| {
        render(
            &app,
            &headers,
            t,
            None,
            Some(error),
            f.name.clone(),
            f.email.clone(),
        )
    };
    // A few attempts per address an hour, and so many accounts an hour in
    // all: sign-up (with its free balance) cannot be farmed by a script.
    let now = std::time::Instant::now();
    let address = super::client_address(&app, &headers, &extensions).unwrap_or_default();
    let all = ["all".to_string()];
    let throttled = app
        .signup_throttle
        .attempt(&[format!("ip:{address}")], now)
        .err()
        .or_else(|| app.signups_made.wait(&all, now));
    if let Some(wait) = throttled {
        let message = t
            .too_many_attempts
            .replace("{minutes}", &wait.as_secs().div_ceil(60).to_string());
        let mut response = again(message);
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return response;
    }
    if console.signup == Signup::Invite {
        let given = f.invite.trim();
        let valid = console
            .invite_codes
            .iter()
            .any(|code| !given.is_empty() && hashes_equal(&resolve_secret(code), given));
        if !valid {
            return again(t.bad_invite.into());
        }
    }
    let new = NewLogin {
        name: &f.name,
        email: &f.email,
        password: &f.password,
        group: &console.signup_group,
        is_admin: false,
    };
    let user = match logins::create(&app, t, new).await {
        Ok(user) => user,
        Err(e) => return again(e),
    };
    app.signups_made.count(&all, now);
    let set_up = async {
        let free = console.signup_free_nano().unwrap_or(0);
        if free > 0 {
            crate::accounts::change_balance(&app.store, user.id, free, true, "sign-up bonus")
                .await
                .map_err(|e| store::StoreError::Conflict(e.to_string()))?;
        }
        Ok::<_, store::StoreError>(())
    }
    .await;
    if let Err(e) = set_up {
        return again(e.to_string());
    }
    // Logged in at once.
    let token = new_admin_token();
    let opened = app
        .store
        .open_session(&store::NewSession {
            id_hash: hash_secret(&token),
            user_id: user.id,
            csrf_token: new_admin_token(),
            expires_at: store::now_ms() + session::TTL_MS,
            ip: String::new(),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(256)
                .collect(),
        })
        .await;
    let mut response = Redirect::to(match opened {
        Ok(()) => "/console/keys",
        Err(_) => "/console/login",
    })
    .into_response();
    if opened.is_ok() {
        if let Ok(value) =
            session::set_cookie(&token, session::secure_cookies(&app, &headers)).parse()
        {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}
