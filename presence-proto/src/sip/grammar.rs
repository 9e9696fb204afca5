//! nom 8 building blocks of the RFC 3261 §25 grammar shared by the URI and header parsers.
//! All parsers work on complete (unfolded, already delimited) `&[u8]` input.

use std::net::Ipv6Addr;

use nom::branch::alt;
use nom::bytes::complete::{take_while, take_while_m_n, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{all_consuming, map, map_opt, opt, recognize, verify};
use nom::error::Error;
use nom::multi::{many0, many0_count, many1_count};
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

use super::header::Params;
use super::text::{ascii_string, is_token, is_ws, parse_digits_u64};

pub(crate) type In<'a> = &'a [u8];
pub(crate) type Res<'a, O> = IResult<In<'a>, O>;

/// Runs `p` on the whole of `input` (surrounding SP/HT allowed).
pub(crate) fn complete<'a, O, P>(input: In<'a>, p: P) -> Option<O>
where
    P: Parser<In<'a>, Output = O, Error = Error<In<'a>>>,
{
    all_consuming(delimited(sws, p, sws))
        .parse(input)
        .ok()
        .map(|(_, o)| o)
}

/// `SWS`: optional SP/HT (the header value is already unfolded).
pub(crate) fn sws(i: In<'_>) -> Res<'_, In<'_>> {
    take_while(is_ws).parse(i)
}

/// `LWS`: at least one SP/HT.
pub(crate) fn lws(i: In<'_>) -> Res<'_, In<'_>> {
    take_while1(is_ws).parse(i)
}

pub(crate) fn token(i: In<'_>) -> Res<'_, In<'_>> {
    take_while1(is_token).parse(i)
}

/// `escaped = "%" HEXDIG HEXDIG`.
fn escape(i: In<'_>) -> Res<'_, In<'_>> {
    recognize((
        char('%'),
        take_while_m_n(2, 2, |b: u8| b.is_ascii_hexdigit()),
    ))
    .parse(i)
}

/// One or more bytes of `class` or escapes.
pub(crate) fn escaped1(i: In<'_>, class: fn(u8) -> bool) -> Res<'_, In<'_>> {
    recognize(many1_count(alt((take_while1(class), escape)))).parse(i)
}

/// Zero or more bytes of `class` or escapes.
pub(crate) fn escaped0(i: In<'_>, class: fn(u8) -> bool) -> Res<'_, In<'_>> {
    recognize(many0_count(alt((take_while1(class), escape)))).parse(i)
}

fn is_ipv6_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

fn is_valid_ipv6(s: &[u8]) -> bool {
    std::str::from_utf8(s)
        .ok()
        .and_then(|s| s.parse::<Ipv6Addr>().ok())
        .is_some()
}

/// `IPv6reference = "[" IPv6address "]"`, brackets included in the output.
fn ipv6_reference(i: In<'_>) -> Res<'_, In<'_>> {
    recognize(delimited(
        char('['),
        verify(take_while1(is_ipv6_char), is_valid_ipv6),
        char(']'),
    ))
    .parse(i)
}

fn is_hostname_char(b: u8) -> bool {
    // `_` is not in RFC 3261 but appears in container and internal host names.
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// `hostname / IPv4address` (RFC 3261 §25.1): labels of alphanum and inner `-`, a top label
/// starting with a letter and an optional final dot; or four dot-separated 1-3 digit numbers.
fn is_valid_hostname(h: &[u8]) -> bool {
    let trimmed = h.strip_suffix(b".").unwrap_or(h);
    if trimmed.is_empty() {
        return false;
    }
    let mut labels = 0usize;
    let mut all_numeric = true;
    let mut last: &[u8] = &[];
    for label in trimmed.split(|&b| b == b'.') {
        let (Some(&first), Some(&end)) = (label.first(), label.last()) else {
            return false;
        };
        if first == b'-' || end == b'-' {
            return false;
        }
        if !(label.len() <= 3 && label.iter().all(u8::is_ascii_digit)) {
            all_numeric = false;
        }
        labels += 1;
        last = label;
    }
    if last.first().is_some_and(u8::is_ascii_alphabetic) {
        return true;
    }
    // A top label starting with a digit: only an IPv4 address (no trailing dot).
    all_numeric && labels == 4 && trimmed.len() == h.len()
}

/// `host = hostname / IPv4address / IPv6reference`, as written.
pub(crate) fn host(i: In<'_>) -> Res<'_, In<'_>> {
    alt((
        ipv6_reference,
        verify(take_while1(is_hostname_char), is_valid_hostname),
    ))
    .parse(i)
}

/// `port = 1*DIGIT`, within `u16`.
pub(crate) fn port(i: In<'_>) -> Res<'_, u16> {
    map_opt(digit1, |d: In<'_>| {
        parse_digits_u64(d).and_then(|n| u16::try_from(n).ok())
    })
    .parse(i)
}

fn is_qdtext(b: u8) -> bool {
    // qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII (any byte >= 0x80 accepted).
    b == b'\t' || (b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
}

/// `quoted-string`, quotes included in the output.
pub(crate) fn quoted_string(i: In<'_>) -> Res<'_, In<'_>> {
    recognize((
        char('"'),
        many0_count(alt((
            take_while1(is_qdtext),
            recognize((
                char('\\'),
                take_while_m_n(1, 1, |b: u8| b != b'\r' && b != b'\n'),
            )),
        ))),
        char('"'),
    ))
    .parse(i)
}

/// Content of a quoted-string (as recognized by [`quoted_string`]) with quotes and escapes
/// removed; invalid UTF-8 replaced.
pub(crate) fn unquote(q: &[u8]) -> String {
    let inner = q
        .strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(q);
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if !escaped && b == b'\\' {
            escaped = true;
        } else {
            escaped = false;
            out.push(b);
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn is_gen_value_char(b: u8) -> bool {
    // token / host (with IPv6 references) / unbracketed IPv6 (Via `received`).
    is_token(b) || b == b':' || b == b'[' || b == b']'
}

/// `gen-value = token / host / quoted-string`, quotes kept.
fn gen_value(i: In<'_>) -> Res<'_, In<'_>> {
    alt((quoted_string, take_while1(is_gen_value_char))).parse(i)
}

/// `generic-param = token [ EQUAL gen-value ]`.
fn generic_param(i: In<'_>) -> Res<'_, (String, Option<String>)> {
    map(
        (token, opt(preceded((sws, char('='), sws), gen_value))),
        |(n, v)| {
            (
                ascii_string(n),
                v.map(|v| String::from_utf8_lossy(v).into_owned()),
            )
        },
    )
    .parse(i)
}

/// `*( SEMI generic-param )`.
pub(crate) fn generic_params(i: In<'_>) -> Res<'_, Params> {
    map(
        many0(preceded((sws, char(';'), sws), generic_param)),
        Params,
    )
    .parse(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_ok(h: &str) -> bool {
        complete(h.as_bytes(), host).is_some()
    }

    #[test]
    fn hosts() {
        for ok in [
            "atlanta.com",
            "a",
            "127.0.0.1",
            "[::1]",
            "[2001:db8::1]",
            "host.",
            "a-b.c-d.org",
        ] {
            assert!(host_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "-a.com",
            "a-.com",
            "a..b",
            "1.2.3",
            "1.2.3.4.",
            "999.1.1.1.1",
            "[::g]",
            "[]",
            "a.1b",
        ] {
            assert!(!host_ok(bad), "{bad}");
        }
        assert!(host_ok("[::ffff:192.0.2.1]"));
    }

    #[test]
    fn quoted() {
        let (rest, q) = quoted_string(br#""a \"b\" \\ c" x"#).unwrap();
        assert_eq!(rest, b" x");
        assert_eq!(unquote(q), r#"a "b" \ c"#);
        assert!(quoted_string(br#""unterminated"#).is_err());
        assert_eq!(unquote(b"\"\xff\""), "\u{fffd}");
    }

    #[test]
    fn params() {
        let p = complete(
            b" ; a = 1 ;b; c=\"x;y\";d=[::1];received=2001:db8::9 ",
            generic_params,
        )
        .unwrap();
        assert_eq!(p.get("A"), Some(Some("1")));
        assert_eq!(p.get("b"), Some(None));
        assert_eq!(p.get("c"), Some(Some("\"x;y\"")));
        assert_eq!(p.get("d"), Some(Some("[::1]")));
        assert_eq!(p.get("received"), Some(Some("2001:db8::9")));
        assert!(complete(b";a=", generic_params).is_none());
        assert!(complete(b";", generic_params).is_none());
    }
}
