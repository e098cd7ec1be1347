//! `/v1/responses`: create (streamed, whole, or in the background),
//! retrieve (or follow a background run from a cursor), delete, cancel, and
//! list a response's input items.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use store::StoredResponse;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::body::parse_json;
use super::list::{page, ListQuery};
use super::{detached, with_headers, RequestId};
use crate::api::caller::Caller;
use crate::error::{ApiError, Shape};
use crate::pipeline::Failover;
use crate::providers::ResponsesUpstream;
use crate::relay::Answer;
use crate::responses::registry::Run;
use crate::responses::run::{connect, drive, record_refusal, Sink, Turn};
use crate::responses::{expires_at, prepare};
use crate::state::{App, InFlight};
use tracing::Instrument;

/// Events waiting for a slow streaming client before the upstream read pauses.
const STREAM_BUFFER: usize = 64;
/// How long a cancel waits for the run to stop and be recorded.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

pub async fn create(
    State(app): State<App>,
    Extension(id): Extension<RequestId>,
    Caller(principal): Caller,
    body: Bytes,
) -> Response {
    detached(async move {
        let prepared = async {
            let rewritten = crate::pipeline::rewrite(&app, &principal, "responses", body).await?;
            let body = rewritten.body;
            let params: Map<String, Value> = parse_json(&body)?;
            prepare(
                &app,
                &principal,
                &id.0,
                params,
                body.len(),
                rewritten.upstream,
            )
            .await
        }
        .await;
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let headers = prepared.turn.account.limit_headers(Shape::OpenAi);
        let answered = async move {
            let mut failover = prepared.failover;
            if prepared.background {
                return start_background(app, prepared.turn, failover, prepared.stream).await;
            }
            let mut turn = prepared.turn;
            let upstream = match connect(&app, &mut turn, &mut failover).await {
                Ok(u) => u,
                Err(failure) => {
                    let upstream = turn.provider.adapter.wire();
                    return Answer::Refused {
                        failure,
                        upstream,
                        client: Shape::OpenAi,
                    }
                    .into_response();
                }
            };
            if !prepared.stream {
                // A client waiting for the whole object waits, once a channel
                // answered, no longer than a whole non-streaming call to it may
                // take (each attempt before was bounded likewise).
                turn.deadline = Some(Instant::now() + turn.provider.request_timeout);
            }
            if prepared.stream {
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                tokio::spawn(drive(app, turn, upstream, Sink::Client(Some(tx))).in_current_span());
                return sse(Body::from_stream(receiver_stream(rx)));
            }
            // Spawned so that a client hanging up cannot stop the settlement. A
            // run the upstream broke off is answered with its `failed` Response,
            // charged for what was produced, as a stream is; one that outlasts
            // the provider's `request_timeout_secs` is a 504, charged likewise.
            match tokio::spawn(drive(app, turn, upstream, Sink::Discard).in_current_span()).await {
                Ok(run) if run.timed_out => ApiError::UpstreamTimeout.into_response(),
                Ok(run) => Json(run.response).into_response(),
                Err(_) => ApiError::Internal.into_response(),
            }
        }
        .await;
        with_headers(answered, headers)
    })
    .await
}

/// Stores the queued response, starts the run without the client, and
/// answers at once: the queued object, or the run's event stream.
async fn start_background(
    app: App,
    mut turn: Turn,
    mut failover: Failover<ResponsesUpstream>,
    stream: bool,
) -> Response {
    if let Err(e) = app
        .store
        .save_response(&turn.record, None, expires_at(&app))
        .await
    {
        turn.settle(crate::billing::Outcome::default());
        return ApiError::from(e).into_response();
    }
    let queued = turn.record.response.clone();
    let id = turn.record.id.clone();
    let run = app.runs.register(&id, turn.record.user_id);
    let follower = stream.then(|| run.clone());
    let task_app = app.clone();
    // Counted from now, so that a graceful shutdown waits for the run even
    // while it is still connecting.
    let guard = InFlight::enter(&app);
    let finished = RunFinished {
        app: app.clone(),
        id,
        run: run.clone(),
    };
    tokio::spawn(
        async move {
            let (_guard, _finished) = (guard, finished);
            let app = task_app;
            match connect(&app, &mut turn, &mut failover).await {
                Ok(upstream) => {
                    mark_in_progress(&app, &mut turn).await;
                    drive(app.clone(), turn, upstream, Sink::Log(run)).await;
                }
                Err(failure) => record_refusal(&app, turn, &failure, &mut Sink::Log(run)).await,
            }
        }
        .in_current_span(),
    );
    match follower {
        Some(run) => sse(follow(run, 0)),
        None => Json(queued).into_response(),
    }
}

/// Takes a background run out of the registry when its task ends, however
/// it ends: its followers stop waiting, and the abandoned-run sweep can then
/// see it.
struct RunFinished {
    app: App,
    id: String,
    run: Arc<Run>,
}

impl Drop for RunFinished {
    fn drop(&mut self) {
        self.run.close();
        self.app.runs.remove(&self.id);
    }
}

/// Records that the upstream accepted a background run, for pollers.
async fn mark_in_progress(app: &App, turn: &mut Turn) {
    turn.record.status = "in_progress".into();
    turn.record.response["status"] = json!("in_progress");
    if let Err(e) = app.store.update_response(&turn.record, None).await {
        tracing::warn!(error = %e, "could not record a background response as in progress");
    }
}

fn sse(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| ApiError::Internal.into_response())
}

fn receiver_stream(
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// A run's events from index `from`, live until the run ends.
fn follow(run: Arc<Run>, from: usize) -> Body {
    let progress = run.follow();
    let stream = futures_util::stream::unfold(
        (run, progress, from),
        |(run, mut progress, cursor)| async move {
            loop {
                let done = progress.borrow_and_update().done;
                let events = run.events_from(cursor);
                if !events.is_empty() {
                    let next = cursor + events.len();
                    let chunk: Result<Bytes, std::io::Error> = Ok(Bytes::from(events.concat()));
                    return Some((chunk, (run, progress, next)));
                }
                if done || progress.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Body::from_stream(stream)
}

#[derive(Debug, Deserialize, Default)]
pub struct RetrieveQuery {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    starting_after: Option<u64>,
}

pub async fn retrieve(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<RetrieveQuery>,
) -> Result<Response, ApiError> {
    let user = caller.user.id;
    let stored = owned(&app, user, &id).await?;
    if query.stream != Some(true) {
        return Ok(Json(stored.response).into_response());
    }
    if !stored.background {
        return Err(ApiError::BadRequest(
            "Only background responses can be streamed after they were created.".into(),
        ));
    }
    let from = query.starting_after.map_or(0, |n| {
        usize::try_from(n).unwrap_or(usize::MAX).saturating_add(1)
    });
    if let Some(run) = app.runs.get(&id, user) {
        return Ok(sse(follow(run, from)));
    }
    let events = app
        .store
        .response_events(user, &id)
        .await?
        .unwrap_or_default();
    let rest: String = events.into_iter().skip(from).collect();
    Ok(sse(Body::from(rest)))
}

pub async fn delete(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(run) = app.runs.get(&id, caller.user.id) {
        run.request_cancel();
    }
    if !app.store.delete_response(caller.user.id, &id).await? {
        return Err(response_not_found(&id));
    }
    Ok(Json(
        json!({"id": id, "object": "response.deleted", "deleted": true}),
    ))
}

pub async fn cancel(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = caller.user.id;
    if !owned(&app, user, &id).await?.background {
        return Err(ApiError::BadRequest(
            "Only responses created with `background: true` can be cancelled.".into(),
        ));
    }
    if let Some(run) = app.runs.get(&id, user) {
        let mut progress = run.follow();
        run.request_cancel();
        let stopped = progress.wait_for(|p| p.done);
        let _ = tokio::time::timeout(CANCEL_WAIT, stopped).await;
    }
    // A run already over is returned as it ended: cancelling is idempotent.
    Ok(Json(owned(&app, user, &id).await?.response))
}

pub async fn input_items(
    State(app): State<App>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let stored = owned(&app, caller.user.id, &id).await?;
    Ok(Json(page(stored.input_items, &query, false)?))
}

async fn owned(app: &App, user_id: i64, id: &str) -> Result<StoredResponse, ApiError> {
    app.store
        .get_response(user_id, id)
        .await?
        .ok_or_else(|| response_not_found(id))
}

fn response_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Response with id '{id}'"))
}
