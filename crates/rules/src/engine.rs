//! Running rules on a request: those whose conditions match, in priority
//! order (higher first, ties by creation), each action in order on the same
//! document. The result says what matched, which upstream headers change,
//! and whether a rule refused the request.

use serde_json::Value;

use crate::action::Step;
use crate::condition::Request;
use crate::rule::Compiled;

/// A change to the upstream request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    Set(String, String),
    Delete(String),
}

/// What the rules did to a request.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// The ids of the rules that matched, in the order they ran.
    pub matched: Vec<String>,
    pub headers: Vec<HeaderChange>,
    /// A rule refused the request: (status, message). Nothing after it ran.
    pub blocked: Option<(u16, String)>,
}

/// Puts rules in the order they run.
pub fn sort(rules: &mut [Compiled]) {
    rules.sort_by(|a, b| {
        b.rule
            .priority
            .cmp(&a.rule.priority)
            .then(a.created_at.cmp(&b.created_at))
            .then_with(|| a.rule.rule_id.cmp(&b.rule.rule_id))
    });
}

/// Runs `rules` (in [`sort`]ed order) on `body`.
pub fn apply(rules: &[Compiled], request: &Request<'_>, body: &mut Value) -> Outcome {
    let mut outcome = Outcome::default();
    for compiled in rules.iter().filter(|c| c.rule.enabled) {
        let conditions = &compiled.rule.conditions;
        if !conditions.is_empty() && !conditions.iter().any(|c| c.matches(request, body)) {
            continue;
        }
        outcome.matched.push(compiled.rule.rule_id.clone());
        for step in &compiled.steps {
            match step {
                Step::Body(path, op) => op.apply(path, body),
                Step::Copy { from, to, keep } => {
                    let value = if *keep {
                        from.get(body).cloned()
                    } else {
                        from.delete(body)
                    };
                    if let Some(value) = value {
                        let _ = to.set(body, value);
                    }
                }
                Step::SetHeader(name, value) => outcome
                    .headers
                    .push(HeaderChange::Set(name.clone(), value.clone())),
                Step::DeleteHeader(name) => {
                    outcome.headers.push(HeaderChange::Delete(name.clone()))
                }
                Step::Block(status, message) => {
                    outcome.blocked = Some((*status, message.clone()));
                    return outcome;
                }
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Restrictions, Rule};
    use serde_json::json;

    fn compiled(rule: Value, created_at: i64) -> Compiled {
        let rule: Rule = serde_json::from_value(rule).unwrap();
        Compiled::new(rule, created_at, &Restrictions::default()).unwrap()
    }

    fn request() -> Request<'static> {
        Request {
            api_type: "chat.completions",
            key_id: "key_1",
            model: "gpt-4o-mini",
            channel: None,
            group: "default",
            user: 1,
        }
    }

    #[test]
    fn rules_run_by_priority_then_creation_each_action_in_order() {
        let mut rules = vec![
            compiled(
                json!({"ruleId": "late", "ruleName": "late", "priority": 1,
                "actions": [{"type": "override", "field": "temperature", "value": 0.9}]}),
                2,
            ),
            compiled(
                json!({"ruleId": "early", "ruleName": "early", "priority": 1,
                "actions": [{"type": "override", "field": "temperature", "value": 0.5},
                            {"type": "copy", "from": "temperature", "to": "top_p"}]}),
                1,
            ),
            compiled(
                json!({"ruleId": "first", "ruleName": "first", "priority": 10,
                "conditions": [{"model": "gpt-4o*"}],
                "actions": [{"type": "set_if_absent", "field": "max_tokens", "value": 100}]}),
                3,
            ),
            compiled(
                json!({"ruleId": "off", "ruleName": "off", "enabled": false,
                "actions": [{"type": "delete", "field": "messages"}]}),
                0,
            ),
            compiled(
                json!({"ruleId": "other", "ruleName": "other",
                "conditions": [{"apiType": "messages"}, {"secretKey": "key_2"}],
                "actions": [{"type": "delete", "field": "messages"}]}),
                0,
            ),
        ];
        sort(&mut rules);
        let mut body = json!({"model": "gpt-4o-mini", "messages": []});
        let outcome = apply(&rules, &request(), &mut body);
        assert_eq!(outcome.matched, ["first", "early", "late"]);
        assert_eq!(
            body,
            json!({"model": "gpt-4o-mini", "messages": [], "max_tokens": 100,
                                "temperature": 0.9, "top_p": 0.5})
        );
        assert_eq!(outcome.blocked, None);
    }

    #[test]
    fn a_block_stops_everything_after_it_and_headers_are_collected() {
        let mut rules = vec![
            compiled(
                json!({"ruleId": "h", "ruleName": "h", "priority": 2, "actions": [
                {"type": "set_header", "name": "X-Team", "value": "blue"},
                {"type": "delete_header", "name": "OpenAI-Beta"}]}),
                0,
            ),
            compiled(
                json!({"ruleId": "b", "ruleName": "b", "priority": 1,
                "conditions": [{"values": [{"path": "stream", "mode": "full", "value": true}]}],
                "actions": [{"type": "block", "message": "no streams", "status": 400},
                            {"type": "delete", "field": "model"}]}),
                0,
            ),
        ];
        sort(&mut rules);
        let mut body = json!({"model": "m", "stream": true});
        let outcome = apply(&rules, &request(), &mut body);
        assert_eq!(outcome.blocked, Some((400, "no streams".to_string())));
        assert_eq!(body["model"], "m", "nothing after the block ran");
        assert_eq!(
            outcome.headers,
            [
                HeaderChange::Set("x-team".into(), "blue".into()),
                HeaderChange::Delete("openai-beta".into()),
            ]
        );
    }

    #[test]
    fn moving_a_value_takes_it_away() {
        let rules = vec![compiled(
            json!({"ruleName": "mv", "actions": [
            {"type": "move", "from": "max_tokens", "to": "max_completion_tokens"}]}),
            0,
        )];
        let mut body = json!({"max_tokens": 10});
        apply(&rules, &request(), &mut body);
        assert_eq!(body, json!({"max_completion_tokens": 10}));
    }

    #[test]
    fn rules_that_cannot_be_saved_say_why() {
        let limits = Restrictions::default();
        let refused = |rule: Value| {
            let rule: Rule = serde_json::from_value(rule).unwrap();
            Compiled::new(rule, 0, &limits).unwrap_err().0
        };
        assert!(refused(json!({"ruleName": "r", "actions": [
            {"type": "override", "field": "stream_options.include_usage", "value": false}]}))
        .contains("reserved"));
        assert!(refused(json!({"ruleName": "r", "actions": [
            {"type": "regex_replace", "field": "prompt", "pattern": "(", "replacement": ""}]}))
        .contains("pattern"));
        assert!(refused(json!({"ruleName": "r", "actions": [
            {"type": "regex_replace", "field": "prompt", "pattern": "a{1000}{1000}", "replacement": ""}]}))
            .contains("pattern"));
        assert!(refused(json!({"ruleName": "r", "actions": [
            {"type": "set_header", "name": "Authorization", "value": "x"}]}))
        .contains("may not be changed"));
        assert!(refused(json!({"ruleName": "r", "actions": [
            {"type": "set_header", "name": "x-a", "value": "a\r\nb: c"}]}))
        .contains("control"));
        assert!(
            refused(json!({"ruleName": "r", "actions": [{"type": "block", "status": 200}]}))
                .contains("4xx")
        );
        assert!(refused(json!({"ruleName": " "})).contains("ruleName"));
        assert!(refused(json!({"ruleName": "r", "actions": [
            {"type": "delete", "field": "a..b"}]}))
        .contains("empty segment"));
    }
}
