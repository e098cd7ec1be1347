//! Step 2a: override rules, before anything else looks at the request. The
//! user's rules run first, then the operator's (which therefore have the
//! last word); a rule may refuse the request, change its body (the model
//! included: routing then follows the new one) and the upstream's headers.
//! Without any rule in force the body is not even parsed.

use bytes::Bytes;
use rules::{HeaderChange, Request};
use serde_json::Value;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::App;

/// A request as the rules left it.
pub struct Rewritten {
    pub body: Bytes,
    pub headers: Vec<HeaderChange>,
    /// The rules that applied, in order.
    pub matched: Vec<String>,
}

/// Runs the rules in force for `principal` on a request of `api_type`.
pub async fn rewrite(
    app: &App,
    principal: &Principal,
    api_type: &str,
    body: Bytes,
) -> Result<Rewritten, ApiError> {
    let book = &app.rule_book;
    let user_rules = book.rules_of(&app.store, principal.user.id).await?;
    let operator_rules = book.rules_of(&app.store, store::OPERATOR).await?;
    let unchanged = |body| Rewritten {
        body,
        headers: Vec::new(),
        matched: Vec::new(),
    };
    if user_rules.is_empty() && operator_rules.is_empty() {
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
        let outcome = rules::apply(rules, &request, &mut doc);
        if let Some((status, message)) = outcome.blocked {
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
    let body = serde_json::to_vec(&doc).map_err(|_| ApiError::Internal)?;
    Ok(Rewritten {
        body: body.into(),
        headers,
        matched,
    })
}

/// Applies the rules' header changes to an upstream call's headers (those a
/// rule may touch: the checks at save time keep credentials out of reach).
pub fn apply_headers(
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
