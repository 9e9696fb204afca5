//! End-to-end tests of `--check-config`: the configuration is loaded as at startup, the database
//! settings checked (connection strings parsed, queries and their parameters, password file
//! read) without listening or connecting, and the binary exits 0 with a one-line summary or 1
//! with the error (file, line, section, key, value).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use presence_tests::daemon::{Runtime, run_to_exit, unique};
use presence_tests::on_both_runtimes;

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

on_both_runtimes!(a_valid_configuration_is_summarised_without_binding_or_creating_anything);
fn a_valid_configuration_is_summarised_without_binding_or_creating_anything(rt: Runtime) {
    // The transport's port is taken: checking must not try to bind it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let db = std::env::temp_dir().join(format!("{}.db", unique("presence-check-")));
    let config = format!(
        "[global]\nlog-level=debug\n\n[presence-server]\n\
         transports=sip:127.0.0.1:{port};transport=tcp\n\
         accounts-database={}\nmetrics-address=127.0.0.1:9150\nfrobnicate=1\n",
        db.display()
    );
    let run = run_to_exit(rt, &["--check-config"], Some(&config), EXIT_TIMEOUT);
    assert!(run.status.success(), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", run.stdout);
    let line = lines[0];
    for part in [
        "configuration OK: /",
        ".conf",
        &format!("transports sip:127.0.0.1:{port};transport=tcp"),
        &format!("accounts: embedded SQLite {}", db.display()),
        "server-known lists: none",
        "metrics on 127.0.0.1:9150",
    ] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    // Warnings are still reported; nothing listened, nothing was created.
    assert!(run.stderr.contains("frobnicate"), "{}", run.stderr);
    assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
    assert!(!db.exists(), "the embedded database was created");
}

on_both_runtimes!(databases_are_not_contacted);
fn databases_are_not_contacted(rt: Runtime) {
    // Valid URLs of servers that do not exist: the check is about syntax only, and quick.
    let config = "[module::Authentication]\ndb-implementation=soci\nsoci-backend=postgresql\n\
         soci-connection-string=dbname=accounts user=presence password='s3cret' host=127.0.0.1 port=1\n\
         [presence-server]\nlong-term-enabled=true\n\
         rls-database-connection=mysql://presence@127.0.0.1:1/lists\n\
         rls-database-request=select entry from lists where owner = :from and list = :to\n";
    let start = Instant::now();
    let run = run_to_exit(rt, &["--check-config"], Some(config), EXIT_TIMEOUT);
    assert!(run.status.success(), "{run:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    for part in [
        "accounts: soci PostgreSQL postgres://presence:***@127.0.0.1:1/accounts",
        "server-known lists: MySQL/MariaDB mysql://presence@127.0.0.1:1/lists",
    ] {
        assert!(run.stdout.contains(part), "{part:?} not in {}", run.stdout);
    }
    assert!(!run.stdout.contains("s3cret"), "{}", run.stdout);
}

/// Runs `--check-config` on `config` and asserts a failure whose message has every `part`.
fn assert_refused(rt: Runtime, config: &str, parts: &[&str]) {
    let run = run_to_exit(rt, &["--check-config"], Some(config), EXIT_TIMEOUT);
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.contains(".conf line "), "{}", run.stderr);
    for part in parts {
        assert!(
            run.stderr.contains(part),
            "{part:?} not in:\n{}",
            run.stderr
        );
    }
}

on_both_runtimes!(errors_name_the_file_line_and_key);
fn errors_name_the_file_line_and_key(rt: Runtime) {
    // A value the reading refuses.
    assert_refused(
        rt,
        "[presence-server]\nexpires=soon\n",
        &["line 2", "'expires'", "\"soon\"", "[presence-server]"],
    );
    assert_refused(
        rt,
        "[presence-server]\n\nmetrics-address=localhost:9150\n",
        &["line 3", "'metrics-address'", "[presence-server]"],
    );
    // A connection string that is no URL sqlx accepts.
    assert_refused(
        rt,
        "[presence-server]\nlong-term-enabled=true\n[module::Authentication]\n\
         db-implementation=soci\nsoci-backend=postgresql\n\
         soci-connection-string=postgres://u@127.0.0.1:notaport/db\n",
        &[
            "line 6",
            "'soci-connection-string'",
            "[module::Authentication]",
            "invalid connection URL",
        ],
    );
    // A query parameter that does not exist.
    assert_refused(
        rt,
        "[presence-server]\nlong-term-enabled=false\nrls-database-connection=sqlite::memory:\n\
         rls-database-request=select :owner\n",
        &["line 4", "'rls-database-request'", ":owner"],
    );
    // A password file that cannot be read.
    assert_refused(
        rt,
        "[presence-server]\nlong-term-enabled=true\n[module::Authentication]\n\
         db-implementation=file\nfile-path=/nonexistent/passwd\n",
        &["line 5", "'file-path'", "/nonexistent/passwd"],
    );
    // An unsupported backend.
    assert_refused(
        rt,
        "[presence-server]\nlong-term-enabled=true\n[module::Authentication]\n\
         db-implementation=fixed\n",
        &["line 4", "'db-implementation'", "not supported"],
    );
}

on_both_runtimes!(a_missing_file_is_an_error);
fn a_missing_file_is_an_error(rt: Runtime) {
    let run = run_to_exit(
        rt,
        &["--check-config", "--config", "/nonexistent/presence.conf"],
        None,
        EXIT_TIMEOUT,
    );
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(
        run.stderr.contains("/nonexistent/presence.conf"),
        "{}",
        run.stderr
    );
}
