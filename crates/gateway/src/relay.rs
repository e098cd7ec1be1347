//! Forwarding a metered request upstream and its response back to the client.
//!
//! The upstream exchange runs in its own task, apart from the client's
//! connection: if the client goes away, the task still reads the upstream's
//! answer to its end, so the request is settled from the upstream's own usage
//! numbers, exactly once.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use protocol::openai::{body_usage, chunk_usage};
use protocol::rewrite::ByteRewriter;
use protocol::sse::SseDecoder;
use tokio::sync::mpsc;

use crate::billing::{Meter, Outcome};
use crate::error::ApiError;
use crate::providers::{Provider, UpstreamError};
use crate::state::{App, InFlight};

/// How many chunks may wait for a slow client before the upstream read pauses.
const STREAM_BUFFER: usize = 64;

/// What to do with an upstream response that is not a success.
enum UpstreamFailure {
    /// The client gets this gateway error.
    Gateway(ApiError),
    /// The client gets the upstream's own (scrubbed) client error.
    PassThrough(StatusCode, Option<HeaderValue>, Bytes),
}

impl UpstreamFailure {
    fn into_response(self) -> Response {
        match self {
            UpstreamFailure::Gateway(e) => e.into_response(),
            UpstreamFailure::PassThrough(status, content_type, body) => {
                let mut response = (status, body).into_response();
                if let Some(ct) = content_type {
                    response.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                response
            }
        }
    }

    fn status(&self) -> u16 {
        match self {
            UpstreamFailure::Gateway(e) => e.status().as_u16(),
            UpstreamFailure::PassThrough(s, _, _) => s.as_u16(),
        }
    }
}

/// Sends the request; returns a successful response or the failure to report.
async fn send(
    app: &App,
    provider: &Provider,
    path: &str,
    body: Vec<u8>,
) -> Result<reqwest::Response, UpstreamFailure> {
    let response = match provider.post_json(path, body).await {
        Ok(r) => r,
        Err(e) => {
            app.metrics
                .record_upstream_error(&provider.name, e.metric_kind());
            return Err(UpstreamFailure::Gateway(match e {
                UpstreamError::Unreachable => ApiError::UpstreamUnreachable,
                UpstreamError::Timeout => ApiError::UpstreamTimeout,
            }));
        }
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    app.metrics
        .record_upstream_error(&provider.name, &format!("http_{}", status.as_u16()));
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = tokio::time::timeout(provider.request_timeout, response.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Err(match status.as_u16() {
        // The upstream refused *our* credentials: the client cannot fix that,
        // and the upstream's message may quote part of our key.
        401 | 403 => UpstreamFailure::Gateway(ApiError::UpstreamAuth),
        400..=499 => {
            let text = provider.scrub(&String::from_utf8_lossy(&body));
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            UpstreamFailure::PassThrough(status, content_type, Bytes::from(text))
        }
        code => UpstreamFailure::Gateway(ApiError::UpstreamFailed(code)),
    })
}

/// Forwards a non-streaming request and returns the upstream's body as is.
pub async fn forward_json(
    app: App,
    meter: Meter,
    provider: Arc<Provider>,
    path: &'static str,
    body: Vec<u8>,
) -> Response {
    let task_app = app.clone();
    let guard = InFlight::enter(&app);
    // Spawned so that a client hanging up cannot cancel the settlement.
    let task = tokio::spawn(async move {
        let _guard = guard;
        let app = task_app;
        let response = match send(&app, &provider, path, body).await {
            Ok(r) => r,
            Err(failure) => {
                meter.settle(&app, failure_outcome(failure.status())).await;
                return failure.into_response();
            }
        };
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = match tokio::time::timeout(provider.request_timeout, response.bytes()).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) | Err(_) => {
                let error = ApiError::UpstreamTimeout;
                meter
                    .settle(&app, failure_outcome(error.status().as_u16()))
                    .await;
                return error.into_response();
            }
        };
        meter
            .settle(
                &app,
                Outcome {
                    usage: body_usage(&bytes),
                    output_bytes: bytes.len() as u64,
                    status: status.as_u16(),
                    error: None,
                },
            )
            .await;
        let rewriter =
            ByteRewriter::for_openai(&meter.model.upstream_model, &meter.model.name, false);
        let bytes = match rewriter.apply(&bytes) {
            std::borrow::Cow::Borrowed(_) => bytes,
            std::borrow::Cow::Owned(edited) => Bytes::from(edited),
        };
        let mut out = (
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::OK),
            bytes,
        )
            .into_response();
        if let Some(ct) = content_type {
            out.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        out
    });
    task.await
        .unwrap_or_else(|_| ApiError::Internal.into_response())
}

fn failure_outcome(status: u16) -> Outcome {
    Outcome {
        status,
        error: Some("upstream request failed".into()),
        ..Outcome::default()
    }
}

/// Forwards a streaming request. The upstream's SSE events are passed
/// through byte for byte, except the usage-only chunk the gateway asked for
/// when the client did not.
pub async fn forward_stream(
    app: App,
    meter: Meter,
    provider: Arc<Provider>,
    path: &'static str,
    body: Vec<u8>,
    client_wants_usage: bool,
) -> Response {
    let guard = InFlight::enter(&app);
    let response = match send(&app, &provider, path, body).await {
        Ok(r) => r,
        Err(failure) => {
            meter.settle(&app, failure_outcome(failure.status())).await;
            drop(guard);
            return failure.into_response();
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_BUFFER);
    tokio::spawn(pump(
        app,
        meter,
        provider,
        response,
        tx,
        client_wants_usage,
        guard,
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| ApiError::Internal.into_response())
}

/// Reads the upstream stream to its end, forwarding events while the client
/// listens and metering them regardless, then settles.
async fn pump(
    app: App,
    meter: Meter,
    provider: Arc<Provider>,
    response: reqwest::Response,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    client_wants_usage: bool,
    _guard: crate::state::InFlightGuard,
) {
    let mut upstream = response.bytes_stream();
    let mut decoder = SseDecoder::new();
    let rewriter = ByteRewriter::for_openai(
        &meter.model.upstream_model,
        &meter.model.name,
        !client_wants_usage,
    );
    let mut client_open = true;
    let mut outcome = Outcome {
        status: 200,
        ..Outcome::default()
    };
    loop {
        let chunk = match tokio::time::timeout(provider.read_timeout, upstream.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                app.metrics
                    .record_upstream_error(&provider.name, "stream_broken");
                outcome.error = Some("upstream stream broke".into());
                break;
            }
            Err(_) => {
                app.metrics
                    .record_upstream_error(&provider.name, "stream_timeout");
                outcome.error = Some("upstream stream stalled".into());
                break;
            }
        };
        outcome.output_bytes += chunk.len() as u64;
        decoder.push(&chunk);
        let mut out = BytesMut::new();
        while let Some(event) = decoder.next_event() {
            if let Some(usage) = chunk_usage(&event.data) {
                outcome.usage = Some(usage.usage);
                if usage.usage_only && !client_wants_usage {
                    continue;
                }
            }
            out.extend_from_slice(&rewriter.apply(&event.raw));
        }
        // Everything one read completed goes out in one write: no coalescing
        // beyond a single upstream read.
        if client_open && !out.is_empty() && tx.send(Ok(out.freeze())).await.is_err() {
            // The client hung up: keep reading so the upstream's usage is known.
            client_open = false;
        }
    }
    if let Some(event) = decoder.finish() {
        let usage = chunk_usage(&event.data);
        let drop_it = usage
            .as_ref()
            .is_some_and(|u| u.usage_only && !client_wants_usage);
        if let Some(usage) = usage {
            outcome.usage = Some(usage.usage);
        }
        if client_open && !drop_it {
            let _ = tx
                .send(Ok(Bytes::from(rewriter.apply(&event.raw).into_owned())))
                .await;
        }
    }
    drop(tx);
    meter.settle(&app, outcome).await;
}
