//! A journal line, written by hand: the bytes serde_json writes for a
//! [`RecordRef`] (the tests compare them), at a third of the cost. serde's
//! writer escapes every field name and value byte by byte and appends each
//! `"`, `:` and `,` on its own; two lines a request made it ~5 % of the
//! gateway's instructions per request.
//!
//! Replay reads lines with serde (`Record`), so the format is serde's. The
//! encoder takes a [`Settlement`] apart field by field, without `..`: a
//! field added to it does not compile here until it is journaled too.

use std::io::Write;

use store::Settlement;

use super::RecordRef;

/// Appends `record` as one JSON object (no newline) to `out`.
pub(super) fn encode(record: &RecordRef<'_>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    match record {
        RecordRef::Start { s } => settlement(b"start", s, out),
        RecordRef::Settle { s } => settlement(b"settle", s, out),
        RecordRef::Cancel { id } => {
            out.extend_from_slice(br#"{"k":"cancel","id":"#);
            string(id, out)?;
            out.push(b'}');
            Ok(())
        }
    }
}

/// In `Settlement`'s field order; serde skips zeros, `None` and "" where
/// its attributes say so, and so does this.
fn settlement(kind: &[u8], s: &Settlement, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let Settlement {
        request_id,
        user_id,
        key_id,
        endpoint,
        model,
        provider,
        upstream_model,
        stream,
        input_tokens,
        output_tokens,
        cached_tokens,
        cache_write_tokens,
        cost,
        latency_ms,
        status,
        error,
        created_at,
        unit,
    } = s;
    out.extend_from_slice(br#"{"k":""#);
    out.extend_from_slice(kind);
    out.extend_from_slice(br#"","s":{"request_id":"#);
    string(request_id, out)?;
    integer(b",\"user_id\":", *user_id, out);
    out.extend_from_slice(br#","key_id":"#);
    string(key_id, out)?;
    out.extend_from_slice(br#","endpoint":"#);
    string(endpoint, out)?;
    out.extend_from_slice(br#","model":"#);
    string(model, out)?;
    out.extend_from_slice(br#","provider":"#);
    string(provider, out)?;
    out.extend_from_slice(br#","upstream_model":"#);
    string(upstream_model, out)?;
    out.extend_from_slice(match stream {
        true => br#","stream":true"#.as_slice(),
        false => br#","stream":false"#.as_slice(),
    });
    for (key, n) in [
        (b",\"input_tokens\":".as_slice(), *input_tokens),
        (b",\"output_tokens\":", *output_tokens),
        (b",\"cached_tokens\":", *cached_tokens),
        (b",\"cache_write_tokens\":", *cache_write_tokens),
        (b",\"cost\":", *cost),
        (b",\"latency_ms\":", *latency_ms),
        (b",\"status\":", *status),
    ] {
        if n != 0 {
            integer(key, n, out);
        }
    }
    if let Some(error) = error {
        out.extend_from_slice(br#","error":"#);
        string(error, out)?;
    }
    integer(b",\"created_at\":", *created_at, out);
    if !unit.is_empty() {
        out.extend_from_slice(br#","unit":"#);
        string(unit, out)?;
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

fn integer(key: &[u8], n: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string: copied as it is when nothing in it needs escaping (ids,
/// names), else escaped by serde_json.
fn string(s: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
    // Without an early exit, the compiler checks many bytes at a time.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out.by_ref(), s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Settlement {
        // Every field set and none left to `..`: a new one must be added here.
        Settlement {
            request_id: "req_0123456789abcdef".into(),
            user_id: -7,
            key_id: "key_1".into(),
            endpoint: "/v1/chat/completions".into(),
            model: "gpt-4o".into(),
            provider: "openai-main".into(),
            upstream_model: "gpt-4o-2024-08-06".into(),
            stream: true,
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 4,
            cache_write_tokens: 3,
            cost: i64::MAX,
            latency_ms: 12,
            status: 200,
            error: Some("upstream said \"no\"\\\n\u{1}\u{7f} é 😀".into()),
            created_at: 1_764_000_000_000,
            unit: "image".into(),
        }
    }

    fn ours(record: &RecordRef<'_>) -> String {
        let mut out = Vec::new();
        encode(record, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn serdes(record: &RecordRef<'_>) -> String {
        serde_json::to_string(record).unwrap()
    }

    #[test]
    fn lines_are_the_bytes_serde_writes() {
        let full = full();
        let zeros = Settlement {
            request_id: "a\"b".into(),
            stream: false,
            user_id: i64::MIN,
            ..Settlement::default()
        };
        let interrupted = Settlement {
            error: Some("interrupted".into()),
            status: 0,
            cost: 0,
            unit: String::new(),
            ..full.clone()
        };
        for s in [&full, &zeros, &interrupted, &Settlement::default()] {
            for record in [RecordRef::Start { s }, RecordRef::Settle { s }] {
                assert_eq!(ours(&record), serdes(&record));
            }
        }
        for id in ["req_1", "", "tab\there", "quote\"", "back\\slash", "ünï"] {
            let record = RecordRef::Cancel { id };
            assert_eq!(ours(&record), serdes(&record));
        }
    }

    #[test]
    fn lines_read_back_as_the_settlement_written() {
        let full = full();
        let line = ours(&RecordRef::Settle { s: &full });
        match serde_json::from_str::<super::super::Record>(&line).unwrap() {
            super::super::Record::Settle { s } => {
                assert_eq!(
                    serde_json::to_value(&s).unwrap(),
                    serde_json::to_value(&full).unwrap()
                );
            }
            _ => panic!("not a settlement: {line}"),
        }
    }
}
