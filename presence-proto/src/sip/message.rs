//! SIP messages: start line, raw header lines, body; parsing and serialization.

use bytes::Bytes;

use super::header::HeaderName;

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
        todo!("{tok:?}")
    }
    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        todo!()
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
        todo!("{raw:?} {max_headers}")
    }

    /// Appends the wire form to `out`: start line, each header as `Name: value`, a
    /// `Content-Length` header reflecting `body.len()` (any stored Content-Length is replaced),
    /// blank line, body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        todo!("{out:?}")
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        self.write_to(&mut out);
        out
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
        self.headers.iter().find(|h| &h.name == name).map(|h| &h.value)
    }
    /// All values of a header, in order (one per header line; comma lists are not split here).
    pub fn headers_named<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.headers.iter().filter(move |h| &h.name == name).map(|h| &h.value)
    }
    /// The Request-URI, parsed.
    pub fn request_uri(&self) -> Option<super::Uri> {
        todo!()
    }
}
