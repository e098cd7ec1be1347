//! Cache affinity: the turns of one conversation go to the channel that
//! served the turn before, while it is healthy, so that the upstream's
//! prompt cache keeps hitting (a prompt cached at one upstream is a cache
//! miss, and full price, at another).
//!
//! A conversation is known by what its client sends: OpenAI's
//! `prompt_cache_key`, Claude Code's session (`metadata.user_id`), or a
//! Responses chain (`previous_response_id`, `conversation`). Keys are the
//! caller's own (scoped by user), remembered for `TTL`, at most `CAPACITY`
//! of them; forgetting one costs a cache miss, nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::Channel;
use crate::config::ModelSpec;

/// How long a conversation sticks to its channel after its last turn
/// (upstream prompt caches live minutes to an hour).
const TTL: Duration = Duration::from_secs(3600);
/// Conversations remembered at most; beyond, expired ones are dropped,
/// then arbitrary ones.
const CAPACITY: usize = 100_000;

/// What identifies one conversation for a user: `kind:value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityKey(String);

impl AffinityKey {
    fn new(user_id: i64, kind: &str, value: &str) -> Option<Self> {
        // Long values are someone's whole prompt, not an identifier.
        (!value.is_empty() && value.len() <= 512)
            .then(|| AffinityKey(format!("{user_id}:{kind}:{value}")))
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

/// Which channel served each conversation last.
#[derive(Default)]
pub struct Affinity {
    entries: Mutex<HashMap<AffinityKey, Sticky>>,
}

impl Affinity {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AffinityKey, Sticky>> {
        match self.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The index among `channels` of the one that served `key` last, if it
    /// is still there and healthy.
    pub fn channel(&self, key: &AffinityKey, channels: &[Channel], now: Instant) -> Option<usize> {
        let served_by = {
            let entries = self.lock();
            let sticky = entries.get(key)?;
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
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.retain(|_, s| now.saturating_duration_since(s.at) <= TTL);
            if entries.len() >= CAPACITY {
                if let Some(any) = entries.keys().next().cloned() {
                    entries.remove(&any);
                }
            }
        }
        entries.insert(
            key,
            Sticky {
                served_by: channel.model.clone(),
                at: now,
            },
        );
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
        let chat = params(json!({"prompt_cache_key": "k1"}));
        assert_eq!(
            AffinityKey::of_chat(7, &chat),
            Some(AffinityKey("7:cache:k1".into()))
        );
        assert_eq!(AffinityKey::of_chat(7, &params(json!({}))), None);
        let messages = params(json!({"metadata": {"user_id": "user_abc_session_1"}}));
        assert_eq!(
            AffinityKey::of_messages(7, &messages),
            Some(AffinityKey("7:session:user_abc_session_1".into()))
        );
        let turn = params(json!({"previous_response_id": "resp_1"}));
        assert_eq!(
            AffinityKey::of_responses(7, &turn),
            AffinityKey::of_response(7, "resp_1")
        );
        let turn = params(json!({"conversation": {"id": "conv_1"}}));
        assert_eq!(
            AffinityKey::of_responses(7, &turn),
            Some(AffinityKey("7:conversation:conv_1".into()))
        );
        // Another user's identical key is another conversation.
        assert_ne!(
            AffinityKey::of_chat(8, &chat),
            AffinityKey::of_chat(7, &chat)
        );
        let long = params(json!({"prompt_cache_key": "x".repeat(513)}));
        assert_eq!(AffinityKey::of_chat(7, &long), None);
    }
}
