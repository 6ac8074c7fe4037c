//! Time spans in epoch milliseconds: the unit constants, the one duration parser (stats
//! buckets, relative search times), the hour/day starts (UTC) that bucket events, and bucket
//! arithmetic that cannot overflow whatever times and bucket a request gives.
//!
//! Durations are a whole number followed by a unit: `ms`, `s`, `m` (or `min`), `h`, `d` (24 h)
//! or `w` (7 d), e.g. `30s`, `5m`, `1h`, `7d`, `2w`. No sign, no space, no fractions; callers
//! trim the text and decide whether zero is allowed.

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;

/// Every unit [`parse_duration_ms`] accepts, with its length in milliseconds.
pub const UNITS: [(&str, i64); 7] = [
    ("ms", 1),
    ("s", SECOND_MS),
    ("m", MINUTE_MS),
    ("min", MINUTE_MS),
    ("h", HOUR_MS),
    ("d", DAY_MS),
    ("w", WEEK_MS),
];

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("duration `{0}` does not start with a whole number")]
    Number(String),
    #[error("duration `{0}` has no unit (ms, s, m, h, d or w)")]
    NoUnit(String),
    #[error("unknown unit `{unit}` in duration `{text}` (use ms, s, m, h, d or w)")]
    Unit { text: String, unit: String },
    #[error("duration `{0}` is too long")]
    Overflow(String),
}

/// Parses a duration such as `30s`, `5m`, `1h`, `7d` or `2w` into milliseconds (see the module
/// docs for the units). Zero (`0h`) is a valid duration.
pub fn parse_duration_ms(text: &str) -> Result<i64, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit(text.into()))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(DurationError::Number(text.into()));
    }
    let unit_ms = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, ms)| *ms)
        .ok_or_else(|| DurationError::Unit {
            text: text.into(),
            unit: unit.into(),
        })?;
    number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .ok_or_else(|| DurationError::Overflow(text.into()))
}

/// Start of the bucket of `bucket_ms` (> 0, epoch-aligned) containing `ms`; `i64::MIN` for a
/// start before it.
pub fn bucket_start(ms: i64, bucket_ms: i64) -> i64 {
    ms.saturating_sub(ms.rem_euclid(bucket_ms))
}

/// How many buckets of `bucket_ms` (> 0) lie from the bucket starting at `first` to the one
/// starting at `last`, both included (0 when `last < first`), exactly for any `i64` times and
/// saturating at `u64::MAX`: what a request's range costs, known before anything is allocated.
pub fn bucket_count(first: i64, last: i64, bucket_ms: i64) -> u64 {
    if last < first {
        return 0;
    }
    let steps = (i128::from(last) - i128::from(first)) / i128::from(bucket_ms) + 1;
    u64::try_from(steps).unwrap_or(u64::MAX)
}

/// Start of the hour containing `ms`.
pub fn hour_start(ms: i64) -> i64 {
    bucket_start(ms, HOUR_MS)
}

/// Start of the (UTC) day containing `ms`.
pub fn day_start(ms: i64) -> i64 {
    bucket_start(ms, DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_arithmetic_never_overflows() {
        assert_eq!(bucket_start(3_500, 1_000), 3_000);
        assert_eq!(bucket_start(-1, 1_000), -1_000);
        assert_eq!(bucket_start(i64::MIN, 1_000), i64::MIN);
        assert_eq!(bucket_start(i64::MAX, i64::MAX), i64::MAX);
        assert_eq!(bucket_count(3_000, 10_000, 1_000), 8);
        assert_eq!(bucket_count(10, 5, 1), 0);
        assert_eq!(bucket_count(i64::MIN, i64::MAX, 1), u64::MAX);
        assert_eq!(bucket_count(i64::MIN, i64::MAX, i64::MAX), 3);
    }

    #[test]
    fn durations() {
        let good: &[(&str, i64)] = &[
            ("0ms", 0),
            ("250ms", 250),
            ("30s", 30 * SECOND_MS),
            ("5m", 5 * MINUTE_MS),
            ("15min", 15 * MINUTE_MS),
            ("1h", HOUR_MS),
            ("24h", DAY_MS),
            ("7d", WEEK_MS),
            ("2w", 14 * DAY_MS),
            ("0h", 0),
            ("007s", 7_000),
        ];
        for (text, ms) in good {
            assert_eq!(parse_duration_ms(text), Ok(*ms), "{text}");
        }
        let e = |text: &str| text.to_string();
        let bad: &[(&str, DurationError)] = &[
            ("", DurationError::Empty),
            ("h", DurationError::Number(e("h"))),
            ("-1h", DurationError::Number(e("-1h"))),
            ("+1h", DurationError::Number(e("+1h"))),
            ("15", DurationError::NoUnit(e("15"))),
            (
                "5y",
                DurationError::Unit {
                    text: e("5y"),
                    unit: e("y"),
                },
            ),
            (
                "1.5h",
                DurationError::Unit {
                    text: e("1.5h"),
                    unit: e(".5h"),
                },
            ),
            (
                "5 m",
                DurationError::Unit {
                    text: e("5 m"),
                    unit: e(" m"),
                },
            ),
            (
                "5H",
                DurationError::Unit {
                    text: e("5H"),
                    unit: e("H"),
                },
            ),
            (
                "99999999999999999999s",
                DurationError::Overflow(e("99999999999999999999s")),
            ),
            (
                "9999999999999999w",
                DurationError::Overflow(e("9999999999999999w")),
            ),
        ];
        for (text, expected) in bad {
            assert_eq!(parse_duration_ms(text).as_ref(), Err(expected), "{text:?}");
        }
        assert_eq!(
            parse_duration_ms("5y").unwrap_err().to_string(),
            "unknown unit `y` in duration `5y` (use ms, s, m, h, d or w)"
        );
    }

    #[test]
    fn hour_and_day_starts() {
        assert_eq!(hour_start(HOUR_MS + 5), HOUR_MS);
        assert_eq!(hour_start(-1), -HOUR_MS);
        assert_eq!(day_start(DAY_MS * 3 + 7), DAY_MS * 3);
        assert_eq!(day_start(-1), -DAY_MS);
        assert_eq!(day_start(i64::MIN), i64::MIN);
    }
}
