//! Console logins and sessions (issue 15). A user may log in by name or
//! e-mail when it has a password hash (the gateway hashes and checks
//! passwords; this layer keeps them opaque). A session is found by the
//! SHA-256 of its cookie's token, never the token itself.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::users::{user_from_row, USER_COLUMNS};
use crate::{now_ms, Result, Store, StoreError, User};

/// What logging in as one user needs.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: User,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub is_disabled: bool,
}

/// A session to open.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: String,
    pub user_id: i64,
    pub csrf_token: String,
    pub expires_at: i64,
    pub ip: String,
    pub user_agent: String,
}

/// An open session, with its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
    pub ip: String,
    pub user_agent: String,
    pub user: User,
    pub is_admin: bool,
}

fn login_from_row(row: &AnyRow) -> Result<Login> {
    Ok(Login {
        user: user_from_row(row)?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        is_disabled: row.try_get::<i64, _>("is_disabled")? != 0,
    })
}

impl Store {
    /// The user `name_or_email` names (a name, else an e-mail address,
    /// which are kept in lower case).
    pub async fn login_of(&self, name_or_email: &str) -> Result<Login> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, password_hash, is_admin, is_disabled FROM users \
             WHERE name = $1 OR email = $2 ORDER BY (name = $1) DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(name_or_email)
            .bind(name_or_email.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        login_from_row(&row)
    }

    /// Sets (or, with `None`, removes) a user's password hash; their
    /// sessions are closed unless `keep_session` names one to keep.
    pub async fn set_password(
        &self,
        user_id: i64,
        hash: Option<&str>,
        keep_session: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user_id)
            .bind(keep_session.unwrap_or(""))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a user's console flags and e-mail; disabling one closes its
    /// sessions.
    pub async fn set_console_access(
        &self,
        user_id: i64,
        email: Option<&str>,
        is_admin: bool,
        is_disabled: bool,
    ) -> Result<()> {
        // Kept in lower case: one address, however it is written.
        let email = email.map(|e| e.trim().to_lowercase());
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET email = $1, is_admin = $2, is_disabled = $3 WHERE id = $4",
        )
        .bind(email)
        .bind(is_admin as i64)
        .bind(is_disabled as i64)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("that e-mail address is taken".into())
            }
            other => other.into(),
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        if is_disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A user's e-mail address, if they have one.
    pub async fn email_of(&self, user_id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .flatten())
    }

    /// Whether some user can log in to the console's admin pages.
    pub async fn console_admin_exists(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE is_admin = 1 AND password_hash IS NOT NULL \
             AND is_disabled = 0",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Stores `value` as `name`'s value, replacing any.
    pub async fn replace_setting(&self, name: &str, value: &str) -> Result<()> {
        // One statement: instances starting together do not trip on each
        // other (the last one's value stays).
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn open_session(&self, s: &NewSession) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, \
             last_seen_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $4, $6, $7)",
        )
        .bind(&s.id_hash)
        .bind(s.user_id)
        .bind(&s.csrf_token)
        .bind(now)
        .bind(s.expires_at)
        .bind(&s.ip)
        .bind(&s.user_agent)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The open, unexpired session `id_hash` names, of a user not disabled.
    pub async fn session(&self, id_hash: &str) -> Result<Session> {
        let columns = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, u.is_admin, s.id_hash, s.csrf_token, s.created_at AS session_created_at, \
             s.expires_at, s.last_seen_at, s.ip, s.user_agent FROM sessions s \
             JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND u.is_disabled = 0"
        );
        let row = sqlx::query(&sql)
            .bind(id_hash)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("session"))?;
        Ok(Session {
            id_hash: row.try_get("id_hash")?,
            csrf_token: row.try_get("csrf_token")?,
            created_at: row.try_get("session_created_at")?,
            expires_at: row.try_get("expires_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            user: user_from_row(&row)?,
        })
    }

    /// Notes that a session was used, pushing its expiry to `expires_at`.
    pub async fn touch_session(&self, id_hash: &str, expires_at: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1, expires_at = $2 WHERE id_hash = $3")
            .bind(now_ms())
            .bind(expires_at)
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Closes one of `user_id`'s sessions; whether there was one.
    pub async fn close_session(&self, user_id: i64, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1 AND user_id = $2")
            .bind(id_hash)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A user's open sessions, newest first.
    pub async fn sessions_of(
        &self,
        user_id: i64,
    ) -> Result<Vec<(String, i64, i64, String, String)>> {
        let rows = sqlx::query(
            "SELECT id_hash, created_at, last_seen_at, ip, user_agent FROM sessions \
             WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id_hash")?,
                    r.try_get("created_at")?,
                    r.try_get("last_seen_at")?,
                    r.try_get("ip")?,
                    r.try_get("user_agent")?,
                ))
            })
            .collect()
    }

    /// Forgets expired sessions; how many.
    pub async fn sweep_sessions(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }
}
