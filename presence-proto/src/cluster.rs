//! Cluster work as data: what the core asks of the shared store ([`ClusterOp`], in an
//! `Action::Cluster`), what it is told back ([`crate::Server::cluster_result`]) and what the store
//! tells it unasked ([`ClusterEvent`], through [`crate::Server::cluster_event`]). No Redis here:
//! the daemon's adapter maps each operation to Redis commands and scripts (see
//! `server/cluster.rs` for the design and the key layout).

use std::time::Duration;

use bytes::Bytes;

/// Cluster mode of the core (`Config::cluster`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name in the store (who wrote a publication, whose change an event is); must
    /// differ between nodes. Empty: a random token drawn by the core.
    pub node: String,
    /// An operation without a result after this long counts as failed (`cluster-timeout`).
    pub timeout: Duration,
}

/// Identifies one cluster operation, allocated by the core in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterOpId(pub u64);

/// What to do in the shared store. AORs are the core's presentity keys (`user@host`, with
/// `;user=phone` kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOp {
    /// Start receiving the change events of `aor` (subscribe to its channel), then read its
    /// state: answered with [`ClusterReply::Snapshot`].
    Follow { aor: String },
    /// Stop receiving the change events of `aor`. Answered with [`ClusterReply::Done`].
    Unfollow { aor: String },
    /// Read the state of `aor`: [`ClusterReply::Snapshot`].
    Fetch { aor: String },
    /// Store a publication of `aor` under `etag` for `expires` (removing the one stored under
    /// `replaces`, its former ETag, for a refresh or a modification), keep at most `max` per
    /// presentity (the oldest go), and announce the change. Answered with
    /// [`ClusterReply::Done`].
    Publish {
        aor: String,
        etag: String,
        replaces: Option<String>,
        expires: Duration,
        /// [`encode_payload`]'s bytes.
        payload: Bytes,
        max: usize,
    },
    /// Remove a publication and announce the change. [`ClusterReply::Done`].
    Unpublish { aor: String, etag: String },
    /// Read one publication: [`ClusterReply::Publication`].
    Lookup { aor: String, etag: String },
    /// Record (for `expires`) or forget (`expires` zero) that `watcher` watches `presentities`
    /// through the subscription dialog `dialog`; with `announce`, tell the nodes that follow
    /// `watcher` (its watch set changed). [`ClusterReply::Done`].
    Watch {
        watcher: String,
        dialog: String,
        presentities: Vec<String>,
        expires: Duration,
        announce: bool,
    },
}

/// One stored publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPublication {
    pub etag: String,
    /// Time left before it expires.
    pub expires: Duration,
    /// [`encode_payload`]'s bytes.
    pub payload: Bytes,
}

/// The shared state of one presentity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Its live publications, oldest first.
    pub publications: Vec<StoredPublication>,
    /// Whom it watches (presentity keys), each with the time left before the last of its
    /// subscriptions to them expires.
    pub watches: Vec<(String, Duration)>,
}

/// What an operation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterReply {
    Done,
    Snapshot(Snapshot),
    Publication(Option<StoredPublication>),
}

/// Why an operation failed (store unreachable, timeout, bad reply): logged, and the request that
/// waited on it is answered from the node's own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterError(pub String);

/// What the store tells the core unasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// The state of `aor` (its publications or whom it watches) was changed by node `origin`.
    Changed { aor: String, origin: String },
    /// The store is reachable again (or for the first time) and change events flow: the core
    /// resynchronises.
    Connected,
    /// The store became unreachable: change events are lost until [`ClusterEvent::Connected`].
    Disconnected,
}

/// Version tag of the stored publication format.
const PAYLOAD_VERSION: &[u8] = b"P1\n";

/// A stored publication: `P1\n`, the node that wrote it, the presentity's entity URI, each on
/// its line, then the PIDF document as published.
pub fn encode_payload(node: &str, entity: &str, pidf: &[u8]) -> Bytes {
    let mut out =
        Vec::with_capacity(PAYLOAD_VERSION.len() + node.len() + entity.len() + 2 + pidf.len());
    out.extend_from_slice(PAYLOAD_VERSION);
    out.extend_from_slice(node.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(entity.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(pidf);
    Bytes::from(out)
}

/// A decoded stored publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub node: String,
    pub entity: String,
    pub pidf: Bytes,
}

/// Reads [`encode_payload`]'s bytes; None for another version or garbage.
pub fn decode_payload(payload: &Bytes) -> Option<Payload> {
    let rest = payload.strip_prefix(PAYLOAD_VERSION)?;
    let nl = memchr::memchr(b'\n', rest)?;
    let node = std::str::from_utf8(&rest[..nl]).ok()?;
    let rest2 = &rest[nl + 1..];
    let nl2 = memchr::memchr(b'\n', rest2)?;
    let entity = std::str::from_utf8(&rest2[..nl2]).ok()?;
    let start = payload.len() - rest2.len() + nl2 + 1;
    Some(Payload {
        node: node.to_owned(),
        entity: entity.to_owned(),
        pidf: payload.slice(start..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = encode_payload("n1", "sip:a@b", b"<presence/>\n");
        let d = decode_payload(&p).unwrap();
        assert_eq!(d.node, "n1");
        assert_eq!(d.entity, "sip:a@b");
        assert_eq!(&d.pidf[..], b"<presence/>\n");
        assert!(decode_payload(&Bytes::from_static(b"P2\nx\ny\nz")).is_none());
        assert!(decode_payload(&Bytes::from_static(b"P1\nx")).is_none());
    }
}
