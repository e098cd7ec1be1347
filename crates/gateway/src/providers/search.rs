//! Web search providers, billed per call: Google's Custom Search JSON API
//! and Serper. Their answers go back to the client as they are; a search
//! that fails costs nothing.

use axum::http::{HeaderName, HeaderValue};
use protocol::rewrite::ByteRewriter;
use serde_json::{Map, Value};

use super::{to_body, Adapter, Reply, Target, UpstreamCall};
use crate::billing::estimate::Wire;
use crate::error::ApiError;
use crate::relay::transform::{BodyTransform, Count};

/// Google CSE's parameters a client may pass (the key and the engine are
/// the gateway's).
const GOOGLE_PARAMS: [&str; 22] = [
    "q",
    "num",
    "start",
    "lr",
    "gl",
    "hl",
    "cr",
    "safe",
    "searchType",
    "fileType",
    "siteSearch",
    "siteSearchFilter",
    "dateRestrict",
    "exactTerms",
    "excludeTerms",
    "orTerms",
    "linkSite",
    "lowRange",
    "highRange",
    "imgSize",
    "imgType",
    "sort",
];
/// Serper's fields a client may pass, and which of them are numbers.
const SERPER_FIELDS: [&str; 6] = ["q", "gl", "hl", "page", "num", "location"];
const SERPER_NUMBERS: [&str; 2] = ["page", "num"];

/// One call, its answer passed through, charged one unit.
fn per_call() -> Reply {
    Reply::Whole(Box::new(BodyTransform::Counted {
        rewriter: ByteRewriter::default(),
        count: Count::Fixed(1),
    }))
}

fn query_of(q: Option<&(String, String)>) -> Result<(), ApiError> {
    match q {
        Some((_, v)) if !v.trim().is_empty() => Ok(()),
        _ => Err(ApiError::BadRequest(
            "`q` (what to search for) is required.".into(),
        )),
    }
}

pub struct GoogleCse;

impl Adapter for GoogleCse {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    /// Google's API keys go in `X-Goog-Api-Key` (not the URL, where logs
    /// would keep them).
    fn credential(&self, key: &str) -> Option<(HeaderName, HeaderValue)> {
        let value = HeaderValue::from_str(key).ok()?;
        Some((HeaderName::from_static("x-goog-api-key"), value))
    }

    fn search(
        &self,
        target: &Target<'_>,
        params: &[(String, String)],
    ) -> Result<UpstreamCall, ApiError> {
        query_of(params.iter().find(|(k, _)| k == "q"))?;
        let mut query = url_encoded(target.provider.params.iter());
        let passed = params
            .iter()
            .filter(|(k, _)| GOOGLE_PARAMS.contains(&k.as_str()));
        let passed = url_encoded(passed);
        if !passed.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&passed);
        }
        Ok(UpstreamCall {
            path: "/customsearch/v1",
            query: Some(query),
            upload: None,
            body: Vec::new(),
            forwarded: Vec::new(),
            reply: per_call(),
        })
    }
}

pub struct Serper;

impl Adapter for Serper {
    fn wire(&self) -> Wire {
        Wire::OpenAi
    }

    fn credential(&self, key: &str) -> Option<(HeaderName, HeaderValue)> {
        let value = HeaderValue::from_str(key).ok()?;
        Some((HeaderName::from_static("x-api-key"), value))
    }

    fn search(
        &self,
        _target: &Target<'_>,
        params: &[(String, String)],
    ) -> Result<UpstreamCall, ApiError> {
        query_of(params.iter().find(|(k, _)| k == "q"))?;
        let mut body = Map::new();
        for (k, v) in params {
            if !SERPER_FIELDS.contains(&k.as_str()) {
                continue;
            }
            let value = match SERPER_NUMBERS.contains(&k.as_str()) {
                true => match v.trim().parse::<u64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => return Err(ApiError::BadRequest(format!("`{k}` must be a number."))),
                },
                false => Value::String(v.clone()),
            };
            body.insert(k.clone(), value);
        }
        Ok(UpstreamCall {
            path: "/search",
            query: None,
            upload: None,
            body: to_body(&body)?,
            forwarded: Vec::new(),
            reply: per_call(),
        })
    }
}

fn url_encoded<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    pairs
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}
