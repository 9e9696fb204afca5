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
    /// A PUBLISH of this user awaits its answer.
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
    /// spread over them round-robin.
    pub async fn connect(&mut self) -> Result<Duration, String> {
        let start = Instant::now();
        let count = self.opts.connections.unwrap_or(self.users.len());
        let proxy = self.opts.proxy_mode();
        for i in 0..count {
            let idx = u32::try_from(i).map_err(|_| "too many connections".to_owned())?;
            let c = conn::connect(
                self.opts.server,
                idx,
                proxy,
                Arc::clone(&self.names),
                self.tx.clone(),
                self.opts.timeout,
            )
            .await
            .map_err(|e| {
                format!(
                    "connection {} of {count} to {}: {e}",
                    i + 1,
                    self.opts.server
                )
            })?;
            self.conns.push(c);
        }
        let n = self.conns.len().max(1);
        for (i, u) in self.users.iter_mut().enumerate() {
            u.conn = (i % n) as u32;
        }
        Ok(start.elapsed())
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
                if let Some(u) = self.users.get_mut(user as usize) {
                    u.busy = false;
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
