//! OpenAI's cursor lists: `after`, `limit`, `order`, answered as
//! `{"object":"list","data":[…],"first_id","last_id","has_more"}`.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub order: Option<String>,
}

impl ListQuery {
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::BadRequest(format!(
                "`limit` must be between 1 and {MAX_LIMIT}."
            ))),
        }
    }

    /// Whether the list runs oldest first; each list has its own default.
    pub fn ascending(&self, default_ascending: bool) -> Result<bool, ApiError> {
        match self.order.as_deref() {
            None => Ok(default_ascending),
            Some("asc") => Ok(true),
            Some("desc") => Ok(false),
            Some(_) => Err(ApiError::BadRequest(
                "`order` must be `asc` or `desc`.".into(),
            )),
        }
    }
}

/// A page of a list held in memory (oldest first), by item `id`.
pub fn page(
    mut items: Vec<Value>,
    query: &ListQuery,
    default_ascending: bool,
) -> Result<Value, ApiError> {
    let limit = query.limit()?;
    if !query.ascending(default_ascending)? {
        items.reverse();
    }
    let start = match &query.after {
        Some(after) => items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(after))
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let rest: Vec<Value> = items.into_iter().skip(start).collect();
    let has_more = rest.len() > limit;
    Ok(list_object(
        rest.into_iter().take(limit).collect(),
        has_more,
    ))
}

/// The list envelope around `data`.
pub fn list_object(data: Vec<Value>, has_more: bool) -> Value {
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": has_more,
        "data": data,
    })
}
