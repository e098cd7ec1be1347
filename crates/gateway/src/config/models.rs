//! The model catalog's settings: providers, models with their prices and
//! channels, group multipliers — what a catalog reload reads again.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{defaults, Config, ConfigError};
use crate::money::{Decimal, MeterUnit, Prices};

pub use protocol::translate::messages_via_chat::LateSystemMessages;

/// A decimal written as a TOML number or string (`0.15` or `"0.15"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DecimalValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl DecimalValue {
    pub(super) fn to_decimal(&self) -> Result<Decimal, crate::money::DecimalError> {
        match self {
            DecimalValue::Int(i) if *i >= 0 => Decimal::parse(&i.to_string()),
            DecimalValue::Int(i) => Err(crate::money::DecimalError(i.to_string())),
            DecimalValue::Float(f) => Decimal::from_f64(*f),
            DecimalValue::Text(s) => Decimal::parse(s),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    #[serde(default)]
    pub multiplier: Option<DecimalValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Any OpenAI-compatible endpoint (`/chat/completions`, …).
    Openai,
    /// Anthropic's Messages API (`/messages`, `x-api-key`).
    Anthropic,
    /// Google's Custom Search JSON API (`GET /customsearch/v1`; the search
    /// engine's `cx` in `params`).
    #[serde(rename = "google_cse")]
    GoogleCse,
    /// Serper's Google search API (`POST /search`, `X-API-KEY`).
    Serper,
    /// Azure's neural text to speech (`https://REGION.tts.speech.microsoft.com`:
    /// SSML in, audio out; the key in `Ocp-Apim-Subscription-Key`).
    #[serde(rename = "azure_tts")]
    AzureTts,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1` or `https://api.anthropic.com/v1`.
    pub base_url: String,
    /// `anthropic-version` sent when the client sends none (Anthropic only).
    #[serde(default)]
    pub anthropic_version: Option<String>,
    /// The key, or `env:VAR` to read it from the environment.
    #[serde(default)]
    pub api_key: Option<String>,
    /// More keys (each a key or `env:VAR`), used in rotation with
    /// `api_key`: a key the upstream rate-limits rests while the others
    /// serve.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// The upstream serves OpenAI's Responses API (`POST /responses`); when
    /// false, Responses requests are emulated over chat completions.
    #[serde(default)]
    pub responses_api: bool,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters every call carries (Google CSE's `cx`); values may
    /// be `env:VAR`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default = "defaults::connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Whole-request limit for non-streaming calls.
    #[serde(default = "defaults::request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// Longest silence tolerated between two chunks of a stream.
    #[serde(default = "defaults::read_timeout_secs")]
    pub read_timeout_secs: u64,
    /// How a system message after the first turn (Claude Code sends them)
    /// reaches this provider when Messages are translated to chat
    /// completions: `keep` (a `system` message where it was, which OpenAI
    /// accepts) or `as_user` (user text ahead of the user's words, for
    /// servers that refuse late system messages, e.g. Qwen chat templates
    /// in vLLM, llama.cpp or Ollama).
    #[serde(default)]
    pub late_system_messages: LateSystemMessages,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The provider that serves the model: shorthand for one channel.
    #[serde(default)]
    pub provider: Option<String>,
    /// The name the upstream knows the model by; defaults to the public name.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// The channels that serve the model, instead of `provider`.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// What the model is metered in (`tokens` unless said).
    #[serde(default)]
    pub unit: MeterUnit,
    /// USD per 1M input tokens (models metered in tokens).
    #[serde(default)]
    pub input_price: Option<DecimalValue>,
    /// USD per unit of any other `unit`: per 1M characters, per second,
    /// per minute, per image (the default size and quality), per call.
    #[serde(default)]
    pub price: Option<DecimalValue>,
    /// Images: USD per image by `"SIZE"` or `"SIZE/QUALITY"`
    /// (`"1024x1024/hd"`), before `price`.
    #[serde(default)]
    pub image_prices: BTreeMap<String, DecimalValue>,
    /// USD per 1M output tokens.
    #[serde(default)]
    pub output_price: Option<DecimalValue>,
    /// USD per 1M cached input tokens; defaults to the input price.
    #[serde(default)]
    pub cached_input_price: Option<DecimalValue>,
    /// USD per 1M tokens written to a prompt cache (Anthropic's cache
    /// creation); defaults to 1.25 × the input price, Anthropic's rate.
    #[serde(default)]
    pub cache_write_price: Option<DecimalValue>,
    /// The model's magnification, applied on top of the prices.
    #[serde(default)]
    pub multiplier: Option<DecimalValue>,
    /// Output tokens assumed for the hold when a request sets no cap.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// A model priced in tokens that makes images (gpt-image-1): the image
    /// endpoints serve it, charging the tokens its answers report.
    #[serde(default)]
    pub images: bool,
}

/// One way to serve a model: a provider and the name it knows the model by.
/// Requests go to the highest `priority` that has a channel to try, shared
/// by `weight` within it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub provider: String,
    /// Defaults to the model's `upstream_model`, then its public name.
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A channel of a [`ModelSpec`], resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub provider: String,
    pub upstream_model: String,
    pub priority: i64,
    pub weight: u32,
}

/// A model with its prices resolved to exact decimals.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    /// The provider and upstream name of the channel this spec is for (the
    /// first channel's in the model catalog): what a usage record names.
    pub provider: String,
    pub upstream_model: String,
    /// Every channel that serves the model, highest priority first.
    pub channels: Vec<ChannelSpec>,
    pub prices: Prices,
    /// What it is metered in; for every unit but tokens, `unit_price` is
    /// USD per `unit.per()` counted units.
    pub unit: MeterUnit,
    pub unit_price: Decimal,
    /// Images: the price per image by `"SIZE"` or `"SIZE/QUALITY"`.
    pub image_prices: BTreeMap<String, Decimal>,
    pub multiplier: Decimal,
    pub max_output_tokens: Option<u64>,
    /// Priced in tokens, and makes images.
    pub images: bool,
}

impl ModelSpec {
    /// What the model costs, in USD, as clients are shown it: its unit,
    /// how many units a price is for, and the prices.
    pub fn pricing(&self) -> serde_json::Value {
        let text = |d: &Decimal| serde_json::Value::String(d.to_string());
        match self.unit {
            MeterUnit::Tokens => serde_json::json!({
                "unit": "tokens", "per": 1_000_000,
                "input": text(&self.prices.input), "output": text(&self.prices.output),
                "cached_input": text(&self.prices.cached_input),
                "cache_write": text(&self.prices.cache_write),
            }),
            unit => {
                let mut pricing = serde_json::json!({
                    "unit": unit.name(), "per": unit.per(), "price": text(&self.unit_price),
                });
                if unit == MeterUnit::Minutes {
                    pricing["per"] = 1.into();
                }
                if !self.image_prices.is_empty() {
                    pricing["image_prices"] = self
                        .image_prices
                        .iter()
                        .map(|(k, v)| (k.clone(), text(v)))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                pricing
            }
        }
    }

    /// The price of one image of `size` and `quality`: with both given,
    /// the most specific entry of `image_prices` (`SIZE/QUALITY`, then
    /// `SIZE`), else `unit_price`. With either left out (or `auto`: the
    /// upstream chooses), the dearest price it may come to — what is held
    /// is what is charged, and the upstream's choice is not known.
    pub fn image_price(&self, size: Option<&str>, quality: Option<&str>) -> Decimal {
        let size = size.filter(|v| !v.is_empty() && *v != "auto");
        let quality = quality.filter(|v| !v.is_empty() && *v != "auto");
        if let (Some(s), Some(q)) = (size, quality) {
            return self
                .image_prices
                .get(&format!("{s}/{q}"))
                .or_else(|| self.image_prices.get(s))
                .copied()
                .unwrap_or(self.unit_price);
        }
        let fits = |key: &str| {
            let (s, q) = key
                .split_once('/')
                .map_or((key, None), |(s, q)| (s, Some(q)));
            size.is_none_or(|want| want == s) && quality.is_none_or(|want| q == Some(want))
        };
        let keyed = size.and_then(|s| self.image_prices.get(s)).copied();
        self.image_prices
            .iter()
            .filter(|(key, _)| fits(key))
            .map(|(_, price)| *price)
            .chain(keyed)
            .chain(std::iter::once(self.unit_price))
            .fold(
                Decimal::ZERO,
                |most, p| if p.greater_than(&most) { p } else { most },
            )
    }
}

impl Config {
    /// The model `name` with its prices resolved.
    pub fn model_spec(&self, name: &str) -> Result<ModelSpec, ConfigError> {
        let m = self
            .models
            .get(name)
            .ok_or_else(|| ConfigError(format!("no model {name:?}")))?;
        let channels = self.channels_of(name, m)?;
        let dec = |field: &str, v: Option<&DecimalValue>, default: Decimal| match v {
            Some(v) => v
                .to_decimal()
                .map_err(|e| ConfigError(format!("models.{name:?}.{field}: {e}"))),
            None => Ok(default),
        };
        let input = dec("input_price", m.input_price.as_ref(), Decimal::ZERO)?;
        match (m.unit, &m.input_price, &m.price) {
            (MeterUnit::Tokens, None, _) => {
                return Err(ConfigError(format!(
                    "models.{name:?}: input_price is required (USD per 1M input tokens)"
                )))
            }
            (MeterUnit::Tokens, Some(_), None) => {}
            (MeterUnit::Tokens, _, Some(_)) => {
                return Err(ConfigError(format!(
                    "models.{name:?}: price is for other units than tokens; set unit, or use input_price and output_price"
                )))
            }
            (unit, _, None) => {
                return Err(ConfigError(format!(
                    "models.{name:?}: price is required (USD per {} {})",
                    unit.per(),
                    unit.counted()
                )))
            }
            _ => {}
        }
        let mut image_prices = BTreeMap::new();
        for (key, value) in &m.image_prices {
            image_prices.insert(
                key.clone(),
                dec(&format!("image_prices.{key:?}"), Some(value), Decimal::ZERO)?,
            );
        }
        Ok(ModelSpec {
            name: name.to_string(),
            provider: channels[0].provider.clone(),
            upstream_model: channels[0].upstream_model.clone(),
            channels,
            prices: Prices {
                input,
                output: dec("output_price", m.output_price.as_ref(), Decimal::ZERO)?,
                cached_input: dec("cached_input_price", m.cached_input_price.as_ref(), input)?,
                cache_write: dec(
                    "cache_write_price",
                    m.cache_write_price.as_ref(),
                    input
                        .checked_times(&Decimal::parse("1.25").expect("constant"))
                        .ok_or_else(|| {
                            ConfigError(format!(
                                "models.{name:?}.input_price: too large to derive cache_write_price from; set cache_write_price"
                            ))
                        })?,
                )?,
            },
            unit: m.unit,
            unit_price: dec("price", m.price.as_ref(), Decimal::ZERO)?,
            image_prices,
            multiplier: dec("multiplier", m.multiplier.as_ref(), Decimal::ONE)?,
            max_output_tokens: m.max_output_tokens,
            images: m.images,
        })
    }

    /// The channels of model `name`: `provider` alone is one channel.
    fn channels_of(&self, name: &str, m: &ModelConfig) -> Result<Vec<ChannelSpec>, ConfigError> {
        let upstream = m.upstream_model.clone().unwrap_or_else(|| name.to_string());
        let mut channels = match (&m.provider, m.channels.is_empty()) {
            (Some(provider), true) => vec![ChannelSpec {
                provider: provider.clone(),
                upstream_model: upstream,
                priority: 0,
                weight: 1,
            }],
            (None, false) => m
                .channels
                .iter()
                .map(|c| ChannelSpec {
                    provider: c.provider.clone(),
                    upstream_model: c.upstream_model.clone().unwrap_or_else(|| upstream.clone()),
                    priority: c.priority,
                    weight: c.weight,
                })
                .collect(),
            (Some(_), false) => {
                return Err(ConfigError(format!(
                    "models.{name:?}: set either provider or channels, not both"
                )))
            }
            (None, true) => {
                return Err(ConfigError(format!(
                    "models.{name:?}: set provider (or channels) to say what serves it"
                )))
            }
        };
        for (i, c) in channels.iter().enumerate() {
            if !self.providers.contains_key(&c.provider) {
                let key = match m.channels.is_empty() {
                    true => "provider".to_string(),
                    false => format!("channels[{i}].provider"),
                };
                return Err(ConfigError(format!(
                    "models.{name:?}.{key} names {:?}, which is not a configured provider",
                    c.provider
                )));
            }
            if c.weight == 0 {
                return Err(ConfigError(format!(
                    "models.{name:?}.channels[{i}].weight must be at least 1"
                )));
            }
        }
        for (i, c) in channels.iter().enumerate() {
            let same = channels[..i]
                .iter()
                .any(|d| d.provider == c.provider && d.upstream_model == c.upstream_model);
            if same {
                return Err(ConfigError(format!(
                    "models.{name:?}.channels[{i}]: {:?} with {:?} is there twice (one channel per provider and upstream model)",
                    c.provider, c.upstream_model
                )));
            }
        }
        // Highest priority first; the order written within a tier.
        channels.sort_by_key(|c| std::cmp::Reverse(c.priority));
        Ok(channels)
    }
}

/// The multiplier of `group` among `groups` (1 when it is not there).
pub fn group_multiplier(groups: &BTreeMap<String, GroupConfig>, group: &str) -> Decimal {
    groups
        .get(group)
        .and_then(|g| g.multiplier.as_ref())
        .and_then(|m| m.to_decimal().ok())
        .unwrap_or(Decimal::ONE)
}
