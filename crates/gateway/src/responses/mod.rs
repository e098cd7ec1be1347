//! The Responses API: a request becomes a [`run::Turn`] — its history
//! resolved from `previous_response_id` or a conversation, its upstream body
//! built for an upstream that speaks Responses or emulated over chat
//! completions or Anthropic messages — which [`run`] drives to its end.

pub mod events;
pub mod history;
pub mod registry;
pub mod run;

use protocol::translate::responses_via_chat;
use serde_json::{json, Map, Value};
use store::StoredResponse;

use crate::auth::Principal;
use crate::billing::{output_allowance, Meter};
use crate::error::ApiError;
use crate::pipeline::rules::UpstreamEdits;
use crate::pipeline::{Account, Failover, Planner};
use crate::providers::{ResponsesCall, ResponsesUpstream};
use crate::routing::AffinityKey;
use crate::secrets::new_object_id;
use crate::state::App;
use run::Turn;

/// Largest upstream body a turn may build from its history (a client's own
/// body is limited the same way): beyond it, no upstream would accept it.
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// A Responses request, ready to run.
pub struct Prepared {
    pub turn: Turn,
    /// The model's other channels, should the turn's fail before answering.
    pub failover: Failover<ResponsesUpstream>,
    pub stream: bool,
    pub background: bool,
}

/// When an object stored now expires under the configured retention.
pub fn expires_at(app: &App) -> Option<i64> {
    match app.config.stored_retention_days {
        0 => None,
        days => Some(store::now_ms() + days as i64 * 86_400_000),
    }
}

/// Marks as failed the background runs that died with their process (an
/// instance that stopped without finishing them): nothing will ever finish
/// them, and a poller should not wait forever. A run counts as dead once
/// its hold would have been released (`hold_ttl_secs`).
pub async fn fail_abandoned_runs(app: &App) {
    let before = store::now_ms() - app.config.hold_ttl_secs as i64 * 1000;
    let stale = match app.store.stale_background_responses(before).await {
        Ok(stale) => stale,
        Err(e) => return tracing::warn!(error = %e, "could not look for abandoned background runs"),
    };
    for mut record in stale {
        if app.runs.get(&record.id, record.user_id).is_some() {
            continue;
        }
        record.status = "failed".into();
        record.response["status"] = json!("failed");
        record.response["error"] = json!({
            "code": "server_error",
            "message": "The background run was interrupted: the gateway running it stopped.",
        });
        if let Err(e) = app.store.fail_stale_response(&record, before).await {
            tracing::warn!(error = %e, id = %record.id, "could not mark an abandoned run as failed");
        }
    }
}

/// Checks a Responses request, resolves its history, places its hold and
/// builds its upstream request.
pub async fn prepare(
    app: &App,
    principal: &Principal,
    request_id: &str,
    params: Map<String, Value>,
    client_bytes: usize,
    upstream_edits: UpstreamEdits,
) -> Result<Prepared, ApiError> {
    let model_name = params
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("`model` is required.".into()))?;
    let stream = flag(&params, "stream", false)?;
    let background = flag(&params, "background", false)?;
    let store = flag(&params, "store", true)?;
    let requested = max_output_tokens(&params)?;
    let affinity = AffinityKey::of_responses(principal.user.id, &params);
    let route = app.route(principal, model_name, affinity)?;
    crate::pipeline::tokens_only(&route.model)?;
    if background && !store {
        return Err(ApiError::BadRequest(
            "Background responses must be stored: `background: true` needs `store: true`.".into(),
        ));
    }
    let previous = params.get("previous_response_id").and_then(Value::as_str);
    let conversation = history::conversation_id(&params)?;
    let earlier = match (previous, &conversation) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "`previous_response_id` and `conversation` cannot be used together.".into(),
            ))
        }
        (Some(id), None) => history::chain(app, principal.user.id, id).await?,
        (None, Some(id)) => history::conversation(app, principal.user.id, id).await?,
        (None, None) => Vec::new(),
    };
    let input = params
        .get("input")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let mut input_items =
        responses_via_chat::input_items(&input).map_err(|e| ApiError::BadRequest(e.0))?;
    for item in &mut input_items {
        history::give_id(item);
    }
    if earlier.is_empty() && input_items.is_empty() {
        return Err(ApiError::BadRequest("`input` is required.".into()));
    }
    let mut items = earlier;
    items.extend(input_items.iter().cloned());

    let id = new_object_id("resp");
    let created_at = store::now_ms() / 1000;
    let mut skeleton =
        responses_via_chat::response_skeleton(&params, &id, &route.model.name, created_at);
    if background {
        skeleton["status"] = json!("queued");
    }
    let allowance = output_allowance(requested, &route.model, app.config.default_max_tokens);
    let cap = requested.map(|r| r.min(allowance));
    let mut estimated_input = crate::tokens::estimate_value(&Value::Array(items.clone()));
    if let Some(instructions) = params.get("instructions") {
        estimated_input += crate::tokens::estimate_value(instructions);
    }
    let planner: Planner<ResponsesUpstream> = {
        let (params, skeleton) = (params.clone(), skeleton.clone());
        Box::new(move |target| {
            let planned = target.provider.adapter.responses(
                target,
                ResponsesCall {
                    params: &params,
                    items: &items,
                    cap,
                    allowance,
                    skeleton: &skeleton,
                },
            )?;
            if planned.body.len() > MAX_UPSTREAM_BODY {
                return Err(ApiError::BadRequest(format!(
                    "The conversation is too long: with its history this request would send {} MB upstream (the limit is {} MB). Start a new conversation or send fewer items.",
                    planned.body.len() / 1_000_000,
                    MAX_UPSTREAM_BODY / 1_000_000
                )));
            }
            Ok(planned)
        })
    };
    let (
        mut failover,
        route,
        ResponsesUpstream {
            path,
            body,
            forwarded,
            events,
        },
    ) = Failover::start(app, route, planner, upstream_edits)?;
    // The turn that continues this one comes back to where it is served
    // (only a stored response can be continued).
    if store {
        failover.remember_as(AffinityKey::of_response(principal.user.id, &id));
    }
    let mut meter = Meter::new(
        principal,
        request_id,
        "responses",
        &route,
        stream || background,
        &bytes::Bytes::new(),
    );
    // The prompt the upstream sees includes the whole history.
    meter.request_bytes = (client_bytes as u64).max(body.len() as u64);
    meter.prompt = crate::billing::Prompt::Tokens(estimated_input);
    let worst_case = meter.worst_case(allowance, 1, crate::billing::image_parts(&body));
    let tokens = estimated_input.saturating_add(allowance);
    let account = Account::open(app, principal, meter, tokens, worst_case, "run").await?;

    let record = StoredResponse {
        id,
        user_id: principal.user.id,
        previous_response_id: previous.map(str::to_string),
        conversation_id: conversation.clone(),
        status: skeleton["status"]
            .as_str()
            .unwrap_or("in_progress")
            .to_string(),
        background,
        response: skeleton,
        input_items,
        created_at: store::now_ms(),
    };
    Ok(Prepared {
        turn: Turn {
            account,
            provider: route.provider,
            path,
            body,
            forwarded,
            events,
            record,
            store,
            conversation,
            estimated_input,
            deadline: None,
        },
        failover,
        stream,
        background,
    })
}

/// Most output tokens a request may ask for (OpenAI's own bound); a cap
/// above the model's `max_output_tokens` is held to the model's.
const MAX_OUTPUT_TOKENS: u64 = u32::MAX as u64;

/// A boolean parameter: absent or `null` is `default`; anything else but a
/// boolean is refused, as chat completions refuse it (`"false"` is not false).
fn flag(params: &Map<String, Value>, name: &str, default: bool) -> Result<bool, ApiError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::BadRequest(format!(
            "Invalid type for `{name}`: expected a boolean, but got {} instead.",
            json_kind(other)
        ))),
    }
}

/// `max_output_tokens`: absent, `null`, or an integer from 1 to 2^32 − 1.
fn max_output_tokens(params: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    match params.get("max_output_tokens") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if (1..=MAX_OUTPUT_TOKENS).contains(&n) => Ok(Some(n)),
            _ => {
                let shown: String = value.to_string().chars().take(40).collect();
                Err(ApiError::BadRequest(format!(
                    "Invalid `max_output_tokens`: expected an integer from 1 to {MAX_OUTPUT_TOKENS}, but got {shown}."
                )))
            }
        },
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
