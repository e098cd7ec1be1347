//! Local token estimates for `count_tokens` when the upstream cannot count:
//! a BPE tokenizer (OpenAI's o200k_base) over the request's text, plus fixed
//! allowances for what text cannot measure. An estimate, documented as such:
//! Claude's own tokenizer differs, typically by a few percent on prose.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

/// Tokens assumed per image (Anthropic's figure for a ~1.15 megapixel image).
const IMAGE_TOKENS: u64 = 1_600;
/// Texts longer than this are estimated by size (≈ 4 bytes per token).
const LONG_TEXT_BYTES: usize = 4_096;
/// Framing tokens per message (role and separators).
const MESSAGE_OVERHEAD: u64 = 4;
/// Tokens the upstream adds when tools are present (its tool-use system prompt).
const TOOLS_OVERHEAD: u64 = 350;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// BPE tokens in `text` (bytes / 4 if the tokenizer failed to load).
pub fn count_text(text: &str) -> u64 {
    match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    }
}

/// Runs of text without white space longer than this are estimated by size:
/// BPE merging is quadratic in the length of such a run, and an answer can
/// carry megabytes of base64 in one.
const LONG_RUN_BYTES: usize = 128;

/// BPE tokens in `text`, with bounded work: long runs without white space
/// (base64, hashes, repeated characters) count as one token per 3 bytes,
/// about what the tokenizer gives for base64.
pub fn count_text_bounded(text: &str) -> u64 {
    let mut normal = String::with_capacity(text.len());
    let mut long = 0u64;
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        if word.len() > LONG_RUN_BYTES {
            long += (word.len() as u64).div_ceil(3);
            normal.push_str(&piece[word.len()..]);
        } else {
            normal.push_str(piece);
        }
    }
    count_text(&normal) + long
}

/// Estimated input tokens of an Anthropic Messages request body.
pub fn estimate_messages(body: &Map<String, Value>) -> u64 {
    let mut total = 0;
    if let Some(system) = body.get("system") {
        total += content_tokens(system);
    }
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        total += MESSAGE_OVERHEAD + content_tokens(message.get("content").unwrap_or(&Value::Null));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        if !tools.is_empty() {
            total += TOOLS_OVERHEAD + count_text(&Value::Array(tools.clone()).to_string());
        }
    }
    total.max(1)
}

fn content_tokens(content: &Value) -> u64 {
    match content {
        Value::String(s) => count_text(s),
        Value::Array(blocks) => blocks.iter().map(block_tokens).sum(),
        _ => 0,
    }
}

/// Estimated tokens of any JSON request body: its string values through the
/// tokenizer, plus a little framing per object. Used where no upstream
/// reported usage (e.g. a run cancelled before its usage arrived).
pub fn estimate_value(value: &Value) -> u64 {
    match value {
        // Long texts by size: the tokenizer's cost grows with the text, and
        // this estimate must stay cheap for a long history.
        Value::String(s) if s.len() > LONG_TEXT_BYTES => (s.len() as u64).div_ceil(4),
        Value::String(s) => count_text(s),
        Value::Array(items) => items.iter().map(estimate_value).sum(),
        Value::Object(map) => {
            // Ids and type tags never reach the model as text.
            let text = map
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "call_id" | "type"))
                .map(|(_, v)| estimate_value(v));
            MESSAGE_OVERHEAD + text.sum::<u64>()
        }
        _ => 0,
    }
}

fn block_tokens(block: &Value) -> u64 {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "image" => IMAGE_TOKENS,
        "document" => {
            let source = block.get("source").unwrap_or(&Value::Null);
            match source.get("data").and_then(Value::as_str) {
                // A PDF: decoded bytes / 4, a rough density for extracted text.
                Some(data) if source.get("type").and_then(Value::as_str) == Some("base64") => {
                    (data.len() as u64 * 3 / 4).div_ceil(4)
                }
                Some(text) => count_text(text),
                None => content_tokens(source.get("content").unwrap_or(&Value::Null)),
            }
        }
        "tool_result" => content_tokens(block.get("content").unwrap_or(&Value::Null)),
        "tool_use" => count_text(&block.get("input").map(Value::to_string).unwrap_or_default()),
        "thinking" => count_text(
            block
                .get("thinking")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
        _ => count_text(
            block
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_text_with_bpe() {
        // "Hello, world!" is 4 tokens in o200k_base.
        assert_eq!(count_text("Hello, world!"), 4);
    }

    #[test]
    fn long_runs_are_counted_by_size_and_fast() {
        let prose = "The quick brown fox jumps over the lazy dog. ";
        assert_eq!(count_text_bounded(prose), count_text(prose));
        let run = "y".repeat(1 << 20);
        let started = std::time::Instant::now();
        assert_eq!(
            count_text_bounded(&format!("{prose}{run}")),
            count_text(prose) + (1 << 20) / 3 + 1
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn any_body_is_estimated_from_its_text() {
        let body = json!({"messages": [{"role": "user", "content": "Hello, world!"}]});
        // 4 text tokens, 1 for the role, 4 of framing for each of the two objects.
        assert_eq!(estimate_value(&body), 4 + 1 + 2 * MESSAGE_OVERHEAD);
    }

    #[test]
    fn estimates_grow_with_content() {
        let small = json!({"messages": [{"role": "user", "content": "Hi"}]});
        let big = json!({
            "system": [{"type": "text", "text": "You are a careful assistant."}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe this picture in detail, please."},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
            ]}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]
        });
        let s = estimate_messages(small.as_object().unwrap());
        let b = estimate_messages(big.as_object().unwrap());
        assert!((5..10).contains(&s), "{s}");
        assert!(b > s + IMAGE_TOKENS + TOOLS_OVERHEAD, "{b}");
    }
}
