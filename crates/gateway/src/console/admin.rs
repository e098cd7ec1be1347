//! The console's admin pages (a console admin's session only; anyone else
//! gets 404, as for a page that does not exist): users, searched by name;
//! one user with its ledger, credited or debited with a reason through the
//! same service as the admin API (`crate::accounts::change_balance`).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{csrf_ok, Member};
use super::{form, language, page, posted_csrf, Lang, Texts};
use crate::accounts::change_balance;
use crate::error::ApiError;
use crate::money::{format_usd, parse_amount, Unit};
use crate::state::App;

/// Most users one listing shows.
const MOST_USERS: usize = 200;

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found").into_response()
}

struct UserRow {
    id: i64,
    name: String,
    group: String,
    tier: String,
    balance: String,
}

#[derive(Template)]
#[template(path = "console/admin_users.html")]
struct UsersPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    q: String,
    error: Option<String>,
    users: Vec<UserRow>,
}

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    q: String,
    lang: Option<String>,
}

pub async fn users(
    State(app): State<App>,
    headers: HeaderMap,
    Query(search): Query<Search>,
    Member(session): Member,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, remember) = language(
        &headers,
        &Lang {
            lang: search.lang.clone(),
        },
    );
    render_users(&app, t, &session, &search.q, None, remember).await
}

async fn render_users(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    q: &str,
    error: Option<String>,
    remember: Option<String>,
) -> Response {
    let all = match app.store.list_users().await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "users could not be listed");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    let wanted = q.trim().to_lowercase();
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let html = UsersPage {
        t,
        title: t.users,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        q: q.to_string(),
        error,
        users: all
            .iter()
            .filter(|u| wanted.is_empty() || u.name.to_lowercase().contains(&wanted))
            .take(MOST_USERS)
            .map(|u| UserRow {
                id: u.id,
                name: u.name.clone(),
                group: u.group_name.clone(),
                tier: u.tier.clone(),
                balance: format_usd(u.balance + u.free_balance),
            })
            .collect(),
    }
    .render();
    let mut response = page(html, &remember.into_iter().collect::<Vec<_>>());
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct NewUserForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    group: String,
    admin: Option<String>,
}

/// `POST /console/admin/users`: a new account with a console login (and a
/// first key, as the admin API makes), then its page.
pub async fn create_user(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    let Ok(f) = form::<NewUserForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&f.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let group = match f.group.trim() {
        "" => "default",
        group => group,
    };
    let new = super::logins::NewLogin {
        name: &f.name,
        email: &f.email,
        password: &f.password,
        group,
        is_admin: f.admin.as_deref() == Some("true"),
    };
    match super::logins::create(&app, t, new).await {
        Ok(user) => Redirect::to(&format!("/console/admin/users/{}", user.id)).into_response(),
        Err(e) => render_users(&app, t, &session, "", Some(e), None).await,
    }
}

struct LedgerRow {
    time: String,
    amount: String,
    after: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "console/admin_user.html")]
struct UserPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    id: i64,
    name: String,
    group: String,
    tier: String,
    expires: String,
    disabled: bool,
    balance: String,
    ledger: Vec<LedgerRow>,
}

pub async fn user(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Member(session): Member,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    render_user(&app, t, &session, id, None).await
}

async fn render_user(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    id: i64,
    error: Option<String>,
) -> Response {
    let (login, ledger) = match (app.store.get_user(id).await, app.store.ledger(id, 50).await) {
        (Ok(user), Ok(ledger)) => match app.store.login_of(&user.name).await {
            Ok(login) => (login, ledger),
            Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
        },
        (Err(store::StoreError::NotFound(_)), _) => return not_found(),
        _ => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    };
    let user = &login.user;
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let html = UserPage {
        t,
        title: t.users,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        error,
        id,
        name: user.name.clone(),
        group: user.group_name.clone(),
        tier: user.tier.clone(),
        expires: user
            .membership_expires_at
            .map(|at| crate::time::format_ms(at)[..10].to_string())
            .unwrap_or_default(),
        disabled: login.is_disabled,
        balance: format_usd(user.balance + user.free_balance),
        ledger: ledger
            .iter()
            .map(|e| LedgerRow {
                time: crate::time::format_ms(e.created_at),
                amount: format_usd(e.amount),
                after: format_usd(e.balance_after),
                reason: e.reason.clone(),
            })
            .collect(),
    }
    .render();
    let mut response = page(html, &[]);
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct BalanceForm {
    csrf: String,
    amount: String,
    reason: String,
    #[serde(default)]
    debit: Option<String>,
}

pub async fn balance(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    let Ok(form) = form::<BalanceForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let changed = async {
        let amount = parse_amount("amount", form.amount.trim(), Unit::Usd, false)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let amount = match form.debit.as_deref() {
            Some("true") => -amount,
            _ => amount,
        };
        change_balance(&app.store, id, amount, false, &form.reason).await
    }
    .await;
    match changed {
        Ok(_) => {
            // New requests see the new balance at once.
            app.auth_cache.clear();
            app.billing.ledger.forget_user(id);
            Redirect::to(&format!("/console/admin/users/{id}")).into_response()
        }
        Err(ApiError::NotFound(_)) => not_found(),
        Err(e) => render_user(&app, t, &session, id, Some(e.to_string())).await,
    }
}

#[derive(Template)]
#[template(path = "console/admin_status.html")]
struct StatusPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    notice: Option<String>,
    version: &'static str,
    uptime: String,
    in_flight: usize,
    pending: usize,
    database: String,
    /// (model, unit, channels)
    models: Vec<(String, String, String)>,
}

fn render_status(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    notice: Option<String>,
) -> Response {
    let up = app.started.elapsed().as_secs();
    let catalog = app.catalog.load();
    let mut models: Vec<(String, String, String)> = catalog
        .models
        .values()
        .map(|m| {
            let channels = m
                .channels
                .iter()
                .map(|c| format!("{} ({})", c.provider, c.upstream_model))
                .collect::<Vec<_>>()
                .join(", ");
            (m.name.clone(), m.unit.name().to_string(), channels)
        })
        .collect();
    models.sort();
    let html = StatusPage {
        t,
        title: t.system,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        notice,
        version: env!("CARGO_PKG_VERSION"),
        uptime: format!("{}d {}h {}m", up / 86_400, up / 3600 % 24, up / 60 % 60),
        in_flight: app.in_flight.count(),
        pending: app.billing.settlements.pending(),
        database: format!("{:?}", app.store.backend()),
        models,
    }
    .render();
    page(html, &[])
}

pub async fn status(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    render_status(&app, t, &session, None)
}

/// Reads the configuration file's catalog again (as SIGHUP does).
pub async fn reload(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    let given = posted_csrf(&body);
    if !csrf_ok(&session, given.as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let reloading = app.clone();
    let result = tokio::task::spawn_blocking(move || reloading.catalog.reload()).await;
    let notice = match result {
        Ok(Ok(_)) => t.reloaded.to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => t.try_again.to_string(),
    };
    render_status(&app, t, &session, Some(notice))
}

#[derive(Deserialize)]
struct AccountForm {
    csrf: String,
    group: String,
    tier: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    disabled: Option<String>,
    #[serde(default)]
    password: String,
}

/// Changes a user's group, tier, membership expiry and console access, and
/// (when given) sets a new password (closing their sessions) — through the
/// same services as the admin API.
pub async fn account(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    if !session.is_admin {
        return not_found();
    }
    let (t, _) = language(&headers, &Lang::default());
    let Ok(f) = form::<AccountForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&f.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let changed = async {
        // Everything is checked before anything is changed.
        let hashed = match f.password.is_empty() {
            true => None,
            false => {
                super::password::check(&f.password).map_err(ApiError::BadRequest)?;
                Some(
                    super::password::hash(f.password.clone())
                        .await
                        .map_err(|_| ApiError::Internal)?,
                )
            }
        };
        let login = match app.store.get_user(id).await {
            Ok(user) => app.store.login_of(&user.name).await?,
            Err(e) => return Err(ApiError::from(e)),
        };
        let email = app.store.email_of(id).await?;
        let expires = match f.expires.trim() {
            "" => Some(None),
            text => Some(Some(crate::time::parse_timestamp(text).ok_or_else(
                || ApiError::BadRequest("The expiry must be a date.".into()),
            )?)),
        };
        let update = store::UserUpdate {
            group_name: Some(f.group.trim().to_string()),
            tier: Some(f.tier.trim().to_string()),
            membership_expires_at: expires,
            ..store::UserUpdate::default()
        };
        crate::accounts::update_user(&app.store, id, &update).await?;
        let disabled = f.disabled.as_deref() == Some("true");
        // An admin does not lock themselves out here.
        let disabled = disabled && id != session.user.id;
        app.store
            .set_console_access(id, email.as_deref(), login.is_admin, disabled)
            .await?;
        if let Some(hashed) = hashed {
            app.store.set_password(id, Some(&hashed), None).await?;
        }
        Ok::<_, ApiError>(())
    }
    .await;
    match changed {
        Ok(()) => {
            app.auth_cache.clear();
            Redirect::to(&format!("/console/admin/users/{id}")).into_response()
        }
        Err(ApiError::NotFound(_)) => not_found(),
        Err(e) => render_user(&app, t, &session, id, Some(e.to_string())).await,
    }
}
