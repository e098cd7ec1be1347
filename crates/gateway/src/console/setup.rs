//! The console's first admin account, made through a one-time link printed
//! at start while no one can log in to the admin pages. The link's token
//! is kept only as its hash, and is new at each start until it is used.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::logins::{self, NewLogin};
use super::{form, language, page, Lang, Texts};
use crate::secrets::{hash_secret, hashes_equal, new_admin_token};
use crate::state::App;

const SETTING: &str = "console_setup_token";

/// A new setup token when no console admin exists (its hash stored), else
/// `None`.
pub async fn token_at_start(store: &store::Store) -> Result<Option<String>, store::StoreError> {
    if store.console_admin_exists().await? {
        store.delete_setting(SETTING).await?;
        return Ok(None);
    }
    let token = new_admin_token();
    store.replace_setting(SETTING, &hash_secret(&token)).await?;
    Ok(Some(token))
}

/// The token is the one printed, and no console admin exists yet (one
/// made otherwise meanwhile, e.g. with the CLI, ends the link).
async fn valid(app: &App, token: &str) -> bool {
    let matches = match app.store.get_setting(SETTING).await {
        Ok(Some(hash)) => !token.is_empty() && hashes_equal(&hash, &hash_secret(token)),
        _ => false,
    };
    matches && matches!(app.store.console_admin_exists().await, Ok(false))
}

#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    token: String,
    name: String,
}

#[derive(Deserialize, Default)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
    lang: Option<String>,
}

fn render(t: &'static Texts, token: String, name: String, error: Option<String>) -> Response {
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let html = SetupPage {
        t,
        title: t.setup,
        user_name: None,
        is_admin: false,
        csrf: String::new(),
        error,
        token,
        name,
    }
    .render();
    let mut response = page(html, &[]);
    *response.status_mut() = status;
    response
}

pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    let (t, _) = language(
        &headers,
        &Lang {
            lang: query.lang.clone(),
        },
    );
    if !valid(&app, &query.token).await {
        return (StatusCode::NOT_FOUND, t.setup_used).into_response();
    }
    render(t, query.token, String::new(), None)
}

#[derive(Deserialize)]
struct SetupForm {
    token: String,
    name: String,
    #[serde(default)]
    email: String,
    password: String,
}

pub async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(f) = form::<SetupForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    // The token is the form's proof of origin (no session yet).
    if !valid(&app, &f.token).await {
        return (StatusCode::NOT_FOUND, t.setup_used).into_response();
    }
    let new = NewLogin {
        name: &f.name,
        email: &f.email,
        password: &f.password,
        group: "default",
        is_admin: true,
    };
    let made = async {
        logins::create(&app, t, new).await?;
        app.store
            .delete_setting(SETTING)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match made {
        Ok(()) => Redirect::to("/console/login").into_response(),
        Err(e) => render(t, f.token, f.name.clone(), Some(e)),
    }
}
