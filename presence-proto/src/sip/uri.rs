//! SIP and SIPS URIs (RFC 3261 §19.1): parsing, serialization and §19.1.4 comparison.

use nom::Parser;
use nom::branch::alt;
use nom::bytes::complete::tag_no_case;
use nom::character::complete::char;
use nom::combinator::{opt, value};
use nom::multi::{many0, separated_list1};
use nom::sequence::{preceded, separated_pair, terminated};

use super::grammar::{In, Res, complete, escaped0, escaped1, host, port};
use super::text::{
    ascii_string, eq_unescaped, eq_unescaped_nocase, is_unreserved, unescape_string, write_uint,
};

/// A `sip:` or `sips:` URI. Other schemes (`tel:`, `urn:`...) are rejected by [`Uri::parse`].
/// User and password are kept as written (escapes undecoded) so the URI re-serializes
/// byte-for-byte; comparisons decode escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub sips: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host as written (IPv6 references keep their brackets).
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` URI parameters, order kept.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` URI headers, order kept.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    /// Parses a complete URI (the whole input must be consumed, surrounding whitespace allowed).
    pub fn parse(input: &[u8]) -> Option<Uri> {
        complete(input, sip_uri)
    }
    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.sips { b"sips:" } else { b"sip:" });
        if let Some(user) = &self.user {
            out.extend_from_slice(user.as_bytes());
            if let Some(password) = &self.password {
                out.push(b':');
                out.extend_from_slice(password.as_bytes());
            }
            out.push(b'@');
        }
        out.extend_from_slice(self.host.as_bytes());
        if let Some(port) = self.port {
            out.push(b':');
            write_uint(out, u64::from(port));
        }
        for (name, value) in &self.params {
            out.push(b';');
            out.extend_from_slice(name.as_bytes());
            if let Some(value) = value {
                out.push(b'=');
                out.extend_from_slice(value.as_bytes());
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            out.push(if i == 0 { b'?' } else { b'&' });
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
    }
    /// Value of a URI parameter (name case-insensitive); `Some(None)` for a flag parameter.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    /// RFC 3261 §19.1.4 equality: scheme, user and password case-sensitive after unescaping, host
    /// case-insensitive, ports equal (absent ≠ 5060), `user`/`ttl`/`method`/`maddr`/`transport`
    /// must match when either side has them, other parameters must match when both have them,
    /// URI headers must match as sets.
    ///
    /// Parameter names and values compare case-insensitively after unescaping; URI header names
    /// compare case-insensitively and values case-sensitively, both after unescaping. When a
    /// parameter appears several times, the first occurrence counts.
    pub fn rfc_eq(&self, other: &Uri) -> bool {
        if self.sips != other.sips
            || !opt_eq(&self.user, &other.user, eq_unescaped)
            || !opt_eq(&self.password, &other.password, eq_unescaped)
            || !self.host.eq_ignore_ascii_case(&other.host)
            || self.port != other.port
        {
            return false;
        }
        for name in ["user", "ttl", "method", "maddr", "transport"] {
            match (
                find_param(&self.params, name),
                find_param(&other.params, name),
            ) {
                (None, None) => {}
                (Some(a), Some(b)) if param_value_eq(a, b) => {}
                _ => return false,
            }
        }
        for (name, a) in &self.params {
            if is_special_param(name) {
                continue;
            }
            if let Some(b) = find_param(&other.params, name)
                && !param_value_eq(a, b)
            {
                return false;
            }
        }
        headers_subset(&self.headers, &other.headers)
            && headers_subset(&other.headers, &self.headers)
    }
    /// The address-of-record key used to index presentities and watchers:
    /// `user@host` with the user unescaped and the host lower-cased, port and parameters
    /// dropped, except `;user=phone` which is kept (a phone number is another identity).
    pub fn aor_key(&self) -> String {
        let mut key = String::with_capacity(self.host.len() + 24);
        if let Some(user) = &self.user {
            key.push_str(&unescape_string(user));
            key.push('@');
        }
        key.push_str(&self.host.to_ascii_lowercase());
        if find_param(&self.params, "user").is_some_and(|v| {
            v.as_deref()
                .is_some_and(|v| eq_unescaped_nocase(v, "phone"))
        }) {
            key.push_str(";user=phone");
        }
        key
    }
    /// `sip:user@host` (scheme kept, port and parameters dropped): the identity form used as
    /// PIDF `entity`.
    pub fn identity(&self) -> String {
        let mut id = String::with_capacity(self.host.len() + 24);
        id.push_str(if self.sips { "sips:" } else { "sip:" });
        if let Some(user) = &self.user {
            id.push_str(user);
            id.push('@');
        }
        id.push_str(&self.host);
        id
    }
}

fn opt_eq(a: &Option<String>, b: &Option<String>, eq: fn(&str, &str) -> bool) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => eq(a, b),
        _ => false,
    }
}

fn is_special_param(name: &str) -> bool {
    ["user", "ttl", "method", "maddr", "transport"]
        .iter()
        .any(|s| eq_unescaped_nocase(name, s))
}

fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<&'a Option<String>> {
    params
        .iter()
        .find(|(n, _)| eq_unescaped_nocase(n, name))
        .map(|(_, v)| v)
}

fn param_value_eq(a: &Option<String>, b: &Option<String>) -> bool {
    opt_eq(a, b, eq_unescaped_nocase)
}

/// Every header of `a` has an equal header in `b`.
fn headers_subset(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.iter().all(|(an, av)| {
        b.iter()
            .any(|(bn, bv)| eq_unescaped_nocase(an, bn) && eq_unescaped(av, bv))
    })
}

/// `user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"`.
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

/// `paramchar = param-unreserved / unreserved / escaped`.
fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

/// `hnv-unreserved / unreserved`.
fn is_hnv_char(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

fn user(i: In<'_>) -> Res<'_, In<'_>> {
    escaped1(i, is_user_char)
}

fn password(i: In<'_>) -> Res<'_, In<'_>> {
    escaped0(i, is_password_char)
}

fn pchars(i: In<'_>) -> Res<'_, In<'_>> {
    escaped1(i, is_param_char)
}

fn hname(i: In<'_>) -> Res<'_, In<'_>> {
    escaped1(i, is_hnv_char)
}

fn hvalue(i: In<'_>) -> Res<'_, In<'_>> {
    escaped0(i, is_hnv_char)
}

/// `SIP-URI / SIPS-URI` (RFC 3261 §25.1). The scheme is case-insensitive.
pub(crate) fn sip_uri(i: In<'_>) -> Res<'_, Uri> {
    let (i, sips) = alt((
        value(true, tag_no_case(&b"sips:"[..])),
        value(false, tag_no_case(&b"sip:"[..])),
    ))
    .parse(i)?;
    let (i, userinfo) = opt(terminated(
        (user, opt(preceded(char(':'), password))),
        char('@'),
    ))
    .parse(i)?;
    let (i, host) = host(i)?;
    let (i, port) = opt(preceded(char(':'), port)).parse(i)?;
    let (i, params) = many0(preceded(
        char(';'),
        (pchars, opt(preceded(char('='), pchars))),
    ))
    .parse(i)?;
    let (i, headers) = opt(preceded(
        char('?'),
        separated_list1(char('&'), separated_pair(hname, char('='), hvalue)),
    ))
    .parse(i)?;
    let (user, password) = match userinfo {
        Some((u, p)) => (Some(ascii_string(u)), p.map(ascii_string)),
        None => (None, None),
    };
    let uri = Uri {
        sips,
        user,
        password,
        host: ascii_string(host),
        port,
        params: params
            .into_iter()
            .map(|(n, v)| (ascii_string(n), v.map(ascii_string)))
            .collect(),
        headers: headers
            .unwrap_or_default()
            .into_iter()
            .map(|(n, v)| (ascii_string(n), ascii_string(v)))
            .collect(),
    };
    Ok((i, uri))
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}
