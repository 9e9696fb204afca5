//! End-to-end tests of cluster mode: two daemons (and a restarted one) on loopback share
//! short-term presence through the real Redis on 127.0.0.1:6379 (`.ci/run` starts it). Each test
//! uses its own key prefix (`redis-key-prefix`), so tests running in parallel do not see each
//! other, and deletes its keys at the end.

use std::process::Command;
use std::time::{Duration, Instant};

use presence_tests::daemon::{Daemon, Runtime, SipClient, SipMessage, unique};
use presence_tests::on_both_runtimes;
use presence_tests::sim::decode_list;

const REDIS: &str = "redis://127.0.0.1:6379";
const DOMAIN: &str = "127.0.0.1";
/// Longest wait for a change to cross from one node to another.
const CROSS: Duration = Duration::from_secs(5);

/// A key prefix for one test; its keys are deleted on drop.
struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        Namespace(format!("{}:", unique("presence-e2e-")))
    }

    /// The `[presence-server]` lines of a node of this cluster.
    fn node(&self, name: &str, extra: &str) -> String {
        format!(
            "redis-server-uri={REDIS}\nredis-key-prefix={}\ncluster-node-name={name}\nlong-term-enabled=false\n{extra}",
            self.0
        )
    }

    /// `redis-cli` with these arguments; its output.
    fn cli(args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379"])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self) -> Vec<String> {
        let pattern = format!("{}*", self.0);
        let mut keys: Vec<String> = Self::cli(&["--scan", "--pattern", &pattern])
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for k in self.keys() {
            Self::cli(&["del", &k]);
        }
    }
}

fn aor(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

fn pidf(user: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{aor}\"><tuple id=\"t1\"><status><basic>open</basic></status><contact>{aor}</contact><note>{note}</note></tuple></presence>",
        aor = aor(user)
    )
}

/// A user agent on one node.
struct Ua {
    user: &'static str,
    conn: SipClient,
    cseq: u32,
    call_id: String,
    user_agent: &'static str,
}

/// A subscription as the subscriber sees it.
struct Dialog {
    call_id: String,
    from_tag: String,
    to_user: &'static str,
    to_tag: String,
    cseq: u32,
}

impl Ua {
    fn new(daemon: &Daemon, user: &'static str) -> Ua {
        Ua {
            user,
            conn: daemon.connect(),
            cseq: 1,
            call_id: unique("pub-"),
            user_agent: "Unknown",
        }
    }

    fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/TCP {};branch=z9hG4bK.{};rport",
            self.conn.local,
            unique("b")
        )
    }

    fn publish(&mut self, body: Option<&str>, expires: u32, etag: Option<&str>) -> SipMessage {
        self.cseq += 1;
        let me = aor(self.user);
        let mut m = format!(
            "PUBLISH {me} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag=p{}\r\nTo: <{me}>\r\nCSeq: {} PUBLISH\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: {expires}\r\n",
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

    fn subscribe(&mut self, to_user: &'static str) -> (Dialog, SipMessage) {
        let (me, them) = (aor(self.user), aor(to_user));
        let call_id = unique("sub-");
        let from_tag = unique("st");
        let m = format!(
            "SUBSCRIBE {them} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag={from_tag}\r\nTo: <{them}>\r\nCSeq: 20 SUBSCRIBE\r\nCall-ID: {call_id}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:{}@{};transport=tcp>\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            self.via(),
            self.user,
            self.conn.local,
            self.user_agent
        );
        self.conn.send(&m);
        let (r, n) = self.conn.expect_response_and_notify();
        assert_eq!(r.status(), Some(200), "{r}");
        let d = Dialog {
            call_id,
            from_tag,
            to_user,
            to_tag: r.tag("To").expect("To tag"),
            cseq: 20,
        };
        (d, n)
    }

    fn resubscribe(&mut self, d: &mut Dialog, expires: u32) -> (SipMessage, SipMessage) {
        d.cseq += 1;
        let (me, them) = (aor(self.user), aor(d.to_user));
        let m = format!(
            "SUBSCRIBE {them} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag={}\r\nTo: <{them}>;tag={}\r\nCSeq: {} SUBSCRIBE\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: {expires}\r\nContact: <sip:{}@{};transport=tcp>\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            self.via(),
            d.from_tag,
            d.to_tag,
            d.cseq,
            d.call_id,
            self.user,
            self.conn.local,
            self.user_agent
        );
        self.conn.send(&m);
        self.conn.expect_response_and_notify()
    }

    /// The next NOTIFY within [`CROSS`], answered.
    fn notify(&mut self) -> SipMessage {
        match self.conn.recv(CROSS) {
            Ok(m) if m.method() == Some("NOTIFY") => {
                self.conn.send(&m.ok_response());
                m
            }
            Ok(m) => panic!("expected a NOTIFY, got:\n{m}"),
            Err(e) => panic!("no NOTIFY within {CROSS:?}: {e:?}"),
        }
    }
}

fn etag(r: &SipMessage) -> String {
    r.header("SIP-ETag")
        .unwrap_or_else(|| panic!("no SIP-ETag:\n{r}"))
        .to_owned()
}

on_both_runtimes!(a_publish_on_one_node_is_notified_by_another);
fn a_publish_on_one_node_is_notified_by_another(rt: Runtime) {
    let ns = Namespace::new();
    let a = Daemon::start(rt, &ns.node("a", "bypass-condition=cluster-test"));
    let b = Daemon::start(rt, &ns.node("b", "bypass-condition=cluster-test"));
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
    let pub_key = format!("{}pub:alice@{DOMAIN}:{}", ns.0, etag(&r));
    assert!(keys.contains(&pub_key), "{keys:?}");
    let ttl: i64 = Namespace::cli(&["pttl", &pub_key]).trim().parse().unwrap();
    assert!(ttl > 590_000 && ttl <= 600_000, "{ttl}");
    assert!(a.log().contains("cluster mode"), "{}", a.log());
}

on_both_runtimes!(a_refresh_with_sip_if_match_is_served_by_another_node);
fn a_refresh_with_sip_if_match_is_served_by_another_node(rt: Runtime) {
    let ns = Namespace::new();
    let a = Daemon::start(rt, &ns.node("a", "bypass-condition=cluster-test"));
    let b = Daemon::start(rt, &ns.node("b", "bypass-condition=cluster-test"));
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
    let ns = Namespace::new();
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

fn cseq(m: &SipMessage) -> u32 {
    m.header("CSeq")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CSeq:\n{m}"))
}

on_both_runtimes!(a_killed_nodes_dialog_is_refreshed_on_a_surviving_node);
fn a_killed_nodes_dialog_is_refreshed_on_a_surviving_node(rt: Runtime) {
    let ns = Namespace::new();
    let a = Daemon::start(rt, &ns.node("a", "bypass-condition=cluster-test"));
    let b = Daemon::start(rt, &ns.node("b", "bypass-condition=cluster-test"));
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
    let dlg_key = format!("{}dlg:{}:{}", ns.0, d.call_id, d.to_tag);
    // Written just after the 200.
    wait_key(&ns, &dlg_key, true);

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
    let deadline = Instant::now() + CROSS;
    while !b.log().contains("taken over") {
        assert!(Instant::now() < deadline, "{}", b.log());
        std::thread::sleep(Duration::from_millis(20));
    }

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
    let (r, n) = bob_b.resubscribe(&mut d, 0);
    assert_eq!(r.status(), Some(200), "{r}");
    assert!(
        n.header("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated")),
        "{n}"
    );
    wait_key(&ns, &dlg_key, false);
}

/// Waits until `key` is in Redis (`present`) or gone.
fn wait_key(ns: &Namespace, key: &str, present: bool) {
    let deadline = Instant::now() + CROSS;
    while ns.keys().iter().any(|k| k == key) != present {
        assert!(Instant::now() < deadline, "{key}: {:?}", ns.keys());
        std::thread::sleep(Duration::from_millis(20));
    }
}

on_both_runtimes!(a_killed_nodes_list_dialog_is_refreshed_on_a_surviving_node);
fn a_killed_nodes_list_dialog_is_refreshed_on_a_surviving_node(rt: Runtime) {
    let ns = Namespace::new();
    let a = Daemon::start(rt, &ns.node("a", "bypass-condition=cluster-test"));
    let b = Daemon::start(rt, &ns.node("b", "bypass-condition=cluster-test"));
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
    };
    let dlg_key = format!("{}dlg:{}:{}", ns.0, d.call_id, d.to_tag);
    wait_key(&ns, &dlg_key, true);

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
    wait_key(&ns, &dlg_key, false);
}

on_both_runtimes!(a_restarted_node_loses_no_publication);
fn a_restarted_node_loses_no_publication(rt: Runtime) {
    let ns = Namespace::new();
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

/// A private Redis on a free port (restarting the shared one would disturb other tests).
struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut r = PrivateRedis { port, child: None };
        r.restart();
        r
    }

    fn uri(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (empty: no persistence) and waits until it answers.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

on_both_runtimes!(a_redis_restart_is_survived_and_resynchronised);
fn a_redis_restart_is_survived_and_resynchronised(rt: Runtime) {
    let mut redis = PrivateRedis::start();
    let node = |name: &str| {
        format!(
            "redis-server-uri={}\ncluster-node-name={name}\ncluster-timeout=500\nlong-term-enabled=false\nbypass-condition=cluster-test",
            redis.uri()
        )
    };
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
