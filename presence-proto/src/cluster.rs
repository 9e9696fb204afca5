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
    /// Store (for `expires`) the record of the subscription dialog `call_id`/`tag` (our tag),
    /// [`encode_dialog`]'s bytes, or (`expires` zero, `record` empty) remove it. Either only
    /// when no record is stored or the stored one was written by this node or by `previous`
    /// (the node this one took the dialog over from): a dialog another node took over since
    /// stays, and a write refused so is answered [`ClusterReply::Taken`]. When the stored
    /// record was `previous`'s, that node is told ([`ClusterEvent::DialogTaken`] on its side)
    /// so that it stops serving its copy. [`ClusterReply::Done`] otherwise.
    Dialog {
        call_id: String,
        tag: String,
        expires: Duration,
        record: Bytes,
        previous: Option<String>,
    },
    /// Read the record of a subscription dialog: [`ClusterReply::Dialog`].
    LookupDialog { call_id: String, tag: String },
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
    Dialog(Option<StoredDialog>),
    /// A dialog record write refused: another node holds the dialog now.
    Taken,
}

/// One stored subscription dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDialog {
    /// Time left before the subscription expires.
    pub expires: Duration,
    /// [`encode_dialog`]'s bytes.
    pub record: Bytes,
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
    /// Node `by` took over this node's subscription dialog `call_id`/`tag` (our tag): the proxy
    /// sends its requests there now, and this node drops its copy without a word (no NOTIFY,
    /// no store write: the dialog goes on from `by`).
    DialogTaken {
        call_id: String,
        tag: String,
        by: String,
    },
}

/// The message that tells a node its dialog was taken over (on its channel `P node:{name}`):
/// Call-ID, tag and the new node, one a line.
pub fn encode_taken(call_id: &str, tag: &str, by: &str) -> Bytes {
    Bytes::from(format!("{call_id}\n{tag}\n{by}"))
}

/// Reads [`encode_taken`]'s bytes as the event it stands for.
pub fn decode_taken(msg: &[u8]) -> Option<ClusterEvent> {
    let s = std::str::from_utf8(msg).ok()?;
    let mut it = s.splitn(3, '\n');
    let (call_id, tag, by) = (it.next()?, it.next()?, it.next()?);
    if call_id.is_empty() || tag.is_empty() || by.is_empty() {
        return None;
    }
    Some(ClusterEvent::DialogTaken {
        call_id: call_id.to_owned(),
        tag: tag.to_owned(),
        by: by.to_owned(),
    })
}

/// Version tag of the stored publication format (`P1`, without the instance line, is still
/// read).
const PAYLOAD_VERSION: &[u8] = b"P2\n";
const PAYLOAD_VERSION_1: &[u8] = b"P1\n";

/// A stored publication: `P2\n`, the node that wrote it, the writing process's instance token
/// (a node restarted under the same name is another instance), the presentity's entity URI,
/// each on its line, then the PIDF document as published.
pub fn encode_payload(node: &str, instance: &str, entity: &str, pidf: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(
        PAYLOAD_VERSION.len() + node.len() + instance.len() + entity.len() + 3 + pidf.len(),
    );
    out.extend_from_slice(PAYLOAD_VERSION);
    for field in [node, instance, entity] {
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(pidf);
    Bytes::from(out)
}

/// A decoded stored publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub node: String,
    /// Empty for the `P1` format.
    pub instance: String,
    pub entity: String,
    pub pidf: Bytes,
}

/// Reads [`encode_payload`]'s bytes (or the `P1` format's); None for another version or
/// garbage.
pub fn decode_payload(payload: &Bytes) -> Option<Payload> {
    let (rest, fields) = if let Some(rest) = payload.strip_prefix(PAYLOAD_VERSION) {
        (rest, 3)
    } else {
        (payload.strip_prefix(PAYLOAD_VERSION_1)?, 2)
    };
    let mut values: Vec<&str> = Vec::with_capacity(3);
    let mut at = 0;
    for _ in 0..fields {
        let nl = memchr::memchr(b'\n', &rest[at..])?;
        values.push(std::str::from_utf8(&rest[at..at + nl]).ok()?);
        at += nl + 1;
    }
    let start = payload.len() - rest.len() + at;
    let (node, instance, entity) = match values[..] {
        [node, instance, entity] => (node, instance, entity),
        [node, entity] => (node, "", entity),
        _ => return None,
    };
    Some(Payload {
        node: node.to_owned(),
        instance: instance.to_owned(),
        entity: entity.to_owned(),
        pidf: payload.slice(start..),
    })
}

/// Version tag of the stored dialog format.
const DIALOG_VERSION: &[u8] = b"D1\n";

/// A resource-list subscription's own state in a [`DialogRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredList {
    /// The list URI, as the subscriber wrote it.
    pub uri: String,
    /// Host part of the `Content-ID`s.
    pub cid_host: String,
    pub deflate: bool,
    pub boundary: String,
    /// The RLMI versions stay below this, as the NOTIFY CSeqs below the record's ceiling.
    pub version_ceiling: u32,
    /// The resources: URI as written, presentity key, display name.
    pub resources: Vec<(String, String, Option<String>)>,
}

/// What a node needs to continue a subscription dialog another node created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogRecord {
    /// The node that wrote it (only that node removes it).
    pub node: String,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Highest CSeq seen from the subscriber.
    pub remote_cseq: u32,
    /// Watcher and presentity keys, and the presentity's entity URI (both empty for a list).
    pub watcher: String,
    pub presentity: String,
    pub entity: String,
    /// Request-URI of the NOTIFYs and where they go.
    pub request_uri: String,
    pub next_hop_host: String,
    pub next_hop_port: u16,
    pub has_routes: bool,
    /// The subscriber talks to us directly (no route set, one Via): NOTIFYs go back on the
    /// connection of its requests.
    pub direct: bool,
    pub bypass: bool,
    /// The dialog's NOTIFYs stay below this (the writing node rewrites the record halfway
    /// there): a node taking over continues after it.
    pub cseq_ceiling: u32,
    /// A resource-list subscription's state (None: a single subscription).
    pub list: Option<StoredList>,
    /// The NOTIFYs' fixed header lines.
    pub fixed: Bytes,
}

/// Writes `s` on one line, `\\` and newlines escaped.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
    out.push(b'\n');
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                '\\' => out.push('\\'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The first bytes of every dialog record `node` writes.
pub fn dialog_owner_prefix(node: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(DIALOG_VERSION.len() + node.len() + 1);
    p.extend_from_slice(DIALOG_VERSION);
    p.extend_from_slice(node.as_bytes());
    p.push(b'\n');
    p
}

/// A dialog record: `D1\n`, then one field a line (the flags as `0`/`1`); `-` for a single
/// subscription, or `L` and the list's fields, its resource count and three lines per
/// resource (URI, key, `-` or `+` then the name; escaped); then the fixed header lines up to
/// the end.
pub fn encode_dialog(d: &DialogRecord) -> Bytes {
    let mut out = dialog_owner_prefix(&d.node);
    out.reserve(256 + d.fixed.len());
    let mut num = itoa::Buffer::new();
    for field in [
        d.call_id.as_str(),
        &d.local_tag,
        &d.remote_tag,
        num.format(d.remote_cseq),
        &d.watcher,
        &d.presentity,
        &d.entity,
        &d.request_uri,
        &d.next_hop_host,
    ] {
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(num.format(d.next_hop_port).as_bytes());
    out.push(b'\n');
    for flag in [d.has_routes, d.direct, d.bypass] {
        out.push(if flag { b'1' } else { b'0' });
    }
    out.push(b'\n');
    out.extend_from_slice(num.format(d.cseq_ceiling).as_bytes());
    out.push(b'\n');
    match &d.list {
        None => out.extend_from_slice(b"-\n"),
        Some(l) => {
            out.extend_from_slice(b"L\n");
            push_escaped(&mut out, &l.uri);
            push_escaped(&mut out, &l.cid_host);
            out.extend_from_slice(if l.deflate { b"1\n" } else { b"0\n" });
            push_escaped(&mut out, &l.boundary);
            out.extend_from_slice(num.format(l.version_ceiling).as_bytes());
            out.push(b'\n');
            out.extend_from_slice(num.format(l.resources.len()).as_bytes());
            out.push(b'\n');
            for (uri, key, name) in &l.resources {
                push_escaped(&mut out, uri);
                push_escaped(&mut out, key);
                match name {
                    None => out.extend_from_slice(b"-\n"),
                    Some(n) => {
                        out.push(b'+');
                        push_escaped(&mut out, n);
                    }
                }
            }
        }
    }
    out.extend_from_slice(&d.fixed);
    Bytes::from(out)
}

/// Reads [`encode_dialog`]'s bytes; None for another version or garbage.
pub fn decode_dialog(record: &Bytes) -> Option<DialogRecord> {
    let mut rest = record.strip_prefix(DIALOG_VERSION)?;
    let mut line = || -> Option<&str> {
        let nl = memchr::memchr(b'\n', rest)?;
        let l = std::str::from_utf8(&rest[..nl]).ok()?;
        rest = &rest[nl + 1..];
        Some(l)
    };
    let node = line()?.to_owned();
    let call_id = line()?.to_owned();
    let local_tag = line()?.to_owned();
    let remote_tag = line()?.to_owned();
    let remote_cseq = line()?.parse().ok()?;
    let watcher = line()?.to_owned();
    let presentity = line()?.to_owned();
    let entity = line()?.to_owned();
    let request_uri = line()?.to_owned();
    let next_hop_host = line()?.to_owned();
    let next_hop_port = line()?.parse().ok()?;
    let flags = line()?.as_bytes().to_vec();
    let cseq_ceiling = line()?.parse().ok()?;
    let list = match line()? {
        "-" => None,
        "L" => {
            let uri = unescape(line()?)?;
            let cid_host = unescape(line()?)?;
            let deflate = line()? == "1";
            let boundary = unescape(line()?)?;
            let version_ceiling = line()?.parse().ok()?;
            let n: usize = line()?.parse().ok()?;
            let mut resources = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let uri = unescape(line()?)?;
                let key = unescape(line()?)?;
                let name = match line()? {
                    "-" => None,
                    n => Some(unescape(n.strip_prefix('+')?)?),
                };
                resources.push((uri, key, name));
            }
            Some(StoredList {
                uri,
                cid_host,
                deflate,
                boundary,
                version_ceiling,
                resources,
            })
        }
        _ => return None,
    };
    let [has_routes, direct, bypass] = flags.as_slice() else {
        return None;
    };
    let start = record.len() - rest.len();
    let fixed = record.slice(start..);
    if !writable(&request_uri, &fixed, list.as_ref()) {
        return None;
    }
    Some(DialogRecord {
        node,
        call_id,
        local_tag,
        remote_tag,
        remote_cseq,
        watcher,
        presentity,
        entity,
        request_uri,
        next_hop_host,
        next_hop_port,
        has_routes: *has_routes == b'1',
        direct: *direct == b'1',
        bypass: *bypass == b'1',
        cseq_ceiling,
        list,
        fixed,
    })
}

/// Whether what a dialog record puts into NOTIFYs as it is (the request URI, the fixed header
/// lines, a list's multipart boundary and Content-ID host) makes messages that parse: a damaged
/// record is refused rather than sent.
fn writable(request_uri: &str, fixed: &Bytes, list: Option<&StoredList>) -> bool {
    let graphic = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !graphic(request_uri) || crate::sip::Uri::parse(request_uri.as_bytes()).is_none() {
        return false;
    }
    if let Some(l) = list {
        let bchar = |b: u8| b.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&b);
        if l.boundary.is_empty() || l.boundary.len() > 70 || !l.boundary.bytes().all(bchar) {
            return false;
        }
        if !graphic(&l.cid_host) || l.cid_host.bytes().any(|b| b"<>\"@".contains(&b)) {
            return false;
        }
    }
    // Header lines, each `Name: value` and CRLF-terminated, that parse as a message's head.
    if !fixed.is_empty() && !fixed.ends_with(b"\r\n") {
        return false;
    }
    // No empty line (it would end the head), no bare CR or LF, no NUL.
    let crlf_only = fixed.iter().enumerate().all(|(i, b)| match b {
        b'\r' => fixed.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && fixed[i - 1] == b'\r',
        0 => false,
        _ => true,
    });
    if !crlf_only
        || fixed.starts_with(b"\r\n")
        || memchr::memmem::find(fixed, b"\r\n\r\n").is_some()
    {
        return false;
    }
    let mut head = Vec::with_capacity(fixed.len() + 48);
    head.extend_from_slice(b"NOTIFY sip:x SIP/2.0\r\n");
    head.extend_from_slice(fixed);
    head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    crate::sip::Message::parse(Bytes::from(head), 1000).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = encode_payload("n1", "i7", "sip:a@b", b"<presence/>\n");
        let d = decode_payload(&p).unwrap();
        assert_eq!(d.node, "n1");
        assert_eq!(d.instance, "i7");
        assert_eq!(d.entity, "sip:a@b");
        assert_eq!(&d.pidf[..], b"<presence/>\n");
        // The former format, without the instance.
        let d = decode_payload(&Bytes::from_static(b"P1\nn1\nsip:a@b\n<presence/>")).unwrap();
        assert_eq!((d.node.as_str(), d.instance.as_str()), ("n1", ""));
        assert_eq!(&d.pidf[..], b"<presence/>");
        assert!(decode_payload(&Bytes::from_static(b"P3\nx\ny\nz\nw")).is_none());
        assert!(decode_payload(&Bytes::from_static(b"P2\nx\ny")).is_none());
        assert!(decode_payload(&Bytes::from_static(b"P1\nx")).is_none());
    }

    /// A single subscription's record, as a node writes it.
    fn record() -> DialogRecord {
        DialogRecord {
            node: "n1".into(),
            call_id: "c@h".into(),
            local_tag: "lt".into(),
            remote_tag: "rt".into(),
            remote_cseq: 7,
            watcher: "bob@example.org".into(),
            presentity: "alice@example.org".into(),
            entity: "sip:alice@example.org".into(),
            request_uri: "sip:bob@127.0.0.1:5060;transport=tcp".into(),
            next_hop_host: "127.0.0.1".into(),
            next_hop_port: 5060,
            has_routes: false,
            direct: true,
            bypass: false,
            cseq_ceiling: 1003,
            list: None,
            fixed: Bytes::from_static(b"Max-Forwards: 70\r\nFrom: <sip:a@b>;tag=lt\r\n"),
        }
    }

    #[test]
    fn dialog_round_trip() {
        let d = record();
        let e = encode_dialog(&d);
        assert!(e.starts_with(&dialog_owner_prefix("n1")));
        assert_eq!(decode_dialog(&e), Some(d.clone()));
        assert!(decode_dialog(&Bytes::from_static(b"D1\nn1\nc\n")).is_none());
        let l = DialogRecord {
            presentity: String::new(),
            entity: String::new(),
            list: Some(StoredList {
                uri: "sip:friends@example.org".into(),
                cid_host: "example.org".into(),
                deflate: true,
                boundary: "b0und".into(),
                version_ceiling: 1002,
                resources: vec![
                    ("sip:a@b".into(), "a@b".into(), None),
                    ("sip:c@d".into(), "c@d".into(), Some("C \\ D\nnext".into())),
                ],
            }),
            ..d
        };
        assert_eq!(decode_dialog(&encode_dialog(&l)), Some(l));
        assert!(decode_dialog(&Bytes::from_static(b"P1\nx")).is_none());
    }

    #[test]
    fn a_record_that_would_write_broken_notifies_is_refused() {
        let d = DialogRecord {
            fixed: Bytes::from_static(b"Max-Forwards: 70\r\nContact: <sip:h>\r\n"),
            ..record()
        };
        assert!(decode_dialog(&encode_dialog(&d)).is_some());
        for fixed in [
            &b"C\x7fntact: <sip:h>\r\n"[..],
            b"Max-Forwards: 70\r\n\r\nX: y\r\n",
            b"Max-Forwards: 70\nContact: <sip:h>\r\n",
            b"Max-Forwards: 70",
            b"no colon\r\n",
        ] {
            let bad = DialogRecord {
                fixed: Bytes::copy_from_slice(fixed),
                ..d.clone()
            };
            assert!(decode_dialog(&encode_dialog(&bad)).is_none(), "{fixed:?}");
        }
        for uri in ["sip:bob@h x", "not a uri", ""] {
            let bad = DialogRecord {
                request_uri: uri.into(),
                ..d.clone()
            };
            assert!(decode_dialog(&encode_dialog(&bad)).is_none(), "{uri:?}");
        }
    }

    #[test]
    fn taken_round_trip() {
        let m = encode_taken("c@h", "lt", "n2");
        assert_eq!(
            decode_taken(&m),
            Some(ClusterEvent::DialogTaken {
                call_id: "c@h".into(),
                tag: "lt".into(),
                by: "n2".into()
            })
        );
        assert!(decode_taken(b"c@h\nlt").is_none());
        assert!(decode_taken(b"c@h\n\nn2").is_none());
        assert!(decode_taken(b"\xff\nlt\nn2").is_none());
    }
}
