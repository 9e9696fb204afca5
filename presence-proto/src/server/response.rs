//! Validating the request headers every response needs, and writing responses.

use std::net::SocketAddr;

use crate::sip::{CSeq, Header, HeaderName, Message, Method, NameAddr, Uri, Via};

/// The dialog-forming headers of a request, decoded once.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    pub(crate) call_id: String,
    pub(crate) cseq: CSeq,
    pub(crate) from: NameAddr,
    pub(crate) to: NameAddr,
}

/// Whether a response can be built at all from these request headers: a Via (the response
/// follows the Vias back, RFC 3261 §8.2.6.2) and a CSeq (the UAC matches its transaction on the
/// top Via's branch and the CSeq method, §17.1.3). From, To and Call-ID are copied when present;
/// a request without them still gets its 400 (RFC 4475 §3.3.1).
pub(crate) fn answerable(headers: &[Header]) -> bool {
    let has = |name: HeaderName| {
        headers
            .iter()
            .any(|h| h.name == name && !h.value.is_empty())
    };
    has(HeaderName::Via) && has(HeaderName::CSeq)
}

/// An ACK, by its method or its CSeq method: never answered (RFC 3261 §17.1.1.3, §17.2.1).
pub(crate) fn is_ack(method: Option<&Method>, headers: &[Header]) -> bool {
    method == Some(&Method::Ack)
        || headers.iter().any(|h| {
            h.name == HeaderName::CSeq
                && h.value
                    .split(|&b| b == b' ' || b == b'\t')
                    .rfind(|w| !w.is_empty())
                    == Some(b"ACK".as_slice())
        })
}

/// The one value of a header that must appear exactly once (RFC 3261 §7.3.1: Call-ID, CSeq,
/// From and To are not lists); the error names the problem, for a 400.
fn single<'a>(
    msg: &'a Message,
    name: &HeaderName,
    missing: &'static str,
    several: &'static str,
) -> Result<&'a [u8], &'static str> {
    let mut values = msg
        .headers
        .iter()
        .filter(|h| &h.name == name)
        .map(|h| &h.value[..]);
    let first = values.next().ok_or(missing)?;
    if values.next().is_some() {
        return Err(several);
    }
    Ok(first)
}

/// Checks and decodes what every request must carry well formed (RFC 3261 §8.1.1, §8.2: a
/// malformed request gets a 400 whose reason says what is wrong, §21.4.1): one Call-ID, CSeq,
/// From and To, parsable Vias, and a Request-URI without URI headers (not allowed there,
/// §19.1.1; RFC 4475 §3.1.2.11). The CSeq method is compared with the request's by
/// [`cseq_matches`], after a 501 for an unknown method (RFC 4475 §3.1.2.18).
pub(crate) fn request_info(msg: &Message) -> Result<RequestInfo, &'static str> {
    let call_id = single(
        msg,
        &HeaderName::CallId,
        "Missing Call-ID",
        "Several Call-ID headers",
    )?;
    let call_id = std::str::from_utf8(call_id)
        .ok()
        .filter(|v| !v.is_empty() && !v.bytes().any(|c| c.is_ascii_whitespace()))
        .ok_or("Bad Call-ID")?
        .to_owned();
    let cseq = single(
        msg,
        &HeaderName::CSeq,
        "Missing CSeq",
        "Several CSeq headers",
    )?;
    let cseq = CSeq::parse(cseq).ok_or("Bad CSeq")?;
    let from = single(
        msg,
        &HeaderName::From,
        "Missing From",
        "Several From headers",
    )?;
    let from = NameAddr::parse(from).ok_or("Bad From")?;
    let to = single(msg, &HeaderName::To, "Missing To", "Several To headers")?;
    let to = NameAddr::parse(to).ok_or("Bad To")?;
    let mut vias = msg.headers_named(&HeaderName::Via).peekable();
    if vias.peek().is_none() {
        return Err("Missing Via");
    }
    if !vias.all(|v| Via::parse_list(v).is_some()) {
        return Err("Bad Via");
    }
    if msg
        .request_uri()
        .is_some_and(|uri: Uri| !uri.headers.is_empty())
    {
        return Err("Request-URI with headers");
    }
    Ok(RequestInfo {
        call_id,
        cseq,
        from,
        to,
    })
}

/// The CSeq method equals the request method (RFC 3261 §8.1.1.5; RFC 4475 §3.1.2.17).
pub(crate) fn cseq_matches(msg: &Message, info: &RequestInfo) -> bool {
    msg.method() == Some(&info.cseq.method)
}

/// The reason phrase of a 400 for a malformed request: it names the problem (RFC 3261
/// §21.4.1), like the Warning that goes with it.
pub(crate) fn bad_request_reason(problem: &str) -> String {
    format!("Bad Request ({problem})")
}

/// Writes a response to `msg` into `out`: status line; the Vias (the top one completed with
/// `received`/`rport` per RFC 3581 when it asks for it or comes from elsewhere), From, To (with
/// `to_tag` added when the request's To has none), Call-ID and CSeq copied; `extra` headers;
/// `Server`; `Content-Length: 0`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    msg: &Message,
    remote: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &[u8])],
    server: &str,
) {
    write_response_to(
        out,
        &msg.headers,
        remote,
        code,
        reason,
        to_tag,
        extra,
        server,
    );
}

/// [`write_response`] from the request's header lines alone, as for a request that does not
/// parse ([`crate::sip::Message::salvage`]): the headers a response copies are copied as they
/// are, those that are missing are left out.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_response_to(
    out: &mut Vec<u8>,
    headers: &[Header],
    remote: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &[u8])],
    server: &str,
) {
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut first = true;
    for h in headers {
        match h.name {
            HeaderName::Via if first => {
                first = false;
                out.extend_from_slice(b"Via: ");
                write_top_via(out, &h.value, remote);
                out.extend_from_slice(b"\r\n");
            }
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                out.extend_from_slice(h.name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(&h.value);
                out.extend_from_slice(b"\r\n");
            }
            HeaderName::To => {
                out.extend_from_slice(b"To: ");
                out.extend_from_slice(&h.value);
                if let Some(tag) = to_tag
                    && NameAddr::parse(&h.value).is_some_and(|to| to.tag().is_none())
                {
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(tag.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Server: ");
    out.extend_from_slice(server.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
}

/// The top Via value of a response: completed with `received` and `rport` when the request asked
/// for rport or came from another address than the Via says; copied as is otherwise.
fn write_top_via(out: &mut Vec<u8>, raw: &[u8], remote: SocketAddr) {
    let Some(mut vias) = Via::parse_list(raw) else {
        out.extend_from_slice(raw);
        return;
    };
    if vias.is_empty() {
        out.extend_from_slice(raw);
        return;
    }
    let top = &mut vias[0];
    let ip = remote.ip().to_string();
    let wants_rport = top.rport().is_some();
    let host_differs = top.host.trim_start_matches('[').trim_end_matches(']') != ip;
    if wants_rport || host_differs {
        top.params.0.retain(|(n, _)| {
            !n.eq_ignore_ascii_case("received") && !n.eq_ignore_ascii_case("rport")
        });
        top.params.0.push(("received".to_owned(), Some(ip)));
        if wants_rport {
            top.params
                .0
                .push(("rport".to_owned(), Some(remote.port().to_string())));
        }
    }
    for (i, via) in vias.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        via.write_to(out);
    }
}

/// A `Warning` header value (RFC 3261 §20.43): `399 presence-server "text"`.
pub(crate) fn warning(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 24);
    v.extend_from_slice(b"399 presence-server \"");
    for c in text.bytes() {
        match c {
            b'"' | b'\\' => {
                v.push(b'\\');
                v.push(c);
            }
            b'\r' | b'\n' => v.push(b' '),
            _ => v.push(c),
        }
    }
    v.push(b'"');
    v
}

/// An error answer: status, reason phrase, extra headers.
pub(crate) type Refusal = (u16, &'static str, Vec<(&'static str, Vec<u8>)>);

/// A 400 with a Warning.
pub(crate) fn bad_request(text: &str) -> Refusal {
    (400, "Bad Request", vec![("Warning", warning(text))])
}

/// A 503 for a limit reached: a Retry-After and a Warning.
pub(crate) fn unavailable(text: &str) -> Refusal {
    let retry = vec![("Retry-After", b"60".to_vec()), ("Warning", warning(text))];
    (503, "Service Unavailable", retry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(raw: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(raw.as_bytes()), 64).unwrap()
    }

    const OK: &str = "SUBSCRIBE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 SUBSCRIBE\r\n\r\n";

    #[test]
    fn request_info_names_the_problem() {
        assert!(request_info(&msg(OK)).is_ok());
        let cases = [
            ("Call-ID: x\r\n", "", "Missing Call-ID"),
            ("Call-ID: x\r\n", "Call-ID: x y\r\n", "Bad Call-ID"),
            (
                "Call-ID: x\r\n",
                "i: x\r\nCall-ID: y\r\n",
                "Several Call-ID headers",
            ),
            (
                "CSeq: 1 SUBSCRIBE",
                "CSeq: 4294967296 SUBSCRIBE",
                "Bad CSeq",
            ),
            ("CSeq: 1 SUBSCRIBE\r\n", "", "Missing CSeq"),
            (
                "From: <",
                "From: <sip:e@f>\r\nFrom: <",
                "Several From headers",
            ),
            ("From: <sip:c@d>", "From: <http://c>", "Bad From"),
            ("To: <sip:a@b>\r\n", "", "Missing To"),
            (
                "To: <sip:a@b>",
                "t: <sip:a@b>\r\nTo: <sip:a@b>",
                "Several To headers",
            ),
            ("Via: SIP/2.0/TCP h", "Via: SIP/7.0/TCP h", "Bad Via"),
            ("Via: SIP/2.0/TCP h;branch=z9hG4bK1\r\n", "", "Missing Via"),
            (
                "sip:a@b SIP",
                "sip:a@b?Route=x SIP",
                "Request-URI with headers",
            ),
        ];
        for (from, to, problem) in cases {
            assert!(OK.contains(from), "{from}");
            let m = msg(&OK.replacen(from, to, 1));
            assert_eq!(request_info(&m).unwrap_err(), problem, "{to}");
        }
        let m = msg(&OK.replace("CSeq: 1 SUBSCRIBE", "CSeq: 1 PUBLISH"));
        let info = request_info(&m).unwrap();
        assert!(!cseq_matches(&m, &info));
    }

    #[test]
    fn answerable_and_ack() {
        assert!(answerable(&msg(OK).headers));
        assert!(!answerable(&msg(&OK.replace("Via:", "X-Via:")).headers));
        assert!(!answerable(&msg(&OK.replace("CSeq:", "X-CSeq:")).headers));
        assert!(!answerable(
            &msg(&OK.replace("CSeq: 1 SUBSCRIBE", "CSeq:")).headers
        ));
        let m = msg(OK);
        assert!(!is_ack(m.method(), &m.headers));
        let m = msg(&OK.replace("CSeq: 1 SUBSCRIBE", "CSeq: 1 ACK"));
        assert!(is_ack(None, &m.headers));
        assert!(is_ack(Some(&Method::Ack), &[]));
    }

    #[test]
    fn a_response_from_partial_headers() {
        let m = msg(
            "INVITE sip:a@b SIP/2.0\r\nCSeq: 7 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKx\r\nVia: SIP/2.0/TCP p;;\r\n\r\n",
        );
        let mut out = Vec::new();
        let remote = SocketAddr::from(([127, 0, 0, 1], 5060));
        write_response_to(
            &mut out,
            &m.headers,
            remote,
            400,
            "Bad Request (Missing Call-ID)",
            Some("t"),
            &[],
            "us",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SIP/2.0 400 Bad Request (Missing Call-ID)\r\nCSeq: 7 INVITE\r\n\
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKx;received=127.0.0.1\r\nVia: SIP/2.0/TCP p;;\r\n\
Server: us\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
