//! SUBSCRIBE/NOTIFY behaviour (RFC 6665, RFC 3856) and the mutual-subscription rule, driven
//! through the simulator with a fake clock.

use std::time::Duration;

use presence_proto::Config;
use presence_proto::sip::{HeaderName, Message, NameAddr, SubscriptionState};
use presence_tests::sim::{Sim, Ua, answer, body, header};

fn state(n: &Message) -> SubscriptionState {
    SubscriptionState::parse(
        n.header(&HeaderName::SubscriptionState)
            .expect("Subscription-State"),
    )
    .unwrap()
}

fn expires_param(n: &Message) -> u32 {
    state(n)
        .params
        .get("expires")
        .flatten()
        .unwrap()
        .parse()
        .unwrap()
}

fn setup() -> (Sim, Ua, Ua) {
    let mut sim = Sim::new(Config::default());
    let alice = Ua::new(&mut sim, "alice");
    let bob = Ua::new(&mut sim, "bob");
    (sim, alice, bob)
}

#[test]
fn subscribe_gets_200_with_expires_and_an_immediate_notify() {
    let (mut sim, _alice, mut bob) = setup();
    let (d, r) = bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    assert_eq!(r.status(), Some(200), "200, never 202");
    assert_eq!(header(&r, HeaderName::Expires).as_deref(), Some("600"));
    assert!(!d.to_tag.is_empty(), "the 200 carries our tag");
    assert!(header(&r, HeaderName::Contact).is_some());
    let n = bob.expect_notify(&mut sim, 200);
    assert_eq!(
        header(&n, HeaderName::Event).as_deref(),
        Some("presence"),
        "single NOTIFYs name the package as registered, even in legacy mode"
    );
    let st = state(&n);
    assert_eq!(st.state, "active");
    assert_eq!(expires_param(&n), 600);
    assert_eq!(
        header(&n, HeaderName::ContentType).as_deref(),
        Some("application/pidf+xml")
    );
    assert!(body(&n).contains("No presence information available yet"));
    assert!(body(&n).contains("entity=\"sip:alice@example.org\""));
    // The NOTIFY is in the dialog: From carries our tag, To the subscriber's.
    let from = NameAddr::parse(n.header(&HeaderName::From).unwrap()).unwrap();
    let to = NameAddr::parse(n.header(&HeaderName::To).unwrap()).unwrap();
    assert_eq!(from.tag(), Some(d.to_tag.as_str()));
    assert_eq!(to.tag(), Some(d.from_tag.as_str()));
    assert_eq!(
        header(&n, HeaderName::CallId).as_deref(),
        Some(d.call_id.as_str())
    );
    // Sent to the Contact, over the connection the SUBSCRIBE came on.
    match &n.start {
        presence_proto::sip::StartLine::Request { uri, .. } => {
            assert_eq!(&uri[..], b"sip:bob@127.0.0.1:5060;transport=tcp")
        }
        _ => unreachable!(),
    }
    assert_eq!(sim.server.stats().subscriptions, 1);
}

#[test]
fn rfc_mode_sends_lowercase_event() {
    let mut sim = Sim::new(Config {
        support_legacy_client: false,
        ..Config::default()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    let n = bob.expect_notify(&mut sim, 200);
    assert_eq!(header(&n, HeaderName::Event).as_deref(), Some("presence"));
}

#[test]
fn default_expiry_is_3600_and_expiry_terminates_with_timeout() {
    let (mut sim, _alice, mut bob) = setup();
    let (_d, r) = bob.subscribe(&mut sim, "sip:alice@example.org", None);
    assert_eq!(header(&r, HeaderName::Expires).as_deref(), Some("3600"));
    bob.expect_notify(&mut sim, 200);
    sim.advance(Duration::from_secs(3599));
    assert!(sim.recv(bob.conn).is_none());
    sim.advance(Duration::from_secs(1));
    let n = bob.expect_notify(&mut sim, 200);
    let st = state(&n);
    assert_eq!(st.state, "terminated");
    assert_eq!(st.params.get("reason"), Some(Some("timeout")));
    assert_eq!(sim.server.stats().subscriptions, 0);
    assert_eq!(
        sim.server.stats().presentities,
        0,
        "nothing left of an unwatched, unpublished presentity"
    );
}

#[test]
fn refresh_resets_expiry_to_now_plus_expires() {
    let (mut sim, _alice, mut bob) = setup();
    let (mut d, _) = bob.subscribe(&mut sim, "sip:alice@example.org", Some(100));
    bob.expect_notify(&mut sim, 200);
    sim.advance(Duration::from_secs(90));
    let r = bob.resubscribe(&mut sim, &mut d, 100);
    assert_eq!(r.status(), Some(200));
    assert_eq!(header(&r, HeaderName::Expires).as_deref(), Some("100"));
    let n = bob.expect_notify(&mut sim, 200);
    assert_eq!(state(&n).state, "active");
    assert_eq!(expires_param(&n), 100, "now + N, not the old expiry + N");
    sim.advance(Duration::from_secs(99));
    assert!(
        sim.recv(bob.conn).is_none(),
        "the original expiry at t=100 no longer applies"
    );
    sim.advance(Duration::from_secs(1));
    assert_eq!(state(&bob.expect_notify(&mut sim, 200)).state, "terminated");
}

#[test]
fn unsubscribe_sends_terminated_notify() {
    let (mut sim, _alice, mut bob) = setup();
    let (mut d, _) = bob.subscribe(&mut sim, "sip:alice@example.org", Some(100));
    bob.expect_notify(&mut sim, 200);
    let r = bob.resubscribe(&mut sim, &mut d, 0);
    assert_eq!(r.status(), Some(200));
    let n = bob.expect_notify(&mut sim, 200);
    assert_eq!(state(&n).state, "terminated");
    assert_eq!(sim.server.stats().subscriptions, 0);
    // The dialog is gone.
    let r = bob.resubscribe(&mut sim, &mut d, 100);
    assert_eq!(r.status(), Some(481));
}

#[test]
fn initial_expires_zero_is_a_fetch() {
    let (mut sim, mut alice, mut bob) = setup();
    let doc = alice.pidf("t1", "fetched", None);
    alice.publish(&mut sim, Some(&doc), Some(60), None);
    // alice fetches her own state (self is always allowed).
    let (_d, r) = alice.subscribe(&mut sim, "sip:alice@example.org", Some(0));
    assert_eq!(r.status(), Some(200));
    assert_eq!(header(&r, HeaderName::Expires).as_deref(), Some("0"));
    let n = alice.expect_notify(&mut sim, 200);
    let st = state(&n);
    assert_eq!(st.state, "terminated");
    assert_eq!(st.params.get("reason"), Some(Some("timeout")));
    assert!(
        body(&n).contains("fetched"),
        "a fetch carries the state: {}",
        body(&n)
    );
    assert_eq!(sim.server.stats().subscriptions, 0);
    // bob fetching alice is not mutual: note only.
    bob.subscribe(&mut sim, "sip:alice@example.org", Some(0));
    let n = bob.expect_notify(&mut sim, 200);
    assert!(!body(&n).contains("fetched"));
    assert_eq!(sim.server.stats().subscriptions, 0);
}

#[test]
fn unknown_dialog_gets_481() {
    let (mut sim, _alice, mut bob) = setup();
    let (mut d, _) = bob.subscribe(&mut sim, "sip:alice@example.org", Some(100));
    bob.expect_notify(&mut sim, 200);
    d.to_tag = "forged".into();
    assert_eq!(bob.resubscribe(&mut sim, &mut d, 100).status(), Some(481));
}

#[test]
fn event_and_method_checks() {
    let (mut sim, _alice, mut bob) = setup();
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(60), "");
    sim.send(bob.conn, m.replace("Event: presence\r\n", ""));
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(400));
    assert!(
        header(&r, HeaderName::Warning)
            .unwrap()
            .contains("No Event package")
    );
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(60), "");
    sim.send(
        bob.conn,
        m.replace("Event: presence", "Event: message-summary"),
    );
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(489));
    assert_eq!(
        header(&r, HeaderName::AllowEvents).as_deref(),
        Some("presence")
    );
    for method in ["OPTIONS", "MESSAGE", "INVITE", "NOTIFY", "REGISTER"] {
        let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(60), "");
        sim.send(bob.conn, m.replace("SUBSCRIBE", method));
        let r = bob.expect_response(&mut sim);
        assert_eq!(r.status(), Some(405), "{method}");
        let allow = header(&r, HeaderName::Allow).unwrap();
        assert!(
            allow.contains("PUBLISH") && allow.contains("SUBSCRIBE"),
            "{allow}"
        );
    }
    assert_eq!(sim.server.stats().subscriptions, 0);
}

#[test]
fn notify_answered_481_or_408_ends_the_subscription() {
    for code in [481, 408] {
        let (mut sim, mut alice, mut bob) = setup();
        alice.subscribe(&mut sim, "sip:alice@example.org", Some(600));
        alice.expect_notify(&mut sim, 200);
        bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
        bob.expect_notify(&mut sim, code);
        assert_eq!(sim.server.stats().subscriptions, 1, "after {code}");
        // alice's own subscription still gets her publications; bob gets nothing.
        let doc = alice.pidf("t", "x", None);
        alice.publish(&mut sim, Some(&doc), Some(60), None);
        alice.expect_notify(&mut sim, 200);
        assert!(sim.recv(bob.conn).is_none());
    }
}

#[test]
fn unanswered_notify_times_out_after_32_seconds() {
    let (mut sim, _alice, mut bob) = setup();
    bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    let n = sim.recv(bob.conn).expect("NOTIFY");
    assert!(n.is_request());
    sim.advance(Duration::from_secs(31));
    assert_eq!(sim.server.stats().subscriptions, 1);
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.server.stats().subscriptions, 0);
    assert_eq!(sim.server.stats().notify_failures, 1);
    // A late answer is ignored.
    sim.send(bob.conn, answer(&n, 200));
    assert_eq!(sim.server.stats().subscriptions, 0);
}

#[test]
fn mutual_rule_upgrades_and_downgrades_live() {
    let (mut sim, mut alice, mut bob) = setup();
    let doc = alice.pidf("a1", "alice-secret", Some("away"));
    alice.publish(&mut sim, Some(&doc), Some(600), None);
    let doc = bob.pidf("b1", "bob-secret", None);
    bob.publish(&mut sim, Some(&doc), Some(600), None);

    let (_bd, _) = bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    let n = bob.expect_notify(&mut sim, 200);
    assert!(
        !body(&n).contains("alice-secret"),
        "not mutual yet: {}",
        body(&n)
    );
    assert!(body(&n).contains("No presence information available yet"));

    let (mut ad, _) = alice.subscribe(&mut sim, "sip:bob@example.org", Some(600));
    let n = alice.expect_notify(&mut sim, 200);
    assert!(
        body(&n).contains("bob-secret"),
        "alice sees bob: he watches her"
    );
    let n = bob.expect_notify(&mut sim, 200);
    assert!(
        body(&n).contains("alice-secret"),
        "bob upgraded as soon as alice watches him"
    );

    // alice stops watching bob: bob is downgraded at once.
    alice.resubscribe(&mut sim, &mut ad, 0);
    alice.expect_notify(&mut sim, 200);
    let n = bob.expect_notify(&mut sim, 200);
    assert!(
        !body(&n).contains("alice-secret"),
        "downgraded: {}",
        body(&n)
    );
    // And alice's later changes are not shown to him (no NOTIFY with her tuples).
    let doc = alice.pidf("a1", "alice-new", None);
    alice.publish(&mut sim, Some(&doc), Some(600), None);
    while let Some(n) = sim.recv(bob.conn) {
        assert!(!body(&n).contains("alice-new"));
    }
}

#[test]
fn bypass_condition_exempts_a_watcher() {
    let config = Config {
        bypass_condition: Some("Full-Presence".into()),
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    bob.user_agent = "Linphone/5.3 (full-presence-support)".into();
    alice.publish(
        &mut sim,
        Some(&alice.pidf("a1", "visible", None)),
        Some(600),
        None,
    );
    bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    let n = bob.expect_notify(&mut sim, 200);
    assert!(body(&n).contains("visible"), "{}", body(&n));
}

#[test]
fn record_route_is_followed_for_notifies() {
    let (mut sim, _alice, mut bob) = setup();
    // Behind a proxy listening on 127.0.0.1:5060 whose connection to us has another port.
    let rr = "Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\n";
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), rr);
    let m = m.replacen(
        "Via: ",
        "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKproxy1\r\nVia: ",
        1,
    );
    sim.send(bob.conn, m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(200));
    assert_eq!(
        header(&r, HeaderName::RecordRoute).as_deref(),
        Some("<sip:127.0.0.1:5060;transport=tcp;lr>"),
        "the 200 copies Record-Route"
    );
    assert_eq!(
        header(&r, HeaderName::Via)
            .unwrap()
            .matches("z9hG4bK")
            .count(),
        1,
        "each Via copied as is"
    );
    assert!(
        sim.recv(bob.conn).is_none(),
        "the NOTIFY goes to the proxy's address, not back on this connection"
    );
    let out = sim.outbound();
    assert_eq!(out.len(), 1);
    let (conn, target) = &out[0];
    assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 5060));
    let n = sim.recv(*conn).expect("NOTIFY on the new connection");
    assert_eq!(
        header(&n, HeaderName::Route).as_deref(),
        Some("<sip:127.0.0.1:5060;transport=tcp;lr>")
    );
}

#[test]
fn record_route_to_the_inbound_connection_reuses_it() {
    let mut sim = Sim::new(Config::default());
    let proxy = sim.connect_from("127.0.0.1:5060".parse().unwrap());
    let mut bob = Ua::new(&mut sim, "bob");
    bob.conn = proxy;
    let rr = "Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\n";
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), rr);
    sim.send(proxy, m);
    assert_eq!(bob.expect_response(&mut sim).status(), Some(200));
    bob.expect_notify(&mut sim, 200);
    assert!(sim.outbound().is_empty());
}

#[test]
fn one_publish_fanning_out_over_one_connection_is_one_write() {
    let mut sim = Sim::new(Config {
        bypass_condition: Some("bench".into()),
        ..Config::default()
    });
    let proxy = sim.connect_from("127.0.0.1:5060".parse().unwrap());
    let mut alice = Ua::new(&mut sim, "alice");
    let rr = "Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\n";
    for i in 0..20 {
        let mut w = Ua::new(&mut sim, &format!("w{i}"));
        w.conn = proxy;
        w.user_agent = "bench".into();
        let (m, _) = w.subscribe_msg("sip:alice@example.org", Some(600), rr);
        sim.send(proxy, m);
        w.expect_response(&mut sim);
        w.expect_notify(&mut sim, 200);
    }
    let before = sim.conn(proxy).writes;
    alice.publish(
        &mut sim,
        Some(&alice.pidf("a", "fan", None)),
        Some(60),
        None,
    );
    assert_eq!(
        sim.conn(proxy).writes,
        before + 1,
        "20 NOTIFYs coalesced into one write"
    );
    let notifies = sim.recv_all(proxy);
    assert_eq!(notifies.len(), 20);
    assert!(notifies.iter().all(|n| body(n).contains("fan")));
}

#[test]
fn lost_connection_with_notify_in_flight_ends_the_subscription_others_survive() {
    let (mut sim, mut alice, mut bob) = setup();
    let mut carol = Ua::new(&mut sim, "carol");
    carol.user_agent = bob.user_agent.clone();
    bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    let _unanswered = sim.recv(bob.conn).unwrap();
    carol.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    carol.expect_notify(&mut sim, 200);
    sim.close(bob.conn);
    assert_eq!(sim.server.stats().subscriptions, 1);
    alice.subscribe(&mut sim, "sip:carol@example.org", Some(600));
    alice.expect_notify(&mut sim, 200);
    carol.expect_notify(&mut sim, 200); // upgraded: mutual now
    alice.publish(
        &mut sim,
        Some(&alice.pidf("a", "still-here", None)),
        Some(60),
        None,
    );
    assert!(body(&carol.expect_notify(&mut sim, 200)).contains("still-here"));
}

#[test]
fn garbage_closes_only_that_connection() {
    let (mut sim, mut alice, mut bob) = setup();
    bob.subscribe(&mut sim, "sip:bob@example.org", Some(600));
    bob.expect_notify(&mut sim, 200);
    let evil = sim.connect();
    sim.send(evil, b"\x00\x01garbage that is not SIP\r\n\r\n".as_slice());
    assert!(sim.conn(evil).closed_by_server);
    let huge = sim.connect();
    sim.send(huge, vec![b'A'; 70 * 1024]);
    assert!(
        sim.conn(huge).closed_by_server,
        "over max-message-size without a head end"
    );
    // Others are unaffected.
    bob.publish(
        &mut sim,
        Some(&bob.pidf("b", "alive", None)),
        Some(60),
        None,
    );
    assert!(body(&bob.expect_notify(&mut sim, 200)).contains("alive"));
    let _ = &mut alice;
}

#[test]
fn bad_cseq_and_missing_call_id_get_400() {
    let (mut sim, _alice, mut bob) = setup();
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(60), "");
    sim.send(
        bob.conn,
        m.replace("CSeq: 1 SUBSCRIBE", "CSeq: one SUBSCRIBE"),
    );
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(400));
    assert!(header(&r, HeaderName::Warning).unwrap().contains("CSeq"));
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(60), "");
    sim.send(bob.conn, m.replace("CSeq: 1 SUBSCRIBE", "CSeq: 1 PUBLISH"));
    assert_eq!(bob.expect_response(&mut sim).status(), Some(400));
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(60), "");
    sim.send(bob.conn, m.replace("Call-ID", "X-Call-ID"));
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(400), "answered from its Via and CSeq");
    assert!(header(&r, HeaderName::Warning).unwrap().contains("Call-ID"));
    assert!(!sim.conn(bob.conn).closed_by_server);
}

#[test]
fn same_seed_same_bytes() {
    fn run(seed: u64) -> Vec<u8> {
        let mut sim = Sim::with_seed(Config::default(), seed);
        let mut alice = Ua::new(&mut sim, "alice");
        let mut bob = Ua::new(&mut sim, "bob");
        alice.publish(&mut sim, Some(&alice.pidf("a", "x", None)), Some(60), None);
        bob.subscribe(&mut sim, "sip:alice@example.org", Some(60));
        alice.subscribe(&mut sim, "sip:bob@example.org", Some(60));
        sim.advance(Duration::from_secs(120));
        let mut all = sim.conn(alice.conn).raw.clone();
        all.extend_from_slice(&sim.conn(bob.conn).raw);
        all
    }
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}
