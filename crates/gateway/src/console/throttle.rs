//! Attempt throttling, counted on this instance. Logins: after
//! [`MAX_FAILURES`] failed logins within [`WINDOW`], an account — and,
//! separately, an address — is refused until the window ends, whatever the
//! password (so guessing gets nowhere, and a locked-out owner knows when to
//! try again). Sign-ups: a few per address per hour.
//!
//! An attempt is counted before its password is checked ([`Throttle::attempt`]
//! checks and counts at once), so attempts sent in parallel cannot all slip
//! under the limit; a login that succeeds is then forgiven.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most keys remembered: past it, expired ones are dropped first.
const MOST_KEYS: usize = 100_000;

pub struct Throttle {
    max: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Default for Throttle {
    /// The login throttle.
    fn default() -> Self {
        Throttle::new(MAX_FAILURES, WINDOW)
    }
}

impl Throttle {
    /// At most `max` attempts per key within `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Throttle {
            max,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        match self.counts.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// An attempt for each of `keys`: counted, unless one of them is
    /// already at its limit — then how long until it may try again.
    pub fn attempt(&self, keys: &[String], now: Instant) -> Result<(), Duration> {
        let mut counts = self.lock();
        if let Some(wait) = self.wait_in(&counts, keys, now) {
            return Err(wait);
        }
        self.count_in(&mut counts, keys, now);
        Ok(())
    }

    /// How long until `keys` may try again, if one is at its limit (nothing
    /// counted: for limits on what succeeded, counted with [`Self::count`]).
    pub fn wait(&self, keys: &[String], now: Instant) -> Option<Duration> {
        self.wait_in(&self.lock(), keys, now)
    }

    /// Counts one for each of `keys`.
    pub fn count(&self, keys: &[String], now: Instant) {
        self.count_in(&mut self.lock(), keys, now);
    }

    fn wait_in(
        &self,
        counts: &HashMap<String, (u32, Instant)>,
        keys: &[String],
        now: Instant,
    ) -> Option<Duration> {
        let window = self.window;
        keys.iter()
            .filter_map(|k| counts.get(k))
            .filter(|(count, since)| *count >= self.max && now < *since + window)
            .map(|(_, since)| *since + window - now)
            .max()
    }

    fn count_in(
        &self,
        counts: &mut HashMap<String, (u32, Instant)>,
        keys: &[String],
        now: Instant,
    ) {
        let window = self.window;
        if counts.len() >= MOST_KEYS {
            counts.retain(|_, (_, since)| now < *since + window);
        }
        for key in keys {
            let entry = counts.entry(key.clone()).or_insert((0, now));
            if now >= entry.1 + window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// A login that succeeded: its account's count is forgotten, and the
    /// attempt no longer counts against its other keys (the address).
    pub fn succeeded(&self, account: &str, others: &[String]) {
        let mut counts = self.lock();
        counts.remove(account);
        for key in others {
            if let Some(entry) = counts.get_mut(key) {
                entry.0 = entry.0.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_attempts_lock_an_account_or_an_address_for_the_window() {
        let throttle = Throttle::default();
        let start = Instant::now();
        let keys = ["user:1".to_string(), "ip:10.0.0.1".to_string()];
        for _ in 0..MAX_FAILURES {
            assert_eq!(throttle.attempt(&keys, start), Ok(()));
        }
        assert_eq!(throttle.attempt(&keys, start), Err(WINDOW));
        // The address is locked for another account too.
        let other = ["user:2".to_string(), "ip:10.0.0.1".to_string()];
        assert!(throttle.attempt(&other, start).is_err());
        // Until the window ends.
        assert_eq!(
            throttle.attempt(&keys, start + WINDOW),
            Ok(()),
            "a fresh window"
        );
        throttle.succeeded("user:1", &keys[1..]);
        assert_eq!(
            throttle.attempt(&["user:1".to_string()], start + WINDOW),
            Ok(())
        );
    }

    #[test]
    fn a_success_gives_its_attempt_back_to_the_address() {
        let throttle = Throttle::new(2, WINDOW);
        let now = Instant::now();
        let keys = ["user:1".to_string(), "ip:a".to_string()];
        for _ in 0..10 {
            assert_eq!(throttle.attempt(&keys, now), Ok(()));
            throttle.succeeded("user:1", &keys[1..]);
        }
    }

    #[test]
    fn attempts_at_once_never_pass_the_limit() {
        let throttle = std::sync::Arc::new(Throttle::default());
        let now = Instant::now();
        let passed: u32 = (0..8)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .filter(|_| throttle.attempt(&["user:1".to_string()], now).is_ok())
                        .count() as u32
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(passed, MAX_FAILURES);
    }
}
