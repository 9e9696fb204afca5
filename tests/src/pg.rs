//! A private PostgreSQL server for tests that stop and restart their database (the machine's
//! shared server must stay up for the other tests): `initdb` into a temporary directory, then
//! `pg_ctl start`/`stop` on a free loopback port, trust authentication, no fsync. Run as the
//! `postgres` user when the tests run as root (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::daemon::unique;

/// A PostgreSQL server of the test's own; stopped and removed on drop.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PrivatePostgres {
    /// Creates the cluster and starts it. Panics with the reason when PostgreSQL's server
    /// programs are not installed (`.ci/run` installs them).
    pub fn start() -> PrivatePostgres {
        let bin = server_bin_dir().unwrap_or_else(|| {
            panic!("PostgreSQL's server programs (initdb, pg_ctl) are not installed under /usr/lib/postgresql")
        });
        let dir = std::env::temp_dir().join(unique("presence-pg-"));
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let pg = PrivatePostgres {
            dir,
            bin,
            port: free_port(),
        };
        if running_as_root() {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(&pg.dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown postgres {}", pg.dir.display());
        }
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        pg.start_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// An sqlx URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL with psql; panics on failure.
    pub fn sql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .output()
            .expect("run psql");
        check("psql", &out);
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once (`immediate`: like a crash, connections are cut).
    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let out = if running_as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .current_dir(&self.dir)
                .output()
        } else {
            Command::new(&path)
                .args(args)
                .current_dir(&self.dir)
                .output()
        }
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
        check(program, &out);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if running_as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The newest `/usr/lib/postgresql/VERSION/bin` that has `initdb`.
fn server_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin.join("initdb"))
                .exists()
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    // The effective uid, from /proc (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
