//! Resolving a list of 1000 phone numbers (300 known) through the whole path without sockets:
//! the core parks the list SUBSCRIBE and issues batched account queries, the database adapter
//! runs them on the embedded SQLite database, the core answers 200 and the full-state NOTIFY.
//! Reports the wall time per resolution; the number of queries is printed once.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use presence_daemon::db::Databases;
use presence_daemon::parse_config;
use presence_proto::{Action, Server};

const KNOWN: usize = 300;

fn list_subscribe(n: u32) -> Vec<u8> {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list>",
    );
    for i in 0..1000 {
        xml.push_str(&format!(
            "<entry uri=\"sip:+3361{i:07}@example.org;user=phone\"/>"
        ));
    }
    xml.push_str("</list></resource-lists>");
    format!(
        "SUBSCRIBE sip:friends@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKr{n}\r\nFrom: <sip:bob@example.org>;tag=t{n}\r\nTo: <sip:friends@example.org>\r\nCall-ID: res{n}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:bob@127.0.0.1:5060;transport=tcp>\r\nEvent: presence\r\nExpires: 600\r\nSupported: eventlist\r\nContent-Type: application/resource-lists+xml\r\nContent-Length: {}\r\n\r\n{xml}",
        xml.len()
    )
    .into_bytes()
}

fn bench_resolution(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("presence-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("accounts.db");
    let _ = std::fs::remove_file(&path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let text = format!(
        "[presence-server]\naccounts-database={}\nnotify-limit=2000\n",
        path.display()
    );
    let loaded = parse_config(&text, "bench").expect("config");
    let mut config = loaded.config;
    let dbs = rt.block_on(async {
        let dbs = Databases::connect(&config).await.expect("databases");
        let store = presence_daemon::db::accounts::open_store(&config)
            .await
            .expect("store")
            .0;
        for i in 0..KNOWN {
            store
                .add(
                    &format!("user{i}"),
                    "example.org",
                    Some(&format!("+3361{i:07}")),
                )
                .await
                .expect("add");
        }
        dbs
    });
    config.proto.long_term_enabled = true;
    // Nothing is cached between iterations: every resolution queries the database.
    config.proto.account_cache_lifetime = Duration::ZERO;
    let start = Instant::now();
    let mut server = Server::new(config.proto.clone(), start, 1);
    let conn = server.connection_opened(
        start,
        "127.0.0.1:5060".parse().unwrap(),
        "127.0.0.1:5065".parse().unwrap(),
    );
    let mut n = 0;
    let mut resolve = |server: &mut Server| -> (usize, usize) {
        n += 1;
        // Time moves on, so the zero-lifetime cache never answers for the database.
        let now = start + Duration::from_secs(u64::from(n));
        server.connection_data(now, conn, &list_subscribe(n));
        let (mut queries, mut bytes) = (0, 0);
        loop {
            let mut pending = Vec::new();
            while let Some(a) = server.poll_action() {
                match a {
                    Action::Query { id, query } => pending.push((id, query)),
                    Action::Send { data, .. } => bytes += data.len(),
                    _ => {}
                }
            }
            if pending.is_empty() {
                return (queries, bytes);
            }
            queries += pending.len();
            let results = rt.block_on(async {
                let mut out = Vec::new();
                for (id, q) in pending {
                    out.push((id, dbs.execute(&q).await));
                }
                out
            });
            for (id, r) in results {
                server.query_result(now, id, r);
            }
        }
    };
    let (queries, bytes) = resolve(&mut server);
    println!(
        "one resolution of 1000 numbers: {queries} queries, {bytes} bytes sent (200 + NOTIFY)"
    );
    assert_eq!(queries, 10);
    c.bench_function(
        "resolve 1000 phone numbers (300 known) in one list SUBSCRIBE",
        |b| b.iter(|| resolve(&mut server)),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(10));
    targets = bench_resolution
}
criterion_main!(benches);
