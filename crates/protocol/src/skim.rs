//! Finding one field of a JSON object without parsing the others.
//!
//! The gateway reads a whole upstream answer only for its `usage`. Parsing
//! the answer to skip everything else (choices, messages, text) cost ~20
//! instructions a byte; skimming over it — strings, escapes and nesting
//! only — costs a few, and only the field itself is then parsed.

/// The bytes of `key`'s value in the top-level object `json`, as they are
/// (whoever reads the value parses it). `None` when `json` is not one
/// object with that key once: its top level must be well formed (names,
/// colons, commas, brackets, nothing after it) and the key not repeated,
/// as a parse of the whole would require. What the other values hold
/// inside is not checked.
pub fn top_level_value<'a>(json: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut at = skip_space(json, 0);
    if json.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(json, at + 1);
    let mut found = None;
    if json.get(at) == Some(&b'}') {
        at += 1;
    } else {
        loop {
            if json.get(at) != Some(&b'"') {
                return None;
            }
            let key_end = string_end(json, at)?;
            let name = &json[at..key_end];
            at = skip_space(json, key_end);
            if json.get(at) != Some(&b':') {
                return None;
            }
            at = skip_space(json, at + 1);
            let value_end = value_end(json, at)?;
            if is_key(name, key) {
                if found.is_some() {
                    return None; // repeated: serde refuses it too
                }
                found = Some(&json[at..value_end]);
            }
            at = skip_space(json, value_end);
            match json.get(at) {
                Some(b',') => at = skip_space(json, at + 1),
                Some(b'}') => {
                    at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    match skip_space(json, at) == json.len() {
        true => found,
        false => None,
    }
}

/// Whether the quoted `name` (with its quotes) is `key`; a name written
/// with escapes is decoded first.
fn is_key(name: &[u8], key: &str) -> bool {
    let bare = &name[1..name.len() - 1];
    match bare.contains(&b'\\') {
        false => bare == key.as_bytes(),
        true => serde_json::from_slice::<String>(name).is_ok_and(|name| name == key),
    }
}

fn skip_space(json: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = json.get(at) {
        at += 1;
    }
    at
}

/// Where the string starting at `at` (its opening quote) ends: just past
/// its closing quote.
fn string_end(json: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match json.get(i..)?.iter().position(|&b| b == b'"' || b == b'\\') {
            Some(n) if json[i + n] == b'"' => return Some(i + n + 1),
            Some(n) => i += n + 2, // an escape: the next byte is not the end
            None => return None,
        }
    }
}

/// Where the value starting at `at` ends: past its string, past the
/// bracket closing its object or array, or at the byte ending a number,
/// `true`, `false` or `null`.
fn value_end(json: &[u8], at: usize) -> Option<usize> {
    match json.get(at)? {
        b'"' => string_end(json, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let n = json[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))?;
            (n > 0).then_some(at + n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str, key: &str) -> Option<String> {
        top_level_value(json.as_bytes(), key).map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn finds_a_top_level_field_of_any_kind() {
        let json = r#" { "a" : 1 , "s":"x\"}y\\","o":{"usage":{"n":1},"q":"}"},"l":[[1,{"]":2}],"["],
            "t":true,"n":null,"f":-1.5e3,"usage" :{"prompt_tokens":10} } "#;
        assert_eq!(value(json, "a").as_deref(), Some("1"));
        assert_eq!(value(json, "s").as_deref(), Some(r#""x\"}y\\""#));
        assert_eq!(
            value(json, "o").as_deref(),
            Some(r#"{"usage":{"n":1},"q":"}"}"#)
        );
        assert_eq!(value(json, "l").as_deref(), Some(r#"[[1,{"]":2}],"["]"#));
        assert_eq!(value(json, "t").as_deref(), Some("true"));
        assert_eq!(value(json, "n").as_deref(), Some("null"));
        assert_eq!(value(json, "f").as_deref(), Some("-1.5e3"));
        assert_eq!(
            value(json, "usage").as_deref(),
            Some(r#"{"prompt_tokens":10}"#),
            "the top level's, not the nested one"
        );
        assert_eq!(value(json, "missing"), None);
        assert_eq!(value(json, "n\":null"), None);
    }

    #[test]
    fn text_that_looks_like_a_key_is_not_one() {
        let json = r#"{"content":"\"usage\":{\"prompt_tokens\":1}","usage":{"prompt_tokens":2}}"#;
        assert_eq!(
            value(json, "usage").as_deref(),
            Some(r#"{"prompt_tokens":2}"#)
        );
        let only_text = r#"{"content":"\"usage\":{\"prompt_tokens\":1}"}"#;
        assert_eq!(value(only_text, "usage"), None);
    }

    #[test]
    fn escaped_names_are_decoded_and_repeated_ones_refused() {
        assert_eq!(value(r#"{"us\u0061ge":1}"#, "usage").as_deref(), Some("1"));
        assert_eq!(value(r#"{"usage":1,"usage":2}"#, "usage"), None);
        assert_eq!(value(r#"{"usage":1,"us\u0061ge":2}"#, "usage"), None);
    }

    #[test]
    fn what_is_not_an_object_has_no_fields() {
        for json in [
            "",
            "[]",
            "\"usage\"",
            "{",
            "{}",
            r#"{"usage""#,
            r#"{"usage":"#,
            r#"{"usage":{"a":1}"#,
            r#"{"a":"unterminated"#,
            r#"{"a" 1,"usage":2}"#,
            r#"{"a":1 "usage":2}"#,
            r#"{"a":[1,"usage":2}"#,
            r#"{"usage":}"#,
            r#"{"a":1,}"#,
            r#"{"usage":1}}"#,
            r#"{"usage":1} {}"#,
            r#"{"usage":1,"a":"#,
            r#"{"usage":1,"#,
            r#"{,"usage":1}"#,
        ] {
            assert_eq!(value(json, "usage"), None, "{json}");
        }
    }
}
