//! The rule object (OhMyGPT's schema, camelCase JSON), checked against the
//! configured restrictions and compiled once, when it is saved.

use regex::RegexBuilder;
use serde::{Deserialize, Serialize};

use crate::action::{Action, BodyOp, Step, TextOp};
use crate::condition::Condition;
use crate::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub rule_id: String,
    pub rule_name: String,
    #[serde(default)]
    pub description: String,
    /// Higher runs first; ties in the order of creation.
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub actions: Vec<Action>,
}

fn enabled() -> bool {
    true
}

/// What rules may be and do (configurable).
#[derive(Debug, Clone)]
pub struct Restrictions {
    pub max_conditions: usize,
    pub max_actions: usize,
    /// Bytes of a rule's JSON value, or text, in one action.
    pub max_value_bytes: usize,
    /// Bytes of a regular expression's source, and of its compiled form.
    pub max_regex_bytes: usize,
    pub max_regex_compiled_bytes: usize,
    /// Top-level body fields no action may write (metering and identity:
    /// `stream_options`, `user`, `store`, `metadata`…).
    pub reserved_fields: Vec<String>,
}

impl Default for Restrictions {
    fn default() -> Self {
        Restrictions {
            max_conditions: 16,
            max_actions: 32,
            max_value_bytes: 16 * 1024,
            max_regex_bytes: 512,
            max_regex_compiled_bytes: 256 * 1024,
            reserved_fields: ["stream_options", "user", "store", "metadata"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// Why a rule cannot be saved; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

/// A rule ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub rule: Rule,
    /// When it was created (ties in priority run in this order).
    pub created_at: i64,
    pub(crate) steps: Vec<Step>,
}

impl Compiled {
    pub fn new(rule: Rule, created_at: i64, limits: &Restrictions) -> Result<Compiled, RuleError> {
        let bad = |what: String| Err(RuleError(what));
        if rule.rule_name.trim().is_empty() {
            return bad("ruleName must not be empty".into());
        }
        if rule.conditions.len() > limits.max_conditions {
            return bad(format!(
                "a rule has at most {} conditions",
                limits.max_conditions
            ));
        }
        if rule.actions.len() > limits.max_actions {
            return bad(format!("a rule has at most {} actions", limits.max_actions));
        }
        for condition in &rule.conditions {
            for test in &condition.values {
                Path::parse(&test.path).map_err(|e| RuleError(format!("condition path: {e}")))?;
            }
        }
        let steps = rule
            .actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                step(action, limits).map_err(|e| RuleError(format!("actions[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Compiled {
            rule,
            created_at,
            steps,
        })
    }
}

impl Compiled {
    /// Whether the rule runs per channel, on each channel's upstream call,
    /// rather than before routing: any of its conditions names a channel
    /// (then all of them are tested there, with the channel known).
    pub fn per_channel(&self) -> bool {
        self.rule.conditions.iter().any(|c| c.channel.is_some())
    }
}

fn step(action: &Action, limits: &Restrictions) -> Result<Step, String> {
    let size = serde_json::to_string(action).map_or(usize::MAX, |s| s.len());
    if size > limits.max_value_bytes {
        return Err(format!("at most {} bytes", limits.max_value_bytes));
    }
    for field in action.writes() {
        let path = Path::parse(field).map_err(|e| e.to_string())?;
        let top = field.split('.').next().unwrap_or(field);
        if limits.reserved_fields.iter().any(|r| r == top) {
            let _ = path;
            return Err(format!(
                "`{top}` is reserved and may not be changed by a rule"
            ));
        }
    }
    let path = |field: &str| Path::parse(field).map_err(|e| e.to_string());
    let text = |field: &str, op: TextOp| Ok(Step::Body(path(field)?, BodyOp::Text(op)));
    use Action::*;
    match action {
        Override { field, value } => Ok(Step::Body(path(field)?, BodyOp::Set(value.clone()))),
        SetIfAbsent { field, value } => {
            Ok(Step::Body(path(field)?, BodyOp::SetIfAbsent(value.clone())))
        }
        Delete { field } => Ok(Step::Body(path(field)?, BodyOp::Delete)),
        Append { field, value } => Ok(Step::Body(path(field)?, BodyOp::Append(value.clone()))),
        Prepend { field, value } => Ok(Step::Body(path(field)?, BodyOp::Prepend(value.clone()))),
        Copy { from, to } => Ok(Step::Copy {
            from: path(from)?,
            to: path(to)?,
            keep: true,
        }),
        Move { from, to } => Ok(Step::Copy {
            from: path(from)?,
            to: path(to)?,
            keep: false,
        }),
        TrimPrefix { field, value } => text(field, TextOp::TrimPrefix(value.clone())),
        TrimSuffix { field, value } => text(field, TextOp::TrimSuffix(value.clone())),
        EnsurePrefix { field, value } => text(field, TextOp::EnsurePrefix(value.clone())),
        EnsureSuffix { field, value } => text(field, TextOp::EnsureSuffix(value.clone())),
        Replace { field, from, to } => text(field, TextOp::Replace(from.clone(), to.clone())),
        RegexReplace {
            field,
            pattern,
            replacement,
        } => {
            if pattern.len() > limits.max_regex_bytes {
                return Err(format!(
                    "the pattern has at most {} bytes",
                    limits.max_regex_bytes
                ));
            }
            let re = RegexBuilder::new(pattern)
                .size_limit(limits.max_regex_compiled_bytes)
                .dfa_size_limit(limits.max_regex_compiled_bytes)
                .build()
                .map_err(|e| format!("pattern: {e}"))?;
            text(field, TextOp::RegexReplace(re, replacement.clone()))
        }
        ToLower { field } => text(field, TextOp::Lower),
        ToUpper { field } => text(field, TextOp::Upper),
        SetHeader { name, value } => {
            header_name(name)?;
            if value.chars().any(|c| c.is_control()) {
                return Err("a header value may not hold control characters".into());
            }
            Ok(Step::SetHeader(name.to_ascii_lowercase(), value.clone()))
        }
        DeleteHeader { name } => {
            header_name(name)?;
            Ok(Step::DeleteHeader(name.to_ascii_lowercase()))
        }
        Block { message, status } => {
            if !(400..=499).contains(status) {
                return Err("a block's status is a 4xx".into());
            }
            Ok(Step::Block(*status, message.clone()))
        }
    }
}

/// Header names a rule may set or remove: tokens, and none of those that
/// carry credentials or framing.
fn header_name(name: &str) -> Result<(), String> {
    const PROTECTED: [&str; 8] = [
        "authorization",
        "x-api-key",
        "api-key",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
    ];
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!("`{name}` is not a header name"));
    }
    if PROTECTED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("`{name}` may not be changed by a rule"));
    }
    Ok(())
}
