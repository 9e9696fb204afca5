//! `multipart/related` bodies (RFC 2387) as list NOTIFYs carry them: writing part by part straight
//! into the NOTIFY buffer, and reading (for tests, the load tool and fuzzing).

use bytes::Bytes;

/// One body part: its headers (name, value) in order, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Part {
    /// Value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a multipart body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartError(pub String);

/// Writes the head of one part: `--boundary CRLF`, `Content-Transfer-Encoding: binary`,
/// `Content-ID: <content_id>` (as given: the caller decides bare or `<...>`), `Content-Type`,
/// blank line. The caller then appends the content and calls [`write_part_end`].
pub fn write_part_head(out: &mut Vec<u8>, boundary: &str, content_id: &str, content_type: &str) {
    todo!("{out:?} {boundary} {content_id} {content_type}")
}

/// Ends a part's content (`CRLF`).
pub fn write_part_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Writes the closing delimiter `--boundary-- CRLF`.
pub fn write_close(out: &mut Vec<u8>, boundary: &str) {
    todo!("{out:?} {boundary}")
}

/// Splits a multipart body by `boundary` (RFC 2046 §5.1.1: delimiters at line starts, preamble
/// and epilogue ignored, transport padding allowed), parsing each part's headers (folded lines
/// joined) and keeping its content without the CRLF that precedes the next delimiter. Bounded:
/// at most `max_parts` parts.
pub fn parse(body: &[u8], boundary: &str, max_parts: usize) -> Result<Vec<Part>, MultipartError> {
    todo!("{body:?} {boundary} {max_parts}")
}
