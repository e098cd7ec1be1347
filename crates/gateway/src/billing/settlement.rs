//! The settlement writer: settlements are queued by requests and written in
//! batches, one transaction per batch (group commit), off the request path.
//!
//! The queue counts what it holds, and graceful shutdown waits until every
//! queued settlement is committed before it closes the database. Each
//! settlement is keyed by its request id in the store, so a retried batch
//! charges nothing twice. Every settlement is in the journal before it is
//! queued (see `billing::journal`), so a crash loses nothing queued; once a
//! batch commits, its journal lines are released.
//!
//! The queue is bounded by admission: `Meter::reserve` sheds new requests
//! with a 503 while `limits.settlement_queue` settlements are pending, so it
//! holds at most that many plus the requests already in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use store::{Settlement, Store};
use tokio::sync::{mpsc, Notify};

use super::journal::{Entry, Journal};
use super::ledger::Ledger;
use super::Release;
use crate::shared::Shared;

/// Most settlements written in one transaction.
const MAX_BATCH: usize = 256;
/// How long the writer waits for more settlements once one has arrived.
/// Each batch is one transaction; at low concurrency, without this wait,
/// every request would cost a transaction of its own (most of the gateway's
/// CPU per request at concurrency 1). Clients never wait for it: balances
/// are checked against the in-memory ledger, which counts what is pending.
const LINGER: Duration = Duration::from_millis(10);
/// Attempts for a batch before its settlements are tried one by one.
const BATCH_ATTEMPTS: u32 = 5;

struct Queued {
    settlement: Settlement,
    /// The hold to release once committed, unless the database's own
    /// transaction released it.
    release: Option<Release>,
    /// Its lines in the journal, released once committed.
    journal_entry: Option<Entry>,
}

/// Settlements queued and not yet committed.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    drained: Notify,
    /// Settlements whose writing failed for good (the database away longer
    /// than a batch's attempts), tried again every tick.
    failed: AtomicUsize,
}

/// The queue into the writer; cheap to clone.
#[derive(Clone)]
pub struct SettlementQueue {
    tx: mpsc::UnboundedSender<Queued>,
    pending: Arc<Pending>,
}

impl SettlementQueue {
    /// Starts the writer task on `store`; it keeps `ledger` (and the holds
    /// in Redis, when `shared`) in step with what it commits, and refreshes
    /// the ledger every `refresh`.
    pub fn start(
        store: Store,
        ledger: Arc<Ledger>,
        journal: Option<Arc<Journal>>,
        shared: Option<Arc<Shared>>,
        refresh: Duration,
    ) -> SettlementQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        let writer = Writer {
            store,
            ledger,
            journal,
            shared,
        };
        tokio::spawn(write_batches(writer, refresh, rx, pending.clone()));
        SettlementQueue { tx, pending }
    }

    /// Queues a settlement.
    pub fn push(
        &self,
        settlement: Settlement,
        release: Option<Release>,
        journal_entry: Option<Entry>,
    ) {
        let request_id = settlement.request_id.clone();
        self.pending.count.fetch_add(1, Ordering::SeqCst);
        if self
            .tx
            .send(Queued {
                settlement,
                release,
                journal_entry,
            })
            .is_err()
        {
            self.pending.count.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(%request_id, "settlement writer stopped; settlement not written");
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.count.load(Ordering::SeqCst)
    }

    /// Settlements not yet written: queued, and failed awaiting another
    /// try. New requests are shed past a limit on it, so a database outage
    /// cannot grow it without end.
    pub fn backlog(&self) -> usize {
        self.pending() + self.pending.failed.load(Ordering::SeqCst)
    }

    /// Waits until every queued settlement is committed, however long that
    /// takes: nothing charged may be lost to a shutdown.
    pub async fn wait_drained(&self) {
        loop {
            let drained = self.pending.drained.notified();
            let pending = self.pending();
            if pending == 0 {
                return;
            }
            if tokio::time::timeout(Duration::from_secs(5), drained)
                .await
                .is_err()
            {
                tracing::info!(
                    pending = self.pending(),
                    "shutdown: writing the remaining settlements"
                );
            }
        }
    }
}

struct Writer {
    store: Store,
    ledger: Arc<Ledger>,
    journal: Option<Arc<Journal>>,
    shared: Option<Arc<Shared>>,
}

async fn write_batches(
    writer: Writer,
    refresh: Duration,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    pending: Arc<Pending>,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    let mut failed: Vec<Queued> = Vec::new();
    let mut tick = tokio::time::interval(refresh.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some(first) = first else { return };
                batch.push(first);
                let deadline = tokio::time::Instant::now() + LINGER;
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(next)) => batch.push(next),
                            // Time is up, or every sender is gone: write what we have.
                            Ok(None) | Err(_) => break,
                        },
                    }
                }
                let committed = write(&writer.store, &batch).await;
                finish(&writer, &batch, &committed).await;
                // Settlements that failed for good are tried again every
                // tick: their charges land without waiting for a restart
                // (their journal lines stay until then, for a crash
                // meanwhile). A shutdown does not wait for them: the next
                // start replays them.
                let total = batch.len();
                keep_failed(&mut failed, &mut batch, &committed, &pending);
                if pending.count.fetch_sub(total, Ordering::SeqCst) == total {
                    pending.drained.notify_waiters();
                }
            }
            _ = tick.tick() => {
                if !failed.is_empty() {
                    let mut retried = std::mem::take(&mut failed);
                    pending.failed.fetch_sub(retried.len(), Ordering::SeqCst);
                    let committed = write_again(&writer.store, &retried).await;
                    let written = committed.iter().filter(|ok| **ok).count();
                    if written > 0 {
                        tracing::info!(written, "settlements that had failed are written");
                    }
                    finish(&writer, &retried, &committed).await;
                    keep_failed(&mut failed, &mut retried, &committed, &pending);
                }
                refresh_ledger(&writer.store, &writer.ledger).await
            }
        }
    }
}

/// What follows a write: the committed settlements' holds are released
/// and their journal lines let go.
async fn finish(writer: &Writer, batch: &[Queued], committed: &[bool]) {
    release_holds(writer, batch, committed).await;
    if let Some(journal) = &writer.journal {
        journal.committed(
            batch
                .iter()
                .zip(committed)
                .filter(|(_, ok)| **ok)
                .filter_map(|(q, _)| q.journal_entry),
        );
    }
}

/// Moves the settlements of `batch` that were not committed to `failed`
/// (emptying `batch`).
fn keep_failed(
    failed: &mut Vec<Queued>,
    batch: &mut Vec<Queued>,
    committed: &[bool],
    pending: &Pending,
) {
    let before = failed.len();
    failed.extend(
        batch
            .drain(..)
            .zip(committed)
            .filter(|(_, ok)| !**ok)
            .map(|(q, _)| q),
    );
    pending
        .failed
        .fetch_add(failed.len() - before, Ordering::SeqCst);
}

/// Releases the holds of the committed settlements: in the ledger, and in
/// Redis with the figures read after the commit (which count the charges).
/// A settlement not committed keeps its hold until it expires: its charge
/// is still to come (the journal replays it).
async fn release_holds(writer: &Writer, batch: &[Queued], committed: &[bool]) {
    let mut in_redis = Vec::new();
    for (q, _) in batch.iter().zip(committed).filter(|(_, ok)| **ok) {
        let s = &q.settlement;
        match &q.release {
            Some(Release::Memory(held)) => {
                writer.ledger.settled(s.user_id, &s.key_id, *held, s.cost)
            }
            Some(Release::Redis(held)) => in_redis.push(held.clone()),
            None => {}
        }
    }
    let Some(shared) = &writer.shared else {
        return;
    };
    if in_redis.is_empty() {
        return;
    }
    let mut users: Vec<i64> = in_redis.iter().map(|h| h.user_id).collect();
    users.sort_unstable();
    users.dedup();
    let mut keys: Vec<String> = in_redis.iter().map(|h| h.key_id.clone()).collect();
    keys.sort_unstable();
    keys.dedup();
    match figures(&writer.store, &users, &keys).await {
        // In a task of its own: retries must not hold up the next batch.
        Ok((users, keys)) => {
            let shared = shared.clone();
            tokio::spawn(async move { shared.apply(&in_redis, &users, &keys).await });
        }
        Err(e) => {
            tracing::warn!(error = %e, "figures for Redis could not be read; its holds expire instead")
        }
    }
}

/// The database's figures of `users` and `keys`.
async fn figures(
    store: &Store,
    users: &[i64],
    keys: &[String],
) -> Result<(Vec<store::UserFigures>, Vec<store::KeyFigures>), store::StoreError> {
    Ok((
        store.balances(users).await?,
        store.key_spending(keys).await?,
    ))
}

/// Re-reads the figures of the ledger's active accounts. Runs between
/// batches, so every charge of this instance is already in the database.
async fn refresh_ledger(store: &Store, ledger: &Ledger) {
    let (users, keys) = ledger.active();
    if users.is_empty() && keys.is_empty() {
        return;
    }
    match figures(store, &users, &keys).await {
        Ok((users, keys)) => ledger.refresh(&users, &keys),
        Err(e) => tracing::warn!(error = %e, "ledger refresh failed"),
    }
}

/// Tries failed settlements once more, quietly: in batches, and one by one
/// where a batch fails (so that one that can never be written holds up no
/// other). Returns, per settlement, whether it is committed now.
async fn write_again(store: &Store, failed: &[Queued]) -> Vec<bool> {
    let mut committed = Vec::with_capacity(failed.len());
    for chunk in failed.chunks(MAX_BATCH) {
        let settlements: Vec<Settlement> = chunk.iter().map(|q| q.settlement.clone()).collect();
        if store.settle_many(&settlements).await.is_ok() {
            committed.resize(committed.len() + chunk.len(), true);
            continue;
        }
        for s in &settlements {
            committed.push(store.settle(s).await.is_ok());
        }
    }
    committed
}

/// Commits the batch; returns, per settlement, whether it is committed.
async fn write(store: &Store, batch: &[Queued]) -> Vec<bool> {
    let settlements: Vec<Settlement> = batch.iter().map(|q| q.settlement.clone()).collect();
    let mut delay = Duration::from_millis(20);
    for attempt in 1..=BATCH_ATTEMPTS {
        match store.settle_many(&settlements).await {
            Ok(_) => return vec![true; batch.len()],
            Err(e) => {
                tracing::warn!(attempt, size = settlements.len(), error = %e, "settlement batch failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    // One bad settlement must not sink the others: write them one by one.
    let mut committed = Vec::with_capacity(settlements.len());
    for s in &settlements {
        match store.settle(s).await {
            Ok(_) => committed.push(true),
            Err(e) => {
                tracing::error!(
                    request_id = %s.request_id, user_id = s.user_id, key_id = %s.key_id,
                    model = %s.model, cost = s.cost, input_tokens = s.input_tokens,
                    output_tokens = s.output_tokens, error = %e,
                    "settlement failed; it is tried again every tick, and stays in the journal until written"
                );
                committed.push(false);
            }
        }
    }
    committed
}
