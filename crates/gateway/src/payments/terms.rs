//! What an order costs and credits: pure arithmetic on the configured terms.

use crate::config::{currency_digits, Terms};
use crate::money::{Decimal, MAX_AMOUNT_NANO};

/// An order's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// What the user pays, in the currency's minor units.
    pub amount: i64,
    /// What is credited, nano-USD, bonus included.
    pub credit: i64,
    /// The bonus part of `credit`.
    pub bonus: i64,
}

/// Why an amount cannot be ordered (the message is the client's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuoteError(pub String);

/// `units` minor units of the terms' currency, written as the user writes
/// it (`12.5`, `1000` for yen).
pub fn format_amount(terms: &Terms, units: i64) -> String {
    format_minor(&terms.currency, units)
}

/// `units` minor units of `currency` (an order's own, whatever the terms
/// say now).
pub fn format_minor(currency: &str, units: i64) -> String {
    Decimal::from_units(units, currency_digits(currency))
        .map(|d| d.to_string())
        .unwrap_or_else(|| units.to_string())
}

/// The quote for `amount_text` units of the terms' currency (`"25"`,
/// `"12.50"`): refused when it is not an exact amount of the currency, or
/// outside the order limits.
pub fn quote(terms: &Terms, amount_text: &str) -> Result<Quote, QuoteError> {
    let currency = terms.currency.to_uppercase();
    let limits = || {
        format!(
            "between {} and {} {currency}",
            format_amount(terms, terms.min_amount),
            format_amount(terms, terms.max_amount)
        )
    };
    let amount = Decimal::parse(amount_text)
        .ok()
        .and_then(|d| d.in_units_of(terms.digits))
        .ok_or_else(|| {
            QuoteError(format!(
                "`amount` must be an amount of {currency} with at most {} decimals, {}.",
                terms.digits,
                limits()
            ))
        })?;
    if !(terms.min_amount..=terms.max_amount).contains(&amount) {
        return Err(QuoteError(format!("`amount` must be {}.", limits())));
    }
    quote_units(terms, amount)
}

/// The quote for `amount` minor units (within the limits).
pub fn quote_units(terms: &Terms, amount: i64) -> Result<Quote, QuoteError> {
    let too_large = || QuoteError("This amount is too large to credit.".into());
    let major = Decimal::from_units(amount, terms.digits).ok_or_else(too_large)?;
    let usd = major
        .checked_times(&terms.usd_per_unit)
        .ok_or_else(too_large)?;
    let base = usd.usd_to_nano().ok_or_else(too_large)?;
    let percent = terms
        .bonus
        .iter()
        .rev()
        .find(|(from, _)| amount >= *from)
        .map(|(_, percent)| *percent);
    let bonus = match percent {
        None => 0,
        Some(percent) => usd
            .checked_times(&percent)
            .and_then(|d| d.checked_times(&Decimal::parse("0.01").ok()?))
            .and_then(|d| d.usd_to_nano())
            .ok_or_else(too_large)?,
    };
    let credit = base.checked_add(bonus).ok_or_else(too_large)?;
    if credit > MAX_AMOUNT_NANO {
        return Err(too_large());
    }
    Ok(Quote {
        amount,
        credit,
        bonus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BonusTier, DecimalValue, PaymentsConfig};

    fn terms(currency: &str, usd_per_unit: &str) -> Terms {
        PaymentsConfig {
            currency: currency.into(),
            usd_per_unit: DecimalValue::Text(usd_per_unit.into()),
            min_amount: DecimalValue::Int(5),
            max_amount: DecimalValue::Int(10_000),
            preset_amounts: vec![],
            bonus: vec![
                BonusTier {
                    from: DecimalValue::Int(500),
                    percent: DecimalValue::Int(10),
                },
                BonusTier {
                    from: DecimalValue::Int(100),
                    percent: DecimalValue::Text("5".into()),
                },
            ],
            ..Default::default()
        }
        .terms()
        .unwrap()
    }

    #[test]
    fn an_amount_credits_its_usd_and_the_highest_bonus_reached() {
        let usd = terms("usd", "1");
        assert_eq!(
            quote(&usd, "25.50").unwrap(),
            Quote {
                amount: 2550,
                credit: 25_500_000_000,
                bonus: 0
            }
        );
        assert_eq!(quote(&usd, "100").unwrap().bonus, 5_000_000_000);
        assert_eq!(quote(&usd, "100").unwrap().credit, 105_000_000_000);
        assert_eq!(quote(&usd, "600").unwrap().bonus, 60_000_000_000);
    }

    #[test]
    fn other_currencies_convert_exactly() {
        let eur = terms("EUR", "1.08");
        assert_eq!(quote(&eur, "10").unwrap().credit, 10_800_000_000);
        let yen = terms("jpy", "0.0067");
        let q = quote(&yen, "1500").unwrap();
        // 10.05 USD, and the 10 % tier (from 500 yen) reached.
        assert_eq!(
            (q.amount, q.credit, q.bonus),
            (1500, 11_055_000_000, 1_005_000_000)
        );
        assert!(quote(&yen, "1500.5").is_err());
    }

    #[test]
    fn amounts_outside_the_limits_or_not_exact_are_refused() {
        let usd = terms("usd", "1");
        for bad in ["4.99", "10000.01", "abc", "-5", "5.001", "", "1e3"] {
            let err = quote(&usd, bad).unwrap_err();
            assert!(err.0.contains("between 5 and 10000 USD"), "{bad}: {err}");
        }
        assert!(quote(&usd, "5").is_ok());
        assert!(quote(&usd, "10000").is_ok());
    }

    #[test]
    fn an_empty_webhook_secret_or_key_is_refused_at_load() {
        let with = |key: &str, secrets: &[&str]| PaymentsConfig {
            stripe: Some(crate::config::StripeConfig {
                secret_key: key.into(),
                webhook_secrets: secrets.iter().map(|s| s.to_string()).collect(),
                api_base: "http://127.0.0.1:1".into(),
                invoice_days_until_due: 30,
            }),
            ..Default::default()
        };
        let no_env = |_: &str, _: &str| Ok(());
        assert!(with("sk_test_x", &["whsec_x"]).validate(&no_env).is_ok());
        for (key, secrets) in [
            ("sk_test_x", vec![""]),
            ("sk_test_x", vec!["whsec_x", "  "]),
            ("sk_test_x", vec![]),
            ("", vec!["whsec_x"]),
        ] {
            assert!(
                with(key, &secrets).validate(&no_env).is_err(),
                "{key:?} {secrets:?}"
            );
        }
    }

    #[test]
    fn bad_terms_are_refused_at_load() {
        for (currency, min, max) in [("usdx", 5, 10), ("kwd", 5, 10), ("usd", 10, 5)] {
            let config = PaymentsConfig {
                currency: currency.into(),
                min_amount: DecimalValue::Int(min),
                max_amount: DecimalValue::Int(max),
                preset_amounts: vec![],
                ..Default::default()
            };
            assert!(config.terms().is_err(), "{currency} {min} {max}");
        }
        let preset_outside = PaymentsConfig {
            preset_amounts: vec![DecimalValue::Int(1)],
            ..Default::default()
        };
        assert!(preset_outside.terms().is_err());
    }
}
