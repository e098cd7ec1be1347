//! Users' files as recorded: what each is, whose, and where it stands. The
//! bytes are the gateway's storage backend's; this layer keeps the rows
//! that lead to them, in an order that never leaves bytes without a row:
//! a row is `uploading` before its bytes are written, `ready` once they
//! are, `deleting` while they are removed, and goes (or, when storage is
//! priced, stays `deleted` until its days are charged) only after.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{json_text, now_ms, parse_json_column, Result, Store, StoreError};

/// Most rows one housekeeping pass takes.
pub const FILE_CLEANUP_BATCH: i64 = 100;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub id: String,
    pub user_id: i64,
    pub filename: String,
    pub purpose: i64,
    pub is_public: bool,
    pub tags: Vec<String>,
    pub content_type: String,
    pub size: i64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A file whose bytes are written, to record as ready.
#[derive(Debug, Clone)]
pub struct FinishedUpload {
    pub id: String,
    pub user_id: i64,
    pub filename: String,
    pub purpose: i64,
    pub is_public: bool,
    pub tags: Vec<String>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub expires_at: Option<i64>,
}

/// What a user may keep.
#[derive(Debug, Clone, Copy)]
pub struct FileQuota {
    pub max_total_bytes: i64,
    pub max_files: i64,
}

/// A change to a file's information; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct FileUpdate {
    pub filename: Option<String>,
    pub is_public: Option<bool>,
    pub tags: Option<Vec<String>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<i64>>,
}

/// Which of a user's files to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    pub purpose: Option<i64>,
    /// Files carrying every one of these tags.
    pub tags: Vec<String>,
    pub is_public: Option<bool>,
    pub name_prefix: Option<String>,
    /// Created at or after, and before (Unix ms).
    pub created_from: Option<i64>,
    pub created_until: Option<i64>,
    pub offset: i64,
    pub limit: i64,
}

const COLUMNS: &str = "id, user_id, filename, purpose, is_public, tags, content_type, size, \
                       sha256, expires_at, created_at, updated_at";

fn file_from_row(row: &AnyRow) -> Result<StoredFile> {
    Ok(StoredFile {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        filename: row.try_get("filename")?,
        purpose: row.try_get("purpose")?,
        is_public: row.try_get::<i64, _>("is_public")? != 0,
        tags: parse_json_column(row, "tags")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A value of a listing's filter.
enum Bind {
    Int(i64),
    Text(String),
}

fn bind_all<'q>(
    sql: &'q str,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = match b {
            Bind::Int(n) => query.bind(*n),
            Bind::Text(s) => query.bind(s.clone()),
        };
    }
    query
}

impl Store {
    /// Records an upload about to write its bytes (before any is written),
    /// unless the user has `at_once` uploads begun since `since` and not
    /// finished (what several uploads at once may write before the quota
    /// refuses them is bounded): whether it did.
    pub async fn begin_upload(
        &self,
        id: &str,
        user_id: i64,
        at_once: i64,
        since: i64,
    ) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO files (id, user_id, filename, state, created_at, updated_at) \
             SELECT $1, $2, '', 'uploading', $3, $3 WHERE (SELECT COUNT(*) FROM files \
             WHERE user_id = $2 AND state = 'uploading' AND created_at > $4) < $5",
        )
        .bind(id)
        .bind(user_id)
        .bind(now)
        .bind(since)
        .bind(at_once)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// What `user_id`'s ready files take: (bytes, files).
    pub async fn file_usage(&self, user_id: i64) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, COUNT(*) AS files FROM files \
             WHERE user_id = $1 AND state = 'ready'",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("bytes")?, row.try_get("files")?))
    }

    /// Records an upload's bytes as written: the file is ready, unless the
    /// user would then hold more than `quota` (a `Conflict`, nothing
    /// changed: the caller removes the bytes) or the upload was given up
    /// meanwhile (`NotFound`).
    pub async fn finish_upload(&self, f: &FinishedUpload, quota: FileQuota) -> Result<StoredFile> {
        let mut tx = self.writer.begin().await?;
        // The user's row, locked (PostgreSQL): a user's uploads finish one
        // at a time, so two cannot both fit in the same room.
        sqlx::query("UPDATE users SET id = id WHERE id = $1")
            .bind(f.user_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, COUNT(*) AS files FROM files \
             WHERE user_id = $1 AND state = 'ready'",
        )
        .bind(f.user_id)
        .fetch_one(&mut *tx)
        .await?;
        let (bytes, files): (i64, i64) = (row.try_get("bytes")?, row.try_get("files")?);
        if files >= quota.max_files {
            return Err(StoreError::Conflict(format!(
                "an account keeps at most {} files",
                quota.max_files
            )));
        }
        if bytes.saturating_add(f.size) > quota.max_total_bytes {
            return Err(StoreError::Conflict(format!(
                "this file does not fit in the account's storage: {} of {} bytes are used",
                bytes, quota.max_total_bytes
            )));
        }
        let now = now_ms();
        let ready = StoredFile {
            id: f.id.clone(),
            user_id: f.user_id,
            filename: f.filename.clone(),
            purpose: f.purpose,
            is_public: f.is_public,
            tags: f.tags.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
            expires_at: f.expires_at,
            created_at: now,
            updated_at: now,
        };
        let done = sqlx::query(
            "UPDATE files SET filename = $1, purpose = $2, is_public = $3, tags = $4, \
             content_type = $5, size = $6, sha256 = $7, expires_at = $8, state = 'ready', \
             created_at = $9, updated_at = $9 WHERE id = $10 AND user_id = $11 AND state = 'uploading'",
        )
        .bind(&f.filename)
        .bind(f.purpose)
        .bind(f.is_public as i64)
        .bind(json_text(&f.tags)?)
        .bind(&f.content_type)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(f.expires_at)
        .bind(now)
        .bind(&f.id)
        .bind(f.user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("upload"));
        }
        for tag in &f.tags {
            sqlx::query("INSERT INTO file_tags (file_id, tag) VALUES ($1, $2)")
                .bind(&f.id)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // Not read again: once committed, the file is ready whatever a
        // read would meet.
        Ok(ready)
    }

    /// A ready file, unexpired, whoever's it is (the caller checks who may
    /// see it).
    pub async fn get_file(&self, id: &str) -> Result<StoredFile> {
        let sql = format!(
            "SELECT {COLUMNS} FROM files WHERE id = $1 AND state = 'ready' \
             AND (expires_at IS NULL OR expires_at > $2)"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("file"))?;
        file_from_row(&row)
    }

    /// `user_id`'s ready files among `ids`, in the order asked (unknown and
    /// others' ids left out).
    pub async fn files_by_ids(&self, user_id: i64, ids: &[String]) -> Result<Vec<StoredFile>> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get_file(id).await {
                Ok(file) if file.user_id == user_id => found.push(file),
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Changes one of `user_id`'s ready files.
    pub async fn update_file(
        &self,
        user_id: i64,
        id: &str,
        update: &FileUpdate,
    ) -> Result<StoredFile> {
        let old = self.get_file(id).await?;
        if old.user_id != user_id {
            return Err(StoreError::NotFound("file"));
        }
        let tags = update.tags.as_ref().unwrap_or(&old.tags);
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE files SET filename = $1, is_public = $2, tags = $3, expires_at = $4, \
             updated_at = $5 WHERE id = $6 AND user_id = $7 AND state = 'ready'",
        )
        .bind(update.filename.as_ref().unwrap_or(&old.filename))
        .bind(update.is_public.unwrap_or(old.is_public) as i64)
        .bind(json_text(tags)?)
        .bind(update.expires_at.unwrap_or(old.expires_at))
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("file"));
        }
        if update.tags.is_some() {
            sqlx::query("DELETE FROM file_tags WHERE file_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for tag in tags {
                sqlx::query("INSERT INTO file_tags (file_id, tag) VALUES ($1, $2)")
                    .bind(id)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        self.get_file(id).await
    }

    /// Takes one of `user_id`'s ready files out of use, for its bytes to be
    /// removed; whether there was one.
    pub async fn start_deleting_file(&self, user_id: i64, id: &str) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE files SET state = 'deleting', deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND user_id = $3 AND state = 'ready'",
        )
        .bind(now)
        .bind(id)
        .bind(user_id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `user_id`'s ready files matching `filter`, newest first, and how many
    /// match in all.
    pub async fn list_files(
        &self,
        user_id: i64,
        filter: &FileFilter,
    ) -> Result<(Vec<StoredFile>, i64)> {
        // Conditions with their values, numbered as they come.
        let mut conditions = vec![
            "user_id = $1".to_string(),
            "state = 'ready'".to_string(),
            "(expires_at IS NULL OR expires_at > $2)".to_string(),
        ];
        let mut binds = vec![Bind::Int(user_id), Bind::Int(now_ms())];
        let next = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(purpose) = filter.purpose {
            let p = next(&mut binds, Bind::Int(purpose));
            conditions.push(format!("purpose = {p}"));
        }
        if let Some(public) = filter.is_public {
            let p = next(&mut binds, Bind::Int(public as i64));
            conditions.push(format!("is_public = {p}"));
        }
        if let Some(prefix) = &filter.name_prefix {
            // Exactly, case included, on both databases (`LIKE` is not).
            let chars = prefix.chars().count();
            let p = next(&mut binds, Bind::Text(prefix.clone()));
            conditions.push(format!("substr(filename, 1, {chars}) = {p}"));
        }
        if let Some(from) = filter.created_from {
            let p = next(&mut binds, Bind::Int(from));
            conditions.push(format!("created_at >= {p}"));
        }
        if let Some(until) = filter.created_until {
            let p = next(&mut binds, Bind::Int(until));
            conditions.push(format!("created_at < {p}"));
        }
        for tag in &filter.tags {
            let p = next(&mut binds, Bind::Text(tag.clone()));
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM file_tags t WHERE t.file_id = files.id AND t.tag = {p})"
            ));
        }
        let conditions = conditions.join(" AND ");
        let count = format!("SELECT COUNT(*) AS n FROM files WHERE {conditions}");
        let total: i64 = bind_all(&count, &binds)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let sql = format!(
            "SELECT {COLUMNS} FROM files WHERE {conditions} \
             ORDER BY created_at DESC, id DESC LIMIT {} OFFSET {}",
            filter.limit.max(0),
            filter.offset.max(0)
        );
        let rows = bind_all(&sql, &binds).fetch_all(&self.pool).await?;
        let files = rows.iter().map(file_from_row).collect::<Result<_>>()?;
        Ok((files, total))
    }

    /// Housekeeping: takes out of use the ready files expired by `now`,
    /// and the uploads begun before `stale_before` (given up: the process
    /// that wrote them is gone, or they ran past their time); returns the
    /// ids of every file whose bytes are to be removed, at most
    /// [`FILE_CLEANUP_BATCH`].
    pub async fn files_to_remove(&self, now: i64, stale_before: i64) -> Result<Vec<String>> {
        // Kept until it expired, whenever the sweeper gets to it.
        sqlx::query(
            "UPDATE files SET state = 'deleting', deleted_at = expires_at, updated_at = $1 \
             WHERE state = 'ready' AND expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.writer)
        .await?;
        // An upload given up was never ready: it was stored for no time.
        sqlx::query(
            "UPDATE files SET state = 'deleting', deleted_at = created_at, updated_at = $1 \
             WHERE state = 'uploading' AND created_at < $2",
        )
        .bind(now)
        .bind(stale_before)
        .execute(&self.writer)
        .await?;
        let ids = sqlx::query_scalar(
            "SELECT id FROM files WHERE state = 'deleting' ORDER BY updated_at LIMIT $1",
        )
        .bind(FILE_CLEANUP_BATCH)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// The bytes of a file taken out of use are gone: its row goes, or,
    /// with `keep_for_charging`, stays as `deleted` until its last day is
    /// charged. Also ends an upload that failed (its bytes removed).
    pub async fn file_removed(&self, id: &str, keep_for_charging: bool) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM file_tags WHERE file_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if keep_for_charging {
            sqlx::query(
                "UPDATE files SET state = 'deleted', deleted_at = COALESCE(deleted_at, $1) \
                 WHERE id = $2 AND state IN ('deleting', 'uploading')",
            )
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query("DELETE FROM files WHERE id = $1 AND state <> 'ready'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Charges every user for the storage they held during UTC `day` (days
    /// since 1970-01-01) from `priced_since` on (when storage became
    /// priced), at `nano_per_gb_day` nano-USD per GB (10^9 bytes) and day,
    /// pro rata to the millisecond; once per day whichever
    /// instance gets there first, in one transaction. Returns the charges
    /// (user, nano-USD), or `None` when the day was charged already. Each
    /// charge's ledger entry says `reason`, and its request id
    /// `storage:{user}:{day}` (unique: never twice). A
    /// charge may take a balance below zero: storage used is owed.
    pub async fn charge_storage_day(
        &self,
        day: i64,
        nano_per_gb_day: i64,
        reason: &str,
        priced_since: i64,
    ) -> Result<Option<Vec<(i64, i64)>>> {
        let end = (day + 1) * DAY_MS;
        let start = (day * DAY_MS).max(priced_since).min(end);
        let mut tx = self.writer.begin().await?;
        let now = now_ms();
        let claimed = sqlx::query(
            "INSERT INTO storage_charge_days (day, charged_at) VALUES ($1, $2) \
             ON CONFLICT (day) DO NOTHING",
        )
        .bind(day)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT user_id, size, created_at, deleted_at FROM files \
             WHERE state IN ('ready', 'deleting', 'deleted') AND created_at < $1 \
             AND (deleted_at IS NULL OR deleted_at > $2)",
        )
        .bind(end)
        .bind(start)
        .fetch_all(&mut *tx)
        .await?;
        let mut byte_ms: HashMap<i64, i128> = HashMap::new();
        for row in &rows {
            let size: i64 = row.try_get("size")?;
            let from: i64 = row.try_get::<i64, _>("created_at")?.max(start);
            let until: i64 = row
                .try_get::<Option<i64>, _>("deleted_at")?
                .unwrap_or(end)
                .min(end);
            if until > from {
                *byte_ms.entry(row.try_get("user_id")?).or_default() +=
                    i128::from(size) * i128::from(until - from);
            }
        }
        let mut charges: Vec<(i64, i64)> = byte_ms
            .into_iter()
            .map(|(user, used)| (user, storage_cost(used, nano_per_gb_day)))
            .filter(|(_, cost)| *cost > 0)
            .collect();
        charges.sort();
        for (user_id, cost) in &charges {
            let balance: Option<i64> = sqlx::query_scalar(
                "UPDATE users SET \
                   free_balance = free_balance - (CASE WHEN free_balance >= $1 THEN $1 WHEN free_balance > 0 THEN free_balance ELSE 0 END), \
                   balance = balance - ($1 - (CASE WHEN free_balance >= $1 THEN $1 WHEN free_balance > 0 THEN free_balance ELSE 0 END)), \
                   revision = revision + 1 \
                 WHERE id = $2 RETURNING balance + free_balance",
            )
            .bind(cost)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(balance) = balance else {
                continue;
            };
            sqlx::query(
                "INSERT INTO ledger (user_id, amount, balance_after, kind, reason, request_id, created_at) \
                 VALUES ($1, $2, $3, 'storage', $4, $5, $6)",
            )
            .bind(user_id)
            .bind(-cost)
            .bind(balance)
            .bind(reason)
            .bind(format!("storage:{user_id}:{day}"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // Deleted files no later day can charge are done with.
        sqlx::query("DELETE FROM files WHERE state = 'deleted' AND deleted_at <= $1")
            .bind(end)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(charges))
    }

    /// How many rows `user_id` has, whatever their state (what a refused
    /// upload must not leave).
    pub async fn file_rows(&self, user_id: i64) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM files WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Moves a file whose bytes could not be removed to the back of the
    /// sweeper's queue, so that it holds up no other.
    pub async fn file_removal_failed(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE files SET updated_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Forgets the deleted files kept for charging (storage is not priced
    /// any more).
    pub async fn purge_deleted_files(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM files WHERE state = 'deleted'")
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    /// The last UTC day charged for storage, if any.
    pub async fn last_storage_day(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MAX(day) FROM storage_charge_days")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// `byte_ms` (bytes × milliseconds) at `nano_per_gb_day`, rounded to the
/// nearest nano-USD (halves up).
pub fn storage_cost(byte_ms: i128, nano_per_gb_day: i64) -> i64 {
    const GB_DAY: i128 = 1_000_000_000 * DAY_MS as i128;
    let exact = byte_ms.saturating_mul(i128::from(nano_per_gb_day));
    let rounded = exact.saturating_add(GB_DAY / 2) / GB_DAY;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_costs_are_pro_rata_and_rounded() {
        // One GB for a whole day at 1000 nano-USD.
        assert_eq!(storage_cost(1_000_000_000 * DAY_MS as i128, 1000), 1000);
        // Half a GB for half a day: a quarter.
        assert_eq!(storage_cost(500_000_000 * (DAY_MS / 2) as i128, 1000), 250);
        // Below half a nano-USD rounds to nothing; a half rounds up.
        assert_eq!(storage_cost(1, 1000), 0);
        assert_eq!(storage_cost(1_000_000_000 * DAY_MS as i128 / 2000, 1), 0);
        assert_eq!(storage_cost(1_000_000_000 * DAY_MS as i128 / 2, 1), 1);
    }
}
