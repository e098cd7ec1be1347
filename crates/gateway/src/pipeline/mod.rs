//! The path every metered request takes, in order. A handler parses its
//! protocol's request, asks for each step below, and renders; what a step
//! does lives in the module it names.
//!
//! 1. **authenticate**: [`crate::auth::Caller`], an extractor that runs
//!    before the body is read.
//! 2. **rules, files, limits**: [`rules`] rewrites the request as the
//!    user's and the operator's override rules say (or refuses it), before
//!    routing; [`crate::files::attach`] inlines the caller's files the
//!    request references ([`rewrite`] takes both steps);
//!    [`limits`] counts the request in its rate limits, before any money
//!    is held.
//! 3. **route**: [`crate::routing::route`] (`AppState::route`), from the
//!    model name to a channel of the catalog in force, if the key may use
//!    it: the conversation's last channel while healthy, else the highest
//!    priority tier, weighted.
//! 4. **plan**: the provider's [`crate::providers::Adapter`] builds the
//!    upstream call for the client's protocol, and says how the answer goes
//!    back ([`crate::providers::Reply`]); the rules' header changes and the
//!    operator's channel rules then edit it ([`rules::UpstreamEdits`]).
//! 5. **reserve**: [`reserve`] holds the request's worst case
//!    ([`crate::billing::Meter`]) and journals it; with its rate limits,
//!    the hold is the request's [`Account`], settled once.
//! 6. **send**: `send`, through [`crate::relay::send`], moving to the
//!    model's next channel when one fails before answering.
//! 7. **stream / transform**: [`respond`], the upstream's answer turned into
//!    the client's, event by event or whole.
//! 8. **settle**: [`crate::billing::Meter::settle`] once the upstream is
//!    done, from its own usage, through the journal and the settlement
//!    writer.
//!
//! Responses turns take steps 1–6 here (failover included), hold on their
//! whole history rather than the client's body, and drive steps 7–8 in
//! `crate::responses::run`, which keeps the response's state as it goes.

mod account;
pub mod limits;
mod reserve;
mod respond;
pub mod rules;
mod send;

pub use account::Account;

use bytes::Bytes;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::App;

/// Steps 2a and 2b: the override rules, then the files the request
/// references, inlined (a rule may have added a reference).
pub async fn rewrite(
    app: &App,
    principal: &Principal,
    api_type: &'static str,
    body: Bytes,
) -> Result<rules::Rewritten, ApiError> {
    let mut rewritten = rules::rewrite(app, principal, api_type, body).await?;
    rewritten.body = crate::files::attach::attach(app, principal, rewritten.body).await?;
    Ok(rewritten)
}
pub use reserve::{reserve, tokens_only, Metered, Prepared};
pub use respond::respond;
pub(crate) use send::{send_with_failover, Sendable};
pub use send::{Failover, Planner};
