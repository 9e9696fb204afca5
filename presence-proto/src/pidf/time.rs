//! RFC 3339 / xs:dateTime timestamps as comparable instants.

/// Parses an RFC 3339 date-time (`2026-01-01T10:00:00.250+02:00`) into milliseconds since the
/// Unix epoch, so that timestamps written in different zones compare as instants.
///
/// Accepted: `YYYY-MM-DD`, `T` (or `t`, or a space), `hh:mm:ss`, optional fractional seconds
/// (any number of digits, truncated to milliseconds), then `Z`/`z`, `+hh:mm`, `-hh:mm`, or no
/// zone at all (taken as UTC). Surrounding XML whitespace is ignored. A leap second (`:60`) is
/// accepted. Anything else gives `None`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s
        .trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        .as_bytes();
    if s.len() < 19 {
        return None;
    }
    let year = digits(s, 0, 4)?;
    let month = digits(s, 5, 2)?;
    let day = digits(s, 8, 2)?;
    let hour = digits(s, 11, 2)?;
    let minute = digits(s, 14, 2)?;
    let second = digits(s, 17, 2)?;
    if s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(s[i] - b'0');
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
    let offset_minutes = match s.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == s.len() && s[i + 3] == b':' => {
            let oh = digits(s, i + 1, 2)?;
            let om = digits(s, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1_000 + millis)
}

/// `n` ASCII digits at `at`, as a number.
fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let d = s.get(at..at + n)?;
    let mut v = 0i64;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800_000));
        assert_eq!(
            parse_rfc3339("2026-11-23T20:02:47Z"),
            Some(1_795_464_167_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1_000));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000)
        );
    }

    #[test]
    fn zones_are_applied() {
        let a = parse_rfc3339("2026-01-01T10:00:00+02:00").unwrap();
        let b = parse_rfc3339("2026-01-01T09:00:00Z").unwrap();
        assert!(a < b);
        assert_eq!(a, parse_rfc3339("2026-01-01T08:00:00Z").unwrap());
        assert_eq!(
            parse_rfc3339("2026-01-01T00:30:00-01:30"),
            parse_rfc3339("2026-01-01T02:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-01-01T02:00:00"),
            parse_rfc3339("2026-01-01T02:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-01-01t02:00:00z"),
            parse_rfc3339("2026-01-01T02:00:00Z")
        );
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.25Z"), Some(1_250));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.123456789Z"), Some(1_123));
        assert_eq!(parse_rfc3339(" 1970-01-01T00:00:01.007\n"), Some(1_007));
    }

    #[test]
    fn refused() {
        for s in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0200",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01X00:00:00Z",
            "2026-1-01T00:00:00Z",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }
}
