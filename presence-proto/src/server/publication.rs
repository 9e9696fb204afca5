//! PUBLISH (RFC 3903): event state publications, their ETags and expiry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use super::response::{RequestInfo, bad_request, unavailable, warning};
use super::timers::Timer;
use super::{ConnId, PubId, Server};
use crate::pidf;
use crate::sip::{ContentType, Event, HeaderName, Message, Uri, header::parse_u32};

#[derive(Debug)]
pub(crate) struct Publication {
    pub(crate) etag: String,
    /// AOR key of the presentity.
    pub(crate) presentity: String,
    pub(crate) doc: pidf::Document,
    /// The PIDF body as published (what the cluster store holds).
    pub(crate) raw: Bytes,
    pub(crate) expires_at: Instant,
    /// Read from the cluster store (another node received it): replaced by each fetch.
    pub(crate) remote: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Publications {
    next: u64,
    pub(crate) by_id: HashMap<PubId, Publication>,
    pub(crate) by_etag: HashMap<String, PubId>,
}

impl Publications {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn document(&self, id: PubId) -> Option<&pidf::Document> {
        self.by_id.get(&id).map(|p| &p.doc)
    }

    pub(crate) fn insert(&mut self, p: Publication) -> PubId {
        self.next += 1;
        let id = PubId(self.next);
        self.by_etag.insert(p.etag.clone(), id);
        self.by_id.insert(id, p);
        id
    }

    pub(crate) fn remove(&mut self, id: PubId) -> Option<Publication> {
        let p = self.by_id.remove(&id)?;
        self.by_etag.remove(&p.etag);
        Some(p)
    }

    fn rekey(&mut self, id: PubId, etag: String) {
        if let Some(p) = self.by_id.get_mut(&id) {
            self.by_etag.remove(&p.etag);
            self.by_etag.insert(etag.clone(), id);
            p.etag = etag;
        }
    }
}

/// Same user and host (user unescaped and case-sensitive, host case-insensitive); port and
/// parameters ignored (a stricter check breaks clients on non-default ports).
fn same_user_host(a: &Uri, b: &Uri) -> bool {
    a.host.eq_ignore_ascii_case(&b.host)
        && a.user.as_deref().map(unescape) == b.user.as_deref().map(unescape)
}

/// Decodes `%XX` escapes (RFC 3261 §19.1.4 compares unescaped user parts).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

impl Server {
    pub(crate) fn handle_publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        info: &RequestInfo,
    ) {
        let event = msg.header(&HeaderName::Event).and_then(|v| Event::parse(v));
        if !event.as_ref().is_some_and(|e| e.is("presence")) {
            self.respond(
                conn,
                remote,
                msg,
                489,
                "Bad Event",
                &[("Allow-Events", b"presence")],
            );
            return;
        }
        let expires = match msg.header(&HeaderName::Expires) {
            None => self.config.publish_default_expires,
            Some(v) => match parse_u32(v) {
                Some(e) => e.min(self.config.max_expires),
                None => {
                    return self.refuse(conn, remote, msg, bad_request("Bad Expires"));
                }
            },
        };
        let publisher = info.from.uri.aor_key();
        let if_match = msg
            .header(&HeaderName::SipIfMatch)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned());
        let existing = match &if_match {
            None => None,
            Some(etag) => match self.publications.by_etag.get(etag.as_str()) {
                Some(id)
                    if self
                        .publications
                        .by_id
                        .get(id)
                        .is_some_and(|p| p.presentity == publisher) =>
                {
                    Some(*id)
                }
                _ => {
                    // Cluster mode: another node may have received it.
                    if self.cluster_lookup_gate(now, conn, remote, msg, &publisher, etag) {
                        return;
                    }
                    let w = warning("Unknown or expired SIP-If-Match entity-tag");
                    self.respond(
                        conn,
                        remote,
                        msg,
                        412,
                        "Conditional Request Failed",
                        &[("Warning", &w)],
                    );
                    return;
                }
            },
        };
        // A body (a new document) is required for an initial PUBLISH, optional with SIP-If-Match.
        let doc = if msg.body.is_empty() && existing.is_some() {
            None
        } else {
            let ct = msg
                .header(&HeaderName::ContentType)
                .and_then(|v| ContentType::parse(v));
            if !ct.is_some_and(|c| c.is("application/pidf+xml")) {
                self.respond(
                    conn,
                    remote,
                    msg,
                    415,
                    "Unsupported Media Type",
                    &[("Accept", b"application/pidf+xml")],
                );
                return;
            }
            if msg.body.is_empty() {
                return self.refuse(conn, remote, msg, bad_request("Body is empty"));
            }
            if msg
                .header(&HeaderName::ContentEncoding)
                .is_some_and(|v| !v.trim_ascii().is_empty())
            {
                self.respond(
                    conn,
                    remote,
                    msg,
                    415,
                    "Unsupported Media Type",
                    &[("Accept-Encoding", b"identity")],
                );
                return;
            }
            let doc = match pidf::parse(&msg.body) {
                Ok(d) => d,
                Err(e) => {
                    return self.refuse(
                        conn,
                        remote,
                        msg,
                        bad_request(&format!("Cannot parse body: {}", e.0)),
                    );
                }
            };
            match Uri::parse(doc.entity.as_bytes()) {
                Some(entity) if same_user_host(&entity, &info.from.uri) => {}
                _ => {
                    return self.refuse(
                        conn,
                        remote,
                        msg,
                        bad_request("Entity must be same as From"),
                    );
                }
            }
            Some(doc)
        };

        match (existing, doc, expires) {
            (Some(id), _, 0) => {
                // Removal (RFC 3903 §4.5).
                let write = match self.publications.by_id.get(&id) {
                    Some(p) => {
                        let (aor, etag) = (p.presentity.clone(), p.etag.clone());
                        self.cluster_unpublish(now, &aor, &etag)
                    }
                    None => None,
                };
                self.remove_publication(now, id);
                self.answer_publish(now, conn, remote, msg, None, write);
            }
            (None, _, 0) => {
                // An initial publication that expires at once: nothing to keep.
                self.respond(conn, remote, msg, 200, "OK", &[]);
            }
            (Some(id), doc, expires) => {
                // Refresh (no body) or modify (body): a fresh ETag either way.
                let etag = self.new_etag();
                let expires_at = now + Duration::from_secs(u64::from(expires));
                let former = if_match.clone();
                let raw = self.cluster_body(&msg.body);
                self.publications.rekey(id, etag.clone());
                let mut presentity = String::new();
                if let Some(p) = self.publications.by_id.get_mut(&id) {
                    p.expires_at = expires_at;
                    if let Some(doc) = doc {
                        p.doc = doc;
                        p.raw = raw;
                    }
                    // Refreshed here: this node answers for it now.
                    p.remote = false;
                    presentity.clone_from(&p.presentity);
                }
                let write = self.cluster_write(now, id, former);
                self.timers.arm(expires_at, Timer::PublicationExpiry(id));
                self.answer_publish(now, conn, remote, msg, Some((&etag, expires)), write);
                // Flexisip's "last activity": a refresh or a removal, not an initial publication.
                self.presentities.record_activity(&presentity, now);
                self.presentity_changed(now, &presentity);
            }
            (None, Some(_), _) if self.publications.len() >= self.config.max_publications => {
                info!(%remote, "PUBLISH refused: max-publications reached");
                self.stats.publication_limit_hits += 1;
                let r = unavailable("Too many publications");
                self.refuse(conn, remote, msg, r);
            }
            (None, Some(doc), expires) => {
                let etag = self.new_etag();
                let expires_at = now + Duration::from_secs(u64::from(expires));
                let entity = info.from.uri.identity();
                let id = self.publications.insert(Publication {
                    etag: etag.clone(),
                    presentity: publisher.clone(),
                    doc,
                    raw: self.cluster_body(&msg.body),
                    expires_at,
                    remote: false,
                });
                let max = self.config.max_presence_elements.max(1);
                let p = self.presentities.get_or_create(&publisher, &entity);
                p.publications.push(id);
                let evicted: Vec<PubId> = if p.publications.len() > max {
                    let n = p.publications.len() - max;
                    p.publications.drain(..n).collect()
                } else {
                    Vec::new()
                };
                for old in evicted {
                    debug!(presentity = %publisher, "dropping the oldest publication (max-presence-elements)");
                    self.publications.remove(old);
                }
                self.timers.arm(expires_at, Timer::PublicationExpiry(id));
                let write = self.cluster_write(now, id, None);
                self.answer_publish(now, conn, remote, msg, Some((&etag, expires)), write);
                self.presentity_changed(now, &publisher);
            }
            (None, None, _) => {
                // Unreachable by construction: no ETag implies a document was required above.
                self.refuse(conn, remote, msg, bad_request("Body is empty"));
            }
        }
    }

    /// Answers a successful PUBLISH (`published`: the ETag and expiry it got), at once, or in
    /// cluster mode once `write` is done (the publication is in the store when the client
    /// learns its ETag, so that another node can serve its refresh and no restart loses it).
    fn answer_publish(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        published: Option<(&str, u32)>,
        write: Option<super::ClusterOpId>,
    ) {
        if let Some(write) = write
            && self.cluster_defer(now, write, conn, remote, msg, published)
        {
            return;
        }
        self.respond_publish(conn, remote, msg, published);
    }

    /// Writes the 200 of a PUBLISH.
    pub(crate) fn respond_publish(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        published: Option<(&str, u32)>,
    ) {
        match published {
            Some((etag, expires)) => self.respond_published(conn, remote, msg, etag, expires),
            None => self.respond(conn, remote, msg, 200, "OK", &[]),
        }
    }

    fn respond_published(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        etag: &str,
        expires: u32,
    ) {
        let mut buf = itoa::Buffer::new();
        let exp = buf.format(expires).as_bytes().to_vec();
        self.respond(
            conn,
            remote,
            msg,
            200,
            "OK",
            &[("SIP-ETag", etag.as_bytes()), ("Expires", &exp)],
        );
    }

    fn new_etag(&mut self) -> String {
        loop {
            let etag = self.rng.token(12);
            if !self.publications.by_etag.contains_key(&etag) {
                return etag;
            }
        }
    }

    /// Removes a publication and tells the watchers.
    fn remove_publication(&mut self, now: Instant, id: PubId) {
        let Some(p) = self.publications.remove(id) else {
            return;
        };
        if let Some(pres) = self.presentities.get_mut(&p.presentity) {
            pres.publications.retain(|x| *x != id);
        }
        self.presentities.record_activity(&p.presentity, now);
        self.presentity_changed(now, &p.presentity);
        self.presentities.remove_if_unused(&p.presentity);
    }

    pub(crate) fn publication_timer(&mut self, now: Instant, id: PubId) {
        if self
            .publications
            .by_id
            .get(&id)
            .is_some_and(|p| p.expires_at <= now)
        {
            debug!(?id, "publication expired");
            let remote = self
                .publications
                .by_id
                .get(&id)
                .filter(|p| p.remote)
                .map(|p| p.presentity.clone());
            self.remove_publication(now, id);
            if let Some(aor) = remote {
                self.cluster_expired(now, &aor);
            }
        }
    }
}
