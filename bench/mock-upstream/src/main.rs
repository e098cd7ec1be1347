//! `mock-upstream`: a fixed-answer OpenAI-compatible upstream for Tollgate's
//! benchmark (`bench/run.sh`). It serves `POST /v1/chat/completions` only,
//! does no logging and no authentication, and answers as fast as it can:
//!
//! * non-stream: one `chat.completion` with usage `prompt 10, completion 5`;
//! * stream (`"stream": true`): `--chunks` content chunks (the last one with
//!   `finish_reason: "stop"`), then the usage chunk when
//!   `stream_options.include_usage` is true, then `data: [DONE]`.
//!
//! The model name of the request is echoed back. Usage is the same whatever
//! `--chunks` is, so one answer always costs the same.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

const USAGE: &str = r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}"#;

const HELP: &str = "\
mock-upstream: a fixed-answer OpenAI-compatible upstream for benchmarks.

USAGE: mock-upstream [--listen ADDR] [--chunks N] [--delay-ms MS]

  --listen ADDR    address to listen on (default 127.0.0.1:9100)
  --chunks N       content chunks per streamed answer (default 16)
  --delay-ms MS    wait this long before answering (default 0)
";

#[derive(Debug, Clone)]
struct Options {
    listen: SocketAddr,
    chunks: usize,
    delay: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
        chunks: 16,
        delay: Duration::ZERO,
    };
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("{name} needs a value")),
        };
        match name.as_str() {
            "--listen" => {
                options.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?
            }
            "--chunks" => {
                options.chunks = value
                    .parse()
                    .map_err(|e| format!("--chunks {value}: {e}"))?
            }
            "--delay-ms" => {
                options.delay = Duration::from_millis(
                    value
                        .parse()
                        .map_err(|e| format!("--delay-ms {value}: {e}"))?,
                )
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Some(options))
}

fn completion_body(model: &str) -> String {
    let model = Value::from(model);
    format!(
        r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello world!"}},"finish_reason":"stop"}}],"usage":{USAGE}}}"#
    )
}

/// The SSE events of one streamed answer, `[DONE]` included.
fn stream_events(model: &str, chunks: usize, include_usage: bool) -> Vec<Bytes> {
    let model = Value::from(model);
    // Like OpenAI, every chunk carries `"usage":null` once usage was asked for.
    let usage_null = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let mut events = Vec::with_capacity(chunks + 2);
    for i in 0..chunks {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": "tok"})
        } else {
            json!({"content": " tok"})
        };
        let finish = if i + 1 == chunks { r#""stop""# } else { "null" };
        events.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":{model},\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]{usage_null}}}\n\n"
        )));
    }
    if include_usage {
        events.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":{model},\"choices\":[],\"usage\":{USAGE}}}\n\n"
        )));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

async fn chat_completions(State(options): State<Arc<Options>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let error = json!({"error": {"message": format!("invalid JSON: {e}"),
                                         "type": "invalid_request_error"}});
            return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
        }
    };
    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    let model = request["model"].as_str().unwrap_or("");
    if request["stream"] != Value::Bool(true) {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            completion_body(model),
        )
            .into_response();
    }
    let include_usage = request["stream_options"]["include_usage"] == Value::Bool(true);
    let events = stream_events(model, options.chunks, include_usage);
    let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mock-upstream: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mock-upstream: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    println!(
        "mock-upstream listening on http://{} (chunks {}, delay {} ms)",
        options.listen,
        options.chunks,
        options.delay.as_millis()
    );
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(Arc::new(options));
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("mock-upstream: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options_parse() {
        let o = args(&[]).unwrap().unwrap();
        assert_eq!(o.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(o.chunks, 16);
        let o = args(&["--listen", "127.0.0.1:1", "--chunks=3", "--delay-ms", "7"])
            .unwrap()
            .unwrap();
        assert_eq!(o.listen.port(), 1);
        assert_eq!(o.chunks, 3);
        assert_eq!(o.delay, Duration::from_millis(7));
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--chunks"]).is_err());
        assert!(args(&["--bogus", "1"]).is_err());
    }

    #[test]
    fn answers_are_valid_json() {
        let body: Value = serde_json::from_str(&completion_body("m\"x")).unwrap();
        assert_eq!(body["model"], "m\"x");
        assert_eq!(body["usage"]["prompt_tokens"], 10);
        assert_eq!(body["usage"]["completion_tokens"], 5);

        let events = stream_events("m", 3, true);
        assert_eq!(events.len(), 5);
        assert_eq!(&events[4][..], b"data: [DONE]\n\n");
        let parse = |e: &Bytes| -> Value {
            let text = std::str::from_utf8(e).unwrap();
            serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap()
        };
        assert_eq!(
            parse(&events[0])["choices"][0]["delta"]["role"],
            "assistant"
        );
        assert_eq!(parse(&events[2])["choices"][0]["finish_reason"], "stop");
        assert!(parse(&events[1])["usage"].is_null());
        assert_eq!(parse(&events[3])["usage"]["completion_tokens"], 5);

        let events = stream_events("m", 2, false);
        assert_eq!(events.len(), 3);
        assert!(parse(&events[0]).get("usage").is_none());
    }
}
