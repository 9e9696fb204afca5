//! Resource list subscriptions (RFC 4662, RFC 5367) through the simulator: full state, partial
//! changes, version counting, batching, notify-limit splitting, refresh, expiry, compression,
//! Content-ID forms, errors, the mutual rule per resource, and Linphone's own list SUBSCRIBE.

use std::collections::BTreeMap;
use std::time::Duration;

use presence_proto::Config;
use presence_proto::sip::HeaderName;
use presence_tests::sim::{Sim, Ua, answer, decode_list, header};
use presence_tests::traces;

const LIST: &str = "sip:rls@example.org";

fn uris(users: &[&str]) -> Vec<String> {
    users
        .iter()
        .map(|u| format!("sip:{u}@example.org"))
        .collect()
}

/// A server where everyone sees everyone (bypass), so tests of list mechanics need no reverse
/// subscriptions.
fn open_sim(config: Config) -> Sim {
    Sim::new(Config {
        bypass_condition: Some("sim-ua".into()),
        ..config
    })
}

fn publish(sim: &mut Sim, user: &str, note: &str) -> String {
    let mut ua = Ua::new(sim, user);
    let r = ua.publish(
        sim,
        Some(&ua.pidf(&format!("t-{user}"), note, None)),
        Some(3600),
        None,
    );
    assert_eq!(r.status(), Some(200));
    header(&r, HeaderName::SipEtag).unwrap()
}

#[test]
fn full_state_then_partial_changes_with_versions() {
    let mut sim = open_sim(Config::default());
    publish(&mut sim, "alice", "a0");
    publish(&mut sim, "carol", "c0");
    let mut bob = Ua::new(&mut sim, "bob");
    let (_d, r) = bob.subscribe_list(&mut sim, LIST, &uris(&["alice", "carol", "dave"]), 600, "");
    assert_eq!(r.status(), Some(200));
    assert_eq!(header(&r, HeaderName::Expires).as_deref(), Some("600"));
    assert_eq!(
        header(&r, HeaderName::Require).as_deref(),
        Some("eventlist")
    );
    let n = bob.expect_notify(&mut sim, 200);
    let l = decode_list(&n);
    assert_eq!(l.state.state, "active");
    assert_eq!((l.rlmi.version, l.rlmi.full_state), (0, true));
    assert_eq!(l.rlmi.uri, LIST);
    let all: Vec<&str> = l.rlmi.resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        all,
        [
            "sip:alice@example.org",
            "sip:carol@example.org",
            "sip:dave@example.org"
        ]
    );
    assert_eq!(
        l.with_instances(),
        ["sip:alice@example.org", "sip:carol@example.org"],
        "dave is unknown"
    );
    assert!(l.pidf_of("sip:alice@example.org").unwrap().contains("a0"));
    let inst = &l.rlmi.resources[0].instances[0];
    assert_eq!((inst.id.as_str(), inst.state.as_str()), ("1", "active"));

    // A change later than the interval goes out at once, alone, as partial state.
    sim.advance(Duration::from_secs(3));
    publish(&mut sim, "alice", "a1");
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!((l.rlmi.version, l.rlmi.full_state), (1, false));
    assert_eq!(l.with_instances(), ["sip:alice@example.org"]);
    assert!(l.pidf_of("sip:alice@example.org").unwrap().contains("a1"));
    // dave appears: version 2.
    sim.advance(Duration::from_secs(3));
    publish(&mut sim, "dave", "d0");
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!((l.rlmi.version, l.rlmi.full_state), (2, false));
    assert_eq!(l.with_instances(), ["sip:dave@example.org"]);
}

#[test]
fn changes_within_the_interval_are_batched() {
    let mut sim = open_sim(Config::default());
    publish(&mut sim, "alice", "a0");
    let mut bob = Ua::new(&mut sim, "bob");
    bob.subscribe_list(&mut sim, LIST, &uris(&["alice", "carol", "dave"]), 600, "");
    bob.expect_notify(&mut sim, 200);
    sim.advance(Duration::from_millis(500));
    publish(&mut sim, "carol", "c0");
    sim.advance(Duration::from_millis(500));
    publish(&mut sim, "dave", "d0");
    publish(&mut sim, "alice", "a1");
    assert!(
        sim.recv(bob.conn).is_none(),
        "nothing before 2 s after the last NOTIFY"
    );
    sim.advance(Duration::from_millis(999));
    assert!(sim.recv(bob.conn).is_none());
    sim.advance(Duration::from_millis(1));
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(l.rlmi.version, 1);
    let mut got = l.with_instances();
    got.sort();
    assert_eq!(
        got,
        [
            "sip:alice@example.org",
            "sip:carol@example.org",
            "sip:dave@example.org"
        ]
    );
    assert!(
        l.pidf_of("sip:alice@example.org").unwrap().contains("a1"),
        "latest state wins"
    );
    assert!(sim.recv(bob.conn).is_none());
}

#[test]
fn batching_interval_is_configurable() {
    let mut sim = open_sim(Config {
        list_notify_interval: Duration::from_secs(10),
        ..Config::default()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    bob.subscribe_list(&mut sim, LIST, &uris(&["alice"]), 600, "");
    bob.expect_notify(&mut sim, 200);
    sim.advance(Duration::from_secs(1));
    publish(&mut sim, "alice", "a0");
    sim.advance(Duration::from_millis(8999));
    assert!(sim.recv(bob.conn).is_none());
    sim.advance(Duration::from_millis(1));
    assert_eq!(
        decode_list(&bob.expect_notify(&mut sim, 200)).with_instances(),
        ["sip:alice@example.org"]
    );
}

#[test]
fn notify_limit_splits_a_1000_entry_list_and_every_resource_arrives_once() {
    let mut sim = open_sim(Config::default());
    let users: Vec<String> = (0..1000).map(|i| format!("u{i:04}")).collect();
    let mut publisher = Ua::new(&mut sim, "x");
    for u in &users {
        publisher.user = u.clone();
        let r = publisher.publish(
            &mut sim,
            Some(&publisher.pidf("t", u, None)),
            Some(3600),
            None,
        );
        assert_eq!(r.status(), Some(200));
    }
    let mut bob = Ua::new(&mut sim, "bob");
    let entries: Vec<String> = users
        .iter()
        .map(|u| format!("sip:{u}@example.org"))
        .collect();
    bob.subscribe_list(&mut sim, LIST, &entries, 600, "");
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(
        l.rlmi.resources.len(),
        1000,
        "full state lists every resource"
    );
    assert_eq!(
        l.with_instances().len(),
        200,
        "at most notify-limit instances"
    );
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for uri in l.with_instances() {
        *seen.entry(uri.to_owned()).or_default() += 1;
    }
    let mut versions = vec![l.rlmi.version];
    for _ in 0..4 {
        assert!(
            sim.recv(bob.conn).is_none(),
            "follow-ups wait for the overflow delay"
        );
        sim.advance(Duration::from_millis(500));
        let l = decode_list(&bob.expect_notify(&mut sim, 200));
        assert!(!l.rlmi.full_state);
        assert_eq!(l.rlmi.resources.len(), 200);
        versions.push(l.rlmi.version);
        for uri in l.with_instances() {
            let user = &uri[4..9];
            assert!(
                l.pidf_of(uri).unwrap().contains(user),
                "part matches its resource"
            );
            *seen.entry(uri.to_owned()).or_default() += 1;
        }
    }
    sim.advance(Duration::from_secs(10));
    assert!(sim.recv(bob.conn).is_none(), "nothing left to send");
    assert_eq!(seen.len(), 1000);
    assert!(seen.values().all(|n| *n == 1), "each resource exactly once");
    assert_eq!(versions, [0, 1, 2, 3, 4]);
}

#[test]
fn refresh_sends_full_state_and_expiry_terminates() {
    let mut sim = open_sim(Config::default());
    publish(&mut sim, "alice", "a0");
    let mut bob = Ua::new(&mut sim, "bob");
    let (mut d, _) = bob.subscribe_list(&mut sim, LIST, &uris(&["alice", "carol"]), 100, "");
    bob.expect_notify(&mut sim, 200);
    sim.advance(Duration::from_secs(50));
    let m = bob.resubscribe_msg(&mut d, 100).replace(
        "Event: presence\r\n",
        "Event: presence\r\nSupported: eventlist\r\n",
    );
    sim.send(bob.conn, m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(200));
    assert_eq!(header(&r, HeaderName::Expires).as_deref(), Some("100"));
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!((l.rlmi.version, l.rlmi.full_state), (1, true));
    assert_eq!(l.rlmi.resources.len(), 2);
    assert_eq!(l.with_instances(), ["sip:alice@example.org"]);
    sim.advance(Duration::from_secs(99));
    assert!(sim.recv(bob.conn).is_none());
    sim.advance(Duration::from_secs(1));
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(l.state.state, "terminated");
    assert_eq!(l.state.params.get("reason"), Some(Some("timeout")));
    assert_eq!(l.rlmi.version, 2);
    assert_eq!(sim.server.stats().subscriptions, 0);
}

#[test]
fn unsubscribe_terminates() {
    let mut sim = open_sim(Config::default());
    let mut bob = Ua::new(&mut sim, "bob");
    let (mut d, _) = bob.subscribe_list(&mut sim, LIST, &uris(&["alice"]), 100, "");
    bob.expect_notify(&mut sim, 200);
    assert_eq!(bob.resubscribe(&mut sim, &mut d, 0).status(), Some(200));
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(l.state.state, "terminated");
    assert_eq!(sim.server.stats().subscriptions, 0);
    assert_eq!(sim.server.stats().presentities, 0);
}

#[test]
fn compression_follows_accept_encoding() {
    let users: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    for (extra, compressed) in [
        ("Accept-Encoding: deflate\r\n", true),
        ("Accept-Encoding: gzip, DEFLATE;q=0.5\r\n", true),
        ("Accept-Encoding: deflate;q=0\r\n", false),
        ("", false),
    ] {
        let mut sim = open_sim(Config::default());
        for u in &users {
            publish(&mut sim, u, "hello hello hello");
        }
        let mut bob = Ua::new(&mut sim, "bob");
        let entries: Vec<String> = users
            .iter()
            .map(|u| format!("sip:{u}@example.org"))
            .collect();
        bob.subscribe_list(&mut sim, LIST, &entries, 600, extra);
        let n = bob.expect_notify(&mut sim, 200);
        let l = decode_list(&n);
        assert_eq!(l.compressed, compressed, "with {extra:?}");
        assert_eq!(l.with_instances().len(), 20);
        if compressed {
            assert!(
                n.body.len() < 2000,
                "20 similar documents compress well: {}",
                n.body.len()
            );
        }
    }
}

#[test]
fn compressed_request_bodies_are_inflated_and_bombs_refused() {
    let mut sim = open_sim(Config::default());
    publish(&mut sim, "alice", "a0");
    let mut bob = Ua::new(&mut sim, "bob");
    let body = Ua::list_body(&uris(&["alice", "carol"]));
    let z = presence_proto::encoding::deflate(&body);
    let (m, _) = bob.subscribe_list_msg(LIST, &z, 600, "Content-Encoding: deflate\r\n");
    sim.send(bob.conn, m);
    assert_eq!(bob.expect_response(&mut sim).status(), Some(200));
    assert_eq!(
        decode_list(&bob.expect_notify(&mut sim, 200))
            .rlmi
            .resources
            .len(),
        2
    );
    // 4 MiB of spaces inside the XML: inflates past the 1 MiB cap.
    let mut bomb_src = b"<?xml version=\"1.0\"?>".to_vec();
    bomb_src.extend(std::iter::repeat_n(b' ', 4 << 20));
    let bomb = presence_proto::encoding::deflate(&bomb_src);
    assert!(bomb.len() < 64 * 1024);
    let (m, _) = bob.subscribe_list_msg(LIST, &bomb, 600, "Content-Encoding: deflate\r\n");
    sim.send(bob.conn, m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(413));
    let (m, _) = bob.subscribe_list_msg(
        LIST,
        b"not deflate at all",
        600,
        "Content-Encoding: deflate\r\n",
    );
    sim.send(bob.conn, m);
    assert_eq!(bob.expect_response(&mut sim).status(), Some(400));
    let (m, _) = bob.subscribe_list_msg(LIST, &body, 600, "Content-Encoding: br\r\n");
    sim.send(bob.conn, m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(415));
    assert_eq!(
        header(&r, HeaderName::AcceptEncoding).as_deref(),
        Some("deflate")
    );
    assert_eq!(sim.server.stats().subscriptions, 1);
}

#[test]
fn content_id_forms_legacy_and_rfc() {
    for legacy in [true, false] {
        let mut sim = open_sim(Config {
            support_legacy_client: legacy,
            ..Config::default()
        });
        publish(&mut sim, "alice", "a0");
        let mut bob = Ua::new(&mut sim, "bob");
        bob.subscribe_list(&mut sim, LIST, &uris(&["alice"]), 600, "");
        let n = bob.expect_notify(&mut sim, 200);
        assert_eq!(
            header(&n, HeaderName::Event).as_deref(),
            Some(if legacy { "Presence" } else { "presence" })
        );
        let l = decode_list(&n);
        let cid = l.rlmi.resources[0].instances[0].cid.clone().unwrap();
        let part_cid = l.parts.keys().next().unwrap().clone();
        if legacy {
            assert_eq!(
                part_cid, cid,
                "legacy: bare Content-ID equal to the RLMI cid"
            );
            assert!(!l.rlmi_cid.starts_with('<'));
        } else {
            assert_eq!(part_cid, format!("<{cid}>"));
            assert!(l.rlmi_cid.starts_with('<') && l.rlmi_cid.ends_with('>'));
        }
        assert!(cid.ends_with("@example.org"));
    }
}

#[test]
fn bad_list_requests_get_clear_answers() {
    let mut sim = open_sim(Config {
        max_list_entries: 10,
        ..Config::default()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    let cases: Vec<(Vec<u8>, &str, u16, Option<&str>)> = vec![
        (Vec::new(), "", 400, Some("empty")),
        (b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>".to_vec(), "", 400, Some("Cannot parse")),
        (Ua::list_body(&uris(&["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"])), "", 413, Some("10")),
        (b"<!DOCTYPE x [<!ENTITY a \"b\">]><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>".to_vec(), "", 400, None),
    ];
    for (body, extra, code, warn) in cases {
        let (m, _) = bob.subscribe_list_msg(LIST, &body, 600, extra);
        sim.send(bob.conn, m);
        let r = bob.expect_response(&mut sim);
        assert_eq!(r.status(), Some(code));
        if let Some(w) = warn {
            assert!(
                header(&r, HeaderName::Warning).unwrap().contains(w),
                "{:?}",
                header(&r, HeaderName::Warning)
            );
        }
    }
    let (m, _) = bob.subscribe_list_msg(LIST, b"x", 600, "");
    sim.send(
        bob.conn,
        String::from_utf8(m)
            .unwrap()
            .replace("application/resource-lists+xml", "text/plain"),
    );
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(415));
    assert_eq!(
        header(&r, HeaderName::Accept).as_deref(),
        Some("application/resource-lists+xml")
    );
    // Bodyless: no server-known lists configured.
    let (m, _) = bob.subscribe_list_msg(LIST, b"", 600, "");
    let m = String::from_utf8(m)
        .unwrap()
        .replace("Content-Type: application/resource-lists+xml\r\n", "");
    sim.send(bob.conn, m);
    assert_eq!(bob.expect_response(&mut sim).status(), Some(415));
    assert_eq!(sim.server.stats().subscriptions, 0);
    // A list with no usable entry: 200, then terminated.
    let (_, r) = bob.subscribe_list(&mut sim, LIST, &["tel:+33612345678".to_owned()], 600, "");
    assert_eq!(r.status(), Some(200));
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(l.state.state, "terminated");
    assert_eq!(sim.server.stats().subscriptions, 0);
}

#[test]
fn mutual_rule_applies_per_resource() {
    let mut sim = Sim::new(Config::default());
    let mut alice = Ua::new(&mut sim, "alice");
    let mut carol = Ua::new(&mut sim, "carol");
    alice.publish(
        &mut sim,
        Some(&alice.pidf("ta", "alice-secret", None)),
        Some(3600),
        None,
    );
    carol.publish(
        &mut sim,
        Some(&carol.pidf("tc", "carol-secret", None)),
        Some(3600),
        None,
    );
    // alice watches bob back; carol does not.
    let (mut ad, _) = alice.subscribe(&mut sim, "sip:bob@example.org", Some(3600));
    alice.expect_notify(&mut sim, 200);
    let mut bob = Ua::new(&mut sim, "bob");
    bob.subscribe_list(&mut sim, LIST, &uris(&["alice", "carol"]), 600, "");
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(
        l.with_instances(),
        ["sip:alice@example.org"],
        "only the mutual resource is shown"
    );
    assert!(
        l.pidf_of("sip:alice@example.org")
            .unwrap()
            .contains("alice-secret")
    );
    // Owner of a list counts as a watcher: alice (watching bob) was upgraded when bob listed her.
    alice.expect_notify(&mut sim, 200);
    // carol starts watching bob: her resource appears.
    sim.advance(Duration::from_secs(3));
    carol.subscribe(&mut sim, "sip:bob@example.org", Some(3600));
    carol.expect_notify(&mut sim, 200);
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(l.with_instances(), ["sip:carol@example.org"]);
    assert!(
        l.pidf_of("sip:carol@example.org")
            .unwrap()
            .contains("carol-secret")
    );
    // alice stops: her resource is downgraded to the restricted document.
    sim.advance(Duration::from_secs(3));
    alice.resubscribe(&mut sim, &mut ad, 0);
    alice.expect_notify(&mut sim, 200);
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(l.with_instances(), ["sip:alice@example.org"]);
    let doc = l.pidf_of("sip:alice@example.org").unwrap();
    assert!(
        !doc.contains("alice-secret") && doc.contains("No presence information"),
        "{doc}"
    );
}

/// The list SUBSCRIBE of a capture, as it was on the wire (compressed bodies from `bin/`).
fn captured_list_subscribe(file: &str, bin: Option<&str>) -> Vec<u8> {
    let c = traces::load(file)
        .into_iter()
        .find(|c| c.start_line == "SUBSCRIBE sip:rls@127.0.0.1 SIP/2.0")
        .expect("the list SUBSCRIBE");
    assert_eq!(c.bin.as_deref(), bin, "{}: raw body file", c.name);
    let head_end = c
        .wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head")
        + 4;
    let head = String::from_utf8_lossy(&c.wire[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    assert_eq!(
        c.wire.len() - head_end,
        len,
        "body length matches Content-Length"
    );
    c.wire
}

#[test]
fn linphone_list_subscribes_from_the_traces_are_accepted_as_they_are() {
    let cases: [(&str, Option<&str>, &[&str]); 3] = [
        (
            "linphone-subscribe-rls-list.txt",
            Some("linphone-subscribe-rls-list-msg15.bin"),
            &[
                "sip:+33612345678@127.0.0.1;user=phone",
                "sip:alice@127.0.0.1",
                "sip:dave@127.0.0.1",
            ],
        ),
        (
            "linphonec-subscribe-rls-list.txt",
            Some("linphonec-subscribe-rls-list-msg9.bin"),
            &["sip:alice@127.0.0.1", "sip:carol@127.0.0.1"],
        ),
        (
            "linphone-subscribe-rls-list-small.txt",
            None,
            &["sip:alice@127.0.0.1"],
        ),
    ];
    for (file, bin, resources) in cases {
        let wire = captured_list_subscribe(file, bin);
        // alice publishes and watches bob back, so bob's list may show her (mutual rule).
        let mut sim = Sim::new(Config::default());
        let mut alice = Ua::new(&mut sim, "alice");
        alice.domain = "127.0.0.1".into();
        alice.publish(
            &mut sim,
            Some(&alice.pidf("ta", "Gone fishing", Some("away"))),
            Some(600),
            None,
        );
        alice.subscribe(&mut sim, "sip:bob@127.0.0.1", Some(600));
        alice.expect_notify(&mut sim, 200);
        let conn = sim.connect_from("127.0.0.1:50168".parse().unwrap());
        sim.send(conn, &wire);
        let r = sim.recv(conn).expect("response");
        assert_eq!(r.status(), Some(200), "{file}: {r:?}");
        let n = sim.recv(conn).expect("NOTIFY");
        sim.send(conn, answer(&n, 200));
        let l = decode_list(&n);
        let all: Vec<&str> = l.rlmi.resources.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(all, resources, "{file}");
        assert_eq!(l.rlmi.uri, "sip:rls@127.0.0.1");
        assert_eq!(l.with_instances(), ["sip:alice@127.0.0.1"], "{file}");
        assert!(
            l.pidf_of("sip:alice@127.0.0.1")
                .unwrap()
                .contains("Gone fishing")
        );
        assert!(
            l.compressed,
            "{file}: liblinphone sent Accept-Encoding: deflate"
        );
    }
}
