//! Go-style durations (`30s`, `5m`, `1h30m`, `2h15m30s`, `1.5h`, `0s`) as used by
//! `spec.cooldown`, parsed without ever panicking.

use std::time::Duration;

/// Why a duration could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is empty.
    #[error("the duration is empty; write it like 30s, 5m or 1h30m")]
    Empty,
    /// The duration is negative.
    #[error("{0:?} is negative; a cooldown must be 0s or more")]
    Negative(String),
    /// The text is not a duration.
    #[error(
        "{0:?} is not a duration; write it like 30s, 5m, 1h30m or 2h15m30s (units: ns, us, ms, s, m, h)"
    )]
    Malformed(String),
    /// The duration is larger than Go's time.Duration can hold (about 292 years).
    #[error("{0:?} is too long; the maximum is 2562047h")]
    TooLong(String),
}

/// Largest duration a Go `time.Duration` holds (2^63-1 ns).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string. Negative durations are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let original = text;
    let mut s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Some(rest) = s.strip_prefix('-') {
        // "-0s" is zero in Go; still reject the sign to keep the rule simple to state.
        let _ = rest;
        return Err(DurationError::Negative(original.to_string()));
    }
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let malformed = || DurationError::Malformed(original.to_string());
    let mut total: u128 = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    if bytes.is_empty() {
        return Err(malformed());
    }
    while i < bytes.len() {
        // Integer part.
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[int_start..i];
        // Fraction.
        let mut frac_part = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &s[frac_start..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(malformed());
        }
        // Unit: everything up to the next digit or dot.
        let unit_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() && bytes[i] != b'.' {
            i += 1;
        }
        let unit_nanos: u128 = match &s[unit_start..i] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(malformed()),
        };
        let too_long = || DurationError::TooLong(original.to_string());
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse::<u128>().map_err(|_| too_long())?
        };
        let mut value = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
        // Fraction: scale digit by digit, as Go does, dropping precision below 1ns.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            value += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(too_long)?;
        if total > MAX_NANOS {
            return Err(too_long());
        }
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::TooLong(original.to_string()))?;
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way Go prints it (`1h30m0s`, `45s`, `1.5s`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_nanos();
    if total == 0 {
        return "0s".to_string();
    }
    if total < 1_000_000_000 {
        // Sub-second: pick the largest unit that keeps an integer part.
        let (unit, div) = if total < 1_000 {
            ("ns", 1u128)
        } else if total < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(total, div));
    }
    let hours = total / 3_600_000_000_000;
    let minutes = (total / 60_000_000_000) % 60;
    let secs_nanos = total % 60_000_000_000;
    let seconds = decimal(secs_nanos, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

fn decimal(value: u128, div: u128) -> String {
    let whole = value / div;
    let frac = value % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{frac:0width$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cooldown_accepts_the_documented_formats() {
        let cases = [
            ("30s", 30),
            ("60s", 60),
            ("5m", 300),
            ("10m", 600),
            ("1h", 3600),
            ("2h", 7200),
            ("1h30m", 5400),
            ("2h15m30s", 8130),
            ("0s", 0),
            ("0", 0),
            ("300s", 300),
            ("3600s", 3600),
            ("1m0s", 60),
            ("1h0m0s", 3600),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn fractions_and_small_units_parse_like_go() {
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn negative_cooldown_is_rejected() {
        assert!(matches!(
            parse_duration("-5s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("-0s"),
            Err(DurationError::Negative(_))
        ));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in [
            "", "5", "s", "5x", "1h30", "h1", "1..5s", ".s", "1e3s", "inf", "NaNs", "5 s", "--5s",
            "1d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn huge_durations_are_rejected_not_panicking() {
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration("2562048h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(parse_duration("2562047h").is_ok());
        let long = "9".repeat(200) + "s";
        assert!(matches!(
            parse_duration(&long),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn format_matches_go() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn format_then_parse_round_trips(nanos in 0u64..(i64::MAX as u64)) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
