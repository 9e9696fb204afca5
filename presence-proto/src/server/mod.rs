//! The presence server state machine.
//!
//! Drive it like quinn-proto's `Connection`: after every `handle_*` call (or connection event),
//! drain [`Server::poll_action`] until it returns `None`, then sleep until
//! [`Server::poll_timeout`] (or the next input) and call [`Server::handle_timeout`]. `now` must
//! never go backwards; spurious timeouts are no-ops.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::config::Config;

/// A transport connection, allocated by the core (for inbound and outbound connections alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where an outbound connection must go: a host (IP literal or DNS name) and port, over TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
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
}

/// Counters (Flexisip's statistics and more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    pub presentities: usize,
    pub publications: usize,
    pub subscriptions: usize,
    pub notifies_sent: u64,
    pub notify_failures: u64,
    pub requests_received: u64,
}

/// The presence server: all state of one shard.
#[derive(Debug)]
pub struct Server {
    config: Config,
}

impl Server {
    /// Creates a server. `seed` feeds the generator for tags and ETags.
    pub fn new(config: Config, now: Instant, seed: u64) -> Server {
        let _ = (now, seed);
        Server { config }
    }
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// An inbound connection was accepted.
    pub fn connection_opened(&mut self, now: Instant, remote: SocketAddr, local: SocketAddr) -> ConnId {
        todo!("{now:?} {remote} {local}")
    }
    /// Bytes arrived on a connection.
    pub fn connection_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        todo!("{now:?} {conn:?} {data:?}")
    }
    /// A connection was closed by the peer, failed, or could not be established.
    pub fn connection_closed(&mut self, now: Instant, conn: ConnId) {
        todo!("{now:?} {conn:?}")
    }
    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        todo!("{now:?}")
    }
    /// The next action to perform, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        todo!()
    }
    /// The next instant at which [`Server::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    /// Current counters.
    pub fn stats(&self) -> Stats {
        todo!()
    }
}
