//! Steps 2 and 5 together, and step 8: what a request has taken — its rate
//! limits and its hold — opened before anything is sent and settled exactly
//! once when the upstream is done. An account dropped unsettled (its task
//! ended first, e.g. a panic) is settled as a failed request that costs
//! nothing: its hold released and its limits returned, rather than kept
//! until the next start.

use protocol::TokenUsage;

use super::limits;
use crate::auth::Principal;
use crate::billing::{charged_usage, Meter, Outcome};
use crate::error::ApiError;
use crate::limits::Admission;
use crate::state::App;

pub struct Account {
    app: App,
    pub meter: Meter,
    /// What it took of its rate limits, corrected when it settles.
    pub limits: Option<Admission>,
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
        let taken = limits::admit(app, principal, &meter.model.name, tokens)?;
        if let Err(refused) = meter.reserve(&app.billing, principal, worst_case).await {
            limits::settle(app, taken, &TokenUsage::default());
            return Err(refused.into());
        }
        Ok(Account {
            app: app.clone(),
            meter,
            limits: taken,
            settled: false,
            what,
        })
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Charges the request for `outcome`, releases its hold and corrects its
    /// limits to what it used — once, however often it is called.
    pub fn settle(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        if let Some(taken) = self.limits.take() {
            let (used, _) = charged_usage(&outcome, &self.meter.prompt);
            limits::settle(&self.app, Some(taken), &used);
        }
        self.meter.settle(&self.app.billing, outcome);
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
