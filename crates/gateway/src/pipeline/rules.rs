//! Step 2a: override rules, before anything else looks at the request. The
//! user's rules run first, then the operator's (which therefore have the
//! last word); a rule may refuse the request, change its body (the model
//! included: routing then follows the new one) and the upstream's headers.
//! The operator's rules naming a channel run later, on each channel's call
//! as it is planned ([`UpstreamEdits`], applied by the failover step).
//! Without any rule in force the body is not even parsed.

use std::sync::Arc;

use bytes::Bytes;
use rules::{HeaderChange, Request};
use serde_json::Value;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::overrides::RuleSet;
use crate::providers::{Outgoing, Target};
use crate::state::App;

/// A request as the rules left it.
pub struct Rewritten {
    pub body: Bytes,
    /// What the rules still do to the upstream call of each channel tried.
    pub upstream: UpstreamEdits,
    /// The rules that applied, in order.
    pub matched: Vec<String>,
}

/// What the rules do to the upstream call planned for a channel, each time
/// one is (failover included): the header changes of the rules that ran
/// before routing, then the operator's rules that name a channel. Those see
/// and change the call as that channel receives it — its own protocol,
/// after translation, like new-api's per-channel parameter overrides — and
/// may refuse it there (the request then moves to the model's next
/// channel, or gets the refusal when none is left). A `model` they set is
/// the name sent upstream; the route and the price stay the routed
/// model's.
#[derive(Clone, Default)]
pub struct UpstreamEdits {
    headers: Vec<HeaderChange>,
    per_channel: Option<Arc<PerChannel>>,
}

/// The operator's per-channel rules, and what they test of the request.
struct PerChannel {
    app: App,
    rules: Arc<RuleSet>,
    api_type: &'static str,
    key_id: String,
    group: String,
    user: i64,
}

impl UpstreamEdits {
    /// Edits `call`, planned for `target`'s channel.
    pub fn apply(&self, target: &Target<'_>, call: &mut impl Outgoing) -> Result<(), ApiError> {
        let (body, forwarded) = call.parts();
        apply_headers(forwarded, &self.headers);
        let Some(per_channel) = &self.per_channel else {
            return Ok(());
        };
        let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
            return Ok(());
        };
        let request = Request {
            api_type: per_channel.api_type,
            key_id: &per_channel.key_id,
            model: &target.model.name,
            channel: Some(&target.provider.name),
            group: &per_channel.group,
            user: per_channel.user,
        };
        let held = Held::of(&doc);
        let outcome = rules::apply(&per_channel.rules.per_channel, &request, &mut doc);
        per_channel.app.rule_book.hit(&outcome.matched);
        if let Some((status, message)) = outcome.blocked {
            return Err(ApiError::Blocked { status, message });
        }
        if outcome.matched.is_empty() {
            return Ok(());
        }
        if held.restore(&mut doc) {
            tracing::warn!(rules = ?outcome.matched, channel = %target.provider.name,
                "channel rules raised an output cap or the choices above what was held; kept to it");
        }
        apply_headers(forwarded, &outcome.headers);
        *body = serde_json::to_vec(&doc).map_err(|_| ApiError::Internal)?;
        Ok(())
    }
}

/// The fields of an upstream call that its hold was computed from: the
/// output caps and the number of choices. Channel rules run once the
/// request is held, so they may lower these, or rename a cap, never raise
/// them (the charge would exceed the hold: the difference could not be
/// charged).
#[derive(Debug, PartialEq)]
struct Held {
    /// The highest output cap, if the call has one.
    cap: Option<u64>,
    choices: u64,
}

const CAPS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

impl Held {
    fn of(doc: &Value) -> Held {
        Held {
            cap: CAPS
                .iter()
                .filter_map(|field| doc.get(field).and_then(Value::as_u64))
                .max(),
            choices: doc.get("n").and_then(Value::as_u64).unwrap_or(1),
        }
    }

    /// Brings `doc` back within what was held; whether anything changed.
    fn restore(&self, doc: &mut Value) -> bool {
        let Some(fields) = doc.as_object_mut() else {
            return false;
        };
        let mut changed = false;
        // A value that is not a count is taken as beyond any.
        let mut keep_within = |field: &str, most: u64| {
            let value = fields.get(field).map(|v| v.as_u64().unwrap_or(u64::MAX));
            if value.is_some_and(|v| v > most) {
                fields.insert(field.into(), most.into());
                changed = true;
            }
        };
        if let Some(cap) = self.cap {
            for field in CAPS {
                keep_within(field, cap);
            }
        }
        keep_within("n", self.choices);
        changed
    }
}

/// Runs the rules in force for `principal` on a request of `api_type`.
pub async fn rewrite(
    app: &App,
    principal: &Principal,
    api_type: &'static str,
    body: Bytes,
) -> Result<Rewritten, ApiError> {
    let book = &app.rule_book;
    let user_rules = book.rules_of(&app.store, principal.user.id).await?;
    let operator_rules = book.rules_of(&app.store, store::OPERATOR).await?;
    let per_channel = (!operator_rules.per_channel.is_empty()).then(|| {
        Arc::new(PerChannel {
            app: app.clone(),
            rules: operator_rules.clone(),
            api_type,
            key_id: principal.key.id.clone(),
            group: principal.user.group_name.clone(),
            user: principal.user.id,
        })
    });
    let unchanged = |body| Rewritten {
        body,
        upstream: UpstreamEdits {
            headers: Vec::new(),
            per_channel: per_channel.clone(),
        },
        matched: Vec::new(),
    };
    if user_rules.before_routing.is_empty() && operator_rules.before_routing.is_empty() {
        return Ok(unchanged(body));
    }
    // A body that is not JSON is refused by the handler, in its own words.
    let Ok(mut doc) = serde_json::from_slice::<Value>(&body) else {
        return Ok(unchanged(body));
    };
    let model = |doc: &Value| {
        doc.get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let asked = model(&doc);
    let mut headers = Vec::new();
    let mut matched = Vec::new();
    for (rules, by_user) in [(&user_rules, true), (&operator_rules, false)] {
        let current = model(&doc);
        let request = Request {
            api_type,
            key_id: &principal.key.id,
            model: &current,
            channel: None,
            group: &principal.user.group_name,
            user: principal.user.id,
        };
        let outcome = rules::apply(&rules.before_routing, &request, &mut doc);
        if let Some((status, message)) = outcome.blocked {
            book.hit(&matched);
            book.hit(&outcome.matched);
            return Err(ApiError::Blocked { status, message });
        }
        let now = model(&doc);
        // A user's rule chooses only among the models the key may use.
        if by_user && now != asked && !principal.may_use(&now) {
            return Err(ApiError::ModelNotAllowed(now));
        }
        headers.extend(outcome.headers);
        matched.extend(outcome.matched);
    }
    book.hit(&matched);
    if matched.is_empty() {
        return Ok(unchanged(body));
    }
    let body = serde_json::to_vec(&doc).map_err(|_| ApiError::Internal)?;
    Ok(Rewritten {
        body: body.into(),
        upstream: UpstreamEdits {
            headers,
            per_channel,
        },
        matched,
    })
}

/// Applies the rules' header changes to an upstream call's headers (those a
/// rule may touch: the checks at save time keep credentials out of reach).
fn apply_headers(
    forwarded: &mut Vec<(axum::http::HeaderName, axum::http::HeaderValue)>,
    changes: &[HeaderChange],
) {
    for change in changes {
        match change {
            HeaderChange::Set(name, value) => {
                let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::from_bytes(name.as_bytes()),
                    axum::http::HeaderValue::from_str(value),
                ) else {
                    continue;
                };
                forwarded.retain(|(n, _)| *n != name);
                forwarded.push((name, value));
            }
            HeaderChange::Delete(name) => forwarded.retain(|(n, _)| n.as_str() != name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn channel_rules_may_lower_or_rename_what_was_held_never_raise_it() {
        let before = json!({"max_tokens": 50, "n": 2});
        let held = Held::of(&before);
        assert_eq!(
            held,
            Held {
                cap: Some(50),
                choices: 2
            }
        );
        let mut renamed = json!({"max_completion_tokens": 50, "n": 1});
        assert!(!held.restore(&mut renamed));
        assert_eq!(renamed, json!({"max_completion_tokens": 50, "n": 1}));
        let mut raised = json!({"max_tokens": 4000, "max_output_tokens": "lots", "n": 8});
        assert!(held.restore(&mut raised));
        assert_eq!(
            raised,
            json!({"max_tokens": 50, "max_output_tokens": 50, "n": 2})
        );
        // No cap held: one may be added; choices default to one.
        let held = Held::of(&json!({}));
        let mut capped = json!({"max_tokens": 10, "n": 3});
        assert!(held.restore(&mut capped));
        assert_eq!(capped, json!({"max_tokens": 10, "n": 1}));
    }
}
