//! Every setting's default, for `#[serde(default = …)]`.

pub fn listen() -> String {
    "127.0.0.1:8080".into()
}
pub fn database_url() -> String {
    "sqlite://data/tollgate.db".into()
}
pub fn log_format() -> String {
    "text".into()
}
pub fn log_level() -> String {
    "info".into()
}
pub fn credits_per_usd() -> u64 {
    34_000
}
pub fn max_keys_per_user() -> i64 {
    5_000
}
pub fn default_max_tokens() -> u64 {
    4_096
}
pub fn shutdown_grace_secs() -> u64 {
    30
}
pub fn billing() -> bool {
    true
}
pub fn stored_retention_days() -> u64 {
    30
}
pub fn ledger_refresh_ms() -> u64 {
    1_000
}
pub fn auth_cache_ttl_ms() -> u64 {
    5_000
}
pub fn hold_ttl_secs() -> u64 {
    3_600
}
pub fn connect_timeout_secs() -> u64 {
    10
}
pub fn request_timeout_secs() -> u64 {
    600
}
pub fn read_timeout_secs() -> u64 {
    120
}
