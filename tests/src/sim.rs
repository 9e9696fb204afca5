//! A deterministic simulator for `presence_proto::Server`: a fake clock, in-memory connections
//! and scripted user agents. Time only moves when a test says so, and timers fire at their exact
//! deadlines, in order: expiry and timeouts are tested without sleeping.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use presence_proto::sip::{Framer, HeaderName, Message};
use presence_proto::{Action, Config, ConnId, Server, Target};

/// One end of a connection, as seen by the peer of the server.
#[derive(Debug)]
pub struct SimConn {
    /// The address the server sees (inbound) or was asked to reach (outbound).
    pub remote: Option<SocketAddr>,
    /// For connections the server opened: where to.
    pub target: Option<Target>,
    framer: Framer,
    /// Messages the server sent on this connection, not yet taken by the test.
    pub inbox: VecDeque<Message>,
    /// Raw bytes the server sent on this connection, in order.
    pub raw: Vec<u8>,
    pub closed_by_server: bool,
    /// Number of `Send` actions (writes) for this connection.
    pub writes: usize,
}

/// The simulator.
pub struct Sim {
    pub server: Server,
    pub now: Instant,
    pub start: Instant,
    pub conns: BTreeMap<ConnId, SimConn>,
    /// Queries the server asked for, not yet answered by the test.
    pub queries: VecDeque<(presence_proto::QueryId, presence_proto::Query)>,
    /// Cluster operations the server asked for, not yet answered by the test.
    pub cluster_ops: VecDeque<(presence_proto::ClusterOpId, presence_proto::ClusterOp)>,
    next_port: u16,
}

impl Sim {
    pub fn new(config: Config) -> Sim {
        Self::with_seed(config, 42)
    }

    pub fn with_seed(config: Config, seed: u64) -> Sim {
        let start = Instant::now();
        Sim {
            server: Server::new(config, start, seed),
            now: start,
            start,
            conns: BTreeMap::new(),
            queries: VecDeque::new(),
            cluster_ops: VecDeque::new(),
            next_port: 40000,
        }
    }

    /// Opens a client connection from a fresh loopback port.
    pub fn connect(&mut self) -> ConnId {
        self.next_port += 1;
        let remote = SocketAddr::from(([127, 0, 0, 1], self.next_port));
        self.connect_from(remote)
    }

    pub fn connect_from(&mut self, remote: SocketAddr) -> ConnId {
        let local = SocketAddr::from(([127, 0, 0, 1], 5065));
        let id = self.server.connection_opened(self.now, remote, local);
        self.conns.insert(id, new_conn(Some(remote), None));
        self.pump();
        id
    }

    /// Delivers bytes from the client side of `conn` to the server.
    pub fn send(&mut self, conn: ConnId, data: impl AsRef<[u8]>) {
        self.server.connection_data(self.now, conn, data.as_ref());
        self.pump();
    }

    /// The client side closes `conn` (or an outbound connection fails).
    pub fn close(&mut self, conn: ConnId) {
        self.server.connection_closed(self.now, conn);
        self.pump();
    }

    /// Moves the clock forward by `d`, firing every timer due on the way at its own deadline.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.server.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.server.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
    }

    /// Takes the next message the server sent on `conn`.
    pub fn recv(&mut self, conn: ConnId) -> Option<Message> {
        self.conns.get_mut(&conn)?.inbox.pop_front()
    }

    /// Takes every message the server sent on `conn`.
    pub fn recv_all(&mut self, conn: ConnId) -> Vec<Message> {
        self.conns
            .get_mut(&conn)
            .map(|c| c.inbox.drain(..).collect())
            .unwrap_or_default()
    }

    /// Connections the server opened, with their targets.
    pub fn outbound(&self) -> Vec<(ConnId, Target)> {
        self.conns
            .iter()
            .filter_map(|(id, c)| c.target.clone().map(|t| (*id, t)))
            .collect()
    }

    pub fn conn(&self, conn: ConnId) -> &SimConn {
        &self.conns[&conn]
    }

    /// Drains the server's actions into the simulated connections.
    pub fn pump(&mut self) {
        while let Some(action) = self.server.poll_action() {
            match action {
                Action::Connect { conn, target } => {
                    self.conns.insert(conn, new_conn(None, Some(target)));
                }
                Action::Send { conn, data } => {
                    let c = self
                        .conns
                        .get_mut(&conn)
                        .expect("Send on a connection the simulator does not know");
                    assert!(!c.closed_by_server, "Send after Close on {conn:?}");
                    c.writes += 1;
                    c.raw.extend_from_slice(&data);
                    c.framer.push(&data);
                    while let Some(raw) = c.framer.next_message().expect("server output must frame")
                    {
                        let msg = Message::parse(raw, 1000).expect("server output must parse");
                        c.inbox.push_back(msg);
                    }
                }
                Action::Close { conn } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.closed_by_server = true;
                    }
                }
                Action::Query { id, query } => self.queries.push_back((id, query)),
                Action::Cluster { id, op } => self.cluster_ops.push_back((id, op)),
            }
        }
    }
}

fn new_conn(remote: Option<SocketAddr>, target: Option<Target>) -> SimConn {
    SimConn {
        remote,
        target,
        framer: Framer::new(1 << 20),
        inbox: VecDeque::new(),
        raw: Vec::new(),
        closed_by_server: false,
        writes: 0,
    }
}

/// Header value as a string (first occurrence).
pub fn header(msg: &Message, name: HeaderName) -> Option<String> {
    msg.header(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub fn body(msg: &Message) -> String {
    String::from_utf8_lossy(&msg.body).into_owned()
}

/// A scripted user agent speaking for one AOR over one connection.
#[derive(Debug, Clone)]
pub struct Ua {
    pub user: String,
    pub domain: String,
    pub conn: ConnId,
    pub user_agent: String,
    seq: u32,
}

/// A subscription dialog as the subscriber sees it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub target: String,
    pub cseq: u32,
}

impl Dialog {
    /// Takes the tag of the response's To header (the server's side of the dialog), if any.
    pub fn learn_to_tag(&mut self, resp: &Message) {
        if let Some(to) = resp.header(&HeaderName::To) {
            let to = String::from_utf8_lossy(to);
            if let Some(i) = to.find(";tag=") {
                self.to_tag = to[i + 5..].split(';').next().unwrap_or("").to_owned();
            }
        }
    }
}

impl Ua {
    pub fn new(sim: &mut Sim, user: &str) -> Ua {
        let conn = sim.connect();
        Ua {
            user: user.to_owned(),
            domain: "example.org".to_owned(),
            conn,
            user_agent: "sim-ua/1.0".to_owned(),
            seq: 0,
        }
    }

    pub fn uri(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }

    fn next(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// A PIDF document with one open tuple and an optional note and activity.
    pub fn pidf(&self, tuple_id: &str, note: &str, activity: Option<&str>) -> String {
        let person = match activity {
            Some(a) => format!(
                "<dm:person id=\"p{tuple_id}\"><rpid:activities><rpid:{a}/></rpid:activities><dm:timestamp>2026-11-26T10:00:00Z</dm:timestamp></dm:person>"
            ),
            None => String::new(),
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{}\"><tuple id=\"{tuple_id}\"><status><basic>open</basic></status><contact>{}</contact><note>{note}</note></tuple>{person}</presence>",
            self.uri(),
            self.uri()
        )
    }

    /// A PUBLISH request. `etag` adds SIP-If-Match; `body` None sends no body (refresh/remove).
    pub fn publish_msg(
        &mut self,
        body: Option<&str>,
        expires: Option<u32>,
        etag: Option<&str>,
    ) -> String {
        let n = self.next();
        let mut m = format!(
            "PUBLISH {uri} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKpub{n}{user};rport\r\nFrom: <{uri}>;tag=pf{n}\r\nTo: <{uri}>\r\nCall-ID: pub-{user}-{n}\r\nCSeq: {n} PUBLISH\r\nMax-Forwards: 70\r\nEvent: presence\r\n",
            uri = self.uri(),
            user = self.user
        );
        if let Some(e) = expires {
            m.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some(t) = etag {
            m.push_str(&format!("SIP-If-Match: {t}\r\n"));
        }
        let b = body.unwrap_or("");
        if body.is_some() {
            m.push_str("Content-Type: application/pidf+xml\r\n");
        }
        m.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
        m
    }

    /// Publishes and returns the response.
    pub fn publish(
        &mut self,
        sim: &mut Sim,
        body: Option<&str>,
        expires: Option<u32>,
        etag: Option<&str>,
    ) -> Message {
        let m = self.publish_msg(body, expires, etag);
        sim.send(self.conn, m);
        self.expect_response(sim)
    }

    /// An initial SUBSCRIBE to `target` (a URI), with the given expiry and extra header lines.
    pub fn subscribe_msg(
        &mut self,
        target: &str,
        expires: Option<u32>,
        extra: &str,
    ) -> (String, Dialog) {
        let n = self.next();
        let d = Dialog {
            call_id: format!("sub-{}-{n}", self.user),
            from_tag: format!("ft{n}"),
            to_tag: String::new(),
            target: target.to_owned(),
            cseq: 1,
        };
        let exp = expires
            .map(|e| format!("Expires: {e}\r\n"))
            .unwrap_or_default();
        let m = format!(
            "SUBSCRIBE {target} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKsub{n}{user};rport\r\nFrom: <{uri}>;tag={ft}\r\nTo: <{target}>\r\nCall-ID: {cid}\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nContact: <sip:{user}@127.0.0.1:5060;transport=tcp>\r\nEvent: presence\r\n{exp}User-Agent: {ua}\r\nAccept: application/pidf+xml\r\n{extra}Content-Length: 0\r\n\r\n",
            uri = self.uri(),
            user = self.user,
            ft = d.from_tag,
            cid = d.call_id,
            ua = self.user_agent,
        );
        (m, d)
    }

    /// Subscribes; returns the 200's dialog (with the server's tag) and the response.
    pub fn subscribe(
        &mut self,
        sim: &mut Sim,
        target: &str,
        expires: Option<u32>,
    ) -> (Dialog, Message) {
        let (m, mut d) = self.subscribe_msg(target, expires, "");
        sim.send(self.conn, m);
        let resp = self.expect_response(sim);
        d.learn_to_tag(&resp);
        (d, resp)
    }

    /// An in-dialog SUBSCRIBE (refresh, or unsubscribe with 0).
    pub fn resubscribe_msg(&mut self, d: &mut Dialog, expires: u32) -> String {
        d.cseq += 1;
        let n = self.next();
        format!(
            "SUBSCRIBE {target} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKre{n}{user};rport\r\nFrom: <{uri}>;tag={ft}\r\nTo: <{target}>;tag={tt}\r\nCall-ID: {cid}\r\nCSeq: {cseq} SUBSCRIBE\r\nMax-Forwards: 70\r\nContact: <sip:{user}@127.0.0.1:5060;transport=tcp>\r\nEvent: presence\r\nExpires: {expires}\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n",
            target = d.target,
            user = self.user,
            uri = self.uri(),
            ft = d.from_tag,
            tt = d.to_tag,
            cid = d.call_id,
            cseq = d.cseq,
            ua = self.user_agent,
        )
    }

    pub fn resubscribe(&mut self, sim: &mut Sim, d: &mut Dialog, expires: u32) -> Message {
        let m = self.resubscribe_msg(d, expires);
        sim.send(self.conn, m);
        self.expect_response(sim)
    }

    /// Takes the next message on the UA's connection, which must be a response.
    pub fn expect_response(&self, sim: &mut Sim) -> Message {
        let m = sim
            .recv(self.conn)
            .expect("expected a response, got nothing");
        assert!(!m.is_request(), "expected a response, got {:?}", m.start);
        m
    }

    /// Takes the next NOTIFY on the UA's connection and answers it with `code`.
    pub fn expect_notify(&self, sim: &mut Sim, code: u16) -> Message {
        let m = sim.recv(self.conn).expect("expected a NOTIFY, got nothing");
        assert_eq!(
            m.method().map(|m| m.as_str().to_owned()).as_deref(),
            Some("NOTIFY"),
            "got {:?}",
            m.start
        );
        let resp = answer(&m, code);
        sim.send(self.conn, resp);
        m
    }
}

/// A response to `req` with `code`, copying Via/From/To/Call-ID/CSeq
/// ([`Message::response_skeleton`]).
pub fn answer(req: &Message, code: u16) -> Bytes {
    Bytes::from(req.response_skeleton(code, "Whatever"))
}

/// A list NOTIFY, decoded.
#[derive(Debug)]
pub struct ListNotify {
    pub rlmi: presence_proto::rlmi::List,
    /// PIDF parts by Content-ID (as written in the part: bare or `<...>`).
    pub parts: BTreeMap<String, String>,
    /// The RLMI part's Content-ID as written.
    pub rlmi_cid: String,
    pub compressed: bool,
    pub state: presence_proto::sip::SubscriptionState,
}

impl ListNotify {
    /// The PIDF document of a resource's instance, looked up by its cid (bare or bracketed).
    pub fn pidf_of(&self, uri: &str) -> Option<&str> {
        let r = self.rlmi.resources.iter().find(|r| r.uri == uri)?;
        let cid = r.instances.first()?.cid.as_deref()?;
        self.parts
            .get(cid)
            .or_else(|| self.parts.get(&format!("<{cid}>")))
            .map(String::as_str)
    }
    /// URIs of resources that carry an instance.
    pub fn with_instances(&self) -> Vec<&str> {
        self.rlmi
            .resources
            .iter()
            .filter(|r| !r.instances.is_empty())
            .map(|r| r.uri.as_str())
            .collect()
    }
}

/// Decodes a list NOTIFY: checks `Require: eventlist` and the multipart/related Content-Type,
/// inflates a deflated body, splits the parts and reads the RLMI.
pub fn decode_list(n: &Message) -> ListNotify {
    use presence_proto::sip::{ContentType, SubscriptionState};
    assert_eq!(
        header(n, HeaderName::Require).as_deref(),
        Some("eventlist"),
        "list NOTIFY without Require: eventlist"
    );
    let state = SubscriptionState::parse(
        n.header(&HeaderName::SubscriptionState)
            .expect("Subscription-State"),
    )
    .expect("Subscription-State parses");
    let ct_raw = header(n, HeaderName::ContentType).expect("Content-Type");
    let ct = ContentType::parse(ct_raw.as_bytes()).expect("Content-Type parses");
    assert!(ct.is("multipart/related"), "{ct_raw}");
    assert!(ct_raw.contains("type=\"application/rlmi+xml\""), "{ct_raw}");
    let boundary = ct
        .params
        .get("boundary")
        .flatten()
        .expect("boundary")
        .trim_matches('"')
        .to_owned();
    assert!(
        ct_raw.ends_with(&format!("boundary={boundary}")),
        "boundary must be the last parameter: {ct_raw}"
    );
    let compressed =
        header(n, HeaderName::ContentEncoding).is_some_and(|e| e.eq_ignore_ascii_case("deflate"));
    let body = if compressed {
        presence_proto::encoding::inflate(&n.body, 16 << 20).expect("inflates")
    } else {
        n.body.to_vec()
    };
    let parts =
        presence_proto::multipart::parse(&body, &boundary, 100_000).expect("multipart parses");
    assert!(!parts.is_empty());
    let first = &parts[0];
    assert!(
        first
            .header("Content-Type")
            .unwrap_or_default()
            .starts_with("application/rlmi+xml")
    );
    let rlmi = presence_proto::rlmi::parse(&first.body).expect("RLMI parses");
    let rlmi_cid = first.header("Content-ID").unwrap_or_default().to_owned();
    let mut map = BTreeMap::new();
    for p in &parts[1..] {
        assert!(
            p.header("Content-Type")
                .unwrap_or_default()
                .starts_with("application/pidf+xml")
        );
        let cid = p.header("Content-ID").expect("Content-ID").to_owned();
        map.insert(cid, String::from_utf8_lossy(&p.body).into_owned());
    }
    ListNotify {
        rlmi,
        parts: map,
        rlmi_cid,
        compressed,
        state,
    }
}

impl Ua {
    /// A resource-lists body with these entry URIs.
    pub fn list_body(entries: &[String]) -> Vec<u8> {
        let entries: Vec<presence_proto::resource_lists::Entry> = entries
            .iter()
            .map(|u| presence_proto::resource_lists::Entry {
                uri: u.clone(),
                name: None,
            })
            .collect();
        let mut out = Vec::new();
        presence_proto::resource_lists::write(&entries, &mut out);
        out
    }

    /// An initial list SUBSCRIBE (RFC 5367) carrying `body` (already encoded as `extra` says).
    pub fn subscribe_list_msg(
        &mut self,
        list_uri: &str,
        body: &[u8],
        expires: u32,
        extra: &str,
    ) -> (Vec<u8>, Dialog) {
        let n = self.next();
        let d = Dialog {
            call_id: format!("list-{}-{n}", self.user),
            from_tag: format!("lt{n}"),
            to_tag: String::new(),
            target: list_uri.to_owned(),
            cseq: 1,
        };
        let mut m = format!(
            "SUBSCRIBE {list_uri} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKlist{n}{user}\r\nFrom: <{uri}>;tag={ft}\r\nTo: <{list_uri}>\r\nCall-ID: {cid}\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nContact: <sip:{user}@127.0.0.1:5060;transport=tcp>\r\nEvent: presence\r\nExpires: {expires}\r\nSupported: eventlist\r\nRequire: recipient-list-subscribe\r\nAccept: multipart/related, application/pidf+xml, application/rlmi+xml\r\nContent-Disposition: recipient-list\r\nContent-Type: application/resource-lists+xml\r\nUser-Agent: {ua}\r\n{extra}Content-Length: {len}\r\n\r\n",
            user = self.user,
            uri = self.uri(),
            ft = d.from_tag,
            cid = d.call_id,
            ua = self.user_agent,
            len = body.len(),
        )
        .into_bytes();
        m.extend_from_slice(body);
        (m, d)
    }

    /// Subscribes to a list of `entries`; returns the dialog and the 200.
    pub fn subscribe_list(
        &mut self,
        sim: &mut Sim,
        list_uri: &str,
        entries: &[String],
        expires: u32,
        extra: &str,
    ) -> (Dialog, Message) {
        let body = Self::list_body(entries);
        let (m, mut d) = self.subscribe_list_msg(list_uri, &body, expires, extra);
        sim.send(self.conn, m);
        let resp = self.expect_response(sim);
        d.learn_to_tag(&resp);
        (d, resp)
    }
}

/// A scripted account database for the simulator.
#[derive(Debug, Default, Clone)]
pub struct FakeDb {
    pub accounts: Vec<presence_proto::AccountRow>,
    /// (from, to) → name-addr rows.
    pub lists: BTreeMap<(String, String), Vec<String>>,
}

impl FakeDb {
    pub fn with_account(mut self, login: &str, domain: &str, phone: Option<&str>) -> FakeDb {
        self.accounts.push(presence_proto::AccountRow {
            login: login.into(),
            domain: Some(domain.into()),
            phone: phone.map(str::to_owned),
        });
        self
    }

    /// What the database answers to `q`.
    pub fn answer(&self, q: &presence_proto::Query) -> presence_proto::QueryResult {
        use presence_proto::{Query, QueryResult};
        match q {
            Query::Accounts { users } => QueryResult::Accounts(
                self.accounts
                    .iter()
                    .filter(|a| {
                        users
                            .iter()
                            .any(|u| *u == a.login || Some(u) == a.phone.as_ref())
                    })
                    .cloned()
                    .collect(),
            ),
            Query::ListMembers { from, to } => QueryResult::ListMembers(
                self.lists
                    .get(&(from.clone(), to.clone()))
                    .cloned()
                    .unwrap_or_default(),
            ),
        }
    }
}

impl Sim {
    /// Answers every pending query from `db`; returns how many were answered.
    pub fn answer_queries(&mut self, db: &FakeDb) -> usize {
        let mut n = 0;
        while let Some((id, q)) = self.queries.pop_front() {
            let r = db.answer(&q);
            self.server.query_result(self.now, id, Ok(r));
            self.pump();
            n += 1;
        }
        n
    }

    /// Fails every pending query.
    pub fn fail_queries(&mut self) -> usize {
        let mut n = 0;
        while let Some((id, _)) = self.queries.pop_front() {
            self.server.query_result(
                self.now,
                id,
                Err(presence_proto::QueryError("database down".into())),
            );
            self.pump();
            n += 1;
        }
        n
    }
}
