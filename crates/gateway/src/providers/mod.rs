//! Upstream providers. Every kind is reached over HTTP with a JSON body; what
//! differs is how it authenticates and which protocol it speaks, which the
//! handlers use to pick a translation.

mod http;

pub use http::Provider;

pub use crate::config::ProviderKind;

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
