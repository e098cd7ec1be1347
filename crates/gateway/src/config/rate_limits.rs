//! The `[rate_limits]` section: requests per minute, tokens per minute and
//! concurrent requests for the whole gateway, per model (all users together:
//! an upstream's quota), and for each user of a group or membership tier.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::limits::Limits;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// The whole gateway's.
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub concurrency: Option<u32>,
    /// A concurrency lease its request never returned (a task that died)
    /// is freed after this.
    pub lease_ttl_secs: u64,
    /// Per model, all users together.
    pub models: BTreeMap<String, Limits>,
    /// Per user, by group.
    pub groups: BTreeMap<String, Limits>,
    /// Per user, by membership tier (while the membership lasts).
    pub tiers: BTreeMap<String, Limits>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            rpm: None,
            tpm: None,
            concurrency: None,
            lease_ttl_secs: 3_600,
            models: BTreeMap::new(),
            groups: BTreeMap::new(),
            tiers: BTreeMap::new(),
        }
    }
}

impl RateLimits {
    /// The whole gateway's limits.
    pub fn global(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            tpm: self.tpm,
            concurrency: self.concurrency,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn every_scope_reads_and_typos_are_refused() {
        let text = "[rate_limits]\nrpm = 1000\n[rate_limits.models.m]\ntpm = 5000\n[rate_limits.groups.vip]\nrpm = 60\nconcurrency = 2\n[rate_limits.tiers.premium]\nrpm = 90\n";
        let config = Config::parse(text, "t.toml").unwrap();
        let limits = &config.rate_limits;
        assert_eq!(limits.global().rpm, Some(1_000));
        assert_eq!(limits.models["m"].tpm, Some(5_000));
        assert_eq!(limits.groups["vip"].concurrency, Some(2));
        assert_eq!(limits.tiers["premium"].rpm, Some(90));
        assert!(Config::parse("[rate_limits]\nrmp = 5\n", "t.toml").is_err());
        assert!(Config::parse("[rate_limits.groups.g]\nrpm = -1\n", "t.toml").is_err());
    }
}
