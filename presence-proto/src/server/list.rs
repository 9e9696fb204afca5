//! Resource list subscriptions (RFC 4662) with the list in the SUBSCRIBE body (RFC 5367):
//! reading the list, RLMI + multipart/related NOTIFYs (full state, then batched partial state),
//! `notify-limit` splitting, and deflate both ways.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info};

use super::response::{Refusal, bad_request};
use super::subscription::Kind;
use super::timers::Timer;
use super::{Server, SubId};
use crate::cluster::StoredList;
use crate::sip::{ContentType, HeaderName, Message, StartLine, Uri, token_list};
use crate::{encoding, multipart, resource_lists, rlmi};

/// The state of one list subscription.
#[derive(Debug)]
pub(crate) struct ListState {
    /// The list URI (the SUBSCRIBE's Request-URI, as written).
    uri: String,
    /// Host part of `Content-ID`s.
    cid_host: String,
    pub(crate) resources: Vec<Resource>,
    /// RLMI version of the next NOTIFY.
    version: u32,
    /// Resources with changes to send, oldest first.
    pending: VecDeque<u32>,
    last_sent: Option<Instant>,
    /// Deadline of the armed batching timer.
    timer: Option<Instant>,
    /// The subscriber accepts `Content-Encoding: deflate`.
    deflate: bool,
    boundary: String,
}

impl ListState {
    /// Its state in the cluster store's dialog record, the RLMI version ceiling `margin` above
    /// the next version.
    pub(crate) fn stored(&self, margin: u32) -> StoredList {
        StoredList {
            uri: self.uri.clone(),
            cid_host: self.cid_host.clone(),
            deflate: self.deflate,
            boundary: self.boundary.clone(),
            version_ceiling: self.version.saturating_add(margin),
            resources: self
                .resources
                .iter()
                .map(|r| (r.uri.clone(), r.key.clone(), r.name.clone()))
                .collect(),
        }
    }

    /// A list subscription taken over from another node: versions continue above the stored
    /// ceiling.
    pub(crate) fn from_stored(l: StoredList) -> ListState {
        ListState {
            uri: l.uri,
            cid_host: l.cid_host,
            resources: l
                .resources
                .into_iter()
                .map(|(uri, key, name)| Resource {
                    uri,
                    key,
                    name,
                    extended: false,
                    pending: false,
                    announced: false,
                })
                .collect(),
            version: l.version_ceiling.saturating_add(1),
            pending: VecDeque::new(),
            last_sent: None,
            timer: None,
            deflate: l.deflate,
            boundary: l.boundary,
        }
    }
}

/// One entry of the list.
#[derive(Debug)]
pub(crate) struct Resource {
    /// As the client wrote it: clients match resources by string.
    pub(crate) uri: String,
    /// AOR key of the presentity.
    pub(crate) key: String,
    name: Option<String>,
    /// Whether the subscriber may see this presentity's published state.
    pub(crate) extended: bool,
    /// Queued in `pending`.
    pending: bool,
    /// The subscriber was last told a known state (so a loss of state must be told too).
    announced: bool,
}

/// Why a list SUBSCRIBE cannot be served now.
#[derive(Debug)]
pub(crate) enum ListError {
    /// Answer with this error.
    Refuse(Refusal),
    /// The list is server-known: ask the database first.
    NeedMembers,
}

/// What a list NOTIFY carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListBody {
    /// Every resource, with instances for known states (up to `notify-limit`).
    Full,
    /// Pending resources only (up to `notify-limit`).
    Changes,
    /// No resource (a final NOTIFY).
    Empty,
}

const RLMI_TYPE: &str = "application/rlmi+xml;charset=\"UTF-8\"";
const PIDF_TYPE: &str = "application/pidf+xml;charset=\"UTF-8\"";

impl Server {
    /// Reads the list a SUBSCRIBE carries (RFC 5367), or the reason to refuse it.
    pub(crate) fn list_from_request(
        &mut self,
        msg: &Message,
        request_uri: &Uri,
        watcher: &str,
    ) -> Result<ListState, ListError> {
        let entries = match msg.header(&HeaderName::ContentType) {
            // A bodyless list SUBSCRIBE asks for a list the server knows.
            None => match self.accounts.prefetched.clone() {
                Some(members) => members,
                None if self.config.server_known_lists => return Err(ListError::NeedMembers),
                None => {
                    let mut r = vec![("Accept", b"application/resource-lists+xml".to_vec())];
                    let w = super::response::warning("No server-known resource lists here");
                    r.push(("Warning", w));
                    return Err(ListError::Refuse((415, "Unsupported Media Type", r)));
                }
            },
            Some(ct) => self.list_from_body(msg, ct).map_err(ListError::Refuse)?,
        };
        self.list_from_entries(msg, request_uri, watcher, entries)
    }

    /// Reads the resource-lists body of a list SUBSCRIBE (inflating it if needed).
    fn list_from_body(
        &mut self,
        msg: &Message,
        ct: &[u8],
    ) -> Result<Vec<resource_lists::Entry>, Refusal> {
        let accept_lists = || vec![("Accept", b"application/resource-lists+xml".to_vec())];
        if !ContentType::parse(ct).is_some_and(|c| c.is("application/resource-lists+xml")) {
            return Err((415, "Unsupported Media Type", accept_lists()));
        }
        let mut body: Vec<u8> = msg.body.to_vec();
        for v in msg.headers_named(&HeaderName::ContentEncoding) {
            for coding in token_list(v) {
                if coding.eq_ignore_ascii_case(b"deflate") {
                    if body.is_empty() {
                        continue;
                    }
                    body = match encoding::inflate(&body, self.config.max_inflated_size) {
                        Ok(b) => b,
                        Err(encoding::InflateError::TooLarge) => {
                            let w = super::response::warning("Inflated body too large");
                            return Err((413, "Request Entity Too Large", vec![("Warning", w)]));
                        }
                        Err(encoding::InflateError::Corrupt) => {
                            return Err(bad_request("Cannot inflate body"));
                        }
                    };
                } else if !coding.eq_ignore_ascii_case(b"identity") {
                    let a = vec![("Accept-Encoding", b"deflate".to_vec())];
                    return Err((415, "Unsupported Media Type", a));
                }
            }
        }
        if body.is_empty() {
            return Err(bad_request("Body is empty"));
        }
        match resource_lists::parse(&body, self.config.max_list_entries) {
            Ok(e) => Ok(e),
            Err(resource_lists::ResourceListsError::TooManyEntries { max }) => {
                let w = super::response::warning(&format!("More than {max} list entries"));
                Err((413, "Request Entity Too Large", vec![("Warning", w)]))
            }
            Err(resource_lists::ResourceListsError::Invalid(e)) => {
                Err(bad_request(&format!("Cannot parse body: {e}")))
            }
        }
    }

    /// The list state for these entries (presentities created as needed).
    fn list_from_entries(
        &mut self,
        msg: &Message,
        request_uri: &Uri,
        watcher: &str,
        entries: Vec<resource_lists::Entry>,
    ) -> Result<ListState, ListError> {
        let mut resources = Vec::with_capacity(entries.len());
        for e in entries {
            // Entries without user or host cannot be presentities (as in Flexisip): skipped.
            let Some(uri) = Uri::parse(e.uri.as_bytes()).filter(|u| u.user.is_some()) else {
                debug!(entry = %e.uri, "list entry skipped: not a SIP URI with a user part");
                continue;
            };
            let key = uri.aor_key();
            resources.push(Resource {
                uri: e.uri,
                key,
                name: e.name,
                extended: false,
                pending: false,
                announced: false,
            });
        }
        let uri = match &msg.start {
            StartLine::Request { uri, .. } => String::from_utf8_lossy(uri).into_owned(),
            StartLine::Response { .. } => String::new(),
        };
        info!(%watcher, list = %uri, entries = resources.len(), "list subscription");
        let deflate = encoding::accepts_deflate(
            msg.headers_named(&HeaderName::AcceptEncoding)
                .map(|v| &v[..]),
        );
        Ok(ListState {
            uri,
            cid_host: request_uri.host.clone(),
            resources,
            version: 0,
            pending: VecDeque::new(),
            last_sent: None,
            timer: None,
            deflate,
            boundary: self.rng.token(24),
        })
    }

    /// Builds a list NOTIFY body and its Content-Type/Content-Encoding lines; None when a
    /// `Changes` NOTIFY would carry no resource.
    pub(crate) fn list_body(
        &mut self,
        now: Instant,
        id: SubId,
        what: ListBody,
    ) -> Option<(Vec<u8>, Bytes)> {
        let legacy = self.config.support_legacy_client;
        let limit = self.config.notify_limit.max(1);
        let overflow = self.config.list_overflow_delay;
        let Some(Kind::List(l)) = self.subscriptions.map.get_mut(&id).map(|s| &mut s.kind) else {
            return None;
        };
        let mut doc = rlmi::List {
            uri: l.uri.clone(),
            version: l.version,
            full_state: what == ListBody::Full,
            resources: Vec::new(),
        };
        // (cid, presentity key, access to published state)
        let mut parts: Vec<(String, String, bool)> = Vec::new();
        let cid = |rng: &mut crate::rng::Rng| {
            let mut c = rng.token(7);
            c.push('@');
            c.push_str(&l.cid_host);
            c
        };
        match what {
            ListBody::Full => {
                l.pending.clear();
                for (i, r) in l.resources.iter_mut().enumerate() {
                    r.pending = false;
                    let mut res = rlmi::Resource {
                        uri: r.uri.clone(),
                        name: r.name.clone(),
                        instances: Vec::new(),
                    };
                    let known = self.presentities.known(&r.key, r.extended);
                    if known && parts.len() < limit {
                        let c = cid(&mut self.rng);
                        res.instances.push(instance(&c));
                        parts.push((c, r.key.clone(), r.extended));
                        r.announced = true;
                    } else if known {
                        r.pending = true;
                        l.pending.push_back(i as u32);
                    } else {
                        r.announced = false;
                    }
                    doc.resources.push(res);
                }
            }
            ListBody::Changes => {
                while parts.len() < limit {
                    let Some(i) = l.pending.pop_front() else {
                        break;
                    };
                    let Some(r) = l.resources.get_mut(i as usize) else {
                        continue;
                    };
                    r.pending = false;
                    let known = self.presentities.known(&r.key, r.extended);
                    if !known && !r.announced {
                        continue;
                    }
                    // A state lost (unpublished, or access revoked) is told with the restricted document.
                    r.announced = known;
                    let c = cid(&mut self.rng);
                    let res = rlmi::Resource {
                        uri: r.uri.clone(),
                        name: r.name.clone(),
                        instances: vec![instance(&c)],
                    };
                    parts.push((c, r.key.clone(), r.extended));
                    doc.resources.push(res);
                }
                if doc.resources.is_empty() {
                    return None;
                }
            }
            ListBody::Empty => {}
        }
        l.version += 1;
        l.last_sent = Some(now);
        let boundary = l.boundary.clone();
        let deflate = l.deflate;
        let more = !l.pending.is_empty();
        if more && l.timer.is_none() {
            l.timer = Some(now + overflow);
            self.timers.arm(now + overflow, Timer::ListNotify(id));
        }

        let rlmi_cid = cid(&mut self.rng);
        let mut body = Vec::with_capacity(1024 + parts.len() * 1024);
        let mut cid_field = String::new();
        let mut write_cid = |c: &str| -> String {
            cid_field.clear();
            if !legacy {
                cid_field.push('<');
            }
            cid_field.push_str(c);
            if !legacy {
                cid_field.push('>');
            }
            cid_field.clone()
        };
        multipart::write_part_head(&mut body, &boundary, &write_cid(&rlmi_cid), RLMI_TYPE);
        rlmi::write(&doc, &mut body);
        multipart::write_part_end(&mut body);
        for (c, key, full) in &parts {
            let pidf = self
                .presentities
                .document(key, *full, &self.publications, now);
            multipart::write_part_head(&mut body, &boundary, &write_cid(c), PIDF_TYPE);
            body.extend_from_slice(&pidf);
            multipart::write_part_end(&mut body);
        }
        multipart::write_close(&mut body, &boundary);

        let mut lines = Vec::with_capacity(160);
        lines.extend_from_slice(
            b"Content-Type: multipart/related;type=\"application/rlmi+xml\";start=\"<",
        );
        lines.extend_from_slice(rlmi_cid.as_bytes());
        lines.extend_from_slice(b">\";boundary=");
        lines.extend_from_slice(boundary.as_bytes());
        lines.extend_from_slice(b"\r\n");
        if deflate && let Some(compressed) = encoding::deflate_if_smaller(&body) {
            lines.extend_from_slice(b"Content-Encoding: deflate\r\n");
            return Some((lines, Bytes::from(compressed)));
        }
        Some((lines, Bytes::from(body)))
    }

    /// A resource of a list changed (state or access): queue it, and send now or when the
    /// batching interval allows.
    pub(crate) fn list_changed(&mut self, now: Instant, id: SubId, resource: u32) {
        let interval = self.config.list_notify_interval;
        let Some(Kind::List(l)) = self.subscriptions.map.get_mut(&id).map(|s| &mut s.kind) else {
            return;
        };
        let Some(r) = l.resources.get_mut(resource as usize) else {
            return;
        };
        if !r.pending {
            r.pending = true;
            l.pending.push_back(resource);
        }
        if l.timer.is_some() {
            return;
        }
        let due = l.last_sent.map_or(now, |t| t + interval);
        if due <= now {
            self.send_notify(
                now,
                id,
                super::subscription::Notify::Active,
                super::subscription::Content::Changes,
            );
        } else {
            l.timer = Some(due);
            self.timers.arm(due, Timer::ListNotify(id));
        }
    }

    /// The batching timer of a list fired.
    pub(crate) fn list_timer(&mut self, now: Instant, id: SubId) {
        let Some(Kind::List(l)) = self.subscriptions.map.get_mut(&id).map(|s| &mut s.kind) else {
            return;
        };
        match l.timer {
            Some(t) if t <= now => l.timer = None,
            _ => return,
        }
        self.send_notify(
            now,
            id,
            super::subscription::Notify::Active,
            super::subscription::Content::Changes,
        );
    }
}

fn instance(cid: &str) -> rlmi::Instance {
    rlmi::Instance {
        id: "1".to_owned(),
        state: "active".to_owned(),
        reason: None,
        cid: Some(cid.to_owned()),
    }
}
