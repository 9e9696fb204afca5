//! PUBLISH behaviour (RFC 3903), driven through the simulator.

use std::time::Duration;

use presence_proto::Config;
use presence_proto::sip::HeaderName;
use presence_tests::sim::{Sim, Ua, body, header};

fn setup() -> (Sim, Ua, Ua) {
    let mut sim = Sim::new(Config::default());
    let alice = Ua::new(&mut sim, "alice");
    let bob = Ua::new(&mut sim, "bob");
    (sim, alice, bob)
}

/// Makes alice and bob watch each other and drains the initial NOTIFYs.
fn mutual(sim: &mut Sim, alice: &mut Ua, bob: &mut Ua) {
    let a = alice.uri();
    let b = bob.uri();
    bob.subscribe(sim, &a, Some(3600));
    bob.expect_notify(sim, 200);
    alice.subscribe(sim, &b, Some(3600));
    alice.expect_notify(sim, 200);
    // bob's subscription became mutual: he is re-notified with full access.
    bob.expect_notify(sim, 200);
}

#[test]
fn initial_publish_gets_etag_and_default_expires() {
    let (mut sim, mut alice, _) = setup();
    let doc = alice.pidf("t1", "hello", None);
    let r = alice.publish(&mut sim, Some(&doc), None, None);
    assert_eq!(r.status(), Some(200));
    assert_eq!(header(&r, HeaderName::Expires).as_deref(), Some("600"));
    let etag = header(&r, HeaderName::SipEtag).expect("SIP-ETag");
    assert!(!etag.is_empty());
    assert_eq!(sim.server.stats().publications, 1);
}

#[test]
fn refresh_and_modify_issue_fresh_etags_and_old_ones_fail() {
    let (mut sim, mut alice, _) = setup();
    let doc = alice.pidf("t1", "one", None);
    let r = alice.publish(&mut sim, Some(&doc), Some(60), None);
    let e1 = header(&r, HeaderName::SipEtag).unwrap();
    let r = alice.publish(&mut sim, None, Some(60), Some(&e1));
    assert_eq!(r.status(), Some(200));
    let e2 = header(&r, HeaderName::SipEtag).unwrap();
    assert_ne!(e1, e2);
    let doc2 = alice.pidf("t1", "two", None);
    let r = alice.publish(&mut sim, Some(&doc2), Some(60), Some(&e2));
    assert_eq!(r.status(), Some(200));
    let e3 = header(&r, HeaderName::SipEtag).unwrap();
    assert_ne!(e2, e3);
    for stale in [&e1, &e2] {
        let r = alice.publish(&mut sim, None, Some(60), Some(stale));
        assert_eq!(
            r.status(),
            Some(412),
            "superseded ETag {stale} must get 412"
        );
    }
    let r = alice.publish(&mut sim, None, Some(60), Some("nonexistent"));
    assert_eq!(r.status(), Some(412));
    assert_eq!(sim.server.stats().publications, 1);
}

#[test]
fn refresh_keeps_publication_alive_past_first_expiry() {
    let (mut sim, mut alice, _) = setup();
    let doc = alice.pidf("t1", "one", None);
    let r = alice.publish(&mut sim, Some(&doc), Some(60), None);
    let e1 = header(&r, HeaderName::SipEtag).unwrap();
    sim.advance(Duration::from_secs(50));
    let r = alice.publish(&mut sim, None, Some(60), Some(&e1));
    assert_eq!(r.status(), Some(200));
    sim.advance(Duration::from_secs(50));
    assert_eq!(
        sim.server.stats().publications,
        1,
        "refreshed at t=50 for 60 s: alive at t=100"
    );
    sim.advance(Duration::from_secs(11));
    assert_eq!(sim.server.stats().publications, 0, "expired at t=110");
}

#[test]
fn watchers_see_publish_modify_remove_and_expiry() {
    let (mut sim, mut alice, mut bob) = setup();
    mutual(&mut sim, &mut alice, &mut bob);
    let doc = alice.pidf("t1", "first", Some("away"));
    let r = alice.publish(&mut sim, Some(&doc), Some(100), None);
    let etag = header(&r, HeaderName::SipEtag).unwrap();
    let n = bob.expect_notify(&mut sim, 200);
    assert!(
        body(&n).contains("first") && body(&n).contains("away"),
        "{}",
        body(&n)
    );

    let doc = alice.pidf("t1", "second", None);
    let r = alice.publish(&mut sim, Some(&doc), Some(100), Some(&etag));
    let etag = header(&r, HeaderName::SipEtag).unwrap();
    let n = bob.expect_notify(&mut sim, 200);
    assert!(
        body(&n).contains("second") && !body(&n).contains("first"),
        "{}",
        body(&n)
    );

    // Refresh: a NOTIFY follows (liblinphone relies on it), same content.
    let r = alice.publish(&mut sim, None, Some(100), Some(&etag));
    let etag = header(&r, HeaderName::SipEtag).unwrap();
    let n = bob.expect_notify(&mut sim, 200);
    assert!(body(&n).contains("second"));

    // Removal.
    let r = alice.publish(&mut sim, None, Some(0), Some(&etag));
    assert_eq!(r.status(), Some(200));
    assert!(
        header(&r, HeaderName::SipEtag).is_none(),
        "no SIP-ETag when expires is 0"
    );
    let n = bob.expect_notify(&mut sim, 200);
    assert!(!body(&n).contains("<tuple"), "{}", body(&n));
    assert!(body(&n).contains("No presence information available yet"));

    // Expiry.
    let doc = alice.pidf("t2", "third", None);
    alice.publish(&mut sim, Some(&doc), Some(30), None);
    assert!(body(&bob.expect_notify(&mut sim, 200)).contains("third"));
    sim.advance(Duration::from_secs(29));
    assert!(sim.recv(bob.conn).is_none(), "nothing before the expiry");
    sim.advance(Duration::from_secs(1));
    let n = bob.expect_notify(&mut sim, 200);
    assert!(!body(&n).contains("third"), "{}", body(&n));
    assert_eq!(sim.server.stats().publications, 0);
}

#[test]
fn event_header_is_checked() {
    let (mut sim, mut alice, _) = setup();
    let doc = alice.pidf("t1", "x", None);
    let ok = alice.publish_msg(Some(&doc), Some(60), None);
    for (from, to, code) in [
        ("Event: presence\r\n", "", 489),
        ("Event: presence\r\n", "Event: dialog\r\n", 489),
        ("Event: presence\r\n", "Event: presence;id=4\r\n", 200),
        ("Event: presence\r\n", "o: Presence\r\n", 200),
    ] {
        let m = ok.replacen(from, to, 1);
        sim.send(alice.conn, m);
        let r = alice.expect_response(&mut sim);
        assert_eq!(r.status(), Some(code), "with {to:?}");
        if code == 489 {
            assert_eq!(
                header(&r, HeaderName::AllowEvents).as_deref(),
                Some("presence")
            );
        }
    }
}

#[test]
fn bad_bodies_are_refused_with_reasons() {
    let (mut sim, mut alice, _) = setup();
    let doc = alice.pidf("t1", "x", None);
    // No Content-Type / another type: 415 with Accept.
    let m = alice
        .publish_msg(Some(&doc), Some(60), None)
        .replace("Content-Type: application/pidf+xml\r\n", "");
    sim.send(alice.conn, m);
    let r = alice.expect_response(&mut sim);
    assert_eq!(r.status(), Some(415));
    assert_eq!(
        header(&r, HeaderName::Accept).as_deref(),
        Some("application/pidf+xml")
    );
    let m = alice.publish_msg(Some(&doc), Some(60), None).replace(
        "Content-Type: application/pidf+xml",
        "Content-Type: text/plain",
    );
    sim.send(alice.conn, m);
    assert_eq!(alice.expect_response(&mut sim).status(), Some(415));
    // Empty body.
    let r = alice.publish(&mut sim, Some(""), Some(60), None);
    assert_eq!(r.status(), Some(400));
    assert!(header(&r, HeaderName::Warning).unwrap().contains("empty"));
    // Bad XML.
    let r = alice.publish(
        &mut sim,
        Some("<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity="),
        Some(60),
        None,
    );
    assert_eq!(r.status(), Some(400));
    assert!(
        header(&r, HeaderName::Warning)
            .unwrap()
            .contains("Cannot parse body")
    );
    // Someone else's entity.
    let other = doc.replace(
        "entity=\"sip:alice@example.org\"",
        "entity=\"sip:mallory@example.org\"",
    );
    let r = alice.publish(&mut sim, Some(&other), Some(60), None);
    assert_eq!(r.status(), Some(400));
    assert!(header(&r, HeaderName::Warning).unwrap().contains("Entity"));
    assert_eq!(sim.server.stats().publications, 0);
    // Port and parameters are ignored in the entity comparison.
    let ported = doc.replace(
        "entity=\"sip:alice@example.org\"",
        "entity=\"sip:alice@EXAMPLE.org:5070;transport=tcp\"",
    );
    let r = alice.publish(&mut sim, Some(&ported), Some(60), None);
    assert_eq!(r.status(), Some(200));
}

#[test]
fn oldest_publication_is_dropped_beyond_max_presence_elements() {
    let config = Config {
        max_presence_elements: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    mutual(&mut sim, &mut alice, &mut bob);
    for id in ["dev1", "dev2", "dev3"] {
        let doc = alice.pidf(id, id, None);
        assert_eq!(
            alice.publish(&mut sim, Some(&doc), Some(60), None).status(),
            Some(200)
        );
        bob.expect_notify(&mut sim, 200);
    }
    assert_eq!(sim.server.stats().publications, 2);
    let r = alice.publish(
        &mut sim,
        Some(&alice.pidf("dev4", "dev4", None)),
        Some(60),
        None,
    );
    assert_eq!(r.status(), Some(200));
    let n = bob.expect_notify(&mut sim, 200);
    let b = body(&n);
    assert!(
        b.contains("dev3") && b.contains("dev4") && !b.contains("dev2") && !b.contains("dev1"),
        "{b}"
    );
}

#[test]
fn publications_of_several_devices_are_merged() {
    let (mut sim, mut alice, mut bob) = setup();
    mutual(&mut sim, &mut alice, &mut bob);
    alice.publish(
        &mut sim,
        Some(&alice.pidf("phone", "p", Some("away"))),
        Some(60),
        None,
    );
    bob.expect_notify(&mut sim, 200);
    alice.publish(
        &mut sim,
        Some(&alice.pidf("desk", "d", Some("on-the-phone"))),
        Some(60),
        None,
    );
    let n = bob.expect_notify(&mut sim, 200);
    let b = body(&n);
    assert!(b.contains("\"phone\"") && b.contains("\"desk\""), "{b}");
    assert_eq!(
        b.matches("person").count(),
        2,
        "one person element (open + close tag): {b}"
    );
    assert!(b.contains("away") && b.contains("on-the-phone"), "{b}");
}
