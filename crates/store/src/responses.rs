//! Stored Responses: the Response object, the input items of its turn, and —
//! for background runs — the event log a client may stream from a cursor.

use serde_json::Value;
use sqlx::Row;

use crate::{json_text, parse_json_column, Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub id: String,
    pub user_id: i64,
    pub previous_response_id: Option<String>,
    pub conversation_id: Option<String>,
    pub status: String,
    pub background: bool,
    /// The Response object as the API returns it.
    pub response: Value,
    /// This turn's input items, with their ids.
    pub input_items: Vec<Value>,
    pub created_at: i64,
}

impl Store {
    /// Inserts the response, or replaces the stored state of the same id
    /// (a background run is saved when queued and again when it ends).
    pub async fn save_response(
        &self,
        r: &StoredResponse,
        events: Option<&[String]>,
        expires_at: Option<i64>,
    ) -> Result<()> {
        let events = match events {
            Some(e) => Some(serde_json::to_string(e).map_err(crate::json_error)?),
            None => None,
        };
        sqlx::query(
            "INSERT INTO responses (id, user_id, previous_response_id, conversation_id, status, background, \
             response, input_items, events, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, response = excluded.response, \
             events = excluded.events, updated_at = excluded.updated_at",
        )
        .bind(&r.id)
        .bind(r.user_id)
        .bind(&r.previous_response_id)
        .bind(&r.conversation_id)
        .bind(&r.status)
        .bind(i64::from(r.background))
        .bind(json_text(&r.response)?)
        .bind(json_text(&r.input_items)?)
        .bind(events)
        .bind(r.created_at)
        .bind(crate::now_ms())
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Replaces the stored state of a response that still exists (a
    /// background run saved when queued); false when it was deleted meanwhile,
    /// which must not bring it back.
    pub async fn update_response(
        &self,
        r: &StoredResponse,
        events: Option<&[String]>,
    ) -> Result<bool> {
        let events = match events {
            Some(e) => Some(serde_json::to_string(e).map_err(crate::json_error)?),
            None => None,
        };
        let done = sqlx::query(
            "UPDATE responses SET status = $1, response = $2, events = COALESCE($3, events), updated_at = $4 \
             WHERE id = $5 AND user_id = $6",
        )
        .bind(&r.status)
        .bind(json_text(&r.response)?)
        .bind(events)
        .bind(crate::now_ms())
        .bind(&r.id)
        .bind(r.user_id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks a background response failed if it is still queued or in
    /// progress and untouched since `before`; false when it moved on (its run
    /// finished, or was deleted) in the meantime.
    pub async fn fail_stale_response(&self, r: &StoredResponse, before: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE responses SET status = $1, response = $2, updated_at = $3 \
             WHERE id = $4 AND user_id = $5 AND status IN ('queued', 'in_progress') AND updated_at < $6",
        )
        .bind(&r.status)
        .bind(json_text(&r.response)?)
        .bind(crate::now_ms())
        .bind(&r.id)
        .bind(r.user_id)
        .bind(before)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The user's response `id`; `None` when it does not exist or is another user's.
    pub async fn get_response(&self, user_id: i64, id: &str) -> Result<Option<StoredResponse>> {
        let row = sqlx::query(
            "SELECT id, user_id, previous_response_id, conversation_id, status, background, response, \
             input_items, created_at FROM responses WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredResponse {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            previous_response_id: row.try_get("previous_response_id")?,
            conversation_id: row.try_get("conversation_id")?,
            status: row.try_get("status")?,
            background: row.try_get::<i64, _>("background")? != 0,
            response: parse_json_column(&row, "response")?,
            input_items: parse_json_column(&row, "input_items")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// The recorded events of a finished background response, as SSE frames.
    pub async fn response_events(&self, user_id: i64, id: &str) -> Result<Option<Vec<String>>> {
        let events: Option<Option<String>> =
            sqlx::query_scalar("SELECT events FROM responses WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        match events.flatten() {
            Some(text) => Ok(Some(
                serde_json::from_str(&text).map_err(crate::json_error)?,
            )),
            None => Ok(None),
        }
    }

    /// Background responses still queued or in progress that nothing has
    /// touched since `before`: their run died with its process.
    pub async fn stale_background_responses(&self, before: i64) -> Result<Vec<StoredResponse>> {
        let ids: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, user_id FROM responses WHERE background = 1 \
             AND status IN ('queued', 'in_progress') AND updated_at < $1",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        let mut stale = Vec::with_capacity(ids.len());
        for (id, user_id) in ids {
            if let Some(r) = self.get_response(user_id, &id).await? {
                stale.push(r);
            }
        }
        Ok(stale)
    }

    /// Deletes the user's response; false when there was none to delete.
    pub async fn delete_response(&self, user_id: i64, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
