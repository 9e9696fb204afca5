//! The engine of a run: connections, users and their publications, subscription dialogs and what
//! each watcher has seen, pending transactions, and the counters. It sends requests, consumes
//! the readers' event batches and keeps the books; the scenarios drive it phase by phase.
//!
//! Bookkeeping of NOTIFY contents: every PUBLISH gets a sequence number (`seq`), written in its
//! note (`pbseq=<seq>`) and recorded with its send time. A *view* is what one watcher sees of one
//! user: a single subscription has one, a list subscription one per entry. Each view has a
//! cursor into the list of that user's `seq`s: a NOTIFY carrying `seq` moves the cursor to it.
//! For a single subscription every `seq` must arrive (one skipped is lost); a list may
//! coalesce changes (RFC 4662 rate limiting), so older `seq`s passed over count as delivered
//! (coalesced). A `seq` of another user, or older than one already seen, is wrong.

mod churn;
mod dialogs;
mod metrics;
mod publications;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use presence_proto::rng::Rng;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

pub use self::dialogs::{Dialog, Kind, State};
pub use self::metrics::{Churn, Metrics};
use self::publications::{Pub, View};
use crate::cli::Options;
use crate::conn::{self, Batch, Conn};
use crate::inbound::Event;
use crate::names::Names;
use crate::sip::Builder;

/// One simulated user.
#[derive(Debug, Default)]
pub struct User {
    pub conn: u32,
    etag: Option<Box<[u8]>>,
    cseq: u32,
    /// A PUBLISH of this user awaits its answer (with several servers: its answer and its
    /// NOTIFYs, see [`Engine::hold_publishers`]).
    busy: bool,
    /// Views of this user in established dialogs: the NOTIFYs (or resource updates) each of its
    /// PUBLISHes must cause.
    pub watchers: u32,
}

#[derive(Debug, Clone, Copy)]
enum TxnKind {
    Publish { seq: u64 },
    Unpublish,
    Subscribe { dialog: u64 },
    Unsubscribe { dialog: u64 },
}

#[derive(Debug)]
struct Txn {
    kind: TxnKind,
    sent: Instant,
    /// Sent by the cleanup: failures are counted apart.
    cleanup: bool,
}

pub struct Engine {
    pub opts: Options,
    pub names: Arc<Names>,
    builder: Builder,
    pub conns: Vec<Conn>,
    tx: UnboundedSender<Batch>,
    rx: UnboundedReceiver<Batch>,
    pub users: Vec<User>,
    dialogs: VecDeque<Dialog>,
    /// Id of `dialogs[0]` (churn drops finished dialogs from the front).
    dialog_base: u64,
    views: Vec<View>,
    pubs: Vec<Pub>,
    seqs_of: Vec<Vec<u64>>,
    txns: HashMap<u64, Txn>,
    next_txn: u64,
    pub m: Metrics,
    pub churn: Churn,
    pub measuring: bool,
    rng: Rng,
    /// Measured PUBLISHes not complete.
    pub incomplete: u64,
    /// Measured PUBLISHes counted in the saturation window.
    pub window_used: usize,
    /// Measured PUBLISHes awaiting their answer.
    pub publish_in_flight: usize,
    open_pubs: VecDeque<u64>,
    /// Views not yet up to date.
    pub unsynced_views: u64,
    /// Setup requests refused.
    pub setup_failures: u64,
    list_bodies: HashMap<u32, Vec<u8>>,
    /// With several servers: watches of the dialogs created (one per single subscription, one
    /// per list entry) ...
    pub watches: u64,
    /// ... and those whose NOTIFYs cross nodes (the presentity publishes on another node).
    pub cross_node: u64,
}

impl Engine {
    pub fn new(opts: Options, names: Names) -> Engine {
        let (tx, rx) = unbounded_channel();
        let users = opts.user_count();
        let rng = Rng::new(opts.seed ^ 0x5bd1_e995);
        Engine {
            builder: Builder::new(names.clone(), &opts.user_agent),
            names: Arc::new(names),
            opts,
            conns: Vec::new(),
            tx,
            rx,
            users: (0..users).map(|_| User::default()).collect(),
            dialogs: VecDeque::new(),
            dialog_base: 0,
            views: Vec::new(),
            pubs: Vec::new(),
            seqs_of: vec![Vec::new(); users],
            txns: HashMap::new(),
            next_txn: 1,
            m: Metrics::default(),
            churn: Churn::default(),
            measuring: false,
            rng,
            incomplete: 0,
            window_used: 0,
            publish_in_flight: 0,
            open_pubs: VecDeque::new(),
            unsynced_views: 0,
            setup_failures: 0,
            list_bodies: HashMap::new(),
            watches: 0,
            cross_node: 0,
        }
    }

    /// A progress line on stderr (unless `--quiet`).
    pub fn progress(&self, line: &str) {
        if !self.opts.quiet {
            eprintln!("presence-bench: {line}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Connections

    /// Opens the connections: `--connections` of them (proxy mode), or one per user; users are
    /// spread over them round-robin, and the connections over the servers (connection i to
    /// server i % n).
    pub async fn connect(&mut self) -> Result<Duration, String> {
        let start = Instant::now();
        let count = self.opts.connections.unwrap_or(self.users.len());
        let proxy = self.opts.proxy_mode();
        for i in 0..count {
            let idx = u32::try_from(i).map_err(|_| "too many connections".to_owned())?;
            let Some(&server) = self.opts.servers.get(self.opts.server_of_conn(idx)) else {
                return Err("no server".to_owned());
            };
            let c = conn::connect(
                server,
                idx,
                proxy,
                Arc::clone(&self.names),
                self.tx.clone(),
                self.opts.timeout,
            )
            .await
            .map_err(|e| format!("connection {} of {count} to {server}: {e}", i + 1))?;
            self.conns.push(c);
        }
        let n = self.conns.len().max(1);
        for (i, u) in self.users.iter_mut().enumerate() {
            u.conn = (i % n) as u32;
        }
        Ok(start.elapsed())
    }

    /// With several servers, a user's next measured PUBLISH waits until the previous one is
    /// complete (its 200 and every NOTIFY; saturation: or given up after `--timeout`), not
    /// only answered.
    /// A node fetches a presentity's state from the store once per change announcement, so two
    /// changes close together may reach the watchers on other nodes as one NOTIFY of the later
    /// state (counted as `notify_superseded`, and lost: the tool expects every note), and the
    /// older PUBLISH would hold its saturation window slot until `--timeout`. One server sends
    /// the NOTIFYs with the 200: there the user is free at the answer, as always.
    pub fn hold_publishers(&self) -> bool {
        self.opts.servers.len() > 1
    }

    /// The connection of a new dialog of `watcher` to `presentity` (None: a list). The
    /// watcher's own connection, except with several servers in proxy mode when that connection
    /// goes to the node that takes the presentity's PUBLISHes: then a connection to another node
    /// (the others in turn, by block of watchers), so that every NOTIFY of a single
    /// subscription crosses nodes. Per-user mode has one connection per user: no choice there.
    pub(super) fn dialog_conn(&self, watcher: u32, presentity: Option<u32>) -> u32 {
        let own = self.users.get(watcher as usize).map_or(0, |u| u.conn);
        match presentity.and_then(|p| self.users.get(p as usize)) {
            Some(p) if self.opts.proxy_mode() => cross_node_conn(
                own,
                p.conn,
                watcher,
                self.opts.servers.len() as u32,
                self.conns.len() as u32,
            ),
            _ => own,
        }
    }

    /// Counts a new dialog's watches (one for a single subscription, one per entry for a list)
    /// and those whose presentity publishes on another node than the dialog's.
    pub(super) fn count_cross_node(&mut self, conn: u32, presentities: &[u32]) {
        let n = self.opts.servers.len();
        if n < 2 {
            return;
        }
        let node = self.opts.server_of_conn(conn);
        for &p in presentities {
            self.watches += 1;
            if let Some(u) = self.users.get(p as usize)
                && self.opts.server_of_conn(u.conn) != node
            {
                self.cross_node += 1;
            }
        }
    }

    /// Flushes every connection and asks the writers to close them.
    pub fn close(&mut self) {
        self.flush();
        for c in &self.conns {
            c.out.close();
        }
    }

    /// Wakes the writers of the connections written to.
    pub fn flush(&mut self) {
        for c in &mut self.conns {
            if c.dirty {
                c.dirty = false;
                c.out.kick();
            }
        }
    }

    /// Appends a request to a connection's output, built by `f`.
    fn write(&mut self, conn: u32, f: impl FnOnce(&mut Builder, &crate::sip::Hop, &mut Vec<u8>)) {
        let Some(c) = self.conns.get_mut(conn as usize) else {
            return;
        };
        if !c.open {
            return;
        }
        let mut out = c.out.lock();
        f(&mut self.builder, &c.hop, &mut out);
        drop(out);
        c.dirty = true;
    }

    fn new_txn(&mut self, kind: TxnKind, cleanup: bool) -> u64 {
        let id = self.next_txn;
        self.next_txn += 1;
        self.txns.insert(
            id,
            Txn {
                kind,
                sent: Instant::now(),
                cleanup,
            },
        );
        id
    }

    // -----------------------------------------------------------------------------------------
    // Events

    /// Processes events until `until` or until some arrive (then everything queued).
    pub async fn pump(&mut self, until: Instant) {
        self.flush();
        tokio::select! {
            batch = self.rx.recv() => {
                if let Some(b) = batch {
                    self.handle(b);
                }
                while let Ok(b) = self.rx.try_recv() {
                    self.handle(b);
                }
            }
            () = tokio::time::sleep_until(until.into()) => {}
        }
        self.flush();
    }

    /// Processes events until `done` holds (Ok) or `deadline` passes (Err).
    pub async fn wait_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Engine) -> bool,
    ) -> Result<(), ()> {
        loop {
            if done(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(());
            }
            let wake = deadline.min(Instant::now() + Duration::from_millis(100));
            self.pump(wake).await;
        }
    }

    /// Sends `total` setup requests with `send(engine, i)`, at most `--setup-window` in flight
    /// and `--setup-rate` per second, then waits for `done`; Err with a reason on timeout or when
    /// the server refuses one.
    pub async fn setup_phase(
        &mut self,
        what: &str,
        total: usize,
        mut send: impl FnMut(&mut Engine, usize),
        done: impl Fn(&Engine) -> bool,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let deadline = start + self.opts.setup_timeout;
        let (window, rate) = (self.opts.setup_window, self.opts.setup_rate);
        let failures_before = self.setup_failures;
        let mut i = 0;
        loop {
            let now = Instant::now();
            let allowed = if rate > 0.0 {
                ((now - start).as_secs_f64() * rate) as usize + 1
            } else {
                usize::MAX
            };
            while i < total && self.txns.len() < window && i < allowed {
                send(self, i);
                i += 1;
            }
            if self.setup_failures > failures_before {
                return Err(format!(
                    "{what}: the server refused {} request(s): {}",
                    self.setup_failures - failures_before,
                    self.error_summary()
                ));
            }
            if i >= total && done(self) {
                return Ok(start.elapsed());
            }
            if now >= deadline {
                return Err(format!(
                    "{what}: not done after {:.0} s ({i} of {total} sent, {} unanswered, {} views \
                     not up to date)",
                    self.opts.setup_timeout.as_secs_f64(),
                    self.txns.len(),
                    self.unsynced_views
                ));
            }
            let mut wake = deadline.min(now + Duration::from_millis(100));
            if rate > 0.0 && i < total {
                wake = wake.min(start + Duration::from_secs_f64(i as f64 / rate));
            }
            self.pump(wake).await;
        }
    }

    /// `METHOD code ×n, …`.
    pub fn error_summary(&self) -> String {
        self.m
            .errors
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn handle(&mut self, batch: Batch) {
        let at = batch.at;
        for ev in batch.events {
            match ev {
                Event::Response {
                    txn,
                    status,
                    etag,
                    to_tag,
                    contact,
                } => self.on_response(at, txn, status, etag, to_tag, contact),
                Event::Notify {
                    dialog,
                    terminated,
                    content,
                } => self.on_notify(at, dialog, terminated, content),
                Event::Foreign => self.m.foreign_notifies += 1,
                Event::Unexpected(what) => *self.m.unexpected.entry(what).or_default() += 1,
                Event::Closed => {
                    if let Some(c) = self.conns.get_mut(batch.conn as usize)
                        && c.open
                    {
                        c.open = false;
                        self.m.closed_connections += 1;
                    }
                }
            }
        }
    }

    fn count_error(&mut self, method: &str, status: u16, cleanup: bool) {
        if cleanup {
            self.m.cleanup_errors += 1;
        } else {
            *self
                .m
                .errors
                .entry(format!("{method} {status}"))
                .or_default() += 1;
        }
    }

    fn on_response(
        &mut self,
        at: Instant,
        txn: u64,
        status: u16,
        etag: Option<Bytes>,
        to_tag: Option<Bytes>,
        contact: Option<Bytes>,
    ) {
        if status < 200 {
            return;
        }
        let Some(t) = self.txns.remove(&txn) else {
            *self
                .m
                .unexpected
                .entry("answer to no pending request")
                .or_default() += 1;
            return;
        };
        let ok = (200..300).contains(&status);
        match t.kind {
            TxnKind::Publish { seq } => {
                let Some(p) = self.pubs.get_mut(seq as usize) else {
                    return;
                };
                p.answered = true;
                let (user, measured) = (p.user, p.measured);
                if !ok {
                    p.failed = true;
                }
                if measured {
                    self.publish_in_flight = self.publish_in_flight.saturating_sub(1);
                    self.m
                        .publish_rtt
                        .record(at.saturating_duration_since(t.sent));
                    if ok {
                        self.m.publish_ok += 1;
                    } else {
                        self.m.publish_failed += 1;
                    }
                }
                let hold = ok && measured && self.hold_publishers();
                if let Some(u) = self.users.get_mut(user as usize) {
                    // With several servers the user stays busy until the NOTIFYs are in too
                    // (check_complete, expire_window).
                    u.busy = hold;
                    // A refused PUBLISH (e.g. 412) starts over with a new publication.
                    u.etag = if ok {
                        etag.map(|e| e.to_vec().into())
                    } else {
                        None
                    };
                }
                if !ok {
                    if !measured {
                        self.setup_failures += 1;
                    }
                    self.count_error("PUBLISH", status, false);
                }
                self.check_complete(seq);
            }
            TxnKind::Unpublish => {
                if !ok {
                    self.count_error("PUBLISH", status, true);
                }
            }
            TxnKind::Subscribe { dialog } => {
                if !ok {
                    self.count_error("SUBSCRIBE", status, t.cleanup);
                    self.fail_dialog(dialog);
                    return;
                }
                if let Some(d) = self.dialog_mut(dialog) {
                    d.answered = Some(at);
                    d.to_tag = to_tag.map(|t| t.to_vec().into());
                    d.remote_target = contact.map(|c| c.to_vec().into());
                    if d.state == State::Pending {
                        d.state = State::Active;
                    }
                }
                self.churn_step(dialog);
            }
            TxnKind::Unsubscribe { dialog } => {
                let churn = self
                    .dialog(dialog)
                    .is_some_and(|d| matches!(d.kind, Kind::Churn { .. }));
                if !ok {
                    self.count_error("SUBSCRIBE", status, t.cleanup);
                    if churn {
                        self.fail_dialog(dialog);
                        return;
                    }
                }
                if let Some(d) = self.dialog_mut(dialog) {
                    d.unsubscribe_answered = true;
                    if !ok || (d.got_terminated && !churn) {
                        d.state = State::Ended;
                    }
                }
                self.churn_step(dialog);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cleanup

    /// Unsubscribes every established dialog and removes every publication (best effort), then
    /// closes the connections. Goes on as long as answers keep coming (`--timeout`, at least 5 s,
    /// without one ends it) and at most `--setup-timeout` (at least 30 s). Returns how long it
    /// took and how many requests were left unsent or unanswered.
    pub async fn cleanup(&mut self) -> (Duration, u64) {
        let start = Instant::now();
        let cap = start + self.opts.setup_timeout.max(Duration::from_secs(30));
        let idle = self.opts.timeout.max(Duration::from_secs(5));
        let window = self.opts.setup_window;
        let ids: Vec<u64> = self.dialog_ids().collect();
        let users = self.users.len() as u32;
        let (mut next_dialog, mut next_user) = (0, 0);
        let (mut sent, mut answered) = (0u64, 0u64);
        let mut last_progress = start;
        self.txns.clear();
        loop {
            while self.txns.len() < window && next_dialog < ids.len() {
                if let Some(&id) = ids.get(next_dialog)
                    && self.unsubscribe(id, true)
                {
                    sent += 1;
                }
                next_dialog += 1;
            }
            while self.txns.len() < window && next_dialog >= ids.len() && next_user < users {
                if self.unpublish(next_user) {
                    sent += 1;
                }
                next_user += 1;
            }
            let all_sent = next_dialog >= ids.len() && next_user >= users;
            if all_sent && self.txns.is_empty() {
                break;
            }
            let now = Instant::now();
            let done = sent - self.txns.len() as u64;
            if done > answered {
                answered = done;
                last_progress = now;
            }
            if now >= cap || now >= last_progress + idle {
                break;
            }
            let wake = cap
                .min(last_progress + idle)
                .min(now + Duration::from_millis(100));
            self.pump(wake).await;
        }
        let unfinished = (ids.len() - next_dialog.min(ids.len())) as u64
            + u64::from(users - next_user.min(users))
            + self.txns.len() as u64;
        // Let the last NOTIFYs (terminated) be answered.
        let quiet = Instant::now() + Duration::from_millis(200);
        while Instant::now() < quiet {
            self.pump(quiet).await;
        }
        self.close();
        (start.elapsed(), unfinished)
    }
}

/// The connection for a single subscription of `watcher` whose own connection is `own`, to a
/// presentity that publishes on `home` (proxy mode, `servers` nodes, connection i on node
/// i % servers, `conns` connections): `own` when it goes to another node than `home`; otherwise
/// a connection of another node (node home + 1 + (watcher / conns) % (servers - 1)), at the rank
/// `own` has among its node's connections (wrapped to that node's count).
pub fn cross_node_conn(own: u32, home: u32, watcher: u32, servers: u32, conns: u32) -> u32 {
    if servers < 2 || conns < servers || own % servers != home % servers {
        return own;
    }
    // By watcher block (not watcher % ...: that would follow `own` and load a few connections).
    let node = (home % servers + 1 + (watcher / conns) % (servers - 1)) % servers;
    let on_node = (conns - node).div_ceil(servers);
    node + servers * ((own / servers) % on_node.max(1))
}

#[cfg(test)]
mod tests {
    use super::cross_node_conn;
    use crate::scenarios::ring;

    /// Users on connections round-robin, the mutual ring: with several servers every single
    /// subscription goes to another node than its presentity's PUBLISHes, and with as many
    /// connections per node the SUBSCRIBEs are spread evenly over the connections.
    #[test]
    fn subscriptions_cross_nodes() {
        for (users, k, conns, servers) in [
            (1000u32, 20u32, 6u32, 2u32),
            (1000, 20, 6, 3),
            (1000, 20, 4, 3),
            (50, 4, 5, 5),
            (10, 3, 2, 2),
        ] {
            let mut per_conn = vec![0u32; conns as usize];
            for w in 0..users {
                let own = w % conns;
                for p in ring(w, users, k) {
                    let home = p % conns;
                    let c = cross_node_conn(own, home, w, servers, conns);
                    assert!(c < conns, "{c} < {conns}");
                    assert_ne!(c % servers, home % servers, "watcher {w} -> {p}");
                    per_conn[c as usize] += 1;
                }
            }
            if conns % servers == 0 {
                let (lo, hi) = (per_conn.iter().min(), per_conn.iter().max());
                let (lo, hi) = (*lo.unwrap_or(&0), *hi.unwrap_or(&0));
                assert!(hi - lo <= hi / 10, "{per_conn:?}");
            }
        }
        // One server, or a connection already on another node: unchanged.
        assert_eq!(cross_node_conn(3, 3, 7, 1, 4), 3);
        assert_eq!(cross_node_conn(1, 2, 7, 2, 4), 1);
        assert_eq!(cross_node_conn(2, 0, 7, 2, 4), 3);
    }
}
