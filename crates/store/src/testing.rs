//! Helpers for tests that need a fresh database on either backend.
//!
//! With `TOLLGATE_TEST_POSTGRES_URL` set (e.g. `postgres://postgres@127.0.0.1/postgres`),
//! every call creates a new PostgreSQL database on that server; otherwise a
//! new SQLite file in the temporary folder.

use sqlx::Connection;

/// A URL for a new, empty database.
pub async fn fresh_database_url() -> String {
    let name = format!(
        "tollgate_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    match std::env::var("TOLLGATE_TEST_POSTGRES_URL") {
        Ok(server) if !server.is_empty() => {
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(&server)
                .await
                .expect("connect to TOLLGATE_TEST_POSTGRES_URL");
            let nonce = crate::now_ms();
            let name = format!("{name}_{nonce}");
            sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let _ = conn.close().await;
            let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
            format!("{base}/{name}")
        }
        _ => {
            let dir = std::env::temp_dir().join("tollgate-tests");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{name}_{}.db", crate::now_ms()));
            format!("sqlite://{}", path.display())
        }
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `sql` on the database at `database_url` (a fault a test injects,
/// such as a table taken away and given back).
pub async fn execute(database_url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url)
        .await
        .expect("connect to the test database");
    sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .expect("the test's statement runs");
    let _ = conn.close().await;
}
