//! What a rule does: operations on the request's body, in order, on the same
//! document; changes to the upstream request's headers; or a refusal.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::Path;

/// One action, as stored and sent (`{"type": "override", "field": …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Sets `field` to `value`.
    Override {
        field: String,
        value: Value,
    },
    /// Sets `field` to `value` unless it has a value.
    SetIfAbsent {
        field: String,
        value: Value,
    },
    Delete {
        field: String,
    },
    /// Adds `value` at the end of an array (each element of an array value)
    /// or of a string; sets it where `field` is missing.
    Append {
        field: String,
        value: Value,
    },
    /// The same, at the start.
    Prepend {
        field: String,
        value: Value,
    },
    /// Copies the value at `from` to `to` (nothing when `from` is missing).
    Copy {
        from: String,
        to: String,
    },
    /// Moves it.
    Move {
        from: String,
        to: String,
    },
    /// String operations on the text at `field` (nothing when it is not text).
    TrimPrefix {
        field: String,
        value: String,
    },
    TrimSuffix {
        field: String,
        value: String,
    },
    EnsurePrefix {
        field: String,
        value: String,
    },
    EnsureSuffix {
        field: String,
        value: String,
    },
    /// Replaces every `from` with `to`.
    Replace {
        field: String,
        from: String,
        to: String,
    },
    /// Replaces every match of `pattern` (linear-time regular expressions:
    /// no backtracking) with `replacement` (`$1`, `${name}` for groups).
    RegexReplace {
        field: String,
        pattern: String,
        replacement: String,
    },
    ToLower {
        field: String,
    },
    ToUpper {
        field: String,
    },
    /// Headers of the upstream request.
    SetHeader {
        name: String,
        value: String,
    },
    DeleteHeader {
        name: String,
    },
    /// Refuses the request with `status` (a 4xx) and `message`.
    Block {
        #[serde(default = "default_block_message")]
        message: String,
        #[serde(default = "default_block_status")]
        status: u16,
    },
}

fn default_block_message() -> String {
    "This request was blocked by a rule.".into()
}

fn default_block_status() -> u16 {
    403
}

impl Action {
    /// The body paths the action writes (to check them against the fields
    /// rules may not touch).
    pub fn writes(&self) -> Vec<&str> {
        use Action::*;
        match self {
            Override { field, .. }
            | SetIfAbsent { field, .. }
            | Delete { field }
            | Append { field, .. }
            | Prepend { field, .. }
            | TrimPrefix { field, .. }
            | TrimSuffix { field, .. }
            | EnsurePrefix { field, .. }
            | EnsureSuffix { field, .. }
            | Replace { field, .. }
            | RegexReplace { field, .. }
            | ToLower { field }
            | ToUpper { field } => vec![field],
            Copy { to, .. } => vec![to],
            Move { from, to } => vec![from, to],
            SetHeader { .. } | DeleteHeader { .. } | Block { .. } => vec![],
        }
    }
}

/// An action ready to run: its paths parsed, its expression compiled.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Body(Path, BodyOp),
    Copy { from: Path, to: Path, keep: bool },
    SetHeader(String, String),
    DeleteHeader(String),
    Block(u16, String),
}

#[derive(Debug, Clone)]
pub(crate) enum BodyOp {
    Set(Value),
    SetIfAbsent(Value),
    Delete,
    Append(Value),
    Prepend(Value),
    Text(TextOp),
}

#[derive(Debug, Clone)]
pub(crate) enum TextOp {
    TrimPrefix(String),
    TrimSuffix(String),
    EnsurePrefix(String),
    EnsureSuffix(String),
    Replace(String, String),
    RegexReplace(Regex, String),
    Lower,
    Upper,
}

impl TextOp {
    fn apply(&self, text: &str) -> String {
        match self {
            TextOp::TrimPrefix(p) => text.strip_prefix(p.as_str()).unwrap_or(text).to_string(),
            TextOp::TrimSuffix(s) => text.strip_suffix(s.as_str()).unwrap_or(text).to_string(),
            TextOp::EnsurePrefix(p) if text.starts_with(p.as_str()) => text.to_string(),
            TextOp::EnsurePrefix(p) => format!("{p}{text}"),
            TextOp::EnsureSuffix(s) if text.ends_with(s.as_str()) => text.to_string(),
            TextOp::EnsureSuffix(s) => format!("{text}{s}"),
            // Nothing to find: nothing replaced (not a `to` between letters).
            TextOp::Replace(from, _) if from.is_empty() => text.to_string(),
            TextOp::Replace(from, to) => text.replace(from.as_str(), to),
            TextOp::RegexReplace(re, with) => re.replace_all(text, with.as_str()).into_owned(),
            TextOp::Lower => text.to_lowercase(),
            TextOp::Upper => text.to_uppercase(),
        }
    }
}

impl BodyOp {
    /// Runs on the document at `path`.
    pub(crate) fn apply(&self, path: &Path, doc: &mut Value) {
        match self {
            BodyOp::Set(value) => {
                let _ = path.set(doc, value.clone());
            }
            BodyOp::SetIfAbsent(value) => {
                if path.get(doc).is_none_or(Value::is_null) {
                    let _ = path.set(doc, value.clone());
                }
            }
            BodyOp::Delete => {
                path.delete(doc);
            }
            BodyOp::Append(value) | BodyOp::Prepend(value) => {
                let at_end = matches!(self, BodyOp::Append(_));
                match path.get_mut(doc) {
                    Some(Value::Array(items)) => {
                        let added: Vec<Value> = match value {
                            Value::Array(more) => more.clone(),
                            one => vec![one.clone()],
                        };
                        if at_end {
                            items.extend(added);
                        } else {
                            items.splice(0..0, added);
                        }
                    }
                    Some(Value::String(text)) => {
                        let added = match value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        if at_end {
                            text.push_str(&added);
                        } else {
                            text.insert_str(0, &added);
                        }
                    }
                    Some(Value::Null) | None => {
                        let _ = path.set(doc, value.clone());
                    }
                    Some(_) => {}
                }
            }
            BodyOp::Text(op) => {
                if let Some(Value::String(text)) = path.get_mut(doc) {
                    *text = op.apply(text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(op: BodyOp, field: &str, mut doc: Value) -> Value {
        op.apply(&Path::parse(field).unwrap(), &mut doc);
        doc
    }

    #[test]
    fn setting_and_deleting() {
        let doc = json!({"temperature": 1, "top_p": null});
        assert_eq!(
            run(BodyOp::Set(json!(0.2)), "temperature", doc.clone())["temperature"],
            0.2
        );
        assert_eq!(
            run(BodyOp::SetIfAbsent(json!(0.2)), "temperature", doc.clone())["temperature"],
            1
        );
        assert_eq!(
            run(BodyOp::SetIfAbsent(json!(0.9)), "top_p", doc.clone())["top_p"],
            0.9
        );
        assert_eq!(run(BodyOp::SetIfAbsent(json!(5)), "n", doc.clone())["n"], 5);
        assert_eq!(
            run(BodyOp::Delete, "temperature", doc),
            json!({"top_p": null})
        );
    }

    #[test]
    fn appending_and_prepending_to_arrays_and_text() {
        let doc = json!({"stop": ["a"], "prompt": "mid"});
        assert_eq!(
            run(BodyOp::Append(json!("b")), "stop", doc.clone())["stop"],
            json!(["a", "b"])
        );
        assert_eq!(
            run(BodyOp::Append(json!(["b", "c"])), "stop", doc.clone())["stop"],
            json!(["a", "b", "c"])
        );
        assert_eq!(
            run(BodyOp::Prepend(json!("z")), "stop", doc.clone())["stop"],
            json!(["z", "a"])
        );
        assert_eq!(
            run(BodyOp::Append(json!("!")), "prompt", doc.clone())["prompt"],
            "mid!"
        );
        assert_eq!(
            run(BodyOp::Prepend(json!(">")), "prompt", doc.clone())["prompt"],
            ">mid"
        );
        assert_eq!(
            run(BodyOp::Append(json!(["x"])), "new", doc)["new"],
            json!(["x"])
        );
    }

    #[test]
    fn text_operations() {
        let cases: Vec<(TextOp, &str, &str)> = vec![
            (TextOp::TrimPrefix("gpt-".into()), "gpt-4o", "4o"),
            (TextOp::TrimPrefix("x".into()), "gpt-4o", "gpt-4o"),
            (TextOp::TrimSuffix("-mini".into()), "gpt-4o-mini", "gpt-4o"),
            (
                TextOp::EnsurePrefix("openai/".into()),
                "gpt-4o",
                "openai/gpt-4o",
            ),
            (
                TextOp::EnsurePrefix("openai/".into()),
                "openai/gpt-4o",
                "openai/gpt-4o",
            ),
            (TextOp::EnsureSuffix("!".into()), "hi", "hi!"),
            (TextOp::EnsureSuffix("!".into()), "hi!", "hi!"),
            (TextOp::Replace("a".into(), "o".into()), "banana", "bonono"),
            (
                TextOp::Replace(String::new(), "o".into()),
                "banana",
                "banana",
            ),
            (
                TextOp::RegexReplace(Regex::new(r"(\d+)").unwrap(), "<$1>".into()),
                "a1b22",
                "a<1>b<22>",
            ),
            (TextOp::Lower, "GPT-4o", "gpt-4o"),
            (TextOp::Upper, "gpt-4o", "GPT-4O"),
        ];
        for (op, input, output) in cases {
            assert_eq!(op.apply(input), output, "{op:?}");
        }
        // Not text: untouched.
        let doc = json!({"n": 2});
        assert_eq!(run(BodyOp::Text(TextOp::Lower), "n", doc.clone()), doc);
    }

    #[test]
    fn actions_read_as_ohmygpt_writes_them() {
        let action: Action = serde_json::from_value(json!(
            {"type": "override", "field": "temperature", "value": 0.2}
        ))
        .unwrap();
        assert_eq!(
            action,
            Action::Override {
                field: "temperature".into(),
                value: json!(0.2)
            }
        );
        let block: Action = serde_json::from_value(json!({"type": "block"})).unwrap();
        assert_eq!(
            block,
            Action::Block {
                message: default_block_message(),
                status: 403
            }
        );
        assert!(serde_json::from_value::<Action>(json!({"type": "explode"})).is_err());
        assert!(serde_json::from_value::<Action>(
            json!({"type": "delete", "field": "x", "extra": 1})
        )
        .is_err());
    }
}
