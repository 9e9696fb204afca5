//! End-to-end with the embedded account database: the real daemon on a SQLite file filled
//! beforehand. A watched account without publication appears open (long-term presence), and a
//! list of 1000 phone numbers (300 of them known, plus SQL-injection-shaped entries) is resolved
//! in one SUBSCRIBE; the database is left intact.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use presence_daemon::db::Pool;
use presence_daemon::db::accounts::{AccountStore, ensure_schema};
use presence_daemon::db::connection::{resolve, sqlite_url};
use presence_daemon::db::sql::NamedSql;
use presence_proto::sip::Message;
use presence_tests::daemon::{Daemon, SipClient, unique};
use presence_tests::sim::decode_list;

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

fn to_message(m: &presence_tests::daemon::SipMessage) -> Message {
    let mut raw = m.head.clone().into_bytes();
    raw.extend_from_slice(b"\r\n\r\n");
    raw.extend_from_slice(&m.body);
    Message::parse(Bytes::from(raw), 256).expect("a message from the server parses")
}

fn subscribe(c: &mut SipClient, uri: &str, body: Option<&str>) {
    let me = format!("sip:watcher@{DOMAIN}");
    let list_headers = match body {
        Some(_) => {
            "Supported: eventlist\r\nContent-Type: application/resource-lists+xml\r\nContent-Disposition: recipient-list\r\nRequire: recipient-list-subscribe\r\nAccept: multipart/related, application/pidf+xml, application/rlmi+xml\r\n"
        }
        None => "",
    };
    let body = body.unwrap_or("");
    let msg = format!(
        "SUBSCRIBE {uri} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b};rport\r\nFrom: <{me}>;tag={t}\r\nTo: <{uri}>\r\nCall-ID: {cid}\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\n{list_headers}Contact: <sip:watcher@{l};transport=tcp>\r\nUser-Agent: e2e-db/1.0\r\nContent-Length: {len}\r\n\r\n{body}",
        l = c.local,
        b = unique("b"),
        t = unique("t"),
        cid = unique("sub-"),
        len = body.len()
    );
    c.send(&msg);
}

#[test]
fn long_term_presence_and_a_1000_number_list() {
    let accounts = Accounts::new();
    accounts.fill(KNOWN);
    let rows_before = accounts.count();
    assert_eq!(rows_before, KNOWN as u64);
    let daemon = Daemon::start(&format!(
        "accounts-database={}\nlist-notify-interval=300\nlist-overflow-delay=50",
        accounts.path.display()
    ));
    assert!(
        daemon.log().contains("account database"),
        "{}",
        daemon.log()
    );

    // Long-term presence: u1 has an account and publishes nothing.
    let mut watcher = daemon.connect();
    subscribe(&mut watcher, &format!("sip:u1@{DOMAIN}"), None);
    let (ok, notify) = watcher.expect_response_and_notify();
    assert_eq!(ok.status(), Some(200), "{ok}");
    let doc = notify.body_str();
    assert!(
        doc.contains("<basic>open</basic>") || doc.contains(">open<"),
        "{doc}"
    );
    assert!(doc.contains(&format!("sip:u1@{DOMAIN}")), "{doc}");
    // Someone without an account gets no open tuple.
    subscribe(&mut watcher, &format!("sip:nobody@{DOMAIN}"), None);
    let (_, notify) = watcher.expect_response_and_notify();
    assert!(!notify.body_str().contains("open"), "{}", notify.body_str());

    // A list of 1000: 300 known phone numbers, unknown ones and injection-shaped user parts.
    let injections = [
        "x')%20or%201=1%20--",
        "'%3B%20drop%20table%20accounts%3B%20--",
        "'%20or%20'1'='1",
        "%5C'%20or%201=1%20%23",
        "u1'%20--",
    ];
    let mut entries: Vec<String> = (0..KNOWN)
        .map(|i| format!("sip:{}@{DOMAIN};user=phone", phone(i)))
        .collect();
    entries.extend(injections.iter().map(|u| format!("sip:{u}@{DOMAIN}")));
    let unknown = 1000 - entries.len();
    entries.extend((0..unknown).map(|i| format!("sip:+3362{i:07}@{DOMAIN};user=phone")));
    assert_eq!(entries.len(), 1000);
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>",
    );
    for e in &entries {
        xml.push_str(&format!("<entry uri=\"{e}\"/>"));
    }
    xml.push_str("</list></resource-lists>");
    let mut lister = daemon.connect();
    let start = Instant::now();
    subscribe(&mut lister, &format!("sip:friends@{DOMAIN}"), Some(&xml));
    let r = lister.expect_response();
    assert_eq!(r.status(), Some(200), "{r}");

    let known: BTreeSet<String> = entries[..KNOWN].iter().cloned().collect();
    let mut seen = BTreeSet::new();
    let mut first = true;
    while !known.is_subset(&seen) {
        let left = Duration::from_secs(20).saturating_sub(start.elapsed());
        let n = lister
            .recv(left)
            .unwrap_or_else(|e| panic!("waiting for list NOTIFYs ({} so far): {e:?}", seen.len()));
        assert_eq!(n.method(), Some("NOTIFY"), "{n}");
        lister.send(&n.ok_response());
        let l = decode_list(&to_message(&n));
        if first {
            assert!(l.rlmi.full_state);
            assert_eq!(l.rlmi.resources.len(), 1000);
            first = false;
        }
        for uri in l.with_instances() {
            assert!(known.contains(uri), "{uri} has an instance");
            let pidf = l.pidf_of(uri).expect("a PIDF part per instance");
            let i: usize = uri[9..16].parse().expect("the number");
            assert!(
                pidf.contains(&format!("sip:u{i}@{DOMAIN}")),
                "the alias shows its account: {pidf}"
            );
            seen.insert(uri.to_owned());
        }
    }
    println!(
        "1000-entry list ({KNOWN} known numbers) resolved and notified in {:?}",
        start.elapsed()
    );
    assert_eq!(accounts.count(), rows_before, "the database is intact");
    assert!(!daemon.log().contains("ERROR"), "{}", daemon.log());
}
