//! The model catalog in force: the providers, each model with its prices
//! and channels, and the group multipliers. Built from the configuration at
//! start, and built anew — then swapped in whole — when the operator
//! reloads it (`SIGHUP`, `POST /admin/reload`).
//!
//! A request takes the catalog once, when it is routed, and keeps that
//! snapshot to its end: a reload never changes the prices, channels or
//! providers of a request in flight, and never drops one. What should
//! outlive a reload does: a provider whose settings did not change is kept
//! (its warm connections with it), and so is the health of a channel that
//! is still served the same way (an operator's disable included).

use std::collections::BTreeMap;

use hashbrown::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError, GroupConfig, ModelSpec, ProviderConfig, Source};
use crate::money::Decimal;
use crate::providers::Provider;
use crate::routing::{self, Channel};

pub struct Catalog {
    pub models: HashMap<String, Arc<ModelSpec>>,
    /// Each model's channels, highest priority first.
    pub channels: HashMap<String, Vec<Channel>>,
    pub providers: HashMap<String, Arc<Provider>>,
    /// Each provider's settings, to tell on reload whether it changed.
    provider_configs: BTreeMap<String, ProviderConfig>,
    groups: BTreeMap<String, GroupConfig>,
}

/// A catalog could not be built: the message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Provider(String),
}

impl Catalog {
    /// The catalog `config` describes, keeping what it can of `previous`.
    pub fn build(config: &Config, previous: Option<&Catalog>) -> Result<Catalog, CatalogError> {
        let mut providers = HashMap::new();
        for (name, settings) in &config.providers {
            let kept = previous
                .filter(|p| p.provider_configs.get(name) == Some(settings))
                .and_then(|p| p.providers.get(name));
            let provider = match kept {
                Some(provider) => provider.clone(),
                None => Arc::new(Provider::new(name, settings).map_err(CatalogError::Provider)?),
            };
            providers.insert(name.clone(), provider);
        }
        let mut models = HashMap::new();
        let mut channels = HashMap::new();
        for name in config.models.keys() {
            let spec = config.model_spec(name)?;
            let mut served = routing::channels(&spec, &providers)?;
            if let Some(before) = previous.and_then(|p| p.channels.get(name)) {
                for channel in &mut served {
                    if let Some(same) = before.iter().find(|b| b.serves_like(channel)) {
                        channel.health = same.health.clone();
                        channel.stats = same.stats.clone();
                    }
                }
            }
            channels.insert(name.clone(), served);
            models.insert(name.clone(), Arc::new(spec));
        }
        Ok(Catalog {
            models,
            channels,
            providers,
            provider_configs: config
                .providers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            groups: config
                .groups
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    pub fn model(&self, name: &str) -> Option<&Arc<ModelSpec>> {
        self.models.get(name)
    }

    /// The multiplier of `group` (1 when the group is not configured).
    pub fn group_multiplier(&self, group: &str) -> Decimal {
        crate::config::group_multiplier(&self.groups, group)
    }
}

/// The catalog in force, and where a reload reads it from.
pub struct Catalogs {
    current: ArcSwap<Catalog>,
    /// The configuration file (`None`: built from defaults or from text,
    /// which cannot be read again).
    source: Option<Source>,
    /// The hold lifetime in force (a reload does not change it).
    hold_ttl_secs: u64,
    /// One reload at a time: two at once (a `SIGHUP` and a `POST`) could
    /// end with the older file in force.
    reloading: std::sync::Mutex<()>,
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    pub providers: usize,
    pub models: usize,
    pub channels: usize,
}

impl Catalogs {
    pub fn new(catalog: Catalog, config: &Config) -> Self {
        Catalogs {
            current: ArcSwap::from_pointee(catalog),
            source: config.source.clone(),
            hold_ttl_secs: config.hold_ttl_secs,
            reloading: std::sync::Mutex::new(()),
        }
    }

    /// The catalog in force now: a request keeps it to its end.
    pub fn load(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Reads the configuration file again and puts its catalog in force.
    /// A file that does not parse or validate changes nothing. Settings
    /// outside the catalog (listen address, database, limits, …) take
    /// effect only at the next start. Blocking (file reads, HTTP clients
    /// built): call it off the async workers.
    pub fn reload(&self) -> Result<Reloaded, CatalogError> {
        let _one_at_a_time = match self.reloading.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let source = self.source.as_ref().ok_or_else(|| {
            ConfigError(
                "the gateway was started without a configuration file: nothing to reload".into(),
            )
        })?;
        let config = source.read()?;
        // The new timeouts must fit in the holds of this process.
        crate::config::check_send_budget(&config.providers, self.hold_ttl_secs)?;
        let previous = self.load();
        let next = Catalog::build(&config, Some(&previous))?;
        let reloaded = Reloaded {
            providers: next.providers.len(),
            models: next.models.len(),
            channels: next.channels.values().map(Vec::len).sum(),
        };
        self.current.store(Arc::new(next));
        tracing::info!(
            providers = reloaded.providers,
            models = reloaded.models,
            channels = reloaded.channels,
            file = %source.path.display(),
            "model catalog reloaded"
        );
        Ok(reloaded)
    }
}
