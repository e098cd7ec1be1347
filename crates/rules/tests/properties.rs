//! Rules on random documents: running never panics, gives the same result
//! every time, and the operations that are idempotent stay so.

use proptest::prelude::*;
use rules::{apply, sort, Compiled, Request, Restrictions, Rule};
use serde_json::{json, Value};

/// Paths over the few names the documents use, so that they often meet.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("messages".to_string()),
            Just("0".to_string()),
            Just("-1".to_string()),
            Just("content".to_string()),
        ],
        1..4,
    )
    .prop_map(|segments| segments.join("."))
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-zA-Z0-9 ]{0,8}".prop_map(Value::from),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![Just("a"), Just("b"), Just("messages"), Just("content")]
                    .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn action() -> impl Strategy<Value = Value> {
    (path(), path(), leaf(), "[a-z]{0,3}").prop_flat_map(|(field, other, value, text)| {
        prop_oneof![
            Just(json!({"type": "override", "field": field, "value": value})),
            Just(json!({"type": "set_if_absent", "field": field, "value": value})),
            Just(json!({"type": "delete", "field": field})),
            Just(json!({"type": "append", "field": field, "value": value})),
            Just(json!({"type": "prepend", "field": field, "value": value})),
            Just(json!({"type": "copy", "from": field, "to": other})),
            Just(json!({"type": "move", "from": field, "to": other})),
            Just(json!({"type": "trim_prefix", "field": field, "value": text})),
            Just(json!({"type": "ensure_suffix", "field": field, "value": text})),
            Just(json!({"type": "replace", "field": field, "from": text, "to": "x"})),
            Just(json!({"type": "regex_replace", "field": field, "pattern": "[a-c]+", "replacement": "<$0>"})),
            Just(json!({"type": "to_upper", "field": field})),
        ]
    })
}

fn rules(actions: Vec<Vec<Value>>) -> Vec<Compiled> {
    let mut compiled: Vec<Compiled> = actions
        .into_iter()
        .enumerate()
        .map(|(i, actions)| {
            let rule: Rule = serde_json::from_value(json!({
                "ruleId": format!("r{i}"), "ruleName": format!("r{i}"),
                "priority": (i % 3) as i64, "actions": actions,
            }))
            .expect("a rule");
            Compiled::new(rule, i as i64, &Restrictions::default()).expect("compiles")
        })
        .collect();
    sort(&mut compiled);
    compiled
}

fn request() -> Request<'static> {
    Request {
        api_type: "chat.completions",
        key_id: "k",
        model: "m",
        channel: None,
        group: "default",
        user: 1,
    }
}

proptest! {
    #[test]
    fn running_never_panics_and_is_deterministic(
        doc in document(),
        actions in prop::collection::vec(prop::collection::vec(action(), 0..5), 0..5),
    ) {
        let rules = rules(actions);
        let (mut first, mut second) = (doc.clone(), doc);
        let a = apply(&rules, &request(), &mut first);
        let b = apply(&rules, &request(), &mut second);
        prop_assert_eq!(first, second);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn idempotent_operations_stay_idempotent(
        doc in document(),
        field in path(),
        value in leaf(),
        text in "[a-z]{1,3}",
        which in 0usize..5,
    ) {
        // (Deleting is not among them: an array element deleted twice takes
        // its neighbour with it the second time.)
        let action = match which {
            0 => json!({"type": "override", "field": field, "value": value}),
            1 => json!({"type": "set_if_absent", "field": field, "value": value}),
            2 => json!({"type": "ensure_prefix", "field": field, "value": text}),
            3 => json!({"type": "to_lower", "field": field}),
            _ => json!({"type": "ensure_suffix", "field": field, "value": text}),
        };
        let rules = rules(vec![vec![action]]);
        let mut once = doc;
        apply(&rules, &request(), &mut once);
        let mut twice = once.clone();
        apply(&rules, &request(), &mut twice);
        prop_assert_eq!(once, twice);
    }
}
