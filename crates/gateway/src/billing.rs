//! Billing: hold the worst case before forwarding, charge the exact cost after.

use std::sync::Arc;
use std::time::Instant;

use protocol::TokenUsage;
use store::{Reservation, ReserveOutcome, Settlement};

use crate::auth::Principal;
use crate::config::{HoldsMode, ModelSpec};
use crate::error::ApiError;
use crate::money::{cost_nano, Decimal};
use crate::state::App;

/// Rough bytes per token, used only to size holds and estimates.
const BYTES_PER_TOKEN: u64 = 4;

/// Output tokens to hold for: what the client asked for (else the model's or
/// the gateway's default), but never more than the model can produce — a
/// client asking for 32,000 tokens of a model capped at 8,192 holds 8,192.
pub fn output_allowance(requested: Option<u64>, model: &ModelSpec, default: u64) -> u64 {
    let wanted = requested.or(model.max_output_tokens).unwrap_or(default);
    match model.max_output_tokens {
        Some(cap) => wanted.min(cap),
        None => wanted,
    }
}

/// Everything needed to account for one metered request.
#[derive(Debug, Clone)]
pub struct Meter {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: String,
    pub endpoint: &'static str,
    pub model: Arc<ModelSpec>,
    pub stream: bool,
    /// Model multiplier × group multiplier.
    pub multiplier: Decimal,
    /// Size of the client's request body, for estimates.
    pub request_bytes: u64,
    pub started: Instant,
    pub created_at: i64,
    /// The amount held for this request, and whether the hold is in memory.
    pub held: i64,
    pub held_in_memory: bool,
}

/// How a metered request ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The upstream's own usage numbers, when it reported them.
    pub usage: Option<TokenUsage>,
    /// Output bytes seen, to estimate output tokens if usage never came.
    pub output_bytes: u64,
    /// HTTP status of the upstream response (or the gateway's error status).
    pub status: u16,
    pub error: Option<String>,
}

impl Meter {
    pub fn new(
        app: &App,
        principal: &Principal,
        request_id: &str,
        endpoint: &'static str,
        model: &Arc<ModelSpec>,
        stream: bool,
        request_bytes: usize,
    ) -> Meter {
        Meter {
            request_id: request_id.to_string(),
            user_id: principal.user.id,
            key_id: principal.key.id.clone(),
            endpoint,
            model: model.clone(),
            stream,
            multiplier: model
                .multiplier
                .times(&app.config.group_multiplier(&principal.user.group_name)),
            request_bytes: request_bytes as u64,
            started: Instant::now(),
            created_at: store::now_ms(),
            held: 0,
            held_in_memory: false,
        }
    }

    /// The most this request can cost: its prompt (estimated from its size)
    /// at the full input price plus `max_output` tokens per choice.
    pub fn worst_case(&self, max_output: u64, choices: u64) -> i64 {
        let usage = TokenUsage {
            input: self.request_bytes.div_ceil(BYTES_PER_TOKEN),
            output: max_output.saturating_mul(choices.max(1)),
            cached_input: 0,
            cache_write: 0,
        };
        cost_nano(&usage, &self.model.prices, &self.multiplier)
    }

    /// Places the hold, or refuses the request.
    pub async fn reserve(
        &mut self,
        app: &App,
        principal: &Principal,
        amount: i64,
    ) -> Result<(), ApiError> {
        if !app.config.billing {
            return Ok(());
        }
        match app.config.holds {
            HoldsMode::Memory => {
                app.ledger.reserve(principal, amount)?;
                self.held_in_memory = true;
            }
            HoldsMode::Database => {
                let reservation = Reservation {
                    request_id: self.request_id.clone(),
                    user_id: self.user_id,
                    key_id: self.key_id.clone(),
                    amount,
                    expires_at: store::now_ms() + (app.config.hold_ttl_secs as i64) * 1000,
                };
                match app.store.reserve(&reservation).await? {
                    ReserveOutcome::Held => {}
                    ReserveOutcome::InsufficientBalance => {
                        return Err(ApiError::InsufficientBalance)
                    }
                    ReserveOutcome::KeyLimitReached => return Err(ApiError::KeyLimitReached),
                }
            }
        }
        self.held = amount;
        Ok(())
    }

    /// Charges the exact cost of `outcome` (nothing for a failed request),
    /// releases the hold and records usage — through the settlement writer,
    /// which commits it shortly after, in a batch (see `settlement`).
    pub fn settle(&self, app: &App, outcome: Outcome) {
        let ok = (200..300).contains(&outcome.status);
        let mut error = outcome.error.clone();
        let usage = match (ok, outcome.usage) {
            (true, Some(u)) => u,
            // Nothing came back (e.g. a stream that stalled before its
            // first byte): a failed request, which costs nothing.
            (true, None) if outcome.output_bytes == 0 => TokenUsage::default(),
            (true, None) => {
                // The upstream served the request but reported no usage:
                // charge an estimate rather than nothing, and say so.
                error.get_or_insert_with(|| "usage not reported by upstream; estimated".into());
                TokenUsage {
                    input: self.request_bytes.div_ceil(BYTES_PER_TOKEN),
                    output: outcome.output_bytes.div_ceil(BYTES_PER_TOKEN),
                    cached_input: 0,
                    cache_write: 0,
                }
            }
            (false, u) => u.unwrap_or_default(),
        };
        let cost = if ok && (outcome.usage.is_some() || outcome.output_bytes > 0) {
            cost_nano(&usage, &self.model.prices, &self.multiplier)
        } else {
            0
        };
        let settlement = Settlement {
            request_id: self.request_id.clone(),
            user_id: self.user_id,
            key_id: self.key_id.clone(),
            endpoint: self.endpoint.to_string(),
            model: self.model.name.clone(),
            provider: self.model.provider.clone(),
            upstream_model: self.model.upstream_model.clone(),
            stream: self.stream,
            input_tokens: usage.input as i64,
            output_tokens: usage.output as i64,
            cached_tokens: usage.cached_input as i64,
            cache_write_tokens: usage.cache_write as i64,
            cost,
            latency_ms: self.started.elapsed().as_millis() as i64,
            status: i64::from(outcome.status),
            error,
            created_at: self.created_at,
        };
        if ok {
            app.metrics
                .record_usage(&self.model.name, usage.input, usage.output, cost);
        }
        if !app.config.billing {
            return;
        }
        let memory_hold = self.held_in_memory.then_some(self.held);
        app.settlements.push(settlement, memory_hold);
    }
}
