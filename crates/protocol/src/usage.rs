//! Token usage as the gateway meters it, independent of the wire protocol.

use serde::{Deserialize, Serialize};

/// Tokens an upstream reported for one request.
///
/// `input` counts every prompt token, *including* cache reads and cache
/// writes, as OpenAI reports `prompt_tokens`; `cached_input` (cache reads) and
/// `cache_write` (Anthropic's cache creation) are the subsets billed at their
/// own prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    #[serde(default)]
    pub cache_write: u64,
}

impl TokenUsage {
    /// Input tokens billed at the full input price.
    pub fn uncached_input(&self) -> u64 {
        self.input
            .saturating_sub(self.cached_input)
            .saturating_sub(self.cache_write)
    }

    /// Input and output tokens together (saturating: an upstream may
    /// report absurd counts, which must not overflow).
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_counts_saturate() {
        let max = TokenUsage {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: u64::MAX,
            cache_write: u64::MAX,
        };
        assert_eq!(max.total(), u64::MAX);
        assert_eq!(max.uncached_input(), 0);
    }
}
