//! The health of one channel, from its recent outcomes.
//!
//! * A channel **cools down** when, over the last `window`, at least
//!   `min_requests` were sent and `failure_ratio` of them failed — not on a
//!   first failure. It is left out of selection for `cooldown`.
//! * It cools down **at once** when the upstream refuses its key (401 or
//!   403): no request of any client can succeed with it. A probe after the
//!   cooldown tells whether the key works again (a restored key brings the
//!   channel back without an operator).
//! * An operator may **disable** it until enabled again.
//! * After a cooldown it is **half-open**: one request at a time probes it;
//!   a success makes it healthy again (its window cleared), a failure
//!   cools it down once more.
//!
//! Times come in as arguments, so the transitions are tested with a clock
//! the tests control.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a channel cools down, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub window: Duration,
    pub min_requests: u32,
    pub failure_ratio: f64,
    pub cooldown: Duration,
}

/// What an attempt on a channel came to, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The upstream answered (whatever the client asked, it was served).
    Served,
    /// Not reached, no answer in time, or an answer worth another channel.
    Failed,
    /// The upstream refused its key.
    Refused,
}

/// Where a channel stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Healthy,
    CoolingDown {
        since: Instant,
        until: Instant,
    },
    /// Cooled down; one probe may go (another if the last one's outcome is
    /// not known within a cooldown: a probe is never waited on forever).
    HalfOpen {
        since: Instant,
        probe_at: Option<Instant>,
    },
    Disabled {
        reason: String,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Attempts within the window, oldest first: (when, failed); with the
    /// number of failures among them, so that nothing is counted twice.
    recent: VecDeque<(Instant, bool)>,
    failures: usize,
}

impl Inner {
    /// Forgets attempts older than the window ending `now`.
    fn prune(&mut self, window: Duration, now: Instant) {
        let Some(from) = now.checked_sub(window) else {
            return;
        };
        while let Some(&(at, failed)) = self.recent.front() {
            if at >= from {
                break;
            }
            self.recent.pop_front();
            self.failures -= usize::from(failed);
        }
    }

    fn clear(&mut self) {
        self.recent.clear();
        self.failures = 0;
    }
}

/// Longest history kept, whatever the window: bounds memory per channel.
const MAX_RECENT: usize = 1_000;

#[derive(Debug)]
pub struct Health {
    inner: Mutex<Inner>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            inner: Mutex::new(Inner {
                state: State::Healthy,
                recent: VecDeque::new(),
                failures: 0,
            }),
        }
    }
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    /// The share of failures and the attempts in the window ending `now`.
    pub fn recent(&self, policy: &Policy, now: Instant) -> (f64, usize) {
        let mut inner = self.lock();
        inner.prune(policy.window, now);
        let (failed, total) = (inner.failures, inner.recent.len());
        let ratio = if total == 0 {
            0.0
        } else {
            failed as f64 / total as f64
        };
        (ratio, total)
    }

    /// Whether the channel may take a request now; a half-open channel
    /// takes one probe at a time (the caller must report its outcome).
    pub fn admit(&self, cooldown: Duration, now: Instant) -> bool {
        let mut inner = self.lock();
        match inner.state {
            State::Healthy => true,
            State::Disabled { .. } => false,
            State::CoolingDown { since, until } => {
                if now < until {
                    return false;
                }
                inner.state = State::HalfOpen {
                    since,
                    probe_at: Some(now),
                };
                true
            }
            State::HalfOpen { since, probe_at } => {
                let waited = match probe_at {
                    Some(at) => now.saturating_duration_since(at) >= cooldown,
                    None => true,
                };
                if !waited {
                    return false;
                }
                inner.state = State::HalfOpen {
                    since,
                    probe_at: Some(now),
                };
                true
            }
        }
    }

    /// Since when the channel has been out of service (cooling down or
    /// half-open), if it is: the longest out is tried first when every
    /// channel of a model is.
    pub fn out_since(&self) -> Option<Instant> {
        match self.lock().state {
            State::CoolingDown { since, .. } | State::HalfOpen { since, .. } => Some(since),
            _ => None,
        }
    }

    /// Records an attempt's outcome.
    pub fn record(&self, attempt: Attempt, policy: &Policy, now: Instant) {
        let mut inner = self.lock();
        if attempt == Attempt::Refused {
            if !matches!(inner.state, State::Disabled { .. }) {
                let since = match inner.state {
                    State::CoolingDown { since, .. } | State::HalfOpen { since, .. } => since,
                    _ => now,
                };
                inner.state = State::CoolingDown {
                    since,
                    until: now + policy.cooldown,
                };
            }
            return;
        }
        let failed = attempt == Attempt::Failed;
        match inner.state {
            State::HalfOpen { since, .. } => {
                inner.state = if failed {
                    State::CoolingDown {
                        since,
                        until: now + policy.cooldown,
                    }
                } else {
                    inner.clear();
                    State::Healthy
                };
                return;
            }
            State::Healthy => {}
            // An answer to a request admitted before the state changed.
            State::CoolingDown { .. } | State::Disabled { .. } => return,
        }
        inner.prune(policy.window, now);
        if inner.recent.len() == MAX_RECENT {
            if let Some((_, oldest_failed)) = inner.recent.pop_front() {
                inner.failures -= usize::from(oldest_failed);
            }
        }
        inner.recent.push_back((now, failed));
        inner.failures += usize::from(failed);
        let (failures, total) = (inner.failures, inner.recent.len());
        if failed
            && total >= policy.min_requests as usize
            && failures as f64 >= policy.failure_ratio * total as f64
        {
            inner.state = State::CoolingDown {
                since: now,
                until: now + policy.cooldown,
            };
        }
    }

    /// An operator's decision: out of service until enabled again.
    pub fn disable(&self, reason: &str) {
        self.lock().state = State::Disabled {
            reason: reason.to_string(),
        };
    }

    /// An operator's decision: healthy, its history forgotten.
    pub fn enable(&self) {
        let mut inner = self.lock();
        inner.state = State::Healthy;
        inner.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            window: Duration::from_secs(60),
            min_requests: 4,
            failure_ratio: 0.5,
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_first_failure_does_not_cool_a_channel_down_a_failing_window_does() {
        let (h, p, t0) = (Health::default(), policy(), Instant::now());
        h.record(Attempt::Failed, &p, t0);
        assert_eq!(h.state(), State::Healthy);
        h.record(Attempt::Served, &p, t0);
        h.record(Attempt::Served, &p, t0);
        assert_eq!(h.state(), State::Healthy, "1 of 3: too few to judge");
        h.record(Attempt::Failed, &p, t0 + Duration::from_secs(1));
        assert!(
            matches!(h.state(), State::CoolingDown { .. }),
            "2 of 4 failed"
        );
        assert!(!h.admit(p.cooldown, t0 + Duration::from_secs(30)));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let (h, p, t0) = (Health::default(), policy(), Instant::now());
        for _ in 0..3 {
            h.record(Attempt::Failed, &p, t0);
        }
        let later = t0 + Duration::from_secs(61);
        h.record(Attempt::Served, &p, later);
        h.record(Attempt::Served, &p, later);
        h.record(Attempt::Served, &p, later);
        h.record(Attempt::Failed, &p, later);
        assert_eq!(h.state(), State::Healthy, "1 of the last 4");
        assert_eq!(h.recent(&p, later), (0.25, 4));
    }

    #[test]
    fn after_its_cooldown_one_probe_decides() {
        let (h, p, t0) = (Health::default(), policy(), Instant::now());
        for _ in 0..4 {
            h.record(Attempt::Failed, &p, t0);
        }
        let after = t0 + Duration::from_secs(31);
        assert!(h.admit(p.cooldown, after), "the probe");
        assert!(!h.admit(p.cooldown, after), "one probe at a time");
        let lost = after + Duration::from_secs(30);
        assert!(
            h.admit(p.cooldown, lost),
            "a probe whose outcome never came"
        );
        h.record(Attempt::Failed, &p, after);
        assert!(matches!(h.state(), State::CoolingDown { since, .. } if since == t0));
        let later = after + Duration::from_secs(31);
        assert!(h.admit(p.cooldown, later));
        h.record(Attempt::Served, &p, later);
        assert_eq!(h.state(), State::Healthy);
        assert_eq!(h.recent(&p, later), (0.0, 0), "a fresh start");
        assert!(h.admit(p.cooldown, later) && h.admit(p.cooldown, later));
    }

    #[test]
    fn a_refused_key_cools_down_at_once_and_a_probe_brings_it_back() {
        let (h, p, t0) = (Health::default(), policy(), Instant::now());
        h.record(Attempt::Refused, &p, t0);
        assert!(
            matches!(h.state(), State::CoolingDown { .. }),
            "no minimum sample"
        );
        assert!(!h.admit(p.cooldown, t0 + Duration::from_secs(29)));
        let after = t0 + Duration::from_secs(30);
        assert!(h.admit(p.cooldown, after));
        h.record(Attempt::Served, &p, after);
        assert_eq!(h.state(), State::Healthy);
    }

    #[test]
    fn an_operator_disables_until_enabling() {
        let (h, p, t0) = (Health::default(), policy(), Instant::now());
        h.disable("maintenance");
        assert_eq!(
            h.state(),
            State::Disabled {
                reason: "maintenance".into()
            }
        );
        h.record(Attempt::Refused, &p, t0);
        assert!(!h.admit(p.cooldown, t0 + Duration::from_secs(3_600)));
        h.enable();
        assert!(h.admit(p.cooldown, t0));
    }
}
