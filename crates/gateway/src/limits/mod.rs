//! Rate limits: requests per minute, tokens per minute and concurrent
//! requests, for any scope the caller names (a key, a user, a model, the
//! whole gateway…). All the limits of one request are checked and taken at
//! once, or none is: a request refused by one scope costs no other scope
//! anything.
//!
//! * Requests per minute by GCRA ([`gcra`]): a burst of the limit, then
//!   one request every `60 s / limit`.
//! * Tokens per minute by estimate, then reconcile: the request's estimated
//!   tokens are taken at admission, and corrected to what the upstream
//!   reported at settlement ([`Limiter::settle`]).
//! * Concurrency by leases that expire (`lease_ttl`): a lease its request
//!   never returned (a task that died) is not held forever.
//!
//! This is the in-memory limiter of one instance; scopes live in sharded
//! maps (no global lock), locked in shard order so that a request taking
//! several never deadlocks another.

pub mod fields;
pub mod gcra;
pub mod refusals;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState as FastHash;
use gcra::{Gcra, Rate};

const SHARDS: usize = 16;
/// Scopes kept per shard before idle ones are dropped.
const SWEEP_AT: usize = 4_096;

/// The limits of one scope (as configured, e.g. `[rate_limits.groups.X]`);
/// an unset one does not limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u32>,
}

impl Limits {
    pub fn is_set(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.concurrency.is_some()
    }

    /// The limits set on a user or a key, as the store keeps them. The
    /// APIs that write them accept only positive values that fit (see
    /// [`fields`]); a value outside them, which only an edit of the
    /// database could leave, does not limit rather than refuse everything.
    pub fn from_stored(stored: &store::RateLimits) -> Limits {
        let positive = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
        Limits {
            rpm: positive(stored.rpm),
            tpm: positive(stored.tpm),
            concurrency: stored
                .concurrency
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
        }
    }
}

/// What a scope limits, read from the first part of its name (`key:…`,
/// `user:…`, `group:…`, `tier:…`, `model:…`, `global`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Key,
    User,
    Group,
    Tier,
    Model,
    Global,
}

impl ScopeKind {
    pub const ALL: [ScopeKind; 6] = [
        ScopeKind::Key,
        ScopeKind::User,
        ScopeKind::Group,
        ScopeKind::Tier,
        ScopeKind::Model,
        ScopeKind::Global,
    ];

    /// The kind of the scope named `scope`; a name of no known kind is
    /// the gateway's own.
    pub fn of(scope: &str) -> ScopeKind {
        match scope.split_once(':').map_or(scope, |(kind, _)| kind) {
            "key" => ScopeKind::Key,
            "user" => ScopeKind::User,
            "group" => ScopeKind::Group,
            "tier" => ScopeKind::Tier,
            "model" => ScopeKind::Model,
            _ => ScopeKind::Global,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::User => "user",
            ScopeKind::Group => "group",
            ScopeKind::Tier => "tier",
            ScopeKind::Model => "model",
            ScopeKind::Global => "global",
        }
    }
}

/// One scope a request is counted in, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is limited, e.g. `key:…`, `user:7`, `model:gpt-4o`.
    pub scope: String,
    pub limits: Limits,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Concurrency,
}

/// A refused request: which scope and limit, and when it could pass
/// (`None`: not by waiting — it asks more tokens than the whole minute's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub scope: String,
    pub kind: LimitKind,
    pub retry_after: Option<Duration>,
}

/// The tightest of a request's limits of one kind after it was admitted:
/// for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    pub limit: u64,
    pub remaining: u64,
    /// When the whole limit is available again.
    pub reset: Duration,
}

/// One scope's limits and what is left of them at a moment ([`Limiter::peek`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeStatus {
    pub scope: String,
    pub limits: Limits,
    /// Requests per minute: the limit, the requests that would pass at
    /// once, and when the whole burst is back (`None`: no such limit).
    pub requests: Option<Headroom>,
    /// Tokens per minute, likewise.
    pub tokens: Option<Headroom>,
    /// Concurrency leases held and not expired.
    pub in_use: u32,
}

/// What an admitted request took, to give back or correct at settlement.
#[derive(Debug, Default)]
pub struct Admission {
    taken: Vec<Taken>,
    /// The tokens taken (the estimate).
    estimated: u64,
    pub requests: Option<Headroom>,
    pub tokens: Option<Headroom>,
}

#[derive(Debug)]
struct Taken {
    scope: String,
    shard: usize,
    tpm: Option<Rate>,
    lease: Option<u64>,
}

#[derive(Debug, Default)]
struct ScopeState {
    requests: Gcra,
    tokens: Gcra,
    /// Leases held: (id, expires at, in nanoseconds since the epoch).
    leases: Leases,
}

impl ScopeState {
    fn idle(&self, now: u128) -> bool {
        self.leases.held(now) == 0
            && self.requests.reset_after(now).is_zero()
            && self.tokens.reset_after(now).is_zero()
    }
}

/// A scope's concurrency leases: (id, expires at), in the order they were
/// taken — ids rising, and expiries too (give or take the moments between
/// reading the clock and taking the lock) — so that counting them, taking
/// one and giving one back cost no scan of the others.
#[derive(Debug, Default)]
struct Leases(VecDeque<(u64, u128)>);

impl Leases {
    /// Leases held at `now`, not counting those expired.
    fn held(&self, now: u128) -> usize {
        let expired = self.0.partition_point(|(_, until)| *until <= now);
        self.0.len() - expired
    }

    fn take(&mut self, id: u64, expires: u128, now: u128) {
        while self.0.front().is_some_and(|(_, until)| *until <= now) {
            self.0.pop_front();
        }
        // Kept in order of expiry: a lease taken a moment after another
        // but with an earlier clock reading lives that moment longer.
        let expires = self
            .0
            .back()
            .map_or(expires, |(_, last)| expires.max(*last));
        self.0.push_back((id, expires));
    }

    fn give_back(&mut self, id: u64) {
        if let Ok(i) = self.0.binary_search_by_key(&id, |(lease, _)| *lease) {
            self.0.remove(i);
        }
    }
}

#[derive(Default)]
struct Shard {
    /// Scope names are the gateway's own (ids, configured names), not a
    /// client's choice: a fast hash, not a DoS-resistant one.
    scopes: HashMap<String, ScopeState, FastHash>,
    sweep_at: usize,
}

/// The shards a request's scopes live in, locked; the others `None`.
type Locked<'a> = [Option<MutexGuard<'a, Shard>>; SHARDS];

pub struct Limiter {
    shards: Vec<Mutex<Shard>>,
    epoch: Instant,
    lease_ttl: Duration,
    next_lease: AtomicU64,
}

impl Limiter {
    pub fn new(lease_ttl: Duration) -> Limiter {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            epoch: Instant::now(),
            lease_ttl,
            next_lease: AtomicU64::new(1),
        }
    }

    fn nanos(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.epoch).as_nanos()
    }

    fn shard_of(scope: &str) -> usize {
        // FNV-1a: stable and cheap; the shard only spreads the locks.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in scope.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        (hash % SHARDS as u64) as usize
    }

    /// Locks the shards of `checks` (each once, in shard order, so that two
    /// requests never wait for each other's), without allocating.
    fn lock(&self, checks: &[Check]) -> Locked<'_> {
        let mut wanted: u32 = 0;
        for check in checks {
            wanted |= 1 << Self::shard_of(&check.scope);
        }
        let mut guards: Locked<'_> = std::array::from_fn(|_| None);
        for (i, guard) in guards.iter_mut().enumerate() {
            if wanted & (1 << i) != 0 {
                *guard = Some(match self.shards[i].lock() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                });
            }
        }
        guards
    }

    /// Admits a request counted in every scope of `checks`, estimated at
    /// `tokens`, or refuses it having changed nothing.
    pub fn admit(
        &self,
        checks: Vec<Check>,
        tokens: u64,
        at: Instant,
    ) -> Result<Admission, Refusal> {
        if checks.is_empty() {
            return Ok(Admission::default());
        }
        let now = self.nanos(at);
        let mut shards = self.lock(&checks);
        // Phase 1: every limit checked against what the state would become.
        let mut next: Vec<(usize, Gcra, Gcra, bool)> = Vec::with_capacity(checks.len());
        for check in &checks {
            let at_shard = Self::shard_of(&check.scope);
            let state = shards[at_shard]
                .as_ref()
                .and_then(|shard| shard.scopes.get(check.scope.as_str()));
            let (requests, tokens_state, leases) = match state {
                Some(s) => (s.requests, s.tokens, s.leases.held(now)),
                None => (Gcra::default(), Gcra::default(), 0),
            };
            let refuse = |kind, retry_after| Refusal {
                scope: check.scope.clone(),
                kind,
                retry_after,
            };
            let requests = match check.limits.rpm {
                Some(rpm) => requests
                    .take(Rate::per_minute(rpm), now, 1)
                    .map_err(|wait| refuse(LimitKind::Requests, wait))?,
                None => requests,
            };
            let tokens_state = match check.limits.tpm {
                Some(tpm) => tokens_state
                    .take(Rate::per_minute(tpm), now, tokens)
                    .map_err(|wait| refuse(LimitKind::Tokens, wait))?,
                None => tokens_state,
            };
            let lease = match check.limits.concurrency {
                Some(max) if leases >= max as usize => {
                    return Err(refuse(LimitKind::Concurrency, Some(Duration::from_secs(1))))
                }
                Some(_) => true,
                None => false,
            };
            next.push((at_shard, requests, tokens_state, lease));
        }
        // Phase 2: all admitted; the states are written.
        let mut admission = Admission {
            estimated: tokens,
            ..Admission::default()
        };
        let expires = now.saturating_add(self.lease_ttl.as_nanos());
        for (check, (at_shard, requests, tokens_state, lease)) in checks.into_iter().zip(next) {
            let Some(shard) = shards[at_shard].as_mut() else {
                continue;
            };
            if shard.scopes.len() >= shard.sweep_at.max(SWEEP_AT) {
                shard.scopes.retain(|_, s| !s.idle(now));
                shard.sweep_at = (shard.scopes.len() * 2).max(SWEEP_AT);
            }
            // A scope seen before is found without copying its name.
            let state = match shard.scopes.get_mut(check.scope.as_str()) {
                Some(state) => state,
                None => shard.scopes.entry(check.scope.clone()).or_default(),
            };
            state.requests = requests;
            state.tokens = tokens_state;
            let lease = lease.then(|| {
                let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
                state.leases.take(id, expires, now);
                id
            });
            if let Some(rpm) = check.limits.rpm {
                tighten(&mut admission.requests, headroom(rpm, requests, now));
            }
            if let Some(tpm) = check.limits.tpm {
                tighten(&mut admission.tokens, headroom(tpm, tokens_state, now));
            }
            // Only what settlement changes is remembered: a scope limited
            // by requests alone has nothing to give back.
            let tpm = check.limits.tpm.map(Rate::per_minute);
            if tpm.is_some() || lease.is_some() {
                admission.taken.push(Taken {
                    scope: check.scope,
                    shard: at_shard,
                    tpm,
                    lease,
                });
            }
        }
        Ok(admission)
    }

    /// The request is done: its tokens are corrected from the estimate to
    /// `actual`, and its leases returned.
    pub fn settle(&self, admission: Admission, actual: u64, at: Instant) {
        if admission.taken.is_empty() {
            return;
        }
        let now = self.nanos(at);
        for taken in admission.taken {
            let mut shard = match self.shards[taken.shard].lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            let Some(state) = shard.scopes.get_mut(taken.scope.as_str()) else {
                continue;
            };
            if let Some(rate) = taken.tpm {
                state.tokens = state
                    .tokens
                    .reconcile(rate, now, admission.estimated, actual);
            }
            if let Some(id) = taken.lease {
                state.leases.give_back(id);
            }
        }
    }

    /// Each scope of `checks` as it stands at `at`, in the order of
    /// `checks`, taking nothing: what a client may still send. A scope
    /// never used (or forgotten as idle) has all of its limits left.
    pub fn peek(&self, checks: &[Check], at: Instant) -> Vec<ScopeStatus> {
        let now = self.nanos(at);
        // All the shards at once, for one consistent picture.
        let shards = self.lock(checks);
        checks
            .iter()
            .map(|check| {
                let state = shards[Self::shard_of(&check.scope)]
                    .as_ref()
                    .and_then(|shard| shard.scopes.get(check.scope.as_str()));
                let (requests, tokens, in_use) = match state {
                    Some(s) => (s.requests, s.tokens, s.leases.held(now)),
                    None => (Gcra::default(), Gcra::default(), 0),
                };
                ScopeStatus {
                    scope: check.scope.clone(),
                    limits: check.limits,
                    requests: check.limits.rpm.map(|rpm| headroom(rpm, requests, now)),
                    tokens: check.limits.tpm.map(|tpm| headroom(tpm, tokens, now)),
                    in_use: u32::try_from(in_use).unwrap_or(u32::MAX),
                }
            })
            .collect()
    }
}

/// What is left of a per-minute `limit` in `state` at `now`.
fn headroom(limit: u64, state: Gcra, now: u128) -> Headroom {
    Headroom {
        limit,
        remaining: state.remaining(Rate::per_minute(limit), now),
        reset: state.reset_after(now),
    }
}

/// Keeps in `tightest` the limit with the least room.
fn tighten(tightest: &mut Option<Headroom>, here: Headroom) {
    match tightest {
        Some(kept) if kept.remaining <= here.remaining => {}
        _ => *tightest = Some(here),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scope: &str, rpm: Option<u64>, tpm: Option<u64>, concurrency: Option<u32>) -> Check {
        Check {
            scope: scope.into(),
            limits: Limits {
                rpm,
                tpm,
                concurrency,
            },
        }
    }

    #[test]
    fn a_key_at_60_rpm_gets_60_of_a_burst_of_200() {
        let limiter = Limiter::new(Duration::from_secs(600));
        let now = Instant::now();
        let checks = [check("key:a", Some(60), None, None)];
        let results: Vec<_> = (0..200)
            .map(|_| limiter.admit(checks.to_vec(), 10, now))
            .collect();
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(admitted, 60);
        let refusal = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(refusal.kind, LimitKind::Requests);
        assert_eq!(refusal.retry_after, Some(Duration::from_secs(1)));
        let first = results[0].as_ref().unwrap().requests.unwrap();
        assert_eq!((first.limit, first.remaining), (60, 59));
    }

    #[test]
    fn all_limits_are_taken_or_none() {
        let limiter = Limiter::new(Duration::from_secs(600));
        let now = Instant::now();
        let user = check("user:1", Some(1_000), Some(1_000), None);
        let model = check("model:m", Some(2), None, None);
        let both = [user.clone(), model];
        assert!(limiter.admit(both.to_vec(), 100, now).is_ok());
        assert!(limiter.admit(both.to_vec(), 100, now).is_ok());
        // The model refuses the third: the user's scope is left untouched.
        let refused = limiter.admit(both.to_vec(), 100, now).unwrap_err();
        assert_eq!(
            (refused.scope.as_str(), refused.kind),
            ("model:m", LimitKind::Requests)
        );
        let alone = limiter.admit(vec![user], 0, now).unwrap();
        assert_eq!(alone.requests.unwrap().remaining, 1_000 - 3);
        assert_eq!(alone.tokens.unwrap().remaining, 1_000 - 200);
        // The tightest limit is the one reported.
        let limiter = Limiter::new(Duration::from_secs(600));
        let both = [
            check("a", Some(100), None, None),
            check("b", Some(10), None, None),
        ];
        let admitted = limiter.admit(both.to_vec(), 0, now).unwrap();
        assert_eq!(admitted.requests.unwrap().limit, 10);
    }

    #[test]
    fn tokens_are_corrected_at_settlement() {
        let limiter = Limiter::new(Duration::from_secs(600));
        let now = Instant::now();
        let checks = [check("user:1", None, Some(1_000), None)];
        let admission = limiter.admit(checks.to_vec(), 800, now).unwrap();
        assert_eq!(admission.tokens.unwrap().remaining, 200);
        assert!(
            limiter.admit(checks.to_vec(), 300, now).is_err(),
            "800 held by the estimate"
        );
        limiter.settle(admission, 100, now);
        let again = limiter.admit(checks.to_vec(), 300, now).unwrap();
        assert_eq!(again.tokens.unwrap().remaining, 600);
        // An estimate beyond the whole minute can never pass.
        let never = limiter.admit(checks.to_vec(), 5_000, now).unwrap_err();
        assert_eq!((never.kind, never.retry_after), (LimitKind::Tokens, None));
    }

    #[test]
    fn leases_bound_concurrency_and_expire_when_never_returned() {
        let limiter = Limiter::new(Duration::from_secs(30));
        let now = Instant::now();
        let checks = [check("key:a", None, None, Some(2))];
        let one = limiter.admit(checks.to_vec(), 0, now).unwrap();
        let _two = limiter.admit(checks.to_vec(), 0, now).unwrap();
        let refused = limiter.admit(checks.to_vec(), 0, now).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Concurrency);
        limiter.settle(one, 0, now);
        assert!(
            limiter.admit(checks.to_vec(), 0, now).is_ok(),
            "a returned lease frees its place"
        );
        assert!(limiter.admit(checks.to_vec(), 0, now).is_err());
        // Never returned: gone after the lease's lifetime.
        let later = now + Duration::from_secs(31);
        assert!(limiter.admit(checks.to_vec(), 0, later).is_ok());
        assert!(limiter.admit(checks.to_vec(), 0, later).is_ok());
    }

    #[test]
    fn peeking_tells_what_is_left_and_takes_nothing() {
        let limiter = Limiter::new(Duration::from_secs(600));
        let now = Instant::now();
        let checks = [
            check("key:a", Some(60), Some(1_000), Some(2)),
            check("global", Some(10), None, None),
        ];
        // Never used: everything is left.
        let fresh = limiter.peek(&checks, now);
        assert_eq!(
            fresh[0].requests,
            Some(Headroom {
                limit: 60,
                remaining: 60,
                reset: Duration::ZERO
            })
        );
        assert_eq!(fresh[0].tokens.unwrap().remaining, 1_000);
        assert_eq!((fresh[0].in_use, fresh[1].tokens), (0, None));
        assert_eq!(fresh[1].scope, "global");

        let admitted = limiter.admit(checks.to_vec(), 300, now).unwrap();
        let after = limiter.peek(&checks, now);
        let requests = after[0].requests.unwrap();
        assert_eq!(
            (requests.remaining, requests.reset),
            (59, Duration::from_secs(1))
        );
        let tokens = after[0].tokens.unwrap();
        assert_eq!(
            (tokens.remaining, tokens.reset),
            (700, Duration::from_secs(18))
        );
        assert_eq!(after[0].in_use, 1);
        assert_eq!(after[1].requests.unwrap().remaining, 9);
        // Peeking again finds the same: it took nothing.
        assert_eq!(limiter.peek(&checks, now), after);

        limiter.settle(admitted, 100, now);
        let settled = limiter.peek(&checks, now);
        assert_eq!(settled[0].in_use, 0);
        assert_eq!(settled[0].tokens.unwrap().remaining, 900);
        // A minute later, all of it is back.
        let later = limiter.peek(&checks, now + Duration::from_secs(60));
        assert_eq!(later[0].requests.unwrap().remaining, 60);

        // Peeking at a scope never used leaves no state behind.
        limiter.peek(&[check("key:b", Some(5), None, None)], now);
        let known = limiter
            .shards
            .iter()
            .any(|s| s.lock().unwrap().scopes.contains_key("key:b"));
        assert!(!known);
    }

    #[test]
    fn scope_kinds_are_read_from_scope_names() {
        assert_eq!(ScopeKind::of("key:key_abc"), ScopeKind::Key);
        assert_eq!(ScopeKind::of("user:7"), ScopeKind::User);
        assert_eq!(ScopeKind::of("group:vip:user:7"), ScopeKind::Group);
        assert_eq!(ScopeKind::of("tier:pro:user:7"), ScopeKind::Tier);
        assert_eq!(ScopeKind::of("model:ft:x"), ScopeKind::Model);
        assert_eq!(ScopeKind::of("global"), ScopeKind::Global);
        assert_eq!(ScopeKind::Tier.as_str(), "tier");
    }

    #[test]
    fn idle_scopes_are_forgotten() {
        let limiter = Limiter::new(Duration::from_secs(30));
        let now = Instant::now();
        let one = |scope: String, at| {
            limiter
                .admit(vec![check(&scope, Some(60), None, None)], 0, at)
                .unwrap();
        };
        // Fewer than a shard holds before sweeping, then idle.
        for i in 0..SWEEP_AT * SHARDS / 4 {
            one(format!("old:{i}"), now);
        }
        // A minute later, enough new scopes to make every shard sweep.
        let later = now + Duration::from_secs(61);
        for i in 0..2 * SWEEP_AT * SHARDS {
            one(format!("new:{i}"), later);
        }
        let old_kept: usize = limiter
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap()
                    .scopes
                    .keys()
                    .filter(|k| k.starts_with("old:"))
                    .count()
            })
            .sum();
        assert_eq!(old_kept, 0);
    }
}
