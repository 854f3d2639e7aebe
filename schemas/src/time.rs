//! Timestamp parsing and civil-date arithmetic for event times.
//! Hand-written because it runs once per record on the decoder's hot path.

/// Microseconds in one hour.
pub const MICROS_PER_HOUR: i64 = 3_600_000_000;
/// Microseconds in one day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parses an ISO-8601 / RFC 3339 timestamp into microseconds since the Unix epoch (UTC).
///
/// Accepts `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM|±HHMM]`, and a bare date. Without a
/// zone the time is taken as UTC (Azure Monitor writes UTC). Digits past microseconds are
/// truncated. Returns `None` for anything else.
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 10 {
        return None;
    }
    let year = digits(b, 0, 4)? as i64;
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut micros = days_from_civil(year, month, day) * MICROS_PER_DAY;
    if b.len() == 10 {
        return Some(micros);
    }
    if (b[10] != b'T' && b[10] != b't' && b[10] != b' ') || b.len() < 19 {
        return None;
    }
    let hour = digits(b, 11, 2)? as i64;
    let minute = digits(b, 14, 2)? as i64;
    let second = digits(b, 17, 2)? as i64;
    if b[13] != b':' || b[16] != b':' || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    micros += ((hour * 60 + minute) * 60 + second) * 1_000_000;
    let mut i = 19;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        let mut frac: i64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                frac = frac * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..6 {
            frac *= 10;
        }
        micros += frac;
    }
    match &b[i..] {
        [] | [b'Z'] | [b'z'] => Some(micros),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (
                    digits(&[*h1, *h2], 0, 2)? as i64,
                    digits(&[*m1, *m2], 0, 2)? as i64,
                ),
                [h1, h2] => (digits(&[*h1, *h2], 0, 2)? as i64, 0),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let offset = (h * 60 + m) * 60_000_000;
            Some(if *sign == b'+' {
                micros - offset
            } else {
                micros + offset
            })
        }
        _ => None,
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(at..at + n)? {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DD` of a day count.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day count of a `YYYY-MM-DD` date, or `None` when it is not a real calendar date.
pub fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let days = days_from_civil(i64::from(y), m, d);
    ((1..=12).contains(&m) && d >= 1 && format_date(days) == s).then_some(days)
}

/// The day (since epoch) and hour of day (0–23) of a UTC timestamp in microseconds.
pub fn day_and_hour(micros: i64) -> (i32, i32) {
    let day = micros.div_euclid(MICROS_PER_DAY);
    let hour = micros.rem_euclid(MICROS_PER_DAY) / MICROS_PER_HOUR;
    (day as i32, hour as i32)
}

/// RFC 3339 rendering (`2026-11-24T06:49:48.123456Z`) of a UTC timestamp in microseconds.
pub fn format_timestamp_micros(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let (h, rem) = (rem / MICROS_PER_HOUR, rem % MICROS_PER_HOUR);
    let (m, rem) = (rem / 60_000_000, rem % 60_000_000);
    let (s, us) = (rem / 1_000_000, rem % 1_000_000);
    format!("{}T{h:02}:{m:02}:{s:02}.{us:06}Z", format_date(days))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_parse_only_when_real() {
        assert_eq!(super::parse_date("1970-01-02"), Some(1));
        assert_eq!(super::parse_date("2024-02-29"), Some(19_782));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "20240101",
            "2024-01-0x",
            "",
        ] {
            assert_eq!(super::parse_date(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn parses_azure_monitor_forms() {
        let base = parse_timestamp_micros("2026-11-01T10:15:30Z").unwrap();
        assert_eq!(base, 1_793_528_130_000_000);
        assert_eq!(
            parse_timestamp_micros("2026-11-01T10:15:30.1234567Z"),
            Some(base + 123_456)
        );
        assert_eq!(
            parse_timestamp_micros("2026-11-01T10:15:30.5"),
            Some(base + 500_000)
        );
        assert_eq!(
            parse_timestamp_micros("2026-11-01 10:15:30.123+00:00"),
            Some(base + 123_000)
        );
        assert_eq!(
            parse_timestamp_micros("2026-11-01T12:15:30+02:00"),
            Some(base)
        );
        assert_eq!(
            parse_timestamp_micros("2026-11-01T05:15:30-0500"),
            Some(base)
        );
        assert_eq!(
            parse_timestamp_micros("2026-11-01"),
            Some(base - (10 * 3600 + 15 * 60 + 30) * 1_000_000)
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-01T25:00:00Z",
            "2026-11-01T10:15:30.Z",
            "2026-11-01T10:15:30.1234567890Z",
            "2026-11-01T10:15:30+2",
            "2026-11-01T10:15:30 UTC",
        ] {
            assert_eq!(parse_timestamp_micros(s), None, "{s}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(day_and_hour(-1), (-1, 23));
        assert_eq!(
            format_timestamp_micros(1_793_528_130_123_456),
            "2026-11-01T10:15:30.123456Z"
        );
    }
}
