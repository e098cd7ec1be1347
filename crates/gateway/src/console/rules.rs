//! The console's override-rules page: the user's rules in running order,
//! each shown as its JSON and enabled or disabled here (CSRF-checked; the
//! rule API makes and edits them). Another user's rule is 404.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{csrf_ok, Member};
use super::{form, language, page, Lang, Texts};
use crate::state::App;

/// Most rules the page lists.
const MOST: i64 = 200;

struct RuleRow {
    id: String,
    name: String,
    priority: i64,
    enabled: bool,
    json: String,
}

#[derive(Template)]
#[template(path = "console/rules.html")]
struct RulesPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    rules: Vec<RuleRow>,
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    let filter = store::RuleFilter {
        limit: MOST,
        ..store::RuleFilter::default()
    };
    let rules = match app.store.list_rules(session.user.id, &filter).await {
        Ok((rules, _)) => rules,
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    };
    let html = RulesPage {
        t,
        title: t.rules,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        rules: rules
            .iter()
            .map(|r| RuleRow {
                id: r.id.clone(),
                name: r.name.clone(),
                priority: r.priority,
                enabled: r.enabled,
                json: serde_json::json!({
                    "conditions": r.rule.get("conditions"),
                    "actions": r.rule.get("actions"),
                })
                .to_string(),
            })
            .collect(),
    }
    .render();
    page(html, &remember.into_iter().collect::<Vec<_>>())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Enables a disabled rule of the user's, or disables an enabled one.
pub async fn toggle(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let given = form::<CsrfForm>(&body).ok().map(|f| f.csrf);
    if !csrf_ok(&session, given.as_deref()) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let owner = session.user.id;
    let rule = match app.store.get_rule(owner, &id).await {
        Ok(rule) => rule,
        Err(_) => return (StatusCode::NOT_FOUND, "Not found").into_response(),
    };
    match app
        .store
        .toggle_rules(owner, std::slice::from_ref(&rule.id), !rule.enabled)
        .await
    {
        Ok(_) => {
            app.rule_book.forget(owner);
            Redirect::to("/console/rules").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    }
}
