//! Tollgate persistence.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver: SQLite for
//! a single machine (the embedded default) and PostgreSQL for several
//! stateless instances. Queries use `$N` placeholders, which both accept, and
//! only portable SQL; the schema differs per backend only in its migrations.
//!
//! Money is `i64` nano-USD (1e-9 USD) and times are Unix milliseconds.

mod billing;
mod completions;
mod conversations;
mod db;
mod files;
mod keys;
mod oauth;
mod payments;
mod responses;
mod rules;
mod sessions;
mod settings;
pub mod testing;
mod usage;
mod users;

pub use billing::{Reservation, ReserveOutcome, SettleOutcome, Settlement};
pub use completions::{CompletionFilter, StoredCompletion};
pub use conversations::{Conversation, ItemPage};
pub use db::{Backend, Store};
pub use files::{
    storage_cost, FileFilter, FileQuota, FileUpdate, FinishedUpload, StoredFile, FILE_CLEANUP_BATCH,
};
pub use keys::{ApiKey, KeyUpdate, NewKey};
pub use oauth::{
    day_of, replay, AppUpdate, Charge, ChargeOutcome, CodeRefusal, Connection, Earnings, Grant,
    NewApp, NewCharge, OAuthApp, OAuthCode, Redemption,
};
pub use payments::{
    refund_credit, Applied, NewOrder, Order, OrderFilter, OrderState, PaidDay, PaymentChange,
    PaymentEvent,
};
pub use responses::StoredResponse;
pub use rules::{RuleFilter, RuleHits, StoredRule, OPERATOR};
pub use sessions::{Login, NewSession, Session};
pub use usage::{DayTotals, UsageFilter, UsageRecord};
pub use users::{
    BalanceChange, KeyFigures, LedgerEntry, NewUser, RateLimits, RateLimitsUpdate, User,
    UserFigures, UserUpdate,
};

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
    #[error("stored JSON is invalid: {0}")]
    Json(String),
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

/// A value as JSON text for a JSON column.
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(json_error)
}

/// A JSON column's value.
pub(crate) fn parse_json_column<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<T> {
    use sqlx::Row;
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(json_error)
}

pub(crate) fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Json(e.to_string())
}
