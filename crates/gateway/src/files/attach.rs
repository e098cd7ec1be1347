//! Files as model inputs: a chat, Messages or Responses request may name
//! one of the caller's files — `tollgate-file://<id>`, or a public file's
//! URL — where an image or a document goes. Such a reference becomes the
//! file itself, inlined (base64) in the form the request's protocol has for
//! it, so that any upstream gets it, whether or not it can fetch URLs (and
//! this gateway's URLs may not be reachable from it). A private file must
//! be the caller's; a public one may be anyone's. A request without a
//! reference is not even parsed.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::{is_id, REFERENCE_SCHEME};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::App;

/// Most file references one request may carry.
const MAX_REFERENCES: usize = 16;

/// A referenced file, ready to inline.
struct Inlined {
    content_type: String,
    filename: String,
    size: u64,
    base64: String,
    /// The file as text, when it is a `text/*` file in UTF-8.
    text: Option<String>,
}

/// `body` with the files it references inlined (unchanged without any).
/// At most [`MAX_REFERENCES`] references, and `max_inline_bytes` in all
/// (a file named twice counts twice): the request carries them.
pub async fn attach(app: &App, principal: &Principal, body: Bytes) -> Result<Bytes, ApiError> {
    if !app.files.may_be_referenced(&body) {
        return Ok(body);
    }
    // A body that is not JSON is refused by the handler, in its own words.
    let Ok(mut doc) = serde_json::from_slice::<Value>(&body) else {
        return Ok(body);
    };
    let mut wanted: Vec<(String, Slot)> = Vec::new();
    visit(&mut doc, &mut |reference, slot| {
        // Another site's URL is left for the upstream to fetch.
        if reference.starts_with(REFERENCE_SCHEME) || app.files.public_id(reference).is_some() {
            wanted.push((reference.to_string(), slot));
        }
        None
    });
    if wanted.is_empty() {
        return Ok(body);
    }
    if wanted.len() > MAX_REFERENCES {
        return Err(ApiError::BadRequest(format!(
            "A request may reference at most {MAX_REFERENCES} files."
        )));
    }
    let mut files: HashMap<String, Inlined> = HashMap::new();
    let most = app.files.config.max_inline_bytes;
    let mut total: u64 = 0;
    for (reference, slot) in &wanted {
        if !files.contains_key(reference) {
            let file = fetch(app, principal, reference).await?;
            files.insert(reference.clone(), file);
        }
        let file = &files[reference];
        total = total.saturating_add(file.size);
        if total > most {
            return Err(ApiError::BadRequest(format!(
                "The files this request references come to more than the {most} bytes a request may carry."
            )));
        }
        slot.check(reference, file)?;
    }
    visit(&mut doc, &mut |reference, slot| {
        files.get(reference).map(|file| slot.inlined(file))
    });
    Ok(serde_json::to_vec(&doc)
        .map_err(|_| ApiError::Internal)?
        .into())
}

/// Reads a referenced file the caller may use, whole (it goes in the body).
async fn fetch(app: &App, principal: &Principal, reference: &str) -> Result<Inlined, ApiError> {
    let missing = || {
        ApiError::BadRequest(format!(
            "The file {reference} does not exist, or is not yours."
        ))
    };
    let (id, private) = match reference.strip_prefix(REFERENCE_SCHEME) {
        Some(id) => (id, true),
        None => (app.files.public_id(reference).ok_or_else(missing)?, false),
    };
    if !is_id(id) {
        return Err(missing());
    }
    let file = match app.store.get_file(id).await {
        Ok(file) => file,
        Err(store::StoreError::NotFound(_)) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    let visible = match private {
        true => file.user_id == principal.user.id,
        false => file.is_public,
    };
    if !visible {
        return Err(missing());
    }
    let size = u64::try_from(file.size).unwrap_or(u64::MAX);
    let most = app.files.config.max_inline_bytes;
    if size > most {
        return Err(ApiError::BadRequest(format!(
            "The file {reference} has {size} bytes: a request may carry files of at most {most} bytes."
        )));
    }
    let mut stream = app.files.storage.read(id, None).await.map_err(|e| {
        tracing::error!(error = %e, "a referenced file could not be read");
        ApiError::StorageUnavailable
    })?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::error!(error = %e, "a referenced file could not be read");
            ApiError::StorageUnavailable
        })?;
        if (bytes.len() + chunk.len()) as u64 > most {
            return Err(ApiError::Internal);
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = match file.content_type.starts_with("text/") {
        true => String::from_utf8(bytes.clone()).ok(),
        false => None,
    };
    Ok(Inlined {
        base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
        content_type: file.content_type,
        filename: file.filename,
        size,
        text,
    })
}

/// Where in a request a reference stands, which says what replaces it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// An image's URL (chat's `image_url.url`, Responses' `input_image`):
    /// a `data:` URL.
    ImageUrl,
    /// A file part (chat's `file`, Responses' `input_file`): its
    /// `file_data` as a `data:` URL, and its `filename`.
    FilePart,
    /// Anthropic's `source` of an image: a base64 source.
    AnthropicImage,
    /// Anthropic's `source` of a document: a text source for text, else
    /// base64.
    AnthropicDocument,
}

impl Slot {
    /// Refuses a file the slot cannot carry.
    fn check(self, reference: &str, file: &Inlined) -> Result<(), ApiError> {
        let image = file.content_type.starts_with("image/");
        match self {
            Slot::ImageUrl | Slot::AnthropicImage if !image => Err(ApiError::BadRequest(format!(
                "The file {reference} is not an image ({}).",
                file.content_type
            ))),
            Slot::AnthropicDocument
                if file.content_type.starts_with("text/") && file.text.is_none() =>
            {
                Err(ApiError::BadRequest(format!(
                    "The file {reference} is text, but not UTF-8."
                )))
            }
            _ => Ok(()),
        }
    }

    fn inlined(self, file: &Inlined) -> Value {
        let data_url = || format!("data:{};base64,{}", file.content_type, file.base64);
        match self {
            Slot::ImageUrl => Value::String(data_url()),
            Slot::FilePart => json!({"file_data": data_url(), "filename": file.filename}),
            Slot::AnthropicDocument if file.text.is_some() => {
                json!({"type": "text", "media_type": "text/plain", "data": file.text})
            }
            Slot::AnthropicImage | Slot::AnthropicDocument => {
                json!({"type": "base64", "media_type": file.content_type, "data": file.base64})
            }
        }
    }
}

/// Whether `text` is a file reference this gateway resolves (a public URL
/// is told apart later, against the configured address).
fn is_reference(text: &str) -> bool {
    text.starts_with(REFERENCE_SCHEME) || text.starts_with("http")
}

/// Calls `replace` on every reference in a slot of `doc`; where it returns
/// a value, that value takes the slot's place.
fn visit(doc: &mut Value, replace: &mut dyn FnMut(&str, Slot) -> Option<Value>) {
    match doc {
        Value::Array(items) => items.iter_mut().for_each(|v| visit(v, replace)),
        Value::Object(object) => {
            visit_object(object, replace);
            object.values_mut().for_each(|v| visit(v, replace));
        }
        _ => {}
    }
}

fn visit_object(
    object: &mut Map<String, Value>,
    replace: &mut dyn FnMut(&str, Slot) -> Option<Value>,
) {
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        // Chat: {"type":"image_url","image_url":{"url":…}} (or a bare string).
        "image_url" => {
            if let Some(Value::Object(inner)) = object.get_mut("image_url") {
                replace_string(inner, "url", Slot::ImageUrl, replace);
            } else {
                replace_string(object, "image_url", Slot::ImageUrl, replace);
            }
        }
        // Responses: {"type":"input_image","image_url":…}.
        "input_image" => replace_string(object, "image_url", Slot::ImageUrl, replace),
        // Responses: {"type":"input_file","file_url"|"file_id":…}.
        "input_file" => replace_file_part(object, replace),
        // Chat: {"type":"file","file":{"file_id"|"file_data"|"file_url":…}}.
        "file" => {
            if let Some(Value::Object(inner)) = object.get_mut("file") {
                replace_file_part(inner, replace);
            }
        }
        // Anthropic: {"type":"image"|"document","source":{"type":"url","url":…}}.
        "image" | "document" => {
            let slot = match kind {
                "image" => Slot::AnthropicImage,
                _ => Slot::AnthropicDocument,
            };
            let url = object
                .get("source")
                .filter(|s| s.get("type").and_then(Value::as_str) == Some("url"))
                .and_then(|s| s.get("url"))
                .and_then(Value::as_str)
                .filter(|u| is_reference(u))
                .map(str::to_string);
            if let Some(url) = url {
                if let Some(source) = replace(&url, slot) {
                    object.insert("source".into(), source);
                }
            }
        }
        _ => {}
    }
}

fn replace_string(
    object: &mut Map<String, Value>,
    field: &str,
    slot: Slot,
    replace: &mut dyn FnMut(&str, Slot) -> Option<Value>,
) {
    let Some(Value::String(text)) = object.get(field) else {
        return;
    };
    if !is_reference(text) {
        return;
    }
    if let Some(value) = replace(&text.clone(), slot) {
        object.insert(field.into(), value);
    }
}

fn replace_file_part(
    object: &mut Map<String, Value>,
    replace: &mut dyn FnMut(&str, Slot) -> Option<Value>,
) {
    for field in ["file_id", "file_url", "file_data"] {
        let Some(Value::String(text)) = object.get(field) else {
            continue;
        };
        if !is_reference(text) {
            continue;
        }
        if let Some(Value::Object(part)) = replace(&text.clone(), Slot::FilePart) {
            object.remove("file_id");
            object.remove("file_url");
            for (k, v) in part {
                if k == "filename" && object.contains_key("filename") {
                    continue;
                }
                object.insert(k, v);
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Inlined {
        Inlined {
            content_type: "image/png".into(),
            filename: "cat.png".into(),
            size: 3,
            base64: "iVBO".into(),
            text: None,
        }
    }

    fn resolved(mut doc: Value) -> (Value, Vec<String>) {
        let mut seen = Vec::new();
        visit(&mut doc, &mut |reference, slot| {
            seen.push(reference.to_string());
            Some(slot.inlined(&file()))
        });
        (doc, seen)
    }

    #[test]
    fn references_become_inline_files_in_each_protocols_form() {
        let r = "tollgate-file://AAAAAAAAAAAAAAAAAAAAA";
        let (chat, seen) = resolved(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": r},
            {"type": "image_url", "image_url": {"url": r, "detail": "low"}},
            {"type": "file", "file": {"file_id": r}}]}]}));
        assert_eq!(seen.len(), 2, "text is left alone");
        let parts = &chat["messages"][0]["content"];
        assert_eq!(parts[0]["text"], r);
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,iVBO");
        assert_eq!(parts[1]["image_url"]["detail"], "low");
        assert_eq!(
            parts[2]["file"],
            json!({"file_data": "data:image/png;base64,iVBO", "filename": "cat.png"})
        );

        let (responses, _) = resolved(json!({"input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": r},
            {"type": "input_file", "file_url": r, "filename": "mine.png"}]}]}));
        let parts = &responses["input"][0]["content"];
        assert_eq!(parts[0]["image_url"], "data:image/png;base64,iVBO");
        assert_eq!(parts[1]["file_data"], "data:image/png;base64,iVBO");
        assert_eq!(parts[1]["filename"], "mine.png", "the client's name kept");
        assert!(parts[1].get("file_url").is_none());

        let (messages, _) = resolved(json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": r}},
            {"type": "image", "source": {"type": "url", "url": "ftp://elsewhere"}}]}]}));
        let parts = &messages["messages"][0]["content"];
        assert_eq!(
            parts[0]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "iVBO"})
        );
        assert_eq!(parts[1]["source"]["url"], "ftp://elsewhere");
    }

    #[test]
    fn a_text_document_goes_to_anthropic_as_text_and_slots_take_what_fits() {
        let text = Inlined {
            content_type: "text/plain".into(),
            filename: "a.txt".into(),
            size: 5,
            base64: base64::engine::general_purpose::STANDARD.encode("hello"),
            text: Some("hello".into()),
        };
        assert_eq!(
            Slot::AnthropicDocument.inlined(&text),
            json!({"type": "text", "media_type": "text/plain", "data": "hello"})
        );
        assert!(Slot::AnthropicImage.check("r", &text).is_err());
        assert!(Slot::ImageUrl.check("r", &text).is_err());
        assert!(Slot::FilePart.check("r", &text).is_ok());
        let latin1 = Inlined { text: None, ..text };
        assert!(Slot::AnthropicDocument.check("r", &latin1).is_err());
        assert!(Slot::AnthropicImage.check("r", &file()).is_ok());
    }
}
