//! End-to-end tests of cluster mode behind Redis Sentinel: two daemons find the master through
//! a sentinel (`redis-server-uri=redis+sentinel://...`), and follow a failover to the replica
//! the sentinel promotes when the master dies. Private `redis-server` processes
//! ([`SentinelSetup`]), killed at the end of each test.

use std::time::{Duration, Instant};

use presence_tests::cluster::{Ua, etag, pidf, wait_log};
use presence_tests::daemon::{Daemon, Runtime, run_to_exit};
use presence_tests::on_both_runtimes;
use presence_tests::redis::{SentinelSetup, node_config};

on_both_runtimes!(a_sentinel_failover_is_followed_by_the_nodes);
fn a_sentinel_failover_is_followed_by_the_nodes(rt: Runtime) {
    let started = Instant::now();
    let mut redis = SentinelSetup::start();
    let node = |name: &str| {
        node_config(
            &redis.uri(),
            name,
            "cluster-timeout=500\nbypass-condition=cluster-test",
        )
    };
    let a = Daemon::start(rt, &node("a"));
    let b = Daemon::start(rt, &node("b"));
    let (master, replica) = (redis.master.port, redis.replica.port);
    let found = |port: u16| {
        format!(
            "master {} at 127.0.0.1:{port} via sentinel 127.0.0.1:{}",
            redis.service, redis.sentinel.port
        )
    };
    for d in [&a, &b] {
        wait_log(d, &[&found(master)], Duration::from_secs(5));
    }

    let mut bob = Ua::new(&b, "bob");
    bob.user_agent = "cluster-test";
    bob.subscribe("alice");
    let mut alice = Ua::new(&a, "alice");
    let r = alice.publish(Some(&pidf("alice", "before")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    bob.notified("before", Duration::from_secs(5));

    // The master dies; node a serves the modification from its own state meanwhile.
    redis.master.kill();
    let killed = Instant::now();
    let r = alice.publish(Some(&pidf("alice", "during")), 600, Some(&etag(&r)));
    assert_eq!(r.status(), Some(200), "{r}");
    let during = etag(&r);

    redis.wait_promotion(Duration::from_secs(20));
    let promoted = killed.elapsed();
    // Both nodes move to the new master and resynchronise: node a rewrites alice's
    // publication there, node b fetches it and notifies bob.
    for d in [&a, &b] {
        wait_log(d, &[&found(replica)], Duration::from_secs(15));
        wait_log(d, &["connected again"], Duration::from_secs(15));
    }
    bob.notified("during", Duration::from_secs(10));
    let followed = killed.elapsed();

    // A new publication on node a reaches bob on node b through the new master.
    let mut alice2 = Ua::new(&a, "alice");
    let r = alice2.publish(Some(&pidf("alice", "after")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    bob.notified("after", Duration::from_secs(5));
    // The publication made while the master was dead is in the new master (written there by
    // node a's resynchronisation): node b refreshes it.
    let mut alice_b = Ua::new(&b, "alice");
    let r = alice_b.publish(None, 600, Some(&during));
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(redis.replica.role().as_deref(), Some("master"));
    eprintln!(
        "{rt:?}: promoted {promoted:?} after the kill, followed after {followed:?}, test {:?}",
        started.elapsed()
    );
}

on_both_runtimes!(a_malformed_sentinel_uri_stops_the_startup);
fn a_malformed_sentinel_uri_stops_the_startup(rt: Runtime) {
    let config = "[presence-server]\ntransports=sip:127.0.0.1:0;transport=tcp\n\
                  redis-server-uri=redis+sentinel://:s3cret@127.0.0.1:26379\n";
    for args in [&[][..], &["--check-config"][..]] {
        let run = run_to_exit(rt, args, Some(config), Duration::from_secs(10));
        assert!(!run.status.success(), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("redis-server-uri") && run.stderr.contains("no service name"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Well formed: --check-config accepts it without contacting the sentinels.
    let config = "[presence-server]\ntransports=sip:127.0.0.1:0;transport=tcp\n\
                  redis-server-uri=redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0\n";
    let run = run_to_exit(
        rt,
        &["--check-config"],
        Some(config),
        Duration::from_secs(10),
    );
    assert!(run.status.success(), "{run:?}");
}
