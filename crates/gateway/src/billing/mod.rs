//! Billing: hold the worst case before forwarding, charge the exact cost after.
//!
//! The rules, in order:
//! 1. Before a request is forwarded it holds its worst case: every byte of
//!    the prompt as a token (no tokenizer yields more tokens than bytes),
//!    plus [`IMAGE_TOKENS`] for each image, at the dearest input price, plus
//!    its output allowance per choice ([`output_allowance`]).
//! 2. After it, the upstream's complete usage is charged exactly, once.
//! 3. Without complete usage (a broken stream, `usage: {}`, none at all), the
//!    charge is estimated from what was delivered ([`estimate`]), and the
//!    usage record says so.
//! 4. A charge never exceeds the hold: an upstream reporting more than the
//!    worst case is charged the hold, and the excess is logged and counted
//!    (`tollgate_charges_over_hold_total`). So no balance goes below zero.
//! 5. Failed requests cost nothing; requests in flight when the process
//!    died are recorded as interrupted at no charge ([`journal`]).

pub mod estimate;
pub mod journal;
pub mod ledger;
pub mod settlement;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::TokenUsage;
use store::{Reservation, ReserveOutcome, Settlement, Store, StoreError};

pub use estimate::Delivered;

use crate::auth::Principal;
use crate::config::{Config, HoldsMode, ModelSpec};
use crate::metrics::Metrics;
use crate::money::{cost_nano, unit_cost_nano, Decimal, MeterUnit};
use crate::routing::Route;
use crate::shared::HeldHere;
use journal::Journal;
use ledger::Ledger;
use settlement::SettlementQueue;

/// What billing works with: its settings and where holds and charges go.
/// A narrow handle, so that billing depends on none of the rest of the
/// gateway's state.
pub struct Billing {
    /// `false`: nothing is held, charged or recorded (benchmarks only).
    pub enabled: bool,
    pub holds: HoldsMode,
    /// A hold in the database whose request never settled is released
    /// after this.
    pub hold_ttl: Duration,
    /// Pending settlements past which new requests are shed.
    pub queue_limit: usize,
    pub store: Store,
    /// In-memory holds (`holds = "memory"`).
    pub ledger: Arc<Ledger>,
    /// Crash safety for settlements (`None` with billing off).
    pub journal: Option<Arc<Journal>>,
    /// Where finished requests go to be charged.
    pub settlements: SettlementQueue,
    pub metrics: Arc<Metrics>,
}

impl Billing {
    /// Billing as `config` sets it up, on the parts given.
    pub fn new(
        config: &Config,
        store: Store,
        ledger: Arc<Ledger>,
        journal: Option<Arc<Journal>>,
        settlements: SettlementQueue,
        metrics: Arc<Metrics>,
    ) -> Billing {
        Billing {
            enabled: config.billing,
            holds: config.holds(),
            hold_ttl: Duration::from_secs(config.hold_ttl_secs),
            queue_limit: config.limits.settlement_queue,
            store,
            ledger,
            journal,
            settlements,
            metrics,
        }
    }
}

/// Why a request could not be held for.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BillingError {
    #[error("the balance cannot cover the request")]
    InsufficientBalance,
    #[error("the key reached its spending limit")]
    KeyLimitReached,
    /// Too many settlements pending: the request is shed.
    #[error("the settlement queue is full")]
    Overloaded,
    #[error("database: {0}")]
    Store(String),
}

impl From<StoreError> for BillingError {
    fn from(e: StoreError) -> Self {
        BillingError::Store(e.to_string())
    }
}

/// Rough bytes per token, for a prompt estimate without a tokenizer.
const BYTES_PER_TOKEN: u64 = 4;
/// Most tokens one image in a prompt can cost (OpenAI's largest high-detail
/// tiling and Anthropic's ~1,600 for a full-size image both stay below).
pub const IMAGE_TOKENS: u64 = 3_000;

/// A token count as a database integer (counts past i64 are absurd anyway).
fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How many images a request body carries (OpenAI `image_url` /
/// `input_image` parts, Anthropic `image` blocks). A byte scan: cheap (SIMD
/// substring search with finders built once), and it can only over-count,
/// which keeps the hold a worst case.
pub fn image_parts(body: &[u8]) -> u64 {
    use memchr::memmem::Finder;
    static MARKERS: std::sync::LazyLock<[Finder<'static>; 3]> = std::sync::LazyLock::new(|| {
        [
            Finder::new(b"\"image_url\""),
            Finder::new(b"\"input_image\""),
            Finder::new(b"\"image\""),
        ]
    });
    MARKERS
        .iter()
        .map(|m| m.find_iter(body).count() as u64)
        .sum()
}

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
    /// The request's usage record with nothing used yet: who, what and
    /// when, whatever the outcome (built once: it is also the journal's
    /// start line).
    record: Settlement,
    pub model: Arc<ModelSpec>,
    /// Model multiplier × group multiplier.
    pub multiplier: Decimal,
    /// Size of the client's request body, for estimates.
    pub request_bytes: u64,
    /// For a model metered in another unit than tokens: the price of one
    /// `model.unit.per()` of it (an image's by its size and quality).
    pub unit_price: Decimal,
    /// What the prompt is estimated from when the upstream reports no usage.
    pub prompt: Prompt,
    pub started: Instant,
    /// The amount held for this request, and where.
    pub held: i64,
    pub held_in: HeldIn,
    /// The request's lines in the settlement journal, once started.
    pub journal_entry: Option<journal::Entry>,
}

/// The source of a prompt estimate, used only when the upstream reports no
/// input count: estimated lazily, since most requests never need it.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// The client's request body.
    Body(Bytes),
    /// Tokens already estimated (e.g. a Responses turn's whole history).
    Tokens(u64),
}

impl Prompt {
    fn tokens(&self) -> u64 {
        match self {
            Prompt::Tokens(n) => *n,
            Prompt::Body(body) => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(value) => crate::tokens::estimate_value(&value),
                Err(_) => (body.len() as u64).div_ceil(BYTES_PER_TOKEN),
            },
        }
    }
}

/// Where a request's hold is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldIn {
    /// Nothing held (billing off, or not yet).
    Nowhere,
    /// This instance's ledger.
    Memory,
    /// A row of `holds`, released in the settlement's own transaction.
    Database,
    /// Redis, shared by the instances (see [`crate::shared`]).
    Redis,
}

/// What the settlement writer releases once a settlement is committed.
#[derive(Debug, Clone)]
pub enum Release {
    Memory(i64),
    Redis(HeldHere),
}

/// How a metered request ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The upstream's own complete usage, when it reported it.
    pub usage: Option<TokenUsage>,
    /// What was delivered, to estimate from when `usage` never came.
    pub delivered: Delivered,
    /// HTTP status of the upstream response (or the gateway's error status).
    pub status: u16,
    pub error: Option<String>,
}

/// The usage to charge for an outcome, and a note when it is an estimate.
/// Pure, so the charging rules are tested without a server.
pub fn charged_usage(outcome: &Outcome, prompt: &Prompt) -> (TokenUsage, Option<String>) {
    let ok = (200..300).contains(&outcome.status);
    match (ok, outcome.usage) {
        (true, Some(u)) => (u, None),
        // Nothing came back (e.g. a stream that stalled before its first
        // event, or a body that was not an answer): a failed request.
        (true, None) if !outcome.delivered.anything && outcome.delivered.input.is_none() => {
            (TokenUsage::default(), None)
        }
        (true, None) => {
            let d = &outcome.delivered;
            let input = d.input.unwrap_or_else(|| TokenUsage {
                input: prompt.tokens(),
                ..TokenUsage::default()
            });
            let usage = TokenUsage {
                output: d.output_tokens,
                ..input
            };
            (
                usage,
                Some(
                    "usage not reported by the upstream: estimated from what was delivered".into(),
                ),
            )
        }
        (false, _) => (TokenUsage::default(), None),
    }
}

impl Meter {
    pub fn new(
        principal: &Principal,
        request_id: &str,
        endpoint: &'static str,
        route: &Route,
        stream: bool,
        body: &Bytes,
    ) -> Meter {
        let model = &route.model;
        let record = Settlement {
            request_id: request_id.to_string(),
            user_id: principal.user.id,
            key_id: principal.key.id.clone(),
            endpoint: endpoint.to_string(),
            model: model.name.clone(),
            provider: model.provider.clone(),
            upstream_model: model.upstream_model.clone(),
            stream,
            created_at: store::now_ms(),
            ..Settlement::default()
        };
        Meter {
            record,
            model: model.clone(),
            multiplier: model
                .multiplier
                .times(&route.catalog.group_multiplier(&principal.user.group_name)),
            request_bytes: body.len() as u64,
            unit_price: model.unit_price,
            prompt: Prompt::Body(body.clone()),
            started: Instant::now(),
            held: 0,
            held_in: HeldIn::Nowhere,
            journal_entry: None,
        }
    }

    /// The request moved to another channel of its model (same prices):
    /// its usage record names the one that serves.
    pub fn serve_by(&mut self, model: &Arc<ModelSpec>) {
        self.record.provider = model.provider.clone();
        self.record.upstream_model = model.upstream_model.clone();
        self.model = model.clone();
    }

    /// The most a request metered in units can cost: `quantity` of them.
    pub fn worst_case_units(&self, quantity: u64) -> i64 {
        unit_cost_nano(
            quantity,
            &self.unit_price,
            self.model.unit,
            &self.multiplier,
        )
    }

    /// What `usage` costs: tokens at the model's prices, or, for a model
    /// metered in another unit, its quantity (in `usage.input`) at the unit
    /// price.
    fn cost_of(&self, usage: &TokenUsage) -> i64 {
        match self.model.unit {
            MeterUnit::Tokens => cost_nano(usage, &self.model.prices, &self.multiplier),
            unit => unit_cost_nano(usage.input, &self.unit_price, unit, &self.multiplier),
        }
    }

    /// The most this request can cost (rule 1 above): every prompt byte as a
    /// token plus `images` images, at the dearer of the input and
    /// cache-write prices, plus `max_output` tokens per choice.
    pub fn worst_case(&self, max_output: u64, choices: u64, images: u64) -> i64 {
        let prices = &self.model.prices;
        let input = self
            .request_bytes
            .saturating_add(images.saturating_mul(IMAGE_TOKENS));
        let writes_dearer = prices.cache_write_dearer();
        let usage = TokenUsage {
            input,
            output: max_output.saturating_mul(choices.max(1)),
            cached_input: 0,
            cache_write: if writes_dearer { input } else { 0 },
        };
        cost_nano(&usage, prices, &self.multiplier)
    }

    /// Places the hold, or refuses the request.
    pub async fn reserve(
        &mut self,
        billing: &Billing,
        principal: &Principal,
        amount: i64,
    ) -> Result<(), BillingError> {
        self.begin(billing)?;
        let held = self.place_hold(billing, principal, amount).await;
        if held.is_err() {
            self.abandon(billing);
        }
        held
    }

    /// What comes before any hold: the request is shed when too many
    /// settlements are pending, and journaled.
    pub fn begin(&mut self, billing: &Billing) -> Result<(), BillingError> {
        if !billing.enabled {
            return Ok(());
        }
        // The settlement queue is bounded: past its limit new requests are
        // shed (503) rather than letting it grow without end.
        if billing.settlements.backlog() >= billing.queue_limit {
            billing.metrics.record_shed("settlement_queue");
            return Err(BillingError::Overloaded);
        }
        // Journaled before the hold exists, so that a crash at any moment
        // after it leaves no hold the next start does not know of.
        if let Some(journal) = &billing.journal {
            // Its empty record: what replay writes if it never finishes.
            self.journal_entry = journal.start(&self.record);
        }
        Ok(())
    }

    /// The hold was refused after [`Meter::begin`]: its journal lines go.
    pub fn abandon(&mut self, billing: &Billing) {
        if let (Some(journal), Some(entry)) = (&billing.journal, self.journal_entry.take()) {
            journal.cancel(entry, &self.record.request_id);
        }
    }

    /// The hold was taken in Redis, with the rate limits.
    pub fn held_in_redis(&mut self, amount: i64) {
        self.held = amount;
        self.held_in = HeldIn::Redis;
    }

    pub fn request_id(&self) -> &str {
        &self.record.request_id
    }

    async fn place_hold(
        &mut self,
        billing: &Billing,
        principal: &Principal,
        amount: i64,
    ) -> Result<(), BillingError> {
        match billing.holds {
            // In Redis mode a hold reaches here only when Redis is away and
            // the policy says to admit on this instance's own ledger.
            HoldsMode::Memory | HoldsMode::Redis => {
                billing.ledger.reserve(principal, amount)?;
                self.held_in = HeldIn::Memory;
            }
            HoldsMode::Database => {
                let reservation = Reservation {
                    request_id: self.record.request_id.clone(),
                    user_id: self.record.user_id,
                    key_id: self.record.key_id.clone(),
                    amount,
                    expires_at: store::now_ms() + billing.hold_ttl.as_millis() as i64,
                };
                match billing.store.reserve(&reservation).await? {
                    ReserveOutcome::Held => {}
                    ReserveOutcome::InsufficientBalance => {
                        return Err(BillingError::InsufficientBalance)
                    }
                    ReserveOutcome::KeyLimitReached => return Err(BillingError::KeyLimitReached),
                }
                self.held_in = HeldIn::Database;
            }
        }
        self.held = amount;
        Ok(())
    }

    /// What the request is charged, from its outcome: the rules at the top
    /// of this file, and nothing else (no I/O, unit-tested).
    pub fn charge(&self, outcome: &Outcome, billing: bool) -> Charge {
        let ok = (200..300).contains(&outcome.status);
        let (usage, estimated) = charged_usage(outcome, &self.prompt);
        let mut notes: Vec<String> = outcome.error.iter().cloned().collect();
        let is_estimate = estimated.is_some();
        notes.extend(estimated);
        let mut cost = if ok { self.cost_of(&usage) } else { 0 };
        let mut over_hold = None;
        if billing && cost > self.held {
            // Rule 4: the hold was the worst case; more means the upstream
            // reported more than the request could have used.
            over_hold = Some(cost - self.held);
            notes.push(format!(
                "reported usage cost {cost} nano-USD, above the hold; charged the hold"
            ));
            cost = self.held;
        }
        let settlement = Settlement {
            input_tokens: clamp_i64(usage.input),
            output_tokens: clamp_i64(usage.output),
            cached_tokens: clamp_i64(usage.cached_input),
            cache_write_tokens: clamp_i64(usage.cache_write),
            cost,
            latency_ms: self.started.elapsed().as_millis() as i64,
            status: i64::from(outcome.status),
            error: (!notes.is_empty()).then(|| notes.join("; ")),
            unit: match self.model.unit {
                MeterUnit::Tokens => String::new(),
                unit => unit.counted().to_string(),
            },
            ..self.record.clone()
        };
        Charge {
            settlement,
            usage,
            estimated: is_estimate,
            over_hold,
        }
    }

    /// Charges the exact cost of `outcome` (nothing for a failed request),
    /// releases the hold and records usage — through the settlement writer,
    /// which commits it shortly after, in a batch (see `settlement`).
    pub fn settle(&self, billing: &Billing, outcome: Outcome) {
        let Charge {
            settlement,
            usage,
            estimated,
            over_hold,
        } = self.charge(&outcome, billing.enabled);
        if estimated {
            billing.metrics.record_estimate(&self.model.name);
        }
        if let Some(excess) = over_hold {
            tracing::warn!(
                request_id = %settlement.request_id, model = %self.model.name,
                cost = settlement.cost + excess, held = self.held,
                "upstream usage costs more than the request's worst case; charging the hold"
            );
            billing.metrics.record_over_hold(&self.model.name, excess);
        }
        if (200..300).contains(&outcome.status) {
            billing.metrics.record_usage(
                &self.model.name,
                usage.input,
                usage.output,
                settlement.cost,
            );
        }
        if !billing.enabled {
            return;
        }
        let release = match self.held_in {
            HeldIn::Memory => Some(Release::Memory(self.held)),
            HeldIn::Redis => Some(Release::Redis(HeldHere::new(
                self.record.user_id,
                &self.record.key_id,
                &self.record.request_id,
            ))),
            // A database hold is released in the settlement's transaction.
            HeldIn::Database | HeldIn::Nowhere => None,
        };
        // If the settle line could not be written, the start line stays
        // open (replay would record the request as interrupted) and is
        // released with the settlement's commit all the same.
        let journal_entry = billing
            .journal
            .as_ref()
            .and_then(|journal| journal.settle(self.journal_entry, &settlement))
            .or(self.journal_entry);
        billing.settlements.push(settlement, release, journal_entry);
    }
}

/// What a request is charged ([`Meter::charge`]).
#[derive(Debug)]
pub struct Charge {
    /// The usage record, with the cost charged.
    pub settlement: Settlement,
    /// The usage the cost is computed from (before any cap at the hold).
    pub usage: TokenUsage,
    /// The usage was estimated from what was delivered (rule 2).
    pub estimated: bool,
    /// What the reported usage cost beyond the hold, not charged (rule 4).
    pub over_hold: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Prices;

    #[test]
    fn image_parts_counts_every_kind_of_image_part() {
        let openai = br#"{"messages":[{"role":"user","content":[{"type":"text","text":"two"},
            {"type":"image_url","image_url":{"url":"https://a/1.png"}},
            {"type":"image_url","image_url":{"url":"https://a/2.png"}}]}]}"#;
        // Each part names its type and its field: a worst case, by design.
        assert_eq!(image_parts(openai), 4);
        let anthropic =
            br#"{"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}"#;
        assert_eq!(image_parts(anthropic), 1);
        let responses =
            br#"{"input":[{"role":"user","content":[{"type":"input_image","image_url":"u"}]}]}"#;
        assert_eq!(image_parts(responses), 2);
        assert_eq!(
            image_parts(br#"{"messages":[{"role":"user","content":"an image"}]}"#),
            0
        );
        assert_eq!(image_parts(b""), 0);
    }

    /// A request for a model at 2.5 / 10 USD per million tokens, holding `held`.
    fn meter(held: i64) -> Meter {
        let price = |p: &str| Decimal::parse(p).unwrap();
        let model = ModelSpec {
            name: "m".into(),
            provider: "p".into(),
            upstream_model: "m-up".into(),
            prices: Prices {
                input: price("2.5"),
                output: price("10"),
                cached_input: price("1.25"),
                cache_write: price("2.5"),
            },
            unit: crate::money::MeterUnit::Tokens,
            unit_price: Decimal::ZERO,
            image_prices: Default::default(),
            multiplier: Decimal::ONE,
            max_output_tokens: None,
            images: false,
            channels: Vec::new(),
        };
        Meter {
            record: Settlement {
                request_id: "req_1".into(),
                ..Settlement::default()
            },
            model: Arc::new(model),
            multiplier: Decimal::ONE,
            request_bytes: 40,
            unit_price: Decimal::ZERO,
            prompt: Prompt::Tokens(12),
            started: Instant::now(),
            held,
            held_in: HeldIn::Memory,
            journal_entry: None,
        }
    }

    fn reported(input: u64, output: u64) -> Outcome {
        Outcome {
            usage: Some(TokenUsage {
                input,
                output,
                ..TokenUsage::default()
            }),
            status: 200,
            ..Outcome::default()
        }
    }

    #[test]
    fn reported_usage_is_charged_exactly() {
        let charge = meter(1_000_000_000).charge(&reported(1_000, 500), true);
        // 1,000 × 2.5 + 500 × 10 USD per million = 0.0075 USD.
        assert_eq!(charge.settlement.cost, 7_500_000);
        assert_eq!(
            (
                charge.settlement.input_tokens,
                charge.settlement.output_tokens
            ),
            (1_000, 500)
        );
        assert_eq!((charge.estimated, charge.over_hold), (false, None));
        assert_eq!(charge.settlement.error, None);
        assert_eq!(charge.settlement.request_id, "req_1");
    }

    #[test]
    fn a_failed_request_is_free_and_says_why() {
        let outcome = Outcome {
            status: 502,
            error: Some("upstream request failed".into()),
            ..reported(1_000, 500)
        };
        let charge = meter(1_000_000_000).charge(&outcome, true);
        assert_eq!(charge.settlement.cost, 0);
        assert_eq!(charge.settlement.status, 502);
        assert_eq!(
            charge.settlement.error.as_deref(),
            Some("upstream request failed")
        );
    }

    #[test]
    fn missing_usage_is_estimated_from_what_was_delivered_and_marked() {
        let outcome = Outcome {
            usage: None,
            delivered: Delivered {
                input: None,
                output_tokens: 30,
                anything: true,
            },
            status: 200,
            error: Some("upstream stream broke".into()),
        };
        let charge = meter(1_000_000_000).charge(&outcome, true);
        assert!(charge.estimated);
        // The prompt's estimate (12) and the delivered text's count (30).
        assert_eq!(
            (
                charge.settlement.input_tokens,
                charge.settlement.output_tokens
            ),
            (12, 30)
        );
        assert_eq!(charge.settlement.cost, 12 * 2_500 + 30 * 10_000);
        let note = charge.settlement.error.unwrap();
        assert!(
            note.starts_with("upstream stream broke; usage not reported"),
            "{note}"
        );
    }

    #[test]
    fn a_charge_above_the_hold_is_capped_at_the_hold_when_billing() {
        let charge = meter(1_000_000).charge(&reported(1_000, 500), true);
        assert_eq!(charge.settlement.cost, 1_000_000);
        assert_eq!(charge.over_hold, Some(6_500_000));
        assert!(charge.settlement.error.unwrap().contains("above the hold"));
        // Without billing there is no hold to cap at: the record shows the cost.
        let unbilled = meter(0).charge(&reported(1_000, 500), false);
        assert_eq!(
            (unbilled.settlement.cost, unbilled.over_hold),
            (7_500_000, None)
        );
    }
}
