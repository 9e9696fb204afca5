//! SIP requests the tool sends (PUBLISH, SUBSCRIBE single or list, in-dialog SUBSCRIBE) and the
//! answers it gives to NOTIFYs, written with `extend_from_slice` straight into a connection's
//! output buffer. Shapes follow what liblinphone sends (see `shared/traces/`).

use presence_proto::sip::{HeaderName, Message};

use crate::names::{NOTE_MARK, Names, write_uint};

/// The connection a request goes out on: its local address (`ip:port`, for Via, Contact and
/// Record-Route) and whether requests carry a Record-Route to it (proxy mode).
#[derive(Debug, Clone)]
pub struct Hop {
    pub local: Vec<u8>,
    pub record_route: bool,
}

/// What a SUBSCRIBE subscribes to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// One presentity (a user index).
    User(u32),
    /// A resource list: its number and its `application/resource-lists+xml` body, deflated
    /// (zlib) or not.
    List {
        list: u32,
        body: &'a [u8],
        deflated: bool,
    },
}

/// One SUBSCRIBE: initial (`to_tag` None) or in the dialog the server's 200 created.
#[derive(Debug, Clone, Copy)]
pub struct Subscribe<'a> {
    pub watcher: u32,
    pub target: Target<'a>,
    pub dialog: u64,
    pub cseq: u32,
    pub txn: u64,
    pub expires: u32,
    /// The server's tag (To) and Contact URI, for a request within the dialog.
    pub to_tag: Option<&'a [u8]>,
    pub remote_target: Option<&'a [u8]>,
}

/// One PUBLISH of a user's presence.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    pub user: u32,
    pub cseq: u32,
    pub txn: u64,
    pub expires: u32,
    pub etag: Option<&'a [u8]>,
    /// The note `pbseq=<seq>` of the body; None: no body (refresh or removal).
    pub seq: Option<u64>,
}

/// Writes the requests of one run; keeps a scratch buffer for bodies.
#[derive(Debug)]
pub struct Builder {
    pub names: Names,
    user_agent: Vec<u8>,
    body: Vec<u8>,
}

impl Builder {
    pub fn new(names: Names, user_agent: &str) -> Builder {
        Builder {
            names,
            user_agent: user_agent.as_bytes().to_vec(),
            body: Vec::with_capacity(1024),
        }
    }

    fn via(&self, out: &mut Vec<u8>, hop: &Hop, txn: u64) {
        out.extend_from_slice(b"Via: SIP/2.0/TCP ");
        out.extend_from_slice(&hop.local);
        out.extend_from_slice(b";branch=");
        self.names.write_branch(out, txn);
        out.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\n");
    }

    /// A PUBLISH with a PIDF body (tuple + person, as Linphone sends) whose tuple note is
    /// `pbseq=<seq>`, or without a body.
    pub fn publish(&mut self, out: &mut Vec<u8>, hop: &Hop, p: &Publish<'_>) {
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        if let Some(seq) = p.seq {
            self.pidf(&mut body, p.user, seq);
        }
        let n = &self.names;
        out.extend_from_slice(b"PUBLISH ");
        n.write_user_uri(out, p.user);
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.via(out, hop, p.txn);
        out.extend_from_slice(b"From: <");
        n.write_user_uri(out, p.user);
        out.extend_from_slice(b">;tag=p");
        write_uint(out, u64::from(p.user));
        out.extend_from_slice(b"\r\nTo: <");
        n.write_user_uri(out, p.user);
        out.extend_from_slice(b">\r\nCall-ID: ");
        n.write_publish_call_id(out, p.user);
        out.extend_from_slice(b"\r\nCSeq: ");
        write_uint(out, u64::from(p.cseq));
        out.extend_from_slice(b" PUBLISH\r\nEvent: presence\r\nExpires: ");
        write_uint(out, u64::from(p.expires));
        out.extend_from_slice(b"\r\n");
        if let Some(etag) = p.etag {
            out.extend_from_slice(b"SIP-If-Match: ");
            out.extend_from_slice(etag);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(&self.user_agent);
        if !body.is_empty() {
            out.extend_from_slice(b"\r\nContent-Type: application/pidf+xml");
        }
        out.extend_from_slice(b"\r\nContent-Length: ");
        write_uint(out, body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&body);
        self.body = body;
    }

    fn pidf(&self, body: &mut Vec<u8>, user: u32, seq: u64) {
        let n = &self.names;
        body.extend_from_slice(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
              <presence xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
              xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"",
        );
        n.write_user_uri(body, user);
        body.extend_from_slice(b"\" xmlns=\"urn:ietf:params:xml:ns:pidf\">\n <tuple id=\"t");
        write_uint(body, u64::from(user));
        body.extend_from_slice(
            b"\">\n  <status>\n   <basic>open</basic>\n  </status>\n  <contact priority=\"0.8\">",
        );
        n.write_user_uri(body, user);
        body.extend_from_slice(b"</contact>\n  <note xml:lang=\"en\">");
        body.extend_from_slice(NOTE_MARK);
        write_uint(body, seq);
        body.extend_from_slice(b"</note>\n </tuple>\n <dm:person id=\"p");
        write_uint(body, u64::from(user));
        body.extend_from_slice(b"\">\n  <rpid:activities>\n   ");
        body.extend_from_slice(if seq.is_multiple_of(2) {
            b"<rpid:away/>"
        } else {
            b"<rpid:on-the-phone/>"
        });
        body.extend_from_slice(b"\n  </rpid:activities>\n </dm:person>\n</presence>\n");
    }

    /// A SUBSCRIBE (Event: presence). Initial ones carry a Contact to the connection and, in
    /// proxy mode, a Record-Route to it; list ones carry the RFC 5367 body and `Supported:
    /// eventlist`.
    pub fn subscribe(&mut self, out: &mut Vec<u8>, hop: &Hop, s: &Subscribe<'_>) {
        let n = &self.names;
        let mut target_uri = std::mem::take(&mut self.body);
        target_uri.clear();
        match s.target {
            Target::User(u) => n.write_user_uri(&mut target_uri, u),
            Target::List { list, .. } => n.write_list_uri(&mut target_uri, list),
        }
        out.extend_from_slice(b"SUBSCRIBE ");
        out.extend_from_slice(s.remote_target.unwrap_or(&target_uri));
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.via(out, hop, s.txn);
        out.extend_from_slice(b"From: <");
        n.write_user_uri(out, s.watcher);
        out.extend_from_slice(b">;tag=d");
        write_uint(out, s.dialog);
        out.extend_from_slice(b"\r\nTo: <");
        out.extend_from_slice(&target_uri);
        out.push(b'>');
        if let Some(tag) = s.to_tag {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(tag);
        }
        out.extend_from_slice(b"\r\nCall-ID: ");
        n.write_dialog_call_id(out, s.dialog);
        out.extend_from_slice(b"\r\nCSeq: ");
        write_uint(out, u64::from(s.cseq));
        out.extend_from_slice(b" SUBSCRIBE\r\nContact: <sip:");
        n.write_user(out, s.watcher);
        out.push(b'@');
        out.extend_from_slice(&hop.local);
        out.extend_from_slice(b";transport=tcp>\r\n");
        if hop.record_route && s.to_tag.is_none() {
            out.extend_from_slice(b"Record-Route: <sip:");
            out.extend_from_slice(&hop.local);
            out.extend_from_slice(b";transport=tcp;lr>\r\n");
        }
        out.extend_from_slice(b"Event: presence\r\nExpires: ");
        write_uint(out, u64::from(s.expires));
        out.extend_from_slice(b"\r\nUser-Agent: ");
        out.extend_from_slice(&self.user_agent);
        out.extend_from_slice(b"\r\n");
        let mut body: &[u8] = &[];
        match s.target {
            Target::User(_) => out.extend_from_slice(b"Accept: application/pidf+xml\r\n"),
            Target::List {
                body: list_body,
                deflated,
                ..
            } => {
                out.extend_from_slice(
                    b"Supported: eventlist\r\n\
                      Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n",
                );
                if deflated {
                    out.extend_from_slice(b"Accept-Encoding: deflate\r\n");
                }
                if s.to_tag.is_none() {
                    out.extend_from_slice(
                        b"Require: recipient-list-subscribe\r\n\
                          Content-Type: application/resource-lists+xml\r\n\
                          Content-Disposition: recipient-list\r\n",
                    );
                    if deflated {
                        out.extend_from_slice(b"Content-Encoding: deflate\r\n");
                    }
                    body = list_body;
                }
            }
        }
        out.extend_from_slice(b"Content-Length: ");
        write_uint(out, body.len() as u64);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        self.body = target_uri;
    }
}

/// The answer to a request from the server: its Via, From, To, Call-ID and CSeq lines copied,
/// `Content-Length: 0`.
pub fn answer(out: &mut Vec<u8>, request: &Message, code: &[u8]) {
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(code);
    out.extend_from_slice(b"\r\n");
    for h in &request.headers {
        if matches!(
            h.name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            out.extend_from_slice(h.name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use presence_proto::sip::Framer;

    fn parse_one(raw: &[u8]) -> Message {
        let mut f = Framer::new(1 << 20);
        f.push(raw);
        let m = f.next_message().unwrap().unwrap();
        assert_eq!(f.buffered(), 0, "exactly one message");
        Message::parse(m, 64).unwrap()
    }

    fn hop(rr: bool) -> Hop {
        Hop {
            local: b"127.0.0.1:4000".to_vec(),
            record_route: rr,
        }
    }

    #[test]
    fn publish_parses_and_carries_the_note() {
        let mut b = Builder::new(Names::new("bench-", "r", "d.org"), "ua");
        let mut out = Vec::new();
        b.publish(
            &mut out,
            &hop(false),
            &Publish {
                user: 0,
                cseq: 2,
                txn: 9,
                expires: 3600,
                etag: Some(b"abc"),
                seq: Some(41),
            },
        );
        let m = parse_one(&out);
        assert_eq!(m.header(&HeaderName::SipIfMatch).unwrap(), "abc");
        assert_eq!(crate::names::max_seq(&m.body), Some(41));
        let body = std::str::from_utf8(&m.body).unwrap();
        assert!(
            body.contains("entity=\"sip:bench-r-00001@d.org\""),
            "{body}"
        );
        let via = m.header(&HeaderName::Via).unwrap();
        assert_eq!(b.names.txn_from_via(via), Some(9));
        out.clear();
        b.publish(
            &mut out,
            &hop(false),
            &Publish {
                user: 0,
                cseq: 3,
                txn: 10,
                expires: 0,
                etag: Some(b"abc"),
                seq: None,
            },
        );
        let m = parse_one(&out);
        assert!(m.body.is_empty());
        assert!(m.header(&HeaderName::ContentType).is_none());
    }

    #[test]
    fn subscribes_parse() {
        let mut b = Builder::new(Names::new("bench-", "r", "d.org"), "ua");
        let mut out = Vec::new();
        b.subscribe(
            &mut out,
            &hop(true),
            &Subscribe {
                watcher: 1,
                target: Target::User(2),
                dialog: 5,
                cseq: 1,
                txn: 1,
                expires: 600,
                to_tag: None,
                remote_target: None,
            },
        );
        let m = parse_one(&out);
        assert_eq!(
            m.header(&HeaderName::RecordRoute).unwrap(),
            "<sip:127.0.0.1:4000;transport=tcp;lr>"
        );
        assert_eq!(
            m.request_uri().map(|u| u.user.unwrap_or_default()),
            Some("bench-r-00003".to_owned())
        );
        out.clear();
        let body = b"<resource-lists/>";
        b.subscribe(
            &mut out,
            &hop(true),
            &Subscribe {
                watcher: 1,
                target: Target::List {
                    list: 0,
                    body,
                    deflated: true,
                },
                dialog: 6,
                cseq: 2,
                txn: 2,
                expires: 0,
                to_tag: Some(b"tt"),
                remote_target: Some(b"sip:srv@127.0.0.1:5065;transport=tcp"),
            },
        );
        let m = parse_one(&out);
        assert!(m.body.is_empty(), "no body within the dialog");
        assert!(m.header(&HeaderName::RecordRoute).is_none());
        assert!(m.header(&HeaderName::To).unwrap().ends_with(b";tag=tt"));
        out.clear();
        b.subscribe(
            &mut out,
            &hop(false),
            &Subscribe {
                watcher: 1,
                target: Target::List {
                    list: 0,
                    body,
                    deflated: false,
                },
                dialog: 7,
                cseq: 1,
                txn: 3,
                expires: 600,
                to_tag: None,
                remote_target: None,
            },
        );
        let m = parse_one(&out);
        assert_eq!(m.body, Bytes::from_static(body));
        assert!(m.header(&HeaderName::ContentEncoding).is_none());
    }

    #[test]
    fn answers_copy_the_dialog_headers() {
        let notify = parse_one(
            b"NOTIFY sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP s;branch=z9hG4bK1\r\nFrom: <sip:b@h>;tag=x\r\n\
              To: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 3 NOTIFY\r\nEvent: presence\r\nContent-Length: 0\r\n\r\n",
        );
        let mut out = Vec::new();
        answer(&mut out, &notify, b"200 OK");
        let ok = parse_one(&out);
        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.header(&HeaderName::CSeq).unwrap(), "3 NOTIFY");
        assert!(ok.header(&HeaderName::Event).is_none());
    }
}
