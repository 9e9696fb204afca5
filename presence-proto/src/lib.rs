//! `presence-proto`: the sans-IO core of a SIP presence server.
//!
//! No sockets, no async, no threads, no clock reads: the [`Server`] consumes inputs (connection
//! opened/closed, bytes received, timer expiry) with the current time passed in, and is polled for
//! actions (bytes to send, connections to open or close) and for its next deadline.

pub mod cluster;
pub mod config;
pub mod encoding;
#[doc(hidden)]
pub mod fuzzing;
pub mod multipart;
pub mod pidf;
pub mod query;
pub mod resource_lists;
pub mod rlmi;
pub mod rng;
pub mod server;
pub mod sip;
mod xml;

pub use cluster::{
    ClusterConfig, ClusterError, ClusterEvent, ClusterOp, ClusterOpId, ClusterReply, Snapshot,
    StoredDialog, StoredPublication,
};
pub use config::Config;
pub use query::{AccountRow, Query, QueryError, QueryId, QueryResult};
pub use server::{Action, ConnId, Server, Stats, Target};
