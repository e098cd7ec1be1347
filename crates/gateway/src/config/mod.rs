//! Configuration: an optional TOML file, then `TOLLGATE_*` environment overrides.
//!
//! Every setting has a default, so the gateway starts with no file at all.
//! Any setting can be overridden from the environment: the variable name is
//! `TOLLGATE_` followed by the key path in upper case, sections joined by a
//! double underscore, e.g. `TOLLGATE_LISTEN=0.0.0.0:8080` or
//! `TOLLGATE_PROVIDERS__OPENAI__API_KEY=sk-…`. Values are read as TOML when
//! they parse as TOML (numbers, booleans, arrays) and as strings otherwise.

//!
//! One file per concern: [`limits`] (`[limits]`, `holds`), [`failover`]
//! (`[failover]`), [`models`] (the catalog: providers, models, channels,
//! groups), [`defaults`]; this one reads, overrides and validates.

mod console;
mod defaults;
mod failover;
mod limits;
mod models;
mod oauth;
mod payments;
mod rate_limits;
mod storage;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::money::Decimal;

pub use console::{ConsoleConfig, Signup};
use failover::status_range;
pub use failover::{send_budget, Failover, ERROR_BODY_WAIT};
pub use limits::{HoldsMode, Limits, OnRedisFailure, RedisConfig};
pub use models::{
    group_multiplier, ChannelConfig, ChannelSpec, DecimalValue, GroupConfig, LateSystemMessages,
    ModelConfig, ModelSpec, ProviderConfig, ProviderKind,
};
pub use oauth::{GrantLimits, OAuthConfig};
pub use payments::{currency_digits, BonusTier, PaymentsConfig, StripeConfig, Terms};
pub use rate_limits::RateLimits;
pub use storage::{Backend as StorageBackend, Quota, S3Config, StorageConfig};

/// Largest `credits_per_usd`: balances in credits stay exact decimals.
const MAX_CREDITS_PER_USD: u64 = 1_000_000_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// `sqlite://PATH` (embedded) or `postgres://…`.
    #[serde(default = "defaults::database_url")]
    pub database_url: String,
    /// Bearer token for the admin API. When unset, the first start creates
    /// one, prints it once and keeps only its hash.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// `text` or `json`.
    #[serde(default = "defaults::log_format")]
    pub log_format: String,
    /// A `tracing` filter, e.g. `info` or `gateway=debug`.
    #[serde(default = "defaults::log_level")]
    pub log_level: String,
    /// How many credits make one USD in balances shown to users (OhMyGPT's unit).
    #[serde(default = "defaults::credits_per_usd")]
    pub credits_per_usd: u64,
    #[serde(default = "defaults::max_keys_per_user")]
    pub max_keys_per_user: i64,
    /// Output tokens assumed when a request sets no `max_tokens` and its model
    /// no `max_output_tokens`; used only to size the hold.
    #[serde(default = "defaults::default_max_tokens")]
    pub default_max_tokens: u64,
    /// How long graceful shutdown waits for streams in flight.
    #[serde(default = "defaults::shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// A hold whose request never settled (its process died) is released after this.
    #[serde(default = "defaults::hold_ttl_secs")]
    pub hold_ttl_secs: u64,
    /// The settlement journal's folder (see `billing::journal`); one per
    /// instance. Defaults to `<database file>.journal` for SQLite and
    /// `data/journal` otherwise.
    #[serde(default)]
    pub journal_dir: Option<String>,
    /// `fdatasync` every journal line: survives power loss, not only a
    /// killed process, at the cost of a disk flush per request.
    #[serde(default)]
    pub journal_fsync: bool,
    /// Bounds on connections, bodies and queues.
    #[serde(default)]
    pub limits: Limits,
    /// When a request moves to its model's next channel.
    #[serde(default)]
    pub failover: Failover,
    /// Where holds live: `memory` (the default without Redis: no database
    /// write before a request is forwarded; exact charges, admission per
    /// instance), `redis` (the default with `redis_url`: admission exact
    /// across instances, in the same Redis call as the rate limits) or
    /// `database` (exact across instances, one more write transaction per
    /// request). See [`Config::holds`].
    #[serde(default, rename = "holds")]
    pub holds_setting: Option<HoldsMode>,
    /// Redis shared by several instances (a literal or `env:VAR`): rate
    /// limits and holds are then counted there, not per instance.
    #[serde(default)]
    pub redis_url: Option<String>,
    #[serde(default)]
    pub redis: RedisConfig,
    /// How often the in-memory ledger re-reads balances and key spending.
    #[serde(default = "defaults::ledger_refresh_ms")]
    pub ledger_refresh_ms: u64,
    /// How long an authenticated key is remembered (0 disables the cache).
    /// Changes made through this instance apply at once; changes made
    /// elsewhere (CLI, other instances) within this time.
    #[serde(default = "defaults::auth_cache_ttl_ms")]
    pub auth_cache_ttl_ms: u64,
    /// Threads serving requests; 0 means one per CPU core.
    #[serde(default)]
    pub worker_threads: usize,
    /// `false` turns holds, charges and usage records off. It exists only to
    /// measure what billing costs (bench/run.sh); never use it in production.
    #[serde(default = "defaults::billing")]
    pub billing: bool,
    /// How long stored objects (responses, conversations, stored chat
    /// completions) are kept; 0 keeps them until their owner deletes them.
    #[serde(default = "defaults::stored_retention_days")]
    pub stored_retention_days: u64,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    /// Requests, tokens and concurrency per minute (`limits`).
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// The operator's override rules kept in the file (`[[rules]]`, the rule
    /// object in TOML), run with those of `/admin/rules`.
    #[serde(default)]
    pub rules: Vec<rules::Rule>,
    /// Users' files (`[storage]`).
    #[serde(default)]
    pub storage: StorageConfig,
    /// The web console (`[console]`).
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Top-ups (`[payments]`, `[payments.stripe]`).
    #[serde(default)]
    pub payments: PaymentsConfig,
    /// OAuth apps (`[oauth]`).
    #[serde(default)]
    pub oauth: OAuthConfig,
    /// Where this configuration came from: what a catalog reload reads
    /// again (`None`: not from a file).
    #[serde(skip)]
    pub source: Option<Source>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// Bearer token `/metrics` requires (a literal, or `env:VAR`). When
    /// unset, `/metrics` is served only when `listen` is a loopback address:
    /// it shows revenue per model.
    #[serde(default)]
    pub metrics_token: Option<String>,
}

/// A configuration file and the environment overrides read with it at
/// start (a reload applies the same ones: a process's environment does
/// not change).
#[derive(Debug, Clone)]
pub struct Source {
    pub path: std::path::PathBuf,
    pub env: Vec<(String, String)>,
}

impl Source {
    /// Reads, overrides and validates the file again.
    pub fn read(&self) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", self.path.display())))?;
        let mut config =
            Config::parse_with_env(&text, &self.path.display().to_string(), &self.env)?;
        config.source = Some(self.clone());
        Ok(config)
    }
}

/// A configuration problem, naming the key and, when known, the file line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// The settlement journal's folder (see [`Config::journal_dir`]).
    pub fn journal_path(&self) -> std::path::PathBuf {
        if let Some(dir) = &self.journal_dir {
            return dir.into();
        }
        match self.database_url.strip_prefix("sqlite://") {
            Some(file) => {
                let file = file.split('?').next().unwrap_or(file);
                format!("{file}.journal").into()
            }
            None => "data/journal".into(),
        }
    }

    /// Where holds live: as set, else in Redis when there is one, else in
    /// memory.
    pub fn holds(&self) -> HoldsMode {
        match (self.holds_setting, &self.redis_url) {
            (Some(mode), _) => mode,
            (None, Some(_)) => HoldsMode::Redis,
            (None, None) => HoldsMode::Memory,
        }
    }

    /// Defaults only: what `tollgate serve` runs with when there is no file.
    pub fn defaults() -> Config {
        Config::parse("", "<defaults>").expect("the empty configuration is valid")
    }

    /// Reads `path` (when given), applies environment overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?,
                p.display().to_string(),
            ),
            None => (String::new(), "<defaults>".to_string()),
        };
        let env: Vec<(String, String)> = std::env::vars()
            // Not settings: where the file is, and a password the CLI reads.
            .filter(|(k, _)| {
                k.starts_with("TOLLGATE_") && k != "TOLLGATE_CONFIG" && k != "TOLLGATE_PASSWORD"
            })
            .collect();
        let mut config = Config::parse_with_env(&text, &origin, &env)?;
        config.source = path.map(|path| Source {
            path: path.to_path_buf(),
            env,
        });
        Ok(config)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, origin, &[])
    }

    /// Parses `text`, then overlays `env` (`TOLLGATE_A__B=value` pairs).
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        // The file alone first, so its errors carry line and column.
        let from_file: Config = toml::from_str(text).map_err(|e| {
            ConfigError(format!(
                "invalid configuration in {origin}: {}",
                toml_error(&e, text)
            ))
        })?;
        let config = if env.is_empty() {
            from_file
        } else {
            let mut tree: toml::Table = toml::from_str(text).map_err(|e| {
                ConfigError(format!(
                    "invalid configuration in {origin}: {}",
                    toml_error(&e, text)
                ))
            })?;
            for (name, value) in env {
                apply_override(&mut tree, name, value)?;
            }
            toml::Value::Table(tree)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError(format!(
                        "invalid configuration from TOLLGATE_* environment variables: {e}"
                    ))
                })?
        };
        config.validate(text, origin)?;
        Ok(config)
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let at = |needle: &str| match line_of(text, needle) {
            Some(line) => format!("{origin}, line {line}"),
            None => origin.to_string(),
        };
        // Durations added to instants: a year is plenty, and cannot overflow.
        const YEAR: u64 = 365 * 86_400;
        let failover = &self.failover;
        for (name, value) in [
            ("cooldown_secs", failover.cooldown_secs),
            ("key_rest_secs", failover.key_rest_secs),
            ("health_window_secs", failover.health_window_secs),
        ] {
            if value > YEAR {
                return Err(ConfigError(format!(
                    "failover.{name} must be at most {YEAR} ({})",
                    at(name)
                )));
            }
        }
        let limits = &self.rate_limits;
        let scopes = std::iter::once(("rate_limits".to_string(), limits.global()))
            .chain(
                limits
                    .models
                    .iter()
                    .map(|(k, v)| (format!("rate_limits.models.{k:?}"), *v)),
            )
            .chain(
                limits
                    .groups
                    .iter()
                    .map(|(k, v)| (format!("rate_limits.groups.{k:?}"), *v)),
            )
            .chain(
                limits
                    .tiers
                    .iter()
                    .map(|(k, v)| (format!("rate_limits.tiers.{k:?}"), *v)),
            );
        for (key, l) in scopes {
            if l.rpm == Some(0) || l.tpm == Some(0) || l.concurrency == Some(0) {
                return Err(ConfigError(format!(
                    "{key}: a limit must be at least 1 (leave it out for none) ({})",
                    at("rate_limits")
                )));
            }
        }
        // A lease must outlive the requests it counts: one expiring while its
        // request runs lets another in (and an hour is the default).
        if !(1..=YEAR).contains(&limits.lease_ttl_secs) {
            return Err(ConfigError(format!(
                "rate_limits.lease_ttl_secs must be between 1 and {YEAR} ({})",
                at("lease_ttl_secs")
            )));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rules::Compiled::new(rule.clone(), 0, &rules::Restrictions::default()).map_err(
                |e| {
                    ConfigError(format!(
                        "rules[{i}] ({:?}): {e} ({})",
                        rule.rule_name,
                        at("[[rules]]")
                    ))
                },
            )?;
            for channel in rule.conditions.iter().filter_map(|c| c.channel.as_deref()) {
                if !self.providers.contains_key(channel) {
                    return Err(ConfigError(format!(
                        "rules[{i}] ({:?}): no provider is named {channel:?} ({})",
                        rule.rule_name,
                        at("[[rules]]")
                    )));
                }
            }
        }
        self.validate_storage(&at)?;
        if self.console.signup_free_nano().is_none() {
            return Err(ConfigError(format!(
                "console.signup_free_usd must be a non-negative amount of USD ({})",
                at("signup_free_usd")
            )));
        }
        if self.console.signup == Signup::Invite && self.console.invite_codes.is_empty() {
            return Err(ConfigError(format!(
                "console.signup = \"invite\" needs console.invite_codes ({})",
                at("signup")
            )));
        }
        for code in &self.console.invite_codes {
            check_env_reference("console.invite_codes", code, &at("invite_codes"))?;
        }
        self.payments
            .validate(&|key, value| check_env_reference(key, value, &at("[payments")))?;
        self.oauth.validate(&at)?;
        if self.holds() == HoldsMode::Redis && self.redis_url.is_none() {
            return Err(ConfigError(format!(
                "holds = \"redis\" needs redis_url ({})",
                at("holds")
            )));
        }
        if let Some(url) = &self.redis_url {
            check_env_reference("redis_url", url, &at("redis_url"))?;
        }
        if self.redis.prefix.is_empty() || self.redis.prefix.contains(['{', '}']) {
            return Err(ConfigError(format!(
                "redis.prefix must be a non-empty name without braces ({})",
                at("prefix")
            )));
        }
        if self.failover.max_attempts == 0 {
            return Err(ConfigError(format!(
                "failover.max_attempts must be at least 1 ({})",
                at("max_attempts")
            )));
        }
        check_send_budget(&self.providers, self.hold_ttl_secs)
            .map_err(|e| ConfigError(format!("{e} ({})", at("hold_ttl_secs"))))?;
        if let Some(bad) = self
            .failover
            .retry_statuses
            .iter()
            .find(|r| status_range(r).is_none())
        {
            return Err(ConfigError(format!(
                "failover.retry_statuses: {bad:?} is not a status (\"429\") or a range (\"500-503\") ({})",
                at("retry_statuses")
            )));
        }
        if !(1..=MAX_CREDITS_PER_USD).contains(&self.credits_per_usd) {
            return Err(ConfigError(format!(
                "credits_per_usd must be between 1 and {MAX_CREDITS_PER_USD} ({})",
                at("credits_per_usd")
            )));
        }
        match self.metrics_token.as_deref() {
            Some(token) if token.trim().is_empty() => {
                return Err(ConfigError(format!(
                    "metrics_token must not be empty ({})",
                    at("metrics_token")
                )))
            }
            Some(token) => check_env_reference("metrics_token", token, &at("metrics_token"))?,
            None => {}
        }
        for (name, group) in &self.groups {
            if let Some(m) = &group.multiplier {
                m.to_decimal().map_err(|e| {
                    ConfigError(format!("groups.{name}.multiplier: {e} ({})", at(name)))
                })?;
            }
        }
        for (name, provider) in &self.providers {
            if !provider.base_url.starts_with("http://")
                && !provider.base_url.starts_with("https://")
            {
                return Err(ConfigError(format!(
                    "providers.{name}.base_url must start with http:// or https:// ({})",
                    at(&provider.base_url)
                )));
            }
            if let Some(key) = provider.api_key.as_deref() {
                check_env_reference(&format!("providers.{name}.api_key"), key, &at(name))?;
            }
            for (i, key) in provider.api_keys.iter().enumerate() {
                check_env_reference(&format!("providers.{name}.api_keys[{i}]"), key, &at(name))?;
            }
        }
        for name in self.models.keys() {
            let spec = self
                .model_spec(name)
                .map_err(|e| ConfigError(format!("{e} ({})", at(name))))?;
            self.check_products(&spec)
                .map_err(|e| ConfigError(format!("{e} ({})", at(name))))?;
        }
        Ok(())
    }

    /// The products of decimals the gateway forms for `model` — its
    /// multiplier × each group's, each price × credits per USD × both —
    /// all fit, so none of them saturates at run time.
    fn check_products(&self, model: &ModelSpec) -> Result<(), ConfigError> {
        let too_large = |what: String| {
            ConfigError(format!(
                "models.{:?}: {what} is too large or too precise to be computed exactly",
                model.name
            ))
        };
        let cpu = Decimal::parse(&self.credits_per_usd.to_string())
            .map_err(|_| too_large("credits_per_usd".into()))?;
        let groups = self
            .groups
            .keys()
            .map(|name| (name.as_str(), self.group_multiplier(name)))
            .chain([("(none)", Decimal::ONE)]);
        for (group, multiplier) in groups {
            let effective = model
                .multiplier
                .checked_times(&multiplier)
                .ok_or_else(|| too_large(format!("the multiplier × group {group}'s")))?;
            let p = &model.prices;
            for price in [p.input, p.output, p.cached_input, p.cache_write] {
                price
                    .checked_times(&cpu)
                    .and_then(|credits| credits.checked_times(&effective))
                    .ok_or_else(|| {
                        too_large(format!("a price in credits × group {group}'s multiplier"))
                    })?;
            }
        }
        Ok(())
    }

    /// Whether `listen` is a loopback address (`127.0.0.0/8`, `::1`,
    /// `localhost`): reachable only from this machine.
    pub fn listens_on_loopback(&self) -> bool {
        if let Ok(addr) = self.listen.parse::<std::net::SocketAddr>() {
            return addr.ip().is_loopback();
        }
        let host = match self.listen.rsplit_once(':') {
            Some((host, _port)) => host,
            None => self.listen.as_str(),
        };
        host.eq_ignore_ascii_case("localhost")
    }

    /// The multiplier of `group` (1 when the group is not configured).
    pub fn group_multiplier(&self, group: &str) -> Decimal {
        group_multiplier(&self.groups, group)
    }
}

/// Sets the value of one `TOLLGATE_A__B__C` variable in the TOML tree.
fn apply_override(tree: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name["TOLLGATE_".len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(ConfigError(format!("{name}: empty key segment")));
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut table = tree;
    for segment in parents {
        let entry = table
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError(format!("{name}: {segment} is not a section")))?;
    }
    table.insert(last.clone(), parsed);
    Ok(())
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    let pos = text.find(needle)?;
    Some(text[..pos].matches('\n').count() + 1)
}

/// A TOML error without the source excerpt it quotes, nor any string value
/// (the line could hold a literal key, and errors reach logs and `POST
/// /admin/reload`): where it is, the key there, and what is wrong.
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let rendered = e.to_string();
    let place = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let key = e
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| {
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let line = text[start..].lines().next().unwrap_or_default();
            line.split('=')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .filter(|key| !key.is_empty() && key.len() <= 100 && !key.contains('"'));
    let mut message = e.message().to_string();
    // `invalid type: string "…"`: the value is not repeated.
    while let Some(open) = message.find(" \"") {
        let Some(close) = message[open + 2..].find('"') else {
            break;
        };
        message.replace_range(open..open + 2 + close + 1, " (value)");
    }
    match key {
        Some(key) => format!("{place} (`{key}`): {message}"),
        None => format!("{place}: {message}"),
    }
}

/// Refuses providers one try to which could outlast the sending half of a
/// hold (`send_budget`): a request would be charged after its hold was
/// released. Checked at load and again on a catalog reload, against the
/// hold lifetime in force.
pub fn check_send_budget(
    providers: &BTreeMap<String, ProviderConfig>,
    hold_ttl_secs: u64,
) -> Result<(), ConfigError> {
    let budget = send_budget(hold_ttl_secs);
    for (name, provider) in providers {
        let one_try =
            std::time::Duration::from_secs(provider.request_timeout_secs) + ERROR_BODY_WAIT;
        if one_try > budget {
            return Err(ConfigError(format!(
                "providers.{name}.request_timeout_secs ({}) plus {} s for an error body must fit in half of hold_ttl_secs ({}): a request could outlive its hold",
                provider.request_timeout_secs,
                ERROR_BODY_WAIT.as_secs(),
                hold_ttl_secs
            )));
        }
    }
    Ok(())
}

impl Config {
    fn validate_storage(&self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let storage = &self.storage;
        if storage.nano_per_gb_day().is_none() {
            return Err(ConfigError(format!(
                "storage.price_per_gb_day must be a non-negative amount of USD ({})",
                at("price_per_gb_day")
            )));
        }
        if !(1..=365 * 86_400).contains(&storage.upload_ttl_secs) {
            return Err(ConfigError(format!(
                "storage.upload_ttl_secs must be between 1 and a year ({})",
                at("upload_ttl_secs")
            )));
        }
        if let Some(url) = &storage.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "storage.public_url must be an http:// or https:// address ({})",
                    at("public_url")
                )));
            }
        }
        if storage.backend == StorageBackend::S3 {
            let s3 = &storage.s3;
            if s3.bucket.is_empty() {
                return Err(ConfigError(format!(
                    "storage.backend = \"s3\" needs storage.s3.bucket ({})",
                    at("backend")
                )));
            }
            for (key, value) in [
                ("storage.s3.access_key_id", &s3.access_key_id),
                ("storage.s3.secret_access_key", &s3.secret_access_key),
            ] {
                if let Some(value) = value {
                    check_env_reference(key, value, &at(key))?;
                }
            }
        }
        Ok(())
    }
}

/// Refuses an `env:VAR` reference to a variable that is not set.
fn check_env_reference(key: &str, value: &str, at: &str) -> Result<(), ConfigError> {
    if let Some(var) = value.strip_prefix("env:") {
        if std::env::var(var).is_err() {
            return Err(ConfigError(format!(
                "{key} names the environment variable {var}, which is not set ({at})"
            )));
        }
    }
    Ok(())
}

/// Resolves an `env:VAR` reference (validated at load time).
pub fn resolve_secret(value: &str) -> String {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var).unwrap_or_default(),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Decimal, MeterUnit};

    const SAMPLE: &str = r#"
listen = "127.0.0.1:9000"

[groups.vip]
multiplier = 0.8

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
api_key = "sk-upstream"

[models."gpt-4o-mini"]
provider = "openai"
input_price = 0.15
output_price = "0.6"
multiplier = 1.5
"#;

    /// SAMPLE with a second provider and a model `m` set up by `model`.
    fn with_model(model: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "{SAMPLE}\n[providers.backup]\nkind = \"anthropic\"\nbase_url = \"http://127.0.0.1:2/v1\"\n\n[models.m]\ninput_price = 1\n{model}"
        );
        Config::parse(&text, "t.toml")
    }

    #[test]
    fn a_provider_is_one_channel_and_channels_are_ordered_by_priority() {
        let c = with_model("provider = \"openai\"\nupstream_model = \"up\"").unwrap();
        let m = c.model_spec("m").unwrap();
        assert_eq!(
            m.channels,
            vec![ChannelSpec {
                provider: "openai".into(),
                upstream_model: "up".into(),
                priority: 0,
                weight: 1
            }]
        );
        let c = with_model(
            "upstream_model = \"up\"\n[[models.m.channels]]\nprovider = \"openai\"\nweight = 3\n[[models.m.channels]]\nprovider = \"backup\"\nupstream_model = \"claude\"\npriority = 5",
        )
        .unwrap();
        let m = c.model_spec("m").unwrap();
        let seen: Vec<_> = m
            .channels
            .iter()
            .map(|c| {
                (
                    c.provider.as_str(),
                    c.upstream_model.as_str(),
                    c.priority,
                    c.weight,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![("backup", "claude", 5, 1), ("openai", "up", 0, 3)]
        );
        assert_eq!(
            (m.provider.as_str(), m.upstream_model.as_str()),
            ("backup", "claude")
        );
    }

    #[test]
    fn failover_retries_what_it_lists() {
        let f = Failover::default();
        for status in [429, 500, 502, 503, 529, 599] {
            assert!(f.retries(status), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 504, 524, 200] {
            assert!(!f.retries(status), "{status}");
        }
        let e = Config::parse(
            &format!("{SAMPLE}\n[failover]\nretry_statuses = [\"5xx\"]"),
            "t",
        )
        .unwrap_err();
        assert!(e.0.contains("\"5xx\""), "{e}");
        let e = Config::parse(&format!("{SAMPLE}\n[failover]\nmax_attempts = 0"), "t").unwrap_err();
        assert!(e.0.contains("max_attempts"), "{e}");
    }

    #[test]
    fn models_are_priced_in_their_unit() {
        let model = |fields: &str| {
            let text = format!("{SAMPLE}\n[models.m]\nprovider = \"openai\"\n{fields}");
            Config::parse(&text, "t.toml").and_then(|c| c.model_spec("m"))
        };
        let tts = model("unit = \"characters\"\nprice = \"15\"").unwrap();
        assert_eq!(
            (tts.unit, tts.unit_price),
            (MeterUnit::Characters, Decimal::parse("15").unwrap())
        );
        let images = model(
            "unit = \"images\"\nprice = \"0.04\"\nimage_prices = { \"1024x1792\" = \"0.08\", \"1024x1792/hd\" = \"0.12\" }",
        )
        .unwrap();
        let price = |size, quality| images.image_price(size, quality).to_string();
        assert_eq!(price(Some("1024x1792"), Some("hd")), "0.12");
        assert_eq!(price(Some("1024x1792"), Some("standard")), "0.08");
        assert_eq!(price(Some("256x256"), Some("standard")), "0.04");
        // Left to the upstream: the dearest it may choose.
        assert_eq!(price(Some("1024x1792"), None), "0.12");
        assert_eq!(price(None, Some("hd")), "0.12");
        assert_eq!(price(Some("auto"), Some("auto")), "0.12");
        assert_eq!(price(Some("256x256"), None), "0.04");
        for (fields, complaint) in [
            ("unit = \"seconds\"", "price is required"),
            ("unit = \"images\"", "price is required"),
            ("price = \"1\"", "input_price"),
            ("input_price = 1\nprice = \"1\"", "price is for other units"),
            ("unit = \"furlongs\"\nprice = \"1\"", "unit"),
        ] {
            let error = model(fields).unwrap_err().0;
            assert!(error.contains(complaint), "{fields}: {error}");
        }
    }

    #[test]
    fn channels_are_checked() {
        let both = "provider = \"openai\"\n[[models.m.channels]]\nprovider = \"backup\"";
        assert!(with_model(both)
            .unwrap_err()
            .0
            .contains("either provider or channels"));
        assert!(with_model("").unwrap_err().0.contains("set provider"));
        let unknown = "[[models.m.channels]]\nprovider = \"nope\"";
        let e = with_model(unknown).unwrap_err().0;
        assert!(
            e.contains("channels[0].provider") && e.contains("nope"),
            "{e}"
        );
        let zero = "[[models.m.channels]]\nprovider = \"openai\"\nweight = 0";
        assert!(with_model(zero)
            .unwrap_err()
            .0
            .contains("weight must be at least 1"));
    }

    #[test]
    fn empty_config_has_defaults() {
        let c = Config::defaults();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.credits_per_usd, 34_000);
        assert_eq!(c.max_keys_per_user, 5_000);
    }

    #[test]
    fn models_resolve_exact_prices() {
        let c = Config::parse(SAMPLE, "t.toml").unwrap();
        let m = c.model_spec("gpt-4o-mini").unwrap();
        assert_eq!(m.upstream_model, "gpt-4o-mini");
        assert_eq!(m.prices.input, Decimal::parse("0.15").unwrap());
        assert_eq!(m.prices.cached_input, m.prices.input);
        assert_eq!(c.group_multiplier("vip"), Decimal::parse("0.8").unwrap());
        assert_eq!(c.group_multiplier("nobody"), Decimal::ONE);
    }

    #[test]
    fn env_overrides_any_key() {
        let env = vec![
            ("TOLLGATE_LISTEN".to_string(), "0.0.0.0:1234".to_string()),
            (
                "TOLLGATE_PROVIDERS__OPENAI__API_KEY".to_string(),
                "sk-from-env".to_string(),
            ),
            ("TOLLGATE_CREDITS_PER_USD".to_string(), "1000".to_string()),
        ];
        let c = Config::parse_with_env(SAMPLE, "t.toml", &env).unwrap();
        assert_eq!(c.listen, "0.0.0.0:1234");
        assert_eq!(
            c.providers["openai"].api_key.as_deref(),
            Some("sk-from-env")
        );
        assert_eq!(c.credits_per_usd, 1000);
    }

    #[test]
    fn errors_never_quote_the_file() {
        let secret = "[providers.p]\nkind = \"openai\"\napi_key = \"sk-very-secret\" trailing\n";
        let e = Config::parse(secret, "t.toml").unwrap_err().to_string();
        assert!(!e.contains("sk-very-secret") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let bad = "listen = \"x\"\nmax_keys_per_user = \"many\"\n";
        let e = Config::parse(bad, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("max_keys_per_user"),
            "{e}"
        );

        let typo = "\n\nlisten_addr = \"x\"\n";
        let e = Config::parse(typo, "t.toml").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("listen_addr"), "{e}");

        let dangling = "[providers.p]\nkind=\"openai\"\nbase_url=\"http://x\"\n\n[models.m]\nprovider = \"nope\"\ninput_price = 1\n";
        let e = Config::parse(dangling, "t.toml").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("line 5"), "{e}");

        let price = "[providers.p]\nkind=\"openai\"\nbase_url=\"http://x\"\n[models.m]\nprovider = \"p\"\ninput_price = -1\n";
        let e = Config::parse(price, "t.toml").unwrap_err().to_string();
        assert!(e.contains("input_price"), "{e}");

        // One try of up to 600 s (and 10 s for an error body) must fit in
        // half of the hold's lifetime.
        let short_hold =
            "hold_ttl_secs = 1200\n[providers.p]\nkind=\"openai\"\nbase_url=\"http://x\"\n";
        let e = Config::parse(short_hold, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("request_timeout_secs (600)") && e.contains("line 1"),
            "{e}"
        );
        let enough = short_hold.replace("1200", "1220");
        assert!(Config::parse(&enough, "t.toml").is_ok());
    }

    #[test]
    fn money_the_gateway_cannot_compute_exactly_is_refused_at_load() {
        let base = "[providers.p]\nkind=\"openai\"\nbase_url=\"http://x\"\n";
        let e = Config::parse("credits_per_usd = 10000000000000\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("credits_per_usd"), "{e}");
        // A multiplier and a group multiplier whose product overflows.
        let huge = format!(
            "{base}[groups.g]\nmultiplier = \"999999999999999999\"\n[models.m]\nprovider = \"p\"\ninput_price = 1\nmultiplier = \"999999999999999999\"\n"
        );
        let e = Config::parse(&huge, "t.toml").unwrap_err().to_string();
        assert!(e.contains("models.\"m\"") && e.contains("too large"), "{e}");
        // A price too large to show in credits at the model's multiplier.
        let price = format!(
            "{base}[models.m]\nprovider = \"p\"\ninput_price = \"999999999999999999.999999999999\"\nmultiplier = 10000000000\n"
        );
        let e = Config::parse(&price, "t.toml").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        // Ordinary values are fine.
        let fine = format!(
            "{base}[groups.g]\nmultiplier = 0.8\n[models.m]\nprovider = \"p\"\ninput_price = 0.15\nmultiplier = 1.5\n"
        );
        assert!(Config::parse(&fine, "t.toml").is_ok());
    }

    #[test]
    fn metrics_token_and_loopback() {
        let c = Config::parse("metrics_token = \"t0k3n\"\n", "t.toml").unwrap();
        assert_eq!(c.metrics_token.as_deref(), Some("t0k3n"));
        let e = Config::parse(
            "metrics_token = \"env:TOLLGATE_TEST_UNSET_METRICS_VAR\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("metrics_token") && e.contains("TOLLGATE_TEST_UNSET_METRICS_VAR"),
            "{e}"
        );
        let e = Config::parse("metrics_token = \" \"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_token must not be empty"), "{e}");

        let on = |listen: &str| {
            Config::parse(&format!("listen = \"{listen}\"\n"), "t.toml")
                .unwrap()
                .listens_on_loopback()
        };
        for loopback in [
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST:1",
        ] {
            assert!(on(loopback), "{loopback}");
        }
        for public in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:8080",
            "gateway.example:8080",
            "localhost.example.com:80",
        ] {
            assert!(!on(public), "{public}");
        }
    }

    #[test]
    fn late_system_messages_default_to_keep() {
        let c = Config::parse(SAMPLE, "t.toml").unwrap();
        assert_eq!(
            c.providers["openai"].late_system_messages,
            LateSystemMessages::Keep
        );
        let strict = SAMPLE.replace(
            "api_key = \"sk-upstream\"",
            "api_key = \"sk-upstream\"\nlate_system_messages = \"as_user\"",
        );
        let c = Config::parse(&strict, "t.toml").unwrap();
        assert_eq!(
            c.providers["openai"].late_system_messages,
            LateSystemMessages::AsUser
        );
        let bad = SAMPLE.replace(
            "api_key = \"sk-upstream\"",
            "api_key = \"sk-upstream\"\nlate_system_messages = \"drop\"",
        );
        let e = Config::parse(&bad, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("late_system_messages") || e.contains("keep"),
            "{e}"
        );
    }
}
