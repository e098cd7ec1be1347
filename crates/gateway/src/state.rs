//! The application state every handler shares, built once at start-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::Config;
use crate::metrics::Metrics;

pub type App = Arc<AppState>;

pub struct AppState {
    pub config: Config,
    /// Providers, models, channels and group multipliers: reloadable.
    pub catalog: crate::catalog::Catalogs,
    /// Rate limits of this instance.
    pub limiter: crate::limits::Limiter,
    /// Limits and holds shared with other instances (`redis_url`).
    pub shared: Option<Arc<crate::shared::Shared>>,
    /// The keys rate limits refused, counted for the operator.
    pub rate_refusals: crate::limits::refusals::Refusals,
    /// The override rules in force, per owner.
    pub rule_book: crate::overrides::RuleBook,
    /// Which channel served each conversation last.
    pub affinity: crate::routing::affinity::Affinity,
    pub store: store::Store,
    pub metrics: Arc<Metrics>,
    /// Upstream work still running (streams, settlements), awaited at shutdown.
    pub in_flight: InFlight,
    pub admin_token_hash: String,
    pub auth_cache: crate::auth::AuthCache,
    /// Holds, charges, the journal and the settlement writer.
    pub billing: crate::billing::Billing,
    /// Responses runs in progress on this instance.
    pub runs: crate::responses::registry::Registry,
    /// Users' files: storage and its settings.
    pub files: crate::files::Files,
    /// Top-ups, when a payment processor is configured.
    pub payments: Option<Arc<crate::payments::Payments>>,
    /// Failed console logins, per account and per address.
    pub login_throttle: crate::console::Throttle,
    /// Sign-up attempts per address (a few an hour).
    pub signup_throttle: crate::console::Throttle,
    /// Accounts sign-up made this hour, all addresses together.
    pub signups_made: crate::console::Throttle,
    /// When this instance started.
    pub started: std::time::Instant,
}

impl AppState {
    /// Step 3 of the pipeline: routes `model` in the catalog in force (see
    /// [`crate::routing::route`]).
    pub fn route(
        &self,
        principal: &crate::auth::Principal,
        model: &str,
        key: Option<crate::routing::AffinityKey>,
    ) -> Result<crate::routing::Route, crate::routing::RouteError> {
        crate::routing::route(
            self.catalog.load(),
            &self.affinity,
            self.config.failover.health().cooldown,
            principal,
            model,
            key,
        )
    }
}

/// Counts work that must finish before the process exits.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held for as long as one piece of work runs.
pub struct InFlightGuard(Arc<AppState>);

impl InFlight {
    pub fn enter(app: &App) -> InFlightGuard {
        app.in_flight.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(app.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight, or `limit` passes. Returns whether idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count() == 0;
            }
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.in_flight.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.in_flight.idle.notify_waiters();
        }
    }
}
