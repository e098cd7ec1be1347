//! What one instance accepts before it refuses (`[limits]`), where holds
//! live (`holds`), and how admission is shared through Redis (`[redis]`).

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldsMode {
    #[default]
    Memory,
    Database,
    /// In Redis, with the rate limits (needs `redis_url`).
    Redis,
}

/// What a request meets when Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisFailure {
    /// Refused with a 503 (Anthropic routes: 529), which clients retry:
    /// no instance admits what the others cannot see.
    #[default]
    Closed,
    /// Admitted on this instance's own limits and in-memory ledger, said in
    /// the `x-tollgate-limits: local` response header.
    Local,
}

/// The `[redis]` section (used when `redis_url` is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// The hash tag every key lives under: instances sharing limits and
    /// balances use the same; separate deployments on one Redis, not.
    pub prefix: String,
    /// How long one call may take before Redis counts as unreachable.
    pub timeout_ms: u64,
    pub on_failure: OnRedisFailure,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            prefix: "tollgate".into(),
            timeout_ms: 250,
            on_failure: OnRedisFailure::default(),
        }
    }
}

/// What one instance accepts before it refuses: the `[limits]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections; past it a new one gets a 503 and is closed.
    /// Kept below the process's file-descriptor limit (raised at start).
    pub max_connections: usize,
    /// Time a client has to send a request's headers, counted from when
    /// the connection is ready for one: slow senders and idle keep-alive
    /// connections are closed after it.
    pub header_read_timeout_secs: u64,
    /// A streaming client that reads nothing for this long is dropped; its
    /// request is settled on what the upstream produced.
    pub client_stall_secs: u64,
    /// Settlements waiting to be written; past it new requests get a 503.
    pub settlement_queue: usize,
    /// Body limit of the inference routes (chat, completions, messages,
    /// responses, conversations), where images and documents travel inline.
    pub inference_body_bytes: usize,
    /// Body limit of `/v1/embeddings`.
    pub embeddings_body_bytes: usize,
    /// Body limit of every other route (admin and key management).
    pub management_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout_secs: 15,
            client_stall_secs: 30,
            settlement_queue: 100_000,
            inference_body_bytes: 32 * 1024 * 1024,
            embeddings_body_bytes: 8 * 1024 * 1024,
            management_body_bytes: 1024 * 1024,
        }
    }
}
