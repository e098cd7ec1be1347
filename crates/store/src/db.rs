//! Connecting, pooling and migrating.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::{Result, StoreError};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads.
    pub(crate) pool: AnyPool,
    /// Writes. On SQLite a single connection: SQLite admits one writer at a
    /// time, and queueing writers here (fairly, without sleeping) beats
    /// SQLite's busy handler, which sleeps in steps of up to 100 ms.
    pub(crate) writer: AnyPool,
    backend: Backend,
}

/// Migrations per backend, applied in order; each runs once.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_cache_writes.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_stored_objects.sql"),
    ),
    (4, include_str!("../migrations/sqlite/0004_rate_limits.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_override_rules.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_files.sql")),
    (7, include_str!("../migrations/sqlite/0007_units.sql")),
    (8, include_str!("../migrations/sqlite/0008_console.sql")),
    (9, include_str!("../migrations/sqlite/0009_payments.sql")),
    (10, include_str!("../migrations/sqlite/0010_oauth.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_cache_writes.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_stored_objects.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_rate_limits.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_override_rules.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_files.sql")),
    (7, include_str!("../migrations/postgres/0007_units.sql")),
    (8, include_str!("../migrations/postgres/0008_console.sql")),
    (9, include_str!("../migrations/postgres/0009_payments.sql")),
    (10, include_str!("../migrations/postgres/0010_oauth.sql")),
];

/// Serialises concurrent migrators on PostgreSQL (an arbitrary constant).
const PG_MIGRATION_LOCK: i64 = 0x7011_6a7e;

impl Store {
    /// Opens `url` (`sqlite://path` or `postgres://…`), creating a SQLite file
    /// and its folder when missing.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let url = sqlite_url_with_create(url);
                if let Some(dir) = sqlite_parent_dir(&url) {
                    std::fs::create_dir_all(&dir).map_err(|e| {
                        StoreError::Database(sqlx::Error::Configuration(
                            format!("cannot create {dir}: {e}").into(),
                        ))
                    })?;
                }
                let options = AnyConnectOptions::from_str(&url)?;
                let sqlite_pool = |size: u32| {
                    AnyPoolOptions::new()
                        .max_connections(size)
                        .acquire_timeout(Duration::from_secs(60))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                // WAL lets readers run beside the one writer; the
                                // busy timeout covers other processes (the CLI).
                                conn.execute("PRAGMA journal_mode = WAL").await?;
                                conn.execute("PRAGMA synchronous = NORMAL").await?;
                                conn.execute("PRAGMA busy_timeout = 30000").await?;
                                conn.execute("PRAGMA foreign_keys = ON").await?;
                                // A settlement batch is one multi-row statement
                                // that may abort half-way: its statement journal
                                // (rollback data for that statement alone) stays
                                // in memory rather than spilling to a temp file.
                                conn.execute("PRAGMA temp_store = MEMORY").await?;
                                Ok(())
                            })
                        })
                };
                let writer = sqlite_pool(1).connect_with(options.clone()).await?;
                let readers = sqlite_pool(4).connect_with(options).await?;
                (readers, writer)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?;
                (pool.clone(), pool)
            }
        };
        Ok(Store {
            pool,
            writer,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every migration not yet applied. Safe to run from several
    /// instances at once on PostgreSQL (an advisory lock serialises them).
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => {
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(PG_MIGRATION_LOCK)
                    .execute(&mut *conn)
                    .await?;
                POSTGRES_MIGRATIONS
            }
        };
        let result = apply_migrations(&mut conn, migrations).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    /// Waits for every connection to be returned and closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

async fn apply_migrations(
    conn: &mut sqlx::AnyConnection,
    migrations: &[(i64, &str)],
) -> Result<()> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS tollgate_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    for &(version, sql) in migrations {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM tollgate_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| StoreError::Migration { version, source })?;
        sqlx::query("INSERT INTO tollgate_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}

/// Adds `mode=rwc` so SQLite creates the file on first start.
fn sqlite_url_with_create(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The folder of a SQLite file URL, when it has one.
fn sqlite_parent_dir(url: &str) -> Option<String> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    let parent = parent.to_str()?;
    (!parent.is_empty()).then(|| parent.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode_and_parent() {
        assert_eq!(
            sqlite_url_with_create("sqlite://data/t.db"),
            "sqlite://data/t.db?mode=rwc"
        );
        assert_eq!(
            sqlite_parent_dir("sqlite://data/t.db?mode=rwc").as_deref(),
            Some("data")
        );
        assert_eq!(sqlite_parent_dir("sqlite://t.db"), None);
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
    }
}
