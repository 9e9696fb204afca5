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
        KNOWN
            .iter()
            .find(|(s, _)| s.len() == name.len() && s.as_bytes().eq_ignore_ascii_case(name))
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

/// Long names of the known headers (compared case-insensitively, length first).
const KNOWN: [(&str, HeaderName); 31] = [
    ("Via", HeaderName::Via),
    ("From", HeaderName::From),
    ("To", HeaderName::To),
    ("Call-ID", HeaderName::CallId),
    ("CSeq", HeaderName::CSeq),
    ("Contact", HeaderName::Contact),
    ("Max-Forwards", HeaderName::MaxForwards),
    ("Route", HeaderName::Route),
    ("Record-Route", HeaderName::RecordRoute),
    ("Event", HeaderName::Event),
    ("Allow-Events", HeaderName::AllowEvents),
    ("Expires", HeaderName::Expires),
    ("Min-Expires", HeaderName::MinExpires),
    ("Accept", HeaderName::Accept),
    ("Accept-Encoding", HeaderName::AcceptEncoding),
    ("Content-Type", HeaderName::ContentType),
    ("Content-Encoding", HeaderName::ContentEncoding),
    ("Content-Length", HeaderName::ContentLength),
    ("Content-Disposition", HeaderName::ContentDisposition),
    ("Content-ID", HeaderName::ContentId),
    ("Supported", HeaderName::Supported),
    ("Require", HeaderName::Require),
    ("Allow", HeaderName::Allow),
    ("SIP-ETag", HeaderName::SipEtag),
    ("SIP-If-Match", HeaderName::SipIfMatch),
    ("Subscription-State", HeaderName::SubscriptionState),
    ("User-Agent", HeaderName::UserAgent),
    ("Server", HeaderName::Server),
    ("Warning", HeaderName::Warning),
    ("Retry-After", HeaderName::RetryAfter),
    ("Subject", HeaderName::Subject),
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
