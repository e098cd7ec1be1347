//! Wire types and pure protocol code for Tollgate.
//!
//! Everything here is I/O-free: it parses, serialises and transforms bytes and
//! values. The server, the store and the providers depend on this crate, never
//! the reverse, so every piece can be unit-tested without a socket.

pub mod anthropic;
pub mod assemble;
pub mod delivered;
mod extra;
pub mod openai;
pub mod rewrite;
pub mod sse;
pub mod translate;
pub mod usage;

pub use usage::TokenUsage;
