//! Login throttling: after [`MAX_FAILURES`] failed logins within
//! [`WINDOW`], an account — and, separately, an address — is refused until
//! the window ends, whatever the password (so guessing gets nowhere, and a
//! locked-out owner knows when to try again). Counted on this instance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most keys remembered: past it, expired ones are dropped first.
const MOST_KEYS: usize = 100_000;

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        match self.failures.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// How long until `keys` may try again, if any of them is locked.
    pub fn wait(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let failures = self.lock();
        keys.iter()
            .filter_map(|k| failures.get(k))
            .filter(|(count, since)| *count >= MAX_FAILURES && now < *since + WINDOW)
            .map(|(_, since)| *since + WINDOW - now)
            .max()
    }

    /// A failed login for each of `keys`.
    pub fn failed(&self, keys: &[String], now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= MOST_KEYS {
            failures.retain(|_, (_, since)| now < *since + WINDOW);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert((0, now));
            if now >= entry.1 + WINDOW {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// A successful login: the account's failures are forgotten.
    pub fn succeeded(&self, account: &str) {
        self.lock().remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_an_account_or_an_address_for_the_window() {
        let throttle = Throttle::default();
        let start = Instant::now();
        let keys = ["user:alice".to_string(), "ip:10.0.0.1".to_string()];
        for _ in 0..MAX_FAILURES {
            assert_eq!(throttle.wait(&keys, start), None);
            throttle.failed(&keys, start);
        }
        assert_eq!(throttle.wait(&keys, start), Some(WINDOW));
        // The address is locked for another account too.
        let other = ["user:bob".to_string(), "ip:10.0.0.1".to_string()];
        assert!(throttle.wait(&other, start).is_some());
        // Until the window ends.
        assert_eq!(throttle.wait(&keys, start + WINDOW), None);
        throttle.failed(&keys, start + WINDOW);
        assert_eq!(throttle.wait(&keys, start + WINDOW), None, "a fresh window");
        throttle.succeeded("user:alice");
        assert!(throttle.wait(&["user:alice".to_string()], start).is_none());
    }
}
