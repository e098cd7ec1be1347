//! The HTTP server: routes, authentication, the layers of scripts, faults,
//! pacing and recording.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::plan::{self, Plan};
use crate::record::{Recorded, Recorder, State as RecState, Tracker};
use crate::render::{self, Event};
use crate::scenario::{Journal, Scenario};
use crate::script::{Api, Fault, Script};

/// How a mock server behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The keys a request may carry (`Authorization: Bearer`, or Anthropic's
    /// `x-api-key` with an `anthropic-version`); none: no check.
    pub keys: Vec<String>,
    /// Keep a log of the requests (`GET /__mock/requests`, [`crate::Control::requests`]).
    pub record: bool,
    /// The bottom layer of every request's script, over the built-in answers.
    pub script: Script,
    /// A named scenario instead of the scripted answers (the binary's
    /// `--scenario`; see its module).
    pub scenario: Option<Scenario>,
    /// Where a scenario appends its records (JSON lines).
    pub record_file: Option<PathBuf>,
}

/// What the handlers share.
pub(crate) struct Shared {
    keys: Mutex<Vec<String>>,
    check_keys: AtomicBool,
    recorder: Option<Arc<Recorder>>,
    /// `Options::script`.
    script: Script,
    /// `Options::script` with its section for each API merged in (for the
    /// requests no other layer applies to).
    base: [Script; 3],
    /// Set by `PUT /__mock/default` (or [`Mock::set_default`]).
    default: Mutex<Option<Script>>,
    has_default: AtomicBool,
    queue: Mutex<VecDeque<Script>>,
    queued: AtomicUsize,
    scenario: Option<(Scenario, Arc<Journal>)>,
}

fn api_index(api: Api) -> usize {
    match api {
        Api::OpenAi => 0,
        Api::Anthropic => 1,
        Api::Responses => 2,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(options: Options) -> Shared {
        let base = [Api::OpenAi, Api::Anthropic, Api::Responses].map(|api| {
            let mut s = Script::new();
            s.merge(&options.script, api, None);
            s
        });
        Shared {
            check_keys: AtomicBool::new(!options.keys.is_empty()),
            keys: Mutex::new(options.keys),
            script: options.script,
            recorder: options.record.then(|| Arc::new(Recorder::default())),
            base,
            default: Mutex::new(None),
            has_default: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            scenario: options.scenario.map(|scenario| {
                let side = match scenario {
                    Scenario::ClaudeCode => Some("upstream"),
                    Scenario::Front { .. } => Some("client"),
                    _ => None,
                };
                let journal = Arc::new(Journal::new(options.record_file, side));
                (scenario, journal)
            }),
        }
    }

    pub(crate) fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }

    /// Accepts `key` too (and turns key checks on).
    pub(crate) fn accept_key(&self, key: &str) {
        let mut keys = lock(&self.keys);
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
        self.check_keys.store(true, Ordering::SeqCst);
    }

    fn accepts(&self, key: &str) -> bool {
        lock(&self.keys).iter().any(|k| k == key)
    }

    pub(crate) fn set_default(&self, script: Option<Script>) {
        let mut slot = lock(&self.default);
        self.has_default.store(script.is_some(), Ordering::SeqCst);
        *slot = script;
    }

    pub(crate) fn push(&self, scripts: Vec<Script>) -> usize {
        let mut queue = lock(&self.queue);
        queue.extend(scripts);
        self.queued.store(queue.len(), Ordering::SeqCst);
        queue.len()
    }

    pub(crate) fn clear_queue(&self) {
        let mut queue = lock(&self.queue);
        queue.clear();
        self.queued.store(0, Ordering::SeqCst);
    }

    fn next_queued(&self) -> Option<Script> {
        if self.queued.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut queue = lock(&self.queue);
        let next = queue.pop_front();
        self.queued.store(queue.len(), Ordering::SeqCst);
        next
    }

    fn runtime_default(&self) -> Option<Script> {
        if !self.has_default.load(Ordering::SeqCst) {
            return None;
        }
        lock(&self.default).clone()
    }
}

// --- connections that can fail on purpose -------------------------------------------

const NO_FAULT: u8 = 0;
const CLOSE: u8 = 1;
const RESET: u8 = 2;

/// A handle on the connection a request came on, to fail it.
#[derive(Clone)]
pub(crate) struct Conn(Arc<AtomicU8>);

impl Conn {
    fn fail(&self, fault: Fault) {
        let code = match fault {
            Fault::Close => CLOSE,
            Fault::Reset => RESET,
        };
        self.0.store(code, Ordering::SeqCst);
    }
}

/// A TCP connection whose writes fail once its request asked for a fault:
/// the answer's head never leaves, and the connection is closed (or reset,
/// with a zero linger) when the server drops it.
pub(crate) struct ConnIo {
    stream: TcpStream,
    fault: Arc<AtomicU8>,
}

impl ConnIo {
    fn failed(&mut self) -> Option<io::Error> {
        match self.fault.load(Ordering::SeqCst) {
            NO_FAULT => None,
            code => {
                if code == RESET {
                    let _ = self.stream.set_zero_linger();
                }
                Some(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "mock fault",
                ))
            }
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Accepts connections with `TCP_NODELAY` (a streamed chunk leaves at once),
/// each one failable.
pub(crate) struct MockListener(pub(crate) TcpListener);

impl Listener for MockListener {
    type Io = ConnIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ConnIo, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let io = ConnIo {
                        stream,
                        fault: Arc::new(AtomicU8::new(NO_FAULT)),
                    };
                    return (io, addr);
                }
                // Out of file descriptors, or a connection that died in the
                // backlog: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, MockListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, MockListener>) -> Self {
        Conn(stream.io().fault.clone())
    }
}

/// Serves the mock on `listener` until the future is dropped.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) -> io::Result<()> {
    let app = Router::new().fallback(handle).with_state(shared);
    axum::serve(
        MockListener(listener),
        app.into_make_service_with_connect_info::<Conn>(),
    )
    .await
}

// --- answers ---------------------------------------------------------------------------

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub(crate) fn value_response(status: StatusCode, body: &Value) -> Response {
    json_response(status, body.to_string())
}

fn openai_error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn anthropic_error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// The default error body of a scripted status. Its message quotes the
/// key, as some upstreams do, so that tests can check a gateway hides it.
fn scripted_error(api: Api, status: u16, key: &str) -> Value {
    match api {
        Api::Anthropic => {
            let kind = match status {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            anthropic_error(kind, &format!("bad request for key {key}"))
        }
        Api::OpenAi | Api::Responses => {
            let kind = match status {
                429 => "requests",
                500..=599 => "server_error",
                _ => "invalid_request_error",
            };
            openai_error(
                &format!("Incorrect API key provided: {key}"),
                kind,
                Some("mock_failure"),
            )
        }
    }
}

/// The mock's own complaint about a control request or a script.
pub(crate) fn mock_error(status: StatusCode, message: &str) -> Response {
    value_response(
        status,
        &json!({"error": {"message": message, "type": "mock_error"}}),
    )
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

/// How long the mock waits before failing a connection it breaks, so that
/// the client has what was sent before.
const BREAK_PAUSE: Duration = Duration::from_millis(50);

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "mock break")
}

/// When the pieces of an answer are produced.
#[derive(Clone, Copy)]
struct Pacing {
    /// Before the first piece.
    first: Duration,
    /// Before each other piece.
    next: Duration,
}

impl Pacing {
    fn before(&self, piece: u64) -> Duration {
        if piece == 0 {
            self.first
        } else {
            self.next
        }
    }
}

/// A stream of `events`, its pieces paced, broken once `break_after`
/// pieces are out.
fn paced(events: Vec<Event>, break_after: Option<u64>, pacing: Pacing, tracker: Tracker) -> Body {
    struct Pace {
        events: std::vec::IntoIter<Event>,
        sent: u64,
        break_after: Option<u64>,
        pacing: Pacing,
        tracker: Tracker,
        over: bool,
    }
    let pace = Pace {
        events: events.into_iter(),
        sent: 0,
        break_after,
        pacing,
        tracker,
        over: false,
    };
    let stream = futures_util::stream::unfold(pace, |mut p| async move {
        if p.over {
            return None;
        }
        let Some(event) = p.events.next() else {
            p.tracker.finish(RecState::Done);
            return None;
        };
        if let Some(n) = p.break_after {
            if p.sent == n && (n > 0 || event.piece) {
                tokio::time::sleep(BREAK_PAUSE).await;
                p.tracker.finish(RecState::Broken);
                p.over = true;
                return Some((Err(broken()), p));
            }
        }
        if event.piece {
            let pause = p.pacing.before(p.sent);
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            p.sent += 1;
            p.tracker.produced();
        }
        Some((Ok::<_, io::Error>(event.bytes), p))
    });
    Body::from_stream(stream)
}

/// A whole answer's bytes, then a reset half-way when it breaks.
fn whole_body(text: String, breaks: bool, mut tracker: Tracker) -> Body {
    if !breaks {
        tracker.finish(RecState::Done);
        return Body::from(text);
    }
    let bytes = Bytes::from(text);
    let half = bytes.slice(..bytes.len() / 2);
    let stream =
        futures_util::stream::unfold((Some(half), Some(tracker)), |(head, tracker)| async move {
            if let Some(head) = head {
                return Some((Ok(head), (None, tracker)));
            }
            let mut tracker = tracker?;
            tokio::time::sleep(BREAK_PAUSE).await;
            tracker.finish(RecState::Broken);
            Some((Err(broken()), (None, None)))
        });
    Body::from_stream(stream)
}

// --- the routes ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Embeddings,
    Messages,
    CountTokens,
    Responses,
}

fn route(method: &Method, path: &str) -> (Api, Option<Route>) {
    let api = if path.starts_with("/v1/messages") {
        Api::Anthropic
    } else if path.starts_with("/v1/responses") {
        Api::Responses
    } else {
        Api::OpenAi
    };
    if method != Method::POST {
        return (api, None);
    }
    let route = match path {
        "/v1/chat/completions" => Route::Chat,
        "/v1/completions" => Route::Completions,
        "/v1/embeddings" => Route::Embeddings,
        "/v1/messages" => Route::Messages,
        "/v1/messages/count_tokens" => Route::CountTokens,
        "/v1/responses" => Route::Responses,
        _ => return (api, None),
    };
    (api, Some(route))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The key a request carries: Anthropic's `x-api-key`, else a bearer token.
fn request_key(api: Api, headers: &HeaderMap) -> Option<&str> {
    match api {
        Api::Anthropic => headers.get("x-api-key").and_then(|v| v.to_str().ok()),
        // Search APIs take theirs in their own headers.
        Api::OpenAi | Api::Responses => header_str(headers, "authorization")
            .strip_prefix("Bearer ")
            .or_else(|| headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .or_else(|| {
                headers
                    .get("ocp-apim-subscription-key")
                    .and_then(|v| v.to_str().ok())
            }),
    }
}

/// The refusal of a request without an accepted key, in its API's shape.
fn unauthorized(api: Api, accepted: bool, headers: &HeaderMap) -> Option<Response> {
    match api {
        Api::Anthropic => {
            let version = header_str(headers, "anthropic-version");
            if accepted && !version.is_empty() {
                return None;
            }
            let message = if version.is_empty() {
                "anthropic-version: header is required"
            } else {
                "invalid x-api-key"
            };
            Some(value_response(
                StatusCode::UNAUTHORIZED,
                &anthropic_error("authentication_error", message),
            ))
        }
        Api::OpenAi | Api::Responses => {
            if accepted {
                return None;
            }
            Some(value_response(
                StatusCode::UNAUTHORIZED,
                &openai_error(
                    "Incorrect API key provided to the mock upstream.",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ),
            ))
        }
    }
}

fn bad_request(api: Api, message: &str) -> Response {
    let body = match api {
        Api::Anthropic => anthropic_error("invalid_request_error", message),
        Api::OpenAi | Api::Responses => openai_error(message, "invalid_request_error", None),
    };
    value_response(StatusCode::BAD_REQUEST, &body)
}

/// Every request: the control routes under `/__mock/`, else an API route.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    // The parts taken apart rather than extracted: no copy of the headers.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            let message = format!("the body could not be read: {e}");
            return mock_error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let conn = parts
        .extensions
        .get::<ConnectInfo<Conn>>()
        .map(|c| c.0.clone());
    let axum::http::request::Parts {
        method,
        uri,
        headers,
        ..
    } = parts;
    if let Some((scenario, journal)) = &shared.scenario {
        let keys = lock(&shared.keys).clone();
        return crate::scenario::handle(scenario, journal, &keys, method, uri, headers, body).await;
    }
    let path = uri.path();
    if let Some(control) = path.strip_prefix("/__mock/") {
        return crate::control::handle(&shared, &method, control, uri.query(), &body);
    }
    let (api, route) = route(&method, path);
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let stream = parsed
        .as_ref()
        .is_some_and(|b| b.get("stream") == Some(&Value::Bool(true)));
    let seq = shared.recorder().map(|recorder| {
        recorder.add(Recorded {
            seq: 0,
            api: api.name(),
            method: method.to_string(),
            path: path.to_string(),
            query: uri.query().map(str::to_string),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: parsed.clone().unwrap_or(Value::Null),
            raw_body: (parsed.is_none() && !body.is_empty())
                .then(|| String::from_utf8_lossy(&body).into_owned()),
            stream,
            pieces: 0,
            sent: 0,
            state: RecState::Running,
            status: None,
        })
    });
    let tracker = Tracker::new(shared.recorder(), seq);
    let reject = |mut tracker: Tracker, response: Response| {
        let status = response.status().as_u16();
        tracker.update(|e| e.status = Some(status));
        tracker.finish(RecState::Rejected);
        response
    };
    let key = request_key(api, &headers);
    if shared.check_keys.load(Ordering::SeqCst) {
        let accepted = key.is_some_and(|k| shared.accepts(k));
        if let Some(refusal) = unauthorized(api, accepted, &headers) {
            return reject(tracker, refusal);
        }
    }
    let Some(route) = route else {
        if crate::media::handles(method.as_str(), path) {
            let request = crate::media::MediaRequest {
                path,
                query: uri.query(),
                json: parsed.as_ref(),
                raw: &body,
                content_type: header_str(&headers, "content-type"),
                output_format: header_str(&headers, "x-microsoft-outputformat"),
            };
            return crate::media::answer(request, tracker).await;
        }
        let message = format!("Unknown route {method} {path}");
        let body = match api {
            Api::Anthropic => anthropic_error("not_found_error", &message),
            _ => openai_error(&message, "invalid_request_error", Some("not_found")),
        };
        return reject(tracker, value_response(StatusCode::NOT_FOUND, &body));
    };
    let body = match parsed {
        Some(v) if v.is_object() => v,
        _ => return reject(tracker, bad_request(api, "The body is not a JSON object.")),
    };
    if matches!(route, Route::Messages | Route::CountTokens) {
        if let Some(problem) = plan::check_messages_request(&body, route == Route::CountTokens) {
            return reject(tracker, bad_request(api, &problem));
        }
    }
    // The layers of the script, bottom to top.
    let mut layers = Vec::new();
    if let Some(s) = shared.runtime_default() {
        layers.push(s);
    }
    if let Some(s) = shared.next_queued() {
        layers.push(s);
    }
    match plan::prompt_script(&body) {
        Some(Ok(s)) => layers.push(s),
        Some(Err(e)) => return reject(tracker, mock_error(StatusCode::BAD_REQUEST, &e)),
        None => {}
    }
    if let Some(text) = headers.get("x-mock-script") {
        match std::str::from_utf8(text.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(Script::from_json_text)
        {
            Ok(s) => layers.push(s),
            Err(e) => {
                let message = format!("x-mock-script: {e}");
                return reject(tracker, mock_error(StatusCode::BAD_REQUEST, &message));
            }
        }
    }
    let keyed = |s: &Script| key.is_some_and(|k| s.keys.iter().any(|(name, _)| name == k));
    let merged;
    let script = if layers.is_empty() && !keyed(&shared.script) {
        &shared.base[api_index(api)]
    } else {
        let mut s = Script::new();
        s.merge(&shared.script, api, key);
        for layer in &layers {
            s.merge(layer, api, key);
        }
        merged = s;
        &merged
    };
    answer(api, route, &body, script, key, conn.as_ref(), tracker).await
}

/// The answer to a request that passed every check, as `script` says.
async fn answer(
    api: Api,
    route: Route,
    body: &Value,
    script: &Script,
    key: Option<&str>,
    conn: Option<&Conn>,
    mut tracker: Tracker,
) -> Response {
    if let Some(ms) = script.head_delay_ms.filter(|ms| *ms > 0) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(Some(fault)) = script.fault {
        let Some(conn) = conn else {
            return mock_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no connection to fail (served without mock_upstream::serve)",
            );
        };
        conn.fail(fault);
        tracker.finish(RecState::Failed);
        // Never sent: the connection fails as the head is written.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = scripted_or_planned(api, route, body, script, key, tracker).await;
    for (name, value) in script.headers.iter().flatten() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

async fn scripted_or_planned(
    api: Api,
    route: Route,
    body: &Value,
    script: &Script,
    key: Option<&str>,
    mut tracker: Tracker,
) -> Response {
    let status = script
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let scripted_body = script.body.clone().flatten();
    if scripted_body.is_some() || !status.is_success() {
        let body = scripted_body
            .unwrap_or_else(|| scripted_error(api, status.as_u16(), key.unwrap_or("(none)")));
        tracker.update(|e| e.status = Some(status.as_u16()));
        let state = if status.as_u16() >= 400 {
            RecState::Failed
        } else {
            RecState::Done
        };
        tracker.finish(state);
        return value_response(status, &body);
    }
    tracker.update(|e| e.status = Some(status.as_u16()));
    if route == Route::CountTokens {
        tracker.finish(RecState::Done);
        return value_response(status, &json!({"input_tokens": plan::count_words(body)}));
    }
    let Plan {
        answer,
        break_after,
        first_piece_delay_ms,
        chunk_delay_ms,
    } = plan::plan(api, body, script);
    let pieces = answer.pieces();
    tracker.update(|e| e.pieces = pieces);
    let pacing = Pacing {
        first: Duration::from_millis(first_piece_delay_ms),
        next: Duration::from_millis(chunk_delay_ms),
    };
    let stream = body.get("stream") == Some(&Value::Bool(true)) && route != Route::Embeddings;
    if stream {
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            == Some(&Value::Bool(true));
        let events = match route {
            Route::Chat => render::chat_stream(&answer, include_usage),
            Route::Completions => render::completion_stream(&answer, include_usage),
            Route::Messages => render::message_stream(&answer),
            _ => render::response_stream(&answer),
        };
        let mut response = sse_response(paced(events, break_after, pacing, tracker));
        *response.status_mut() = status;
        return response;
    }
    // A whole answer waits for its pieces to be produced.
    for n in 0..pieces as u64 {
        let pause = pacing.before(n);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        tracker.produced();
    }
    let text = match route {
        Route::Chat => render::chat_whole(&answer),
        Route::Completions => render::completion_whole(&answer),
        Route::Embeddings => render::embeddings(&answer),
        Route::Messages => render::message_whole(&answer),
        _ => render::response_whole(&answer),
    };
    let mut response = Response::new(whole_body(text, break_after.is_some(), tracker));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
