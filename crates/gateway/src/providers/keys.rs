//! A provider's upstream keys, used in rotation. Each call takes the next
//! key that is not resting; a key the upstream rate-limited (429) rests for
//! the upstream's `retry-after` (else `[failover] key_rest_secs`), one it
//! refused (401, 403) for the channel cooldown. A request whose key was
//! rate-limited or refused tries the provider's other keys before another
//! channel (see `pipeline::send`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};

/// Which of a provider's keys a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIndex(pub usize);

pub(super) struct Key {
    /// The header carrying it.
    pub header: (HeaderName, HeaderValue),
    /// The key itself, kept only to scrub it from errors.
    pub secret: String,
    /// Until when it rests, in milliseconds since `Keys::epoch` (0: never).
    resting_until: AtomicU64,
}

pub(super) struct Keys {
    keys: Vec<Key>,
    next: AtomicUsize,
    epoch: Instant,
}

impl Keys {
    pub fn new(keys: Vec<(String, (HeaderName, HeaderValue))>) -> Keys {
        Keys {
            keys: keys
                .into_iter()
                .map(|(secret, header)| Key {
                    header,
                    secret,
                    resting_until: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn get(&self, index: KeyIndex) -> Option<&Key> {
        self.keys.get(index.0)
    }

    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.secret.as_str())
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The next key in rotation that is not in `tried`: one not resting if
    /// there is one, else the one whose rest ends first. `None` when every
    /// key was tried (or there is none).
    pub fn pick(&self, tried: &[KeyIndex], now: Instant) -> Option<KeyIndex> {
        let n = self.keys.len();
        if n == 0 {
            return None;
        }
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        let now = self.millis(now);
        let untried = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !tried.contains(&KeyIndex(*i)));
        let mut soonest: Option<(u64, usize)> = None;
        for i in untried {
            let until = self.keys[i].resting_until.load(Ordering::Relaxed);
            if until <= now {
                return Some(KeyIndex(i));
            }
            match soonest {
                Some((s, _)) if s <= until => {}
                _ => soonest = Some((until, i)),
            }
        }
        soonest.map(|(_, i)| KeyIndex(i))
    }

    /// Whether a key not in `tried` is not resting at `now`.
    pub fn has_rested(&self, tried: &[KeyIndex], now: Instant) -> bool {
        let now = self.millis(now);
        self.keys.iter().enumerate().any(|(i, k)| {
            !tried.contains(&KeyIndex(i)) && k.resting_until.load(Ordering::Relaxed) <= now
        })
    }

    /// Lets `index` rest for `rest` from `now`.
    pub fn rest(&self, index: KeyIndex, rest: Duration, now: Instant) {
        if let Some(key) = self.keys.get(index.0) {
            let until = self
                .millis(now)
                .saturating_add(rest.as_millis().try_into().unwrap_or(u64::MAX));
            key.resting_until.fetch_max(until, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Keys {
        Keys::new(
            (0..n)
                .map(|i| {
                    let value = HeaderValue::from_str(&format!("Bearer k{i}")).unwrap();
                    (
                        format!("k{i}"),
                        (HeaderName::from_static("authorization"), value),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn keys_take_turns() {
        let k = keys(3);
        let now = Instant::now();
        let picked: Vec<usize> = (0..6).map(|_| k.pick(&[], now).unwrap().0).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1, 2]);
        assert_eq!(keys(0).pick(&[], now), None);
    }

    #[test]
    fn a_resting_key_is_skipped_until_its_rest_ends() {
        let k = keys(3);
        let now = Instant::now();
        k.rest(KeyIndex(1), Duration::from_secs(10), now);
        let picked: Vec<usize> = (0..4).map(|_| k.pick(&[], now).unwrap().0).collect();
        assert_eq!(picked, [0, 2, 2, 0]);
        let later = now + Duration::from_secs(11);
        let picked: Vec<usize> = (0..3).map(|_| k.pick(&[], later).unwrap().0).collect();
        assert_eq!(picked, [1, 2, 0]);
    }

    #[test]
    fn tried_keys_are_left_out_and_the_soonest_rested_comes_last() {
        let k = keys(3);
        let now = Instant::now();
        k.rest(KeyIndex(0), Duration::from_secs(30), now);
        k.rest(KeyIndex(2), Duration::from_secs(5), now);
        assert_eq!(k.pick(&[KeyIndex(1)], now), Some(KeyIndex(2)));
        assert!(!k.has_rested(&[KeyIndex(1)], now));
        assert!(k.has_rested(&[KeyIndex(0)], now));
        // A rest too long to add is the longest there is, not a panic.
        k.rest(KeyIndex(1), Duration::MAX, now);
        let year = now + Duration::from_secs(86_400 * 365);
        assert!(!k.has_rested(&[KeyIndex(0), KeyIndex(2)], year));
        assert_eq!(k.pick(&[KeyIndex(0), KeyIndex(1), KeyIndex(2)], now), None);
    }
}
