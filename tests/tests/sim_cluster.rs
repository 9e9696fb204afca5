//! Cluster mode in simulation: two or three cores ([`Sim`]s on one fake clock) share an
//! in-memory fake of the store semantics the Redis adapter implements (publications with expiry,
//! per-presentity index, watch sets with expiry, change channels), driven by the test: every
//! operation a core asks for is answered at once (or fails, or is held, as the test says), and
//! every change is announced to the cores that follow its presentity.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use presence_proto::cluster::{decode_dialog, dialog_owner_prefix};
use presence_proto::sip::{HeaderName, Message};
use presence_proto::{
    ClusterConfig, ClusterError, ClusterEvent, ClusterOp, ClusterOpId, ClusterReply, Config,
    Snapshot, StoredDialog, StoredPublication,
};
use presence_tests::sim::{Dialog, Sim, Ua, body, decode_list, header};

/// A stored publication: payload, expiry and creation order (store clock).
#[derive(Debug, Clone)]
struct Stored {
    payload: bytes::Bytes,
    expires_at: Duration,
    created: u64,
}

/// The fake store: what the Redis scripts keep, on the simulation's clock (time since start,
/// the same on every node since they advance together).
#[derive(Debug, Default)]
struct FakeStore {
    pubs: BTreeMap<(String, String), Stored>,
    /// watcher → member (`presentity\ndialog`) → expiry.
    watch: BTreeMap<String, BTreeMap<String, Duration>>,
    /// (Call-ID, tag) → dialog record and its expiry.
    dialogs: BTreeMap<(String, String), (bytes::Bytes, Duration)>,
    /// node index → followed AORs.
    followers: BTreeMap<usize, BTreeSet<String>>,
    /// Announcements not yet delivered: (aor, origin node name).
    events: VecDeque<(String, String)>,
    /// Messages on the nodes' own channels not yet delivered: (node name, event).
    taken: VecDeque<(String, ClusterEvent)>,
    /// Those messages are lost (a node's pub/sub connection down meanwhile).
    lose_taken: bool,
    created: u64,
    /// Every operation seen, per node, for assertions.
    log: Vec<(usize, ClusterOp)>,
}

impl FakeStore {
    fn snapshot(&mut self, aor: &str, now: Duration) -> Snapshot {
        self.pubs.retain(|_, p| p.expires_at > now);
        let mut pubs: Vec<(&(String, String), &Stored)> =
            self.pubs.iter().filter(|((a, _), _)| a == aor).collect();
        pubs.sort_by_key(|(_, p)| p.created);
        let publications = pubs
            .into_iter()
            .map(|((_, etag), p)| StoredPublication {
                etag: etag.clone(),
                expires: p.expires_at - now,
                payload: p.payload.clone(),
            })
            .collect();
        let mut watches: BTreeMap<String, Duration> = BTreeMap::new();
        if let Some(set) = self.watch.get_mut(aor) {
            set.retain(|_, at| *at > now);
            for (member, at) in set.iter() {
                let presentity = member.split('\n').next().unwrap_or_default().to_owned();
                let left = *at - now;
                let e = watches.entry(presentity).or_default();
                *e = (*e).max(left);
            }
        }
        Snapshot {
            publications,
            watches: watches.into_iter().collect(),
        }
    }

    fn apply(
        &mut self,
        node: usize,
        node_name: &str,
        op: &ClusterOp,
        now: Duration,
    ) -> ClusterReply {
        self.log.push((node, op.clone()));
        match op {
            ClusterOp::Follow { aor } => {
                self.followers.entry(node).or_default().insert(aor.clone());
                ClusterReply::Snapshot(self.snapshot(aor, now))
            }
            ClusterOp::Unfollow { aor } => {
                self.followers.entry(node).or_default().remove(aor);
                ClusterReply::Done
            }
            ClusterOp::Fetch { aor } => ClusterReply::Snapshot(self.snapshot(aor, now)),
            ClusterOp::Publish {
                aor,
                etag,
                replaces,
                expires,
                payload,
                max,
            } => {
                self.created += 1;
                let mut created = self.created;
                if let Some(old) = replaces
                    && let Some(p) = self.pubs.remove(&(aor.clone(), old.clone()))
                {
                    created = p.created;
                }
                self.pubs.insert(
                    (aor.clone(), etag.clone()),
                    Stored {
                        payload: payload.clone(),
                        expires_at: now + *expires,
                        created,
                    },
                );
                let mut mine: Vec<(u64, String)> = self
                    .pubs
                    .iter()
                    .filter(|((a, _), p)| a == aor && p.expires_at > now)
                    .map(|((_, e), p)| (p.created, e.clone()))
                    .collect();
                mine.sort();
                while mine.len() > *max {
                    let (_, e) = mine.remove(0);
                    self.pubs.remove(&(aor.clone(), e));
                }
                self.events.push_back((aor.clone(), node_name.to_owned()));
                ClusterReply::Done
            }
            ClusterOp::Unpublish { aor, etag } => {
                self.pubs.remove(&(aor.clone(), etag.clone()));
                self.events.push_back((aor.clone(), node_name.to_owned()));
                ClusterReply::Done
            }
            ClusterOp::Lookup { aor, etag } => {
                let found = self
                    .pubs
                    .get(&(aor.clone(), etag.clone()))
                    .filter(|p| p.expires_at > now)
                    .map(|p| StoredPublication {
                        etag: etag.clone(),
                        expires: p.expires_at - now,
                        payload: p.payload.clone(),
                    });
                ClusterReply::Publication(found)
            }
            ClusterOp::Watch {
                watcher,
                dialog,
                presentities,
                expires,
                announce,
            } => {
                let set = self.watch.entry(watcher.clone()).or_default();
                for p in presentities {
                    let member = format!("{p}\n{dialog}");
                    if expires.is_zero() {
                        set.remove(&member);
                    } else {
                        set.insert(member, now + *expires);
                    }
                }
                if *announce {
                    self.events
                        .push_back((watcher.clone(), node_name.to_owned()));
                }
                ClusterReply::Done
            }
            ClusterOp::Dialog {
                call_id,
                tag,
                expires,
                record,
                previous,
            } => {
                let key = (call_id.clone(), tag.clone());
                let mine = dialog_owner_prefix(node_name);
                let previous = previous.as_deref().unwrap_or(node_name);
                let theirs = dialog_owner_prefix(previous);
                let stored = self.dialogs.get(&key).filter(|(_, at)| *at > now);
                let taken_from_previous = match stored {
                    None => false,
                    Some((r, _)) if r.starts_with(&mine) => false,
                    Some((r, _)) if previous != node_name && r.starts_with(&theirs) => true,
                    Some(_) => return ClusterReply::Taken,
                };
                if expires.is_zero() {
                    self.dialogs.remove(&key);
                } else {
                    self.dialogs.insert(key, (record.clone(), now + *expires));
                }
                if taken_from_previous && !self.lose_taken {
                    self.taken.push_back((
                        previous.to_owned(),
                        ClusterEvent::DialogTaken {
                            call_id: call_id.clone(),
                            tag: tag.clone(),
                            by: node_name.to_owned(),
                        },
                    ));
                }
                ClusterReply::Done
            }
            ClusterOp::LookupDialog { call_id, tag } => {
                let found = self
                    .dialogs
                    .get(&(call_id.clone(), tag.clone()))
                    .filter(|(_, at)| *at > now)
                    .map(|(record, at)| StoredDialog {
                        expires: *at - now,
                        record: record.clone(),
                    });
                ClusterReply::Dialog(found)
            }
        }
    }
}

/// How the store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Every operation fails at once.
    Down,
    /// Operations are held without an answer (a store that hangs).
    Hang,
}

struct Cluster {
    nodes: Vec<Sim>,
    store: FakeStore,
    mode: Mode,
    held: Vec<(usize, ClusterOpId, ClusterOp)>,
    /// Nodes killed: their operations are dropped, they receive nothing and their clock stops.
    dead: BTreeSet<usize>,
}

fn config(node: &str, bypass: bool) -> Config {
    Config {
        bypass_condition: bypass.then(|| "sim-ua".to_owned()),
        cluster: Some(ClusterConfig {
            node: node.to_owned(),
            timeout: Duration::from_secs(2),
        }),
        contact: format!("sip:{node}.example.org:5065;transport=tcp"),
        ..Config::default()
    }
}

impl Cluster {
    fn new(n: usize, bypass: bool) -> Cluster {
        let nodes = (0..n)
            .map(|i| Sim::with_seed(config(&format!("n{i}"), bypass), 100 + i as u64))
            .collect();
        let mut c = Cluster {
            nodes,
            store: FakeStore::default(),
            mode: Mode::Up,
            held: Vec::new(),
            dead: BTreeSet::new(),
        };
        c.settle();
        c
    }

    /// Store time (the same on every node).
    fn now(&self) -> Duration {
        self.nodes[0].now - self.nodes[0].start
    }

    /// Answers every operation and delivers every announcement until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                if self.dead.contains(&i) {
                    self.nodes[i].cluster_ops.clear();
                    continue;
                }
                while let Some((id, op)) = self.nodes[i].cluster_ops.pop_front() {
                    moved = true;
                    let result = match self.mode {
                        Mode::Up => {
                            let name = self.nodes[i].server.cluster_node().unwrap().to_owned();
                            let now = self.now();
                            Ok(self.store.apply(i, &name, &op, now))
                        }
                        Mode::Down => {
                            self.store.log.push((i, op.clone()));
                            Err(ClusterError("store down".into()))
                        }
                        Mode::Hang => {
                            self.held.push((i, id, op));
                            continue;
                        }
                    };
                    let sim = &mut self.nodes[i];
                    sim.server.cluster_result(sim.now, id, result);
                    sim.pump();
                }
            }
            while let Some((aor, origin)) = self.store.events.pop_front() {
                moved = true;
                for i in 0..self.nodes.len() {
                    if !self.dead.contains(&i)
                        && self
                            .store
                            .followers
                            .get(&i)
                            .is_some_and(|f| f.contains(&aor))
                    {
                        let sim = &mut self.nodes[i];
                        let event = ClusterEvent::Changed {
                            aor: aor.clone(),
                            origin: origin.clone(),
                        };
                        sim.server.cluster_event(sim.now, event);
                        sim.pump();
                    }
                }
            }
            while let Some((name, event)) = self.store.taken.pop_front() {
                moved = true;
                for i in 0..self.nodes.len() {
                    if !self.dead.contains(&i)
                        && self.nodes[i].server.cluster_node() == Some(name.as_str())
                    {
                        let sim = &mut self.nodes[i];
                        sim.server.cluster_event(sim.now, event.clone());
                        sim.pump();
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves every node's clock forward together (the store answering in between).
    fn advance(&mut self, d: Duration) {
        let step = Duration::from_millis(100);
        let mut left = d;
        while !left.is_zero() {
            let s = step.min(left);
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if !self.dead.contains(&i) {
                    n.advance(s);
                }
            }
            self.settle();
            left -= s;
        }
    }

    fn event(&mut self, node: usize, event: ClusterEvent) {
        let sim = &mut self.nodes[node];
        sim.server.cluster_event(sim.now, event);
        sim.pump();
        self.settle();
    }

    fn ua(&mut self, node: usize, user: &str) -> Ua {
        Ua::new(&mut self.nodes[node], user)
    }

    fn publish(
        &mut self,
        node: usize,
        ua: &mut Ua,
        body: Option<&str>,
        expires: Option<u32>,
        etag: Option<&str>,
    ) -> Message {
        let m = ua.publish_msg(body, expires, etag);
        self.nodes[node].send(ua.conn, m);
        self.settle();
        ua.expect_response(&mut self.nodes[node])
    }

    fn subscribe(&mut self, node: usize, ua: &mut Ua, target: &str) -> Dialog {
        let (m, mut d) = ua.subscribe_msg(target, Some(600), "");
        self.nodes[node].send(ua.conn, m);
        self.settle();
        let r = ua.expect_response(&mut self.nodes[node]);
        assert_eq!(r.status(), Some(200));
        d.learn_to_tag(&r);
        d
    }

    /// An in-dialog SUBSCRIBE of `d` sent to node `node`: its response.
    fn resubscribe(&mut self, node: usize, ua: &mut Ua, d: &mut Dialog, expires: u32) -> Message {
        let m = ua.resubscribe_msg(d, expires);
        self.nodes[node].send(ua.conn, m);
        self.settle();
        ua.expect_response(&mut self.nodes[node])
    }

    fn notify(&mut self, node: usize, ua: &Ua) -> Message {
        let n = ua.expect_notify(&mut self.nodes[node], 200);
        self.settle();
        n
    }

    fn nothing(&mut self, node: usize, ua: &Ua) {
        let left = self.nodes[node].recv_all(ua.conn);
        assert!(
            left.is_empty(),
            "unexpected: {:?}",
            left.iter().map(|m| m.start.clone()).collect::<Vec<_>>()
        );
    }

    fn ops_of(&self, node: usize) -> Vec<&ClusterOp> {
        self.store
            .log
            .iter()
            .filter(|(n, _)| *n == node)
            .map(|(_, op)| op)
            .collect()
    }
}

fn etag(r: &Message) -> String {
    header(r, HeaderName::SipEtag).expect("SIP-ETag")
}

#[test]
fn a_publish_on_one_node_notifies_watchers_on_another() {
    let mut c = Cluster::new(2, true);
    let mut bob = c.ua(1, "bob");
    let mut alice = c.ua(0, "alice");
    c.subscribe(1, &mut bob, "sip:alice@example.org");
    let first = c.notify(1, &bob);
    assert!(
        body(&first).contains("No presence information"),
        "{}",
        body(&first)
    );
    assert!(
        c.ops_of(1)
            .iter()
            .any(|op| matches!(op, ClusterOp::Follow { aor } if aor == "alice@example.org")),
        "node 1 follows alice"
    );

    let doc = alice.pidf("t1", "on node 0", Some("busy"));
    let r = c.publish(0, &mut alice, Some(&doc), Some(600), None);
    assert_eq!(r.status(), Some(200));
    let n = c.notify(1, &bob);
    let b = body(&n);
    assert!(b.contains("on node 0") && b.contains("busy"), "{b}");
    c.nothing(1, &bob);

    // A modification on node 0: one NOTIFY on node 1.
    let tag = etag(&r);
    let doc2 = alice.pidf("t1", "modified", None);
    let r2 = c.publish(0, &mut alice, Some(&doc2), Some(600), Some(&tag));
    assert_eq!(r2.status(), Some(200));
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("modified") && !body(&n).contains("on node 0"));
    c.nothing(1, &bob);

    // Removal on node 0: node 1's watcher is told.
    let r3 = c.publish(0, &mut alice, None, Some(0), Some(&etag(&r2)));
    assert_eq!(r3.status(), Some(200));
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("No presence information"), "{}", body(&n));
}

#[test]
fn a_subscription_on_a_second_node_starts_with_what_the_first_received() {
    let mut c = Cluster::new(2, true);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "published early", None);
    assert_eq!(
        c.publish(0, &mut alice, Some(&doc), Some(300), None)
            .status(),
        Some(200)
    );
    // The SUBSCRIBE waits for the store's state: its first NOTIFY has the tuple.
    let mut bob = c.ua(1, "bob");
    c.subscribe(1, &mut bob, "sip:alice@example.org");
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("published early"), "{}", body(&n));
    // Expiry on node 0 reaches node 1 through its own copy's expiry.
    c.advance(Duration::from_secs(299));
    c.nothing(1, &bob);
    c.advance(Duration::from_secs(2));
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("No presence information"), "{}", body(&n));
}

#[test]
fn a_refresh_with_sip_if_match_is_served_by_another_node() {
    let mut c = Cluster::new(3, true);
    let mut carol = c.ua(2, "carol");
    c.subscribe(2, &mut carol, "sip:alice@example.org");
    c.notify(2, &carol);

    let mut alice0 = c.ua(0, "alice");
    let doc = alice0.pidf("t1", "first", None);
    let r = c.publish(0, &mut alice0, Some(&doc), Some(600), None);
    let e1 = etag(&r);
    assert!(body(&c.notify(2, &carol)).contains("first"));

    // The proxy sends the refresh to node 1, which never saw the publication.
    let mut alice1 = c.ua(1, "alice");
    let r = c.publish(1, &mut alice1, None, Some(600), Some(&e1));
    assert_eq!(r.status(), Some(200), "{:?}", r.start);
    let e2 = etag(&r);
    assert_ne!(e1, e2);
    assert!(
        c.ops_of(1)
            .iter()
            .any(|op| matches!(op, ClusterOp::Lookup { etag, .. } if *etag == e1))
    );
    // The watcher on node 2 is told of the refresh, still one tuple.
    let n = c.notify(2, &carol);
    assert_eq!(body(&n).matches("<tuple").count(), 1, "{}", body(&n));
    assert!(body(&n).contains("first"));

    // A modification with the new ETag, back on node 0 (which dropped its copy): served too.
    let doc2 = alice0.pidf("t1", "second", None);
    let r = c.publish(0, &mut alice0, Some(&doc2), Some(600), Some(&e2));
    assert_eq!(r.status(), Some(200), "{:?}", r.start);
    let n = c.notify(2, &carol);
    assert!(body(&n).contains("second") && !body(&n).contains("first"));
    assert_eq!(body(&n).matches("<tuple").count(), 1, "{}", body(&n));

    // The superseded ETag is unknown everywhere.
    let r = c.publish(1, &mut alice1, None, Some(600), Some(&e1));
    assert_eq!(r.status(), Some(412));
    // The store holds exactly one publication of alice.
    assert_eq!(c.store.pubs.len(), 1);
}

#[test]
fn an_unknown_etag_is_412_after_the_lookup() {
    let mut c = Cluster::new(2, false);
    let mut alice = c.ua(1, "alice");
    let r = c.publish(1, &mut alice, None, Some(600), Some("nosuchetag"));
    assert_eq!(r.status(), Some(412));
    assert_eq!(c.ops_of(1).len(), 1, "{:?}", c.ops_of(1));
}

#[test]
fn the_mutual_rule_works_across_nodes() {
    let mut c = Cluster::new(2, false);
    let mut alice = c.ua(0, "alice");
    let mut bob = c.ua(1, "bob");
    let doc = alice.pidf("t1", "secret", None);
    c.publish(0, &mut alice, Some(&doc), Some(600), None);

    // Bob watches alice on node 1: alice does not watch bob, restricted document.
    let _db = c.subscribe(1, &mut bob, "sip:alice@example.org");
    let n = c.notify(1, &bob);
    assert!(!body(&n).contains("secret"), "{}", body(&n));

    // Alice watches bob on node 0: bob is re-notified with the full document.
    let mut da = c.subscribe(0, &mut alice, "sip:bob@example.org");
    c.notify(0, &alice);
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("secret"), "{}", body(&n));
    c.nothing(1, &bob);

    // Alice's refresh does not change anything for bob.
    assert_eq!(
        c.resubscribe(0, &mut alice, &mut da, 600).status(),
        Some(200)
    );
    c.notify(0, &alice);
    c.nothing(1, &bob);

    // Alice unsubscribes: bob is downgraded.
    assert_eq!(c.resubscribe(0, &mut alice, &mut da, 0).status(), Some(200));
    c.notify(0, &alice);
    let n = c.notify(1, &bob);
    assert!(!body(&n).contains("secret"), "{}", body(&n));
}

#[test]
fn a_new_watcher_sees_a_mutual_relation_made_on_another_node() {
    let mut c = Cluster::new(2, false);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "secret", None);
    c.publish(0, &mut alice, Some(&doc), Some(600), None);
    c.subscribe(0, &mut alice, "sip:bob@example.org");
    c.notify(0, &alice);
    // Bob subscribes later, on node 1: his first NOTIFY is already full.
    let mut bob = c.ua(1, "bob");
    c.subscribe(1, &mut bob, "sip:alice@example.org");
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("secret"), "{}", body(&n));
    // ...and alice, watching bob on node 0, now may see bob's state (as on one node, she is
    // re-notified; bob publishes nothing).
    let n = c.notify(0, &alice);
    assert!(body(&n).contains("No presence information"), "{}", body(&n));
    c.nothing(0, &alice);
}

#[test]
fn a_node_unfollows_when_its_last_watcher_goes() {
    let mut c = Cluster::new(2, true);
    let mut bob = c.ua(1, "bob");
    let mut d = c.subscribe(1, &mut bob, "sip:alice@example.org");
    c.notify(1, &bob);
    assert!(c.store.followers[&1].contains("alice@example.org"));
    assert_eq!(c.resubscribe(1, &mut bob, &mut d, 0).status(), Some(200));
    c.notify(1, &bob);
    assert!(!c.store.followers[&1].contains("alice@example.org"));
    // Changes of alice no longer reach node 1.
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "x", None);
    c.publish(0, &mut alice, Some(&doc), Some(600), None);
    assert!(
        !c.ops_of(1)
            .iter()
            .any(|op| matches!(op, ClusterOp::Fetch { .. })),
        "{:?}",
        c.ops_of(1)
    );
}

#[test]
fn a_store_that_hangs_delays_a_subscribe_by_the_timeout_only() {
    let mut c = Cluster::new(2, true);
    c.mode = Mode::Hang;
    let mut bob = c.ua(1, "bob");
    let (m, _) = bob.subscribe_msg("sip:alice@example.org", Some(600), "");
    c.nodes[1].send(bob.conn, m);
    c.settle();
    assert!(c.nodes[1].recv_all(bob.conn).is_empty(), "parked");
    c.advance(Duration::from_millis(2100));
    let r = bob.expect_response(&mut c.nodes[1]);
    assert_eq!(r.status(), Some(200));
    bob.expect_notify(&mut c.nodes[1], 200);
    // A late answer is ignored.
    let held = std::mem::take(&mut c.held);
    for (i, id, _) in held {
        let sim = &mut c.nodes[i];
        sim.server
            .cluster_result(sim.now, id, Ok(ClusterReply::Snapshot(Snapshot::default())));
        sim.pump();
    }
    c.nothing(1, &bob);
}

#[test]
fn without_the_store_a_node_serves_alone_and_resynchronises_when_it_is_back() {
    let mut c = Cluster::new(2, true);
    c.mode = Mode::Down;
    c.event(0, ClusterEvent::Disconnected);
    c.event(1, ClusterEvent::Disconnected);
    // Node 0 serves a PUBLISH and a local watcher while the store is down.
    let mut alice = c.ua(0, "alice");
    let mut carol = c.ua(0, "carol");
    c.subscribe(0, &mut carol, "sip:alice@example.org");
    c.notify(0, &carol);
    let doc = alice.pidf("t1", "during the outage", None);
    let r = c.publish(0, &mut alice, Some(&doc), Some(600), None);
    assert_eq!(r.status(), Some(200));
    assert!(body(&c.notify(0, &carol)).contains("during the outage"));
    // Node 1's watcher is answered at once (not parked), from node 1's state.
    let mut bob = c.ua(1, "bob");
    c.subscribe(1, &mut bob, "sip:alice@example.org");
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("No presence information"));
    // An unknown ETag: 412 at once, no lookup.
    let mut alice1 = c.ua(1, "alice");
    assert_eq!(
        c.publish(1, &mut alice1, None, Some(600), Some(&etag(&r)))
            .status(),
        Some(412)
    );

    // The store is back (empty): both nodes resynchronise; node 1 learns alice's publication.
    c.mode = Mode::Up;
    c.advance(Duration::from_secs(10));
    // The adapter re-subscribed the channels before saying Connected.
    c.store
        .followers
        .entry(1)
        .or_default()
        .insert("alice@example.org".into());
    c.store
        .followers
        .entry(0)
        .or_default()
        .insert("alice@example.org".into());
    c.event(0, ClusterEvent::Connected);
    c.event(1, ClusterEvent::Connected);
    let n = c.notify(1, &bob);
    assert!(body(&n).contains("during the outage"), "{}", body(&n));
    assert_eq!(c.store.pubs.len(), 1);
    // Carol's watch relation is in the store again.
    assert!(c.store.watch.contains_key("carol@example.org"));
    // And the refresh that failed during the outage now works on node 1.
    let r2 = c.publish(1, &mut alice1, None, Some(600), Some(&etag(&r)));
    assert_eq!(r2.status(), Some(200));
}

#[test]
fn a_single_node_never_asks_the_store() {
    let mut sim = Sim::new(Config {
        bypass_condition: Some("sim-ua".into()),
        ..Config::default()
    });
    let mut alice = Ua::new(&mut sim, "alice");
    let mut bob = Ua::new(&mut sim, "bob");
    bob.subscribe(&mut sim, "sip:alice@example.org", Some(600));
    bob.expect_notify(&mut sim, 200);
    let doc = alice.pidf("t1", "x", None);
    alice.publish(&mut sim, Some(&doc), Some(600), None);
    bob.expect_notify(&mut sim, 200);
    assert!(sim.cluster_ops.is_empty());
    assert!(sim.server.cluster_node().is_none());
}

#[test]
fn a_publish_is_answered_once_its_write_is_done_or_timed_out() {
    let mut c = Cluster::new(2, true);
    c.mode = Mode::Hang;
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "x", None);
    let m = alice.publish_msg(Some(&doc), Some(600), None);
    c.nodes[0].send(alice.conn, m);
    c.settle();
    assert!(c.nodes[0].recv_all(alice.conn).is_empty(), "held");
    c.advance(Duration::from_millis(2100));
    let r = alice.expect_response(&mut c.nodes[0]);
    assert_eq!(r.status(), Some(200));
    assert!(header(&r, HeaderName::SipEtag).is_some());
    // Up again: answered as soon as the store has it.
    c.mode = Mode::Up;
    let r2 = c.publish(0, &mut alice, None, Some(600), Some(&etag(&r)));
    assert_eq!(r2.status(), Some(200));
    assert_eq!(c.store.pubs.len(), 1);
}

fn cseq(m: &Message) -> u32 {
    header(m, HeaderName::CSeq)
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("CSeq")
}

/// Node 0 holds bob's subscription to alice and dies (SIGKILL: nothing more from it).
fn dialog_on_a_dead_node(c: &mut Cluster) -> (Dialog, u32) {
    let (d, last) = dialog_on_node_0(c);
    c.dead.insert(0);
    (d, last)
}

/// Node 0 holds bob's subscription to alice, with a few NOTIFYs sent: the dialog and the
/// last NOTIFY's CSeq.
fn dialog_on_node_0(c: &mut Cluster) -> (Dialog, u32) {
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "before the crash", None);
    assert_eq!(
        c.publish(0, &mut alice, Some(&doc), Some(3600), None)
            .status(),
        Some(200)
    );
    let mut bob = c.ua(0, "bob");
    let d = c.subscribe(0, &mut bob, "sip:alice@example.org");
    let mut last = cseq(&c.notify(0, &bob));
    // A few more NOTIFYs from node 0.
    for i in 0..3 {
        let doc = alice.pidf("t1", &format!("change {i}"), None);
        let tag = c.store.pubs.keys().next().unwrap().1.clone();
        assert_eq!(
            c.publish(0, &mut alice, Some(&doc), Some(3600), Some(&tag))
                .status(),
            Some(200)
        );
        last = cseq(&c.notify(0, &bob));
    }
    assert!(last >= 4, "{last}");
    let key = (d.call_id.clone(), d.to_tag.clone());
    let (record, _) = c.store.dialogs.get(&key).expect("dialog stored");
    let rec = decode_dialog(record).expect("readable record");
    assert_eq!(
        (rec.node.as_str(), rec.watcher.as_str()),
        ("n0", "bob@example.org")
    );
    assert!(rec.cseq_ceiling >= last, "{rec:?}");
    (d, last)
}

#[test]
fn a_dialog_of_a_dead_node_is_refreshed_on_another_and_notified_from_there() {
    let mut c = Cluster::new(2, true);
    let (mut d, last) = dialog_on_a_dead_node(&mut c);
    c.advance(Duration::from_secs(10));

    // The proxy sends the refresh to node 1.
    let mut bob = c.ua(1, "bob");
    let r = c.resubscribe(1, &mut bob, &mut d, 600);
    assert_eq!(r.status(), Some(200), "{:?}", r.start);
    let to = header(&r, HeaderName::To).unwrap();
    assert!(to.contains(&format!("tag={}", d.to_tag)), "{to}");
    assert!(
        c.ops_of(1)
            .iter()
            .any(|op| matches!(op, ClusterOp::LookupDialog { tag, .. } if *tag == d.to_tag))
    );
    let n = c.notify(1, &bob);
    let first = cseq(&n);
    assert!(first > last, "{first} after {last}");
    assert!(body(&n).contains("change 2"), "{}", body(&n));
    let state = header(&n, HeaderName::SubscriptionState).unwrap();
    assert!(state.starts_with("active"), "{state}");
    // The same dialog: the NOTIFY's From tag is ours, its To tag the subscriber's; its
    // Contact is node 1's, where the subscriber's next requests go.
    assert!(header(&n, HeaderName::From).unwrap().contains(&d.to_tag));
    assert_eq!(
        header(&n, HeaderName::Contact).as_deref(),
        Some("<sip:n1.example.org:5065;transport=tcp>")
    );
    assert!(header(&n, HeaderName::To).unwrap().contains(&d.from_tag));
    // The record is node 1's now.
    let key = (d.call_id.clone(), d.to_tag.clone());
    let rec = decode_dialog(&c.store.dialogs[&key].0).unwrap();
    assert_eq!(rec.node, "n1");

    // A PUBLISH on node 1 reaches the watcher from node 1.
    let mut alice = c.ua(1, "alice");
    let doc = alice.pidf("t2", "after the crash", None);
    assert_eq!(
        c.publish(1, &mut alice, Some(&doc), Some(600), None)
            .status(),
        Some(200)
    );
    let n = c.notify(1, &bob);
    assert!(cseq(&n) > first);
    assert!(body(&n).contains("after the crash"), "{}", body(&n));
    c.nothing(1, &bob);

    // Unsubscribe on node 1: terminated, and the record is gone.
    assert_eq!(c.resubscribe(1, &mut bob, &mut d, 0).status(), Some(200));
    let n = c.notify(1, &bob);
    let state = header(&n, HeaderName::SubscriptionState).unwrap();
    assert!(state.starts_with("terminated"), "{state}");
    assert!(c.store.dialogs.is_empty(), "{:?}", c.store.dialogs);
    // And a later refresh is 481.
    assert_eq!(c.resubscribe(1, &mut bob, &mut d, 600).status(), Some(481));
}

#[test]
fn an_unsubscribe_on_another_node_ends_a_dead_nodes_dialog() {
    let mut c = Cluster::new(2, true);
    let (mut d, last) = dialog_on_a_dead_node(&mut c);
    let mut bob = c.ua(1, "bob");
    assert_eq!(c.resubscribe(1, &mut bob, &mut d, 0).status(), Some(200));
    let n = c.notify(1, &bob);
    assert!(cseq(&n) > last);
    let state = header(&n, HeaderName::SubscriptionState).unwrap();
    assert!(state.starts_with("terminated"), "{state}");
    assert!(c.store.dialogs.is_empty(), "{:?}", c.store.dialogs);
    c.nothing(1, &bob);
    // Node 1 no longer follows alice.
    assert!(
        c.ops_of(1)
            .iter()
            .any(|op| matches!(op, ClusterOp::Unfollow { aor } if aor == "alice@example.org"))
    );
}

#[test]
fn an_unknown_dialog_is_481_after_the_lookup_and_a_lookup_that_times_out_too() {
    let mut c = Cluster::new(2, true);
    let mut bob = c.ua(1, "bob");
    let mut d = Dialog {
        call_id: "nosuchcall".into(),
        from_tag: "ft".into(),
        to_tag: "nosuchtag".into(),
        target: "sip:alice@example.org".into(),
        cseq: 1,
    };
    assert_eq!(c.resubscribe(1, &mut bob, &mut d, 600).status(), Some(481));
    assert_eq!(c.ops_of(1).len(), 1, "{:?}", c.ops_of(1));

    // A dialog that exists, asked for with another From tag: 481, not taken over.
    let (mut d, _) = dialog_on_a_dead_node(&mut c);
    let mut forged = d.clone();
    forged.from_tag = "someone-else".into();
    assert_eq!(
        c.resubscribe(1, &mut bob, &mut forged, 600).status(),
        Some(481)
    );
    c.nothing(1, &bob);
    let key = (d.call_id.clone(), d.to_tag.clone());
    assert_eq!(decode_dialog(&c.store.dialogs[&key].0).unwrap().node, "n0");

    // The store hangs: 481 after the timeout.
    c.mode = Mode::Hang;
    let m = bob.resubscribe_msg(&mut d, 600);
    c.nodes[1].send(bob.conn, m);
    c.settle();
    assert!(c.nodes[1].recv_all(bob.conn).is_empty(), "parked");
    c.advance(Duration::from_millis(1900));
    assert!(c.nodes[1].recv_all(bob.conn).is_empty(), "parked");
    c.advance(Duration::from_millis(200));
    assert_eq!(bob.expect_response(&mut c.nodes[1]).status(), Some(481));
    c.nothing(1, &bob);
}

#[test]
fn a_taken_over_dialog_keeps_the_mutual_rule_of_the_store() {
    let mut c = Cluster::new(2, false);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "for friends", None);
    assert_eq!(
        c.publish(0, &mut alice, Some(&doc), Some(3600), None)
            .status(),
        Some(200)
    );
    // Alice and bob watch each other on node 0.
    c.subscribe(0, &mut alice, "sip:bob@example.org");
    c.notify(0, &alice);
    let mut bob = c.ua(0, "bob");
    let mut d = c.subscribe(0, &mut bob, "sip:alice@example.org");
    let n = c.notify(0, &bob);
    assert!(body(&n).contains("for friends"), "{}", body(&n));
    c.dead.insert(0);

    // Node 1 takes bob's dialog over: alice's watch of bob, in the store, still grants access.
    let mut bob1 = c.ua(1, "bob");
    assert_eq!(c.resubscribe(1, &mut bob1, &mut d, 600).status(), Some(200));
    let n = c.notify(1, &bob1);
    assert!(body(&n).contains("for friends"), "{}", body(&n));
    c.nothing(1, &bob1);
}

#[test]
fn the_stored_cseq_ceiling_stays_above_every_notify() {
    let mut c = Cluster::new(2, true);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "v0", None);
    let r = c.publish(0, &mut alice, Some(&doc), Some(3600), None);
    let mut tag = etag(&r);
    let mut bob = c.ua(0, "bob");
    let d = c.subscribe(0, &mut bob, "sip:alice@example.org");
    c.notify(0, &bob);
    let key = (d.call_id.clone(), d.to_tag.clone());
    let mut last = 0;
    for i in 1..=1100 {
        let doc = alice.pidf("t1", &format!("v{i}"), None);
        let r = c.publish(0, &mut alice, Some(&doc), Some(3600), Some(&tag));
        tag = etag(&r);
        last = cseq(&c.notify(0, &bob));
        let rec = decode_dialog(&c.store.dialogs[&key].0).unwrap();
        assert!(rec.cseq_ceiling >= last, "{} < {last}", rec.cseq_ceiling);
    }
    assert_eq!(last, 1101);
    // Rewritten every 500 NOTIFYs (after the first write), not per NOTIFY.
    let writes = c
        .ops_of(0)
        .iter()
        .filter(|op| matches!(op, ClusterOp::Dialog { .. }))
        .count();
    assert_eq!(writes, 3);
}

#[test]
fn a_list_dialog_of_a_dead_node_is_taken_over_too() {
    let mut c = Cluster::new(2, true);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "alice before", None);
    assert_eq!(
        c.publish(0, &mut alice, Some(&doc), Some(3600), None)
            .status(),
        Some(200)
    );
    let mut bob = c.ua(0, "bob");
    let entries = [
        "sip:alice@example.org".to_owned(),
        "sip:carol@example.org".to_owned(),
    ];
    let body = Ua::list_body(&entries);
    let (m, mut d) = bob.subscribe_list_msg("sip:friends@example.org", &body, 600, "");
    c.nodes[0].send(bob.conn, m);
    c.settle();
    let r = bob.expect_response(&mut c.nodes[0]);
    assert_eq!(r.status(), Some(200), "{:?}", r.start);
    d.learn_to_tag(&r);
    let n = c.notify(0, &bob);
    let first = decode_list(&n);
    assert!(
        first
            .pidf_of("sip:alice@example.org")
            .is_some_and(|p| p.contains("alice before"))
    );
    let (last_cseq, last_version) = (cseq(&n), first.rlmi.version);
    let key = (d.call_id.clone(), d.to_tag.clone());
    let rec = decode_dialog(&c.store.dialogs[&key].0).expect("list dialog stored");
    assert_eq!(rec.list.as_ref().map(|l| l.resources.len()), Some(2));
    c.dead.insert(0);

    let mut bob1 = c.ua(1, "bob");
    let r = c.resubscribe(1, &mut bob1, &mut d, 600);
    assert_eq!(r.status(), Some(200), "{:?}", r.start);
    assert_eq!(
        header(&r, HeaderName::Require).as_deref(),
        Some("eventlist")
    );
    let n = c.notify(1, &bob1);
    let full = decode_list(&n);
    assert!(cseq(&n) > last_cseq);
    assert!(full.rlmi.version > last_version, "{}", full.rlmi.version);
    assert!(full.rlmi.full_state);
    assert_eq!(full.rlmi.uri, "sip:friends@example.org");
    assert!(
        full.pidf_of("sip:alice@example.org")
            .is_some_and(|p| p.contains("alice before")),
        "{full:?}"
    );

    // Carol publishes on node 1: the list watcher is told from node 1.
    let mut carol = c.ua(1, "carol");
    let doc = carol.pidf("t1", "carol after", None);
    assert_eq!(
        c.publish(1, &mut carol, Some(&doc), Some(600), None)
            .status(),
        Some(200)
    );
    c.advance(Duration::from_secs(5));
    let n = c.notify(1, &bob1);
    let change = decode_list(&n);
    assert!(change.rlmi.version > full.rlmi.version);
    assert!(
        change
            .pidf_of("sip:carol@example.org")
            .is_some_and(|p| p.contains("carol after")),
        "{change:?}"
    );

    // Unsubscribe: terminated, record gone.
    assert_eq!(c.resubscribe(1, &mut bob1, &mut d, 0).status(), Some(200));
    let n = c.notify(1, &bob1);
    assert_eq!(decode_list(&n).state.state, "terminated");
    assert!(c.store.dialogs.is_empty(), "{:?}", c.store.dialogs);
}

/// Nothing came from node `n` on any connection.
fn silent(c: &mut Cluster, n: usize) {
    let conns: Vec<_> = c.nodes[n].conns.keys().copied().collect();
    for conn in conns {
        let left = c.nodes[n].recv_all(conn);
        assert!(
            left.is_empty(),
            "node {n}: {:?}",
            left.iter().map(|m| m.start.clone()).collect::<Vec<_>>()
        );
    }
}

/// Subscriptions held by node `n`.
fn subscriptions(c: &Cluster, n: usize) -> usize {
    c.nodes[n].server.stats().subscriptions
}

#[test]
fn a_dialog_moved_while_its_node_is_alive_is_served_by_the_new_node_only() {
    let mut c = Cluster::new(2, true);
    let (mut d, last) = dialog_on_node_0(&mut c);
    c.advance(Duration::from_secs(300));
    // Node 0 is alive, but the proxy sends the refresh to node 1.
    let mut bob1 = c.ua(1, "bob");
    assert_eq!(c.resubscribe(1, &mut bob1, &mut d, 600).status(), Some(200));
    let n = c.notify(1, &bob1);
    assert!(cseq(&n) > last);
    // Node 0 was told, and dropped its copy without a word.
    assert_eq!(subscriptions(&c, 0), 0);
    assert_eq!(subscriptions(&c, 1), 1);
    silent(&mut c, 0);
    // Node 0 no longer follows alice; the shared watch relation is node 1's.
    assert!(
        c.ops_of(0)
            .iter()
            .any(|op| matches!(op, ClusterOp::Unfollow { aor } if aor == "alice@example.org"))
    );
    let member = format!("alice@example.org\n{}\n{}", d.call_id, d.to_tag);
    assert!(c.store.watch["bob@example.org"].contains_key(&member));

    // A change of alice (published on node 0) is notified once, by node 1.
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t9", "moved", None);
    assert_eq!(
        c.publish(0, &mut alice, Some(&doc), Some(600), None)
            .status(),
        Some(200)
    );
    let n = c.notify(1, &bob1);
    assert!(body(&n).contains("moved"), "{}", body(&n));
    silent(&mut c, 0);
    c.nothing(1, &bob1);
    // Past the expiry node 0 had armed (600 s after the initial SUBSCRIBE), the relation
    // and the record are still there (the refresh on node 1 runs until 900 s).
    c.advance(Duration::from_secs(400));
    let _ = c.nodes[1].recv_all(bob1.conn);
    assert!(c.store.watch["bob@example.org"].contains_key(&member));
    assert!(
        c.store
            .dialogs
            .contains_key(&(d.call_id.clone(), d.to_tag.clone()))
    );
}

#[test]
fn a_stale_copy_is_dropped_when_its_record_write_is_refused() {
    let mut c = Cluster::new(2, true);
    let (mut d, _) = dialog_on_node_0(&mut c);
    // Node 1 takes the dialog over; node 0 misses the announcement.
    c.store.lose_taken = true;
    let mut bob1 = c.ua(1, "bob");
    assert_eq!(c.resubscribe(1, &mut bob1, &mut d, 600).status(), Some(200));
    let _ = c.notify(1, &bob1);
    assert_eq!(subscriptions(&c, 0), 1);
    // The proxy sends the next refresh to node 0 again: answered, but its record write is
    // refused, and node 0 drops its copy; the record stays node 1's.
    let mut bob0 = c.ua(0, "bob");
    assert_eq!(c.resubscribe(0, &mut bob0, &mut d, 600).status(), Some(200));
    assert_eq!(subscriptions(&c, 0), 0);
    assert_eq!(subscriptions(&c, 1), 1);
    let key = (d.call_id.clone(), d.to_tag.clone());
    assert_eq!(decode_dialog(&c.store.dialogs[&key].0).unwrap().node, "n1");
    // The refresh's NOTIFY went out before the refusal came back; nothing after it.
    let conns: Vec<_> = c.nodes[0].conns.keys().copied().collect();
    let sent: Vec<Message> = conns
        .into_iter()
        .flat_map(|conn| c.nodes[0].recv_all(conn))
        .collect();
    assert_eq!(
        sent.len(),
        1,
        "{:?}",
        sent.iter().map(|m| &m.start).collect::<Vec<_>>()
    );
    assert!(
        header(&sent[0], HeaderName::SubscriptionState)
            .unwrap()
            .starts_with("active")
    );
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t9", "after the refusal", None);
    assert_eq!(
        c.publish(0, &mut alice, Some(&doc), Some(600), None)
            .status(),
        Some(200)
    );
    assert!(body(&c.notify(1, &bob1)).contains("after the refusal"));
    silent(&mut c, 0);
}

#[test]
fn writes_that_fail_while_the_store_is_up_are_retried() {
    let mut c = Cluster::new(2, true);
    let mut bob = c.ua(1, "bob");
    let mut d = c.subscribe(1, &mut bob, "sip:alice@example.org");
    let _ = c.notify(1, &bob);
    // The store fails every operation for a while, without the connection being lost.
    c.mode = Mode::Down;
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "written late", None);
    let r = c.publish(0, &mut alice, Some(&doc), Some(600), None);
    assert_eq!(r.status(), Some(200));
    let mut carol = c.ua(1, "carol");
    let _ = c.subscribe(1, &mut carol, "sip:dave@example.org");
    let _ = c.notify(1, &carol);
    // Bob unsubscribes: the removal of his watch relation and record fails too.
    assert_eq!(c.resubscribe(1, &mut bob, &mut d, 0).status(), Some(200));
    let _ = c.notify(1, &bob);
    assert!(c.store.pubs.is_empty());
    assert!(!c.store.watch.contains_key("carol@example.org"));
    let bob_member = format!("alice@example.org\n{}\n{}", d.call_id, d.to_tag);
    assert!(c.store.watch["bob@example.org"].contains_key(&bob_member));

    // The store answers again: within the retry pause, everything is written or removed.
    c.mode = Mode::Up;
    c.advance(Duration::from_secs(2));
    assert_eq!(c.store.pubs.len(), 1, "{:?}", c.store.pubs.keys());
    assert!(
        c.store
            .pubs
            .contains_key(&("alice@example.org".to_owned(), etag(&r)))
    );
    assert!(
        c.store.watch["carol@example.org"]
            .keys()
            .any(|m| m.starts_with("dave@example.org\n"))
    );
    assert!(!c.store.watch["bob@example.org"].contains_key(&bob_member));
    assert!(
        !c.store
            .dialogs
            .contains_key(&(d.call_id.clone(), d.to_tag.clone()))
    );
    // Nothing more to retry: the store sees no further writes.
    let ops = c.store.log.len();
    c.advance(Duration::from_secs(120));
    let writes = c.store.log[ops..]
        .iter()
        .filter(|(_, op)| !matches!(op, ClusterOp::Fetch { .. }))
        .count();
    assert_eq!(writes, 0, "{:?}", &c.store.log[ops..]);
}

#[test]
fn a_replaced_etag_whose_write_failed_is_removed_by_the_retry() {
    let mut c = Cluster::new(2, true);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "first", None);
    let r = c.publish(0, &mut alice, Some(&doc), Some(600), None);
    let first = etag(&r);
    assert!(
        c.store
            .pubs
            .contains_key(&("alice@example.org".to_owned(), first.clone()))
    );
    // The modification's write fails: the store still has the first ETag.
    c.mode = Mode::Down;
    let doc = alice.pidf("t1", "second", None);
    let r = c.publish(0, &mut alice, Some(&doc), Some(600), Some(&first));
    assert_eq!(r.status(), Some(200));
    let second = etag(&r);
    c.mode = Mode::Up;
    c.advance(Duration::from_secs(2));
    let etags: Vec<&String> = c.store.pubs.keys().map(|(_, e)| e).collect();
    assert_eq!(etags, vec![&second]);
}

/// Answers the held operations of node `i` (in order), applying them to the store now.
fn release_held(c: &mut Cluster, i: usize) {
    let held: Vec<_> = std::mem::take(&mut c.held);
    for (n, id, op) in held {
        if n != i {
            c.held.push((n, id, op));
            continue;
        }
        let name = c.nodes[n].server.cluster_node().unwrap().to_owned();
        let now = c.now();
        let reply = c.store.apply(n, &name, &op, now);
        let sim = &mut c.nodes[n];
        sim.server.cluster_result(sim.now, id, Ok(reply));
        sim.pump();
    }
}

#[test]
fn a_snapshot_read_before_a_local_modification_does_not_bring_the_old_version_back() {
    let mut c = Cluster::new(2, true);
    let mut carol = c.ua(0, "carol");
    c.subscribe(0, &mut carol, "sip:alice@example.org");
    c.notify(0, &carol);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "old version", None);
    let first = etag(&c.publish(0, &mut alice, Some(&doc), Some(600), None));
    c.notify(0, &carol);
    // Another node announces a change of alice: node 0 fetches; the store hangs.
    c.mode = Mode::Hang;
    c.event(
        0,
        ClusterEvent::Changed {
            aor: "alice@example.org".into(),
            origin: "n1".into(),
        },
    );
    let fetch = c.held.pop().expect("a fetch");
    assert!(matches!(fetch.2, ClusterOp::Fetch { .. }), "{fetch:?}");
    // Meanwhile alice modifies her publication on node 0 (its write hangs too).
    let doc = alice.pidf("t1", "new version", None);
    let m = alice.publish_msg(Some(&doc), Some(600), Some(&first));
    c.nodes[0].send(alice.conn, m);
    c.settle();
    assert!(body(&c.notify(0, &carol)).contains("new version"));
    // The snapshot read before the write lands: it still has the old version.
    let now = c.now();
    let snap = c.store.snapshot("alice@example.org", now);
    assert_eq!(snap.publications.len(), 1);
    let sim = &mut c.nodes[0];
    sim.server
        .cluster_result(sim.now, fetch.1, Ok(ClusterReply::Snapshot(snap)));
    sim.pump();
    c.mode = Mode::Up;
    release_held(&mut c, 0);
    c.settle();
    let r = alice.expect_response(&mut c.nodes[0]);
    assert_eq!(r.status(), Some(200));
    // One publication, the new one, here and in the store; carol was not told the old one.
    assert_eq!(c.nodes[0].server.stats().publications, 1);
    let etags: Vec<&String> = c.store.pubs.keys().map(|(_, e)| e).collect();
    assert_eq!(etags, vec![&etag(&r)]);
    for n in c.nodes[0].recv_all(carol.conn) {
        assert!(!body(&n).contains("old version"), "{}", body(&n));
    }
}

#[test]
fn writes_of_one_presentity_reach_the_store_one_at_a_time_in_order() {
    let mut c = Cluster::new(2, true);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "v1", None);
    let mut tag = etag(&c.publish(0, &mut alice, Some(&doc), Some(600), None));
    c.mode = Mode::Hang;
    // Two modifications in a row while the first write hangs: one write is sent.
    for v in ["v2", "v3"] {
        let doc = alice.pidf("t1", v, None);
        let m = alice.publish_msg(Some(&doc), Some(600), Some(&tag));
        c.nodes[0].send(alice.conn, m);
        c.settle();
        // The 200 waits for the write: the new ETag is the one the server will answer.
        let held = c.held.len();
        assert_eq!(held, 1, "{:?}", c.held);
        if v == "v2" {
            // Learn v2's ETag from the write the server sent.
            if let ClusterOp::Publish { etag, .. } = &c.held[0].2 {
                tag = etag.clone();
            }
        }
    }
    c.mode = Mode::Up;
    // The first write done, the second is sent (and done at once now).
    release_held(&mut c, 0);
    c.settle();
    let publishes: Vec<&ClusterOp> = c
        .ops_of(0)
        .into_iter()
        .filter(|op| matches!(op, ClusterOp::Publish { .. }))
        .collect();
    assert_eq!(publishes.len(), 3, "{publishes:?}");
    let r2 = alice.expect_response(&mut c.nodes[0]);
    let r3 = alice.expect_response(&mut c.nodes[0]);
    assert_eq!((r2.status(), r3.status()), (Some(200), Some(200)));
    let etags: Vec<&String> = c.store.pubs.keys().map(|(_, e)| e).collect();
    assert_eq!(etags, vec![&etag(&r3)]);
}

#[test]
fn a_publish_queued_behind_a_hanging_write_is_answered_within_the_timeout() {
    let mut c = Cluster::new(2, true);
    let mut alice = c.ua(0, "alice");
    let doc = alice.pidf("t1", "v1", None);
    let tag = etag(&c.publish(0, &mut alice, Some(&doc), Some(600), None));
    c.mode = Mode::Hang;
    let doc = alice.pidf("t1", "v2", None);
    let m = alice.publish_msg(Some(&doc), Some(600), Some(&tag));
    c.nodes[0].send(alice.conn, m);
    c.settle();
    let tag2 = match &c.held[0].2 {
        ClusterOp::Publish { etag, .. } => etag.clone(),
        other => panic!("{other:?}"),
    };
    let doc = alice.pidf("t1", "v3", None);
    let m = alice.publish_msg(Some(&doc), Some(600), Some(&tag2));
    c.nodes[0].send(alice.conn, m);
    c.settle();
    assert!(
        c.nodes[0].recv_all(alice.conn).is_empty(),
        "both wait for their write"
    );
    // cluster-timeout (2 s) later, both are answered, though the second write has not even
    // been sent yet when the first one times out.
    c.advance(Duration::from_millis(2100));
    let answers = c.nodes[0].recv_all(alice.conn);
    assert_eq!(
        answers.iter().map(|m| m.status()).collect::<Vec<_>>(),
        vec![Some(200), Some(200)]
    );
}
