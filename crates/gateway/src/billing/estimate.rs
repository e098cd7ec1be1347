//! Usage as the upstream reported it, or as delivered when it did not.
//!
//! [`UsageWatch`] reads every upstream event of a stream (or one whole body)
//! as it passes. When the upstream's usage arrives complete, that is what is
//! charged. When it never does — the stream broke, stalled, or the upstream
//! does not report usage, or reports `usage: {}` — the charge is estimated
//! from what was delivered: the tokenizer over the answer's text, reasoning
//! and tool calls, plus the prompt (the upstream's own input count when it
//! gave one, as Anthropic does at `message_start`, else a local estimate).

use protocol::anthropic::StreamMeter;
use protocol::delivered;
use protocol::TokenUsage;

use crate::tokens::count_text_bounded as count_text;

/// Text is tokenized in pieces of about this size, cut at white space, so a
/// long answer never sits in memory whole and the tokenizer runs rarely.
const COUNT_EVERY_BYTES: usize = 8 * 1024;

/// Counts the tokens of delivered text as it arrives.
#[derive(Debug, Default)]
pub struct OutputCounter {
    pending: String,
    counted: u64,
}

impl OutputCounter {
    pub fn push(&mut self, text: &str) {
        self.pending.push_str(text);
        if self.pending.len() >= COUNT_EVERY_BYTES {
            // Cutting inside a word would count its two halves as more
            // tokens than the word; white space is a token boundary.
            let cut = self
                .pending
                .rfind(char::is_whitespace)
                .filter(|&i| i > 0)
                .unwrap_or(self.pending.len());
            self.counted += count_text(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
    }

    pub fn tokens(&self) -> u64 {
        self.counted + count_text(&self.pending)
    }

    pub fn is_empty(&self) -> bool {
        self.counted == 0 && self.pending.is_empty()
    }
}

/// The wire an upstream answer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat or legacy completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// What an answer delivered, for a request whose usage never came complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The upstream's own input counts, when it reported them (output 0).
    pub input: Option<TokenUsage>,
    /// Tokens of the text, reasoning and tool calls delivered.
    pub output_tokens: u64,
    /// Whether anything at all was delivered.
    pub anything: bool,
}

/// Watches an upstream answer for its usage and what it delivers.
#[derive(Debug)]
pub struct UsageWatch {
    wire: Wire,
    openai: Option<TokenUsage>,
    anthropic: StreamMeter,
    output: OutputCounter,
}

impl UsageWatch {
    pub fn new(wire: Wire) -> Self {
        UsageWatch {
            wire,
            openai: None,
            anthropic: StreamMeter::default(),
            output: OutputCounter::default(),
        }
    }

    /// One stream event's `data`.
    pub fn event(&mut self, data: &str) {
        let output = &mut self.output;
        match self.wire {
            Wire::OpenAi => {
                if data.starts_with('[') {
                    return; // [DONE]
                }
                if let Some(u) = protocol::openai::chunk_usage(data) {
                    if delivered::openai_usage_complete(data) {
                        self.openai = Some(u.usage);
                    }
                }
                delivered::openai_text(data.as_bytes(), &mut |t| output.push(t));
            }
            Wire::Anthropic => {
                self.anthropic.observe(data);
                delivered::anthropic_text(data.as_bytes(), &mut |t| output.push(t));
            }
        }
    }

    /// A whole (non-stream) response body. Its text is read only when it
    /// reports no complete usage: most do, and it is all here anyway.
    pub fn body(&mut self, body: &[u8]) {
        let output = &mut self.output;
        match self.wire {
            Wire::OpenAi => {
                self.openai = delivered::openai_complete_usage(body);
                if self.openai.is_none() {
                    delivered::openai_text(body, &mut |t| output.push(t));
                }
            }
            Wire::Anthropic => {
                // A whole Message's usage is final when it has its output count.
                let has_output = body.windows(15).any(|w| w == b"\"output_tokens\"");
                if has_output {
                    self.openai = protocol::anthropic::body_usage(body);
                }
                if self.openai.is_none() {
                    delivered::anthropic_text(body, &mut |t| output.push(t));
                }
            }
        }
    }

    /// The upstream's complete usage, if it reported one.
    pub fn reported(&self) -> Option<TokenUsage> {
        match self.wire {
            Wire::OpenAi => self.openai,
            Wire::Anthropic => self.openai.or_else(|| {
                self.anthropic
                    .is_complete()
                    .then(|| self.anthropic.usage())?
            }),
        }
    }

    /// The outcome's usage: the upstream's complete usage, or else what was
    /// delivered (tokenized only then: most answers report their usage).
    pub fn outcome(&self) -> (Option<TokenUsage>, Delivered) {
        match self.reported() {
            Some(usage) => (Some(usage), Delivered::default()),
            None => (None, self.delivered()),
        }
    }

    /// What was delivered, for an estimate when no complete usage came.
    pub fn delivered(&self) -> Delivered {
        let input = match self.wire {
            Wire::OpenAi => None,
            Wire::Anthropic => self
                .anthropic
                .usage()
                .map(|u| TokenUsage { output: 0, ..u }),
        };
        Delivered {
            input,
            output_tokens: self.output.tokens(),
            anything: !self.output.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_counted_in_pieces_close_to_the_whole() {
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(2_000);
        let whole = count_text(&text);
        let mut counter = OutputCounter::default();
        for piece in text.as_bytes().chunks(7) {
            counter.push(std::str::from_utf8(piece).unwrap());
        }
        let pieces = counter.tokens();
        assert!(pieces.abs_diff(whole) * 100 <= whole, "{pieces} vs {whole}");
        assert!(counter.pending.len() < COUNT_EVERY_BYTES);
    }

    #[test]
    fn an_openai_stream_without_usage_is_counted_from_its_text() {
        let mut watch = UsageWatch::new(Wire::OpenAi);
        for word in ["Hello", " there", ",", " friend"] {
            let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"content": word}}]});
            watch.event(&chunk.to_string());
        }
        watch.event(r#"{"choices":[],"usage":{}}"#);
        watch.event("[DONE]");
        assert_eq!(watch.reported(), None);
        let d = watch.delivered();
        assert_eq!((d.input, d.output_tokens, d.anything), (None, 4, true));
    }

    #[test]
    fn an_anthropic_stream_cut_before_message_delta_is_not_final() {
        let mut watch = UsageWatch::new(Wire::Anthropic);
        watch.event(
            r#"{"type":"message_start","message":{"usage":{"input_tokens":20,"output_tokens":1}}}"#,
        );
        watch.event(r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello there friend"}}"#);
        assert_eq!(watch.reported(), None);
        let d = watch.delivered();
        assert_eq!(d.input.map(|u| (u.input, u.output)), Some((20, 0)));
        assert_eq!(d.output_tokens, 3);
        watch.event(r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#);
        assert_eq!(watch.reported().map(|u| (u.input, u.output)), Some((20, 3)));
    }

    #[test]
    fn bodies_report_usage_only_when_it_has_numbers() {
        let mut watch = UsageWatch::new(Wire::OpenAi);
        watch.body(br#"{"choices":[{"message":{"content":"Hi there"}}],"usage":{}}"#);
        assert_eq!(watch.reported(), None);
        assert_eq!(watch.delivered().output_tokens, 2);
        let mut watch = UsageWatch::new(Wire::OpenAi);
        watch.body(br#"{"choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#);
        assert_eq!(watch.reported().map(|u| (u.input, u.output)), Some((5, 1)));
    }
}
