//! Step 7: the answer turned into the client's, event by event or whole.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};

use super::reserve::Prepared;
use super::send::{send_with_failover, Sendable};
use crate::providers::{Provider, Reply, UpstreamCall};
use crate::relay::{answer_json, answer_raw, answer_stream, refuse, Answer, Exchange};
use crate::routing::Route;
use crate::state::{App, InFlight};

/// An exchange and how its answer goes back, planned for one channel.
struct Planned {
    exchange: Exchange,
    reply: Reply,
}

impl Sendable for Planned {
    type Call = UpstreamCall;

    fn provider(&self) -> &Arc<Provider> {
        &self.exchange.provider
    }

    fn forwarded(&self) -> &[(HeaderName, HeaderValue)] {
        &self.exchange.forwarded
    }

    fn take_request(&mut self) -> (&'static str, Vec<u8>) {
        (self.exchange.path, std::mem::take(&mut self.exchange.body))
    }

    fn query(&self) -> Option<&str> {
        self.exchange.query.as_deref()
    }

    fn upload(&self) -> Option<&crate::providers::Upload> {
        self.exchange.upload.as_ref()
    }

    fn retarget(&mut self, route: Route, call: UpstreamCall) {
        let exchange = &mut self.exchange;
        exchange.account.meter.serve_by(&route.model);
        exchange.provider = route.provider;
        exchange.path = call.path;
        exchange.query = call.query;
        exchange.upload = call.upload;
        exchange.body = call.body;
        exchange.forwarded = call.forwarded;
        self.reply = call.reply;
    }
}

/// Sends the prepared request (step 6) and answers the client as its reply
/// says; the request is settled when the upstream is done, whatever the
/// client does.
pub async fn respond(app: App, prepared: Prepared) -> Answer {
    let Prepared {
        exchange,
        reply,
        mut failover,
    } = prepared;
    let mut planned = Planned { exchange, reply };
    let guard = InFlight::enter(&app);
    let sent = send_with_failover(&app, &mut planned, &mut failover).await;
    let Planned { exchange, reply } = planned;
    match sent {
        Err(failure) => refuse(exchange, failure),
        Ok(response) => match reply {
            Reply::Stream(transform) => answer_stream(exchange, transform, response, guard).await,
            Reply::Whole(transform) => answer_json(exchange, *transform, response, guard).await,
            Reply::Raw(usage) => answer_raw(exchange, usage, response, guard).await,
        },
    }
}
