//! The override rules in force, per owner (a user, or the operator), kept in
//! memory: read from the database when first needed, and checked for changes
//! at most once a second per owner, so that a change made through any
//! instance applies everywhere within a second.

use hashbrown::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rules::{Compiled, Restrictions, Rule};
use store::{RuleFilter, Store, StoreError};

/// How long rules are used before the database is asked whether they changed.
const RECHECK: Duration = Duration::from_secs(1);
/// Most rules an owner can hold (the listing reads them all).
const MOST: i64 = 10_000;

/// An owner's rules in force, in running order, split by when they run.
#[derive(Default)]
pub struct RuleSet {
    /// Run on the client's request, before routing.
    pub before_routing: Vec<Compiled>,
    /// The operator's rules naming a channel: run on each channel's
    /// upstream call as it is planned (see [`Compiled::per_channel`]).
    pub per_channel: Vec<Compiled>,
}

impl RuleSet {
    fn of(rules: Vec<Compiled>) -> RuleSet {
        let (per_channel, before_routing) = rules.into_iter().partition(Compiled::per_channel);
        RuleSet {
            before_routing,
            per_channel,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.before_routing.is_empty() && self.per_channel.is_empty()
    }
}

struct Cached {
    rules: Arc<RuleSet>,
    changed_at: i64,
    checked: Instant,
}

pub struct RuleBook {
    pub restrictions: Restrictions,
    /// The operator's rules from the configuration file.
    configured: Vec<Compiled>,
    cached: Mutex<HashMap<i64, Cached>>,
    /// Hits counted since the last flush: rule id → (hits, last hit at).
    hits: Mutex<HashMap<String, (i64, i64)>>,
}

impl RuleBook {
    /// A book with the operator's `configured` rules (checked when the
    /// configuration loaded: one that does not compile is left out, and said).
    pub fn new(restrictions: Restrictions, configured: &[Rule]) -> RuleBook {
        let configured = configured
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                let rule = Rule {
                    rule_id: if rule.rule_id.is_empty() {
                        format!("config_{i}")
                    } else {
                        rule.rule_id.clone()
                    },
                    ..rule.clone()
                };
                Compiled::new(rule, i as i64, &restrictions)
                    .inspect_err(|e| tracing::warn!(error = %e, "configured rule left out"))
                    .ok()
            })
            .collect();
        RuleBook {
            restrictions,
            configured,
            cached: Mutex::default(),
            hits: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Cached>> {
        match self.cached.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// `owner`'s rules in running order.
    pub async fn rules_of(&self, store: &Store, owner: i64) -> Result<Arc<RuleSet>, StoreError> {
        let known = self
            .lock()
            .get(&owner)
            .map(|c| (c.rules.clone(), c.changed_at, c.checked));
        if let Some((rules, _, checked)) = &known {
            if checked.elapsed() < RECHECK {
                return Ok(rules.clone());
            }
        }
        let changed_at = store.rules_changed_at(owner).await?;
        let rules = match known {
            Some((rules, at, _)) if at == changed_at => rules,
            _ => Arc::new(RuleSet::of(self.load(store, owner).await?)),
        };
        self.lock().insert(
            owner,
            Cached {
                rules: rules.clone(),
                changed_at,
                checked: Instant::now(),
            },
        );
        Ok(rules)
    }

    /// Counts that `rules` applied to a request now.
    pub fn hit(&self, rules: &[String]) {
        if rules.is_empty() {
            return;
        }
        let now = store::now_ms();
        let mut hits = match self.hits.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        for id in rules {
            let entry = hits.entry(id.clone()).or_insert((0, now));
            entry.0 += 1;
            entry.1 = now;
        }
    }

    /// Writes the hits counted since the last flush, in one transaction; on
    /// failure they are counted again toward the next.
    pub async fn flush_hits(&self, store: &Store) {
        let taken: Vec<(String, i64, i64)> = {
            let mut hits = match self.hits.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            hits.drain().map(|(id, (n, at))| (id, n, at)).collect()
        };
        if taken.is_empty() {
            return;
        }
        if let Err(e) = store.add_rule_hits(&taken).await {
            tracing::warn!(error = %e, "rule hit counts not written; kept for the next try");
            let mut hits = match self.hits.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (id, n, at) in taken {
                let entry = hits.entry(id).or_insert((0, at));
                entry.0 += n;
                entry.1 = entry.1.max(at);
            }
        }
    }

    /// Forgets `owner`'s rules (changed through this instance).
    pub fn forget(&self, owner: i64) {
        self.lock().remove(&owner);
    }

    async fn load(&self, store: &Store, owner: i64) -> Result<Vec<Compiled>, StoreError> {
        let filter = RuleFilter {
            enabled: Some(true),
            limit: MOST,
            ..RuleFilter::default()
        };
        let (stored, _) = store.list_rules(owner, &filter).await?;
        let mut compiled = Vec::with_capacity(stored.len());
        for s in stored {
            // Checked when saved; one that no longer compiles (the
            // restrictions tightened since) is skipped, and said.
            let rule = serde_json::from_value::<Rule>(s.rule)
                .map_err(|e| e.to_string())
                .and_then(|rule| {
                    Compiled::new(
                        Rule {
                            rule_id: s.id.clone(),
                            ..rule
                        },
                        s.created_at,
                        &self.restrictions,
                    )
                    .map_err(|e| e.0)
                });
            match rule {
                Ok(rule) => compiled.push(rule),
                Err(error) => tracing::warn!(rule = %s.id, owner, %error, "override rule skipped"),
            }
        }
        if owner == store::OPERATOR {
            compiled.extend(self.configured.iter().cloned());
        }
        rules::sort(&mut compiled);
        Ok(compiled)
    }
}
