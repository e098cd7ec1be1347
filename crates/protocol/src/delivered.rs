//! What an upstream answer delivered, for charging when it reported no usage.
//!
//! An upstream that breaks off mid-stream, or never sends its usage, leaves
//! the gateway to estimate: the text it delivered (answer, reasoning, refusal,
//! tool-call names and arguments) is what a tokenizer counts. These readers
//! pull that text out of one stream event or one whole body; they never
//! count wire bytes (JSON framing, ids, escapes), which overstate the output
//! many times over.
//!
//! They also say whether an upstream's usage is *complete*: an OpenAI
//! `usage: {}` carries no numbers, and Anthropic's `message_start` reports a
//! placeholder output count that only `message_delta` makes final.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

/// A chat `delta` (stream) or `message` (whole body): the same fields.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<Message<'a>>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    /// Legacy completions.
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
}

fn emit<'a>(text: &Option<Cow<'a, str>>, sink: &mut impl FnMut(&str)) {
    if let Some(t) = text {
        if !t.is_empty() {
            sink(t);
        }
    }
}

fn emit_message(m: &Message<'_>, sink: &mut impl FnMut(&str)) {
    emit(&m.content, sink);
    emit(&m.reasoning_content, sink);
    emit(&m.reasoning, sink);
    emit(&m.refusal, sink);
    for call in m.tool_calls.iter().flatten() {
        if let Some(f) = &call.function {
            emit(&f.name, sink);
            emit(&f.arguments, sink);
        }
    }
}

/// The delivered text of an OpenAI chat or legacy completion: one stream
/// chunk's `data`, or a whole response body. Anything else yields nothing.
pub fn openai_text(json: &[u8], sink: &mut impl FnMut(&str)) {
    let Ok(chunk) = serde_json::from_slice::<Chunk>(json) else {
        return;
    };
    for choice in chunk.choices.iter().flatten() {
        if let Some(m) = choice.delta.as_ref().or(choice.message.as_ref()) {
            emit_message(m, sink);
        }
        emit(&choice.text, sink);
    }
}

/// Whether an OpenAI chunk or body carries usage numbers (not `null`, not `{}`).
pub fn openai_usage_complete(json: &str) -> bool {
    openai_complete_usage(json.as_bytes()).is_some()
}

/// The usage of an OpenAI chunk or body when it carries numbers (not
/// `null`, not `{}`): one parse that skips everything else.
pub fn openai_complete_usage(json: &[u8]) -> Option<crate::TokenUsage> {
    #[derive(Deserialize)]
    struct Details {
        #[serde(default)]
        cached_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Counts {
        #[serde(default)]
        prompt_tokens: Option<u64>,
        #[serde(default)]
        completion_tokens: Option<u64>,
        #[serde(default)]
        prompt_tokens_details: Option<Details>,
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        usage: Option<Counts>,
    }
    let counts = serde_json::from_slice::<Probe>(json).ok()?.usage?;
    if counts.prompt_tokens.is_none() && counts.completion_tokens.is_none() {
        return None;
    }
    let input = counts.prompt_tokens.unwrap_or(0);
    let cached = counts
        .prompt_tokens_details
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    Some(crate::TokenUsage {
        input,
        output: counts.completion_tokens.unwrap_or(0),
        cached_input: cached.min(input),
        cache_write: 0,
    })
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    /// A whole body's `tool_use` input (a JSON value, counted as its text).
    #[serde(default)]
    input: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct AnthropicEvent<'a> {
    #[serde(borrow, default)]
    delta: Option<Block<'a>>,
    #[serde(borrow, default)]
    content_block: Option<Block<'a>>,
    /// A whole `Message` body.
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
}

fn emit_block(b: &Block<'_>, sink: &mut impl FnMut(&str)) {
    emit(&b.text, sink);
    emit(&b.thinking, sink);
    emit(&b.partial_json, sink);
    emit(&b.name, sink);
    if let Some(input) = &b.input {
        sink(input.get());
    }
}

/// The delivered text of an Anthropic Messages answer: one stream event's
/// `data`, or a whole `Message` body.
pub fn anthropic_text(json: &[u8], sink: &mut impl FnMut(&str)) {
    let Ok(event) = serde_json::from_slice::<AnthropicEvent>(json) else {
        return;
    };
    for block in [&event.delta, &event.content_block].into_iter().flatten() {
        emit_block(block, sink);
    }
    for block in event.content.iter().flatten() {
        emit_block(block, sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_usage_from_body() {
        let body = br#"{"data":[],"usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        let u = openai_complete_usage(body).unwrap();
        assert_eq!(u.input, 7);
        assert_eq!(u.output, 0);
    }

    fn collect(f: impl Fn(&[u8], &mut dyn FnMut(&str)), json: &str) -> String {
        let mut out = String::new();
        f(json.as_bytes(), &mut |t: &str| out.push_str(t));
        out
    }

    fn openai(json: &str) -> String {
        collect(|j, s| openai_text(j, &mut |t| s(t)), json)
    }

    fn anthropic(json: &str) -> String {
        collect(|j, s| anthropic_text(j, &mut |t| s(t)), json)
    }

    #[test]
    fn openai_chunks_give_their_text_and_tool_arguments_only() {
        assert_eq!(
            openai(
                r#"{"id":"x","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel\"lo"}}]}"#
            ),
            "Hel\"lo"
        );
        assert_eq!(
            openai(
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"get","arguments":"{\"a\":1}"}}]}}]}"#
            ),
            "get{\"a\":1}"
        );
        assert_eq!(
            openai(r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#),
            "think"
        );
        assert_eq!(openai(r#"{"choices":[{"text":"legacy"}]}"#), "legacy");
        assert_eq!(
            openai(r#"{"choices":[{"message":{"content":"whole"}}],"usage":{}}"#),
            "whole"
        );
        assert_eq!(openai(r#"{"choices":[],"usage":{"prompt_tokens":1}}"#), "");
        assert_eq!(openai("not json"), "");
        assert_eq!(openai(r#"{"choices":"odd"}"#), "");
    }

    #[test]
    fn openai_usage_is_complete_only_with_numbers() {
        assert!(openai_usage_complete(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#
        ));
        assert!(!openai_usage_complete(r#"{"choices":[],"usage":{}}"#));
        assert!(!openai_usage_complete(
            r#"{"choices":[{"delta":{}}],"usage":null}"#
        ));
        assert!(!openai_usage_complete(r#"{"usage":{"total_tokens":"x"}}"#));
    }

    #[test]
    fn anthropic_events_and_bodies_give_their_text() {
        assert_eq!(
            anthropic(
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#
            ),
            "Hi"
        );
        assert_eq!(
            anthropic(
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"c"}}"#
            ),
            "{\"c"
        );
        assert_eq!(
            anthropic(
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"get_weather","input":{}}}"#
            ),
            "get_weather{}"
        );
        assert_eq!(
            anthropic(
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#
            ),
            ""
        );
        assert_eq!(
            anthropic(
                r#"{"type":"message","content":[{"type":"text","text":"A"},{"type":"tool_use","name":"f","input":{"x":1}}]}"#
            ),
            "Af{\"x\":1}"
        );
    }
}
