//! When a rule applies. The fields inside one condition must all match
//! (AND); a rule applies when any of its conditions matches (OR), or always
//! when it has none.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::Path;

/// One condition (OhMyGPT's fields, camelCase, and new-api's value tests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// OhMyGPT's `scope` (`"api"`): kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The endpoint family: `chat.completions`, `messages`, `responses`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_type: Option<String>,
    /// One key, by its id (a key given in clear is turned into its id
    /// before a rule is stored, and never kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// An exact model name, or a glob with `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Operator rules only: the channel (provider) chosen, the user's
    /// group, one user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<i64>,
    /// Tests on the request's body.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ValueTest>,
}

/// A test of one value of the body (new-api's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueTest {
    pub path: String,
    pub mode: Mode,
    #[serde(default)]
    pub value: Value,
    /// The test's result, negated.
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Equal (as JSON; a number and its text compare equal).
    Full,
    Prefix,
    Suffix,
    Contains,
    Gt,
    Gte,
    Lt,
    Lte,
    /// Present (and not null).
    Exists,
}

/// What a request is, for matching.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub api_type: &'a str,
    pub key_id: &'a str,
    pub model: &'a str,
    pub channel: Option<&'a str>,
    pub group: &'a str,
    pub user: i64,
}

impl Condition {
    pub fn matches(&self, request: &Request<'_>, body: &Value) -> bool {
        let equal = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        equal(&self.api_type, request.api_type)
            && equal(&self.secret_key, request.key_id)
            && self.model.as_deref().is_none_or(|m| glob(m, request.model))
            && self
                .channel
                .as_deref()
                .is_none_or(|c| request.channel == Some(c))
            && equal(&self.group, request.group)
            && self.user.is_none_or(|u| u == request.user)
            && self.values.iter().all(|test| test.matches(body))
    }
}

impl ValueTest {
    pub fn matches(&self, body: &Value) -> bool {
        let found = Path::parse(&self.path)
            .ok()
            .and_then(|path| path.get(body).cloned());
        let result = match (self.mode, found) {
            (Mode::Exists, found) => found.is_some_and(|v| !v.is_null()),
            (_, None) => false,
            (Mode::Full, Some(v)) => v == self.value || text(&v) == text(&self.value),
            (Mode::Prefix, Some(v)) => text(&v)
                .is_some_and(|t| text(&self.value).is_some_and(|p| t.starts_with(p.as_str()))),
            (Mode::Suffix, Some(v)) => {
                text(&v).is_some_and(|t| text(&self.value).is_some_and(|p| t.ends_with(p.as_str())))
            }
            (Mode::Contains, Some(v)) => match (&v, text(&self.value)) {
                (Value::Array(items), _) => items.contains(&self.value),
                (_, Some(p)) => text(&v).is_some_and(|t| t.contains(p.as_str())),
                _ => false,
            },
            (mode, Some(v)) => match (number(&v), number(&self.value)) {
                (Some(a), Some(b)) => match mode {
                    Mode::Gt => a > b,
                    Mode::Gte => a >= b,
                    Mode::Lt => a < b,
                    _ => a <= b,
                },
                _ => false,
            },
        };
        result != self.invert
    }
}

/// A scalar as text (a string as it is, a number or a boolean written).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters (none included). Linear in both lengths.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn test(path: &str, mode: Mode, value: Value) -> ValueTest {
        ValueTest {
            path: path.into(),
            mode,
            value,
            invert: false,
        }
    }

    #[test]
    fn globs_match_names() {
        assert!(glob("gpt-4o*", "gpt-4o-mini"));
        assert!(glob("gpt-4o*", "gpt-4o"));
        assert!(glob("*mini", "gpt-4o-mini"));
        assert!(glob("claude-*-sonnet*", "claude-3-5-sonnet-latest"));
        assert!(!glob("gpt-4o", "gpt-4o-mini"));
        assert!(!glob("o1*", "gpt-o1"));
        assert!(glob("*", ""));
    }

    #[test]
    fn each_mode_tests_what_it_says() {
        let body = json!({"model": "gpt-4o-mini", "temperature": 0.7, "n": "2",
                          "tags": ["a", "b"], "stream": null});
        let cases = [
            (test("model", Mode::Full, json!("gpt-4o-mini")), true),
            (test("n", Mode::Full, json!(2)), true),
            (test("model", Mode::Prefix, json!("gpt-4o")), true),
            (test("model", Mode::Suffix, json!("mini")), true),
            (test("model", Mode::Contains, json!("4o")), true),
            (test("tags", Mode::Contains, json!("b")), true),
            (test("temperature", Mode::Gt, json!(0.5)), true),
            (test("temperature", Mode::Gte, json!(0.7)), true),
            (test("temperature", Mode::Lt, json!(0.7)), false),
            (test("n", Mode::Lte, json!(2)), true),
            (test("model", Mode::Gt, json!(1)), false),
            (test("stream", Mode::Exists, Value::Null), false),
            (test("model", Mode::Exists, Value::Null), true),
            (test("missing", Mode::Full, json!("x")), false),
        ];
        for (case, expected) in cases {
            assert_eq!(case.matches(&body), expected, "{case:?}");
            let inverted = ValueTest {
                invert: true,
                ..case.clone()
            };
            assert_eq!(inverted.matches(&body), !expected, "{inverted:?}");
        }
    }

    #[test]
    fn a_conditions_fields_must_all_match() {
        let request = Request {
            api_type: "chat.completions",
            key_id: "key_1",
            model: "gpt-4o",
            channel: None,
            group: "vip",
            user: 7,
        };
        let body = json!({"temperature": 1});
        let condition = Condition {
            api_type: Some("chat.completions".into()),
            model: Some("gpt-*".into()),
            values: vec![test("temperature", Mode::Gte, json!(1))],
            ..Condition::default()
        };
        assert!(condition.matches(&request, &body));
        let other_key = Condition {
            secret_key: Some("key_2".into()),
            ..condition.clone()
        };
        assert!(!other_key.matches(&request, &body));
        let other_api = Condition {
            api_type: Some("messages".into()),
            ..condition
        };
        assert!(!other_api.matches(&request, &body));
        assert!(Condition::default().matches(&request, &body));
    }
}
