//! Parses the `every = "100ms"` interval of `#[on_tick]` at compile time.

use std::time::Duration;

/// Nanoseconds in one of each unit `every` accepts.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a number and a unit, such as `100ms`, `1.5s` or `250 us`.
///
/// The number is an integer or a decimal; the result must be a whole number
/// of nanoseconds, greater than zero, and fit a `Duration::from_nanos`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim_start());
    if number.is_empty() {
        return Err(format!(
            "`{text}` does not start with a number; expected a duration such as \"100ms\""
        ));
    }
    let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        let reason = if unit.is_empty() {
            "has no unit".to_owned()
        } else {
            format!("has an unknown unit `{unit}`")
        };
        return Err(format!(
            "`{text}` {reason}; expected one of ns, us, µs, ms, s, m, h (as in \"100ms\")"
        ));
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let parse_digits = |digits: &str| -> Result<u128, String> {
        if digits.is_empty() {
            return Ok(0);
        }
        digits
            .parse::<u128>()
            .map_err(|_| format!("`{number}` is not a valid number"))
    };
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(format!("`{number}` is not a valid number"));
    }
    let too_long = || format!("`{text}` is too long; the longest interval is about 584 years");
    let scale = u32::try_from(fraction.len())
        .ok()
        .and_then(|len| 10u128.checked_pow(len))
        .ok_or_else(too_long)?;
    let fraction_nanos = parse_digits(fraction)?
        .checked_mul(per_unit)
        .ok_or_else(too_long)?;
    if fraction_nanos % scale != 0 {
        return Err(format!("`{text}` is finer than a nanosecond"));
    }
    let nanos = parse_digits(whole)?
        .checked_mul(per_unit)
        .and_then(|whole| whole.checked_add(fraction_nanos / scale))
        .ok_or_else(too_long)?;
    if nanos == 0 {
        return Err("the interval must be greater than zero".to_owned());
    }
    let nanos = u64::try_from(nanos).map_err(|_| too_long())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn parses_decimals_and_spaces() {
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse(" 0.25 ms "), Ok(Duration::from_micros(250)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10.s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn rejects_bad_intervals() {
        for bad in [
            "",
            "ms",
            "10",
            "10 parsecs",
            "1.2.3s",
            ".ms",
            "0ms",
            "0.0s",
            "1.5ns",
            "-5ms",
            "6000000h",
            "1.0000000000000000000000000000000000000000s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn explains_the_mistake() {
        assert!(parse("10").unwrap_err().contains("has no unit"));
        assert!(
            parse("10 parsecs")
                .unwrap_err()
                .contains("unknown unit `parsecs`")
        );
        assert!(parse("0ms").unwrap_err().contains("greater than zero"));
        assert!(
            parse("1.5ns")
                .unwrap_err()
                .contains("finer than a nanosecond")
        );
    }
}
