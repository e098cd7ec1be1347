//! Multipart forms with files for an upstream (audio to transcribe, images
//! to edit): each file part spooled to disk as it arrives — never held in
//! memory, and read again for each channel tried — the other fields read
//! as short text (a field sent twice, like `timestamp_granularities[]`,
//! kept twice).

use axum::extract::multipart::{Field, Multipart, MultipartError};
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;
use crate::providers::Spooled;

/// Most fields besides the files, and their size (an image prompt may
/// have 32,000 characters).
const MAX_FIELDS: usize = 32;
const MAX_FIELD_BYTES: usize = 128 * 1024;

/// Reads `multipart`: the parts named in `file_fields` spooled (each at
/// most `max_file_bytes`), in order, with their names; the rest as text.
pub async fn read(
    mut multipart: Multipart,
    file_fields: &[&str],
    max_file_bytes: u64,
) -> Result<(Vec<(String, Spooled)>, Vec<(String, String)>), ApiError> {
    let mut files = Vec::new();
    let mut fields = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(bad_form)? {
        let name = field.name().unwrap_or_default().to_string();
        if file_fields.contains(&name.as_str()) {
            if files.len() >= MAX_FIELDS {
                return Err(ApiError::BadRequest("Too many files.".into()));
            }
            let file = spool(&mut field, max_file_bytes).await?;
            files.push((name, file));
            continue;
        }
        if fields.len() >= MAX_FIELDS {
            return Err(ApiError::BadRequest("Too many form fields.".into()));
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
            if text.len() + chunk.len() > MAX_FIELD_BYTES {
                return Err(ApiError::BadRequest(format!(
                    "The field `{name}` is too long."
                )));
            }
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(text)
            .map_err(|_| ApiError::BadRequest(format!("The field `{name}` is not UTF-8 text.")))?;
        fields.push((name, text));
    }
    Ok((files, fields))
}

fn bad_form(e: MultipartError) -> ApiError {
    ApiError::BadRequest(format!("The upload is not valid multipart/form-data: {e}"))
}

/// Writes a file part to the spool folder, at most `max_bytes`.
async fn spool(field: &mut Field<'_>, max_bytes: u64) -> Result<Spooled, ApiError> {
    let storage = |e: std::io::Error| {
        tracing::error!(error = %e, "an upload could not be spooled");
        ApiError::StorageUnavailable
    };
    let dir = crate::files::private_spool_dir().await.map_err(storage)?;
    let name = field.file_name().unwrap_or("upload").to_string();
    // Only a well-formed type goes upstream.
    let content_type = field
        .content_type()
        .and_then(|t| t.parse::<mime_guess::mime::Mime>().ok())
        .map_or("application/octet-stream".to_string(), |m| {
            m.essence_str().to_string()
        });
    // From here on the file is removed when `spooled` goes, whatever happens.
    let mut spooled = Spooled {
        path: dir.join(crate::files::new_id()),
        name,
        content_type,
        size: 0,
    };
    let mut out = tokio::io::BufWriter::new(
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&spooled.path)
            .await
            .map_err(storage)?,
    );
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        spooled.size += chunk.len() as u64;
        if spooled.size > max_bytes {
            return Err(ApiError::TooLarge(format!(
                "A file has at most {max_bytes} bytes here."
            )));
        }
        out.write_all(&chunk).await.map_err(storage)?;
    }
    out.flush().await.map_err(storage)?;
    if spooled.size == 0 {
        return Err(ApiError::BadRequest("An uploaded file is empty.".into()));
    }
    Ok(spooled)
}

/// Form fields as the JSON object the rules see: a field sent several
/// times (`timestamp_granularities[]`) becomes an array.
pub fn to_doc(fields: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut doc = serde_json::Map::new();
    for (name, value) in fields {
        match doc.get_mut(name) {
            Some(Value::Array(values)) => values.push(value.clone().into()),
            Some(first) => {
                let first = first.take();
                doc.insert(
                    name.clone(),
                    Value::Array(vec![first, value.clone().into()]),
                );
            }
            None => {
                doc.insert(name.clone(), value.clone().into());
            }
        }
    }
    doc
}

/// The fields again from the (rewritten) object: arrays sent as repeated
/// fields, numbers and booleans as text, anything else left out.
pub fn from_doc(doc: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    use serde_json::Value;
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut fields = Vec::new();
    for (name, value) in doc {
        match value {
            Value::Array(values) => {
                fields.extend(values.iter().filter_map(text).map(|v| (name.clone(), v)))
            }
            other => fields.extend(text(other).map(|v| (name.clone(), v))),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_survive_the_rules_as_arrays() {
        let fields: Vec<(String, String)> = [
            ("model", "whisper-1"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let doc = to_doc(&fields);
        assert_eq!(
            doc["timestamp_granularities[]"],
            serde_json::json!(["word", "segment"])
        );
        let mut back = from_doc(&doc);
        back.sort();
        let mut fields = fields;
        fields.sort();
        assert_eq!(back, fields);
    }
}
