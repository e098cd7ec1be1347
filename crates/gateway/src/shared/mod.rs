//! Admission shared by several instances through Redis (`redis_url`): rate
//! limits, and holds against balances and key limits, so that N instances
//! together admit what one would — never N times a balance or a limit.
//!
//! * One script call per request admits it ([`Shared::admit`], `admit.lua`):
//!   every limit and the hold, checked and taken atomically, all or none.
//! * One more when it is done ([`Shared::settle`], `settle.lua`): its
//!   tokens reconciled, its leases returned.
//! * The settlement writer, once the database committed a batch, releases
//!   the batch's holds together with the figures read after the commit
//!   ([`Shared::apply`], `apply.lua`, one pipelined round trip).
//!
//! The database stays the ledger of record. Redis keeps, per user and key,
//! the figures of the newest *revision* it was given (the store bumps a
//! revision with every change of a balance or a key's spending), so figures
//! arriving late or out of order never overwrite newer ones, and a top-up
//! reaches Redis with the next figures any instance reads (its auth cache).
//!
//! Every key shares one hash tag (`{prefix}`): a request's limits span the
//! gateway, its model and its user, and one script may only touch keys of
//! one slot. The scripts therefore run unchanged on Redis Cluster, on the
//! node owning that slot.
//!
//! When Redis cannot be reached the caller applies the configured policy
//! (`[redis] on_failure`): refuse (503), or admit on this instance's own
//! limits and ledger. Never silently: see [`Shared::unavailable`].

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use store::{ApiKey, KeyFigures, User, UserFigures};

use crate::billing::BillingError;
use crate::config::{OnRedisFailure, RedisConfig};
use crate::limits::refusals::{KeyRefusals, CAPACITY};
use crate::limits::{Check, Headroom, LimitKind, Refusal, ScopeStatus};
use crate::metrics::Metrics;

/// Why a request was not admitted through Redis.
#[derive(Debug)]
pub enum NotAdmitted {
    /// A rate limit refused it.
    Limited(Refusal),
    /// Its hold did not fit the balance or the key's limit.
    Billing(BillingError),
    /// Redis knows nothing of the user or key, and the figures given were
    /// not fresh: read them from the database and ask again.
    NeedsFigures,
    /// Redis could not be asked.
    Unavailable(String),
}

/// A hold to take with the limits: the request, its amount, and the figures
/// this instance last read for its user and key.
pub struct Hold<'a> {
    pub request_id: &'a str,
    pub amount: i64,
    pub user: UserFigures,
    pub key: KeyFigures,
    /// The figures were just read from the database (not an auth cache's).
    pub fresh: bool,
}

impl Hold<'_> {
    /// The figures of an authenticated (maybe cached) user and key.
    pub fn figures(user: &User, key: &ApiKey) -> (UserFigures, KeyFigures) {
        (
            UserFigures {
                user_id: user.id,
                balance: user.balance.saturating_add(user.free_balance),
                revision: user.revision,
            },
            KeyFigures {
                key_id: key.id.clone(),
                max_fee: key.max_fee,
                used_fee: key.used_fee,
                revision: key.revision,
            },
        )
    }
}

/// What an admitted request took of its limits, to give back at the end.
#[derive(Debug)]
pub struct Ticket {
    /// The scopes with something to give back: tokens (their tpm) or a lease.
    scopes: Vec<(String, Option<u64>)>,
    lease: String,
    /// Whether a concurrency lease was taken.
    leased: bool,
    estimated: u64,
    pub requests: Option<Headroom>,
    pub tokens: Option<Headroom>,
}

impl Ticket {
    /// Whether settling changes anything in Redis.
    pub fn gives_back(&self) -> bool {
        !self.scopes.is_empty()
    }

    /// Whether a concurrency lease was taken (the client's next request may
    /// need it back).
    pub fn leased(&self) -> bool {
        self.leased
    }
}

/// A hold taken in Redis, released once its settlement is committed.
#[derive(Debug, Clone)]
pub struct HeldHere {
    pub user_id: i64,
    pub key_id: String,
    pub request_id: String,
}

impl HeldHere {
    pub fn new(user_id: i64, key_id: &str, request_id: &str) -> HeldHere {
        HeldHere {
            user_id,
            key_id: key_id.to_string(),
            request_id: request_id.to_string(),
        }
    }
}

pub struct Shared {
    client: redis::Client,
    connection: ArcSwapOption<ConnectionManager>,
    connecting: AtomicBool,
    prefix: String,
    timeout: Duration,
    pub on_failure: OnRedisFailure,
    lease_ttl: Duration,
    hold_ttl: Duration,
    /// Lease ids are this instance's random tag and a counter: unique
    /// among instances without coordination.
    instance: String,
    next_lease: AtomicU64,
    admit_script: Script,
    settle_script: Script,
    apply_script: Script,
    peek_script: Script,
    /// Whether the last call failed: warnings are logged when Redis goes
    /// away and comes back, not once per request.
    down: AtomicBool,
    /// While Redis is down, calls fail at once but one probe a second
    /// (milliseconds since the epoch of the next): a blackholed Redis must
    /// not cost every request its timeout.
    next_probe_ms: AtomicI64,
    /// Calls failed in a row: past a few, the connection is dropped and made
    /// anew (a half-open one would otherwise time out for many minutes).
    failures_in_a_row: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Shared {
    /// Shared admission on `url`; connects in the background, so a gateway
    /// starts (and applies its failure policy) while Redis is away.
    pub fn start(
        url: &str,
        config: &RedisConfig,
        lease_ttl: Duration,
        hold_ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Shared>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis_url: {e}"))?;
        let shared = Arc::new(Shared {
            client,
            connection: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            prefix: format!("{{{}}}", config.prefix),
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            on_failure: config.on_failure,
            lease_ttl,
            hold_ttl,
            instance: format!("{:016x}", rand::random::<u64>()),
            next_lease: AtomicU64::new(1),
            admit_script: with_holds(include_str!("admit.lua")),
            settle_script: Script::new(include_str!("settle.lua")),
            apply_script: with_holds(include_str!("apply.lua")),
            peek_script: Script::new(include_str!("peek.lua")),
            down: AtomicBool::new(false),
            next_probe_ms: AtomicI64::new(0),
            failures_in_a_row: AtomicU64::new(0),
            metrics,
        });
        shared.connect_in_background();
        Ok(shared)
    }

    /// Starts connecting unless a connection exists or is being made; a
    /// connection, once made, reconnects by itself.
    fn connect_in_background(self: &Arc<Self>) {
        if self.connection.load().is_some() || self.connecting.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(shared.timeout)
                .set_response_timeout(shared.timeout)
                .set_number_of_retries(1);
            match ConnectionManager::new_with_config(shared.client.clone(), config).await {
                Ok(connection) => {
                    shared.connection.store(Some(Arc::new(connection)));
                    tracing::info!("connected to Redis: limits and holds are shared");
                }
                Err(e) => shared.unavailable("connect", &e.to_string()),
            }
            shared.connecting.store(false, Ordering::SeqCst);
        });
    }

    /// The connection, unless Redis is known to be down and this call is
    /// not the second's probe.
    fn connection(self: &Arc<Self>) -> Result<Arc<ConnectionManager>, String> {
        if self.down.load(Ordering::Relaxed) {
            let now = store::now_ms();
            let probe = self.next_probe_ms.load(Ordering::Relaxed);
            if now < probe
                || self
                    .next_probe_ms
                    .compare_exchange(probe, now + 1_000, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                return Err("down (probed once a second)".into());
            }
        }
        self.current()
    }

    /// The connection in use (made anew in the background when there is
    /// none).
    fn current(self: &Arc<Self>) -> Result<Arc<ConnectionManager>, String> {
        match self.connection.load_full() {
            Some(connection) => Ok(connection),
            None => {
                self.connect_in_background();
                Err("not connected".into())
            }
        }
    }

    /// Runs one script invocation within the timeout.
    async fn call<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, CallError> {
        let used = self
            .connection()
            .inspect_err(|e| self.unavailable(op, e))
            .map_err(CallError::NotSent)?;
        let mut connection = (*used).clone();
        let result = self.within(invocation.invoke_async(&mut connection)).await;
        self.outcome(op, &used, result).map_err(CallError::Unknown)
    }

    /// Awaits one Redis call, for at most the configured timeout.
    async fn within<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Sends `pipe` within the timeout.
    async fn run(self: &Arc<Self>, op: &'static str, pipe: &redis::Pipeline) -> Result<(), String> {
        let used = self.current()?;
        let mut connection = (*used).clone();
        let mut result = self.run_on(pipe, &mut connection).await;
        if matches!(&result, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
            // EVALSHA in a pipeline does not load its script: not loaded
            // yet, or Redis restarted since.
            for script in [&self.apply_script, &self.settle_script] {
                let _ =
                    tokio::time::timeout(self.timeout, script.load_async(&mut connection)).await;
            }
            result = self.run_on(pipe, &mut connection).await;
        }
        self.outcome(op, &used, result.map_err(|e| e.to_string()))
    }

    async fn run_on(
        &self,
        pipe: &redis::Pipeline,
        connection: &mut ConnectionManager,
    ) -> Result<(), redis::RedisError> {
        tokio::time::timeout(self.timeout, pipe.query_async::<()>(connection))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out").into())
            })
    }

    /// Notes how a call on connection `used` ended: Redis is back, or
    /// failed once more.
    fn outcome<T>(
        &self,
        op: &'static str,
        used: &Arc<ConnectionManager>,
        result: Result<T, String>,
    ) -> Result<T, String> {
        match &result {
            Ok(_) => {
                self.failures_in_a_row.store(0, Ordering::Relaxed);
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::warn!("Redis is reachable again: limits and holds are shared again");
                }
            }
            Err(e) => {
                self.unavailable(op, e);
                if self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= RECONNECT_AFTER {
                    self.failures_in_a_row.store(0, Ordering::Relaxed);
                    // Only the connection that failed: not one made since.
                    self.connection.compare_and_swap(used, None);
                }
            }
        }
        result
    }

    /// Counts a failed call, and warns when Redis was reachable until now.
    fn unavailable(&self, op: &'static str, error: &str) {
        self.metrics.record_redis_failure(op);
        if !self.down.swap(true, Ordering::Relaxed) {
            self.next_probe_ms
                .store(store::now_ms() + 1_000, Ordering::Relaxed);
            let policy = match self.on_failure {
                OnRedisFailure::Closed => "refusing requests (on_failure = \"closed\")",
                OnRedisFailure::Local => {
                    "admitting on this instance's own limits and ledger (on_failure = \"local\")"
                }
            };
            tracing::warn!(op, error, "Redis is unreachable: {policy}");
        }
    }

    fn scope_keys(&self, scope: &str) -> [String; 2] {
        [
            format!("{}:rl:{scope}", self.prefix),
            format!("{}:ls:{scope}", self.prefix),
        ]
    }

    /// A user's figures, holds and their amounts (holds.lua).
    fn user_keys(&self, user_id: i64) -> [String; 3] {
        [
            format!("{}:u:{user_id}", self.prefix),
            format!("{}:uh:{user_id}", self.prefix),
            format!("{}:ua:{user_id}", self.prefix),
        ]
    }

    /// A key's figures, holds and their amounts (holds.lua).
    fn key_keys(&self, key_id: &str) -> [String; 3] {
        [
            format!("{}:k:{key_id}", self.prefix),
            format!("{}:kh:{key_id}", self.prefix),
            format!("{}:ka:{key_id}", self.prefix),
        ]
    }

    /// What a request has to give back exists while this key does.
    fn ticket_key(&self, lease: &str) -> String {
        format!("{}:t:{lease}", self.prefix)
    }

    /// Admits a request counted in `checks`, estimated at `tokens`, with
    /// its `hold` if any: everything taken, or nothing.
    pub async fn admit(
        self: &Arc<Self>,
        checks: &[Check],
        tokens: u64,
        hold: Option<Hold<'_>>,
    ) -> Result<Ticket, NotAdmitted> {
        let lease = format!(
            "{}:{}",
            self.instance,
            self.next_lease.fetch_add(1, Ordering::Relaxed)
        );
        let mut invocation = self.admit_script.prepare_invoke();
        invocation
            .arg(checks.len())
            .arg(tokens)
            .arg(&lease)
            .arg(millis(self.lease_ttl));
        for check in checks {
            for key in self.scope_keys(&check.scope) {
                invocation.key(key);
            }
            let limits = &check.limits;
            invocation
                .arg(limits.rpm.unwrap_or(0))
                .arg(limits.tpm.unwrap_or(0))
                .arg(limits.concurrency.unwrap_or(0));
        }
        match &hold {
            Some(hold) => {
                for key in self
                    .user_keys(hold.user.user_id)
                    .into_iter()
                    .chain(self.key_keys(&hold.key.key_id))
                {
                    invocation.key(key);
                }
                invocation
                    .arg(hold.amount)
                    .arg(hold.request_id)
                    .arg(millis(self.hold_ttl))
                    .arg(hold.user.balance)
                    .arg(hold.user.revision)
                    .arg(hold.key.max_fee)
                    .arg(hold.key.used_fee)
                    .arg(hold.key.revision)
                    .arg(u8::from(hold.fresh));
            }
            None => {
                invocation.arg(-1).arg("");
                for _ in 0..7 {
                    invocation.arg(0);
                }
            }
        }
        invocation.key(self.ticket_key(&lease));
        let ticket = Ticket {
            scopes: checks
                .iter()
                .filter(|c| c.limits.tpm.is_some() || c.limits.concurrency.is_some())
                .map(|c| (c.scope.clone(), c.limits.tpm))
                .collect(),
            lease,
            leased: checks.iter().any(|c| c.limits.concurrency.is_some()),
            estimated: tokens,
            requests: None,
            tokens: None,
        };
        let answer: Vec<i64> = match self.call("admit", &invocation).await {
            Ok(answer) => answer,
            Err(CallError::NotSent(e)) => return Err(NotAdmitted::Unavailable(e)),
            Err(CallError::Unknown(e)) => {
                // The script may have run and its answer been lost (a
                // timeout): undone in the background, or it would hold its
                // lease, tokens and hold until they expire. Undoing is
                // exact: only what the admission took is given back.
                let undo = hold.map(|h| HeldHere::new(h.user.user_id, &h.key.key_id, h.request_id));
                let shared = self.clone();
                tokio::spawn(async move { shared.undo(ticket, undo).await });
                return Err(NotAdmitted::Unavailable(e));
            }
        };
        match answer.as_slice() {
            [0, rpm, rpm_left, rpm_reset, tpm, tpm_left, tpm_reset] => Ok(Ticket {
                requests: headroom(*rpm, *rpm_left, *rpm_reset),
                tokens: headroom(*tpm, *tpm_left, *tpm_reset),
                ..ticket
            }),
            [1, scope, kind, wait] => {
                let scope = usize::try_from(*scope - 1)
                    .ok()
                    .and_then(|i| checks.get(i))
                    .map(|c| c.scope.clone())
                    .unwrap_or_default();
                let kind = match kind {
                    1 => LimitKind::Requests,
                    2 => LimitKind::Tokens,
                    _ => LimitKind::Concurrency,
                };
                let retry_after = u64::try_from(*wait).ok().map(Duration::from_millis);
                Err(NotAdmitted::Limited(Refusal {
                    scope,
                    kind,
                    retry_after,
                }))
            }
            [2] => Err(NotAdmitted::Billing(BillingError::InsufficientBalance)),
            [3] => Err(NotAdmitted::Billing(BillingError::KeyLimitReached)),
            [4] => Err(NotAdmitted::NeedsFigures),
            other => Err(NotAdmitted::Unavailable(format!(
                "unexpected answer from the admission script: {other:?}"
            ))),
        }
    }

    /// Counts a refusal of a key for the operator's top list, shared by the
    /// instances and bounded like the local one: past its capacity, the
    /// half refused least is forgotten (a newcomer then has room to climb).
    /// Best effort, on the refusal path only.
    pub async fn record_refusal(self: &Arc<Self>, refusal: &KeyRefusals) {
        if self.connection().is_err() {
            return;
        }
        let ranked = format!("{}:refused", self.prefix);
        let details = format!("{}:refusal:{}", self.prefix, refusal.key_id);
        let mut pipe = redis::pipe();
        pipe.zincr(&ranked, &refusal.key_id, 1)
            .ignore()
            .hset(&details, "user", refusal.user_id)
            .ignore()
            .hset(&details, "last", refusal.last_at_ms)
            .ignore();
        for (i, n) in refusal.by_scope.iter().enumerate().filter(|(_, n)| **n > 0) {
            pipe.hincr(&details, format!("s{i}"), *n).ignore();
        }
        for (i, n) in refusal.by_limit.iter().enumerate().filter(|(_, n)| **n > 0) {
            pipe.hincr(&details, format!("l{i}"), *n).ignore();
        }
        // Details of keys no longer refused (or dropped from the list) go.
        pipe.expire(&details, 7 * 86_400).ignore();
        if self.run("refusals", &pipe).await.is_err() {
            return;
        }
        let Ok(connection) = self.current() else {
            return;
        };
        let mut connection = (*connection).clone();
        let count: Result<usize, _> = self
            .within(
                redis::cmd("ZCARD")
                    .arg(&ranked)
                    .query_async(&mut connection),
            )
            .await;
        if let Ok(count) = count {
            if count > CAPACITY {
                let mut trim = redis::pipe();
                trim.zremrangebyrank(&ranked, 0, (count - CAPACITY / 2 - 1) as isize)
                    .ignore();
                let _ = self.run("refusals", &trim).await;
            }
        }
    }

    /// The `n` keys refused most, across the instances.
    pub async fn top_refused(self: &Arc<Self>, n: usize) -> Result<Vec<KeyRefusals>, String> {
        let mut connection = (*self.connection()?).clone();
        let ranked: Vec<(String, u64)> = self
            .within(
                redis::cmd("ZREVRANGE")
                    .arg(format!("{}:refused", self.prefix))
                    .arg(0)
                    .arg(n.saturating_sub(1))
                    .arg("WITHSCORES")
                    .query_async(&mut connection),
            )
            .await?;
        let mut pipe = redis::pipe();
        for (key_id, _) in &ranked {
            pipe.hgetall(format!("{}:refusal:{key_id}", self.prefix));
        }
        let details: Vec<std::collections::HashMap<String, i64>> =
            self.within(pipe.query_async(&mut connection)).await?;
        Ok(ranked
            .into_iter()
            .zip(details)
            .map(|((key_id, count), d)| {
                let get = |field: String| d.get(&field).copied().unwrap_or(0).max(0) as u64;
                KeyRefusals {
                    key_id,
                    user_id: d.get("user").copied().unwrap_or(0),
                    count,
                    last_at_ms: d.get("last").copied().unwrap_or(0),
                    by_scope: std::array::from_fn(|i| get(format!("s{i}"))),
                    by_limit: std::array::from_fn(|i| get(format!("l{i}"))),
                }
            })
            .collect())
    }

    /// What is left of `checks`' limits now, taking nothing.
    pub async fn peek(self: &Arc<Self>, checks: &[Check]) -> Result<Vec<ScopeStatus>, String> {
        let mut invocation = self.peek_script.prepare_invoke();
        invocation.arg(checks.len());
        for check in checks {
            for key in self.scope_keys(&check.scope) {
                invocation.key(key);
            }
            invocation
                .arg(check.limits.rpm.unwrap_or(0))
                .arg(check.limits.tpm.unwrap_or(0));
        }
        let answer: Vec<i64> = self.call("peek", &invocation).await.map_err(|e| match e {
            CallError::NotSent(e) | CallError::Unknown(e) => e,
        })?;
        if answer.len() != 5 * checks.len() {
            return Err(format!(
                "unexpected answer from the peek script: {answer:?}"
            ));
        }
        Ok(checks
            .iter()
            .zip(answer.chunks(5))
            .map(|(check, figures)| ScopeStatus {
                scope: check.scope.clone(),
                limits: check.limits,
                requests: check
                    .limits
                    .rpm
                    .and_then(|rpm| headroom(rpm as i64, figures[0], figures[1])),
                tokens: check
                    .limits
                    .tpm
                    .and_then(|tpm| headroom(tpm as i64, figures[2], figures[3])),
                in_use: u32::try_from(figures[4]).unwrap_or(0),
            })
            .collect())
    }

    /// The request is done: its tokens corrected to `used`, its leases
    /// returned — once (settle.lua consumes the request's ticket), so a
    /// call that failed is retried a few times; past them the leases and
    /// tokens come back when they expire.
    pub async fn settle(self: &Arc<Self>, ticket: Ticket, used: u64) {
        let mut invocation = self.settle_script.prepare_invoke();
        invocation
            .arg(ticket.scopes.len())
            .arg(ticket.estimated)
            .arg(used)
            .arg(&ticket.lease);
        for (scope, tpm) in &ticket.scopes {
            for key in self.scope_keys(scope) {
                invocation.key(key);
            }
            invocation.arg(tpm.unwrap_or(0));
        }
        invocation.key(self.ticket_key(&ticket.lease));
        for wait in RETRIES {
            if self.call::<i64>("settle", &invocation).await.is_ok() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Gives back what an admission whose answer was lost may have taken.
    async fn undo(self: &Arc<Self>, ticket: Ticket, hold: Option<HeldHere>) {
        if ticket.gives_back() {
            self.settle(ticket, 0).await;
        }
        if let Some(hold) = hold {
            self.apply(&[hold], &[], &[]).await;
        }
    }

    /// Releases holds: those of committed settlements with the figures read
    /// after the commit (`users`, `keys`), others (undone admissions)
    /// leaving the figures as Redis has them — in one pipelined round trip,
    /// retried a few times (releasing is idempotent). Past them the holds
    /// expire, and newer figures arrive with the next authentications.
    pub async fn apply(
        self: &Arc<Self>,
        holds: &[HeldHere],
        users: &[UserFigures],
        keys: &[KeyFigures],
    ) {
        if holds.is_empty() {
            return;
        }
        let keep = millis(self.hold_ttl.saturating_mul(2));
        let mut pipe = redis::pipe();
        for held in holds {
            let user = users.iter().find(|u| u.user_id == held.user_id);
            let key = keys.iter().find(|k| k.key_id == held.key_id);
            let mut keys_of = self.user_keys(held.user_id).to_vec();
            keys_of.extend(self.key_keys(&held.key_id));
            pipe.cmd("EVALSHA")
                .arg(self.apply_script.get_hash())
                .arg(keys_of.len())
                .arg(keys_of)
                .arg(&held.request_id)
                .arg(user.map_or(0, |u| u.balance))
                .arg(user.map_or(-1, |u| u.revision))
                .arg(key.map_or(0, |k| k.max_fee))
                .arg(key.map_or(0, |k| k.used_fee))
                .arg(key.map_or(-1, |k| k.revision))
                .arg(keep)
                .ignore();
        }
        for wait in RETRIES {
            if self.run("apply", &pipe).await.is_ok() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// How a call failed: before anything was sent, or with its outcome
/// unknown (it may have run).
enum CallError {
    NotSent(String),
    Unknown(String),
}

/// Consecutive failed calls after which the connection is made anew.
const RECONNECT_AFTER: u64 = 3;

/// Waits after each attempt of a call worth retrying (giving back leases
/// and holds: they would otherwise stay taken until they expire).
const RETRIES: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::ZERO,
];

/// A script with the hold functions (holds.lua) before it.
fn with_holds(script: &str) -> Script {
    Script::new(&[include_str!("holds.lua"), script].concat())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn headroom(limit: i64, remaining: i64, reset_ms: i64) -> Option<Headroom> {
    (limit > 0).then(|| Headroom {
        limit: limit as u64,
        remaining: remaining.max(0) as u64,
        reset: Duration::from_millis(reset_ms.max(0) as u64),
    })
}
