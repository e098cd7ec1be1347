//! The `[failover]` section.

use std::time::Duration;

use serde::Deserialize;

/// Longest wait for an upstream's error body: an error is short, and an
/// upstream trickling one is not waited on for a whole request timeout.
pub const ERROR_BODY_WAIT: Duration = Duration::from_secs(10);

/// How long a request may spend sending — its tries, failover included —
/// with holds released after `hold_ttl_secs`: half of it, so that the
/// answer has the other half. No try starts that could end later.
pub fn send_budget(hold_ttl_secs: u64) -> Duration {
    Duration::from_secs(hold_ttl_secs / 2)
}

/// The `[failover]` section: a request whose channel fails before its
/// answer began moves to the model's next channel (see `pipeline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// Attempts per request, the first included (1: no failover).
    pub max_attempts: u32,
    /// Upstream statuses worth another channel: codes (`"429"`) and ranges
    /// (`"500-503"`). Connection failures and timeouts before the answer
    /// always are. The default follows new-api: 429 and 5xx but 504 and 524
    /// (the request took too long: another channel would too); 4xx are the
    /// client's own fault and answered as they are.
    pub retry_statuses: Vec<String>,
    /// A channel cools down when, over the last `health_window_secs`, at
    /// least `health_min_requests` were sent to it and `health_failure_ratio`
    /// of them failed; it rests `cooldown_secs`, then one probe decides.
    pub health_window_secs: u64,
    pub health_min_requests: u32,
    pub health_failure_ratio: f64,
    pub cooldown_secs: u64,
    /// How long an upstream key the upstream rate-limited (429) rests when
    /// the upstream does not say (`retry-after`); see `providers::keys`.
    pub key_rest_secs: u64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            max_attempts: 3,
            retry_statuses: ["429", "500-503", "505-523", "525-599"]
                .map(String::from)
                .to_vec(),
            health_window_secs: 60,
            health_min_requests: 5,
            health_failure_ratio: 0.5,
            cooldown_secs: 30,
            key_rest_secs: 10,
        }
    }
}

impl Failover {
    /// When a channel cools down, and for how long.
    pub fn health(&self) -> crate::routing::health::Policy {
        crate::routing::health::Policy {
            window: std::time::Duration::from_secs(self.health_window_secs.max(1)),
            min_requests: self.health_min_requests.max(1),
            failure_ratio: self.health_failure_ratio.clamp(0.0, 1.0),
            cooldown: std::time::Duration::from_secs(self.cooldown_secs),
        }
    }

    /// Whether an upstream answering `status` is worth another channel.
    pub fn retries(&self, status: u16) -> bool {
        self.retry_statuses
            .iter()
            .filter_map(|r| status_range(r))
            .any(|(low, high)| (low..=high).contains(&status))
    }
}

/// `"429"` or `"500-503"` as an inclusive range of statuses.
pub(super) fn status_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (low.trim().parse().ok()?, high.trim().parse().ok()?),
        None => {
            let code = text.trim().parse().ok()?;
            (code, code)
        }
    };
    ((100..=599).contains(&low) && low <= high && high <= 599).then_some((low, high))
}
