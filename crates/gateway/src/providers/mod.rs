//! Upstream providers: one adapter per kind of upstream API.

mod openai;

pub use openai::Provider;

/// Why an upstream call produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// Connection refused, reset, DNS or TLS failure.
    Unreachable,
    /// No response (or no next chunk) within the configured time.
    Timeout,
}

impl UpstreamError {
    pub fn metric_kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable => "unreachable",
            UpstreamError::Timeout => "timeout",
        }
    }
}
