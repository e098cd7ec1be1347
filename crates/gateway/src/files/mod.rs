//! Users' files (OhMyGPT's storage service): bytes in a [`Storage`]
//! backend, rows in the store. [`upload`] streams a multipart upload to
//! storage, [`housekeeping`] removes what expired or was given up and
//! charges storage by the day, [`attach`] puts a referenced file into a
//! model request. What a field may be is checked here, once for every
//! route.

pub mod attach;
pub mod backend;
pub mod housekeeping;
pub mod upload;

use rand::Rng;
use store::StoredFile;

pub use backend::{Storage, StorageError};

use crate::config::{Config, StorageConfig};
use crate::error::ApiError;

/// OhMyGPT's purposes, by number.
pub const PURPOSES: [&str; 6] = [
    "COMMON",
    "FINETUNE",
    "CHAT",
    "LLM_TMP",
    "OPENAI_BATCH",
    "ANTHROPIC_BATCH",
];
/// A file's id: this many URL-safe characters (126 random bits).
const ID_LEN: usize = 21;
const ID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const MAX_FILENAME_CHARS: usize = 255;
pub(crate) const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 64;
/// The scheme of a private file's reference in a model request.
pub const REFERENCE_SCHEME: &str = "tollgate-file://";

/// The files service: where bytes live, and the settings it runs by.
pub struct Files {
    pub storage: Storage,
    pub config: StorageConfig,
    /// `{public_url}/api/v1/user/files/public/`: public files' URLs.
    public_prefix: String,
    /// Finders of [`REFERENCE_SCHEME`] and `public_prefix`, built once: a
    /// finder takes longer to build than to scan a small request body.
    reference_finders: [memchr::memmem::Finder<'static>; 2],
}

impl Files {
    pub fn open(config: &Config) -> Result<Files, StorageError> {
        let storage = Storage::open(&config.storage)?;
        let base = match &config.storage.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", config.listen),
        };
        let public_prefix = format!("{base}{}/", crate::api::files::PUBLIC);
        let reference_finders = [REFERENCE_SCHEME, &public_prefix]
            .map(|needle| memchr::memmem::Finder::new(needle.as_bytes()).into_owned());
        Ok(Files {
            storage,
            config: config.storage.clone(),
            public_prefix,
            reference_finders,
        })
    }

    /// Whether `body` may reference a file (it names a private file's
    /// scheme or the public files' URL prefix somewhere).
    pub fn may_be_referenced(&self, body: &[u8]) -> bool {
        self.reference_finders
            .iter()
            .any(|finder| finder.find(body).is_some())
    }

    /// A public file's URL (anyone may fetch it).
    pub fn public_url(&self, id: &str) -> String {
        format!("{}{id}", self.public_prefix)
    }

    /// The id a URL of [`Files::public_url`]'s names, if it is one.
    pub fn public_id<'a>(&self, url: &'a str) -> Option<&'a str> {
        url.strip_prefix(&self.public_prefix).filter(|id| is_id(id))
    }

    /// Storage's price in nano-USD per GB-day, when it is priced.
    pub fn price(&self) -> Option<i64> {
        self.config.nano_per_gb_day().filter(|p| *p > 0)
    }
}

/// Where uploads on their way to an upstream (audio to transcribe) wait:
/// a folder of this user's in the system's temporary folder (the sweeper
/// removes what a crash left).
pub fn spool_dir() -> std::path::PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("tollgate-spool-{uid}"))
}

/// [`spool_dir`], made if need be, and checked to be private: ours and
/// closed to everyone else, so that nobody can read a spooled upload or
/// swap it for another file.
pub async fn private_spool_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = spool_dir();
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    let meta = tokio::fs::symlink_metadata(&dir).await?;
    // SAFETY: as above.
    let ours = meta.uid() == unsafe { libc::getuid() };
    if !meta.is_dir() || !ours || meta.permissions().mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a private folder of this user's",
            dir.display()
        )));
    }
    Ok(dir)
}

/// A fresh file id.
pub fn new_id() -> String {
    let mut rng = rand::thread_rng();
    (0..ID_LEN)
        .map(|_| ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())] as char)
        .collect()
}

/// Whether `text` could be a file id (so it can name a path or an object).
pub fn is_id(text: &str) -> bool {
    text.len() == ID_LEN && text.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// A purpose given as its number or its name.
pub fn parse_purpose(text: &str) -> Result<i64, ApiError> {
    let text = text.trim();
    let index = match text.parse::<usize>() {
        Ok(n) => Some(n).filter(|n| *n < PURPOSES.len()),
        Err(_) => PURPOSES.iter().position(|p| p.eq_ignore_ascii_case(text)),
    };
    index.map(|i| i as i64).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "`purpose` must be one of {} (or its number, 0 to {}).",
            PURPOSES.join(", "),
            PURPOSES.len() - 1
        ))
    })
}

/// A file name as given, if it is a plain name: no path (`/`, `\`, `..`),
/// no control characters, at most 255 characters.
pub fn check_filename(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let bad = |why: &str| Err(ApiError::BadRequest(format!("`filename` {why}.")));
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.chars().count() > MAX_FILENAME_CHARS {
        return bad("has at most 255 characters");
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return bad("must be a name, not a path");
    }
    if name.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    Ok(name.to_string())
}

/// Tags, each trimmed; duplicates kept once.
pub fn check_tags(tags: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut kept: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.trim().to_string();
        if tag.is_empty()
            || tag.chars().count() > MAX_TAG_CHARS
            || tag.chars().any(char::is_control)
        {
            return Err(ApiError::BadRequest(format!(
                "each tag has 1 to {MAX_TAG_CHARS} characters, none a control character."
            )));
        }
        if !kept.contains(&tag) {
            kept.push(tag);
        }
    }
    if kept.len() > MAX_TAGS {
        return Err(ApiError::BadRequest(format!(
            "a file has at most {MAX_TAGS} tags."
        )));
    }
    Ok(kept)
}

/// An expiry as given: ISO 8601 with an offset (or Unix seconds), in the
/// future. Empty clears it.
pub fn parse_expiry(text: &str, now: i64) -> Result<Option<i64>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let at = crate::time::parse_timestamp(text).ok_or_else(|| {
        ApiError::BadRequest(
            "`expires_at` must be an ISO 8601 time with an offset (2026-12-31T23:59:59+08:00)."
                .into(),
        )
    })?;
    if at <= now {
        return Err(ApiError::BadRequest(
            "`expires_at` must be in the future.".into(),
        ));
    }
    Ok(Some(at))
}

/// The content type to serve a file with: what the uploader declared when
/// it is a well-formed type, else a guess from the name.
pub fn content_type(declared: Option<&str>, filename: &str) -> String {
    let declared = declared
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "application/octet-stream")
        .and_then(|t| t.parse::<mime_guess::mime::Mime>().ok());
    match declared {
        Some(mime) => mime.essence_str().to_string(),
        None => mime_guess::from_path(filename)
            .first_or_octet_stream()
            .essence_str()
            .to_string(),
    }
}

/// A file as its owner sees it (OhMyGPT's field names).
pub fn owner_json(files: &Files, f: &StoredFile) -> serde_json::Value {
    let mut json = public_json(files, f);
    json["purpose"] = PURPOSES
        .get(f.purpose as usize)
        .copied()
        .unwrap_or("COMMON")
        .into();
    json["purposeCode"] = f.purpose.into();
    json["isPublic"] = f.is_public.into();
    json["tags"] = f.tags.clone().into();
    json["expiresAt"] = f.expires_at.map(crate::time::format_ms).into();
    json["updatedAt"] = crate::time::format_ms(f.updated_at).into();
    if !f.is_public {
        json["url"] = serde_json::Value::Null;
        json["reference"] = format!("{REFERENCE_SCHEME}{}", f.id).into();
    }
    json
}

/// What anyone may see of a public file.
pub fn public_json(files: &Files, f: &StoredFile) -> serde_json::Value {
    serde_json::json!({
        "fileUniqueID": f.id,
        "filename": f.filename,
        "contentType": f.content_type,
        "size": f.size,
        "sha256": f.sha256,
        "createdAt": crate::time::format_ms(f.created_at),
        "url": files.public_url(&f.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_21_url_safe_characters_and_unguessable() {
        let a = new_id();
        assert!(is_id(&a), "{a}");
        assert_ne!(a, new_id());
        assert!(!is_id("../../etc/passwd____"));
        assert!(!is_id("short"));
    }

    #[test]
    fn fields_are_checked() {
        assert_eq!(parse_purpose("2").unwrap(), 2);
        assert_eq!(parse_purpose("llm_tmp").unwrap(), 3);
        assert!(parse_purpose("6").is_err());
        assert!(parse_purpose("-1").is_err());
        assert!(parse_purpose("SECRET").is_err());
        assert_eq!(check_filename(" cat.png ").unwrap(), "cat.png");
        for bad in ["", "../x", "a/b", "a\\b", "..", "a\nb", &"x".repeat(256)] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_tags(vec!["a".into(), " a ".into(), "b".into()]).unwrap(),
            ["a", "b"]
        );
        assert!(check_tags(vec!["".into()]).is_err());
        assert!(check_tags((0..21).map(|i| i.to_string()).collect()).is_err());
        let now = 1_700_000_000_000;
        assert_eq!(
            parse_expiry("2023-11-14T23:13:21+01:00", now).unwrap(),
            Some(1_700_000_001_000)
        );
        assert!(parse_expiry("2023-11-14T22:13:20Z", now).is_err(), "past");
        assert!(parse_expiry("tomorrow", now).is_err());
        assert_eq!(parse_expiry("", now).unwrap(), None);
    }

    #[test]
    fn content_types_are_declared_or_guessed() {
        assert_eq!(content_type(Some("image/png"), "x.bin"), "image/png");
        assert_eq!(content_type(None, "doc.pdf"), "application/pdf");
        assert_eq!(
            content_type(Some("application/octet-stream"), "a.jpg"),
            "image/jpeg"
        );
        assert_eq!(
            content_type(Some("not a type"), "noext"),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(Some("text/plain; charset=utf-8"), "a"),
            "text/plain"
        );
    }
}
