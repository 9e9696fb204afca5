//! Redis for the end-to-end tests of cluster mode. On the shared server on 127.0.0.1:6379
//! (`.ci/run` starts it), a key prefix of one test ([`Namespace`]). Private servers, where a
//! test restarts or kills Redis (doing that to the shared one would disturb other tests): a
//! `redis-server` on a free port ([`PrivateRedis`]), and a master with its replica watched by a
//! Redis Sentinel ([`SentinelSetup`]). Every process is killed on drop, a panic included.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::unique;

/// Longest wait for a server to accept connections.
const START: Duration = Duration::from_secs(10);

/// The port of the shared Redis.
pub const SHARED_PORT: u16 = 6379;
/// The `redis-server-uri` of the shared Redis.
pub const SHARED_URI: &str = "redis://127.0.0.1:6379";

/// The `[presence-server]` lines of a cluster node named `name` on the Redis at `uri` (without
/// long-term storage), then `extra`.
pub fn node_config(uri: &str, name: &str, extra: &str) -> String {
    format!("redis-server-uri={uri}\ncluster-node-name={name}\nlong-term-enabled=false\n{extra}")
}

/// `redis-cli` with these arguments against the server on 127.0.0.1:`port`.
fn redis_cli(port: u16, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
}

/// `redis-cli` with these arguments against the server on 127.0.0.1:`port`; its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = redis_cli(port, args).expect("run redis-cli");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The keys matching `pattern` (`SCAN`) of the server on 127.0.0.1:`port`, sorted.
pub fn keys(port: u16, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = cli(port, &["--scan", "--pattern", pattern])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

/// A key prefix of one test on the shared Redis (`redis-key-prefix`: tests running in parallel
/// do not see each other); its keys are deleted on drop.
pub struct Namespace {
    /// `stem`, a unique token and `:`.
    pub prefix: String,
}

impl Namespace {
    /// A fresh prefix starting with `stem` (which names the suite).
    pub fn new(stem: &str) -> Namespace {
        Namespace {
            prefix: format!("{}:", unique(stem)),
        }
    }

    /// The `[presence-server]` lines of node `name` of this cluster, then `extra`.
    pub fn node(&self, name: &str, extra: &str) -> String {
        let extra = format!("redis-key-prefix={}\n{extra}", self.prefix);
        node_config(SHARED_URI, name, &extra)
    }

    /// `redis-cli` with these arguments against the shared Redis; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(SHARED_PORT, args)
    }

    /// The keys of this prefix, sorted.
    pub fn keys(&self) -> Vec<String> {
        keys(SHARED_PORT, &format!("{}*", self.prefix))
    }

    /// Waits (at most `limit`) until `key` is in Redis (`present`) or gone.
    pub fn wait_key(&self, key: &str, present: bool, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.keys().iter().any(|k| k == key) != present {
            assert!(Instant::now() < deadline, "{key}: {:?}", self.keys());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty() {
            let mut args = vec!["del"];
            args.extend(keys.iter().map(String::as_str));
            self.cli(&args);
        }
    }
}

/// A port nobody listens on (at the time of the call).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` every 50 ms until it gives something; panics after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `redis-server` of our own on a free port, working in a temporary directory (a replica
/// writes the RDB of its first synchronisation there); killed on drop, the directory removed.
pub struct PrivateRedis {
    pub port: u16,
    /// Everything after `redis-server`.
    args: Vec<String>,
    child: Option<Child>,
    /// Its own working directory (removed on drop).
    dir: Option<PathBuf>,
}

impl PrivateRedis {
    /// A server without persistence (a restart empties it).
    pub fn start() -> PrivateRedis {
        PrivateRedis::start_with(&[])
    }

    /// A server without persistence, with these extra arguments (`--replicaof`, ...).
    pub fn start_with(extra: &[&str]) -> PrivateRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(unique("presence-redis-"));
        std::fs::create_dir_all(&dir).expect("create redis-server's directory");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        PrivateRedis::spawn(port, args, Some(dir))
    }

    /// `redis-server` with exactly `args`, which make it listen on `port`.
    fn spawn(port: u16, args: Vec<String>, dir: Option<PathBuf>) -> PrivateRedis {
        let mut r = PrivateRedis {
            port,
            args,
            child: None,
            dir,
        };
        r.restart();
        r
    }

    pub fn uri(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        wait_for(START, "redis-server listening", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
    }

    /// Kills it (SIGKILL) and waits for its end.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis-cli` with these arguments; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    /// `redis-cli`, None when it fails (the server is down).
    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = redis_cli(self.port, args).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// The keys matching `pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        keys(self.port, pattern)
    }

    /// Waits (at most `limit`) until every key of `expected` is in Redis.
    pub fn wait_keys(&self, expected: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let keys: HashSet<String> = self.keys("*").into_iter().collect();
            let missing: Vec<&String> = expected.iter().filter(|k| !keys.contains(*k)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} keys still missing after {limit:?}, e.g. {:?}",
                missing.len(),
                expected.len(),
                &missing[..missing.len().min(10)]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first line of `ROLE` (`master`, `slave`, `sentinel`); None when it does not answer.
    pub fn role(&self) -> Option<String> {
        Some(self.try_cli(&["role"])?.lines().next()?.to_owned())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A master, its replica and one Redis Sentinel watching them as [`SentinelSetup::service`]
/// (quorum 1, the master down after 1 s without an answer, failover timeout 5 s). The
/// sentinel's configuration and log are in a temporary directory, removed on drop.
pub struct SentinelSetup {
    pub master: PrivateRedis,
    pub replica: PrivateRedis,
    pub sentinel: PrivateRedis,
    pub service: String,
    dir: PathBuf,
}

impl SentinelSetup {
    /// Starts the three; returns when the sentinel knows the replica (it may promote it).
    pub fn start() -> SentinelSetup {
        // No 5 s wait before a full synchronisation (Redis 7's default).
        let fast = ["--repl-diskless-sync-delay", "0"];
        let master = PrivateRedis::start_with(&fast);
        let of = master.port.to_string();
        let replica =
            PrivateRedis::start_with(&[&fast[..], &["--replicaof", "127.0.0.1", &of]].concat());
        // Synchronised before the sentinel starts: its first INFO of the master lists the
        // replica (the next one would come 10 s later).
        wait_for(START, "replica synchronised", || {
            replica
                .try_cli(&["info", "replication"])?
                .contains("master_link_status:up")
                .then_some(())
        });
        let dir = std::env::temp_dir().join(unique("presence-sentinel-"));
        std::fs::create_dir_all(&dir).expect("create the sentinel's directory");
        let service = "presence-e2e".to_owned();
        let port = free_port();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {service} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {service} 1000\n\
                 sentinel failover-timeout {service} 5000\n",
                dir = dir.display(),
                master = master.port,
            ),
        )
        .expect("write sentinel.conf");
        let sentinel = PrivateRedis::spawn(
            port,
            vec![conf.display().to_string(), "--sentinel".to_owned()],
            None,
        );
        let setup = SentinelSetup {
            master,
            replica,
            sentinel,
            service,
            dir,
        };
        wait_for(START, "replica known to the sentinel", || {
            let out = setup
                .sentinel
                .try_cli(&["sentinel", "replicas", &setup.service])?;
            let lines: Vec<&str> = out.lines().collect();
            let value = |key: &str| {
                lines
                    .iter()
                    .position(|l| *l == key)
                    .and_then(|i| lines.get(i + 1))
                    .copied()
            };
            (value("flags") == Some("slave") && value("master-link-status") == Some("ok"))
                .then_some(())
        });
        setup
    }

    /// The `redis-server-uri` naming the sentinel.
    pub fn uri(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}",
            self.sentinel.port, self.service
        )
    }

    /// The master's port, as the sentinel names it now.
    pub fn master_port(&self) -> Option<u16> {
        let out = self
            .sentinel
            .try_cli(&["sentinel", "get-master-addr-by-name", &self.service])?;
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// Waits (at most `limit`) until the sentinel names the replica as the master.
    pub fn wait_promotion(&self, limit: Duration) {
        wait_for(limit, "failover to the replica", || {
            (self.master_port() == Some(self.replica.port)).then_some(())
        });
    }

    /// What the sentinel logged.
    pub fn sentinel_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        // The processes are killed by their own drops; the directory goes now.
        self.sentinel.kill();
        if std::thread::panicking() {
            eprintln!("--- sentinel log ---\n{}\n------", self.sentinel_log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
