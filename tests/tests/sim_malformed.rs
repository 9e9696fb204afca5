//! Malformed messages on a connection whose framing is intact (RFC 3261 §8.2, §21.4.1; RFC 4475
//! §3.1.2): a request is answered with a 400 built from the header lines that can be recovered,
//! and the connection goes on; a response is dropped; a message that cannot be delimited (bad
//! Content-Length) is answered if its head allows it, then the connection is closed.

use presence_proto::Config;
use presence_proto::sip::{HeaderName, Message, StartLine, Via};
use presence_tests::sim::{Sim, Ua, header};

fn setup() -> (Sim, Ua) {
    let mut sim = Sim::new(Config::default());
    let bob = Ua::new(&mut sim, "bob");
    (sim, bob)
}

fn reason(m: &Message) -> String {
    match &m.start {
        StartLine::Response { reason, .. } => String::from_utf8_lossy(reason).into_owned(),
        StartLine::Request { .. } => panic!("not a response"),
    }
}

/// The connection is open and in sync: a SUBSCRIBE gets its 200 and NOTIFY.
fn still_served(sim: &mut Sim, bob: &mut Ua) {
    assert!(!sim.conn(bob.conn).closed_by_server, "connection kept");
    let (_, r) = bob.subscribe(sim, "sip:bob@example.org", Some(60));
    assert_eq!(r.status(), Some(200));
    bob.expect_notify(sim, 200);
    assert!(sim.recv_all(bob.conn).is_empty());
}

/// A SUBSCRIBE from bob with `from` replaced by `to` (the test fails if `from` is not there).
fn subscribe_with(bob: &mut Ua, from: &str, to: &str) -> String {
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(60), "");
    assert!(m.contains(from), "{from}");
    m.replacen(from, to, 1)
}

#[test]
fn malformed_header_line_gets_400_with_the_original_via_call_id_cseq() {
    let (mut sim, mut bob) = setup();
    let m = subscribe_with(&mut bob, "Max-Forwards: 70\r\n", "Max Forwards 70\r\n");
    let req = Message::salvage(&m.clone().into(), 128).unwrap();
    sim.send(bob.conn, &m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(400));
    assert_eq!(reason(&r), "Bad Request (header line without colon)");
    assert_eq!(
        header(&r, HeaderName::Warning).as_deref(),
        Some("399 presence-server \"header line without colon\"")
    );
    for name in [HeaderName::CallId, HeaderName::CSeq, HeaderName::From] {
        assert_eq!(r.header(&name), req.header(&name), "{name} echoed");
    }
    let sent = Via::parse_list(req.header(&HeaderName::Via).unwrap()).unwrap();
    let echoed = Via::parse_list(r.header(&HeaderName::Via).unwrap()).unwrap();
    assert_eq!(echoed[0].branch(), sent[0].branch());
    assert_eq!(echoed[0].host, sent[0].host);
    assert_eq!(
        echoed[0].rport(),
        Some(Some(sim.conn(bob.conn).remote.unwrap().port()))
    );
    assert!(
        header(&r, HeaderName::To).unwrap().contains(";tag="),
        "a To tag is added"
    );
    assert_eq!(sim.server.stats().subscriptions, 0);
    still_served(&mut sim, &mut bob);
}

#[test]
fn every_kind_of_malformed_line_is_answered_once_and_the_stream_goes_on() {
    let (mut sim, mut bob) = setup();
    let cases = [
        (
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\n folded without a header?\r\n: empty\r\n",
            "empty header name",
        ),
        (
            "Max-Forwards: 70\r\n",
            "Bad Name: 70\r\n",
            "malformed header name",
        ),
        (
            "Max-Forwards: 70\r\n",
            "Max-Forwards\u{7f}: 70\r\n",
            "malformed header name",
        ),
        (
            "SUBSCRIBE sip:alice@example.org SIP/2.0",
            "SUBSCRIBE  sip:alice@example.org SIP/2.0",
            "malformed start line",
        ),
        (
            "SUBSCRIBE sip:alice@example.org SIP/2.0",
            "SUBSCRIBE <sip:alice@example.org> SIP/2.0",
            "malformed Request-URI",
        ),
        ("CSeq: 1 SUBSCRIBE", "CSeq: one SUBSCRIBE", "Bad CSeq"),
        (
            "CSeq: 1 SUBSCRIBE",
            "CSeq: 1 SUBSCRIBE\r\nCSeq: 2 SUBSCRIBE",
            "Several CSeq headers",
        ),
        ("Call-ID", "X-Call-ID", "Missing Call-ID"),
        ("From: <", "From: \"unterminated <", "Bad From"),
        (
            "Via: SIP/2.0/TCP 127.0.0.1:5060",
            "Via: SIP/2.0/TCP 127.0.0.1:5060;;",
            "Bad Via",
        ),
    ];
    // All in one write: each is framed, answered once, in order.
    let mut stream = String::new();
    let mut call_ids = Vec::new();
    for (from, to, _) in cases {
        let m = subscribe_with(&mut bob, from, to);
        let salvaged = Message::salvage(&m.clone().into(), 128).unwrap();
        call_ids.push(salvaged.header(&HeaderName::CallId).cloned());
        stream.push_str(&m);
    }
    let before = sim.server.stats();
    sim.send(bob.conn, &stream);
    let rs = sim.recv_all(bob.conn);
    assert_eq!(rs.len(), cases.len(), "one answer per request");
    for ((r, (_, _, problem)), call_id) in rs.iter().zip(cases).zip(call_ids) {
        assert_eq!(r.status(), Some(400), "{problem}");
        assert_eq!(reason(r), format!("Bad Request ({problem})"));
        assert_eq!(r.header(&HeaderName::CallId), call_id.as_ref(), "{problem}");
    }
    let after = sim.server.stats();
    assert_eq!(
        after.responses_sent - before.responses_sent,
        cases.len() as u64
    );
    assert_eq!(
        after.requests_received - before.requests_received,
        cases.len() as u64
    );
    assert_eq!(after.subscriptions, 0);
    still_served(&mut sim, &mut bob);
}

#[test]
fn a_malformed_request_cut_anywhere_is_answered_once() {
    let (mut sim, mut bob) = setup();
    let m = subscribe_with(&mut bob, "Max-Forwards: 70\r\n", "Max Forwards 70\r\n");
    for b in m.as_bytes() {
        sim.send(bob.conn, [*b]);
    }
    let rs = sim.recv_all(bob.conn);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status(), Some(400));
    still_served(&mut sim, &mut bob);
}

#[test]
fn another_sip_version_gets_505() {
    let (mut sim, mut bob) = setup();
    let m = subscribe_with(
        &mut bob,
        "SUBSCRIBE sip:alice@example.org SIP/2.0",
        "SUBSCRIBE sip:alice@example.org SIP/3.0",
    );
    sim.send(bob.conn, &m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(505));
    assert_eq!(reason(&r), "Version Not Supported");
    still_served(&mut sim, &mut bob);
}

#[test]
fn unanswerable_requests_are_dropped_and_the_connection_kept() {
    let (mut sim, mut bob) = setup();
    // No Via: nowhere to send a response, parsed or not.
    let m = subscribe_with(&mut bob, "Via: ", "X-Via: ");
    sim.send(bob.conn, &m);
    let m =
        subscribe_with(&mut bob, "Via: ", "X-Via: ").replace("Max-Forwards: 70", "Max Forwards");
    sim.send(bob.conn, &m);
    // No CSeq.
    let m = subscribe_with(&mut bob, "CSeq: 1 SUBSCRIBE\r\n", "");
    sim.send(bob.conn, &m);
    // Not even a start line: a framed head of garbage.
    sim.send(bob.conn, "\u{1}\u{2} garbage\r\nContent-Length: 0\r\n\r\n");
    assert!(sim.recv_all(bob.conn).is_empty());
    assert_eq!(sim.server.stats().responses_sent, 0);
    still_served(&mut sim, &mut bob);
}

#[test]
fn acks_are_never_answered() {
    let (mut sim, mut bob) = setup();
    let ack = "ACK sip:alice@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKack\r\nFrom: <sip:bob@example.org>;tag=1\r\nTo: <sip:alice@example.org>;tag=2\r\nCall-ID: ack1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    sim.send(bob.conn, ack);
    sim.send(bob.conn, ack.replace("Call-ID: ack1\r\n", ""));
    sim.send(bob.conn, ack.replace("CSeq: 1 ACK", "CSeq: x ACK"));
    sim.send(bob.conn, ack.replace("ACK sip:", "ACK  sip:"));
    sim.send(bob.conn, ack.replace("To: ", "To "));
    assert!(sim.recv_all(bob.conn).is_empty());
    still_served(&mut sim, &mut bob);
}

#[test]
fn a_malformed_response_is_dropped_without_closing() {
    let (mut sim, mut bob) = setup();
    let (_, r) = bob.subscribe(&mut sim, "sip:bob@example.org", Some(60));
    assert_eq!(r.status(), Some(200));
    let notify = sim.recv(bob.conn).expect("NOTIFY");
    let answer = String::from_utf8(notify.response_skeleton(200, "OK")).unwrap();
    let broken = answer.replacen("\r\n", "\r\nthis is no header line\r\n", 1);
    sim.send(bob.conn, &broken);
    sim.send(
        bob.conn,
        answer.replace("SIP/2.0 200 OK", "SIP/2.0 2000 OK"),
    );
    sim.send(
        bob.conn,
        answer.replace("SIP/2.0 200 OK", "SIP/2.0 4294967301 big"),
    );
    assert!(
        sim.recv_all(bob.conn).is_empty(),
        "nothing answers a response"
    );
    assert!(!sim.conn(bob.conn).closed_by_server);
    // The well-formed answer still counts: the subscription lives on.
    sim.send(bob.conn, &answer);
    assert_eq!(sim.server.stats().subscriptions, 1);
    still_served(&mut sim, &mut bob);
}

#[test]
fn an_invalid_content_length_is_answered_then_closes_the_connection() {
    for (cl, code) in [
        ("Content-Length: -5", 400),
        ("Content-Length: five", 400),
        ("Content-Length: 0\r\nl: 3", 400),
        ("X-Content-Length: 0", 400),
        ("Content-Length: 999999999", 413),
    ] {
        let (mut sim, mut bob) = setup();
        let m = subscribe_with(&mut bob, "Content-Length: 0", cl);
        let (next, _) = bob.subscribe_msg("sip:bob@example.org", Some(60), "");
        sim.send(bob.conn, m + &next);
        let rs = sim.recv_all(bob.conn);
        assert_eq!(rs.len(), 1, "{cl}: answered, the next message never read");
        assert_eq!(rs[0].status(), Some(code), "{cl}");
        assert!(header(&rs[0], HeaderName::Warning).is_some(), "{cl}");
        assert!(sim.conn(bob.conn).closed_by_server, "{cl}: closed");
        assert_eq!(sim.server.stats().subscriptions, 0, "{cl}");
    }
}

#[test]
fn an_invalid_content_length_on_a_response_or_without_via_just_closes() {
    let (mut sim, bob) = setup();
    sim.send(bob.conn, "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nCSeq: 1 NOTIFY\r\nContent-Length: x\r\n\r\n");
    assert!(sim.recv_all(bob.conn).is_empty());
    assert!(sim.conn(bob.conn).closed_by_server);
    let (mut sim, bob) = setup();
    sim.send(
        bob.conn,
        "OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n",
    );
    assert!(sim.recv_all(bob.conn).is_empty());
    assert!(sim.conn(bob.conn).closed_by_server);
}

#[test]
fn a_folded_content_length_frames_the_message() {
    let (mut sim, mut bob) = setup();
    let m = subscribe_with(&mut bob, "Content-Length: 0", "Content-Length:\r\n 0");
    sim.send(bob.conn, &m);
    assert_eq!(bob.expect_response(&mut sim).status(), Some(200));
    bob.expect_notify(&mut sim, 200);
    still_served(&mut sim, &mut bob);
}

#[test]
fn malformed_requests_with_a_body_keep_the_stream_in_sync() {
    let (mut sim, mut bob) = setup();
    // A PUBLISH whose header block does not parse, with a body that looks like a request.
    let inner = "SUBSCRIBE sip:alice@example.org SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    let m = format!(
        "PUBLISH sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKp1\r\nFrom: <sip:bob@example.org>;tag=p1\r\nTo: <sip:bob@example.org>\r\nCall-ID: p1\r\nCSeq: 1 PUBLISH\r\nEvent presence\r\nContent-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    sim.send(bob.conn, &m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(400));
    assert_eq!(header(&r, HeaderName::CallId).as_deref(), Some("p1"));
    assert!(
        sim.recv_all(bob.conn).is_empty(),
        "the body is not a request"
    );
    assert_eq!(sim.server.stats().publications, 0);
    still_served(&mut sim, &mut bob);
}
