//! End-to-end long-term presence against the real daemon and its embedded SQLite account
//! database: one list SUBSCRIBE of 1000 phone numbers, 300 of them known, plus SQL-injection
//! shaped entries, resolved before the 200; every known number comes back with its account's SIP
//! URI as `<contact>`, and the database is intact afterwards.

use std::collections::BTreeSet;
use std::time::Duration;

use presence_daemon::db::accounts::{AccountStore, ensure_schema};
use presence_daemon::db::connection::{Target, sqlite_url};
use presence_daemon::db::{Pool, sql::Dialect};
use presence_tests::daemon::{Daemon, Runtime, unique};
use presence_tests::on_both_runtimes;
use presence_tests::sim::decode_list;

const DOMAIN: &str = "example.org";
const KNOWN: usize = 300;

fn phone(i: usize) -> String {
    format!("+3361{i:07}")
}

fn store(path: &std::path::Path) -> AccountStore {
    let target = Target {
        url: sqlite_url(&path.to_string_lossy(), true),
        dialect: Dialect::Sqlite,
        ignored: Vec::new(),
    };
    let pool = Pool::open(&target, 2, Duration::from_secs(5), true).expect("pool");
    AccountStore::new(pool, "accounts").expect("store")
}

on_both_runtimes!(a_list_of_1000_phone_numbers_300_known_resolves_in_one_subscribe);
fn a_list_of_1000_phone_numbers_300_known_resolves_in_one_subscribe(rt: Runtime) {
    let dir = std::env::temp_dir().join(unique("e2e-accounts-"));
    std::fs::create_dir_all(&dir).unwrap();
    let db_path = dir.join("accounts.db");
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let s = store(&db_path);
        ensure_schema(s.pool(), "accounts").await.expect("schema");
        let mut sql = String::from("insert into accounts (username, domain, phone) values ");
        let mut binds = Vec::new();
        for i in 0..KNOWN {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?)");
            binds.extend([format!("user{i}"), DOMAIN.to_owned(), phone(i)]);
        }
        let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
        assert_eq!(
            s.pool().execute(&sql, &binds).await.expect("insert"),
            KNOWN as u64
        );
        s.pool().close().await;
    });

    let daemon = Daemon::start(
        rt,
        &format!(
            "accounts-database={}\nnotify-limit=2000\nlist-notify-interval=100",
            db_path.display()
        ),
    );
    let mut bob = daemon.connect();
    let mut entries: Vec<String> = (0..1000)
        .map(|i| format!("sip:{}@{DOMAIN};user=phone", phone(i)))
        .collect();
    // SQL-injection shaped entries (escaped as URIs require; the server unescapes the user part).
    let hostile = [
        "%27%29%20or%201%3D1%20--",
        "%27%3B%20drop%20table%20accounts%3B%20--",
        "x%27%20union%20select%20username%2C%20domain%2C%20phone%20from%20accounts%20--",
        "%5C%27%22%3B",
    ];
    entries.extend(
        hostile
            .iter()
            .map(|u| format!("sip:{u}@{DOMAIN};user=phone")),
    );
    let list = format!("sip:friends@{DOMAIN}");
    bob.send_list_subscribe(
        &format!("sip:bob@{DOMAIN}"),
        &list,
        &entries,
        "e2e-accounts/1.0",
    );
    let r = bob.expect_response();
    assert_eq!(r.status(), Some(200), "{r}\n{}", daemon.log());
    let n = bob.expect_request("NOTIFY");
    bob.send(&n.ok_response());
    let l = decode_list(&n.to_message());
    assert_eq!(l.rlmi.resources.len(), 1000 + hostile.len());
    let with: BTreeSet<&str> = l.with_instances().into_iter().collect();
    let expected: BTreeSet<String> = (0..KNOWN)
        .map(|i| format!("sip:{}@{DOMAIN};user=phone", phone(i)))
        .collect();
    assert_eq!(
        with,
        expected.iter().map(String::as_str).collect(),
        "exactly the 300 known numbers"
    );
    for i in [0, 1, 150, 299] {
        let uri = format!("sip:{}@{DOMAIN};user=phone", phone(i));
        let doc = l.pidf_of(&uri).unwrap();
        assert!(
            doc.contains(&format!("<contact>sip:user{i}@{DOMAIN}</contact>")),
            "{doc}"
        );
        assert!(
            doc.contains("<basic>open</basic>") && doc.contains("away"),
            "{doc}"
        );
    }
    drop(bob);
    drop(daemon);

    // The database is intact: the table and its 300 rows.
    tokio_rt.block_on(async {
        let s = store(&db_path);
        assert_eq!(s.count().await.expect("count"), KNOWN as u64);
        s.pool().close().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
