//! Tiny text writers for the hot path: JSON strings, integers, hex, UUIDs, IPv4 addresses
//! and timestamps, appended to a byte buffer without going through `fmt`.

const HEX: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Microseconds in one second, hour and day.
pub(crate) const SECOND: i64 = 1_000_000;
pub(crate) const MINUTE: i64 = 60 * SECOND;
pub(crate) const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Appends `s` as a JSON string literal, escaping what JSON requires.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x00..=0x1f => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                _ => out.push(b),
            }
        }
    }
    out.push(b'"');
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    push_padded(out, n, 1);
}

/// Appends the decimal digits of `n`, left-padded with zeros to at least `width` digits.
pub(crate) fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut start = buf.len();
    while n > 0 {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let digits = buf.len() - start;
    for _ in digits..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[start..]);
}

/// Appends the low `digits` hex digits of `v`, most significant first.
pub(crate) fn push_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (4 * i)) & 0xf) as usize]);
    }
}

/// Turns 128 random bits into a version-4, RFC 4122 variant UUID value.
pub(crate) fn uuid_v4(bits: u128) -> u128 {
    let bits = (bits & !(0xf << 76)) | (0x4 << 76);
    (bits & !(0x3 << 62)) | (0x2 << 62)
}

/// Appends `u` in the 8-4-4-4-12 hex form.
pub(crate) fn push_uuid(out: &mut Vec<u8>, u: u128, upper: bool) {
    let table = if upper { HEX_UPPER } else { HEX };
    for i in 0..32u32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push(b'-');
        }
        out.push(table[((u >> (124 - 4 * i)) & 0xf) as usize]);
    }
}

/// `u` in the 8-4-4-4-12 hex form.
pub(crate) fn uuid_string(u: u128, upper: bool) -> String {
    let mut out = Vec::with_capacity(36);
    push_uuid(&mut out, u, upper);
    ascii_string(out)
}

/// Appends a dotted-quad IPv4 address.
pub(crate) fn push_ip(out: &mut Vec<u8>, ip: [u8; 4]) {
    for (i, octet) in ip.into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u64(out, u64::from(octet));
    }
}

/// A dotted-quad IPv4 address.
pub(crate) fn ip_string(ip: [u8; 4]) -> String {
    let mut out = Vec::with_capacity(15);
    push_ip(&mut out, ip);
    ascii_string(out)
}

/// Converts bytes this module wrote (always ASCII) to a `String`.
fn ascii_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// How a record's `time` is spelled; all of them occur in real exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeStyle {
    /// `2026-11-01T10:15:30.1234567Z` (100 ns ticks), the usual form.
    Ticks,
    /// `2026-11-01T10:15:30.123Z`.
    Millis,
    /// `2026-11-01T10:15:30Z`.
    Seconds,
    /// `2026-11-01T10:15:30.1234567+00:00`.
    TicksOffset,
}

/// Appends `micros` (UTC since the epoch) as a quoted ISO 8601 timestamp. `tick` (0-9) is
/// the sub-microsecond seventh fractional digit.
pub(crate) fn push_time(out: &mut Vec<u8>, micros: i64, tick: u8, style: TimeStyle) {
    let days = micros.div_euclid(DAY);
    let of_day = micros.rem_euclid(DAY);
    let (year, month, day) = civil_from_days(days);
    let part = |n: i64| u64::try_from(n).unwrap_or(0);
    out.push(b'"');
    push_padded(out, part(year), 4);
    out.push(b'-');
    push_padded(out, part(month), 2);
    out.push(b'-');
    push_padded(out, part(day), 2);
    out.push(b'T');
    push_padded(out, part(of_day / HOUR), 2);
    out.push(b':');
    push_padded(out, part(of_day % HOUR / MINUTE), 2);
    out.push(b':');
    push_padded(out, part(of_day % MINUTE / SECOND), 2);
    let fraction = part(of_day % SECOND);
    match style {
        TimeStyle::Ticks | TimeStyle::TicksOffset => {
            out.push(b'.');
            push_padded(out, fraction * 10 + u64::from(tick % 10), 7);
        }
        TimeStyle::Millis => {
            out.push(b'.');
            push_padded(out, fraction / 1000, 3);
        }
        TimeStyle::Seconds => {}
    }
    if style == TimeStyle::TicksOffset {
        out.extend_from_slice(b"+00:00\"");
    } else {
        out.extend_from_slice(b"Z\"");
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn civil_round_trips() {
        for days in [-800_000, -1, 0, 1, 11_016, 20_758, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn timestamps_in_every_style() {
        let t =
            days_from_civil(2026, 11, 1) * DAY + 10 * HOUR + 15 * MINUTE + 30 * SECOND + 123_456;
        assert_eq!(
            text(|o| push_time(o, t, 7, TimeStyle::Ticks)),
            "\"2026-11-01T10:15:30.1234567Z\""
        );
        assert_eq!(
            text(|o| push_time(o, t, 7, TimeStyle::Millis)),
            "\"2026-11-01T10:15:30.123Z\""
        );
        assert_eq!(
            text(|o| push_time(o, t, 7, TimeStyle::Seconds)),
            "\"2026-11-01T10:15:30Z\""
        );
        assert_eq!(
            text(|o| push_time(o, t, 0, TimeStyle::TicksOffset)),
            "\"2026-11-01T10:15:30.1234560+00:00\""
        );
    }

    #[test]
    fn numbers_uuids_and_escapes() {
        assert_eq!(text(|o| push_u64(o, 0)), "0");
        assert_eq!(text(|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(text(|o| push_padded(o, 42, 5)), "00042");
        assert_eq!(text(|o| push_hex(o, 0xab, 4)), "00ab");
        assert_eq!(
            uuid_string(uuid_v4(0), false),
            "00000000-0000-4000-8000-000000000000"
        );
        assert_eq!(
            uuid_string(u128::MAX, true),
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"
        );
        assert_eq!(ip_string([10, 0, 255, 1]), "10.0.255.1");
        let escaped = text(|o| push_json_str(o, "a\"b\\c\nd\u{1}é"));
        assert_eq!(escaped, "\"a\\\"b\\\\c\\nd\\u0001é\"");
        let back: Result<String, _> = serde_json::from_str(&escaped);
        assert_eq!(back.ok().as_deref(), Some("a\"b\\c\nd\u{1}é"));
    }
}
