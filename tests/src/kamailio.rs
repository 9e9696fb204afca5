//! Kamailio in front of daemons under test, for the suites that put a real proxy there
//! (`tests/tests/real_clients.rs`, `tests/tests/cluster_proxy.rs`): Kamailio 5.6 runs
//! `examples/kamailio-presence-proxy.cfg` on a free loopback port, with `-A` defines choosing
//! the presence server(s) and the options; its log (stderr) goes to a file, whose
//! `presence: ...` lines (`WITH_PRESENCE_LOG`) the tests read. Also the small process helpers
//! those suites share, and the skip rule for machines without the Debian packages.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set (to anything but `0`) to make the tests that need programs from Debian's packages
/// (Kamailio, the real clients) print why they are skipped and pass when those are missing.
pub const SKIP_VAR: &str = "PRESENCE_SKIP_REAL_CLIENTS";

/// How long Kamailio may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether a test needing packages can run: true when nothing is `missing` (the packages to
/// install, space-separated); otherwise false, after printing why, when [`SKIP_VAR`] is set,
/// and a panic naming the packages and `install` (the command installing them) when it is not.
pub fn tools_ready(test: &str, missing: Option<String>, install: &str) -> bool {
    let Some(missing) = missing else {
        return true;
    };
    if std::env::var_os(SKIP_VAR).is_some_and(|v| !v.is_empty() && v != "0") {
        eprintln!("SKIPPED {test}: missing {missing} ({SKIP_VAR} is set)");
        return false;
    }
    panic!(
        "{test} needs: {missing}. Install them with `{install}`, or set {SKIP_VAR}=1 to skip \
         these tests"
    );
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Waits (at most `timeout`) until something listens on the loopback `port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// SIGTERM, then SIGKILL if `child` has not exited within `grace`; reaps it.
pub fn kill_and_wait(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kamailio running `examples/kamailio-presence-proxy.cfg`; stopped on drop (its log is
/// printed then if the test is failing).
pub struct Kamailio {
    child: Child,
    stopped: bool,
    port: u16,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio listening on a free loopback TCP port (the `LISTEN` define), with the
    /// other `defines` (each passed as `-A DEFINE`), its runtime files in `dir` (which must
    /// exist) and its log in `dir/kamailio.log`; waits until it listens (retrying on another
    /// port if the first one was taken meanwhile).
    pub fn start(dir: &Path, defines: &[String]) -> Kamailio {
        let cfg = workspace_root().join("examples/kamailio-presence-proxy.cfg");
        let log_path = dir.join("kamailio.log");
        for attempt in 0.. {
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("kamailio log");
            let mut cmd = Command::new("kamailio");
            cmd.args(["-DD", "-E", "-m", "64", "-M", "8", "-f"])
                .arg(&cfg)
                .arg("-A")
                .arg(format!("LISTEN=tcp:127.0.0.1:{port}"));
            for d in defines {
                cmd.arg("-A").arg(d);
            }
            let mut child = cmd
                .arg("-Y")
                .arg(dir)
                .arg("-P")
                .arg(dir.join("kamailio.pid"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn kamailio (apt-get install kamailio)");
            if wait_port(port, START_TIMEOUT) && child.try_wait().ok().flatten().is_none() {
                return Kamailio {
                    child,
                    stopped: false,
                    port,
                    log: log_path,
                };
            }
            kill_and_wait(&mut child, Duration::from_secs(2));
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(attempt < 2, "kamailio did not start:\n{log}");
        }
        unreachable!()
    }

    /// Stops Kamailio (SIGTERM, SIGKILL after 3 s); its log stays readable.
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            kill_and_wait(&mut self.child, Duration::from_secs(3));
        }
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The proxy's URI, as clients use it (outbound proxy / registrar).
    pub fn uri(&self) -> String {
        format!("sip:127.0.0.1:{};transport=tcp", self.port)
    }

    /// Everything Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `presence: ...` lines (`WITH_PRESENCE_LOG`), without that prefix: one per PUBLISH or
    /// SUBSCRIBE routed to a presence server, per in-dialog NOTIFY or SUBSCRIBE relayed, per
    /// final answer to them and per failover to another node.
    pub fn routed(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.find("presence: ").map(|i| l[i + 10..].to_owned()))
            .collect()
    }

    /// Waits (at most `timeout`) until Kamailio logged a `presence:` line for which `pred` holds;
    /// returns it, or fails the test naming `what`.
    pub fn wait_routed(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.routed().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy saw no {what} within {timeout:?}:\n{}",
                self.routed().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- kamailio ---\n{}\n------", self.log());
        }
    }
}
