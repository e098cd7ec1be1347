//! The Tollgate server as a library: configuration, state, routes, billing
//! and upstream providers. The `tollgate` binary is a thin CLI over this.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod config;
pub mod console;
pub mod error;
pub mod files;
pub(crate) mod finishing;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod money;
pub mod oauth;
pub mod overrides;
pub mod payments;
pub mod pipeline;
pub mod providers;
pub mod relay;
pub mod responses;
pub mod routing;
pub mod secrets;
pub mod server;
pub mod shared;
pub mod state;
pub mod stored_chat;
pub mod time;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::catalog::{Catalog, Catalogs};
use crate::config::Config;
use crate::state::{App, AppState, InFlight};

/// The settings row holding the admin token's hash.
const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// How often expired holds and stored objects past their retention are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    #[error(transparent)]
    Journal(#[from] billing::journal::JournalError),
    #[error("file storage: {0}")]
    Storage(#[from] files::StorageError),
}

/// A gateway ready to serve.
pub struct Gateway {
    pub app: App,
    /// Set on the very first start without a configured admin token: the
    /// token created then, to be shown once.
    pub generated_admin_token: Option<String>,
    /// Set while no one can log in to the console's admin pages: the token
    /// of the one-time setup link (`/console/setup?token=…`), new at each
    /// start until an admin is made.
    pub console_setup_token: Option<String>,
}

/// Opens the database (migrating it) and builds the shared state.
pub async fn build(config: Config) -> Result<Gateway, StartError> {
    let store = store::Store::connect(&config.database_url).await?;
    store.migrate().await?;
    build_with_store(config, store).await
}

pub async fn build_with_store(config: Config, store: store::Store) -> Result<Gateway, StartError> {
    let catalog = Catalogs::new(Catalog::build(&config, None)?, &config);
    if !config.billing {
        tracing::warn!("billing = false: requests are neither held, charged nor recorded (for benchmarks only)");
    }
    let (admin_token_hash, generated_admin_token) = admin_token(&config, &store).await?;
    let console_setup_token = console::setup::token_at_start(&store).await?;
    // What an earlier process here left unsettled is settled (or released)
    // before anything new is admitted.
    let mut replayed = Vec::new();
    let journal = if config.billing {
        let (journal, replay) =
            billing::journal::Journal::open(&config.journal_path(), config.journal_fsync, &store)
                .await?;
        if replay.settled + replay.interrupted > 0 {
            tracing::info!(
                settled = replay.settled,
                interrupted = replay.interrupted,
                "replayed the settlement journal of an earlier process"
            );
        }
        replayed = replay.requests;
        Some(Arc::new(journal))
    } else {
        None
    };
    let released = store.sweep_expired_holds().await?;
    if released > 0 {
        tracing::info!(released, "released holds left by an earlier process");
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let shared = match &config.redis_url {
        Some(url) => Some(
            shared::Shared::start(
                &config::resolve_secret(url),
                &config.redis,
                Duration::from_secs(config.rate_limits.lease_ttl_secs),
                Duration::from_secs(config.hold_ttl_secs),
                metrics.clone(),
            )
            .map_err(|e| StartError::Config(config::ConfigError(e)))?,
        ),
        None => None,
    };
    if let Some(shared) = shared.as_ref().filter(|_| !replayed.is_empty()) {
        // The holds the earlier process took in Redis for the requests just
        // replayed go now, rather than when they expire.
        let holds: Vec<shared::HeldHere> = replayed
            .iter()
            .map(|(user, key, request)| shared::HeldHere::new(*user, key, request))
            .collect();
        let shared = shared.clone();
        tokio::spawn(async move { shared.apply(&holds, &[], &[]).await });
    }
    if config.redis_url.is_some() && config.holds() == config::HoldsMode::Memory {
        tracing::warn!(
            "redis_url is set but holds = \"memory\": each instance admits spending on its own, \
             so N instances can together admit up to N times a balance"
        );
    }
    let ledger = Arc::new(billing::ledger::Ledger::default());
    let settlements = billing::settlement::SettlementQueue::start(
        store.clone(),
        ledger.clone(),
        journal.clone(),
        shared.clone(),
        Duration::from_millis(config.ledger_refresh_ms),
    );
    let auth_cache = auth::AuthCache::new(Duration::from_millis(config.auth_cache_ttl_ms));
    let limiter = limits::Limiter::new(Duration::from_secs(config.rate_limits.lease_ttl_secs));
    let billing = billing::Billing::new(
        &config,
        store.clone(),
        ledger,
        journal,
        settlements,
        metrics.clone(),
    );
    let rule_book = overrides::RuleBook::new(rules::Restrictions::default(), &config.rules);
    let files = files::Files::open(&config)?;
    let payments = payments::Payments::new(&config).map(Arc::new);
    let app = Arc::new(AppState {
        payments,
        files,
        login_throttle: Default::default(),
        signup_throttle: console::Throttle::new(
            console::SIGNUPS_PER_ADDRESS,
            std::time::Duration::from_secs(3600),
        ),
        signups_made: console::Throttle::new(
            config.console.signups_per_hour,
            std::time::Duration::from_secs(3600),
        ),
        started: std::time::Instant::now(),
        auth_cache,
        billing,
        config,
        catalog,
        limiter,
        shared,
        rate_refusals: Default::default(),
        rule_book,
        affinity: Default::default(),
        store,
        metrics,
        in_flight: InFlight::default(),
        admin_token_hash,
        runs: Default::default(),
    });
    Ok(Gateway {
        app,
        generated_admin_token,
        console_setup_token,
    })
}

/// The admin token's hash: from the configuration, or the one created on the
/// first start (several instances starting together agree on one).
async fn admin_token(
    config: &Config,
    store: &store::Store,
) -> Result<(String, Option<String>), StartError> {
    if let Some(token) = &config.admin_token {
        return Ok((secrets::hash_secret(&config::resolve_secret(token)), None));
    }
    if let Some(hash) = store.get_setting(ADMIN_TOKEN_SETTING).await? {
        return Ok((hash, None));
    }
    let token = secrets::new_admin_token();
    let hash = secrets::hash_secret(&token);
    if store
        .insert_setting_if_absent(ADMIN_TOKEN_SETTING, &hash)
        .await?
    {
        return Ok((hash, Some(token)));
    }
    let winner = store
        .get_setting(ADMIN_TOKEN_SETTING)
        .await?
        .unwrap_or(hash);
    Ok((winner, None))
}

/// Serves until `shutdown` completes, then stops accepting, lets requests and
/// streams in flight finish (up to the configured grace period) and waits for
/// every pending settlement before returning.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(app.config.shutdown_grace_secs);
    let sweeper = tokio::spawn(sweep(app.clone()));
    let reloader = tokio::spawn(reload_on_hangup(app.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    server::run(app.clone(), listener, stop_rx, grace).await;
    sweeper.abort();
    reloader.abort();
    // Streams whose clients left are still being read for their usage.
    if !app.in_flight.wait_idle(grace).await {
        tracing::warn!(
            pending = app.in_flight.count(),
            "shutdown: upstream work still running after the grace period"
        );
    }
    // Every settlement queued so far is written before the database closes.
    app.billing.settlements.wait_drained().await;
    app.store.close().await;
    Ok(())
}

/// Reloads the model catalog on each `SIGHUP`, as daemons do.
async fn reload_on_hangup(app: App) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            return tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload")
        }
    };
    while hangups.recv().await.is_some() {
        let reloading = app.clone();
        match tokio::task::spawn_blocking(move || reloading.catalog.reload()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: the catalog was not reloaded; the one in force stays")
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: the reload failed"),
        }
    }
}

async fn sweep(app: App) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.tick().await;
    // What a crash left of uploads is found at start, not a minute later.
    files::housekeeping::sweep(&app).await;
    loop {
        tick.tick().await;
        match app.store.sweep_expired_holds().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released expired holds"),
            Err(e) => tracing::warn!(error = %e, "hold sweep failed"),
        }
        responses::fail_abandoned_runs(&app).await;
        app.rule_book.flush_hits(&app.store).await;
        match app.store.sweep_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "deleted expired console sessions"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
        if let Err(e) = app.store.sweep_codes().await {
            tracing::warn!(error = %e, "OAuth code sweep failed");
        }
        files::housekeeping::sweep(&app).await;
        match app.store.sweep_expired_objects(store::now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "deleted stored objects past their retention"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
    }
}
