//! The console's override-rules page: the user's rules in running order,
//! each shown as its JSON; made, edited (as the rule API's JSON, checked
//! and compiled by the same code), enabled or disabled and deleted here,
//! every change CSRF-checked. Another user's rule is 404.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::session::{csrf_ok, Member};
use super::{form, language, page, posted_csrf, Lang, Texts};
use crate::api::override_rules::{parse_rule, Owner, MAX_RULES};
use crate::error::ApiError;
use crate::state::App;

/// Most rules the page lists.
const MOST: i64 = 200;

struct RuleRow {
    id: String,
    name: String,
    priority: i64,
    enabled: bool,
    json: String,
    /// The whole rule, for its edit form.
    editable: String,
}

#[derive(Template)]
#[template(path = "console/rules.html")]
struct RulesPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    error: Option<String>,
    /// The new-rule form's text.
    draft: String,
    rules: Vec<RuleRow>,
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    render(&app, t, &session, None, String::new(), remember).await
}

async fn render(
    app: &App,
    t: &'static Texts,
    session: &store::Session,
    error: Option<String>,
    draft: String,
    remember: Option<String>,
) -> Response {
    let filter = store::RuleFilter {
        limit: MOST,
        ..store::RuleFilter::default()
    };
    let rules = match app.store.list_rules(session.user.id, &filter).await {
        Ok((rules, _)) => rules,
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    };
    let status = match error {
        Some(_) => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let html = RulesPage {
        t,
        title: t.rules,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        error,
        draft,
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
                editable: editable(&r.rule),
            })
            .collect(),
    }
    .render();
    let mut response = page(html, &remember.into_iter().collect::<Vec<_>>());
    *response.status_mut() = status;
    response
}

/// A stored rule as its edit form shows it: the rule API's JSON, without
/// its id (the form's address names it).
fn editable(rule: &Value) -> String {
    let mut rule = rule.clone();
    if let Some(object) = rule.as_object_mut() {
        object.remove("ruleId");
    }
    serde_json::to_string_pretty(&rule).unwrap_or_default()
}

#[derive(Deserialize)]
struct RuleForm {
    csrf: String,
    #[serde(default)]
    rule: String,
}

/// The form's rule, parsed, checked and compiled as the rule API does.
async fn rule_of(app: &App, owner: i64, text: &str) -> Result<store::StoredRule, ApiError> {
    let fields = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(ApiError::BadRequest("A rule is a JSON object.".into())),
        Err(e) => return Err(ApiError::BadRequest(format!("Not JSON: {e}"))),
    };
    parse_rule(app, Owner::User(owner), &fields).await
}

/// `POST /console/rules`: a new rule from its JSON.
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(f) = form::<RuleForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&f.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let owner = session.user.id;
    let made = async {
        let stored = rule_of(&app, owner, &f.rule).await?;
        app.store
            .insert_rules(std::slice::from_ref(&stored), MAX_RULES)
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match made {
        Ok(()) => {
            app.rule_book.forget(owner);
            Redirect::to("/console/rules").into_response()
        }
        Err(e) => render(&app, t, &session, Some(e.to_string()), f.rule, None).await,
    }
}

/// `POST /console/rules/{id}/edit`: the rule replaced by the form's JSON
/// (its id and creation time kept).
pub async fn edit(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Member(session): Member,
    body: Bytes,
) -> Response {
    let (t, _) = language(&headers, &Lang::default());
    let Ok(f) = form::<RuleForm>(&body) else {
        return (StatusCode::BAD_REQUEST, t.bad_form).into_response();
    };
    if !csrf_ok(&session, Some(&f.csrf)) {
        return (StatusCode::FORBIDDEN, t.bad_form).into_response();
    }
    let owner = session.user.id;
    let Ok(old) = app.store.get_rule(owner, &id).await else {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    };
    let edited = async {
        let mut stored = rule_of(&app, owner, &f.rule).await?;
        stored.id = old.id;
        stored.created_at = old.created_at;
        stored.rule["ruleId"] = Value::String(stored.id.clone());
        app.store.update_rule(&stored).await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match edited {
        Ok(()) => {
            app.rule_book.forget(owner);
            Redirect::to("/console/rules").into_response()
        }
        Err(e) => render(&app, t, &session, Some(e.to_string()), String::new(), None).await,
    }
}

/// `POST /console/rules/{id}/delete`.
pub async fn delete(
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
    let owner = session.user.id;
    match app.store.delete_rules(owner, &[id]).await {
        Ok(0) => (StatusCode::NOT_FOUND, "Not found").into_response(),
        Ok(_) => {
            app.rule_book.forget(owner);
            Redirect::to("/console/rules").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, t.try_again).into_response(),
    }
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
    let given = posted_csrf(&body);
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
