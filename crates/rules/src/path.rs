//! Paths into a JSON document: dotted names and array indices, negative
//! indices counting from the end (`messages.-1.content`). A `\.` is a dot
//! inside a name. Whether a segment is a name or an index depends on what
//! it meets: in an array a number is an index, in an object every segment
//! is a name.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("the path `{0}` has an empty segment")]
    EmptySegment(String),
    #[error("`{path}`: there is no element {segment} to reach")]
    Unreachable { path: String, segment: String },
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next) => current.push(next),
                    None => current.push('\\'),
                },
                '.' => segments.push(std::mem::take(&mut current)),
                other => current.push(other),
            }
        }
        segments.push(current);
        if segments.iter().any(String::is_empty) {
            return Err(PathError::EmptySegment(text.to_string()));
        }
        Ok(Path(segments))
    }

    fn text(&self) -> String {
        self.0.join(".")
    }

    /// The value at this path, if there is one.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.0
            .iter()
            .try_fold(doc, |node, segment| child(node, segment))
    }

    /// Sets the value at this path, making the objects on the way that are
    /// missing. An array index must exist (or be the array's length, which
    /// appends).
    pub fn set(&self, doc: &mut Value, value: Value) -> Result<(), PathError> {
        let (last, parents) = self.split();
        let mut node = doc;
        for segment in parents {
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            node = match node {
                Value::Object(map) => map
                    .entry(segment.clone())
                    .or_insert_with(|| Value::Object(Map::new())),
                Value::Array(items) => {
                    let i = index(segment, items.len(), false)
                        .ok_or_else(|| self.unreachable(segment))?;
                    &mut items[i]
                }
                _ => return Err(self.unreachable(segment)),
            };
        }
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
        match node {
            Value::Object(map) => {
                map.insert(last.clone(), value);
                Ok(())
            }
            Value::Array(items) => {
                let i = index(last, items.len(), true).ok_or_else(|| self.unreachable(last))?;
                if i == items.len() {
                    items.push(value);
                } else {
                    items[i] = value;
                }
                Ok(())
            }
            _ => Err(self.unreachable(last)),
        }
    }

    /// Removes the value at this path and returns it.
    pub fn delete(&self, doc: &mut Value) -> Option<Value> {
        let (last, parents) = self.split();
        let mut node = doc;
        for segment in parents {
            node = child_mut(node, segment)?;
        }
        match node {
            Value::Object(map) => map.shift_remove(last),
            Value::Array(items) => {
                let i = index(last, items.len(), false)?;
                Some(items.remove(i))
            }
            _ => None,
        }
    }

    /// The value at this path, to change in place.
    pub fn get_mut<'a>(&self, doc: &'a mut Value) -> Option<&'a mut Value> {
        self.0
            .iter()
            .try_fold(doc, |node, segment| child_mut(node, segment))
    }

    fn split(&self) -> (&String, &[String]) {
        let (last, parents) = self.0.split_last().expect("a parsed path has a segment");
        (last, parents)
    }

    fn unreachable(&self, segment: &str) -> PathError {
        PathError::Unreachable {
            path: self.text(),
            segment: segment.to_string(),
        }
    }
}

/// The position `segment` names in an array of `len` (negative: from the
/// end); `len` itself only when `append`.
fn index(segment: &str, len: usize, append: bool) -> Option<usize> {
    let n: i64 = segment.parse().ok()?;
    let len_i = i64::try_from(len).ok()?;
    let i = if n < 0 { len_i.checked_add(n)? } else { n };
    let limit = if append { len_i } else { len_i - 1 };
    usize::try_from(i).ok().filter(|_| (0..=limit).contains(&i))
}

fn child<'a>(node: &'a Value, segment: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(index(segment, items.len(), false)?),
        _ => None,
    }
}

fn child_mut<'a>(node: &'a mut Value, segment: &str) -> Option<&'a mut Value> {
    match node {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => {
            let i = index(segment, items.len(), false)?;
            items.get_mut(i)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> Path {
        Path::parse(text).unwrap()
    }

    #[test]
    fn paths_read_names_indices_and_negative_indices() {
        let doc = json!({"messages": [{"content": "a"}, {"content": "b"}], "a.b": 1});
        assert_eq!(path("messages.0.content").get(&doc), Some(&json!("a")));
        assert_eq!(path("messages.-1.content").get(&doc), Some(&json!("b")));
        assert_eq!(path("messages.-3.content").get(&doc), None);
        assert_eq!(path("messages.2").get(&doc), None);
        assert_eq!(path(r"a\.b").get(&doc), Some(&json!(1)));
        assert!(Path::parse("").is_err());
        assert!(Path::parse("a..b").is_err());
    }

    #[test]
    fn setting_makes_objects_on_the_way_and_appends_at_the_end() {
        let mut doc = json!({"messages": [{"content": "a"}]});
        path("metadata.tags.team")
            .set(&mut doc, json!("x"))
            .unwrap();
        assert_eq!(doc["metadata"]["tags"]["team"], "x");
        path("messages.1")
            .set(&mut doc, json!({"content": "b"}))
            .unwrap();
        path("messages.-1.content")
            .set(&mut doc, json!("c"))
            .unwrap();
        assert_eq!(doc["messages"], json!([{"content": "a"}, {"content": "c"}]));
        assert!(path("messages.5.content").set(&mut doc, json!(1)).is_err());
        assert!(path("messages.0.content.x")
            .set(&mut doc, json!(1))
            .is_err());
    }

    #[test]
    fn deleting_returns_what_was_there() {
        let mut doc = json!({"a": {"b": 1}, "list": [1, 2, 3]});
        assert_eq!(path("a.b").delete(&mut doc), Some(json!(1)));
        assert_eq!(path("list.-1").delete(&mut doc), Some(json!(3)));
        assert_eq!(path("list.7").delete(&mut doc), None);
        assert_eq!(path("nope.x").delete(&mut doc), None);
        assert_eq!(doc, json!({"a": {}, "list": [1, 2]}));
    }
}
