//! OAuth apps (`[oauth]`): the platform's fee on what apps charge, and the
//! spending limits an app gets when it asks for none.

use serde::Deserialize;

use super::models::DecimalValue;
use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Percent of every fee an app charges that the platform keeps (the
    /// app's owner is credited the rest), 0–100 with up to 2 decimals.
    pub platform_fee_percent: DecimalValue,
    /// Limits an app gets unless it asks for others (USD; the user sees
    /// and may lower them): most per charge, most charged per day, most
    /// spent on API calls with its token.
    pub default_charge_limit_usd: DecimalValue,
    pub default_daily_limit_usd: DecimalValue,
    pub default_spend_limit_usd: DecimalValue,
    /// Most apps one user may register.
    pub max_apps_per_user: i64,
    /// How long an authorization code lives (10 minutes; tests shorten it).
    pub code_ttl_secs: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            platform_fee_percent: DecimalValue::Int(0),
            default_charge_limit_usd: DecimalValue::Int(5),
            default_daily_limit_usd: DecimalValue::Int(20),
            default_spend_limit_usd: DecimalValue::Int(20),
            max_apps_per_user: 20,
            code_ttl_secs: 600,
        }
    }
}

/// The limits of a grant, nano-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantLimits {
    pub per_charge: i64,
    pub per_day: i64,
    pub api_spend: i64,
}

impl OAuthConfig {
    /// The platform's fee in basis points (hundredths of a percent).
    pub fn fee_bps(&self) -> i64 {
        self.platform_fee_percent
            .to_decimal()
            .ok()
            .and_then(|d| d.in_units_of(2))
            .unwrap_or(0)
    }

    /// The platform's part of a charge of `amount` nano-USD (rounded down).
    pub fn fee_of(&self, amount: i64) -> i64 {
        (i128::from(amount) * i128::from(self.fee_bps()) / 10_000) as i64
    }

    pub fn default_limits(&self) -> GrantLimits {
        let usd = |v: &DecimalValue| {
            v.to_decimal()
                .ok()
                .and_then(|d| d.usd_to_nano())
                .unwrap_or(0)
        };
        GrantLimits {
            per_charge: usd(&self.default_charge_limit_usd),
            per_day: usd(&self.default_daily_limit_usd),
            api_spend: usd(&self.default_spend_limit_usd),
        }
    }

    pub(super) fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let bps = self
            .platform_fee_percent
            .to_decimal()
            .ok()
            .and_then(|d| d.in_units_of(2));
        if !bps.is_some_and(|b| (0..=10_000).contains(&b)) {
            return Err(ConfigError(format!(
                "oauth.platform_fee_percent must be a percentage from 0 to 100 with at most 2 decimals ({})",
                at("platform_fee_percent")
            )));
        }
        for (name, value) in [
            ("default_charge_limit_usd", &self.default_charge_limit_usd),
            ("default_daily_limit_usd", &self.default_daily_limit_usd),
            ("default_spend_limit_usd", &self.default_spend_limit_usd),
        ] {
            if value
                .to_decimal()
                .ok()
                .and_then(|d| d.usd_to_nano())
                .is_none()
            {
                return Err(ConfigError(format!(
                    "oauth.{name} must be a non-negative amount of USD ({})",
                    at(name)
                )));
            }
        }
        if self.max_apps_per_user < 1 || self.code_ttl_secs == 0 {
            return Err(ConfigError(format!(
                "oauth.max_apps_per_user and oauth.code_ttl_secs must be positive ({})",
                at("[oauth]")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_a_percentage_rounded_down() {
        let config = OAuthConfig {
            platform_fee_percent: DecimalValue::Text("12.5".into()),
            ..OAuthConfig::default()
        };
        assert_eq!(config.fee_bps(), 1_250);
        assert_eq!(config.fee_of(1_000_000_000), 125_000_000);
        assert_eq!(config.fee_of(7), 0);
        assert_eq!(config.fee_of(i64::MAX), (i128::from(i64::MAX) / 8) as i64);
        assert_eq!(OAuthConfig::default().fee_of(1_000), 0);
    }

    #[test]
    fn fees_outside_0_to_100_percent_are_refused() {
        for bad in ["100.01", "-1", "0.001", "x"] {
            let config = OAuthConfig {
                platform_fee_percent: DecimalValue::Text(bad.into()),
                ..OAuthConfig::default()
            };
            assert!(config.validate(&|k| k.to_string()).is_err(), "{bad}");
        }
        assert!(OAuthConfig::default().validate(&|k| k.to_string()).is_ok());
        assert_eq!(
            OAuthConfig::default().default_limits().per_charge,
            5_000_000_000
        );
    }
}
