//! Load and faults over TCP, on both daemons (issue 5): 2000 subscriptions across 50 connections
//! keep receiving every NOTIFY they should while other peers misbehave (garbage, a half message
//! then a close, a subscriber that vanishes, a subscriber that stops reading) and the account
//! database (a private PostgreSQL server) is stopped and started again; the server's memory stays
//! bounded. Also: SIGTERM under load flushes what the server already produced.
//!
//! Waits are reads with deadlines and barriers between phases, never sleeps.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use presence_tests::daemon::{Daemon, RecvError, Runtime, SipClient, SipMessage, unique};
use presence_tests::on_both_runtimes;
use presence_tests::pg::PrivatePostgres;

const DOMAIN: &str = "faults.example.org";
/// Users in the ring; each watches its two neighbours: 2 × USERS subscriptions.
const USERS: usize = 1000;
/// Well-behaved connections (each carries USERS / CONNECTIONS users, like a proxy's).
const CONNECTIONS: usize = 50;
/// Silent accounts (in the database, never publishing) for long-term presence checks.
const SILENT: usize = 200;
/// Longest wait for one phase.
const PHASE: Duration = Duration::from_secs(60);
/// `max-pending-output` of the daemon under test.
const MAX_PENDING: usize = 1024 * 1024;

fn user(i: usize) -> String {
    format!("u{i:04}")
}

fn aor(name: &str) -> String {
    format!("sip:{name}@{DOMAIN}")
}

fn via(local: std::net::SocketAddr) -> String {
    format!(
        "Via: SIP/2.0/TCP {local};branch=z9hG4bK.{};rport",
        unique("b")
    )
}

fn subscribe(local: std::net::SocketAddr, from: &str, to: &str, call_id: &str) -> String {
    format!(
        "SUBSCRIBE {them} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag=t{from}\r\nTo: <{them}>\r\n\
         CSeq: 1 SUBSCRIBE\r\nCall-ID: {call_id}\r\nMax-Forwards: 70\r\nEvent: presence\r\n\
         Expires: 600\r\nAccept: application/pidf+xml\r\nContact: <sip:{from}@{local};transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n",
        via(local),
        me = aor(from),
        them = aor(to),
    )
}

fn publish(
    local: std::net::SocketAddr,
    name: &str,
    call_id: &str,
    cseq: u32,
    note: &str,
    etag: Option<&str>,
) -> String {
    let me = aor(name);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{me}\"><tuple id=\"t{name}\"><status><basic>open</basic></status><contact>{me}</contact><note>{note}</note></tuple></presence>\n"
    );
    let if_match = etag
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "PUBLISH {me} SIP/2.0\r\n{}\r\nFrom: <{me}>;tag=p{name}\r\nTo: <{me}>\r\nCSeq: {cseq} PUBLISH\r\n\
         Call-ID: {call_id}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\n{if_match}\
         Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}",
        via(local),
        body.len()
    )
}

/// The marker of round `round`'s publication by user `i`.
fn note(round: u32, i: usize) -> String {
    format!("r{round}-{}", user(i))
}

/// One well-behaved connection and the users it carries; runs on its own thread and records
/// what went wrong instead of panicking (a panic would leave the other threads at a barrier).
struct Peer {
    client: SipClient,
    users: Vec<usize>,
    /// Subscription Call-ID → (watcher, presentity).
    dialogs: HashMap<String, (usize, usize)>,
    /// Subscription Call-ID → rounds whose note it was notified of.
    seen: HashMap<String, HashSet<u32>>,
    /// NOTIFYs per dialog.
    notifies: HashMap<String, usize>,
    /// (Call-ID, CSeq number) → status and SIP-ETag of the response.
    responses: HashMap<(String, u32), (u16, Option<String>)>,
    /// User → its PUBLISH Call-ID, CSeq and current ETag.
    publications: HashMap<usize, (String, u32, Option<String>)>,
    errors: Vec<String>,
}

impl Peer {
    fn new(daemon: &Daemon, index: usize) -> Peer {
        Peer {
            client: daemon.connect(),
            users: (0..USERS).filter(|u| u % CONNECTIONS == index).collect(),
            dialogs: HashMap::new(),
            seen: HashMap::new(),
            notifies: HashMap::new(),
            responses: HashMap::new(),
            publications: HashMap::new(),
            errors: Vec::new(),
        }
    }

    /// Reads (answering NOTIFYs) until `done` holds; false after `PHASE`.
    fn pump(&mut self, done: impl Fn(&Peer) -> bool) -> bool {
        let deadline = Instant::now() + PHASE;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.recv(left) {
                Ok(m) => self.handle(m),
                Err(e) => {
                    self.errors.push(format!("connection: {e:?}"));
                    return false;
                }
            }
        }
        true
    }

    fn handle(&mut self, m: SipMessage) {
        let call_id = m.header("Call-ID").unwrap_or_default().to_owned();
        let cseq = m
            .header("CSeq")
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if let Some(status) = m.status() {
            let etag = m.header("SIP-ETag").map(str::to_owned);
            self.responses.insert((call_id, cseq), (status, etag));
            return;
        }
        if m.method() != Some("NOTIFY") {
            self.errors.push(format!("unexpected request:\n{m}"));
            return;
        }
        self.client.send(&m.ok_response());
        let Some(&(watcher, presentity)) = self.dialogs.get(&call_id) else {
            self.errors
                .push(format!("NOTIFY outside our dialogs:\n{m}"));
            return;
        };
        let body = m.body_str();
        if !body.contains(&format!("entity=\"{}\"", aor(&user(presentity)))) {
            self.errors.push(format!(
                "{} got a NOTIFY about someone else than {}:\n{m}",
                user(watcher),
                user(presentity)
            ));
        }
        if m.header("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated"))
        {
            self.errors
                .push(format!("a well-behaved dialog was terminated:\n{m}"));
        }
        *self.notifies.entry(call_id.clone()).or_default() += 1;
        for round in 1..=3 {
            if body.contains(&note(round, presentity)) {
                self.seen.entry(call_id.clone()).or_default().insert(round);
            }
        }
    }

    /// Each user subscribes to its two neighbours; waits for every 200 and first NOTIFY.
    fn subscribe_all(&mut self) {
        let mut wire = String::new();
        for &u in &self.users.clone() {
            for buddy in [(u + USERS - 1) % USERS, (u + 1) % USERS] {
                let call_id = unique("s-");
                wire.push_str(&subscribe(
                    self.client.local,
                    &user(u),
                    &user(buddy),
                    &call_id,
                ));
                self.dialogs.insert(call_id, (u, buddy));
            }
        }
        self.client.send(&wire);
        let ok = self.pump(|p| {
            p.dialogs.keys().all(|c| {
                p.responses.contains_key(&(c.clone(), 1))
                    && p.notifies.get(c).is_some_and(|&n| n > 0)
            })
        });
        if !ok {
            self.errors.push("subscriptions not all established".into());
        }
        for c in self.dialogs.keys() {
            if let Some((status, _)) = self.responses.get(&(c.clone(), 1))
                && *status != 200
            {
                self.errors.push(format!("SUBSCRIBE {c} answered {status}"));
            }
        }
    }

    /// Each user publishes round `round`'s note (modifying its publication after round 1);
    /// waits for every 200 and for every dialog to be notified of its presentity's note.
    fn publish_round(&mut self, round: u32) {
        let mut wire = String::new();
        let mut sent = Vec::new();
        for &u in &self.users.clone() {
            let (call_id, cseq, etag) = self
                .publications
                .entry(u)
                .or_insert_with(|| (unique("p-"), 0, None));
            *cseq += 1;
            wire.push_str(&publish(
                self.client.local,
                &user(u),
                call_id,
                *cseq,
                &note(round, u),
                etag.as_deref(),
            ));
            sent.push((u, call_id.clone(), *cseq));
        }
        self.client.send(&wire);
        let ok = self.pump(|p| {
            sent.iter()
                .all(|(_, c, n)| p.responses.contains_key(&(c.clone(), *n)))
                && p.dialogs
                    .keys()
                    .all(|c| p.seen.get(c).is_some_and(|s| s.contains(&round)))
        });
        for (u, call_id, cseq) in sent {
            match self.responses.get(&(call_id, cseq)) {
                Some((200, etag)) => {
                    if let Some(p) = self.publications.get_mut(&u) {
                        p.2 = etag.clone();
                    }
                }
                Some((status, _)) => self.errors.push(format!(
                    "round {round}: PUBLISH of {} answered {status}",
                    user(u)
                )),
                None => self.errors.push(format!(
                    "round {round}: PUBLISH of {} not answered",
                    user(u)
                )),
            }
        }
        if !ok {
            let missing: Vec<String> = self
                .dialogs
                .iter()
                .filter(|(c, _)| !self.seen.get(*c).is_some_and(|s| s.contains(&round)))
                .map(|(_, (w, p))| format!("{}→{}", user(*w), user(*p)))
                .collect();
            self.errors.push(format!(
                "round {round}: {} dialogs missed their NOTIFY: {missing:?}",
                missing.len()
            ));
        }
    }
}

/// Subscribes `from` (a fresh connection) to `to` and returns the first NOTIFY's body.
fn fetch_presence(daemon: &Daemon, from: &str, to: &str) -> Result<String, String> {
    let mut c = daemon.connect();
    let call_id = unique("lt-");
    c.send(&subscribe(c.local, from, to, &call_id));
    let deadline = Instant::now() + PHASE;
    let (mut answered, mut body) = (false, None);
    while !answered || body.is_none() {
        let m = c
            .recv(deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| format!("SUBSCRIBE to {to}: {e:?}"))?;
        match m.status() {
            Some(200) => answered = true,
            Some(s) => return Err(format!("SUBSCRIBE to {to} answered {s}")),
            None => {
                c.send(&m.ok_response());
                body = Some(m.body_str());
            }
        }
    }
    Ok(body.unwrap_or_default())
}

/// A list SUBSCRIBE for `entries` that asks for no compression, so that its NOTIFYs are large.
fn plain_list_subscribe(
    local: std::net::SocketAddr,
    call_id: &str,
    cseq: u32,
    to_tag: Option<&str>,
    entries: &[String],
) -> Vec<u8> {
    let list = aor("stalled-list");
    let body = match to_tag {
        Some(_) => Vec::new(),
        None => {
            let mut xml = String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>",
            );
            for e in entries {
                xml.push_str(&format!("<entry uri=\"{e}\"/>"));
            }
            xml.push_str("</list></resource-lists>");
            presence_proto::encoding::deflate(xml.as_bytes())
        }
    };
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let body_headers = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/resource-lists+xml\r\nContent-Encoding: deflate\r\n\
         Content-Disposition: recipient-list\r\nRequire: recipient-list-subscribe\r\n"
            .to_owned()
    };
    let mut wire = format!(
        "SUBSCRIBE {list} SIP/2.0\r\n{}\r\nFrom: <{}>;tag=stalled\r\nTo: <{list}>{to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\nMax-Forwards: 70\r\nSupported: eventlist\r\n\
         Event: presence\r\nExpires: 600\r\n{body_headers}\
         Accept: multipart/related, application/pidf+xml, application/rlmi+xml\r\n\
         Contact: <sip:stalled@{local};transport=tcp>\r\nContent-Length: {}\r\n\r\n",
        via(local),
        aor("stalled"),
        body.len()
    )
    .into_bytes();
    wire.extend_from_slice(&body);
    wire
}

/// A subscriber that reads its first answers, then stops reading while asking for full state
/// again and again (each refresh of its 1000-resource list brings a ~250 kB NOTIFY). Returns
/// whether the server closed the connection, and how many bytes the refreshes asked for.
fn stalled_reader(daemon: &Daemon) -> Result<usize, String> {
    let mut c = daemon.connect();
    let call_id = unique("stalled-");
    let entries: Vec<String> = (0..USERS).map(|i| aor(&user(i))).collect();
    c.send_bytes(&plain_list_subscribe(c.local, &call_id, 1, None, &entries));
    let deadline = Instant::now() + PHASE;
    let (mut to_tag, mut full) = (None, 0);
    while to_tag.is_none() || full == 0 {
        let m = c
            .recv(deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| format!("stalled list SUBSCRIBE: {e:?}"))?;
        match m.status() {
            Some(200) => to_tag = m.tag("To"),
            Some(s) => return Err(format!("stalled list SUBSCRIBE answered {s}")),
            None => {
                c.send(&m.ok_response());
                full = m.body_str().len();
            }
        }
    }
    let to_tag = to_tag.unwrap_or_default();
    // From now on nothing is read. Refreshes go out until the server closes the connection.
    let mut stream: TcpStream = c.into_stream();
    let mut asked = 0;
    for cseq in 2..400 {
        let refresh = plain_list_subscribe(c_local(&stream), &call_id, cseq, Some(&to_tag), &[]);
        if stream.write_all(&refresh).is_err() {
            break;
        }
        asked += full;
    }
    // Drain what the kernel holds: the stream must end (EOF or reset) — the server gave up.
    stream
        .set_read_timeout(Some(PHASE))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(asked),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "the server kept a connection that does not read (asked {asked} bytes)"
                ));
            }
            Err(_) => return Ok(asked),
        }
    }
}

fn c_local(stream: &TcpStream) -> std::net::SocketAddr {
    stream
        .local_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
}

on_both_runtimes!(load_and_faults);
fn load_and_faults(rt: Runtime) {
    let pg = PrivatePostgres::start();
    let mut daemon = Daemon::start(
        rt,
        &format!(
            "accounts-database={}\ndatabase-query-timeout=1000\nnotify-limit=100000\n\
             max-pending-output={MAX_PENDING}\npartial-message-timeout=1000",
            pg.url()
        ),
    );
    // The daemon created the table; fill it: the ring's users and the silent accounts.
    pg.sql(&format!(
        "insert into accounts (username, domain) \
         select 'u' || lpad(i::text, 4, '0'), '{DOMAIN}' from generate_series(0, {}) i; \
         insert into accounts (username, domain) \
         select 'silent' || i, '{DOMAIN}' from generate_series(0, {}) i",
        USERS - 1,
        SILENT - 1
    ));

    let barrier = Arc::new(Barrier::new(CONNECTIONS + 1));
    let peers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let mut peer = Peer::new(&daemon, i);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                peer.subscribe_all();
                barrier.wait(); // W1: subscribed
                for round in 1..=3 {
                    barrier.wait(); // W2, W4, W6: go (faults, database down, database back)
                    peer.publish_round(round);
                    barrier.wait(); // W3, W5, W7: round done
                }
                (peer.dialogs.len(), peer.errors)
            })
        })
        .collect();

    let mut failures: Vec<String> = Vec::new();
    barrier.wait(); // W1
    let baseline = daemon.rss_bytes();
    match fetch_presence(&daemon, "checker", "silent0") {
        Ok(body) if body.contains("<basic>open</basic>") => {}
        Ok(body) => failures.push(format!(
            "no long-term presence with the database up:\n{body}"
        )),
        Err(e) => failures.push(e),
    }

    // Round 1, with misbehaving peers beside the well-behaved ones.
    barrier.wait(); // W2
    let mut garbage = daemon.connect();
    let mut noise = Vec::with_capacity(8192);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..8192 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push((x >> 24) as u8);
    }
    noise.extend_from_slice(b"\r\nContent-Length: -1\r\n\r\n");
    garbage.send_bytes(&noise);
    let mut half = daemon.connect();
    let whole = subscribe(half.local, "halfway", "u0001", &unique("half-"));
    half.send(&whole[..whole.len() / 2]);
    drop(half);
    let mut ghost = daemon.connect();
    let mut wire = String::new();
    for i in 0..20 {
        wire.push_str(&subscribe(
            ghost.local,
            "ghost",
            &user(i),
            &unique("ghost-"),
        ));
    }
    ghost.send(&wire);
    drop(ghost); // vanishes mid-dialog, its answers unread
    match stalled_reader(&daemon) {
        Ok(asked) if asked > 8 * MAX_PENDING => {}
        Ok(asked) => failures.push(format!(
            "the stalled reader asked for only {asked} bytes: the test did not load it"
        )),
        Err(e) => failures.push(e),
    }
    match garbage.recv(PHASE) {
        Err(RecvError::Closed) => {}
        Ok(m) if m.status() == Some(400) => {}
        other => failures.push(format!("garbage was not refused: {other:?}")),
    }
    barrier.wait(); // W3
    // Closed by the core (one read asked for more than max-pending-output) or by the runtime
    // (more than max-pending-output waiting for the socket), depending on how reads split.
    let log = daemon.log();
    if !log.contains("peer does not read") && !log.contains("passed max-pending-output") {
        failures.push("no log line for the stalled reader".into());
    }

    // Round 2 with the database down: short-term presence goes on; a new watcher is answered.
    pg.stop_server();
    barrier.wait(); // W4
    match fetch_presence(&daemon, "checker", "silent1") {
        Ok(body) if !body.contains("<basic>open</basic>") => {}
        Ok(body) => failures.push(format!(
            "long-term presence with the database down?\n{body}"
        )),
        Err(e) => failures.push(format!("database down: {e}")),
    }
    barrier.wait(); // W5

    // Round 3 with the database back: long-term presence comes back without a restart.
    pg.start_server();
    barrier.wait(); // W6
    // The daemon lets one query through per second while its database is down: ask about a
    // fresh silent account (failed lookups are remembered) every 250 ms until one is found.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    for i in 2..SILENT {
        match fetch_presence(&daemon, "checker", &format!("silent{i}")) {
            Ok(body) if body.contains("<basic>open</basic>") => {
                recovered = true;
                break;
            }
            Ok(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Ok(_) => break,
            Err(e) => {
                failures.push(format!("database back: {e}"));
                break;
            }
        }
    }
    if !recovered {
        failures.push("long-term presence did not come back with the database".into());
    }
    barrier.wait(); // W7
    let end = daemon.rss_bytes();

    let mut dialogs = 0;
    for peer in peers {
        match peer.join() {
            Ok((n, errors)) => {
                dialogs += n;
                failures.extend(errors);
            }
            Err(_) => failures.push("a peer thread panicked".into()),
        }
    }
    assert_eq!(dialogs, 2 * USERS);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Bounded memory: the stalled reader asked for tens of megabytes; the server kept at most
    // `max-pending-output` of them (plus what allocators keep).
    let growth = end.saturating_sub(baseline);
    assert!(
        growth < 24 * 1024 * 1024,
        "resident memory grew by {growth} bytes ({baseline} → {end})"
    );
    // The daemon is alive and stops cleanly.
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// A connection whose receive buffer is small and fixed (no autotuning), so that what the
/// server sends and the client does not read piles up on the server's side.
fn small_window_client(daemon: &Daemon) -> SipClient {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    socket
        .connect(&daemon.addr.into())
        .expect("connect to presence-server");
    SipClient::from_stream(socket.into())
}

on_both_runtimes!(sigterm_under_load_flushes_what_was_produced);
fn sigterm_under_load_flushes_what_was_produced(rt: Runtime) {
    let mut daemon = Daemon::start(
        rt,
        "notify-limit=100000\nmax-pending-output=268435456\nlong-term-enabled=false",
    );
    let mut c = small_window_client(&daemon);
    let call_id = unique("flush-");
    let entries: Vec<String> = (0..USERS).map(|i| aor(&user(i))).collect();
    c.send_bytes(&plain_list_subscribe(c.local, &call_id, 1, None, &entries));
    let (mut to_tag, mut full) = (None, 0);
    while to_tag.is_none() || full == 0 {
        let m = c.expect();
        match m.status() {
            Some(200) => to_tag = m.tag("To"),
            Some(s) => panic!("list SUBSCRIBE answered {s}:\n{m}"),
            None => {
                c.send(&m.ok_response());
                full = m.body_str().len();
            }
        }
    }
    let to_tag = to_tag.unwrap_or_default();
    // Enough refreshes that their full-state NOTIFYs are many times what the kernel can hold
    // between the two ends (this client's fixed window, the server's largest send buffer).
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 * 1024 * 1024);
    let in_kernel = wmem_max + 2 * 64 * 1024;
    let refreshes = (3 * in_kernel / full + 1).min(400) as u32;
    let mut wire = Vec::new();
    for cseq in 2..2 + refreshes {
        wire.extend(plain_list_subscribe(
            c.local,
            &call_id,
            cseq,
            Some(&to_tag),
            &[],
        ));
    }
    c.send_bytes(&wire);
    // Once another connection's request is answered, the refreshes (sent before it) were
    // handled: their answers are produced, most of them not yet written.
    let mut other = daemon.connect();
    other.send(&format!(
        "OPTIONS {} SIP/2.0\r\n{}\r\nFrom: <{}>;tag=o1\r\nTo: <{}>\r\nCall-ID: {}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        aor("u0001"),
        via(other.local),
        aor("probe"),
        aor("u0001"),
        unique("o-")
    ));
    let r = other.expect_response();
    assert_eq!(r.status(), Some(405), "{r}");
    daemon.signal("TERM");
    // Everything produced arrives, whole, then the end of the stream.
    let (mut oks, mut notifies, mut bytes) = (0, 0, 0);
    loop {
        match c.recv(Duration::from_secs(10)) {
            Ok(m) => {
                bytes += m.body_str().len();
                match m.status() {
                    Some(200) => oks += 1,
                    Some(s) => panic!("refresh answered {s}:\n{m}"),
                    None => notifies += 1,
                }
            }
            Err(RecvError::Closed) => break,
            Err(e) => panic!("after {oks} 200s and {notifies} NOTIFYs: {e:?}"),
        }
    }
    // The stream ends on a message boundary: nothing was cut.
    assert_eq!(
        c.buffered(),
        0,
        "a partial message at the end of the stream"
    );
    // Each refresh handled before SIGTERM has its 200 and its NOTIFY (both produced by the same
    // input); the other connection's answer makes it very likely that all were handled.
    assert_eq!(oks, notifies, "a 200 without its NOTIFY, or the reverse");
    assert!(
        oks * 10 >= refreshes * 9,
        "only {oks} of {refreshes} refreshes handled"
    );
    assert!(
        bytes > 2 * in_kernel,
        "only {bytes} bytes: the kernel could have held them all"
    );
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = daemon.log();
    assert!(log.contains("stopped ("), "{log}");
    assert!(!log.contains("did not flush"), "{log}");
}
