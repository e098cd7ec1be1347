//! Step 6: the call sent, moving to the model's next channel when one fails
//! before its answer began (`[failover]`). The hold was placed once; only
//! the attempt that serves is settled, so a failover never charges twice.
//! Nothing is retried once an answer has begun: its bytes may have reached
//! the client.

use crate::error::ApiError;
use crate::providers::{Reply, Target, UpstreamCall};
use crate::relay::{send, Exchange, UpstreamFailure};
use crate::routing::{select, Route};
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
        loop {
            let index = select(channels, |c| c.weight, &self.tried, rand::random())?;
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
        let failure = match send(
            app,
            &exchange.provider,
            exchange.path,
            body,
            &exchange.forwarded,
        )
        .await
        {
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
