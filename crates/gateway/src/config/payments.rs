//! Top-ups (`[payments]`): what users may pay, what it credits, and the
//! processor that takes the money (`[payments.stripe]`).

use serde::Deserialize;

use super::models::DecimalValue;
use super::ConfigError;
use crate::money::Decimal;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// ISO 4217 code of what users pay in (`usd`, `eur`, `jpy`, …).
    pub currency: String,
    /// USD credited per unit of `currency` (1 for `usd`).
    pub usd_per_unit: DecimalValue,
    /// Smallest and largest order, in units of `currency`.
    pub min_amount: DecimalValue,
    pub max_amount: DecimalValue,
    /// Amounts the top-up page offers as buttons.
    pub preset_amounts: Vec<DecimalValue>,
    /// Extra credit from an amount up: the highest tier reached applies.
    pub bonus: Vec<BonusTier>,
    /// This gateway's address as users' browsers reach it (`https://…`):
    /// the processor sends them back to its console after paying. Default:
    /// `http://` + `listen`.
    pub public_url: Option<String>,
    /// Stripe; top-ups are off without it.
    pub stripe: Option<StripeConfig>,
}

/// `percent` more credit for orders of `from` units or more.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BonusTier {
    pub from: DecimalValue,
    pub percent: DecimalValue,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// The secret API key (`sk_live_…`; a literal or `env:VAR`).
    pub secret_key: String,
    /// The webhook endpoint's signing secrets (`whsec_…`; literals or
    /// `env:VAR`): several while a secret is being rolled.
    pub webhook_secrets: Vec<String>,
    /// Stripe's API; tests point it at the fake in `crates/fake-stripe`.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Days a company has to pay an invoice.
    #[serde(default = "default_days_until_due")]
    pub invoice_days_until_due: u32,
}

fn default_api_base() -> String {
    "https://api.stripe.com".into()
}

fn default_days_until_due() -> u32 {
    30
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            currency: "usd".into(),
            usd_per_unit: DecimalValue::Int(1),
            min_amount: DecimalValue::Int(5),
            max_amount: DecimalValue::Int(10_000),
            preset_amounts: vec![
                DecimalValue::Int(10),
                DecimalValue::Int(20),
                DecimalValue::Int(50),
                DecimalValue::Int(100),
            ],
            bonus: Vec::new(),
            public_url: None,
            stripe: None,
        }
    }
}

/// Currencies Stripe counts in whole units (no cents), from its docs.
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies with three decimals, whose amounts Stripe wants rounded to
/// tens: not offered.
const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];

/// Fractional digits of `currency`'s minor unit, as Stripe counts it (2,
/// or 0 for yen and the other zero-decimal currencies).
pub fn currency_digits(currency: &str) -> u32 {
    if ZERO_DECIMAL.contains(&currency.to_ascii_lowercase().as_str()) {
        0
    } else {
        2
    }
}

/// The order terms, checked and converted once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub currency: String,
    /// Fractional digits of the currency (2, or 0 for yen and the like).
    pub digits: u32,
    pub usd_per_unit: Decimal,
    /// Minor units.
    pub min_amount: i64,
    pub max_amount: i64,
    pub presets: Vec<i64>,
    /// (from, in minor units; percent), ascending.
    pub bonus: Vec<(i64, Decimal)>,
}

impl PaymentsConfig {
    /// Whether a processor is configured.
    pub fn enabled(&self) -> bool {
        self.stripe.is_some()
    }

    /// The terms, or what is wrong with them.
    pub fn terms(&self) -> Result<Terms, ConfigError> {
        let currency = self.currency.trim().to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ConfigError(format!(
                "payments.currency must be an ISO 4217 code such as \"usd\" (not {:?})",
                self.currency
            )));
        }
        if THREE_DECIMAL.contains(&currency.as_str()) {
            return Err(ConfigError(format!(
                "payments.currency {currency:?} has three decimals, which top-ups do not support"
            )));
        }
        let digits = currency_digits(&currency);
        let decimal = |key: &str, value: &DecimalValue| {
            value.to_decimal().map_err(|e| {
                ConfigError(format!("payments.{key} must be a non-negative amount: {e}"))
            })
        };
        let minor = |key: &str, value: &DecimalValue| -> Result<i64, ConfigError> {
            decimal(key, value)?
                .in_units_of(digits)
                .filter(|m| *m > 0)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "payments.{key} must be a positive amount of {currency} with at most \
                         {digits} decimals"
                    ))
                })
        };
        let usd_per_unit = decimal("usd_per_unit", &self.usd_per_unit)?;
        if usd_per_unit.is_zero() {
            return Err(ConfigError("payments.usd_per_unit must not be 0".into()));
        }
        let min_amount = minor("min_amount", &self.min_amount)?;
        let max_amount = minor("max_amount", &self.max_amount)?;
        if min_amount > max_amount {
            return Err(ConfigError(
                "payments.min_amount must not be above payments.max_amount".into(),
            ));
        }
        // Stripe's own ceiling for one payment is 99,999,999 minor units.
        if max_amount > 99_999_999 {
            return Err(ConfigError(
                "payments.max_amount must be below 999,999.99 (Stripe's limit for one payment)"
                    .into(),
            ));
        }
        let mut presets = Vec::new();
        for value in &self.preset_amounts {
            let preset = minor("preset_amounts", value)?;
            if !(min_amount..=max_amount).contains(&preset) {
                return Err(ConfigError(
                    "payments.preset_amounts must lie between min_amount and max_amount".into(),
                ));
            }
            presets.push(preset);
        }
        let mut bonus = Vec::new();
        for tier in &self.bonus {
            let percent = decimal("bonus.percent", &tier.percent)?;
            if Decimal::from_units(100, 0).is_some_and(|hundred| percent.greater_than(&hundred)) {
                return Err(ConfigError(
                    "payments.bonus.percent must be at most 100".into(),
                ));
            }
            bonus.push((minor("bonus.from", &tier.from)?, percent));
        }
        bonus.sort_by_key(|(from, _)| *from);
        Ok(Terms {
            currency,
            digits,
            usd_per_unit,
            min_amount,
            max_amount,
            presets,
            bonus,
        })
    }

    /// Checks the whole section at load.
    pub fn validate(
        &self,
        check_env: &dyn Fn(&str, &str) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        self.terms()?;
        if let Some(url) = &self.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError(
                    "payments.public_url must start with http:// or https://".into(),
                ));
            }
        }
        if let Some(stripe) = &self.stripe {
            if stripe.secret_key.trim().is_empty() {
                return Err(ConfigError(
                    "payments.stripe.secret_key must not be empty".into(),
                ));
            }
            check_env("payments.stripe.secret_key", &stripe.secret_key)?;
            // An empty secret (an unset variable substituted as "") would
            // let anyone sign a webhook: refused, as is an empty key.
            let empty = |value: &str| super::resolve_secret(value).trim().is_empty();
            if empty(&stripe.secret_key) {
                return Err(ConfigError(
                    "payments.stripe.secret_key resolves to an empty value".into(),
                ));
            }
            if stripe.webhook_secrets.is_empty() {
                return Err(ConfigError(
                    "payments.stripe.webhook_secrets needs the webhook endpoint's signing secret"
                        .into(),
                ));
            }
            for secret in &stripe.webhook_secrets {
                check_env("payments.stripe.webhook_secrets", secret)?;
                if empty(secret) {
                    return Err(ConfigError(
                        "payments.stripe.webhook_secrets: a secret resolves to an empty value"
                            .into(),
                    ));
                }
            }
            if !(1..=365).contains(&stripe.invoice_days_until_due) {
                return Err(ConfigError(
                    "payments.stripe.invoice_days_until_due must be between 1 and 365".into(),
                ));
            }
        }
        Ok(())
    }
}
