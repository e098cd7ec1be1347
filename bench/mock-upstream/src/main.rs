//! `mock-upstream`: a fixed-answer upstream for Tollgate's benchmark
//! (`bench/run.sh`). It speaks two protocols, does no logging and no
//! authentication, and answers as fast as it can:
//!
//! * `POST /v1/chat/completions` (OpenAI): non-stream, one `chat.completion`
//!   with usage `prompt 10, completion 5`; stream (`"stream": true`),
//!   `--chunks` content chunks (the last one with `finish_reason: "stop"`),
//!   then the usage chunk when `stream_options.include_usage` is true, then
//!   `data: [DONE]`.
//! * `POST /v1/messages` (Anthropic): non-stream, one `message` with usage
//!   `input 10, output 5`; stream, `message_start`, `content_block_start`,
//!   `--chunks` `content_block_delta`s, `content_block_stop`, `message_delta`
//!   (with the final usage) and `message_stop`.
//!
//! The model name of the request is echoed back. Usage is the same whatever
//! `--chunks` is, so one answer always costs the same: the benchmark checks
//! that every request was charged exactly that.
//!
//! `--delay-ms` waits before the answer (the headers included);
//! `--chunk-delay-ms` waits between two consecutive content chunks of a
//! stream, so a stream lasts about `delay + (chunks − 1) × chunk delay`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

const USAGE: &str = r#"{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}"#;

const HELP: &str = "\
mock-upstream: a fixed-answer OpenAI and Anthropic upstream for benchmarks.

USAGE: mock-upstream [--listen ADDR] [--chunks N] [--delay-ms MS] [--chunk-delay-ms MS]

  --listen ADDR        address to listen on (default 127.0.0.1:9100)
  --chunks N           content chunks per streamed answer (default 16)
  --delay-ms MS        wait this long before answering (default 0)
  --chunk-delay-ms MS  wait this long between two streamed content chunks (default 0)

Routes: POST /v1/chat/completions (OpenAI), POST /v1/messages (Anthropic).
Usage is always 10 input + 5 output tokens.
";

#[derive(Debug, Clone)]
struct Options {
    listen: SocketAddr,
    chunks: usize,
    delay: Duration,
    chunk_delay: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 9100)),
        chunks: 16,
        delay: Duration::ZERO,
        chunk_delay: Duration::ZERO,
    };
    let millis = |name: &str, value: &str| -> Result<Duration, String> {
        value
            .parse()
            .map(Duration::from_millis)
            .map_err(|e| format!("{name} {value}: {e}"))
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
                    .map_err(|e| format!("--chunks {value}: {e}"))?;
                if options.chunks == 0 {
                    return Err("--chunks must be at least 1".into());
                }
            }
            "--delay-ms" => options.delay = millis(&name, &value)?,
            "--chunk-delay-ms" => options.chunk_delay = millis(&name, &value)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Some(options))
}

// --- OpenAI chat completions ---------------------------------------------

fn completion_body(model: &str) -> String {
    let model = Value::from(model);
    format!(
        r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"Hello world!"}},"finish_reason":"stop"}}],"usage":{USAGE}}}"#
    )
}

/// The SSE events of one streamed chat completion, `[DONE]` included. The
/// content chunks are the first `chunks` events.
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

// --- Anthropic messages ---------------------------------------------------

fn message_body(model: &str) -> String {
    let model = Value::from(model);
    format!(
        r#"{{"id":"msg_bench","type":"message","role":"assistant","model":{model},"content":[{{"type":"text","text":"Hello world!"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}}}}"#
    )
}

/// The SSE events of one streamed message. The content chunks are the
/// events `2 .. 2 + chunks`: after `message_start` and `content_block_start`.
fn message_events(model: &str, chunks: usize) -> Vec<Bytes> {
    let model = Value::from(model);
    let event = |name: &str, data: String| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut events = Vec::with_capacity(chunks + 5);
    events.push(event(
        "message_start",
        format!(
            r#"{{"type":"message_start","message":{{"id":"msg_bench","type":"message","role":"assistant","model":{model},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}}}}"#
        ),
    ));
    events.push(event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
            .into(),
    ));
    for i in 0..chunks {
        let text = if i == 0 { "tok" } else { " tok" };
        events.push(event(
            "content_block_delta",
            format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{text}"}}}}"#
            ),
        ));
    }
    events.push(event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#.into(),
    ));
    events.push(event(
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}"#
            .into(),
    ));
    events.push(event("message_stop", r#"{"type":"message_stop"}"#.into()));
    events
}

// --- serving --------------------------------------------------------------

/// A streamed body of `events`: `pause` is slept before each event of
/// `content` (a range of indexes) but the first of them.
fn paced_stream(events: Vec<Bytes>, content: std::ops::Range<usize>, pause: Duration) -> Body {
    if pause.is_zero() {
        let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, std::io::Error>));
        return Body::from_stream(stream);
    }
    let stream = futures_util::stream::unfold(
        (events.into_iter().enumerate(), content),
        move |(mut events, content)| async move {
            let (i, event) = events.next()?;
            if i > content.start && i < content.end {
                tokio::time::sleep(pause).await;
            }
            Some((Ok::<_, std::io::Error>(event), (events, content)))
        },
    );
    Body::from_stream(stream)
}

fn bad_request(message: String, anthropic: bool) -> Response {
    let error = if anthropic {
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
    } else {
        json!({"error": {"message": message, "type": "invalid_request_error"}})
    };
    (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
}

fn json_response(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn sse_response(body: Body) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn chat_completions(State(options): State<Arc<Options>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid JSON: {e}"), false),
    };
    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    let model = request["model"].as_str().unwrap_or("");
    if request["stream"] != Value::Bool(true) {
        return json_response(completion_body(model));
    }
    let include_usage = request["stream_options"]["include_usage"] == Value::Bool(true);
    let events = stream_events(model, options.chunks, include_usage);
    sse_response(paced_stream(events, 0..options.chunks, options.chunk_delay))
}

async fn messages(State(options): State<Arc<Options>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("invalid JSON: {e}"), true),
    };
    if !options.delay.is_zero() {
        tokio::time::sleep(options.delay).await;
    }
    let model = request["model"].as_str().unwrap_or("");
    if request["stream"] != Value::Bool(true) {
        return json_response(message_body(model));
    }
    let events = message_events(model, options.chunks);
    sse_response(paced_stream(
        events,
        2..2 + options.chunks,
        options.chunk_delay,
    ))
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
    // TCP_NODELAY: a streamed chunk leaves at once instead of waiting for the
    // client's (delayed) acknowledgement of the previous one (Nagle).
    let listener = match tokio::net::TcpListener::bind(options.listen).await {
        Ok(l) => l.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        Err(e) => {
            eprintln!("mock-upstream: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    println!(
        "mock-upstream listening on http://{} (chunks {}, delay {} ms, chunk delay {} ms)",
        options.listen,
        options.chunks,
        options.delay.as_millis(),
        options.chunk_delay.as_millis()
    );
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/messages", post(messages))
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
    use futures_util::StreamExt;

    fn args(list: &[&str]) -> Result<Option<Options>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    fn parse_data(e: &Bytes) -> Value {
        let text = std::str::from_utf8(e).unwrap();
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(data).unwrap()
    }

    #[test]
    fn options_parse() {
        let o = args(&[]).unwrap().unwrap();
        assert_eq!(o.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(o.chunks, 16);
        assert_eq!(o.chunk_delay, Duration::ZERO);
        let o = args(&[
            "--listen",
            "127.0.0.1:1",
            "--chunks=3",
            "--delay-ms",
            "7",
            "--chunk-delay-ms=5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(o.listen.port(), 1);
        assert_eq!(o.chunks, 3);
        assert_eq!(o.delay, Duration::from_millis(7));
        assert_eq!(o.chunk_delay, Duration::from_millis(5));
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--chunks"]).is_err());
        assert!(args(&["--chunks", "0"]).is_err());
        assert!(args(&["--bogus", "1"]).is_err());
    }

    #[test]
    fn chat_answers_are_valid_json() {
        let body: Value = serde_json::from_str(&completion_body("m\"x")).unwrap();
        assert_eq!(body["model"], "m\"x");
        assert_eq!(body["usage"]["prompt_tokens"], 10);
        assert_eq!(body["usage"]["completion_tokens"], 5);

        let events = stream_events("m", 3, true);
        assert_eq!(events.len(), 5);
        assert_eq!(&events[4][..], b"data: [DONE]\n\n");
        assert_eq!(
            parse_data(&events[0])["choices"][0]["delta"]["role"],
            "assistant"
        );
        assert_eq!(
            parse_data(&events[2])["choices"][0]["finish_reason"],
            "stop"
        );
        assert!(parse_data(&events[1])["usage"].is_null());
        assert_eq!(parse_data(&events[3])["usage"]["completion_tokens"], 5);

        let events = stream_events("m", 2, false);
        assert_eq!(events.len(), 3);
        assert!(parse_data(&events[0]).get("usage").is_none());
    }

    #[test]
    fn anthropic_answers_are_valid_json() {
        let body: Value = serde_json::from_str(&message_body("c\"1")).unwrap();
        assert_eq!(body["model"], "c\"1");
        assert_eq!(body["type"], "message");
        assert_eq!(body["usage"]["input_tokens"], 10);
        assert_eq!(body["usage"]["output_tokens"], 5);

        let events = message_events("c", 3);
        assert_eq!(events.len(), 3 + 5);
        let types: Vec<String> = events
            .iter()
            .map(|e| parse_data(e)["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for e in &events {
            let text = std::str::from_utf8(e).unwrap();
            let name = text
                .strip_prefix("event: ")
                .unwrap()
                .lines()
                .next()
                .unwrap();
            assert_eq!(parse_data(e)["type"], name);
        }
        assert_eq!(
            parse_data(&events[0])["message"]["usage"]["input_tokens"],
            10
        );
        assert_eq!(parse_data(&events[6])["usage"]["output_tokens"], 5);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn chunks_are_paced() {
        let events = stream_events("m", 4, false); // 4 content chunks + [DONE]
        let body = paced_stream(events, 0..4, Duration::from_millis(20));
        let start = std::time::Instant::now();
        let mut stream = body.into_data_stream();
        let mut at = Vec::new();
        while let Some(frame) = stream.next().await {
            frame.unwrap();
            at.push(start.elapsed());
        }
        // The first chunk at once, one pause before each further content
        // chunk, none before [DONE].
        assert_eq!(at.len(), 5);
        assert!(at[0] < Duration::from_millis(15), "{at:?}");
        for i in 1..4 {
            assert!(at[i] - at[i - 1] >= Duration::from_millis(19), "{at:?}");
        }
        assert!(at[4] - at[3] < Duration::from_millis(15), "{at:?}");
    }
}
