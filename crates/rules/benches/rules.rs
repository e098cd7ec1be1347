//! The rules step's cost per request: a user with 20 rules (conditions on
//! the API, the model and the body; overrides, text operations, a regex) on
//! a typical chat request. Target: under 5 µs.

use criterion::{criterion_group, criterion_main, Criterion};
use rules::{apply, sort, Compiled, Request, Restrictions, Rule};
use serde_json::json;

fn twenty_rules() -> Vec<Compiled> {
    let mut rules: Vec<Compiled> = (0..20)
        .map(|i| {
            let (conditions, actions) = match i % 4 {
                0 => (
                    json!([{"apiType": "chat.completions", "model": "gpt-4o*"}]),
                    json!([{"type": "override", "field": "temperature", "value": 0.2}]),
                ),
                1 => (
                    json!([{"values": [{"path": "max_tokens", "mode": "gt", "value": 4000}]}]),
                    json!([{"type": "override", "field": "max_tokens", "value": 4000}]),
                ),
                2 => (
                    json!([{"model": "claude-*"}, {"apiType": "messages"}]),
                    json!([{"type": "set_if_absent", "field": "top_p", "value": 0.9}]),
                ),
                _ => (
                    json!([]),
                    json!([{"type": "regex_replace", "field": "messages.-1.content",
                            "pattern": "(?i)secret-[0-9]+", "replacement": "[redacted]"},
                           {"type": "set_header", "name": "x-team", "value": "blue"}]),
                ),
            };
            let rule: Rule = serde_json::from_value(json!({
                "ruleId": format!("r{i}"), "ruleName": format!("rule {i}"), "priority": i % 5,
                "conditions": conditions, "actions": actions,
            }))
            .expect("a rule");
            Compiled::new(rule, i, &Restrictions::default()).expect("compiles")
        })
        .collect();
    sort(&mut rules);
    rules
}

fn bench(c: &mut Criterion) {
    let rules = twenty_rules();
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Summarize this text, and keep secret-1234 out of it."}
        ],
        "max_tokens": 8000,
        "temperature": 0.7,
        "stream": true,
    });
    let request = Request {
        api_type: "chat.completions",
        key_id: "key_1",
        model: "gpt-4o-mini",
        channel: None,
        group: "default",
        user: 1,
    };
    c.bench_function("20 rules on a chat request", |b| {
        b.iter_batched(
            || body.clone(),
            |mut body| apply(&rules, &request, &mut body),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
