//! Validating the request headers every response needs, and writing responses.

use std::net::SocketAddr;

use crate::sip::{CSeq, HeaderName, Message, NameAddr, Via};

/// The dialog-forming headers of a request, decoded once.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    pub(crate) call_id: String,
    pub(crate) cseq: CSeq,
    pub(crate) from: NameAddr,
    pub(crate) to: NameAddr,
}

/// Whether a response can be built at all: every header a response copies is present.
pub(crate) fn can_answer(msg: &Message) -> bool {
    [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ]
    .iter()
    .all(|h| msg.header(h).is_some())
}

/// Decodes Call-ID, CSeq, From and To; the error is the reason for a 400.
pub(crate) fn request_info(msg: &Message) -> Result<RequestInfo, &'static str> {
    let call_id = msg
        .header(&HeaderName::CallId)
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && !v.bytes().any(|c| c.is_ascii_whitespace()))
        .ok_or("Bad Call-ID")?
        .to_owned();
    let cseq = msg
        .header(&HeaderName::CSeq)
        .and_then(|v| CSeq::parse(v))
        .ok_or("Bad CSeq")?;
    if msg.method() != Some(&cseq.method) {
        return Err("CSeq method does not match the request");
    }
    let from = msg
        .header(&HeaderName::From)
        .and_then(|v| NameAddr::parse(v))
        .ok_or("Bad From")?;
    let to = msg
        .header(&HeaderName::To)
        .and_then(|v| NameAddr::parse(v))
        .ok_or("Bad To")?;
    if msg.headers_named(&HeaderName::Via).next().is_none() {
        return Err("Missing Via");
    }
    Ok(RequestInfo {
        call_id,
        cseq,
        from,
        to,
    })
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
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut first = true;
    for h in &msg.headers {
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
