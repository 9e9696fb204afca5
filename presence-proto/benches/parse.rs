//! SIP message parsing (`presence_proto::sip::Message::parse`, framing excluded) of the messages
//! the server reads most: a Linphone SUBSCRIBE, a PUBLISH with its PIDF body, and the `200 OK` a
//! client answers each NOTIFY with; side by side with httparse on an equivalent HTTP head.
//!
//! The equivalent HTTP head is the SUBSCRIBE's head byte for byte with `SIP/2.0` replaced by
//! `HTTP/1.1` in the request line (`SUBSCRIBE` is a valid HTTP method token, the Request-URI a
//! valid request target, every SIP header line a valid HTTP field line): same number of header
//! lines (15), same names and values, same length. httparse only finds the slices (into a stack
//! array of 16 headers); our parser also classifies each header name and builds the message
//! (a `Vec` of headers whose values are `Bytes` slices of the input). Both parse the same bytes.
//!
//! Two forms of our input: `Bytes::from_static` (slicing is free) and the `Bytes` a `Framer`
//! hands to the server (a shared buffer: every header value slice is an atomic increment, and
//! its drop a decrement), which is what the server pays.
//!
//! `cargo bench -p presence-proto --bench parse`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use presence_proto::sip::{Framer, Message};

/// A SUBSCRIBE as Linphone sends it through Flexisip's proxy (15 header lines, 681 bytes).
const SUBSCRIBE: &str = "SUBSCRIBE sip:alice@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.abcdefgh;rport\r\nVia: SIP/2.0/TCP 192.168.1.20:43980;branch=z9hG4bK.XG10ZnLZy;rport=43980;received=192.168.1.20\r\nRecord-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\nFrom: \"bob\" <sip:bob@example.org>;tag=2eGrTsEC~\r\nTo: <sip:alice@example.org>\r\nCSeq: 20 SUBSCRIBE\r\nCall-ID: 0BTamJaT-z\r\nMax-Forwards: 69\r\nSupported: replaces, outbound, gruu\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:bob@192.168.1.20:43980;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000058899>\"\r\nAccept: application/pidf+xml\r\nUser-Agent: Linphone-Desktop/5.2.6 (belle-sip/5.2.94)\r\nContent-Length: 0\r\n\r\n";

/// A Linphone PUBLISH (modify: SIP-If-Match) with its PIDF body (14 header lines).
const PUBLISH_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" xmlns:pidfonline=\"http://www.linphone.org/xsds/pidfonline.xsd\" entity=\"sip:alice@example.org\" xmlns=\"urn:ietf:params:xml:ns:pidf\"><tuple id=\"g8aklh\"><status><basic>open</basic><pidfonline:online/></status><contact priority=\"0.8\">sip:alice@example.org</contact><note>on the phone</note><timestamp>2026-11-23T20:02:47Z</timestamp></tuple><dm:person id=\"i.5u42\"><rpid:activities><rpid:away/></rpid:activities><dm:timestamp>2026-11-23T20:02:49Z</dm:timestamp></dm:person></presence>";

fn publish() -> String {
    format!(
        "PUBLISH sip:alice@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.p0Rt1Xe;rport\r\nVia: SIP/2.0/TCP 192.168.1.20:43980;branch=z9hG4bK.k3f9aQ0;rport=43980;received=192.168.1.20\r\nFrom: <sip:alice@example.org>;tag=Xy7pQ~s1\r\nTo: <sip:alice@example.org>\r\nCSeq: 21 PUBLISH\r\nCall-ID: pB2dK9-wQe\r\nMax-Forwards: 69\r\nEvent: presence\r\nExpires: 600\r\nSIP-If-Match: 1f8e6a92bc04d7aa\r\nContent-Type: application/pidf+xml\r\nUser-Agent: Linphone-Desktop/5.2.6 (belle-sip/5.2.94)\r\nContent-Length: {}\r\n\r\n{PUBLISH_BODY}",
        PUBLISH_BODY.len()
    )
}

/// The `200 OK` a client (here a proxy hop) answers a NOTIFY with (6 header lines).
const OK_200: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5065;branch=z9hG4bK.ps1k2j3h4g.1042.7;rport=5065\r\nFrom: <sip:alice@example.org>;tag=z9ps6f1a0\r\nTo: \"bob\" <sip:bob@example.org>;tag=2eGrTsEC~\r\nCall-ID: 0BTamJaT-z\r\nCSeq: 7 NOTIFY\r\nContent-Length: 0\r\n\r\n";

/// The SUBSCRIBE head as an HTTP/1.1 request head (same bytes, `HTTP/1.1` for `SIP/2.0`).
fn http_equivalent() -> String {
    SUBSCRIBE.replacen(" SIP/2.0\r\n", " HTTP/1.1\r\n", 1)
}

/// The `Bytes` a `Framer` produces for `raw` (a slice of its shared receive buffer).
fn framed(raw: &str) -> Bytes {
    let mut f = Framer::new(1 << 16);
    f.push(raw.as_bytes());
    let m = f.next_message().expect("frame").expect("one message");
    // The first clone turns a Vec-backed buffer into a shared one, as the server's buffers are.
    drop(m.clone());
    m
}

fn bench_sip(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    let sub_static = Bytes::from_static(SUBSCRIBE.as_bytes());
    g.bench_function("SIP SUBSCRIBE, 15 headers (static Bytes)", |b| {
        b.iter(|| Message::parse(black_box(sub_static.clone()), 128).map(|m| m.headers.len()))
    });
    let sub = framed(SUBSCRIBE);
    g.bench_function("SIP SUBSCRIBE, 15 headers (framed Bytes)", |b| {
        b.iter(|| Message::parse(black_box(sub.clone()), 128).map(|m| m.headers.len()))
    });
    let http = http_equivalent();
    assert_eq!(http.len(), SUBSCRIBE.len() + 1);
    g.bench_function("httparse: equivalent HTTP head, 15 headers", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(black_box(http.as_bytes())) {
                Ok(httparse::Status::Complete(n)) => n + req.headers.len(),
                _ => 0,
            }
        })
    });
    let publish = framed(&publish());
    g.bench_function("SIP PUBLISH, 14 headers + PIDF body (framed)", |b| {
        b.iter(|| Message::parse(black_box(publish.clone()), 128).map(|m| m.headers.len()))
    });
    let ok = framed(OK_200);
    g.bench_function("SIP 200 OK to a NOTIFY, 6 headers (framed)", |b| {
        b.iter(|| Message::parse(black_box(ok.clone()), 128).map(|m| m.headers.len()))
    });
    g.finish();

    // Framing included: what the server does per message read (push + next_message + parse).
    let mut g = c.benchmark_group("frame+parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("SIP SUBSCRIBE, 15 headers", |b| {
        let mut f = Framer::new(1 << 16);
        b.iter(|| {
            f.push(black_box(SUBSCRIBE.as_bytes()));
            let raw = f.next_message().expect("frame").expect("message");
            Message::parse(raw, 128).map(|m| m.headers.len())
        })
    });
    g.finish();
}

/// The parsers agree on the input: every header line found by both.
fn check_equivalence() {
    let m = Message::parse(Bytes::from_static(SUBSCRIBE.as_bytes()), 128).expect("SIP parse");
    let http = http_equivalent();
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut req = httparse::Request::new(&mut headers);
    assert!(matches!(
        req.parse(http.as_bytes()),
        Ok(httparse::Status::Complete(_))
    ));
    assert_eq!(m.headers.len(), 15);
    assert_eq!(req.headers.len(), 15);
    for (s, h) in m.headers.iter().zip(req.headers.iter()) {
        assert_eq!(&s.value[..], h.value);
    }
    for raw in [publish(), OK_200.to_owned()] {
        Message::parse(framed(&raw), 128).expect("parse");
    }
}

fn benches(c: &mut Criterion) {
    check_equivalence();
    bench_sip(c);
}

criterion_group!(parse, benches);
criterion_main!(parse);
