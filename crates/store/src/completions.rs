//! Chat completions created with `store: true`.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{json_text, parse_json_column, Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct StoredCompletion {
    pub id: String,
    pub user_id: i64,
    pub model: String,
    pub metadata: Map<String, Value>,
    /// The request's messages, with ids.
    pub messages: Vec<Value>,
    /// The chat completion object as returned to the client.
    pub completion: Value,
    pub created_at: i64,
}

/// Which stored completions to list.
#[derive(Debug, Clone, Default)]
pub struct CompletionFilter {
    pub user_id: i64,
    pub model: Option<String>,
    /// Every pair must be present in a completion's metadata.
    pub metadata: Map<String, Value>,
    /// List after this completion id (in the listing's order).
    pub after: Option<String>,
    pub limit: usize,
    pub ascending: bool,
}

/// Rows read per query while filtering by metadata.
const PAGE: i64 = 200;

const COLUMNS: &str = "id, user_id, model, metadata, messages, completion, created_at";

impl Store {
    pub async fn insert_completion(
        &self,
        c: &StoredCompletion,
        expires_at: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO chat_completions (id, user_id, model, metadata, messages, completion, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(c.user_id)
        .bind(&c.model)
        .bind(json_text(&c.metadata)?)
        .bind(json_text(&c.messages)?)
        .bind(json_text(&c.completion)?)
        .bind(c.created_at)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn get_completion(&self, user_id: i64, id: &str) -> Result<Option<StoredCompletion>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM chat_completions WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| completion_of(&r)).transpose()
    }

    /// Up to `limit + 1` matching completions (the extra one tells the caller
    /// there is more), ordered by creation.
    pub async fn list_completions(&self, f: &CompletionFilter) -> Result<Vec<StoredCompletion>> {
        let mut cursor = match &f.after {
            Some(id) => match self.get_completion(f.user_id, id).await? {
                Some(c) => Some((c.created_at, c.id)),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let (order, cmp) = if f.ascending {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM chat_completions WHERE user_id = $1 AND ($2 IS NULL OR model = $2) \
             AND ($3 IS NULL OR created_at {cmp} $3 OR (created_at = $3 AND id {cmp} $4)) \
             ORDER BY created_at {order}, id {order} LIMIT $5"
        );
        let mut found = Vec::new();
        loop {
            let (at, id) = match &cursor {
                Some((at, id)) => (Some(*at), Some(id.clone())),
                None => (None, None),
            };
            let rows = sqlx::query(&sql)
                .bind(f.user_id)
                .bind(&f.model)
                .bind(at)
                .bind(id)
                .bind(PAGE)
                .fetch_all(&self.pool)
                .await?;
            let exhausted = (rows.len() as i64) < PAGE;
            for row in &rows {
                let c = completion_of(row)?;
                cursor = Some((c.created_at, c.id.clone()));
                if f.metadata.iter().all(|(k, v)| c.metadata.get(k) == Some(v)) {
                    found.push(c);
                    if found.len() > f.limit {
                        return Ok(found);
                    }
                }
            }
            if exhausted {
                return Ok(found);
            }
        }
    }

    /// Replaces the metadata; the updated completion, or `None` if not the user's.
    pub async fn update_completion_metadata(
        &self,
        user_id: i64,
        id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<Option<StoredCompletion>> {
        let done =
            sqlx::query("UPDATE chat_completions SET metadata = $1 WHERE id = $2 AND user_id = $3")
                .bind(json_text(metadata)?)
                .bind(id)
                .bind(user_id)
                .execute(&self.writer)
                .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_completion(user_id, id).await
    }

    pub async fn delete_completion(&self, user_id: i64, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM chat_completions WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn completion_of(row: &AnyRow) -> Result<StoredCompletion> {
    Ok(StoredCompletion {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        model: row.try_get("model")?,
        metadata: parse_json_column(row, "metadata")?,
        messages: parse_json_column(row, "messages")?,
        completion: parse_json_column(row, "completion")?,
        created_at: row.try_get("created_at")?,
    })
}
