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
        for (i, (name, a)) in self.params.iter().enumerate() {
            let repeated = || {
                self.params
                    .iter()
                    .take(i)
                    .any(|(n, _)| eq_unescaped_nocase(n, name))
            };
            if is_special_param(name) || repeated() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Uri {
        Uri::parse(s.as_bytes()).unwrap_or_else(|| panic!("parse {s}"))
    }

    fn w(u: &Uri) -> String {
        let mut out = Vec::new();
        u.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_components() {
        let u = p(
            "sips:alice:secret@Atlanta.com:5061;transport=tls;lr;maddr=[2001:db8::1]?subject=project%20x&priority=urgent",
        );
        assert!(u.sips);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "Atlanta.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("maddr"), Some(Some("[2001:db8::1]")));
        assert_eq!(u.param("ttl"), None);
        assert_eq!(
            u.headers,
            vec![
                ("subject".into(), "project%20x".into()),
                ("priority".into(), "urgent".into())
            ]
        );

        let u = p("sip:127.0.0.1;transport=tcp");
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port),
            (None, "127.0.0.1", None)
        );
        let u = p("sip:host:5060");
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port),
            (None, "host", Some(5060))
        );
        let u = p("SIP:[::1]:5070");
        assert_eq!(
            (u.sips, u.host.as_str(), u.port),
            (false, "[::1]", Some(5070))
        );
        let u = p("sip:user@[2001:db8::10]");
        assert_eq!(u.host, "[2001:db8::10]");
        let u = p("  sip:+33612345678@127.0.0.1;user=phone \t");
        assert_eq!(u.user.as_deref(), Some("+33612345678"));
        let u = p("sip:alice;day=tuesday@atlanta.com");
        assert_eq!(u.user.as_deref(), Some("alice;day=tuesday"));
        let u = p("sip:user:@host");
        assert_eq!(u.password.as_deref(), Some(""));
        let u = p("sip:bob-0x55dafdadc630@127.0.0.1:58385;transport=tcp");
        assert_eq!(u.user.as_deref(), Some("bob-0x55dafdadc630"));
        let u = p("sip:a@b?x=");
        assert_eq!(u.headers, vec![("x".into(), String::new())]);
    }

    #[test]
    fn escapes() {
        let u = p("sip:%61lice%20b@host");
        assert_eq!(u.user.as_deref(), Some("%61lice%20b"));
        assert_eq!(u.aor_key(), "alice b@host");
        assert!(u.rfc_eq(&p("sip:alice%20b@host")));
        assert!(Uri::parse(b"sip:%6@host").is_none());
        assert!(Uri::parse(b"sip:%zz@host").is_none());
        let u = p("sip:host;x%41=%42");
        assert_eq!(
            u.params,
            vec![("x%41".to_string(), Some("%42".to_string()))]
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "sip:",
            "sip:@host",
            "tel:+123",
            "http://x",
            "sip:host:",
            "sip:host:65536",
            "sip:host:80x",
            "sip:a b@host",
            "sip:host;",
            "sip:host;x=",
            "sip:host?",
            "sip:host?a",
            "sip:host?=b",
            "sip:[::1",
            "sip:[zz]",
            "sip:host>",
            "sip:alice@",
            "sip:-host",
            "sips:alice@host extra",
            "sip:user@host@host",
            "sip:héllo@host",
        ] {
            assert!(Uri::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(Uri::parse(b"sip:a\xff@host").is_none());
    }

    #[test]
    fn writes_as_parsed() {
        for s in [
            "sip:alice@atlanta.com",
            "sips:alice:pw@atlanta.com:5061;transport=tcp;lr?subject=x&a=",
            "sip:[2001:db8::1]:5060;maddr=239.255.255.1;ttl=15",
            "sip:%61lice@h",
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        ] {
            let u = p(s);
            assert_eq!(w(&u), s);
            assert_eq!(u.to_string(), s);
            assert_eq!(p(&w(&u)), u);
        }
        assert_eq!(w(&p("SIP:a@B")), "sip:a@B");
    }

    /// RFC 3261 §19.1.4: URIs that are equivalent.
    #[test]
    fn rfc3261_equal_pairs() {
        let pairs = [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
            (
                "sip:carol@chicago.com;newparam=5",
                "sip:carol@chicago.com;security=on",
            ),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ];
        for (a, b) in pairs {
            assert!(p(a).rfc_eq(&p(b)), "{a} == {b}");
            assert!(p(b).rfc_eq(&p(a)), "{b} == {a}");
        }
    }

    /// RFC 3261 §19.1.4: URIs that are not equivalent.
    #[test]
    fn rfc3261_unequal_pairs() {
        let pairs = [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            (
                "sip:bob@biloxi.com",
                "sip:bob@biloxi.com:6000;transport=tcp",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
            ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
            // Equality is not transitive.
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;security=off",
            ),
            // More of the rules.
            ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
            ("sip:alice@atlanta.com", "sip:atlanta.com"),
            ("sip:alice:a@atlanta.com", "sip:alice:b@atlanta.com"),
            ("sip:alice:a@atlanta.com", "sip:alice@atlanta.com"),
            ("sip:a@h;maddr=1.2.3.4", "sip:a@h"),
            ("sip:a@h;ttl=1", "sip:a@h"),
            ("sip:a@h;method=INVITE", "sip:a@h"),
            ("sip:a@h;user=phone", "sip:a@h"),
            ("sip:a@h;lr", "sip:a@h;lr=on"),
            ("sip:a@h?x=1", "sip:a@h?x=1&y=2"),
            ("sip:a@h?x=a", "sip:a@h?x=A"),
            ("sip:a@h;x=1;x=2", "sip:a@h;x=2"),
        ];
        for (a, b) in pairs {
            assert!(!p(a).rfc_eq(&p(b)), "{a} != {b}");
            assert!(!p(b).rfc_eq(&p(a)), "{b} != {a}");
        }
        assert!(p("sip:a@h?X=a").rfc_eq(&p("sip:a@h?x=%61")));
        // Only the first occurrence of a repeated parameter counts.
        assert!(p("sip:a@h;lr=0;lr").rfc_eq(&p("sip:a@h;lr=0;lr")));
        assert!(p("sip:a@h;x=1;x=2").rfc_eq(&p("sip:a@h;x=1")));
    }

    #[test]
    fn aor_and_identity() {
        let u = p("sips:Bob%2Dx:pw@BILOXI.com:5061;transport=tcp;lr");
        assert_eq!(u.aor_key(), "Bob-x@biloxi.com");
        assert_eq!(u.identity(), "sips:Bob%2Dx@BILOXI.com");
        let u = p("sip:+33612345678@127.0.0.1;transport=tcp;user=Phone");
        assert_eq!(u.aor_key(), "+33612345678@127.0.0.1;user=phone");
        assert_eq!(u.identity(), "sip:+33612345678@127.0.0.1");
        assert_eq!(p("sip:a@h;user=ip").aor_key(), "a@h");
        assert_eq!(p("sip:Example.COM:5060").aor_key(), "example.com");
        assert_eq!(p("sip:Example.COM:5060").identity(), "sip:Example.COM");
    }
}
