//! Replays what real clients sent (the captures under `../shared/traces/`) to the simulated
//! server: every PUBLISH is accepted (SIP-If-Match values are mapped to the ETags this server
//! issued), and every initial single SUBSCRIBE gets a 200 and a NOTIFY.

use std::collections::HashMap;

use bytes::Bytes;
use presence_proto::Config;
use presence_proto::sip::{HeaderName, Message, NameAddr};
use presence_tests::sim::{Sim, answer};
use presence_tests::traces::load;

fn parse(wire: &[u8]) -> Message {
    let mut f = presence_proto::sip::Framer::new(1 << 20);
    f.push(wire);
    let raw = f
        .next_message()
        .expect("frames")
        .expect("one whole message");
    Message::parse(raw, 256).expect("parses")
}

/// Rewrites one header's value.
fn with_header(wire: &[u8], name: &str, value: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(wire);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line
            .to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        {
            out.push_str(&format!("{name}: {value}\r\n"));
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

fn replay(file: &str) -> (usize, usize) {
    let mut sim = Sim::new(Config::default());
    let mut conns = HashMap::new();
    let mut etags: HashMap<String, String> = HashMap::new(); // user -> our last ETag
    let (mut publishes, mut subscribes) = (0, 0);
    for c in load(file) {
        if !c.to_server {
            continue;
        }
        let msg = parse(&c.wire);
        let Some(method) = msg.method().map(|m| m.as_str().to_owned()) else {
            continue;
        };
        let conn = *conns
            .entry(c.src)
            .or_insert_with(|| sim.connect_from(c.src));
        let user = NameAddr::parse(msg.header(&HeaderName::From).unwrap())
            .unwrap()
            .uri
            .aor_key();
        match method.as_str() {
            "PUBLISH" => {
                let mut wire = c.wire.clone();
                if msg.header(&HeaderName::SipIfMatch).is_some() {
                    let ours = etags.get(&user).expect("a refresh follows a publication");
                    wire = with_header(&wire, "SIP-If-Match", ours);
                }
                sim.send(conn, &wire);
                let r = sim.recv(conn).expect("a response to PUBLISH");
                assert_eq!(
                    r.status(),
                    Some(200),
                    "{file}: PUBLISH refused: {r:?}\n{}",
                    String::from_utf8_lossy(&wire)
                );
                if let Some(e) = r.header(&HeaderName::SipEtag) {
                    etags.insert(user, String::from_utf8_lossy(e).into_owned());
                } else {
                    assert_eq!(
                        msg.header(&HeaderName::Expires).map(|v| &v[..]),
                        Some(&b"0"[..])
                    );
                    etags.remove(&user);
                }
                publishes += 1;
            }
            "SUBSCRIBE"
                if NameAddr::parse(msg.header(&HeaderName::To).unwrap())
                    .unwrap()
                    .tag()
                    .is_none() =>
            {
                sim.send(conn, &c.wire);
                let r = sim.recv(conn).expect("a response to SUBSCRIBE");
                assert_eq!(r.status(), Some(200), "{file}: {r:?}");
                let n = sim.recv(conn).expect("a NOTIFY after the 200");
                assert_eq!(n.method().map(|m| m.as_str()), Some("NOTIFY"));
                sim.send(conn, answer(&n, 200));
                subscribes += 1;
            }
            _ => {}
        }
        // Answer whatever NOTIFY is pending.
        let pending: Vec<Bytes> = sim
            .recv_all(conn)
            .iter()
            .filter(|m| m.is_request())
            .map(|m| answer(m, 200))
            .collect();
        for a in pending {
            sim.send(conn, a);
        }
    }
    (publishes, subscribes)
}

#[test]
fn linphone_publications_are_accepted() {
    let (p, _) = replay("linphone-publish.txt");
    assert!(p >= 8, "{p} PUBLISHes replayed");
}

#[test]
fn baresip_publications_are_accepted() {
    let (p, _) = replay("baresip-publish.txt");
    assert!(p >= 4, "{p} PUBLISHes replayed");
}

#[test]
fn single_subscriptions_of_real_clients_are_served() {
    for file in [
        "linphone-subscribe-single.txt",
        "linphonec-subscribe-single.txt",
        "baresip-subscribe.txt",
    ] {
        let (_, s) = replay(file);
        assert!(s >= 1, "{file}: no SUBSCRIBE replayed");
    }
}
