//! Cache affinity: the turns of one conversation go to the channel that
//! served the turn before, while it is healthy, so that the upstream's
//! prompt cache keeps hitting (a prompt cached at one upstream is a cache
//! miss, and full price, at another).
//!
//! A conversation is known by what its client sends: OpenAI's
//! `prompt_cache_key`, Claude Code's session (`metadata.user_id`), or a
//! Responses chain (`previous_response_id`, `conversation`). Each user's
//! conversations are remembered apart, at most `PER_USER` of them (the
//! oldest forgotten first) for `TTL`: a user sending a new key with every
//! request only evicts their own, and no lookup or insertion scans more than
//! it removes. Forgetting one costs a cache miss, nothing else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::Channel;
use crate::config::ModelSpec;

/// How long a conversation sticks to its channel after its last turn
/// (upstream prompt caches live minutes to an hour).
const TTL: Duration = Duration::from_secs(3600);
/// Conversations remembered per user.
const PER_USER: usize = 256;
/// Users are spread over this many locks.
const SHARDS: usize = 16;

/// One conversation of one user: `kind:value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    user_id: i64,
    conversation: String,
}

impl AffinityKey {
    fn new(user_id: i64, kind: &str, value: &str) -> Option<Self> {
        // Long values are someone's whole prompt, not an identifier.
        (!value.is_empty() && value.len() <= 512).then(|| AffinityKey {
            user_id,
            conversation: format!("{kind}:{value}"),
        })
    }

    /// A chat or legacy completion request's: its `prompt_cache_key`.
    pub fn of_chat(user_id: i64, extra: &Map<String, Value>) -> Option<Self> {
        let key = extra.get("prompt_cache_key")?.as_str()?;
        AffinityKey::new(user_id, "cache", key)
    }

    /// A Messages request's: Claude Code's session, in `metadata.user_id`.
    pub fn of_messages(user_id: i64, body: &Map<String, Value>) -> Option<Self> {
        let session = body.get("metadata")?.get("user_id")?.as_str()?;
        AffinityKey::new(user_id, "session", session)
    }

    /// A Responses turn's: its `prompt_cache_key`, else the response it
    /// continues, else its conversation.
    pub fn of_responses(user_id: i64, params: &Map<String, Value>) -> Option<Self> {
        let text = |name: &str| params.get(name).and_then(Value::as_str);
        if let Some(key) = text("prompt_cache_key") {
            return AffinityKey::new(user_id, "cache", key);
        }
        if let Some(previous) = text("previous_response_id") {
            return AffinityKey::of_response(user_id, previous);
        }
        let conversation = match params.get("conversation")? {
            Value::String(id) => id.as_str(),
            other => other.get("id")?.as_str()?,
        };
        AffinityKey::new(user_id, "conversation", conversation)
    }

    /// The key a turn continuing response `id` will carry.
    pub fn of_response(user_id: i64, id: &str) -> Option<Self> {
        AffinityKey::new(user_id, "response", id)
    }
}

struct Sticky {
    /// The channel as it served (its provider and upstream model name).
    served_by: Arc<ModelSpec>,
    at: Instant,
}

/// One user's conversations, and the order they were last served in
/// (oldest first; an entry there whose time differs from the map's is
/// stale and skipped).
#[derive(Default)]
struct Remembered {
    by_key: HashMap<String, Sticky>,
    order: VecDeque<(String, Instant)>,
}

impl Remembered {
    /// Forgets what expired, then the oldest while over `PER_USER`.
    fn trim(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            let current = self.by_key.get(key).map(|s| s.at);
            let expired = now.saturating_duration_since(*at) > TTL;
            if current != Some(*at) {
                // Served again since: a newer entry is further back.
                self.order.pop_front();
            } else if expired || self.by_key.len() > PER_USER {
                self.by_key.remove(key);
                self.order.pop_front();
            } else {
                break;
            }
        }
        // Re-served keys leave stale entries behind; never more than the map.
        if self.order.len() > 2 * PER_USER {
            let by_key = &self.by_key;
            self.order
                .retain(|(key, at)| by_key.get(key).map(|s| s.at) == Some(*at));
        }
    }
}

/// Which channel served each conversation last.
pub struct Affinity {
    shards: Vec<Mutex<HashMap<i64, Remembered>>>,
}

impl Default for Affinity {
    fn default() -> Self {
        Affinity {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Affinity {
    fn shard(&self, user_id: i64) -> std::sync::MutexGuard<'_, HashMap<i64, Remembered>> {
        let shard = &self.shards[user_id.rem_euclid(SHARDS as i64) as usize];
        match shard.lock() {
            Ok(users) => users,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The index among `channels` of the one that served `key` last, if it
    /// is still there and healthy.
    pub fn channel(&self, key: &AffinityKey, channels: &[Channel], now: Instant) -> Option<usize> {
        let served_by = {
            let users = self.shard(key.user_id);
            let sticky = users.get(&key.user_id)?.by_key.get(&key.conversation)?;
            if now.saturating_duration_since(sticky.at) > TTL {
                return None;
            }
            sticky.served_by.clone()
        };
        channels.iter().position(|c| {
            c.model.provider == served_by.provider
                && c.model.upstream_model == served_by.upstream_model
                && c.health.state() == super::health::State::Healthy
        })
    }

    /// Remembers that `channel` served `key`.
    pub fn remember(&self, key: AffinityKey, channel: &Channel, now: Instant) {
        let mut users = self.shard(key.user_id);
        let remembered = users.entry(key.user_id).or_default();
        remembered.order.push_back((key.conversation.clone(), now));
        remembered.by_key.insert(
            key.conversation,
            Sticky {
                served_by: channel.model.clone(),
                at: now,
            },
        );
        remembered.trim(now);
    }

    /// How many conversations `user_id` has remembered (for tests).
    #[cfg(test)]
    fn remembered(&self, user_id: i64) -> usize {
        self.shard(user_id)
            .get(&user_id)
            .map_or(0, |r| r.by_key.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn each_protocol_names_its_conversation() {
        let key = |user_id, conversation: &str| {
            Some(AffinityKey {
                user_id,
                conversation: conversation.into(),
            })
        };
        let chat = params(json!({"prompt_cache_key": "k1"}));
        assert_eq!(AffinityKey::of_chat(7, &chat), key(7, "cache:k1"));
        assert_eq!(AffinityKey::of_chat(7, &params(json!({}))), None);
        let messages = params(json!({"metadata": {"user_id": "user_abc_session_1"}}));
        assert_eq!(
            AffinityKey::of_messages(7, &messages),
            key(7, "session:user_abc_session_1")
        );
        let turn = params(json!({"previous_response_id": "resp_1"}));
        assert_eq!(
            AffinityKey::of_responses(7, &turn),
            AffinityKey::of_response(7, "resp_1")
        );
        let turn = params(json!({"conversation": {"id": "conv_1"}}));
        assert_eq!(
            AffinityKey::of_responses(7, &turn),
            key(7, "conversation:conv_1")
        );
        // Another user's identical key is another conversation.
        assert_ne!(
            AffinityKey::of_chat(8, &chat),
            AffinityKey::of_chat(7, &chat)
        );
        let long = params(json!({"prompt_cache_key": "x".repeat(513)}));
        assert_eq!(AffinityKey::of_chat(7, &long), None);
    }

    fn channel() -> Channel {
        let spec = crate::config::Config::parse(
            "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n[models.m]\nprovider = \"p\"\ninput_price = 1\n",
            "t.toml",
        )
        .unwrap()
        .model_spec("m")
        .unwrap();
        let provider = crate::providers::Provider::new(
            "p",
            &crate::config::Config::parse(
                "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
                "t.toml",
            )
            .unwrap()
            .providers["p"],
        )
        .unwrap();
        Channel {
            model: Arc::new(spec),
            provider: Arc::new(provider),
            weight: super::super::Weight {
                priority: 0,
                weight: 1,
            },
            health: Default::default(),
            stats: Default::default(),
        }
    }

    #[test]
    fn each_user_keeps_at_most_its_own_share_and_a_flood_evicts_only_its_own() {
        let affinity = Affinity::default();
        let channels = [channel()];
        let now = Instant::now();
        let calm = AffinityKey::new(1, "cache", "mine").unwrap();
        affinity.remember(calm.clone(), &channels[0], now);
        for i in 0..10 * PER_USER {
            let key = AffinityKey::new(2, "cache", &format!("flood-{i}")).unwrap();
            affinity.remember(key, &channels[0], now);
        }
        assert_eq!(affinity.remembered(2), PER_USER);
        assert_eq!(affinity.channel(&calm, &channels, now), Some(0));
        // The newest of the flood are kept, the oldest forgotten.
        let newest = AffinityKey::new(2, "cache", &format!("flood-{}", 10 * PER_USER - 1)).unwrap();
        let oldest = AffinityKey::new(2, "cache", "flood-0").unwrap();
        assert_eq!(affinity.channel(&newest, &channels, now), Some(0));
        assert_eq!(affinity.channel(&oldest, &channels, now), None);
        // Re-serving one key many times keeps one entry.
        for _ in 0..10 * PER_USER {
            affinity.remember(calm.clone(), &channels[0], now);
        }
        assert_eq!(affinity.remembered(1), 1);
        // And everything expires.
        let later = now + TTL + Duration::from_secs(1);
        assert_eq!(affinity.channel(&calm, &channels, later), None);
        affinity.remember(
            AffinityKey::new(1, "cache", "new").unwrap(),
            &channels[0],
            later,
        );
        assert_eq!(affinity.remembered(1), 1);
    }
}
