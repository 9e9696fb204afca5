//! SIP messages: start line, raw header lines, body; parsing and serialization.

use bytes::Bytes;

use super::header::HeaderName;
use super::text::{ascii_string, is_token, is_token_str, is_ws, trim_range, write_uint};

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Register,
    Invite,
    Ack,
    Cancel,
    Bye,
    Options,
    Subscribe,
    Notify,
    Publish,
    Message,
    Info,
    Update,
    Refer,
    Prack,
    /// Any other token, as written.
    Other(String),
}

impl Method {
    /// Parses a method token (no validation beyond "is a token").
    pub fn from_token(tok: &[u8]) -> Option<Method> {
        if !is_token_str(tok) {
            return None;
        }
        Some(match tok {
            b"REGISTER" => Method::Register,
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"CANCEL" => Method::Cancel,
            b"BYE" => Method::Bye,
            b"OPTIONS" => Method::Options,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"MESSAGE" => Method::Message,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"REFER" => Method::Refer,
            b"PRACK" => Method::Prack,
            // A token is ASCII.
            other => Method::Other(ascii_string(other)),
        })
    }
    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Register => "REGISTER",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Bye => "BYE",
            Method::Options => "OPTIONS",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Refer => "REFER",
            Method::Prack => "PRACK",
            Method::Other(s) => s,
        }
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD Request-URI SIP/2.0`; the Request-URI is kept raw (see [`Message::request_uri`]).
    Request { method: Method, uri: Bytes },
    /// `SIP/2.0 CODE Reason`.
    Response { code: u16, reason: Bytes },
}

/// One header line, unfolded (RFC 3261 §7.3.1 LWS folding removed), value trimmed of surrounding
/// whitespace. The name is canonical: compact forms are expanded (`f` → From, `i` → Call-ID...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: Bytes,
}

/// A parsed SIP message. Header values are raw; use the typed accessors to decode them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Short, human-readable reason (used in `Warning` headers and logs).
    pub reason: &'static str,
}

impl Message {
    /// Parses one complete message (head and body, as cut by the [`super::Framer`]).
    /// The body is everything after the blank line (the framer already applied Content-Length).
    /// Fails on a malformed start line or header line, or more than `max_headers` header lines.
    pub fn parse(raw: Bytes, max_headers: usize) -> Result<Message, ParseError> {
        let input: &[u8] = &raw;
        // Empty lines before the start line are ignored (RFC 3261 §7.5).
        let mut pos = input
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .ok_or(ParseError::EMPTY)?;

        let (line_end, next) = next_line(input, pos).ok_or(ParseError::NO_END_OF_HEAD)?;
        let start = parse_start_line(&raw, pos, line_end)?;
        pos = next;

        let mut headers: Vec<Header> = Vec::with_capacity(max_headers.min(24));
        // The header being accumulated: name, value range, and an owned value once folded.
        let mut current: Option<Pending> = None;
        loop {
            let (line_end, next) = next_line(input, pos).ok_or(ParseError::NO_END_OF_HEAD)?;
            let line = input.get(pos..line_end).unwrap_or_default();
            if line.is_empty() {
                if let Some(p) = current.take() {
                    headers.push(p.finish(&raw));
                }
                pos = next;
                break;
            }
            if line.first().is_some_and(|&b| is_ws(b)) {
                // Continuation of the previous header (LWS folding, RFC 3261 §7.3.1).
                let p = current.as_mut().ok_or(ParseError::BAD_FOLDING)?;
                let (s, e) = trim_range(line);
                if s < e {
                    p.fold(input, pos + s, pos + e);
                }
            } else {
                if let Some(p) = current.take() {
                    headers.push(p.finish(&raw));
                }
                if headers.len() >= max_headers {
                    return Err(ParseError::TOO_MANY_HEADERS);
                }
                // name *(SP / HTAB) ":" in one pass over the token characters.
                let name_end = line
                    .iter()
                    .position(|&b| !is_token(b))
                    .unwrap_or(line.len());
                let after_name = line.get(name_end..).unwrap_or_default();
                let colon = name_end
                    + after_name
                        .iter()
                        .position(|&b| !is_ws(b))
                        .unwrap_or(after_name.len());
                if line.get(colon) != Some(&b':') {
                    return Err(if memchr::memchr(b':', line).is_none() {
                        ParseError::NO_COLON
                    } else {
                        ParseError::BAD_NAME
                    });
                }
                if name_end == 0 {
                    return Err(ParseError::EMPTY_NAME);
                }
                let name = line.get(..name_end).unwrap_or_default();
                let value = line.get(colon + 1..).unwrap_or_default();
                let (s, e) = trim_range(value);
                let base = pos + colon + 1;
                current = Some(Pending {
                    name: HeaderName::from_bytes(name),
                    start: base + s,
                    end: base + e,
                    folded: None,
                });
            }
            pos = next;
        }
        let body = raw.slice(pos.min(raw.len())..);
        Ok(Message {
            start,
            headers,
            body,
        })
    }

    /// Appends the wire form to `out`: start line, each header as `Name: value`, a
    /// `Content-Length` header reflecting `body.len()` (any stored Content-Length is replaced),
    /// blank line, body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(method.as_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(uri);
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(b"SIP/2.0 ");
                write_uint(out, u64::from(*code));
                out.push(b' ');
                out.extend_from_slice(reason);
                out.extend_from_slice(b"\r\n");
            }
        }
        for h in &self.headers {
            if h.name == HeaderName::ContentLength {
                continue;
            }
            out.extend_from_slice(h.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        write_uint(out, self.body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        self.write_to(&mut out);
        out
    }

    /// A minimal response to this request, as a test user agent answers it: `SIP/2.0 code reason`,
    /// the request's Via, From, To, Call-ID and CSeq lines copied as they are and in order (no To
    /// tag added, nothing else), then `Content-Length: 0` and no body. For tests, benchmarks and
    /// tools playing the UAC side (answering NOTIFYs); it is not how the server responds.
    pub fn response_skeleton(&self, code: u16, reason: &str) -> Vec<u8> {
        Message {
            start: StartLine::Response {
                code,
                reason: Bytes::copy_from_slice(reason.as_bytes()),
            },
            headers: self
                .headers
                .iter()
                .filter(|h| {
                    matches!(
                        h.name,
                        HeaderName::Via
                            | HeaderName::From
                            | HeaderName::To
                            | HeaderName::CallId
                            | HeaderName::CSeq
                    )
                })
                .cloned()
                .collect(),
            body: Bytes::new(),
        }
        .to_bytes()
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }
    /// First value of a header.
    pub fn header(&self, name: &HeaderName) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| &h.name == name)
            .map(|h| &h.value)
    }
    /// All values of a header, in order (one per header line; comma lists are not split here).
    pub fn headers_named<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.headers
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| &h.value)
    }
    /// The Request-URI, parsed.
    pub fn request_uri(&self) -> Option<super::Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => super::Uri::parse(uri),
            StartLine::Response { .. } => None,
        }
    }
}

/// What [`Message::salvage`] recovers from a message that [`Message::parse`] rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The start line is a status line (`SIP/...`): a response, which is never answered.
    pub is_response: bool,
    /// The method of a request line, when it starts with a token followed by a space.
    pub method: Option<Method>,
    /// The well-formed header lines, unfolded and with canonical names as [`Message::parse`]
    /// gives them; malformed lines (and their continuation lines) are left out.
    pub headers: Vec<Header>,
}

impl Salvaged {
    /// First value of a header.
    pub fn header(&self, name: &HeaderName) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| &h.name == name)
            .map(|h| &h.value)
    }
}

impl Message {
    /// Recovers what it can of a message that does not parse, so that a malformed request can
    /// still get its 400 (RFC 3261 §8.2, §21.4.1; RFC 4475 §3.1.2): the kind of start line, the
    /// method, and every header line that is well formed in itself. The start line is not
    /// required to be valid. `None` when there is no start line, or more than `max_headers`
    /// header lines (the request is not worth answering then).
    pub fn salvage(raw: &Bytes, max_headers: usize) -> Option<Salvaged> {
        let input: &[u8] = raw;
        let mut pos = input.iter().position(|&b| b != b'\r' && b != b'\n')?;
        let (line_end, next) = next_line(input, pos).unwrap_or((input.len(), input.len()));
        let start = input.get(pos..line_end).unwrap_or_default();
        let is_response = start
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"));
        let method = if is_response {
            None
        } else {
            memchr::memchr(b' ', start)
                .and_then(|sp| start.get(..sp))
                .and_then(Method::from_token)
        };
        pos = next;
        let mut headers = Vec::new();
        let mut lines = 0usize;
        // The header being accumulated; `None` also while skipping a malformed line's
        // continuations.
        let mut current: Option<Pending> = None;
        while let Some((line_end, next)) = next_line(input, pos) {
            let line = input.get(pos..line_end).unwrap_or_default();
            if line.is_empty() {
                break;
            }
            if line.first().is_some_and(|&b| is_ws(b)) {
                if let Some(p) = current.as_mut() {
                    let (s, e) = trim_range(line);
                    if s < e {
                        p.fold(input, pos + s, pos + e);
                    }
                }
            } else {
                if let Some(p) = current.take() {
                    headers.push(p.finish(raw));
                }
                lines += 1;
                if lines > max_headers {
                    return None;
                }
                current = header_start(line, pos);
            }
            pos = next;
        }
        if let Some(p) = current.take() {
            headers.push(p.finish(raw));
        }
        Some(Salvaged {
            is_response,
            method,
            headers,
        })
    }
}

/// The header starting on `line` (at offset `pos` of the input): `name *(SP / HTAB) ":" value`;
/// `None` when the line is not a well-formed header line.
fn header_start(line: &[u8], pos: usize) -> Option<Pending> {
    let name_end = line
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(line.len());
    let after_name = line.get(name_end..).unwrap_or_default();
    let colon = name_end
        + after_name
            .iter()
            .position(|&b| !is_ws(b))
            .unwrap_or(after_name.len());
    if name_end == 0 || line.get(colon) != Some(&b':') {
        return None;
    }
    let value = line.get(colon + 1..).unwrap_or_default();
    let (s, e) = trim_range(value);
    let base = pos + colon + 1;
    Some(Pending {
        name: HeaderName::from_bytes(line.get(..name_end).unwrap_or_default()),
        start: base + s,
        end: base + e,
        folded: None,
    })
}

impl ParseError {
    const EMPTY: ParseError = ParseError::new("empty message");
    const NO_END_OF_HEAD: ParseError = ParseError::new("no blank line after the headers");
    const BAD_START_LINE: ParseError = ParseError::new("malformed start line");
    const BAD_VERSION: ParseError = ParseError::new("unsupported SIP version");
    const BAD_URI: ParseError = ParseError::new("malformed Request-URI");
    const BAD_METHOD: ParseError = ParseError::new("malformed method");
    const BAD_STATUS: ParseError = ParseError::new("malformed status code");
    const BAD_FOLDING: ParseError = ParseError::new("continuation line without a header");
    const TOO_MANY_HEADERS: ParseError = ParseError::new("too many headers");
    const NO_COLON: ParseError = ParseError::new("header line without colon");
    const EMPTY_NAME: ParseError = ParseError::new("empty header name");
    const BAD_NAME: ParseError = ParseError::new("malformed header name");

    const fn new(reason: &'static str) -> ParseError {
        ParseError { reason }
    }

    /// True when the start line is a well-formed request line of another SIP version than 2.0
    /// (`SIP/7.0`): the request deserves a 505 Version Not Supported (RFC 3261 §21.5.6), not a
    /// 400.
    pub fn is_unsupported_version(&self) -> bool {
        *self == ParseError::BAD_VERSION
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ParseError {}

/// A header whose value may still grow by folded continuation lines.
struct Pending {
    name: HeaderName,
    start: usize,
    end: usize,
    /// Set once a continuation line was seen: the unfolded value.
    folded: Option<Vec<u8>>,
}

impl Pending {
    /// Appends the continuation `input[s..e]` (already trimmed, non-empty), joined by one space.
    fn fold(&mut self, input: &[u8], s: usize, e: usize) {
        let folded = self
            .folded
            .get_or_insert_with(|| input.get(self.start..self.end).unwrap_or_default().to_vec());
        if !folded.is_empty() {
            folded.push(b' ');
        }
        folded.extend_from_slice(input.get(s..e).unwrap_or_default());
    }

    fn finish(self, raw: &Bytes) -> Header {
        let value = match self.folded {
            Some(v) => Bytes::from(v),
            None => raw.slice(self.start.min(self.end)..self.end.min(raw.len())),
        };
        Header {
            name: self.name,
            value,
        }
    }
}

/// Line starting at `pos`: returns (end of its content without CR/LF, start of the next line),
/// or `None` when there is no LF. A CR before the LF is not part of the content.
fn next_line(input: &[u8], pos: usize) -> Option<(usize, usize)> {
    let rest = input.get(pos..)?;
    let nl = pos + memchr::memchr(b'\n', rest)?;
    let end = if nl > pos && input.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

fn is_sip_version(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"SIP/2.0")
}

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT`, any version.
fn is_any_sip_version(v: &[u8]) -> bool {
    let Some(numbers) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .and(v.get(4..))
    else {
        return false;
    };
    let mut parts = numbers.split(|&b| b == b'.');
    let digits =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// A Request-URI (`SIP-URI / SIPS-URI / absoluteURI`) at the level the codec checks: a scheme
/// (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`), a colon, and no byte that no URI may contain
/// unescaped (controls, space, `<`, `>`, `"`). The rest is checked by whoever reads the URI.
fn is_request_uri(uri: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', uri) else {
        return false;
    };
    let scheme = uri.get(..colon).unwrap_or_default();
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !uri
            .iter()
            .any(|&b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"'))
}

/// Parses the start line `raw[start..end]`.
fn parse_start_line(raw: &Bytes, start: usize, end: usize) -> Result<StartLine, ParseError> {
    let line = raw.get(start..end).ok_or(ParseError::BAD_START_LINE)?;
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::BAD_START_LINE)?;
    let first = line.get(..sp1).unwrap_or_default();
    let rest = line.get(sp1 + 1..).unwrap_or_default();
    if first.len() == 7 && is_sip_version(first) {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let code = rest.get(..3).ok_or(ParseError::BAD_STATUS)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BAD_STATUS);
        }
        let code = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&code) {
            return Err(ParseError::BAD_STATUS);
        }
        let after = rest.get(3..).unwrap_or_default();
        let reason_start = match after.first() {
            None => start + sp1 + 1 + 3,
            Some(b' ') => start + sp1 + 1 + 4,
            Some(_) => return Err(ParseError::BAD_STATUS),
        };
        return Ok(StartLine::Response {
            code,
            reason: raw.slice(reason_start.min(end)..end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single spaces (RFC 4475
    // §3.1.2.9 and §3.1.2.10: extra or trailing SP, and LWS in the URI, make it malformed).
    let method = Method::from_token(first).ok_or(ParseError::BAD_METHOD)?;
    let sp2 = memchr::memrchr(b' ', rest).ok_or(ParseError::BAD_START_LINE)?;
    let uri = rest.get(..sp2).unwrap_or_default();
    let version = rest.get(sp2 + 1..).unwrap_or_default();
    if uri.is_empty() || uri.iter().any(|&b| b == b' ' || b == b'\t') {
        return Err(ParseError::BAD_START_LINE);
    }
    if !is_sip_version(version) {
        return Err(if is_any_sip_version(version) {
            ParseError::BAD_VERSION
        } else {
            ParseError::BAD_START_LINE
        });
    }
    if !is_request_uri(uri) {
        return Err(ParseError::BAD_URI);
    }
    let uri_start = start + sp1 + 1;
    Ok(StartLine::Request {
        method,
        uri: raw.slice(uri_start..uri_start + uri.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBSCRIBE: &[u8] = b"SUBSCRIBE sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:alice@example.com>\r\n\
From: \"Bob\" <sip:bob@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Event: presence\r\n\
Content-Length: 4\r\n\
\r\n\
body";

    fn parse(raw: &[u8]) -> Result<Message, ParseError> {
        Message::parse(Bytes::copy_from_slice(raw), 64)
    }

    #[test]
    fn parses_request() {
        let raw = Bytes::from_static(SUBSCRIBE);
        let m = Message::parse(raw.clone(), 64).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(&Method::Subscribe));
        assert_eq!(m.headers.len(), 8);
        assert_eq!(
            m.header(&HeaderName::CallId).unwrap(),
            &b"a84b4c76e66710"[..]
        );
        assert_eq!(m.header(&HeaderName::ContentLength).unwrap(), &b"4"[..]);
        assert_eq!(m.body, &b"body"[..]);
        let uri = m.request_uri().unwrap();
        assert_eq!(uri.user.as_deref(), Some("alice"));
        // Zero copy: values point into the input buffer.
        let range = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
        for h in &m.headers {
            assert!(range.contains(&(h.value.as_ptr() as usize)), "{:?}", h.name);
        }
        assert!(range.contains(&(m.body.as_ptr() as usize)));
    }

    #[test]
    fn parses_response() {
        let m = parse(b"SIP/2.0 200 OK\r\nCSeq: 1 SUBSCRIBE\r\n\r\n").unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 200,
                reason: Bytes::from_static(b"OK")
            }
        );
        assert!(m.body.is_empty());
        let m = parse(b"SIP/2.0 489 Bad \xffEvent x\r\n\r\n").unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 489,
                reason: Bytes::from_static(b"Bad \xffEvent x")
            }
        );
        let m = parse(b"sip/2.0 100\r\n\r\n").unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 100,
                reason: Bytes::new()
            }
        );
        assert!(m.method().is_none());
        assert!(m.request_uri().is_none());
    }

    #[test]
    fn compact_forms_are_expanded() {
        let m = parse(
            b"NOTIFY sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\n\
i: id\r\nm: <sip:e@f>\r\nl: 0\r\nc: text/plain\r\no: presence\r\nk: eventlist\r\n\
u: presence\r\ne: deflate\r\ns: hi\r\nr: <sip:x@y>\r\nX: 90\r\nXY: y\r\n\r\n",
        )
        .unwrap();
        let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Via",
                "From",
                "To",
                "Call-ID",
                "Contact",
                "Content-Length",
                "Content-Type",
                "Event",
                "Supported",
                "Allow-Events",
                "Content-Encoding",
                "Subject",
                "Refer-To",
                "Session-Expires",
                "XY"
            ]
        );
        assert_eq!(
            m.header(&HeaderName::Other("refer-to".into())).unwrap(),
            &b"<sip:x@y>"[..]
        );
    }

    #[test]
    fn whitespace_around_colon_and_trimming() {
        let m = parse(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID  :  x y \t\r\nCSeq:1 OPTIONS\r\nTo\t:\t<sip:a@b>\r\nSubject:\r\n\r\n")
            .unwrap();
        assert_eq!(m.header(&HeaderName::CallId).unwrap(), &b"x y"[..]);
        assert_eq!(m.header(&HeaderName::CSeq).unwrap(), &b"1 OPTIONS"[..]);
        assert_eq!(m.header(&HeaderName::To).unwrap(), &b"<sip:a@b>"[..]);
        assert_eq!(m.header(&HeaderName::Subject).unwrap(), &b""[..]);
    }

    #[test]
    fn folded_headers_are_joined() {
        let m = parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nSubject: I know you're there,\r\n   pick up the phone  \r\n\tand talk to me!\r\n\
Via: SIP/2.0/UDP h\r\nX-Empty:\r\n  late\r\nX-Blank: a\r\n \r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            m.header(&HeaderName::Subject).unwrap(),
            &b"I know you're there, pick up the phone and talk to me!"[..]
        );
        assert_eq!(m.header(&HeaderName::Via).unwrap(), &b"SIP/2.0/UDP h"[..]);
        assert_eq!(
            m.header(&HeaderName::Other("x-empty".into())).unwrap(),
            &b"late"[..]
        );
        assert_eq!(
            m.header(&HeaderName::Other("x-blank".into())).unwrap(),
            &b"a"[..]
        );
        assert_eq!(m.headers.len(), 4);
    }

    #[test]
    fn accepts_bare_lf_and_leading_crlf_and_non_utf8() {
        let m =
            parse(b"\r\n\r\nMESSAGE sip:a@b SIP/2.0\nX-Bin: \xff\xfe\x80\nContent-Length: 2\n\nhi")
                .unwrap();
        assert_eq!(m.method(), Some(&Method::Message));
        assert_eq!(
            m.header(&HeaderName::Other("X-Bin".into())).unwrap(),
            &b"\xff\xfe\x80"[..]
        );
        assert_eq!(m.body, &b"hi"[..]);
    }

    #[test]
    fn methods_are_case_sensitive_tokens() {
        assert_eq!(Method::from_token(b"SUBSCRIBE"), Some(Method::Subscribe));
        assert_eq!(
            Method::from_token(b"subscribe"),
            Some(Method::Other("subscribe".into()))
        );
        assert_eq!(
            Method::from_token(b"FOO-BAR"),
            Some(Method::Other("FOO-BAR".into()))
        );
        assert_eq!(Method::from_token(b""), None);
        assert_eq!(Method::from_token(b"A B"), None);
        assert_eq!(Method::from_token(b"A/B"), None);
        for m in [
            "REGISTER",
            "INVITE",
            "ACK",
            "CANCEL",
            "BYE",
            "OPTIONS",
            "SUBSCRIBE",
            "NOTIFY",
            "PUBLISH",
            "MESSAGE",
            "INFO",
            "UPDATE",
            "REFER",
            "PRACK",
            "X",
        ] {
            assert_eq!(Method::from_token(m.as_bytes()).unwrap().as_str(), m);
        }
    }

    #[test]
    fn rejects_malformed() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty message"),
            (b"\r\n\r\n", "empty message"),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nTo: x\r\n",
                "no blank line after the headers",
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0",
                "no blank line after the headers",
            ),
            (b"OPTIONS sip:a@b\r\n\r\n", "malformed start line"),
            (
                b"OPTIONS sip:a@b SIP/3.0\r\n\r\n",
                "unsupported SIP version",
            ),
            (
                b"OPTIONS sip:a@b sip/20.01\r\n\r\n",
                "unsupported SIP version",
            ),
            // Not a version at all: malformed, not another version (RFC 4475 §3.1.2.10).
            (b"OPTIONS sip:a@b SIP/2.0 \r\n\r\n", "malformed start line"),
            (b"OPTIONS sip:a@b SIP/2.0  \r\n\r\n", "malformed start line"),
            (b"OPTIONS sip:a@b SIP/2\r\n\r\n", "malformed start line"),
            (b"OPTIONS sip:a@b SIP/2.0.1\r\n\r\n", "malformed start line"),
            (b"OPTIONS sip:a@b HTTP/1.1\r\n\r\n", "malformed start line"),
            (
                b"OPTIONS sip:a@b;\tlr SIP/2.0\r\n\r\n",
                "malformed start line",
            ),
            // RFC 4475 §3.1.2.7 and other Request-URIs without a scheme.
            (
                b"INVITE <sip:user@example.com> SIP/2.0\r\n\r\n",
                "malformed Request-URI",
            ),
            (b"OPTIONS a@b SIP/2.0\r\n\r\n", "malformed Request-URI"),
            (b"OPTIONS :a@b SIP/2.0\r\n\r\n", "malformed Request-URI"),
            (b"OPTIONS 1sip:a@b SIP/2.0\r\n\r\n", "malformed Request-URI"),
            (
                b"OPTIONS sip:\"a\"@b SIP/2.0\r\n\r\n",
                "malformed Request-URI",
            ),
            (
                b"OPTIONS sip:a@b\x00 SIP/2.0\r\n\r\n",
                "malformed Request-URI",
            ),
            (b"OPTIONS  SIP/2.0\r\n\r\n", "malformed start line"),
            (b"OPTIONS sip:a@b  SIP/2.0\r\n\r\n", "malformed start line"),
            (b"OPTIONS\r\n\r\n", "malformed start line"),
            (b"OPT(IONS sip:a@b SIP/2.0\r\n\r\n", "malformed method"),
            (b"SIP/2.0 20 OK\r\n\r\n", "malformed status code"),
            (b"SIP/2.0 2000 OK\r\n\r\n", "malformed status code"),
            (b"SIP/2.0 099 OK\r\n\r\n", "malformed status code"),
            (b"SIP/2.0 abc OK\r\n\r\n", "malformed status code"),
            (b"SIP/2.0 200OK\r\n\r\n", "malformed status code"),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n",
                "header line without colon",
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\n: value\r\n\r\n",
                "empty header name",
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nBad Name: value\r\n\r\n",
                "malformed header name",
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nBad\xff: value\r\n\r\n",
                "malformed header name",
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\n folded: value\r\n\r\n",
                "continuation line without a header",
            ),
        ];
        for (raw, reason) in cases {
            assert_eq!(
                parse(raw).unwrap_err().reason,
                *reason,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn request_uris_of_any_scheme() {
        for uri in [
            "sip:a@b",
            "SIPS:a@b",
            "tel:+33612345678",
            "nobodyKnowsThisScheme:totallyopaquecontent",
            "soap.beep://192.0.2.103:3002",
            "sip:user;par=u%40example.net@example.com",
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        ] {
            let m = parse(format!("OPTIONS {uri} SIP/2.0\r\n\r\n").as_bytes())
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(
                m.start,
                StartLine::Request {
                    method: Method::Options,
                    uri: Bytes::copy_from_slice(uri.as_bytes())
                }
            );
        }
    }

    #[test]
    fn unsupported_version_is_told_apart() {
        let e = parse(b"OPTIONS sip:a@b SIP/7.0\r\n\r\n").unwrap_err();
        assert!(e.is_unsupported_version());
        let e = parse(b"OPTIONS sip:a@b SIP/2.0 \r\n\r\n").unwrap_err();
        assert!(!e.is_unsupported_version());
        let e = parse(b"SIP/7.0 200 OK\r\n\r\n").unwrap_err();
        assert!(!e.is_unsupported_version(), "a response is never answered");
    }

    #[test]
    fn salvage_recovers_the_well_formed_lines() {
        let raw = Bytes::from_static(
            b"\r\nSUBSCRIBE  <sip:a@b> SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
Bad Line without colon\r\n  its continuation: x\r\ni: abc\r\nCSeq: 1\r\n SUBSCRIBE\r\n\
: no name\r\nBad Name: x\r\nf: <sip:a@b>;tag=1\r\n\r\nbody: not a header\r\n",
        );
        assert!(Message::parse(raw.clone(), 64).is_err());
        let s = Message::salvage(&raw, 64).unwrap();
        assert!(!s.is_response);
        assert_eq!(s.method, Some(Method::Subscribe));
        let names: Vec<&str> = s.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Via", "Call-ID", "CSeq", "From"]);
        assert_eq!(s.header(&HeaderName::CSeq).unwrap(), &b"1 SUBSCRIBE"[..]);
        assert_eq!(s.header(&HeaderName::CallId).unwrap(), &b"abc"[..]);
        // Every line counts towards the limit, malformed ones too.
        assert!(Message::salvage(&raw, 7).is_some());
        assert!(Message::salvage(&raw, 6).is_none());

        let s =
            Message::salvage(&Bytes::from_static(b"sip/2.0 2000 OK\r\nVia: x\r\n\r\n"), 8).unwrap();
        assert!(s.is_response);
        assert_eq!(s.method, None);
        assert_eq!(s.headers.len(), 1);
        let s = Message::salvage(&Bytes::from_static(b"\x01garbage\r\nVia: x\r\n\r\n"), 8).unwrap();
        assert_eq!((s.is_response, &s.method), (false, &None));
        assert_eq!(s.header(&HeaderName::Via).unwrap(), &b"x"[..]);
        let s = Message::salvage(&Bytes::from_static(b"ACK sip:a@b\r\n\r\n"), 8).unwrap();
        assert_eq!(s.method, Some(Method::Ack));
        assert!(Message::salvage(&Bytes::from_static(b"\r\n\r\n"), 8).is_none());
        assert!(Message::salvage(&Bytes::new(), 8).is_none());
    }

    #[test]
    fn salvage_never_panics() {
        for end in 0..=SUBSCRIBE.len() {
            let raw = Bytes::copy_from_slice(&SUBSCRIBE[..end]);
            let _ = Message::salvage(&raw, 64);
        }
        for i in 0..SUBSCRIBE.len() {
            for b in [0u8, b'\r', b'\n', b' ', b':', 0xff] {
                let mut v = SUBSCRIBE.to_vec();
                v[i] = b;
                let raw = Bytes::from(v);
                if let Ok(m) = Message::parse(raw.clone(), 64) {
                    // What parses is salvaged whole.
                    let s = Message::salvage(&raw, 64).unwrap();
                    assert_eq!(s.headers, m.headers);
                    assert_eq!(s.method.as_ref(), m.method());
                } else {
                    let _ = Message::salvage(&raw, 64);
                }
            }
        }
    }

    #[test]
    fn max_headers() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\n  folded\r\nC: 3\r\n\r\n";
        assert!(Message::parse(Bytes::from_static(raw), 3).is_ok());
        assert_eq!(
            Message::parse(Bytes::from_static(raw), 2)
                .unwrap_err()
                .reason,
            "too many headers"
        );
        assert!(Message::parse(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"), 0).is_ok());
    }

    #[test]
    fn writes_with_fresh_content_length() {
        let mut m = Message::parse(Bytes::from_static(SUBSCRIBE), 64).unwrap();
        m.body = Bytes::from_static(b"longer body");
        let out = m.to_bytes();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: "));
        assert!(
            text.ends_with("Event: presence\r\nContent-Length: 11\r\n\r\nlonger body"),
            "{text}"
        );
        assert_eq!(text.matches("Content-Length").count(), 1);
        let again = Message::parse(Bytes::from(out), 64).unwrap();
        assert_eq!(again.body, m.body);
        assert_eq!(
            again.header(&HeaderName::ContentLength).unwrap(),
            &b"11"[..]
        );

        let r = Message {
            start: StartLine::Response {
                code: 202,
                reason: Bytes::from_static(b"Accepted"),
            },
            headers: vec![Header {
                name: HeaderName::from_bytes(b"i"),
                value: Bytes::from_static(b"x"),
            }],
            body: Bytes::new(),
        };
        assert_eq!(
            r.to_bytes(),
            b"SIP/2.0 202 Accepted\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            Message::parse(Bytes::from(r.to_bytes()), 8)
                .unwrap()
                .headers[0],
            r.headers[0]
        );
    }

    #[test]
    fn response_skeleton_copies_the_dialog_headers() {
        let m = parse(SUBSCRIBE).unwrap();
        assert_eq!(
            String::from_utf8(m.response_skeleton(481, "No dialog")).unwrap(),
            "SIP/2.0 481 No dialog\r\n\
Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
To: <sip:alice@example.com>\r\n\
From: \"Bob\" <sip:bob@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 1 SUBSCRIBE\r\n\
Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn never_panics_on_prefixes() {
        // Every prefix and every single-byte corruption of a valid message parses or fails cleanly.
        for end in 0..=SUBSCRIBE.len() {
            let _ = parse(&SUBSCRIBE[..end]);
        }
        for i in 0..SUBSCRIBE.len() {
            for b in [0u8, b'\r', b'\n', b' ', b':', 0xff] {
                let mut v = SUBSCRIBE.to_vec();
                v[i] = b;
                let _ = parse(&v);
            }
        }
    }
}
