//! Routing: a model name becomes the model's specification and the channel
//! that serves it — if the caller's key may use it.

pub mod affinity;
pub mod health;
mod select;
pub mod stats;

use hashbrown::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use select::{select, Weight};

pub use affinity::{Affinity, AffinityKey};

use crate::auth::Principal;
use crate::catalog::Catalog;
use crate::config::{ConfigError, ModelSpec};
use crate::providers::{Provider, Target};

/// Where a request for one model goes.
pub struct Route {
    /// The catalog the request was routed in: it keeps it to its end.
    pub catalog: Arc<Catalog>,
    /// The model as the chosen channel serves it.
    pub model: Arc<ModelSpec>,
    pub provider: Arc<Provider>,
    /// The chosen channel, among the model's (`Catalog::channels`).
    pub channel: usize,
    /// The conversation the request belongs to, if its client says: the
    /// channel that serves it is remembered for its next turn.
    pub affinity: Option<AffinityKey>,
}

impl Route {
    /// What the provider's adapter builds its call for.
    pub fn target(&self) -> Target<'_> {
        Target {
            model: &self.model,
            provider: &self.provider,
        }
    }
}

/// One channel of a model, ready to serve: the model's specification as
/// this channel sees it (its provider and upstream name, which its usage
/// records name) and its provider.
pub struct Channel {
    pub model: Arc<ModelSpec>,
    pub provider: Arc<Provider>,
    pub weight: Weight,
    /// Shared with the same channel in the catalog before a reload.
    pub health: Arc<health::Health>,
    /// Likewise.
    pub stats: Arc<stats::ChannelStats>,
}

impl Channel {
    /// Whether `other` is the same channel (the same provider, by name, and
    /// upstream model): across a reload its health — an operator's disable
    /// included — and its statistics carry over, even when the provider's
    /// settings (keys, timeouts) were edited.
    pub fn serves_like(&self, other: &Channel) -> bool {
        self.provider.name == other.provider.name
            && self.model.upstream_model == other.model.upstream_model
    }
}

/// A route to channel `index` of `model` in `catalog`.
pub fn route_to(catalog: &Arc<Catalog>, model: &str, index: usize) -> Option<Route> {
    let channel = catalog.channels.get(model)?.get(index)?;
    Some(Route {
        catalog: catalog.clone(),
        model: channel.model.clone(),
        provider: channel.provider.clone(),
        channel: index,
        affinity: None,
    })
}

/// The channels of `spec`, highest priority first.
pub fn channels(
    spec: &ModelSpec,
    providers: &HashMap<String, Arc<Provider>>,
) -> Result<Vec<Channel>, ConfigError> {
    spec.channels
        .iter()
        .map(|c| {
            let provider = providers.get(&c.provider).cloned().ok_or_else(|| {
                ConfigError(format!(
                    "models.{:?}: no provider {:?}",
                    spec.name, c.provider
                ))
            })?;
            let model = ModelSpec {
                provider: c.provider.clone(),
                upstream_model: c.upstream_model.clone(),
                ..spec.clone()
            };
            Ok(Channel {
                model: Arc::new(model),
                provider,
                weight: Weight {
                    priority: c.priority,
                    weight: c.weight,
                },
                health: Default::default(),
                stats: Default::default(),
            })
        })
        .collect()
}

/// Why a request could not be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("no model {0:?}")]
    ModelNotFound(String),
    #[error("the key may not use {0:?}")]
    ModelNotAllowed(String),
    /// Every channel of the model is disabled.
    #[error("no channel can serve the model")]
    NoChannel,
}

/// Routes a request for `model` in `catalog` (the one in force): to the
/// channel that served the conversation's last turn (`key`, looked up in
/// `affinity`) while it is healthy, else by [`pick`].
pub fn route(
    catalog: Arc<Catalog>,
    affinity: &Affinity,
    cooldown: Duration,
    principal: &Principal,
    model: &str,
    key: Option<AffinityKey>,
) -> Result<Route, RouteError> {
    let Some(channels) = catalog.channels.get(model) else {
        return Err(RouteError::ModelNotFound(model.to_string()));
    };
    if !principal.may_use(model) {
        return Err(RouteError::ModelNotAllowed(model.to_string()));
    }
    let now = Instant::now();
    let sticky = key
        .as_ref()
        .and_then(|key| affinity.channel(key, channels, now));
    let chosen = match sticky {
        Some(index) => index,
        // Every channel disabled: none can be reached.
        None => pick(channels, &[], cooldown, now).ok_or(RouteError::NoChannel)?,
    };
    let mut route = route_to(&catalog, model, chosen).ok_or(RouteError::NoChannel)?;
    route.affinity = key;
    Ok(route)
}

/// The channel a request tries next: by [`select`] among the channels not
/// tried that their health admits; when none is admitted, the untried one
/// out of service the longest (rather than failing outright). Disabled
/// channels are never picked.
pub fn pick(
    channels: &[Channel],
    tried: &[usize],
    cooldown: Duration,
    now: Instant,
) -> Option<usize> {
    let roll = || {
        if channels.len() > 1 {
            rand::random()
        } else {
            0
        }
    };
    let mut excluded = tried.to_vec();
    while let Some(index) = select(channels, |c| c.weight, &excluded, roll()) {
        if channels[index].health.admit(cooldown, now) {
            return Some(index);
        }
        excluded.push(index);
    }
    (0..channels.len())
        .filter(|i| !tried.contains(i))
        .filter_map(|i| channels[i].health.out_since().map(|since| (since, i)))
        .min()
        .map(|(_, i)| i)
}
