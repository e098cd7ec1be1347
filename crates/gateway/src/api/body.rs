//! Reading request bodies: JSON with precise errors, or form fields.

use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Parses a JSON body, saying what is wrong and where when it is not valid.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::BadRequest(
            "The request body is empty; expected a JSON object.".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "The request body is not valid JSON"
        } else {
            "The request body does not match the expected schema"
        };
        ApiError::BadRequest(format!("{what}: {e}"))
    })
}

/// Reads a body that may be JSON or `application/x-www-form-urlencoded`
/// (OhMyGPT's management API accepts both) into one map of fields.
pub fn parse_fields(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let trimmed = body.iter().find(|b| !b.is_ascii_whitespace());
    if content_type.contains("json") || trimmed == Some(&b'{') {
        if trimmed.is_none() {
            return Ok(Map::new());
        }
        return parse_json::<Map<String, Value>>(body);
    }
    let fields: Vec<(String, String)> = serde_urlencoded_pairs(body);
    Ok(fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

/// Decodes `a=1&b=two` pairs (a form body, or a query string).
pub fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |b| *b == b'=');
            let k = percent_decode(it.next().unwrap_or_default());
            let v = percent_decode(it.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

fn percent_decode(input: &[u8]) -> String {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => {
                let hex = std::str::from_utf8(&input[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lenient field readers: clients send numbers and booleans as strings.
pub fn field_str(fields: &Map<String, Value>, name: &str) -> Option<String> {
    match fields.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

pub fn field_bool(fields: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => match v.to_string().trim_matches('"') {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(ApiError::BadRequest(format!(
                "`{name}` must be true or false."
            ))),
        },
    }
}

/// A list of names: a JSON array, a JSON array in a string, or `a,b`.
pub fn field_list(
    fields: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let bad = || ApiError::BadRequest(format!("`{name}` must be a JSON array of names."));
    let value = match fields.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Some(Vec::new())),
        Some(Value::String(s)) if s.trim_start().starts_with('[') => {
            serde_json::from_str::<Value>(s).map_err(|_| bad())?
        }
        Some(Value::String(s)) => {
            return Ok(Some(
                s.split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect(),
            ))
        }
        Some(v) => v.clone(),
    };
    match value {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let f = parse_fields(
            &h,
            b"remark=my+key%21&max_fee=10&permissions=%5B%22gpt%22%5D",
        )
        .unwrap();
        assert_eq!(field_str(&f, "remark").as_deref(), Some("my key!"));
        assert_eq!(field_str(&f, "max_fee").as_deref(), Some("10"));
        assert_eq!(
            field_list(&f, "permissions").unwrap(),
            Some(vec!["gpt".to_string()])
        );
    }

    #[test]
    fn json_bodies_and_lenient_fields() {
        let h = HeaderMap::new();
        let f = parse_fields(
            &h,
            br#"{"is_disabled":"true","max_fee":5,"permissions":"a, b"}"#,
        )
        .unwrap();
        assert_eq!(field_bool(&f, "is_disabled").unwrap(), Some(true));
        assert_eq!(field_str(&f, "max_fee").as_deref(), Some("5"));
        assert_eq!(
            field_list(&f, "permissions").unwrap(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert!(parse_fields(&h, b"{bad").is_err());
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let e = parse_json::<Map<String, Value>>(b"{\"model\": ").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let e = parse_json::<Map<String, Value>>(b"").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
}
