//! Multipart forms with files for an upstream (audio to transcribe, images
//! to edit): each file part spooled to disk as it arrives — never held in
//! memory, and read again for each channel tried — the other fields read
//! as short text (a field sent twice, like `timestamp_granularities[]`,
//! kept twice).

use axum::extract::multipart::{Field, Multipart, MultipartError};
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;
use crate::providers::Spooled;

/// Most fields besides the files, and their size.
const MAX_FIELDS: usize = 32;
const MAX_FIELD_BYTES: usize = 8 * 1024;

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
    let dir = crate::files::spool_dir();
    let storage = |e: std::io::Error| {
        tracing::error!(error = %e, "an upload could not be spooled");
        ApiError::StorageUnavailable
    };
    tokio::fs::create_dir_all(&dir).await.map_err(storage)?;
    let name = field.file_name().unwrap_or("upload").to_string();
    let content_type = field
        .content_type()
        .unwrap_or("application/octet-stream")
        .to_string();
    // From here on the file is removed when `spooled` goes, whatever happens.
    let mut spooled = Spooled {
        path: dir.join(crate::files::new_id()),
        name,
        content_type,
        size: 0,
    };
    let mut out = tokio::io::BufWriter::new(
        tokio::fs::File::create(&spooled.path)
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
