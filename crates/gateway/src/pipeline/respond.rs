//! Steps 6 and 7: the call sent, and its answer turned into the client's.

use axum::response::Response;

use crate::providers::Reply;
use crate::relay::{forward_json, forward_stream, Exchange};
use crate::state::App;

/// Sends `exchange` and answers the client as `reply` says; the request is
/// settled when the upstream is done, whatever the client does.
pub async fn respond(app: App, exchange: Exchange, reply: Reply) -> Response {
    match reply {
        Reply::Stream(transform) => forward_stream(app, exchange, transform).await,
        Reply::Whole(transform) => forward_json(app, exchange, *transform).await,
    }
}
