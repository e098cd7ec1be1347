//! `stream-probe`: a load generator and probe for streamed answers, for
//! `bench/run.sh`. It keeps `--connections` streaming requests (OpenAI chat
//! completions or Anthropic messages) in flight against one URL and measures
//! every stream on its own:
//!
//! * **time to first token** (TTFT): from writing the request to the read
//!   that completed the first content event (a chunk with a non-empty
//!   `delta.content`, or an Anthropic `text_delta`);
//! * **total time**: from writing the request to the end of the response body;
//! * **stalls**: gaps between two consecutive content events longer than
//!   `--stall-ms`, and the longest gap;
//! * **coalesced** events: content events that arrived in the same `read()`
//!   as the previous content event (a proxy that buffers shows many);
//! * that the stream carried exactly `--expect-chunks` content events.
//!
//! The HTTP/1.1 client is a minimal one over a `TcpStream` (keep-alive,
//! chunked or sized bodies), so that its timestamps are the moments bytes
//! arrive and nothing is buffered between the socket and the clock. It runs
//! on one thread: pin it to a core with `taskset` like the other load tools.
//!
//! The last line printed is `PROBE_RESULT key=value …`, parsed by run.sh.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HELP: &str = "\
stream-probe: measure streamed answers (TTFT, total time, stalls) through a target.

USAGE: stream-probe --url http://HOST:PORT/PATH [options]

  --url URL            the endpoint, e.g. http://127.0.0.1:9100/v1/chat/completions
  --api API            openai (chat completions, default) or anthropic (messages)
  --key KEY            sent as `Authorization: Bearer` (openai) or `x-api-key` (anthropic)
  --model NAME         model of the request (default bench-model)
  --connections K      streams kept in flight at once, one per connection (default 1)
  --duration SECS      open new streams for this long (default 5)
  --streams N          instead: each connection opens exactly N streams
  --expect-chunks N    content events every stream must carry (default 64; 0: any)
  --stall-ms MS        a gap between content events longer than this is a stall (default 55)
  --timeout-secs S     longest a single stream (or connect) may take (default 60)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenAi,
    Anthropic,
}

#[derive(Debug, Clone)]
struct Options {
    host_port: String,
    path: String,
    api: Api,
    key: Option<String>,
    model: String,
    connections: usize,
    duration: Duration,
    streams: Option<usize>,
    expect_chunks: usize,
    stall: Duration,
    timeout: Duration,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut url = None;
    let mut o = Options {
        host_port: String::new(),
        path: String::new(),
        api: Api::OpenAi,
        key: None,
        model: "bench-model".into(),
        connections: 1,
        duration: Duration::from_secs(5),
        streams: None,
        expect_chunks: 64,
        stall: Duration::from_millis(55),
        timeout: Duration::from_secs(60),
    };
    fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        v.parse().map_err(|e| format!("{name} {v}: {e}"))
    }
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        let v = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{name} needs a value"))?;
        match name.as_str() {
            "--url" => url = Some(v),
            "--api" => {
                o.api = match v.as_str() {
                    "openai" => Api::OpenAi,
                    "anthropic" => Api::Anthropic,
                    _ => return Err(format!("--api {v}: openai or anthropic")),
                }
            }
            "--key" => o.key = Some(v),
            "--model" => o.model = v,
            "--connections" => o.connections = num(&name, &v)?,
            "--duration" => o.duration = Duration::from_secs_f64(num(&name, &v)?),
            "--streams" => o.streams = Some(num(&name, &v)?),
            "--expect-chunks" => o.expect_chunks = num(&name, &v)?,
            "--stall-ms" => o.stall = Duration::from_millis(num(&name, &v)?),
            "--timeout-secs" => o.timeout = Duration::from_secs_f64(num(&name, &v)?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url}: only http:// is supported"))?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if !host_port.contains(':') {
        return Err(format!("--url {url}: give the port"));
    }
    o.host_port = host_port.to_string();
    o.path = path.to_string();
    if o.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok(Some(o))
}

/// The request bytes, the same for every stream.
fn request_bytes(o: &Options) -> Vec<u8> {
    let model = Value::from(o.model.as_str());
    let (body, auth) = match o.api {
        Api::OpenAi => (
            format!(
                r#"{{"model":{model},"messages":[{{"role":"user","content":"Say hello."}}],"max_tokens":16,"stream":true}}"#
            ),
            o.key
                .as_ref()
                .map(|k| format!("Authorization: Bearer {k}\r\n"))
                .unwrap_or_default(),
        ),
        Api::Anthropic => (
            format!(
                r#"{{"model":{model},"max_tokens":16,"messages":[{{"role":"user","content":"Say hello."}}],"stream":true}}"#
            ),
            o.key
                .as_ref()
                .map(|k| format!("x-api-key: {k}\r\n"))
                .unwrap_or_default()
                + "anthropic-version: 2023-06-01\r\n",
        ),
    };
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        o.path,
        o.host_port,
        body.len()
    )
    .into_bytes()
}

// --- response parsing ------------------------------------------------------

/// How the body of a response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Transfer-Encoding: chunked`, in one of its states.
    ChunkSize,
    ChunkData(usize),
    ChunkCrlf,
    Trailer,
    /// `Content-Length`: bytes still to come.
    Length(usize),
    /// Neither: the body ends when the server closes.
    UntilClose,
    Done,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Moves the body bytes out of `raw` into `out` as far as the framing
/// allows; `Err` on a malformed chunk header.
fn decode(framing: &mut Framing, raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
    let mut at = 0;
    loop {
        match *framing {
            Framing::ChunkSize => {
                let Some(end) = find(&raw[at..], b"\r\n") else {
                    break;
                };
                let line = std::str::from_utf8(&raw[at..at + end]).map_err(|_| "chunk size")?;
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                at += end + 2;
                *framing = if size == 0 {
                    Framing::Trailer
                } else {
                    Framing::ChunkData(size)
                };
            }
            Framing::ChunkData(n) => {
                let take = n.min(raw.len() - at);
                out.extend_from_slice(&raw[at..at + take]);
                at += take;
                *framing = if take == n {
                    Framing::ChunkCrlf
                } else {
                    Framing::ChunkData(n - take)
                };
                if take < n {
                    break;
                }
            }
            Framing::ChunkCrlf => {
                if raw.len() - at < 2 {
                    break;
                }
                if &raw[at..at + 2] != b"\r\n" {
                    return Err("chunk not followed by CRLF".into());
                }
                at += 2;
                *framing = Framing::ChunkSize;
            }
            Framing::Trailer => {
                let Some(end) = find(&raw[at..], b"\r\n") else {
                    break;
                };
                at += end + 2;
                if end == 0 {
                    *framing = Framing::Done;
                }
            }
            Framing::Length(n) => {
                let take = n.min(raw.len() - at);
                out.extend_from_slice(&raw[at..at + take]);
                at += take;
                *framing = if take == n {
                    Framing::Done
                } else {
                    Framing::Length(n - take)
                };
                break;
            }
            Framing::UntilClose => {
                out.extend_from_slice(&raw[at..]);
                at = raw.len();
                break;
            }
            Framing::Done => break,
        }
    }
    raw.drain(..at);
    Ok(())
}

/// What one server-sent event was, for the measurement.
#[derive(Debug, PartialEq, Eq)]
enum EventKind {
    Content,
    Error,
    Other,
}

fn classify(api: Api, name: &str, data: &str) -> EventKind {
    if data.is_empty() || data == "[DONE]" {
        return EventKind::Other;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return EventKind::Error;
    };
    if v.get("error").is_some_and(|e| !e.is_null()) || v["type"] == "error" || name == "error" {
        return EventKind::Error;
    }
    let content = match api {
        Api::OpenAi => &v["choices"][0]["delta"]["content"],
        Api::Anthropic if v["type"] == "content_block_delta" => &v["delta"]["text"],
        Api::Anthropic => &Value::Null,
    };
    match content.as_str() {
        Some(s) if !s.is_empty() => EventKind::Content,
        _ => EventKind::Other,
    }
}

/// An incremental server-sent-events parser: feed body bytes, get events.
#[derive(Default)]
struct Sse {
    buf: Vec<u8>,
    name: String,
    data: String,
}

impl Sse {
    fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(&str, &str)) {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(i) = self.buf[at..].iter().position(|&b| b == b'\n') {
            let mut line = &self.buf[at..at + i];
            at += i + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line);
            if line.is_empty() {
                if !self.data.is_empty() || !self.name.is_empty() {
                    on_event(&self.name, &self.data);
                }
                self.name.clear();
                self.data.clear();
            } else if let Some(d) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if let Some(n) = line.strip_prefix("event:") {
                self.name = n.trim().to_string();
            }
        }
        self.buf.drain(..at);
    }
}

// --- one stream -------------------------------------------------------------

/// The measurement of one stream that completed with status 200.
#[derive(Debug, Default, Clone)]
struct Measured {
    ttft: Duration,
    total: Duration,
    content: usize,
    stalls: usize,
    max_gap: Duration,
    coalesced: usize,
    error_events: usize,
}

#[derive(Debug)]
enum Outcome {
    Ok(Measured),
    Http(u16),
    Failed(String),
    TimedOut,
}

struct Conn {
    stream: TcpStream,
    raw: Vec<u8>,
}

/// Sends one request on `conn` and reads its whole response. Returns the
/// outcome and whether the connection can carry another request.
async fn one_stream(conn: &mut Conn, o: &Options, request: &[u8], open: &Gauge) -> (Outcome, bool) {
    let t0 = Instant::now();
    if let Err(e) = conn.stream.write_all(request).await {
        return (Outcome::Failed(format!("write: {e}")), false);
    }
    let mut chunk = vec![0u8; 64 * 1024];
    // `now` is when the last read returned, `reads` how many there were: the
    // events a read completes arrived at that moment, together.
    let mut now = t0;
    let mut reads: u64 = 0;
    // Status line and headers.
    let head_end = loop {
        if let Some(i) = find(&conn.raw, b"\r\n\r\n") {
            break i;
        }
        match conn.stream.read(&mut chunk).await {
            Ok(0) => return (Outcome::Failed("closed before the headers".into()), false),
            Ok(n) => {
                now = Instant::now();
                reads += 1;
                conn.raw.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return (Outcome::Failed(format!("read: {e}")), false),
        }
    };
    let head = String::from_utf8_lossy(&conn.raw[..head_end]).into_owned();
    conn.raw.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut framing = Framing::UntilClose;
    let mut keep_alive = true;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "transfer-encoding" if value.eq_ignore_ascii_case("chunked") => {
                framing = Framing::ChunkSize
            }
            "content-length" if framing == Framing::UntilClose => {
                framing = Framing::Length(value.parse().unwrap_or(0))
            }
            "connection" if value.eq_ignore_ascii_case("close") => keep_alive = false,
            _ => {}
        }
    }
    if framing == Framing::Length(0) {
        framing = Framing::Done;
    }
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    let _open = (status == 200).then(|| open.enter());

    let mut m = Measured::default();
    let mut sse = Sse::default();
    let mut body = Vec::new();
    let mut last_content: Option<(Instant, u64)> = None;
    loop {
        body.clear();
        if let Err(e) = decode(&mut framing, &mut conn.raw, &mut body) {
            return (Outcome::Failed(e), false);
        }
        if status == 200 {
            sse.feed(&body, |name, data| match classify(o.api, name, data) {
                EventKind::Content => {
                    m.content += 1;
                    match last_content {
                        None => m.ttft = now - t0,
                        Some((at, read)) => {
                            let gap = now - at;
                            m.max_gap = m.max_gap.max(gap);
                            if gap > o.stall {
                                m.stalls += 1;
                            }
                            if read == reads {
                                m.coalesced += 1;
                            }
                        }
                    }
                    last_content = Some((now, reads));
                }
                EventKind::Error => m.error_events += 1,
                EventKind::Other => {}
            });
        }
        if framing == Framing::Done {
            break;
        }
        match conn.stream.read(&mut chunk).await {
            Ok(0) if framing == Framing::UntilClose => {
                framing = Framing::Done;
                keep_alive = false;
            }
            Ok(0) => {
                return (
                    Outcome::Failed("closed in the middle of the body".into()),
                    false,
                )
            }
            Ok(n) => {
                now = Instant::now();
                reads += 1;
                conn.raw.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return (Outcome::Failed(format!("read: {e}")), false),
        }
    }
    m.total = Instant::now() - t0;
    if status != 200 {
        return (Outcome::Http(status), keep_alive);
    }
    (Outcome::Ok(m), keep_alive)
}

/// Counts the streams open right now and the most ever open at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

struct GaugeGuard<'a>(&'a Gauge);

impl Gauge {
    fn enter(&self) -> GaugeGuard<'_> {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(n, Ordering::Relaxed);
        GaugeGuard(self)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection's loop: streams one after the other until the deadline
/// (or `--streams` of them), reconnecting when the server closes.
async fn worker(
    o: Arc<Options>,
    request: Arc<Vec<u8>>,
    open: Arc<Gauge>,
    deadline: Instant,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut conn: Option<Conn> = None;
    loop {
        match o.streams {
            Some(n) if outcomes.len() >= n => break,
            None if Instant::now() >= deadline => break,
            _ => {}
        }
        if conn.is_none() {
            match tokio::time::timeout(o.timeout, TcpStream::connect(&o.host_port)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(Conn {
                        stream: s,
                        raw: Vec::new(),
                    })
                }
                Ok(Err(e)) => {
                    outcomes.push(Outcome::Failed(format!("connect: {e}")));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    outcomes.push(Outcome::TimedOut);
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        match tokio::time::timeout(o.timeout, one_stream(c, &o, &request, &open)).await {
            Ok((outcome, keep)) => {
                outcomes.push(outcome);
                if !keep {
                    conn = None;
                }
            }
            Err(_) => {
                outcomes.push(Outcome::TimedOut);
                conn = None;
            }
        }
    }
    outcomes
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> ExitCode {
    let o = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("stream-probe: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stream-probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let o = Arc::new(o);
    let request = Arc::new(request_bytes(&o));
    let open = Arc::new(Gauge::default());
    let started = Instant::now();
    let deadline = started + o.duration;
    let outcomes: Vec<Outcome> = runtime.block_on(async {
        let tasks: Vec<_> = (0..o.connections)
            .map(|_| tokio::spawn(worker(o.clone(), request.clone(), open.clone(), deadline)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            match t.await {
                Ok(v) => all.extend(v),
                Err(e) => all.push(Outcome::Failed(format!("task: {e}"))),
            }
        }
        all
    });
    let elapsed = started.elapsed();

    let (mut ok, mut http, mut failed, mut timed_out, mut wrong) = (0, 0, 0, 0, 0);
    let (mut stalls, mut coalesced, mut content, mut error_events) = (0, 0, 0, 0);
    let mut max_gap = Duration::ZERO;
    let mut ttft = Vec::new();
    let mut total = Vec::new();
    let mut first_error: Option<String> = None;
    for outcome in &outcomes {
        match outcome {
            Outcome::Ok(m) => {
                if m.error_events > 0 || (o.expect_chunks > 0 && m.content != o.expect_chunks) {
                    wrong += 1;
                    first_error.get_or_insert_with(|| {
                        format!(
                            "{} content events (expected {}), {} error events",
                            m.content, o.expect_chunks, m.error_events
                        )
                    });
                    continue;
                }
                ok += 1;
                stalls += m.stalls;
                coalesced += m.coalesced;
                content += m.content;
                error_events += m.error_events;
                max_gap = max_gap.max(m.max_gap);
                ttft.push(m.ttft.as_micros() as u64);
                total.push(m.total.as_micros() as u64);
            }
            Outcome::Http(s) => {
                http += 1;
                first_error.get_or_insert_with(|| format!("HTTP {s}"));
            }
            Outcome::Failed(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.clone());
            }
            Outcome::TimedOut => {
                timed_out += 1;
                first_error.get_or_insert_with(|| format!("timed out after {:?}", o.timeout));
            }
        }
    }
    ttft.sort_unstable();
    total.sort_unstable();
    let errors = http + failed + timed_out + wrong;
    if let Some(e) = &first_error {
        eprintln!("stream-probe: first error: {e}");
    }
    println!(
        "PROBE_RESULT streams={} ok={ok} errors={errors} http_errors={http} failed={failed} timeouts={timed_out} wrong_chunks={wrong} \
         ttft_p50_us={} ttft_p99_us={} ttft_max_us={} total_p50_us={} total_p99_us={} total_max_us={} \
         stalls={stalls} max_gap_us={} coalesced={coalesced} content_events={content} error_events={error_events} \
         max_open={} elapsed_ms={}",
        outcomes.len(),
        percentile(&ttft, 50.0),
        percentile(&ttft, 99.0),
        ttft.last().copied().unwrap_or(0),
        percentile(&total, 50.0),
        percentile(&total, 99.0),
        total.last().copied().unwrap_or(0),
        max_gap.as_micros(),
        open.max.load(Ordering::Relaxed),
        elapsed.as_millis(),
    );
    if ok == 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_reads() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut framing = Framing::ChunkSize;
            let (mut raw, mut out) = (Vec::new(), Vec::new());
            raw.extend_from_slice(&wire[..split]);
            decode(&mut framing, &mut raw, &mut out).unwrap();
            raw.extend_from_slice(&wire[split..]);
            decode(&mut framing, &mut raw, &mut out).unwrap();
            assert_eq!(out, b"hello world", "split at {split}");
            assert_eq!(framing, Framing::Done);
            assert!(raw.is_empty());
        }
        let mut framing = Framing::Length(3);
        let (mut raw, mut out) = (b"abcdef".to_vec(), Vec::new());
        decode(&mut framing, &mut raw, &mut out).unwrap();
        assert_eq!((out.as_slice(), raw.as_slice()), (&b"abc"[..], &b"def"[..]));
        assert_eq!(framing, Framing::Done);
        let mut framing = Framing::ChunkSize;
        assert!(decode(&mut framing, &mut b"zz\r\n".to_vec(), &mut out).is_err());
    }

    #[test]
    fn sse_events_split_anywhere() {
        let text = "event: a\r\ndata: {\"x\":1}\r\n\r\ndata: [DONE]\n\n";
        for split in 0..text.len() {
            let mut sse = Sse::default();
            let mut seen = Vec::new();
            sse.feed(&text.as_bytes()[..split], |n, d| {
                seen.push((n.to_string(), d.to_string()))
            });
            sse.feed(&text.as_bytes()[split..], |n, d| {
                seen.push((n.to_string(), d.to_string()))
            });
            assert_eq!(
                seen,
                [
                    ("a".to_string(), "{\"x\":1}".to_string()),
                    (String::new(), "[DONE]".to_string())
                ]
            );
        }
    }

    #[test]
    fn events_are_classified() {
        let chat = r#"{"choices":[{"index":0,"delta":{"content":" tok"}}]}"#;
        assert_eq!(classify(Api::OpenAi, "", chat), EventKind::Content);
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(classify(Api::OpenAi, "", role), EventKind::Other);
        assert_eq!(classify(Api::OpenAi, "", "[DONE]"), EventKind::Other);
        assert_eq!(
            classify(Api::OpenAi, "", r#"{"error":{"message":"x"}}"#),
            EventKind::Error
        );
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok"}}"#;
        assert_eq!(
            classify(Api::Anthropic, "content_block_delta", delta),
            EventKind::Content
        );
        assert_eq!(
            classify(Api::Anthropic, "message_stop", r#"{"type":"message_stop"}"#),
            EventKind::Other
        );
        assert_eq!(
            classify(Api::Anthropic, "error", r#"{"type":"error"}"#),
            EventKind::Error
        );
    }

    #[test]
    fn options_and_percentiles() {
        let o = parse_args(
            [
                "--url",
                "http://127.0.0.1:9/v1/messages",
                "--api=anthropic",
                "--streams",
                "2",
            ]
            .iter()
            .map(|s| s.to_string()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (o.host_port.as_str(), o.path.as_str()),
            ("127.0.0.1:9", "/v1/messages")
        );
        assert_eq!((o.api, o.streams), (Api::Anthropic, Some(2)));
        let request = String::from_utf8(request_bytes(&o)).unwrap();
        assert!(request.starts_with("POST /v1/messages HTTP/1.1\r\n"));
        assert!(request.contains("anthropic-version: 2023-06-01\r\n"));
        assert!(parse_args(["--url", "https://x:1/"].iter().map(|s| s.to_string())).is_err());
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(
            (
                percentile(&v, 50.0),
                percentile(&v, 99.0),
                percentile(&v, 100.0)
            ),
            (50, 99, 100)
        );
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
