//! End-to-end tests of cluster mode: two daemons (and a restarted one) on loopback share
//! short-term presence through the real Redis on 127.0.0.1:6379 (`.ci/run` starts it). Each test
//! uses its own key prefix (`redis-key-prefix`), so tests running in parallel do not see each
//! other, and deletes its keys at the end.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use presence_tests::cluster::{CROSS, DOMAIN, Dialog, Ua, aor, cseq, etag, pidf, wait_log};
use presence_tests::daemon::{Daemon, RecvError, Runtime, SipClient, SipMessage, unique};
use presence_tests::on_both_runtimes;
use presence_tests::redis::{Namespace, PrivateRedis, node_config};
use presence_tests::sim::decode_list;

/// The extra `[presence-server]` lines of a node on a [`PrivateRedis`].
const PRIVATE_NODE: &str = "cluster-timeout=500\nbypass-condition=cluster-test";

on_both_runtimes!(a_publish_on_one_node_is_notified_by_another);
fn a_publish_on_one_node_is_notified_by_another(rt: Runtime) {
    let ns = Namespace::new("presence-e2e-");
    let (a, b) = two_nodes(rt, &ns);
    let mut bob = Ua::new(&b, "bob");
    bob.user_agent = "cluster-test";
    let (_d, n) = bob.subscribe("alice");
    assert!(
        n.body_str().contains("No presence information"),
        "{}",
        n.body_str()
    );
    let mut alice = Ua::new(&a, "alice");
    let r = alice.publish(Some(&pidf("alice", "hello from a")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    let n = bob.notify();
    assert!(n.body_str().contains("hello from a"), "{}", n.body_str());

    // The publication is in Redis, with its expiry.
    let keys = ns.keys();
    let pub_key = format!("{}pub:alice@{DOMAIN}:{}", ns.prefix, etag(&r));
    assert!(keys.contains(&pub_key), "{keys:?}");
    let ttl: i64 = ns.cli(&["pttl", &pub_key]).trim().parse().unwrap();
    assert!(ttl > 590_000 && ttl <= 600_000, "{ttl}");
    assert!(a.log().contains("cluster mode"), "{}", a.log());
}

on_both_runtimes!(a_refresh_with_sip_if_match_is_served_by_another_node);
fn a_refresh_with_sip_if_match_is_served_by_another_node(rt: Runtime) {
    let ns = Namespace::new("presence-e2e-");
    let (a, b) = two_nodes(rt, &ns);
    let mut carol = Ua::new(&a, "carol");
    carol.user_agent = "cluster-test";
    carol.subscribe("alice");

    let mut alice_a = Ua::new(&a, "alice");
    let r = alice_a.publish(Some(&pidf("alice", "first")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    let e1 = etag(&r);
    assert!(carol.notify().body_str().contains("first"));

    // Node b never saw it: it looks the ETag up in Redis.
    let mut alice_b = Ua::new(&b, "alice");
    let r = alice_b.publish(Some(&pidf("alice", "second")), 600, Some(&e1));
    assert_eq!(r.status(), Some(200), "{r}");
    let e2 = etag(&r);
    assert_ne!(e1, e2);
    let n = carol.notify();
    assert!(
        n.body_str().contains("second") && !n.body_str().contains("first"),
        "{}",
        n.body_str()
    );
    // A refresh back on node a, with the ETag node b gave.
    let r = alice_a.publish(None, 300, Some(&e2));
    assert_eq!(r.status(), Some(200), "{r}");
    let e3 = etag(&r);
    let n = carol.notify();
    assert_eq!(
        n.body_str().matches("<tuple").count(),
        1,
        "{}",
        n.body_str()
    );
    // The superseded ETags are refused on both nodes; removal works on node b.
    assert_eq!(alice_b.publish(None, 300, Some(&e1)).status(), Some(412));
    assert_eq!(alice_a.publish(None, 300, Some(&e2)).status(), Some(412));
    assert_eq!(alice_b.publish(None, 0, Some(&e3)).status(), Some(200));
    let n = carol.notify();
    assert!(
        n.body_str().contains("No presence information"),
        "{}",
        n.body_str()
    );
    assert!(
        !ns.keys().iter().any(|k| k.contains(":pub:")),
        "{:?}",
        ns.keys()
    );
}

on_both_runtimes!(the_mutual_rule_works_across_nodes);
fn the_mutual_rule_works_across_nodes(rt: Runtime) {
    let ns = Namespace::new("presence-e2e-");
    let a = Daemon::start(rt, &ns.node("a", ""));
    let b = Daemon::start(rt, &ns.node("b", ""));
    let mut alice = Ua::new(&a, "alice");
    assert_eq!(
        alice
            .publish(Some(&pidf("alice", "secret")), 600, None)
            .status(),
        Some(200)
    );
    // Bob (node b) watches alice; she does not watch him: restricted document.
    let mut bob = Ua::new(&b, "bob");
    let (_db, n) = bob.subscribe("alice");
    assert!(!n.body_str().contains("secret"), "{}", n.body_str());
    // Alice watches bob on node a: bob is re-notified with her tuple.
    let (mut da, _) = alice.subscribe("bob");
    let n = bob.notify();
    assert!(n.body_str().contains("secret"), "{}", n.body_str());
    // Alice stops watching bob: bob is downgraded.
    let (r, _) = alice.resubscribe(&mut da, 0);
    assert_eq!(r.status(), Some(200), "{r}");
    let n = bob.notify();
    assert!(!n.body_str().contains("secret"), "{}", n.body_str());
}

on_both_runtimes!(a_killed_nodes_dialog_is_refreshed_on_a_surviving_node);
fn a_killed_nodes_dialog_is_refreshed_on_a_surviving_node(rt: Runtime) {
    let ns = Namespace::new("presence-e2e-");
    let (a, b) = two_nodes(rt, &ns);
    let mut alice_a = Ua::new(&a, "alice");
    let r = alice_a.publish(Some(&pidf("alice", "before the crash")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    let mut bob_a = Ua::new(&a, "bob");
    bob_a.user_agent = "cluster-test";
    let (mut d, n) = bob_a.subscribe("alice");
    assert!(
        n.body_str().contains("before the crash"),
        "{}",
        n.body_str()
    );
    let last = cseq(&n);
    let dlg_key = format!("{}dlg:{}:{}", ns.prefix, d.call_id, d.to_tag);
    // Written just after the 200.
    ns.wait_key(&dlg_key, true, CROSS);

    // Node a dies without a word; the proxy sends the refresh to node b.
    a.signal("KILL");
    drop(a);
    let mut bob_b = Ua::new(&b, "bob");
    bob_b.user_agent = "cluster-test";
    let (r, n) = bob_b.resubscribe(&mut d, 600);
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(r.tag("To").as_deref(), Some(d.to_tag.as_str()), "{r}");
    assert!(
        n.body_str().contains("before the crash"),
        "{}",
        n.body_str()
    );
    assert!(cseq(&n) > last, "{n}");
    assert_eq!(n.tag("From").as_deref(), Some(d.to_tag.as_str()), "{n}");
    assert!(
        n.header("Subscription-State")
            .is_some_and(|s| s.starts_with("active")),
        "{n}"
    );
    // (The log line may lag the NOTIFY: polled.)
    wait_log(&b, &["taken over"], CROSS);

    // A PUBLISH on node b reaches the watcher from node b.
    let mut alice_b = Ua::new(&b, "alice");
    let r = alice_b.publish(Some(&pidf("alice", "after the crash")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    let n2 = bob_b.notify();
    assert!(
        n2.body_str().contains("after the crash"),
        "{}",
        n2.body_str()
    );
    assert!(cseq(&n2) > cseq(&n), "{n2}");

    // Unsubscribe on node b: terminated, and the dialog's key is gone.
    unsubscribe(&mut bob_b, &mut d, &ns, &dlg_key);
}

/// Nodes a and b on the shared Redis under `ns`, their watchers seeing everything
/// (`cluster-test` bypasses the mutual rule).
fn two_nodes(rt: Runtime, ns: &Namespace) -> (Daemon, Daemon) {
    let a = Daemon::start(rt, &ns.node("a", "bypass-condition=cluster-test"));
    let b = Daemon::start(rt, &ns.node("b", "bypass-condition=cluster-test"));
    (a, b)
}

/// Unsubscribes `d` through `ua`: `200`, a terminating NOTIFY, and the dialog's record
/// `dlg_key` gone from Redis.
fn unsubscribe(ua: &mut Ua, d: &mut Dialog, ns: &Namespace, dlg_key: &str) {
    let (r, n) = ua.resubscribe(d, 0);
    assert_eq!(r.status(), Some(200), "{r}");
    assert!(
        n.header("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated")),
        "{n}"
    );
    ns.wait_key(dlg_key, false, CROSS);
}

on_both_runtimes!(a_dialog_moved_while_its_node_lives_is_served_by_one_node);
/// The proxy sends a refresh to node b while node a, which holds the dialog, is alive: node b
/// takes it over and tells node a, which drops its copy; the next change is notified once,
/// by node b.
fn a_dialog_moved_while_its_node_lives_is_served_by_one_node(rt: Runtime) {
    let ns = Namespace::new("presence-e2e-");
    let (a, b) = two_nodes(rt, &ns);
    let mut alice_a = Ua::new(&a, "alice");
    let first = alice_a.publish(Some(&pidf("alice", "first")), 600, None);
    assert_eq!(first.status(), Some(200), "{first}");
    let mut bob_a = Ua::new(&a, "bob");
    bob_a.user_agent = "cluster-test";
    let (mut d, _) = bob_a.subscribe("alice");
    let dlg_key = format!("{}dlg:{}:{}", ns.prefix, d.call_id, d.to_tag);
    ns.wait_key(&dlg_key, true, CROSS);

    let mut bob_b = Ua::new(&b, "bob");
    bob_b.user_agent = "cluster-test";
    let (r, n) = bob_b.resubscribe(&mut d, 600);
    assert_eq!(r.status(), Some(200), "{r}");
    assert!(n.body_str().contains("first"), "{}", n.body_str());
    wait_log(&a, &["dropped here"], CROSS);

    // A change published on node a reaches bob from node b only.
    let r = alice_a.publish(Some(&pidf("alice", "second")), 600, Some(&etag(&first)));
    assert_eq!(r.status(), Some(200), "{r}");
    let n2 = bob_b.notify();
    assert!(n2.body_str().contains("second"), "{}", n2.body_str());
    // Node a would have sent its NOTIFY before node b heard of the change.
    if let Ok(m) = bob_a.conn.recv(Duration::from_millis(300)) {
        panic!("node a still notifies:\n{m}");
    }
    // Node b ends it.
    unsubscribe(&mut bob_b, &mut d, &ns, &dlg_key);
}

on_both_runtimes!(a_killed_nodes_list_dialog_is_refreshed_on_a_surviving_node);
fn a_killed_nodes_list_dialog_is_refreshed_on_a_surviving_node(rt: Runtime) {
    let ns = Namespace::new("presence-e2e-");
    let (a, b) = two_nodes(rt, &ns);
    let mut alice_a = Ua::new(&a, "alice");
    let r = alice_a.publish(Some(&pidf("alice", "alice before")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    let mut bob_a = a.connect();
    let entries = [aor("alice"), aor("carol")];
    bob_a.send_list_subscribe(&aor("bob"), &aor("friends"), &entries, "cluster-test");
    let r = bob_a.expect_response();
    assert_eq!(r.status(), Some(200), "{r}");
    let n = bob_a.expect_request("NOTIFY");
    bob_a.send(&n.ok_response());
    let first_cseq = cseq(&n);
    let first = decode_list(&n.to_message());
    assert!(
        first
            .pidf_of(&aor("alice"))
            .is_some_and(|p| p.contains("alice before")),
        "{first:?}"
    );
    let mut d = Dialog {
        call_id: r.header("Call-ID").expect("Call-ID").to_owned(),
        from_tag: "bobtag".to_owned(),
        to_user: "friends",
        to_tag: r.tag("To").expect("To tag"),
        cseq: 20,
        route: Vec::new(),
        target: aor("friends"),
    };
    let dlg_key = format!("{}dlg:{}:{}", ns.prefix, d.call_id, d.to_tag);
    ns.wait_key(&dlg_key, true, CROSS);

    a.signal("KILL");
    drop(a);
    let mut bob_b = Ua::new(&b, "bob");
    bob_b.user_agent = "cluster-test";
    let (r, n) = bob_b.resubscribe(&mut d, 600);
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(r.header("Require"), Some("eventlist"), "{r}");
    assert!(cseq(&n) > first_cseq, "{n}");
    let full = decode_list(&n.to_message());
    assert!(full.rlmi.full_state);
    assert!(
        full.rlmi.version > first.rlmi.version,
        "{}",
        full.rlmi.version
    );
    assert!(
        full.pidf_of(&aor("alice"))
            .is_some_and(|p| p.contains("alice before")),
        "{full:?}"
    );

    // Carol publishes on node b: the list watcher is told from node b.
    let mut carol_b = Ua::new(&b, "carol");
    let r = carol_b.publish(Some(&pidf("carol", "carol after")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    let n = bob_b.notify();
    let change = decode_list(&n.to_message());
    assert!(change.rlmi.version > full.rlmi.version);
    assert!(
        change
            .pidf_of(&aor("carol"))
            .is_some_and(|p| p.contains("carol after")),
        "{change:?}"
    );

    let (r, n) = bob_b.resubscribe(&mut d, 0);
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(decode_list(&n.to_message()).state.state, "terminated");
    ns.wait_key(&dlg_key, false, CROSS);
}

on_both_runtimes!(a_restarted_node_loses_no_publication);
fn a_restarted_node_loses_no_publication(rt: Runtime) {
    let ns = Namespace::new("presence-e2e-");
    let a = Daemon::start(rt, &ns.node("a", "bypass-condition=cluster-test"));
    let mut alice = Ua::new(&a, "alice");
    let r = alice.publish(Some(&pidf("alice", "still here")), 600, None);
    let e1 = etag(&r);
    a.signal("KILL");
    drop(a);
    let a2 = Daemon::start(rt, &ns.node("a", "bypass-condition=cluster-test"));
    let mut bob = Ua::new(&a2, "bob");
    bob.user_agent = "cluster-test";
    let (_d, n) = bob.subscribe("alice");
    assert!(n.body_str().contains("still here"), "{}", n.body_str());
    // The restarted node serves its refresh too.
    let mut alice = Ua::new(&a2, "alice");
    let r = alice.publish(None, 600, Some(&e1));
    assert_eq!(r.status(), Some(200), "{r}");
    assert!(bob.notify().body_str().contains("still here"));
}

on_both_runtimes!(without_redis_a_node_serves_alone);
fn without_redis_a_node_serves_alone(rt: Runtime) {
    // Nothing listens on port 1: Redis is unreachable from the start.
    let a = Daemon::start(
        rt,
        "redis-server-uri=redis://127.0.0.1:1\ncluster-timeout=500\nlong-term-enabled=false\nbypass-condition=cluster-test",
    );
    let mut alice = Ua::new(&a, "alice");
    let mut bob = Ua::new(&a, "bob");
    bob.user_agent = "cluster-test";
    let started = Instant::now();
    let (_d, _n) = bob.subscribe("alice");
    let r = alice.publish(Some(&pidf("alice", "alone")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    assert!(bob.notify().body_str().contains("alone"));
    // An unknown ETag: 412 (no lookup possible), quickly.
    assert_eq!(alice.publish(None, 600, Some("nope")).status(), Some(412));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let log = a.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("unreachable")),
        "the outage is logged loudly:\n{log}"
    );
}

on_both_runtimes!(a_malformed_redis_uri_stops_the_startup);
fn a_malformed_redis_uri_stops_the_startup(rt: Runtime) {
    let run = presence_tests::daemon::run_to_exit(
        rt,
        &[],
        Some(
            "[presence-server]\ntransports=sip:127.0.0.1:0;transport=tcp\nredis-server-uri=http://x\n",
        ),
        Duration::from_secs(10),
    );
    assert!(!run.status.success(), "{run:?}");
    assert!(run.stderr.contains("redis-server-uri"), "{}", run.stderr);
}

on_both_runtimes!(a_redis_restart_is_survived_and_resynchronised);
fn a_redis_restart_is_survived_and_resynchronised(rt: Runtime) {
    let mut redis = PrivateRedis::start();
    let node = |name: &str| node_config(&redis.uri(), name, PRIVATE_NODE);
    let a = Daemon::start(rt, &node("a"));
    let b = Daemon::start(rt, &node("b"));
    let mut bob = Ua::new(&b, "bob");
    bob.user_agent = "cluster-test";
    let mut carol = Ua::new(&a, "carol");
    carol.user_agent = "cluster-test";
    bob.subscribe("alice");
    carol.subscribe("alice");
    let mut alice = Ua::new(&a, "alice");
    let r = alice.publish(Some(&pidf("alice", "before")), 600, None);
    assert!(bob.notify().body_str().contains("before"));
    assert!(carol.notify().body_str().contains("before"));

    // Redis dies (and loses everything): node a keeps serving its watchers, without hanging.
    redis.kill();
    let started = Instant::now();
    let r = alice.publish(Some(&pidf("alice", "during")), 600, Some(&etag(&r)));
    assert_eq!(r.status(), Some(200), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(carol.notify().body_str().contains("during"));

    // Redis is back, empty: node a rewrites alice's publication, node b fetches it again.
    redis.restart();
    let n = bob.notify();
    assert!(n.body_str().contains("during"), "{}", n.body_str());
    for d in [&a, &b] {
        let log = d.log();
        assert!(
            log.lines()
                .any(|l| l.contains("ERROR") && l.contains("unreachable")),
            "{log}"
        );
        assert!(log.contains("connected again"), "{log}");
    }
    // The refresh works on node b now (the publication is in Redis again).
    let mut alice_b = Ua::new(&b, "alice");
    let r = alice_b.publish(None, 600, Some(&etag(&r)));
    assert_eq!(r.status(), Some(200), "{r}");
}

/// The publications of `user` in the store of `redis` (default prefix), oldest first: `ETag
/// (note, writer)`.
fn publications(redis: &PrivateRedis, user: &str) -> Vec<String> {
    let aor = format!("{user}@{DOMAIN}");
    redis
        .cli(&["zrange", &format!("presence:pubs:{aor}"), "0", "-1"])
        .lines()
        .filter(|e| !e.is_empty())
        .map(|e| {
            let stored = redis.cli(&["get", &format!("presence:pub:{aor}:{e}")]);
            let note = stored
                .split_once("<note>")
                .and_then(|(_, rest)| rest.split_once("</note>"))
                .map_or("no note", |(note, _)| note);
            let node = stored.lines().nth(1).unwrap_or("?");
            format!("{e} ({note}, written by node {node})")
        })
        .collect()
}

/// The last NOTIFY of each subscription (by Call-ID) of the load test: body and
/// Subscription-State.
type Latest = Mutex<HashMap<String, (String, String)>>;

/// A subscription of the load test, as its subscriber sees it.
struct LoadDialog {
    watcher: String,
    presentity: String,
    call_id: String,
    to_tag: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answers a NOTIFY received on `conn` and records it in `latest`; anything else is an error.
fn answer_notify(conn: &mut SipClient, m: &SipMessage, latest: &Latest) -> Result<(), String> {
    if m.method() != Some("NOTIFY") {
        return Err(format!("expected a NOTIFY on {}, got:\n{m}", conn.local));
    }
    conn.send(&m.ok_response());
    let call_id = m.header("Call-ID").unwrap_or_default().to_owned();
    let state = m
        .header("Subscription-State")
        .unwrap_or_default()
        .to_owned();
    lock(latest).insert(call_id, (m.body_str(), state));
    Ok(())
}

/// Subscribes `watcher` to `presentity` on `conn`, which may carry other dialogs already (their
/// NOTIFYs, arriving meanwhile, are answered and recorded); returns once the 200 and the first
/// NOTIFY of the new dialog are in.
fn subscribe_among(
    conn: &mut SipClient,
    watcher: &str,
    presentity: &str,
    user_agent: &str,
    latest: &Latest,
) -> LoadDialog {
    let (me, them) = (aor(watcher), aor(presentity));
    let call_id = unique("sub-");
    conn.send(&format!(
        "SUBSCRIBE {them} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b};rport\r\nFrom: <{me}>;tag={t}\r\nTo: <{them}>\r\nCSeq: 20 SUBSCRIBE\r\nCall-ID: {call_id}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:{watcher}@{l};transport=tcp>\r\nUser-Agent: {user_agent}\r\nContent-Length: 0\r\n\r\n",
        l = conn.local,
        b = unique("b"),
        t = unique("st"),
    ));
    let mut to_tag = None;
    let deadline = Instant::now() + CROSS;
    while to_tag.is_none() || !lock(latest).contains_key(&call_id) {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = conn
            .recv(left)
            .unwrap_or_else(|e| panic!("SUBSCRIBE {watcher} -> {presentity}: {e:?}"));
        match m.status() {
            Some(200) if m.header("Call-ID") == Some(call_id.as_str()) => {
                to_tag = Some(m.tag("To").expect("To tag"));
            }
            Some(_) => panic!("SUBSCRIBE {watcher} -> {presentity}: unexpected response\n{m}"),
            None => answer_notify(conn, &m, latest).unwrap_or_else(|e| panic!("{e}")),
        }
    }
    LoadDialog {
        watcher: watcher.to_owned(),
        presentity: presentity.to_owned(),
        call_id,
        to_tag: to_tag.unwrap_or_else(|| unreachable!()),
    }
}

/// Answers and records the NOTIFYs arriving on a subscriber's connection until `stop`.
fn serve_notifies(mut conn: SipClient, latest: &Latest, stop: &AtomicBool) -> Result<(), String> {
    while !stop.load(Ordering::Relaxed) {
        match conn.recv(Duration::from_millis(100)) {
            Ok(m) => answer_notify(&mut conn, &m, latest)?,
            Err(RecvError::Timeout) => {}
            Err(e) => return Err(format!("subscriber connection {}: {e:?}", conn.local)),
        }
    }
    Ok(())
}

/// A presentity of the load test: how many of its PUBLISHes were answered, its last note and
/// ETag.
struct Loaded {
    user: &'static str,
    answered: AtomicU32,
    last: Mutex<(String, String)>,
}

/// The phases of the load test (index of [`LoadStats`]' arrays).
const BEFORE: usize = 0;
const OUTAGE: usize = 1;
const AFTER: usize = 2;
const PHASES: [&str; 3] = ["before the outage", "during the outage", "after the outage"];

/// PUBLISHes answered and slowest answer (µs), per phase.
#[derive(Default)]
struct LoadStats {
    phase: AtomicUsize,
    answered: [AtomicU64; 3],
    slowest_us: [AtomicU64; 3],
}

/// Publishes a new note for each of `uas` in turn (a modification with `SIP-If-Match`), round
/// after round, until `stop`; every answer must be a 200.
fn publish_loop(
    mut uas: Vec<(Ua, &Loaded)>,
    stats: &LoadStats,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        for (ua, p) in &mut uas {
            let note = format!("{}-n{n}", p.user);
            let old = lock(&p.last).1.clone();
            let phase = stats.phase.load(Ordering::Relaxed);
            let started = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(|| {
                ua.publish(Some(&pidf(p.user, &note)), 600, Some(&old))
            }))
            .map_err(|_| {
                format!(
                    "PUBLISH {} {}: no answer or connection lost",
                    p.user, PHASES[phase]
                )
            })?;
            let took = started.elapsed();
            if r.status() != Some(200) {
                return Err(format!("PUBLISH {} {}:\n{r}", p.user, PHASES[phase]));
            }
            *lock(&p.last) = (note, etag(&r));
            p.answered.fetch_add(1, Ordering::Relaxed);
            stats.answered[phase].fetch_add(1, Ordering::Relaxed);
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            stats.slowest_us[phase].fetch_max(us, Ordering::Relaxed);
        }
        // A steady load rather than as fast as possible: the test is about correctness, on a
        // shared machine.
        std::thread::sleep(LOAD_PAUSE);
    }
    Ok(())
}

/// Pause of a publisher between two rounds.
const LOAD_PAUSE: Duration = Duration::from_millis(20);
/// Load presentities per node.
const LOAD_USERS: usize = 12;
/// Presentities each watcher (of the other node) watches.
const WATCHED_EACH: usize = 4;
/// PUBLISHes answered per presentity in each phase.
const ROUNDS_PER_PHASE: u32 = 60;
/// Longest acceptable answer to a PUBLISH: `cluster-timeout` + 1.5 s.
const SLOWEST_ANSWER: Duration = Duration::from_millis(2000);

/// The load test runs alone (its two runtimes one after the other): it is about correctness
/// under load, not about two loads sharing the machine's cores.
static LOAD_ALONE: Mutex<()> = Mutex::new(());

/// Sets the flags when dropped (also when the test fails: the threads of the scope stop).
struct StopOnDrop<'a>([&'a AtomicBool; 2]);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        for flag in self.0 {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// Polls `done` until it holds (at most `timeout`), failing early on any error of `errors`.
fn wait_for(
    what: &str,
    timeout: Duration,
    errors: &Mutex<Vec<String>>,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        {
            let errors = lock(errors);
            assert!(errors.is_empty(), "while waiting for {what}: {errors:#?}");
        }
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

on_both_runtimes!(a_redis_restart_under_load_loses_nothing);

/// Redis restarted under load: 24 presentities (12 per node) publish a new note again and again
/// (a modification with `SIP-If-Match`, on their own node) before, during and after Redis is
/// killed and restarted empty; 196 subscriptions answer their NOTIFYs meanwhile: on each node 12
/// watchers of 4 of the other node's presentities each (half of them under the mutual rule,
/// their presentities watching them back from their own node, so that the watch sets in the
/// store matter), one watcher of every presentity, and the presentities' own subscriptions.
/// Checked: every PUBLISH answered 200 within `cluster-timeout` + 1.5 s, no connection lost,
/// every watcher converges to each presentity's last note, the store holds again every
/// publication (only the last one of each presentity, the ones made during the outage too),
/// watch set and dialog, an ETag made during the outage is refreshed on the other node, both
/// nodes log the outage and the reconnection, nothing panicked, memory stays bounded.
///
/// It found two bugs, fixed since: a node adopted, from a snapshot read while its client
/// modified a publication, the ETag it had just replaced (and served it to its own watchers
/// until it expired); and writes of one presentity could reach the restarted Redis out of
/// order, leaving a superseded publication next to the last one.
fn a_redis_restart_under_load_loses_nothing(rt: Runtime) {
    let _alone = lock(&LOAD_ALONE);
    let test_started = Instant::now();
    let mut redis = PrivateRedis::start();
    let node = |name: &str| node_config(&redis.uri(), name, PRIVATE_NODE);
    let a = Daemon::start(rt, &node("a"));
    let b = Daemon::start(rt, &node("b"));
    let nodes = [(&a, "a"), (&b, "b")];
    let latest: Latest = Mutex::new(HashMap::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    // The publishers stop first, the subscribers (which answer the NOTIFYs) at the end.
    let (stop_load, stop_all) = (AtomicBool::new(false), AtomicBool::new(false));
    let stats = LoadStats::default();

    // Presentities pa0..pa11 publish on node a, pb0..pb11 on node b; qa (node a) and qb (node b)
    // publish once before and once during the outage only.
    let mut publishers: [Vec<(Ua, &Loaded)>; 2] = [Vec::new(), Vec::new()];
    let loaded: Vec<Loaded> = nodes
        .iter()
        .flat_map(|(_, side)| (0..LOAD_USERS).map(move |i| format!("p{side}{i}")))
        .map(|user| Loaded {
            user: leak(user),
            answered: AtomicU32::new(0),
            last: Mutex::new((String::new(), String::new())),
        })
        .collect();
    for (k, p) in loaded.iter().enumerate() {
        let (d, _) = nodes[k / LOAD_USERS];
        let mut ua = Ua::new(d, p.user);
        let note = format!("{}-n0", p.user);
        let r = ua.publish(Some(&pidf(p.user, &note)), 600, None);
        assert_eq!(r.status(), Some(200), "{r}");
        *lock(&p.last) = (note, etag(&r));
        publishers[k / LOAD_USERS].push((ua, p));
    }
    let mut quiet: Vec<(Ua, String)> = Vec::new();
    for (d, side) in nodes {
        let mut ua = Ua::new(d, leak(format!("q{side}")));
        let r = ua.publish(Some(&pidf(ua.user, &format!("q{side}-before"))), 600, None);
        assert_eq!(r.status(), Some(200), "{r}");
        quiet.push((ua, etag(&r)));
    }

    // Watchers: wb0..wb11 on node b watch 4 of node a's presentities each, wa0..wa11 on node a
    // watch node b's; each load presentity has 4 watchers on the other node. The even ones are
    // under the mutual rule: the presentities they watch subscribe back to them, from their own
    // node (so the other node learns it through the shared watch set). xa and xb watch every
    // presentity, bypassing the rule.
    let mut dialogs: Vec<LoadDialog> = Vec::new();
    let mut subscribers: Vec<SipClient> = Vec::new();
    for (home, (d, side)) in nodes.into_iter().enumerate() {
        let other = 1 - home;
        let mut back = nodes[other].0.connect();
        for j in 0..LOAD_USERS {
            let watcher = format!("w{side}{j}");
            let mutual = j % 2 == 0;
            let mut conn = d.connect();
            for k in 0..WATCHED_EACH {
                let p = loaded[other * LOAD_USERS + (j + 3 * k) % LOAD_USERS].user;
                if mutual {
                    dialogs.push(subscribe_among(&mut back, p, &watcher, "Unknown", &latest));
                }
                let ua = if mutual { "Unknown" } else { "cluster-test" };
                dialogs.push(subscribe_among(&mut conn, &watcher, p, ua, &latest));
            }
            subscribers.push(conn);
        }
        subscribers.push(back);
        let mut conn = d.connect();
        let all = loaded
            .iter()
            .map(|p| p.user)
            .chain(quiet.iter().map(|(q, _)| q.user));
        for p in all {
            dialogs.push(subscribe_among(
                &mut conn,
                &format!("x{side}"),
                p,
                "cluster-test",
                &latest,
            ));
        }
        subscribers.push(conn);
    }
    let last_note = |presentity: &str| -> String {
        match loaded.iter().find(|p| p.user == presentity) {
            Some(p) => lock(&p.last).0.clone(),
            None if presentity.starts_with('q') => format!("{presentity}-during"),
            None => String::new(), // a watcher, subscribed to by a presentity: no note
        }
    };
    // The subscriptions whose last NOTIFY is not `note_of` their presentity, with what the
    // subscriber has.
    let converged = |note_of: &dyn Fn(&str) -> String| -> Vec<(&LoadDialog, String)> {
        let latest = lock(&latest);
        dialogs
            .iter()
            .filter_map(|d| {
                let note = note_of(&d.presentity);
                let (body, state) = latest
                    .get(&d.call_id)
                    .map_or(("", "no NOTIFY"), |(b, s)| (b.as_str(), s.as_str()));
                let ok = state.starts_with("active")
                    && (note.is_empty() || body.contains(&format!(">{note}<")));
                (!ok).then(|| {
                    let seen = format!(
                        "{} -> {} (want {note:?}): {state}\n{body}",
                        d.watcher, d.presentity
                    );
                    (d, seen)
                })
            })
            .collect()
    };
    eprintln!(
        "{} subscriptions set up in {:?}",
        dialogs.len(),
        test_started.elapsed()
    );

    std::thread::scope(|s| {
        let _stop = StopOnDrop([&stop_load, &stop_all]);
        let (latest, errors, stats) = (&latest, &errors, &stats);
        let (stop_load, stop_all) = (&stop_load, &stop_all);
        let readers: Vec<_> = subscribers
            .drain(..)
            .map(|conn| {
                s.spawn(move || {
                    if let Err(e) = serve_notifies(conn, latest, stop_all) {
                        lock(errors).push(e);
                    }
                })
            })
            .collect();
        // Every watcher sees the first notes (the mutual ones included) before the load starts.
        wait_for("the first notes", Duration::from_secs(15), errors, || {
            converged(&|p: &str| {
                if p.starts_with('q') {
                    format!("{p}-before")
                } else if p.starts_with('p') {
                    format!("{p}-n0")
                } else {
                    String::new()
                }
            })
            .is_empty()
        });
        let rss_before = [a.rss_bytes(), b.rss_bytes()];

        // The load: two publisher threads per node.
        stats.phase.store(BEFORE, Ordering::Relaxed);
        let publishing: Vec<_> = publishers
            .iter_mut()
            .flat_map(|uas| {
                let half = uas.len() / 2;
                let second = uas.split_off(half);
                [std::mem::take(uas), second]
            })
            .map(|uas| {
                s.spawn(move || {
                    if let Err(e) = publish_loop(uas, stats, stop_load) {
                        lock(errors).push(e);
                    }
                })
            })
            .collect();
        let answered_each = |n: u32| {
            loaded
                .iter()
                .all(|p| p.answered.load(Ordering::Relaxed) >= n)
        };
        let timeout = Duration::from_secs(20);
        wait_for("the load before the outage", timeout, errors, || {
            answered_each(ROUNDS_PER_PHASE)
        });

        // Redis dies, and loses everything.
        stats.phase.store(OUTAGE, Ordering::Relaxed);
        redis.kill();
        let outage_logged = |d: &Daemon| {
            d.log()
                .lines()
                .any(|l| l.contains("ERROR") && l.contains("unreachable"))
        };
        wait_for("both nodes to log the outage", timeout, errors, || {
            outage_logged(&a) && outage_logged(&b)
        });
        let down = Instant::now();
        // qa and qb publish during the outage only.
        for (ua, etag_before) in &mut quiet {
            let started = Instant::now();
            let r = ua.publish(
                Some(&pidf(ua.user, &format!("{}-during", ua.user))),
                600,
                Some(etag_before),
            );
            assert_eq!(r.status(), Some(200), "{r}");
            assert!(
                started.elapsed() < SLOWEST_ANSWER,
                "{:?}",
                started.elapsed()
            );
            *etag_before = etag(&r);
        }
        // The load goes on, Redis down, for a second at least.
        wait_for("the load during the outage", timeout, errors, || {
            answered_each(2 * ROUNDS_PER_PHASE) && down.elapsed() >= Duration::from_secs(1)
        });
        let outage = down.elapsed();

        // Redis is back, empty.
        redis.restart();
        wait_for("both nodes to reconnect", timeout, errors, || {
            a.log().contains("connected again") && b.log().contains("connected again")
        });
        stats.phase.store(AFTER, Ordering::Relaxed);
        let base = loaded
            .iter()
            .map(|p| p.answered.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        wait_for("the load after the outage", timeout, errors, || {
            answered_each(base + ROUNDS_PER_PHASE)
        });
        stop_load.store(true, Ordering::Relaxed);
        for t in publishing {
            t.join().expect("publisher thread");
        }
        {
            let errors = lock(errors);
            assert!(errors.is_empty(), "{errors:#?}");
        }
        let report: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "{}: {} PUBLISH, slowest {} ms",
                    PHASES[i],
                    stats.answered[i].load(Ordering::Relaxed),
                    stats.slowest_us[i].load(Ordering::Relaxed) / 1000
                )
            })
            .collect();
        eprintln!("Redis down for {outage:?}; {report:?}");
        // Every PUBLISH was answered 200 (else an error above), none slowly.
        assert!(stats.answered[OUTAGE].load(Ordering::Relaxed) >= u64::from(ROUNDS_PER_PHASE));
        for (i, slowest) in stats.slowest_us.iter().enumerate() {
            let slowest = Duration::from_micros(slowest.load(Ordering::Relaxed));
            assert!(
                slowest < SLOWEST_ANSWER,
                "{}: {slowest:?}; {report:?}",
                PHASES[i]
            );
        }

        // Every watcher, on either node, converges to each presentity's last note.
        let stopped = Instant::now();
        loop {
            let behind = converged(&last_note);
            if behind.is_empty() {
                break;
            }
            assert!(lock(errors).is_empty(), "{:#?}", lock(errors));
            if stopped.elapsed() > Duration::from_secs(15) {
                let shown: Vec<String> = behind
                    .iter()
                    .take(5)
                    .map(|(d, seen)| {
                        // What the store has, and what the watcher's node serves to a new
                        // subscriber (the watcher's name tells its node: wa3, xb...).
                        let stored = publications(&redis, &d.presentity);
                        let (node, name) = nodes[usize::from(d.watcher.as_bytes()[1] == b'b')];
                        let mut conn = node.connect();
                        let probe =
                            subscribe_among(&mut conn, "probe", &d.presentity, "cluster-test", latest);
                        let served = lock(latest).get(&probe.call_id).map(|n| n.0.clone());
                        format!(
                            "{seen}\nin the store: {stored:?}\nnode {name} serves a new subscriber: {}",
                            served.unwrap_or_default()
                        )
                    })
                    .collect();
                panic!(
                    "{} of {} subscriptions did not converge, e.g.:\n{}",
                    behind.len(),
                    dialogs.len(),
                    shown.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("converged {:?} after the load stopped", stopped.elapsed());

        // What the nodes had is in Redis again: publications (the ones made during the outage
        // too), who watches whom, the dialogs.
        let mut expected: Vec<String> = Vec::new();
        for p in &loaded {
            let key = format!("{}@{DOMAIN}", p.user);
            expected.push(format!("presence:pub:{key}:{}", lock(&p.last).1));
            expected.push(format!("presence:pubs:{key}"));
        }
        for (ua, e) in &quiet {
            expected.push(format!("presence:pub:{}@{DOMAIN}:{e}", ua.user));
        }
        for d in &dialogs {
            expected.push(format!("presence:watch:{}@{DOMAIN}", d.watcher));
            expected.push(format!("presence:dlg:{}:{}", d.call_id, d.to_tag));
        }
        expected.sort();
        expected.dedup();
        redis.wait_keys(&expected, Duration::from_secs(15));

        // The store holds the last publication of each presentity, and only that one: the ones it
        // replaced are gone (a removal whose write failed may still be retried: polled).
        let deadline = Instant::now() + CROSS;
        for p in &loaded {
            let last = lock(&p.last).1.clone();
            loop {
                let stored = publications(&redis, p.user);
                if stored.len() == 1 && stored[0].starts_with(&format!("{last} ")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: the store holds {stored:?}, the last PUBLISH got the ETag {last}",
                    p.user
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        // An ETag made during the outage is refreshed on the other node.
        for (k, (ua, e)) in quiet.iter().enumerate() {
            let mut other = Ua::new(nodes[1 - k].0, ua.user);
            let r = other.publish(None, 600, Some(e));
            assert_eq!(
                r.status(),
                Some(200),
                "{} {e} on node {}: {r}",
                ua.user,
                nodes[1 - k].1
            );
        }

        for (d, name) in nodes {
            let log = d.log();
            assert!(!log.contains("panicked"), "node {name}:\n{log}");
            assert!(log.contains("connected again"), "node {name}:\n{log}");
        }
        let rss_after = [a.rss_bytes(), b.rss_bytes()];
        eprintln!("RSS before the load {rss_before:?}, after {rss_after:?}");
        for (before, after) in rss_before.iter().zip(rss_after) {
            assert!(after < before * 3 + (64 << 20), "RSS {before} -> {after}");
        }
        stop_all.store(true, Ordering::Relaxed);
        for t in readers {
            t.join().expect("reader thread");
        }
        let errors = lock(errors);
        assert!(errors.is_empty(), "{errors:#?}");
    });
    eprintln!("{rt:?}: {:?}", test_started.elapsed());
}
