//! Stripe's form encoding: `application/x-www-form-urlencoded` pairs whose
//! keys use bracket notation (`metadata[order_id]=42`,
//! `line_items[0][price_data][currency]=usd`, `expand[]=x`), unfolded into
//! nested JSON so the handlers can walk it like Stripe's own parameters.
//!
//! Every leaf is a string, as on the wire: the handlers decide what is an
//! integer or a boolean (see `params.rs`), so that a bad value gets Stripe's
//! "Invalid integer" 400 rather than being silently dropped here.

use serde_json::{Map, Value};

/// The decoded `key=value` pairs, in order (kept for the request log).
pub fn pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Unfolds bracket-notation pairs into one JSON object. Objects whose keys
/// are all array indexes (`[0]`, `[1]`, or `[]` pushes) become arrays,
/// ordered by index. A key used both as a value and as a container
/// (`a=1&a[b]=2`) or with unbalanced brackets is an error (the message names
/// the key).
pub fn unfold(pairs: &[(String, String)]) -> Result<Map<String, Value>, String> {
    let mut root = Map::new();
    for (key, value) in pairs {
        let path = split_key(key).ok_or_else(|| format!("Invalid parameter name: {key}"))?;
        insert(&mut root, &path, value, key)?;
    }
    let mut root = Value::Object(root);
    arrays(&mut root);
    match root {
        Value::Object(map) => Ok(map),
        _ => Ok(Map::new()),
    }
}

/// `a[b][0][]` → `["a", "b", "0", ""]`; `None` when the brackets do not
/// balance or the name is empty.
fn split_key(key: &str) -> Option<Vec<&str>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut path = vec![head];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        let segment = &inner[..close];
        if segment.contains('[') {
            return None;
        }
        path.push(segment);
        rest = &inner[close + 1..];
    }
    Some(path)
}

fn insert(
    map: &mut Map<String, Value>,
    path: &[&str],
    value: &str,
    key: &str,
) -> Result<(), String> {
    let conflict =
        || format!("Invalid parameter name: {key} (used both as a value and as a hash or array)");
    let (first, rest) = match path.split_first() {
        Some(split) => split,
        None => return Ok(()),
    };
    // `[]` appends: its index is the number of entries so far.
    let name = if first.is_empty() {
        map.len().to_string()
    } else {
        (*first).to_string()
    };
    if rest.is_empty() {
        if matches!(map.get(&name), Some(Value::Object(_))) {
            return Err(conflict());
        }
        // A repeated scalar key: the last one wins.
        map.insert(name, Value::String(value.to_string()));
        return Ok(());
    }
    let child = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
    match child {
        Value::Object(inner) => insert(inner, rest, value, key),
        _ => Err(conflict()),
    }
}

/// Turns the objects keyed `0`, `1`… into arrays, depth first.
fn arrays(value: &mut Value) {
    let Value::Object(map) = value else {
        return;
    };
    for child in map.values_mut() {
        arrays(child);
    }
    if map.is_empty() || !map.keys().all(|k| k.parse::<usize>().is_ok()) {
        return;
    }
    let mut items: Vec<(usize, Value)> = std::mem::take(map)
        .into_iter()
        .filter_map(|(k, v)| k.parse::<usize>().ok().map(|i| (i, v)))
        .collect();
    items.sort_by_key(|(i, _)| *i);
    *value = Value::Array(items.into_iter().map(|(_, v)| v).collect());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Result<Value, String> {
        unfold(&pairs(body.as_bytes())).map(Value::Object)
    }

    #[test]
    fn nested_hashes_and_arrays() {
        let body = "mode=payment&metadata[order_id]=42&metadata[who]=a%20b+c\
            &line_items[0][price_data][currency]=usd\
            &line_items[0][price_data][unit_amount]=500\
            &line_items[0][quantity]=2\
            &line_items[1][quantity]=1\
            &expand[]=x&expand[]=y&created[gte]=1700000000";
        assert_eq!(
            parse(body).unwrap(),
            json!({
                "mode": "payment",
                "metadata": {"order_id": "42", "who": "a b c"},
                "line_items": [
                    {"price_data": {"currency": "usd", "unit_amount": "500"}, "quantity": "2"},
                    {"quantity": "1"}
                ],
                "expand": ["x", "y"],
                "created": {"gte": "1700000000"}
            })
        );
    }

    #[test]
    fn indexes_sort_numerically() {
        let body = "a[10]=ten&a[2]=two&a[0]=zero";
        assert_eq!(parse(body).unwrap(), json!({"a": ["zero", "two", "ten"]}));
    }

    #[test]
    fn empty_value_and_empty_body() {
        assert_eq!(parse("metadata=").unwrap(), json!({"metadata": ""}));
        assert_eq!(parse("").unwrap(), json!({}));
    }

    #[test]
    fn bad_keys_are_errors() {
        assert!(parse("a[b=1").is_err());
        assert!(parse("[a]=1").is_err());
        assert!(parse("a]=1").is_ok()); // no bracket opened: a plain (odd) name
        assert!(parse("a=1&a[b]=2").is_err());
        assert!(parse("a[b]=2&a=1").is_err());
        assert!(parse("a[b]x=1").is_err());
    }
}
