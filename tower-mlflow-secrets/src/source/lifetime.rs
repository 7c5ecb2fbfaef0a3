//! Lifetimes that stores put in their replies (a Vault `lease_duration`, an Azure `exp`,
//! `expires_in` or `expires_on`), read with checked arithmetic.
//!
//! A reply may hold anything: a store bug, a proxy or a man in the middle on an allowed
//! plain-http loopback can send `-1`, `1e300`, `"soon"` or `18446744073709551615`, and
//! `Instant + Duration` panics on overflow. So every lifetime goes through [`seconds`] or
//! [`until_unix_time`]: whole numbers of seconds (JSON integers, integral floats, or strings
//! of digits, which Azure's managed identity endpoints send) are accepted and clamped to
//! [`MAX_LIFETIME`]; anything else is a permanent [`SourceError`] naming the field.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::SourceError;

/// The longest lifetime a reply can give; longer ones count as this long. Far beyond any
/// real lease or token, and small enough that adding it to any clock reading cannot
/// overflow.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// `value` (the field `field` of the reply to `what`) as a duration in seconds, clamped to
/// [`MAX_LIFETIME`]; `None` when the field is absent or `null`.
pub(crate) fn seconds(
    value: Option<&Value>,
    what: &str,
    field: &str,
) -> Result<Option<Duration>, SourceError> {
    Ok(whole_seconds(value, what, field)?.map(clamped))
}

/// `value`, a Unix time in seconds, as the time left until then (zero when it has passed),
/// clamped to [`MAX_LIFETIME`]; `None` when the field is absent or `null`.
#[cfg_attr(not(feature = "azure"), allow(dead_code))] // Vault gives durations only
pub(crate) fn until_unix_time(
    value: Option<&Value>,
    what: &str,
    field: &str,
) -> Result<Option<Duration>, SourceError> {
    let Some(at) = whole_seconds(value, what, field)? else {
        return Ok(None);
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Some(clamped(at.saturating_sub(now))))
}

fn clamped(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_LIFETIME)
}

/// A whole, non-negative number of seconds; numbers beyond `u64` saturate (they are clamped
/// afterwards anyway).
fn whole_seconds(
    value: Option<&Value>,
    what: &str,
    field: &str,
) -> Result<Option<u64>, SourceError> {
    let refuse = |why: &str| {
        SourceError::permanent(format!(
            "{what}: `{field}` is {why}, not a whole number of seconds"
        ))
    };
    let number = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.clone(),
        Some(Value::String(s)) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(refuse("a string that is not a number"));
            }
            // Only digits: the parse fails for overflow alone.
            return Ok(Some(s.parse().unwrap_or(u64::MAX)));
        }
        Some(_) => return Err(refuse("neither a number nor a string")),
    };
    if let Some(n) = number.as_u64() {
        return Ok(Some(n));
    }
    if number.as_i64().is_some() {
        return Err(refuse("negative"));
    }
    match number.as_f64() {
        Some(f) if f.is_sign_negative() => Err(refuse("negative")),
        // `as` saturates: 1e300 becomes u64::MAX.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(f) if f.is_finite() && f.fract() == 0.0 => Ok(Some(f as u64)),
        _ => Err(refuse("a fraction")),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const DAY: u64 = 24 * 60 * 60;

    fn parse(value: &Value) -> Result<Option<Duration>, String> {
        seconds(Some(value), "vault login", "auth.lease_duration").map_err(|e| e.to_string())
    }

    #[test]
    fn hostile_lifetimes_are_clamped_or_refused() {
        let clamp = Ok(Some(MAX_LIFETIME));
        let table: [(Value, Result<Option<Duration>, ()>); 16] = [
            (json!(null), Ok(None)),
            (json!(0), Ok(Some(Duration::ZERO))),
            (json!(3600), Ok(Some(Duration::from_secs(3600)))),
            (json!("3599"), Ok(Some(Duration::from_secs(3599)))),
            (json!(3600.0), Ok(Some(Duration::from_secs(3600)))),
            (json!(u64::MAX), clamp),
            (json!(i64::MAX), clamp),
            (json!(1e300), clamp),
            (json!("99999999999999999999999999"), clamp),
            (json!(400 * DAY), clamp),
            (json!(-1), Err(())),
            (json!(i64::MIN), Err(())),
            (json!(-0.5), Err(())),
            (json!(0.5), Err(())),
            (json!("soon"), Err(())),
            (json!("-5"), Err(())),
        ];
        for (value, expected) in table {
            let got = parse(&value);
            match expected {
                Ok(expected) => assert_eq!(got, Ok(expected), "{value}"),
                Err(()) => {
                    let err = got.expect_err(&value.to_string());
                    assert!(err.contains("`auth.lease_duration`"), "{err}");
                    assert!(err.contains("not a whole number of seconds"), "{err}");
                }
            }
        }
        for value in [
            json!(""),
            json!(true),
            json!([1]),
            json!({"s": 1}),
            json!(" 1"),
        ] {
            assert!(parse(&value).is_err(), "{value}");
        }
        assert_eq!(seconds(None, "x", "y").ok(), Some(None));
    }

    #[test]
    fn unix_times_become_the_time_left() {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let left = |v: Value| until_unix_time(Some(&v), "azure", "attributes.exp").unwrap();
        assert_eq!(left(json!(0)), Some(Duration::ZERO));
        assert_eq!(left(json!(u64::MAX)), Some(MAX_LIFETIME));
        let hour = left(json!(now + 3600)).unwrap();
        assert!(hour <= Duration::from_secs(3600) && hour >= Duration::from_secs(3500));
        assert!(until_unix_time(Some(&json!(-1)), "azure", "attributes.exp").is_err());
    }

    /// Any JSON scalar a reply can hold: never a panic, and any lifetime accepted can be
    /// added to a clock reading.
    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[0-9]{0,30}".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ]
    }

    proptest! {
        #[test]
        fn any_reply_value_is_safe_to_add_to_a_clock(value in scalar()) {
            for result in [
                seconds(Some(&value), "w", "f"),
                until_unix_time(Some(&value), "w", "f"),
            ] {
                if let Ok(Some(lifetime)) = result {
                    prop_assert!(lifetime <= MAX_LIFETIME);
                    prop_assert!(tokio::time::Instant::now().checked_add(lifetime).is_some());
                    prop_assert!(SystemTime::now().checked_add(lifetime).is_some());
                }
            }
        }
    }
}
