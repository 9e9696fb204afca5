//! Byte-level helpers shared by the SIP codec: character classes (RFC 3261 §25.1), trimming,
//! integer formatting without `core::fmt`, escape decoding and top-level list splitting.

/// 256-entry lookup table of `token_char`.
const fn token_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = token_char(i as u8);
        i += 1;
    }
    t
}

const fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

static TOKEN: [bool; 256] = token_table();

/// `token` character (RFC 3261 §25.1).
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[b as usize]
}

/// True when `s` is a non-empty token.
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// `unreserved` = alphanum / mark.
#[inline]
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

/// SP or HTAB.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Removes leading and trailing SP / HTAB.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let (start, end) = trim_range(s);
    s.get(start..end).unwrap_or_default()
}

/// Offsets `(start, end)` of `s` trimmed of SP / HTAB.
pub(crate) fn trim_range(s: &[u8]) -> (usize, usize) {
    let start = s.iter().position(|&b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ws(b)).map_or(start, |p| p + 1);
    (start, end)
}

/// Appends the decimal form of `n`.
pub(crate) fn write_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Decimal digits only (at least one), saturating at `u64::MAX`.
pub(crate) fn parse_digits_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(n)
}

/// Value of an ASCII hex digit.
#[inline]
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Iterator over the bytes of `s` with `%HH` escapes decoded (a `%` not followed by two hex
/// digits is yielded as is).
#[derive(Clone)]
pub(crate) struct Unescape<'a> {
    s: &'a [u8],
}

impl<'a> Unescape<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Unescape { s }
    }
}

impl Iterator for Unescape<'_> {
    type Item = u8;
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.s.split_first()?;
        if b == b'%'
            && let [h, l, tail @ ..] = rest
            && let (Some(h), Some(l)) = (hex_val(*h), hex_val(*l))
        {
            self.s = tail;
            return Some(h * 16 + l);
        }
        self.s = rest;
        Some(b)
    }
}

/// Equality after `%HH` decoding, case-sensitive.
pub(crate) fn eq_unescaped(a: &str, b: &str) -> bool {
    Unescape::new(a.as_bytes()).eq(Unescape::new(b.as_bytes()))
}

/// Equality after `%HH` decoding, ASCII case-insensitive.
pub(crate) fn eq_unescaped_nocase(a: &str, b: &str) -> bool {
    Unescape::new(a.as_bytes())
        .map(|c| c.to_ascii_lowercase())
        .eq(Unescape::new(b.as_bytes()).map(|c| c.to_ascii_lowercase()))
}

/// `%HH`-decoded text (invalid UTF-8 replaced).
pub(crate) fn unescape_string(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes: Vec<u8> = Unescape::new(s.as_bytes()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Text of bytes known to be ASCII (lossy for safety).
pub(crate) fn ascii_string(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

/// Splits `s` at `sep` bytes that are outside double quotes (with `\` escapes) and outside
/// `<...>`. Yields every item, including empty ones.
pub(crate) struct TopLevelSplit<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
}

pub(crate) fn split_top_level(s: &[u8], sep: u8) -> TopLevelSplit<'_> {
    TopLevelSplit { rest: Some(s), sep }
}

impl<'a> Iterator for TopLevelSplit<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut in_quotes = false;
        let mut in_angle = false;
        let mut escaped = false;
        for (i, &b) in s.iter().enumerate() {
            if in_quotes {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_quotes = false;
                }
                continue;
            }
            if in_angle {
                if b == b'>' {
                    in_angle = false;
                }
                continue;
            }
            match b {
                b'"' => in_quotes = true,
                b'<' => in_angle = true,
                _ if b == self.sep => {
                    self.rest = s.get(i + 1..);
                    return s.get(..i);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// Writes `s` as a quoted-string: `"` and `\` and control characters are escaped with `\`;
/// CR and LF (which cannot be escaped, RFC 3261 §25.1 quoted-pair) become spaces.
pub(crate) fn write_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'\r' | b'\n' => out.push(b' '),
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            b'\t' => out.push(b),
            0..=0x1f | 0x7f => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_formats() {
        assert_eq!(trim(b"  a b \t"), b"a b");
        assert_eq!(trim(b" \t "), b"");
        assert_eq!(trim(b""), b"");
        let mut v = Vec::new();
        write_uint(&mut v, 0);
        v.push(b' ');
        write_uint(&mut v, u64::MAX);
        assert_eq!(v, b"0 18446744073709551615");
        assert_eq!(parse_digits_u64(b"99999999999999999999999"), Some(u64::MAX));
        assert_eq!(parse_digits_u64(b"1a"), None);
    }

    #[test]
    fn unescape_iter() {
        let s: Vec<u8> = Unescape::new(b"%61lice%2").collect();
        assert_eq!(s, b"alice%2");
        assert!(eq_unescaped_nocase("%41B", "ab"));
        assert!(!eq_unescaped("%41B", "ab"));
    }

    #[test]
    fn split_respects_quotes_and_angles() {
        let items: Vec<&[u8]> = split_top_level(br#""a,\"b" <sip:x,y>;p=1, c,,"#, b',').collect();
        assert_eq!(
            items,
            vec![&br#""a,\"b" <sip:x,y>;p=1"#[..], b" c", b"", b""]
        );
    }
}
