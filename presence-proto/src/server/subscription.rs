//! SUBSCRIBE (RFC 6665, RFC 3856): subscription dialogs, NOTIFYs, expiry, and the
//! mutual-subscription (confidentiality) rule. List subscriptions (RFC 4662) share all of it;
//! what is particular to them lives in `list.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use super::list::{ListBody, ListError, ListState};
use super::presentity::Watch;
use super::response::{RequestInfo, bad_request, unavailable, warning};
use super::timers::Timer;
use super::{ConnId, Server, SubId, Target};
use crate::cluster::DialogRecord;
use crate::config::Config;
use crate::sip::{Event, HeaderName, Message, NameAddr, Uri, Via, header::parse_u32, token_list};

/// One subscription dialog (we are the notifier, the UAS of the SUBSCRIBE).
#[derive(Debug)]
pub(crate) struct Subscription {
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// Highest CSeq seen from the subscriber (in-dialog requests must increase it).
    remote_cseq: u32,
    /// AOR key of the watcher (the SUBSCRIBE's From).
    pub(crate) watcher: String,
    /// Request-URI of our NOTIFYs (the remote target, or the first route when it is strict).
    request_uri: Bytes,
    next_hop: Target,
    has_routes: bool,
    /// The subscriber talks to us directly (no route set, one Via).
    direct: bool,
    /// Cluster mode: the node this one took the dialog over from.
    taken_from: Option<Box<str>>,
    /// The header lines that never change within the dialog: Max-Forwards, Route, From, To,
    /// Call-ID, Contact, Event, User-Agent.
    fixed: Bytes,
    cseq: u32,
    /// Cluster mode: the NOTIFY CSeq at which the stored dialog record is rewritten with a
    /// higher ceiling, halfway to the stored one (`u32::MAX` on a single node).
    cseq_rewrite_at: u32,
    pub(crate) expires_at: Instant,
    /// Connection NOTIFYs currently go out on (set through [`Subscriptions::set_conn`], which
    /// keeps the per-connection index).
    conn: Option<ConnId>,
    /// Its place in `Subscriptions::by_conn[conn]`.
    conn_slot: u32,
    /// Connection the initial SUBSCRIBE arrived on (counted against its limit).
    origin: ConnId,
    pub(crate) bypass: bool,
    /// CSeqs of NOTIFYs without a final response yet.
    unacked: Vec<u32>,
    /// Counted in the who-watches-whom index and the presentities' watchers (false for a fetch).
    registered: bool,
    pub(crate) kind: Kind,
}

/// What a subscription watches.
#[derive(Debug)]
pub(crate) enum Kind {
    /// One presentity (RFC 3856), and whether the watcher currently sees published state.
    Single { presentity: String, extended: bool },
    /// A resource list (RFC 4662).
    List(Box<ListState>),
}

#[derive(Debug)]
pub(crate) struct Subscriptions {
    next: u64,
    pub(crate) map: HashMap<SubId, Subscription>,
    /// (Call-ID, our tag) → subscription.
    dialogs: HashMap<(String, String), SubId>,
    /// Connection → the subscriptions whose NOTIFYs go out on it: a closed connection touches
    /// its own subscriptions only (not every subscription of the server).
    by_conn: HashMap<ConnId, Vec<SubId>>,
    /// Prefix of every branch we generate: `z9hG4bK` + an instance token + `.`.
    branch_prefix: String,
    /// `Via: SIP/2.0/TCP host:port;branch=` + branch prefix.
    via_prefix: Vec<u8>,
}

impl Subscriptions {
    pub(crate) fn new(config: &Config, instance: String) -> Subscriptions {
        let branch_prefix = format!("z9hG4bK{instance}.");
        let sent_by = Uri::parse(config.contact.as_bytes())
            .map(|u| match u.port {
                Some(p) => format!("{}:{p}", u.host),
                None => u.host,
            })
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let via_prefix = format!("Via: SIP/2.0/TCP {sent_by};branch={branch_prefix}").into_bytes();
        Subscriptions {
            next: 0,
            map: HashMap::new(),
            dialogs: HashMap::new(),
            by_conn: HashMap::new(),
            branch_prefix,
            via_prefix,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Sends the NOTIFYs of `id` on `conn` from now on (None: a connection is looked for at
    /// the next NOTIFY).
    pub(crate) fn set_conn(&mut self, id: SubId, conn: Option<ConnId>) {
        let Some(s) = self.map.get_mut(&id) else {
            return;
        };
        if s.conn == conn {
            return;
        }
        let old = std::mem::replace(&mut s.conn, conn);
        let old_slot = s.conn_slot;
        if let Some(c) = conn {
            let v = self.by_conn.entry(c).or_default();
            s.conn_slot = u32::try_from(v.len()).unwrap_or(u32::MAX);
            v.push(id);
        }
        if let Some(c) = old {
            self.unlink(c, old_slot, id);
        }
    }

    /// Removes `id`, entry `slot` of `conn`'s index (the last one takes its place).
    fn unlink(&mut self, conn: ConnId, slot: u32, id: SubId) {
        let Some(v) = self.by_conn.get_mut(&conn) else {
            return;
        };
        let slot = slot as usize;
        debug_assert_eq!(v.get(slot), Some(&id), "connection index out of step");
        if v.get(slot) != Some(&id) {
            return;
        }
        v.swap_remove(slot);
        if let Some(moved) = v.get(slot).copied() {
            if let Some(m) = self.map.get_mut(&moved) {
                m.conn_slot = slot as u32;
            }
        } else if v.is_empty() {
            self.by_conn.remove(&conn);
        }
    }

    /// Adds a subscription (its connection given by `conn`, indexed).
    fn insert(&mut self, id: SubId, mut sub: Subscription) {
        let conn = sub.conn.take();
        self.map.insert(id, sub);
        self.set_conn(id, conn);
    }

    /// Removes a subscription (and its index entry).
    fn remove(&mut self, id: SubId) -> Option<Subscription> {
        let s = self.map.remove(&id)?;
        if let Some(c) = s.conn {
            self.unlink(c, s.conn_slot, id);
        }
        Some(s)
    }

    /// The subscription of dialog `call_id`/`tag` (our tag).
    pub(crate) fn by_dialog(&self, call_id: &str, tag: &str) -> Option<SubId> {
        self.dialogs
            .get(&(call_id.to_owned(), tag.to_owned()))
            .copied()
    }

    /// Subscriptions to resource lists (counted when asked: not on the NOTIFY path).
    pub(crate) fn lists(&self) -> usize {
        self.map
            .values()
            .filter(|s| matches!(s.kind, Kind::List(_)))
            .count()
    }
}

impl Subscription {
    /// Whether NOTIFYs currently go out on `conn`.
    pub(crate) fn notifies_on(&self, conn: ConnId) -> bool {
        self.conn == Some(conn)
    }

    /// Counted in the who-watches-whom index (not a fetch).
    pub(crate) fn is_registered(&self) -> bool {
        self.registered
    }

    /// Call-ID, our tag and the node it was taken over from: the dialog's record in the
    /// cluster store.
    pub(crate) fn stored_dialog_key(&self) -> (&str, &str, Option<&str>) {
        (
            self.call_id.as_str(),
            self.local_tag.as_str(),
            self.taken_from.as_deref(),
        )
    }

    /// The dialog's identity in the cluster store: Call-ID and our tag.
    pub(crate) fn dialog_id(&self) -> String {
        let mut id = String::with_capacity(self.call_id.len() + 1 + self.local_tag.len());
        id.push_str(&self.call_id);
        id.push('\n');
        id.push_str(&self.local_tag);
        id
    }
}

/// The state a NOTIFY announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notify {
    Active,
    Terminated(Option<&'static str>),
}

/// What a NOTIFY carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Content {
    /// The full current state (single: the document; list: full-state RLMI).
    Full,
    /// What changed (single: the document; list: the pending resources, nothing sent if none).
    Changes,
    /// No state (single: no body; list: an RLMI document without resources).
    Nothing,
}

/// Where requests for `uri` go: its `maddr` or host, its port or 5060.
fn hop(uri: &Uri) -> Target {
    let host = match uri.param("maddr") {
        Some(Some(m)) => m.to_owned(),
        _ => uri.host.clone(),
    };
    Target {
        host,
        port: uri.port.unwrap_or(5060),
    }
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn name_addr_bytes(n: &NameAddr) -> Vec<u8> {
    let mut b = Vec::new();
    n.write_to(&mut b);
    b
}

/// The AOR keys watched, by resource index.
fn kind_keys(kind: &Kind) -> Vec<String> {
    match kind {
        Kind::Single { presentity, .. } => vec![presentity.clone()],
        Kind::List(l) => l.resources.iter().map(|r| r.key.clone()).collect(),
    }
}

impl Server {
    pub(crate) fn handle_subscribe(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        info: &RequestInfo,
    ) {
        let Some(event_raw) = msg.header(&HeaderName::Event) else {
            return self.refuse(conn, remote, msg, bad_request("No Event package"));
        };
        let Some(event) = Event::parse(event_raw).filter(|e| e.is("presence")) else {
            let allow = vec![("Allow-Events", b"presence".to_vec())];
            return self.refuse(conn, remote, msg, (489, "Bad Event", allow));
        };
        let expires = match msg.header(&HeaderName::Expires) {
            None => self.config.subscribe_default_expires,
            Some(v) => match parse_u32(v) {
                Some(e) => e,
                None => return self.refuse(conn, remote, msg, bad_request("Bad Expires")),
            },
        }
        .min(self.config.max_expires);
        let bypass = self.bypasses(msg);
        let contact = msg
            .header(&HeaderName::Contact)
            .and_then(|v| NameAddr::parse_list(v))
            .and_then(|list| list.into_iter().next())
            .map(|c| c.uri);

        if let Some(to_tag) = info.to.tag() {
            let key = (info.call_id.clone(), to_tag.to_owned());
            if !self.subscriptions.dialogs.contains_key(&key)
                && self.cluster_dialog_gate(now, conn, remote, msg, &key.0, &key.1)
            {
                // Another node's dialog, maybe: looked up in the cluster store first.
                return;
            }
            let id = match self.subscriptions.dialogs.get(&key) {
                Some(id)
                    if self
                        .subscriptions
                        .map
                        .get(id)
                        .is_some_and(|s| Some(s.remote_tag.as_str()) == info.from.tag()) =>
                {
                    *id
                }
                _ => {
                    let w = vec![("Warning", warning("No such subscription"))];
                    return self.refuse(conn, remote, msg, (481, "Subscription Does Not Exist", w));
                }
            };
            let stale = self.subscriptions.map.get_mut(&id).is_some_and(|s| {
                let stale = info.cseq.seq <= s.remote_cseq;
                s.remote_cseq = s.remote_cseq.max(info.cseq.seq);
                stale
            });
            if stale {
                // RFC 3261 §12.2.2: a lower CSeq within a dialog is out of order.
                let w = vec![("Warning", warning("CSeq out of order"))];
                return self.refuse(conn, remote, msg, (500, "Server Internal Error", w));
            }
            self.refresh_subscription(now, conn, remote, msg, id, expires, bypass, contact);
            return;
        }

        // A new subscription: the limits (refreshes above are never refused for them).
        if self.subscriptions.len() >= self.config.max_subscriptions {
            info!(%remote, "SUBSCRIBE refused: max-subscriptions reached");
            self.stats.subscription_limit_hits += 1;
            let r = unavailable("Too many subscriptions");
            return self.refuse(conn, remote, msg, r);
        }
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.subscriptions >= self.config.max_subscriptions_per_connection)
        {
            info!(?conn, %remote, "SUBSCRIBE refused: max-subscriptions-per-connection reached");
            self.stats.connection_subscription_limit_hits += 1;
            let r = unavailable("Too many subscriptions on this connection");
            return self.refuse(conn, remote, msg, r);
        }

        let Some(request_uri) = msg.request_uri() else {
            let w = vec![("Warning", warning("Request-URI is not a SIP URI"))];
            return self.refuse(conn, remote, msg, (416, "Unsupported URI Scheme", w));
        };
        let Some(contact) = contact else {
            return self.refuse(conn, remote, msg, bad_request("Missing or bad Contact"));
        };
        let mut routes: Vec<NameAddr> = Vec::new();
        for v in msg.headers_named(&HeaderName::RecordRoute) {
            match NameAddr::parse_list(v) {
                Some(list) => routes.extend(list),
                None => return self.refuse(conn, remote, msg, bad_request("Bad Record-Route")),
            }
        }
        let is_list = msg
            .headers_named(&HeaderName::Supported)
            .any(|v| token_list(v).any(|t| t.eq_ignore_ascii_case(b"eventlist")));
        let kind = if is_list {
            match self.list_from_request(msg, &request_uri, &info.from.uri.aor_key()) {
                Ok(list) => Kind::List(Box::new(list)),
                Err(ListError::Refuse(r)) => return self.refuse(conn, remote, msg, r),
                Err(ListError::NeedMembers) => {
                    let (mut from, mut to) = (Vec::new(), Vec::new());
                    info.from.uri.write_to(&mut from);
                    info.to.uri.write_to(&mut to);
                    let from = String::from_utf8_lossy(&from).into_owned();
                    let to = String::from_utf8_lossy(&to).into_owned();
                    return self.members_gate(now, conn, remote, msg, from, to);
                }
            }
        } else {
            Kind::Single {
                presentity: request_uri.aor_key(),
                extended: false,
            }
        };
        // Long-term presence: the accounts of what is watched are looked up first.
        let keys = kind_keys(&kind);
        let members = self.accounts.prefetched.clone();
        if !self.accounts_gate(now, conn, remote, msg, &keys, members) {
            return;
        }
        match &kind {
            Kind::Single { presentity, .. } => {
                self.presentities
                    .get_or_create(presentity, &request_uri.identity());
            }
            Kind::List(l) => {
                for r in &l.resources {
                    let entity = Uri::parse(r.uri.as_bytes())
                        .map(|u| u.identity())
                        .unwrap_or_default();
                    self.presentities.get_or_create(&r.key, &entity);
                }
            }
        }
        for key in &keys {
            self.apply_account(now, key);
        }
        // Cluster mode: what other nodes know of the watched presentities is fetched first.
        let members = self.accounts.prefetched.clone();
        if !self.cluster_gate(now, conn, remote, msg, &keys, members) {
            return;
        }

        let via_count: usize = msg
            .headers_named(&HeaderName::Via)
            .map(|v| Via::parse_list(v).map_or(1, |l| l.len()))
            .sum();
        let local_tag = self.rng.token(10);
        let watcher = info.from.uri.aor_key();

        // Route set (RFC 3261 §12.1.1: the Record-Route URIs in order) and the NOTIFY target.
        let mut contact_bytes = Vec::new();
        contact.write_to(&mut contact_bytes);
        let (notify_uri, next_hop, route_lines) = match routes.first() {
            None => (contact_bytes, hop(&contact), Vec::new()),
            Some(first) if first.uri.param("lr").is_some() => (
                contact_bytes,
                hop(&first.uri),
                routes.iter().map(name_addr_bytes).collect(),
            ),
            Some(first) => {
                // Strict router: it becomes the Request-URI, the remote target goes last.
                let mut ru = Vec::new();
                first.uri.write_to(&mut ru);
                let mut lines: Vec<Vec<u8>> = routes[1..].iter().map(name_addr_bytes).collect();
                let mut last = b"<".to_vec();
                last.extend_from_slice(&contact_bytes);
                last.push(b'>');
                lines.push(last);
                (ru, hop(&first.uri), lines)
            }
        };
        // Reuse the inbound connection when it is the next hop, or when the UA talks to us
        // directly (one Via, no route set): its Contact may not be reachable from here.
        let reuse = next_hop.socket_addr() == Some(remote) || (routes.is_empty() && via_count <= 1);

        let mut fixed = Vec::with_capacity(512);
        fixed.extend_from_slice(b"Max-Forwards: 70\r\n");
        for r in &route_lines {
            push_line(&mut fixed, "Route", r);
        }
        let to_raw = msg.header(&HeaderName::To).cloned().unwrap_or_default();
        let from_raw = msg.header(&HeaderName::From).cloned().unwrap_or_default();
        fixed.extend_from_slice(b"From: ");
        fixed.extend_from_slice(&to_raw);
        fixed.extend_from_slice(b";tag=");
        fixed.extend_from_slice(local_tag.as_bytes());
        fixed.extend_from_slice(b"\r\n");
        push_line(&mut fixed, "To", &from_raw);
        push_line(&mut fixed, "Call-ID", info.call_id.as_bytes());
        fixed.extend_from_slice(b"Contact: <");
        fixed.extend_from_slice(self.config.contact.as_bytes());
        fixed.extend_from_slice(b">\r\n");
        // Legacy mode writes `Presence` where liblinphone < 5.4 needs it, list NOTIFYs; single
        // NOTIFYs keep the package name as registered (liblinphone ignores it there, and
        // clients that match it byte for byte, like baresip, answer `Presence` with 481).
        fixed.extend_from_slice(if self.config.support_legacy_client && is_list {
            b"Event: Presence"
        } else {
            b"Event: presence"
        });
        if let Some(id) = event.id() {
            fixed.extend_from_slice(b";id=");
            fixed.extend_from_slice(id.as_bytes());
        }
        fixed.extend_from_slice(b"\r\n");
        if is_list {
            fixed.extend_from_slice(b"Require: eventlist\r\n");
        }
        push_line(&mut fixed, "User-Agent", self.config.user_agent.as_bytes());

        let fetch = expires == 0;
        self.subscriptions.next += 1;
        let id = SubId(self.subscriptions.next);
        let sub = Subscription {
            call_id: info.call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: info.from.tag().unwrap_or_default().to_owned(),
            remote_cseq: info.cseq.seq,
            watcher: watcher.clone(),
            request_uri: Bytes::from(notify_uri),
            next_hop,
            has_routes: !routes.is_empty(),
            direct: routes.is_empty() && via_count <= 1,
            taken_from: None,
            fixed: Bytes::from(fixed),
            cseq: 0,
            cseq_rewrite_at: u32::MAX,
            expires_at: now + Duration::from_secs(u64::from(expires)),
            conn: reuse.then_some(conn),
            conn_slot: 0,
            origin: conn,
            bypass,
            unacked: Vec::new(),
            registered: !fetch,
            kind,
        };
        self.subscriptions.insert(id, sub);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.subscriptions += 1;
        }
        // Access first: the re-evaluation below must not count this subscription as a change.
        self.update_access(id);
        let watched = self.watched(id);
        if !fetch {
            self.subscriptions
                .dialogs
                .insert((info.call_id.clone(), local_tag.clone()), id);
            self.register_watches(now, id, &watcher, &watched);
            self.timers.arm(
                now + Duration::from_secs(u64::from(expires)),
                Timer::SubscriptionExpiry(id),
            );
            info!(%watcher, resources = watched.len(), list = is_list, expires, "subscription created");
            self.cluster_watch(now, id, true, false);
        }

        let exp = itoa::Buffer::new().format(expires).as_bytes().to_vec();
        let contact_hdr = format!("<{}>", self.config.contact).into_bytes();
        let rr: Vec<Bytes> = msg
            .headers_named(&HeaderName::RecordRoute)
            .cloned()
            .collect();
        let mut extra: Vec<(&str, &[u8])> = vec![("Expires", &exp), ("Contact", &contact_hdr)];
        if is_list {
            extra.push(("Require", b"eventlist"));
        }
        extra.extend(rr.iter().map(|v| ("Record-Route", v.as_ref())));
        self.respond_tagged(conn, remote, msg, 200, "OK", &local_tag, &extra);
        if fetch {
            self.send_notify(now, id, Notify::Terminated(Some("timeout")), Content::Full);
        } else if watched.is_empty() {
            // A list with no usable entry: nothing to watch.
            self.send_notify(
                now,
                id,
                Notify::Terminated(Some("noresource")),
                Content::Full,
            );
        } else {
            self.send_notify(now, id, Notify::Active, Content::Full);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refresh_subscription(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        id: SubId,
        expires: u32,
        bypass: bool,
        contact: Option<Uri>,
    ) {
        let Some(sub) = self.subscriptions.map.get_mut(&id) else {
            return;
        };
        let local_tag = sub.local_tag.clone();
        let is_list = matches!(sub.kind, Kind::List(_));
        sub.bypass = bypass;
        // The connection for its NOTIFYs, when it changes.
        let mut new_conn: Option<Option<ConnId>> = None;
        if let Some(target) = contact {
            // Target refresh (RFC 6665 §4.1.2.1); the route set stays.
            let mut ru = Vec::new();
            target.write_to(&mut ru);
            if !sub.has_routes {
                sub.request_uri = Bytes::from(ru);
                let hop = hop(&target);
                if hop != sub.next_hop {
                    sub.next_hop = hop;
                    new_conn = Some(None);
                }
            }
        }
        // A refresh arriving over a live connection from the next hop is the best path back.
        if sub.next_hop.socket_addr() == Some(remote) {
            new_conn = Some(Some(conn));
        }
        if let Some(c) = new_conn {
            self.subscriptions.set_conn(id, c);
        }
        let exp = itoa::Buffer::new().format(expires).as_bytes().to_vec();
        let contact_hdr = format!("<{}>", self.config.contact).into_bytes();
        let mut extra: Vec<(&str, &[u8])> = vec![("Expires", &exp), ("Contact", &contact_hdr)];
        if is_list {
            extra.push(("Require", b"eventlist"));
        }
        self.respond_tagged(conn, remote, msg, 200, "OK", &local_tag, &extra);
        if expires == 0 {
            debug!(?id, "unsubscribed");
            self.send_notify(now, id, Notify::Terminated(None), Content::Full);
            return;
        }
        if let Some(sub) = self.subscriptions.map.get_mut(&id) {
            sub.expires_at = now + Duration::from_secs(u64::from(expires));
        }
        self.timers.arm(
            now + Duration::from_secs(u64::from(expires)),
            Timer::SubscriptionExpiry(id),
        );
        self.cluster_watch(now, id, false, false);
        self.update_access(id);
        // An account created since is found now (its watchers are told when the answer comes).
        let keys = self.watched(id);
        self.refresh_accounts(now, &keys);
        // RFC 4662: a refresh gets the full state, for lists too.
        self.send_notify(now, id, Notify::Active, Content::Full);
    }

    fn bypasses(&self, msg: &Message) -> bool {
        let Some(cond) = self
            .config
            .bypass_condition
            .as_deref()
            .filter(|c| !c.is_empty())
        else {
            return false;
        };
        let Some(ua) = msg.header(&HeaderName::UserAgent) else {
            return false;
        };
        let ua = String::from_utf8_lossy(ua).to_ascii_lowercase();
        ua.contains(&cond.to_ascii_lowercase())
    }

    /// The AOR keys a subscription watches, by resource index.
    pub(crate) fn watched(&self, id: SubId) -> Vec<String> {
        self.subscriptions
            .map
            .get(&id)
            .map(|s| kind_keys(&s.kind))
            .unwrap_or_default()
    }

    /// Whether `watcher` (with `bypass`) may see what `presentity` publishes: it is itself,
    /// bypasses the rule, or the presentity watches it back.
    fn may_see(&self, watcher: &str, bypass: bool, presentity: &str) -> bool {
        let owner = self.presentities.resolve(presentity);
        bypass
            || watcher == owner
            || self.presentities.watches(owner, watcher)
            || self.cluster_watches(owner, watcher)
    }

    /// Recomputes the access of every watch of a subscription (without notifying).
    fn update_access(&mut self, id: SubId) {
        let Some(s) = self.subscriptions.map.get(&id) else {
            return;
        };
        let (watcher, bypass) = (s.watcher.clone(), s.bypass);
        let access: Vec<bool> = self
            .watched(id)
            .iter()
            .map(|key| self.may_see(&watcher, bypass, key))
            .collect();
        let Some(s) = self.subscriptions.map.get_mut(&id) else {
            return;
        };
        match &mut s.kind {
            Kind::Single { extended, .. } => *extended = access.first().copied().unwrap_or(false),
            Kind::List(l) => {
                for (r, a) in l.resources.iter_mut().zip(access) {
                    r.extended = a;
                }
            }
        }
    }

    /// `watcher` started or stopped watching `presentity`: the watches of `presentity` on
    /// `watcher` may have gained or lost access; tell those whose access changed.
    pub(crate) fn reevaluate_access(&mut self, now: Instant, watcher: &str, presentity: &str) {
        // The watches concerned: those of the presentity's account on the watcher, or on any
        // phone-number alias of the watcher.
        let owner = self.presentities.resolve(presentity).to_owned();
        let mut keys = vec![watcher.to_owned()];
        if let Some(p) = self.presentities.get(watcher) {
            keys.extend(p.aliases.iter().cloned());
        }
        for key in keys {
            let Some(p) = self.presentities.get(&key) else {
                continue;
            };
            let candidates: Vec<Watch> = p
                .watchers
                .iter()
                .copied()
                .filter(|w| {
                    self.subscriptions
                        .map
                        .get(&w.sub)
                        .is_some_and(|s| s.watcher == owner)
                })
                .collect();
            for w in candidates {
                self.recheck_watch(now, w, &key);
            }
        }
    }

    /// Recomputes one watch's access to `key`; tells the subscriber when it changed.
    pub(crate) fn recheck_watch(&mut self, now: Instant, w: Watch, key: &str) {
        let Some(s) = self.subscriptions.map.get(&w.sub) else {
            return;
        };
        let access = self.may_see(&s.watcher, s.bypass, key);
        let Some(s) = self.subscriptions.map.get_mut(&w.sub) else {
            return;
        };
        match &mut s.kind {
            Kind::Single { extended, .. } if *extended != access => {
                *extended = access;
                debug!(sub = ?w.sub, access, "access changed (mutual-subscription rule)");
                self.send_notify(now, w.sub, Notify::Active, Content::Changes);
            }
            Kind::List(l) => {
                if let Some(r) = l.resources.get_mut(w.resource as usize)
                    && r.extended != access
                {
                    r.extended = access;
                    self.list_changed(now, w.sub, w.resource);
                }
            }
            Kind::Single { .. } => {}
        }
    }

    /// Published state of `presentity` changed: every watch with access (to it or to one of its
    /// aliases) learns it.
    pub(crate) fn presentity_changed(&mut self, now: Instant, presentity: &str) {
        for key in self.presentities.invalidate(presentity) {
            self.tell_watchers(now, &key, false);
        }
    }

    /// Tells the watchers of `key` its state changed: those with access, or all (`everyone`:
    /// long-term presence, which non-mutual watchers see too, changed).
    pub(crate) fn tell_watchers(&mut self, now: Instant, key: &str, everyone: bool) {
        let Some(p) = self.presentities.get(key) else {
            return;
        };
        let watchers: Vec<Watch> = p.watchers.clone();
        for w in watchers {
            let Some(s) = self.subscriptions.map.get(&w.sub) else {
                continue;
            };
            match &s.kind {
                Kind::Single { extended, .. } if *extended || everyone => {
                    self.send_notify(now, w.sub, Notify::Active, Content::Changes)
                }
                Kind::List(l)
                    if l.resources
                        .get(w.resource as usize)
                        .is_some_and(|r| r.extended || everyone) =>
                {
                    self.list_changed(now, w.sub, w.resource)
                }
                _ => {}
            }
        }
    }

    /// The connection for the next NOTIFY of `id`: the current one if open, else one to the next hop.
    fn notify_conn(&mut self, now: Instant, id: SubId) -> Option<ConnId> {
        let sub = self.subscriptions.map.get(&id)?;
        if let Some(c) = sub.conn
            && self.is_open(c)
        {
            return Some(c);
        }
        let target = sub.next_hop.clone();
        let c = self.conn_to(now, target);
        self.subscriptions.set_conn(id, Some(c));
        Some(c)
    }

    /// Builds and queues one NOTIFY; a terminating one also ends the subscription. A list NOTIFY
    /// for `Content::Changes` with nothing to say is not sent.
    pub(crate) fn send_notify(&mut self, now: Instant, id: SubId, state: Notify, content: Content) {
        let Some(sub) = self.subscriptions.map.get(&id) else {
            return;
        };
        // (Content-Type and Content-Encoding header lines, body)
        let (type_lines, body): (Vec<u8>, Bytes) = match &sub.kind {
            Kind::Single {
                presentity,
                extended,
            } => {
                if content == Content::Nothing {
                    (Vec::new(), Bytes::new())
                } else {
                    let (key, ext) = (presentity.clone(), *extended);
                    let doc = self
                        .presentities
                        .document(&key, ext, &self.publications, now);
                    (b"Content-Type: application/pidf+xml\r\n".to_vec(), doc)
                }
            }
            Kind::List(_) => {
                let what = match content {
                    Content::Full => ListBody::Full,
                    Content::Changes => ListBody::Changes,
                    Content::Nothing => ListBody::Empty,
                };
                match self.list_body(now, id, what) {
                    Some(b) => b,
                    None => return,
                }
            }
        };
        let Some(conn) = self.notify_conn(now, id) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_activity = now;
        }
        let Some(sub) = self.subscriptions.map.get_mut(&id) else {
            return;
        };
        sub.cseq += 1;
        let cseq = sub.cseq;
        let rewrite = cseq >= sub.cseq_rewrite_at;
        let remaining = sub.expires_at.saturating_duration_since(now);
        let remaining = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
        let out = self.output.buffer(conn);
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b"NOTIFY ");
        out.extend_from_slice(&sub.request_uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        out.extend_from_slice(&self.subscriptions.via_prefix);
        out.extend_from_slice(num.format(id.0).as_bytes());
        out.push(b'.');
        out.extend_from_slice(num.format(cseq).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&sub.fixed);
        out.extend_from_slice(b"CSeq: ");
        out.extend_from_slice(num.format(cseq).as_bytes());
        out.extend_from_slice(b" NOTIFY\r\n");
        match state {
            Notify::Active => {
                out.extend_from_slice(b"Subscription-State: active;expires=");
                out.extend_from_slice(num.format(remaining).as_bytes());
            }
            Notify::Terminated(reason) => {
                out.extend_from_slice(b"Subscription-State: terminated");
                if let Some(r) = reason {
                    out.extend_from_slice(b";reason=");
                    out.extend_from_slice(r.as_bytes());
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&type_lines);
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(num.format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&body);
        self.stats.notifies_sent += 1;
        match state {
            Notify::Active => {
                sub.unacked.push(cseq);
                self.timers
                    .arm_notify(now + self.config.notify_timeout, id, cseq);
                if rewrite {
                    self.cluster_dialog(now, id, false);
                }
            }
            Notify::Terminated(_) => self.remove_subscription(now, id),
        }
    }

    /// A response to one of our NOTIFYs (matched by its branch).
    pub(crate) fn notify_response(&mut self, now: Instant, branch: &str, code: u16) {
        let Some(rest) = branch.strip_prefix(self.subscriptions.branch_prefix.as_str()) else {
            return;
        };
        let mut parts = rest.split('.');
        let (Some(Ok(sub)), Some(Ok(cseq)), None) = (
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<u32>),
            parts.next(),
        ) else {
            return;
        };
        if code < 200 {
            return;
        }
        let id = SubId(sub);
        let Some(s) = self.subscriptions.map.get_mut(&id) else {
            return;
        };
        let Some(pos) = s.unacked.iter().position(|c| *c == cseq) else {
            return;
        };
        s.unacked.swap_remove(pos);
        match code {
            200..=299 => self.stats.notify_ok += 1,
            408 | 481 => {
                info!(?id, code, "NOTIFY refused: subscription ended");
                self.stats.notify_error_responses += 1;
                self.stats.notify_failures += 1;
                self.remove_subscription(now, id);
            }
            _ => {
                debug!(?id, code, "NOTIFY answered with an error");
                self.stats.notify_error_responses += 1;
            }
        }
    }

    /// A NOTIFY got no final response in time: the watcher is gone (RFC 6665 §4.2.2).
    pub(crate) fn notify_timeout(&mut self, now: Instant, id: SubId, cseq: u32) {
        if self
            .subscriptions
            .map
            .get(&id)
            .is_some_and(|s| s.unacked.contains(&cseq))
        {
            info!(?id, "NOTIFY timed out: subscription ended");
            self.stats.notify_timeouts += 1;
            self.stats.notify_failures += 1;
            self.remove_subscription(now, id);
        }
    }

    pub(crate) fn subscription_timer(&mut self, now: Instant, id: SubId) {
        if self
            .subscriptions
            .map
            .get(&id)
            .is_some_and(|s| s.expires_at <= now)
        {
            debug!(?id, "subscription expired");
            self.send_notify(
                now,
                id,
                Notify::Terminated(Some("timeout")),
                Content::Nothing,
            );
        }
    }

    /// A connection went away: subscriptions with NOTIFYs in flight on it have lost them and end;
    /// the others will look for a new path at their next NOTIFY.
    pub(crate) fn subscriptions_lost_connection(&mut self, now: Instant, conn: ConnId) {
        let mut lost = Vec::new();
        for id in self.subscriptions.by_conn.remove(&conn).unwrap_or_default() {
            if let Some(s) = self.subscriptions.map.get_mut(&id) {
                debug_assert_eq!(s.conn, Some(conn), "connection index out of step");
                s.conn = None;
                if !s.unacked.is_empty() {
                    self.stats.notify_connection_lost += s.unacked.len() as u64;
                    lost.push(id);
                }
            }
        }
        lost.sort_unstable();
        for id in lost {
            info!(
                ?id,
                "connection lost with NOTIFYs in flight: subscription ended"
            );
            self.stats.notify_failures += 1;
            self.remove_subscription(now, id);
        }
    }

    /// The record another node needs to continue dialog `id`, with a new CSeq (and RLMI
    /// version) ceiling `margin` above the last NOTIFY's (rewritten halfway there).
    pub(crate) fn dialog_record(
        &mut self,
        node: &str,
        id: SubId,
        margin: u32,
    ) -> Option<DialogRecord> {
        let s = self.subscriptions.map.get_mut(&id)?;
        s.cseq_rewrite_at = s.cseq.saturating_add(margin / 2);
        let (presentity, entity, list) = match &s.kind {
            Kind::Single { presentity, .. } => {
                let entity = self
                    .presentities
                    .get(presentity)
                    .map(|p| p.entity.clone())
                    .unwrap_or_default();
                (presentity.clone(), entity, None)
            }
            Kind::List(l) => (String::new(), String::new(), Some(l.stored(margin))),
        };
        Some(DialogRecord {
            node: node.to_owned(),
            call_id: s.call_id.clone(),
            local_tag: s.local_tag.clone(),
            remote_tag: s.remote_tag.clone(),
            remote_cseq: s.remote_cseq,
            watcher: s.watcher.clone(),
            presentity,
            entity,
            request_uri: String::from_utf8_lossy(&s.request_uri).into_owned(),
            next_hop_host: s.next_hop.host.clone(),
            next_hop_port: s.next_hop.port,
            has_routes: s.has_routes,
            direct: s.direct,
            bypass: s.bypass,
            cseq_ceiling: s.cseq.saturating_add(margin),
            list,
            fixed: s.fixed.clone(),
        })
    }

    /// Continues here a dialog another node created (read from the cluster store), the
    /// request that asked for it having arrived on `conn` from `remote`: registers its watch,
    /// arms its expiry; its NOTIFYs continue after the stored CSeq ceiling.
    pub(crate) fn adopt_dialog(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        d: DialogRecord,
        expires: Duration,
    ) -> Option<SubId> {
        let key = (d.call_id, d.local_tag);
        if self.subscriptions.dialogs.contains_key(&key) || expires.is_zero() {
            return None;
        }
        let next_hop = Target {
            host: d.next_hop_host,
            port: d.next_hop_port,
        };
        let reuse = d.direct || next_hop.socket_addr() == Some(remote);
        let kind = match d.list {
            None => {
                self.presentities.get_or_create(&d.presentity, &d.entity);
                Kind::Single {
                    presentity: d.presentity,
                    extended: false,
                }
            }
            Some(l) => {
                for (uri, key, _) in &l.resources {
                    let entity = Uri::parse(uri.as_bytes())
                        .map(|u| u.identity())
                        .unwrap_or_default();
                    self.presentities.get_or_create(key, &entity);
                }
                Kind::List(Box::new(ListState::from_stored(l)))
            }
        };
        let keys = kind_keys(&kind);
        self.subscriptions.next += 1;
        let id = SubId(self.subscriptions.next);
        let expires_at = now + expires;
        let watcher = d.watcher;
        let sub = Subscription {
            call_id: key.0.clone(),
            local_tag: key.1.clone(),
            remote_tag: d.remote_tag,
            remote_cseq: d.remote_cseq,
            watcher: watcher.clone(),
            request_uri: Bytes::from(d.request_uri),
            next_hop,
            has_routes: d.has_routes,
            direct: d.direct,
            taken_from: Some(d.node.clone().into_boxed_str()),
            fixed: with_contact(&d.fixed, &self.config.contact),
            cseq: d.cseq_ceiling,
            cseq_rewrite_at: u32::MAX,
            expires_at,
            conn: reuse.then_some(conn),
            conn_slot: 0,
            origin: conn,
            bypass: d.bypass,
            unacked: Vec::new(),
            registered: true,
            kind,
        };
        self.subscriptions.insert(id, sub);
        self.subscriptions.dialogs.insert(key, id);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.subscriptions += 1;
        }
        self.update_access(id);
        self.register_watches(now, id, &watcher, &keys);
        self.timers.arm(expires_at, Timer::SubscriptionExpiry(id));
        info!(%watcher, resources = keys.len(), from = %d.node, "subscription dialog taken over from another node");
        Some(id)
    }

    /// Counts subscription `id` of `watcher` among the watchers of `keys` (resource i watching
    /// `keys[i]`) and in who-watches-whom, re-evaluating the access a new relation changes.
    fn register_watches(&mut self, now: Instant, id: SubId, watcher: &str, keys: &[String]) {
        for (resource, key) in keys.iter().enumerate() {
            if let Some(p) = self.presentities.get_mut(key) {
                p.watchers.push(Watch {
                    sub: id,
                    resource: resource as u32,
                });
            }
            if self.presentities.add_watch(watcher, key) {
                self.reevaluate_access(now, watcher, key);
            }
        }
    }

    /// Forgets a subscription and updates who-watches-whom (in the cluster store too).
    fn remove_subscription(&mut self, now: Instant, id: SubId) {
        if self
            .subscriptions
            .map
            .get(&id)
            .is_some_and(|s| s.registered)
        {
            self.cluster_watch(now, id, true, true);
        }
        self.forget_subscription(now, id);
    }

    /// Forgets a subscription and updates who-watches-whom here only (the cluster store
    /// left as it is: another node holds the dialog now). False if there was none.
    pub(crate) fn forget_subscription(&mut self, now: Instant, id: SubId) -> bool {
        let watched = self.watched(id);
        let Some(s) = self.subscriptions.remove(id) else {
            return false;
        };
        if let Some(c) = self.conns.get_mut(&s.origin) {
            c.subscriptions = c.subscriptions.saturating_sub(1);
        }
        if !s.registered {
            for key in &watched {
                self.cluster_release(now, key);
                self.presentities.remove_if_unused(key);
            }
            return true;
        }
        self.subscriptions.dialogs.remove(&(s.call_id, s.local_tag));
        for key in &watched {
            if let Some(p) = self.presentities.get_mut(key) {
                p.watchers.retain(|w| w.sub != id);
            }
            if self.presentities.remove_watch(&s.watcher, key) {
                self.reevaluate_access(now, &s.watcher, key);
            }
            self.cluster_release(now, key);
            self.presentities.remove_if_unused(key);
        }
        true
    }
}

/// A dialog's fixed NOTIFY header lines with this node's `Contact` instead of the one stored
/// by the node that wrote them (the subscriber's next requests come here).
fn with_contact(fixed: &[u8], contact: &str) -> Bytes {
    let mut out = Vec::with_capacity(fixed.len() + contact.len());
    for line in fixed.split_inclusive(|b| *b == b'\n') {
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"Contact:") {
            out.extend_from_slice(b"Contact: <");
            out.extend_from_slice(contact.as_bytes());
            out.extend_from_slice(b">\r\n");
        } else {
            out.extend_from_slice(line);
        }
    }
    Bytes::from(out)
}
