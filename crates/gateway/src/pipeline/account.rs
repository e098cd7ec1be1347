//! Steps 2 and 5 together, and step 8: what a request has taken — its rate
//! limits and its hold — opened before anything is sent and settled exactly
//! once when the upstream is done. An account dropped unsettled (its task
//! ended first, e.g. a panic) is settled as a failed request that costs
//! nothing: its hold released and its limits returned, rather than kept
//! until the next start.
//!
//! With Redis (`redis_url`), the limits and the hold are taken in one call
//! there, atomically; when Redis cannot be reached, `[redis] on_failure`
//! decides: refuse, or count on this instance alone and say so.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use protocol::TokenUsage;

use super::limits::{self, Taken};
use crate::auth::Principal;
use crate::billing::{charged_usage, BillingError, Meter, Outcome};
use crate::config::{HoldsMode, OnRedisFailure};
use crate::error::{ApiError, Shape};
use crate::limits::Check;
use crate::shared::{Hold, NotAdmitted, Shared};
use crate::state::App;
use store::{KeyFigures, UserFigures};

/// The most an answer's end waits for its lease to be returned in Redis.
const RETURN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

pub struct Account {
    app: App,
    pub meter: Meter,
    /// What it took of its rate limits, corrected when it settles.
    limits: Option<Taken>,
    /// Counted on this instance alone: Redis could not be reached.
    limits_local: bool,
    /// The limits being returned in Redis, after settlement.
    returning: Option<tokio::task::JoinHandle<()>>,
    settled: bool,
    /// What the usage record of an account dropped unsettled says ended.
    what: &'static str,
}

impl Account {
    /// Counts the request in its rate limits (estimated at `tokens`), then
    /// holds `worst_case`; a hold refused returns the limits taken.
    pub async fn open(
        app: &App,
        principal: &Principal,
        mut meter: Meter,
        tokens: u64,
        worst_case: i64,
        what: &'static str,
    ) -> Result<Account, ApiError> {
        let checks = limits::checks(
            &app.config.rate_limits,
            principal,
            Some(&meter.model.name),
            store::now_ms(),
        );
        let mut limits_local = false;
        if let Some(shared) = &app.shared {
            match open_shared(
                app, shared, principal, &mut meter, &checks, tokens, worst_case,
            )
            .await
            {
                Ok(Some(taken)) => return Ok(Account::new(app, meter, taken, false, what)),
                Ok(None) => {}
                Err(NotAdmitted::Limited(refusal)) => {
                    return Err(limits::refused(app, principal, refusal, true))
                }
                Err(NotAdmitted::Billing(refused)) => return Err(refused.into()),
                Err(NotAdmitted::NeedsFigures) => return Err(ApiError::Internal),
                Err(NotAdmitted::Unavailable(_)) => match shared.on_failure {
                    OnRedisFailure::Closed => return Err(ApiError::LimitsUnavailable),
                    OnRedisFailure::Local => limits_local = true,
                },
            }
        }
        let taken = limits::admit_local(app, principal, checks, tokens)?;
        if let Err(refused) = meter.reserve(&app.billing, principal, worst_case).await {
            let _ = limits::settle(app, taken, &TokenUsage::default());
            return Err(refused.into());
        }
        if limits_local {
            app.metrics.record_admitted_locally();
        }
        Ok(Account::new(app, meter, taken, limits_local, what))
    }

    fn new(
        app: &App,
        meter: Meter,
        limits: Option<Taken>,
        limits_local: bool,
        what: &'static str,
    ) -> Account {
        Account {
            app: app.clone(),
            meter,
            limits,
            limits_local,
            returning: None,
            settled: false,
            what,
        }
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// The `x-ratelimit-*` headers for the client.
    pub fn limit_headers(&self, shape: Shape) -> Vec<(HeaderName, HeaderValue)> {
        limits::headers(self.limits.as_ref(), self.limits_local, shape)
    }

    /// Charges the request for `outcome`, releases its hold and corrects its
    /// limits to what it used — once, however often it is called.
    pub fn settle(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        if let Some(taken) = self.limits.take() {
            let (used, _) = charged_usage(&outcome, &self.meter.prompt);
            self.returning = limits::settle(&self.app, Some(taken), &used);
        }
        self.meter.settle(&self.app.billing, outcome);
    }

    /// Waits until the limits a settled request took are returned (at once
    /// but in Redis, where it is one round trip).
    pub async fn limits_returned(&mut self) {
        if let Some(returning) = self.returning.take() {
            // Bounded: when Redis fails the call is retried in the
            // background, and the answer goes out meanwhile.
            let _ = tokio::time::timeout(RETURN_WAIT, returning).await;
        }
    }
}

/// Takes the limits, and the hold when holds live in Redis, in one call.
/// `Ok(None)`: nothing to take there (no limit, hold elsewhere) — and the
/// hold, if any, is still to take.
async fn open_shared(
    app: &App,
    shared: &Arc<Shared>,
    principal: &Principal,
    meter: &mut Meter,
    checks: &[Check],
    tokens: u64,
    worst_case: i64,
) -> Result<Option<Option<Taken>>, NotAdmitted> {
    let billing = &app.billing;
    let hold_here = billing.enabled && billing.holds == HoldsMode::Redis;
    if !hold_here && checks.is_empty() {
        return Ok(None);
    }
    if hold_here {
        meter.begin(billing).map_err(NotAdmitted::Billing)?;
    }
    let (user, key) = Hold::figures(&principal.user, &principal.key);
    let hold = hold_here.then(|| Hold {
        request_id: meter.request_id(),
        amount: worst_case,
        user,
        key,
        fresh: false,
    });
    let mut admitted = shared.admit(checks, tokens, hold).await;
    if matches!(admitted, Err(NotAdmitted::NeedsFigures)) {
        // Redis has no figures for this user or key (first use, or Redis
        // restarted): the database's, not the auth cache's, which may
        // predate charges Redis no longer knows of.
        admitted = match fresh_figures(app, principal).await {
            Ok((user, key)) => {
                let hold = Hold {
                    request_id: meter.request_id(),
                    amount: worst_case,
                    user,
                    key,
                    fresh: true,
                };
                shared.admit(checks, tokens, Some(hold)).await
            }
            Err(e) => Err(NotAdmitted::Billing(e)),
        };
    }
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(not) => {
            if hold_here {
                meter.abandon(billing);
            }
            return Err(not);
        }
    };
    let taken = Some(Taken::Shared(shared.clone(), ticket));
    if hold_here {
        meter.held_in_redis(worst_case);
    } else if let Err(refused) = meter.reserve(billing, principal, worst_case).await {
        let _ = limits::settle(app, taken, &TokenUsage::default());
        return Err(NotAdmitted::Billing(refused));
    }
    Ok(Some(taken))
}

/// The user's and key's figures as the database has them now.
async fn fresh_figures(
    app: &App,
    principal: &Principal,
) -> Result<(UserFigures, KeyFigures), BillingError> {
    let store = &app.store;
    let users = store.balances(&[principal.user.id]).await?;
    let keys = store
        .key_spending(std::slice::from_ref(&principal.key.id))
        .await?;
    match (users.into_iter().next(), keys.into_iter().next()) {
        (Some(user), Some(key)) => Ok((user, key)),
        _ => Err(BillingError::Store("the user or key is gone".into())),
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        if !self.settled {
            tracing::error!(
                what = self.what,
                "ended before it was settled; released at no charge"
            );
            self.settle(Outcome {
                status: 500,
                error: Some(format!("the {} ended before it was settled", self.what)),
                ..Outcome::default()
            });
        }
    }
}
