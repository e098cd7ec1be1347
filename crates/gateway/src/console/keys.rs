//! The console's API keys page: the user's keys (masked), one created and
//! shown once, edited (remark, spending limit, allowed models, expiry),
//! disabled or enabled, deleted — through the same services
//! as the key APIs (`crate::accounts`), every change CSRF-checked and the
//! key the user's own (another's is 404).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{csrf_ok, Member};
use super::{form, language, page, posted_csrf, Lang, Texts};
use crate::accounts::{create_key, update_key, KeyOptions};
use crate::error::ApiError;
use crate::money::{format_usd, parse_amount, Unit};
use crate::state::App;

/// One key as listed.
struct Row {
    id: String,
    masked: String,
    remark: String,
    models: String,
    spent: String,
    expires: String,
    disabled: bool,
    /// The edit form's values.
    max_fee: String,
    expiry_date: String,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    new_secret: Option<String>,
    keys: Vec<Row>,
}

pub async fn list(
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
    new_secret: Option<String>,
    remember: Option<String>,
) -> Response {
    let keys = match app.store.list_keys(session.user.id).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::error!(error = %e, "keys could not be listed");
            return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response();
        }
    };
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let html = KeysPage {
        t,
        title: t.api_keys,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        error,
        new_secret,
        keys: keys
            .iter()
            .map(|k| Row {
                id: k.id.clone(),
                masked: format!("{}…{}", k.key_prefix, k.key_last4),
                remark: k.remark.clone(),
                models: k.permissions.join(", "),
                spent: match k.max_fee {
                    0 => format_usd(k.used_fee),
                    most => format!("{} / {}", format_usd(k.used_fee), format_usd(most)),
                },
                expires: k.expired_at.map_or(t.never.to_string(), |at| {
                    crate::time::format_ms(at)[..10].to_string()
                }),
                disabled: k.is_disabled,
                max_fee: match k.max_fee {
                    0 => String::new(),
                    most => format_usd(most),
                },
                expiry_date: k.expired_at.map_or(String::new(), |at| {
                    crate::time::format_ms(at)[..10].to_string()
                }),
            })
            .collect(),
    }
    .render();
    let mut response = page(html, &remember.into_iter().collect::<Vec<_>>());
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct NewKeyForm {
    csrf: String,
    #[serde(default)]
    remark: String,
    #[serde(default)]
    max_fee: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    expires: String,
}

pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(form) = form::<NewKeyForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let options = key_fields(&form).map(|(remark, permissions, max_fee, expired_at)| KeyOptions {
        remark,
        permissions,
        max_fee,
        expired_at,
        ..KeyOptions::default()
    });
    let created = match options {
        Ok(options) => create_key(&app.store, &app.config, session.user.id, options).await,
        Err(e) => Err(e),
    };
    match created {
        Ok((_, secret)) => render(&app, t, &session, None, Some(secret), None).await,
        Err(e) => render(&app, t, &session, Some(e.to_string()), None, None).await,
    }
}

/// What the create and edit forms give: remark, allowed models, spending
/// limit (nano-USD, 0 = none) and expiry (Unix ms).
fn key_fields(form: &NewKeyForm) -> Result<(String, Vec<String>, i64, Option<i64>), ApiError> {
    let max_fee = match form.max_fee.trim() {
        "" => 0,
        text => parse_amount("max_fee", text, Unit::Usd, false)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
    };
    let expired_at = match form.expires.trim() {
        "" => None,
        text => Some(
            crate::time::parse_timestamp(text)
                .ok_or_else(|| ApiError::BadRequest("The expiry must be a date.".into()))?,
        ),
    };
    let models = form
        .models
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    Ok((form.remark.trim().to_string(), models, max_fee, expired_at))
}

/// `POST /console/keys/{id}/edit`: the key's remark, spending limit,
/// allowed models and expiry, as the form gives them (empty clears).
pub async fn edit(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(form) = form::<NewKeyForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&form.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    match app.store.get_key(&id).await {
        Ok(key) if key.user_id == session.user.id && key.grant_id.is_none() => {}
        _ => return (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
    let updated = match key_fields(&form) {
        Ok((remark, permissions, max_fee, expired_at)) => {
            let update = store::KeyUpdate {
                remark: Some(remark),
                permissions: Some(permissions),
                max_fee: Some(max_fee),
                expired_at: Some(expired_at),
                ..store::KeyUpdate::default()
            };
            update_key(&app.store, &id, &update).await
        }
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => {
            app.auth_cache.clear();
            Redirect::to("/console/keys").into_response()
        }
        Err(e) => render(&app, t, &session, Some(e.to_string()), None, None).await,
    }
}

/// Disables an enabled key, or enables a disabled one.
pub async fn toggle(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    change(&app, &headers, &session, &id, &body, Change::Toggle).await
}

pub async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    change(&app, &headers, &session, &id, &body, Change::Delete).await
}

enum Change {
    Toggle,
    Delete,
}

async fn change(
    app: &App,
    headers: &HeaderMap,
    session: &store::Session,
    id: &str,
    body: &[u8],
    change: Change,
) -> Response {
    let (t, _) = language(headers, &Lang::default());
    let given = posted_csrf(body);
    if !csrf_ok(session, given.as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    // Another user's key is as missing as one that does not exist.
    let key = match app.store.get_key(id).await {
        Ok(key) if key.user_id == session.user.id && key.grant_id.is_none() => key,
        _ => return (StatusCode::NOT_FOUND, "Not found").into_response(),
    };
    let done = match change {
        Change::Toggle => update_key(
            &app.store,
            &key.id,
            &store::KeyUpdate {
                is_disabled: Some(!key.is_disabled),
                ..store::KeyUpdate::default()
            },
        )
        .await
        .map(|_| ()),
        Change::Delete => app.store.delete_key(&key.id).await.map_err(ApiError::from),
    };
    match done {
        Ok(()) => {
            app.auth_cache.clear();
            Redirect::to("/console/keys").into_response()
        }
        Err(e) => render(app, t, session, Some(e.to_string()), None, None).await,
    }
}
