//! Long-term presence, phone aliases and server-known lists through the simulator, with a
//! scripted database: query batching and ordering, errors and timeouts, the lookup cache, alias
//! linking, and the mutual rule through aliases.

use std::time::{Duration, SystemTime};

use presence_proto::sip::HeaderName;
use presence_proto::{Config, Query};
use presence_tests::sim::{FakeDb, Sim, Ua, body, decode_list, header};

const PHONE: &str = "+33612345678";

fn config() -> Config {
    Config {
        long_term_enabled: true,
        ..Config::default()
    }
}

fn db() -> FakeDb {
    FakeDb::default()
        .with_account("alice", "example.org", Some(PHONE))
        .with_account("carol", "example.org", None)
}

#[test]
fn a_silent_account_appears_open_and_away_to_any_watcher() {
    let mut sim = Sim::new(config());
    let mut bob = Ua::new(&mut sim, "bob");
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(bob.conn, m);
    assert!(
        sim.recv(bob.conn).is_none(),
        "the SUBSCRIBE waits for the lookup"
    );
    assert_eq!(sim.queries.len(), 1);
    assert_eq!(
        sim.queries[0].1,
        Query::Accounts {
            users: vec!["alice".into()]
        }
    );
    sim.answer_queries(&db());
    assert_eq!(bob.expect_response(&mut sim).status(), Some(200));
    let n = bob.expect_notify(&mut sim, 200);
    let b = body(&n);
    assert!(b.contains("<basic>open</basic>"), "{b}");
    assert!(
        b.contains("<contact>sip:alice@example.org</contact>"),
        "{b}"
    );
    assert!(b.contains("<rpid:away/>"), "{b}");
    // An unknown user stays unknown.
    bob.subscribe_msg("sip:nobody@example.org", Some(600), "");
    let (m, _) = bob.subscribe_msg("sip:nobody@example.org", Some(600), "");
    sim.send(bob.conn, m);
    sim.answer_queries(&db());
    bob.expect_response(&mut sim);
    assert!(
        body(&bob.expect_notify(&mut sim, 200)).contains("No presence information available yet")
    );
}

#[test]
fn published_state_wins_for_mutual_watchers_long_term_for_the_others() {
    let mut sim = Sim::new(config());
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    let mut carol = Ua::new(&mut sim, "carol");
    alice.publish(
        &mut sim,
        Some(&alice.pidf("a1", "secret-note", Some("on-the-phone"))),
        Some(600),
        None,
    );
    // alice watches bob: bob is mutual; carol is not.
    let (m, _) = alice.subscribe_msg("sip:bob@example.org", Some(600), "");
    sim.send(alice.conn, m);
    sim.answer_queries(&db());
    alice.expect_response(&mut sim);
    alice.expect_notify(&mut sim, 200);
    for (ua, sees) in [(&mut bob, true), (&mut carol, false)] {
        let (m, _) = ua.subscribe_msg("sip:alice@example.org", Some(600), "");
        sim.send(ua.conn, m);
        sim.answer_queries(&db());
        ua.expect_response(&mut sim);
        let b = body(&ua.expect_notify(&mut sim, 200));
        assert_eq!(b.contains("secret-note"), sees, "{b}");
        assert_eq!(
            b.contains("<rpid:away/>"),
            !sees,
            "non-mutual watchers get long-term presence: {b}"
        );
    }
    // alice was told of bob's subscription (her watch on him became mutual).
    while let Some(n) = sim.recv(alice.conn) {
        sim.send(alice.conn, presence_tests::sim::answer(&n, 200));
    }
    // A second publication, then its removal: bob sees the first one remain.
    let etag = {
        let r = alice.publish(
            &mut sim,
            Some(&alice.pidf("a1", "secret-note", None)),
            Some(600),
            None,
        );
        header(&r, HeaderName::SipEtag).unwrap()
    };
    bob.expect_notify(&mut sim, 200);
    let _ = alice.publish(&mut sim, None, Some(0), Some(&etag));
    let mut b = String::new();
    while let Some(n) = sim.recv(bob.conn) {
        b = body(&n);
        sim.send(bob.conn, presence_tests::sim::answer(&n, 200));
    }
    assert!(
        b.contains("secret-note"),
        "the first publication is still there: {b}"
    );
    assert!(
        !b.contains("<rpid:away/>"),
        "published state, not long-term presence: {b}"
    );
}

#[test]
fn a_phone_number_resolves_to_its_account_and_shares_its_publications() {
    let mut sim = Sim::new(config());
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    let phone_uri = format!("sip:{PHONE}@example.org;user=phone");
    let (m, _) = bob.subscribe_msg(&phone_uri, Some(600), "");
    sim.send(bob.conn, m);
    assert_eq!(
        sim.queries[0].1,
        Query::Accounts {
            users: vec![PHONE.into()]
        }
    );
    sim.answer_queries(&db());
    bob.expect_response(&mut sim);
    let b = body(&bob.expect_notify(&mut sim, 200));
    assert!(
        b.contains("<contact>sip:alice@example.org</contact>"),
        "the contact is the account's SIP URI: {b}"
    );
    assert!(
        b.contains(&format!("entity=\"sip:{PHONE}@example.org")),
        "{b}"
    );
    // alice publishes: bob (not mutual yet) hears nothing new.
    alice.publish(
        &mut sim,
        Some(&alice.pidf("a1", "via-alias", None)),
        Some(600),
        None,
    );
    assert!(sim.recv(bob.conn).is_none());
    // alice watches bob: the phone-number watch becomes mutual through the alias.
    let (m, _) = alice.subscribe_msg("sip:bob@example.org", Some(600), "");
    sim.send(alice.conn, m);
    sim.answer_queries(&db());
    alice.expect_response(&mut sim);
    alice.expect_notify(&mut sim, 200);
    let b = body(&bob.expect_notify(&mut sim, 200));
    assert!(
        b.contains("via-alias"),
        "mutual watchers of the phone number see what the account publishes: {b}"
    );
    // And later publications reach the phone-number watch.
    alice.publish(
        &mut sim,
        Some(&alice.pidf("a2", "second", None)),
        Some(600),
        None,
    );
    assert!(body(&bob.expect_notify(&mut sim, 200)).contains("second"));
}

#[test]
fn a_list_of_phone_numbers_costs_a_bounded_number_of_queries_answered_in_any_order() {
    let mut sim = Sim::new(Config {
        max_query_batch: 100,
        ..config()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    let mut entries: Vec<String> = (0..250)
        .map(|i| format!("sip:+3361000{i:04}@example.org;user=phone"))
        .collect();
    entries.push(format!("sip:{PHONE}@example.org;user=phone"));
    let body_xml = Ua::list_body(&entries);
    let (m, _) = bob.subscribe_list_msg("sip:rls@example.org", &body_xml, 600, "");
    sim.send(bob.conn, m);
    assert_eq!(sim.queries.len(), 3, "251 numbers in batches of 100");
    let all: usize = sim
        .queries
        .iter()
        .map(|(_, q)| match q {
            Query::Accounts { users } => users.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(all, 251);
    // Answer out of order: nothing is sent before the last answer.
    let db = db();
    let mut pending: Vec<_> = sim.queries.drain(..).collect();
    pending.reverse();
    while let Some((id, q)) = pending.pop() {
        assert!(
            sim.recv(bob.conn).is_none(),
            "the list SUBSCRIBE is answered only once its lookups are done"
        );
        sim.server.query_result(sim.now, id, Ok(db.answer(&q)));
        sim.pump();
    }
    assert_eq!(bob.expect_response(&mut sim).status(), Some(200));
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    assert_eq!(l.rlmi.resources.len(), 251);
    let known = format!("sip:{PHONE}@example.org;user=phone");
    assert_eq!(l.with_instances(), [known.as_str()]);
    assert!(
        l.pidf_of(&known)
            .unwrap()
            .contains("<contact>sip:alice@example.org</contact>")
    );
    assert_eq!(sim.server.stats().queries_issued, 3);
}

#[test]
fn database_errors_and_timeouts_degrade_without_blocking() {
    let mut sim = Sim::new(config());
    let mut bob = Ua::new(&mut sim, "bob");
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(bob.conn, m);
    assert_eq!(sim.fail_queries(), 1);
    assert_eq!(
        bob.expect_response(&mut sim).status(),
        Some(200),
        "answered despite the error"
    );
    assert!(body(&bob.expect_notify(&mut sim, 200)).contains("No presence information"));
    // Meanwhile other users' PUBLISH/NOTIFY traffic never waited.
    let mut carol = Ua::new(&mut sim, "carol");
    let (m, _) = carol.subscribe_msg("sip:dave@example.org", Some(600), "");
    sim.send(carol.conn, m);
    let mut dave = Ua::new(&mut sim, "dave");
    assert_eq!(
        dave.publish(&mut sim, Some(&dave.pidf("d", "x", None)), Some(60), None)
            .status(),
        Some(200)
    );
    assert!(
        sim.recv(carol.conn).is_none(),
        "carol's SUBSCRIBE still waits for its lookup"
    );
    sim.advance(Duration::from_millis(4999));
    assert!(sim.recv(carol.conn).is_none());
    sim.advance(Duration::from_millis(1));
    assert_eq!(
        carol.expect_response(&mut sim).status(),
        Some(200),
        "answered at the query deadline"
    );
    carol.expect_notify(&mut sim, 200);
    // The late answer is ignored.
    let (id, _) = sim.queries.pop_front().expect("the timed-out query");
    sim.server.query_result(
        sim.now,
        id,
        Ok(presence_proto::QueryResult::Accounts(vec![])),
    );
    sim.pump();
    assert!(sim.recv(carol.conn).is_none());
    assert_eq!(sim.server.stats().query_failures, 2);
}

#[test]
fn lookups_are_cached_for_their_lifetime() {
    let mut sim = Sim::new(Config {
        account_cache_lifetime: Duration::from_secs(60),
        ..config()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(bob.conn, m);
    sim.answer_queries(&db());
    bob.expect_response(&mut sim);
    bob.expect_notify(&mut sim, 200);
    let mut carol = Ua::new(&mut sim, "carol");
    let (m, _) = carol.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(carol.conn, m);
    assert!(sim.queries.is_empty(), "cached");
    assert_eq!(carol.expect_response(&mut sim).status(), Some(200));
    carol.expect_notify(&mut sim, 200);
    sim.advance(Duration::from_secs(61));
    let mut dave = Ua::new(&mut sim, "dave");
    let (m, _) = dave.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(dave.conn, m);
    assert_eq!(sim.queries.len(), 1, "expired: looked up again");
}

#[test]
fn an_account_created_later_is_found_on_the_next_refresh() {
    let mut sim = Sim::new(config());
    let mut bob = Ua::new(&mut sim, "bob");
    let (m, mut d) = bob.subscribe_msg("sip:erin@example.org", Some(600), "");
    sim.send(bob.conn, m);
    sim.answer_queries(&db());
    let r = bob.expect_response(&mut sim);
    d.to_tag = header(&r, HeaderName::To)
        .unwrap()
        .split(";tag=")
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(body(&bob.expect_notify(&mut sim, 200)).contains("No presence"));
    // erin's account is created; bob refreshes.
    let db = db().with_account("erin", "example.org", None);
    sim.advance(Duration::from_secs(10));
    assert_eq!(bob.resubscribe(&mut sim, &mut d, 600).status(), Some(200));
    bob.expect_notify(&mut sim, 200);
    assert_eq!(
        sim.answer_queries(&db),
        1,
        "the refresh looked erin up again"
    );
    let b = body(&bob.expect_notify(&mut sim, 200));
    assert!(b.contains("<contact>sip:erin@example.org</contact>"), "{b}");
}

#[test]
fn server_known_lists_come_from_the_database() {
    let mut sim = Sim::new(Config {
        server_known_lists: true,
        ..config()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    let mut db = db();
    db.lists.insert(
        (
            "sip:bob@example.org".into(),
            "sip:friends@example.org".into(),
        ),
        vec![
            "\"Alice A.\" <sip:alice@example.org>".into(),
            "sip:carol@example.org".into(),
            "not a uri".into(),
        ],
    );
    let (m, _) = bob.subscribe_list_msg("sip:friends@example.org", b"", 600, "");
    let m = String::from_utf8(m)
        .unwrap()
        .replace("Content-Type: application/resource-lists+xml\r\n", "");
    sim.send(bob.conn, m);
    assert_eq!(
        sim.queries[0].1,
        Query::ListMembers {
            from: "sip:bob@example.org".into(),
            to: "sip:friends@example.org".into()
        }
    );
    assert_eq!(
        sim.answer_queries(&db),
        2,
        "the list, then its members' accounts"
    );
    assert_eq!(bob.expect_response(&mut sim).status(), Some(200));
    let l = decode_list(&bob.expect_notify(&mut sim, 200));
    let names: Vec<(&str, Option<&str>)> = l
        .rlmi
        .resources
        .iter()
        .map(|r| (r.uri.as_str(), r.name.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("sip:alice@example.org", Some("Alice A.")),
            ("sip:carol@example.org", None)
        ]
    );
    assert_eq!(
        l.with_instances().len(),
        2,
        "both have accounts: long-term presence"
    );
    // A database error: 503 with Retry-After.
    let (m, _) = bob.subscribe_list_msg("sip:friends@example.org", b"", 600, "");
    let m = String::from_utf8(m)
        .unwrap()
        .replace("Content-Type: application/resource-lists+xml\r\n", "");
    sim.send(bob.conn, m);
    sim.fail_queries();
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(503));
    assert!(header(&r, HeaderName::RetryAfter).is_some());
}

#[test]
fn too_many_waiting_queries_get_503() {
    let mut sim = Sim::new(Config {
        max_inflight_queries: 1,
        max_queued_queries: 1,
        max_query_batch: 10,
        ..config()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    let entries: Vec<String> = (0..50).map(|i| format!("sip:u{i}@example.org")).collect();
    let (m, _) = bob.subscribe_list_msg("sip:rls@example.org", &Ua::list_body(&entries), 600, "");
    sim.send(bob.conn, m);
    let r = bob.expect_response(&mut sim);
    assert_eq!(r.status(), Some(503));
    assert_eq!(header(&r, HeaderName::RetryAfter).as_deref(), Some("10"));
    assert_eq!(sim.server.stats().subscriptions, 0);
}

#[test]
fn long_term_documents_carry_the_last_activity() {
    let start = std::time::Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let mut sim = Sim::new(Config {
        wall_clock: Some((start, wall)),
        ..config()
    });
    sim.now = start;
    let mut alice = Ua::new(&mut sim, "alice");
    let r = alice.publish(
        &mut sim,
        Some(&alice.pidf("a1", "x", None)),
        Some(600),
        None,
    );
    let etag = header(&r, HeaderName::SipEtag).unwrap();
    sim.advance(Duration::from_secs(100));
    alice.publish(&mut sim, None, Some(0), Some(&etag));
    let mut bob = Ua::new(&mut sim, "bob");
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(bob.conn, m);
    sim.answer_queries(&db());
    bob.expect_response(&mut sim);
    let b = body(&bob.expect_notify(&mut sim, 200));
    let expected = presence_proto::pidf::format_rfc3339(1_795_000_100);
    assert!(
        b.contains(&format!("<dm:timestamp>{expected}</dm:timestamp>")),
        "{b}"
    );
}

#[test]
fn watching_a_phone_number_counts_as_watching_its_account_for_the_mutual_rule() {
    let mut sim = Sim::new(config());
    let db = db().with_account("bob", "example.org", Some("+33700000000"));
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    alice.publish(
        &mut sim,
        Some(&alice.pidf("a1", "for-bob", None)),
        Some(600),
        None,
    );
    // alice's address book has bob's phone number only.
    let entries = vec!["sip:+33700000000@example.org;user=phone".to_owned()];
    let (m, _) = alice.subscribe_list_msg("sip:rls@example.org", &Ua::list_body(&entries), 600, "");
    sim.send(alice.conn, m);
    sim.answer_queries(&db);
    assert_eq!(alice.expect_response(&mut sim).status(), Some(200));
    let l = decode_list(&alice.expect_notify(&mut sim, 200));
    let doc = l
        .pidf_of("sip:+33700000000@example.org;user=phone")
        .expect("long-term presence of bob");
    assert!(
        doc.contains("<contact>sip:bob@example.org</contact>"),
        "{doc}"
    );
    // bob subscribes to alice: alice watches him (through his number), so he sees her.
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(bob.conn, m);
    sim.answer_queries(&db);
    bob.expect_response(&mut sim);
    let b = body(&bob.expect_notify(&mut sim, 200));
    assert!(b.contains("for-bob"), "mutual through the alias: {b}");
}

#[test]
fn a_zero_cache_lifetime_still_answers_after_one_lookup() {
    let mut sim = Sim::new(Config {
        account_cache_lifetime: Duration::ZERO,
        ..config()
    });
    let mut bob = Ua::new(&mut sim, "bob");
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    sim.send(bob.conn, m);
    assert_eq!(sim.answer_queries(&db()), 1, "one lookup, not a loop");
    assert_eq!(bob.expect_response(&mut sim).status(), Some(200));
    assert!(
        body(&bob.expect_notify(&mut sim, 200))
            .contains("<contact>sip:alice@example.org</contact>")
    );
}
