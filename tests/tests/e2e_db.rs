//! End-to-end with the embedded account database, single subscriptions: the real daemon on a
//! SQLite file filled beforehand. A watched account without publication appears open (long-term
//! presence), a phone number resolves to its account, unknown and injection-shaped users stay
//! unknown, and the database is left intact. (The 1000-number list is in `e2e_accounts.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use presence_daemon::db::Pool;
use presence_daemon::db::accounts::{AccountStore, ensure_schema};
use presence_daemon::db::connection::{resolve, sqlite_url};
use presence_daemon::db::sql::NamedSql;
use presence_tests::daemon::{Daemon, Runtime, SipClient, unique};
use presence_tests::on_both_runtimes;

const DOMAIN: &str = "db.example.org";
const KNOWN: usize = 300;

fn phone(i: usize) -> String {
    format!("+3361{i:07}")
}

/// A SQLite file with the embedded schema, removed on drop.
struct Accounts {
    path: PathBuf,
    runtime: tokio::runtime::Runtime,
    store: AccountStore,
}

impl Accounts {
    fn new() -> Accounts {
        let path = std::env::temp_dir().join(format!("{}.db", unique("presence-e2e-accounts-")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let target = resolve("", &sqlite_url(path.to_str().unwrap(), true)).unwrap();
        let store = runtime.block_on(async {
            let pool = Pool::open(&target, 1, Duration::from_secs(5), true).unwrap();
            ensure_schema(&pool, "accounts").await.unwrap();
            AccountStore::new(pool, "accounts").unwrap()
        });
        Accounts {
            path,
            runtime,
            store,
        }
    }

    /// Accounts u0…u{n-1} with phones, in one statement.
    fn fill(&self, n: usize) {
        let mut sql = String::from("insert into accounts (username, domain, phone) values ");
        let mut values: Vec<(String, [String; 1])> = vec![("d".into(), [DOMAIN.to_owned()])];
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(:u{i}, :d, :p{i})"));
            values.push((format!("u{i}"), [format!("u{i}")]));
            values.push((format!("p{i}"), [phone(i)]));
        }
        let named = NamedSql::parse(&sql, self.store.pool().dialect());
        let (sql, binds) = named
            .render(|name| values.iter().find(|(k, _)| k == name).map(|(_, v)| &v[..]))
            .unwrap();
        self.runtime
            .block_on(self.store.pool().execute(&sql, &binds))
            .unwrap();
    }

    fn count(&self) -> u64 {
        self.runtime.block_on(self.store.count()).unwrap()
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        self.runtime.block_on(self.store.pool().close());
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

fn subscribe(c: &mut SipClient, uri: &str) {
    let msg = format!(
        "SUBSCRIBE {uri} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b};rport\r\nFrom: <sip:watcher@{DOMAIN}>;tag={t}\r\nTo: <{uri}>\r\nCall-ID: {cid}\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:watcher@{l};transport=tcp>\r\nUser-Agent: e2e-db/1.0\r\nContent-Length: 0\r\n\r\n",
        l = c.local,
        b = unique("b"),
        t = unique("t"),
        cid = unique("sub-"),
    );
    c.send(&msg);
}

on_both_runtimes!(long_term_presence_of_single_subscriptions);
fn long_term_presence_of_single_subscriptions(rt: Runtime) {
    let accounts = Accounts::new();
    accounts.fill(KNOWN);
    let rows_before = accounts.count();
    assert_eq!(rows_before, KNOWN as u64);
    let daemon = Daemon::start(
        rt,
        &format!("accounts-database={}", accounts.path.display()),
    );
    assert!(
        daemon.log().contains("account database"),
        "{}",
        daemon.log()
    );

    // Long-term presence: u1 has an account and publishes nothing.
    let mut watcher = daemon.connect();
    subscribe(&mut watcher, &format!("sip:u1@{DOMAIN}"));
    let (ok, notify) = watcher.expect_response_and_notify();
    assert_eq!(ok.status(), Some(200), "{ok}");
    let doc = notify.body_str();
    assert!(
        doc.contains("<basic>open</basic>") || doc.contains(">open<"),
        "{doc}"
    );
    assert!(doc.contains(&format!("sip:u1@{DOMAIN}")), "{doc}");
    // Someone without an account gets no open tuple.
    subscribe(&mut watcher, &format!("sip:nobody@{DOMAIN}"));
    let (_, notify) = watcher.expect_response_and_notify();
    assert!(!notify.body_str().contains("open"), "{}", notify.body_str());

    // By phone number (an alias of u7): open, with the account's URI as contact.
    subscribe(
        &mut watcher,
        &format!("sip:{}@{DOMAIN};user=phone", phone(7)),
    );
    let (ok, notify) = watcher.expect_response_and_notify();
    assert_eq!(ok.status(), Some(200), "{ok}");
    let doc = notify.body_str();
    assert!(doc.contains(&format!("sip:u7@{DOMAIN}")), "{doc}");
    // Injection-shaped user parts are only looked up.
    for user in [
        "x')%20or%201=1%20--",
        "'%3B%20drop%20table%20accounts%3B%20--",
    ] {
        subscribe(&mut watcher, &format!("sip:{user}@{DOMAIN}"));
        let (ok, notify) = watcher.expect_response_and_notify();
        assert_eq!(ok.status(), Some(200), "{ok}");
        assert!(!notify.body_str().contains("open"), "{}", notify.body_str());
    }
    assert_eq!(accounts.count(), rows_before, "the database is intact");
    assert!(!daemon.log().contains("ERROR"), "{}", daemon.log());
}
