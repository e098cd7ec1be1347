//! Token usage as the gateway meters it, independent of the wire protocol.

use serde::{Deserialize, Serialize};

/// Tokens an upstream reported for one request.
///
/// `input` counts every prompt token, *including* the cached ones, as OpenAI
/// reports `prompt_tokens`; `cached_input` is the subset billed at the cached
/// price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
}

impl TokenUsage {
    /// Input tokens billed at the full input price.
    pub fn uncached_input(&self) -> u64 {
        self.input.saturating_sub(self.cached_input)
    }

    pub fn total(&self) -> u64 {
        self.input + self.output
    }
}
