//! Real clients behind a real proxy, end to end: Debian's liblinphone (driven by
//! `clients/lpdriver.c`, built here against liblinphone-dev) and baresip (its `ctrl_tcp` module)
//! register with Kamailio running `examples/kamailio-presence-proxy.cfg` (the registrar and
//! presence routing of Flexisip's `module::Presence`), which routes their PUBLISH and SUBSCRIBE
//! to the daemon under test and relays its NOTIFYs back. The checks read what the clients'
//! APIs show: liblinphone's friend presence model and consolidated presence, baresip's contact
//! presence status.
//!
//! Needs `kamailio`, `baresip` (baresip-core), `liblinphone-dev`, `pkg-config` and a C compiler
//! (`.ci/run` installs them). Without them the tests fail and say what is missing; set
//! `PRESENCE_SKIP_REAL_CLIENTS=1` to skip them instead (each test prints why).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use presence_tests::daemon::{Daemon, Runtime, run_to_exit, unique};
use presence_tests::kamailio::{self, Kamailio, free_port, have, kill_and_wait, workspace_root};
use presence_tests::on_both_runtimes;

const DOMAIN: &str = "example.org";
/// alice's phone number, in the account database.
const ALICE_PHONE: &str = "+33612345678";
/// How long a client may take to show a change (list NOTIFYs are batched for up to 2 s).
const SHOW_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Tools

/// None when everything is there, else what is missing.
fn missing_tools() -> Option<String> {
    let mut missing = Vec::new();
    for (cmd, package) in [
        ("kamailio", "kamailio"),
        ("baresip", "baresip-core"),
        ("cc", "gcc"),
        ("pkg-config", "pkg-config"),
    ] {
        if !have(cmd) {
            missing.push(package);
        }
    }
    if !Path::new("/usr/include/linphone/core.h").exists() {
        missing.push("liblinphone-dev");
    }
    if !Path::new("/usr/lib/baresip/modules/ctrl_tcp.so").exists() && have("baresip") {
        missing.push("baresip-core (ctrl_tcp module)");
    }
    (!missing.is_empty()).then(|| missing.join(" "))
}

/// True when the test should run; false (with a printed reason) when the tools are missing and
/// `PRESENCE_SKIP_REAL_CLIENTS` is set. Panics when they are missing otherwise.
fn tools_ready(test: &str) -> bool {
    kamailio::tools_ready(
        &format!("the real-client test {test:?}"),
        missing_tools(),
        "apt-get install -y kamailio baresip-core liblinphone-dev pkg-config gcc",
    )
}

/// clients/lpdriver.c compiled once per test run, into target/<profile>/real-clients/.
fn lpdriver() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("LPDRIVER_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("current_exe");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps")
            .join("real-clients");
        std::fs::create_dir_all(&dir).expect("create target/<profile>/real-clients");
        let bin = dir.join("lpdriver");
        let tmp = dir.join(unique("lpdriver.tmp-"));
        let src = workspace_root().join("clients/lpdriver.c");
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if let (Some(built), Some(source)) = (modified(&bin), modified(&src))
            && built > source
        {
            return bin;
        }
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", "linphone"])
            .output()
            .expect("run pkg-config");
        assert!(
            flags.status.success(),
            "pkg-config linphone failed: {}",
            String::from_utf8_lossy(&flags.stderr)
        );
        let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
        // Debian's linphone.pc (5.1) lists no -llinphone: name the libraries.
        let out = Command::new("cc")
            .args(["-O1", "-Wall", "-Wno-deprecated-declarations", "-o"])
            .arg(&tmp)
            .arg(&src)
            .args(flags.split_whitespace())
            .args(["-llinphone", "-lbctoolbox"])
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "building {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &bin).expect("install lpdriver");
        bin
    })
}

// ---------------------------------------------------------------------------------------------
// The platform: account database, presence server, proxy

struct Platform {
    dir: PathBuf,
    /// The proxy (stopped first on drop; its log is printed if the test fails).
    proxy: Kamailio,
    /// The daemon under test (stopped on drop; its log is printed if the test fails).
    _server: Daemon,
}

impl Platform {
    /// The daemon of `rt` with an account database holding alice (with [`ALICE_PHONE`]), bob,
    /// carol, dave and erin, behind Kamailio; `extra`: more `[presence-server]` lines.
    fn start(rt: Runtime, name: &str, extra: &str) -> Platform {
        let dir = std::env::temp_dir().join(unique(&format!("real-clients-{name}-")));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let db = dir.join("accounts.db");
        let accounts_conf = format!("[presence-server]\naccounts-database={}\n", db.display());
        for user in ["alice", "bob", "carol", "dave", "erin"] {
            let aor = format!("{user}@{DOMAIN}");
            let mut args = vec!["accounts", "add", aor.as_str()];
            if user == "alice" {
                args.extend(["--phone", ALICE_PHONE]);
            }
            let run = run_to_exit(rt, &args, Some(&accounts_conf), Duration::from_secs(20));
            assert!(run.status.success(), "accounts add {aor}: {}", run.stderr);
        }
        let server = Daemon::start(rt, &format!("accounts-database={}\n{extra}", db.display()));
        let proxy = Kamailio::start(
            &dir,
            &[
                format!(
                    "PRESENCE_SERVER=\"sip:127.0.0.1:{};transport=tcp\"",
                    server.port()
                ),
                format!("DOMAIN=\"{DOMAIN}\""),
                "WITH_PRESENCE_LOG".to_owned(),
            ],
        );
        Platform {
            dir,
            proxy,
            _server: server,
        }
    }

    /// The proxy's URI, as clients use it (outbound proxy / registrar).
    fn proxy_uri(&self) -> String {
        self.proxy.uri()
    }

    /// The `presence: ...` lines Kamailio logged for each PUBLISH and SUBSCRIBE it routed to the
    /// server, and each in-dialog NOTIFY or SUBSCRIBE it relayed.
    fn routed(&self) -> Vec<String> {
        self.proxy.routed()
    }

    /// Waits until the proxy logged a line for which `pred` holds.
    fn wait_routed(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.proxy.wait_routed(what, SHOW_TIMEOUT, pred)
    }

    fn linphone(&self, user: &str, extra: &[&str]) -> Linphone {
        Linphone::start(self, user, extra)
    }

    fn baresip(&self, user: &str, contacts: &[&str]) -> Baresip {
        Baresip::start(self, user, contacts)
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.proxy.stop();
        if std::thread::panicking() {
            eprintln!("(files kept in {})", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// liblinphone, through lpdriver

/// What liblinphone shows about a friend (an lpdriver `FRIEND` or `PRESENCE` line).
#[derive(Debug, Clone, Default, PartialEq)]
struct View {
    basic: String,
    activity: String,
    consolidated: String,
    note: String,
    contact: String,
    /// FRIEND lines: whether liblinphone received any presence for the friend.
    received: String,
}

/// `key=value` pairs of an lpdriver line (values may be "quoted" with \" and \\).
fn fields(line: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ' ' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        if chars.peek() != Some(&'=') {
            continue; // the event name
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key, value);
    }
    out
}

fn view_of(f: &HashMap<String, String>) -> View {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    View {
        basic: get("basic"),
        activity: get("activity"),
        consolidated: get("consolidated"),
        note: get("note"),
        contact: get("contact"),
        received: get("received"),
    }
}

#[derive(Default)]
struct LpState {
    lines: Vec<String>,
    /// The last FRIEND line per label.
    friends: HashMap<String, View>,
    /// The last PRESENCE line per (label, uri or phone number).
    presence: HashMap<(String, String), View>,
    exited: bool,
}

struct Linphone {
    user: String,
    child: Child,
    stdin: ChildStdin,
    state: Arc<(Mutex<LpState>, Condvar)>,
    stderr_path: PathBuf,
}

impl Linphone {
    fn start(p: &Platform, user: &str, extra: &[&str]) -> Linphone {
        let dir = p.dir.join(format!("lp-{user}"));
        let stderr_path = p.dir.join(format!("lp-{user}.stderr"));
        let mut child = Command::new(lpdriver())
            .args(["--user", user, "--domain", DOMAIN, "--proxy"])
            .arg(p.proxy_uri())
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn lpdriver");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let state = Arc::new((Mutex::new(LpState::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (lock, cv) = &*shared;
                let mut st = lock.lock().unwrap();
                let f = fields(&line);
                if line.starts_with("FRIEND ") {
                    st.friends
                        .insert(f.get("label").cloned().unwrap_or_default(), view_of(&f));
                } else if line.starts_with("PRESENCE ") {
                    let key = (
                        f.get("label").cloned().unwrap_or_default(),
                        f.get("uri").cloned().unwrap_or_default(),
                    );
                    st.presence.insert(key, view_of(&f));
                }
                st.lines.push(line);
                cv.notify_all();
            }
            let (lock, cv) = &*shared;
            lock.lock().unwrap().exited = true;
            cv.notify_all();
        });
        let lp = Linphone {
            user: user.to_owned(),
            child,
            stdin,
            state,
            stderr_path,
        };
        lp.wait("registered", Duration::from_secs(15), |st| {
            st.lines
                .iter()
                .any(|l| l.starts_with("REGISTRATION state=ok"))
        });
        lp
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").expect("write to lpdriver");
        self.stdin.flush().expect("flush lpdriver's stdin");
    }

    /// Runs `command` and waits for its `OK`.
    fn cmd(&mut self, command: &str) {
        let before = self.state.0.lock().unwrap().lines.len();
        self.send(command);
        let word = command.split(' ').next().unwrap_or_default().to_owned();
        self.wait(
            &format!("OK for {command:?}"),
            Duration::from_secs(5),
            |st| {
                st.lines[before..]
                    .iter()
                    .any(|l| l.starts_with(&format!("OK {word}")) || l.starts_with("ERROR"))
            },
        );
        let st = self.state.0.lock().unwrap();
        if let Some(err) = st.lines[before..].iter().find(|l| l.starts_with("ERROR")) {
            panic!("{}: {command:?} failed: {err}", self.user);
        }
    }

    /// Waits until `done` holds for the driver's state; panics after `timeout` with everything
    /// the driver printed.
    fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&LpState) -> bool) {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut st = lock.lock().unwrap();
        while !done(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || st.exited {
                let exited = if st.exited { " (lpdriver exited)" } else { "" };
                let lines = st.lines.join("\n  ");
                drop(st);
                let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
                panic!(
                    "{}: no {what} within {timeout:?}{exited}; lpdriver printed:\n  {lines}\n\
                     stderr (last lines):\n{}",
                    self.user,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            st = cv.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Waits until the friend `label` shows `want` (FRIEND line: the friend's presence model
    /// and consolidated presence), and returns it.
    fn sees(&self, label: &str, want: &Expect) -> View {
        self.wait(&format!("{label} shown as {want:?}"), SHOW_TIMEOUT, |st| {
            st.friends.get(label).is_some_and(|v| want.matches(v))
        });
        let shown = self.state.0.lock().unwrap().friends[label].clone();
        eprintln!("{} sees {label}: {shown:?}", self.user);
        shown
    }

    /// Like [`sees`](Self::sees) for one address or phone number of a friend (PRESENCE line).
    fn sees_uri(&self, label: &str, uri: &str, want: &Expect) -> View {
        let key = (label.to_owned(), uri.to_owned());
        self.wait(
            &format!("{label} ({uri}) shown as {want:?}"),
            SHOW_TIMEOUT,
            |st| st.presence.get(&key).is_some_and(|v| want.matches(v)),
        );
        let shown = self.state.0.lock().unwrap().presence[&key].clone();
        eprintln!("{} sees {label} ({uri}): {shown:?}", self.user);
        shown
    }

    /// What the friend's model shows now (`show LABEL`).
    fn show(&mut self, label: &str) -> View {
        let before = self.state.0.lock().unwrap().lines.len();
        self.send(&format!("show {label}"));
        let prefix = format!("FRIEND label={label} ");
        self.wait(&format!("show {label}"), Duration::from_secs(5), |st| {
            st.lines[before..].iter().any(|l| l.starts_with(&prefix))
        });
        let st = self.state.0.lock().unwrap();
        let line = st.lines[before..]
            .iter()
            .find(|l| l.starts_with(&prefix))
            .expect("FRIEND line");
        view_of(&fields(line))
    }

    fn lines(&self) -> Vec<String> {
        self.state.0.lock().unwrap().lines.clone()
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An expected liblinphone view; `None` fields are not checked.
#[derive(Debug, Default, Clone)]
struct Expect {
    basic: Option<&'static str>,
    activity: Option<&'static str>,
    consolidated: Option<&'static str>,
    note: Option<&'static str>,
    contact: Option<String>,
}

impl Expect {
    fn new(basic: &'static str, activity: &'static str, consolidated: &'static str) -> Expect {
        Expect {
            basic: Some(basic),
            activity: Some(activity),
            consolidated: Some(consolidated),
            ..Expect::default()
        }
    }
    fn note(mut self, note: &'static str) -> Expect {
        self.note = Some(note);
        self
    }
    fn contact(mut self, contact: &str) -> Expect {
        self.contact = Some(contact.to_owned());
        self
    }
    fn matches(&self, v: &View) -> bool {
        self.basic.is_none_or(|b| v.basic == b)
            && self.activity.is_none_or(|a| v.activity == a)
            && self.consolidated.is_none_or(|c| v.consolidated == c)
            && self.note.is_none_or(|n| v.note == n)
            && self.contact.as_ref().is_none_or(|c| &v.contact == c)
    }
}

// ---------------------------------------------------------------------------------------------
// baresip, through ctrl_tcp

struct Baresip {
    user: String,
    child: Child,
    ctrl: TcpStream,
    buf: Vec<u8>,
    events: Vec<String>,
    log: PathBuf,
    token: u64,
}

impl Baresip {
    /// baresip registered as `user`, subscribed to `contacts` (user names) with `;presence=p2p`
    /// (its subscriber sends them through the outbound proxy), publishing its own status.
    fn start(p: &Platform, user: &str, contacts: &[&str]) -> Baresip {
        let dir = p.dir.join(format!("baresip-{user}"));
        std::fs::create_dir_all(&dir).expect("baresip dir");
        let ctrl_port = free_port();
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method\tepoll\n\
                 sip_listen\t127.0.0.1:0\n\
                 sip_transports\ttcp\n\
                 audio_player\taufile,/dev/null\n\
                 audio_source\taufile,/dev/null\n\
                 audio_alert\taufile,/dev/null\n\
                 video_display\tnone\n\
                 module_path\t/usr/lib/baresip/modules\n\
                 module\tctrl_tcp.so\n\
                 module_app\taccount.so\n\
                 module_app\tcontact.so\n\
                 module_app\tpresence.so\n\
                 module_app\tmenu.so\n\
                 ctrl_tcp_listen\t127.0.0.1:{ctrl_port}\n"
            ),
        )
        .expect("baresip config");
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{DOMAIN};transport=tcp>;regint=600;pubint=600;\
                 outbound=\"{}\";answermode=manual\n",
                p.proxy_uri()
            ),
        )
        .expect("baresip accounts");
        let list: String = contacts
            .iter()
            .map(|c| format!("\"{c}\" <sip:{c}@{DOMAIN}>;presence=p2p\n"))
            .collect();
        std::fs::write(dir.join("contacts"), list).expect("baresip contacts");
        let log = p.dir.join(format!("baresip-{user}.log"));
        let out = std::fs::File::create(&log).expect("baresip log");
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn baresip");
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            match TcpStream::connect(("127.0.0.1", ctrl_port)) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                        let _ = child.kill();
                        panic!(
                            "baresip's ctrl_tcp did not answer ({e}):\n{}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        ctrl.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let mut b = Baresip {
            user: user.to_owned(),
            child,
            ctrl,
            buf: Vec::new(),
            events: Vec::new(),
            log,
            token: 0,
        };
        // Registered: `reginfo` (menu module) shows the account "OK".
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let info = strip_ansi(&b.command("reginfo"));
            if info.contains(" OK ") {
                break;
            }
            if Instant::now() > deadline {
                b.fail(&format!("not registered; reginfo: {info:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        b
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "baresip {}: {what}\nevents: {:?}\nlog:\n{}",
            self.user,
            self.events,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// One netstring from ctrl_tcp, if a whole one is buffered.
    fn take_netstring(&mut self) -> Option<String> {
        let colon = self.buf.iter().position(|&c| c == b':')?;
        let len: usize = std::str::from_utf8(&self.buf[..colon]).ok()?.parse().ok()?;
        if self.buf.len() < colon + 1 + len + 1 {
            return None;
        }
        let msg = String::from_utf8_lossy(&self.buf[colon + 1..colon + 1 + len]).into_owned();
        self.buf.drain(..colon + 1 + len + 1);
        Some(msg)
    }

    /// Runs a ctrl_tcp command; returns its `data` text (JSON string unescaped).
    fn command(&mut self, command: &str) -> String {
        self.token += 1;
        let token = format!("t{}", self.token);
        let json = format!("{{\"command\":\"{command}\",\"token\":\"{token}\"}}");
        let frame = format!("{}:{json},", json.len());
        if let Err(e) = self.ctrl.write_all(frame.as_bytes()) {
            self.fail(&format!("ctrl_tcp write: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            while let Some(msg) = self.take_netstring() {
                if msg.contains("\"response\":true") && msg.contains(&format!("\"{token}\"")) {
                    return json_string_field(&msg, "data").unwrap_or_default();
                }
                self.events.push(msg);
            }
            if Instant::now() > deadline {
                self.fail(&format!("no answer to {command}"));
            }
            let mut chunk = [0u8; 8192];
            match self.ctrl.read(&mut chunk) {
                Ok(0) => self.fail("ctrl_tcp closed"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => self.fail(&format!("ctrl_tcp read: {e}")),
            }
        }
    }

    /// Each contact's presence as baresip's `contacts` command lists it (`Online`, `Offline`,
    /// `Busy`, `Unknown`), by display name.
    fn contacts(&mut self) -> HashMap<String, String> {
        let text = strip_ansi(&self.command("contacts"));
        let mut out = HashMap::new();
        // Lines like ">     Online alice <sip:alice@example.org>"
        for line in text.lines() {
            let line = line.trim_start_matches('>').trim();
            let mut words = line.split_whitespace();
            let (Some(status), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            if line.contains("<sip:") {
                out.insert(name.trim_matches('"').to_owned(), status.to_owned());
            }
        }
        out
    }

    /// Waits until contact `name` is listed with `status`.
    fn sees(&mut self, name: &str, status: &str) {
        let deadline = Instant::now() + SHOW_TIMEOUT;
        loop {
            let all = self.contacts();
            if all.get(name).is_some_and(|s| s == status) {
                eprintln!("{} (baresip) sees {name}: {status}", self.user);
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "contact {name} not shown as {status} within {SHOW_TIMEOUT:?}; contacts: {all:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.command_quietly("quit");
        kill_and_wait(&mut self.child, Duration::from_secs(3));
    }
}

impl Baresip {
    fn command_quietly(&mut self, command: &str) -> std::io::Result<()> {
        let json = format!("{{\"command\":\"{command}\",\"token\":\"q\"}}");
        self.ctrl
            .write_all(format!("{}:{json},", json.len()).as_bytes())
    }
}

/// The value of a string field of a flat JSON object, unescaped.
fn json_string_field(json: &str, field: &str) -> Option<String> {
    let start = json.find(&format!("\"{field}\":\""))? + field.len() + 4;
    let mut out = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
    None
}

/// `text` without ANSI colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn sip(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

/// The `[presence-server]` line the scenarios with baresip need: with the default
/// (`support-legacy-client=true`) every NOTIFY says `Event: Presence`, and baresip 1.0 (libre
/// 1.1) matches the event package of a NOTIFY to its subscription byte for byte: it answers
/// `481 Subscription Does Not Exist`, which ends the subscription (see
/// [`baresip_under_the_default_legacy_mode`]). liblinphone does not look at the Event of
/// single-subscription NOTIFYs, so RFC mode suits both clients when no list is involved.
const RFC_EVENT: &str = "support-legacy-client=false";

on_both_runtimes!(statuses_published_by_each_client_are_shown_by_the_others);
/// Each client publishes statuses and the others show them. alice and bob (liblinphone) watch
/// each other and carol (baresip), who watches them both: every pair is mutual.
fn statuses_published_by_each_client_are_shown_by_the_others(rt: Runtime) {
    if !tools_ready("statuses") {
        return;
    }
    let p = Platform::start(rt, "statuses", RFC_EVENT);
    let mut carol = p.baresip("carol", &["alice", "bob"]);
    let (bob_uri, carol_uri, alice_uri) = (sip("bob"), sip("carol"), sip("alice"));
    let mut alice = p.linphone(
        "alice",
        &[
            "--friend",
            &format!("bob={bob_uri}"),
            "--friend",
            &format!("carol={carol_uri}"),
        ],
    );
    let mut bob = p.linphone(
        "bob",
        &[
            "--friend",
            &format!("alice={alice_uri}"),
            "--friend",
            &format!("carol={carol_uri}"),
        ],
    );

    // Everybody online (liblinphone publishes online once registered, baresip open).
    let online = Expect::new("open", "none", "online");
    alice.sees("bob", &online.clone().contact(&bob_uri));
    alice.sees("carol", &online.clone().contact(&carol_uri));
    bob.sees("alice", &online.clone().contact(&alice_uri));
    bob.sees("carol", &online);
    carol.sees("alice", "Online");
    carol.sees("bob", "Online");

    // alice's statuses, as bob (liblinphone) and carol (baresip) show them. liblinphone's
    // consolidated presence folds every activity into busy and closed into dnd; baresip knows
    // Online, Busy (busy, on-the-phone) and Offline (closed, or the away activity).
    let steps: [(&str, &str, Expect, &str); 5] = [
        (
            "online",
            "At my desk",
            Expect::new("open", "none", "online"),
            "Online",
        ),
        (
            "away",
            "Gone fishing",
            Expect::new("open", "away", "busy"),
            "Offline",
        ),
        (
            "busy",
            "In a meeting",
            Expect::new("open", "busy", "busy"),
            "Busy",
        ),
        (
            "onthephone",
            "Call me later",
            Expect::new("open", "on-the-phone", "busy"),
            "Busy",
        ),
        (
            "dnd",
            "Do not disturb",
            Expect::new("closed", "away", "dnd"),
            "Offline",
        ),
    ];
    for (status, note, lp_view, baresip_view) in steps {
        alice.cmd(&format!("publish {status} {note}"));
        bob.sees("alice", &lp_view.note(note).contact(&alice_uri));
        carol.sees("alice", baresip_view);
    }
    // bob's too, as alice and carol show them.
    bob.cmd("publish away Back in 5 minutes");
    alice.sees(
        "bob",
        &Expect::new("open", "away", "busy").note("Back in 5 minutes"),
    );
    carol.sees("bob", "Offline");
    bob.cmd("publish online");
    alice.sees("bob", &Expect::new("open", "none", "online").note(""));
    carol.sees("bob", "Online");

    // carol (baresip) can only publish open or closed: offline, then online again.
    carol.command("presence_offline");
    alice.sees("carol", &Expect::new("closed", "none", "offline"));
    bob.sees("carol", &Expect::new("closed", "none", "offline"));
    carol.command("presence_online");
    alice.sees("carol", &online);
    bob.sees("carol", &online);

    // Everything went through the proxy: PUBLISH and SUBSCRIBE to the server with the
    // Request-URI unchanged, NOTIFYs back through it, answered 200 by the clients.
    let routed = p.routed();
    let count = |pred: &dyn Fn(&str) -> bool| routed.iter().filter(|l| pred(l)).count();
    for (what, n, seen) in [
        (
            "PUBLISH from alice",
            6,
            count(&|l| l.starts_with(&format!("PUBLISH {alice_uri} "))),
        ),
        (
            "PUBLISH from carol",
            3,
            count(&|l| l.starts_with(&format!("PUBLISH {carol_uri} "))),
        ),
        (
            "SUBSCRIBE to alice",
            2,
            count(&|l| l.starts_with(&format!("SUBSCRIBE {alice_uri} "))),
        ),
        (
            "SUBSCRIBE to carol",
            2,
            count(&|l| l.starts_with(&format!("SUBSCRIBE {carol_uri} "))),
        ),
        (
            "in-dialog NOTIFY",
            20,
            count(&|l| l.starts_with("in-dialog NOTIFY")),
        ),
        (
            "200 to a NOTIFY",
            20,
            count(&|l| l.starts_with("reply 200 ") && l.contains(" to NOTIFY ")),
        ),
    ] {
        assert!(
            seen >= n,
            "expected at least {n} {what} through the proxy, saw {seen}:\n{}",
            routed.join("\n")
        );
    }
    let refused: Vec<&String> = routed
        .iter()
        .filter(|l| l.starts_with("reply 481") && !l.contains("Call/transaction"))
        .collect();
    assert!(refused.is_empty(), "NOTIFYs refused: {refused:#?}");
}

on_both_runtimes!(a_friend_list_with_an_rls_uri_is_one_compressed_list_subscribe);
/// A liblinphone friend list with an RLS URI: one compressed list SUBSCRIBE for every friend,
/// including a phone-number friend the account database resolves to alice, a
/// registered-but-silent account (long-term presence) and a user without an account. The
/// server's defaults (legacy mode: liblinphone 5.1 only reads list NOTIFYs with `Event:
/// Presence`).
fn a_friend_list_with_an_rls_uri_is_one_compressed_list_subscribe(rt: Runtime) {
    if !tools_ready("rls list") {
        return;
    }
    let p = Platform::start(rt, "rls", "");
    let _erin = p.linphone("erin", &["--no-publish"]);
    let mut alice = p.linphone("alice", &["--friend", &format!("bob={}", sip("bob"))]);
    alice.cmd("publish away Gone fishing");

    let rls = format!("sip:rls@{DOMAIN}");
    let mut bob = p.linphone(
        "bob",
        &[
            "--rls",
            &rls,
            "--friend",
            &format!("alice={}", sip("alice")),
            "--phone",
            &format!("alice-mobile={ALICE_PHONE}"),
            "--friend",
            &format!("erin={}", sip("erin")),
            "--friend",
            &format!("ghost={}", sip("ghost")),
        ],
    );

    let alice_away = Expect::new("open", "away", "busy")
        .note("Gone fishing")
        .contact(&sip("alice"));
    bob.sees("alice", &alice_away);
    // The phone number resolves to alice: her published status, her SIP URI as contact.
    bob.sees("alice-mobile", &alice_away);
    bob.sees_uri("alice-mobile", ALICE_PHONE, &alice_away);
    // erin exists but publishes nothing: long-term presence, open + away, her SIP URI.
    bob.sees(
        "erin",
        &Expect::new("open", "away", "busy")
            .note("")
            .contact(&sip("erin")),
    );
    // alice sees bob: the list subscription counts as watching her, for the mutual rule.
    alice.sees("bob", &Expect::new("open", "none", "online"));

    // A change goes out in a (partial) list NOTIFY, to both of alice's entries.
    alice.cmd("publish onthephone");
    let on_the_phone = Expect::new("open", "on-the-phone", "busy")
        .note("")
        .contact(&sip("alice"));
    bob.sees("alice", &on_the_phone);
    bob.sees("alice-mobile", &on_the_phone);

    // ghost has no account: the list NOTIFYs never carry it.
    let ghost = bob.show("ghost");
    assert_eq!(
        (
            ghost.basic.as_str(),
            ghost.consolidated.as_str(),
            ghost.received.as_str()
        ),
        ("none", "offline", "no"),
        "ghost: {ghost:?}\n{}",
        bob.lines().join("\n")
    );

    // On the wire, as the proxy saw it: bob's friends cost one SUBSCRIBE, to the RLS URI,
    // announcing eventlist, with a deflated resource list; erin never published.
    let routed = p.routed();
    let from_bob: Vec<&String> = routed
        .iter()
        .filter(|l| l.starts_with("SUBSCRIBE ") && l.contains(&format!("from {}", sip("bob"))))
        .collect();
    assert_eq!(from_bob.len(), 1, "bob's SUBSCRIBEs: {from_bob:#?}");
    let list = from_bob[0];
    assert!(
        list.starts_with(&format!("SUBSCRIBE {rls} ")),
        "not to the RLS URI: {list}"
    );
    assert!(
        list.contains("eventlist"),
        "no Supported: eventlist: {list}"
    );
    assert!(
        list.contains("Content-Type=[application/resource-lists+xml]")
            && list.contains("Content-Encoding=[deflate]"),
        "not a deflated resource list: {list}"
    );
    assert!(
        !routed
            .iter()
            .any(|l| l.starts_with(&format!("PUBLISH {} ", sip("erin")))),
        "erin published:\n{}",
        routed.join("\n")
    );
}

on_both_runtimes!(a_registered_but_silent_account_shows_long_term_presence);
/// Long-term presence: erin is registered and publishes nothing; alice (one SUBSCRIBE per
/// friend) sees her open and away, with her SIP URI; a user without an account shows nothing.
fn a_registered_but_silent_account_shows_long_term_presence(rt: Runtime) {
    if !tools_ready("long-term") {
        return;
    }
    let p = Platform::start(rt, "longterm", "");
    // erin watches alice: whatever erin published, alice would be allowed to see it.
    let _erin = p.linphone(
        "erin",
        &[
            "--no-publish",
            "--friend",
            &format!("alice={}", sip("alice")),
        ],
    );
    let mut alice = p.linphone(
        "alice",
        &[
            "--friend",
            &format!("erin={}", sip("erin")),
            "--friend",
            &format!("ghost={}", sip("ghost")),
        ],
    );
    alice.sees(
        "erin",
        &Expect::new("open", "away", "busy")
            .note("")
            .contact(&sip("erin")),
    );
    // ghost: once the server's NOTIFY (a document with only a note) was relayed to alice,
    // liblinphone shows ghost offline, without contact.
    p.wait_routed("a NOTIFY about ghost", |l| {
        l.starts_with("in-dialog NOTIFY") && l.contains(&format!("from {} ", sip("ghost")))
    });
    std::thread::sleep(Duration::from_millis(300));
    let ghost = alice.show("ghost");
    assert!(
        ghost.basic != "open" && ghost.consolidated == "offline" && ghost.contact.is_empty(),
        "ghost: {ghost:?}\n{}",
        alice.lines().join("\n")
    );
    let routed = p.routed();
    assert!(
        !routed
            .iter()
            .any(|l| l.starts_with(&format!("PUBLISH {} ", sip("erin")))),
        "erin published:\n{}",
        routed.join("\n")
    );
}

on_both_runtimes!(the_mutual_rule_as_a_user_sees_it);
/// The mutual rule as a user sees it: dave publishes busy; alice adds dave and sees only his
/// long-term presence (away, no note) until dave adds alice, then his status; when dave removes
/// alice she is back to the long-term view.
fn the_mutual_rule_as_a_user_sees_it(rt: Runtime) {
    if !tools_ready("mutual rule") {
        return;
    }
    let p = Platform::start(rt, "mutual", "");
    let mut dave = p.linphone("dave", &[]);
    dave.cmd("publish busy In a meeting");
    let mut alice = p.linphone("alice", &[]);
    alice.cmd(&format!("friend dave {}", sip("dave")));
    let long_term = Expect::new("open", "away", "busy")
        .note("")
        .contact(&sip("dave"));
    alice.sees("dave", &long_term);
    // And it stays so: dave's status does not leak.
    std::thread::sleep(Duration::from_millis(1500));
    let still = alice.show("dave");
    assert!(long_term.matches(&still), "alice sees dave as {still:?}");

    dave.cmd(&format!("friend alice {}", sip("alice")));
    alice.sees(
        "dave",
        &Expect::new("open", "busy", "busy")
            .note("In a meeting")
            .contact(&sip("dave")),
    );
    dave.sees("alice", &Expect::new("open", "none", "online"));

    dave.cmd("unfriend alice");
    alice.sees("dave", &long_term);
}

// baresip watching alice with the server's defaults (`support-legacy-client=true`): single
// NOTIFYs say `Event: presence` (Flexisip's `Presence` there made baresip answer 481, end the
// subscription and show alice "Unknown").
on_both_runtimes!(baresip_under_the_default_legacy_mode);
fn baresip_under_the_default_legacy_mode(rt: Runtime) {
    if !tools_ready("baresip, legacy mode") {
        return;
    }
    let p = Platform::start(rt, "legacy-baresip", "");
    let mut carol = p.baresip("carol", &["alice"]);
    let alice = p.linphone("alice", &["--friend", &format!("carol={}", sip("carol"))]);
    alice.sees("carol", &Expect::new("open", "none", "online"));
    carol.sees("alice", "Online");
}
