//! Named scenarios: the mock scripting whole turns of a real CLI (Codex,
//! Claude Code) statelessly from what each request holds, and recording
//! every request to a JSON-lines file (`--record-file`) and `GET
//! /__requests`. See each module for its script and record format.

pub mod claude_code;
pub mod codex;
pub mod front;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

/// A named scenario of the binary (`--scenario NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// `codex-chat`: an OpenAI chat-completions upstream scripting one Codex
    /// CLI turn (for Codex through Tollgate's Responses emulation).
    CodexChat,
    /// `codex-responses`: OpenAI's Responses API scripting one Codex CLI
    /// turn (for Codex with no gateway in between); after `max_responses`
    /// requests to `/v1/responses`, a 400.
    CodexResponses { max_responses: Option<usize> },
    /// `claude-code`: Anthropic Messages and OpenAI chat completions
    /// scripting one Claude Code turn.
    ClaudeCode,
    /// `claude-code-front`: a recording proxy in front of `target` (a
    /// loopback URL), for what Claude Code sends.
    Front { target: String },
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(name: &str) -> Result<Scenario, String> {
        match name {
            "codex-chat" => Ok(Scenario::CodexChat),
            "codex-responses" => Ok(Scenario::CodexResponses {
                max_responses: None,
            }),
            "claude-code" => Ok(Scenario::ClaudeCode),
            "claude-code-front" => Ok(Scenario::Front {
                target: String::new(),
            }),
            other => Err(format!(
                "unknown scenario {other} (codex-chat, codex-responses, claude-code, claude-code-front)"
            )),
        }
    }
}

/// The requests of a scenario, in memory and appended to a JSON-lines file.
pub(crate) struct Journal {
    path: Option<PathBuf>,
    /// `"side"` of each record (Claude Code's recorders), if any.
    side: Option<&'static str>,
    records: Mutex<Vec<Map<String, Value>>>,
}

impl Journal {
    pub(crate) fn new(path: Option<PathBuf>, side: Option<&'static str>) -> Journal {
        Journal {
            path,
            side,
            records: Mutex::new(Vec::new()),
        }
    }

    fn records(&self) -> MutexGuard<'_, Vec<Map<String, Value>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, record: &Map<String, Value>) {
        let Some(path) = &self.path else { return };
        let line = format!("{}\n", Value::Object(record.clone()));
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("mock-upstream: cannot write {}: {e}", path.display());
        }
    }

    /// Records `fields` (after `side`, `seq` and `time`); returns its seq.
    pub(crate) fn add(&self, fields: Map<String, Value>) -> usize {
        let mut records = self.records();
        let seq = records.len();
        let mut record = Map::new();
        if let Some(side) = self.side {
            record.insert("side".into(), side.into());
        }
        record.insert("seq".into(), seq.into());
        record.insert("time".into(), now().into());
        record.extend(fields);
        self.write(&record);
        records.push(record);
        seq
    }

    /// Adds `fields` to record `seq` and appends the completed record again
    /// (readers keep the last line of each seq).
    pub(crate) fn update(&self, seq: usize, fields: Map<String, Value>) {
        let mut records = self.records();
        if let Some(record) = records.get_mut(seq) {
            record.extend(fields);
            self.write(record);
        }
    }

    /// How many records have a JSON body.
    pub(crate) fn with_body(&self) -> usize {
        self.records()
            .iter()
            .filter(|r| r.get("body").is_some_and(|b| !b.is_null()))
            .count()
    }

    fn snapshot(&self) -> Value {
        Value::Array(self.records().iter().cloned().map(Value::Object).collect())
    }
}

/// A map from `(key, value)` pairs.
pub(crate) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn unix_time() -> u64 {
    now() as u64
}

/// Header names in lower case (the last of a repeated header wins).
pub(crate) fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        map.insert(
            name.as_str().to_string(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    Value::Object(map)
}

/// The path with its query, as the request line had it.
pub(crate) fn full_path(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string())
}

/// `text` in about `n` pieces (of `ceil(len / n)` characters), for streaming it.
pub(crate) fn pieces_of(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let step = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(step).map(|c| c.iter().collect()).collect()
}

/// Python's `json.dumps(v)`: `", "` and `": "` separators, non-ASCII
/// escaped (what the scripted CLIs' mocks always wrote).
pub(crate) fn py_dumps(v: &Value) -> String {
    fn push_str(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    fn walk(out: &mut String, v: &Value) {
        match v {
            Value::String(s) => push_str(out, s),
            Value::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    walk(out, item);
                }
                out.push(']');
            }
            Value::Object(o) => {
                out.push('{');
                for (i, (k, item)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    push_str(out, k);
                    out.push_str(": ");
                    walk(out, item);
                }
                out.push('}');
            }
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.to_string()),
        }
    }
    let mut out = String::new();
    walk(&mut out, v);
    out
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A JSON answer (`Content-Length`), with extra headers.
pub(crate) fn json_answer(status: u16, body: &Value, extra: &[(&str, &str)]) -> Response {
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response();
    add_headers(&mut response, extra);
    response
}

pub(crate) fn add_headers(response: &mut Response, extra: &[(&str, &str)]) {
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::try_from(*name),
            HeaderValue::try_from(*value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
}

/// A Server-Sent Events answer of `events` (whole SSE frames), calling
/// `done` once the last one is handed over (not when the client leaves
/// first).
pub(crate) fn sse_answer(
    content_type: &'static str,
    events: Vec<String>,
    extra: &[(&str, &str)],
    done: impl FnOnce() + Send + 'static,
) -> Response {
    let stream = futures_util::stream::unfold(
        (events.into_iter(), Some(done)),
        |(mut events, mut done)| async move {
            match events.next() {
                Some(e) => Some((Ok::<_, std::io::Error>(Bytes::from(e)), (events, done))),
                None => {
                    if let Some(done) = done.take() {
                        done();
                    }
                    None
                }
            }
        },
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    add_headers(&mut response, extra);
    response
}

pub(crate) fn sse_data(data: &Value) -> String {
    format!("data: {data}\n\n")
}

pub(crate) fn sse_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The scenario's answer to one request.
pub(crate) async fn handle(
    scenario: &Scenario,
    journal: &std::sync::Arc<Journal>,
    keys: &[String],
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::GET && path == "/__requests" {
        return json_answer(
            200,
            &serde_json::json!({"requests": journal.snapshot()}),
            &[],
        );
    }
    match scenario {
        Scenario::CodexChat => codex::chat(journal, keys, method, &uri, &headers, &body),
        Scenario::CodexResponses { max_responses } => {
            codex::responses(journal, *max_responses, method, &uri, &headers, &body)
        }
        Scenario::ClaudeCode => claude_code::upstream(journal, keys, method, &uri, &headers, &body),
        Scenario::Front { target } => {
            front::proxy(journal, target, method, &uri, &headers, body).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn helpers_match_pythons() {
        assert_eq!(pieces_of("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(pieces_of("ab", 3), ["a", "b"]);
        assert_eq!(pieces_of("", 3), [""]);
        assert_eq!(pieces_of("héllo", 2), ["hél", "lo"]);
        assert_eq!(
            py_dumps(&json!({"a": [1, "é\n"], "b": null, "c": {"d": true}, "e": "🙂"})),
            r#"{"a": [1, "\u00e9\n"], "b": null, "c": {"d": true}, "e": "\ud83d\ude42"}"#
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar\xff"), "Zm9vYmFy/w==");
        assert!("codex-chat".parse::<Scenario>().is_ok());
        assert!("nope".parse::<Scenario>().is_err());
    }

    #[test]
    fn the_journal_keeps_the_last_line_of_each_record() {
        let dir = std::env::temp_dir().join(format!("mock-journal-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let journal = Journal::new(Some(dir.clone()), Some("upstream"));
        let seq = journal.add(fields([("path", json!("/x")), ("body", json!({"a": 1}))]));
        journal.update(seq, fields([("status", json!(200))]));
        let lines: Vec<Value> = std::fs::read_to_string(&dir)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["side"], "upstream");
        assert!(lines[0].get("status").is_none());
        assert_eq!(
            (lines[1]["seq"].as_u64(), lines[1]["status"].as_u64()),
            (Some(0), Some(200))
        );
        assert_eq!(journal.with_body(), 1);
        let _ = std::fs::remove_file(&dir);
    }
}
