//! Exact money arithmetic: decimals parsed from text, costs in integer nano-USD.
//!
//! No floating point touches a balance. Prices and multipliers are decimals
//! (`mantissa / 10^scale`); a request's cost is computed as one exact rational
//! and rounded up once, to the nano-USD. Every step is overflow-checked: an
//! amount a person types either converts exactly or is refused, and a cost
//! too large for an `i64` saturates (the request is then refused for want of
//! balance) — it never wraps.

use std::fmt;

use protocol::TokenUsage;

/// 1 USD in the internal unit.
pub const NANO_PER_USD: i128 = 1_000_000_000;

/// The largest amount Tollgate keeps in a balance or a key's spending
/// limit, and the largest single balance change: 1 billion USD. Balances
/// stay far below `i64::MAX` (about 9.2 billion USD), so adding a change to
/// a balance cannot overflow, in Rust or in SQL.
pub const MAX_AMOUNT_NANO: i64 = 1_000_000_000 * NANO_PER_USD as i64;

/// An exact, non-negative decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// Most fractional digits a decimal may have as written.
const MAX_SCALE: u32 = 12;
/// Most integer digits a decimal may have as written.
const MAX_INT_DIGITS: usize = 18;
/// Most fractional digits of a product of decimals. Two written decimals
/// multiply to at most 24; with this bound a cost's denominator stays below
/// 10^57, which [`cost_nano`] relies on to saturate correctly.
const MAX_PRODUCT_SCALE: u32 = 28;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a non-negative decimal number with at most 18 integer and 12 fractional digits"
)]
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
    /// What [`Decimal::times`] gives when a product does not fit: larger
    /// than any cost can be, so a price or multiplier that overflowed makes
    /// requests unaffordable rather than free.
    pub const SATURATED: Decimal = Decimal {
        mantissa: i128::MAX,
        scale: 0,
    };

    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let err = || DecimalError(text.chars().take(64).collect());
        let t = text.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty())
            || !digits_ok(int)
            || !digits_ok(frac)
            || frac.len() > MAX_SCALE as usize
            || int.len() > MAX_INT_DIGITS
        {
            return Err(err());
        }
        // At most 30 digits: below 10^30, far inside an i128.
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
        // scale ≤ MAX_PRODUCT_SCALE, so 10^scale fits.
        10i128.pow(self.scale)
    }

    /// The product of two decimals, exact; `None` when it does not fit (its
    /// mantissa beyond an i128, or more than 28 fractional digits).
    /// Whether `self` is greater than `other` (exactly).
    pub fn greater_than(&self, other: &Decimal) -> bool {
        let scale = self.scale.max(other.scale);
        let at = |d: &Decimal| {
            d.mantissa
                .checked_mul(10i128.pow(scale - d.scale))
                .unwrap_or(i128::MAX)
        };
        at(self) > at(other)
    }

    pub fn checked_times(&self, other: &Decimal) -> Option<Decimal> {
        let mut product = Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale: self.scale + other.scale,
        };
        // Keep the scale small so later products are less likely to overflow.
        while product.scale > 0 && product.mantissa % 10 == 0 {
            product.mantissa /= 10;
            product.scale -= 1;
        }
        (product.scale <= MAX_PRODUCT_SCALE).then_some(product)
    }

    /// The product of two decimals, exact, or [`Decimal::SATURATED`] when it
    /// does not fit. The configuration is checked at load time so that the
    /// products the gateway forms (a model's multiplier × a group's, a price
    /// × credits per USD × multipliers) all fit.
    pub fn times(&self, other: &Decimal) -> Decimal {
        self.checked_times(other).unwrap_or(Decimal::SATURATED)
    }

    /// `self` in units of 10^-`digits` (cents for 2), when that is exact
    /// and fits an `i64`: `12.5` is 1250 cents, `0.001` no whole cents.
    pub fn in_units_of(&self, digits: u32) -> Option<i64> {
        let exact = if self.scale > digits {
            let dropped = 10i128.checked_pow(self.scale - digits)?;
            (self.mantissa % dropped == 0).then_some(self.mantissa / dropped)?
        } else {
            self.mantissa
                .checked_mul(10i128.checked_pow(digits - self.scale)?)?
        };
        i64::try_from(exact).ok()
    }

    /// `units` of 10^-`digits` as a decimal (1250 cents is `12.5`).
    pub fn from_units(units: i64, digits: u32) -> Option<Decimal> {
        (units >= 0 && digits <= MAX_SCALE).then_some(Decimal {
            mantissa: i128::from(units),
            scale: digits,
        })
    }

    /// `self` USD in nano-USD, rounded to the nearest; `None` when that is
    /// beyond an `i64`.
    pub fn usd_to_nano(&self) -> Option<i64> {
        let nano = round_div(self.mantissa.checked_mul(NANO_PER_USD)?, self.denominator())?;
        i64::try_from(nano).ok()
    }

    /// `self` credits in nano-USD, rounded to the nearest; `None` when that
    /// is beyond an `i64` (or `credits_per_usd` is 0).
    pub fn credits_to_nano(&self, credits_per_usd: u64) -> Option<i64> {
        let nano = round_div(
            self.mantissa.checked_mul(NANO_PER_USD)?,
            self.denominator()
                .checked_mul(i128::from(credits_per_usd))
                .filter(|d| *d > 0)?,
        )?;
        i64::try_from(nano).ok()
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

/// `num / den` rounded to the nearest (halves up), for `num ≥ 0`, `den > 0`.
fn round_div(num: i128, den: i128) -> Option<i128> {
    Some(num.checked_add(den / 2)? / den)
}

/// The unit an amount is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Usd,
    /// Credits, so many of which make one USD.
    Credits(u64),
}

/// An amount a person typed that cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("`{field}` must be a {sign}decimal number with at most 18 integer and 12 fractional digits, e.g. \"10\" or \"0.25\" (got {text:?}).")]
    Invalid {
        field: String,
        sign: &'static str,
        text: String,
    },
    #[error("`{field}` is too large: at most {max}.")]
    TooLarge { field: String, max: String },
}

/// Parses an amount a person typed — a balance change, a key's spending
/// limit — in `unit` into nano-USD: exact to the nano-USD (rounded to the
/// nearest below that), negative only when `signed` allows a leading `-`, and
/// at most [`MAX_AMOUNT_NANO`] in size. `field` names it in errors.
pub fn parse_amount(field: &str, text: &str, unit: Unit, signed: bool) -> Result<i64, AmountError> {
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) if signed => (true, rest),
        _ => (false, trimmed),
    };
    let decimal = Decimal::parse(digits).map_err(|_| AmountError::Invalid {
        field: field.to_string(),
        sign: if signed { "" } else { "non-negative " },
        text: text.chars().take(64).collect(),
    })?;
    let nano = match unit {
        Unit::Usd => decimal.usd_to_nano(),
        Unit::Credits(per_usd) => decimal.credits_to_nano(per_usd),
    }
    .filter(|n| *n <= MAX_AMOUNT_NANO)
    .ok_or_else(|| AmountError::TooLarge {
        field: field.to_string(),
        max: describe_max(unit),
    })?;
    Ok(if negative { -nano } else { nano })
}

/// [`MAX_AMOUNT_NANO`] in `unit`, for messages.
pub fn describe_max(unit: Unit) -> String {
    let usd = format_usd(MAX_AMOUNT_NANO);
    match unit {
        Unit::Usd => format!("{usd} USD"),
        Unit::Credits(per_usd) => {
            format!(
                "{} credits ({usd} USD)",
                format_credits(MAX_AMOUNT_NANO, per_usd)
            )
        }
    }
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
/// tokens are worth). A cost beyond `i64::MAX` — absurd token counts or
/// prices — is `i64::MAX`: never wrapped, never negative.
pub fn cost_nano(usage: &TokenUsage, prices: &Prices, multiplier: &Decimal) -> i64 {
    // Bring the prices to one scale so their weighted sum is exact.
    let scale = prices
        .input
        .scale
        .max(prices.output.scale)
        .max(prices.cached_input.scale)
        .max(prices.cache_write.scale);
    let terms = [
        (usage.uncached_input(), &prices.input),
        (usage.cached_input, &prices.cached_input),
        (usage.cache_write, &prices.cache_write),
        (usage.output, &prices.output),
    ];
    // USD per 1M tokens → nano-USD per token is ×1e9 / 1e6 = ×1000.
    let numerator = || -> Option<Wide> {
        let mut weighted = Wide::ZERO;
        for (tokens, price) in terms {
            let price_at_scale =
                Wide::product(price.mantissa.unsigned_abs(), pow10(scale - price.scale)?);
            weighted = weighted.checked_add(price_at_scale.checked_mul(u128::from(tokens))?)?;
        }
        weighted
            .checked_mul(1000)?
            .checked_mul(multiplier.mantissa.unsigned_abs())
    };
    let denominator = pow10(scale).and_then(|a| Some(Wide::product(a, pow10(multiplier.scale)?)));
    match (numerator(), denominator) {
        (Some(num), Some(den)) => num.div_ceil(den).saturating_i64(),
        // A numerator beyond 2^256 over a denominator below 10^57 (see
        // MAX_PRODUCT_SCALE) is far beyond i64::MAX.
        _ => i64::MAX,
    }
}

/// What a model is metered in. Tokens are priced per 1M (input, output,
/// cached…, see [`Prices`]); every other unit has one price, per
/// [`MeterUnit::per`] units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterUnit {
    #[default]
    Tokens,
    /// Text-to-speech input, priced per 1M characters.
    Characters,
    /// Audio duration, priced per second …
    Seconds,
    /// … or per minute, charged by the second.
    Minutes,
    /// Images generated, priced per image (by size and quality).
    Images,
    /// Calls (search, moderation), priced per call.
    Calls,
}

impl MeterUnit {
    /// The name clients see (`/v1/models`, model rates, usage records).
    pub fn name(self) -> &'static str {
        match self {
            MeterUnit::Tokens => "tokens",
            MeterUnit::Characters => "characters",
            MeterUnit::Seconds => "seconds",
            MeterUnit::Minutes => "minutes",
            MeterUnit::Images => "images",
            MeterUnit::Calls => "calls",
        }
    }

    /// How many of what is counted its price is for: characters are
    /// priced per 1M, minutes per 60 counted seconds, the rest each.
    pub fn per(self) -> u64 {
        match self {
            MeterUnit::Tokens | MeterUnit::Characters => 1_000_000,
            MeterUnit::Minutes => 60,
            MeterUnit::Seconds | MeterUnit::Images | MeterUnit::Calls => 1,
        }
    }

    /// What is counted: tokens, characters, seconds (minutes too), images,
    /// calls.
    pub fn counted(self) -> &'static str {
        match self {
            MeterUnit::Minutes => "seconds",
            other => other.name(),
        }
    }
}

/// The exact cost in nano-USD of `quantity` counted units (see
/// [`MeterUnit::counted`]) at `price` USD per `unit.per()` of them, times
/// `multiplier`, rounded up to the next nano-USD; saturates at `i64::MAX`.
pub fn unit_cost_nano(
    quantity: u64,
    price: &Decimal,
    unit: MeterUnit,
    multiplier: &Decimal,
) -> i64 {
    let numerator = || -> Option<Wide> {
        Wide::product(price.mantissa.unsigned_abs(), u128::from(quantity))
            .checked_mul(NANO_PER_USD.unsigned_abs())?
            .checked_mul(multiplier.mantissa.unsigned_abs())
    };
    let denominator = || -> Option<Wide> {
        Wide::product(pow10(price.scale)?, pow10(multiplier.scale)?)
            .checked_mul(u128::from(unit.per()))
    };
    match (numerator(), denominator()) {
        (Some(num), Some(den)) if den != Wide::ZERO => num.div_ceil(den).saturating_i64(),
        _ => i64::MAX,
    }
}

fn pow10(exp: u32) -> Option<u128> {
    10u128.checked_pow(exp)
}

/// An unsigned 256-bit integer: just wide enough for a cost's exact
/// numerator (token counts up to 2^64 × prices × multipliers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Wide {
    // Field order matters: the derived ordering compares `hi` first.
    hi: u128,
    lo: u128,
}

impl Wide {
    const ZERO: Wide = Wide { hi: 0, lo: 0 };

    /// The full product of two u128.
    fn product(a: u128, b: u128) -> Wide {
        const MASK: u128 = u64::MAX as u128;
        let (a1, a0) = (a >> 64, a & MASK);
        let (b1, b0) = (b >> 64, b & MASK);
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        // Below 3 × 2^64: no overflow.
        let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
        Wide {
            hi: p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64),
            lo: (p00 & MASK) | (mid << 64),
        }
    }

    fn checked_mul(self, b: u128) -> Option<Wide> {
        let low = Wide::product(self.lo, b);
        let high = Wide::product(self.hi, b);
        if high.hi != 0 {
            return None;
        }
        Some(Wide {
            hi: low.hi.checked_add(high.lo)?,
            lo: low.lo,
        })
    }

    fn checked_add(self, other: Wide) -> Option<Wide> {
        let (lo, carry) = self.lo.overflowing_add(other.lo);
        Some(Wide {
            hi: self
                .hi
                .checked_add(other.hi)?
                .checked_add(u128::from(carry))?,
            lo,
        })
    }

    fn wrapping_sub(self, other: Wide) -> Wide {
        let (lo, borrow) = self.lo.overflowing_sub(other.lo);
        Wide {
            hi: self
                .hi
                .wrapping_sub(other.hi)
                .wrapping_sub(u128::from(borrow)),
            lo,
        }
    }

    fn bit(self, i: u32) -> bool {
        if i >= 128 {
            self.hi >> (i - 128) & 1 == 1
        } else {
            self.lo >> i & 1 == 1
        }
    }

    /// `self / den` rounded up; `den` must be non-zero and below 2^255.
    fn div_ceil(self, den: Wide) -> Wide {
        if self.hi == 0 && den.hi == 0 {
            return Wide {
                hi: 0,
                lo: self.lo.div_ceil(den.lo),
            };
        }
        // Schoolbook binary long division.
        let mut quotient = Wide::ZERO;
        let mut rest = Wide::ZERO;
        for i in (0..256).rev() {
            rest = Wide {
                hi: rest.hi << 1 | rest.lo >> 127,
                lo: rest.lo << 1 | u128::from(self.bit(i)),
            };
            if rest >= den {
                rest = rest.wrapping_sub(den);
                if i >= 128 {
                    quotient.hi |= 1 << (i - 128);
                } else {
                    quotient.lo |= 1 << i;
                }
            }
        }
        if rest != Wide::ZERO {
            quotient = quotient
                .checked_add(Wide { hi: 0, lo: 1 })
                .unwrap_or(quotient);
        }
        quotient
    }

    fn saturating_i64(self) -> i64 {
        if self.hi != 0 {
            return i64::MAX;
        }
        i64::try_from(self.lo).unwrap_or(i64::MAX)
    }
}

/// Formats nano-USD as credits (`credits_per_usd` credits = 1 USD), exact to
/// the digits it shows: at most 9 fractional digits, trailing zeros trimmed.
pub fn format_credits(nano: i64, credits_per_usd: u64) -> String {
    // credits = nano × cpu / 1e9: show it with 9 decimals. |nano × cpu| <
    // 2^63 × 2^64 fits an i128.
    format_fixed(i128::from(nano) * i128::from(credits_per_usd), 9)
}

/// Formats nano-USD as USD with up to 9 fractional digits.
pub fn format_usd(nano: i64) -> String {
    format_fixed(i128::from(nano), 9)
}

fn format_fixed(value: i128, digits: u32) -> String {
    let den = 10u128.pow(digits);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
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

    #[test]
    fn units_cost_exactly_rounded_up() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        let one = Decimal::ONE;
        // TTS at 15 USD per 1M characters: 1,000 characters = 0.015 USD.
        assert_eq!(
            unit_cost_nano(1000, &d("15"), MeterUnit::Characters, &one),
            15_000_000
        );
        // 0.006 USD a minute, 61 seconds: 0.0061 USD.
        assert_eq!(
            unit_cost_nano(61, &d("0.006"), MeterUnit::Minutes, &one),
            6_100_000
        );
        // One second at 0.006 a minute: 100,000 nano-USD exactly; 7 s at a
        // price that does not divide: rounded up.
        assert_eq!(
            unit_cost_nano(1, &d("0.006"), MeterUnit::Minutes, &one),
            100_000
        );
        assert_eq!(
            unit_cost_nano(7, &d("0.0001"), MeterUnit::Minutes, &one),
            11_667
        );
        // Two images at 0.04, times 1.5.
        assert_eq!(
            unit_cost_nano(2, &d("0.04"), MeterUnit::Images, &d("1.5")),
            120_000_000
        );
        assert_eq!(unit_cost_nano(0, &d("0.04"), MeterUnit::Calls, &one), 0);
        assert_eq!(
            unit_cost_nano(u64::MAX, &d("999999"), MeterUnit::Calls, &d("1000")),
            i64::MAX
        );
    }

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn parses_and_displays_decimals() {
        assert_eq!(d("0.15").to_string(), "0.15");
        assert_eq!(d("2").to_string(), "2");
        assert_eq!(d("1.500").to_string(), "1.5");
        assert_eq!(Decimal::from_f64(0.075).unwrap(), d("0.075"));
        for bad in [
            "",
            ".",
            "-1",
            "1e3",
            "abc",
            "1.0000000000001",
            "1234567890123456789",
            "+1",
            "1.2.3",
            "١",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            d("999999999999999999.999999999999").to_string(),
            "999999999999999999.999999999999"
        );
    }

    #[test]
    fn usd_and_credit_conversion() {
        assert_eq!(d("1").usd_to_nano(), Some(1_000_000_000));
        assert_eq!(d("0.000000001").usd_to_nano(), Some(1));
        assert_eq!(d("0.0000000005").usd_to_nano(), Some(1));
        assert_eq!(d("0.0000000004").usd_to_nano(), Some(0));
        assert_eq!(d("34000").credits_to_nano(34_000), Some(1_000_000_000));
        assert_eq!(format_credits(1_000_000_000, 34_000), "34000");
        assert_eq!(format_credits(1, 34_000), "0.000034");
        assert_eq!(format_usd(-1_500_000_000), "-1.5");
        assert_eq!(format_usd(i64::MIN), "-9223372036.854775808");
        assert_eq!(
            format_credits(i64::MAX, u64::MAX),
            "170141183460469231704017187605.319778305"
        );
    }

    #[test]
    fn conversions_that_do_not_fit_are_refused_not_wrapped() {
        // Once: 999999999999999999 USD → −6.93 billion USD.
        assert_eq!(d("999999999999999999").usd_to_nano(), None);
        assert_eq!(d("999999999999999999.999999999999").usd_to_nano(), None);
        assert_eq!(d("9223372036.854775807").usd_to_nano(), Some(i64::MAX));
        assert_eq!(d("9223372036.854775808").usd_to_nano(), None);
        assert_eq!(d("999999999999999999").credits_to_nano(34_000), None);
        assert_eq!(
            d("999999999999999999").credits_to_nano(u64::MAX),
            Some(54_210_109)
        );
        assert_eq!(d("1").credits_to_nano(0), None);
    }

    #[test]
    fn amounts_are_exact_bounded_and_name_their_field() {
        let usd = |t: &str| parse_amount("amount_usd", t, Unit::Usd, true);
        assert_eq!(usd("1.000000001"), Ok(1_000_000_001));
        assert_eq!(usd(" -2.5 "), Ok(-2_500_000_000));
        assert_eq!(usd("1000000000"), Ok(MAX_AMOUNT_NANO));
        assert_eq!(usd("-1000000000"), Ok(-MAX_AMOUNT_NANO));
        let e = usd("1000000000.000000001").unwrap_err().to_string();
        assert_eq!(e, "`amount_usd` is too large: at most 1000000000 USD.");
        let e = usd("999999999999999999").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        let e = usd("--1").unwrap_err().to_string();
        assert!(
            e.starts_with("`amount_usd` must be a decimal number"),
            "{e}"
        );

        let fee = |t: &str| parse_amount("max_fee", t, Unit::Credits(34_000), false);
        assert_eq!(fee("3400"), Ok(100_000_000));
        assert_eq!(fee("34000000000000"), Ok(MAX_AMOUNT_NANO));
        assert_eq!(
            fee("34000000000000.00000000001"),
            Ok(MAX_AMOUNT_NANO),
            "rounds"
        );
        let e = fee("34000000000000.001").unwrap_err().to_string();
        assert_eq!(
            e,
            "`max_fee` is too large: at most 34000000000000 credits (1000000000 USD)."
        );
        let e = fee("-1").unwrap_err().to_string();
        assert!(e.contains("non-negative"), "{e}");
        let e = fee(&"9".repeat(100_000)).unwrap_err().to_string();
        assert!(e.len() < 300, "the error does not echo a huge input: {e}");
    }

    /// A small deterministic generator (xorshift64*), for property tests
    /// without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The exact nano-USD of a decimal USD text, worked out on its digits:
    /// the integer digits and the first nine fractional ones, plus one when
    /// the rest is at least half a nano-USD.
    fn nano_by_digits(text: &str) -> Option<u128> {
        let t = text.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let mut frac9 = frac.chars().take(9).collect::<String>();
        while frac9.len() < 9 {
            frac9.push('0');
        }
        let rest = frac.get(9..).unwrap_or("");
        let round_up = rest.starts_with(['5', '6', '7', '8', '9']);
        let digits = format!("{int}{frac9}");
        let value: u128 = digits.parse().ok()?;
        Some(value + u128::from(round_up))
    }

    #[test]
    fn property_money_parsing_never_panics_and_is_exact_or_refused() {
        let alphabet: Vec<char> = "0123456789012345678901234567890123456789.-+ e_x,١"
            .chars()
            .collect();
        let mut rng = Rng(0x7011_6a7e_5eed_0001);
        let mut accepted = 0;
        for round in 0..20_000 {
            // Mostly well-formed numbers of every length, some noise.
            let text: String = if round % 4 == 0 {
                let len = rng.below(40) as usize;
                (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                    .collect()
            } else {
                let int_len = rng.below(22) as usize;
                let frac_len = rng.below(15) as usize;
                let digit = |r: &mut Rng| char::from(b'0' + r.below(10) as u8);
                let int: String = (0..int_len).map(|_| digit(&mut rng)).collect();
                let frac: String = (0..frac_len).map(|_| digit(&mut rng)).collect();
                match rng.below(3) {
                    0 => int,
                    1 => format!("{int}.{frac}"),
                    _ => format!("-{int}.{frac}"),
                }
            };
            let per_usd = [1, 34_000, 1_000_000_000_000, u64::MAX][rng.below(4) as usize];
            // Parsing: exact (it prints back as written, up to zeros) or refused.
            if let Ok(dec) = Decimal::parse(&text) {
                let t = text.trim();
                let (int, frac) = t.split_once('.').unwrap_or((t, ""));
                assert!(int.len() <= 18 && frac.len() <= 12, "{text:?}");
                let int = int.trim_start_matches('0');
                let frac = frac.trim_end_matches('0');
                let expected = match (int.is_empty(), frac.is_empty()) {
                    (true, true) => "0".to_string(),
                    (true, false) => format!("0.{frac}"),
                    (false, true) => int.to_string(),
                    (false, false) => format!("{int}.{frac}"),
                };
                assert_eq!(dec.to_string(), expected, "{text:?}");
                // USD: exactly the digits' value, or refused beyond an i64.
                let by_digits = nano_by_digits(&text).unwrap();
                match dec.usd_to_nano() {
                    Some(nano) => assert_eq!(nano as u128, by_digits, "{text:?}"),
                    None => assert!(by_digits > i64::MAX as u128, "{text:?}"),
                }
                // Credits never panic and never go negative.
                if let Some(nano) = dec.credits_to_nano(per_usd) {
                    assert!(nano >= 0, "{text:?}");
                }
            }
            // Amounts: within the bound with the sign as written, or refused.
            for unit in [Unit::Usd, Unit::Credits(per_usd)] {
                if let Ok(nano) = parse_amount("f", &text, unit, true) {
                    accepted += 1;
                    assert!(nano.abs() <= MAX_AMOUNT_NANO, "{text:?}");
                    assert!(
                        nano == 0 || (nano < 0) == text.trim().starts_with('-'),
                        "{text:?}"
                    );
                    if unit == Unit::Usd {
                        let by_digits = nano_by_digits(text.trim().trim_start_matches('-'));
                        assert_eq!(Some(nano.unsigned_abs() as u128), by_digits, "{text:?}");
                    }
                }
            }
        }
        assert!(
            accepted > 5_000,
            "the generator reaches valid amounts: {accepted}"
        );
    }

    fn prices(input: &str, output: &str, cached: &str, write: &str) -> Prices {
        Prices {
            input: d(input),
            output: d(output),
            cached_input: d(cached),
            cache_write: d(write),
        }
    }

    #[test]
    fn cost_is_exact_and_rounds_up_once() {
        let prices = prices("2.5", "10", "1.25", "3.125");
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
        let cheap = self::prices("0.0375", "0", "0", "0");
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
    fn absurd_token_counts_saturate_and_never_go_negative() {
        let prices = prices("2.5", "10", "1.25", "3.75");
        let all_max = TokenUsage {
            input: u64::MAX,
            output: u64::MAX,
            cached_input: u64::MAX,
            cache_write: u64::MAX,
        };
        assert_eq!(cost_nano(&all_max, &prices, &d("1.5")), i64::MAX);
        let output_max = TokenUsage {
            output: u64::MAX,
            ..Default::default()
        };
        assert_eq!(cost_nano(&output_max, &prices, &Decimal::ONE), i64::MAX);
        // Even at the smallest price and multiplier.
        let tiny = self::prices(
            "0.000000000001",
            "0.000000000001",
            "0.000000000001",
            "0.000000000001",
        );
        let tiny_multiplier = d("0.000000000001").times(&d("0.000000000001"));
        let c = cost_nano(&all_max, &tiny, &tiny_multiplier);
        // 3 × (2^64 − 1) tokens at 1e-12 USD/1M × 1e-24: 5.5e-14 nano → 1.
        assert_eq!(c, 1);
        // The largest prices and multiplier a configuration can hold.
        let huge = self::prices(
            "999999999999999999.999999999999",
            "999999999999999999.999999999999",
            "999999999999999999.999999999999",
            "999999999999999999.999999999999",
        );
        let huge_multiplier = d("999999999999999999.999999999999");
        assert_eq!(cost_nano(&all_max, &huge, &huge_multiplier), i64::MAX);
        let one = TokenUsage {
            output: 1,
            ..Default::default()
        };
        assert_eq!(cost_nano(&one, &huge, &huge_multiplier), i64::MAX);
        assert_eq!(cost_nano(&one, &huge, &Decimal::ONE), i64::MAX);
    }

    #[test]
    fn cost_stays_exact_when_the_intermediate_needs_more_than_128_bits() {
        // Prices with 12 decimals and a multiplier with 24: the numerator of
        // 1M tokens is about 1e45, beyond an i128, yet the cost is 1.5 USD.
        let p = prices("1.000000000001", "0", "0", "0");
        let m = d("1.000000000001").times(&d("1.499999999999"));
        let usage = TokenUsage {
            input: 1_000_000,
            ..Default::default()
        };
        // 1e6 tokens × 1.000000000001 USD per 1M × 1.500000000000499999999999
        // = 1500000000.0019999999999994999… nano, rounded up.
        assert_eq!(cost_nano(&usage, &p, &m), 1_500_000_001);
    }

    /// The cost by the definition, in i128, for inputs small enough.
    fn cost_reference(usage: &TokenUsage, prices: &Prices, m: &Decimal) -> Option<i64> {
        let scale = [
            prices.input,
            prices.output,
            prices.cached_input,
            prices.cache_write,
        ]
        .iter()
        .map(|p| p.scale)
        .max()?;
        let at = |p: &Decimal| p.mantissa.checked_mul(10i128.checked_pow(scale - p.scale)?);
        let mut sum: i128 = 0;
        for (t, p) in [
            (usage.uncached_input(), &prices.input),
            (usage.cached_input, &prices.cached_input),
            (usage.cache_write, &prices.cache_write),
            (usage.output, &prices.output),
        ] {
            sum = sum.checked_add(i128::from(t).checked_mul(at(p)?)?)?;
        }
        let num = sum.checked_mul(1000)?.checked_mul(m.mantissa)?;
        let den = 10i128.checked_pow(scale + m.scale)?;
        let cost = num.checked_add(den - 1)? / den;
        Some(i64::try_from(cost).unwrap_or(i64::MAX))
    }

    #[test]
    fn property_cost_matches_the_definition_and_never_panics() {
        let mut rng = Rng(0xc057_0000_0000_0001);
        let mut compared = 0;
        for _ in 0..20_000 {
            let dec = |r: &mut Rng| {
                let digits = r.below(7) as u32;
                let int = r.below(10u64.pow(digits));
                let frac_len = r.below(12) as usize;
                let frac: String = (0..frac_len)
                    .map(|_| char::from(b'0' + r.below(10) as u8))
                    .collect();
                d(&format!("{int}.{frac}0"))
            };
            let p = Prices {
                input: dec(&mut rng),
                output: dec(&mut rng),
                cached_input: dec(&mut rng),
                cache_write: dec(&mut rng),
            };
            let m = dec(&mut rng).times(&dec(&mut rng));
            let tokens = |r: &mut Rng| match r.below(4) {
                0 => r.next(),
                1 => r.below(1 << 40),
                _ => r.below(1_000_000),
            };
            let input = tokens(&mut rng);
            let usage = TokenUsage {
                input,
                output: tokens(&mut rng),
                cached_input: rng.next() % input.saturating_add(1),
                cache_write: rng.below(1_000),
            };
            let cost = cost_nano(&usage, &p, &m);
            assert!(cost >= 0);
            if let Some(expected) = cost_reference(&usage, &p, &m) {
                compared += 1;
                assert_eq!(cost, expected, "{usage:?} {p:?} {m:?}");
            }
        }
        assert!(compared > 3_000, "{compared}");
    }

    #[test]
    fn multipliers_compose_exactly() {
        assert_eq!(d("1.5").times(&d("0.8")), d("1.2"));
        assert_eq!(d("0.1").times(&d("0.1")).to_string(), "0.01");
        let huge = d("999999999999999999.999999999999");
        assert_eq!(huge.checked_times(&huge), None);
        assert_eq!(huge.times(&huge), Decimal::SATURATED);
        let tiny = d("0.000000000001");
        let tinier = tiny.times(&tiny);
        assert_eq!(tinier.to_string(), "0.000000000000000000000001");
        assert_eq!(tinier.checked_times(&tiny), None, "36 fractional digits");
    }
}
