//! Shared helpers for the test suites: the in-memory simulator (fake clock, fake connections,
//! fake user agents), loaders for the captured traces under `../shared/traces/`, the daemon
//! harness of the end-to-end tests, Kamailio in front of daemons (the real-proxy suites), private
//! Redis servers (and Sentinel) and shared key prefixes for the cluster suites, the user agents
//! those suites share, and the line-protocol core of the runtimes' driver tests.
pub mod cluster;
pub mod daemon;
pub mod kamailio;
pub mod line_core;
pub mod pg;
pub mod redis;
pub mod sim;
pub mod traces;

use bytes::Bytes;
use presence_proto::sip::{Header, HeaderName, Message};

/// What parsing the wire form of `m` gives back: `write_to` drops stored Content-Length headers
/// and appends a fresh one after the others.
pub fn normalized(m: &Message) -> Message {
    let mut n = m.clone();
    n.headers.retain(|h| h.name != HeaderName::ContentLength);
    n.headers.push(Header {
        name: HeaderName::ContentLength,
        value: Bytes::from(m.body.len().to_string()),
    });
    n
}
