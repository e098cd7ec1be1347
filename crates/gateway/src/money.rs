//! Exact money arithmetic: decimals parsed from text, costs in integer nano-USD.
//!
//! No floating point touches a balance. Prices and multipliers are decimals
//! (`mantissa / 10^scale`); a request's cost is computed as one exact rational
//! and rounded up once, to the nano-USD.

use std::fmt;

use protocol::TokenUsage;

/// 1 USD in the internal unit.
pub const NANO_PER_USD: i128 = 1_000_000_000;

/// An exact, non-negative decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// Most fractional digits a decimal may have.
const MAX_SCALE: u32 = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a non-negative decimal number with at most 12 fractional digits")]
pub struct DecimalError(pub String);

impl Decimal {
    pub const ONE: Decimal = Decimal {
        mantissa: 1,
        scale: 0,
    };
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let err = || DecimalError(text.to_string());
        let t = text.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty())
            || !digits_ok(int)
            || !digits_ok(frac)
            || frac.len() > MAX_SCALE as usize
            || int.len() > 18
        {
            return Err(err());
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa * 10 + i128::from(b - b'0');
        }
        Ok(Decimal {
            mantissa,
            scale: frac.len() as u32,
        })
    }

    /// From a TOML/JSON float: its shortest round-trip text is what the
    /// operator typed, so `0.15` becomes exactly 15/100.
    pub fn from_f64(value: f64) -> Result<Decimal, DecimalError> {
        if !value.is_finite() || value < 0.0 {
            return Err(DecimalError(value.to_string()));
        }
        Decimal::parse(&format!("{value}"))
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    fn denominator(&self) -> i128 {
        10i128.pow(self.scale)
    }

    /// The product of two decimals, exact.
    pub fn times(&self, other: &Decimal) -> Decimal {
        let mut product = Decimal {
            mantissa: self.mantissa * other.mantissa,
            scale: self.scale + other.scale,
        };
        // Keep the scale small so later products cannot overflow.
        while product.scale > 0 && product.mantissa % 10 == 0 {
            product.mantissa /= 10;
            product.scale -= 1;
        }
        product
    }

    /// `self` USD in nano-USD, rounded to the nearest.
    pub fn usd_to_nano(&self) -> i64 {
        round_div(self.mantissa * NANO_PER_USD, self.denominator()) as i64
    }

    /// `self` credits in nano-USD, rounded to the nearest.
    pub fn credits_to_nano(&self, credits_per_usd: u64) -> i64 {
        round_div(
            self.mantissa * NANO_PER_USD,
            self.denominator() * i128::from(credits_per_usd),
        ) as i64
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let den = self.denominator();
        let int = self.mantissa / den;
        let frac = self.mantissa % den;
        if self.scale == 0 || frac == 0 {
            return write!(f, "{int}");
        }
        let frac = format!("{:0width$}", frac, width = self.scale as usize);
        write!(f, "{int}.{}", frac.trim_end_matches('0'))
    }
}

fn round_div(num: i128, den: i128) -> i128 {
    (num + den / 2) / den
}

/// Prices of one model, USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    pub input: Decimal,
    pub output: Decimal,
    pub cached_input: Decimal,
    /// Anthropic's cache creation (writing a prompt prefix to the cache).
    pub cache_write: Decimal,
}

impl Prices {
    /// Whether writing to the prompt cache costs more than plain input (it
    /// does at Anthropic: 1.25×), so that a worst case prices input at it.
    pub fn cache_write_dearer(&self) -> bool {
        let (w, i) = (&self.cache_write, &self.input);
        let scale = w.scale.max(i.scale);
        w.mantissa * 10i128.pow(scale - w.scale) > i.mantissa * 10i128.pow(scale - i.scale)
    }
}

/// The exact cost in nano-USD of `usage` at `prices` times `multiplier`,
/// rounded up to the next nano-USD (a request never costs less than its
/// tokens are worth).
pub fn cost_nano(usage: &TokenUsage, prices: &Prices, multiplier: &Decimal) -> i64 {
    // Bring the three prices to one scale so their weighted sum is exact.
    let scale = prices
        .input
        .scale
        .max(prices.output.scale)
        .max(prices.cached_input.scale)
        .max(prices.cache_write.scale);
    let at_scale = |d: &Decimal| d.mantissa * 10i128.pow(scale - d.scale);
    let weighted = i128::from(usage.uncached_input()) * at_scale(&prices.input)
        + i128::from(usage.cached_input) * at_scale(&prices.cached_input)
        + i128::from(usage.cache_write) * at_scale(&prices.cache_write)
        + i128::from(usage.output) * at_scale(&prices.output);
    // USD per 1M tokens → nano-USD per token is ×1e9 / 1e6 = ×1000.
    let numerator = weighted * 1000 * multiplier.mantissa;
    let denominator = 10i128.pow(scale) * multiplier.denominator();
    let cost = (numerator + denominator - 1) / denominator;
    i64::try_from(cost).unwrap_or(i64::MAX)
}

/// Formats nano-USD as credits (`credits_per_usd` credits = 1 USD), exact to
/// the digits it shows: at most 9 fractional digits, trailing zeros trimmed.
pub fn format_credits(nano: i64, credits_per_usd: u64) -> String {
    // credits = nano × cpu / 1e9: show it with 9 decimals, rounded to the nearest.
    let scaled = round_div(i128::from(nano) * i128::from(credits_per_usd), 1);
    format_fixed(scaled, 9)
}

/// Formats nano-USD as USD with up to 9 fractional digits.
pub fn format_usd(nano: i64) -> String {
    format_fixed(i128::from(nano), 9)
}

fn format_fixed(value: i128, digits: u32) -> String {
    let den = 10i128.pow(digits);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.abs();
    let int = abs / den;
    let frac = abs % den;
    if frac == 0 {
        return format!("{sign}{int}");
    }
    let frac = format!("{:0width$}", frac, width = digits as usize);
    format!("{sign}{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn parses_and_displays_decimals() {
        assert_eq!(d("0.15").to_string(), "0.15");
        assert_eq!(d("2").to_string(), "2");
        assert_eq!(d("1.500").to_string(), "1.5");
        assert_eq!(Decimal::from_f64(0.075).unwrap(), d("0.075"));
        for bad in ["", ".", "-1", "1e3", "abc", "1.0000000000001"] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usd_and_credit_conversion() {
        assert_eq!(d("1").usd_to_nano(), 1_000_000_000);
        assert_eq!(d("0.000000001").usd_to_nano(), 1);
        assert_eq!(d("34000").credits_to_nano(34_000), 1_000_000_000);
        assert_eq!(format_credits(1_000_000_000, 34_000), "34000");
        assert_eq!(format_credits(1, 34_000), "0.000034");
        assert_eq!(format_usd(-1_500_000_000), "-1.5");
    }

    #[test]
    fn cost_is_exact_and_rounds_up_once() {
        let prices = Prices {
            input: d("2.5"),
            output: d("10"),
            cached_input: d("1.25"),
            cache_write: d("3.125"),
        };
        let usage = TokenUsage {
            input: 1000,
            output: 500,
            cached_input: 200,
            cache_write: 0,
        };
        // 800 × 2.5 + 200 × 1.25 + 500 × 10 = 7250 USD per 1M → 7250 × 1000 nano.
        assert_eq!(cost_nano(&usage, &prices, &Decimal::ONE), 7_250_000);
        assert_eq!(cost_nano(&usage, &prices, &d("1.5")), 10_875_000);
        // 1 token at 0.0375 USD/1M = 37.5 nano → 38.
        let cheap = Prices {
            input: d("0.0375"),
            output: d("0"),
            cached_input: d("0"),
            cache_write: d("0"),
        };
        let one = TokenUsage {
            input: 1,
            ..Default::default()
        };
        assert_eq!(cost_nano(&one, &cheap, &Decimal::ONE), 38);
        assert_eq!(cost_nano(&TokenUsage::default(), &cheap, &d("3")), 0);
        // Cache writes at their own price: 600 × 2.5 + 200 × 1.25 + 200 × 3.125 + 500 × 10.
        let with_writes = TokenUsage {
            cache_write: 200,
            ..usage
        };
        assert_eq!(cost_nano(&with_writes, &prices, &Decimal::ONE), 7_375_000);
    }

    #[test]
    fn multipliers_compose_exactly() {
        assert_eq!(d("1.5").times(&d("0.8")), d("1.2"));
        assert_eq!(d("0.1").times(&d("0.1")).to_string(), "0.01");
    }
}
