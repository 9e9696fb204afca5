//! The cluster store's adapter against the real Redis at 127.0.0.1:6379 (`.ci/run` starts it;
//! `PRESENCE_TEST_REDIS_URL` points elsewhere): what the Lua scripts promise the core, checked
//! one operation at a time. Each test uses its own key prefix and deletes its keys.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use presence_daemon::cluster::{ClusterSettings, Sleeper, Store};
use presence_proto::cluster::{DialogRecord, encode_dialog};
use presence_proto::{ClusterEvent, ClusterOp, ClusterReply};

const T: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct TokioSleep;

impl Sleeper for TokioSleep {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
}

fn redis_url() -> String {
    std::env::var("PRESENCE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn prefix() -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!("presence-test-store:{}:{n}:", std::process::id())
}

fn store(prefix: &str, node: &str) -> Store<TokioSleep> {
    let settings = ClusterSettings {
        uri: redis_url(),
        prefix: prefix.to_owned(),
        timeout: Duration::from_secs(5),
    };
    Store::open(&settings, node, TokioSleep).expect("store")
}

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async { tokio::time::timeout(T, f).await.expect("test timed out") })
}

/// Deletes every key under `prefix`.
async fn cleanup(prefix: &str) {
    let client = redis::Client::open(redis_url()).expect("redis client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .expect("DEL");
    }
}

fn record(node: &str, cseq_ceiling: u32) -> DialogRecord {
    DialogRecord {
        node: node.into(),
        call_id: "call-1@host".into(),
        local_tag: "ours".into(),
        remote_tag: "theirs".into(),
        remote_cseq: 1,
        watcher: "bob@example.org".into(),
        presentity: "alice@example.org".into(),
        entity: "sip:alice@example.org".into(),
        request_uri: "sip:bob@127.0.0.1:5060;transport=tcp".into(),
        next_hop_host: "127.0.0.1".into(),
        next_hop_port: 5060,
        has_routes: false,
        direct: true,
        bypass: false,
        cseq_ceiling,
        list: None,
        fixed: bytes::Bytes::from_static(b"Max-Forwards: 70\r\n"),
    }
}

fn write(node: &str, previous: Option<&str>, ceiling: u32) -> ClusterOp {
    ClusterOp::Dialog {
        call_id: "call-1@host".into(),
        tag: "ours".into(),
        expires: Duration::from_secs(60),
        record: encode_dialog(&record(node, ceiling)),
        previous: previous.map(str::to_owned),
    }
}

fn remove(previous: Option<&str>) -> ClusterOp {
    ClusterOp::Dialog {
        call_id: "call-1@host".into(),
        tag: "ours".into(),
        expires: Duration::ZERO,
        record: bytes::Bytes::new(),
        previous: previous.map(str::to_owned),
    }
}

async fn stored_node(s: &Store<TokioSleep>) -> Option<String> {
    let op = ClusterOp::LookupDialog {
        call_id: "call-1@host".into(),
        tag: "ours".into(),
    };
    match s.execute(op).await.expect("lookup") {
        ClusterReply::Dialog(d) => d.map(|d| {
            presence_proto::cluster::decode_dialog(&d.record)
                .expect("readable record")
                .node
        }),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// A takeover rewrites the record and tells the former node on its channel; that node's later
/// writes (and removals) are refused, the new owner's go through.
#[test]
fn a_taken_over_dialog_is_announced_to_its_former_node_and_refused_to_it() {
    let p = prefix();
    run(async {
        let a = store(&p, "node-a");
        let b = store(&p, "node-b");
        // Node a listens on its channel.
        let (tx, rx) = async_channel::unbounded::<ClusterEvent>();
        let listener = a.clone();
        let events = tokio::spawn(async move {
            listener
                .run_events(move |ev| {
                    let tx = tx.clone();
                    async move { tx.send(ev).await.is_ok() }
                })
                .await;
        });
        assert_eq!(rx.recv().await.expect("event"), ClusterEvent::Connected);

        assert_eq!(
            a.execute(write("node-a", None, 1000)).await,
            Ok(ClusterReply::Done)
        );
        assert_eq!(
            a.execute(write("node-a", None, 1500)).await,
            Ok(ClusterReply::Done)
        );
        assert_eq!(stored_node(&a).await.as_deref(), Some("node-a"));

        // Node b takes it over: written, and node a is told.
        assert_eq!(
            b.execute(write("node-b", Some("node-a"), 2500)).await,
            Ok(ClusterReply::Done)
        );
        assert_eq!(stored_node(&b).await.as_deref(), Some("node-b"));
        assert_eq!(
            rx.recv().await.expect("event"),
            ClusterEvent::DialogTaken {
                call_id: "call-1@host".into(),
                tag: "ours".into(),
                by: "node-b".into()
            }
        );
        // Node b's next write is its own: no second announcement (checked below).
        assert_eq!(
            b.execute(write("node-b", Some("node-a"), 3000)).await,
            Ok(ClusterReply::Done)
        );

        // Node a's stale copy can neither overwrite nor remove it.
        assert_eq!(
            a.execute(write("node-a", None, 2000)).await,
            Ok(ClusterReply::Taken)
        );
        assert_eq!(a.execute(remove(None)).await, Ok(ClusterReply::Taken));
        assert_eq!(stored_node(&a).await.as_deref(), Some("node-b"));

        // Node b removes it; then anyone may write a new one.
        assert_eq!(
            b.execute(remove(Some("node-a"))).await,
            Ok(ClusterReply::Done)
        );
        assert_eq!(stored_node(&a).await, None);
        assert_eq!(
            a.execute(write("node-a", None, 1000)).await,
            Ok(ClusterReply::Done)
        );
        assert!(rx.try_recv().is_err(), "one announcement only");
        events.abort();
    });
    run(cleanup(&p));
}

/// A quiet pub/sub connection is pinged (every 5 s) and stays up: the answer to a PING on a
/// subscribed connection is not the plain `PONG` of a command connection.
#[test]
fn a_quiet_subscribed_connection_survives_its_keepalive() {
    let p = prefix();
    run(async {
        let a = store(&p, "node-a");
        let (tx, rx) = async_channel::unbounded::<ClusterEvent>();
        let listener = a.clone();
        let events = tokio::spawn(async move {
            listener
                .run_events(move |ev| {
                    let tx = tx.clone();
                    async move { tx.send(ev).await.is_ok() }
                })
                .await;
        });
        assert_eq!(rx.recv().await.expect("event"), ClusterEvent::Connected);
        // Past the first keep-alive: no event at all (a failed ping reports Disconnected).
        let quiet = tokio::time::timeout(Duration::from_millis(6500), rx.recv()).await;
        assert!(quiet.is_err(), "unexpected event: {quiet:?}");
        events.abort();
    });
}
