//! Private Redis servers for the end-to-end tests (restarting or killing the shared one on
//! 127.0.0.1:6379 would disturb other tests): a `redis-server` on a free port
//! ([`PrivateRedis`]), and a master with its replica watched by a Redis Sentinel
//! ([`SentinelSetup`]). Every process is killed on drop, a panic included.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::unique;

/// Longest wait for a server to accept connections.
const START: Duration = Duration::from_secs(10);

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
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `redis-cli`, None when it fails (the server is down).
    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
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
