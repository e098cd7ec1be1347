//! The generic cell rate algorithm: a rate limit as one number per scope,
//! the theoretical arrival time (TAT) of the next unit. A limit of `n`
//! units per `period` admits a burst of `n`, then one unit every
//! `period / n` — smoothly, with no window edge at which twice the limit
//! gets through. Requests are units of 1; tokens are units of their count.
//!
//! Times are nanoseconds on the caller's clock, so the rules are tested
//! with a clock the tests control.

use std::time::Duration;

/// `n` units per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub n: u64,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(n: u64) -> Rate {
        Rate {
            n,
            period: Duration::from_secs(60),
        }
    }

    /// Nanoseconds `units` occupy (multiplied before divided: a limit
    /// above one unit per nanosecond stays exact; rounded down, so that a
    /// burst of exactly `n` fits in the period).
    fn span(self, units: u64) -> u128 {
        u128::from(units) * self.period.as_nanos() / u128::from(self.n.max(1))
    }

    /// Whole units fitting in `nanos`.
    fn units_in(self, nanos: u128) -> u64 {
        let units = nanos.saturating_mul(u128::from(self.n.max(1))) / self.period.as_nanos().max(1);
        u64::try_from(units).unwrap_or(u64::MAX)
    }

    /// How far ahead of now the TAT may run: the whole burst.
    fn tolerance(self) -> u128 {
        self.period.as_nanos()
    }
}

/// A scope's state under one rate: the TAT, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gcra {
    tat: u128,
}

impl Gcra {
    /// The state after taking `cost` units at `now`, or how long until they
    /// would fit. A cost beyond the whole burst never fits (`None`).
    pub fn take(self, rate: Rate, now: u128, cost: u64) -> Result<Gcra, Option<Duration>> {
        let needed = rate.span(cost);
        if needed > rate.tolerance() {
            return Err(None);
        }
        let tat = self.tat.max(now).saturating_add(needed);
        let allowed_at = tat.saturating_sub(rate.tolerance());
        if allowed_at > now {
            return Err(Some(nanos(allowed_at - now)));
        }
        Ok(Gcra { tat })
    }

    /// Corrects a take of `estimated` units to `actual` ones (tokens are
    /// known only once the upstream reported them). The TAT never moves
    /// before `now`: capacity unused in the past is not banked.
    pub fn reconcile(self, rate: Rate, now: u128, estimated: u64, actual: u64) -> Gcra {
        let tat = if actual >= estimated {
            self.tat.saturating_add(rate.span(actual - estimated))
        } else {
            let back = rate.span(estimated - actual);
            self.tat.saturating_sub(back).max(now.min(self.tat))
        };
        Gcra { tat }
    }

    /// Units that could be taken at once at `now`.
    pub fn remaining(self, rate: Rate, now: u128) -> u64 {
        let used = self.tat.saturating_sub(now);
        rate.units_in(rate.tolerance().saturating_sub(used))
    }

    /// When the whole burst is available again.
    pub fn reset_after(self, now: u128) -> Duration {
        nanos(self.tat.saturating_sub(now))
    }
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u128 = 1_000_000_000;

    #[test]
    fn a_burst_gets_exactly_the_limit_then_one_per_interval() {
        let rate = Rate::per_minute(60);
        let mut state = Gcra::default();
        let now = 100 * SEC;
        let mut admitted = 0;
        let mut waits = Vec::new();
        for _ in 0..200 {
            match state.take(rate, now, 1) {
                Ok(next) => {
                    state = next;
                    admitted += 1;
                }
                Err(wait) => waits.push(wait),
            }
        }
        assert_eq!(admitted, 60);
        assert_eq!(waits[0], Some(Duration::from_secs(1)));
        assert_eq!(state.remaining(rate, now), 0);
        assert_eq!(state.reset_after(now), Duration::from_secs(60));
        // One more a second later, not two; the whole burst a minute later.
        assert!(state.take(rate, now + SEC - 1, 1).is_err());
        let state = state.take(rate, now + SEC, 1).unwrap();
        assert!(state.take(rate, now + SEC, 1).is_err());
        assert_eq!(state.remaining(rate, now + 61 * SEC), 60);
    }

    #[test]
    fn no_window_edge_lets_twice_the_limit_through() {
        let rate = Rate::per_minute(10);
        let mut state = Gcra::default();
        let mut admitted = 0;
        // A request every 100 ms for two minutes: the burst of 10, then
        // one every 6 s (at 6 s, 12 s, … 114 s) — never 20 in a minute.
        for i in 0..1_200u128 {
            if let Ok(next) = state.take(rate, 1_000 * SEC + i * SEC / 10, 1) {
                state = next;
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10 + 19);
    }

    #[test]
    fn tokens_are_taken_as_estimated_then_reconciled() {
        let rate = Rate::per_minute(1_000);
        let now = 10 * SEC;
        let state = Gcra::default().take(rate, now, 600).unwrap();
        assert_eq!(state.remaining(rate, now), 400);
        // 600 estimated, 100 used: 500 come back.
        let state = state.reconcile(rate, now, 600, 100);
        assert_eq!(state.remaining(rate, now), 900);
        // 100 estimated, 700 used: the excess is owed.
        let state = state
            .take(rate, now, 100)
            .unwrap()
            .reconcile(rate, now, 100, 700);
        assert_eq!(state.remaining(rate, now), 200);
        // Past capacity is never banked.
        let later = 1_000 * SEC;
        let idle = Gcra::default().reconcile(rate, later, 500, 0);
        assert_eq!(idle.remaining(rate, later), 1_000);
        // A cost beyond the whole burst never fits.
        assert_eq!(Gcra::default().take(rate, now, 1_001), Err(None));
    }

    #[test]
    fn limits_beyond_a_unit_per_nanosecond_stay_exact() {
        let rate = Rate::per_minute(100_000_000_000);
        let now = 5 * SEC;
        let state = Gcra::default().take(rate, now, 30).unwrap();
        assert_eq!(state.remaining(rate, now), 100_000_000_000 - 30);
        let small = Rate::per_minute(7);
        let state = Gcra::default().take(small, now, 1).unwrap();
        assert_eq!(state.remaining(small, now), 6);
    }
}
