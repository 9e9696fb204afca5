//! Helpers shared by the cluster suites (`e2e_cluster`, `e2e_sentinel`, `cluster_proxy`): a user
//! agent speaking raw SIP over TCP ([`Ua`]) and the subscriptions it holds ([`Dialog`]), PIDF
//! bodies, and a wait on a daemon's log. The Redis side (key prefixes, private servers) is in
//! [`crate::redis`].

use std::time::{Duration, Instant};

use crate::daemon::{Daemon, SipClient, SipMessage, unique};

/// The domain of the user agents connected straight to a node.
pub const DOMAIN: &str = "127.0.0.1";
/// Longest wait for a change to cross from one node to another.
pub const CROSS: Duration = Duration::from_secs(5);

/// `user`'s address of record in [`DOMAIN`].
pub fn aor(user: &str) -> String {
    aor_in(user, DOMAIN)
}

pub fn aor_in(user: &str, domain: &str) -> String {
    format!("sip:{user}@{domain}")
}

/// A PIDF document of `user` (in [`DOMAIN`]) with one open tuple noted `note`.
pub fn pidf(user: &str, note: &str) -> String {
    open_pidf(&aor(user), note)
}

/// A PIDF document of `entity` (an AOR) with one open tuple, contact `entity`, noted `note`.
pub fn open_pidf(entity: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\"><tuple id=\"t1\"><status><basic>open</basic></status><contact>{entity}</contact><note>{note}</note></tuple></presence>"
    )
}

/// The SIP-ETag of a response to a PUBLISH.
pub fn etag(r: &SipMessage) -> String {
    r.header("SIP-ETag")
        .unwrap_or_else(|| panic!("no SIP-ETag:\n{r}"))
        .to_owned()
}

/// The sequence number of the CSeq.
pub fn cseq(m: &SipMessage) -> u32 {
    m.header("CSeq")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CSeq:\n{m}"))
}

/// Waits (at most `limit`) until the daemon's log has a line with every one of `parts`.
pub fn wait_log(d: &Daemon, parts: &[&str], limit: Duration) {
    let found = || d.log().lines().any(|l| parts.iter().all(|p| l.contains(p)));
    let deadline = Instant::now() + limit;
    while !found() {
        assert!(
            Instant::now() < deadline,
            "no line with {parts:?} within {limit:?}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A subscription as the subscriber sees it (RFC 3261 §12.1.2).
pub struct Dialog {
    pub call_id: String,
    pub from_tag: String,
    pub to_user: &'static str,
    pub to_tag: String,
    pub cseq: u32,
    /// The route set (empty when the user agent speaks to a node directly).
    pub route: Vec<String>,
    /// The Request-URI of in-dialog SUBSCRIBEs: the presentity's AOR, or the remote target
    /// when the user agent follows it.
    pub target: String,
}

/// A user agent on one connection: to a node ([`Ua::new`]), or to a proxy ([`Ua::on`]).
pub struct Ua {
    pub user: &'static str,
    pub conn: SipClient,
    /// The CSeq of the last PUBLISH.
    pub cseq: u32,
    /// The Call-ID of the PUBLISHes.
    pub call_id: String,
    /// The User-Agent of SUBSCRIBEs (`cluster-test`: the suites' daemons are started with
    /// `bypass-condition=cluster-test`, which spares the mutual rule).
    pub user_agent: &'static str,
    /// The domain of the AORs.
    pub domain: &'static str,
}

impl Ua {
    /// `user` in [`DOMAIN`], connected to `daemon`.
    pub fn new(daemon: &Daemon, user: &'static str) -> Ua {
        Ua::on(daemon.connect(), user, DOMAIN)
    }

    /// `user` in `domain`, on `conn`.
    pub fn on(conn: SipClient, user: &'static str, domain: &'static str) -> Ua {
        Ua {
            user,
            conn,
            cseq: 1,
            call_id: unique("pub-"),
            user_agent: "Unknown",
            domain,
        }
    }

    fn aor(&self, user: &str) -> String {
        aor_in(user, self.domain)
    }

    pub fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/TCP {};branch=z9hG4bK.{};rport",
            self.conn.local,
            unique("b")
        )
    }

    /// The next PUBLISH of the user's presence: `body` (a refresh without one), a modification
    /// or refresh of `etag` when given.
    pub fn publish_request(
        &mut self,
        body: Option<&str>,
        expires: u32,
        etag: Option<&str>,
    ) -> String {
        self.cseq += 1;
        let me = self.aor(self.user);
        let mut m = format!(
            "PUBLISH {me} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag=p{}\r\nTo: <{me}>\r\nCSeq: {} PUBLISH\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: {expires}\r\n",
            self.via(),
            self.cseq,
            self.cseq,
            self.call_id
        );
        if let Some(e) = etag {
            m.push_str(&format!("SIP-If-Match: {e}\r\n"));
        }
        match body {
            Some(b) => m.push_str(&format!(
                "Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m
    }

    /// Sends [`Ua::publish_request`]; the response.
    pub fn publish(&mut self, body: Option<&str>, expires: u32, etag: Option<&str>) -> SipMessage {
        let m = self.publish_request(body, expires, etag);
        self.conn.send(&m);
        self.conn.expect_response()
    }

    /// A new subscription to `to_user`'s presence: the dialog (its To tag still empty) and the
    /// SUBSCRIBE that starts it.
    pub fn subscribe_request(&self, to_user: &'static str) -> (Dialog, String) {
        let (me, them) = (self.aor(self.user), self.aor(to_user));
        let d = Dialog {
            call_id: unique("sub-"),
            from_tag: unique("st"),
            to_user,
            to_tag: String::new(),
            cseq: 20,
            route: Vec::new(),
            target: them.clone(),
        };
        let m = format!(
            "SUBSCRIBE {them} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag={}\r\nTo: <{them}>\r\nCSeq: {} SUBSCRIBE\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:{}@{};transport=tcp>\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            self.via(),
            d.from_tag,
            d.cseq,
            d.call_id,
            self.user,
            self.conn.local,
            self.user_agent
        );
        (d, m)
    }

    /// Sends [`Ua::subscribe_request`], which must be answered 200: the dialog and its first
    /// NOTIFY (answered).
    pub fn subscribe(&mut self, to_user: &'static str) -> (Dialog, SipMessage) {
        let (mut d, m) = self.subscribe_request(to_user);
        self.conn.send(&m);
        let (r, n) = self.conn.expect_response_and_notify();
        assert_eq!(r.status(), Some(200), "{r}");
        d.to_tag = r.tag("To").expect("To tag");
        (d, n)
    }

    /// The next in-dialog SUBSCRIBE of `d` (a refresh, or an unsubscription with `expires` 0),
    /// to its target through its route set.
    pub fn resubscribe_request(&self, d: &mut Dialog, expires: u32) -> String {
        d.cseq += 1;
        let (me, them) = (self.aor(self.user), self.aor(d.to_user));
        let routes: String = d.route.iter().map(|r| format!("Route: {r}\r\n")).collect();
        format!(
            "SUBSCRIBE {} SIP/2.0\r\n{}\r\n{routes}From: <{me}>;tag={}\r\nTo: <{them}>;tag={}\r\nCSeq: {} SUBSCRIBE\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: {expires}\r\nContact: <sip:{}@{};transport=tcp>\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            d.target,
            self.via(),
            d.from_tag,
            d.to_tag,
            d.cseq,
            d.call_id,
            self.user,
            self.conn.local,
            self.user_agent
        )
    }

    /// Sends [`Ua::resubscribe_request`]: the response and the NOTIFY (answered).
    pub fn resubscribe(&mut self, d: &mut Dialog, expires: u32) -> (SipMessage, SipMessage) {
        let m = self.resubscribe_request(d, expires);
        self.conn.send(&m);
        self.conn.expect_response_and_notify()
    }

    /// The next NOTIFY within [`CROSS`], answered.
    pub fn notify(&mut self) -> SipMessage {
        match self.conn.recv(CROSS) {
            Ok(m) if m.method() == Some("NOTIFY") => {
                self.conn.send(&m.ok_response());
                m
            }
            Ok(m) => panic!("expected a NOTIFY, got:\n{m}"),
            Err(e) => panic!("no NOTIFY within {CROSS:?}: {e:?}"),
        }
    }

    /// Answers NOTIFYs until one's body contains `text` (at most `limit`).
    pub fn notified(&mut self, text: &str, limit: Duration) -> SipMessage {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.recv(left) {
                Ok(m) if m.method() == Some("NOTIFY") => {
                    self.conn.send(&m.ok_response());
                    if m.body_str().contains(text) {
                        return m;
                    }
                }
                Ok(m) => panic!("expected a NOTIFY, got:\n{m}"),
                Err(e) => panic!("no NOTIFY with {text:?} within {limit:?}: {e:?}"),
            }
        }
    }
}
