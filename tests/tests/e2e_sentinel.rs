//! End-to-end tests of cluster mode behind Redis Sentinel: two daemons find the master through
//! a sentinel (`redis-server-uri=redis+sentinel://...`), and follow a failover to the replica
//! the sentinel promotes when the master dies. Private `redis-server` processes
//! ([`SentinelSetup`]), killed at the end of each test.

use std::time::{Duration, Instant};

use presence_tests::daemon::{Daemon, Runtime, SipClient, SipMessage, run_to_exit, unique};
use presence_tests::on_both_runtimes;
use presence_tests::redis::SentinelSetup;

const DOMAIN: &str = "127.0.0.1";

fn aor(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

fn pidf(user: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{aor}\"><tuple id=\"t1\"><status><basic>open</basic></status><contact>{aor}</contact><note>{note}</note></tuple></presence>",
        aor = aor(user)
    )
}

fn etag(r: &SipMessage) -> String {
    r.header("SIP-ETag")
        .unwrap_or_else(|| panic!("no SIP-ETag:\n{r}"))
        .to_owned()
}

/// A user agent on one node.
struct Ua {
    user: &'static str,
    conn: SipClient,
    cseq: u32,
    call_id: String,
}

impl Ua {
    fn new(daemon: &Daemon, user: &'static str) -> Ua {
        Ua {
            user,
            conn: daemon.connect(),
            cseq: 1,
            call_id: unique("pub-"),
        }
    }

    fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/TCP {};branch=z9hG4bK.{};rport",
            self.conn.local,
            unique("b")
        )
    }

    fn publish(&mut self, body: Option<&str>, etag: Option<&str>) -> SipMessage {
        self.cseq += 1;
        let me = aor(self.user);
        let mut m = format!(
            "PUBLISH {me} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag=p{}\r\nTo: <{me}>\r\nCSeq: {} PUBLISH\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\n",
            self.via(),
            self.cseq,
            self.cseq,
            self.call_id
        );
        if let Some(e) = etag {
            m.push_str(&format!("SIP-If-Match: {e}\r\n"));
        }
        match body {
            Some(b) => m.push_str(&format!(
                "Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.conn.send(&m);
        self.conn.expect_response()
    }

    /// Subscribes to `to_user`'s presence (User-Agent `cluster-test`: the daemons are started
    /// with `bypass-condition=cluster-test`, so no mutual subscription is needed).
    fn subscribe(&mut self, to_user: &str) -> SipMessage {
        let (me, them) = (aor(self.user), aor(to_user));
        let m = format!(
            "SUBSCRIBE {them} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag={}\r\nTo: <{them}>\r\nCSeq: 20 SUBSCRIBE\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:{}@{};transport=tcp>\r\nUser-Agent: cluster-test\r\nContent-Length: 0\r\n\r\n",
            self.via(),
            unique("st"),
            unique("sub-"),
            self.user,
            self.conn.local,
        );
        self.conn.send(&m);
        let (r, n) = self.conn.expect_response_and_notify();
        assert_eq!(r.status(), Some(200), "{r}");
        n
    }

    /// Answers NOTIFYs until one's body contains `text` (at most `limit`).
    fn notified(&mut self, text: &str, limit: Duration) -> SipMessage {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.recv(left) {
                Ok(m) if m.method() == Some("NOTIFY") => {
                    self.conn.send(&m.ok_response());
                    if m.body_str().contains(text) {
                        return m;
                    }
                }
                Ok(m) => panic!("expected a NOTIFY, got:\n{m}"),
                Err(e) => panic!("no NOTIFY with {text:?} within {limit:?}: {e:?}"),
            }
        }
    }
}

/// Waits (at most `limit`) until the daemon's log has a line with every one of `parts`.
fn wait_log(d: &Daemon, parts: &[&str], limit: Duration) {
    let found = || {
        d.log()
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
            .then_some(())
    };
    let deadline = Instant::now() + limit;
    while found().is_none() {
        assert!(
            Instant::now() < deadline,
            "no line with {parts:?} within {limit:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

on_both_runtimes!(a_sentinel_failover_is_followed_by_the_nodes);
fn a_sentinel_failover_is_followed_by_the_nodes(rt: Runtime) {
    let started = Instant::now();
    let mut redis = SentinelSetup::start();
    let node = |name: &str| {
        format!(
            "redis-server-uri={}\ncluster-node-name={name}\ncluster-timeout=500\n\
             long-term-enabled=false\nbypass-condition=cluster-test",
            redis.uri()
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
    bob.subscribe("alice");
    let mut alice = Ua::new(&a, "alice");
    let r = alice.publish(Some(&pidf("alice", "before")), None);
    assert_eq!(r.status(), Some(200), "{r}");
    bob.notified("before", Duration::from_secs(5));

    // The master dies; node a serves the modification from its own state meanwhile.
    redis.master.kill();
    let killed = Instant::now();
    let r = alice.publish(Some(&pidf("alice", "during")), Some(&etag(&r)));
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
    let r = alice2.publish(Some(&pidf("alice", "after")), None);
    assert_eq!(r.status(), Some(200), "{r}");
    bob.notified("after", Duration::from_secs(5));
    // The publication made while the master was dead is in the new master (written there by
    // node a's resynchronisation): node b refreshes it.
    let mut alice_b = Ua::new(&b, "alice");
    let r = alice_b.publish(None, Some(&during));
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
