//! The core's counters behind the metrics endpoint (`Stats`): NOTIFY outcomes, requests by
//! method and status, list subscriptions, driven through the simulator with a fake clock.

use std::time::Duration;

use presence_proto::{Config, Stats};
use presence_tests::sim::{Sim, Ua, answer};

fn requests(stats: &Stats, method: &str, status: u16) -> u64 {
    stats
        .requests_answered()
        .find(|(m, s, _)| *m == method && *s == status)
        .map(|(_, _, n)| n)
        .unwrap_or_else(|| panic!("no entry for {method} {status}"))
}

#[test]
fn notify_outcomes_are_counted() {
    // Every watcher sees every change (the simulator's User-Agent bypasses the mutual rule).
    let mut sim = Sim::new(Config {
        bypass_condition: Some("sim-ua".to_owned()),
        ..Config::default()
    });
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    let mut carol = Ua::new(&mut sim, "carol");
    let mut dave = Ua::new(&mut sim, "dave");
    let alice_uri = alice.uri();

    // ok: answered 200.
    bob.subscribe(&mut sim, &alice_uri, Some(600));
    bob.expect_notify(&mut sim, 200);
    // error without ending the subscription (486), and one that ends it (481).
    carol.subscribe(&mut sim, &alice_uri, Some(600));
    carol.expect_notify(&mut sim, 486);
    dave.subscribe(&mut sim, &alice_uri, Some(600));
    dave.expect_notify(&mut sim, 481);
    let s = sim.server.stats();
    assert_eq!(
        (s.notify_ok, s.notify_error_responses, s.notify_failures),
        (1, 2, 1)
    );
    assert_eq!(s.subscriptions, 2);

    // A publication notifies bob and carol; carol does not answer (timeout); bob's connection
    // goes away with his NOTIFY in flight (connection lost).
    let doc = alice.pidf("t1", "here", None);
    alice.publish(&mut sim, Some(&doc), Some(600), None);
    let n_bob = sim.recv(bob.conn).expect("NOTIFY to bob");
    let _n_carol = sim.recv(carol.conn).expect("NOTIFY to carol");
    sim.close(bob.conn);
    let s = sim.server.stats();
    assert_eq!(s.notify_connection_lost, 1);
    assert_eq!(s.notify_timeouts, 0);
    sim.advance(Duration::from_secs(33));
    let s = sim.server.stats();
    assert_eq!(s.notify_timeouts, 1);
    assert_eq!(s.subscriptions, 0);
    // A late answer counts nothing.
    sim.send(carol.conn, answer(&n_bob, 200));
    let s = sim.server.stats();
    assert_eq!(
        (
            s.notify_ok,
            s.notify_error_responses,
            s.notify_timeouts,
            s.notify_connection_lost
        ),
        (1, 2, 1, 1)
    );
    assert_eq!(s.notify_failures, 3, "481, timeout, connection lost");
    assert_eq!(s.notifies_sent, 5);
}

#[test]
fn requests_are_counted_by_method_and_status() {
    let mut sim = Sim::new(Config::default());
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    let doc = alice.pidf("t1", "here", None);
    assert_eq!(
        alice
            .publish(&mut sim, Some(&doc), Some(600), None)
            .status(),
        Some(200)
    );
    assert_eq!(
        alice
            .publish(&mut sim, None, Some(600), Some("no-such-etag"))
            .status(),
        Some(412)
    );
    let (m, _) = bob.subscribe_msg(&alice.uri(), Some(600), "");
    sim.send(bob.conn, m.replace("Event: presence", "Event: dialog"));
    assert_eq!(bob.expect_response(&mut sim).status(), Some(489));
    let (m, _) = bob.subscribe_msg(&alice.uri(), Some(600), "");
    sim.send(bob.conn, m.replace("SUBSCRIBE", "OPTIONS"));
    assert_eq!(bob.expect_response(&mut sim).status(), Some(405));
    let (m, _) = bob.subscribe_msg(&alice.uri(), Some(600), "");
    sim.send(bob.conn, m.replace("SUBSCRIBE", "FROBNICATE"));
    assert_eq!(bob.expect_response(&mut sim).status(), Some(501));

    let s = sim.server.stats();
    assert_eq!(requests(&s, "PUBLISH", 200), 1);
    assert_eq!(requests(&s, "PUBLISH", 412), 1);
    assert_eq!(requests(&s, "SUBSCRIBE", 489), 1);
    assert_eq!(requests(&s, "OTHER", 405), 1);
    assert_eq!(requests(&s, "OTHER", 501), 1);
    let total: u64 = s.requests_answered().map(|(_, _, n)| n).sum();
    assert_eq!(total, 5);
    assert_eq!(total, s.responses_sent);
    assert_eq!(
        s.requests_answered().count(),
        Stats::REQUEST_METHODS.len() * Stats::RESPONSE_STATUSES.len()
    );
}

#[test]
fn list_subscriptions_are_counted_among_subscriptions() {
    let mut sim = Sim::new(Config::default());
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    let entries = vec![
        "sip:carol@example.org".to_owned(),
        "sip:dave@example.org".to_owned(),
    ];
    let (mut d, r) = bob.subscribe_list(&mut sim, "sip:friends@example.org", &entries, 600, "");
    assert_eq!(r.status(), Some(200));
    bob.expect_notify(&mut sim, 200);
    alice.subscribe(&mut sim, "sip:bob@example.org", Some(600));
    alice.expect_notify(&mut sim, 200);
    let s = sim.server.stats();
    assert_eq!((s.subscriptions, s.list_subscriptions), (2, 1));
    assert_eq!(requests(&s, "SUBSCRIBE", 200), 2);
    // Unsubscribing the list ends it.
    let r = bob.resubscribe(&mut sim, &mut d, 0);
    assert_eq!(r.status(), Some(200));
    let s = sim.server.stats();
    assert_eq!((s.subscriptions, s.list_subscriptions), (1, 0));
}
