//! `multipart/related` bodies (RFC 2387) as list NOTIFYs carry them: writing part by part straight
//! into the NOTIFY buffer, and reading (for tests, the load tool and fuzzing).

use bytes::Bytes;
use memchr::memmem;

/// One body part: its headers (name, value) in order, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Part {
    /// Value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a multipart body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartError(pub String);

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid multipart body: {}", self.0)
    }
}

impl std::error::Error for MultipartError {}

fn err(msg: &str) -> MultipartError {
    MultipartError(msg.to_owned())
}

/// Writes the head of one part: `--boundary CRLF`, `Content-Transfer-Encoding: binary`,
/// `Content-Id: <content_id>` (spelled as belle-sip writes it and liblinphone looks it up; as given: the caller decides bare or `<...>`), `Content-Type`,
/// blank line. The caller then appends the content and calls [`write_part_end`].
pub fn write_part_head(out: &mut Vec<u8>, boundary: &str, content_id: &str, content_type: &str) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\nContent-Transfer-Encoding: binary\r\nContent-Id: ");
    out.extend_from_slice(content_id.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Ends a part's content (`CRLF`).
pub fn write_part_end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// Writes the closing delimiter `--boundary-- CRLF`.
pub fn write_close(out: &mut Vec<u8>, boundary: &str) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

/// Writes one whole part with arbitrary headers: `--boundary CRLF`, `name: value CRLF` per
/// header, blank line, content, `CRLF`. The caller ensures that header names are tokens, that
/// values hold no line end, and that the content does not contain the delimiter
/// (`LF --boundary`).
pub fn write_part(out: &mut Vec<u8>, boundary: &str, part: &Part) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &part.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&part.body);
    write_part_end(out);
}

/// Writes every part with [`write_part`], then the closing delimiter: what [`parse`] reads back.
pub fn write(out: &mut Vec<u8>, boundary: &str, parts: &[Part]) {
    for p in parts {
        write_part(out, boundary, p);
    }
    write_close(out, boundary);
}

/// What follows `--boundary` at a line start.
enum Delimiter {
    /// A delimiter line: the next part starts at this offset (after the line end).
    Part(usize),
    /// The close delimiter `--boundary--`.
    Close,
}

/// If `rest` (what follows `--boundary`) makes a delimiter: transport padding (spaces, tabs)
/// then a line end (CRLF or LF), or `--`. Returns the offset after it in `rest`.
fn delimiter_after(rest: &[u8]) -> Option<Delimiter> {
    if rest.starts_with(b"--") {
        return Some(Delimiter::Close);
    }
    let pad = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    match &rest[pad..] {
        [b'\n', ..] => Some(Delimiter::Part(pad + 1)),
        [b'\r', b'\n', ..] => Some(Delimiter::Part(pad + 2)),
        _ => None,
    }
}

/// Splits a multipart body by `boundary` (RFC 2046 §5.1.1: delimiters at line starts, preamble
/// and epilogue ignored, transport padding allowed), parsing each part's headers (folded lines
/// joined) and keeping its content without the CRLF that precedes the next delimiter. Bounded:
/// at most `max_parts` parts.
///
/// Lenient details: bare LF line ends are accepted (a delimiter preceded by LF loses only the
/// LF); a delimiter right after the previous delimiter line makes an empty part; a part without
/// a blank line is all headers. Refused: an empty boundary or one containing CR or LF, no
/// delimiter, no close delimiter, no part at all, a header line without a colon or whose name
/// is not a token (printable ASCII but `:`), a continuation line before any header, a header
/// that is not UTF-8.
pub fn parse(body: &[u8], boundary: &str, max_parts: usize) -> Result<Vec<Part>, MultipartError> {
    if boundary.is_empty() || boundary.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(err("invalid boundary"));
    }
    let mut dash: Vec<u8> = Vec::with_capacity(boundary.len() + 3);
    dash.extend_from_slice(b"\n--");
    dash.extend_from_slice(boundary.as_bytes());
    let finder = memmem::Finder::new(&dash);
    let dash_len = dash.len() - 1;

    // The first delimiter: at the very start, or after a LF (the preamble is skipped).
    let mut start = {
        let mut candidate = body.starts_with(&dash[1..]).then_some(0);
        let mut from = 0usize;
        loop {
            // Searching from `at` cannot find the same LF again (it is at `at - 1`), nor a
            // match at 0 (`body[0]` is `-` when `at` is 0): each round makes progress.
            let at = match candidate.take() {
                Some(at) => at,
                None => match finder.find(body.get(from..).unwrap_or_default()) {
                    Some(i) => from + i + 1,
                    None => return Err(err("no delimiter")),
                },
            };
            match delimiter_after(body.get(at + dash_len..).unwrap_or_default()) {
                Some(Delimiter::Part(n)) => break at + dash_len + n,
                Some(Delimiter::Close) => return Err(err("no body part")),
                None => from = at,
            }
        }
    };

    let mut parts = Vec::new();
    loop {
        // The next delimiter: a LF (which may end the previous delimiter line) then `--boundary`.
        let mut from = start - 1;
        let (lf, next) = loop {
            let i = match finder.find(body.get(from..).unwrap_or_default()) {
                Some(i) => from + i,
                None => return Err(err("no close delimiter")),
            };
            match delimiter_after(body.get(i + 1 + dash_len..).unwrap_or_default()) {
                Some(d) => break (i, d),
                None => from = i + 1,
            }
        };
        let end = if lf > start && body[lf - 1] == b'\r' {
            lf - 1
        } else {
            lf.max(start)
        };
        if parts.len() >= max_parts {
            return Err(err("too many parts"));
        }
        parts.push(parse_part(body.get(start..end).unwrap_or_default())?);
        match next {
            Delimiter::Part(n) => start = lf + 1 + dash_len + n,
            Delimiter::Close => return Ok(parts),
        }
    }
}

/// Parses one part: headers up to the first empty line, then the content.
fn parse_part(data: &[u8]) -> Result<Part, MultipartError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    let mut body_start = data.len();
    while pos < data.len() {
        let (line, next) = match memchr::memchr(b'\n', &data[pos..]) {
            Some(i) => (&data[pos..pos + i], pos + i + 1),
            None => (&data[pos..], data.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = next;
        if line.is_empty() {
            body_start = pos;
            break;
        }
        let line = std::str::from_utf8(line).map_err(|_| err("header not UTF-8"))?;
        if line.starts_with([' ', '\t']) {
            // A folded line: unfolding removes the line end, the white space stays.
            let (_, value) = headers
                .last_mut()
                .ok_or_else(|| err("continuation line before any header"))?;
            value.push_str(line);
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| err("header line without a colon"))?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err("invalid header name"));
        }
        headers.push((name.to_owned(), value.to_owned()));
    }
    for (_, value) in &mut headers {
        let trimmed = value.trim_matches([' ', '\t']);
        if trimmed.len() != value.len() {
            *value = trimmed.to_owned();
        }
    }
    Ok(Part {
        headers,
        body: Bytes::copy_from_slice(data.get(body_start..).unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(headers: &[(&str, &str)], body: &[u8]) -> Part {
        Part {
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn notify_writer_shape() {
        let mut out = Vec::new();
        write_part_head(
            &mut out,
            "----------abc",
            "rlmi@x",
            "application/rlmi+xml;charset=\"UTF-8\"",
        );
        out.extend_from_slice(b"<list/>");
        write_part_end(&mut out);
        write_part_head(&mut out, "----------abc", "<p1@x>", "application/pidf+xml");
        out.extend_from_slice(b"<presence/>\r\n");
        write_part_end(&mut out);
        write_close(&mut out, "----------abc");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "------------abc\r\n\
             Content-Transfer-Encoding: binary\r\n\
             Content-Id: rlmi@x\r\n\
             Content-Type: application/rlmi+xml;charset=\"UTF-8\"\r\n\
             \r\n\
             <list/>\r\n\
             ------------abc\r\n\
             Content-Transfer-Encoding: binary\r\n\
             Content-Id: <p1@x>\r\n\
             Content-Type: application/pidf+xml\r\n\
             \r\n\
             <presence/>\r\n\r\n\
             ------------abc--\r\n"
        );
        let parts = parse(&out, "----------abc", 10).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].header("content-id"), Some("rlmi@x"));
        assert_eq!(
            parts[0].header("CONTENT-TYPE"),
            Some("application/rlmi+xml;charset=\"UTF-8\"")
        );
        assert_eq!(parts[0].header("Content-Transfer-Encoding"), Some("binary"));
        assert_eq!(parts[0].body, Bytes::from_static(b"<list/>"));
        assert_eq!(parts[1].header("Content-ID"), Some("<p1@x>"));
        assert_eq!(parts[1].body, Bytes::from_static(b"<presence/>\r\n"));
        assert_eq!(parse(&out, "----------abc", 1), Err(err("too many parts")));
    }

    #[test]
    fn generic_writer_round_trip() {
        let parts = vec![
            part(&[], b""),
            part(&[], b"no headers"),
            part(&[("X", "")], b""),
            part(
                &[("A", "1"), ("b-c", "x  y")],
                b"\r\n--bb\r\n-- b\r\n--b:\r\nbody\r",
            ),
            part(&[("--b", "v")], b"\n"),
        ];
        let mut out = Vec::new();
        write(&mut out, "b", &parts);
        assert_eq!(parse(&out, "b", 10), Ok(parts));
    }

    #[test]
    fn lenient_reading() {
        let body = b"preamble\r\n--bx\r\n--b\r\n--bx: not a delimiter\r\n--b \t\r\n\
Content-Type: text/plain;\r\n\tcharset=us-ascii\r\nEmpty:\r\nSpaced : v \r\n\r\nhello\n\
--b\nA: 1\n\nlf body\n--b\r\nHeaders-Only: yes\r\n--b\r\n--b--  epilogue\r\n--b\r\nignored";
        assert_eq!(
            parse(body, "b", 10),
            Ok(vec![
                part(&[("--bx", "not a delimiter")], b""),
                part(
                    &[
                        ("Content-Type", "text/plain;\tcharset=us-ascii"),
                        ("Empty", ""),
                        ("Spaced", "v"),
                    ],
                    b"hello"
                ),
                part(&[("A", "1")], b"lf body"),
                part(&[("Headers-Only", "yes")], b""),
                part(&[], b""),
            ])
        );
        // A first line that only starts like a delimiter.
        assert_eq!(
            parse(b"--bx\r\n--b\r\n\r\nx\r\n--b--", "b", 10),
            Ok(vec![part(&[], b"x")])
        );
        assert!(parse(b"--bx\r\n", "b", 10).is_err());
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "b"),
            (b"--b\r\n\r\nx", "b"),
            (b"--b--\r\n", "b"),
            (b"--bb\r\n\r\nx\r\n--bb--", "b"),
            (b"--b\r\n\r\nx\r\n--b--", ""),
            (b"--b\r\n\r\nx\r\n--b--", "b\r"),
            (b"--b\r\nno colon\r\n\r\nx\r\n--b--", "b"),
            (b"--b\r\n folded first\r\n\r\nx\r\n--b--", "b"),
            (b"--b\r\nbad name: v\r\n\r\nx\r\n--b--", "b"),
            (b"--b\r\n: v\r\n\r\nx\r\n--b--", "b"),
            (b"--b\r\nA: \xff\r\n\r\nx\r\n--b--", "b"),
            (b"--b\r", "b"),
            (b"--b", "b"),
        ];
        for (body, boundary) in cases {
            assert!(
                parse(body, boundary, 10).is_err(),
                "{:?} {boundary:?}",
                String::from_utf8_lossy(body)
            );
        }
        // Non-UTF-8 content is fine.
        assert_eq!(
            parse(b"--b\r\n\r\n\xff\x00\r\n--b--", "b", 10),
            Ok(vec![part(&[], b"\xff\x00")])
        );
    }
}
