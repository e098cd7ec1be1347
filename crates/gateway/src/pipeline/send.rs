//! Step 6: the call sent, moving to the model's next channel when one fails
//! before its answer began (`[failover]`). The hold was placed once; only
//! the attempt that serves is settled, so a failover never charges twice.
//! Nothing is retried once an answer has begun: its bytes may have reached
//! the client.

use crate::error::ApiError;
use crate::providers::{Reply, Target, UpstreamCall};
use crate::relay::{send, Exchange, UpstreamFailure};
use std::time::Instant;

use crate::routing::health::Attempt;
use crate::routing::{pick, Route};
use crate::state::App;

/// Builds the upstream call for a channel from the client's request.
pub type Planner = Box<dyn Fn(&Target<'_>) -> Result<UpstreamCall, ApiError> + Send + Sync>;

/// What a request needs to move to another channel.
pub struct Failover {
    /// The model's public name: its channels are `app.channels[model]`.
    pub model: String,
    /// The channels tried so far, the first included.
    pub tried: Vec<usize>,
    pub planner: Planner,
}

impl Failover {
    /// The next channel to try and its call, or `None` when none is left.
    /// A channel the request cannot be planned for is passed over.
    pub(crate) fn next(&mut self, app: &App) -> Option<(Route, UpstreamCall)> {
        let channels = app.channels.get(&self.model)?;
        let cooldown = app.config.failover.health().cooldown;
        loop {
            let index = pick(channels, &self.tried, cooldown, Instant::now())?;
            self.tried.push(index);
            let route = channels[index].route_at(index);
            match (self.planner)(&route.target()) {
                Ok(call) => return Some((route, call)),
                Err(e) => {
                    tracing::debug!(provider = %route.provider.name, error = %e, "channel passed over")
                }
            }
        }
    }
}

impl Failover {
    /// Tells channel `index` of the model how its attempt went.
    fn record(&self, app: &App, index: usize, failure: Option<&UpstreamFailure>) {
        let Some(channel) = app.channels.get(&self.model).and_then(|c| c.get(index)) else {
            return;
        };
        let policy = &app.config.failover;
        let attempt = match failure {
            None => Attempt::Served,
            Some(f) if f.refused_our_key() => Attempt::Refused,
            Some(f) if f.worth_another_channel(policy) => Attempt::Failed,
            // The client's own error: the channel answered.
            Some(_) => Attempt::Served,
        };
        channel
            .health
            .record(attempt, &policy.health(), Instant::now());
    }
}

/// Sends the exchange; on a failure worth it, moves it (and `reply`) to the
/// model's next channel and sends again, up to `[failover] max_attempts`.
/// Returns the upstream's answer, or the last failure.
pub(crate) async fn send_with_failover(
    app: &App,
    exchange: &mut Exchange,
    reply: &mut Reply,
    failover: &mut Failover,
) -> Result<reqwest::Response, UpstreamFailure> {
    let policy = &app.config.failover;
    let mut sent = 0;
    loop {
        sent += 1;
        let body = std::mem::take(&mut exchange.body);
        let sent_at = failover.tried.last().copied();
        let result = send(
            app,
            &exchange.provider,
            exchange.path,
            body,
            &exchange.forwarded,
        )
        .await;
        if let Some(index) = sent_at {
            failover.record(app, index, result.as_ref().err());
        }
        let failure = match result {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        if sent >= policy.max_attempts || !failure.worth_another_channel(policy) {
            return Err(failure);
        }
        let Some((route, call)) = failover.next(app) else {
            return Err(failure);
        };
        tracing::info!(
            from = %exchange.provider.name, to = %route.provider.name, status = failure.status(),
            "upstream failed before answering; trying the model's next channel"
        );
        app.metrics.record_failover(&exchange.provider.name);
        exchange.provider = route.provider;
        exchange.path = call.path;
        exchange.body = call.body;
        exchange.forwarded = call.forwarded;
        exchange.meter.serve_by(&route.model);
        *reply = call.reply;
    }
}
