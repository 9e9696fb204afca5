//! SUBSCRIBE (RFC 6665, RFC 3856): subscription dialogs, NOTIFYs, expiry, and the
//! mutual-subscription (confidentiality) rule.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use super::response::{RequestInfo, warning};
use super::timers::Timer;
use super::{ConnId, Server, SubId, Target};
use crate::config::Config;
use crate::sip::{Event, HeaderName, Message, NameAddr, Uri, Via, header::parse_u32};

/// One subscription dialog (we are the notifier, the UAS of the SUBSCRIBE).
#[derive(Debug)]
pub(crate) struct Subscription {
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// Highest CSeq seen from the subscriber (in-dialog requests must increase it).
    remote_cseq: u32,
    /// AOR key of the watched presentity.
    pub(crate) presentity: String,
    /// AOR key of the watcher (the SUBSCRIBE's From).
    pub(crate) watcher: String,
    /// Request-URI of our NOTIFYs (the remote target, or the first route when it is strict).
    request_uri: Bytes,
    next_hop: Target,
    has_routes: bool,
    /// The header lines that never change within the dialog: Max-Forwards, Route, From, To,
    /// Call-ID, Contact, Event, User-Agent.
    fixed: Bytes,
    cseq: u32,
    expires_at: Instant,
    /// Connection NOTIFYs currently go out on.
    conn: Option<ConnId>,
    bypass: bool,
    /// Whether the watcher currently gets published state (mutual, self or bypass).
    extended: bool,
    /// CSeqs of NOTIFYs without a final response yet.
    unacked: Vec<u32>,
    /// Counted in the who-watches-whom index and the presentity's watchers (false for a fetch).
    registered: bool,
}

#[derive(Debug)]
pub(crate) struct Subscriptions {
    next: u64,
    map: HashMap<SubId, Subscription>,
    /// (Call-ID, our tag) → subscription.
    dialogs: HashMap<(String, String), SubId>,
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
            branch_prefix,
            via_prefix,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The state a NOTIFY announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notify {
    Active,
    /// Terminated, with an optional reason, and whether the current state is attached.
    Terminated {
        reason: Option<&'static str>,
        body: bool,
    },
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

fn target_addr(t: &Target) -> Option<SocketAddr> {
    let ip = t
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok()?;
    Some(SocketAddr::new(ip, t.port))
}

fn push_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
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
            let w = warning("No Event package");
            self.respond(conn, remote, msg, 400, "Bad Request", &[("Warning", &w)]);
            return;
        };
        let event = Event::parse(event_raw);
        let Some(event) = event.filter(|e| e.is("presence")) else {
            self.respond(
                conn,
                remote,
                msg,
                489,
                "Bad Event",
                &[("Allow-Events", b"presence")],
            );
            return;
        };
        let expires = match msg.header(&HeaderName::Expires) {
            None => self.config.subscribe_default_expires,
            Some(v) => match parse_u32(v) {
                Some(e) => e,
                None => {
                    let w = warning("Bad Expires");
                    self.respond(conn, remote, msg, 400, "Bad Request", &[("Warning", &w)]);
                    return;
                }
            },
        }
        .min(self.config.max_expires);
        let bypass = self.bypasses(msg);
        let contact = match msg
            .header(&HeaderName::Contact)
            .and_then(|v| NameAddr::parse_list(v))
        {
            Some(list) if !list.is_empty() => Some(list.into_iter().next().map(|c| c.uri)),
            _ => None,
        }
        .flatten();

        if let Some(to_tag) = info.to.tag() {
            let key = (info.call_id.clone(), to_tag.to_owned());
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
                    let w = warning("No such subscription");
                    self.respond(
                        conn,
                        remote,
                        msg,
                        481,
                        "Subscription Does Not Exist",
                        &[("Warning", &w)],
                    );
                    return;
                }
            };
            let stale = self.subscriptions.map.get_mut(&id).is_some_and(|s| {
                let stale = info.cseq.seq <= s.remote_cseq;
                s.remote_cseq = s.remote_cseq.max(info.cseq.seq);
                stale
            });
            if stale {
                // RFC 3261 §12.2.2: a lower CSeq within a dialog is out of order.
                let w = warning("CSeq out of order");
                self.respond(
                    conn,
                    remote,
                    msg,
                    500,
                    "Server Internal Error",
                    &[("Warning", &w)],
                );
                return;
            }
            self.refresh_subscription(now, conn, remote, msg, id, expires, bypass, contact);
            return;
        }

        let Some(presentity_uri) = msg.request_uri() else {
            let w = warning("Request-URI is not a SIP URI");
            self.respond(
                conn,
                remote,
                msg,
                416,
                "Unsupported URI Scheme",
                &[("Warning", &w)],
            );
            return;
        };
        let Some(contact) = contact else {
            let w = warning("Missing or bad Contact");
            self.respond(conn, remote, msg, 400, "Bad Request", &[("Warning", &w)]);
            return;
        };
        let mut routes: Vec<NameAddr> = Vec::new();
        for v in msg.headers_named(&HeaderName::RecordRoute) {
            match NameAddr::parse_list(v) {
                Some(list) => routes.extend(list),
                None => {
                    let w = warning("Bad Record-Route");
                    self.respond(conn, remote, msg, 400, "Bad Request", &[("Warning", &w)]);
                    return;
                }
            }
        }
        let via_count: usize = msg
            .headers_named(&HeaderName::Via)
            .map(|v| Via::parse_list(v).map_or(1, |l| l.len()))
            .sum();

        let local_tag = self.rng.token(10);
        let presentity = presentity_uri.aor_key();
        let watcher = info.from.uri.aor_key();

        // Route set (RFC 3261 §12.1.1: the Record-Route URIs in order) and the NOTIFY target.
        let mut contact_bytes = Vec::new();
        contact.write_to(&mut contact_bytes);
        let (request_uri, next_hop, route_lines) = match routes.first() {
            None => (contact_bytes, hop(&contact), Vec::new()),
            Some(first) if first.uri.param("lr").is_some() => {
                let lines = routes
                    .iter()
                    .map(|r| {
                        let mut b = Vec::new();
                        r.write_to(&mut b);
                        b
                    })
                    .collect();
                (contact_bytes, hop(&first.uri), lines)
            }
            Some(first) => {
                // Strict router: it becomes the Request-URI, the remote target goes last.
                let mut ru = Vec::new();
                first.uri.write_to(&mut ru);
                let mut lines: Vec<Vec<u8>> = routes[1..]
                    .iter()
                    .map(|r| {
                        let mut b = Vec::new();
                        r.write_to(&mut b);
                        b
                    })
                    .collect();
                let mut last = b"<".to_vec();
                last.extend_from_slice(&contact_bytes);
                last.push(b'>');
                lines.push(last);
                (ru, hop(&first.uri), lines)
            }
        };
        // Reuse the inbound connection when it is the next hop, or when the UA talks to us
        // directly (one Via, no route set): its Contact may not be reachable from here.
        let reuse = target_addr(&next_hop) == Some(remote) || (routes.is_empty() && via_count <= 1);

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
        fixed.extend_from_slice(if self.config.support_legacy_client {
            b"Event: Presence"
        } else {
            b"Event: presence"
        });
        if let Some(id) = event.id() {
            fixed.extend_from_slice(b";id=");
            fixed.extend_from_slice(id.as_bytes());
        }
        fixed.extend_from_slice(b"\r\n");
        push_line(&mut fixed, "User-Agent", self.config.user_agent.as_bytes());

        let fetch = expires == 0;
        let registered = !fetch;
        self.subscriptions.next += 1;
        let id = SubId(self.subscriptions.next);
        let entity = presentity_uri.identity();
        self.presentities.get_or_create(&presentity, &entity);
        let sub = Subscription {
            call_id: info.call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: info.from.tag().unwrap_or_default().to_owned(),
            remote_cseq: info.cseq.seq,
            presentity: presentity.clone(),
            watcher: watcher.clone(),
            request_uri: Bytes::from(request_uri),
            next_hop,
            has_routes: !routes.is_empty(),
            fixed: Bytes::from(fixed),
            cseq: 0,
            expires_at: now + Duration::from_secs(u64::from(expires)),
            conn: reuse.then_some(conn),
            bypass,
            extended: false,
            unacked: Vec::new(),
            registered,
        };
        self.subscriptions.map.insert(id, sub);
        // Access first: the re-evaluation below must not count this subscription as a change.
        let extended = self.is_extended(id);
        if let Some(s) = self.subscriptions.map.get_mut(&id) {
            s.extended = extended;
        }
        if registered {
            self.subscriptions
                .dialogs
                .insert((info.call_id.clone(), local_tag.clone()), id);
            if let Some(p) = self.presentities.get_mut(&presentity) {
                p.watchers.push(id);
            }
            if self.presentities.add_watch(&watcher, &presentity) {
                self.reevaluate_access(now, &watcher, &presentity);
            }
            self.timers.arm(
                now + Duration::from_secs(u64::from(expires)),
                Timer::SubscriptionExpiry(id),
            );
            info!(%watcher, %presentity, expires, "subscription created");
        }

        let exp = itoa::Buffer::new().format(expires).as_bytes().to_vec();
        let contact_hdr = format!("<{}>", self.config.contact).into_bytes();
        let rr: Vec<Bytes> = msg
            .headers_named(&HeaderName::RecordRoute)
            .cloned()
            .collect();
        let mut extra: Vec<(&str, &[u8])> = vec![("Expires", &exp), ("Contact", &contact_hdr)];
        extra.extend(rr.iter().map(|v| ("Record-Route", v.as_ref())));
        self.respond_tagged(conn, remote, msg, 200, "OK", &local_tag, &extra);
        if fetch {
            self.send_notify(
                now,
                id,
                Notify::Terminated {
                    reason: Some("timeout"),
                    body: true,
                },
            );
        } else {
            self.send_notify(now, id, Notify::Active);
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
        sub.bypass = bypass;
        if let Some(target) = contact {
            // Target refresh (RFC 6665 §4.1.2.1); the route set stays.
            let mut ru = Vec::new();
            target.write_to(&mut ru);
            if !sub.has_routes {
                sub.request_uri = Bytes::from(ru);
                let hop = hop(&target);
                if hop != sub.next_hop {
                    sub.next_hop = hop;
                    sub.conn = None;
                }
            }
        }
        // A refresh arriving over a live connection from the next hop is the best path back.
        if target_addr(&sub.next_hop) == Some(remote) {
            sub.conn = Some(conn);
        }
        let exp = itoa::Buffer::new().format(expires).as_bytes().to_vec();
        let contact_hdr = format!("<{}>", self.config.contact).into_bytes();
        self.respond_tagged(
            conn,
            remote,
            msg,
            200,
            "OK",
            &local_tag,
            &[("Expires", &exp), ("Contact", &contact_hdr)],
        );
        if expires == 0 {
            debug!(?id, "unsubscribed");
            self.send_notify(
                now,
                id,
                Notify::Terminated {
                    reason: None,
                    body: true,
                },
            );
            return;
        }
        if let Some(sub) = self.subscriptions.map.get_mut(&id) {
            sub.expires_at = now + Duration::from_secs(u64::from(expires));
        }
        self.timers.arm(
            now + Duration::from_secs(u64::from(expires)),
            Timer::SubscriptionExpiry(id),
        );
        let extended = self.is_extended(id);
        if let Some(sub) = self.subscriptions.map.get_mut(&id) {
            sub.extended = extended;
        }
        self.send_notify(now, id, Notify::Active);
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

    /// Whether the watcher of `id` may see published state: it watches itself, bypasses the rule,
    /// or the presentity watches it back.
    fn is_extended(&self, id: SubId) -> bool {
        let Some(s) = self.subscriptions.map.get(&id) else {
            return false;
        };
        s.bypass
            || s.watcher == s.presentity
            || self.presentities.watches(&s.presentity, &s.watcher)
    }

    /// `watcher` started or stopped watching `presentity`: the subscriptions of `presentity` to
    /// `watcher` may have gained or lost access; tell those whose access changed.
    fn reevaluate_access(&mut self, now: Instant, watcher: &str, presentity: &str) {
        let Some(p) = self.presentities.get(watcher) else {
            return;
        };
        let candidates: Vec<SubId> = p
            .watchers
            .iter()
            .copied()
            .filter(|id| {
                self.subscriptions
                    .map
                    .get(id)
                    .is_some_and(|s| s.watcher == presentity)
            })
            .collect();
        for id in candidates {
            let extended = self.is_extended(id);
            let changed = match self.subscriptions.map.get_mut(&id) {
                Some(s) if s.extended != extended => {
                    s.extended = extended;
                    true
                }
                _ => false,
            };
            if changed {
                debug!(
                    ?id,
                    extended, "access level changed (mutual-subscription rule)"
                );
                self.send_notify(now, id, Notify::Active);
            }
        }
    }

    /// Published state of `presentity` changed: every watcher with access gets a NOTIFY.
    pub(crate) fn presentity_changed(&mut self, now: Instant, presentity: &str) {
        self.presentities.invalidate(presentity);
        let Some(p) = self.presentities.get(presentity) else {
            return;
        };
        let watchers: Vec<SubId> = p.watchers.clone();
        for id in watchers {
            if self.subscriptions.map.get(&id).is_some_and(|s| s.extended) {
                self.send_notify(now, id, Notify::Active);
            }
        }
    }

    /// The connection for the next NOTIFY of `id`: the current one if open, else one to the next hop.
    fn notify_conn(&mut self, id: SubId) -> Option<ConnId> {
        let sub = self.subscriptions.map.get(&id)?;
        if let Some(c) = sub.conn
            && self.is_open(c)
        {
            return Some(c);
        }
        let target = sub.next_hop.clone();
        let c = self.conn_to(target);
        if let Some(sub) = self.subscriptions.map.get_mut(&id) {
            sub.conn = Some(c);
        }
        Some(c)
    }

    /// Builds and queues one NOTIFY; a terminating one also ends the subscription.
    fn send_notify(&mut self, now: Instant, id: SubId, kind: Notify) {
        let Some(conn) = self.notify_conn(id) else {
            return;
        };
        let Some(sub) = self.subscriptions.map.get(&id) else {
            return;
        };
        let with_body = match kind {
            Notify::Active => true,
            Notify::Terminated { body, .. } => body,
        };
        let body = if with_body {
            let (key, extended) = (sub.presentity.clone(), sub.extended);
            Some(
                self.presentities
                    .document(&key, extended, &self.publications),
            )
        } else {
            None
        };
        let Some(sub) = self.subscriptions.map.get_mut(&id) else {
            return;
        };
        sub.cseq += 1;
        let cseq = sub.cseq;
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
        match kind {
            Notify::Active => {
                out.extend_from_slice(b"Subscription-State: active;expires=");
                out.extend_from_slice(num.format(remaining).as_bytes());
            }
            Notify::Terminated { reason, .. } => {
                out.extend_from_slice(b"Subscription-State: terminated");
                if let Some(r) = reason {
                    out.extend_from_slice(b";reason=");
                    out.extend_from_slice(r.as_bytes());
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        match &body {
            Some(b) => {
                out.extend_from_slice(b"Content-Type: application/pidf+xml\r\nContent-Length: ");
                out.extend_from_slice(num.format(b.len()).as_bytes());
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        self.stats.notifies_sent += 1;
        match kind {
            Notify::Active => {
                sub.unacked.push(cseq);
                self.timers
                    .arm_notify(now + self.config.notify_timeout, id, cseq);
            }
            Notify::Terminated { .. } => self.remove_subscription(now, id),
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
            200..=299 => {}
            408 | 481 => {
                info!(?id, code, "NOTIFY refused: subscription ended");
                self.stats.notify_failures += 1;
                self.remove_subscription(now, id);
            }
            _ => debug!(?id, code, "NOTIFY answered with an error"),
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
                Notify::Terminated {
                    reason: Some("timeout"),
                    body: false,
                },
            );
        }
    }

    /// A connection went away: subscriptions with NOTIFYs in flight on it have lost them and end;
    /// the others will look for a new path at their next NOTIFY.
    pub(crate) fn subscriptions_lost_connection(&mut self, now: Instant, conn: ConnId) {
        let mut lost = Vec::new();
        for (id, s) in self.subscriptions.map.iter_mut() {
            if s.conn == Some(conn) {
                s.conn = None;
                if !s.unacked.is_empty() {
                    lost.push(*id);
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

    /// Forgets a subscription and updates who-watches-whom.
    fn remove_subscription(&mut self, now: Instant, id: SubId) {
        let Some(s) = self.subscriptions.map.remove(&id) else {
            return;
        };
        if !s.registered {
            self.presentities.remove_if_unused(&s.presentity);
            return;
        }
        self.subscriptions.dialogs.remove(&(s.call_id, s.local_tag));
        if let Some(p) = self.presentities.get_mut(&s.presentity) {
            p.watchers.retain(|w| *w != id);
        }
        if self.presentities.remove_watch(&s.watcher, &s.presentity) {
            self.reevaluate_access(now, &s.watcher, &s.presentity);
        }
        self.presentities.remove_if_unused(&s.presentity);
    }
}
