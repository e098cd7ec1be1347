//! The rate limits set on users and keys (`rpm`, `tpm`, `concurrency`) as
//! the admin API, OhMyGPT's key API and the CLI receive them: read from a
//! JSON value or a command-line word, then checked before anything is
//! written, so that a bad value changes nothing.
//!
//! A limit is a whole number from 1 up (`concurrency` at most `u32::MAX`,
//! what the limiter counts in); "no limit" is `null`, an empty string (all a
//! form body can send) or `none`. Zero is refused rather than read as "no
//! limit" or "nothing passes": both readings are plausible, and a silent
//! wrong guess either blocks a key or lifts its limit.

use serde_json::Value;
use store::{RateLimits, RateLimitsUpdate};

use crate::error::ApiError;

/// The highest value each limit may have.
fn max_of(name: &str) -> i64 {
    match name {
        "concurrency" => i64::from(u32::MAX),
        _ => i64::MAX,
    }
}

fn invalid(name: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "`{name}` must be a whole number from 1 to {}, or null for no limit.",
        max_of(name)
    ))
}

/// One limit as a client sent it: a JSON number or a numeric string;
/// `null`, `""` or `none` for no limit. The range is [`check`]ed apart.
pub fn parse_value(name: &str, value: &Value) -> Result<Option<i64>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or_else(|| invalid(name)),
        Value::String(s) => parse_text(name, s),
        _ => Err(invalid(name)),
    }
}

/// One limit as a word (a form field, a command-line argument).
pub fn parse_text(name: &str, text: &str) -> Result<Option<i64>, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") || text.eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|_| invalid(name))
}

/// The limits of a new user or key; an absent field sets no limit.
pub fn new_limits<'a>(get: impl Fn(&str) -> Option<&'a Value>) -> Result<RateLimits, ApiError> {
    let read = |name: &str| get(name).map_or(Ok(None), |v| parse_value(name, v));
    let limits = RateLimits {
        rpm: read("rpm")?,
        tpm: read("tpm")?,
        concurrency: read("concurrency")?,
    };
    check(&limits)?;
    Ok(limits)
}

/// A change of limits: an absent field leaves its limit, `null` (or `""`)
/// removes it, a number sets it.
pub fn update<'a>(get: impl Fn(&str) -> Option<&'a Value>) -> Result<RateLimitsUpdate, ApiError> {
    let read = |name: &str| get(name).map(|v| parse_value(name, v)).transpose();
    let update = RateLimitsUpdate {
        rpm: read("rpm")?,
        tpm: read("tpm")?,
        concurrency: read("concurrency")?,
    };
    check_update(&update)?;
    Ok(update)
}

/// Refuses a limit that is not a whole number from 1 to its maximum.
pub fn check(limits: &RateLimits) -> Result<(), ApiError> {
    for (name, value) in [
        ("rpm", limits.rpm),
        ("tpm", limits.tpm),
        ("concurrency", limits.concurrency),
    ] {
        if value.is_some_and(|n| !(1..=max_of(name)).contains(&n)) {
            return Err(invalid(name));
        }
    }
    Ok(())
}

/// [`check`] for the limits a change sets.
pub fn check_update(update: &RateLimitsUpdate) -> Result<(), ApiError> {
    check(&RateLimits {
        rpm: update.rpm.flatten(),
        tpm: update.tpm.flatten(),
        concurrency: update.concurrency.flatten(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use super::*;
    use crate::limits::Limits;

    fn message(e: ApiError) -> String {
        e.to_string()
    }

    #[test]
    fn numbers_and_numeric_strings_are_read_and_no_limit_has_three_spellings() {
        assert_eq!(parse_value("rpm", &json!(60)).unwrap(), Some(60));
        assert_eq!(parse_value("rpm", &json!(" 60 ")).unwrap(), Some(60));
        for none in [json!(null), json!(""), json!("none"), json!("NULL")] {
            assert_eq!(parse_value("rpm", &none).unwrap(), None, "{none}");
        }
        assert_eq!(parse_text("tpm", "100000").unwrap(), Some(100_000));
        assert_eq!(parse_text("tpm", "none").unwrap(), None);
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        for bad in [
            json!(1.5),
            json!("1.5"),
            json!("sixty"),
            json!(true),
            json!([60]),
            json!(u64::MAX),
            json!("99999999999999999999"),
        ] {
            let e = message(parse_value("rpm", &bad).unwrap_err());
            assert_eq!(
                e,
                "`rpm` must be a whole number from 1 to 9223372036854775807, or null for no limit.",
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_positive_and_concurrency_fits_the_limiter() {
        let fields = |v: Value| -> Map<String, Value> { v.as_object().unwrap().clone() };
        let ok = fields(json!({"rpm": 60, "tpm": "100000", "concurrency": 4294967295u64}));
        let limits = new_limits(|n| ok.get(n)).unwrap();
        assert_eq!(
            limits,
            RateLimits {
                rpm: Some(60),
                tpm: Some(100_000),
                concurrency: Some(4_294_967_295)
            }
        );
        for (bad, field) in [
            (json!({"rpm": 0}), "rpm"),
            (json!({"tpm": -5}), "tpm"),
            (json!({"concurrency": 4294967296u64}), "concurrency"),
            (json!({"concurrency": "0"}), "concurrency"),
        ] {
            let bad = fields(bad);
            let e = message(new_limits(|n| bad.get(n)).unwrap_err());
            assert!(e.starts_with(&format!("`{field}` must be")), "{e}");
            let e = message(update(|n| bad.get(n)).unwrap_err());
            assert!(e.starts_with(&format!("`{field}` must be")), "{e}");
        }
        // Only the limits a change names are touched; null removes one.
        let change = fields(json!({"rpm": null, "tpm": 500}));
        assert_eq!(
            update(|n| change.get(n)).unwrap(),
            RateLimitsUpdate {
                rpm: Some(None),
                tpm: Some(Some(500)),
                concurrency: None
            }
        );
    }

    #[test]
    fn stored_limits_become_the_limiters_and_unusable_ones_do_not_limit() {
        let stored = RateLimits {
            rpm: Some(60),
            tpm: Some(1_000),
            concurrency: Some(2),
        };
        assert_eq!(
            Limits::from_stored(&stored),
            Limits {
                rpm: Some(60),
                tpm: Some(1_000),
                concurrency: Some(2)
            }
        );
        let odd = RateLimits {
            rpm: Some(0),
            tpm: Some(-1),
            concurrency: Some(i64::from(u32::MAX) + 1),
        };
        assert!(!Limits::from_stored(&odd).is_set());
        assert!(!Limits::from_stored(&RateLimits::default()).is_set());
    }
}
