//! Step 7: the answer turned into the client's, event by event or whole.

use axum::response::Response;

use super::reserve::Prepared;
use super::send::send_with_failover;
use crate::providers::Reply;
use crate::relay::{answer_json, answer_stream, refuse};
use crate::state::{App, InFlight};

/// Sends the prepared request (step 6) and answers the client as its reply
/// says; the request is settled when the upstream is done, whatever the
/// client does.
pub async fn respond(app: App, prepared: Prepared) -> Response {
    let Prepared {
        mut exchange,
        mut reply,
        mut failover,
    } = prepared;
    let guard = InFlight::enter(&app);
    match send_with_failover(&app, &mut exchange, &mut reply, &mut failover).await {
        Err(failure) => refuse(&app, exchange, failure),
        Ok(response) => match reply {
            Reply::Stream(transform) => {
                answer_stream(app, exchange, transform, response, guard).await
            }
            Reply::Whole(transform) => {
                answer_json(app, exchange, *transform, response, guard).await
            }
        },
    }
}
