//! The daemon binaries with databases: the `accounts` subcommand end to end, the embedded
//! database created in the working directory, and a daemon that starts although its database is
//! down; on both runtimes (moved from runtime-tokio/tests/databases.rs).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use presence_tests::daemon::{Runtime, binary, unique};
use presence_tests::on_both_runtimes;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(&format!("presence-{name}-")));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(rt: Runtime, cwd: &Path, args: &[&str]) -> Output {
    Command::new(binary(rt))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run presence-server")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

on_both_runtimes!(accounts_subcommand);
fn accounts_subcommand(rt: Runtime) {
    let dir = TempDir::new("accounts");
    let db = dir.0.join("accounts.db");
    let conf = dir.file(
        "presence.conf",
        &format!("[presence-server]\naccounts-database={}\n", db.display()),
    );
    let conf = conf.to_str().unwrap();
    let out = run(
        rt,
        &dir.0,
        &[
            "--config",
            conf,
            "accounts",
            "add",
            "alice@example.org",
            "--phone",
            "+33612345678",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("added alice@example.org (phone +33612345678)"),
        "{}",
        text(&out.stdout)
    );
    // Only warnings and errors go to stderr.
    assert_eq!(text(&out.stderr), "");
    assert!(db.exists());
    let out = run(
        rt,
        &dir.0,
        &["-c", conf, "accounts", "add", "bob@example.org"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(rt, &dir.0, &["accounts", "list", "--config", conf]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "alice@example.org +33612345678\nbob@example.org\n"
    );

    let out = run(
        rt,
        &dir.0,
        &["-c", conf, "accounts", "add", "alice@example.org"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("alice@example.org already exists"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        rt,
        &dir.0,
        &["-c", conf, "accounts", "remove", "bob@example.org"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        rt,
        &dir.0,
        &["-c", conf, "accounts", "remove", "bob@example.org"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("bob@example.org is not in"));
    let out = run(rt, &dir.0, &["-c", conf, "accounts", "list"]);
    assert_eq!(text(&out.stdout), "alice@example.org +33612345678\n");

    // Usage errors exit with 2.
    let out = run(rt, &dir.0, &["-c", conf, "accounts"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("add, list or remove"));
    let out = run(
        rt,
        &dir.0,
        &["-c", conf, "accounts", "add", "not-an-address"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("user@domain"));

    // The password file is edited by hand.
    let passwd = dir.file("passwd", "version:1\nalice@example.org clrtxt:x ;\n");
    let conf = dir.file(
        "flexisip.conf",
        &format!(
            "[module::Authentication]\ndb-implementation=file\nfile-path={}\n",
            passwd.display()
        ),
    );
    let out = run(
        rt,
        &dir.0,
        &["-c", conf.to_str().unwrap(), "accounts", "add", "x@y"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("edited by hand"),
        "{}",
        text(&out.stderr)
    );
}

/// Starts the daemon in `cwd` and returns its stderr up to `listening on` (killing it then).
fn start_and_stop(rt: Runtime, cwd: &Path, conf: &Path) -> String {
    let mut child = Command::new(binary(rt))
        .arg("--config")
        .arg(conf)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn presence-server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("listening on") {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "the daemon did not start:\n{log}");
    log
}

on_both_runtimes!(embedded_database_in_the_working_directory);
fn embedded_database_in_the_working_directory(rt: Runtime) {
    let dir = TempDir::new("embedded");
    let conf = dir.file(
        "presence.conf",
        "[presence-server]\ntransports=sip:127.0.0.1:0;transport=tcp\n",
    );
    let log = start_and_stop(rt, &dir.0, &conf);
    assert!(
        log.contains("account database presence-accounts.db: ready"),
        "{log}"
    );
    assert!(dir.0.join("presence-accounts.db").exists());
}

on_both_runtimes!(a_dead_database_does_not_stop_the_startup);
fn a_dead_database_does_not_stop_the_startup(rt: Runtime) {
    let dir = TempDir::new("dead-db");
    let conf = dir.file(
        "presence.conf",
        "[module::Authentication]\ndb-implementation=soci\nsoci-backend=mysql\n\
         soci-connection-string=db=x user=root password='p w' host=127.0.0.1 port=1\n\
         [presence-server]\ntransports=sip:127.0.0.1:0;transport=tcp\nlong-term-enabled=true\n\
         rls-database-connection=postgres://postgres@127.0.0.1:1/x\n\
         rls-database-request=select entry from lists where owner = :from and list = :to\n",
    );
    let log = start_and_stop(rt, &dir.0, &conf);
    assert!(
        log.contains("account database mysql://root:***@127.0.0.1:1/x is unreachable"),
        "{log}"
    );
    assert!(
        log.contains("list database postgres://postgres@127.0.0.1:1/x is unreachable"),
        "{log}"
    );
    assert!(!log.contains("p w") && !log.contains("p%20w"), "{log}");
}

on_both_runtimes!(a_bad_connection_string_stops_the_startup);
fn a_bad_connection_string_stops_the_startup(rt: Runtime) {
    let dir = TempDir::new("bad-db");
    let conf = dir.file(
        "presence.conf",
        "[module::Authentication]\ndb-implementation=soci\nsoci-backend=oracle\n\
         soci-connection-string=db=x\n\
         [presence-server]\ntransports=sip:127.0.0.1:0;transport=tcp\nlong-term-enabled=true\n",
    );
    let out = run(rt, &dir.0, &["--config", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unsupported soci backend 'oracle'"),
        "{}",
        text(&out.stderr)
    );
}
