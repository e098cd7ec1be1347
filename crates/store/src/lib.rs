//! Tollgate persistence.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver: SQLite for
//! a single machine (the embedded default) and PostgreSQL for several
//! stateless instances. Queries use `$N` placeholders, which both accept, and
//! only portable SQL; the schema differs per backend only in its migrations.
//!
//! Money is `i64` nano-USD (1e-9 USD) and times are Unix milliseconds.

mod billing;
mod db;
mod keys;
mod settings;
pub mod testing;
mod usage;
mod users;

pub use billing::{Reservation, ReserveOutcome, SettleOutcome, Settlement};
pub use db::{Backend, Store};
pub use keys::{ApiKey, KeyUpdate, NewKey};
pub use usage::{UsageFilter, UsageRecord};
pub use users::{BalanceChange, LedgerEntry, NewUser, User, UserUpdate};

/// Errors of the persistence layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("insufficient balance")]
    InsufficientBalance,
    #[error("migration {version} failed: {source}")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
