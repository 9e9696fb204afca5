//! The runtime-neutral half of a driver: the table of live connections between the core and the
//! runtime's per-connection writer tasks, and the limits every runtime uses.
//!
//! A runtime owns one [`Driver`] in one task and feeds it, reading `now` once per input:
//! - an accepted socket → [`Driver::accepted`] (which asks the runtime to spawn the connection's
//!   tasks and hand back its [`Outlet`]);
//! - bytes read → [`Driver::data`]; end of stream, read/write error or failed connect →
//!   [`Driver::closed`];
//! - the deadline [`Driver::deadline`] passed → [`Driver::timeout`];
//! - a metrics scrape ([`Input::Metrics`], from the runtime's HTTP task) → answered at once
//!   with the rendered metrics ([`crate::metrics`]);
//!
//! then, after a batch of inputs (at most [`MAX_INPUT_BATCH`]), calls [`Driver::drain`] so that all
//! the output of the batch reaches each writer as one `Send` per connection. Dropping an
//! [`Outlet`] tells its writer to flush what it has and close the connection.
//!
//! Output a peer does not read is bounded: each writer shares a [`Backlog`] (bytes queued and not
//! yet written) with the driver; when a `Send` would take it past `max-pending-output`, the
//! driver aborts the writer (the connection is closed at once, its queue dropped), reports the
//! connection closed to the core and logs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use presence_proto::{
    Action, ConnId, Query, QueryError, QueryId, QueryResult, Server, Stats, Target,
};
use presence_proto::{ClusterError, ClusterEvent, ClusterOp, ClusterOpId, ClusterReply};

use crate::metrics::{DatabaseMetrics, DriverFigures, Scrape};
use crate::settings::DaemonConfig;
use crate::transport::{ListenAddr, contact_uri};

/// Inputs handled before the core's actions are drained (so that outputs coalesce).
pub const MAX_INPUT_BATCH: usize = 64;
/// A batch of inputs ends early once the core holds this much output, so that the output of
/// one drain stays small next to `max-pending-output`.
pub const DRAIN_AT: usize = 256 * 1024;
/// Size of a connection's read buffer.
pub const READ_BUFFER_SIZE: usize = 16 * 1024;
/// Capacity of the queue from the reader tasks to the core (back-pressure on readers).
pub const INPUT_QUEUE: usize = 1024;
/// Longest wait for an outbound connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that does not accept a write for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// On SIGTERM/SIGINT, how long writers may take to flush before the process exits.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Default of `max-pending-output`: bytes queued for one connection and not yet written.
pub const DEFAULT_MAX_PENDING_OUTPUT: usize = 16 * 1024 * 1024;

/// The sans-IO core as the driver sees it ([`presence_proto::Server`], or a fake in tests).
pub trait Core {
    fn connection_opened(&mut self, now: Instant, remote: SocketAddr, local: SocketAddr) -> ConnId;
    fn connection_data(&mut self, now: Instant, conn: ConnId, data: &[u8]);
    fn connection_closed(&mut self, now: Instant, conn: ConnId);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_action(&mut self) -> Option<Action>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn query_result(&mut self, now: Instant, id: QueryId, result: Result<QueryResult, QueryError>);
    /// Bytes the core has written and not yet handed out as actions.
    fn pending_output(&mut self) -> usize {
        0
    }
    /// The core's counters, for metrics.
    fn stats(&self) -> Stats {
        Stats::default()
    }
    /// The outcome of a cluster operation (cluster mode).
    fn cluster_result(
        &mut self,
        _now: Instant,
        _id: ClusterOpId,
        _result: Result<ClusterReply, ClusterError>,
    ) {
    }
    /// Something the cluster store tells unasked.
    fn cluster_event(&mut self, _now: Instant, _event: ClusterEvent) {}
}

impl Core for Server {
    fn connection_opened(&mut self, now: Instant, remote: SocketAddr, local: SocketAddr) -> ConnId {
        Server::connection_opened(self, now, remote, local)
    }
    fn connection_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        Server::connection_data(self, now, conn, data)
    }
    fn connection_closed(&mut self, now: Instant, conn: ConnId) {
        Server::connection_closed(self, now, conn)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Server::handle_timeout(self, now)
    }
    fn poll_action(&mut self) -> Option<Action> {
        Server::poll_action(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Server::poll_timeout(self)
    }
    fn query_result(&mut self, now: Instant, id: QueryId, result: Result<QueryResult, QueryError>) {
        Server::query_result(self, now, id, result)
    }
    fn pending_output(&mut self) -> usize {
        Server::pending_output(self)
    }
    fn stats(&self) -> Stats {
        Server::stats(self)
    }
    fn cluster_result(
        &mut self,
        now: Instant,
        id: ClusterOpId,
        result: Result<ClusterReply, ClusterError>,
    ) {
        Server::cluster_result(self, now, id, result)
    }
    fn cluster_event(&mut self, now: Instant, event: ClusterEvent) {
        Server::cluster_event(self, now, event)
    }
}

/// The runtime's handle on one connection's writer. Dropping it closes the connection once what
/// was sent is written.
pub trait Outlet {
    /// Queues bytes for writing; never blocks. A closed writer ignores them (its task reports the
    /// connection closed on its own). Returns the bytes now queued and not yet written.
    fn send(&self, data: Bytes) -> usize;
    /// Bytes queued and not yet written.
    fn pending(&self) -> usize;
    /// Closes the connection at once, dropping what is still queued.
    fn abort(self);
}

/// Bytes queued for one connection and not yet written, shared by its [`Outlet`] (which adds what
/// it queues) and its writer task (which subtracts what it wrote).
#[derive(Debug, Default)]
pub struct Backlog(AtomicUsize);

impl Backlog {
    /// `n` more bytes were queued; returns the new total.
    pub fn queued(&self, n: usize) -> usize {
        self.0.fetch_add(n, Ordering::Relaxed) + n
    }

    /// `n` queued bytes were written.
    pub fn written(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes queued and not yet written.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// What reaches the core task from the runtime's tasks; `S` is the runtime's TCP stream.
#[derive(Debug)]
pub enum Input<S> {
    /// A listener accepted `S` from the remote address on the local one.
    Accepted(S, SocketAddr, SocketAddr),
    Data(ConnId, Bytes),
    Closed(ConnId),
    /// A query the core asked for is done.
    QueryDone(QueryId, Result<QueryResult, QueryError>),
    /// The metrics endpoint asks for the metrics; the driver replies at once.
    Metrics(Scrape),
    /// A cluster operation the core asked for is done (cluster mode).
    ClusterDone(ClusterOpId, Result<ClusterReply, ClusterError>),
    /// The cluster store's adapter reports a change or its connection state (cluster mode).
    Cluster(ClusterEvent),
}

/// The core plus the table of connections it knows.
#[derive(Debug)]
pub struct Driver<C, W> {
    core: C,
    conns: HashMap<ConnId, W>,
    max_pending_output: usize,
    slow_readers_closed: u64,
    database_metrics: Option<Arc<DatabaseMetrics>>,
}

impl<C: Core, W: Outlet> Driver<C, W> {
    /// A driver whose connections may each have [`DEFAULT_MAX_PENDING_OUTPUT`] bytes pending.
    pub fn new(core: C) -> Self {
        Driver {
            core,
            conns: HashMap::new(),
            max_pending_output: DEFAULT_MAX_PENDING_OUTPUT,
            slow_readers_closed: 0,
            database_metrics: None,
        }
    }

    /// Includes these database figures in the metrics ([`crate::Databases::metrics`]).
    pub fn with_database_metrics(mut self, metrics: Arc<DatabaseMetrics>) -> Self {
        self.database_metrics = Some(metrics);
        self
    }

    /// The metrics in the Prometheus text format: the core's counters, the driver's figures
    /// and the databases'.
    pub fn render_metrics(&self) -> String {
        let figures = DriverFigures {
            connections: self.conns.len(),
            pending_output: self.pending_output(),
            slow_readers_closed: self.slow_readers_closed,
        };
        crate::metrics::render(
            &self.core.stats(),
            &figures,
            self.database_metrics.as_deref(),
        )
    }

    /// Sets `max-pending-output`: a connection with more bytes queued is closed.
    pub fn with_max_pending_output(mut self, bytes: usize) -> Self {
        self.max_pending_output = bytes;
        self
    }

    /// Connections closed because their peer did not read their output.
    pub fn slow_readers_closed(&self) -> u64 {
        self.slow_readers_closed
    }

    /// The core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// Whether the core holds enough output ([`DRAIN_AT`]) to end the batch of inputs now.
    pub fn should_drain(&mut self) -> bool {
        self.core.pending_output() >= DRAIN_AT
    }

    /// Number of connections in the table.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A connection was accepted: the core names it, then `spawn` starts its tasks and returns
    /// its writer.
    pub fn accepted(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: SocketAddr,
        spawn: impl FnOnce(ConnId) -> W,
    ) -> ConnId {
        let conn = self.core.connection_opened(now, remote, local);
        let outlet = spawn(conn);
        self.conns.insert(conn, outlet);
        conn
    }

    /// Bytes arrived. Ignored for a connection that is no longer in the table (closed by the
    /// core, or already reported closed).
    pub fn data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        if self.conns.contains_key(&conn) {
            self.core.connection_data(now, conn, data);
        }
    }

    /// The connection ended (peer closed, I/O error, connect failure). Reported to the core once.
    pub fn closed(&mut self, now: Instant, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.core.connection_closed(now, conn);
        }
    }

    /// The core's next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Fires the core's due timers.
    pub fn timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    /// Hands a query's outcome to the core.
    pub fn query_result(
        &mut self,
        now: Instant,
        id: QueryId,
        result: Result<QueryResult, QueryError>,
    ) {
        self.core.query_result(now, id, result);
    }

    /// Performs every pending action: `Send` goes to the connection's writer, `Close` drops it,
    /// `Connect` asks `connect` to start an outbound connection and return its writer, `Query`
    /// goes to `query` (which runs it and reports through [`Driver::query_result`]).
    pub fn drain(
        &mut self,
        connect: impl FnMut(ConnId, Target) -> W,
        query: impl FnMut(QueryId, Query),
    ) {
        self.drain_with(connect, query, |id, _| {
            tracing::warn!(?id, "no cluster store: operation dropped");
        });
    }

    /// [`Driver::drain`], with `Cluster` actions going to `cluster` (which runs them and reports
    /// through [`Input::ClusterDone`]).
    pub fn drain_with(
        &mut self,
        mut connect: impl FnMut(ConnId, Target) -> W,
        mut query: impl FnMut(QueryId, Query),
        mut cluster: impl FnMut(ClusterOpId, ClusterOp),
    ) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Send { conn, data } => match self.conns.get(&conn) {
                    Some(outlet) => {
                        let pending = outlet.send(data);
                        if pending > self.max_pending_output {
                            self.close_slow_reader(conn, pending);
                        }
                    }
                    None => tracing::debug!(
                        ?conn,
                        "dropping {} bytes for a closed connection",
                        data.len()
                    ),
                },
                Action::Connect { conn, target } => {
                    tracing::debug!(?conn, "connecting to {}:{}", target.host, target.port);
                    let outlet = connect(conn, target);
                    self.conns.insert(conn, outlet);
                }
                Action::Close { conn } => {
                    tracing::debug!(?conn, "closing");
                    self.conns.remove(&conn);
                }
                Action::Query { id, query: q } => query(id, q),
                Action::Cluster { id, op } => cluster(id, op),
            }
        }
    }

    /// The peer of `conn` does not read: `pending` bytes wait. Closes it at once and tells the
    /// core (which ends what depended on it, like a peer that disconnected).
    fn close_slow_reader(&mut self, conn: ConnId, pending: usize) {
        let Some(outlet) = self.conns.remove(&conn) else {
            return;
        };
        tracing::warn!(
            ?conn,
            "closing a connection whose peer does not read: {pending} bytes pending \
             (max-pending-output is {})",
            self.max_pending_output
        );
        outlet.abort();
        self.slow_readers_closed += 1;
        self.core.connection_closed(Instant::now(), conn);
    }

    /// Bytes queued on every connection and not yet written.
    pub fn pending_output(&self) -> usize {
        self.conns.values().map(Outlet::pending).sum()
    }

    /// Handles one input at `now`; for an accepted stream, `spawn` starts the connection's tasks
    /// and returns its writer.
    pub fn handle<S>(&mut self, now: Instant, input: Input<S>, spawn: impl FnOnce(ConnId, S) -> W) {
        match input {
            Input::Accepted(stream, remote, local) => {
                let conn = self.accepted(now, remote, local, |conn| spawn(conn, stream));
                tracing::debug!(?conn, "accepted from {remote} on {local}");
            }
            Input::Data(conn, data) => self.data(now, conn, &data),
            Input::Closed(conn) => {
                tracing::debug!(?conn, "connection closed");
                self.closed(now, conn);
            }
            Input::QueryDone(id, result) => {
                if let Err(e) = &result {
                    tracing::debug!(?id, "query failed: {}", e.0);
                }
                self.query_result(now, id, result);
            }
            Input::Metrics(scrape) => scrape.reply(self.render_metrics()),
            Input::ClusterDone(id, result) => self.core.cluster_result(now, id, result),
            Input::Cluster(event) => self.core.cluster_event(now, event),
        }
    }

    /// Fires the core's timers when its deadline has passed (checked after every batch, so that a
    /// busy server does not starve them).
    pub fn fire_due_timers(&mut self) {
        if let Some(deadline) = self.deadline() {
            let now = Instant::now();
            if deadline <= now {
                self.timeout(now);
            }
        }
    }

    /// Drops every writer (they flush and close): used at shutdown.
    pub fn close_all(&mut self) {
        self.conns.clear();
    }
}

/// One write out of `first` and whatever `next` still has queued: usually the core sends one chunk
/// per connection per drain; if the socket was slow and several are queued, they go out together.
pub fn coalesce(first: Bytes, mut next: impl FnMut() -> Option<Bytes>) -> Bytes {
    let Some(second) = next() else {
        return first;
    };
    let mut buf = bytes::BytesMut::with_capacity(first.len() + second.len());
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second);
    while let Some(more) = next() {
        buf.extend_from_slice(&more);
    }
    buf.freeze()
}

/// The last log line of a server: `open` connections were closed at shutdown, and `unflushed`
/// of them had not flushed within [`SHUTDOWN_GRACE`].
pub fn log_stopped(open: usize, unflushed: usize) {
    if unflushed == 0 {
        tracing::info!("stopped ({open} connections closed)");
    } else {
        tracing::warn!("stopped; {unflushed} connections did not flush in {SHUTDOWN_GRACE:?}");
    }
}

/// The error a writer reports when the peer accepts no data for [`WRITE_TIMEOUT`].
pub fn write_timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("peer accepted no data for {WRITE_TIMEOUT:?}"),
    )
}

/// Binds a (non-blocking) listener per address and logs `listening on ADDR` for each; the
/// runtime turns them into its own listener type.
pub fn bind_listeners(listen: &[ListenAddr]) -> Result<Vec<std::net::TcpListener>, String> {
    let mut listeners = Vec::with_capacity(listen.len());
    for l in listen {
        let listener = std::net::TcpListener::bind((l.bind_host.as_str(), l.port))
            .map_err(|e| format!("cannot listen on {l} (transport {}): {e}", l.uri))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {l}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {l}: {e}"))?;
        tracing::info!("listening on {addr}");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds the metrics endpoint (non-blocking) when `metrics-address` is set, and logs `metrics on
/// ADDR` (port 0 picks a free port, which the log line tells).
pub fn bind_metrics(config: &DaemonConfig) -> Result<Option<std::net::TcpListener>, String> {
    let Some(addr) = config.metrics_address else {
        return Ok(None);
    };
    let fail = |e: std::io::Error| format!("cannot serve metrics on {addr} (metrics-address): {e}");
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    tracing::info!("metrics on {bound}");
    Ok(Some(listener))
}

/// The core for a daemon whose first listener is bound to `first_bound`.
pub fn new_server(config: &DaemonConfig, first_bound: SocketAddr) -> Server {
    let proto = core_config(config, first_bound);
    tracing::debug!("contact {}", proto.contact);
    Server::new(proto, std::time::Instant::now(), random_seed())
}

/// The core's configuration for a daemon whose first listener is bound to `first_bound`: the
/// `Contact` URI is filled in (with a warning when the bound address cannot be advertised).
pub fn core_config(config: &DaemonConfig, first_bound: SocketAddr) -> presence_proto::Config {
    let mut proto = config.proto.clone();
    // The core reads no clock: it gets the wall-clock time of one instant, for timestamps.
    proto.wall_clock = Some((std::time::Instant::now(), std::time::SystemTime::now()));
    if let Some(listen) = config.listen.first() {
        let (contact, exact) = contact_uri(listen, first_bound);
        if !exact {
            tracing::warn!(
                "listening on an unspecified address ({}): advertising {contact} in Contact; \
                 give the transport a specific host or a maddr parameter",
                listen.uri
            );
        }
        proto.contact = contact;
    }
    proto
}

/// A seed for the core's generator (tags, ETags, branches): from the process's randomly keyed
/// hasher, the time and the process id. Not cryptographic; it only has to differ between runs.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(since_epoch.as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    #[derive(Default)]
    struct FakeCore {
        next: u64,
        log: Vec<String>,
        actions: Vec<Action>,
    }

    impl Core for FakeCore {
        fn query_result(&mut self, _: Instant, _: QueryId, _: Result<QueryResult, QueryError>) {}
        fn connection_opened(&mut self, _: Instant, remote: SocketAddr, _: SocketAddr) -> ConnId {
            self.next += 1;
            self.log.push(format!("open {} {remote}", self.next));
            ConnId(self.next)
        }
        fn connection_data(&mut self, _: Instant, conn: ConnId, data: &[u8]) {
            self.log
                .push(format!("data {} {}", conn.0, String::from_utf8_lossy(data)));
        }
        fn connection_closed(&mut self, _: Instant, conn: ConnId) {
            self.log.push(format!("closed {}", conn.0));
        }
        fn handle_timeout(&mut self, _: Instant) {
            self.log.push("timeout".to_owned());
        }
        fn poll_action(&mut self) -> Option<Action> {
            (!self.actions.is_empty()).then(|| self.actions.remove(0))
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    /// A writer that writes nothing: everything sent stays pending.
    #[derive(Clone, Default)]
    struct Sink(Rc<RefCell<Vec<Bytes>>>, Rc<RefCell<bool>>);

    impl Outlet for Sink {
        fn send(&self, data: Bytes) -> usize {
            self.0.borrow_mut().push(data);
            self.pending()
        }
        fn pending(&self) -> usize {
            self.0.borrow().iter().map(Bytes::len).sum()
        }
        fn abort(self) {
            *self.1.borrow_mut() = true;
        }
    }

    #[test]
    fn a_peer_that_does_not_read_is_closed() {
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut d: Driver<FakeCore, Sink> =
            Driver::new(FakeCore::default()).with_max_pending_output(10);
        let (slow, fine) = (Sink::default(), Sink::default());
        let a = d.accepted(now, addr, addr, |_| slow.clone());
        let b = d.accepted(now, addr, addr, |_| fine.clone());
        let chunk = |conn| Action::Send {
            conn,
            data: Bytes::from_static(b"123456"),
        };
        // 6 bytes pending on each: under the limit.
        d.core.actions = vec![chunk(a), chunk(b)];
        d.drain(|_, _| unreachable!(), |_, _| unreachable!());
        assert_eq!(d.pending_output(), 12);
        assert_eq!(d.slow_readers_closed(), 0);
        // 12 bytes on `a`: closed, reported to the core once; `b` untouched.
        d.core.actions = vec![chunk(a), chunk(a)];
        d.drain(|_, _| unreachable!(), |_, _| unreachable!());
        assert!(*slow.1.borrow(), "the slow writer is aborted");
        assert!(!*fine.1.borrow());
        assert_eq!(d.connections(), 1);
        assert_eq!(d.slow_readers_closed(), 1);
        assert_eq!(d.pending_output(), 6);
        assert_eq!(
            slow.0.borrow().len(),
            2,
            "the chunk after the abort is dropped"
        );
        d.closed(now, a);
        assert_eq!(
            d.core().log,
            vec!["open 1 127.0.0.1:5000", "open 2 127.0.0.1:5000", "closed 1"]
        );
    }

    #[test]
    fn table_routes_and_dedups() {
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut d: Driver<FakeCore, Sink> = Driver::new(FakeCore::default());
        let sink = Sink::default();
        let conn = d.accepted(now, addr, addr, |_| sink.clone());
        d.data(now, conn, b"hello");
        d.data(now, ConnId(99), b"nobody");
        d.core.actions = vec![
            Action::Send {
                conn,
                data: Bytes::from_static(b"out"),
            },
            Action::Send {
                conn: ConnId(99),
                data: Bytes::from_static(b"lost"),
            },
            Action::Connect {
                conn: ConnId(7),
                target: Target {
                    host: "h".into(),
                    port: 1,
                },
            },
            Action::Send {
                conn: ConnId(7),
                data: Bytes::from_static(b"queued"),
            },
        ];
        let out7 = Sink::default();
        let mut connects = Vec::new();
        d.drain(
            |c, t| {
                connects.push((c, t.host));
                out7.clone()
            },
            |_, _| unreachable!(),
        );
        assert_eq!(connects, vec![(ConnId(7), "h".to_owned())]);
        assert_eq!(*sink.0.borrow(), vec![Bytes::from_static(b"out")]);
        assert_eq!(*out7.0.borrow(), vec![Bytes::from_static(b"queued")]);
        assert_eq!(d.connections(), 2);
        // Closed twice (reader EOF, then writer error): reported once.
        d.closed(now, conn);
        d.closed(now, conn);
        d.data(now, conn, b"late");
        // Closed by the core: later events are not reported.
        d.core.actions = vec![Action::Close { conn: ConnId(7) }];
        d.drain(|_, _| unreachable!(), |_, _| unreachable!());
        d.closed(now, ConnId(7));
        assert_eq!(d.connections(), 0);
        d.timeout(now);
        assert_eq!(
            d.core().log,
            vec![
                "open 1 127.0.0.1:5000",
                "data 1 hello",
                "closed 1",
                "timeout"
            ]
        );
    }

    #[test]
    fn contact_from_the_first_listener() {
        let mut cfg = DaemonConfig::default();
        cfg.listen[0].port = 0;
        let proto = core_config(&cfg, "127.0.0.1:41234".parse().unwrap());
        assert_eq!(proto.contact, "sip:127.0.0.1:41234;transport=tcp");
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(random_seed(), random_seed());
    }
}
