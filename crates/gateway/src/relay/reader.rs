//! Reading an upstream's event stream one network read at a time: the
//! loop every streamed answer shares (chat, messages and Responses runs),
//! whatever each does with the events.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use protocol::sse::{SseDecoder, SseEvent};

use crate::providers::client::{self, BodyError, UpstreamResponse};
use crate::providers::Provider;
use crate::state::App;

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// An upstream answer's Server-Sent Events, as they arrive.
pub(crate) struct EventReader {
    upstream: ByteStream,
    decoder: SseDecoder,
    /// How long one read may take before the stream counts as stalled.
    read_timeout: Duration,
}

/// What one read gave.
pub(crate) enum Read {
    /// More events may come (this read's were handed over).
    More,
    /// The upstream ended its stream (its last events were handed over).
    Ended,
    /// The stream broke off or stalled before its end.
    Failed(Break),
}

/// How a stream failed before its end.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Break {
    /// No bytes for the provider's `read_timeout_secs`.
    Stalled,
    /// The connection failed.
    Broken,
}

impl Break {
    /// What the usage record says.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Break::Stalled => "upstream stream stalled",
            Break::Broken => "upstream stream broke",
        }
    }

    /// Counts and logs the failure against `provider`.
    pub(crate) fn record(self, app: &App, provider: &Provider) {
        let kind = match self {
            Break::Stalled => "stream_timeout",
            Break::Broken => "stream_broken",
        };
        app.metrics.record_upstream_error(&provider.name, kind);
        tracing::warn!(provider = %provider.name, kind, "upstream stream failed");
    }
}

impl EventReader {
    pub(crate) fn new(response: UpstreamResponse, provider: &Provider) -> Self {
        EventReader {
            upstream: Box::pin(client::pieces(response)),
            decoder: SseDecoder::new(),
            read_timeout: provider.read_timeout,
        }
    }

    /// Reads once from the upstream and hands each event it completed to
    /// `on_event`, in order.
    pub(crate) async fn read(&mut self, mut on_event: impl FnMut(&SseEvent)) -> Read {
        match tokio::time::timeout(self.read_timeout, self.upstream.next()).await {
            Ok(Some(Ok(chunk))) => {
                self.decoder.push(&chunk);
                while let Some(event) = self.decoder.next_event() {
                    on_event(&event);
                }
                Read::More
            }
            Ok(None) => {
                if let Some(event) = self.decoder.finish() {
                    on_event(&event);
                }
                Read::Ended
            }
            Ok(Some(Err(_))) => Read::Failed(Break::Broken),
            Err(_) => Read::Failed(Break::Stalled),
        }
    }
}
