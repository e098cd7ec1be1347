//! The operator's override rules (`/admin/rules`, the admin token): the same
//! rule object as users', with conditions on the user's group and on one
//! user, and on the channel (those run on each channel's upstream call);
//! they run after the user's own, so they have the last word. The listing
//! gives each rule's hits.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, patch};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use store::{RuleFilter, RuleHits, OPERATOR};

use super::body::parse_json;
use super::override_rules::{parse_rule, rule_json, Owner};
use super::respond;
use crate::api::caller::authenticate_admin;
use crate::error::ApiError;
use crate::state::App;

/// Most operator rules.
const MAX_RULES: i64 = 1_000;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/rules", get(list).post(create))
        .route("/admin/rules/{id}", patch(update).delete(remove).get(show))
}

async fn list(State(app): State<App>, headers: HeaderMap) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let filter = RuleFilter {
                limit: MAX_RULES,
                ..RuleFilter::default()
            };
            let (rules, total) = app.store.list_rules(OPERATOR, &filter).await?;
            // This instance's latest hit counts first (others write theirs
            // every minute).
            app.rule_book.flush_hits(&app.store).await;
            let hits: HashMap<String, RuleHits> = app
                .store
                .rule_hits(OPERATOR)
                .await?
                .into_iter()
                .map(|h| (h.rule_id.clone(), h))
                .collect();
            let data: Vec<Value> = rules
                .iter()
                .map(|rule| {
                    let mut json = rule_json(rule);
                    let hit = hits.get(&rule.id);
                    json["hits"] = json!(hit.map_or(0, |h| h.hits));
                    json["lastHitAt"] =
                        json!(hit.and_then(|h| h.last_hit_at).map(crate::time::format_ms));
                    json
                })
                .collect();
            Ok(Json(
                json!({"object": "list", "data": data, "total": total}),
            ))
        }
        .await,
    )
}

async fn show(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            Ok(Json(rule_json(&app.store.get_rule(OPERATOR, &id).await?)))
        }
        .await,
    )
}

async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let fields: Map<String, Value> = parse_json(&body)?;
            let stored = parse_rule(&app, Owner::Operator, &fields).await?;
            app.store
                .insert_rules(std::slice::from_ref(&stored), MAX_RULES)
                .await?;
            app.rule_book.forget(OPERATOR);
            Ok(Json(rule_json(&stored)))
        }
        .await,
    )
}

async fn update(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            let changes: Map<String, Value> = parse_json(&body)?;
            let old = app.store.get_rule(OPERATOR, &id).await?;
            let mut merged = old.rule.as_object().cloned().unwrap_or_default();
            merged.extend(changes);
            let mut stored = parse_rule(&app, Owner::Operator, &merged).await?;
            stored.id = old.id;
            stored.created_at = old.created_at;
            stored.rule["ruleId"] = json!(stored.id);
            let updated = app.store.update_rule(&stored).await?;
            app.rule_book.forget(OPERATOR);
            Ok(Json(rule_json(&updated)))
        }
        .await,
    )
}

async fn remove(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    respond(
        async {
            authenticate_admin(&app, &headers)?;
            if app.store.delete_rules(OPERATOR, &[id]).await? == 0 {
                return Err(ApiError::NotFound("Rule".into()));
            }
            app.rule_book.forget(OPERATOR);
            Ok(Json(json!({"deleted": true})))
        }
        .await,
    )
}
