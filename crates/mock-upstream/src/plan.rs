//! The built-in answers and how a request's effective script becomes an
//! [`Answer`](crate::render::Answer): the conversational rules (tool calls,
//! tool results, `[slow]`, `[break]`), Anthropic's request checks and
//! count_tokens' word count.

use std::sync::Arc;

use serde_json::Value;

use crate::render::{Answer, Counts, Reported};
use crate::script::{Api, Script, ToolCall, UsageSpec};

/// The built-in text of an OpenAI (chat, legacy completion, Responses) answer.
pub const OPENAI_TEXT: [&str; 4] = ["Hello", " from", " the", " mock"];
/// The built-in text of an Anthropic answer.
pub const CLAUDE_TEXT: [&str; 5] = ["Hello", " from", " the", " Claude", " mock"];
/// The tool the built-in answers call, with these arguments.
pub const TOOL_NAME: &str = "get_weather";
pub const OPENAI_TOOL_CALL_ID: &str = "call_mock_1";
pub const OPENAI_ARGUMENTS: [&str; 2] = ["{\"city\":", "\"Paris\"}"];
pub const CLAUDE_TOOL_USE_ID: &str = "toolu_mock_1";
pub const CLAUDE_ARGUMENTS: [&str; 3] = ["{\"city\":", " \"Par", "is\"}"];
/// Built-in usage: OpenAI (and Responses) prompt tokens, cached among them.
pub const OPENAI_INPUT: u64 = 12;
pub const OPENAI_CACHED: u64 = 2;
/// Built-in usage: Anthropic uncached input, cache reads, cache writes.
pub const CLAUDE_INPUT: u64 = 15;
pub const CLAUDE_CACHE_READ: u64 = 3;
pub const CLAUDE_CACHE_WRITE: u64 = 2;

/// A prompt holding this breaks the stream off after [`BREAK_AFTER`] pieces.
pub const BREAK_MARKER: &str = "[break]";
pub const BREAK_AFTER: u64 = 2;
/// A prompt holding this is answered [`SLOW_PIECES`] pieces, each
/// [`SLOW_DELAY_MS`] after the one before (the first too).
pub const SLOW_MARKER: &str = "[slow]";
pub const SLOW_PIECES: usize = 50;
pub const SLOW_DELAY_MS: u64 = 100;
/// A prompt holding `[mock-script:{…}]` is answered as that script says.
pub const SCRIPT_MARKER: &str = "[mock-script:";

/// `["s0", " s1", … " s49"]`.
pub fn slow_text() -> Vec<String> {
    (0..SLOW_PIECES)
        .map(|i| {
            if i == 0 {
                "s0".into()
            } else {
                format!(" s{i}")
            }
        })
        .collect()
}

/// The answer to a last user turn holding a tool result with this text.
pub fn tool_result_text(result: &str) -> Vec<String> {
    vec!["The tool".into(), " said: ".into(), result.to_string()]
}

/// How a request is answered: the answer, and how it is delivered.
#[derive(Debug)]
pub struct Plan {
    pub answer: Answer,
    pub break_after: Option<u64>,
    pub first_piece_delay_ms: u64,
    pub chunk_delay_ms: u64,
}

/// The answer to `body` (a JSON object) on `api`, as `script` (every layer
/// merged) says, the built-in rules filling in what it leaves unset.
pub fn plan(api: Api, body: &Value, script: &Script) -> Plan {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_string();
    let mut break_after = None;
    let mut first_piece_delay_ms = 0;
    let mut chunk_delay_ms = 0;
    let (text, tool_call) = match (&script.text, &script.tool_call) {
        (None, None) => {
            let (text, call) = auto_answer(api, body);
            if call.is_none() {
                let stream = body.get("stream") == Some(&Value::Bool(true));
                if stream && breaks(body) {
                    break_after = Some(BREAK_AFTER);
                }
                if is_slow(body) {
                    first_piece_delay_ms = SLOW_DELAY_MS;
                    chunk_delay_ms = SLOW_DELAY_MS;
                    (slow_text().into(), None)
                } else {
                    (text, call)
                }
            } else {
                (text, call)
            }
        }
        (text, call) => (
            text.clone().unwrap_or_else(|| Arc::from(Vec::new())),
            call.clone().unwrap_or_default(),
        ),
    };
    if let Some(b) = script.break_after {
        break_after = b;
    }
    if let Some(ms) = script.first_piece_delay_ms {
        first_piece_delay_ms = ms;
    }
    if let Some(ms) = script.chunk_delay_ms {
        chunk_delay_ms = ms;
    }
    let pieces = text.len() + tool_call.as_ref().map_or(0, |c| c.arguments.len());
    let usage = match &script.usage {
        Some(UsageSpec::Omit) => Reported::Omit,
        Some(UsageSpec::Empty) => Reported::Empty,
        counts => {
            let mut c = default_counts(api, pieces as u64);
            if let Some(UsageSpec::Counts(u)) = counts {
                c.input = u.input.unwrap_or(c.input);
                c.cached = u.cached.or(c.cached);
                c.cache_write = u.cache_write.unwrap_or(c.cache_write);
                c.output = u.output.unwrap_or(c.output);
                c.reasoning = u.reasoning.or(c.reasoning);
            }
            Reported::Counts(c)
        }
    };
    Plan {
        answer: Answer {
            model,
            text,
            tool_call,
            usage,
        },
        break_after,
        first_piece_delay_ms,
        chunk_delay_ms,
    }
}

fn default_counts(api: Api, pieces: u64) -> Counts {
    match api {
        Api::Anthropic => Counts {
            input: CLAUDE_INPUT,
            cached: Some(CLAUDE_CACHE_READ),
            cache_write: CLAUDE_CACHE_WRITE,
            output: pieces,
            reasoning: None,
        },
        Api::OpenAi | Api::Responses => Counts {
            input: OPENAI_INPUT,
            cached: Some(OPENAI_CACHED),
            cache_write: 0,
            output: pieces,
            reasoning: None,
        },
    }
}

fn strings(pieces: &[&str]) -> Arc<[String]> {
    pieces.iter().map(|p| p.to_string()).collect()
}

/// The built-in conversational answer: (text, tool call).
fn auto_answer(api: Api, body: &Value) -> (Arc<[String]>, Option<ToolCall>) {
    match api {
        Api::OpenAi => {
            if truthy(body.get("tools")) {
                let call = ToolCall::new(OPENAI_TOOL_CALL_ID, TOOL_NAME, &OPENAI_ARGUMENTS);
                (Arc::from(Vec::new()), Some(call))
            } else {
                (strings(&OPENAI_TEXT), None)
            }
        }
        Api::Anthropic => match last_tool_result(body) {
            Some(result) => (tool_result_text(&result).into(), None),
            None if truthy(body.get("tools")) => {
                let call = ToolCall::new(CLAUDE_TOOL_USE_ID, TOOL_NAME, &CLAUDE_ARGUMENTS);
                (Arc::from(Vec::new()), Some(call))
            }
            None => (strings(&CLAUDE_TEXT), None),
        },
        Api::Responses => (strings(&OPENAI_TEXT), None),
    }
}

/// Python's truthiness of a JSON value (a non-empty list, object or string…).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// The parts of a request a prompt marker is looked for in.
const PROMPT_FIELDS: [&str; 5] = ["messages", "system", "input", "instructions", "prompt"];

/// Whether any string (or key) under `v` contains `needle`.
fn contains(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|v| contains(v, needle)),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| k.contains(needle) || contains(v, needle)),
        _ => false,
    }
}

fn in_prompt(body: &Value, needle: &str) -> bool {
    PROMPT_FIELDS
        .iter()
        .any(|f| body.get(*f).is_some_and(|v| contains(v, needle)))
}

fn is_slow(body: &Value) -> bool {
    in_prompt(body, SLOW_MARKER)
}

fn breaks(body: &Value) -> bool {
    in_prompt(body, BREAK_MARKER)
}

/// The script of a `[mock-script:{…}]` marker in the prompt, if any.
pub fn prompt_script(body: &Value) -> Option<Result<Script, String>> {
    fn find(v: &Value) -> Option<&str> {
        match v {
            Value::String(s) => s.contains(SCRIPT_MARKER).then_some(s.as_str()),
            Value::Array(a) => a.iter().find_map(find),
            Value::Object(o) => o.values().find_map(find),
            _ => None,
        }
    }
    let text = PROMPT_FIELDS
        .iter()
        .find_map(|f| body.get(*f).and_then(find))?;
    let start = text.find(SCRIPT_MARKER)? + SCRIPT_MARKER.len();
    let rest = &text[start..];
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    let parsed = match values.next() {
        Some(Ok(v)) if rest[values.byte_offset()..].starts_with(']') => Script::from_json(&v),
        Some(Ok(_)) => Err("the script must be followed by `]`".into()),
        Some(Err(e)) => Err(format!("not JSON: {e}")),
        None => Err("no script after `[mock-script:`".into()),
    };
    Some(parsed.map_err(|e| format!("[mock-script:…] in the prompt: {e}")))
}

// --- Anthropic requests ----------------------------------------------------------

/// The text of an Anthropic content (a string or a list of blocks): text
/// blocks and tool results' contents, joined by newlines.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut parts = Vec::new();
            for block in blocks.iter().filter(|b| b.is_object()) {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            parts.push(t.to_string());
                        }
                    }
                    Some("tool_result") => {
                        parts.push(text_of(block.get("content").unwrap_or(&Value::Null)))
                    }
                    _ => {}
                }
            }
            parts.retain(|p| !p.is_empty());
            parts.join("\n")
        }
        _ => String::new(),
    }
}

/// count_tokens' answer: the number of whitespace-separated words of the
/// text in `system` and `messages`.
pub fn count_words(body: &Value) -> usize {
    let mut texts = vec![text_of(body.get("system").unwrap_or(&Value::Null))];
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if m.is_object() {
            texts.push(text_of(m.get("content").unwrap_or(&Value::Null)));
        }
    }
    texts.iter().map(|t| t.split_whitespace().count()).sum()
}

/// A message's content as blocks (a string is one text block).
fn blocks_of(message: &Value) -> Vec<Value> {
    match message.get("content") {
        Some(Value::String(s)) => vec![serde_json::json!({"type": "text", "text": s})],
        Some(Value::Array(a)) => a.iter().filter(|b| b.is_object()).cloned().collect(),
        _ => Vec::new(),
    }
}

fn of_type<'a>(blocks: &'a [Value], kind: &str, field: &str) -> Vec<&'a Value> {
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
        .map(|b| b.get(field).unwrap_or(&Value::Null))
        .collect()
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// The text of the last user turn's last tool_result, if it has one.
pub fn last_tool_result(body: &Value) -> Option<String> {
    let messages = body.get("messages")?.as_array()?;
    let last_user = messages
        .iter()
        .rfind(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    let blocks = blocks_of(last_user);
    let result = blocks
        .iter()
        .rfind(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))?;
    Some(text_of(result.get("content").unwrap_or(&Value::Null)))
}

/// Anthropic's checks that matter for a translating gateway: `None` when
/// the request is fine, else the message of the 400.
pub fn check_messages_request(body: &Value, count_only: bool) -> Option<String> {
    if !matches!(body.get("model"), Some(Value::String(m)) if !m.is_empty()) {
        return Some("model: Field required".into());
    }
    let max_tokens = body.get("max_tokens").and_then(Value::as_u64);
    if !count_only && !matches!(max_tokens, Some(n) if n >= 1) {
        return Some("max_tokens: Field required (a positive integer)".into());
    }
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Some("messages: at least one message is required".into());
    };
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        // Claude Code sends a `system` message after the first turn, and
        // Anthropic takes it (e2e/claude_code/FINDINGS.md).
        if !message.is_object() || !matches!(role, Some("user" | "assistant" | "system")) {
            return Some(format!(
                "messages.{i}.role: Input should be 'user', 'assistant' or 'system'"
            ));
        }
        if !matches!(
            message.get("content"),
            Some(Value::String(_) | Value::Array(_))
        ) {
            return Some(format!(
                "messages.{i}.content: Input should be a string or a list of blocks"
            ));
        }
        let blocks = blocks_of(message);
        let uses = of_type(&blocks, "tool_use", "id");
        let results = of_type(&blocks, "tool_result", "tool_use_id");
        if role == Some("assistant") && !results.is_empty() {
            return Some(format!(
                "messages.{i}: tool_result blocks are only allowed in user turns"
            ));
        }
        if role == Some("user") && !uses.is_empty() {
            return Some(format!(
                "messages.{i}: tool_use blocks are only allowed in assistant turns"
            ));
        }
        if !results.is_empty() {
            let before = match i.checked_sub(1).map(|j| &messages[j]) {
                Some(m) if m.get("role").and_then(Value::as_str) == Some("assistant") => {
                    blocks_of(m)
                }
                _ => Vec::new(),
            };
            let ids = of_type(&before, "tool_use", "id");
            if let Some(r) = results.iter().find(|r| !ids.contains(r)) {
                return Some(format!(
                    "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {}. \
                     Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                    id_text(r)
                ));
            }
        }
        if !uses.is_empty() && i + 1 < messages.len() {
            let next = blocks_of(&messages[i + 1]);
            let answered = of_type(&next, "tool_result", "tool_use_id");
            let missing: Vec<String> = uses
                .iter()
                .filter(|u| !answered.contains(u))
                .map(|u| id_text(u))
                .collect();
            if !missing.is_empty() {
                return Some(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}",
                    missing.join(", ")
                ));
            }
        }
    }
    match body.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            for (j, tool) in tools.iter().enumerate() {
                if !tool.get("name").is_some_and(Value::is_string) {
                    return Some(format!("tools.{j}.name: Field required"));
                }
                if tool.get("type").is_none()
                    && !tool.get("input_schema").is_some_and(Value::is_object)
                {
                    return Some(format!("tools.{j}.input_schema: Field required"));
                }
            }
        }
        Some(_) => return Some("tools: Input should be a list".into()),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Value {
        v
    }

    #[test]
    fn built_in_answers_follow_the_conversation() {
        let chat = |b: Value| plan(Api::OpenAi, &b, &Script::new());
        let p = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(p.answer.text[..], OPENAI_TEXT);
        assert_eq!(
            p.answer.usage,
            Reported::Counts(Counts {
                input: 12,
                cached: Some(2),
                cache_write: 0,
                output: 4,
                reasoning: None
            })
        );
        let p = chat(json!({"model": "m", "messages": [], "tools": [{"type": "function"}]}));
        assert!(p.answer.text.is_empty());
        assert_eq!(p.answer.tool_call.unwrap().arguments, OPENAI_ARGUMENTS);
        let p = chat(json!({"messages": [{"role": "user", "content": "[slow] x"}]}));
        assert_eq!(
            (p.answer.text.len(), p.chunk_delay_ms),
            (SLOW_PIECES, SLOW_DELAY_MS)
        );
        assert_eq!(p.answer.model, "mock-model");
        let broken = json!({"stream": true, "messages": [{"role": "user", "content": [{"type": "text", "text": "[break]"}]}]});
        assert_eq!(chat(broken.clone()).break_after, Some(BREAK_AFTER));
        // Only a stream breaks.
        let mut whole = broken;
        whole["stream"] = json!(false);
        assert_eq!(chat(whole).break_after, None);
        // A scripted text turns the conversational rules off.
        let p = plan(
            Api::OpenAi,
            &json!({"tools": [1], "messages": [{"role": "user", "content": "[break]"}]}),
            &Script::new().text(["x"]),
        );
        assert_eq!(
            (p.answer.text.to_vec(), p.answer.tool_call, p.break_after),
            (vec!["x".to_string()], None, None)
        );

        let claude = |b: Value| plan(Api::Anthropic, &b, &Script::new());
        let p = claude(
            json!({"messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "t"}]}),
        );
        assert_eq!(p.answer.tool_call.unwrap().id, CLAUDE_TOOL_USE_ID);
        let p = claude(json!({"tools": [{"name": "t"}], "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "t", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "sunny"}]}]}
        ]}));
        assert_eq!(p.answer.text.to_vec(), tool_result_text("sunny"));
        assert_eq!(
            p.answer.usage,
            Reported::Counts(Counts {
                input: 15,
                cached: Some(3),
                cache_write: 2,
                output: 3,
                reasoning: None
            })
        );
    }

    #[test]
    fn a_prompt_may_carry_a_script() {
        let b = body(
            json!({"messages": [{"role": "user", "content": "a [mock-script:{\"status\": 503}] b"}]}),
        );
        assert_eq!(prompt_script(&b).unwrap().unwrap().status, Some(503));
        let b = json!({"input": "[mock-script:{\"status\": 503}"});
        assert!(prompt_script(&b).unwrap().is_err());
        let b = json!({"input": "[mock-script:{\"stat\": 503}]"});
        assert!(prompt_script(&b).unwrap().is_err());
        assert!(prompt_script(&json!({"input": "plain"})).is_none());
    }

    #[test]
    fn count_tokens_counts_words() {
        let b = json!({"system": "Be brief.", "messages": [
            {"role": "user", "content": "Count the words in this sentence, please."},
            {"role": "assistant", "content": [{"type": "text", "text": "Seven."}, {"type": "image"}]}
        ]});
        assert_eq!(count_words(&b), 2 + 7 + 1);
    }

    #[test]
    fn anthropic_requests_are_checked_as_anthropic_does() {
        let ok =
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(check_messages_request(&ok, false), None);
        let mut no_max = ok.clone();
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert!(check_messages_request(&no_max, false)
            .unwrap()
            .starts_with("max_tokens"));
        assert_eq!(check_messages_request(&no_max, true), None);
        let orphan = json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "r"}]}]});
        assert!(check_messages_request(&orphan, false)
            .unwrap()
            .contains("unexpected `tool_use_id`"));
        let unanswered = json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": "and?"}]});
        assert!(check_messages_request(&unanswered, false)
            .unwrap()
            .contains("t1"));
        let bad_tool = json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f"}]});
        assert!(check_messages_request(&bad_tool, false)
            .unwrap()
            .contains("input_schema"));
        let late_system = json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"}, {"role": "system", "content": "env"}]});
        assert_eq!(check_messages_request(&late_system, false), None);
        let tool_role =
            json!({"model": "c", "max_tokens": 5, "messages": [{"role": "tool", "content": "hi"}]});
        assert!(check_messages_request(&tool_role, false)
            .unwrap()
            .contains("role"));
    }
}
