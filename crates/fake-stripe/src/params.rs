//! Typed reads of unfolded form parameters (see `form.rs`), each failing
//! with the 400 Stripe gives, naming the parameter in bracket notation
//! (`line_items[0][quantity]`).

use serde_json::{Map, Value};

use crate::error::FakeError;

/// Stripe's limits on `metadata`.
const METADATA_KEYS: usize = 50;
const METADATA_KEY_LEN: usize = 40;
const METADATA_VALUE_LEN: usize = 500;

/// A request's parameters.
pub(crate) struct Params {
    root: Value,
}

/// One parameter (maybe absent) and its name.
pub(crate) struct Field<'a> {
    value: Option<&'a Value>,
    name: String,
}

impl Params {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Params {
            root: Value::Object(map),
        }
    }

    pub(crate) fn json(&self) -> &Value {
        &self.root
    }

    pub(crate) fn field(&self, name: &str) -> Field<'_> {
        Field {
            value: self.root.get(name),
            name: name.to_string(),
        }
    }

    pub(crate) fn str(&self, name: &str) -> Result<Option<&str>, FakeError> {
        self.field(name).str()
    }

    pub(crate) fn required_str(&self, name: &str) -> Result<&str, FakeError> {
        self.field(name).required_str()
    }

    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, FakeError> {
        self.field(name).int()
    }

    pub(crate) fn metadata(&self, name: &str) -> Result<Map<String, Value>, FakeError> {
        self.field(name).metadata()
    }
}

impl<'a> Field<'a> {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn key(&self, key: &str) -> Field<'a> {
        Field {
            value: self.value.and_then(|v| v.get(key)),
            name: format!("{}[{key}]", self.name),
        }
    }

    pub(crate) fn index(&self, i: usize) -> Field<'a> {
        Field {
            value: self.value.and_then(|v| v.get(i)),
            name: format!("{}[{i}]", self.name),
        }
    }

    pub(crate) fn is_present(&self) -> bool {
        self.value.is_some()
    }

    /// A string; an empty one counts as absent (Stripe's way of unsetting).
    pub(crate) fn str(&self) -> Result<Option<&'a str>, FakeError> {
        match self.value {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(FakeError::invalid(
                format!(
                    "Invalid string: {} must be a string, not a hash or an array",
                    self.name
                ),
                &self.name,
            )),
        }
    }

    pub(crate) fn required_str(&self) -> Result<&'a str, FakeError> {
        self.str()?.ok_or_else(|| FakeError::missing(&self.name))
    }

    pub(crate) fn int(&self) -> Result<Option<i64>, FakeError> {
        match self.str()? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                FakeError::coded(
                    format!("Invalid integer: {s}"),
                    Some(&self.name),
                    "parameter_invalid_integer",
                )
            }),
        }
    }

    pub(crate) fn required_int(&self) -> Result<i64, FakeError> {
        self.int()?.ok_or_else(|| FakeError::missing(&self.name))
    }

    pub(crate) fn bool(&self) -> Result<Option<bool>, FakeError> {
        match self.str()? {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(s) => Err(FakeError::invalid(
                format!("Invalid boolean: {s}"),
                &self.name,
            )),
        }
    }

    /// One of `allowed` (Stripe's enum check).
    pub(crate) fn one_of(&self, allowed: &[&str]) -> Result<Option<&'a str>, FakeError> {
        match self.str()? {
            Some(s) if !allowed.contains(&s) => Err(FakeError::invalid(
                format!(
                    "Invalid {}: must be one of {}",
                    self.name,
                    allowed.join(", ")
                ),
                &self.name,
            )),
            other => Ok(other),
        }
    }

    /// A three-letter currency code, lowercased as Stripe returns it.
    pub(crate) fn currency(&self) -> Result<Option<String>, FakeError> {
        match self.str()? {
            None => Ok(None),
            Some(s) if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Ok(Some(s.to_ascii_lowercase()))
            }
            Some(s) => Err(FakeError::invalid(
                format!("Invalid currency: {s}"),
                &self.name,
            )),
        }
    }

    pub(crate) fn array(&self) -> Result<Option<&'a Vec<Value>>, FakeError> {
        match self.value {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(_) => Err(FakeError::invalid(
                format!("Invalid array: {} must be an array", self.name),
                &self.name,
            )),
        }
    }

    /// A `metadata` hash of strings, within Stripe's limits (`metadata=`
    /// alone is an empty one).
    pub(crate) fn metadata(&self) -> Result<Map<String, Value>, FakeError> {
        let map = match self.value {
            None => return Ok(Map::new()),
            Some(Value::String(s)) if s.is_empty() => return Ok(Map::new()),
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(FakeError::invalid(
                    format!("Invalid hash: {} must be a hash of strings", self.name),
                    &self.name,
                ))
            }
        };
        if map.len() > METADATA_KEYS {
            return Err(FakeError::invalid(
                format!(
                    "Invalid {}: metadata can have at most {METADATA_KEYS} keys",
                    self.name
                ),
                &self.name,
            ));
        }
        let mut out = Map::new();
        for (key, value) in map {
            let name = format!("{}[{key}]", self.name);
            let Value::String(value) = value else {
                return Err(FakeError::invalid(
                    format!("Invalid string: {name} must be a string"),
                    &name,
                ));
            };
            if key.chars().count() > METADATA_KEY_LEN {
                return Err(FakeError::invalid(
                    format!("Metadata keys can have up to {METADATA_KEY_LEN} characters; {key} has more"),
                    &name,
                ));
            }
            if value.chars().count() > METADATA_VALUE_LEN {
                return Err(FakeError::invalid(
                    format!("Metadata values can have up to {METADATA_VALUE_LEN} characters"),
                    &name,
                ));
            }
            out.insert(key.clone(), Value::String(value.clone()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form;

    fn params(body: &str) -> Params {
        Params::new(form::unfold(&form::pairs(body.as_bytes())).unwrap())
    }

    #[test]
    fn walks_and_names() {
        let p = params("line_items[0][quantity]=x&line_items[0][price_data][currency]=USD");
        let item = p.field("line_items").index(0);
        let err = item.key("quantity").int().unwrap_err();
        assert_eq!(err.body["error"]["param"], "line_items[0][quantity]");
        assert_eq!(err.message(), "Invalid integer: x");
        let currency = item.key("price_data").key("currency").currency().unwrap();
        assert_eq!(currency.as_deref(), Some("usd"));
        let missing = item
            .key("price_data")
            .key("unit_amount")
            .required_int()
            .unwrap_err();
        assert_eq!(
            missing.message(),
            "Missing required param: line_items[0][price_data][unit_amount]."
        );
    }

    #[test]
    fn metadata_rules() {
        let p = params("metadata[a]=1&metadata[b][c]=2");
        assert!(p.metadata("metadata").is_err());
        let p = params("metadata[a]=1");
        assert_eq!(p.metadata("metadata").unwrap()["a"], "1");
        assert!(p.metadata("other").unwrap().is_empty());
    }
}
