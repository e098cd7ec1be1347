//! Which keys the rate limits refuse most, since this instance started:
//! for the operator's `GET /admin/rate-limits/top`. Only the refusal path
//! writes here (an admitted request never touches it), and the table is
//! bounded: at [`CAPACITY`] keys, the half refused least is forgotten, so a
//! flood of refusals over ever new keys costs amortized `O(log n)` each and
//! the keys refused most stay.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{LimitKind, ScopeKind};

/// Most keys remembered.
pub const CAPACITY: usize = 10_000;

/// One key's refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRefusals {
    pub key_id: String,
    pub user_id: i64,
    pub count: u64,
    /// When the last one happened, in milliseconds since the Unix epoch.
    pub last_at_ms: i64,
    /// By the kind of scope that refused, in the order of [`ScopeKind::ALL`].
    pub by_scope: [u64; 6],
    /// By the limit that refused: requests, tokens, concurrency.
    pub by_limit: [u64; 3],
}

impl KeyRefusals {
    /// One refusal of `key_id` (a key of `user_id`) by a `limit` of a scope
    /// of kind `scope`.
    pub fn one(
        key_id: &str,
        user_id: i64,
        scope: ScopeKind,
        limit: LimitKind,
        at_ms: i64,
    ) -> KeyRefusals {
        let mut by_scope = [0; 6];
        if let Some(i) = ScopeKind::ALL.iter().position(|k| *k == scope) {
            by_scope[i] = 1;
        }
        let mut by_limit = [0; 3];
        by_limit[match limit {
            LimitKind::Requests => 0,
            LimitKind::Tokens => 1,
            LimitKind::Concurrency => 2,
        }] = 1;
        KeyRefusals {
            key_id: key_id.to_string(),
            user_id,
            count: 1,
            last_at_ms: at_ms,
            by_scope,
            by_limit,
        }
    }
}

pub struct Refusals {
    keys: Mutex<HashMap<String, KeyRefusals>>,
    capacity: usize,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::with_capacity(CAPACITY)
    }
}

impl Refusals {
    pub fn with_capacity(capacity: usize) -> Refusals {
        Refusals {
            keys: Mutex::default(),
            capacity: capacity.max(2),
        }
    }

    /// Adds `refusals` to the key's counts.
    pub fn add(&self, refusals: &KeyRefusals) {
        let mut keys = match self.keys.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !keys.contains_key(&refusals.key_id) && keys.len() >= self.capacity {
            forget_least_refused(&mut keys, self.capacity / 2);
        }
        let entry = keys
            .entry(refusals.key_id.clone())
            .or_insert_with(|| KeyRefusals {
                count: 0,
                by_scope: [0; 6],
                by_limit: [0; 3],
                ..refusals.clone()
            });
        entry.count += refusals.count;
        entry.last_at_ms = entry.last_at_ms.max(refusals.last_at_ms);
        for (total, n) in entry.by_scope.iter_mut().zip(refusals.by_scope) {
            *total += n;
        }
        for (total, n) in entry.by_limit.iter_mut().zip(refusals.by_limit) {
            *total += n;
        }
    }

    /// The `n` keys refused most, most first (the latest first among equals).
    pub fn top(&self, n: usize) -> Vec<KeyRefusals> {
        let keys = match self.keys.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut all: Vec<KeyRefusals> = keys.values().cloned().collect();
        drop(keys);
        all.sort_unstable_by(|a, b| {
            (b.count, b.last_at_ms, &a.key_id).cmp(&(a.count, a.last_at_ms, &b.key_id))
        });
        all.truncate(n);
        all
    }
}

/// Keeps the `keep` keys refused most (the latest among equals).
fn forget_least_refused(keys: &mut HashMap<String, KeyRefusals>, keep: usize) {
    let mut ranks: Vec<(u64, i64)> = keys.values().map(|k| (k.count, k.last_at_ms)).collect();
    if ranks.len() <= keep {
        return;
    }
    if keep == 0 {
        keys.clear();
        return;
    }
    // The `keep`-th highest rank: kept are those above it, and as many of
    // those equal to it as fit.
    let (_, threshold, _) = ranks.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
    let threshold = *threshold;
    let mut room = keep
        - keys
            .values()
            .filter(|k| (k.count, k.last_at_ms) > threshold)
            .count();
    keys.retain(|_, k| {
        let rank = (k.count, k.last_at_ms);
        if rank > threshold {
            true
        } else if rank == threshold && room > 0 {
            room -= 1;
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Refusals {
        fn add_one(&self, key_id: &str, user_id: i64, scope: ScopeKind, limit: LimitKind, at: i64) {
            self.add(&KeyRefusals::one(key_id, user_id, scope, limit, at));
        }
    }

    #[test]
    fn the_keys_refused_most_come_first_with_their_kinds() {
        let refusals = Refusals::default();
        for i in 0..5 {
            refusals.add_one("key_a", 1, ScopeKind::Key, LimitKind::Requests, 100 + i);
        }
        refusals.add_one("key_a", 1, ScopeKind::User, LimitKind::Tokens, 90);
        refusals.add_one("key_b", 2, ScopeKind::Model, LimitKind::Concurrency, 200);
        let top = refusals.top(10);
        assert_eq!(top.len(), 2);
        let a = &top[0];
        assert_eq!((a.key_id.as_str(), a.user_id, a.count), ("key_a", 1, 6));
        assert_eq!(
            a.last_at_ms, 104,
            "the latest, whatever the order they came in"
        );
        assert_eq!(a.by_scope, [5, 1, 0, 0, 0, 0]);
        assert_eq!(a.by_limit, [5, 1, 0]);
        assert_eq!(top[1].by_scope[4], 1);
        assert_eq!(refusals.top(1).len(), 1);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_keys_refused_most() {
        let refusals = Refusals::with_capacity(100);
        // Two keys refused often, then a flood of keys refused once.
        for _ in 0..50 {
            refusals.add_one("heavy-1", 1, ScopeKind::Key, LimitKind::Requests, 1);
            refusals.add_one("heavy-2", 2, ScopeKind::Key, LimitKind::Requests, 1);
        }
        for i in 0..10_000 {
            refusals.add_one(
                &format!("once-{i}"),
                3,
                ScopeKind::Global,
                LimitKind::Requests,
                2,
            );
        }
        let held = refusals.keys.lock().unwrap().len();
        assert!(held <= 100, "{held}");
        let top = refusals.top(2);
        assert_eq!(top[0].count, 50);
        assert_eq!(top[1].count, 50);
        // The newest of the flood is there: a new key always finds room.
        assert!(refusals.keys.lock().unwrap().contains_key("once-9999"));
    }
}
