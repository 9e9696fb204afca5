//! Header names (with compact forms) and the typed header values a presence server reads,
//! parsed with nom 8 from raw header bytes.

use bytes::Bytes;
use nom::Parser;
use nom::bytes::complete::{take_till, take_while1};
use nom::character::complete::{char, digit1};
use nom::combinator::{map, map_opt, opt, verify};
use nom::sequence::{delimited, preceded, terminated};

use super::grammar::{In, Res, complete, generic_params, lws, quoted_string, sws, token, unquote};
use super::message::Method;
use super::text::{is_ws, parse_digits_u64, split_top_level, trim, write_quoted, write_uint};
use super::uri::Uri;

/// A header name. Known names compare by variant; `Other` compares ASCII case-insensitively.
/// Compact forms (RFC 3261 §7.3.3 and later RFCs: `i` Call-ID, `m` Contact, `e` Content-Encoding,
/// `l` Content-Length, `c` Content-Type, `f` From, `s` Subject, `k` Supported, `t` To, `v` Via,
/// `o` Event, `u` Allow-Events, `r` Refer-To, `b` Referred-By, `x` Session-Expires, `a`
/// Accept-Contact, `j` Reject-Contact, `d` Request-Disposition, `y` Identity, `n` Identity-Info)
/// map to their long form.
#[derive(Debug, Clone, Eq)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    Route,
    RecordRoute,
    Event,
    AllowEvents,
    Expires,
    MinExpires,
    Accept,
    AcceptEncoding,
    ContentType,
    ContentEncoding,
    ContentLength,
    ContentDisposition,
    ContentId,
    Supported,
    Require,
    Allow,
    SipEtag,
    SipIfMatch,
    SubscriptionState,
    UserAgent,
    Server,
    Warning,
    RetryAfter,
    Subject,
    /// Any other name, as written.
    Other(String),
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl HeaderName {
    /// Maps a header name as written (any case, compact or long) to a `HeaderName`.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if let [c] = name {
            let long = match c.to_ascii_lowercase() {
                b'i' => return HeaderName::CallId,
                b'm' => return HeaderName::Contact,
                b'e' => return HeaderName::ContentEncoding,
                b'l' => return HeaderName::ContentLength,
                b'c' => return HeaderName::ContentType,
                b'f' => return HeaderName::From,
                b's' => return HeaderName::Subject,
                b'k' => return HeaderName::Supported,
                b't' => return HeaderName::To,
                b'v' => return HeaderName::Via,
                b'o' => return HeaderName::Event,
                b'u' => return HeaderName::AllowEvents,
                b'r' => "Refer-To",
                b'b' => "Referred-By",
                b'x' => "Session-Expires",
                b'a' => "Accept-Contact",
                b'j' => "Reject-Contact",
                b'd' => "Request-Disposition",
                b'y' => "Identity",
                b'n' => "Identity-Info",
                _ => return HeaderName::Other(String::from_utf8_lossy(name).into_owned()),
            };
            return HeaderName::Other(long.to_owned());
        }
        BY_LEN
            .get(name.len())
            .and_then(|known| {
                known
                    .iter()
                    .find(|(s, _)| s.as_bytes().eq_ignore_ascii_case(name))
            })
            .map_or_else(
                || HeaderName::Other(String::from_utf8_lossy(name).into_owned()),
                |(_, h)| h.clone(),
            )
    }
    /// The canonical long spelling (`Call-ID`, `CSeq`, `SIP-ETag`, `WWW-Authenticate`...).
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Event => "Event",
            HeaderName::AllowEvents => "Allow-Events",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::Accept => "Accept",
            HeaderName::AcceptEncoding => "Accept-Encoding",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentDisposition => "Content-Disposition",
            HeaderName::ContentId => "Content-ID",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::Allow => "Allow",
            HeaderName::SipEtag => "SIP-ETag",
            HeaderName::SipIfMatch => "SIP-If-Match",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Warning => "Warning",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::Subject => "Subject",
            HeaderName::Other(s) => s,
        }
    }
}

/// Long names of the known headers, indexed by length (compared ASCII case-insensitively).
const BY_LEN: [&[(&str, HeaderName)]; 20] = [
    &[],
    &[],
    &[("To", HeaderName::To)],
    &[("Via", HeaderName::Via)],
    &[("From", HeaderName::From), ("CSeq", HeaderName::CSeq)],
    &[
        ("Route", HeaderName::Route),
        ("Event", HeaderName::Event),
        ("Allow", HeaderName::Allow),
    ],
    &[
        ("Accept", HeaderName::Accept),
        ("Server", HeaderName::Server),
    ],
    &[
        ("Call-ID", HeaderName::CallId),
        ("Contact", HeaderName::Contact),
        ("Expires", HeaderName::Expires),
        ("Require", HeaderName::Require),
        ("Warning", HeaderName::Warning),
        ("Subject", HeaderName::Subject),
    ],
    &[("SIP-ETag", HeaderName::SipEtag)],
    &[("Supported", HeaderName::Supported)],
    &[
        ("Content-ID", HeaderName::ContentId),
        ("User-Agent", HeaderName::UserAgent),
    ],
    &[
        ("Min-Expires", HeaderName::MinExpires),
        ("Retry-After", HeaderName::RetryAfter),
    ],
    &[
        ("Max-Forwards", HeaderName::MaxForwards),
        ("Record-Route", HeaderName::RecordRoute),
        ("Allow-Events", HeaderName::AllowEvents),
        ("Content-Type", HeaderName::ContentType),
        ("SIP-If-Match", HeaderName::SipIfMatch),
    ],
    &[],
    &[("Content-Length", HeaderName::ContentLength)],
    &[("Accept-Encoding", HeaderName::AcceptEncoding)],
    &[("Content-Encoding", HeaderName::ContentEncoding)],
    &[],
    &[("Subscription-State", HeaderName::SubscriptionState)],
    &[("Content-Disposition", HeaderName::ContentDisposition)],
];

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Generic `;name=value` parameters, order kept, names compared case-insensitively.
/// Values keep quotes when they were quoted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Value of the first parameter named `name` (case-insensitive); `Some(None)` for a flag.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Appends `;name[=value]` for each parameter.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.0 {
            out.push(b';');
            out.extend_from_slice(name.as_bytes());
            if let Some(value) = value {
                out.push(b'=');
                out.extend_from_slice(value.as_bytes());
            }
        }
    }
}

/// A parameter value with its quotes and `\` escapes removed when it was quoted.
pub fn unquote_value(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        std::borrow::Cow::Owned(unquote(value.as_bytes()))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// `name-addr` or `addr-spec` with header parameters (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted (quotes and escapes removed).
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    /// Parses one name-addr / addr-spec with its parameters. For an addr-spec without `<>`,
    /// the `;params` belong to the header, not the URI (RFC 3261 §20.10).
    pub fn parse(value: &[u8]) -> Option<NameAddr> {
        complete(value, name_addr_or_spec)
    }
    /// Parses a comma-separated list of name-addrs (Route, Record-Route, Contact), respecting
    /// quotes and angle brackets. Empty items are skipped; `None` if any item is malformed or
    /// there is none (so the `Contact: *` wildcard gives `None`).
    pub fn parse_list(value: &[u8]) -> Option<Vec<NameAddr>> {
        parse_items(value, NameAddr::parse)
    }
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
    /// Always writes the `<uri>` form (with a quoted display name when present).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(display) = &self.display {
            write_quoted(out, display);
            out.push(b' ');
        }
        out.push(b'<');
        self.uri.write_to(out);
        out.push(b'>');
        self.params.write_to(out);
    }
}

/// One Via value (`SIP/2.0/TCP host:port;branch=...;received=...;rport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`...).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    /// Parses every Via value of one header line (comma-separated).
    pub fn parse_list(value: &[u8]) -> Option<Vec<Via>> {
        parse_items(value, |item| complete(item, via_parm))
    }
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }
    /// `Some(None)` for a bare `rport`, `Some(Some(port))` when filled in.
    /// An `rport` whose value is not a port number also gives `Some(None)`.
    pub fn rport(&self) -> Option<Option<u16>> {
        let value = self.params.get("rport")?;
        Some(
            value
                .and_then(|v| parse_digits_u64(v.as_bytes()))
                .and_then(|n| u16::try_from(n).ok()),
        )
    }
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"SIP/2.0/");
        out.extend_from_slice(self.transport.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.host.as_bytes());
        if let Some(port) = self.port {
            out.push(b':');
            write_uint(out, u64::from(port));
        }
        self.params.write_to(out);
    }
}

/// `CSeq: 20 SUBSCRIBE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// The sequence number must fit in 32 bits (RFC 3261 §8.1.1.5).
    pub fn parse(value: &[u8]) -> Option<CSeq> {
        complete(value, cseq)
    }
    /// `seq METHOD`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_uint(out, u64::from(self.seq));
        out.push(b' ');
        out.extend_from_slice(self.method.as_str().as_bytes());
    }
}

/// `Event: presence;id=1` (RFC 6665): package name and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub package: String,
    pub params: Params,
}

impl Event {
    /// The package is kept as written (`Presence` and `presence` both occur in the wild).
    pub fn parse(value: &[u8]) -> Option<Event> {
        complete(
            value,
            map((token, generic_params), |(p, params)| Event {
                package: String::from_utf8_lossy(p).into_owned(),
                params,
            }),
        )
    }
    /// `package;params`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.package.as_bytes());
        self.params.write_to(out);
    }
    /// Package name compared ASCII case-insensitively.
    pub fn is(&self, package: &str) -> bool {
        self.package.eq_ignore_ascii_case(package)
    }
    pub fn id(&self) -> Option<&str> {
        self.params.get("id").flatten()
    }
}

/// `Content-Type: application/pidf+xml;charset=UTF-8` (type and subtype lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub mtype: String,
    pub subtype: String,
    pub params: Params,
}

impl ContentType {
    pub fn parse(value: &[u8]) -> Option<ContentType> {
        complete(
            value,
            map(
                (token, delimited(sws, char('/'), sws), token, generic_params),
                |(t, _, s, params)| ContentType {
                    mtype: String::from_utf8_lossy(t).to_ascii_lowercase(),
                    subtype: String::from_utf8_lossy(s).to_ascii_lowercase(),
                    params,
                },
            ),
        )
    }
    /// True when `type/subtype` equals `essence` (ASCII case-insensitive), e.g. `application/pidf+xml`.
    pub fn is(&self, essence: &str) -> bool {
        match essence.split_once('/') {
            Some((t, s)) => {
                self.mtype.eq_ignore_ascii_case(t) && self.subtype.eq_ignore_ascii_case(s)
            }
            None => false,
        }
    }
    /// `type/subtype;params`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.mtype.as_bytes());
        out.push(b'/');
        out.extend_from_slice(self.subtype.as_bytes());
        self.params.write_to(out);
    }
}

/// `Subscription-State: active;expires=600` / `terminated;reason=timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: String,
    pub params: Params,
}

impl SubscriptionState {
    /// The state is kept as written; compare it with [`SubscriptionState::is`].
    pub fn parse(value: &[u8]) -> Option<SubscriptionState> {
        complete(
            value,
            map((token, generic_params), |(s, params)| SubscriptionState {
                state: String::from_utf8_lossy(s).into_owned(),
                params,
            }),
        )
    }
    /// State compared ASCII case-insensitively (`active`, `pending`, `terminated`).
    pub fn is(&self, state: &str) -> bool {
        self.state.eq_ignore_ascii_case(state)
    }
    /// `state;params`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.state.as_bytes());
        self.params.write_to(out);
    }
}

/// Splits a comma-separated token list header (Supported, Require, Accept-Encoding, Allow...)
/// into its tokens, each trimmed and with its `;params` removed. Empty items are skipped.
pub fn token_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_top_level(value, b',').filter_map(|item| {
        let item = match memchr::memchr(b';', item) {
            Some(semi) => item.get(..semi).unwrap_or_default(),
            None => item,
        };
        let item = trim(item);
        (!item.is_empty()).then_some(item)
    })
}

/// Parses a decimal delta-seconds value (Expires, Content-Length...): digits only, trimmed,
/// saturating at `u32::MAX`.
pub fn parse_u32(value: &[u8]) -> Option<u32> {
    let n = parse_digits_u64(trim(value))?;
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Writes `header_value` bytes as they are; helper used by builders.
pub fn raw(value: &'static str) -> Bytes {
    Bytes::from_static(value.as_bytes())
}

/// Splits a comma-separated header value at top level and parses each non-empty item; `None`
/// when an item fails or there is no item.
fn parse_items<T>(value: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Option<Vec<T>> {
    let mut out = Vec::new();
    for item in split_top_level(value, b',') {
        if item.iter().all(|&b| is_ws(b)) {
            continue;
        }
        out.push(parse(item)?);
    }
    (!out.is_empty()).then_some(out)
}

/// Bytes allowed in an unquoted display name: `*(token LWS)` loosened to any text without the
/// delimiters of the name-addr grammar (non-ASCII UTF-8 and stray bytes are accepted).
fn is_display_byte(b: u8) -> bool {
    (b >= 0x20 || b == b'\t') && !matches!(b, b'<' | b'>' | b'"' | b';' | b':' | b',' | 0x7f)
}

/// Unquoted display name: trimmed, inner whitespace runs collapsed to one space.
fn token_display(i: In<'_>) -> Res<'_, String> {
    map(
        verify(take_while1(is_display_byte), |s: &[u8]| !trim(s).is_empty()),
        |s: In<'_>| {
            let mut out = Vec::with_capacity(s.len());
            for word in trim(s).split(|&b| is_ws(b)).filter(|w| !w.is_empty()) {
                if !out.is_empty() {
                    out.push(b' ');
                }
                out.extend_from_slice(word);
            }
            String::from_utf8_lossy(&out).into_owned()
        },
    )
    .parse(i)
}

fn display_name(i: In<'_>) -> Res<'_, String> {
    nom::branch::alt((map(quoted_string, unquote), token_display)).parse(i)
}

/// `[ display-name ] LAQUOT addr-spec RAQUOT *( SEMI generic-param )`.
fn name_addr(i: In<'_>) -> Res<'_, NameAddr> {
    let (i, display) = opt(terminated(display_name, sws)).parse(i)?;
    let (i, uri) = delimited(
        char('<'),
        map_opt(take_till(|b| b == b'>'), Uri::parse),
        char('>'),
    )
    .parse(i)?;
    let (i, params) = generic_params(i)?;
    Ok((
        i,
        NameAddr {
            display,
            uri,
            params,
        },
    ))
}

/// `addr-spec *( SEMI generic-param )`: the URI ends at the first `;` (RFC 3261 §20.10).
fn addr_spec(i: In<'_>) -> Res<'_, NameAddr> {
    let (i, uri) = map_opt(
        take_while1(|b: u8| b != b';' && b != b',' && !is_ws(b) && b != b'<' && b != b'"'),
        Uri::parse,
    )
    .parse(i)?;
    let (i, params) = generic_params(i)?;
    Ok((
        i,
        NameAddr {
            display: None,
            uri,
            params,
        },
    ))
}

fn name_addr_or_spec(i: In<'_>) -> Res<'_, NameAddr> {
    nom::branch::alt((name_addr, addr_spec)).parse(i)
}

/// `via-parm = sent-protocol LWS sent-by *( SEMI via-params )`, with
/// `sent-protocol = "SIP" SLASH "2.0" SLASH transport` and `sent-by = host [ COLON port ]`.
fn via_parm(i: In<'_>) -> Res<'_, Via> {
    let slash = || delimited(sws, char('/'), sws);
    let (i, _) = (
        verify(token, |t: &[u8]| t.eq_ignore_ascii_case(b"SIP")),
        slash(),
        verify(token, |t: &[u8]| t == b"2.0"),
        slash(),
    )
        .parse(i)?;
    let (i, transport) = token(i)?;
    let (i, _) = lws(i)?;
    let (i, host) = super::grammar::host(i)?;
    let (i, port) = opt(preceded(
        delimited(sws, char(':'), sws),
        super::grammar::port,
    ))
    .parse(i)?;
    let (i, params) = generic_params(i)?;
    let via = Via {
        transport: String::from_utf8_lossy(transport).to_ascii_uppercase(),
        host: String::from_utf8_lossy(host).into_owned(),
        port,
        params,
    };
    Ok((i, via))
}

/// `CSeq = 1*DIGIT LWS Method`.
fn cseq(i: In<'_>) -> Res<'_, CSeq> {
    let (i, seq) = map_opt(digit1, |d: In<'_>| {
        parse_digits_u64(d).and_then(|n| u32::try_from(n).ok())
    })
    .parse(i)?;
    let (i, _) = lws(i)?;
    let (i, method) = map_opt(token, Method::from_token).parse(i)?;
    Ok((i, CSeq { seq, method }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn header_names() {
        let cases: &[(&[u8], HeaderName)] = &[
            (b"i", HeaderName::CallId),
            (b"M", HeaderName::Contact),
            (b"e", HeaderName::ContentEncoding),
            (b"l", HeaderName::ContentLength),
            (b"c", HeaderName::ContentType),
            (b"f", HeaderName::From),
            (b"s", HeaderName::Subject),
            (b"k", HeaderName::Supported),
            (b"t", HeaderName::To),
            (b"v", HeaderName::Via),
            (b"o", HeaderName::Event),
            (b"u", HeaderName::AllowEvents),
            (b"call-id", HeaderName::CallId),
            (b"CSEQ", HeaderName::CSeq),
            (b"sip-etag", HeaderName::SipEtag),
            (b"Sip-If-Match", HeaderName::SipIfMatch),
            (b"subscription-state", HeaderName::SubscriptionState),
            (b"content-id", HeaderName::ContentId),
        ];
        for (raw, name) in cases {
            assert_eq!(
                &HeaderName::from_bytes(raw),
                name,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        for (c, long) in [
            ("r", "Refer-To"),
            ("b", "Referred-By"),
            ("x", "Session-Expires"),
            ("a", "Accept-Contact"),
            ("j", "Reject-Contact"),
            ("d", "Request-Disposition"),
            ("y", "Identity"),
            ("n", "Identity-Info"),
        ] {
            let h = HeaderName::from_bytes(c.as_bytes());
            assert_eq!(h.as_str(), long);
            assert_eq!(
                h,
                HeaderName::from_bytes(long.to_ascii_uppercase().as_bytes())
            );
        }
        assert_eq!(
            HeaderName::from_bytes(b"X-Foo"),
            HeaderName::Other("x-FOO".into())
        );
        assert_ne!(
            HeaderName::from_bytes(b"X-Foo"),
            HeaderName::Other("X-Fo".into())
        );
        assert_ne!(HeaderName::Via, HeaderName::To);
        assert_eq!(HeaderName::from_bytes(b"z").as_str(), "z");
        assert_eq!(
            HeaderName::from_bytes(b"WWW-Authenticate").as_str(),
            "WWW-Authenticate"
        );
        // Every known name maps back to itself from its canonical spelling.
        assert_eq!(BY_LEN.iter().map(|k| k.len()).sum::<usize>(), 31);
        for (s, h) in BY_LEN.iter().flat_map(|k| k.iter()) {
            assert_eq!(h.as_str(), *s);
            assert_eq!(
                &HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes()),
                h
            );
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(br#""Bob \"the\" \\ Builder" <sip:bob@biloxi.com>;tag=a6c85cf"#)
            .unwrap();
        assert_eq!(n.display.as_deref(), Some(r#"Bob "the" \ Builder"#));
        assert_eq!(n.uri.user.as_deref(), Some("bob"));
        assert_eq!(n.tag(), Some("a6c85cf"));

        let n = NameAddr::parse(b"  Bob   Smith <sip:bob@h;transport=tcp> ; tag = 1 ;x").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob Smith"));
        assert_eq!(n.uri.param("transport"), Some(Some("tcp")));
        assert_eq!(
            n.params.0,
            vec![("tag".into(), Some("1".into())), ("x".into(), None)]
        );

        let n = NameAddr::parse(b"<sip:alice@127.0.0.1>").unwrap();
        assert_eq!(n.display, None);
        assert!(n.params.0.is_empty());

        // addr-spec: parameters belong to the header.
        let n = NameAddr::parse(b"sip:rls@127.0.0.1;tag=489025e04b").unwrap();
        assert_eq!(n.display, None);
        assert!(n.uri.params.is_empty());
        assert_eq!(n.tag(), Some("489025e04b"));
        let n = NameAddr::parse(b"sip:bob@h ;tag=1").unwrap();
        assert_eq!(n.tag(), Some("1"));

        // Quoted parameters with angle brackets, as in +sip.instance.
        let n = NameAddr::parse(
            br#""bob" <sip:bob@127.0.0.1:50168;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-4000-8000-000000034181>";expires=600"#,
        )
        .unwrap();
        assert_eq!(
            n.params.get("+sip.instance"),
            Some(Some("\"<urn:uuid:00000000-0000-4000-8000-000000034181>\""))
        );
        assert_eq!(
            unquote_value(n.params.get("+sip.instance").flatten().unwrap()),
            "<urn:uuid:00000000-0000-4000-8000-000000034181>"
        );
        assert_eq!(n.params.get("EXPIRES"), Some(Some("600")));

        // IPv6 and non-UTF-8 display names.
        let n = NameAddr::parse(b"\"J\xf6rg\" <sip:j@[2001:db8::1]:5060>").unwrap();
        assert_eq!(n.display.as_deref(), Some("J\u{fffd}rg"));
        assert_eq!(n.uri.host, "[2001:db8::1]");
        let n = NameAddr::parse("Jörg <sip:j@h>".as_bytes()).unwrap();
        assert_eq!(n.display.as_deref(), Some("Jörg"));
        let n = NameAddr::parse(b"\"\" <sip:j@h>").unwrap();
        assert_eq!(n.display.as_deref(), Some(""));

        for bad in [
            &b""[..],
            b"<sip:a@b",
            b"sip:a@b>",
            b"\"unterminated <sip:a@b>",
            b"<tel:+123>",
            b"<sip:a@b>;",
            b"<sip:a@b> junk",
            b"a:b <sip:a@b>",
            b"<sip:a@b>, <sip:c@d>",
            b"*",
        ] {
            assert!(
                NameAddr::parse(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn name_addr_lists_and_round_trip() {
        let l = NameAddr::parse_list(
            br#""a, b" <sip:a@h;lr>, <sip:b@h;lr>;x="1,2" ,sip:c@h;q=0.5, "d<>" <sip:d@h>"#,
        )
        .unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].display.as_deref(), Some("a, b"));
        assert_eq!(l[1].params.get("x"), Some(Some("\"1,2\"")));
        assert_eq!(l[2].uri.user.as_deref(), Some("c"));
        assert_eq!(l[2].params.get("q"), Some(Some("0.5")));
        assert_eq!(l[3].display.as_deref(), Some("d<>"));
        for n in &l {
            let text = w(|o| n.write_to(o));
            assert_eq!(NameAddr::parse(text.as_bytes()).as_ref(), Some(n), "{text}");
        }
        assert_eq!(w(|o| l[2].write_to(o)), "<sip:c@h>;q=0.5");
        assert_eq!(w(|o| l[0].write_to(o)), r#""a, b" <sip:a@h;lr>"#);
        assert!(NameAddr::parse_list(b"<sip:a@h>, bad").is_none());
        assert!(NameAddr::parse_list(b"").is_none());
        assert!(NameAddr::parse_list(b"*").is_none());
        assert_eq!(NameAddr::parse_list(b"<sip:a@h>,").unwrap().len(), 1);

        let n = NameAddr {
            display: Some("q\"uo\\te\tctl\u{1}\r\n".into()),
            uri: Uri::parse(b"sip:a@h").unwrap(),
            params: Params(vec![("tag".into(), Some("x".into()))]),
        };
        let text = w(|o| n.write_to(o));
        assert_eq!(text, "\"q\\\"uo\\\\te\tctl\\\u{1}  \" <sip:a@h>;tag=x");
        let back = NameAddr::parse(text.as_bytes()).unwrap();
        assert_eq!(back.display.as_deref(), Some("q\"uo\\te\tctl\u{1}  "));
    }

    #[test]
    fn via() {
        let v =
            Via::parse_list(b"SIP/2.0/TCP 127.0.0.1:50168;alias;branch=z9hG4bK.3rRduiRuM;rport")
                .unwrap();
        assert_eq!(v.len(), 1);
        let v0 = &v[0];
        assert_eq!(
            (v0.transport.as_str(), v0.host.as_str(), v0.port),
            ("TCP", "127.0.0.1", Some(50168))
        );
        assert_eq!(v0.branch(), Some("z9hG4bK.3rRduiRuM"));
        assert_eq!(v0.rport(), Some(None));
        assert_eq!(v0.received(), None);
        assert!(v0.params.contains("alias"));

        let v = Via::parse_list(
            b"SIP / 2.0 / udp  first.example.com: 4000;ttl=16;maddr=224.2.0.1 ;branch=z9hG4bKa7c6a8dlze.1, \
sip/2.0/TLS [2001:db8::9]:5061;received=2001:db8::9;rport=5061,SIP/2.0/WS abc.invalid",
        )
        .unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            (v[0].transport.as_str(), v[0].host.as_str(), v[0].port),
            ("UDP", "first.example.com", Some(4000))
        );
        assert_eq!(v[0].branch(), Some("z9hG4bKa7c6a8dlze.1"));
        assert_eq!(v[1].host, "[2001:db8::9]");
        assert_eq!(v[1].received(), Some("2001:db8::9"));
        assert_eq!(v[1].rport(), Some(Some(5061)));
        assert_eq!(
            (v[2].transport.as_str(), v[2].port, v[2].rport()),
            ("WS", None, None)
        );
        for via in &v {
            let text = w(|o| via.write_to(o));
            assert_eq!(
                Via::parse_list(text.as_bytes()).unwrap(),
                vec![via.clone()],
                "{text}"
            );
        }
        assert_eq!(
            w(|o| v[1].write_to(o)),
            "SIP/2.0/TLS [2001:db8::9]:5061;received=2001:db8::9;rport=5061"
        );

        for bad in [
            &b""[..],
            b"SIP/2.0/TCP",
            b"SIP/2.0/TCP ",
            b"SIP/2.0 host",
            b"SIP/3.0/TCP host",
            b"HTTP/2.0/TCP host",
            b"SIP/2.0/TCPhost",
            b"SIP/2.0/TCP host:99999",
            b"SIP/2.0/TCP host;",
            b"SIP/2.0/TCP host, bad",
        ] {
            assert!(
                Via::parse_list(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cseq_event_content_type_state() {
        let c = CSeq::parse(b" 20 SUBSCRIBE ").unwrap();
        assert_eq!((c.seq, &c.method), (20, &Method::Subscribe));
        assert_eq!(
            CSeq::parse(b"4294967295\tfoo").unwrap().method,
            Method::Other("foo".into())
        );
        assert!(CSeq::parse(b"4294967296 INVITE").is_none());
        assert!(CSeq::parse(b"1INVITE").is_none());
        assert!(CSeq::parse(b"1").is_none());
        assert!(CSeq::parse(b"-1 INVITE").is_none());
        assert!(CSeq::parse(b"1 INVITE x").is_none());
        assert_eq!(w(|o| c.write_to(o)), "20 SUBSCRIBE");

        let e = Event::parse(b"Presence;id=a1 ; x").unwrap();
        assert_eq!(e.package, "Presence");
        assert!(e.is("presence"));
        assert_eq!(e.id(), Some("a1"));
        assert_eq!(Event::parse(w(|o| e.write_to(o)).as_bytes()), Some(e));
        assert!(
            Event::parse(b"presence.winfo")
                .unwrap()
                .is("presence.winfo")
        );
        assert!(Event::parse(b"").is_none());
        assert!(Event::parse(b"a b").is_none());

        let ct = ContentType::parse(b"Application/PIDF+XML ;charset=\"UTF-8\"").unwrap();
        assert_eq!(
            (ct.mtype.as_str(), ct.subtype.as_str()),
            ("application", "pidf+xml")
        );
        assert!(ct.is("application/pidf+xml"));
        assert!(ct.is("APPLICATION/Pidf+Xml"));
        assert!(!ct.is("application/xml"));
        assert!(!ct.is("application"));
        assert_eq!(ct.params.get("charset"), Some(Some("\"UTF-8\"")));
        assert_eq!(
            ContentType::parse(w(|o| ct.write_to(o)).as_bytes()),
            Some(ct)
        );
        let ct = ContentType::parse(
            b"multipart/related;type=\"application/rlmi+xml\";start=\"<x@y>\";boundary=50UBfW7LSCVLtggUPe5z",
        )
        .unwrap();
        assert_eq!(
            ct.params.get("boundary"),
            Some(Some("50UBfW7LSCVLtggUPe5z"))
        );
        assert!(ContentType::parse(b"text").is_none());
        assert!(ContentType::parse(b"text/").is_none());
        assert!(ContentType::parse(b"text / plain").is_some());

        let s = SubscriptionState::parse(b"terminated;reason=timeout;retry-after=10").unwrap();
        assert!(s.is("TERMINATED"));
        assert_eq!(s.params.get("reason"), Some(Some("timeout")));
        assert_eq!(
            SubscriptionState::parse(w(|o| s.write_to(o)).as_bytes()),
            Some(s)
        );
        assert!(
            SubscriptionState::parse(b"active;expires")
                .unwrap()
                .params
                .contains("expires")
        );
        assert!(SubscriptionState::parse(b";expires=1").is_none());
    }

    #[test]
    fn token_lists_and_numbers() {
        let v: Vec<&[u8]> = token_list(b" eventlist , 100rel;q=1,, timer ;x=\"a,b\" ,").collect();
        assert_eq!(v, vec![&b"eventlist"[..], b"100rel", b"timer"]);
        assert_eq!(token_list(b"").count(), 0);
        assert_eq!(token_list(b" , ").count(), 0);
        let v: Vec<&[u8]> = token_list(b"application/pidf+xml;q=0.5, multipart/related").collect();
        assert_eq!(v, vec![&b"application/pidf+xml"[..], b"multipart/related"]);

        assert_eq!(parse_u32(b" 3600 "), Some(3600));
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"99999999999999999999"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), Some(u32::MAX));
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"1 2"), None);
        assert_eq!(parse_u32(b"+1"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(raw("x"), Bytes::from_static(b"x"));
    }

    #[test]
    fn params_get_and_write() {
        let p = Params(vec![
            ("Tag".into(), Some("1".into())),
            ("lr".into(), None),
            ("tag".into(), Some("2".into())),
        ]);
        assert_eq!(p.get("tag"), Some(Some("1")));
        assert_eq!(p.get("LR"), Some(None));
        assert_eq!(p.get("x"), None);
        assert!(p.contains("lr"));
        assert_eq!(w(|o| p.write_to(o)), ";Tag=1;lr;tag=2");
        assert_eq!(unquote_value("\"a\\\"b\""), "a\"b");
        assert_eq!(unquote_value("plain"), "plain");
        assert_eq!(unquote_value("\""), "\"");
    }
}
