//! Hot paths of the core: parsing a typical SUBSCRIBE, composing a PIDF document, and the
//! PUBLISH → NOTIFY fan-out through the whole `Server` (one PUBLISH, 20 watchers behind one
//! proxy connection, actions drained), which is what the NOTIFY throughput depends on.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use presence_proto::sip::Message;
use presence_proto::{Action, Config, Server, pidf};

const SUBSCRIBE: &str = "SUBSCRIBE sip:alice@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK.abcdefgh;rport\r\nVia: SIP/2.0/TCP 192.168.1.20:43980;branch=z9hG4bK.XG10ZnLZy;rport=43980;received=192.168.1.20\r\nRecord-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\nFrom: \"bob\" <sip:bob@example.org>;tag=2eGrTsEC~\r\nTo: <sip:alice@example.org>\r\nCSeq: 20 SUBSCRIBE\r\nCall-ID: 0BTamJaT-z\r\nMax-Forwards: 69\r\nSupported: replaces, outbound, gruu\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:bob@192.168.1.20:43980;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000058899>\"\r\nAccept: application/pidf+xml\r\nUser-Agent: Linphone-Desktop/5.2.6 (belle-sip/5.2.94)\r\nContent-Length: 0\r\n\r\n";

fn pidf_doc(user: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" xmlns:pidfonline=\"http://www.linphone.org/xsds/pidfonline.xsd\" entity=\"sip:{user}@example.org\" xmlns=\"urn:ietf:params:xml:ns:pidf\"><tuple id=\"g8aklh\"><status><basic>open</basic><pidfonline:online/></status><contact priority=\"0.8\">sip:{user}@example.org</contact><note>{note}</note><timestamp>2026-11-23T20:02:47Z</timestamp></tuple><dm:person id=\"i.5u42\"><rpid:activities><rpid:away/></rpid:activities><dm:timestamp>2026-11-23T20:02:49Z</dm:timestamp></dm:person></presence>"
    )
}

fn publish(user: &str, n: u32, etag: Option<&str>) -> String {
    let body = pidf_doc(user, &format!("note {n}"));
    let if_match = etag
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "PUBLISH sip:{user}@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKp{n}\r\nFrom: <sip:{user}@example.org>;tag=p{n}\r\nTo: <sip:{user}@example.org>\r\nCall-ID: pub{n}\r\nCSeq: {n} PUBLISH\r\nEvent: presence\r\nExpires: 600\r\n{if_match}Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn bench_parse(c: &mut Criterion) {
    let raw = Bytes::from_static(SUBSCRIBE.as_bytes());
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse SUBSCRIBE (15 headers)", |b| {
        b.iter(|| Message::parse(black_box(raw.clone()), 128).map(|m| m.headers.len()))
    });
    g.finish();
}

fn bench_pidf(c: &mut Criterion) {
    let a = pidf::parse(pidf_doc("alice", "on the phone").as_bytes()).expect("pidf");
    let b = pidf::parse(
        pidf_doc("alice", "desk")
            .replace("g8aklh", "other")
            .as_bytes(),
    )
    .expect("pidf");
    let mut g = c.benchmark_group("pidf");
    g.bench_function("parse Linphone PUBLISH body", |bch| {
        let body = pidf_doc("alice", "x");
        bch.iter(|| pidf::parse(black_box(body.as_bytes())).map(|d| d.tuples.len()))
    });
    g.bench_function("compose 2 publications", |bch| {
        let mut out = Vec::with_capacity(2048);
        bch.iter(|| {
            out.clear();
            pidf::compose("sip:alice@example.org", black_box(&[&a, &b]), &mut out);
            out.len()
        })
    });
    g.finish();
}

/// One PUBLISH (modify) fanning out to `watchers` NOTIFYs on one proxy connection; the proxy
/// answers every NOTIFY with 200 so no state accumulates.
fn bench_fanout(c: &mut Criterion) {
    let watchers = 20;
    let config = Config {
        bypass_condition: Some("bench".into()),
        ..Config::default()
    };
    let start = Instant::now();
    let mut server = Server::new(config, start, 1);
    let proxy_addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let proxy = server.connection_opened(start, proxy_addr, "127.0.0.1:5065".parse().unwrap());
    for i in 0..watchers {
        let sub = SUBSCRIBE
            .replace("bob", &format!("w{i}"))
            .replace("0BTamJaT-z", &format!("call{i}"))
            .replace("Linphone-Desktop", "bench");
        server.connection_data(start, proxy, sub.as_bytes());
    }
    let mut responses = Vec::new();
    drain(&mut server, &mut responses);
    for r in responses.drain(..) {
        server.connection_data(start, proxy, &r);
    }
    drain(&mut server, &mut Vec::new());
    let first = publish("alice", 0, None);
    server.connection_data(start, proxy, first.as_bytes());
    let mut etag = String::new();
    let mut n = 1;
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(watchers));
    g.bench_function("PUBLISH -> 20 NOTIFYs -> 20 answers", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            for a in std::iter::from_fn(|| server.poll_action()) {
                if let Action::Send { data, .. } = a {
                    out.push(data);
                }
            }
            // Answer the NOTIFYs and learn the ETag from the PUBLISH's 200.
            let mut answers = Vec::new();
            for data in &out {
                for_each_message(data, 1 << 20, |m| {
                    if m.is_request() {
                        answers.extend_from_slice(&answer(&m));
                    } else if let Some(e) = m.header(&presence_proto::sip::HeaderName::SipEtag) {
                        etag = String::from_utf8_lossy(e).into_owned();
                    }
                });
            }
            server.connection_data(start, proxy, &answers);
            n += 1;
            let p = publish("alice", n, Some(&etag));
            server.connection_data(start, proxy, p.as_bytes());
        })
    });
    g.finish();
}

fn drain(server: &mut Server, responses: &mut Vec<Vec<u8>>) {
    while let Some(a) = server.poll_action() {
        if let Action::Send { data, .. } = a {
            for_each_message(&data, 1 << 20, |m| {
                if m.is_request() {
                    responses.push(answer(&m));
                }
            });
        }
    }
}

/// Frames the bytes sent on a connection (messages up to `max` bytes) and parses each message.
fn for_each_message(data: &[u8], max: usize, mut each: impl FnMut(Message)) {
    let mut f = presence_proto::sip::Framer::new(max);
    f.push(data);
    while let Ok(Some(raw)) = f.next_message() {
        each(Message::parse(raw, 128).expect("parse"));
    }
}

fn answer(m: &Message) -> Vec<u8> {
    m.response_skeleton(200, "OK")
}

/// A 200-resource list NOTIFY (RLMI + 200 PIDF parts + deflate): the full state sent on each
/// refresh of a list subscription, measured through the `Server` (refresh in, NOTIFY out).
fn bench_list_notify(c: &mut Criterion) {
    let start = Instant::now();
    let config = Config {
        bypass_condition: Some("bench".into()),
        ..Config::default()
    };
    let mut server = Server::new(config, start, 3);
    let proxy_addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let proxy = server.connection_opened(start, proxy_addr, "127.0.0.1:5065".parse().unwrap());
    let mut entries = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>",
    );
    for i in 0..200 {
        let user = format!("u{i}");
        server.connection_data(start, proxy, publish(&user, i, None).as_bytes());
        entries.push_str(&format!("<entry uri=\"sip:{user}@example.org\"/>"));
    }
    entries.push_str("</list></resource-lists>");
    drain(&mut server, &mut Vec::new());
    let list_sub = |cseq: u32, to_tag: &str, body: &str| {
        format!(
            "SUBSCRIBE sip:rls@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKl{cseq}\r\nFrom: <sip:bob@example.org>;tag=bob\r\nTo: <sip:rls@example.org>{to_tag}\r\nCall-ID: list1\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:5060;transport=tcp>\r\nEvent: presence\r\nExpires: 600\r\nSupported: eventlist\r\nAccept-Encoding: deflate\r\nUser-Agent: bench\r\nContent-Type: application/resource-lists+xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    server.connection_data(start, proxy, list_sub(1, "", &entries).as_bytes());
    let mut to_tag = String::new();
    let mut answers = Vec::new();
    while let Some(a) = server.poll_action() {
        if let Action::Send { data, .. } = a {
            for_each_message(&data, 1 << 22, |m| {
                if m.is_request() {
                    answers.push(answer(&m));
                } else if let Some(to) = m.header(&presence_proto::sip::HeaderName::To) {
                    let to = String::from_utf8_lossy(to);
                    to_tag = to[to.find(";tag=").expect("tag")..].to_owned();
                }
            });
        }
    }
    for a in answers {
        server.connection_data(start, proxy, &a);
    }
    let mut cseq = 1;
    let mut g = c.benchmark_group("list");
    g.throughput(Throughput::Elements(200));
    g.bench_function(
        "refresh -> full-state NOTIFY, 200 resources, deflated",
        |b| {
            b.iter(|| {
                cseq += 1;
                server.connection_data(start, proxy, list_sub(cseq, &to_tag, "").as_bytes());
                let mut bytes = 0;
                while let Some(a) = server.poll_action() {
                    if let Action::Send { data, .. } = a {
                        bytes += data.len();
                    }
                }
                bytes
            })
        },
    );
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_pidf,
    bench_fanout,
    bench_list_notify
);
criterion_main!(benches);
