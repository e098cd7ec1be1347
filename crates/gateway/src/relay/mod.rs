//! Forwarding a metered request upstream and its response back to the client.
//!
//! The upstream exchange runs in its own task, apart from the client's
//! connection: if the client goes away, the task still reads the upstream's
//! answer to its end, so the request is settled from the upstream's own usage
//! numbers, exactly once. What happens to the response on the way — pass
//! through or translation — is a [`transform`]. The relay answers with
//! typed values ([`UpstreamFailure`], [`Answer`]); `api` makes them HTTP.

mod raw;
mod reader;
pub mod transform;

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::billing::estimate::{UsageWatch, Wire};
use crate::billing::Outcome;
use crate::config::ERROR_BODY_WAIT;
use crate::error::{ApiError, Shape};
use crate::pipeline::Account;
use crate::providers::client::{self, UpstreamResponse};
use crate::providers::{KeyIndex, Provider, UpstreamError};
use crate::state::{App, InFlightGuard};
pub use raw::answer_raw;
pub(crate) use reader::{EventReader, Read};
use transform::{BodyTransform, StreamTransform};

/// What one upstream call sends.
pub(crate) enum Payload<'a> {
    /// `POST` of a JSON body.
    Json(Vec<u8>),
    /// `GET` with a query string.
    Query(&'a str),
    /// `POST` of a multipart form with a spooled file.
    Upload(&'a crate::providers::Upload),
}

/// How many chunks may wait for a slow client before the upstream read pauses.
const STREAM_BUFFER: usize = 64;

/// What the client is answered, before it is HTTP: `api` renders it.
pub enum Answer {
    /// A whole body.
    Whole {
        status: StatusCode,
        content_type: HeaderValue,
        body: Bytes,
    },
    /// Server-Sent Events, each piece sent as it is produced.
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
    /// Bytes of `content_type` (audio…), each piece sent as it arrives.
    Bytes {
        content_type: HeaderValue,
        rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    },
    /// A gateway error, in the client's protocol.
    Error(ApiError, Shape),
    /// The upstream's failure, from an upstream speaking `upstream`, for a
    /// client of `client`.
    Refused {
        failure: UpstreamFailure,
        upstream: Wire,
        client: Shape,
    },
}

/// One upstream call, ready to send; its account is settled once, by the
/// relay when the upstream is done.
pub struct Exchange {
    pub account: Account,
    pub provider: Arc<Provider>,
    pub path: &'static str,
    /// A `GET`'s query string (see `UpstreamCall::query`).
    pub query: Option<String>,
    /// A multipart upload (see `UpstreamCall::upload`).
    pub upload: Option<crate::providers::Upload>,
    pub body: Vec<u8>,
    /// Client headers meant for the upstream (e.g. `anthropic-beta`).
    pub forwarded: Vec<(HeaderName, HeaderValue)>,
    /// The client's protocol, for errors.
    pub shape: Shape,
}

impl Exchange {
    fn settle(&mut self, outcome: Outcome) {
        self.account.settle(outcome);
    }
}

/// Upstream response headers a client needs to retry well or to report.
const FORWARDED_ERROR_HEADERS: [&str; 4] = [
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "request-id",
];

/// What to do with an upstream response that is not a success.
pub struct UpstreamFailure {
    pub(crate) kind: FailureKind,
    /// What failed: the connection, or the upstream's answer.
    cause: Cause,
    /// Upstream headers forwarded with the error (see FORWARDED_ERROR_HEADERS).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

/// Why an upstream call failed, for deciding whether another channel may
/// serve the request.
#[derive(Debug, Clone)]
enum Cause {
    /// Not answered: no connection, no answer in time, or a connection
    /// broken before the answer.
    Transport,
    /// Answered with this status.
    Status(u16),
}

pub(crate) enum FailureKind {
    /// The client gets this gateway error.
    Gateway(ApiError),
    /// The client gets the upstream's own client error (scrubbed), in the
    /// client's protocol.
    PassThrough(StatusCode, Bytes),
}

impl UpstreamFailure {
    fn transport(error: UpstreamError) -> Self {
        let api_error = match error {
            UpstreamError::Unreachable | UpstreamError::Broken => ApiError::UpstreamUnreachable,
            UpstreamError::Timeout => ApiError::UpstreamTimeout,
        };
        UpstreamFailure {
            kind: FailureKind::Gateway(api_error),
            cause: Cause::Transport,
            headers: Vec::new(),
        }
    }

    /// Whether another channel may serve the request instead: this one
    /// could not be reached, broke the connection or gave no answer in
    /// time — all before the answer began, so nothing reached the client —
    /// or answered a status `[failover] retry_statuses` lists. (A reset or a
    /// timed-out upstream may have received the request and bill the
    /// operator for it; the client is charged only for the attempt that
    /// serves, and gets its answer, as the official SDKs' own retries on
    /// connection errors would give it.)
    pub(crate) fn worth_another_channel(&self, failover: &crate::config::Failover) -> bool {
        match &self.cause {
            Cause::Transport => true,
            Cause::Status(status) => failover.retries(*status),
        }
    }

    /// The upstream refused the gateway's own key (401 or 403).
    pub(crate) fn refused_our_key(&self) -> bool {
        matches!(self.cause, Cause::Status(401 | 403))
    }

    /// The upstream rate-limited the call (429).
    pub(crate) fn rate_limited(&self) -> bool {
        matches!(self.cause, Cause::Status(429))
    }

    /// How long the upstream asked to wait (`retry-after` in seconds, or
    /// `retry-after-ms`), if it said.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        let header = |name: &str| {
            self.headers
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .and_then(|(_, v)| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        header("retry-after-ms")
            .map(|ms| ms / 1000.0)
            .or_else(|| header("retry-after"))
            .map(|secs| std::time::Duration::from_secs_f64(secs.min(86_400.0)))
    }

    pub(crate) fn status(&self) -> u16 {
        match &self.kind {
            FailureKind::Gateway(e) => e.status().as_u16(),
            FailureKind::PassThrough(s, _) => s.as_u16(),
        }
    }

    /// What went wrong, for a client that can no longer get an HTTP status.
    pub(crate) fn message(&self) -> String {
        match &self.kind {
            FailureKind::Gateway(e) => e.to_string(),
            FailureKind::PassThrough(status, body) => {
                let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                parsed
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        format!("The upstream refused the request (status {status}).")
                    })
            }
        }
    }
}

/// Sends the request; returns a successful response or the failure to report.
pub(crate) async fn send(
    app: &App,
    provider: &Provider,
    key: Option<KeyIndex>,
    path: &str,
    payload: Payload<'_>,
    forwarded: &[(HeaderName, HeaderValue)],
) -> Result<UpstreamResponse, UpstreamFailure> {
    let sent = match payload {
        Payload::Query(query) => provider.get(path, query, forwarded, key).await,
        Payload::Upload(upload) => provider.post_multipart(path, upload, forwarded, key).await,
        Payload::Json(body) => provider.post_json(path, body, forwarded, key).await,
    };
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            app.metrics
                .record_upstream_error(&provider.name, e.metric_kind());
            return Err(UpstreamFailure::transport(e));
        }
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    app.metrics
        .record_upstream_error(&provider.name, &format!("http_{}", status.as_u16()));
    let headers: Vec<(HeaderName, HeaderValue)> = FORWARDED_ERROR_HEADERS
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(*name)?;
            let value = HeaderValue::from_bytes(value.as_bytes()).ok()?;
            Some((HeaderName::from_static(name), value))
        })
        .collect();
    let body = tokio::time::timeout(
        ERROR_BODY_WAIT.min(provider.request_timeout),
        client::read_whole(response),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let kind = match status.as_u16() {
        // The upstream refused *our* credentials: the client cannot fix that,
        // and the upstream's message may quote part of our key.
        401 | 403 => FailureKind::Gateway(ApiError::UpstreamAuth),
        400..=499 => {
            let text = provider.scrub(&String::from_utf8_lossy(&body));
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            FailureKind::PassThrough(status, Bytes::from(text))
        }
        503 | 529 => FailureKind::Gateway(ApiError::UpstreamOverloaded),
        code => FailureKind::Gateway(ApiError::UpstreamFailed(code)),
    };
    Err(UpstreamFailure {
        kind,
        cause: Cause::Status(status.as_u16()),
        headers,
    })
}

fn failure_outcome(status: u16) -> Outcome {
    Outcome {
        status,
        error: Some("upstream request failed".into()),
        ..Outcome::default()
    }
}

/// Answers a request whose upstream call failed: it is settled as failed
/// (free) and the error given in the client's shape.
pub(crate) fn refuse(mut ex: Exchange, failure: UpstreamFailure) -> Answer {
    ex.settle(failure_outcome(failure.status()));
    Answer::Refused {
        failure,
        upstream: ex.provider.adapter.wire(),
        client: ex.shape,
    }
}

/// Answers with a whole upstream body, through `transform`, once the
/// upstream call succeeded ([`send`]); settles from its usage. `_guard`
/// keeps the process up until then.
///
/// Callers run it [`detached`](crate::api) from the client's connection, so
/// that a client hanging up cannot cancel the settlement.
pub async fn answer_json(
    mut ex: Exchange,
    transform: BodyTransform,
    response: UpstreamResponse,
    _guard: InFlightGuard,
) -> Answer {
    let wire = ex.provider.adapter.wire();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let bytes =
        match tokio::time::timeout(ex.provider.request_timeout, client::read_whole(response)).await
        {
            Ok(Ok(b)) => b,
            failed => {
                // A reset is not a timeout: the client may retry either, but
                // should be told which.
                let error = match failed {
                    Err(_) => ApiError::UpstreamTimeout,
                    _ => ApiError::UpstreamReset,
                };
                ex.settle(failure_outcome(error.status().as_u16()));
                return Answer::Error(error, ex.shape);
            }
        };
    let mut watch = UsageWatch::new(wire);
    watch.body(&bytes);
    let Some((body, counted)) = transform.apply(bytes) else {
        let error = ApiError::UpstreamFailed(status.as_u16());
        ex.settle(failure_outcome(502));
        return Answer::Error(error, ex.shape);
    };
    let (reported, delivered) = watch.outcome();
    // Counted in the model's unit, or in tokens as the upstream reported.
    let usage = counted.or(reported);
    ex.settle(Outcome {
        usage,
        delivered,
        status: status.as_u16(),
        error: None,
    });
    ex.account.limits_returned().await;
    Answer::Whole {
        status: StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::OK),
        content_type: content_type.unwrap_or(HeaderValue::from_static("application/json")),
        body,
    }
}

/// Answers with a stream once the upstream call succeeded ([`send`]);
/// events reach the client through `transform`, each upstream read
/// forwarded as soon as it is transformed. `guard` keeps the process up
/// until the stream is settled.
pub async fn answer_stream<T: StreamTransform>(
    ex: Exchange,
    transform: T,
    response: UpstreamResponse,
    guard: InFlightGuard,
) -> Answer {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_BUFFER);
    tokio::spawn(pump(ex, response, tx, transform, guard).in_current_span());
    Answer::Stream(rx)
}

/// The client's end of a stream: it gets each piece while it listens. A
/// client that hung up, or read nothing for `stall` (its connection is
/// failed by the server's stall guard too), is let go; the caller keeps
/// reading the upstream so that its usage is known.
pub(crate) struct ClientSink {
    tx: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    stall: std::time::Duration,
}

impl ClientSink {
    pub(crate) fn new(app: &App, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) -> Self {
        ClientSink {
            tx: Some(tx),
            stall: std::time::Duration::from_secs(app.config.limits.client_stall_secs.max(1)),
        }
    }

    pub(crate) async fn deliver(&mut self, app: &App, out: Bytes) {
        let Some(tx) = &self.tx else { return };
        if out.is_empty() {
            return;
        }
        match tokio::time::timeout(self.stall, tx.send(Ok(out))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.tx = None,
            Err(_) => {
                app.metrics.record_client_stall("stream");
                tracing::info!("client stopped reading its stream; settling without it");
                self.tx = None;
            }
        }
    }
}

/// Reads the upstream stream to its end, forwarding events while the client
/// listens and metering them regardless, then settles — before the client
/// gets the last bytes, so that a client that saw its answer end was charged.
async fn pump<T: StreamTransform>(
    mut ex: Exchange,
    response: UpstreamResponse,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    mut transform: T,
    _guard: InFlightGuard,
) {
    let app = ex.account.app().clone();
    let mut upstream = EventReader::new(response, &ex.provider);
    let mut client = ClientSink::new(&app, tx);
    let mut watch = UsageWatch::new(ex.provider.adapter.wire());
    let mut error = None;
    let last = loop {
        let mut out = BytesMut::new();
        let read = upstream
            .read(|event| {
                watch.event(&event.data);
                transform.event(event, &mut out);
            })
            .await;
        match read {
            // Everything one read completed goes out in one write: no
            // coalescing beyond a single upstream read.
            Read::More => client.deliver(&app, out.freeze()).await,
            Read::Ended => {
                transform.end(&mut out);
                if let Some(finisher) = transform.finisher() {
                    finisher.await;
                }
                break out;
            }
            Read::Failed(broke) => {
                broke.record(&app, &ex.provider);
                error = Some(broke.message().to_string());
                transform.fail("The upstream stream was interrupted.", &mut out);
                break out;
            }
        }
    };
    // Dropping the upstream here closes its connection before settling.
    drop(upstream);
    let (usage, delivered) = watch.outcome();
    ex.settle(Outcome {
        usage,
        delivered,
        status: 200,
        error,
    });
    ex.account.limits_returned().await;
    client.deliver(&app, last.freeze()).await;
}

/// Forwards a request that is not billed (e.g. `count_tokens`) and returns
/// the upstream's answer, errors included, in the client's shape.
pub async fn forward_unmetered(
    app: &App,
    provider: &Arc<Provider>,
    path: &'static str,
    body: Vec<u8>,
    forwarded: &[(HeaderName, HeaderValue)],
    shape: Shape,
) -> Answer {
    let key = provider.pick_key(&[]);
    let response = match send(app, provider, key, path, Payload::Json(body), forwarded).await {
        Ok(r) => r,
        Err(failure) => {
            return Answer::Refused {
                failure,
                upstream: provider.adapter.wire(),
                client: shape,
            }
        }
    };
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
    match tokio::time::timeout(provider.request_timeout, client::read_whole(response)).await {
        Ok(Ok(body)) => Answer::Whole {
            status,
            content_type: HeaderValue::from_static("application/json"),
            body,
        },
        _ => Answer::Error(ApiError::UpstreamTimeout, shape),
    }
}
