//! The metrics endpoint's HTTP/1.x, runtime-neutral: the runtimes read bytes into a
//! [`RequestReader`] and write what it decides. One request per connection (`Connection:
//! close`): `GET /metrics` (a query string is ignored) is a scrape, answered with
//! [`metrics_response`]; another path gets 404, another method on `/metrics` 405, a request
//! head larger than [`MAX_REQUEST`] 431, a malformed one 400, and one not complete within
//! [`READ_TIMEOUT`] 408. The runtimes serve one connection at a time per listener, each within
//! [`EXCHANGE_TIMEOUT`]: a client cannot hold more than one connection's worth of resources.
//! After the response the connection is shut down for writing and read for at most [`LINGER`]
//! (lingering close).

use std::time::Duration;

/// Largest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Longest wait for a complete request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time one connection is served, from accept to close (read, scrape, write).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// After its response, how long a connection is still read (and what is read dropped) before it
/// is closed, so that a client still sending (an oversized request) gets the response rather
/// than a reset; at most [`LINGER_BYTES`] are read.
pub const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped after a response.
pub const LINGER_BYTES: usize = 64 * 1024;
/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The path served.
pub const METRICS_PATH: &str = "/metrics";

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics`: render the metrics and answer with [`metrics_response`].
    Scrape,
    /// Write this response and close.
    Respond(Vec<u8>),
}

/// Accumulates the bytes of one request until its head is complete.
#[derive(Debug, Default)]
pub struct RequestReader {
    buf: Vec<u8>,
}

impl RequestReader {
    pub fn new() -> RequestReader {
        RequestReader::default()
    }

    /// Adds bytes read; returns what to do once the head is complete (or too large).
    pub fn push(&mut self, data: &[u8]) -> Option<Request> {
        // Only the new bytes (and the 3 before them) can complete the blank line.
        let from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(data);
        let complete = self.buf[from..].windows(4).any(|w| w == b"\r\n\r\n")
            || self.buf[from..].windows(2).any(|w| w == b"\n\n");
        if complete {
            return Some(route(&self.buf));
        }
        if self.buf.len() >= MAX_REQUEST {
            return Some(Request::Respond(response(
                431,
                "Request Header Fields Too Large",
                "",
                b"request too large\n",
            )));
        }
        None
    }
}

/// The answer to a complete request head.
fn route(head: &[u8]) -> Request {
    let line_end = head.iter().position(|b| *b == b'\n').unwrap_or(head.len());
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let bad = || Request::Respond(response(400, "Bad Request", "", b"bad request\n"));
    let Ok(line) = std::str::from_utf8(line) else {
        return bad();
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad();
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return bad();
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != METRICS_PATH {
        return Request::Respond(response(404, "Not Found", "", b"not found\n"));
    }
    if method != "GET" {
        return Request::Respond(response(
            405,
            "Method Not Allowed",
            "Allow: GET\r\n",
            b"method not allowed\n",
        ));
    }
    Request::Scrape
}

/// The answer to a request not complete within [`READ_TIMEOUT`].
pub fn timeout_response() -> Vec<u8> {
    response(408, "Request Timeout", "", b"request timeout\n")
}

/// The answer to a scrape: `text`, in the Prometheus text format.
pub fn metrics_response(text: &str) -> Vec<u8> {
    response(200, "OK", "", text.as_bytes())
}

/// The answer to a scrape the core could not answer (it is shutting down).
pub fn unavailable_response() -> Vec<u8> {
    response(503, "Service Unavailable", "", b"shutting down\n")
}

fn response(status: u16, reason: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let content_type = if status == 200 {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra_headers}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(request: &Request) -> String {
        match request {
            Request::Scrape => "scrape".to_owned(),
            Request::Respond(bytes) => String::from_utf8_lossy(bytes)
                .lines()
                .next()
                .unwrap()
                .to_owned(),
        }
    }

    fn one(text: &str) -> String {
        let mut r = RequestReader::new();
        status(&r.push(text.as_bytes()).expect("complete"))
    }

    #[test]
    fn routes() {
        assert_eq!(one("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "scrape");
        assert_eq!(one("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), "scrape");
        assert_eq!(one("GET /metrics HTTP/1.1\n\n"), "scrape");
        assert_eq!(one("GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
        assert_eq!(
            one("GET /metricsx HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            one("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            one("HEAD /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(one("GET /metrics\r\n\r\n"), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            one("GET /metrics SIP/2.0\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(one("\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    }

    #[test]
    fn byte_by_byte_and_too_large() {
        let mut r = RequestReader::new();
        let text = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        for (i, b) in text.iter().enumerate() {
            let out = r.push(std::slice::from_ref(b));
            assert_eq!(out.is_some(), i == text.len() - 1, "at byte {i}");
        }
        let mut r = RequestReader::new();
        r.push(b"GET /metrics HTTP/1.1\r\n");
        let mut out = None;
        for _ in 0..MAX_REQUEST {
            out = r.push(b"X-Filler: 0123456789\r\n");
            if out.is_some() {
                break;
            }
        }
        assert_eq!(
            status(&out.unwrap()),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn responses() {
        let ok = String::from_utf8(metrics_response("a 1\n")).unwrap();
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\na 1\n"
        );
        let not_allowed = one("PUT /metrics HTTP/1.1\r\n\r\n");
        assert!(not_allowed.contains("405"));
        let Request::Respond(bytes) = RequestReader::new()
            .push(b"PUT /metrics HTTP/1.1\r\n\r\n")
            .unwrap()
        else {
            panic!()
        };
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("\r\nAllow: GET\r\n")
        );
        assert!(
            String::from_utf8(timeout_response())
                .unwrap()
                .starts_with("HTTP/1.1 408 ")
        );
    }
}
