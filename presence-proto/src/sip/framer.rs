//! Stream framing for SIP over TCP (RFC 3261 §18.3): cuts a byte stream into whole messages
//! using `Content-Length`, handles partial reads, several messages per read and CRLF keep-alives.

use bytes::{Buf, Bytes, BytesMut};

use super::text::{is_token, is_ws, parse_digits_u64};

/// Why a stream can no longer be framed. The connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The head (start line + headers) or head + body exceeds the configured maximum.
    TooLarge,
    /// A stream message without a parsable `Content-Length` (mandatory on streams), or with
    /// several different ones.
    BadContentLength,
}

/// Incremental framer. Feed bytes with [`Framer::push`], take messages with [`Framer::next_message`].
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_message_size: usize,
    /// Progress on the message at the start of `buf`.
    state: State,
    /// Set by the first error; every later call returns it.
    failed: Option<FrameError>,
    /// The head of the message whose framing failed, when it was complete (see
    /// [`Framer::take_failed_head`]).
    failed_head: Option<Bytes>,
}

/// Scanning state of the message at the start of the buffer, so that a head arriving in many
/// small pieces is scanned once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing scanned yet (keep-alives may still be skipped).
    Idle,
    /// Head lines scanned up to `scan` (start of the next unscanned line).
    Head {
        scan: usize,
        /// The Content-Length seen so far.
        content_length: Option<usize>,
        /// Offset of the value of the last Content-Length line, while continuation lines may
        /// still extend it (LWS folding, RFC 3261 §7.3.1).
        cl_value: Option<usize>,
        /// The first Content-Length error. It is reported once the head is complete, so that
        /// the head can be handed over (the request can still be answered) and so that the
        /// outcome does not depend on how the stream was cut.
        error: Option<FrameError>,
    },
    /// Head complete; waiting for the body.
    Body { total: usize },
}

impl Framer {
    pub fn new(max_message_size: usize) -> Framer {
        Framer {
            buf: BytesMut::new(),
            max_message_size,
            state: State::Idle,
            failed: None,
            failed_head: None,
        }
    }
    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    /// Returns the next whole message (head + exactly Content-Length body bytes), `Ok(None)` when
    /// more bytes are needed. Leading CRLFs (keep-alives, RFC 5626 §3.5.1) are skipped. Looks for
    /// `Content-Length` (or compact `l`) case-insensitively in the head without a full parse;
    /// its value may be folded over several lines.
    /// An error is final: the stream is out of sync.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.advance() {
            Ok(m) => Ok(m),
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    /// After [`Framer::next_message`] failed on a complete head (a missing, malformed, negative
    /// or conflicting `Content-Length`, or a declared body over the limit), that head: the start
    /// line and header lines with the blank line, without the body. Given once. `None` when the
    /// failure came before the end of the head (a head over the limit).
    ///
    /// The message cannot be delimited, so the stream is lost, but the request can still be
    /// answered (RFC 4475 §3.1.2.3) before the connection is closed.
    pub fn take_failed_head(&mut self) -> Option<Bytes> {
        self.failed_head.take()
    }

    fn advance(&mut self) -> Result<Option<Bytes>, FrameError> {
        let max = self.max_message_size;
        if self.state == State::Idle {
            // Keep-alives (CRLF, CRLFCRLF) and stray line ends between messages.
            let skip = self
                .buf
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(self.buf.len());
            self.buf.advance(skip);
            if self.buf.is_empty() {
                return Ok(None);
            }
            self.state = State::Head {
                scan: 0,
                content_length: None,
                cl_value: None,
                error: None,
            };
        }
        if let State::Head {
            mut scan,
            mut content_length,
            mut cl_value,
            mut error,
        } = self.state
        {
            // Only lines ending within the first `max` bytes can end an acceptable head.
            let limit = self.buf.len().min(max);
            let head_len = loop {
                let window = self.buf.get(scan..limit).unwrap_or_default();
                let Some(nl) = memchr::memchr(b'\n', window) else {
                    self.state = State::Head {
                        scan,
                        content_length,
                        cl_value,
                        error,
                    };
                    if self.buf.len() >= max {
                        return Err(FrameError::TooLarge);
                    }
                    return Ok(None);
                };
                let mut line = window.get(..nl).unwrap_or_default();
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                let next = scan + nl + 1;
                // The start line (scan == 0) is neither a header nor a continuation.
                let continuation = scan != 0 && line.first().is_some_and(|&b| is_ws(b));
                if !continuation && let Some(start) = cl_value.take() {
                    // The previous Content-Length value ends here (with its folded lines).
                    let value = self.buf.get(start..scan).unwrap_or_default();
                    let seen = parse_length(value, max).and_then(|n| match content_length {
                        Some(prev) if prev != n => Err(FrameError::BadContentLength),
                        _ => Ok(n),
                    });
                    match seen {
                        Ok(n) => content_length = Some(n),
                        Err(e) => {
                            error.get_or_insert(e);
                        }
                    }
                }
                if line.is_empty() {
                    break next;
                }
                if scan != 0
                    && !continuation
                    && let Some(offset) = content_length_value(line)
                {
                    cl_value = Some(scan + offset);
                }
                scan = next;
            };
            let total = match (error, content_length) {
                (Some(e), _) => Err(e),
                (None, None) => Err(FrameError::BadContentLength),
                (None, Some(body_len)) => match head_len.checked_add(body_len) {
                    Some(total) if total <= max => Ok(total),
                    _ => Err(FrameError::TooLarge),
                },
            };
            let total = match total {
                Ok(total) => total,
                Err(e) => {
                    self.failed_head = Some(self.buf.split_to(head_len).freeze());
                    return Err(e);
                }
            };
            self.state = State::Body { total };
        }
        if let State::Body { total } = self.state
            && self.buf.len() >= total
        {
            self.state = State::Idle;
            return Ok(Some(self.buf.split_to(total).freeze()));
        }
        Ok(None)
    }
    /// Bytes buffered but not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
    /// True when the buffer starts with a keep-alive ping `CRLFCRLF` that deserves a `CRLF` pong;
    /// consumed by `next_message`. (Optional helper; may always return false.)
    /// Call it before `next_message`; a true return consumes the four bytes.
    pub fn take_ping(&mut self) -> bool {
        if self.failed.is_none() && self.state == State::Idle && self.buf.starts_with(b"\r\n\r\n") {
            self.buf.advance(4);
            true
        } else {
            false
        }
    }
}

/// If `line` is a `Content-Length` (or `l`) header line, the offset of its value in `line`.
fn content_length_value(line: &[u8]) -> Option<usize> {
    // Cheap rejection: the name starts with `l`/`L` or `c`/`C`.
    let first = line.first()?.to_ascii_lowercase();
    if first != b'l' && first != b'c' {
        return None;
    }
    let name_end = line.iter().position(|&b| !is_token(b))?;
    let name = line.get(..name_end)?;
    if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
        return None;
    }
    let rest = line.get(name_end..)?;
    let colon = rest.iter().position(|&b| !is_ws(b))?;
    if rest.get(colon) != Some(&b':') {
        return None;
    }
    Some(name_end + colon + 1)
}

/// Parses a Content-Length value, possibly folded (surrounding SP, HTAB, CR and LF are LWS);
/// values above `max` are `TooLarge`.
fn parse_length(value: &[u8], max: usize) -> Result<usize, FrameError> {
    let lws = |b: &u8| matches!(*b, b' ' | b'\t' | b'\r' | b'\n');
    let start = value.iter().position(|b| !lws(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !lws(b)).map_or(start, |p| p + 1);
    let digits = value.get(start..end).unwrap_or_default();
    let n = parse_digits_u64(digits).ok_or(FrameError::BadContentLength)?;
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(FrameError::TooLarge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &[u8] =
        b"NOTIFY sip:bob@h SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 10\r\n\r\n\r\n\r\nbody\r\n";
    const M2: &[u8] = b"SIP/2.0 200 OK\r\ncontent-length  :  0  \r\nCall-ID: 2\r\n\r\n";

    fn drain(f: &mut Framer) -> Result<Vec<Bytes>, FrameError> {
        let mut out = Vec::new();
        while let Some(m) = f.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn one_push_two_messages() {
        let mut f = Framer::new(4096);
        f.push(&[M1, M2].concat());
        assert_eq!(
            drain(&mut f).unwrap(),
            vec![Bytes::from_static(M1), Bytes::from_static(M2)]
        );
        assert_eq!(f.buffered(), 0);
        assert_eq!(f.next_message(), Ok(None));
    }

    #[test]
    fn every_split_point() {
        let stream = [M1, M2].concat();
        for split in 0..=stream.len() {
            let mut f = Framer::new(4096);
            f.push(&stream[..split]);
            let mut got = drain(&mut f).unwrap();
            f.push(&stream[split..]);
            got.extend(drain(&mut f).unwrap());
            assert_eq!(
                got,
                vec![Bytes::from_static(M1), Bytes::from_static(M2)],
                "split {split}"
            );
            assert_eq!(f.buffered(), 0);
        }
        // And every two split points (three reads).
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                let mut f = Framer::new(4096);
                let mut got = Vec::new();
                for chunk in [&stream[..a], &stream[a..b], &stream[b..]] {
                    f.push(chunk);
                    got.extend(drain(&mut f).unwrap());
                }
                assert_eq!(got.len(), 2, "splits {a} {b}");
                assert_eq!(got.concat(), stream);
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let stream = [b"\r\n\r\n".as_slice(), M1, b"\r\n", M2, b"\r\n\r\n"].concat();
        let mut f = Framer::new(4096);
        let mut got = Vec::new();
        for &b in &stream {
            f.push(&[b]);
            got.extend(drain(&mut f).unwrap());
        }
        assert_eq!(got, vec![Bytes::from_static(M1), Bytes::from_static(M2)]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn keep_alives() {
        let mut f = Framer::new(4096);
        f.push(b"\r\n\r\n");
        assert!(f.take_ping());
        assert!(!f.take_ping());
        f.push(b"\r\n");
        assert!(!f.take_ping());
        assert_eq!(f.next_message(), Ok(None));
        assert_eq!(f.buffered(), 0);
        f.push(b"\r\n\r\n\r\n");
        f.push(M2);
        f.push(b"\r\n\r\n");
        assert_eq!(f.next_message(), Ok(Some(Bytes::from_static(M2))));
        assert!(f.take_ping());
        assert_eq!(f.next_message(), Ok(None));
        // A ping is not taken in the middle of a message.
        f.push(b"SIP/2.0 200 OK\r\nl: 4\r\n\r\n");
        assert_eq!(f.next_message(), Ok(None));
        f.push(b"\r\n\r\n");
        assert!(!f.take_ping());
        assert_eq!(
            f.next_message().unwrap().unwrap().as_ref(),
            b"SIP/2.0 200 OK\r\nl: 4\r\n\r\n\r\n\r\n"
        );
    }

    #[test]
    fn compact_and_case_insensitive_length() {
        for head in [
            &b"l: 3"[..],
            b"L:3",
            b"CONTENT-LENGTH: 3",
            b"Content-length\t:\t3\t",
        ] {
            let mut f = Framer::new(4096);
            let msg = [b"MESSAGE sip:a@b SIP/2.0\r\n", head, b"\r\n\r\nabc"].concat();
            f.push(&msg);
            f.push(b"MESSAGE");
            assert_eq!(
                f.next_message().unwrap().unwrap(),
                msg,
                "{}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(f.buffered(), 7);
        }
        // Names that merely start like Content-Length are not it.
        let mut f = Framer::new(4096);
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nl-x: 5\r\nContent-Lengths: 5\r\nContent-Length: 1\r\n\r\nab");
        assert_eq!(
            f.next_message().unwrap().unwrap().len(),
            25 + 8 + 20 + 19 + 2 + 1
        );
    }

    #[test]
    fn missing_or_bad_content_length() {
        for msg in [
            &b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"[..],
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n\r\n",
            b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n",
        ] {
            let mut f = Framer::new(4096);
            f.push(msg);
            assert_eq!(
                f.next_message(),
                Err(FrameError::BadContentLength),
                "{}",
                String::from_utf8_lossy(msg)
            );
            // Final.
            f.push(M2);
            assert_eq!(f.next_message(), Err(FrameError::BadContentLength));
        }
        // The start line is not a header, even if it looks like one.
        let mut f = Framer::new(4096);
        f.push(b"l: 5 SIP/2.0\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::BadContentLength));
        // Equal duplicates are fine.
        let mut f = Framer::new(4096);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 01\r\n\r\nx");
        assert!(f.next_message().unwrap().is_some());
    }

    #[test]
    fn too_large() {
        let msg = [b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n".as_slice()].concat();
        // Exactly at the limit is fine.
        let mut f = Framer::new(msg.len());
        f.push(&msg);
        assert_eq!(f.next_message().unwrap().unwrap(), msg);
        // One byte less: the head never ends within the limit.
        let mut f = Framer::new(msg.len() - 1);
        f.push(&msg[..msg.len() - 1]);
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        // A head without a blank line, trickled in.
        let mut f = Framer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\n");
        let mut err = None;
        for _ in 0..100 {
            f.push(b"X: y\r\n");
            if let Err(e) = f.next_message() {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(FrameError::TooLarge));
        assert!(f.buffered() <= 106);
        // Declared body too large, detected before the body arrives.
        let mut f = Framer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 80\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        let mut f = Framer::new(100);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999999\r\n\r\n");
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        // Head + body at exactly the limit.
        let head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 53\r\n\r\n";
        assert_eq!(head.len(), 47);
        let mut f = Framer::new(100);
        f.push(head);
        f.push(&[b'x'; 52]);
        assert_eq!(f.next_message(), Ok(None));
        f.push(b"x");
        assert_eq!(f.next_message().unwrap().unwrap().len(), 100);
    }

    #[test]
    fn folded_content_length() {
        for head in [
            &b"Content-Length:\r\n 3"[..],
            b"Content-Length:\r\n\t3\r\n ",
            b"l :\r\n  \r\n 3",
            b"Content-Length: 3\r\n\t",
        ] {
            let msg = [b"MESSAGE sip:a@b SIP/2.0\r\n", head, b"\r\nX: y\r\n\r\nabc"].concat();
            let stream = [msg.as_slice(), M2].concat();
            for split in 0..=stream.len() {
                let mut f = Framer::new(4096);
                f.push(&stream[..split]);
                let mut got = drain(&mut f).unwrap();
                f.push(&stream[split..]);
                got.extend(drain(&mut f).unwrap());
                assert_eq!(
                    got,
                    vec![Bytes::from(msg.clone()), Bytes::from_static(M2)],
                    "{} split {split}",
                    String::from_utf8_lossy(head)
                );
            }
        }
        // A continuation line elsewhere does not extend the Content-Length.
        let mut f = Framer::new(4096);
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nX: y\r\n 2\r\n\r\nab");
        assert_eq!(f.next_message().unwrap().unwrap().len(), 44);
        assert_eq!(f.buffered(), 1);
    }

    #[test]
    fn a_failed_head_is_handed_over_once() {
        let cases: &[(&[u8], FrameError)] = &[
            (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nContent-Length: -999\r\n\r\nbody", FrameError::BadContentLength),
            (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 13\r\nVia: x\r\nContent-Length: 5\r\n\r\nbody", FrameError::BadContentLength),
            (b"INVITE sip:a@b SIP/2.0\r\nl: five\r\nVia: x\r\n\r\n", FrameError::BadContentLength),
            (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\nv=0\r\n", FrameError::BadContentLength),
            (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nl: 4000\r\n\r\n", FrameError::TooLarge),
            (b"INVITE sip:a@b SIP/2.0\r\nl: 99999999999999999999999\r\nl: x\r\nVia: x\r\n\r\n", FrameError::TooLarge),
        ];
        for (stream, error) in cases {
            let head_len = memchr::memmem::find(stream, b"\r\n\r\n").unwrap() + 4;
            // Whole, and byte by byte: the error comes at the end of the head either way.
            for chunk in [stream.len(), 1] {
                let mut f = Framer::new(1024);
                let mut result = Ok(None);
                for (i, piece) in stream.chunks(chunk).enumerate() {
                    f.push(piece);
                    result = f.next_message();
                    if (i + 1) * chunk < head_len {
                        assert_eq!(result, Ok(None), "{}", String::from_utf8_lossy(stream));
                    } else {
                        break;
                    }
                }
                assert_eq!(result, Err(*error), "{}", String::from_utf8_lossy(stream));
                assert_eq!(
                    f.take_failed_head().as_deref(),
                    Some(&stream[..head_len]),
                    "{}",
                    String::from_utf8_lossy(stream)
                );
                assert_eq!(f.take_failed_head(), None);
                assert_eq!(f.next_message(), Err(*error));
            }
        }
        // A head that does not end within the limit has nothing to hand over.
        let mut f = Framer::new(64);
        f.push(&[b'A'; 64]);
        assert_eq!(f.next_message(), Err(FrameError::TooLarge));
        assert_eq!(f.take_failed_head(), None);
        // Nor has a good stream.
        let mut f = Framer::new(4096);
        f.push(M1);
        assert!(f.next_message().unwrap().is_some());
        assert_eq!(f.take_failed_head(), None);
    }

    #[test]
    fn bare_lf_head() {
        let mut f = Framer::new(4096);
        f.push(b"OPTIONS sip:a@b SIP/2.0\nl: 2\n\nokOPTIONS sip:a@b SIP/2.0\nl: 0\n\r\n");
        assert_eq!(
            f.next_message().unwrap().unwrap().as_ref(),
            b"OPTIONS sip:a@b SIP/2.0\nl: 2\n\nok"
        );
        assert_eq!(
            f.next_message().unwrap().unwrap().as_ref(),
            b"OPTIONS sip:a@b SIP/2.0\nl: 0\n\r\n"
        );
    }
}
