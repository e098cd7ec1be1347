//! In-memory admission control: holds kept in memory, so a request costs no
//! database write before it is forwarded.
//!
//! The database stays the source of truth for money: every charge is written
//! by the settlement writer, from the upstream's usage, exactly once. This
//! ledger only decides whether a new request may start: it knows each active
//! user's balance and each active key's spending as of the last write or
//! refresh, minus the holds of requests in flight here. The settlement writer
//! applies each committed batch to it and, between batches, refreshes it
//! from the database (picking up top-ups, other instances' charges, CLI
//! changes), so it is never more than `ledger_refresh_ms` behind.
//!
//! With several instances, each sees the others' charges only at refresh, so
//! admission there can overshoot by what the others start meanwhile; the
//! charges themselves stay exact. `holds = "database"` gives exact admission
//! across instances at the price of one write transaction per request.

use hashbrown::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::BillingError;
use crate::auth::Principal;
pub use store::{KeyFigures, UserFigures};

/// Independent locks, so requests of different users never contend.
const SHARDS: usize = 32;
/// Accounts untouched for this long are forgotten (reloaded when next used).
const IDLE_EVICTION: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct UserAccount {
    /// Paid + promotional balance, nano-USD, as of the last write or refresh.
    balance: i64,
    held: i64,
    used: Instant,
}

#[derive(Debug, Clone)]
struct KeyAccount {
    max_fee: i64,
    used_fee: i64,
    held: i64,
    used: Instant,
}

#[derive(Default)]
struct Shard {
    users: HashMap<i64, UserAccount>,
    keys: HashMap<String, KeyAccount>,
}

pub struct Ledger {
    shards: Vec<Mutex<Shard>>,
}

fn shard_of_user(id: i64) -> usize {
    (id as u64 as usize) % SHARDS
}

fn shard_of_key(id: &str) -> usize {
    id.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        % SHARDS
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl Ledger {
    /// Holds `amount` for the principal's user and key, or refuses.
    pub fn reserve(&self, principal: &Principal, amount: i64) -> Result<(), BillingError> {
        let user = &principal.user;
        let key = &principal.key;
        let now = Instant::now();
        // Lock order: the user's shard, then the key's (released between).
        {
            let mut shard = self.lock(shard_of_user(user.id));
            let account = shard.users.entry(user.id).or_insert_with(|| UserAccount {
                balance: user.balance + user.free_balance,
                held: 0,
                used: now,
            });
            if account.balance - account.held < amount {
                return Err(BillingError::InsufficientBalance);
            }
            account.held += amount;
            account.used = now;
        }
        let mut shard = self.lock(shard_of_key(&key.id));
        let account = shard
            .keys
            .entry(key.id.clone())
            .or_insert_with(|| KeyAccount {
                max_fee: key.max_fee,
                used_fee: key.used_fee,
                held: 0,
                used: now,
            });
        if account.max_fee != 0 && account.used_fee + account.held + amount > account.max_fee {
            drop(shard);
            self.release_user(user.id, amount, 0);
            return Err(BillingError::KeyLimitReached);
        }
        account.held += amount;
        account.used = now;
        Ok(())
    }

    /// Holds `amount` against a user's balance alone (an OAuth app's
    /// charge, while it is written), or refuses: so that a charge cannot
    /// take what this instance's requests in flight hold.
    pub fn hold_user(&self, user: &store::User, amount: i64) -> bool {
        let mut shard = self.lock(shard_of_user(user.id));
        let account = shard.users.entry(user.id).or_insert_with(|| UserAccount {
            balance: user.balance + user.free_balance,
            held: 0,
            used: Instant::now(),
        });
        if account.balance - account.held < amount {
            return false;
        }
        account.held += amount;
        true
    }

    /// The end of a [`Ledger::hold_user`]: the hold goes, `spent` is spent.
    pub fn release_user_hold(&self, user_id: i64, held: i64, spent: i64) {
        self.release_user(user_id, held, spent);
    }

    /// A request was settled (committed): its hold goes, its cost is spent.
    pub fn settled(&self, user_id: i64, key_id: &str, held: i64, cost: i64) {
        self.release_user(user_id, held, cost);
        let mut shard = self.lock(shard_of_key(key_id));
        if let Some(account) = shard.keys.get_mut(key_id) {
            account.held = (account.held - held).max(0);
            account.used_fee += cost;
        }
    }

    fn release_user(&self, user_id: i64, held: i64, cost: i64) {
        let mut shard = self.lock(shard_of_user(user_id));
        if let Some(account) = shard.users.get_mut(&user_id) {
            account.held = (account.held - held).max(0);
            account.balance -= cost;
        }
    }

    /// The accounts to refresh: every user and key still in memory.
    /// Idle ones are forgotten instead.
    pub fn active(&self) -> (Vec<i64>, Vec<String>) {
        let mut users = Vec::new();
        let mut keys = Vec::new();
        for shard in &self.shards {
            let mut shard = match shard.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            shard
                .users
                .retain(|_, a| a.held > 0 || a.used.elapsed() < IDLE_EVICTION);
            shard
                .keys
                .retain(|_, a| a.held > 0 || a.used.elapsed() < IDLE_EVICTION);
            users.extend(shard.users.keys().copied());
            keys.extend(shard.keys.keys().cloned());
        }
        (users, keys)
    }

    /// Replaces balances and spending with the database's figures. Called by
    /// the settlement writer between batches, when every charge this
    /// instance made is committed, so nothing is counted twice.
    pub fn refresh(&self, users: &[UserFigures], keys: &[KeyFigures]) {
        for u in users {
            let mut shard = self.lock(shard_of_user(u.user_id));
            if let Some(account) = shard.users.get_mut(&u.user_id) {
                account.balance = u.balance;
            }
        }
        for k in keys {
            let mut shard = self.lock(shard_of_key(&k.key_id));
            if let Some(account) = shard.keys.get_mut(&k.key_id) {
                account.max_fee = k.max_fee;
                account.used_fee = k.used_fee;
            }
        }
    }

    /// Forgets a user's figures (after an operator changed its balance here),
    /// so the next request starts from the database's. Holds are kept.
    pub fn forget_user(&self, user_id: i64) {
        let mut shard = self.lock(shard_of_user(user_id));
        if shard.users.get(&user_id).is_some_and(|a| a.held == 0) {
            shard.users.remove(&user_id);
        }
    }

    /// Forgets a key's figures (after its limit changed), likewise.
    pub fn forget_key(&self, key_id: &str) {
        let mut shard = self.lock(shard_of_key(key_id));
        if shard.keys.get(key_id).is_some_and(|a| a.held == 0) {
            shard.keys.remove(key_id);
        }
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        match self.shards[i].lock() {
            Ok(s) => s,
            // A panic elsewhere cannot leave an account half-updated: every
            // update is a few integer operations.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{ApiKey, User};

    fn principal(balance: i64, max_fee: i64) -> Principal {
        Principal {
            user: User {
                id: 7,
                name: "u".into(),
                group_name: "default".into(),
                tier: "free".into(),
                membership_expires_at: None,
                balance,
                free_balance: 0,
                held: 0,
                limits: Default::default(),
                revision: 0,
                created_at: 0,
            },
            key: ApiKey {
                id: "key_1".into(),
                user_id: 7,
                key_prefix: "sk-".into(),
                key_last4: "abcd".into(),
                remark: String::new(),
                is_admin: false,
                is_disabled: false,
                permissions: vec![],
                max_fee,
                used_fee: 0,
                held: 0,
                limits: Default::default(),
                revision: 0,
                used_times: 0,
                created_at: 0,
                used_at: None,
                expired_at: None,
                grant_id: None,
            },
        }
    }

    #[test]
    fn holds_never_exceed_the_balance() {
        let ledger = Ledger::default();
        let p = principal(1_000, 0);
        for _ in 0..10 {
            ledger.reserve(&p, 100).unwrap();
        }
        assert_eq!(
            ledger.reserve(&p, 1),
            Err(BillingError::InsufficientBalance)
        );
        ledger.settled(7, "key_1", 100, 40);
        // 960 balance, 900 held: 60 available.
        assert!(ledger.reserve(&p, 61).is_err());
        ledger.reserve(&p, 60).unwrap();
    }

    #[test]
    fn key_limits_count_spent_and_held_and_refusals_leave_nothing() {
        let ledger = Ledger::default();
        let p = principal(1_000_000, 500);
        ledger.reserve(&p, 300).unwrap();
        assert_eq!(ledger.reserve(&p, 300), Err(BillingError::KeyLimitReached));
        ledger.settled(7, "key_1", 300, 450);
        assert!(ledger.reserve(&p, 100).is_err());
        ledger.reserve(&p, 50).unwrap();
        // The refused holds released the user's side too.
        let shard = ledger.lock(shard_of_user(7));
        assert_eq!(shard.users[&7].held, 50);
    }

    #[test]
    fn refresh_takes_the_databases_figures() {
        let ledger = Ledger::default();
        let p = principal(100, 0);
        ledger.reserve(&p, 100).unwrap();
        ledger.settled(7, "key_1", 100, 100);
        assert!(ledger.reserve(&p, 1).is_err());
        ledger.refresh(
            &[UserFigures {
                user_id: 7,
                balance: 5_000,
                revision: 1,
            }],
            &[],
        );
        ledger.reserve(&p, 1_000).unwrap();
        let (users, keys) = ledger.active();
        assert_eq!((users, keys), (vec![7], vec!["key_1".to_string()]));
    }
}
