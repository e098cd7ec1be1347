//! OhMyGPT's override-rule API for a user's own rules (an admin-capable
//! key; `POST`, JSON or form bodies; the `{statusCode, message, data}`
//! envelope). OhMyGPT's exact paths are not public: they are all in
//! [`ROUTES`], to rename cheaply, and listed in the README.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};
use store::{RuleFilter, StoredRule};

use super::body::{field_bool, field_str, parse_fields};
use super::ohmygpt::{admin_principal, envelope};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::overrides::RuleSet;
use crate::secrets::hash_secret;
use crate::state::App;

const BASE: &str = "/api/v1/user/override-rules";
/// Most rules a user holds.
pub(crate) const MAX_RULES: i64 = 200;

/// Every route, by its last path segment.
const ROUTES: [&str; 14] = [
    "create",
    "update",
    "delete",
    "get",
    "list",
    "batch-toggle",
    "copy",
    "test",
    "stats",
    "restrictions",
    "check-name",
    "batch-delete",
    "export",
    "import",
];

pub fn routes() -> Router<App> {
    ROUTES.iter().fold(Router::new(), |router, name| {
        let name: &'static str = name;
        router.route(
            &format!("{BASE}/{name}"),
            post(
                move |State(app): State<App>, headers: HeaderMap, body: Bytes| async move {
                    envelope(handle(&app, name, &headers, &body).await)
                },
            ),
        )
    })
}

async fn handle(
    app: &App,
    route: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Value), ApiError> {
    let principal = admin_principal(app, headers).await?;
    let fields = parse_fields(headers, body)?;
    let owner = principal.user.id;
    let store = &app.store;
    let done = |message: &str, data: Value| Ok((message.to_string(), data));
    let result = match route {
        "create" => {
            let stored = new_rule(app, &principal, &fields).await?;
            store
                .insert_rules(std::slice::from_ref(&stored), MAX_RULES)
                .await?;
            done("Rule created", rule_json(&stored))
        }
        "update" => {
            let id = rule_id(&fields)?;
            let old = store.get_rule(owner, &id).await?;
            let mut merged = old.rule.as_object().cloned().unwrap_or_default();
            for (k, v) in &fields {
                if k != "ruleId" {
                    merged.insert(k.clone(), v.clone());
                }
            }
            let mut stored = new_rule(app, &principal, &merged).await?;
            stored.id = old.id;
            stored.created_at = old.created_at;
            stored.rule["ruleId"] = json!(stored.id);
            done(
                "Rule updated",
                rule_json(&store.update_rule(&stored).await?),
            )
        }
        "delete" => {
            let id = rule_id(&fields)?;
            if store.delete_rules(owner, &[id]).await? == 0 {
                return Err(ApiError::NotFound("Rule".into()));
            }
            done("Rule deleted", Value::Null)
        }
        "batch-delete" => {
            let ids = rule_ids(&fields)?;
            done(
                "Rules deleted",
                json!({"deleted": store.delete_rules(owner, &ids).await?}),
            )
        }
        "get" => done(
            "OK",
            rule_json(&store.get_rule(owner, &rule_id(&fields)?).await?),
        ),
        "list" => {
            let page = number(&fields, "page")?.unwrap_or(1).max(1);
            let size = number(&fields, "pageSize")?.unwrap_or(20).clamp(1, 100);
            let filter = RuleFilter {
                enabled: field_bool(&fields, "enabled")?,
                api_type: field_str(&fields, "apiType"),
                name: field_str(&fields, "ruleName"),
                offset: (page - 1) * size,
                limit: size,
            };
            let (rules, total) = store.list_rules(owner, &filter).await?;
            done(
                "OK",
                json!({"rules": rules.iter().map(rule_json).collect::<Vec<_>>(),
                       "total": total, "page": page, "pageSize": size}),
            )
        }
        "batch-toggle" => {
            let enabled = field_bool(&fields, "enabled")?
                .ok_or_else(|| ApiError::BadRequest("`enabled` is required.".into()))?;
            let changed = store
                .toggle_rules(owner, &rule_ids(&fields)?, enabled)
                .await?;
            done("Rules updated", json!({"updated": changed}))
        }
        "copy" => {
            let old = store.get_rule(owner, &rule_id(&fields)?).await?;
            let mut rule = old.rule.as_object().cloned().unwrap_or_default();
            let name =
                field_str(&fields, "ruleName").unwrap_or_else(|| format!("{} (copy)", old.name));
            rule.insert("ruleName".into(), json!(name));
            let stored = new_rule(app, &principal, &rule).await?;
            store
                .insert_rules(std::slice::from_ref(&stored), MAX_RULES)
                .await?;
            done("Rule copied", rule_json(&stored))
        }
        "check-name" => {
            let name = field_str(&fields, "ruleName")
                .ok_or_else(|| ApiError::BadRequest("`ruleName` is required.".into()))?;
            let filter = RuleFilter {
                name: Some(name.clone()),
                limit: MAX_RULES,
                ..RuleFilter::default()
            };
            let (rules, _) = store.list_rules(owner, &filter).await?;
            let taken = rules.iter().any(|r| r.name == name);
            done("OK", json!({"available": !taken}))
        }
        "restrictions" => {
            let r = &app.rule_book.restrictions;
            done(
                "OK",
                json!({"maxRules": MAX_RULES, "maxConditions": r.max_conditions,
                       "maxActions": r.max_actions, "maxValueBytes": r.max_value_bytes,
                       "maxRegexBytes": r.max_regex_bytes, "reservedFields": r.reserved_fields}),
            )
        }
        "stats" => {
            // This instance's latest counts first (others write theirs
            // every minute).
            app.rule_book.flush_hits(store).await;
            let hits = store.rule_hits(owner).await?;
            done(
                "OK",
                Value::Array(
                    hits.iter()
                        .map(|h| {
                            json!({"ruleId": h.rule_id, "hits": h.hits,
                                        "lastHitAt": h.last_hit_at.map(crate::time::format_ms)})
                        })
                        .collect(),
                ),
            )
        }
        "export" => {
            let filter = RuleFilter {
                limit: MAX_RULES,
                ..RuleFilter::default()
            };
            let (rules, _) = store.list_rules(owner, &filter).await?;
            done(
                "OK",
                Value::Array(rules.iter().map(|r| r.rule.clone()).collect()),
            )
        }
        "import" => {
            let list = match fields.get("rules") {
                Some(Value::Array(list)) => list.clone(),
                _ => {
                    return Err(ApiError::BadRequest(
                        "`rules` must be a list of rules.".into(),
                    ))
                }
            };
            let mut stored = Vec::with_capacity(list.len());
            for (i, rule) in list.iter().enumerate() {
                let Value::Object(rule) = rule else {
                    return Err(ApiError::BadRequest(format!("rules[{i}] is not a rule.")));
                };
                let mut one = new_rule(app, &principal, rule)
                    .await
                    .map_err(|e| ApiError::BadRequest(format!("rules[{i}]: {e}")))?;
                one.created_at += i as i64;
                stored.push(one);
            }
            let filter = RuleFilter {
                limit: MAX_RULES,
                ..RuleFilter::default()
            };
            let (existing, _) = store.list_rules(owner, &filter).await?;
            dedupe_names(existing.into_iter().map(|r| r.name), &mut stored);
            store.insert_rules(&stored, MAX_RULES).await?;
            done("Rules imported", json!({"imported": stored.len()}))
        }
        "test" => {
            let sample = match fields.get("request") {
                Some(Value::Object(sample)) => Value::Object(sample.clone()),
                _ => {
                    return Err(ApiError::BadRequest(
                        "`request` must be a request body.".into(),
                    ))
                }
            };
            let api_type =
                field_str(&fields, "apiType").unwrap_or_else(|| "chat.completions".into());
            let rules = match fields.get("rules") {
                // A given rule set, checked as if saved.
                Some(Value::Array(list)) => {
                    let mut compiled = Vec::new();
                    for (i, rule) in list.iter().enumerate() {
                        let Value::Object(rule) = rule else {
                            return Err(ApiError::BadRequest(format!("rules[{i}] is not a rule.")));
                        };
                        let stored = new_rule(app, &principal, rule).await?;
                        compiled.push(compile(app, &stored)?);
                    }
                    rules::sort(&mut compiled);
                    Arc::new(RuleSet {
                        before_routing: compiled,
                        per_channel: Vec::new(),
                    })
                }
                _ => app.rule_book.rules_of(store, owner).await?,
            };
            let mut body = sample;
            let model = body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let request = rules::Request {
                api_type: &api_type,
                key_id: &principal.key.id,
                model: &model,
                channel: None,
                group: &principal.user.group_name,
                user: owner,
            };
            let outcome = rules::apply(&rules.before_routing, &request, &mut body);
            let headers: Vec<Value> = outcome
                .headers
                .iter()
                .map(|h| match h {
                    rules::HeaderChange::Set(n, v) => json!({"set": n, "value": v}),
                    rules::HeaderChange::Delete(n) => json!({"delete": n}),
                })
                .collect();
            done(
                "OK",
                json!({"request": body, "headers": headers, "matched": outcome.matched,
                       "blocked": outcome.blocked.map(|(s, m)| json!({"status": s, "message": m}))}),
            )
        }
        _ => Err(ApiError::NotFound("Route".into())),
    };
    if matches!(
        route,
        "create" | "update" | "delete" | "batch-delete" | "batch-toggle" | "copy" | "import"
    ) {
        app.rule_book.forget(owner);
    }
    result
}

/// A rule from a client's fields: parsed, its key given in clear turned into
/// the key's id, checked and compiled as it will run.
async fn new_rule(
    app: &App,
    principal: &Principal,
    fields: &Map<String, Value>,
) -> Result<StoredRule, ApiError> {
    parse_rule(app, Owner::User(principal.user.id), fields).await
}

/// Whose a rule is: a user's (its conditions name only that user's keys, and
/// none of the operator's fields), or the operator's.
#[derive(Clone, Copy)]
pub(crate) enum Owner {
    /// The user's id.
    User(i64),
    Operator,
}

/// A rule from a client's fields: parsed, its key given in clear turned into
/// the key's id, checked and compiled as it will run.
pub(crate) async fn parse_rule(
    app: &App,
    owner: Owner,
    fields: &Map<String, Value>,
) -> Result<StoredRule, ApiError> {
    let mut object = Map::new();
    for (k, v) in fields {
        // Form bodies carry lists as JSON text.
        let v = match (k.as_str(), v) {
            ("conditions" | "actions", Value::String(text)) => serde_json::from_str(text)
                .map_err(|e| ApiError::BadRequest(format!("`{k}`: {e}")))?,
            _ => v.clone(),
        };
        if k != "ruleId" {
            object.insert(k.clone(), v);
        }
    }
    let mut rule: rules::Rule = serde_json::from_value(Value::Object(object))
        .map_err(|e| ApiError::BadRequest(format!("not a rule: {e}")))?;
    for condition in &mut rule.conditions {
        let Owner::User(user_id) = owner else {
            continue;
        };
        if condition.channel.is_some() || condition.group.is_some() || condition.user.is_some() {
            return Err(ApiError::BadRequest(
                "`channel`, `group` and `user` conditions are the operator's.".into(),
            ));
        }
        if let Some(key) = condition.secret_key.take() {
            let key = key.trim();
            let found = app
                .store
                .resolve_user_key(user_id, key, &hash_secret(key))
                .await
                .map_err(|_| ApiError::BadRequest("`secretKey` is not one of your keys.".into()))?;
            condition.secret_key = Some(found.id);
        }
    }
    let catalog = app.catalog.load();
    for channel in rule.conditions.iter().filter_map(|c| c.channel.as_deref()) {
        if !catalog.providers.contains_key(channel) {
            return Err(ApiError::BadRequest(format!(
                "`channel`: no channel (provider) is named {channel:?}."
            )));
        }
    }
    let owner_id = match owner {
        Owner::User(user_id) => user_id,
        Owner::Operator => store::OPERATOR,
    };
    let now = store::now_ms();
    // Opaque ids; an update keeps the rule's own (set by the caller).
    let id = format!("rule_{}", hex::encode(rand::random::<[u8; 12]>()));
    rule.rule_id = id.clone();
    let mut api_types: Vec<&str> = rule
        .conditions
        .iter()
        .filter_map(|c| c.api_type.as_deref())
        .collect();
    api_types.dedup();
    let stored = StoredRule {
        id,
        owner_id,
        name: rule.rule_name.clone(),
        api_types: api_types.join(","),
        priority: rule.priority,
        enabled: rule.enabled,
        rule: serde_json::to_value(&rule).map_err(|_| ApiError::Internal)?,
        created_at: now,
        updated_at: now,
    };
    compile(app, &stored)?;
    Ok(stored)
}

fn compile(app: &App, stored: &StoredRule) -> Result<rules::Compiled, ApiError> {
    let rule: rules::Rule =
        serde_json::from_value(stored.rule.clone()).map_err(|_| ApiError::Internal)?;
    rules::Compiled::new(rule, stored.created_at, &app.rule_book.restrictions)
        .map_err(|e| ApiError::BadRequest(e.0))
}

/// Names made unique within an import: `name`, `name (2)`, …
/// Makes the names of imported `rules` unique, among themselves and beside
/// the `taken` ones: "name (2)", "name (3)"…
fn dedupe_names(taken: impl Iterator<Item = String>, rules: &mut [StoredRule]) {
    let mut seen: std::collections::HashSet<String> = taken.collect();
    for r in rules {
        let mut name = r.name.clone();
        let mut n = 2;
        while !seen.insert(name.clone()) {
            name = format!("{} ({n})", r.name);
            n += 1;
        }
        if name != r.name {
            r.name = name.clone();
            r.rule["ruleName"] = json!(name);
        }
    }
}

pub(crate) fn rule_json(stored: &StoredRule) -> Value {
    let mut rule = stored.rule.clone();
    rule["ruleId"] = json!(stored.id);
    rule["createdAt"] = json!(crate::time::format_ms(stored.created_at));
    rule["updatedAt"] = json!(crate::time::format_ms(stored.updated_at));
    rule
}

fn rule_id(fields: &Map<String, Value>) -> Result<String, ApiError> {
    field_str(fields, "ruleId")
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("`ruleId` is required.".into()))
}

fn rule_ids(fields: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match fields.get("ruleIds") {
        Some(Value::Array(ids)) => Ok(ids
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()),
        _ => Err(ApiError::BadRequest(
            "`ruleIds` must be a list of rule ids.".into(),
        )),
    }
}

fn number(fields: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match field_str(fields, name) {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("`{name}` must be a whole number."))),
    }
}
