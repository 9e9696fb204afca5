//! Header names (with compact forms) and the typed header values a presence server reads,
//! parsed with nom 8 from raw header bytes.

use bytes::Bytes;

use super::message::Method;
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
        todo!("{other:?}")
    }
}

impl HeaderName {
    /// Maps a header name as written (any case, compact or long) to a `HeaderName`.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        todo!("{name:?}")
    }
    /// The canonical long spelling (`Call-ID`, `CSeq`, `SIP-ETag`, `WWW-Authenticate`...).
    pub fn as_str(&self) -> &str {
        todo!()
    }
}

/// Generic `;name=value` parameters, order kept, names compared case-insensitively.
/// Values keep quotes when they were quoted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Value of the first parameter named `name` (case-insensitive); `Some(None)` for a flag.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        todo!("{name}")
    }
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Appends `;name[=value]` for each parameter.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        todo!("{out:?}")
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
        todo!("{value:?}")
    }
    /// Parses a comma-separated list of name-addrs (Route, Record-Route, Contact), respecting
    /// quotes and angle brackets.
    pub fn parse_list(value: &[u8]) -> Option<Vec<NameAddr>> {
        todo!("{value:?}")
    }
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
    /// Always writes the `<uri>` form (with a quoted display name when present).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        todo!("{out:?}")
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
        todo!("{value:?}")
    }
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }
    /// `Some(None)` for a bare `rport`, `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        todo!()
    }
    pub fn write_to(&self, out: &mut Vec<u8>) {
        todo!("{out:?}")
    }
}

/// `CSeq: 20 SUBSCRIBE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(value: &[u8]) -> Option<CSeq> {
        todo!("{value:?}")
    }
}

/// `Event: presence;id=1` (RFC 6665): package name and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub package: String,
    pub params: Params,
}

impl Event {
    pub fn parse(value: &[u8]) -> Option<Event> {
        todo!("{value:?}")
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
        todo!("{value:?}")
    }
    /// True when `type/subtype` equals `essence` (ASCII case-insensitive), e.g. `application/pidf+xml`.
    pub fn is(&self, essence: &str) -> bool {
        todo!("{essence}")
    }
}

/// `Subscription-State: active;expires=600` / `terminated;reason=timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionState {
    pub state: String,
    pub params: Params,
}

impl SubscriptionState {
    pub fn parse(value: &[u8]) -> Option<SubscriptionState> {
        todo!("{value:?}")
    }
}

/// Splits a comma-separated token list header (Supported, Require, Accept-Encoding, Allow...)
/// into its tokens, each trimmed and with its `;params` removed. Empty items are skipped.
pub fn token_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    todo!("{value:?}");
    #[allow(unreachable_code)]
    std::iter::empty()
}

/// Parses a decimal delta-seconds value (Expires, Content-Length...): digits only, trimmed,
/// saturating at `u32::MAX`.
pub fn parse_u32(value: &[u8]) -> Option<u32> {
    todo!("{value:?}")
}

/// Writes `header_value` bytes as they are; helper used by builders.
pub fn raw(value: &'static str) -> Bytes {
    Bytes::from_static(value.as_bytes())
}
