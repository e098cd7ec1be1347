//! Conversations and their items, in the order the items were added.

use serde_json::{Map, Value};
use sqlx::Row;

use crate::{json_text, parse_json_column, Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub user_id: i64,
    pub metadata: Map<String, Value>,
    pub created_at: i64,
}

/// One page of a conversation's items.
#[derive(Debug, Clone, Default)]
pub struct ItemPage {
    pub items: Vec<Value>,
    pub has_more: bool,
}

impl Store {
    /// Creates the conversation with its first items (each `(id, item)`).
    pub async fn create_conversation(
        &self,
        c: &Conversation,
        items: &[(String, Value)],
        expires_at: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO conversations (id, user_id, metadata, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.id)
        .bind(c.user_id)
        .bind(json_text(&c.metadata)?)
        .bind(c.created_at)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        insert_items(&mut tx, &c.id, items).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_conversation(&self, user_id: i64, id: &str) -> Result<Option<Conversation>> {
        let row = sqlx::query(
            "SELECT id, user_id, metadata, created_at FROM conversations WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Conversation {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            metadata: parse_json_column(&row, "metadata")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// Replaces the metadata; false when the conversation is not the user's.
    pub async fn update_conversation(
        &self,
        user_id: i64,
        id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE conversations SET metadata = $1 WHERE id = $2 AND user_id = $3")
                .bind(json_text(metadata)?)
                .bind(id)
                .bind(user_id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the conversation and all its items.
    pub async fn delete_conversation(&self, user_id: i64, id: &str) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("DELETE FROM conversations WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM conversation_items WHERE conversation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Appends items; false when the conversation is not the user's.
    pub async fn add_conversation_items(
        &self,
        user_id: i64,
        conversation_id: &str,
        items: &[(String, Value)],
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let owned: Option<String> =
            sqlx::query_scalar("SELECT id FROM conversations WHERE id = $1 AND user_id = $2")
                .bind(conversation_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        if owned.is_none() {
            return Ok(false);
        }
        insert_items(&mut tx, conversation_id, items).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A page of items after item `after` (exclusive), or `None` when the
    /// conversation is not the user's.
    pub async fn list_conversation_items(
        &self,
        user_id: i64,
        conversation_id: &str,
        after: Option<&str>,
        limit: usize,
        ascending: bool,
    ) -> Result<Option<ItemPage>> {
        if self
            .get_conversation(user_id, conversation_id)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let after_seq: Option<i64> = match after {
            Some(item) => {
                let seq = sqlx::query_scalar(
                    "SELECT seq FROM conversation_items WHERE conversation_id = $1 AND id = $2",
                )
                .bind(conversation_id)
                .bind(item)
                .fetch_optional(&self.pool)
                .await?;
                match seq {
                    Some(seq) => Some(seq),
                    None => return Ok(Some(ItemPage::default())),
                }
            }
            None => None,
        };
        let (order, cmp) = if ascending {
            ("ASC", ">")
        } else {
            ("DESC", "<")
        };
        let rows = sqlx::query(&format!(
            "SELECT item FROM conversation_items WHERE conversation_id = $1 \
             AND ($2 IS NULL OR seq {cmp} $2) ORDER BY seq {order} LIMIT $3"
        ))
        .bind(conversation_id)
        .bind(after_seq)
        .bind(limit as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|row| parse_json_column(row, "item"))
            .collect::<Result<Vec<Value>>>()?;
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Some(ItemPage { items, has_more }))
    }

    pub async fn get_conversation_item(
        &self,
        user_id: i64,
        conversation_id: &str,
        item_id: &str,
    ) -> Result<Option<Value>> {
        let row = sqlx::query(
            "SELECT i.item FROM conversation_items i JOIN conversations c ON c.id = i.conversation_id \
             WHERE i.conversation_id = $1 AND i.id = $2 AND c.user_id = $3",
        )
        .bind(conversation_id)
        .bind(item_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| parse_json_column(&r, "item")).transpose()
    }

    pub async fn delete_conversation_item(
        &self,
        user_id: i64,
        conversation_id: &str,
        item_id: &str,
    ) -> Result<bool> {
        if self
            .get_conversation(user_id, conversation_id)
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let done =
            sqlx::query("DELETE FROM conversation_items WHERE conversation_id = $1 AND id = $2")
                .bind(conversation_id)
                .bind(item_id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every stored object whose retention has run out.
    pub async fn sweep_expired_objects(&self, now: i64) -> Result<u64> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "DELETE FROM conversation_items WHERE conversation_id IN \
             (SELECT id FROM conversations WHERE expires_at < $1)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut deleted = 0;
        for table in ["conversations", "responses", "chat_completions"] {
            let done = sqlx::query(&format!("DELETE FROM {table} WHERE expires_at < $1"))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            deleted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

async fn insert_items(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    conversation_id: &str,
    items: &[(String, Value)],
) -> Result<()> {
    let now = crate::now_ms();
    for (id, item) in items {
        sqlx::query(
            // An item already in the conversation (a client re-sending an
            // earlier output item with its id) is kept once.
            "INSERT INTO conversation_items (conversation_id, id, item, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (conversation_id, id) DO NOTHING",
        )
        .bind(conversation_id)
        .bind(id)
        .bind(json_text(item)?)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
