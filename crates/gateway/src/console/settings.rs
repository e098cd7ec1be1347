//! The console's settings page: the user's password (the current one
//! asked; a change closes every other session) and their open sessions,
//! each of which they may close.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{csrf_ok, Member};
use super::{form, language, page, password, posted_csrf, Lang, Texts};
use crate::state::App;

struct SessionRow {
    id: String,
    created: String,
    seen: String,
    ip: String,
    agent: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/settings.html")]
struct SettingsPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    notice: Option<String>,
    sessions: Vec<SessionRow>,
}

pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    render(&app, t, &session, None, None, remember).await
}

async fn render(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    error: Option<String>,
    notice: Option<String>,
    remember: Option<String>,
) -> Response {
    let sessions = match app.store.sessions_of(session.user.id).await {
        Ok(sessions) => sessions,
        Err(e) => {
            tracing::error!(error = %e, "sessions could not be listed");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let html = SettingsPage {
        t,
        title: t.settings,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        error,
        notice,
        sessions: sessions
            .into_iter()
            .map(|(id, created, seen, ip, agent)| SessionRow {
                current: id == session.id_hash,
                id,
                created: crate::time::format_ms(created),
                seen: crate::time::format_ms(seen),
                ip,
                agent,
            })
            .collect(),
    }
    .render();
    let mut response = page(html, &remember.into_iter().collect::<Vec<_>>());
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
}

pub async fn change_password(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(form) = form::<PasswordForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let current = match app.store.login_of(&session.user.name).await {
        Ok(login) => login.password_hash.unwrap_or_default(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    };
    if !password::verify(form.current, current).await {
        return render(&app, t, &session, Some(t.wrong_password.into()), None, None).await;
    }
    if let Err(why) = password::check(&form.new) {
        return render(&app, t, &session, Some(why), None, None).await;
    }
    let changed = match password::hash(form.new).await {
        Ok(hash) => {
            app.store
                .set_password(session.user.id, Some(&hash), Some(&session.id_hash))
                .await
        }
        Err(e) => {
            tracing::error!(error = %e, "a password could not be hashed");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    match changed {
        Ok(()) => {
            render(
                &app,
                t,
                &session,
                None,
                Some(t.password_changed.into()),
                None,
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, "a password could not be saved");
            (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response()
        }
    }
}

/// Closes one of the user's own sessions.
pub async fn close_session(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let given = posted_csrf(&body);
    if !csrf_ok(&session, given.as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    match app.store.close_session(session.user.id, &id).await {
        Ok(true) => Redirect::to("/console/settings").into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, "Not found").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    }
}
