//! Event time: epoch milliseconds and their ISO-8601 UTC text form, without a date
//! library (the hot paths parse hundreds of thousands of timestamps a second).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMillis = i64;

/// The wall clock in epoch milliseconds.
pub fn now_millis() -> EpochMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats as `2026-11-26T12:00:00.123Z`.
pub fn format_millis(ms: EpochMillis) -> String {
    let mut out = String::with_capacity(24);
    write_millis(&mut out, ms);
    out
}

/// Appends the `2026-11-26T12:00:00.123Z` form of `ms` to `out`.
pub fn write_millis(out: &mut String, ms: EpochMillis) {
    use std::fmt::Write;
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"
    );
}

/// Formats as ClickHouse's `DateTime64(3)` text, `2026-11-26 12:00:00.123` (UTC).
pub fn format_clickhouse(ms: EpochMillis) -> String {
    let mut s = format_millis(ms);
    s.pop();
    s.replace('T', " ")
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let slice = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in slice {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parses ISO-8601 date-times: `2026-11-26T12:00:00Z`, with `.f` to `.fffffffff`
/// fractions, a `Z`, `+hh:mm`/`-hh:mm` offset or none (read as UTC, as Python's
/// `datetime.utcnow().isoformat()` writes), and `T` or a space between date and time.
/// Fractions below a millisecond are truncated.
pub fn parse_iso8601(s: &str) -> Option<EpochMillis> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (h, mi, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let off = digits(b, i + 1, 2)? * 60 + digits(b, i + 4, 2)?;
            if sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [
            0,
            1_764_158_400_123,
            951_782_400_000,
            -86_400_001,
            4_102_444_799_999,
        ] {
            assert_eq!(
                parse_iso8601(&format_millis(ms)),
                Some(ms),
                "{}",
                format_millis(ms)
            );
        }
        assert_eq!(format_millis(1_764_158_400_123), "2025-11-26T12:00:00.123Z");
        assert_eq!(
            format_clickhouse(1_764_158_400_123),
            "2025-11-26 12:00:00.123"
        );
    }

    #[test]
    fn accepts_common_forms() {
        let base = parse_iso8601("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_iso8601("2026-01-02T03:04:05.5Z"), Some(base + 500));
        assert_eq!(
            parse_iso8601("2026-01-02T03:04:05.123456"),
            Some(base + 123)
        );
        assert_eq!(parse_iso8601("2026-01-02 03:04:05"), Some(base));
        assert_eq!(parse_iso8601("2026-01-02T05:04:05+02:00"), Some(base));
        for bad in [
            "",
            "2026-13-02T03:04:05Z",
            "2026-01-02T03:04:05Q",
            "yesterday",
            "2026-01-02T03:04:05.",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
