//! Small named values the gateway keeps across restarts (e.g. the admin token hash).

use crate::{Result, Store};

impl Store {
    pub async fn get_setting(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores `value` unless `name` already has one; returns whether it did.
    /// Several instances starting at once agree on a single winner.
    pub async fn insert_setting_if_absent(&self, name: &str, value: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes `name`'s value, if it has one.
    pub async fn delete_setting(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
