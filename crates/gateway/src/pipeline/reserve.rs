//! Step 5: the hold. What a planned request may cost at most is held before
//! anything is sent upstream; a request the balance cannot cover is refused
//! here, having cost nothing.

use bytes::Bytes;

use super::account::Account;
use super::rules::UpstreamEdits;
use super::send::{Failover, Planner};
use crate::auth::Principal;
use crate::billing::Meter;
use crate::error::{ApiError, Shape};
use crate::providers::Reply;
use crate::relay::Exchange;
use crate::routing::Route;
use crate::state::App;

/// A request routed, ready to plan and hold.
pub struct Metered<'a> {
    pub principal: &'a Principal,
    pub request_id: &'a str,
    /// The endpoint named in its usage record.
    pub endpoint: &'static str,
    pub route: Route,
    pub stream: bool,
    /// The client's body: the prompt estimate, and the worst case's input.
    pub body: &'a Bytes,
    /// Output tokens allowed per choice, and the number of choices.
    pub max_output: u64,
    pub choices: u64,
    /// Images and documents in the prompt (3,000 tokens each at worst).
    pub images: u64,
    /// For a model metered in another unit than tokens: the most units the
    /// request can cost (its hold), and the price of one (`None`: the
    /// model's own).
    pub units: Option<(u64, Option<crate::money::Decimal>)>,
    /// Builds the upstream call for a channel (again for each channel a
    /// failover tries).
    pub planner: Planner,
    /// What override rules change in each channel's call.
    pub upstream_edits: UpstreamEdits,
    /// The client's protocol, for errors.
    pub shape: Shape,
}

/// A request held and planned for its first channel.
pub struct Prepared {
    pub exchange: Exchange,
    pub reply: Reply,
    pub failover: Failover,
}

impl Prepared {
    /// The `x-ratelimit-*` headers for the client (none when no rate limit
    /// applies).
    pub fn limit_headers(&self) -> Vec<(axum::http::HeaderName, axum::http::HeaderValue)> {
        self.exchange.account.limit_headers(self.exchange.shape)
    }
}

/// Plans the call for the routed channel, then holds the request's worst
/// case. A request no channel can be planned for is refused before
/// anything is held.
pub async fn reserve(app: &App, metered: Metered<'_>) -> Result<Prepared, ApiError> {
    let Metered {
        principal,
        request_id,
        endpoint,
        route,
        stream,
        body,
        max_output,
        choices,
        images,
        units,
        planner,
        upstream_edits,
        shape,
    } = metered;
    if units.is_none() {
        tokens_only(&route.model)?;
    }
    let (failover, route, upstream) = Failover::start(app, route, planner, upstream_edits)?;
    let mut meter = Meter::new(principal, request_id, endpoint, &route, stream, body);
    // The prompt as the channel gets it: channel rules may have added to it.
    meter.request_bytes = meter.request_bytes.max(upstream.body.len() as u64);
    let worst_case = match units {
        Some((quantity, price)) => {
            if let Some(price) = price {
                meter.unit_price = price;
            }
            meter.worst_case_units(quantity)
        }
        None => meter.worst_case(max_output, choices, images),
    };
    // The prompt's bytes as tokens, and the whole output allowance.
    let tokens = (body.len() as u64)
        .div_ceil(4)
        .saturating_add(max_output.saturating_mul(choices));
    let account = Account::open(app, principal, meter, tokens, worst_case, "request").await?;
    let exchange = Exchange {
        account,
        provider: route.provider,
        path: upstream.path,
        query: upstream.query,
        upload: upstream.upload,
        body: upstream.body,
        forwarded: upstream.forwarded,
        shape,
    };
    Ok(Prepared {
        exchange,
        reply: upstream.reply,
        failover,
    })
}

/// Refuses a model metered in another unit than tokens on an endpoint
/// metered in tokens (chat, messages, responses, embeddings).
pub fn tokens_only(model: &crate::config::ModelSpec) -> Result<(), ApiError> {
    match model.unit {
        crate::money::MeterUnit::Tokens => Ok(()),
        unit => Err(ApiError::BadRequest(format!(
            "The model `{}` is metered in {}: it does not serve this endpoint.",
            model.name,
            unit.name()
        ))),
    }
}
