//! Resource limits (issue 5): subscriptions in total and per connection, publications, the
//! partial message (slowloris) timeout and the idle connection timeout, driven through the
//! simulator with a fake clock.

use std::time::Duration;

use presence_proto::Config;
use presence_proto::sip::{HeaderName, Message};
use presence_tests::sim::{FakeDb, Sim, Ua, header};

/// A 503 for a limit: Retry-After and a Warning naming it.
fn assert_limit_503(r: &Message, what: &str) {
    assert_eq!(r.status(), Some(503), "{what}: {:?}", r.start);
    assert!(
        header(r, HeaderName::RetryAfter).is_some(),
        "{what}: Retry-After"
    );
    let w = header(r, HeaderName::Warning).expect("Warning");
    assert!(w.contains(what), "Warning {w:?} should name {what:?}");
}

/// Takes the initial NOTIFY of a new subscription (answered 200).
fn subscribed(sim: &mut Sim, ua: &mut Ua, target: &str) -> presence_tests::sim::Dialog {
    let (d, r) = ua.subscribe(sim, target, Some(600));
    assert_eq!(r.status(), Some(200));
    ua.expect_notify(sim, 200);
    d
}

#[test]
fn subscriptions_beyond_max_subscriptions_get_503_and_refreshes_still_work() {
    let config = Config {
        max_subscriptions: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut bob = Ua::new(&mut sim, "bob");
    let mut carol = Ua::new(&mut sim, "carol");
    let mut d1 = subscribed(&mut sim, &mut bob, "sip:alice@example.org");
    subscribed(&mut sim, &mut carol, "sip:alice@example.org");

    let (_, r) = carol.subscribe(&mut sim, "sip:dave@example.org", Some(600));
    assert_limit_503(&r, "Too many subscriptions");
    assert!(
        sim.recv(carol.conn).is_none(),
        "no NOTIFY for a refused SUBSCRIBE"
    );
    let stats = sim.server.stats();
    assert_eq!(stats.subscription_limit_hits, 1);
    assert_eq!(stats.subscriptions, 2);

    // A refresh of an existing dialog is not a new subscription.
    let r = bob.resubscribe(&mut sim, &mut d1, 600);
    assert_eq!(r.status(), Some(200));
    bob.expect_notify(&mut sim, 200);

    // Once one ends, a new one is accepted again.
    let r = bob.resubscribe(&mut sim, &mut d1, 0);
    assert_eq!(r.status(), Some(200));
    bob.expect_notify(&mut sim, 200);
    assert_eq!(sim.server.stats().subscriptions, 1);
    subscribed(&mut sim, &mut carol, "sip:dave@example.org");
    assert_eq!(sim.server.stats().subscription_limit_hits, 1);
}

#[test]
fn subscriptions_beyond_max_subscriptions_per_connection_get_503_on_that_connection_only() {
    let config = Config {
        max_subscriptions_per_connection: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut bob = Ua::new(&mut sim, "bob");
    let mut carol = Ua::new(&mut sim, "carol");
    let mut d1 = subscribed(&mut sim, &mut bob, "sip:alice@example.org");
    subscribed(&mut sim, &mut bob, "sip:dave@example.org");

    let (_, r) = bob.subscribe(&mut sim, "sip:erin@example.org", Some(600));
    assert_limit_503(&r, "Too many subscriptions on this connection");
    assert_eq!(sim.server.stats().connection_subscription_limit_hits, 1);
    assert_eq!(sim.server.stats().subscription_limit_hits, 0);

    // Another connection has its own allowance.
    subscribed(&mut sim, &mut carol, "sip:erin@example.org");
    subscribed(&mut sim, &mut carol, "sip:alice@example.org");

    // Refreshes on the full connection still work.
    let r = bob.resubscribe(&mut sim, &mut d1, 600);
    assert_eq!(r.status(), Some(200));
    bob.expect_notify(&mut sim, 200);

    // A subscription that ends frees its place on the connection it was created on.
    let r = bob.resubscribe(&mut sim, &mut d1, 0);
    assert_eq!(r.status(), Some(200));
    bob.expect_notify(&mut sim, 200);
    subscribed(&mut sim, &mut bob, "sip:erin@example.org");
    assert_eq!(sim.server.stats().connection_subscription_limit_hits, 1);
    assert_eq!(sim.server.stats().subscriptions, 4);
}

#[test]
fn publications_beyond_max_publications_get_503_and_refreshes_still_work() {
    let config = Config {
        max_publications: 1,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    let doc = alice.pidf("a1", "here", None);
    let r = alice.publish(&mut sim, Some(&doc), Some(600), None);
    assert_eq!(r.status(), Some(200));
    let etag = header(&r, HeaderName::SipEtag).expect("SIP-ETag");

    let doc = bob.pidf("b1", "there", None);
    let r = bob.publish(&mut sim, Some(&doc), Some(600), None);
    assert_limit_503(&r, "Too many publications");
    let stats = sim.server.stats();
    assert_eq!(stats.publication_limit_hits, 1);
    assert_eq!(stats.publications, 1);

    // A refresh (SIP-If-Match) is not a new publication.
    let r = alice.publish(&mut sim, None, Some(600), Some(&etag));
    assert_eq!(r.status(), Some(200));
    let etag = header(&r, HeaderName::SipEtag).expect("SIP-ETag");

    // Once it is removed, a new one is accepted.
    let r = alice.publish(&mut sim, None, Some(0), Some(&etag));
    assert_eq!(r.status(), Some(200));
    let r = bob.publish(&mut sim, Some(&doc), Some(600), None);
    assert_eq!(r.status(), Some(200));
    assert_eq!(sim.server.stats().publication_limit_hits, 1);
}

#[test]
fn a_connection_holding_a_partial_message_too_long_is_closed() {
    let config = Config {
        partial_message_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut bob = Ua::new(&mut sim, "bob");
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    let (head, _) = m.split_at(40);
    sim.send(bob.conn, head);
    sim.advance(Duration::from_millis(9_999));
    assert!(!sim.conn(bob.conn).closed_by_server);
    sim.advance(Duration::from_millis(1));
    assert!(sim.conn(bob.conn).closed_by_server, "slowloris closed");
    assert_eq!(sim.server.stats().partial_message_timeouts, 1);
    assert_eq!(sim.server.stats().connections, 0);
}

#[test]
fn the_partial_message_deadline_is_per_message() {
    let config = Config {
        partial_message_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut bob = Ua::new(&mut sim, "bob");
    let (m1, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    let (m2, _) = bob.subscribe_msg("sip:carol@example.org", Some(600), "");
    // Message 1 starts at 0 s, completes at 6 s with message 2 starting; 2 completes at 12 s.
    sim.send(bob.conn, &m1[..50]);
    sim.advance(Duration::from_secs(6));
    sim.send(bob.conn, format!("{}{}", &m1[50..], &m2[..30]));
    sim.advance(Duration::from_secs(6));
    assert!(!sim.conn(bob.conn).closed_by_server);
    sim.send(bob.conn, &m2[30..]);
    assert_eq!(sim.server.stats().subscriptions, 2);
    // Bytes arriving slowly but steadily within one message do not extend its deadline.
    sim.send(bob.conn, &m1[..10]);
    for _ in 0..9 {
        sim.advance(Duration::from_secs(1));
        sim.send(bob.conn, &m1[10..11]);
    }
    assert!(!sim.conn(bob.conn).closed_by_server);
    sim.advance(Duration::from_secs(1));
    assert!(sim.conn(bob.conn).closed_by_server);
    assert_eq!(sim.server.stats().partial_message_timeouts, 1);
    // Keep-alives alone leave nothing pending.
    let mut carol = Ua::new(&mut sim, "carol");
    sim.send(carol.conn, "\r\n\r\n");
    sim.advance(Duration::from_secs(30));
    assert!(!sim.conn(carol.conn).closed_by_server);
    let (_, r) = carol.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    assert_eq!(r.status(), Some(200));
}

#[test]
fn idle_connections_are_closed_unless_a_subscription_uses_them() {
    let config = Config {
        idle_connection_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let silent = sim.connect();
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    subscribed(&mut sim, &mut bob, "sip:alice@example.org");

    sim.advance(Duration::from_secs(30));
    // Traffic postpones the deadline.
    let doc = alice.pidf("a1", "here", None);
    let r = alice.publish(&mut sim, Some(&doc), Some(3600), None);
    assert_eq!(r.status(), Some(200));
    sim.advance(Duration::from_secs(30));
    assert!(sim.conn(silent).closed_by_server, "no traffic for 60 s");
    assert!(!sim.conn(alice.conn).closed_by_server);
    assert_eq!(sim.server.stats().idle_connection_timeouts, 1);
    sim.advance(Duration::from_secs(30));
    assert!(sim.conn(alice.conn).closed_by_server);
    assert_eq!(sim.server.stats().idle_connection_timeouts, 2);

    // Bob's subscription keeps his connection open, however quiet.
    sim.advance(Duration::from_secs(400));
    assert!(!sim.conn(bob.conn).closed_by_server);
    // Until it expires (at 600 s, with a terminating NOTIFY), then the connection idles out.
    sim.advance(Duration::from_secs(150));
    bob.expect_notify(&mut sim, 200);
    sim.advance(Duration::from_secs(200));
    assert!(sim.conn(bob.conn).closed_by_server);
    assert_eq!(sim.server.stats().idle_connection_timeouts, 3);
    assert_eq!(sim.server.stats().connections, 0);
}

#[test]
fn an_idle_timeout_of_none_never_closes() {
    let config = Config {
        idle_connection_timeout: None,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let silent = sim.connect();
    sim.advance(Duration::from_secs(30 * 86_400));
    assert!(!sim.conn(silent).closed_by_server);
    assert_eq!(sim.server.stats().idle_connection_timeouts, 0);
    assert_eq!(sim.server.poll_timeout(), None);
}

#[test]
fn subscribes_parked_for_account_lookups_still_respect_max_subscriptions() {
    let config = Config {
        max_subscriptions: 2,
        long_term_enabled: true,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut bob = Ua::new(&mut sim, "bob");
    // Three new SUBSCRIBEs arrive while none exists: each passes the limit check on arrival,
    // then waits for its presentity's account lookup.
    let mut wire = String::new();
    for target in ["alice", "carol", "dave"] {
        let (m, _) = bob.subscribe_msg(&format!("sip:{target}@example.org"), Some(600), "");
        wire.push_str(&m);
    }
    sim.send(bob.conn, wire);
    assert!(
        sim.recv(bob.conn).is_none(),
        "parked until the database answers"
    );
    assert!(sim.answer_queries(&FakeDb::default()) > 0);
    let mut codes = Vec::new();
    while let Some(m) = sim.recv(bob.conn) {
        if let Some(code) = m.status() {
            codes.push(code);
        }
    }
    codes.sort_unstable();
    assert_eq!(codes, vec![200, 200, 503], "checked again when they resume");
    let stats = sim.server.stats();
    assert_eq!(stats.subscriptions, 2);
    assert_eq!(stats.subscription_limit_hits, 1);
}

#[test]
fn output_for_one_connection_past_max_pending_output_closes_it() {
    let config = Config {
        max_pending_output: 64 * 1024,
        notify_limit: 100_000,
        ..Config::default()
    };
    let mut sim = Sim::new(config);
    let mut bob = Ua::new(&mut sim, "bob");
    let mut carol = Ua::new(&mut sim, "carol");
    let entries: Vec<String> = (0..400).map(|i| format!("sip:u{i}@example.org")).collect();
    let (mut d, r) = bob.subscribe_list(&mut sim, "sip:list@example.org", &entries, 600, "");
    assert_eq!(r.status(), Some(200));
    let full = sim.recv(bob.conn).expect("full state");
    let size = full.body.len();
    // Refreshes in one read ask for as many full states: more than 64 KiB in one drain.
    let mut wire = String::new();
    for _ in 0..(64 * 1024 / size + 2) {
        wire.push_str(&bob.resubscribe_msg(&mut d, 600));
    }
    sim.send(bob.conn, wire);
    assert!(
        sim.conn(bob.conn).closed_by_server,
        "bob's connection is closed"
    );
    assert_eq!(sim.server.stats().output_overflows, 1);
    assert_eq!(
        sim.server.stats().subscriptions,
        0,
        "bob's list subscription ended with it"
    );
    // Others are served.
    subscribed(&mut sim, &mut carol, "sip:alice@example.org");
}
