//! The control routes, under `/__mock/`: the request log and the scripts.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::script::Script;
use crate::server::{mock_error, value_response, Shared};

fn parse_scripts(body: &[u8], many: bool) -> Result<Vec<Script>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    match value {
        Value::Array(list) if many => list
            .iter()
            .enumerate()
            .map(|(i, s)| Script::from_json(s).map_err(|e| format!("script {i}: {e}")))
            .collect(),
        other => Ok(vec![Script::from_json(&other)?]),
    }
}

/// `marker=TEXT` of a query string, decoded.
fn marker(query: Option<&str>) -> Option<String> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("marker="))?;
    Some(percent_decode(value))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn handle(
    shared: &Shared,
    method: &Method,
    route: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    match (method.as_str(), route) {
        ("GET", "requests") => {
            let Some(recorder) = shared.recorder() else {
                return mock_error(
                    StatusCode::NOT_FOUND,
                    "recording is off (start the mock with --record)",
                );
            };
            let marker = marker(query);
            let requests: Vec<Value> = recorder
                .snapshot()
                .iter()
                .map(|r| r.to_json())
                .filter(|r| match &marker {
                    Some(m) => r["body"].to_string().contains(m.as_str()),
                    None => true,
                })
                .collect();
            value_response(StatusCode::OK, &json!({"requests": requests}))
        }
        ("DELETE", "requests") => {
            if let Some(recorder) = shared.recorder() {
                recorder.clear();
            }
            value_response(StatusCode::OK, &json!({"cleared": true}))
        }
        ("POST", "script") => match parse_scripts(body, true) {
            Ok(scripts) => {
                let queued = shared.push(scripts);
                value_response(StatusCode::OK, &json!({"queued": queued}))
            }
            Err(e) => mock_error(StatusCode::BAD_REQUEST, &e),
        },
        ("DELETE", "script") => {
            shared.clear_queue();
            value_response(StatusCode::OK, &json!({"queued": 0}))
        }
        ("PUT", "default") => match parse_scripts(body, false) {
            Ok(mut scripts) => {
                shared.set_default(scripts.pop());
                value_response(StatusCode::OK, &json!({"default": true}))
            }
            Err(e) => mock_error(StatusCode::BAD_REQUEST, &e),
        },
        ("DELETE", "default") => {
            shared.set_default(None);
            value_response(StatusCode::OK, &json!({"default": false}))
        }
        _ => mock_error(
            StatusCode::NOT_FOUND,
            &format!("no control route {method} /__mock/{route}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_decoded() {
        assert_eq!(
            marker(Some("a=1&marker=mk%20x+y")).as_deref(),
            Some("mk x y")
        );
        assert_eq!(marker(Some("marker=%zz%4")).as_deref(), Some("%zz%4"));
        assert_eq!(marker(Some("marker=%C3%A9")).as_deref(), Some("é"));
        assert_eq!(marker(None), None);
    }
}
