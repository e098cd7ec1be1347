//! OpenAI's `metadata`: up to 16 string pairs, keys up to 64 characters and
//! values up to 512, attached to stored objects and filtered on in lists.

use serde_json::{Map, Value};

use crate::error::ApiError;

const MAX_METADATA_PAIRS: usize = 16;

/// Checks `metadata`: at most 16 string pairs (OpenAI's rule).
pub fn metadata_of(metadata: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    let map = match metadata {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ApiError::BadRequest("`metadata` must be an object.".into())),
    };
    if map.len() > MAX_METADATA_PAIRS {
        return Err(ApiError::BadRequest(format!(
            "`metadata` can hold at most {MAX_METADATA_PAIRS} pairs."
        )));
    }
    for (key, value) in map {
        let ok =
            key.chars().count() <= 64 && value.as_str().is_some_and(|v| v.chars().count() <= 512);
        if !ok {
            return Err(ApiError::BadRequest(format!(
                "`metadata.{key}` must be a string of at most 512 characters, under a key of at most 64."
            )));
        }
    }
    Ok(map.clone())
}
