//! The presence server state machine.
//!
//! Drive it like quinn-proto's `Connection`: after every `handle_*` call (or connection event),
//! drain [`Server::poll_action`] until it returns `None`, then sleep until
//! [`Server::poll_timeout`] (or the next input) and call [`Server::handle_timeout`]. `now` must
//! never go backwards; spurious timeouts are no-ops.

mod accounts;
mod cluster;
mod list;
mod output;
mod presentity;
mod publication;
mod response;
mod subscription;
mod timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::cluster::ClusterOp;
pub(crate) use crate::cluster::ClusterOpId;
use crate::config::Config;
use crate::query::{Query, QueryId};
use crate::rng::Rng;
use crate::sip::{FrameError, Framer, HeaderName, Message, Method, Via};

use output::Output;
use presentity::Presentities;
use publication::Publications;
use response::{
    answerable, bad_request_reason, cseq_matches, is_ack, request_info, warning, write_response,
    write_response_to,
};
use subscription::Subscriptions;
use timers::{Timer, Timers};

/// A transport connection, allocated by the core (for inbound and outbound connections alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where an outbound connection must go: a host (IP literal or DNS name) and port, over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The address, when the host is an IP literal (IPv6 with or without brackets).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to `target` and bind it to `conn`. `Send`s for `conn` may follow
    /// before it is established: the runtime queues them. If the connection cannot be made the
    /// runtime reports [`Server::connection_closed`].
    Connect { conn: ConnId, target: Target },
    /// Write `data` on `conn`. Several messages for one connection are coalesced into one `Send`
    /// per drain, so the runtime can issue one write.
    Send { conn: ConnId, data: Bytes },
    /// Close `conn` (after writing what was already sent on it).
    Close { conn: ConnId },
    /// Run a database query; report its outcome with [`Server::query_result`]. The core gives up
    /// on it after `Config::query_timeout` (a late result is then ignored).
    Query { id: QueryId, query: Query },
    /// Run an operation on the cluster store (cluster mode only); report its outcome with
    /// [`Server::cluster_result`]. The core gives up on it after `ClusterConfig::timeout`.
    Cluster { id: ClusterOpId, op: ClusterOp },
}

/// Counters (Flexisip's statistics and more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub presentities: usize,
    pub publications: usize,
    pub subscriptions: usize,
    pub timers: usize,
    pub requests_received: u64,
    pub responses_sent: u64,
    pub notifies_sent: u64,
    pub notify_failures: u64,
    pub protocol_errors: u64,
    pub queries_issued: u64,
    pub query_failures: u64,
    /// New SUBSCRIBEs refused with 503 because `max-subscriptions` was reached.
    pub subscription_limit_hits: u64,
    /// New SUBSCRIBEs refused with 503 because `max-subscriptions-per-connection` was reached.
    pub connection_subscription_limit_hits: u64,
    /// Initial PUBLISHes refused with 503 because `max-publications` was reached.
    pub publication_limit_hits: u64,
    /// Connections closed for holding an incomplete message too long (`partial-message-timeout`).
    pub partial_message_timeouts: u64,
    /// Connections closed for being idle (`idle-connection-timeout`).
    pub idle_connection_timeouts: u64,
    /// Connections closed because what was written to them between two drains passed
    /// `max-pending-output`.
    pub output_overflows: u64,
    /// Subscriptions to resource lists (RFC 4662), included in `subscriptions` (Flexisip's
    /// list subscription count).
    pub list_subscriptions: usize,
    /// Answered requests (each response sent counts its request once), by method, row
    /// [`Stats::REQUEST_METHODS`], and status, column [`Stats::RESPONSE_STATUSES`] (the last
    /// column counts any other status).
    pub requests_by_status: [[u64; RESPONSE_STATUS_COUNT]; REQUEST_METHOD_COUNT],
    /// NOTIFYs in flight that got a 2xx response.
    pub notify_ok: u64,
    /// NOTIFYs in flight that got a final error response (3xx to 6xx).
    pub notify_error_responses: u64,
    /// NOTIFYs in flight that got no final response within the NOTIFY timeout.
    pub notify_timeouts: u64,
    /// NOTIFYs in flight whose connection was lost before their response arrived.
    pub notify_connection_lost: u64,
}

const REQUEST_METHOD_COUNT: usize = 3;
const RESPONSE_STATUS_COUNT: usize = 14;

impl Stats {
    /// The rows of [`Stats::requests_by_status`]: `OTHER` is any method but PUBLISH and
    /// SUBSCRIBE (known or not, and malformed requests whose method cannot be read).
    pub const REQUEST_METHODS: [&'static str; REQUEST_METHOD_COUNT] =
        ["PUBLISH", "SUBSCRIBE", "OTHER"];
    /// The columns of [`Stats::requests_by_status`]: the statuses this server answers with;
    /// the last one, 0, stands for any other.
    pub const RESPONSE_STATUSES: [u16; RESPONSE_STATUS_COUNT] = [
        200, 400, 405, 412, 413, 415, 416, 481, 489, 500, 501, 503, 505, 0,
    ];

    /// Counts a request answered with `status` (plain increments: no allocation).
    fn count_response(&mut self, method: Option<&Method>, status: u16) {
        let row = match method {
            Some(Method::Publish) => 0,
            Some(Method::Subscribe) => 1,
            _ => 2,
        };
        let last = RESPONSE_STATUS_COUNT - 1;
        let column = Self::RESPONSE_STATUSES[..last]
            .iter()
            .position(|s| *s == status)
            .unwrap_or(last);
        self.requests_by_status[row][column] += 1;
    }

    /// Every entry of [`Stats::requests_by_status`]: (method, status, count), the status 0
    /// standing for any status not in [`Stats::RESPONSE_STATUSES`].
    pub fn requests_answered(&self) -> impl Iterator<Item = (&'static str, u16, u64)> + '_ {
        self.requests_by_status
            .iter()
            .zip(Self::REQUEST_METHODS)
            .flat_map(|(row, method)| {
                row.iter()
                    .zip(Self::RESPONSE_STATUSES)
                    .map(move |(n, status)| (method, status, *n))
            })
    }
}

/// A subscription (dialog) handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SubId(pub(crate) u64);

/// A publication handle (stable across ETag changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PubId(pub(crate) u64);

#[derive(Debug)]
struct Connection {
    /// The peer's address; for an outbound connection not yet reported, the target's if it is an IP.
    remote: Option<SocketAddr>,
    framer: Framer,
    /// When the incomplete message the framer holds started arriving (None: nothing pending).
    partial_since: Option<Instant>,
    /// Last bytes received, or NOTIFY sent, on it.
    last_activity: Instant,
    /// Subscriptions created by SUBSCRIBEs that arrived on it, still alive.
    subscriptions: usize,
}

impl Connection {
    fn new(remote: Option<SocketAddr>, max_message_size: usize, now: Instant) -> Connection {
        Connection {
            remote,
            framer: Framer::new(max_message_size),
            partial_since: None,
            last_activity: now,
            subscriptions: 0,
        }
    }
}

/// The presence server: all state of one shard.
#[derive(Debug)]
pub struct Server {
    config: Config,
    rng: Rng,
    next_conn: u64,
    conns: HashMap<ConnId, Connection>,
    /// Open connections by peer address, to reuse one for NOTIFYs.
    conn_by_addr: HashMap<SocketAddr, ConnId>,
    /// Outbound connections by target, for hosts that are not IP literals.
    conn_by_target: HashMap<(String, u16), ConnId>,
    presentities: Presentities,
    publications: Publications,
    subscriptions: Subscriptions,
    accounts: accounts::Accounts,
    timers: Timers,
    output: Output,
    stats: Stats,
    /// Cluster mode (None: a single node).
    cluster: Option<cluster::Cluster>,
}

impl Server {
    /// Creates a server. `seed` feeds the generator for tags, ETags and branches.
    pub fn new(config: Config, now: Instant, seed: u64) -> Server {
        let clock = presentity::Clock {
            wall: config.wall_clock,
            retention: config.last_activity_retention,
        };
        let _ = now;
        let config_max_pending_output = config.max_pending_output;
        let mut rng = Rng::new(seed);
        let instance = rng.token(8);
        let cluster = config
            .cluster
            .as_ref()
            .map(|c| cluster::Cluster::new(c, &instance));
        let subscriptions = Subscriptions::new(&config, instance);
        Server {
            config,
            rng,
            next_conn: 1,
            conns: HashMap::new(),
            conn_by_addr: HashMap::new(),
            conn_by_target: HashMap::new(),
            presentities: Presentities::new(clock),
            publications: Publications::default(),
            subscriptions,
            accounts: accounts::Accounts::default(),
            timers: Timers::default(),
            output: Output::new(config_max_pending_output),
            stats: Stats::default(),
            cluster,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An inbound connection was accepted.
    pub fn connection_opened(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> ConnId {
        let _ = local;
        let id = self.alloc_conn();
        self.conns.insert(
            id,
            Connection::new(Some(remote), self.config.max_message_size, now),
        );
        self.conn_by_addr.insert(remote, id);
        self.arm_idle(now, id);
        id
    }

    /// Bytes arrived on a connection.
    pub fn connection_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.framer.push(data);
        c.last_activity = now;
        let mut framed = false;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let remote = c.remote;
            match c.framer.next_message() {
                Ok(Some(raw)) => {
                    framed = true;
                    self.handle_message(now, conn, remote, raw);
                    self.close_overflowing(now);
                }
                Ok(None) => {
                    // Bytes left over are an incomplete message: it has a deadline.
                    if c.framer.buffered() == 0 {
                        c.partial_since = None;
                    } else if framed || c.partial_since.is_none() {
                        c.partial_since = Some(now);
                        let at = now + self.config.partial_message_timeout;
                        self.timers.arm(at, Timer::PartialMessage(conn));
                    }
                    return;
                }
                Err(e) => {
                    warn!(?conn, ?remote, error = ?e, "closing connection: cannot frame its stream");
                    self.stats.protocol_errors += 1;
                    // The message cannot be delimited, but its head may still be answered
                    // before the stream is given up (RFC 4475 §3.1.2.3, §3.3.9).
                    if let Some(head) = c.framer.take_failed_head() {
                        let (code, reason, problem) = match e {
                            FrameError::TooLarge => {
                                (413, "Request Entity Too Large", "message too large")
                            }
                            FrameError::BadContentLength => (
                                400,
                                "Bad Request (bad Content-Length)",
                                "missing, malformed or conflicting Content-Length",
                            ),
                        };
                        self.answer_unparsable(conn, remote, &head, code, reason, problem);
                    }
                    self.close(now, conn);
                    return;
                }
            }
        }
    }

    /// A connection was closed by the peer, failed, or could not be established.
    pub fn connection_closed(&mut self, now: Instant, conn: ConnId) {
        if self.forget_conn(conn) {
            self.output.discard(conn);
            self.subscriptions_lost_connection(now, conn);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::SubscriptionExpiry(id) => self.subscription_timer(now, id),
                Timer::PublicationExpiry(id) => self.publication_timer(now, id),
                Timer::ListNotify(id) => self.list_timer(now, id),
                Timer::QueryDeadline(id) => self.query_deadline(now, id),
                Timer::PartialMessage(conn) => self.partial_message_timer(now, conn),
                Timer::IdleConnection(conn) => self.idle_timer(now, conn),
                Timer::ClusterDeadline(id) => self.cluster_deadline(now, id),
                Timer::ClusterWatchExpiry(id) => self.cluster_watch_timer(now, id),
                Timer::ClusterResyncEnd => self.cluster_resync_end(now),
                Timer::ClusterRetry => self.cluster_retry_timer(now),
                Timer::ClusterAnswer(id) => self.cluster_answer_due(id),
            }
            self.close_overflowing(now);
        }
        while let Some((sub, cseq)) = self.timers.pop_notify_due(now) {
            self.notify_timeout(now, sub, cseq);
        }
        self.close_overflowing(now);
    }

    /// Bytes written to connections and not yet handed out by [`Server::poll_action`]: a
    /// runtime that handles inputs in batches drains early when this grows large.
    pub fn pending_output(&mut self) -> usize {
        self.output.unflushed()
    }

    /// Closes the connections whose output since the last drain passed `max-pending-output`
    /// (one request can ask for a lot: a refresh of a large list is its full state), dropping
    /// that output; what depended on them ends as if they had failed.
    pub(crate) fn close_overflowing(&mut self, now: Instant) {
        for conn in self.output.take_over() {
            if !self.forget_conn(conn) {
                continue;
            }
            warn!(
                ?conn,
                limit = self.config.max_pending_output,
                "closing a connection: its output since the last write passed max-pending-output"
            );
            self.stats.output_overflows += 1;
            self.output.abort(conn);
            self.subscriptions_lost_connection(now, conn);
        }
    }

    /// The next action to perform, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.output.poll()
    }

    /// The next instant at which [`Server::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.len(),
            presentities: self.presentities.len(),
            publications: self.publications.len(),
            subscriptions: self.subscriptions.len(),
            timers: self.timers.len(),
            queries_issued: self.accounts.issued(),
            list_subscriptions: self.subscriptions.lists(),
            ..self.stats.clone()
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    /// Removes a connection from the tables; false if it was unknown.
    fn forget_conn(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.remove(&conn) else {
            return false;
        };
        if let Some(addr) = c.remote
            && self.conn_by_addr.get(&addr) == Some(&conn)
        {
            self.conn_by_addr.remove(&addr);
        }
        self.conn_by_target.retain(|_, c| *c != conn);
        true
    }

    /// Closes a connection on our side (after what was written to it).
    fn close(&mut self, now: Instant, conn: ConnId) {
        if self.forget_conn(conn) {
            self.output.close(conn);
            self.subscriptions_lost_connection(now, conn);
        }
    }

    /// The connection to send on towards `target`: an open one to that address, or a new one.
    fn conn_to(&mut self, now: Instant, target: Target) -> ConnId {
        let addr = target.socket_addr();
        let key = (target.host.to_ascii_lowercase(), target.port);
        let existing = match addr {
            Some(addr) => self.conn_by_addr.get(&addr),
            None => self.conn_by_target.get(&key),
        };
        if let Some(c) = existing {
            return *c;
        }
        let id = self.alloc_conn();
        let c = Connection::new(addr, self.config.max_message_size, now);
        self.conns.insert(id, c);
        self.arm_idle(now, id);
        match addr {
            Some(addr) => self.conn_by_addr.insert(addr, id),
            None => self.conn_by_target.insert(key, id),
        };
        self.output.connect(Action::Connect { conn: id, target });
        id
    }

    fn arm_idle(&mut self, now: Instant, conn: ConnId) {
        if let Some(idle) = self.config.idle_connection_timeout {
            self.timers.arm(now + idle, Timer::IdleConnection(conn));
        }
    }

    /// Closes `conn` if the incomplete message it holds started arriving too long ago.
    fn partial_message_timer(&mut self, now: Instant, conn: ConnId) {
        let timeout = self.config.partial_message_timeout;
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.partial_since.is_some_and(|t| t + timeout <= now) {
            warn!(
                ?conn,
                remote = ?c.remote,
                buffered = c.framer.buffered(),
                "closing connection: incomplete message pending too long (partial-message-timeout)"
            );
            self.stats.partial_message_timeouts += 1;
            self.close(now, conn);
        }
    }

    /// Closes `conn` if nothing went through it for `idle-connection-timeout` and no
    /// subscription uses it; otherwise re-arms the check.
    fn idle_timer(&mut self, now: Instant, conn: ConnId) {
        let Some(idle) = self.config.idle_connection_timeout else {
            return;
        };
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let due = c.last_activity + idle;
        if due > now {
            self.timers.arm(due, Timer::IdleConnection(conn));
            return;
        }
        let used =
            c.subscriptions > 0 || self.subscriptions.map.values().any(|s| s.notifies_on(conn));
        if used {
            self.timers.arm(now + idle, Timer::IdleConnection(conn));
            return;
        }
        info!(?conn, remote = ?c.remote, "closing idle connection (idle-connection-timeout)");
        self.stats.idle_connection_timeouts += 1;
        self.close(now, conn);
    }

    fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    fn handle_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: Option<SocketAddr>,
        raw: Bytes,
    ) {
        let msg = match Message::parse(raw.clone(), self.config.max_headers) {
            Ok(m) => m,
            Err(e) => {
                // The framing is intact: the connection is kept, the message answered if it can
                // be (RFC 3261 §8.2, §21.4.1, §21.5.6) and dropped otherwise.
                debug!(?conn, ?remote, reason = e.reason, "unparsable message");
                self.stats.protocol_errors += 1;
                let (code, reason) = if e.is_unsupported_version() {
                    (505, "Version Not Supported".to_owned())
                } else {
                    (400, bad_request_reason(e.reason))
                };
                self.answer_unparsable(conn, remote, &raw, code, &reason, e.reason);
                return;
            }
        };
        if msg.is_request() {
            self.stats.requests_received += 1;
            self.handle_request(now, conn, remote, &msg);
        } else {
            self.handle_response(now, &msg);
        }
    }

    pub(crate) fn handle_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: Option<SocketAddr>,
        msg: &Message,
    ) {
        let remote = remote.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        if msg.method() == Some(&Method::Ack) {
            // Never answered (RFC 3261 §17.2.1); no transaction of ours expects one.
            return;
        }
        if !answerable(&msg.headers) {
            warn!(?conn, %remote, "dropping a request without Via or CSeq: no response can be built");
            self.stats.protocol_errors += 1;
            return;
        }
        let info = match request_info(msg) {
            Ok(info) => info,
            Err(problem) => {
                debug!(?conn, %remote, problem, "bad request");
                self.stats.protocol_errors += 1;
                let w = warning(problem);
                let reason = bad_request_reason(problem);
                self.respond(conn, remote, msg, 400, &reason, &[("Warning", &w)]);
                return;
            }
        };
        if let Some(Method::Other(_)) = msg.method() {
            // A method we do not know (RFC 3261 §21.5.2; RFC 4475 §3.1.1.2, §3.1.2.18).
            self.respond(
                conn,
                remote,
                msg,
                501,
                "Not Implemented",
                &[("Allow", b"PUBLISH, SUBSCRIBE")],
            );
            return;
        }
        if !cseq_matches(msg, &info) {
            let problem = "CSeq method does not match the request";
            self.stats.protocol_errors += 1;
            let w = warning(problem);
            let reason = bad_request_reason(problem);
            self.respond(conn, remote, msg, 400, &reason, &[("Warning", &w)]);
            return;
        }
        match msg.method() {
            Some(Method::Publish) => self.handle_publish(now, conn, remote, msg, &info),
            Some(Method::Subscribe) => self.handle_subscribe(now, conn, remote, msg, &info),
            // Methods we know but do not serve (RFC 3261 §8.2.1; for OPTIONS the answer an
            // INVITE would get, §11.2).
            _ => self.respond(
                conn,
                remote,
                msg,
                405,
                "Method Not Allowed",
                &[("Allow", b"PUBLISH, SUBSCRIBE")],
            ),
        }
    }

    /// Answers a message that cannot be parsed, from what [`Message::salvage`] recovers of it:
    /// a request with a Via and a CSeq gets `code` (a Warning says `problem`); responses, ACKs
    /// and requests without them are dropped. Leaves the connection as it is.
    fn answer_unparsable(
        &mut self,
        conn: ConnId,
        remote: Option<SocketAddr>,
        raw: &Bytes,
        code: u16,
        reason: &str,
        problem: &str,
    ) {
        let Some(salvaged) = Message::salvage(raw, self.config.max_headers) else {
            warn!(?conn, ?remote, problem, "dropping a malformed message");
            return;
        };
        if salvaged.is_response {
            debug!(?conn, ?remote, problem, "dropping a malformed response");
            return;
        }
        if is_ack(salvaged.method.as_ref(), &salvaged.headers) {
            debug!(?conn, ?remote, problem, "dropping a malformed ACK");
            return;
        }
        if !answerable(&salvaged.headers) {
            warn!(
                ?conn,
                ?remote,
                problem,
                "dropping a malformed request without Via or CSeq: no response can be built"
            );
            return;
        }
        if !self.is_open(conn) {
            return;
        }
        debug!(
            ?conn,
            ?remote,
            code,
            problem,
            "answering a malformed request"
        );
        self.stats.requests_received += 1;
        self.stats.responses_sent += 1;
        self.stats.count_response(salvaged.method.as_ref(), code);
        let remote = remote.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let tag = self.rng.token(10);
        let w = warning(problem);
        let out = self.output.buffer(conn);
        write_response_to(
            out,
            &salvaged.headers,
            remote,
            code,
            reason,
            Some(&tag),
            &[("Warning", &w)],
            &self.config.user_agent,
        );
    }

    fn handle_response(&mut self, now: Instant, msg: &Message) {
        let Some(code) = msg.status() else { return };
        let Some(via) = msg.header(&HeaderName::Via) else {
            return;
        };
        // The responses we get answer our NOTIFYs and echo our Via as we wrote it: its branch
        // is found without parsing the whole header (the NOTIFY path's busiest step), and
        // anything else goes through the parser.
        if let Some(branch) = top_branch(via) {
            self.notify_response(now, branch, code);
            return;
        }
        let Some(branch) = Via::parse_list(via)
            .and_then(|vias| vias.into_iter().next())
            .and_then(|v| v.branch().map(str::to_owned))
        else {
            return;
        };
        self.notify_response(now, &branch, code);
    }

    /// Answers with an error.
    pub(crate) fn refuse(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        r: response::Refusal,
    ) {
        let extra: Vec<(&str, &[u8])> = r.2.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        self.respond(conn, remote, msg, r.0, r.1, &extra);
    }

    /// Writes a response (no dialog: a fresh To tag when the request has none).
    fn respond(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let tag = self.rng.token(10);
        self.respond_tagged(conn, remote, msg, code, reason, &tag, extra);
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_tagged(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        code: u16,
        reason: &str,
        to_tag: &str,
        extra: &[(&str, &[u8])],
    ) {
        if !self.is_open(conn) {
            return;
        }
        self.stats.responses_sent += 1;
        self.stats.count_response(msg.method(), code);
        let out = self.output.buffer(conn);
        write_response(
            out,
            msg,
            remote,
            code,
            reason,
            Some(to_tag),
            extra,
            &self.config.user_agent,
        );
    }
}

/// The `branch` of the first value of a Via header line written without quoted strings or
/// blanks around the parameter (as we write ours); None: let the parser decide.
fn top_branch(via: &[u8]) -> Option<&str> {
    let end = memchr::memchr(b',', via).unwrap_or(via.len());
    let first = &via[..end];
    if memchr::memchr(b'"', first).is_some() {
        return None;
    }
    let at = memchr::memmem::find(first, b";branch=")?;
    let rest = &first[at + b";branch=".len()..];
    let len = rest
        .iter()
        .position(|b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(rest.len());
    let branch = std::str::from_utf8(&rest[..len]).ok()?;
    // The parser would refuse a branch that is not a token.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
    (!branch.is_empty() && branch.bytes().all(token)).then_some(branch)
}

#[cfg(test)]
mod tests {
    use super::top_branch;
    use crate::sip::Via;
    use proptest::prelude::*;

    /// What the parser says the top branch is.
    fn parsed(via: &[u8]) -> Option<String> {
        Via::parse_list(via)
            .and_then(|v| v.into_iter().next())
            .and_then(|v| v.branch().map(str::to_owned))
    }

    #[test]
    fn the_fast_branch_is_the_parsers_or_nothing() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                b"SIP/2.0/TCP 10.0.0.1:5065;branch=z9hG4bKab.12.3",
                Some("z9hG4bKab.12.3"),
            ),
            (
                b"SIP/2.0/TCP h;branch=z9hG4bK1;received=1.2.3.4",
                Some("z9hG4bK1"),
            ),
            (
                b"SIP/2.0/TCP h;branch=z9hG4bK1, SIP/2.0/UDP p;branch=z9hG4bK2",
                Some("z9hG4bK1"),
            ),
            (b"SIP/2.0/TCP h;rport;branch=z9hG4bK1 ", Some("z9hG4bK1")),
            // Left to the parser.
            (b"SIP/2.0/TCP h ; branch=z9hG4bK1", None),
            (b"SIP/2.0/TCP h;x=\"a,b\";branch=z9hG4bK1", None),
            (b"SIP/2.0/TCP h, SIP/2.0/TCP p;branch=z9hG4bK2", None),
            (b"SIP/2.0/TCP h;branch=", None),
            (b"SIP/2.0/TCP h;branch=a\"b", None),
        ];
        for (via, want) in cases {
            assert_eq!(top_branch(via), *want, "{}", String::from_utf8_lossy(via));
            if let Some(b) = want {
                assert_eq!(parsed(via).as_deref(), Some(*b));
            }
        }
    }

    proptest! {
        /// Whenever both answer, they agree (Via lines built from pieces that include
        /// separators, quotes and blanks): the fast path never finds another branch than the
        /// one the parser would (on what the parser refuses, a branch of ours still
        /// acknowledges our NOTIFY, no worse than a well-formed copy of it).
        #[test]
        fn the_fast_branch_agrees_with_the_parser(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("SIP/2.0/TCP h:5060".to_owned()),
                    Just(";branch=".to_owned()),
                    Just(";rport".to_owned()),
                    Just(";received=1.2.3.4".to_owned()),
                    Just(", ".to_owned()),
                    Just("\"".to_owned()),
                    Just(" ".to_owned()),
                    "[a-zA-Z0-9.]{0,12}",
                ],
                1..8,
            )
        ) {
            let via = parts.concat();
            if let (Some(b), Some(full)) = (top_branch(via.as_bytes()), parsed(via.as_bytes())) {
                prop_assert_eq!(full.as_str(), b, "{}", via);
            }
        }
    }
}
