//! Scripts: what the mock answers one request (or every request), as layers
//! of optional fields. The format is described in the crate's documentation.

use std::sync::Arc;

use serde_json::{Map, Value};

/// The API family a request belongs to, by its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` (and
    /// unknown paths).
    OpenAi,
    /// `/v1/messages`, `/v1/messages/count_tokens`.
    Anthropic,
    /// `/v1/responses`.
    Responses,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Responses => "responses",
        }
    }
}

/// How the connection fails instead of answering: before any byte of the
/// answer is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection is closed (FIN) without an answer.
    Close,
    /// The connection is reset (RST) without an answer.
    Reset,
}

/// A tool call in the answer, after its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments (a JSON text) in the pieces they are streamed in; each
    /// piece is one output token.
    pub arguments: Vec<String>,
}

impl ToolCall {
    pub fn new(id: &str, name: &str, arguments: &[&str]) -> ToolCall {
        ToolCall {
            id: id.to_string(),
            name: name.to_string(),
            arguments: arguments.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// Token counts an answer reports, each in the field its protocol has for
/// it. Unset counts fall back to the layer below, then to the built-in
/// numbers; `output` defaults to the number of pieces the answer has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// OpenAI `prompt_tokens` (cached included); Anthropic `input_tokens`
    /// (cache excluded); Responses `input_tokens`.
    pub input: Option<u64>,
    /// OpenAI `prompt_tokens_details.cached_tokens`; Anthropic
    /// `cache_read_input_tokens`; Responses `input_tokens_details.cached_tokens`.
    pub cached: Option<u64>,
    /// Anthropic `cache_creation_input_tokens`.
    pub cache_write: Option<u64>,
    /// OpenAI `completion_tokens`; Anthropic and Responses `output_tokens`.
    pub output: Option<u64>,
    /// OpenAI `completion_tokens_details.reasoning_tokens`; Responses
    /// `output_tokens_details.reasoning_tokens`.
    pub reasoning: Option<u64>,
}

impl Usage {
    fn merge(&mut self, over: &Usage) {
        let pick = |a: &mut Option<u64>, b: Option<u64>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.input, over.input);
        pick(&mut self.cached, over.cached);
        pick(&mut self.cache_write, over.cache_write);
        pick(&mut self.output, over.output);
        pick(&mut self.reasoning, over.reasoning);
    }
}

/// What an answer says about its usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageSpec {
    /// These counts (merged field by field over the layer below).
    Counts(Usage),
    /// An empty usage object, `{}`.
    Empty,
    /// No usage at all: no usage field, no usage chunk.
    Omit,
}

/// One layer of a script. Every field is optional; a set field overrides
/// the layers below it (see the crate documentation for the order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    pub status: Option<u16>,
    /// `Some(None)`: no scripted body (the normal answer, or the default
    /// error body of `status`).
    pub body: Option<Option<Value>>,
    pub headers: Option<Vec<(String, String)>>,
    /// Shared, so that a request's answer costs no copy of it.
    pub text: Option<Arc<[String]>>,
    /// `Some(None)`: no tool call, whatever the request offers.
    pub tool_call: Option<Option<ToolCall>>,
    pub usage: Option<UsageSpec>,
    /// `Some(None)`: no fault.
    pub fault: Option<Option<Fault>>,
    /// `Some(None)`: no break.
    pub break_after: Option<Option<u64>>,
    pub head_delay_ms: Option<u64>,
    pub first_piece_delay_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    /// Layers that apply only to requests of one API, over this one.
    pub openai: Option<Box<Script>>,
    pub anthropic: Option<Box<Script>>,
    pub responses: Option<Box<Script>>,
    /// Layers that apply only to requests carrying one key (OpenAI's
    /// bearer token, Anthropic's `x-api-key`), over the API's.
    pub keys: Vec<(String, Script)>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Answer with this status; not 2xx: an error body in the protocol's
    /// shape (unless `body` is scripted too).
    pub fn status(mut self, status: u16) -> Script {
        self.status = Some(status);
        self
    }

    /// Answer with this JSON body, as is.
    pub fn body(mut self, body: Value) -> Script {
        self.body = Some(Some(body));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Script {
        self.headers
            .get_or_insert_with(Vec::new)
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The answer's text, piece by piece (one output token and one streamed
    /// chunk each). Without a tool call unless one is scripted too.
    pub fn text<S: AsRef<str>>(mut self, pieces: impl IntoIterator<Item = S>) -> Script {
        let pieces: Vec<String> = pieces.into_iter().map(|p| p.as_ref().to_string()).collect();
        self.text = Some(pieces.into());
        self
    }

    pub fn tool_call(mut self, call: ToolCall) -> Script {
        self.tool_call = Some(Some(call));
        self
    }

    pub fn no_tool_call(mut self) -> Script {
        self.tool_call = Some(None);
        self
    }

    pub fn usage(mut self, usage: Usage) -> Script {
        self.usage = Some(UsageSpec::Counts(usage));
        self
    }

    /// No usage in the answer (no field, no stream chunk).
    pub fn no_usage(mut self) -> Script {
        self.usage = Some(UsageSpec::Omit);
        self
    }

    /// `usage: {}`.
    pub fn empty_usage(mut self) -> Script {
        self.usage = Some(UsageSpec::Empty);
        self
    }

    pub fn fault(mut self, fault: Fault) -> Script {
        self.fault = Some(Some(fault));
        self
    }

    /// A stream fails (the connection breaks) once `pieces` pieces are sent;
    /// a whole answer, after half its bytes.
    pub fn break_after(mut self, pieces: u64) -> Script {
        self.break_after = Some(Some(pieces));
        self
    }

    pub fn head_delay_ms(mut self, ms: u64) -> Script {
        self.head_delay_ms = Some(ms);
        self
    }

    /// Wait before the first piece (a stream has sent its head and the
    /// events before the pieces).
    pub fn first_piece_delay_ms(mut self, ms: u64) -> Script {
        self.first_piece_delay_ms = Some(ms);
        self
    }

    /// Wait before each piece but the first.
    pub fn chunk_delay_ms(mut self, ms: u64) -> Script {
        self.chunk_delay_ms = Some(ms);
        self
    }

    /// `script` applies to requests of `api` only, over this layer.
    pub fn for_api(mut self, api: Api, script: Script) -> Script {
        let slot = match api {
            Api::OpenAi => &mut self.openai,
            Api::Anthropic => &mut self.anthropic,
            Api::Responses => &mut self.responses,
        };
        *slot = Some(Box::new(script));
        self
    }

    /// `script` applies to requests carrying `key` only, over this layer
    /// and its API sections.
    pub fn for_key(mut self, key: &str, script: Script) -> Script {
        self.keys.retain(|(k, _)| k != key);
        self.keys.push((key.to_string(), script));
        self
    }

    /// Lays `over` (and its sections for `api` and `key`) over this script.
    pub fn merge(&mut self, over: &Script, api: Api, key: Option<&str>) {
        self.merge_fields(over);
        let section = match api {
            Api::OpenAi => &over.openai,
            Api::Anthropic => &over.anthropic,
            Api::Responses => &over.responses,
        };
        if let Some(section) = section {
            self.merge_fields(section);
        }
        if let Some((_, section)) = key.and_then(|k| over.keys.iter().find(|(name, _)| name == k)) {
            self.merge_fields(section);
        }
    }

    /// Sets `over`'s own fields (not its sections) in this script and in
    /// every one of its sections, so that they hold for every request.
    pub fn overlay(&mut self, over: &Script) {
        self.merge_fields(over);
        for section in [&mut self.openai, &mut self.anthropic, &mut self.responses]
            .into_iter()
            .flatten()
        {
            section.merge_fields(over);
        }
        for (_, section) in &mut self.keys {
            section.merge_fields(over);
        }
    }

    fn merge_fields(&mut self, over: &Script) {
        fn pick<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if b.is_some() {
                a.clone_from(b);
            }
        }
        pick(&mut self.status, &over.status);
        pick(&mut self.body, &over.body);
        pick(&mut self.headers, &over.headers);
        pick(&mut self.text, &over.text);
        pick(&mut self.tool_call, &over.tool_call);
        match (&mut self.usage, &over.usage) {
            (Some(UsageSpec::Counts(below)), Some(UsageSpec::Counts(above))) => below.merge(above),
            (_, Some(u)) => self.usage = Some(u.clone()),
            (_, None) => {}
        }
        pick(&mut self.fault, &over.fault);
        pick(&mut self.break_after, &over.break_after);
        pick(&mut self.head_delay_ms, &over.head_delay_ms);
        pick(&mut self.first_piece_delay_ms, &over.first_piece_delay_ms);
        pick(&mut self.chunk_delay_ms, &over.chunk_delay_ms);
    }

    /// Parses a script from its JSON form (see the crate documentation).
    pub fn from_json(value: &Value) -> Result<Script, String> {
        parse(value, true)
    }

    /// Parses the JSON text of a script.
    pub fn from_json_text(text: &str) -> Result<Script, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        Script::from_json(&value)
    }
}

fn parse(value: &Value, top: bool) -> Result<Script, String> {
    let Value::Object(map) = value else {
        return Err("a script is a JSON object".into());
    };
    let mut s = Script::default();
    for (key, v) in map {
        let null = v.is_null();
        match key.as_str() {
            "status" => {
                let status = v
                    .as_u64()
                    .filter(|n| (100..=999).contains(n))
                    .ok_or("status: a number from 100 to 999")?;
                s.status = Some(status as u16);
            }
            "body" => s.body = Some((!null).then(|| v.clone())),
            "headers" => s.headers = Some(headers(v)?),
            "text" => s.text = Some(strings(v).ok_or("text: a list of strings")?.into()),
            "tool_call" => s.tool_call = Some(if null { None } else { Some(tool_call(v)?) }),
            "usage" => s.usage = Some(usage(v)?),
            "fault" => {
                s.fault = Some(match v.as_str() {
                    _ if null => None,
                    Some("close") => Some(Fault::Close),
                    Some("reset") => Some(Fault::Reset),
                    _ => return Err("fault: \"close\", \"reset\" or null".into()),
                })
            }
            "break_after" => {
                s.break_after = Some(if null {
                    None
                } else {
                    Some(
                        v.as_u64()
                            .ok_or("break_after: a count of pieces, or null")?,
                    )
                })
            }
            "head_delay_ms" => s.head_delay_ms = Some(millis(key, v)?),
            "first_piece_delay_ms" => s.first_piece_delay_ms = Some(millis(key, v)?),
            "chunk_delay_ms" => s.chunk_delay_ms = Some(millis(key, v)?),
            "keys" if top => {
                let map = v.as_object().ok_or("keys: an object of scripts by key")?;
                for (k, section) in map {
                    let section = parse(section, false).map_err(|e| format!("keys.{k}: {e}"))?;
                    s.keys.push((k.clone(), section));
                }
            }
            "openai" | "anthropic" | "responses" if top => {
                let section = Some(Box::new(
                    parse(v, false).map_err(|e| format!("{key}: {e}"))?,
                ));
                match key.as_str() {
                    "openai" => s.openai = section,
                    "anthropic" => s.anthropic = section,
                    _ => s.responses = section,
                }
            }
            other => return Err(format!("unknown field `{other}`")),
        }
    }
    Ok(s)
}

fn millis(key: &str, v: &Value) -> Result<u64, String> {
    v.as_u64()
        .filter(|ms| *ms <= 3_600_000)
        .ok_or_else(|| format!("{key}: milliseconds, at most an hour"))
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|p| p.as_str().map(str::to_string))
        .collect()
}

fn headers(v: &Value) -> Result<Vec<(String, String)>, String> {
    let map = v.as_object().ok_or("headers: an object of strings")?;
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s)
                if axum::http::HeaderName::try_from(k.as_str()).is_ok()
                    && axum::http::HeaderValue::try_from(s).is_ok() =>
            {
                Ok((k.to_ascii_lowercase(), s.to_string()))
            }
            _ => Err(format!("headers: `{k}` is not a valid header")),
        })
        .collect()
}

fn tool_call(v: &Value) -> Result<ToolCall, String> {
    let map: &Map<String, Value> = v.as_object().ok_or("tool_call: an object or null")?;
    let mut call = ToolCall::new("call_mock_1", "get_weather", &[]);
    for (key, v) in map {
        match key.as_str() {
            "id" => call.id = v.as_str().ok_or("tool_call.id: a string")?.to_string(),
            "name" => call.name = v.as_str().ok_or("tool_call.name: a string")?.to_string(),
            "arguments" => {
                call.arguments = match v {
                    Value::String(s) => vec![s.clone()],
                    _ => strings(v).ok_or("tool_call.arguments: a string or a list of strings")?,
                }
            }
            other => return Err(format!("tool_call: unknown field `{other}`")),
        }
    }
    if call.arguments.is_empty() {
        call.arguments.push("{}".into());
    }
    Ok(call)
}

fn usage(v: &Value) -> Result<UsageSpec, String> {
    match v {
        Value::Null => return Ok(UsageSpec::Omit),
        Value::String(s) if s == "empty" => return Ok(UsageSpec::Empty),
        Value::Object(_) => {}
        _ => return Err("usage: an object of counts, \"empty\" or null".into()),
    }
    let mut u = Usage::default();
    for (key, n) in v.as_object().into_iter().flatten() {
        let n = Some(n.as_u64().ok_or_else(|| format!("usage.{key}: a count"))?);
        match key.as_str() {
            "input" => u.input = n,
            "cached" => u.cached = n,
            "cache_write" => u.cache_write = n,
            "output" => u.output = n,
            "reasoning" => u.reasoning = n,
            other => return Err(format!("usage: unknown field `{other}`")),
        }
    }
    Ok(UsageSpec::Counts(u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_field_and_refuses_mistakes() {
        let s = Script::from_json(&json!({
            "status": 429, "headers": {"Retry-After": "1"}, "text": ["a", "b"],
            "tool_call": {"name": "f", "arguments": "{}"}, "usage": {"input": 3, "output": 4},
            "fault": "reset", "break_after": 2, "head_delay_ms": 5, "chunk_delay_ms": 6,
            "anthropic": {"text": ["c"]}, "keys": {"sk-a": {"status": 401}}
        }))
        .unwrap();
        assert_eq!(s.status, Some(429));
        assert_eq!(s.headers, Some(vec![("retry-after".into(), "1".into())]));
        assert_eq!(s.text.as_deref(), Some(&["a".to_string(), "b".into()][..]));
        assert_eq!(
            s.tool_call,
            Some(Some(ToolCall::new("call_mock_1", "f", &["{}"])))
        );
        assert_eq!(s.fault, Some(Some(Fault::Reset)));
        assert_eq!(s.break_after, Some(Some(2)));
        assert_eq!(
            s.anthropic.as_ref().unwrap().text.as_deref(),
            Some(&["c".to_string()][..])
        );
        assert_eq!(s.keys[0].0, "sk-a");
        assert_eq!(s.keys[0].1.status, Some(401));
        let none = Script::from_json(
            &json!({"tool_call": null, "usage": null, "fault": null, "break_after": null, "body": null}),
        )
        .unwrap();
        assert_eq!(none.tool_call, Some(None));
        assert_eq!(none.usage, Some(UsageSpec::Omit));
        assert_eq!(none.body, Some(None));
        for bad in [
            json!([]),
            json!({"stauts": 500}),
            json!({"status": 5000}),
            json!({"text": "abc"}),
            json!({"fault": "explode"}),
            json!({"usage": {"inputs": 1}}),
            json!({"openai": {"openai": {}}}),
            json!({"keys": {"k": {"keys": {}}}}),
            json!({"headers": {"bad header": "x"}}),
            json!({"head_delay_ms": -1}),
        ] {
            assert!(Script::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layers_override_field_by_field_and_sections_apply_to_their_api() {
        let mut s = Script::new()
            .text(["x"])
            .usage(Usage {
                input: Some(10),
                cached: Some(2),
                ..Usage::default()
            })
            .for_api(Api::Anthropic, Script::new().text(["y"]));
        s.merge(
            &Script::new().status(500).usage(Usage {
                output: Some(7),
                ..Usage::default()
            }),
            Api::OpenAi,
            None,
        );
        assert_eq!(s.status, Some(500));
        assert_eq!(
            s.usage,
            Some(UsageSpec::Counts(Usage {
                input: Some(10),
                cached: Some(2),
                output: Some(7),
                ..Usage::default()
            }))
        );
        let mut base = Script::new();
        base.merge(&s, Api::Anthropic, None);
        assert_eq!(base.text.as_deref(), Some(&["y".to_string()][..]));
        let mut base = Script::new();
        base.merge(&s, Api::OpenAi, None);
        assert_eq!(base.text.as_deref(), Some(&["x".to_string()][..]));
        base.merge(&Script::new().no_usage(), Api::OpenAi, None);
        assert_eq!(base.usage, Some(UsageSpec::Omit));
        // A key's section over its API's.
        let keyed = Script::new()
            .for_api(Api::OpenAi, Script::new().status(201))
            .for_key("k", Script::new().status(429));
        let mut base = Script::new();
        base.merge(&keyed, Api::OpenAi, Some("k"));
        assert_eq!(base.status, Some(429));
        let mut base = Script::new();
        base.merge(&keyed, Api::OpenAi, Some("other"));
        assert_eq!(base.status, Some(201));
    }
}
