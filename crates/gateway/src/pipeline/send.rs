//! Step 6: the call sent, moving to the model's next channel when one fails
//! before its answer began (`[failover]`). The hold was placed once; only
//! the attempt that serves is settled, so a failover never charges twice.
//! Nothing is retried once an answer has begun: its bytes may have reached
//! the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};

use super::rules::UpstreamEdits;
use crate::catalog::Catalog;
use crate::config::ModelSpec;
use crate::config::{send_budget, ERROR_BODY_WAIT};
use crate::error::ApiError;
use crate::providers::client::UpstreamResponse;
use crate::providers::{KeyIndex, Outgoing, Provider, Target, UpstreamCall};
use crate::relay::{send, Payload, UpstreamFailure};
use crate::routing::health::Attempt;
use crate::routing::{pick, route_to, AffinityKey, Route};
use crate::state::App;

/// Builds the upstream call for a channel from the client's request: an
/// [`UpstreamCall`] for most endpoints, a Responses turn's own for those.
pub type Planner<C = UpstreamCall> = Box<dyn Fn(&Target<'_>) -> Result<C, ApiError> + Send + Sync>;

/// What a request needs to move to another channel.
pub struct Failover<C = UpstreamCall> {
    /// The catalog the request was routed in.
    catalog: Arc<Catalog>,
    /// The model as first routed: its channels are
    /// `catalog.channels[model.name]` (shared, not copied).
    model: Arc<ModelSpec>,
    /// The channels tried so far, the first included.
    pub tried: Vec<usize>,
    pub planner: Planner<C>,
    /// What override rules change in each channel's call.
    edits: UpstreamEdits,
    /// The conversations whose next turn should go where this one is served.
    affinity: Vec<AffinityKey>,
}

/// A request planned for one channel, which failover can send and plan
/// anew for another.
pub(crate) trait Sendable {
    /// What the planner builds for a channel.
    type Call: Outgoing;
    fn provider(&self) -> &Arc<Provider>;
    /// The client's headers meant for the upstream.
    fn forwarded(&self) -> &[(HeaderName, HeaderValue)];
    /// The path and body of the next send (the body is moved out).
    fn take_request(&mut self) -> (&'static str, Vec<u8>);
    /// The query string of a `GET` (none: a `POST`).
    fn query(&self) -> Option<&str> {
        None
    }
    /// The upload of a multipart `POST`.
    fn upload(&self) -> Option<&crate::providers::Upload> {
        None
    }
    /// Re-plans the request for `route`'s channel, whose call is `call`.
    fn retarget(&mut self, route: Route, call: Self::Call);
}

impl<C: Outgoing> Failover<C> {
    /// Plans the request for its routed channel — or, when it cannot be
    /// planned there (its input has no equivalent in that channel's
    /// protocol), for the next one, as on failover. Returns the failover
    /// state, the channel planned for and its call.
    pub(crate) fn start(
        app: &App,
        route: Route,
        planner: Planner<C>,
        edits: UpstreamEdits,
    ) -> Result<(Self, Route, C), ApiError> {
        let mut failover = Failover {
            catalog: route.catalog.clone(),
            model: route.model.clone(),
            tried: vec![route.channel],
            planner,
            edits,
            affinity: route.affinity.clone().into_iter().collect(),
        };
        let (route, call) = match failover.plan(&route) {
            Ok(call) => (route, call),
            Err(refusal) => failover.next(app).ok_or(refusal)?,
        };
        Ok((failover, route, call))
    }

    /// The next channel to try and its call, or `None` when none is left.
    /// A channel the request cannot be planned for is passed over.
    pub(crate) fn next(&mut self, app: &App) -> Option<(Route, C)> {
        let channels = self.catalog.channels.get(&self.model.name)?;
        let cooldown = app.config.failover.health().cooldown;
        loop {
            let index = pick(channels, &self.tried, cooldown, Instant::now())?;
            self.tried.push(index);
            let route = route_to(&self.catalog, &self.model.name, index)?;
            match self.plan(&route) {
                Ok(call) => return Some((route, call)),
                Err(e) => {
                    tracing::debug!(provider = %route.provider.name, error = %e, "channel passed over")
                }
            }
        }
    }

    /// Also sends the turns that will carry `key` where this one is served.
    pub(crate) fn remember_as(&mut self, key: Option<AffinityKey>) {
        self.affinity.extend(key);
    }

    /// The call planned again for the channel tried last (to send it with
    /// another of its keys).
    fn again(&self) -> Option<(Route, C)> {
        let index = *self.tried.last()?;
        let route = route_to(&self.catalog, &self.model.name, index)?;
        let call = self.plan(&route).ok()?;
        Some((route, call))
    }

    /// The call for `route`'s channel, as the override rules leave it.
    fn plan(&self, route: &Route) -> Result<C, ApiError> {
        let target = route.target();
        let mut call = (self.planner)(&target)?;
        self.edits.apply(&target, &mut call)?;
        Ok(call)
    }

    /// Tells the channel tried last how its attempt went, and how long its
    /// upstream took to answer.
    fn record(&self, app: &App, attempt: Attempt, took: Duration, now: Instant) {
        let Some(&index) = self.tried.last() else {
            return;
        };
        let Some(channel) = self
            .catalog
            .channels
            .get(&self.model.name)
            .and_then(|c| c.get(index))
        else {
            return;
        };
        let policy = &app.config.failover;
        if attempt == Attempt::Served {
            for key in &self.affinity {
                app.affinity.remember(key.clone(), channel, now);
            }
        }
        channel.health.record(attempt, &policy.health(), now);
        channel.stats.record(attempt, took);
    }
}

/// Sends `request`. When the upstream rate-limits or refuses the key it
/// was sent with, the channel's next key that is not resting is tried first
/// (not counted as an attempt); on a failure worth it, the request is
/// re-planned for the model's next channel and sent again, up to
/// `[failover] max_attempts`. No new try starts that could outlast the
/// request's hold (`config::send_budget`). Returns the upstream's answer, or the
/// last failure.
pub(crate) async fn send_with_failover<R: Sendable>(
    app: &App,
    request: &mut R,
    failover: &mut Failover<R::Call>,
) -> Result<UpstreamResponse, UpstreamFailure> {
    let policy = &app.config.failover;
    let mut started = None;
    // Whether a try to `provider` starting now would end within the budget.
    let fits = |started: Option<Instant>, provider: &Provider| {
        let now = Instant::now();
        let ends_by = started.unwrap_or(now) + send_budget(app.config.hold_ttl_secs);
        now + provider.request_timeout + ERROR_BODY_WAIT <= ends_by
    };
    let mut sent = 0;
    // The keys of the current channel tried so far, and whether the
    // upstream refused every one of them.
    let mut keys_tried: Vec<KeyIndex> = Vec::new();
    let mut every_key_refused = true;
    loop {
        let (path, body) = request.take_request();
        let provider = request.provider();
        let key = provider.pick_key(&keys_tried);
        keys_tried.extend(key);
        let sent_at = Instant::now();
        started.get_or_insert(sent_at);
        let payload = match (request.query(), request.upload()) {
            (Some(query), _) => Payload::Query(query),
            (None, Some(upload)) => Payload::Upload(upload),
            (None, None) => Payload::Json(body),
        };
        let result = send(app, provider, key, path, payload, request.forwarded()).await;
        let answered_at = Instant::now();
        let took = answered_at - sent_at;
        let failure = match result {
            Ok(response) => {
                failover.record(app, Attempt::Served, took, answered_at);
                return Ok(response);
            }
            Err(failure) => failure,
        };
        let key_failed = failure.rate_limited() || failure.refused_our_key();
        if let Some(key) = key.filter(|_| key_failed) {
            let rest = match failure.rate_limited() {
                true => failure
                    .retry_after()
                    .unwrap_or(Duration::from_secs(policy.key_rest_secs)),
                false => policy.health().cooldown,
            };
            provider.rest_key(key, rest);
            every_key_refused &= failure.refused_our_key();
            if provider.has_rested_key(&keys_tried) && fits(started, provider) {
                if let Some((route, call)) = failover.again() {
                    tracing::info!(provider = %provider.name, status = failure.status(), "upstream key rate-limited or refused; trying the channel's next key");
                    request.retarget(route, call);
                    continue;
                }
            }
        }
        let attempt = if failure.refused_our_key() && every_key_refused {
            // No key of the channel works: nobody's request can succeed.
            Attempt::Refused
        } else if failure.worth_another_channel(policy) || key_failed {
            Attempt::Failed
        } else {
            // The client's own error: the channel answered.
            Attempt::Served
        };
        failover.record(app, attempt, took, answered_at);
        sent += 1;
        if sent >= policy.max_attempts || !failure.worth_another_channel(policy) {
            return Err(failure);
        }
        let Some((route, call)) = failover.next(app) else {
            return Err(failure);
        };
        if !fits(started, &route.provider) {
            tracing::warn!(provider = %route.provider.name, "no time left in the request's hold for another channel");
            return Err(failure);
        }
        let from = &request.provider().name;
        tracing::info!(
            from = %from, to = %route.provider.name, status = failure.status(),
            "upstream failed before answering; trying the model's next channel"
        );
        app.metrics.record_failover(from);
        request.retarget(route, call);
        keys_tried.clear();
        every_key_refused = true;
    }
}
