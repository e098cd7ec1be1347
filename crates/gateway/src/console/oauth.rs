//! The console's OAuth pages: the consent page an app sends its user to,
//! the code display page, the user's apps (connected apps with what each
//! charged, registered apps with their earnings) and the operator's list
//! of every app, where an app is suspended.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{csrf_ok, Member};
use super::{language, page, posted_csrf, Lang, Texts};
use crate::api::oauth::CONSENT_PAGE;
use crate::config::GrantLimits;
use crate::error::ApiError;
use crate::money::{format_credits, format_usd};
use crate::oauth::{self, AppFields, AuthorizeQuery, Consent, Scope};
use crate::state::App;
use crate::time::format_ms;

/// What the consent page shows and posts back.
#[derive(Template)]
#[template(path = "console/authorize.html")]
struct AuthorizePage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    app_name: String,
    homepage: String,
    owner: String,
    scopes: Vec<(&'static str, &'static str)>,
    charges: bool,
    api: bool,
    per_charge: String,
    per_day: String,
    api_spend: String,
    /// Where the answer goes (empty: the code is shown to the user).
    redirect_to: String,
    /// The app's request, posted back as it came.
    hidden: Vec<(String, String)>,
}

/// The request's own fields, posted back with the answer.
const REQUEST_FIELDS: [&str; 11] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "redirect_template",
    "code_challenge",
    "code_challenge_method",
    "charge_limit",
    "daily_limit",
    "spend_limit",
];

/// The first value of `name` among a query's or a form's pairs.
fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn query_of(pairs: &[(String, String)]) -> AuthorizeQuery {
    let get = |name: &str| field(pairs, name).map(str::to_string);
    AuthorizeQuery {
        response_type: get("response_type"),
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        scope: get("scope"),
        state: get("state"),
        redirect_template: get("redirect_template"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        charge_limit: get("charge_limit"),
        daily_limit: get("daily_limit"),
        spend_limit: get("spend_limit"),
    }
}

/// An error the user sees instead of the consent page: never sent to a
/// redirect URI that may not be the app's.
fn refusal(t: &'static Texts, session: &store::Session, error: &ApiError) -> Response {
    let html = AuthorizePage {
        t,
        title: t.authorize_title,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        error: Some(error.to_string()),
        app_name: String::new(),
        homepage: String::new(),
        owner: String::new(),
        scopes: Vec::new(),
        charges: false,
        api: false,
        per_charge: String::new(),
        per_day: String::new(),
        api_spend: String::new(),
        redirect_to: String::new(),
        hidden: Vec::new(),
    }
    .render();
    let mut response = page(html, &[]);
    *response.status_mut() = match error.status() {
        s if s.is_client_error() => s,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    response
}

pub async fn authorize(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    RawQuery(raw): RawQuery,
    member: Result<Member, Response>,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    let raw = raw.unwrap_or_default();
    // Not logged in: the login page, and back here after it.
    let Ok(Member(session)) = member else {
        let back = format!("{CONSENT_PAGE}?{raw}");
        let next = crate::oauth::redirect::with_query("/console/login", &[("next", &back)]);
        return Redirect::to(&next).into_response();
    };
    let pairs = crate::api::form_pairs(raw.as_bytes());
    let consent = match oauth::authorize(&app, &query_of(&pairs)).await {
        Ok(consent) => consent,
        Err(e) => return refusal(t, &session, &e),
    };
    let owner = app
        .store
        .get_user(consent.app.owner_id)
        .await
        .map(|u| u.name)
        .unwrap_or_default();
    let cpu = app.config.credits_per_usd;
    let hidden = pairs
        .into_iter()
        .filter(|(k, _)| REQUEST_FIELDS.contains(&k.as_str()))
        .collect();
    let html = AuthorizePage {
        t,
        title: t.authorize_title,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        error: None,
        app_name: consent.app.name.clone(),
        homepage: consent.app.homepage.clone(),
        owner,
        scopes: consent
            .scopes
            .iter()
            .map(|s| (s.as_str(), s.describe()))
            .collect(),
        charges: consent.scopes.contains(&Scope::Charge),
        api: consent.scopes.contains(&Scope::Api),
        per_charge: format_credits(consent.limits.per_charge, cpu),
        per_day: format_credits(consent.limits.per_day, cpu),
        api_spend: format_credits(consent.limits.api_spend, cpu),
        redirect_to: consent.redirect_uri.clone().unwrap_or_default(),
        hidden,
    }
    .render();
    page(html, &remember.into_iter().collect::<Vec<_>>())
}

/// The limits the user chose: each at most what the app asked.
fn chosen_limits(
    app: &App,
    pairs: &[(String, String)],
    consent: &Consent,
) -> Result<GrantLimits, ApiError> {
    let pick = |name: &str, asked: i64| -> Result<i64, ApiError> {
        match field(pairs, name) {
            Some(v) if !v.trim().is_empty() => Ok(oauth::credits(app, name, v)?.min(asked)),
            _ => Ok(asked),
        }
    };
    Ok(GrantLimits {
        per_charge: pick("choose_charge_limit", consent.limits.per_charge)?,
        per_day: pick("choose_daily_limit", consent.limits.per_day)?,
        api_spend: pick("choose_spend_limit", consent.limits.api_spend)?,
    })
}

/// The user's answer: approve makes a code and sends it to the app; deny
/// makes nothing and tells the app.
pub async fn answer(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let pairs = crate::api::form_pairs(&body);
    if !csrf_ok(&session, field(&pairs, "csrf")) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    // The request is checked again: the form's fields came back through
    // the browser.
    let consent = match oauth::authorize(&app, &query_of(&pairs)).await {
        Ok(consent) => consent,
        Err(e) => return refusal(t, &session, &e),
    };
    if field(&pairs, "decision") != Some("approve") {
        return match &consent.redirect_uri {
            Some(uri) => {
                Redirect::to(&oauth::redirect::denied(uri, &consent.state)).into_response()
            }
            None => code_page(t, None, t.denied),
        };
    }
    let approved = async {
        let limits = chosen_limits(&app, &pairs, &consent)?;
        oauth::approve(&app, session.user.id, &consent, limits).await
    }
    .await;
    match approved {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => refusal(t, &session, &e),
    }
}

#[derive(Template)]
#[template(path = "console/oauth_code.html")]
struct CodePage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    code: Option<String>,
    message: &'a str,
}

fn code_page(t: &'static Texts, code: Option<String>, message: &'static str) -> Response {
    let html = CodePage {
        t,
        title: t.code_title,
        user_name: None,
        is_admin: false,
        csrf: String::new(),
        code,
        message,
    }
    .render();
    page(html, &[])
}

#[derive(Deserialize)]
pub struct CodeQuery {
    code: Option<String>,
}

/// OhMyGPT's code display page, for apps without a callback.
pub async fn succeed(
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Query(query): Query<CodeQuery>,
) -> Response {
    let (t, _) = language(&headers, &lang);
    let code = query.code.filter(|c| {
        !c.is_empty() && c.len() <= 128 && c.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    code_page(t, code, t.code_hint)
}

struct ConnectionRow {
    id: String,
    app: String,
    homepage: String,
    scopes: String,
    limits: String,
    since: String,
    charged: String,
    charges: i64,
}

struct AppRow {
    client_id: String,
    name: String,
    redirect_uris: String,
    scopes: String,
    suspended: bool,
    owner: String,
    charges: i64,
    users: i64,
    charged: String,
    fees: String,
    earned: String,
}

struct ChargeRow {
    time: String,
    app: String,
    description: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "console/apps.html")]
struct AppsPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    /// A client id and its secret, shown once.
    secret: Option<(String, String)>,
    connections: Vec<ConnectionRow>,
    charges: Vec<ChargeRow>,
    apps: Vec<AppRow>,
    all_scopes: Vec<&'static str>,
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    let mut response = render(&app, t, &session, None, None).await;
    if let Some(cookie) = remember.and_then(|c| c.parse().ok()) {
        response
            .headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    response
}

async fn render(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    error: Option<String>,
    secret: Option<(String, String)>,
) -> Response {
    let user = session.user.id;
    let figures = async {
        let connections = app.store.connections(user).await?;
        let charges = app.store.charges_to_user(user, 20).await?;
        let apps = app.store.list_apps(Some(user)).await?;
        let earnings = app.store.earnings(user).await?;
        Ok::<_, store::StoreError>((connections, charges, apps, earnings))
    }
    .await;
    let (connections, charges, apps, earnings) = match figures {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "the apps page could not be read");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    let cpu = app.config.credits_per_usd;
    let credits = |nano: i64| format_credits(nano, cpu);
    let html = AppsPage {
        t,
        title: t.apps,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        error: error.clone(),
        secret,
        connections: connections
            .iter()
            .map(|c| ConnectionRow {
                id: c.grant.id.clone(),
                app: c.app_name.clone(),
                homepage: c.homepage.clone(),
                scopes: c.grant.scopes.join(", "),
                limits: format!(
                    "{} / {} {}",
                    credits(c.grant.charge_limit),
                    credits(c.grant.daily_limit),
                    t.credits
                ),
                since: format_ms(c.grant.created_at),
                charged: format!("{} ({})", credits(c.charged), format_usd(c.charged)),
                charges: c.charges,
            })
            .collect(),
        charges: charges
            .iter()
            .map(|(c, app_name)| ChargeRow {
                time: format_ms(c.created_at),
                app: app_name.clone(),
                description: c.description.clone(),
                amount: credits(c.amount),
            })
            .collect(),
        apps: apps
            .iter()
            .map(|a| {
                let e = earnings.iter().find(|e| e.client_id == a.client_id);
                AppRow {
                    client_id: a.client_id.clone(),
                    name: a.name.clone(),
                    redirect_uris: a.redirect_uris.join(" "),
                    scopes: a.scopes.join(", "),
                    suspended: a.is_suspended,
                    owner: String::new(),
                    charges: e.map_or(0, |e| e.charges),
                    users: e.map_or(0, |e| e.users),
                    charged: credits(e.map_or(0, |e| e.charged)),
                    fees: credits(e.map_or(0, |e| e.fees)),
                    earned: credits(e.map_or(0, |e| e.earned)),
                }
            })
            .collect(),
        all_scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
    }
    .render();
    let mut response = page(html, &[]);
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// Registers an app from the form: `name`, `homepage`, `redirect_uris`
/// (one per line), a checkbox per scope.
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let pairs = crate::api::form_pairs(&body);
    if !csrf_ok(&session, field(&pairs, "csrf")) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let fields = AppFields {
        name: Some(field(&pairs, "name").unwrap_or_default().to_string()),
        homepage: field(&pairs, "homepage").map(str::to_string),
        redirect_uris: Some(
            field(&pairs, "redirect_uris")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        ),
        scopes: Some(
            pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .collect(),
        ),
    };
    match oauth::register(&app, session.user.id, &fields).await {
        Ok((registered, secret)) => {
            render(
                &app,
                t,
                &session,
                None,
                Some((registered.client_id, secret)),
            )
            .await
        }
        Err(e) => render(&app, t, &session, Some(e.to_string()), None).await,
    }
}

/// After a change: back to the apps page, or the page with what failed.
async fn back_to_apps(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    done: Result<(), ApiError>,
) -> Response {
    match done {
        Ok(()) => Redirect::to("/console/apps").into_response(),
        Err(e) => render(app, t, session, Some(e.to_string()), None).await,
    }
}

pub async fn rotate(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    if !csrf_ok(&session, posted_csrf(&body).as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    match oauth::rotate_secret(&app, session.user.id, &client_id).await {
        Ok((registered, secret)) => {
            render(
                &app,
                t,
                &session,
                None,
                Some((registered.client_id, secret)),
            )
            .await
        }
        Err(e) => render(&app, t, &session, Some(e.to_string()), None).await,
    }
}

pub async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    if !csrf_ok(&session, posted_csrf(&body).as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let done = oauth::delete(&app, session.user.id, &client_id).await;
    back_to_apps(&app, t, &session, done).await
}

pub async fn revoke(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    Path(grant_id): Path<String>,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    if !csrf_ok(&session, posted_csrf(&body).as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let done = oauth::revoke(&app, &grant_id, session.user.id).await;
    back_to_apps(&app, t, &session, done).await
}

#[derive(Template)]
#[template(path = "console/admin_apps.html")]
struct AdminAppsPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    apps: Vec<AppRow>,
}

pub async fn admin_list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, _) = language(&headers, &lang);
    if !session.is_admin {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let apps = match app.store.list_apps(None).await {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!(error = %e, "apps could not be listed");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    let mut owners: HashMap<i64, String> = HashMap::new();
    for a in &apps {
        if let Entry::Vacant(slot) = owners.entry(a.owner_id) {
            slot.insert(
                app.store
                    .get_user(a.owner_id)
                    .await
                    .map(|u| u.name)
                    .unwrap_or_default(),
            );
        }
    }
    let html = AdminAppsPage {
        t,
        title: t.apps,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        apps: apps
            .iter()
            .map(|a| AppRow {
                client_id: a.client_id.clone(),
                name: a.name.clone(),
                redirect_uris: a.redirect_uris.join(" "),
                scopes: a.scopes.join(", "),
                suspended: a.is_suspended,
                owner: owners.get(&a.owner_id).cloned().unwrap_or_default(),
                charges: 0,
                users: 0,
                charged: String::new(),
                fees: String::new(),
                earned: String::new(),
            })
            .collect(),
    }
    .render();
    page(html, &[])
}

pub async fn admin_suspend(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    if !session.is_admin {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    if !csrf_ok(&session, posted_csrf(&body).as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let suspended = match app.store.app(&client_id).await {
        Ok(a) => !a.is_suspended,
        Err(_) => return (StatusCode::NOT_FOUND, "Not found").into_response(),
    };
    match oauth::suspend(&app, &client_id, suspended).await {
        Ok(_) => Redirect::to("/console/admin/apps").into_response(),
        Err(e) => (e.status(), e.to_string()).into_response(),
    }
}
