//! Helpers for end-to-end tests against the real daemon binary: start it with a temporary
//! configuration, wait for it to listen, read its logs, stop it; and a small blocking SIP client.
//!
//! Every daemon is started on a [`Runtime`]: `presence-server` (tokio) or `presence-server-smol`
//! (smol); [`on_both_runtimes!`](crate::on_both_runtimes) turns a test function taking the
//! runtime into one `#[test]` per runtime. The binary is `$PRESENCE_SERVER_BIN` (tokio) or
//! `$PRESENCE_SERVER_SMOL_BIN` (smol) when set, else the binary of that name in the target
//! directory the test executable runs from (`target/debug/deps/e2e-…` →
//! `target/debug/presence-server`). `cargo test --workspace` builds both (runtime-tokio and
//! runtime-smol have integration tests, so cargo builds their binaries before running any test).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the daemon may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for a SIP message.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemons under test: one per async runtime, with the same command line and behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `presence-server` (runtime-tokio).
    Tokio,
    /// `presence-server-smol` (runtime-smol).
    Smol,
}

impl Runtime {
    /// The binary's name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Runtime::Tokio => "presence-server",
            Runtime::Smol => "presence-server-smol",
        }
    }

    /// The environment variable that overrides the binary's path.
    pub fn env_var(self) -> &'static str {
        match self {
            Runtime::Tokio => "PRESENCE_SERVER_BIN",
            Runtime::Smol => "PRESENCE_SERVER_SMOL_BIN",
        }
    }
}

/// Generates, for each named function `fn NAME(rt: Runtime)`, a module `NAME` with the tests
/// `NAME::tokio` and `NAME::smol` running it against each daemon.
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn tokio() {
                super::$name($crate::daemon::Runtime::Tokio)
            }
            #[test]
            fn smol() {
                super::$name($crate::daemon::Runtime::Smol)
            }
        }
    )+};
}

/// The daemon binary to test on `rt`.
pub fn binary(rt: Runtime) -> PathBuf {
    if let Some(path) = std::env::var_os(rt.env_var()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/presence-server
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let name = rt.binary_name();
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build --bin {name}`, or run \
         `cargo test --workspace`), or set {}",
        bin.display(),
        rt.env_var()
    );
    bin
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A unique token for names (file names, tags, Call-IDs).
pub fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{nanos:x}", std::process::id())
}

/// A configuration file in the temporary directory, removed on drop.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    pub fn new(contents: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("{}.conf", unique("presence-e2e-")));
        std::fs::write(&path, contents).expect("write temporary config");
        ConfigFile { path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The `[presence-server]` lines every test daemon uses: a free port on loopback.
pub const TEST_TRANSPORT: &str = "transports=sip:127.0.0.1:0;transport=tcp";

/// stderr of a child, collected line by line by a thread.
struct StderrLog {
    lines: Arc<Mutex<Vec<String>>>,
    /// Receives each line as it comes; disconnected at EOF (the child exited).
    rx: mpsc::Receiver<String>,
}

impl StderrLog {
    fn start(stderr: impl Read + Send + 'static) -> StderrLog {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut all) = keep.lock() {
                    all.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        StderrLog { lines, rx }
    }
    fn text(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
    /// Waits for the end of stderr (the child exited); false on timeout.
    fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// A running daemon; killed on drop.
pub struct Daemon {
    child: Child,
    log: StderrLog,
    /// Where it listens (the first `listening on` line).
    pub addr: SocketAddr,
    _config: ConfigFile,
}

impl Daemon {
    /// Starts the daemon of `rt` with `[presence-server]` = [`TEST_TRANSPORT`] + `extra` lines.
    pub fn start(rt: Runtime, extra: &str) -> Daemon {
        Daemon::start_with(
            rt,
            &format!("[presence-server]\n{TEST_TRANSPORT}\n{extra}\n"),
            &[],
        )
    }

    /// Starts the daemon of `rt` with a whole configuration file and extra arguments; waits (at
    /// most [`START_TIMEOUT`]) for `listening on ADDR` on stderr.
    pub fn start_with(rt: Runtime, config: &str, args: &[&str]) -> Daemon {
        let config = ConfigFile::new(config);
        let mut child = Command::new(binary(rt))
            .arg("--config")
            .arg(&config.path)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn presence-server");
        let log = StderrLog::start(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        break addr;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!(
                        "presence-server exited ({status:?}) before listening; stderr:\n{}",
                        log.text()
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "presence-server did not log 'listening on' within {START_TIMEOUT:?}; stderr:\n{}",
                        log.text()
                    );
                }
            }
        };
        Daemon {
            child,
            log,
            addr,
            _config: config,
        }
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the daemon's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .expect("VmRSS in /proc status")
    }

    /// A new SIP client connected to the daemon.
    pub fn connect(&self) -> SipClient {
        SipClient::connect(self.addr)
    }

    /// Sends a signal (`TERM`, `INT`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit; None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if !self.log.wait_eof(timeout) {
            return None;
        }
        self.child.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- presence-server stderr ---\n{}\n------",
                self.log.text()
            );
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary of `rt` with `args` (and `--config FILE` holding `config`, when given) and
/// waits for it to exit (at most `timeout`; then it is killed and the test fails).
pub fn run_to_exit(
    rt: Runtime,
    args: &[&str],
    config: Option<&str>,
    timeout: Duration,
) -> Finished {
    let config = config.map(ConfigFile::new);
    let mut cmd = Command::new(binary(rt));
    if let Some(c) = &config {
        cmd.arg("--config").arg(&c.path);
    }
    let mut child = cmd
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn presence-server");
    let mut stdout = child.stdout.take().expect("stdout");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let log = StderrLog::start(child.stderr.take().expect("stderr"));
    if !log.wait_eof(timeout) {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "presence-server {args:?} did not exit within {timeout:?}; stderr:\n{}",
            log.text()
        );
    }
    let status = child.wait().expect("wait");
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: log.text(),
    }
}

// ---------------------------------------------------------------------------------------------
// A blocking SIP client.

/// A SIP message as read from the wire.
#[derive(Debug, Clone)]
pub struct SipMessage {
    pub start_line: String,
    /// Header lines (unfolded) in order, names as written.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The head, for diagnostics.
    pub head: String,
}

/// Full header name of a compact form (RFC 3261 §7.3.3 and later RFCs), lowercase.
fn canonical(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let full = match lower.as_str() {
        "i" => "call-id",
        "f" => "from",
        "t" => "to",
        "v" => "via",
        "l" => "content-length",
        "c" => "content-type",
        "e" => "content-encoding",
        "m" => "contact",
        "o" => "event",
        "k" => "supported",
        "s" => "subject",
        "u" => "allow-events",
        _ => return lower,
    };
    full.to_owned()
}

impl SipMessage {
    /// The same message parsed by the project's own codec (to decode list NOTIFYs with the
    /// simulator's helpers).
    pub fn to_message(&self) -> presence_proto::sip::Message {
        let mut raw = self.head.clone().into_bytes();
        raw.extend_from_slice(b"\r\n\r\n");
        raw.extend_from_slice(&self.body);
        presence_proto::sip::Message::parse(bytes::Bytes::from(raw), 256)
            .expect("a message from the server parses")
    }

    /// Parses one whole message (head and body).
    pub fn parse(raw: &[u8]) -> Result<SipMessage, String> {
        let end = find(raw, b"\r\n\r\n").ok_or("no end of head")?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| "head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let start_line = lines.next().ok_or("empty message")?.to_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                let (_, v) = headers.last_mut().ok_or("continuation before any header")?;
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header {line:?}"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(SipMessage {
            start_line,
            headers,
            body: raw[end + 4..].to_vec(),
            head: head.to_owned(),
        })
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.start_line.starts_with("SIP/2.0 ") {
            return None;
        }
        self.start_line.split(' ').next()
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        self.method()?;
        self.start_line.split(' ').nth(1)
    }

    /// The first value of a header (case-insensitive, compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    /// Every value of a header, in order.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        let want = canonical(name);
        self.headers
            .iter()
            .filter(|(n, _)| canonical(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A parameter of a header value (`tag` of To/From, `expires` of Subscription-State...).
    pub fn header_param(&self, name: &str, param: &str) -> Option<String> {
        let value = self.header(name)?;
        // Parameters after the name-addr's '>' (or after the value for other headers).
        let params = match value.rfind('>') {
            Some(i) => &value[i + 1..],
            None => value.split_once(';').map(|(_, p)| p).unwrap_or(""),
        };
        params.split(';').map(str::trim).find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            k.trim()
                .eq_ignore_ascii_case(param)
                .then(|| v.trim().trim_matches('"').to_owned())
        })
    }

    /// The `tag` parameter of From or To.
    pub fn tag(&self, header: &str) -> Option<String> {
        self.header_param(header, "tag")
    }

    /// The body as text.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A `200 OK` answering this request (Via, From, To, Call-ID and CSeq copied).
    pub fn ok_response(&self) -> String {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for (name, value) in &self.headers {
            if matches!(
                canonical(name).as_str(),
                "via" | "from" | "to" | "call-id" | "cseq"
            ) {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }
}

impl std::fmt::Display for SipMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\r\n\r\n{}", self.head, self.body_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Why no message was read.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    Timeout,
    /// The server closed the connection (clean EOF or reset).
    Closed,
    Malformed(String),
}

/// A blocking SIP-over-TCP client.
pub struct SipClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Our address (for Via and Contact).
    pub local: SocketAddr,
}

impl SipClient {
    /// Sends a liblinphone-like list SUBSCRIBE from `from` (an AOR, tag `bobtag`, a fresh
    /// Call-ID) to `list` (an RFC 5367 body of `entries`, deflated); returns the sizes of the
    /// compressed and the plain body.
    pub fn send_list_subscribe(
        &mut self,
        from: &str,
        list: &str,
        entries: &[String],
        user_agent: &str,
    ) -> (usize, usize) {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>",
        );
        for e in entries {
            xml.push_str(&format!("<entry uri=\"{e}\"/>"));
        }
        xml.push_str("</list></resource-lists>");
        let body = presence_proto::encoding::deflate(xml.as_bytes());
        let head = format!(
            "SUBSCRIBE {list} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b};rport\r\nFrom: <{from}>;tag=bobtag\r\nTo: <{list}>\r\nCall-ID: {cid}\r\nCSeq: 20 SUBSCRIBE\r\nMax-Forwards: 70\r\nSupported: eventlist\r\nEvent: presence\r\nExpires: 600\r\nContent-Type: application/resource-lists+xml\r\nContent-Encoding: deflate\r\nContent-Disposition: recipient-list\r\nRequire: recipient-list-subscribe\r\nAccept: multipart/related, application/pidf+xml, application/rlmi+xml\r\nAccept-Encoding: deflate\r\nContact: <sip:bob@{l};transport=tcp>\r\nUser-Agent: {user_agent}\r\nContent-Length: {len}\r\n\r\n",
            l = self.local,
            b = unique("b"),
            cid = unique("list-"),
            len = body.len()
        );
        let mut wire = head.into_bytes();
        wire.extend_from_slice(&body);
        self.send_bytes(&wire);
        (body.len(), xml.len())
    }

    pub fn connect(addr: SocketAddr) -> SipClient {
        let stream =
            TcpStream::connect_timeout(&addr, RECV_TIMEOUT).expect("connect to presence-server");
        SipClient::from_stream(stream)
    }

    /// A client on a stream connected to the daemon.
    pub fn from_stream(stream: TcpStream) -> SipClient {
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().expect("local_addr");
        SipClient {
            stream,
            buf: Vec::new(),
            local,
        }
    }

    /// Bytes read and not yet returned as a message (a partial message at the end of a stream).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The connection itself (what was read and not yet returned is dropped).
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Sends an initial PUBLISH of a one-tuple PIDF document (open, with `note` if given) for
    /// `aor`, CSeq `cseq`, and checks it is answered 200.
    pub fn publish_open(&mut self, aor: &str, tuple_id: &str, note: Option<&str>, cseq: u32) {
        let note = note
            .map(|n| format!("<note>{n}</note>"))
            .unwrap_or_default();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{aor}\"><tuple id=\"{tuple_id}\"><status><basic>open</basic></status><contact>{aor}</contact>{note}</tuple></presence>"
        );
        let msg = format!(
            "PUBLISH {aor} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b}\r\nFrom: <{aor}>;tag={t}\r\nTo: <{aor}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} PUBLISH\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContent-Type: application/pidf+xml\r\nContent-Length: {len}\r\n\r\n{body}",
            l = self.local,
            b = unique("b"),
            t = unique("t"),
            cid = unique("pub-"),
            len = body.len()
        );
        self.send(&msg);
        let r = self.expect_response();
        assert_eq!(r.status(), Some(200), "{r}");
    }

    /// Writes bytes as they are.
    pub fn send_bytes(&mut self, data: &[u8]) {
        self.stream
            .write_all(data)
            .expect("write to presence-server");
    }

    /// Writes a message.
    pub fn send(&mut self, msg: &str) {
        self.send_bytes(msg.as_bytes());
    }

    /// Reads the next whole message (CRLF keep-alives are skipped).
    pub fn recv(&mut self, timeout: Duration) -> Result<SipMessage, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len = content_length(&head).map_err(RecvError::Malformed)?;
                let total = end + 4 + len;
                if self.buf.len() >= total {
                    let raw: Vec<u8> = self.buf.drain(..total).collect();
                    return SipMessage::parse(&raw).map_err(RecvError::Malformed);
                }
            }
            self.fill(deadline)?;
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), RecvError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RecvError::Timeout);
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|e| RecvError::Malformed(e.to_string()))?;
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(RecvError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(RecvError::Timeout)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(_) => Err(RecvError::Closed),
        }
    }

    /// The next message; fails the test if none comes within [`RECV_TIMEOUT`].
    pub fn expect(&mut self) -> SipMessage {
        match self.recv(RECV_TIMEOUT) {
            Ok(m) => m,
            Err(e) => panic!("no SIP message from the server: {e:?}"),
        }
    }

    /// The next message, which must be a response.
    pub fn expect_response(&mut self) -> SipMessage {
        let m = self.expect();
        assert!(m.status().is_some(), "expected a response, got:\n{m}");
        m
    }

    /// The next message, which must be a request with this method; answered `200 OK`.
    pub fn expect_request(&mut self, method: &str) -> SipMessage {
        let m = self.expect();
        assert_eq!(m.method(), Some(method), "expected a {method}, got:\n{m}");
        self.send(&m.ok_response());
        m
    }

    /// The response to a request just sent and the NOTIFY it triggers, in whatever order they
    /// come; the NOTIFY is answered `200 OK`.
    pub fn expect_response_and_notify(&mut self) -> (SipMessage, SipMessage) {
        let (mut response, mut notify) = (None, None);
        while response.is_none() || notify.is_none() {
            let m = self.expect();
            if m.status().is_some() {
                assert!(response.is_none(), "a second response:\n{m}");
                response = Some(m);
            } else {
                assert_eq!(m.method(), Some("NOTIFY"), "unexpected request:\n{m}");
                assert!(notify.is_none(), "a second NOTIFY:\n{m}");
                self.send(&m.ok_response());
                notify = Some(m);
            }
        }
        (
            response.unwrap_or_else(|| unreachable!()),
            notify.unwrap_or_else(|| unreachable!()),
        )
    }

    /// Asserts that nothing arrives for `quiet` (used sparingly: it costs that time).
    pub fn expect_nothing(&mut self, quiet: Duration) {
        match self.recv(quiet) {
            Err(RecvError::Timeout) => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    /// Waits for the server to close the connection, discarding anything it sends first.
    pub fn expect_closed(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(()) => self.buf.clear(),
                Err(RecvError::Closed) => return,
                Err(e) => panic!("the server did not close the connection: {e:?}"),
            }
        }
    }
}

fn content_length(head: &str) -> Result<usize, String> {
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && canonical(name.trim()) == "content-length"
        {
            return value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length in:\n{head}"));
        }
    }
    Err(format!("no Content-Length in:\n{head}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_answer() {
        let raw = b"NOTIFY sip:bob@127.0.0.1:5555;transport=tcp SIP/2.0\r\n\
            Via: SIP/2.0/TCP 127.0.0.1:5065;branch=z9hG4bK1\r\n\
            v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK2\r\n\
            From: <sip:alice@127.0.0.1>;tag=srv\r\n\
            To: \"bob\" <sip:bob@127.0.0.1>;tag=cli\r\n\
            i: abc\r\n\
            CSeq: 2 NOTIFY\r\n\
            Subscription-State: active;expires=599\r\n\
            Event: Presence\r\n\
            l: 4\r\n\r\nbody";
        let m = SipMessage::parse(raw).unwrap();
        assert_eq!(m.method(), Some("NOTIFY"));
        assert_eq!(
            m.request_uri(),
            Some("sip:bob@127.0.0.1:5555;transport=tcp")
        );
        assert_eq!(m.header("call-id"), Some("abc"));
        assert_eq!(m.headers("Via").len(), 2);
        assert_eq!(m.tag("From").as_deref(), Some("srv"));
        assert_eq!(m.tag("To").as_deref(), Some("cli"));
        assert_eq!(
            m.header_param("Subscription-State", "expires").as_deref(),
            Some("599")
        );
        assert_eq!(m.body_str(), "body");
        let ok = SipMessage::parse(m.ok_response().as_bytes()).unwrap();
        assert_eq!(ok.status(), Some(200));
        assert_eq!(ok.headers("via").len(), 2);
        assert_eq!(ok.header("CSeq"), Some("2 NOTIFY"));
        assert_eq!(ok.header("Content-Length"), Some("0"));
        assert_eq!(content_length("X\r\nContent-Length: 12"), Ok(12));
        assert!(content_length("X\r\nFoo: 1").is_err());
    }

    #[test]
    fn listening_line() {
        assert_eq!(
            listening_addr("2026-01-01T00:00:00Z  INFO listening on 127.0.0.1:40123"),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(
            listening_addr("INFO listening on [::1]:5065"),
            Some("[::1]:5065".parse().unwrap())
        );
        assert_eq!(listening_addr("nothing"), None);
    }
}
