//! Cluster mode behind a real proxy: Kamailio 5.6 running `examples/kamailio-presence-proxy.cfg`
//! with `WITH_CLUSTER` (the dispatcher module, set 1 = two daemons sharing the real Redis at
//! 127.0.0.1:6379, one key prefix per test, its keys deleted at the end), and user agents that
//! speak raw SIP over TCP to Kamailio only. A node holding a subscription dialog is killed
//! (SIGKILL): the watcher's in-dialog refresh, still addressed to the dead node's Contact, is
//! failed over by Kamailio to the surviving node, which takes the dialog over from Redis.
//!
//! Needs `kamailio` (`.ci/run` installs it) and Redis; without Kamailio the test fails and says
//! so, or is skipped when `PRESENCE_SKIP_REAL_CLIENTS` is set.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use presence_tests::cluster::{self, Dialog, aor_in, cseq, open_pidf, wait_log};
use presence_tests::daemon::{Daemon, Runtime, SipClient, SipMessage, unique};
use presence_tests::kamailio::{self, Kamailio, have};
use presence_tests::on_both_runtimes;
use presence_tests::redis::Namespace;

const DOMAIN: &str = "example.org";
/// Longest wait for a message through the proxy. A failover after a node that does not answer
/// at all (rather than refusing the connection) waits for tm's fr_timer (5 s) first.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The platform: nodes (on a Redis key prefix of their own), proxy

/// The `[presence-server]` lines of node `name` (watchers whose User-Agent is `cluster-test` see
/// everything: no mutual rule to set up).
fn node(ns: &Namespace, name: &str) -> String {
    ns.node(name, "bypass-condition=cluster-test")
}

/// A temporary directory (the dispatcher list, Kamailio's files), removed on drop unless the
/// test is failing.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique("cluster-proxy-"));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(files kept in {})", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether a socket of this host is connected to 127.0.0.1:`port` (established, or closed by
/// the peer and not yet by its owner), from `/proc/net/tcp`.
fn connected_to(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl, local_address, rem_address, st (01 ESTABLISHED, 08 CLOSE_WAIT), ...
        fields.len() > 3 && fields[2] == remote && matches!(fields[3], "01" | "08")
    })
}

/// The URI a node advertises in its Contact, and the dispatcher list names it by.
fn node_uri(node: &Daemon) -> String {
    format!("sip:127.0.0.1:{};transport=tcp", node.port())
}

// ---------------------------------------------------------------------------------------------
// User agents, through the proxy

fn aor(user: &str) -> String {
    aor_in(user, DOMAIN)
}

/// The URI of the (first) Contact.
fn contact(m: &SipMessage) -> String {
    let value = m
        .header("Contact")
        .unwrap_or_else(|| panic!("no Contact:\n{m}"));
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value),
    };
    uri.to_owned()
}

/// A user agent connected to the proxy only. Its dialogs follow the route set and the remote
/// target.
struct Ua {
    sip: cluster::Ua,
    /// The proxy's port: the top Via of what the proxy relays to us.
    proxy_port: u16,
}

impl Ua {
    fn new(proxy: &Kamailio, user: &'static str) -> Ua {
        let mut sip = cluster::Ua::on(SipClient::connect(proxy.addr()), user, DOMAIN);
        sip.user_agent = "cluster-test";
        Ua {
            sip,
            proxy_port: proxy.port(),
        }
    }

    /// The next message within [`WAIT`]; NOTIFYs are answered `200 OK`.
    fn next(&mut self, what: &str) -> SipMessage {
        let m = self
            .sip
            .conn
            .recv(WAIT)
            .unwrap_or_else(|e| panic!("{}: no {what} within {WAIT:?}: {e:?}", self.sip.user));
        if m.method() == Some("NOTIFY") {
            // Relayed by the proxy: its Via on top of the node's.
            let vias = m.headers("Via");
            assert_eq!(vias.len(), 2, "{m}");
            assert!(
                vias[0].contains(&format!("127.0.0.1:{}", self.proxy_port)),
                "{m}"
            );
            self.sip.conn.send(&m.ok_response());
        }
        m
    }

    /// The response to a request just sent.
    fn response(&mut self) -> SipMessage {
        let m = self.next("response");
        assert!(m.status().is_some(), "expected a response, got:\n{m}");
        m
    }

    /// The next NOTIFY (answered).
    fn notify(&mut self) -> SipMessage {
        let m = self.next("NOTIFY");
        assert_eq!(m.method(), Some("NOTIFY"), "expected a NOTIFY, got:\n{m}");
        m
    }

    /// The response to a SUBSCRIBE just sent and the NOTIFY it triggers, in whatever order.
    fn response_and_notify(&mut self) -> (SipMessage, SipMessage) {
        let (mut response, mut notify) = (None, None);
        while response.is_none() || notify.is_none() {
            let m = self.next("response and NOTIFY");
            if m.status().is_some() {
                assert!(response.is_none(), "a second response:\n{m}");
                let failed = m.status().is_some_and(|s| s >= 300);
                response = Some(m);
                if failed {
                    break;
                }
            } else {
                assert_eq!(m.method(), Some("NOTIFY"), "unexpected request:\n{m}");
                assert!(notify.is_none(), "a second NOTIFY:\n{m}");
                notify = Some(m);
            }
        }
        let response = response.unwrap_or_else(|| unreachable!());
        let notify = notify.unwrap_or_else(|| panic!("no NOTIFY:\n{response}"));
        (response, notify)
    }

    /// A PUBLISH of an open tuple with `note` (a modification of `etag` when given); the
    /// response.
    fn publish(&mut self, note: &str, etag: Option<&str>) -> SipMessage {
        let body = open_pidf(&aor(self.sip.user), note);
        let m = self.sip.publish_request(Some(&body), 600, etag);
        self.sip.conn.send(&m);
        self.response()
    }

    /// A new subscription to `to_user`, answered 200: the dialog and its first NOTIFY.
    fn subscribe(&mut self, to_user: &'static str) -> (Dialog, SipMessage) {
        let (mut d, m) = self.sip.subscribe_request(to_user);
        self.sip.conn.send(&m);
        let (r, n) = self.response_and_notify();
        assert_eq!(r.status(), Some(200), "{r}");
        d.route = r
            .headers("Record-Route")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .collect();
        d.route.reverse();
        assert!(
            d.route
                .iter()
                .any(|r| r.contains(&format!("127.0.0.1:{}", self.proxy_port))),
            "the proxy record-routes the SUBSCRIBE:\n{r}"
        );
        d.to_tag = r.tag("To").expect("To tag");
        d.target = contact(&n);
        assert_eq!(contact(&r), d.target, "{r}\n{n}");
        (d, n)
    }

    /// An in-dialog SUBSCRIBE (refresh, or unsubscribe with `expires` 0) to the dialog's remote
    /// target through its route set; the response and, unless it failed, the NOTIFY. The remote
    /// target follows the Contacts of both.
    fn resubscribe(&mut self, d: &mut Dialog, expires: u32) -> (SipMessage, SipMessage) {
        let m = self.sip.resubscribe_request(d, expires);
        self.sip.conn.send(&m);
        let (r, n) = self.response_and_notify();
        if r.status() == Some(200) {
            d.target = contact(&r);
        }
        d.target = contact(&n);
        (r, n)
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Two nodes of `rt` behind Kamailio in cluster mode, and a watcher subscribed to a presentity
/// through it.
struct Cluster {
    /// Stopped first.
    proxy: Kamailio,
    /// Node `a` and node `b`, in the dispatcher list in that order; None once killed.
    nodes: [Option<Daemon>; 2],
    /// Keys deleted once the nodes are gone.
    ns: Namespace,
    dir: TempDir,
    w: Ua,
    d: Dialog,
    /// The Redis key of the watcher's dialog.
    dlg_key: String,
    /// The index of the node holding the dialog.
    holder: usize,
}

impl Cluster {
    /// None (with a printed reason) when Kamailio is missing and the tests are to be skipped.
    fn start(rt: Runtime) -> Option<Cluster> {
        let missing = (!have("kamailio")).then(|| "kamailio".to_owned());
        if !kamailio::tools_ready("cluster_proxy", missing, "apt-get install -y kamailio") {
            return None;
        }
        let ns = Namespace::new("presence-proxy-");
        let dir = TempDir::new();
        let nodes = [
            Daemon::start(rt, &node(&ns, "a")),
            Daemon::start(rt, &node(&ns, "b")),
        ];
        let list = dir.0.join("presence-nodes.list");
        let lines: String = nodes
            .iter()
            .map(|n| format!("1 {}\n", node_uri(n)))
            .collect();
        std::fs::write(&list, lines).expect("write the dispatcher list");
        let proxy = Kamailio::start(
            &dir.0,
            &[
                "WITH_CLUSTER".to_owned(),
                "WITH_PRESENCE_LOG".to_owned(),
                format!("PRESENCE_NODES=\"{}\"", list.display()),
                format!("DOMAIN=\"{DOMAIN}\""),
            ],
        );
        let mut w = Ua::new(&proxy, "watcher");
        let (d, n) = w.subscribe("presentity");
        assert!(
            n.header("Subscription-State")
                .is_some_and(|s| s.starts_with("active")),
            "{n}"
        );
        let holder = nodes
            .iter()
            .position(|node| node_uri(node) == d.target)
            .unwrap_or_else(|| panic!("the dialog's Contact {} names no node", d.target));
        let dlg_key = format!("{}dlg:{}:{}", ns.prefix, d.call_id, d.to_tag);
        let [a, b] = nodes;
        Some(Cluster {
            proxy,
            nodes: [Some(a), Some(b)],
            ns,
            dir,
            w,
            d,
            dlg_key,
            holder,
        })
    }

    fn node(&self, i: usize) -> &Daemon {
        self.nodes[i].as_ref().expect("a live node")
    }

    /// Kills the node holding the dialog (SIGKILL), once the dialog's record is in Redis
    /// (written just after the 200), and waits until the proxy has closed its connection to it:
    /// the next request to that node is then refused at once, and failed over at once. (Written
    /// on the dead connection instead, it would be failed over after tm's fr_timer, 5 s, which
    /// the timing of the test would depend on.) The survivor's index.
    fn kill_the_holder(&mut self) -> usize {
        self.ns.wait_key(&self.dlg_key, true, WAIT);
        let mut dead = self.nodes[self.holder].take().expect("a live node");
        dead.signal("KILL");
        assert!(dead.wait_exit(WAIT).is_some(), "the node did not die");
        let deadline = Instant::now() + WAIT;
        while connected_to(dead.port()) {
            assert!(
                Instant::now() < deadline,
                "the proxy keeps a connection to the dead node"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        1 - self.holder
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.proxy.stop();
        if std::thread::panicking() {
            eprintln!(
                "(holder: node {}; dispatcher list and Kamailio's files in {})",
                self.holder,
                self.dir.0.display()
            );
        }
    }
}

on_both_runtimes!(a_dead_nodes_dialog_fails_over_to_a_surviving_node_through_kamailio);
/// W watches P through Kamailio; the node holding W's dialog is killed; P's next PUBLISH
/// (hashed to the dead node, like the SUBSCRIBE) is failed over to the other node; W's refresh
/// (to the dead node's Contact) is failed over too, and that node takes the dialog over; W hears
/// of P's next change from it; W unsubscribes, and that reaches the survivor too. W follows the
/// remote target of RFC 6665 (the Contact of the 200s and NOTIFYs).
fn a_dead_nodes_dialog_fails_over_to_a_surviving_node_through_kamailio(rt: Runtime) {
    let started = Instant::now();
    let Some(mut c) = Cluster::start(rt) else {
        return;
    };
    // 1. P publishes through the proxy; W hears of it through the proxy.
    let mut p = Ua::new(&c.proxy, "presentity");
    let r = p.publish("before the crash", None);
    assert_eq!(r.status(), Some(200), "{r}");
    let etag = r.header("SIP-ETag").expect("SIP-ETag").to_owned();
    let n = c.w.notify();
    assert!(
        n.body_str().contains("before the crash"),
        "{}",
        n.body_str()
    );
    assert_eq!(contact(&n), c.d.target, "{n}");
    let last = cseq(&n);

    // 2. The node holding the dialog dies without a word.
    let dead_uri = c.d.target.clone();
    let s = c.kill_the_holder();
    let survivor_uri = node_uri(c.node(s));
    let survivor_port = c.node(s).port();
    // The node's Via (under the proxy's) says which node sent a NOTIFY.
    let from_survivor = |n: &SipMessage| {
        n.headers("Via")
            .get(1)
            .is_some_and(|v| v.contains(&format!("127.0.0.1:{survivor_port};")))
    };

    // P changes its state (SIP-If-Match: the ETag the dead node gave) through the proxy: the
    // PUBLISH is hashed to the dead node, like the SUBSCRIBE was (same Request-URI), which
    // refuses the connection: the proxy sends it to the survivor.
    let r = p.publish("after the crash", Some(&etag));
    assert_eq!(r.status(), Some(200), "{r}");
    let etag = r.header("SIP-ETag").expect("SIP-ETag").to_owned();
    c.proxy.wait_routed("the PUBLISH failed over", WAIT, |l| {
        l.starts_with(&format!(
            "failover PUBLISH {} to {survivor_uri}",
            aor("presentity")
        ))
    });

    // 3. W refreshes, towards the dead node: the proxy fails over to the survivor, which takes
    // the dialog over and notifies the current state.
    let refreshed = Instant::now();
    let (r, n) = c.w.resubscribe(&mut c.d, 600);
    let failover_time = refreshed.elapsed();
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(r.tag("To").as_deref(), Some(c.d.to_tag.as_str()), "{r}");
    assert_eq!(contact(&r), survivor_uri, "{r}");
    assert!(from_survivor(&n), "{n}");
    assert_eq!(n.tag("From").as_deref(), Some(c.d.to_tag.as_str()), "{n}");
    assert!(cseq(&n) > last, "{n}");
    assert!(
        n.header("Subscription-State")
            .is_some_and(|s| s.starts_with("active")),
        "{n}"
    );
    assert!(
        n.body_str().contains("after the crash") && !n.body_str().contains("before the crash"),
        "{}",
        n.body_str()
    );
    let failover = c.proxy.wait_routed("the refresh failed over", WAIT, |l| {
        l.starts_with(&format!("failover SUBSCRIBE {dead_uri} to {survivor_uri}"))
    });
    wait_log(c.node(s), &["taken over"], WAIT);

    // P publishes again: the survivor answers and notifies W.
    let r = p.publish("later", Some(&etag));
    assert_eq!(r.status(), Some(200), "{r}");
    let n2 = c.w.notify();
    assert!(
        n2.body_str().contains("later") && !n2.body_str().contains("after the crash"),
        "{}",
        n2.body_str()
    );
    assert!(from_survivor(&n2), "{n2}");
    assert!(cseq(&n2) > cseq(&n), "{n2}");

    // 4. W unsubscribes: the survivor answers 200 and the terminated NOTIFY; the dialog's
    // record is gone.
    let (r, n3) = c.w.resubscribe(&mut c.d, 0);
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(contact(&r), survivor_uri, "{r}");
    assert!(from_survivor(&n3), "{n3}");
    assert!(
        n3.header("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated")),
        "{n3}"
    );
    assert!(cseq(&n3) > cseq(&n2), "{n3}");
    c.ns.wait_key(&c.dlg_key, false, WAIT);
    eprintln!(
        "{rt:?}: dialog on node {}, refresh failed over in {failover_time:?} ({failover}); \
         test {:?}",
        c.holder,
        started.elapsed()
    );
}

on_both_runtimes!(the_nodes_notifies_after_a_takeover_carry_its_own_contact);
/// After a takeover, the NOTIFYs must name the node that sends them in their Contact: a NOTIFY
/// is a target refresh (RFC 6665 §4.1.2.4), so the subscriber sends its next refresh there.
fn the_nodes_notifies_after_a_takeover_carry_its_own_contact(rt: Runtime) {
    let Some(mut c) = Cluster::start(rt) else {
        return;
    };
    let s = c.kill_the_holder();
    let (r, n) = c.w.resubscribe(&mut c.d, 600);
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(contact(&r), node_uri(c.node(s)), "{r}");
    assert_eq!(contact(&n), node_uri(c.node(s)), "{n}");
}
