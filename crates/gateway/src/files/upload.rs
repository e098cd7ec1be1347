//! An upload, as it arrives: the file part written to storage chunk by
//! chunk (hashed and counted on the way, never held whole), the other
//! fields read small. The row comes first and the bytes after, so that
//! whatever stops an upload — a bad field, a quota, a client gone, its time
//! run out, a crash — leaves nothing the sweeper cannot find. Nothing of a
//! refused upload is kept.

use axum::extract::multipart::{Field, Multipart};
use sha2::{Digest, Sha256};
use store::{FileQuota, FinishedUpload, StoreError, StoredFile};
use tokio::time::Instant;

use super::{
    check_filename, check_tags, content_type, new_id, parse_expiry, parse_purpose, MAX_TAGS,
};
use crate::auth::Principal;
use crate::config::Quota;
use crate::error::ApiError;
use crate::state::App;

/// Most bytes of a field other than the file.
const MAX_FIELD_BYTES: usize = 8 * 1024;
/// Most fields an upload has besides the file.
const MAX_FIELDS: usize = 64;
/// Uploads one user may have going at once: what several uploads may write
/// before the quota refuses all but some is bounded.
const MAX_UPLOADS_AT_ONCE: i64 = 4;

/// The file part, written.
struct Written {
    id: String,
    size: u64,
    sha256: String,
    declared_type: Option<String>,
    part_name: Option<String>,
}

/// The fields besides the file.
#[derive(Default)]
struct Fields {
    filename: Option<String>,
    purpose: Option<String>,
    is_public: Option<String>,
    tags: Vec<String>,
    expires_at: Option<String>,
}

/// Takes an upload in; the file once it is ready.
pub async fn upload(
    app: &App,
    principal: &Principal,
    mut multipart: Multipart,
) -> Result<StoredFile, ApiError> {
    let user_id = principal.user.id;
    let quota = app.files.config.quota_of(&principal.user.group_name);
    let (used_bytes, used_files) = app.store.file_usage(user_id).await?;
    if used_files >= i64::try_from(quota.max_files).unwrap_or(i64::MAX) {
        return Err(ApiError::TooLarge(format!(
            "An account keeps at most {} files; delete some first.",
            quota.max_files
        )));
    }
    // The most this file may be: its own limit, and the room left.
    let room = quota
        .max_total_bytes
        .saturating_sub(u64::try_from(used_bytes).unwrap_or(0));
    let limits = (quota.max_file_bytes.min(room), quota.max_file_bytes);
    // Every read is bounded by the upload's time (rather than the whole
    // upload cancelled half-way), so a file cut off is given up properly.
    let ttl = app.files.config.upload_ttl_secs;
    let deadline = Instant::now() + std::time::Duration::from_secs(ttl);
    let mut fields = Fields::default();
    let mut written: Option<Written> = None;
    let mut seen = 0;
    let read = async {
        while let Some(field) = in_time(deadline, multipart.next_field())
            .await?
            .map_err(bad_body)?
        {
            seen += 1;
            if seen > MAX_FIELDS {
                return Err(ApiError::BadRequest(format!(
                    "An upload has at most {MAX_FIELDS} fields."
                )));
            }
            let name = field.name().unwrap_or_default().to_string();
            match name.as_str() {
                "file" if written.is_some() => {
                    return Err(ApiError::BadRequest("Send one `file` per upload.".into()))
                }
                "file" => written = Some(write_file(app, user_id, field, limits, deadline).await?),
                "filename" => fields.filename = Some(small_text(field, deadline).await?),
                "purpose" => fields.purpose = Some(small_text(field, deadline).await?),
                "is_public" => fields.is_public = Some(small_text(field, deadline).await?),
                "tags" | "tags[]" if fields.tags.len() >= MAX_TAGS => {
                    return Err(ApiError::BadRequest(format!(
                        "A file has at most {MAX_TAGS} tags."
                    )))
                }
                "tags" | "tags[]" => fields.tags.push(small_text(field, deadline).await?),
                "expires_at" => fields.expires_at = Some(small_text(field, deadline).await?),
                // Other fields are read past (a bounded amount).
                _ => drop(small_text(field, deadline).await?),
            }
        }
        Ok(())
    }
    .await;
    let Some(file) = written else {
        read?;
        return Err(ApiError::BadRequest(
            "`file` is required (multipart/form-data).".into(),
        ));
    };
    let finished = match read.and_then(|()| check(user_id, fields, &file)) {
        Ok(finished) => finished,
        Err(e) => {
            remove(app, &file.id).await;
            return Err(e);
        }
    };
    match app.store.finish_upload(&finished, room_of(quota)).await {
        Ok(file) => Ok(file),
        Err(StoreError::Conflict(message)) => {
            remove(app, &file.id).await;
            Err(ApiError::TooLarge(format!("{message}.")))
        }
        // Given up meanwhile (past its time): the sweeper removes it.
        Err(StoreError::NotFound(_)) => Err(ApiError::BadRequest(format!(
            "The upload took longer than {ttl} s."
        ))),
        // Whether it was recorded is unknown: the bytes stay, and the
        // sweeper removes them if the row is still `uploading` past its time.
        Err(e) => Err(e.into()),
    }
}

/// `work`, unless the upload's time runs out first.
async fn in_time<T>(
    deadline: Instant,
    work: impl std::future::Future<Output = T>,
) -> Result<T, ApiError> {
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| ApiError::BadRequest("The upload took longer than allowed.".into()))
}

fn room_of(quota: Quota) -> FileQuota {
    FileQuota {
        max_total_bytes: i64::try_from(quota.max_total_bytes).unwrap_or(i64::MAX),
        max_files: i64::try_from(quota.max_files).unwrap_or(i64::MAX),
    }
}

/// The written file as it is to be recorded, its fields checked.
fn check(user_id: i64, fields: Fields, file: &Written) -> Result<FinishedUpload, ApiError> {
    let purpose = parse_purpose(
        fields
            .purpose
            .as_deref()
            .ok_or_else(|| ApiError::BadRequest("`purpose` is required.".into()))?,
    )?;
    let filename = fields
        .filename
        .or_else(|| file.part_name.clone())
        .ok_or_else(|| ApiError::BadRequest("`filename` is required.".into()))?;
    let filename = check_filename(&filename)?;
    let is_public = match fields.is_public.as_deref().map(str::trim) {
        None | Some("") => false,
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "`is_public` must be true or false.".into(),
            ))
        }
    };
    let expires_at = match fields.expires_at {
        Some(text) => parse_expiry(&text, store::now_ms())?,
        None => None,
    };
    Ok(FinishedUpload {
        id: file.id.clone(),
        user_id,
        content_type: content_type(file.declared_type.as_deref(), &filename),
        filename,
        purpose,
        is_public,
        tags: check_tags(fields.tags)?,
        size: i64::try_from(file.size).map_err(|_| ApiError::Internal)?,
        sha256: file.sha256.clone(),
        expires_at,
    })
}

/// Writes the file part to storage: at most `most` bytes (past it the
/// upload is refused: `max_file` is the file's own limit, the rest is the
/// account's room).
async fn write_file(
    app: &App,
    user_id: i64,
    mut field: Field<'_>,
    (most, max_file): (u64, u64),
    deadline: Instant,
) -> Result<Written, ApiError> {
    let id = new_id();
    // Uploads begun longer ago than their time are abandoned: not counted.
    let ttl_ms = i64::try_from(app.files.config.upload_ttl_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let since = store::now_ms().saturating_sub(ttl_ms);
    if !app
        .store
        .begin_upload(&id, user_id, MAX_UPLOADS_AT_ONCE, since)
        .await?
    {
        return Err(ApiError::RateLimited {
            what: format!("{MAX_UPLOADS_AT_ONCE} uploads at once for an account"),
            retry_after_secs: Some(1),
        });
    }
    let part_name = field.file_name().map(str::to_string);
    let declared_type = field.content_type().map(str::to_string);
    let mut writer = match app.files.storage.writer(&id).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot start writing an upload");
            remove(app, &id).await;
            return Err(ApiError::StorageUnavailable);
        }
    };
    let mut hash = Sha256::new();
    let mut size: u64 = 0;
    let result = loop {
        let chunk = match in_time(deadline, field.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break Ok(()),
            Ok(Err(e)) => break Err(bad_body(e)),
            Err(late) => break Err(late),
        };
        size = size.saturating_add(chunk.len() as u64);
        if size > most {
            break Err(ApiError::TooLarge(match size > max_file {
                true => format!("A file has at most {max_file} bytes."),
                false => "This file does not fit in the account's storage.".to_string(),
            }));
        }
        hash.update(&chunk);
        if let Err(e) = writer.write(&chunk).await {
            tracing::error!(error = %e, "an upload could not be written");
            break Err(ApiError::StorageUnavailable);
        }
    };
    let result = match result {
        Ok(()) => writer.finish().await.map_err(|e| {
            tracing::error!(error = %e, "an upload could not be completed");
            ApiError::StorageUnavailable
        }),
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    };
    if let Err(e) = result {
        remove(app, &id).await;
        return Err(e);
    }
    Ok(Written {
        id,
        size,
        sha256: hex::encode(hash.finalize()),
        declared_type,
        part_name,
    })
}

/// Removes an upload that will not be kept: its bytes, then its row (left
/// to the sweeper when either fails now).
async fn remove(app: &App, id: &str) {
    if let Err(e) = app.files.storage.delete(id).await {
        tracing::warn!(error = %e, "a refused upload's bytes were not removed; the sweeper will");
        return;
    }
    if let Err(e) = app.store.file_removed(id, false).await {
        tracing::warn!(error = %e, "a refused upload's row was not removed; the sweeper will");
    }
}

/// A small field's text.
async fn small_text(mut field: Field<'_>, deadline: Instant) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = in_time(deadline, field.chunk()).await?.map_err(bad_body)? {
        if bytes.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::BadRequest(format!(
                "The field `{name}` is longer than {MAX_FIELD_BYTES} bytes."
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest(format!("The field `{name}` is not UTF-8 text.")))
}

fn bad_body(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(format!("The upload is not valid multipart/form-data: {e}"))
}
