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
use super::{form, language, page, Lang, Texts};
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
    let all = match app.store.list_users().await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %e, "users could not be listed");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    let q = search.q.trim().to_lowercase();
    let html = UsersPage {
        t,
        title: t.users,
        user_name: Some(session.user.name.clone()),
        is_admin: true,
        csrf: session.csrf_token.clone(),
        q: search.q.clone(),
        users: all
            .iter()
            .filter(|u| q.is_empty() || u.name.to_lowercase().contains(&q))
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
    page(html, &remember.into_iter().collect::<Vec<_>>())
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
    let (user, ledger) = match (app.store.get_user(id).await, app.store.ledger(id, 50).await) {
        (Ok(user), Ok(ledger)) => (user, ledger),
        (Err(store::StoreError::NotFound(_)), _) => return not_found(),
        _ => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    };
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

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
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
    let given = form::<CsrfForm>(&body).ok().map(|f| f.csrf);
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
