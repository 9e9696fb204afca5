//! What the server sends, decoded by the connection readers into compact events for the engine:
//! responses (by transaction), NOTIFYs (by dialog, with the `pbseq` notes they carry, list ones
//! unpacked from multipart/RLMI), everything else counted. NOTIFYs are answered here, at once.

use std::collections::HashMap;

use bytes::Bytes;
use presence_proto::sip::{ContentType, HeaderName, Message, Method, SubscriptionState};
use presence_proto::{encoding, multipart, rlmi};

use crate::names::{Names, max_seq};
use crate::sip::answer;

/// Largest inflated NOTIFY body accepted.
const MAX_INFLATED: usize = 64 << 20;
/// Most parts read from one list NOTIFY.
const MAX_PARTS: usize = 1_000_000;

/// One decoded message.
#[derive(Debug)]
pub enum Event {
    /// A final or provisional response to one of our requests.
    Response {
        txn: u64,
        status: u16,
        etag: Option<Bytes>,
        to_tag: Option<Bytes>,
        contact: Option<Bytes>,
    },
    /// A NOTIFY in one of our dialogs (answered 200).
    Notify {
        dialog: u64,
        terminated: bool,
        content: Content,
    },
    /// A NOTIFY for a dialog of another run (answered 481).
    Foreign,
    /// Anything else: a response to no request of ours, another request, a message that does
    /// not parse.
    Unexpected(&'static str),
    /// The server closed the connection (or it failed).
    Closed,
}

/// What a NOTIFY body says.
#[derive(Debug)]
pub enum Content {
    /// No body.
    Empty,
    /// A presence document and the largest `pbseq` note in it (None: no note, e.g. the
    /// "no presence information" document of a watcher that may not see the presentity).
    Single(Option<u64>),
    /// A list NOTIFY.
    List(ListContent),
    /// A body that could not be decoded.
    Bad(&'static str),
}

/// The resources of a list NOTIFY that carry an active instance.
#[derive(Debug)]
pub struct ListContent {
    /// (user index, largest `pbseq` in its document).
    pub resources: Vec<(u32, Option<u64>)>,
    /// Resources that name none of our users.
    pub foreign: u32,
}

/// Decodes `msg`; a request is answered into `replies`.
pub fn decode(names: &Names, msg: &Message, replies: &mut Vec<u8>) -> Event {
    if let Some(status) = msg.status() {
        let Some(txn) = msg
            .header(&HeaderName::Via)
            .and_then(|v| names.txn_from_via(v))
        else {
            return Event::Unexpected("response to no request of ours");
        };
        let subscribe = msg
            .header(&HeaderName::CSeq)
            .is_some_and(|c| memchr::memmem::find(c, b"SUBSCRIBE").is_some());
        return Event::Response {
            txn,
            status,
            etag: msg.header(&HeaderName::SipEtag).cloned(),
            to_tag: if subscribe {
                msg.header(&HeaderName::To).and_then(tag)
            } else {
                None
            },
            contact: if subscribe {
                msg.header(&HeaderName::Contact).and_then(contact_uri)
            } else {
                None
            },
        };
    }
    if msg.method() != Some(&Method::Notify) {
        answer(replies, msg, b"405 Method Not Allowed");
        return Event::Unexpected("request other than NOTIFY");
    }
    let call_id = msg
        .header(&HeaderName::CallId)
        .map(|c| c.as_ref())
        .unwrap_or_default();
    let Some(dialog) = names.dialog_from_call_id(call_id) else {
        answer(replies, msg, b"481 Call/Transaction Does Not Exist");
        return if names.is_ours(call_id) {
            Event::Unexpected("NOTIFY with a Call-ID of ours that is no dialog")
        } else {
            Event::Foreign
        };
    };
    answer(replies, msg, b"200 OK");
    let terminated = msg
        .header(&HeaderName::SubscriptionState)
        .and_then(|v| SubscriptionState::parse(v))
        .is_some_and(|s| s.is("terminated"));
    Event::Notify {
        dialog,
        terminated,
        content: content(names, msg),
    }
}

fn content(names: &Names, msg: &Message) -> Content {
    if msg.body.is_empty() {
        return Content::Empty;
    }
    let deflated = msg
        .header(&HeaderName::ContentEncoding)
        .is_some_and(|e| e.eq_ignore_ascii_case(b"deflate"));
    let inflated;
    let body: &[u8] = if deflated {
        match encoding::inflate(&msg.body, MAX_INFLATED) {
            Ok(b) => {
                inflated = b;
                &inflated
            }
            Err(_) => return Content::Bad("body does not inflate"),
        }
    } else {
        &msg.body
    };
    let ct = msg
        .header(&HeaderName::ContentType)
        .and_then(|v| ContentType::parse(v));
    match ct {
        Some(ct) if ct.is("multipart/related") => match list_content(names, &ct, body) {
            Ok(l) => Content::List(l),
            Err(why) => Content::Bad(why),
        },
        _ => Content::Single(max_seq(body)),
    }
}

fn list_content(names: &Names, ct: &ContentType, body: &[u8]) -> Result<ListContent, &'static str> {
    let boundary = ct
        .params
        .get("boundary")
        .flatten()
        .ok_or("multipart without boundary")?
        .trim_matches('"');
    let parts = multipart::parse(body, boundary, MAX_PARTS).map_err(|_| "bad multipart body")?;
    let (first, rest) = parts.split_first().ok_or("multipart without parts")?;
    let list = rlmi::parse(&first.body).map_err(|_| "bad RLMI document")?;
    let by_cid: HashMap<&str, &multipart::Part> = rest
        .iter()
        .filter_map(|p| Some((bare_cid(p.header("Content-ID")?), p)))
        .collect();
    let mut out = ListContent {
        resources: Vec::with_capacity(list.resources.len()),
        foreign: 0,
    };
    for r in &list.resources {
        let Some(user) = names.user_from_uri(r.uri.as_bytes()) else {
            out.foreign += 1;
            continue;
        };
        let Some(cid) = r
            .instances
            .iter()
            .find(|i| i.state.eq_ignore_ascii_case("active"))
            .and_then(|i| i.cid.as_deref())
        else {
            continue;
        };
        let part = by_cid
            .get(bare_cid(cid))
            .ok_or("RLMI instance without its body part")?;
        out.resources.push((user, max_seq(&part.body)));
    }
    Ok(out)
}

fn bare_cid(cid: &str) -> &str {
    let cid = cid.trim();
    cid.strip_prefix('<')
        .and_then(|c| c.strip_suffix('>'))
        .unwrap_or(cid)
}

/// The `tag` parameter of a From/To value.
fn tag(value: &Bytes) -> Option<Bytes> {
    let after = match memchr::memrchr(b'>', value) {
        Some(i) => i + 1,
        None => 0,
    };
    let params = value.get(after..)?;
    let mut pos = 0;
    for item in params.split(|&b| b == b';') {
        let start = pos;
        pos += item.len() + 1;
        let trimmed = item.trim_ascii_start();
        if trimmed.len() > 4
            && trimmed
                .get(..4)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"tag="))
        {
            let lead = item.len() - trimmed.len();
            let from = after + start + lead + 4;
            let to = after + start + item.len();
            return Some(value.slice(from..to)).filter(|t| !t.trim_ascii().is_empty());
        }
    }
    None
}

/// The URI of a Contact value (`<uri>;params` or a bare URI).
fn contact_uri(value: &Bytes) -> Option<Bytes> {
    match (memchr::memchr(b'<', value), memchr::memchr(b'>', value)) {
        (Some(a), Some(b)) if a < b => Some(value.slice(a + 1..b)),
        _ => {
            let end = memchr::memchr(b';', value).unwrap_or(value.len());
            Some(value.slice(..end)).filter(|v| !v.is_empty())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(raw: &str) -> Message {
        Message::parse(Bytes::from(raw.to_owned()), 64).unwrap()
    }

    fn names() -> Names {
        Names::new("bench-", "r", "d.org")
    }

    #[test]
    fn responses() {
        let m = msg(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:4000;branch=z9hG4bK-r-12;rport=4000\r\n\
             From: <sip:a@d>;tag=d1\r\nTo: <sip:b@d> ; tag=srv7\r\nCall-ID: bench-r-d1\r\n\
             CSeq: 1 SUBSCRIBE\r\nContact: <sip:p@127.0.0.1:5065;transport=tcp>;expires=600\r\n\
             Content-Length: 0\r\n\r\n",
        );
        let mut replies = Vec::new();
        match decode(&names(), &m, &mut replies) {
            Event::Response {
                txn,
                status,
                to_tag,
                contact,
                ..
            } => {
                assert_eq!((txn, status), (12, 200));
                assert_eq!(to_tag.as_deref(), Some(&b"srv7"[..]));
                assert_eq!(
                    contact.as_deref(),
                    Some(&b"sip:p@127.0.0.1:5065;transport=tcp"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(replies.is_empty());
    }

    #[test]
    fn notifies_single_and_foreign() {
        let n = names();
        let m = msg(
            "NOTIFY sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP s;branch=z9hG4bK1\r\nFrom: <sip:b@h>;tag=x\r\n\
             To: <sip:a@h>;tag=y\r\nCall-ID: bench-r-d5\r\nCSeq: 3 NOTIFY\r\n\
             Subscription-State: terminated;reason=timeout\r\nContent-Type: application/pidf+xml\r\n\
             Content-Length: 25\r\n\r\n<note>pbseq=77</note>    ",
        );
        let mut replies = Vec::new();
        match decode(&n, &m, &mut replies) {
            Event::Notify {
                dialog: 5,
                terminated: true,
                content: Content::Single(Some(77)),
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(replies.starts_with(b"SIP/2.0 200 OK\r\n"));
        replies.clear();
        let m = msg(
            "NOTIFY sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP s;branch=z9hG4bK1\r\nCall-ID: other-d5\r\n\
             CSeq: 3 NOTIFY\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(decode(&n, &m, &mut replies), Event::Foreign));
        assert!(replies.starts_with(b"SIP/2.0 481"));
    }

    #[test]
    fn list_notify_deflated() {
        let n = names();
        let mut body = Vec::new();
        multipart::write_part_head(
            &mut body,
            "bnd",
            "rlmi@x",
            "application/rlmi+xml;charset=\"UTF-8\"",
        );
        let list = rlmi::List {
            uri: "sip:bench-r-list-0001@d.org".into(),
            version: 0,
            full_state: true,
            resources: vec![
                rlmi::Resource {
                    uri: "sip:bench-r-00002@d.org".into(),
                    name: None,
                    instances: vec![rlmi::Instance {
                        id: "i1".into(),
                        state: "active".into(),
                        reason: None,
                        cid: Some("c1@x".into()),
                    }],
                },
                rlmi::Resource {
                    uri: "sip:bench-r-00003@d.org".into(),
                    name: None,
                    instances: vec![],
                },
                rlmi::Resource {
                    uri: "sip:someone@d.org".into(),
                    name: None,
                    instances: vec![],
                },
            ],
        };
        rlmi::write(&list, &mut body);
        multipart::write_part_end(&mut body);
        multipart::write_part_head(&mut body, "bnd", "<c1@x>", "application/pidf+xml");
        body.extend_from_slice(b"<note>pbseq=9</note>");
        multipart::write_part_end(&mut body);
        multipart::write_close(&mut body, "bnd");
        let z = encoding::deflate(&body);
        let mut raw = format!(
            "NOTIFY sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP s;branch=z9hG4bK1\r\nCall-ID: bench-r-d8\r\n\
             CSeq: 3 NOTIFY\r\nSubscription-State: active;expires=60\r\nContent-Encoding: deflate\r\n\
             Content-Type: multipart/related;type=\"application/rlmi+xml\";start=\"<rlmi@x>\";boundary=bnd\r\n\
             Content-Length: {}\r\n\r\n",
            z.len()
        )
        .into_bytes();
        raw.extend_from_slice(&z);
        let m = Message::parse(Bytes::from(raw), 64).unwrap();
        let mut replies = Vec::new();
        match decode(&n, &m, &mut replies) {
            Event::Notify {
                dialog: 8,
                terminated: false,
                content: Content::List(l),
            } => {
                assert_eq!(l.resources, vec![(1, Some(9))]);
                assert_eq!(l.foreign, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tags() {
        let t = |s: &'static str| tag(&Bytes::from_static(s.as_bytes()));
        assert_eq!(t("<sip:a@b;tag=no>;tag=yes").as_deref(), Some(&b"yes"[..]));
        assert_eq!(t("sip:a@b;TAG=x;foo").as_deref(), Some(&b"x"[..]));
        assert_eq!(t("<sip:a@b>"), None);
        assert_eq!(t("<sip:a@b>;tag="), None);
    }
}
