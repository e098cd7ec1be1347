//! `claude-code-front`: a transparent HTTP proxy to a loopback target
//! (Tollgate) that records what the client sent and what it got back,
//! streaming the answer through as it arrives.
//!
//! Two records per request (side `client`): on arrival `{"side", "seq",
//! "time", "method", "path" (with the query), "headers", "body"}` (`body`
//! null and `raw_body` when it is not JSON), then completed with
//! `status`, `response_headers` and `response_body` (its first
//! [`RESPONSE_KEEP`] bytes, as text), or `status` and `error` when the
//! target could not be reached (a 502 in Anthropic's shape) or the answer
//! broke off.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::{fields, full_path, headers_json, json_answer, Journal};

/// Bytes of an answer kept in its record.
pub const RESPONSE_KEEP: usize = 256 * 1024;
/// Connect and read limit towards the target.
const PROXY_TIMEOUT: Duration = Duration::from_secs(120);

/// Headers that belong to one connection, not passed on (the length too:
/// bodies are sent as they come).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
];

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(PROXY_TIMEOUT)
            .read_timeout(PROXY_TIMEOUT)
            .build()
            .unwrap_or_default()
    })
}

/// Whether `url` is `http://` on the loopback interface.
pub fn loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

fn passed_on(name: &str) -> bool {
    !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str())
}

/// The answer's record, completed once: when the answer ends, breaks off,
/// or is dropped because the client went away.
struct Recorded {
    journal: Arc<Journal>,
    seq: usize,
    status: u16,
    headers: Value,
    kept: Vec<u8>,
    open: bool,
}

impl Recorded {
    fn finish(&mut self, error: Option<String>) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let mut f: Map<String, Value> = fields([("status", json!(self.status))]);
        match error {
            Some(e) => {
                f.insert("error".into(), json!(e));
            }
            None => {
                f.insert("response_headers".into(), self.headers.take());
                f.insert(
                    "response_body".into(),
                    json!(String::from_utf8_lossy(&self.kept).into_owned()),
                );
            }
        }
        self.journal.update(self.seq, f);
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.finish(Some("the client went away".into()));
    }
}

/// `claude-code-front`: see the module documentation.
pub(super) async fn proxy(
    journal: &Arc<Journal>,
    target: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: Bytes,
) -> Response {
    let path = full_path(uri);
    let mut arrival = fields([
        ("method", json!(method.as_str())),
        ("path", json!(path)),
        ("headers", headers_json(headers)),
    ]);
    if raw.is_empty() {
        arrival.insert("body".into(), Value::Null);
    } else {
        match serde_json::from_slice::<Value>(&raw) {
            Ok(v) => {
                arrival.insert("body".into(), v);
            }
            Err(_) => {
                arrival.insert("body".into(), Value::Null);
                arrival.insert(
                    "raw_body".into(),
                    json!(String::from_utf8_lossy(&raw).into_owned()),
                );
            }
        }
    }
    let seq = journal.add(arrival);
    let url = format!("{}{path}", target.trim_end_matches('/'));
    let mut request = client().request(method.clone(), url);
    for (name, value) in headers {
        if passed_on(name.as_str()) {
            request = request.header(name, value);
        }
    }
    if !raw.is_empty() || matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        request = request.body(raw);
    }
    let upstream = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            journal.update(
                seq,
                fields([("status", json!(502)), ("error", json!(format!("{e:?}")))]),
            );
            return json_answer(
                502,
                &json!({"type": "error", "error": {"type": "api_error", "message": format!("front proxy: {e}")}}),
                &[],
            );
        }
    };
    let status = upstream.status();
    let mut kept_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if passed_on(name.as_str()) {
            kept_headers.append(name.clone(), value.clone());
        }
    }
    let bodyless = method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let mut recorded = Recorded {
        journal: journal.clone(),
        seq,
        status: status.as_u16(),
        headers: headers_json(&kept_headers),
        kept: Vec::new(),
        open: true,
    };
    let body = if bodyless {
        recorded.finish(None);
        Body::empty()
    } else {
        let stream = futures_util::stream::unfold(
            (upstream.bytes_stream(), recorded),
            |(mut stream, mut recorded)| async move {
                if !recorded.open {
                    return None;
                }
                match stream.next().await {
                    Some(Ok(data)) => {
                        let room = RESPONSE_KEEP.saturating_sub(recorded.kept.len());
                        recorded
                            .kept
                            .extend_from_slice(&data[..data.len().min(room)]);
                        Some((Ok::<Bytes, std::io::Error>(data), (stream, recorded)))
                    }
                    Some(Err(e)) => {
                        recorded.finish(Some(format!("{e:?}")));
                        let error = std::io::Error::other(e.to_string());
                        Some((Err(error), (stream, recorded)))
                    }
                    None => {
                        recorded.finish(None);
                        None
                    }
                }
            },
        );
        Body::from_stream(stream)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in &kept_headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_bytes()),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback("http://127.0.0.1:8080"));
        assert!(loopback("http://localhost/x"));
        assert!(loopback("http://[::1]:80"));
        assert!(!loopback("http://10.0.0.1:80"));
        assert!(!loopback("https://127.0.0.1"));
        assert!(!loopback("http://127.0.0.1.evil.example"));
    }
}
