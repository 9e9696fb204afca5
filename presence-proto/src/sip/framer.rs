//! Stream framing for SIP over TCP (RFC 3261 §18.3): cuts a byte stream into whole messages
//! using `Content-Length`, handles partial reads, several messages per read and CRLF keep-alives.

use bytes::{Bytes, BytesMut};

/// Why a stream can no longer be framed. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The head (start line + headers) or head + body exceeds the configured maximum.
    TooLarge,
    /// A stream message without a parsable `Content-Length` (mandatory on streams).
    BadContentLength,
}

/// Incremental framer. Feed bytes with [`Framer::push`], take messages with [`Framer::next_message`].
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_message_size: usize,
}

impl Framer {
    pub fn new(max_message_size: usize) -> Framer {
        Framer { buf: BytesMut::new(), max_message_size }
    }
    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// Returns the next whole message (head + exactly Content-Length body bytes), `Ok(None)` when
    /// more bytes are needed. Leading CRLFs (keep-alives, RFC 5626 §3.5.1) are skipped. Looks for
    /// `Content-Length` (or compact `l`) case-insensitively in the head without a full parse.
    /// An error is final: the stream is out of sync.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        todo!("{}", self.max_message_size)
    }
    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
    /// True when the buffer starts with a keep-alive ping `CRLFCRLF` that deserves a `CRLF` pong;
    /// consumed by `next_message`. (Optional helper; may always return false.)
    pub fn take_ping(&mut self) -> bool {
        false
    }
}
