//! Fuzz target bodies, kept in the library so the corpora can be replayed by ordinary tests on
//! the stable toolchain (rustls/quinn style). Each function must not panic on any input, and
//! asserts the properties its parser promises (round-trips, chunking independence, invariants).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sip::{
    CSeq, ContentType, Event, Framer, HeaderName, Message, NameAddr, SubscriptionState, Uri, Via,
};
use crate::{Action, Config, ConnId, Server, encoding, multipart, pidf, resource_lists, rlmi};

/// Message parse → write → parse gives the same message (Content-Length aside: it is rewritten).
pub fn sip_message(data: &[u8]) {
    let Ok(m1) = Message::parse(Bytes::copy_from_slice(data), 256) else {
        return;
    };
    let wire = m1.to_bytes();
    let m2 = Message::parse(Bytes::from(wire), 512).expect("a written message re-parses");
    let strip = |m: &Message| -> Vec<(HeaderName, Bytes)> {
        m.headers
            .iter()
            .filter(|h| h.name != HeaderName::ContentLength)
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect()
    };
    assert_eq!(m1.start, m2.start);
    assert_eq!(strip(&m1), strip(&m2));
    assert_eq!(m1.body, m2.body);
    // Typed accessors never panic.
    let _ = m1.request_uri();
    for h in &m1.headers {
        typed_header(&h.name, &h.value);
    }
}

fn typed_header(name: &HeaderName, value: &[u8]) {
    match name {
        HeaderName::Via => {
            let _ = Via::parse_list(value);
        }
        HeaderName::From | HeaderName::To => {
            let _ = NameAddr::parse(value);
        }
        HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute => {
            let _ = NameAddr::parse_list(value);
        }
        HeaderName::CSeq => {
            let _ = CSeq::parse(value);
        }
        HeaderName::Event => {
            let _ = Event::parse(value);
        }
        HeaderName::ContentType => {
            let _ = ContentType::parse(value);
        }
        HeaderName::SubscriptionState => {
            let _ = SubscriptionState::parse(value);
        }
        _ => {}
    }
}

/// Cutting a stream anywhere gives the same messages as feeding it whole.
pub fn sip_framer(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = frame_all(stream, &[stream.len()]);
    let step = usize::from(cut).max(1);
    let cuts: Vec<usize> = (step..stream.len())
        .step_by(step)
        .chain([stream.len()])
        .collect();
    let chunked = frame_all(stream, &cuts);
    assert_eq!(whole, chunked, "framing depends on how the stream is cut");
}

fn frame_all(stream: &[u8], cuts: &[usize]) -> (Vec<Bytes>, bool) {
    let mut f = Framer::new(4096);
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts {
        f.push(&stream[start..end]);
        start = end;
        loop {
            match f.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// URI parse → write → parse is the identity, and `rfc_eq` is reflexive.
pub fn sip_uri(data: &[u8]) {
    let Some(u1) = Uri::parse(data) else { return };
    let mut wire = Vec::new();
    u1.write_to(&mut wire);
    let u2 = Uri::parse(&wire).expect("a written URI re-parses");
    assert_eq!(u1, u2);
    assert!(u1.rfc_eq(&u2));
    let _ = (u1.aor_key(), u1.identity());
}

/// Name-addr and Via: parse → write → parse is the identity.
pub fn sip_headers(data: &[u8]) {
    if let Some(n1) = NameAddr::parse(data) {
        let mut wire = Vec::new();
        n1.write_to(&mut wire);
        assert_eq!(
            NameAddr::parse(&wire).as_ref(),
            Some(&n1),
            "{:?}",
            String::from_utf8_lossy(&wire)
        );
    }
    if let Some(v1) = Via::parse_list(data) {
        let mut wire = Vec::new();
        for (i, v) in v1.iter().enumerate() {
            if i > 0 {
                wire.extend_from_slice(b", ");
            }
            v.write_to(&mut wire);
        }
        if !v1.is_empty() {
            assert_eq!(
                Via::parse_list(&wire).as_ref(),
                Some(&v1),
                "{:?}",
                String::from_utf8_lossy(&wire)
            );
        }
    }
    for name in [
        HeaderName::CSeq,
        HeaderName::Event,
        HeaderName::ContentType,
        HeaderName::SubscriptionState,
    ] {
        typed_header(&name, data);
    }
}

/// A PIDF document that parses composes into one that parses, with the same tuple ids.
pub fn pidf(data: &[u8]) {
    let Ok(doc) = pidf::parse(data) else { return };
    let mut out = Vec::new();
    pidf::compose(&doc.entity, &[&doc], &mut out);
    let again = pidf::parse(&out).expect("a composed document re-parses");
    let ids = |d: &pidf::Document| {
        d.tuples
            .iter()
            .map(|t| t.id.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(ids(&doc), ids(&again));
}

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// Drives a whole `Server` with operations decoded from the input: connections opened, closed,
/// raw bytes, well-formed PUBLISH/SUBSCRIBE/answers, time passing. Checks that actions only name
/// live connections and that nothing is sent after a close.
pub fn server(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    // Long-term presence and server-known lists on, so the query paths are exercised: ops 7
    // answer, fail or drop the oldest pending query.
    let config = Config {
        long_term_enabled: true,
        server_known_lists: true,
        max_inflight_queries: 4,
        max_queued_queries: 8,
        ..Config::default()
    };
    let mut server = Server::new(config, now, 7);
    let mut queries: std::collections::VecDeque<(crate::QueryId, crate::Query)> =
        Default::default();
    let mut open: Vec<ConnId> = Vec::new();
    let mut known: BTreeSet<ConnId> = BTreeSet::new();
    let mut closed: BTreeSet<ConnId> = BTreeSet::new();
    let mut last_notify: Option<Message> = None;
    let mut framers: std::collections::BTreeMap<ConnId, Framer> = Default::default();
    let mut i = 0;
    let mut seq = 0u32;
    let byte = |i: &mut usize| -> u8 {
        let b = data.get(*i).copied().unwrap_or(0);
        *i += 1;
        b
    };
    while i < data.len() {
        let op = byte(&mut i);
        let pick =
            |b: u8, open: &Vec<ConnId>| open.get(usize::from(b) % open.len().max(1)).copied();
        match op % 8 {
            0 if open.len() < 16 => {
                let port = 40000 + u16::from(byte(&mut i));
                let c = server.connection_opened(
                    now,
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    SocketAddr::from(([127, 0, 0, 1], 5065)),
                );
                open.push(c);
                known.insert(c);
            }
            1 => {
                let b = byte(&mut i);
                let n = usize::from(byte(&mut i));
                let start = i.min(data.len());
                let end = (start + n).min(data.len());
                if let Some(c) = pick(b, &open) {
                    server.connection_data(now, c, &data[start..end]);
                }
                i = end;
            }
            2 => {
                if let Some(c) = pick(byte(&mut i), &open) {
                    open.retain(|x| *x != c);
                    server.connection_closed(now, c);
                    closed.insert(c);
                }
            }
            3 => {
                now += Duration::from_millis(u64::from(byte(&mut i)) * 500);
                server.handle_timeout(now);
            }
            7 => {
                let b = byte(&mut i);
                if let Some((id, q)) = queries.pop_front() {
                    let result = match (b % 3, q) {
                        (0, _) => Err(crate::QueryError("down".into())),
                        (_, crate::Query::Accounts { users }) => Ok(crate::QueryResult::Accounts(
                            users
                                .iter()
                                .filter(|u| u.len() % 2 == usize::from(b) % 2)
                                .map(|u| crate::AccountRow {
                                    login: USERS[usize::from(b) % USERS.len()].to_owned(),
                                    domain: (b & 8 != 0).then(|| "d".to_owned()),
                                    phone: Some(u.clone()),
                                })
                                .collect(),
                        )),
                        (_, crate::Query::ListMembers { .. }) => {
                            Ok(crate::QueryResult::ListMembers(
                                USERS
                                    .iter()
                                    .take(usize::from(b) % 5)
                                    .map(|u| format!("\"{u}\" <sip:{u}@d>"))
                                    .collect(),
                            ))
                        }
                    };
                    server.query_result(now, id, result);
                }
            }
            4 | 5 => {
                let b = byte(&mut i);
                let u = USERS[usize::from(b) % USERS.len()];
                let v = USERS[usize::from(b >> 2) % USERS.len()];
                let expires = [0u32, 1, 60, 3600][usize::from(b >> 4) % 4];
                seq += 1;
                let msg = if op % 8 == 4 {
                    let body = format!(
                        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:{u}@d\"><tuple id=\"t{b}\"><status><basic>open</basic></status></tuple></presence>"
                    );
                    format!(
                        "PUBLISH sip:{u}@d SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{seq}\r\nFrom: <sip:{u}@d>;tag=a{seq}\r\nTo: <sip:{u}@d>\r\nCall-ID: p{seq}\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\nContent-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    format!(
                        "SUBSCRIBE sip:{v}@d SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK{seq}\r\nFrom: <sip:{u}@d>;tag=a{seq}\r\nTo: <sip:{v}@d>\r\nCall-ID: s{seq}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{u}@127.0.0.1:{}>\r\nEvent: presence\r\nExpires: {expires}\r\n{list}Content-Length: 0\r\n\r\n",
                        40000 + u32::from(b),
                        list = if b & 0x80 != 0 {
                            "Supported: eventlist\r\n"
                        } else {
                            ""
                        }
                    )
                };
                if let Some(c) = pick(b, &open) {
                    server.connection_data(now, c, msg.as_bytes());
                }
            }
            _ => {
                let b = byte(&mut i);
                let code = [200u16, 408, 481, 500][usize::from(b) % 4];
                if let (Some(n), Some(c)) = (&last_notify, pick(b, &open)) {
                    let resp = n.response_skeleton(code, "X");
                    server.connection_data(now, c, &resp);
                }
            }
        }
        while let Some(action) = server.poll_action() {
            match action {
                Action::Connect { conn, .. } => {
                    assert!(known.insert(conn), "Connect reuses a connection id");
                }
                Action::Send { conn, data } => {
                    assert!(
                        known.contains(&conn) && !closed.contains(&conn),
                        "Send on a dead connection"
                    );
                    let f = framers.entry(conn).or_insert_with(|| Framer::new(1 << 20));
                    f.push(&data);
                    while let Ok(Some(raw)) = f.next_message() {
                        let m = Message::parse(raw, 1000).expect("our output parses");
                        if m.method().is_some() {
                            last_notify = Some(m);
                        }
                    }
                }
                Action::Query { id, query } => queries.push_back((id, query)),
                // Not in cluster mode: never issued.
                Action::Cluster { .. } => {}
                Action::Close { conn } => {
                    assert!(known.contains(&conn), "Close of an unknown connection");
                    closed.insert(conn);
                    open.retain(|x| *x != conn);
                }
            }
        }
        if let Some(t) = server.poll_timeout() {
            assert!(t >= start, "deadline in the past of the start");
        }
    }
    let stats = server.stats();
    assert!(
        stats.subscriptions as u64 <= stats.requests_received,
        "more subscriptions than requests"
    );
    assert!(
        stats.publications as u64 <= stats.requests_received,
        "more publications than requests"
    );
}

/// A resource list that parses writes into one that parses to the same entries, and the entry
/// cap is exact.
pub fn resource_lists(data: &[u8]) {
    const MAX: usize = 1000;
    let Ok(entries) = resource_lists::parse(data, MAX) else {
        return;
    };
    let mut out = Vec::new();
    resource_lists::write(&entries, &mut out);
    assert_eq!(
        resource_lists::parse(&out, MAX).as_ref(),
        Ok(&entries),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    if let Some(max) = entries.len().checked_sub(1) {
        assert_eq!(
            resource_lists::parse(data, max),
            Err(resource_lists::ResourceListsError::TooManyEntries { max })
        );
    }
}

/// An RLMI document that parses writes into one that parses to the same list.
pub fn rlmi(data: &[u8]) {
    let Ok(list) = rlmi::parse(data) else { return };
    let mut out = Vec::new();
    rlmi::write(&list, &mut out);
    assert_eq!(
        rlmi::parse(&out).as_ref(),
        Ok(&list),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Boundaries for inputs that do not start with a delimiter line.
const BOUNDARIES: [&str; 4] = ["b", "----------x7Kq", "stub-boundary-350e922a8157", "a b"];

/// A multipart body that parses writes (part by part) into one that parses to the same parts.
/// The boundary is the rest of the first line when the input starts with `--`, otherwise one
/// of [`BOUNDARIES`] chosen by the first byte (the body being the rest).
pub fn multipart(data: &[u8]) {
    const MAX_PARTS: usize = 64;
    let (boundary, body) = if let Some(rest) = data.strip_prefix(b"--") {
        let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
        let end = line
            .iter()
            .rposition(|&b| !matches!(b, b'\r' | b' ' | b'\t'))
            .map_or(0, |i| i + 1);
        (String::from_utf8_lossy(&line[..end]).into_owned(), data)
    } else if let Some((&select, rest)) = data.split_first() {
        let b = BOUNDARIES[usize::from(select) % BOUNDARIES.len()];
        (b.to_owned(), rest)
    } else {
        return;
    };
    let Ok(parts) = multipart::parse(body, &boundary, MAX_PARTS) else {
        return;
    };
    let mut out = Vec::new();
    multipart::write(&mut out, &boundary, &parts);
    assert_eq!(
        multipart::parse(&out, &boundary, MAX_PARTS).as_ref(),
        Ok(&parts),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    if let Some(first) = parts.first() {
        rlmi(&first.body);
    }
}

/// Inflation never exceeds its cap, the cap is exact, and deflate → inflate is the identity
/// (on the inflated body, and on the input itself). `Accept-Encoding` parsing never panics.
pub fn inflate(data: &[u8]) {
    const CAP: usize = 1 << 16;
    let _ = encoding::accepts_deflate([data]);
    if let Ok(out) = encoding::inflate(data, CAP) {
        assert!(out.len() <= CAP);
        assert_eq!(encoding::inflate(data, out.len()).as_ref(), Ok(&out));
        if let Some(less) = out.len().checked_sub(1) {
            assert_eq!(
                encoding::inflate(data, less),
                Err(encoding::InflateError::TooLarge)
            );
        }
        let z = encoding::deflate(&out);
        assert_eq!(encoding::inflate(&z, out.len()).as_ref(), Ok(&out));
    }
    let input = &data[..data.len().min(4096)];
    let z = encoding::deflate(input);
    assert_eq!(encoding::inflate(&z, input.len()).as_deref(), Ok(input));
}

/// What nodes read from the cluster store (written by other nodes, or damaged): publication
/// payloads, dialog records and dialog-taken messages decode without panicking and re-encode
/// to themselves; and a cluster-mode `Server` fed them (a snapshot for a presentity its watcher
/// follows, a dialog record for an in-dialog SUBSCRIBE it does not know, a taken message) never
/// panics and only writes parsable messages. The input: three parts separated by `|`.
pub fn cluster_store(data: &[u8]) {
    use crate::cluster::{
        ClusterConfig, ClusterEvent, ClusterOp, ClusterReply, Snapshot, StoredDialog,
        StoredPublication, decode_dialog, decode_payload, decode_taken, encode_dialog,
        encode_payload, encode_taken,
    };
    let mut parts = data.splitn(3, |b| *b == b'|');
    let payload = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let record = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let taken = parts.next().unwrap_or_default();
    if let Some(p) = decode_payload(&payload) {
        let again = encode_payload(&p.node, &p.instance, &p.entity, &p.pidf);
        assert_eq!(decode_payload(&again), Some(p), "payload round trip");
    }
    let dialog = decode_dialog(&record);
    if let Some(d) = &dialog {
        assert_eq!(
            decode_dialog(&encode_dialog(d)).as_ref(),
            Some(d),
            "dialog round trip"
        );
    }
    if let Some(ClusterEvent::DialogTaken { call_id, tag, by }) = decode_taken(taken) {
        assert_eq!(
            decode_taken(&encode_taken(&call_id, &tag, &by)),
            Some(ClusterEvent::DialogTaken { call_id, tag, by }),
            "taken round trip"
        );
    }

    let start = Instant::now();
    let config = Config {
        bypass_condition: Some("fuzz".into()),
        cluster: Some(ClusterConfig {
            node: "n0".into(),
            timeout: Duration::from_secs(1),
        }),
        ..Config::default()
    };
    let mut server = Server::new(config, start, 11);
    let conn = server.connection_opened(
        start,
        SocketAddr::from(([127, 0, 0, 1], 40000)),
        SocketAddr::from(([127, 0, 0, 1], 5065)),
    );
    let mut framer = Framer::new(1 << 20);
    // A watcher of alice (followed: a snapshot is asked for), then an in-dialog SUBSCRIBE of a
    // dialog this node does not hold (a record is asked for), then a taken message for it.
    let (call_id, tag) = dialog
        .as_ref()
        .map(|d| (d.call_id.clone(), d.local_tag.clone()))
        .unwrap_or_else(|| ("c1".into(), "t1".into()));
    let from_tag = dialog
        .as_ref()
        .map(|d| d.remote_tag.clone())
        .unwrap_or_else(|| "f1".into());
    let requests = [
        "SUBSCRIBE sip:alice@d SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKs1\r\nFrom: <sip:bob@d>;tag=b1\r\nTo: <sip:alice@d>\r\nCall-ID: s1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:40000>\r\nEvent: presence\r\nExpires: 600\r\nUser-Agent: fuzz\r\nContent-Length: 0\r\n\r\n".to_owned(),
        format!(
            "SUBSCRIBE sip:alice@d SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKs2\r\nFrom: <sip:bob@d>;tag={from_tag}\r\nTo: <sip:alice@d>;tag={tag}\r\nCall-ID: {call_id}\r\nCSeq: 99 SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:40000>\r\nEvent: presence\r\nExpires: 600\r\nUser-Agent: fuzz\r\nContent-Length: 0\r\n\r\n"
        ),
    ];
    let mut now = start;
    for (step, request) in requests.iter().enumerate() {
        server.connection_data(now, conn, request.as_bytes());
        // Answer every store operation from the input, a few rounds deep.
        for _ in 0..4 {
            let mut ops = Vec::new();
            while let Some(action) = server.poll_action() {
                match action {
                    Action::Cluster { id, op } => ops.push((id, op)),
                    Action::Send { data, .. } => {
                        framer.push(&data);
                        while let Ok(Some(raw)) = framer.next_message() {
                            Message::parse(raw, 1000).expect("our output parses");
                        }
                    }
                    _ => {}
                }
            }
            if ops.is_empty() {
                break;
            }
            for (id, op) in ops {
                let reply = match op {
                    ClusterOp::Follow { .. } | ClusterOp::Fetch { .. } => {
                        ClusterReply::Snapshot(Snapshot {
                            publications: vec![StoredPublication {
                                etag: "e1".into(),
                                expires: Duration::from_secs(60),
                                payload: payload.clone(),
                            }],
                            watches: vec![("bob@d".into(), Duration::from_secs(60))],
                        })
                    }
                    ClusterOp::LookupDialog { .. } => ClusterReply::Dialog(Some(StoredDialog {
                        expires: Duration::from_secs(60),
                        record: record.clone(),
                    })),
                    ClusterOp::Lookup { .. } => ClusterReply::Publication(None),
                    ClusterOp::Dialog { .. } if step == 1 && taken.first() == Some(&b'T') => {
                        ClusterReply::Taken
                    }
                    _ => ClusterReply::Done,
                };
                server.cluster_result(now, id, Ok(reply));
            }
        }
        now += Duration::from_millis(300);
        server.handle_timeout(now);
    }
    if let Some(ev) = decode_taken(taken) {
        server.cluster_event(now, ev);
    }
    while server.poll_action().is_some() {}
    now += Duration::from_secs(700);
    server.handle_timeout(now);
    while server.poll_action().is_some() {}
}
