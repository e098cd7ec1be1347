//! Driving one Responses run: the upstream stream is read to its end (or to
//! a cancellation), its events turned into Responses events and delivered —
//! to a connected client, to the run's log for background followers, or
//! nowhere when the client waits for the whole object — then the run is
//! charged once and its response stored.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use bytes::Bytes;
use protocol::TokenUsage;
use serde_json::Value;
use store::StoredResponse;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::events::ResponseEvents;
use super::registry::Run;
use crate::billing::{Delivered, Outcome};
use crate::error::ApiError;
use crate::pipeline::{send_with_failover, Account, Failover, Sendable};
use crate::providers::client::UpstreamResponse;
use crate::providers::{Provider, ResponsesUpstream};
use crate::relay::{EventReader, Read, UpstreamFailure};
use crate::routing::Route;
use crate::state::{App, InFlight};

/// A prepared Responses turn, ready to send upstream.
pub struct Turn {
    /// Its hold and rate limits, settled once (see [`Account`]).
    pub account: Account,
    pub provider: Arc<Provider>,
    pub path: &'static str,
    pub body: Vec<u8>,
    /// Headers for the upstream (override rules').
    pub forwarded: Vec<(HeaderName, HeaderValue)>,
    pub events: Box<dyn ResponseEvents>,
    /// What is stored when the run ends (`response` is replaced by the final object).
    pub record: StoredResponse,
    pub store: bool,
    /// The conversation the turn's items are appended to.
    pub conversation: Option<String>,
    /// The prompt's tokens as estimated locally, charged if the run is
    /// cancelled before the upstream reports its usage.
    pub estimated_input: u64,
    /// When the run must have ended: a client waiting for the whole object
    /// waits no longer than the provider's `request_timeout_secs`.
    pub deadline: Option<Instant>,
}

impl Turn {
    /// Charges the turn for `outcome` and releases its hold — once, however
    /// often it is called; a turn dropped unsettled (its task panicked, or
    /// it was never sent) costs nothing (see [`Account`]).
    pub fn settle(&mut self, outcome: Outcome) {
        self.account.settle(outcome);
    }
}

/// Where a run's events go.
pub enum Sink {
    /// A client connected to the stream; `None` once it has gone.
    Client(Option<mpsc::Sender<Result<Bytes, std::io::Error>>>),
    /// The log of a background run.
    Log(Arc<Run>),
    /// Nowhere: the client waits for the final object.
    Discard,
}

impl Sink {
    async fn deliver(&mut self, frames: Vec<Bytes>) {
        match self {
            Sink::Client(tx) => {
                if frames.is_empty() {
                    return;
                }
                let joined = if frames.len() == 1 {
                    frames.into_iter().next().unwrap_or_default()
                } else {
                    Bytes::from(frames.concat())
                };
                if let Some(sender) = tx {
                    if sender.send(Ok(joined)).await.is_err() {
                        *tx = None;
                    }
                }
            }
            Sink::Log(run) => run.append(&frames),
            Sink::Discard => {}
        }
    }
}

impl Sendable for Turn {
    type Call = ResponsesUpstream;

    fn provider(&self) -> &Arc<Provider> {
        &self.provider
    }

    fn forwarded(&self) -> &[(HeaderName, HeaderValue)] {
        &self.forwarded
    }

    fn take_request(&mut self) -> (&'static str, Vec<u8>) {
        (self.path, std::mem::take(&mut self.body))
    }

    fn retarget(&mut self, route: Route, call: ResponsesUpstream) {
        self.account.meter.serve_by(&route.model);
        self.provider = route.provider;
        self.path = call.path;
        self.body = call.body;
        self.forwarded = call.forwarded;
        self.events = call.events;
    }
}

/// Sends the turn upstream, moving to the model's next channel when one
/// fails before answering. On failure the turn is settled (free) and the
/// failure returned for the caller to report.
pub(crate) async fn connect(
    app: &App,
    turn: &mut Turn,
    failover: &mut Failover<ResponsesUpstream>,
) -> Result<UpstreamResponse, UpstreamFailure> {
    match send_with_failover(app, turn, failover).await {
        Ok(response) => Ok(response),
        Err(failure) => {
            turn.settle(Outcome {
                status: failure.status(),
                error: Some("upstream request failed".into()),
                ..Outcome::default()
            });
            Err(failure)
        }
    }
}

/// A turn whose upstream refused it: recorded as failed (for a background
/// run, whose client is no longer waiting for an HTTP status).
pub(crate) async fn record_refusal(
    app: &App,
    mut turn: Turn,
    failure: &UpstreamFailure,
    sink: &mut Sink,
) {
    let mut frames = Vec::new();
    turn.events.start(&mut frames);
    turn.events.fail(&failure.message(), &mut frames);
    sink.deliver(frames).await;
    persist(app, &mut turn, sink).await;
}

/// How a run ended.
pub struct Finished {
    /// The final Response object.
    pub response: Value,
    /// The run passed its deadline: the client gets a 504, not the object.
    pub timed_out: bool,
}

/// Reads the upstream to its end (or to a cancellation, or to the turn's
/// deadline) and returns the final Response object.
pub async fn drive(
    app: App,
    mut turn: Turn,
    upstream: UpstreamResponse,
    mut sink: Sink,
) -> Finished {
    let _guard = InFlight::enter(&app);
    let mut cancel = match &sink {
        Sink::Log(run) => Some(run.cancelled()),
        _ => None,
    };
    let mut frames = Vec::new();
    turn.events.start(&mut frames);
    sink.deliver(frames).await;

    let mut upstream = EventReader::new(upstream, &turn.provider);
    let mut outcome = Outcome {
        status: 200,
        ..Outcome::default()
    };
    let mut cancelled = false;
    let mut timed_out = false;
    let deadline = turn.deadline;
    loop {
        let mut frames = Vec::new();
        let events = &mut turn.events;
        let step = tokio::select! {
            _ = cancellation(&mut cancel) => Step::Cancelled,
            _ = passed(deadline) => Step::PastDeadline,
            read = upstream.read(|event| events.push(event, &mut frames)) => Step::Read(read),
        };
        match step {
            Step::Cancelled => {
                cancelled = true;
                turn.events.cancel(&mut frames);
            }
            Step::PastDeadline => {
                timed_out = true;
                turn.events
                    .fail("The upstream did not finish in time.", &mut frames);
            }
            Step::Read(Read::More) => {
                sink.deliver(frames).await;
                continue;
            }
            Step::Read(Read::Ended) => turn.events.finish(&mut frames),
            Step::Read(Read::Failed(broke)) => {
                broke.record(&app, &turn.provider);
                outcome.error = Some(broke.message().into());
                turn.events
                    .fail("The upstream stream was interrupted.", &mut frames);
            }
        }
        sink.deliver(frames).await;
        break;
    }
    // Dropping the upstream stream here closes the connection: a cancelled
    // run stops the upstream's work, not only our reading of it.
    drop(upstream);
    outcome.usage = turn.events.usage();
    if outcome.usage.is_none() {
        // Cancelled, broken off, or never reported: charge the prompt and
        // what was produced, counted with the tokenizer.
        outcome.delivered = delivered(&turn, cancelled);
        if cancelled {
            outcome.error = Some("cancelled by the client".into());
        }
    }
    if timed_out {
        app.metrics
            .record_upstream_error(&turn.provider.name, "timeout");
        let limit = turn.provider.request_timeout.as_secs();
        if outcome.usage.is_none() && turn.events.produced_text().is_empty() {
            // Nothing produced: a failed request, which costs nothing.
            outcome.status = ApiError::UpstreamTimeout.status().as_u16();
            outcome.error = Some(format!("timed out after {limit} s; nothing produced"));
        } else {
            // The upstream worked until the connection was dropped: charge
            // what it produced (its own usage, else the tokenizer's estimate).
            if outcome.usage.is_none() {
                outcome.delivered = delivered(&turn, true);
            }
            outcome.error = Some(format!(
                "timed out after {limit} s; charged for what was produced"
            ));
        }
    }
    turn.settle(outcome);
    Finished {
        response: persist(&app, &mut turn, &sink).await,
        timed_out,
    }
}

/// What ended one wait of a run.
enum Step {
    Cancelled,
    PastDeadline,
    Read(Read),
}

/// Resolves at `deadline`; never without one.
async fn passed(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
    }
}

/// Resolves when a cancellation is requested; never without a receiver.
async fn cancellation(cancel: &mut Option<watch::Receiver<bool>>) {
    match cancel {
        Some(rx) => {
            if rx.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// What a run that ended without the upstream's usage delivered: its
/// prompt and the tokens produced so far, both estimated with the tokenizer.
/// A run that produced nothing and was not cancelled failed: it costs nothing.
fn delivered(turn: &Turn, cancelled: bool) -> Delivered {
    let produced = turn.events.produced_text();
    if produced.is_empty() && !cancelled {
        return Delivered::default();
    }
    Delivered {
        input: Some(TokenUsage {
            input: turn.estimated_input,
            ..TokenUsage::default()
        }),
        output_tokens: crate::tokens::count_text_bounded(&produced),
        anything: true,
    }
}

/// Stores the final response (when asked to) and appends the turn to its
/// conversation. Returns the final Response object.
async fn persist(app: &App, turn: &mut Turn, sink: &Sink) -> Value {
    let response = turn.events.response().clone();
    turn.record.status = response
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("completed")
        .to_string();
    turn.record.response = response.clone();
    if let Some(conversation) = &turn.conversation {
        let mut items: Vec<(String, Value)> = Vec::new();
        let output = response.get("output").and_then(Value::as_array);
        for item in turn
            .record
            .input_items
            .iter()
            .chain(output.into_iter().flatten())
        {
            let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
            items.push((id.to_string(), item.clone()));
        }
        if let Err(e) = app
            .store
            .add_conversation_items(turn.record.user_id, conversation, &items)
            .await
        {
            tracing::warn!(error = %e, response = %turn.record.id, "could not append the turn to its conversation");
        }
    }
    if turn.store {
        let events = match sink {
            Sink::Log(run) => Some(run.events_text()),
            _ => None,
        };
        // A background run's row exists since it was queued: update it, so
        // that a response deleted while it ran stays deleted.
        let saved = if turn.record.background {
            app.store
                .update_response(&turn.record, events.as_deref())
                .await
                .map(|_| ())
        } else {
            app.store
                .save_response(&turn.record, None, super::expires_at(app))
                .await
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, response = %turn.record.id, "could not store the response");
        }
    }
    if let Sink::Log(run) = sink {
        run.close();
    }
    response
}
