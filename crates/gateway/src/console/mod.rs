//! The web console (issue 15, in progress): server-rendered pages
//! (askama templates under `templates/console/`, compiled into the binary,
//! their stylesheet too), logins with argon2id passwords, server-side
//! sessions with CSRF tokens, throttled logins. The pages use the same
//! store and services as the APIs.

mod admin;
mod channels;
mod files;
mod keys;
mod logins;
mod models;
mod oauth;
mod password;
mod rules;
mod session;
mod settings;
pub mod setup;
mod signup;
mod texts;
mod throttle;
mod topup;
mod usage;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

pub use password::{check as check_password, hash as hash_password};
use session::{cookie, csrf_ok, secure_cookies, set_cookie, Member};
pub use texts::Texts;
pub use throttle::Throttle;

/// Sign-up attempts an address may make an hour.
pub const SIGNUPS_PER_ADDRESS: u32 = 5;

use crate::money::{format_credits, format_usd};
use crate::secrets::{hash_secret, new_admin_token};
use crate::state::App;

const STYLESHEET: &str = include_str!("console.css");
/// uPlot (MIT, `vendor/LICENSE-uPlot`), the dashboard's chart, vendored:
/// nothing is fetched from elsewhere at run time.
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");
/// Days the dashboard's chart covers.
const CHART_DAYS: i64 = 30;
/// The cookie a login form's CSRF token is checked against (no session
/// yet: a double submit).
const LOGIN_CSRF_COOKIE: &str = "tg_login_csrf";
const LANG_COOKIE: &str = "tg_lang";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(dashboard))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/signup", get(signup::show).post(signup::create))
        .route("/console/setup", get(setup::show).post(setup::create))
        .route("/console/keys", get(keys::list).post(keys::create))
        .route("/console/keys/{id}/toggle", post(keys::toggle))
        .route("/console/keys/{id}/edit", post(keys::edit))
        .route("/console/keys/{id}/delete", post(keys::delete))
        .route("/console/usage", get(usage::list))
        .route("/console/models", get(models::list))
        .route("/console/rules", get(rules::list).post(rules::create))
        .route("/console/rules/{id}/edit", post(rules::edit))
        .route("/console/rules/{id}/delete", post(rules::delete))
        .route("/console/files", get(files::list))
        .route("/console/files/{id}/delete", post(files::delete))
        .route("/console/files/{id}/download", get(files::download))
        .route("/console/rules/{id}/toggle", post(rules::toggle))
        .route("/console/settings", get(settings::show))
        .route(
            "/console/settings/password",
            post(settings::change_password),
        )
        .route(
            "/console/settings/sessions/{id}/close",
            post(settings::close_session),
        )
        .route(
            "/console/admin/users",
            get(admin::users).post(admin::create_user),
        )
        .route("/console/admin/usage", get(usage::all_users))
        .route("/console/admin/status", get(admin::status))
        .route("/console/admin/channels", get(channels::list))
        .route(
            "/console/admin/channels/{model}/{index}",
            post(channels::switch),
        )
        .route("/console/admin/reload", post(admin::reload))
        .route("/console/admin/users/{id}", get(admin::user))
        .route("/console/admin/users/{id}/balance", post(admin::balance))
        .route("/console/admin/users/{id}/account", post(admin::account))
        .route("/console/topup", get(topup::show).post(topup::create))
        .route("/console/topup/orders/{id}", get(topup::receipt))
        .route("/console/admin/orders", get(topup::admin_list))
        .route(
            "/console/admin/orders/reconcile",
            post(topup::admin_reconcile),
        )
        .route(
            "/console/admin/orders/{id}/refund",
            post(topup::admin_refund),
        )
        .route(
            crate::api::oauth::CONSENT_PAGE,
            get(oauth::authorize).post(oauth::answer),
        )
        .route(crate::api::oauth::SUCCEED_PAGE, get(oauth::succeed))
        .route("/console/apps", get(oauth::list).post(oauth::create))
        .route("/console/apps/{client_id}/rotate", post(oauth::rotate))
        .route("/console/apps/{client_id}/delete", post(oauth::delete))
        .route(
            "/console/apps/connections/{grant_id}/revoke",
            post(oauth::revoke),
        )
        .route("/console/admin/apps", get(oauth::admin_list))
        .route(
            "/console/admin/apps/{client_id}/suspend",
            post(oauth::admin_suspend),
        )
        .route("/console/usage.csv", get(usage::csv))
        .route("/console/static/console.css", get(stylesheet))
        .route(
            "/console/static/uplot.js",
            get(|| static_file(UPLOT_JS, "text/javascript")),
        )
        .route(
            "/console/static/uplot.css",
            get(|| static_file(UPLOT_CSS, "text/css")),
        )
}

#[derive(Deserialize, Default)]
struct Lang {
    lang: Option<String>,
}

/// The language of this visit: asked in the URL (and remembered), else
/// remembered, else the browser's.
fn language(headers: &HeaderMap, asked: &Lang) -> (&'static Texts, Option<String>) {
    if let Some(lang) = asked.lang.as_deref() {
        let texts = Texts::of(lang);
        let remember = format!(
            "{LANG_COOKIE}={}; Path=/console; SameSite=Lax; Max-Age=31536000",
            texts.lang
        );
        return (texts, Some(remember));
    }
    if let Some(lang) = cookie(headers, LANG_COOKIE) {
        return (Texts::of(&lang), None);
    }
    let accepted = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (Texts::of(accepted), None)
}

fn page(html: Result<String, askama::Error>, cookies: &[String]) -> Response {
    let mut response = match html {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page could not be rendered");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be made.",
            )
                .into_response();
        }
    };
    let headers = response.headers_mut();
    for c in cookies {
        if let Ok(value) = c.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    // Never framed by another site, never cached by a shared cache.
    headers.insert("x-frame-options", "DENY".parse().expect("static"));
    headers.insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    response
}

async fn static_file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    login: String,
    signup: bool,
    /// Where to go after the login (a console path).
    next: String,
}

#[derive(Deserialize, Default)]
struct Next {
    next: Option<String>,
}

/// A console path to return to after the login: only our own pages (a
/// full URL, or `//host`, would make the login page an open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            n.to_string()
        }
        _ => String::new(),
    }
}

async fn login_page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Query(next): Query<Next>,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    let next = safe_next(next.next.as_deref());
    render_login(&app, &headers, t, remember, None, String::new(), next)
}

fn signup_open(app: &App) -> bool {
    app.config.console.signup != crate::config::Signup::Closed
}

fn render_login(
    app: &App,
    headers: &HeaderMap,
    t: &'static Texts,
    remember: Option<String>,
    error: Option<String>,
    login: String,
    next: String,
) -> Response {
    let csrf = new_admin_token();
    let signup = signup_open(app);
    let secure = if secure_cookies(app, headers) {
        "; Secure"
    } else {
        ""
    };
    let mut cookies = vec![format!(
        "{LOGIN_CSRF_COOKIE}={csrf}; Path=/console; HttpOnly; SameSite=Strict{secure}"
    )];
    cookies.extend(remember);
    let status = match error {
        Some(_) => StatusCode::UNAUTHORIZED,
        None => StatusCode::OK,
    };
    let html = LoginPage {
        t,
        title: t.log_in,
        user_name: None,
        is_admin: false,
        csrf,
        error,
        login,
        signup,
        next,
    }
    .render();
    let mut response = page(html, &cookies);
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct LoginForm {
    login: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(form) = form::<LoginForm>(&body) else {
        return render_login(
            &app,
            &headers,
            t,
            None,
            Some(t.bad_form.into()),
            String::new(),
            String::new(),
        );
    };
    // The form must come from our own login page.
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !crate::secrets::hashes_equal(&expected, &form.csrf) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let address = client_address(&app, &headers, &extensions);
    // The same work and the same answer whether the account exists or not.
    let found = match app.store.login_of(form.login.trim()).await {
        Ok(login) => Some(login),
        Err(store::StoreError::NotFound(_)) => None,
        Err(e) => {
            tracing::error!(error = %e, "a login could not be read");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    // An account is counted by its id, whichever of its name or e-mail is
    // typed; an unknown one by what was typed.
    let account = match &found {
        Some(login) => format!("user:{}", login.user.id),
        None => format!("login:{}", form.login.trim().to_lowercase()),
    };
    let mut keys = vec![account.clone()];
    keys.extend(address.as_ref().map(|a| format!("ip:{a}")));
    if let Err(wait) = app.login_throttle.attempt(&keys, std::time::Instant::now()) {
        let message = t
            .too_many_attempts
            .replace("{minutes}", &wait.as_secs().div_ceil(60).to_string());
        let next = safe_next(form.next.as_deref());
        let mut response = render_login(&app, &headers, t, None, Some(message), form.login, next);
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return response;
    }
    let hash = found
        .as_ref()
        .and_then(|l| l.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_string());
    let matches = password::verify(form.password, hash).await;
    let login = match found {
        Some(login) if matches && login.password_hash.is_some() && !login.is_disabled => login,
        _ => {
            let next = safe_next(form.next.as_deref());
            return render_login(
                &app,
                &headers,
                t,
                None,
                Some(t.wrong_login.into()),
                form.login,
                next,
            );
        }
    };
    app.login_throttle.succeeded(&account, &keys[1..]);
    let token = new_admin_token();
    let opened = app
        .store
        .open_session(&store::NewSession {
            id_hash: hash_secret(&token),
            user_id: login.user.id,
            csrf_token: new_admin_token(),
            expires_at: store::now_ms() + session::TTL_MS,
            ip: address.unwrap_or_default(),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(256)
                .collect(),
        })
        .await;
    if let Err(e) = opened {
        tracing::error!(error = %e, "a console session could not be opened");
        return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
    }
    let next = safe_next(form.next.as_deref());
    let to = if next.is_empty() { "/console/" } else { &next };
    let mut response = Redirect::to(to).into_response();
    if let Ok(value) = set_cookie(&token, secure_cookies(&app, &headers)).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A hash to check a password against when the account has none, so that
/// a login for a name that does not exist takes as long as one that does.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0n2yT0D5QPEfrLS6mG4YWxgNr7NxdxbgLmr0kc8x8e0";

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// The CSRF token a posted form carries (every state-changing form has one).
fn posted_csrf(body: &[u8]) -> Option<String> {
    form::<CsrfForm>(body).ok().map(|f| f.csrf)
}

async fn logout(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let given = posted_csrf(&body);
    if !csrf_ok(&session, given.as_deref()) {
        return (StatusCode::FORBIDDEN, "CSRF").into_response();
    }
    if let Err(e) = app
        .store
        .close_session(session.user.id, &session.id_hash)
        .await
    {
        tracing::warn!(error = %e, "a console session was not closed");
    }
    let mut response = Redirect::to("/console/login").into_response();
    if let Ok(value) = set_cookie("", secure_cookies(&app, &headers)).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// One row of the recent requests.
struct Row {
    time: String,
    model: String,
    key: String,
    tokens: String,
    cost: String,
    status: i64,
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    balance_credits: String,
    balance_usd: String,
    /// A balance below zero (a refund after spending): what is owed, USD.
    owed: Option<String>,
    spent_today: String,
    requests_today: i64,
    spent_month: String,
    requests_month: i64,
    recent: Vec<Row>,
    /// The chart's data, as JSON: `{days: [unix s…], models: [{name, cost:
    /// [USD…], tokens: […]}]}`.
    chart: String,
}

async fn dashboard(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    let user = &session.user;
    let now = store::now_ms();
    let today = now - now.rem_euclid(86_400_000);
    let month = month_start(now);
    let figures = async {
        let day = app
            .store
            .spend_since_day(user.id, today / 86_400_000)
            .await?;
        let month = app
            .store
            .spend_since_day(user.id, month / 86_400_000)
            .await?;
        let recent = app
            .store
            .list_usage(&store::UsageFilter {
                user_id: Some(user.id),
                limit: 10,
                ..store::UsageFilter::default()
            })
            .await?;
        let daily = app
            .store
            .daily_usage(user.id, today / 86_400_000 - (CHART_DAYS - 1))
            .await?;
        Ok::<_, store::StoreError>((day, month, recent, daily))
    }
    .await;
    let ((spent_today, requests_today), (spent_month, requests_month), recent, daily) =
        match figures {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "the dashboard's figures could not be read");
                return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
            }
        };
    let credits = |nano: i64| format_credits(nano, app.config.credits_per_usd);
    let balance = user.balance + user.free_balance;
    let html = DashboardPage {
        t,
        title: t.dashboard,
        user_name: Some(user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        balance_credits: credits(balance),
        balance_usd: format_usd(balance),
        owed: (balance < 0).then(|| format_usd(balance.saturating_neg())),
        spent_today: format_usd(spent_today),
        requests_today,
        spent_month: format_usd(spent_month),
        requests_month,
        recent: recent
            .iter()
            .map(|r| Row {
                time: crate::time::format_ms(r.created_at),
                model: r.model.clone(),
                key: r.key_id.clone(),
                tokens: match r.unit.as_str() {
                    "" => format!("{} / {}", r.input_tokens, r.output_tokens),
                    unit => format!("{} {unit}", r.input_tokens),
                },
                cost: format_usd(r.cost),
                status: r.status,
            })
            .collect(),
        chart: chart_json(today / 86_400_000, &daily),
    }
    .render();
    page(html, &remember.into_iter().collect::<Vec<_>>())
}

/// The chart's series: for each of the last [`CHART_DAYS`] days up to
/// `today` (a day number), each model's spend (USD) and tokens.
fn chart_json(today: i64, daily: &[(i64, String, i64, i64)]) -> String {
    let first = today - (CHART_DAYS - 1);
    let days: Vec<i64> = (first..=today).map(|d| d * 86_400).collect();
    let mut models: Vec<&str> = daily.iter().map(|(_, m, _, _)| m.as_str()).collect();
    models.sort();
    models.dedup();
    let series: Vec<serde_json::Value> = models
        .iter()
        .map(|model| {
            let mut cost = vec![0.0f64; CHART_DAYS as usize];
            let mut tokens = vec![0i64; CHART_DAYS as usize];
            for (day, _, nano, t) in daily.iter().filter(|(_, m, _, _)| m == model) {
                if let Ok(i) = usize::try_from(day - first) {
                    if i < cost.len() {
                        cost[i] = *nano as f64 / 1e9;
                        tokens[i] = *t;
                    }
                }
            }
            serde_json::json!({"name": model, "cost": cost, "tokens": tokens})
        })
        .collect();
    // Safe inside a <script> element: no `<` can close it or open a comment.
    serde_json::json!({"days": days, "models": series})
        .to_string()
        .replace('<', "\\u003c")
}

/// Unix ms at the start of the UTC month `now` is in.
fn month_start(now: i64) -> i64 {
    let date = crate::time::format_ms(now);
    crate::time::parse_timestamp(&format!("{}-01", &date[..7])).unwrap_or(now)
}

/// The client's address: the connection's own, or — behind
/// `console.forwarded_hops` proxies — the one the outermost of them saw,
/// counted from the right of `X-Forwarded-For` (what a client writes to
/// its left is not trusted).
pub(super) fn client_address(
    app: &App,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Option<String> {
    let peer = || {
        extensions
            .get::<crate::server::Peer>()
            .map(|p| p.0.ip().to_string())
    };
    let hops = app.config.console.forwarded_hops;
    if hops == 0 {
        return peer();
    }
    let forwarded: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    match forwarded.len().checked_sub(hops) {
        Some(at) => forwarded.get(at).cloned(),
        None => peer(),
    }
}

/// A form body (`application/x-www-form-urlencoded`).
fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ()> {
    let pairs = crate::api::form_pairs(body);
    let map: serde_json::Map<String, serde_json::Value> = pairs
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_point_a_day_per_model_and_cannot_close_its_script() {
        let today = 20_000;
        let daily = vec![
            (today - 1, "b</script>".to_string(), 2_000_000_000, 10),
            (today, "a".to_string(), 500_000_000, 5),
            (today - 40, "old".to_string(), 1, 1),
        ];
        let json = chart_json(today, &daily);
        assert!(!json.contains("</"), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["days"].as_array().unwrap().len(), CHART_DAYS as usize);
        assert_eq!(value["days"][29], today * 86_400);
        let models = value["models"].as_array().unwrap();
        assert_eq!(models[0]["name"], "a");
        assert_eq!(models[0]["cost"][29], 0.5);
        assert_eq!(models[1]["name"], "b</script>");
        assert_eq!(models[1]["cost"][28], 2.0);
    }

    #[test]
    fn months_start_on_the_first_at_midnight() {
        let now = crate::time::parse_timestamp("2026-12-01T05:00:00Z").unwrap();
        assert_eq!(
            month_start(now),
            crate::time::parse_timestamp("2026-12-01T00:00:00Z").unwrap()
        );
        let later = crate::time::parse_timestamp("2027-02-28T23:59:59Z").unwrap();
        assert_eq!(
            crate::time::format_ms(month_start(later)),
            "2027-02-01T00:00:00.000Z"
        );
    }

    #[tokio::test]
    async fn the_dummy_hash_is_a_real_argon2id_hash() {
        assert!(!password::verify("anything".into(), DUMMY_HASH.into()).await);
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
