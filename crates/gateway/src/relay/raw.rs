//! Answers that are bytes, not events: audio from a text-to-speech
//! upstream, passed to the client as each piece arrives, never held whole.
//! What such a request costs is known before it is sent (its characters),
//! so it is charged in full once the upstream's audio has begun: the
//! upstream has done (and billed) the work whether or not the client stays.
//! An answer that breaks before any audio came is free.

use std::time::Duration;

use axum::http::{header, HeaderValue};
use bytes::Bytes;
use futures_util::StreamExt;
use protocol::TokenUsage;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Answer, ClientSink, Exchange, STREAM_BUFFER};
use crate::billing::estimate::Delivered;
use crate::billing::Outcome;
use crate::providers::client::{self, UpstreamResponse};
use crate::state::InFlightGuard;

/// Streams `response`'s bytes to the client and settles `usage`.
pub async fn answer_raw(
    ex: Exchange,
    usage: TokenUsage,
    response: UpstreamResponse,
    guard: InFlightGuard,
) -> Answer {
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_BUFFER);
    tokio::spawn(pump(ex, usage, response, tx, guard).in_current_span());
    Answer::Bytes { content_type, rx }
}

async fn pump(
    mut ex: Exchange,
    usage: TokenUsage,
    response: UpstreamResponse,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    _guard: InFlightGuard,
) {
    let app = ex.account.app().clone();
    let read_timeout: Duration = ex.provider.read_timeout;
    let mut client = ClientSink::new(&app, tx.clone());
    let mut body = client::pieces(response);
    let mut error = None;
    let mut delivered = false;
    loop {
        match tokio::time::timeout(read_timeout, body.next()).await {
            Ok(Some(Ok(piece))) => {
                delivered |= !piece.is_empty();
                client.deliver(&app, piece).await
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                error = Some(format!("the upstream's answer broke off: {e}"));
                break;
            }
            Err(_) => {
                error = Some("the upstream's answer stalled".to_string());
                break;
            }
        }
    }
    drop(body);
    if let Some(message) = &error {
        // The client learns its bytes are incomplete: the body ends in error.
        let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
    }
    // An answer that broke before any of it came is a failure, and free.
    let status = match (&error, delivered) {
        (Some(_), false) => 502,
        _ => 200,
    };
    ex.settle(Outcome {
        usage: Some(usage),
        delivered: Delivered::default(),
        status,
        error,
    });
    ex.account.limits_returned().await;
}
