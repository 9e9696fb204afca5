//! presence-bench against our daemon (`presence-server`, started by the e2e harness of
//! `presence-tests`): small fanout (proxy and per-user modes), list, churn and hold runs must end
//! with every expected NOTIFY delivered, none lost or wrong, and the counts the topology implies.
//!
//! The daemon binary comes from the target directory (`cargo test --workspace` builds it; alone:
//! `cargo build --bin presence-server`) or `$PRESENCE_SERVER_BIN`.

use std::process::Command;
use std::time::{Duration, Instant};

use presence_tests::daemon::{Daemon, Runtime, unique};
use serde_json::Value;

/// A daemon with its account database in a temporary file (removed on drop).
struct Server {
    daemon: Daemon,
    db: std::path::PathBuf,
}

impl Server {
    fn start(extra: &str) -> Server {
        let db = std::env::temp_dir().join(format!("{}.db", unique("presence-bench-")));
        let daemon = Daemon::start(
            Runtime::Tokio,
            &format!("accounts-database={}\n{extra}", db.display()),
        );
        Server { daemon, db }
    }
}

impl std::ops::Deref for Server {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.db.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs presence-bench against `daemon` with `args`; returns the JSON report (its last stdout
/// line) after checking the exit status.
fn bench(daemon: &Daemon, args: &[&str]) -> Value {
    let server = daemon.addr.to_string();
    let pid = daemon.pid().to_string();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_presence-bench"))
        .args(args)
        .args([
            "--server", &server, "--pid", &pid, "--quiet", "--grace", "3",
        ])
        .output()
        .expect("run presence-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "presence-bench {args:?} failed ({:?}) after {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\ndaemon:\n{}",
        out.status,
        started.elapsed(),
        daemon.log()
    );
    let last = stdout.lines().last().expect("a JSON line");
    let report: Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(report["result"], "ok", "{stdout}");
    assert_eq!(report["failures"], 0, "{stdout}");
    report
}

fn n(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}

fn assert_clean(r: &Value) {
    for key in [
        "notify_lost",
        "notify_wrong",
        "notify_no_note",
        "notify_bad_body",
        "publish_failed",
        "publish_unanswered",
        "terminated_by_server",
        "closed_connections",
        "cleanup_errors",
    ] {
        assert_eq!(n(r, key), 0, "{key}: {r}");
    }
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
}

#[test]
fn fanout_proxy_mode() {
    let daemon = Server::start("");
    let r = bench(
        &daemon,
        &[
            "fanout",
            "--users",
            "50",
            "--buddies",
            "4",
            "--connections",
            "2",
            "--rate",
            "50",
            "--duration",
            "2",
        ],
    );
    assert_clean(&r);
    assert_eq!(r["mode"], "proxy");
    assert_eq!(n(&r, "subscriptions"), 200);
    assert_eq!(n(&r, "publish_sent"), 100);
    assert_eq!(n(&r, "publish_ok"), 100);
    // Every user has 4 mutual watchers: each PUBLISH is one NOTIFY to each.
    assert_eq!(n(&r, "notify_expected"), 400);
    assert_eq!(n(&r, "notify_delivered"), 400);
    assert_eq!(n(&r, "notify_received"), 400);
    assert_eq!(n(&r, "latency_samples"), 400);
    assert!(
        r["notifies_per_cpu_s"].is_number() || r["server_cpu_s"] == 0.0,
        "{r}"
    );
}

#[test]
fn fanout_one_connection_per_user() {
    let daemon = Server::start("");
    let r = bench(
        &daemon,
        &[
            "fanout",
            "--users",
            "20",
            "--buddies",
            "3",
            "--rate",
            "40",
            "--duration",
            "1",
        ],
    );
    assert_clean(&r);
    assert_eq!(r["mode"], "per-user");
    assert_eq!(n(&r, "connections"), 20);
    assert_eq!(n(&r, "subscriptions"), 60);
    let sent = n(&r, "publish_sent");
    assert_eq!(sent, 40);
    assert_eq!(n(&r, "notify_expected"), 3 * sent);
    assert_eq!(n(&r, "notify_delivered"), 3 * sent);
}

#[test]
fn list_deflated() {
    let daemon = Server::start("list-notify-interval=200");
    let r = bench(
        &daemon,
        &[
            "list",
            "--lists",
            "3",
            "--entries",
            "10",
            "--users",
            "12",
            "--deflate",
            "--rate",
            "30",
            "--duration",
            "2",
        ],
    );
    assert_clean(&r);
    assert_eq!(n(&r, "lists"), 3);
    assert_eq!(n(&r, "full_state_samples"), 3);
    let expected = n(&r, "notify_expected");
    let seen = n(&r, "notify_delivered") + n(&r, "resource_updates") + n(&r, "resource_coalesced");
    assert_eq!(seen, expected, "{r}");
    // Each list has 10 of the 12 users: the 60 PUBLISHes hit the lists 50 times on average.
    assert!(n(&r, "resource_updates") > 0, "{r}");
    assert!(n(&r, "publish_sent") == 60, "{r}");
    // The server CPU of the list subscriptions alone, per list.
    assert!(r["list_setup_server_cpu_s"].is_number(), "{r}");
    assert!(r["list_setup_cpu_ms_per_list"].is_number(), "{r}");
}

/// `--duration 0`: the list setup only (its server CPU), no PUBLISH phase.
#[test]
fn list_setup_only() {
    let daemon = Server::start("");
    let r = bench(
        &daemon,
        &[
            "list",
            "--lists",
            "2",
            "--entries",
            "50",
            "--users",
            "60",
            "--deflate",
            "--duration",
            "0",
            "--grace",
            "0",
        ],
    );
    assert_clean(&r);
    assert_eq!(n(&r, "full_state_samples"), 2);
    assert_eq!(n(&r, "publish_sent"), 0);
    assert!(r["list_setup_cpu_ms_per_list"].as_f64().is_some(), "{r}");
}

#[test]
fn churn_and_hold() {
    let daemon = Server::start("");
    let r = bench(
        &daemon,
        &[
            "churn",
            "--users",
            "20",
            "--dialogs",
            "300",
            "--window",
            "10",
            "--duration",
            "10",
        ],
    );
    assert_eq!(n(&r, "dialogs_started"), 300);
    assert_eq!(n(&r, "dialogs_completed"), 300);
    assert_eq!(n(&r, "setup_samples"), 300);
    assert_eq!(r["errors"], serde_json::json!({}), "{r}");
    let started = Instant::now();
    let r = bench(
        &daemon,
        &[
            "hold",
            "--users",
            "40",
            "--subscriptions",
            "400",
            "--connections",
            "4",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(n(&r, "subscriptions"), 400);
    assert!(r["bytes_per_subscription"].is_number(), "{r}");
    assert!(n(&r, "after_rss_kb") > 0, "{r}");
}
