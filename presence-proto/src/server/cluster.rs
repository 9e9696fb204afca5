//! Cluster mode: several nodes behind one proxy share short-term presence through a store
//! (Redis), so that a PUBLISH on one node reaches the watchers held by another, a publication
//! can be refreshed on any node, and the mutual-subscription rule sees every node's
//! subscriptions. Off (and never consulted) unless `Config::cluster` is set.
//!
//! # What the core does, and what it does not
//!
//! The core stays sans-IO: every store operation is an output, `Action::Cluster { id, op }`
//! with a typed [`ClusterOp`], and its outcome an input, [`Server::cluster_result`]; what the
//! store says unasked (a change on another node, the store lost or back) arrives through
//! [`Server::cluster_event`]. Every operation has a deadline (`cluster-timeout`, armed like the
//! database queries' deadlines): one that does not come back in time counts as failed and its
//! late result is ignored. A request that waits on the store is then answered from the node's
//! own state; nothing waits longer than `cluster-timeout`.
//!
//! Each node keeps its full local state (publications, subscriptions, composed documents): the
//! store is where nodes *exchange* state, not where NOTIFYs are made. A change learnt from the
//! store is applied to the local tables once, the presentity's document is composed once, and
//! the local watchers are notified from it, exactly as for a local PUBLISH.
//!
//! # Store layout (the adapter in `presence-daemon/src/cluster/` owns the commands)
//!
//! `P` is the key prefix (`redis-key-prefix`, default `presence:`); `{aor}` a presentity key
//! (`user@host`, `;user=phone` kept).
//!
//! | key | type | content |
//! |---|---|---|
//! | `P pub:{aor}:{etag}` | string, `PX` = the publication's expiry | [`encode_payload`]: `P2\n`, writing node, its process's instance token, entity URI, the PIDF bytes |
//! | `P pubs:{aor}` | sorted set | the ETags of `aor`'s publications, scored by creation time (store clock, µs; a refresh keeps the score); pruned of expired ETags when read; expires with its last publication |
//! | `P watch:{aor}` | sorted set | whom `aor` watches: members `{presentity}\n{call-id}\n{our tag}` (one per subscription dialog and watched resource), scored by the subscription's expiry (store clock, ms); pruned when read |
//! | `P dlg:{call-id}:{tag}` | string, `PX` = the subscription's expiry | a subscription dialog ([`encode_dialog`]: `D1\n`, writing node, dialog identifiers, watcher, presentity, NOTIFY target and next hop, flags, NOTIFY CSeq ceiling, for a list its URI, RLMI version ceiling, multipart boundary and resources, then the NOTIFYs' fixed header lines); `{tag}` is our tag |
//! | `P chg:{aor}` | pub/sub channel | a change of `aor`'s publications or of whom it watches; the message is the writing node's name |
//!
//! Writes of one presentity's publications, of one subscription's watch relations and of one
//! dialog record are sent one at a time, in the order they were made (the next waits for the
//! previous one's outcome), so that the store never applies an older state after a newer one
//! (two connections, or a script loaded again after a Redis restart, could reorder them).
//!
//! Writes are Lua scripts (one round trip, atomic, store clock for scores): a publication is
//! written with its key, its index entry (dropping the oldest beyond `max-presence-elements`)
//! and the announcement on `P chg:{aor}` together. Expiry needs no write: every node that holds a
//! copy expires it at the same time, and the store drops the key by itself.
//!
//! # Per request, in cluster mode
//!
//! - **PUBLISH** (initial, refresh, modify, remove): handled locally as on a single node (the
//!   answer does not wait for the store), then written ([`ClusterOp::Publish`], with `replaces`
//!   = the former ETag for a refresh or modification, or [`ClusterOp::Unpublish`]); the store
//!   announces it and the other nodes that follow the presentity fetch it. A publication
//!   received here is *local* (this node expires it, answers for it, rewrites it on resync);
//!   one fetched from the store is *remote* (replaced by each fetch). A refresh of a remote
//!   publication makes it local here; the node that held it drops its copy at the next fetch.
//! - **PUBLISH with an unknown `SIP-If-Match`**: the ETag is looked up
//!   ([`ClusterOp::Lookup`]) while the request is parked; found, the publication is adopted and
//!   the request handled again (a refresh, modification or removal as usual); not found,
//!   failed or timed out: `412`. Without the store (disconnected): `412` at once.
//! - **SUBSCRIBE** (initial, single or list): each watched presentity (and the account behind a
//!   phone alias) is *followed*: [`ClusterOp::Follow`] subscribes to its channel and reads its
//!   state; the request is parked until every presentity it watches has its first state (or
//!   the read failed, or timed out; without the store it is not parked), so the first NOTIFY
//!   already carries what other nodes know. The subscription's watch relations are written
//!   ([`ClusterOp::Watch`], announced on the watcher's channel), rewritten on each refresh (not
//!   announced), removed when it ends (announced). A presentity is unfollowed
//!   ([`ClusterOp::Unfollow`]) when its last local watcher goes: a node receives only the
//!   changes its watchers need.
//! - **Subscription dialogs** (single and list subscriptions; fetches are not) are written
//!   with their watch relations ([`ClusterOp::Dialog`]: on creation, each refresh and each
//!   resynchronisation; removed when the subscription ends, only if this node, or the one it
//!   took the dialog over from, wrote the record last). The record holds a NOTIFY CSeq
//!   *ceiling* (for a list, an RLMI version ceiling too, which moves with it), [`CSEQ_MARGIN`]
//!   above the CSeq when written; the NOTIFY halfway there rewrites the record with a new
//!   ceiling (one write per 500 NOTIFYs, one comparison per NOTIFY otherwise), so the dialog's
//!   NOTIFYs stay below the stored ceiling while writes land.
//! - **An in-dialog SUBSCRIBE for a dialog unknown here** (its node died and the proxy sent it
//!   here): the dialog is looked up ([`ClusterOp::LookupDialog`]) while the request is parked.
//!   Found: its presentities are followed (the request parked again until their first state
//!   is here, as for an initial SUBSCRIBE), then the dialog is *taken over*: a local
//!   subscription with the stored identifiers, route and header block, its watches
//!   registered, its expiry armed, NOTIFYs numbered from the stored ceiling + 1 (a list's
//!   RLMI versions likewise; its resources are the stored ones: a server-known list is not
//!   read again); the request is handled again (refresh or unsubscribe as usual, and the
//!   refresh rewrites the record as this node's). Not found, failed or timed out: `481`, as on
//!   a single node. Without the store: `481` at once.
//! - **A dialog moved while its node is alive** (the proxy sent a refresh elsewhere): the
//!   node that takes it over rewrites the record as its own, and the store tells the former
//!   node on its channel `P node:{name}` ([`ClusterEvent::DialogTaken`]), which drops its copy
//!   without a NOTIFY or a store write (the shared watch relations are the new node's now). A
//!   record write is refused ([`ClusterReply::Taken`]) when another node wrote the record
//!   since: a node that missed the announcement drops its copy at its next write. One node
//!   serves a dialog at a time.
//! - **A change event** for a followed presentity (from another node; a node ignores its own)
//!   triggers one [`ClusterOp::Fetch`] (a second event during the fetch, one more fetch after
//!   it). The snapshot replaces the remote publications, drops local ones the store no longer
//!   has (refreshed elsewhere) unless this node's own writes for it are in flight, and replaces
//!   the presentity's watch set; watchers are notified when the document changed, and the
//!   watches of the presentity re-checked when whom it watches changed.
//! - **Mutual rule**: `W` may see `P` when `P` watches `W` on this node (as before) or in the
//!   store: `P`'s watch set from its last snapshot (this node follows `P` since it holds `W`'s
//!   subscription), each relation valid until its expiry (re-checked then).
//!
//! # Writes that fail
//!
//! A write that fails or times out while the store is reachable is done again after a pause
//! (1 s, doubling up to 30 s while they keep failing, back to the first pause after a
//! success): the current state of what it concerned is rewritten (the presentity's local
//! publications, the subscription's watch relations and record: a later change may have
//! superseded the failed write), ETags it replaced or removed are removed unless alive here,
//! removals are done again as they were (at most 10 000 kept: the rest expire in the store).
//!
//! # Store lost, store back
//!
//! [`ClusterEvent::Disconnected`]: logged loudly; the node serves from its own state (requests
//! are no longer parked, lookups answer `412`), its writes fail fast in the adapter.
//! [`ClusterEvent::Connected`] (the adapter re-subscribed every followed channel first):
//! resynchronisation: every local publication is rewritten with its remaining expiry, every
//! local subscription's watch relations (and dialog record) are rewritten and announced, and
//! every followed
//! presentity fetched again (changes missed in between are applied then), and the removals
//! that failed meanwhile done again.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::publication::Publication;
use super::timers::Timer;
use super::{Action, ConnId, PubId, Server, SubId};
use crate::cluster::{
    ClusterConfig, ClusterError, ClusterEvent, ClusterOp, ClusterOpId, ClusterReply, DialogRecord,
    Snapshot, StoredDialog, StoredPublication, decode_dialog, decode_payload, encode_dialog,
    encode_payload,
};
use crate::pidf;
use crate::resource_lists::Entry;
use crate::sip::Message;

/// How far above the last NOTIFY's CSeq a stored dialog record sets its ceiling: the record is
/// rewritten every half of this many NOTIFYs, and a node taking the dialog over starts above
/// it.
const CSEQ_MARGIN: u32 = 1000;

/// A PUBLISH's 200, held until its write is done.
#[derive(Debug)]
struct Answer {
    conn: ConnId,
    remote: SocketAddr,
    msg: Message,
    /// The ETag and expiry granted (None: a removal).
    published: Option<(String, u32)>,
}

/// Why an operation was issued.
#[derive(Debug)]
enum Purpose {
    /// A `Follow` or `Fetch` of this presentity.
    Fetch { aor: String },
    /// A write touching this presentity's publications; `stale`: the ETags it removes or
    /// replaces, and the one it writes (removed again by a retry if no longer alive here).
    Write { aor: String, stale: Vec<String> },
    /// A watch or dialog record write of a live subscription.
    SubWrite { id: SubId },
    /// A removal of a subscription's watch relations or dialog record (the subscription is
    /// gone): retried as it is when it fails.
    Removal { op: ClusterOp },
    /// An ETag lookup for a parked PUBLISH.
    Lookup { parked: u64 },
    /// A dialog lookup for a parked in-dialog SUBSCRIBE.
    LookupDialog { parked: u64 },
    /// Anything whose result only matters when it fails.
    Other,
}

/// A presentity this node receives the changes of.
#[derive(Debug)]
struct Followed {
    id: u64,
    /// A `Follow` or `Fetch` is in flight.
    fetching: bool,
    /// A change was announced during the fetch: fetch again after it.
    again: bool,
    /// Its first fetch is over (applied, failed or timed out): requests no longer wait for it.
    settled: bool,
    /// Whom it watches (other nodes' subscriptions included), until when.
    watches: Vec<(String, Instant)>,
}

/// First pause before writes that failed while the store was reachable are retried...
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// ...doubling up to this while they keep failing.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Most removals kept for a retry (each also expires in the store by itself).
const RETRY_MAX_REMOVALS: usize = 10_000;
/// Most ETags per presentity kept for removal by a retry.
const RETRY_MAX_STALE: usize = 16;

/// Writes that failed (a timeout, an error of the store) and are done again later: the store
/// must hold what this node owns, or other nodes miss it until the next resynchronisation.
/// What is rewritten is the current state, not the failed operation (a later change may
/// have superseded it); removals are done again as they were.
#[derive(Debug)]
struct Retry {
    /// Presentities whose local publications are rewritten, with ETags to remove from the
    /// store unless alive here.
    pubs: HashMap<String, Vec<String>>,
    /// Subscriptions whose watch relations and dialog record are rewritten.
    subs: HashSet<SubId>,
    removals: Vec<ClusterOp>,
    /// A `ClusterRetry` timer is armed.
    armed: bool,
    /// Pause before the next retry.
    delay: Duration,
    /// Removals dropped since the last warning, the list being full.
    dropped: u64,
}

/// What orders an operation against others (None: no order needed): the presentity of a
/// publication write, the subscription of a watch write, the dialog of a record write.
fn order_key(op: &ClusterOp) -> Option<String> {
    match op {
        ClusterOp::Publish { aor, .. } | ClusterOp::Unpublish { aor, .. } => {
            Some(format!("p\n{aor}"))
        }
        ClusterOp::Watch {
            watcher, dialog, ..
        } => Some(format!("w\n{watcher}\n{dialog}")),
        ClusterOp::Dialog { call_id, tag, .. } => Some(format!("d\n{call_id}\n{tag}")),
        _ => None,
    }
}

/// A request waiting for the store.
#[derive(Debug)]
struct Parked {
    conn: ConnId,
    remote: SocketAddr,
    msg: Message,
    /// For a SUBSCRIBE: the presentities whose first state it waits for.
    aors: Vec<String>,
    /// A server-known list's members, handed back to the re-dispatched SUBSCRIBE.
    members: Option<Vec<Entry>>,
    /// Another node's dialog, found in the store, to take over (until when it is valid) before
    /// the in-dialog SUBSCRIBE is handled again.
    adopt: Option<(DialogRecord, Instant)>,
}

/// The cluster side of the core.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) node: String,
    /// This process's token, in the publications it writes: one that the store still has but
    /// this process no longer does was replaced or removed here (the store gets it soon).
    instance: String,
    timeout: Duration,
    next_op: u64,
    inflight: HashMap<ClusterOpId, Purpose>,
    followed: HashMap<String, Followed>,
    follow_ids: HashMap<u64, String>,
    next_follow: u64,
    /// Publication writes in flight, per presentity: a snapshot read meanwhile may predate them.
    writing: HashMap<String, u32>,
    parked: HashMap<u64, Parked>,
    next_parked: u64,
    /// PUBLISH answers waiting for their write.
    answers: HashMap<ClusterOpId, Answer>,
    /// As last reported by the adapter (optimistic until it says otherwise).
    connected: bool,
    /// After a reconnection, until this instant, the store may not have every node's rewrite
    /// yet: an empty snapshot does not drop remote publications (refetched at the end).
    resync_until: Option<Instant>,
    /// Set while a PUBLISH whose ETag was looked up is handled again.
    pub(crate) looked_up: bool,
    retry: Retry,
    /// Per order key (see [`order_key`]), the operations waiting behind the one in flight.
    ordered: HashMap<String, std::collections::VecDeque<(ClusterOpId, ClusterOp)>>,
    /// The order key of each operation in flight that has one.
    order_keys: HashMap<ClusterOpId, String>,
    /// Operations issued and failed (timeouts included), for stats.
    pub(crate) issued: u64,
    pub(crate) failures: u64,
}

impl Cluster {
    /// `instance`: this process's token (the node is named `node-{instance}` when
    /// `config.node` is empty).
    pub(crate) fn new(config: &ClusterConfig, instance: &str) -> Cluster {
        let node = if config.node.trim().is_empty() {
            format!("node-{instance}")
        } else {
            config.node.trim().to_owned()
        };
        Cluster {
            node,
            instance: instance.to_owned(),
            timeout: config.timeout,
            next_op: 0,
            inflight: HashMap::new(),
            followed: HashMap::new(),
            follow_ids: HashMap::new(),
            next_follow: 0,
            writing: HashMap::new(),
            parked: HashMap::new(),
            next_parked: 0,
            answers: HashMap::new(),
            connected: true,
            resync_until: None,
            looked_up: false,
            retry: Retry {
                pubs: HashMap::new(),
                subs: HashSet::new(),
                removals: Vec::new(),
                armed: false,
                delay: RETRY_FIRST,
                dropped: 0,
            },
            ordered: HashMap::new(),
            order_keys: HashMap::new(),
            issued: 0,
            failures: 0,
        }
    }

    /// Parks a request until the store answers; returns its id.
    fn park(&mut self, parked: Parked) -> u64 {
        self.next_parked += 1;
        self.parked.insert(self.next_parked, parked);
        self.next_parked
    }
}

impl Server {
    /// This node's name in the store (None: not in cluster mode).
    pub fn cluster_node(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.node.as_str())
    }

    /// Issues `op` (its outcome handled as `purpose`). Writes of one presentity's
    /// publications, of one subscription's watch relations and of one dialog record reach the
    /// store in the order they were issued: each waits until the previous one of its kind is
    /// done (its id is given at once; its deadline runs from when it is sent).
    fn cluster_issue(
        &mut self,
        now: Instant,
        op: ClusterOp,
        purpose: Purpose,
    ) -> Option<ClusterOpId> {
        let c = self.cluster.as_mut()?;
        c.next_op += 1;
        c.issued += 1;
        let id = ClusterOpId(c.next_op);
        c.inflight.insert(id, purpose);
        if let Some(key) = order_key(&op) {
            if let Some(queue) = c.ordered.get_mut(&key) {
                queue.push_back((id, op));
                return Some(id);
            }
            c.ordered
                .insert(key.clone(), std::collections::VecDeque::new());
            c.order_keys.insert(id, key);
        }
        self.cluster_send(now, id, op);
        Some(id)
    }

    fn cluster_send(&mut self, now: Instant, id: ClusterOpId, op: ClusterOp) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let at = now + c.timeout;
        self.timers.arm(at, Timer::ClusterDeadline(id));
        self.output.connect(Action::Cluster { id, op });
    }

    /// Operation `id` is done: the next one of its order key, if any, is sent.
    fn cluster_next_in_order(&mut self, now: Instant, id: ClusterOpId) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(key) = c.order_keys.remove(&id) else {
            return;
        };
        let next = c.ordered.get_mut(&key).and_then(|q| q.pop_front());
        match next {
            Some((next, op)) => {
                c.order_keys.insert(next, key);
                self.cluster_send(now, next, op);
            }
            None => {
                c.ordered.remove(&key);
            }
        }
    }

    /// The PIDF body a publication keeps for the store: a copy in cluster mode (not a view that
    /// would pin the whole read buffer), nothing on a single node.
    pub(crate) fn cluster_body(&self, body: &bytes::Bytes) -> bytes::Bytes {
        if self.cluster.is_some() {
            bytes::Bytes::copy_from_slice(body)
        } else {
            bytes::Bytes::new()
        }
    }

    /// Holds a PUBLISH's 200 until `write` is done (true), unless the store is unreachable.
    pub(crate) fn cluster_defer(
        &mut self,
        now: Instant,
        write: ClusterOpId,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        published: Option<(&str, u32)>,
    ) -> bool {
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        if !c.connected || !c.inflight.contains_key(&write) {
            return false;
        }
        c.answers.insert(
            write,
            Answer {
                conn,
                remote,
                msg: msg.clone(),
                published: published.map(|(e, x)| (e.to_owned(), x)),
            },
        );
        // At most `cluster-timeout` from now, even when the write waits behind another one
        // of the same presentity.
        let at = now + c.timeout;
        self.timers.arm(at, Timer::ClusterAnswer(write));
        true
    }

    /// The outcome of a cluster operation.
    pub fn cluster_result(
        &mut self,
        now: Instant,
        id: ClusterOpId,
        result: Result<ClusterReply, ClusterError>,
    ) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(purpose) = c.inflight.remove(&id) else {
            return;
        };
        self.cluster_next_in_order(now, id);
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        match &result {
            Err(e) => {
                c.failures += 1;
                // Loud once per outage: the adapter logs the outage itself; failures while
                // connected are worth a warning each.
                if c.connected {
                    warn!(?id, error = %e.0, "cluster operation failed");
                } else {
                    debug!(?id, error = %e.0, "cluster operation failed (store unreachable)");
                }
            }
            Ok(_) => c.retry.delay = RETRY_FIRST,
        }
        let failed = result.is_err();
        match purpose {
            Purpose::Fetch { aor } => self.fetched(now, &aor, result),
            Purpose::Write { aor, stale } => {
                if failed {
                    self.retry_publications(now, &aor, stale);
                }
                let answer = self.cluster.as_mut().and_then(|c| {
                    if let Some(n) = c.writing.get_mut(&aor) {
                        *n -= 1;
                        if *n == 0 {
                            c.writing.remove(&aor);
                        }
                    }
                    c.answers.remove(&id)
                });
                // Written or not, the publication is this node's: the answer is 200.
                if let Some(a) = answer {
                    let published = a.published.as_ref().map(|(e, x)| (e.as_str(), *x));
                    self.respond_publish(a.conn, a.remote, &a.msg, published);
                }
            }
            Purpose::Lookup { parked } => {
                let found = match result {
                    Ok(ClusterReply::Publication(Some(p))) => Some(p),
                    _ => None,
                };
                self.looked_up(now, parked, found);
            }
            Purpose::LookupDialog { parked } => {
                let found = match result {
                    Ok(ClusterReply::Dialog(Some(d))) => Some(d),
                    _ => None,
                };
                self.dialog_looked_up(now, parked, found);
            }
            Purpose::SubWrite { id } => match result {
                Err(_) => self.retry_subscription(now, id),
                Ok(ClusterReply::Taken) => self.drop_taken(now, id, "its record"),
                Ok(_) => {}
            },
            Purpose::Removal { op } => {
                if failed {
                    self.retry_removal(now, op);
                }
            }
            Purpose::Other => {}
        }
        self.close_overflowing(now);
    }

    /// Arms the retry timer unless it is armed.
    fn retry_arm(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !c.retry.armed {
            c.retry.armed = true;
            self.timers.arm(now + c.retry.delay, Timer::ClusterRetry);
        }
    }

    /// A publication write of `aor` failed: its publications are written again later.
    fn retry_publications(&mut self, now: Instant, aor: &str, stale: Vec<String>) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let e = c.retry.pubs.entry(aor.to_owned()).or_default();
        for etag in stale {
            if e.len() < RETRY_MAX_STALE && !e.contains(&etag) {
                e.push(etag);
            }
        }
        self.retry_arm(now);
    }

    /// A watch or dialog write of subscription `id` failed: written again later.
    fn retry_subscription(&mut self, now: Instant, id: SubId) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.retry.subs.insert(id);
        self.retry_arm(now);
    }

    /// A removal failed: done again later (within bounds: it expires in the store anyway).
    fn retry_removal(&mut self, now: Instant, op: ClusterOp) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.retry.removals.len() >= RETRY_MAX_REMOVALS {
            if c.retry.dropped == 0 {
                warn!(
                    "too many cluster removals to retry: further ones are left to expire in the store"
                );
            }
            c.retry.dropped += 1;
            return;
        }
        c.retry.removals.push(op);
        self.retry_arm(now);
    }

    /// The retry timer: writes again what failed (with a longer pause next time), unless the
    /// store is unreachable (the resynchronisation does it when it is back).
    pub(crate) fn cluster_retry_timer(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.retry.armed = false;
        if !c.connected {
            return;
        }
        c.retry.delay = (c.retry.delay * 2).min(RETRY_MAX);
        self.cluster_retry(now, true);
    }

    /// Does what [`Retry`] holds: removals, ETags to remove, and (`rewrite`; a
    /// resynchronisation rewrites everything itself) the current state of the presentities
    /// and subscriptions whose writes failed.
    fn cluster_retry(&mut self, now: Instant, rewrite: bool) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let pubs = std::mem::take(&mut c.retry.pubs);
        let subs = std::mem::take(&mut c.retry.subs);
        let removals = std::mem::take(&mut c.retry.removals);
        if c.retry.dropped > 0 {
            warn!(
                dropped = c.retry.dropped,
                "cluster removals were left to expire in the store"
            );
            c.retry.dropped = 0;
        }
        if pubs.is_empty() && subs.is_empty() && removals.is_empty() {
            return;
        }
        info!(
            presentities = pubs.len(),
            subscriptions = subs.len(),
            removals = removals.len(),
            "retrying cluster writes that failed"
        );
        let mut pubs: Vec<(String, Vec<String>)> = pubs.into_iter().collect();
        pubs.sort_unstable();
        for (aor, stale) in pubs {
            for etag in stale {
                let alive = self
                    .publications
                    .by_etag
                    .get(&etag)
                    .and_then(|id| self.publications.by_id.get(id))
                    .is_some_and(|p| p.presentity == aor && p.expires_at > now);
                if !alive {
                    self.cluster_unpublish(now, &aor, &etag);
                }
            }
            if rewrite {
                let mut local: Vec<PubId> = self
                    .presentities
                    .get(&aor)
                    .map(|p| p.publications.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|id| {
                        self.publications
                            .by_id
                            .get(id)
                            .is_some_and(|p| !p.remote && p.expires_at > now)
                    })
                    .collect();
                local.sort_unstable();
                for id in local {
                    self.cluster_write(now, id, None);
                }
            }
        }
        if rewrite {
            let mut subs: Vec<SubId> = subs.into_iter().collect();
            subs.sort_unstable();
            for id in subs {
                if self
                    .subscriptions
                    .map
                    .get(&id)
                    .is_some_and(|s| s.is_registered())
                {
                    self.cluster_watch(now, id, true, false);
                }
            }
        }
        for op in removals {
            let purpose = Purpose::Removal { op: op.clone() };
            self.cluster_issue(now, op, purpose);
        }
    }

    /// Subscription `id`'s dialog is another node's now (`how`: what told): dropped here
    /// without a NOTIFY or a store write.
    fn drop_taken(&mut self, now: Instant, id: SubId, how: &str) {
        if self.forget_subscription(now, id) {
            info!(
                ?id,
                learnt_from = how,
                "subscription dialog taken over by another node: dropped here"
            );
        }
    }

    /// A PUBLISH's 200 held for its write is due: sent now if still held (the write is
    /// still on its way: it keeps its own deadline).
    pub(crate) fn cluster_answer_due(&mut self, id: ClusterOpId) {
        let Some(a) = self.cluster.as_mut().and_then(|c| c.answers.remove(&id)) else {
            return;
        };
        let published = a.published.as_ref().map(|(e, x)| (e.as_str(), *x));
        self.respond_publish(a.conn, a.remote, &a.msg, published);
    }

    /// An operation's deadline passed: it counts as failed.
    pub(crate) fn cluster_deadline(&mut self, now: Instant, id: ClusterOpId) {
        if self
            .cluster
            .as_ref()
            .is_some_and(|c| c.inflight.contains_key(&id))
        {
            self.cluster_result(now, id, Err(ClusterError("timeout".into())));
        }
    }

    /// Something the store tells unasked.
    pub fn cluster_event(&mut self, now: Instant, event: ClusterEvent) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        match event {
            ClusterEvent::Changed { aor, origin } => {
                if origin != c.node {
                    self.cluster_refetch(now, &aor);
                }
            }
            ClusterEvent::Disconnected => {
                if c.connected {
                    warn!(
                        "cluster store unreachable: serving from this node's state until it is back"
                    );
                }
                c.connected = false;
            }
            ClusterEvent::Connected => {
                info!(
                    node = %c.node,
                    "cluster store reachable: resynchronising"
                );
                c.connected = true;
                let until = now + 2 * c.timeout;
                c.resync_until = Some(until);
                self.timers.arm(until, Timer::ClusterResyncEnd);
                self.cluster_resync(now);
                self.cluster_retry(now, false);
            }
            ClusterEvent::DialogTaken { call_id, tag, by } => {
                if let Some(id) = self.subscriptions.by_dialog(&call_id, &tag) {
                    info!(%call_id, %by, "subscription dialog taken over by another node");
                    self.drop_taken(now, id, "announcement");
                }
            }
        }
        self.close_overflowing(now);
    }

    /// The grace period after a reconnection is over: every followed presentity is fetched
    /// again, and what the store no longer has is dropped now.
    pub(crate) fn cluster_resync_end(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.resync_until.is_none_or(|t| t > now) {
            return;
        }
        c.resync_until = None;
        self.cluster_refetch_all(now);
    }

    /// Fetches `aor` again if followed (once more after the fetch in flight, if any).
    fn cluster_refetch(&mut self, now: Instant, aor: &str) {
        let Some(f) = self.cluster.as_mut().and_then(|c| c.followed.get_mut(aor)) else {
            return;
        };
        if f.fetching {
            f.again = true;
            return;
        }
        f.fetching = true;
        let op = ClusterOp::Fetch {
            aor: aor.to_owned(),
        };
        let purpose = Purpose::Fetch {
            aor: aor.to_owned(),
        };
        self.cluster_issue(now, op, purpose);
    }

    /// Fetches every followed presentity again (in a stable order).
    fn cluster_refetch_all(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let mut aors: Vec<String> = c.followed.keys().cloned().collect();
        aors.sort_unstable();
        for aor in aors {
            self.cluster_refetch(now, &aor);
        }
    }

    /// Rewrites what this node owns and fetches what it follows (the store may have lost it, and
    /// changes may have been missed).
    fn cluster_resync(&mut self, now: Instant) {
        let Some(followed) = self.cluster.as_ref().map(|c| c.followed.len()) else {
            return;
        };
        let mut local: Vec<PubId> = self
            .publications
            .by_id
            .iter()
            .filter(|(_, p)| !p.remote && p.expires_at > now)
            .map(|(id, _)| *id)
            .collect();
        local.sort_unstable();
        let mut subs: Vec<SubId> = self
            .subscriptions
            .map
            .iter()
            .filter(|(_, s)| s.is_registered())
            .map(|(id, _)| *id)
            .collect();
        subs.sort_unstable();
        info!(
            publications = local.len(),
            subscriptions = subs.len(),
            followed,
            "cluster resynchronisation"
        );
        for id in local {
            self.cluster_write(now, id, None);
        }
        for id in subs {
            self.cluster_watch(now, id, true, false);
        }
        self.cluster_refetch_all(now);
    }

    /// Writes publication `id` to the store (`replaces`: its former ETag).
    pub(crate) fn cluster_write(
        &mut self,
        now: Instant,
        id: PubId,
        replaces: Option<String>,
    ) -> Option<ClusterOpId> {
        let c = self.cluster.as_mut()?;
        let p = self.publications.by_id.get(&id)?;
        let entity = self
            .presentities
            .get(&p.presentity)
            .map(|e| e.entity.as_str())
            .unwrap_or_default();
        let payload = encode_payload(&c.node, &c.instance, entity, &p.raw);
        *c.writing.entry(p.presentity.clone()).or_insert(0) += 1;
        let op = ClusterOp::Publish {
            aor: p.presentity.clone(),
            etag: p.etag.clone(),
            replaces,
            expires: p.expires_at.saturating_duration_since(now),
            payload,
            max: self.config.max_presence_elements.max(1),
        };
        let aor = p.presentity.clone();
        let mut stale = vec![p.etag.clone()];
        if let ClusterOp::Publish {
            replaces: Some(old),
            ..
        } = &op
        {
            stale.push(old.clone());
        }
        self.cluster_issue(now, op, Purpose::Write { aor, stale })
    }

    /// Removes a publication of `aor` from the store.
    pub(crate) fn cluster_unpublish(
        &mut self,
        now: Instant,
        aor: &str,
        etag: &str,
    ) -> Option<ClusterOpId> {
        let c = self.cluster.as_mut()?;
        *c.writing.entry(aor.to_owned()).or_insert(0) += 1;
        let op = ClusterOp::Unpublish {
            aor: aor.to_owned(),
            etag: etag.to_owned(),
        };
        self.cluster_issue(
            now,
            op,
            Purpose::Write {
                aor: aor.to_owned(),
                stale: vec![etag.to_owned()],
            },
        )
    }

    /// Writes the watch relations of subscription `id` (`ended`: removes them); `announce`
    /// tells the nodes that follow the watcher.
    pub(crate) fn cluster_watch(&mut self, now: Instant, id: SubId, announce: bool, ended: bool) {
        if self.cluster.is_none() {
            return;
        }
        let Some(s) = self.subscriptions.map.get(&id) else {
            return;
        };
        let presentities = self.watched(id);
        if presentities.is_empty() {
            return;
        }
        let expires = if ended {
            Duration::ZERO
        } else {
            s.expires_at.saturating_duration_since(now)
        };
        if !ended && expires.is_zero() {
            return;
        }
        let op = ClusterOp::Watch {
            watcher: s.watcher.clone(),
            dialog: s.dialog_id(),
            presentities,
            expires,
            announce,
        };
        let purpose = if ended {
            Purpose::Removal { op: op.clone() }
        } else {
            Purpose::SubWrite { id }
        };
        self.cluster_issue(now, op, purpose);
        self.cluster_dialog(now, id, ended);
    }

    /// Writes (or, `ended`, removes) the dialog record of subscription `id`, with a new NOTIFY
    /// CSeq ceiling. List subscriptions have none.
    pub(crate) fn cluster_dialog(&mut self, now: Instant, id: SubId, ended: bool) {
        let Some(node) = self.cluster.as_ref().map(|c| c.node.clone()) else {
            return;
        };
        let op = if ended {
            let Some((call_id, tag, previous)) = self
                .subscriptions
                .map
                .get(&id)
                .map(|s| s.stored_dialog_key())
            else {
                return;
            };
            ClusterOp::Dialog {
                call_id: call_id.to_owned(),
                tag: tag.to_owned(),
                expires: Duration::ZERO,
                record: bytes::Bytes::new(),
                previous: previous.map(str::to_owned),
            }
        } else {
            let Some(expires) = self
                .subscriptions
                .map
                .get(&id)
                .map(|s| s.expires_at.saturating_duration_since(now))
                .filter(|e| !e.is_zero())
            else {
                return;
            };
            let Some(rec) = self.dialog_record(&node, id, CSEQ_MARGIN) else {
                return;
            };
            let record = encode_dialog(&rec);
            let previous = self
                .subscriptions
                .map
                .get(&id)
                .and_then(|s| s.stored_dialog_key().2.map(str::to_owned));
            ClusterOp::Dialog {
                call_id: rec.call_id,
                tag: rec.local_tag,
                expires,
                record,
                previous,
            }
        };
        let purpose = if ended {
            Purpose::Removal { op: op.clone() }
        } else {
            Purpose::SubWrite { id }
        };
        self.cluster_issue(now, op, purpose);
    }

    /// For an in-dialog SUBSCRIBE whose dialog is unknown here: looks it up in the store (the
    /// node that created it may be gone) and parks the request (true), unless it was looked up
    /// already or the store is unreachable.
    pub(crate) fn cluster_dialog_gate(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        call_id: &str,
        tag: &str,
    ) -> bool {
        let op = ClusterOp::LookupDialog {
            call_id: call_id.to_owned(),
            tag: tag.to_owned(),
        };
        let parked = self.park_for_lookup(now, conn, remote, msg, op, |parked| {
            Purpose::LookupDialog { parked }
        });
        if let Some(parked) = parked {
            debug!(parked, %call_id, "SUBSCRIBE waits for a dialog lookup in the cluster store");
        }
        parked.is_some()
    }

    /// Parks a request and looks something up for it in the store (`op`, answered as
    /// `purpose`), unless the request was looked up already or the store is unreachable; the
    /// parked request's id, or None when it goes on without the lookup.
    fn park_for_lookup(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        op: ClusterOp,
        purpose: impl FnOnce(u64) -> Purpose,
    ) -> Option<u64> {
        let c = self.cluster.as_mut()?;
        if c.looked_up || !c.connected {
            return None;
        }
        let parked = c.park(Parked {
            conn,
            remote,
            msg: msg.clone(),
            aors: Vec::new(),
            members: None,
            adopt: None,
        });
        self.cluster_issue(now, op, purpose(parked));
        Some(parked)
    }

    /// A dialog lookup is done: the dialog found is taken over once what its presentity has
    /// in the store is known here, and the SUBSCRIBE handled again (`481` if nothing was found).
    fn dialog_looked_up(&mut self, now: Instant, parked: u64, found: Option<StoredDialog>) {
        let Some(p) = self.cluster.as_mut().and_then(|c| c.parked.remove(&parked)) else {
            return;
        };
        if !self.is_open(p.conn) {
            return;
        }
        let record = found.and_then(|stored| {
            let rec = decode_dialog(&stored.record);
            if rec.is_none() {
                warn!("unreadable dialog record in the cluster store");
            }
            rec.map(|r| (r, now + stored.expires))
        });
        // Only the subscriber's own requests take a dialog over.
        let from_tag = p
            .msg
            .header(&crate::sip::HeaderName::From)
            .and_then(|v| crate::sip::NameAddr::parse(v))
            .and_then(|n| n.tag().map(str::to_owned));
        let record = record.filter(|(r, _)| from_tag.as_deref() == Some(r.remote_tag.as_str()));
        if let Some((rec, until)) = record {
            let keys: Vec<String> = match &rec.list {
                None => vec![rec.presentity.clone()],
                Some(l) => l.resources.iter().map(|(_, k, _)| k.clone()).collect(),
            };
            if !self.cluster_gate(now, p.conn, p.remote, &p.msg, &keys, None) {
                // Parked until the presentity's first state is here: adopted then.
                if let Some(c) = self.cluster.as_mut()
                    && let Some(q) = c.parked.get_mut(&c.next_parked)
                {
                    q.adopt = Some((rec, until));
                }
                return;
            }
            self.adopt_dialog(
                now,
                p.conn,
                p.remote,
                rec,
                until.saturating_duration_since(now),
            );
        }
        if let Some(c) = self.cluster.as_mut() {
            c.looked_up = true;
        }
        self.handle_request(now, p.conn, Some(p.remote), &p.msg);
        if let Some(c) = self.cluster.as_mut() {
            c.looked_up = false;
        }
    }

    /// The presentities whose store state a subscription to `keys` needs: the keys, and the
    /// accounts behind phone aliases.
    fn cluster_aors(&self, keys: &[String]) -> Vec<String> {
        let mut aors: Vec<String> = Vec::with_capacity(keys.len());
        let mut seen: HashSet<&str> = HashSet::with_capacity(keys.len());
        for k in keys {
            for a in [k.as_str(), self.presentities.resolve(k)] {
                if seen.insert(a) {
                    aors.push(a.to_owned());
                }
            }
        }
        aors
    }

    /// Follows `aor` when not yet followed.
    fn cluster_follow(&mut self, now: Instant, aor: &str) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.followed.contains_key(aor) {
            return;
        }
        c.next_follow += 1;
        let id = c.next_follow;
        c.follow_ids.insert(id, aor.to_owned());
        c.followed.insert(
            aor.to_owned(),
            Followed {
                id,
                fetching: true,
                again: false,
                settled: false,
                watches: Vec::new(),
            },
        );
        debug!(presentity = %aor, "following");
        self.cluster_issue(
            now,
            ClusterOp::Follow {
                aor: aor.to_owned(),
            },
            Purpose::Fetch {
                aor: aor.to_owned(),
            },
        );
    }

    /// Whether a SUBSCRIBE watching `keys` may proceed: every presentity it needs is followed
    /// and has had its first state. When not, parks it (to be handled again when they have)
    /// and returns false. Never parks while the store is unreachable.
    pub(crate) fn cluster_gate(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        keys: &[String],
        members: Option<Vec<Entry>>,
    ) -> bool {
        if self.cluster.is_none() {
            return true;
        }
        let aors = self.cluster_aors(keys);
        for aor in &aors {
            self.cluster_follow(now, aor);
        }
        let Some(c) = self.cluster.as_mut() else {
            return true;
        };
        let wait = c.connected
            && aors
                .iter()
                .any(|a| c.followed.get(a).is_some_and(|f| !f.settled));
        if !wait {
            return true;
        }
        let id = c.park(Parked {
            conn,
            remote,
            msg: msg.clone(),
            aors,
            members,
            adopt: None,
        });
        debug!(parked = id, "SUBSCRIBE waits for the cluster store");
        false
    }

    /// For a PUBLISH whose `SIP-If-Match` is unknown here: looks the ETag up in the store and
    /// parks the request (true), unless it was looked up already or the store is unreachable.
    pub(crate) fn cluster_lookup_gate(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        aor: &str,
        etag: &str,
    ) -> bool {
        let op = ClusterOp::Lookup {
            aor: aor.to_owned(),
            etag: etag.to_owned(),
        };
        let parked = self.park_for_lookup(now, conn, remote, msg, op, |parked| Purpose::Lookup {
            parked,
        });
        if let Some(parked) = parked {
            debug!(parked, %etag, "PUBLISH waits for an ETag lookup in the cluster store");
        }
        parked.is_some()
    }

    /// A lookup is done: adopts what it found and handles the PUBLISH again.
    fn looked_up(&mut self, now: Instant, parked: u64, found: Option<StoredPublication>) {
        let Some(p) = self.cluster.as_mut().and_then(|c| c.parked.remove(&parked)) else {
            return;
        };
        if let Some(stored) = found {
            let aor = p
                .msg
                .header(&crate::sip::HeaderName::From)
                .and_then(|v| crate::sip::NameAddr::parse(v))
                .map(|n| n.uri.aor_key());
            if let Some(aor) = aor
                && !self.publications.by_etag.contains_key(&stored.etag)
            {
                self.adopt(now, &aor, &stored);
            }
        }
        if !self.is_open(p.conn) {
            return;
        }
        if let Some(c) = self.cluster.as_mut() {
            c.looked_up = true;
        }
        self.handle_request(now, p.conn, Some(p.remote), &p.msg);
        if let Some(c) = self.cluster.as_mut() {
            c.looked_up = false;
        }
    }

    /// Adds a publication read from the store (remote: replaced by later fetches).
    fn adopt(&mut self, now: Instant, aor: &str, stored: &StoredPublication) -> Option<PubId> {
        let Some(payload) = decode_payload(&stored.payload) else {
            warn!(presentity = %aor, etag = %stored.etag, "unreadable publication in the cluster store");
            return None;
        };
        let doc = match pidf::parse(&payload.pidf) {
            Ok(d) => d,
            Err(e) => {
                warn!(presentity = %aor, etag = %stored.etag, error = %e.0, "unreadable PIDF in the cluster store");
                return None;
            }
        };
        let expires_at = now + stored.expires;
        let id = self.publications.insert(Publication {
            etag: stored.etag.clone(),
            presentity: aor.to_owned(),
            doc,
            raw: payload.pidf,
            expires_at,
            remote: true,
        });
        let p = self.presentities.get_or_create(aor, &payload.entity);
        p.publications.push(id);
        self.timers.arm(expires_at, Timer::PublicationExpiry(id));
        Some(id)
    }

    /// A `Follow` or `Fetch` of `aor` is done.
    fn fetched(&mut self, now: Instant, aor: &str, result: Result<ClusterReply, ClusterError>) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(f) = c.followed.get_mut(aor) else {
            return;
        };
        f.fetching = false;
        let first = !f.settled;
        f.settled = true;
        let again = std::mem::take(&mut f.again);
        match result {
            Ok(ClusterReply::Snapshot(snap)) => self.apply_snapshot(now, aor, snap),
            Ok(other) => warn!(presentity = %aor, reply = ?other, "unexpected cluster reply"),
            Err(_) => {}
        }
        if again {
            self.cluster_refetch(now, aor);
        }
        if first {
            self.cluster_release_parked(now);
        }
    }

    /// Applies a snapshot of `aor`: its publications and whom it watches.
    fn apply_snapshot(&mut self, now: Instant, aor: &str, snap: Snapshot) {
        let writing = self
            .cluster
            .as_ref()
            .is_some_and(|c| c.writing.contains_key(aor));
        // Just after a reconnection, an empty store may not have been rewritten yet.
        let keep_remote = snap.publications.is_empty()
            && self
                .cluster
                .as_ref()
                .and_then(|c| c.resync_until)
                .is_some_and(|t| now < t);
        let mut changed = false;
        // What the store no longer has.
        let present: HashSet<&str> = snap.publications.iter().map(|p| p.etag.as_str()).collect();
        let current = self
            .presentities
            .get(aor)
            .map(|p| p.publications.clone())
            .unwrap_or_default();
        for id in current {
            let Some(p) = self.publications.by_id.get(&id) else {
                continue;
            };
            if present.contains(p.etag.as_str())
                || (!p.remote && writing)
                || (p.remote && keep_remote)
            {
                continue;
            }
            debug!(presentity = %aor, etag = %p.etag, local = !p.remote, "publication gone from the cluster store");
            self.publications.remove(id);
            if let Some(pres) = self.presentities.get_mut(aor) {
                pres.publications.retain(|x| *x != id);
            }
            changed = true;
        }
        // What it has that we do not (but not what this process wrote and has replaced or
        // removed since: a snapshot read before that write landed).
        let instance = self
            .cluster
            .as_ref()
            .map(|c| c.instance.clone())
            .unwrap_or_default();
        for stored in &snap.publications {
            match self.publications.by_etag.get(&stored.etag).copied() {
                None if decode_payload(&stored.payload).is_some_and(|p| p.instance == instance) => {
                    debug!(presentity = %aor, etag = %stored.etag, "stale publication of this node in a snapshot: ignored");
                }
                Some(id) => {
                    if let Some(p) = self.publications.by_id.get_mut(&id)
                        && p.remote
                    {
                        let at = now + stored.expires;
                        if at > p.expires_at {
                            p.expires_at = at;
                            self.timers.arm(at, Timer::PublicationExpiry(id));
                        }
                    }
                }
                None => {
                    if self.adopt(now, aor, stored).is_some() {
                        changed = true;
                    }
                }
            }
        }
        // Whom it watches.
        let mut watches: Vec<(String, Instant)> = snap
            .watches
            .into_iter()
            .filter(|(_, d)| !d.is_zero())
            .map(|(k, d)| (k, now + d))
            .collect();
        watches.sort_unstable();
        let mut watches_changed = false;
        let mut next_expiry = None;
        if let Some(c) = self.cluster.as_mut()
            && let Some(f) = c.followed.get_mut(aor)
        {
            watches_changed = f.watches.len() != watches.len()
                || f.watches.iter().zip(&watches).any(|(a, b)| a.0 != b.0);
            next_expiry = watches.iter().map(|(_, at)| *at).min().map(|at| (f.id, at));
            f.watches = watches;
        }
        if let Some((fid, at)) = next_expiry {
            self.timers.arm(at, Timer::ClusterWatchExpiry(fid));
        }
        if changed {
            debug!(presentity = %aor, "publications changed on another node");
            self.presentity_changed(now, aor);
        }
        if watches_changed {
            self.cluster_recheck(now, aor);
        }
        self.presentities.remove_if_unused(aor);
    }

    /// Re-checks the access of every watch of `aor` (and of its aliases): whom it watches
    /// changed.
    fn cluster_recheck(&mut self, now: Instant, aor: &str) {
        let mut keys = vec![aor.to_owned()];
        if let Some(p) = self.presentities.get(aor) {
            keys.extend(p.aliases.iter().cloned());
        }
        for key in keys {
            let watches = self
                .presentities
                .get(&key)
                .map(|p| p.watchers.clone())
                .unwrap_or_default();
            for w in watches {
                self.recheck_watch(now, w, &key);
            }
        }
    }

    /// A relation in a followed presentity's watch set may have expired.
    pub(crate) fn cluster_watch_timer(&mut self, now: Instant, fid: u64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(aor) = c.follow_ids.get(&fid).cloned() else {
            return;
        };
        let Some(f) = c.followed.get_mut(&aor) else {
            return;
        };
        let before = f.watches.len();
        f.watches.retain(|(_, at)| *at > now);
        let next = f.watches.iter().map(|(_, at)| *at).min();
        let expired = f.watches.len() != before;
        if let Some(at) = next {
            self.timers.arm(at, Timer::ClusterWatchExpiry(fid));
        }
        if expired {
            self.cluster_recheck(now, &aor);
        }
    }

    /// Whether `owner` watches `watcher` (or one of its phone aliases) according to the store.
    pub(crate) fn cluster_watches(&self, owner: &str, watcher: &str) -> bool {
        let Some(f) = self.cluster.as_ref().and_then(|c| c.followed.get(owner)) else {
            return false;
        };
        if f.watches.is_empty() {
            return false;
        }
        let aliases = self.presentities.get(watcher).map(|p| p.aliases.as_slice());
        f.watches
            .iter()
            .any(|(k, _)| k == watcher || aliases.is_some_and(|a| a.iter().any(|x| x == k)))
    }

    /// Handles again the parked SUBSCRIBEs whose presentities all have their first state.
    fn cluster_release_parked(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let mut ready: Vec<u64> = c
            .parked
            .iter()
            .filter(|(_, p)| {
                !p.aors.is_empty()
                    && p.aors
                        .iter()
                        .all(|a| c.followed.get(a).is_none_or(|f| f.settled))
            })
            .map(|(id, _)| *id)
            .collect();
        ready.sort_unstable();
        for id in ready {
            let Some(p) = self.cluster.as_mut().and_then(|c| c.parked.remove(&id)) else {
                continue;
            };
            if self.is_open(p.conn) {
                let adopted = p.adopt.is_some();
                if let Some((rec, until)) = p.adopt {
                    let left = until.saturating_duration_since(now);
                    self.adopt_dialog(now, p.conn, p.remote, rec, left);
                }
                self.accounts.prefetched = p.members;
                if let Some(c) = self.cluster.as_mut() {
                    c.looked_up = adopted;
                }
                self.handle_request(now, p.conn, Some(p.remote), &p.msg);
                if let Some(c) = self.cluster.as_mut() {
                    c.looked_up = false;
                }
                self.accounts.prefetched = None;
            }
            for aor in &p.aors {
                self.cluster_release(now, aor);
            }
        }
    }

    /// Whether this node still needs the changes of `aor`: it, or one of its aliases, has
    /// watchers here, or a parked request waits for it.
    fn cluster_needed(&self, aor: &str) -> bool {
        let has_watchers = |k: &str| {
            self.presentities
                .get(k)
                .is_some_and(|p| !p.watchers.is_empty())
        };
        if has_watchers(aor)
            || self
                .presentities
                .get(aor)
                .is_some_and(|p| p.aliases.iter().any(|a| has_watchers(a)))
        {
            return true;
        }
        self.cluster
            .as_ref()
            .is_some_and(|c| c.parked.values().any(|p| p.aors.iter().any(|a| a == aor)))
    }

    /// A watch of `key` ended: unfollows `key` (and the account behind it) when no longer needed.
    pub(crate) fn cluster_release(&mut self, now: Instant, key: &str) {
        if self.cluster.is_none() {
            return;
        }
        let target = self.presentities.resolve(key).to_owned();
        for aor in [key.to_owned(), target] {
            let followed = self
                .cluster
                .as_ref()
                .is_some_and(|c| c.followed.contains_key(&aor));
            if !followed || self.cluster_needed(&aor) {
                continue;
            }
            if let Some(c) = self.cluster.as_mut()
                && let Some(f) = c.followed.remove(&aor)
            {
                c.follow_ids.remove(&f.id);
            }
            debug!(presentity = %aor, "unfollowing");
            // Its remote publications would go stale: dropped.
            let remote: Vec<PubId> = self
                .presentities
                .get(&aor)
                .map(|p| {
                    p.publications
                        .iter()
                        .copied()
                        .filter(|id| self.publications.by_id.get(id).is_some_and(|x| x.remote))
                        .collect()
                })
                .unwrap_or_default();
            for id in remote {
                self.publications.remove(id);
                if let Some(p) = self.presentities.get_mut(&aor) {
                    p.publications.retain(|x| *x != id);
                }
            }
            if let Some(p) = self.presentities.get_mut(&aor) {
                p.invalidate_documents();
            }
            self.cluster_issue(
                now,
                ClusterOp::Unfollow { aor: aor.clone() },
                Purpose::Other,
            );
            self.presentities.remove_if_unused(&aor);
        }
    }

    /// A remote publication expired here: the store may know a refresh whose announcement was
    /// missed.
    pub(crate) fn cluster_expired(&mut self, now: Instant, aor: &str) {
        self.cluster_refetch(now, aor);
    }
}
