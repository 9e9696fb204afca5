//! Hot paths of the core: parsing a typical SUBSCRIBE, composing a PIDF document, and the
//! PUBLISH → NOTIFY fan-out through the whole `Server` (one PUBLISH, 20 watchers behind one
//! proxy connection, actions drained), which is what the NOTIFY throughput depends on; the
//! NOTIFY build and serialization alone (the server writes each NOTIFY straight into the
//! connection's output buffer, so building is serializing), timed on the core's side only; RLMI
//! and list bodies with deflate; a connection opened and closed while many subscriptions are
//! held. Parsing of PUBLISH, `200 OK` and the comparison with httparse
//! are in `benches/parse.rs`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use presence_proto::sip::Message;
use presence_proto::{Action, Config, ConnId, Server, encoding, multipart, pidf, rlmi};

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
    g.bench_function("compose 1 publication", |bch| {
        let mut out = Vec::with_capacity(2048);
        bch.iter(|| {
            out.clear();
            pidf::compose("sip:alice@example.org", black_box(&[&a]), &mut out);
            out.len()
        })
    });
    g.bench_function("note-only document", |bch| {
        let mut out = Vec::with_capacity(256);
        bch.iter(|| {
            out.clear();
            pidf::note_only(black_box("sip:alice@example.org"), &mut out);
            out.len()
        })
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

/// A `Server` with `watchers` single subscriptions to alice behind one proxy connection, every
/// NOTIFY answered, and alice's first publication in place.
struct Rig {
    server: Server,
    proxy: ConnId,
    start: Instant,
    etag: String,
    n: u32,
}

impl Rig {
    fn new(watchers: usize) -> Rig {
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
        let mut rig = Rig {
            server,
            proxy,
            start,
            etag: String::new(),
            n: 0,
        };
        let out = rig.drain();
        rig.answer(&out);
        let first = publish("alice", 0, None);
        rig.server.connection_data(start, proxy, first.as_bytes());
        let out = rig.drain();
        let notifies = rig.answer(&out);
        assert_eq!(notifies, watchers, "one NOTIFY per watcher");
        assert!(!rig.etag.is_empty(), "the PUBLISH got its ETag");
        rig
    }

    /// Everything the server has to send, as the bytes of each `Send`.
    fn drain(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(a) = self.server.poll_action() {
            if let Action::Send { data, .. } = a {
                out.push(data);
            }
        }
        out
    }

    /// Answers every request in `out` (the NOTIFYs) with 200, learns the ETag of a PUBLISH's
    /// 200; returns the number of NOTIFYs.
    fn answer(&mut self, out: &[Bytes]) -> usize {
        let answers = self.answers(out);
        self.server
            .connection_data(self.start, self.proxy, &answers.0);
        let _ = self.drain();
        answers.1
    }

    fn answers(&mut self, out: &[Bytes]) -> (Vec<u8>, usize) {
        let (mut answers, mut notifies) = (Vec::new(), 0);
        for data in out {
            for_each_message(data, 1 << 20, |m| {
                if m.is_request() {
                    notifies += 1;
                    answers.extend_from_slice(&answer(&m));
                } else if let Some(e) = m.header(&presence_proto::sip::HeaderName::SipEtag) {
                    self.etag = String::from_utf8_lossy(e).into_owned();
                }
            });
        }
        (answers, notifies)
    }

    /// The next PUBLISH of alice: a refresh (no body) or a modification (new PIDF).
    fn next_publish(&mut self, modify: bool) -> String {
        self.n += 1;
        if modify {
            publish("alice", self.n, Some(&self.etag))
        } else {
            format!(
                "PUBLISH sip:alice@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKr{n}\r\nFrom: <sip:alice@example.org>;tag=r{n}\r\nTo: <sip:alice@example.org>\r\nCall-ID: pub{n}\r\nCSeq: {n} PUBLISH\r\nEvent: presence\r\nExpires: 600\r\nSIP-If-Match: {}\r\nContent-Length: 0\r\n\r\n",
                self.etag,
                n = self.n
            )
        }
    }
}

/// The NOTIFY path on the core's side only (the bench's own parsing of what the server sends,
/// and building the answers, are not timed): one PUBLISH in, its `200 OK` and one NOTIFY per
/// watcher built into the output buffer and taken out as one `Send`; and separately the
/// watchers' `200 OK` answers in. A refresh PUBLISH (no body) has no PIDF to parse: what it
/// costs beyond the PUBLISH head is the document composed once and one NOTIFY head per watcher,
/// so the difference between 100 and 1 watchers, over 99, is the cost of building one NOTIFY.
fn bench_notify(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify");
    for (watchers, modify) in [(1usize, false), (20, false), (100, false), (20, true)] {
        let mut rig = Rig::new(watchers);
        g.throughput(Throughput::Elements(watchers as u64));
        let what = if modify {
            "PIDF body"
        } else {
            "refresh, no body"
        };
        g.bench_function(
            format!("PUBLISH ({what}) -> 200 + {watchers} NOTIFYs built (core only)"),
            |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let p = rig.next_publish(modify);
                        let t = Instant::now();
                        rig.server
                            .connection_data(rig.start, rig.proxy, black_box(p.as_bytes()));
                        let out = rig.drain();
                        timed += t.elapsed();
                        rig.answer(&out);
                    }
                    timed
                })
            },
        );
    }
    let watchers = 20;
    let mut rig = Rig::new(watchers);
    g.throughput(Throughput::Elements(watchers as u64));
    g.bench_function("20 NOTIFY answers (200 OK) in, one read (core only)", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let p = rig.next_publish(false);
                rig.server
                    .connection_data(rig.start, rig.proxy, p.as_bytes());
                let out = rig.drain();
                let (answers, _) = rig.answers(&out);
                let t = Instant::now();
                rig.server
                    .connection_data(rig.start, rig.proxy, black_box(&answers));
                let _ = rig.drain();
                timed += t.elapsed();
            }
            timed
        })
    });
    g.finish();
}

/// RLMI and the list NOTIFY body through the public writers, as the server builds a 200-resource
/// full state (`notify-limit`): the RLMI document, one multipart part per resource with the
/// presentity's document (composed once per presentity and reused, as the server caches it),
/// then deflate when it saves bytes.
fn bench_rlmi(c: &mut Criterion) {
    let n = 200;
    let docs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let user = format!("u{i}");
            let d = pidf::parse(pidf_doc(&user, &format!("note {i}")).as_bytes()).expect("pidf");
            let mut out = Vec::new();
            pidf::compose(&format!("sip:{user}@example.org"), &[&d], &mut out);
            out
        })
        .collect();
    let cids: Vec<String> = (0..n).map(|i| format!("c{i:06}@example.org")).collect();
    let list = rlmi::List {
        uri: "sip:rls@example.org".into(),
        version: 3,
        full_state: true,
        resources: (0..n)
            .map(|i| rlmi::Resource {
                uri: format!("sip:u{i}@example.org"),
                name: None,
                instances: vec![rlmi::Instance {
                    id: format!("i{i}"),
                    state: "active".into(),
                    reason: None,
                    cid: Some(cids[i].clone()),
                }],
            })
            .collect(),
    };
    let boundary = "bRlmI5x2k9";
    let body = |out: &mut Vec<u8>| {
        multipart::write_part_head(out, boundary, "rlmi0@example.org", "application/rlmi+xml");
        rlmi::write(&list, out);
        multipart::write_part_end(out);
        for (c, d) in cids.iter().zip(&docs) {
            multipart::write_part_head(out, boundary, c, "application/pidf+xml");
            out.extend_from_slice(d);
            multipart::write_part_end(out);
        }
        multipart::write_close(out, boundary);
    };
    let mut g = c.benchmark_group("rlmi");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("write RLMI, 200 resources", |b| {
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            rlmi::write(black_box(&list), &mut out);
            out.len()
        })
    });
    g.bench_function("list body, 200 resources (RLMI + 200 PIDF parts)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024 + n * 1024);
            body(&mut out);
            out.len()
        })
    });
    let mut whole = Vec::new();
    body(&mut whole);
    g.bench_function(
        format!("deflate the 200-resource list body ({} bytes)", whole.len()),
        |b| b.iter(|| encoding::deflate_if_smaller(black_box(&whole)).map(|z| z.len())),
    );
    g.bench_function("list body, 200 resources, built and deflated", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024 + n * 1024);
            body(&mut out);
            encoding::deflate_if_smaller(&out).map(|z| z.len())
        })
    });
    g.finish();
}

/// A connection that opens and closes (a client's TCP connection coming and going) while the
/// server holds 20,000 subscriptions on another one: its cost must not grow with them.
fn bench_close(c: &mut Criterion) {
    let held = 20_000;
    let config = Config {
        bypass_condition: Some("bench".into()),
        max_subscriptions_per_connection: held,
        ..Config::default()
    };
    let start = Instant::now();
    let mut server = Server::new(config, start, 1);
    let local: SocketAddr = "127.0.0.1:5065".parse().unwrap();
    let proxy = server.connection_opened(start, "127.0.0.1:5060".parse().unwrap(), local);
    for chunk in (0..held).collect::<Vec<_>>().chunks(500) {
        let mut data = String::new();
        for i in chunk {
            data.push_str(
                &SUBSCRIBE
                    .replace("bob", &format!("w{i}"))
                    .replace("0BTamJaT-z", &format!("call{i}"))
                    .replace("Linphone-Desktop", "bench"),
            );
        }
        server.connection_data(start, proxy, data.as_bytes());
        let mut responses = Vec::new();
        drain(&mut server, &mut responses);
        server.connection_data(start, proxy, &responses.concat());
        drain(&mut server, &mut Vec::new());
    }
    assert_eq!(server.stats().subscriptions, held);
    let client: SocketAddr = "192.168.1.20:43980".parse().unwrap();
    let mut g = c.benchmark_group("connections");
    g.bench_function("open + close one connection, 20k subscriptions held", |b| {
        b.iter(|| {
            let conn = server.connection_opened(start, black_box(client), local);
            server.connection_closed(start, conn);
            drain(&mut server, &mut Vec::new());
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_pidf,
    bench_fanout,
    bench_notify,
    bench_list_notify,
    bench_rlmi,
    bench_close
);
criterion_main!(benches);
