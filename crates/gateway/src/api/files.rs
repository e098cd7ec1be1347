//! OhMyGPT's file API: upload (multipart), manage (`POST`, JSON or form,
//! the `{statusCode, message, data}` envelope), and download — a public
//! file by anyone with its URL, a private one by its owner's key only
//! (anyone else gets 404, as for a file that does not exist). Downloads
//! stream from storage with `Range`, `ETag`/`If-None-Match`, the file's
//! type and a safe `Content-Disposition`. OhMyGPT's paths beyond upload
//! are not public: every path is here, to rename cheaply, and in the
//! README.

use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};
use store::{FileFilter, FileUpdate, StoredFile};

use super::body::{field_bool, field_list, field_str, parse_fields};
use super::detached;
use super::ohmygpt::envelope;
use crate::api::caller::authenticate;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::files::{
    check_filename, check_tags, is_id, owner_json, parse_expiry, parse_purpose, public_json,
};
use crate::state::App;

/// Every path of the file API.
pub const BASE: &str = "/api/v1/user/files";
pub const UPLOAD: &str = "/api/v1/user/files/upload";
/// `{MANAGE}/{route}` for each of [`MANAGE_ROUTES`].
const MANAGE_ROUTES: [&str; 4] = ["update", "delete", "list", "info"];
/// `GET {DOWNLOAD}/{id}`: the owner's file, with their key.
pub const DOWNLOAD: &str = "/api/v1/user/files/download";
/// `GET {PUBLIC}/{id}`: a public file, to anyone; `…/{id}/info`: what
/// anyone may know of it.
pub const PUBLIC: &str = "/api/v1/user/files/public";

/// Most files one listing page or one `info` call gives.
const MAX_PAGE: i64 = 100;
/// Characters kept as they are in `filename*` (RFC 5987 `attr-char`).
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

pub fn routes(management_body_bytes: usize) -> Router<App> {
    let manage = MANAGE_ROUTES.iter().fold(Router::new(), |router, name| {
        let name: &'static str = name;
        router.route(
            &format!("{BASE}/{name}"),
            post(
                move |State(app): State<App>, headers: HeaderMap, body: Bytes| async move {
                    envelope(manage(&app, name, &headers, &body).await)
                },
            ),
        )
    });
    manage
        .route(&format!("{DOWNLOAD}/{{id}}"), get(download_own))
        .route(&format!("{PUBLIC}/{{id}}"), get(download_public))
        .route(&format!("{PUBLIC}/{{id}}/info"), get(public_info))
        .layer(DefaultBodyLimit::max(management_body_bytes))
        // An upload is streamed to storage and limited as it arrives (by
        // the account's quota), not buffered.
        .route(UPLOAD, post(upload).layer(DefaultBodyLimit::disable()))
}

/// `POST …/upload`: multipart/form-data with `file`, `purpose`,
/// `filename`, `is_public`, `tags` (repeated), `expires_at`.
async fn upload(
    State(app): State<App>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    // Run to its end even if the client goes: what was written is removed.
    detached(async move {
        let result = async {
            let principal = authenticate(&app, &headers).await?;
            let multipart = multipart.map_err(|e| {
                ApiError::BadRequest(format!(
                    "An upload is multipart/form-data with a `file` part: {e}"
                ))
            })?;
            let file = crate::files::upload::upload(&app, &principal, multipart).await?;
            Ok((
                "File Upload Success".to_string(),
                owner_json(&app.files, &file),
            ))
        }
        .await;
        envelope(result)
    })
    .await
}

async fn manage(
    app: &App,
    route: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Value), ApiError> {
    let principal = authenticate(app, headers).await?;
    let fields = parse_fields(headers, body)?;
    let user_id = principal.user.id;
    match route {
        "update" => {
            let id = file_id(&fields)?;
            let update = FileUpdate {
                filename: field_str(&fields, "filename")
                    .map(|n| check_filename(&n))
                    .transpose()?,
                is_public: field_bool(&fields, "is_public")?,
                tags: field_list(&fields, "tags")?.map(check_tags).transpose()?,
                expires_at: field_str(&fields, "expires_at")
                    .map(|t| parse_expiry(&t, store::now_ms()))
                    .transpose()?,
            };
            let file = app.store.update_file(user_id, &id, &update).await?;
            Ok(("File updated".into(), owner_json(&app.files, &file)))
        }
        "delete" => {
            let id = file_id(&fields)?;
            if !app.store.start_deleting_file(user_id, &id).await? {
                return Err(ApiError::NotFound("File".into()));
            }
            remove_now(app, &id).await;
            Ok(("File deleted".into(), json!({"fileUniqueID": id})))
        }
        "list" => list(app, &principal, &fields).await,
        "info" => {
            let ids = field_list(&fields, "fileUniqueIds")?.ok_or_else(|| {
                ApiError::BadRequest("`fileUniqueIds` (a list of file ids) is required.".into())
            })?;
            if ids.len() as i64 > MAX_PAGE {
                return Err(ApiError::BadRequest(format!(
                    "At most {MAX_PAGE} ids per call."
                )));
            }
            let files = app.store.files_by_ids(user_id, &ids).await?;
            let data: Vec<Value> = files
                .iter()
                .filter(|f| !expired(f))
                .map(|f| owner_json(&app.files, f))
                .collect();
            Ok(("OK".into(), Value::Array(data)))
        }
        _ => Err(ApiError::NotFound("Route".into())),
    }
}

async fn list(
    app: &App,
    principal: &Principal,
    fields: &Map<String, Value>,
) -> Result<(String, Value), ApiError> {
    let number = |name: &str, default: i64| -> Result<i64, ApiError> {
        match field_str(fields, name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("`{name}` must be a whole number."))),
        }
    };
    let page = number("page", 1)?;
    let page_size = number("pageSize", 20)?;
    if page < 1 || !(1..=MAX_PAGE).contains(&page_size) {
        return Err(ApiError::BadRequest(format!(
            "`page` starts at 1 and `pageSize` is 1 to {MAX_PAGE}."
        )));
    }
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        field_str(fields, name)
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                crate::time::parse_timestamp(&t).ok_or_else(|| {
                    ApiError::BadRequest(format!("`{name}` must be an ISO 8601 time."))
                })
            })
            .transpose()
    };
    let filter = FileFilter {
        purpose: field_str(fields, "purpose")
            .filter(|p| !p.trim().is_empty())
            .map(|p| parse_purpose(&p))
            .transpose()?,
        tags: check_tags(field_list(fields, "tags")?.unwrap_or_default())?,
        is_public: field_bool(fields, "is_public")?,
        name_prefix: field_str(fields, "name_prefix").filter(|p| !p.is_empty()),
        created_from: time("created_after")?,
        created_until: time("created_before")?,
        offset: (page - 1).saturating_mul(page_size),
        limit: page_size,
    };
    let (files, total) = app.store.list_files(principal.user.id, &filter).await?;
    let data: Vec<Value> = files.iter().map(|f| owner_json(&app.files, f)).collect();
    Ok((
        "OK".into(),
        json!({"files": data, "total": total, "page": page, "pageSize": page_size}),
    ))
}

/// Removes a deleted file's bytes and row now; what fails is left to the
/// sweeper (the row says what to remove).
async fn remove_now(app: &App, id: &str) {
    if let Err(e) = app.files.storage.delete(id).await {
        tracing::warn!(file = %id, error = %e, "a deleted file's bytes are left to the sweeper");
        return;
    }
    let keep = app.files.price().is_some();
    if let Err(e) = app.store.file_removed(id, keep).await {
        tracing::warn!(file = %id, error = %e, "a deleted file's row is left to the sweeper");
    }
}

fn file_id(fields: &Map<String, Value>) -> Result<String, ApiError> {
    field_str(fields, "fileUniqueID")
        .or_else(|| field_str(fields, "fileUniqueId"))
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::BadRequest("`fileUniqueID` is required.".into()))
}

fn expired(file: &StoredFile) -> bool {
    file.expires_at.is_some_and(|at| at <= store::now_ms())
}

/// A ready, unexpired file `visible` says the caller may see; else 404.
pub(crate) async fn visible_file(
    app: &App,
    id: &str,
    visible: impl Fn(&StoredFile) -> bool,
) -> Result<StoredFile, ApiError> {
    let file = match is_id(id) {
        true => app.store.get_file(id).await?,
        false => return Err(ApiError::NotFound("File".into())),
    };
    if !visible(&file) || expired(&file) {
        return Err(ApiError::NotFound("File".into()));
    }
    Ok(file)
}

/// `GET …/download/{id}`: the caller's own file.
async fn download_own(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let file = async {
        let principal = authenticate(&app, &headers).await?;
        visible_file(&app, &id, |f| f.user_id == principal.user.id).await
    }
    .await;
    match file {
        Ok(file) => serve(&app, &file, &headers, "private, no-cache").await,
        Err(e) => envelope(Err(e)),
    }
}

/// `GET …/public/{id}`: a public file, to anyone.
async fn download_public(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match visible_file(&app, &id, |f| f.is_public).await {
        Ok(file) => serve(&app, &file, &headers, "public, max-age=300").await,
        Err(e) => envelope(Err(e)),
    }
}

/// `GET …/public/{id}/info`.
async fn public_info(State(app): State<App>, Path(id): Path<String>) -> Response {
    envelope(
        visible_file(&app, &id, |f| f.is_public)
            .await
            .map(|f| ("OK".to_string(), public_json(&app.files, &f))),
    )
}

/// The file's bytes (or the range asked), streamed from storage.
pub(crate) async fn serve(
    app: &App,
    file: &StoredFile,
    headers: &HeaderMap,
    cache: &str,
) -> Response {
    let size = u64::try_from(file.size).unwrap_or(0);
    let etag = format!("\"{}\"", file.sha256);
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, cache)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        // A file is never a page of this site: no script it holds runs.
        .header(
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        );
    if matches_etag(headers.get(header::IF_NONE_MATCH), &etag) {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| ApiError::Internal.into_response());
    }
    let range = match asked_range(headers, &etag, size) {
        Ok(range) => range,
        Err(()) => {
            return response
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .unwrap_or_else(|_| ApiError::Internal.into_response());
        }
    };
    let stream = match app.files.storage.read(&file.id, range.clone()).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::error!(file = %file.id, error = %e, "a file could not be read");
            return envelope(Err(ApiError::StorageUnavailable));
        }
    };
    response = response
        .header(header::CONTENT_TYPE, &file.content_type)
        .header(
            header::CONTENT_DISPOSITION,
            disposition(&file.content_type, &file.filename),
        );
    response = match &range {
        Some(r) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            )
            .header(header::CONTENT_LENGTH, r.end - r.start),
        None => response
            .status(StatusCode::OK)
            .header(header::CONTENT_LENGTH, size),
    };
    let body = Body::from_stream(stream.map(|r| r.map_err(std::io::Error::other)));
    response
        .body(body)
        .unwrap_or_else(|_| ApiError::Internal.into_response())
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn matches_etag(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

/// The one range asked, as bytes `start..end`: `None` for the whole file
/// (no `Range`, one that cannot be read, several ranges, an `If-Range`
/// naming another version, or an empty file), `Err` when none of it
/// exists (RFC 9110, 14.1.2).
fn asked_range(
    headers: &HeaderMap,
    etag: &str,
    size: u64,
) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if if_range.trim() != etag {
            return Ok(None);
        }
    }
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if size == 0 || spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // `-N`: the last N bytes (all of them when N is past the size).
        (true, _, Some(0)) => Err(()),
        (true, _, Some(n)) => Ok(Some(size.saturating_sub(n)..size)),
        (false, Some(a), _) if a >= size => Err(()),
        // `A-`: from A to the end.
        (false, Some(a), None) if last.trim().is_empty() => Ok(Some(a..size)),
        // `A-B`, B capped at the last byte.
        (false, Some(a), Some(b)) if a <= b => Ok(Some(a..b.min(size - 1) + 1)),
        _ => Ok(None),
    }
}

/// `inline` for what browsers show safely, else `attachment`; the name
/// as ASCII (anything else an underscore: no quote, backslash or line
/// break gets through) and exactly in `filename*`.
fn disposition(content_type: &str, filename: &str) -> String {
    let shown = [
        "image/",
        "audio/",
        "video/",
        "text/plain",
        "application/pdf",
    ];
    let kind = match shown.iter().any(|p| content_type.starts_with(p)) {
        true => "inline",
        false => "attachment",
    };
    let ascii: String = filename
        .chars()
        .map(|c| match c {
            ' ' => ' ',
            '"' | '\\' | '%' | ';' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let exact = utf8_percent_encode(filename, ATTR_CHAR);
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_inject_headers() {
        let d = disposition("text/html", "a\"b\r\nSet-Cookie: x=1;é.html");
        assert_eq!(
            d,
            "attachment; filename=\"a_b__Set-Cookie: x=1__.html\"; filename*=UTF-8''a%22b%0D%0ASet-Cookie%3A%20x%3D1%3B%C3%A9.html"
        );
        assert!(HeaderValue::from_str(&d).is_ok());
        assert!(disposition("image/png", "c.png").starts_with("inline;"));
    }

    #[test]
    fn ranges_and_etags() {
        let mut headers = HeaderMap::new();
        let etag = "\"abc\"";
        assert_eq!(asked_range(&headers, etag, 10), Ok(None));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        assert_eq!(asked_range(&headers, etag, 10), Ok(Some(2..5)));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=-3"));
        assert_eq!(asked_range(&headers, etag, 10), Ok(Some(7..10)));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=20-"));
        assert_eq!(asked_range(&headers, etag, 10), Err(()));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-1,4-5"));
        assert_eq!(asked_range(&headers, etag, 10), Ok(None));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=-20"));
        assert_eq!(asked_range(&headers, etag, 10), Ok(Some(0..10)));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=-0"));
        assert_eq!(asked_range(&headers, etag, 10), Err(()));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=5-99"));
        assert_eq!(asked_range(&headers, etag, 10), Ok(Some(5..10)));
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-"));
        assert_eq!(asked_range(&headers, etag, 0), Ok(None), "an empty file");
        for ignored in ["bytes=5-2", "bytes=x-1", "items=0-1", "bytes=1"] {
            headers.insert(header::RANGE, HeaderValue::from_static(ignored));
            assert_eq!(asked_range(&headers, etag, 10), Ok(None), "{ignored}");
        }
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
        headers.insert(header::IF_RANGE, HeaderValue::from_static("\"old\""));
        assert_eq!(asked_range(&headers, etag, 10), Ok(None));
        assert!(matches_etag(
            Some(&HeaderValue::from_static("\"x\", \"abc\"")),
            etag
        ));
        assert!(!matches_etag(
            Some(&HeaderValue::from_static("\"x\"")),
            etag
        ));
    }
}
