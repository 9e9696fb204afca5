//! The cluster store's adapter against the real Redis at 127.0.0.1:6379 (`.ci/run` starts it;
//! `PRESENCE_TEST_REDIS_URL` points elsewhere): what the Lua scripts promise the core, checked
//! one operation at a time. Each test uses its own key prefix and deletes its keys.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use presence_daemon::cluster::{ClusterSettings, MASTER_CHECK_EVERY, Sleeper, Store};
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
        let rx = listen(&a);
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
        let rx = listen(&a);
        assert_eq!(rx.recv().await.expect("event"), ClusterEvent::Connected);
        // Past the first keep-alive: no event at all (a failed ping reports Disconnected).
        let quiet = tokio::time::timeout(Duration::from_millis(6500), rx.recv()).await;
        assert!(quiet.is_err(), "unexpected event: {quiet:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// Behind Redis Sentinel: a private master, its replica and a sentinel (real `redis-server`
// processes on free ports, killed on drop), and failovers.

const SERVICE: &str = "presence-test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `f` every 100 ms until it gives something, at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A master, its replica and one sentinel (quorum 1, down after 1 s) watching them as
/// [`SERVICE`]; the master and replica require `password`, the sentinel `sentinel_password`.
/// Every process is killed and the directory removed on drop (a panic included).
struct SentinelSetup {
    dir: std::path::PathBuf,
    master: u16,
    replica: u16,
    sentinel: u16,
    password: &'static str,
    sentinel_password: &'static str,
    /// By port.
    children: Vec<(u16, std::process::Child)>,
}

impl SentinelSetup {
    fn start(password: &'static str, sentinel_password: &'static str) -> SentinelSetup {
        let dir = std::env::temp_dir().join(format!(
            "presence-sentinel-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = SentinelSetup {
            dir,
            master: free_port(),
            replica: free_port(),
            sentinel: free_port(),
            password,
            sentinel_password,
            children: Vec::new(),
        };
        // No persistence; no 5 s wait before a full synchronisation (Redis 7's default).
        let data = [
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ];
        let auth = ["--requirepass", password, "--masterauth", password];
        s.spawn(s.master, &[&data[..], &auth[..]].concat());
        let of = s.master.to_string();
        s.spawn(
            s.replica,
            &[&data[..], &auth[..], &["--replicaof", "127.0.0.1", &of]].concat(),
        );
        // Synchronised before the sentinel starts: its first INFO of the master lists the
        // replica (the next one would come 10 s later).
        wait_for(Duration::from_secs(10), "replica synchronised", || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut s.conn(s.replica).ok()?)
                .ok()?;
            info.contains("master_link_status:up").then_some(())
        });
        let conf = s.dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nrequirepass {sentinel_password}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master} 1\n\
                 sentinel auth-pass {SERVICE} {password}\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 5000\n",
                port = s.sentinel,
                dir = s.dir.display(),
                master = s.master,
            ),
        )
        .expect("write sentinel.conf");
        s.spawn(s.sentinel, &["--sentinel"]);
        // The sentinel knows the replica, in good health: it may promote it.
        wait_for(
            Duration::from_secs(10),
            "replica known to the sentinel",
            || {
                let replicas: Vec<std::collections::HashMap<String, String>> =
                    redis::cmd("SENTINEL")
                        .arg("replicas")
                        .arg(SERVICE)
                        .query(&mut s.conn(s.sentinel).ok()?)
                        .ok()?;
                replicas
                    .iter()
                    .any(|r| {
                        r.get("flags").map(String::as_str) == Some("slave")
                            && r.get("master-link-status").map(String::as_str) == Some("ok")
                    })
                    .then_some(())
            },
        );
        s
    }

    /// Starts `redis-server` on `port` (`--sentinel`: with the configuration file) and waits
    /// until it accepts connections.
    fn spawn(&mut self, port: u16, args: &[&str]) {
        let mut cmd = std::process::Command::new("redis-server");
        if args.first() == Some(&"--sentinel") {
            cmd.arg(self.dir.join("sentinel.conf"));
        } else {
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(&self.dir);
        }
        let log = std::fs::File::create(self.dir.join(format!("{port}.log"))).expect("log file");
        let child = cmd
            .args(args)
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.children.push((port, child));
        wait_for(Duration::from_secs(10), "redis-server listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    /// A connection to the server on `port`, authenticated.
    fn conn(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let password = if port == self.sentinel {
            self.sentinel_password
        } else {
            self.password
        };
        let info = redis::IntoConnectionInfo::into_connection_info(redis::ConnectionAddr::Tcp(
            "127.0.0.1".into(),
            port,
        ))?
        .set_redis_settings(redis::RedisConnectionInfo::default().set_password(password));
        redis::Client::open(info)?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// SIGKILL.
    fn kill(&mut self, port: u16) {
        for (p, c) in &mut self.children {
            if *p == port {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// The master's port, as the sentinel names it.
    fn sentinel_master(&self) -> Option<u16> {
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(SERVICE)
            .query(&mut self.conn(self.sentinel).ok()?)
            .ok()?;
        Some(port)
    }

    /// The role (`master`, `slave`) of the server on `port`.
    fn role(&self, port: u16) -> Option<String> {
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut self.conn(port).ok()?).ok()?;
        redis::from_redis_value(role.into_iter().next()?).ok()
    }

    fn get(&self, port: u16, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut self.conn(port).expect("connection"))
            .expect("GET")
    }

    /// `redis+sentinel://` URI of this setup, after a sentinel that is not there.
    fn uri(&self) -> String {
        format!(
            "redis+sentinel://:{}@127.0.0.1:{},127.0.0.1:{}/{SERVICE}/0?sentinel-password={}",
            self.password,
            free_port(),
            self.sentinel,
            self.sentinel_password
        )
    }
}

impl Drop for SentinelSetup {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for (port, _) in &self.children {
                let log = std::fs::read_to_string(self.dir.join(format!("{port}.log")));
                eprintln!("--- redis-server :{port} ---\n{}", log.unwrap_or_default());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sentinel_store(setup: &SentinelSetup, prefix: &str, node: &str) -> Store<TokioSleep> {
    let settings = ClusterSettings {
        uri: setup.uri(),
        prefix: prefix.to_owned(),
        timeout: Duration::from_millis(500),
    };
    Store::open(&settings, node, TokioSleep).expect("store")
}

fn publish(aor: &str, etag: &str, replaces: Option<&str>, note: &str) -> ClusterOp {
    ClusterOp::Publish {
        aor: aor.into(),
        etag: etag.into(),
        replaces: replaces.map(str::to_owned),
        expires: Duration::from_secs(60),
        payload: bytes::Bytes::from(note.to_owned()),
        max: 10,
    }
}

fn lookup(aor: &str, etag: &str) -> ClusterOp {
    ClusterOp::Lookup {
        aor: aor.into(),
        etag: etag.into(),
    }
}

/// Runs `f` on a current-thread tokio runtime, at most `limit`.
fn run_within<F: Future>(limit: Duration, f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async {
            tokio::time::timeout(limit, f)
                .await
                .expect("test timed out")
        })
}

/// The events of `store`'s pub/sub task, on a channel.
fn listen(store: &Store<TokioSleep>) -> async_channel::Receiver<ClusterEvent> {
    let (tx, rx) = async_channel::unbounded::<ClusterEvent>();
    let listener = store.clone();
    tokio::spawn(async move {
        listener
            .run_events(move |ev| {
                let tx = tx.clone();
                async move { tx.send(ev).await.is_ok() }
            })
            .await;
    });
    rx
}

/// The next event that is not a change announcement, within `limit`.
async fn next_state(rx: &async_channel::Receiver<ClusterEvent>, limit: Duration) -> ClusterEvent {
    loop {
        match tokio::time::timeout(limit, rx.recv()).await {
            Ok(Ok(ClusterEvent::Changed { .. })) => continue,
            Ok(Ok(ev)) => return ev,
            other => panic!("no connection event within {limit:?}: {other:?}"),
        }
    }
}

/// Retries `op` (every 100 ms, at most `limit`) until it succeeds.
async fn until_ok(store: &Store<TokioSleep>, op: ClusterOp, limit: Duration) -> ClusterReply {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match store.execute(op.clone()).await {
            Ok(r) => return r,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "{op:?} still failing after {limit:?}: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A change announcement for `aor` from `origin`, within `limit` (connection events skipped).
async fn changed(rx: &async_channel::Receiver<ClusterEvent>, aor: &str, origin: &str) {
    let limit = Duration::from_secs(5);
    loop {
        match tokio::time::timeout(limit, rx.recv()).await {
            Ok(Ok(ClusterEvent::Changed { aor: a, origin: o })) if a == aor && o == origin => {
                return;
            }
            Ok(Ok(_)) => continue,
            other => panic!("no announcement of {aor} within {limit:?}: {other:?}"),
        }
    }
}

/// The master is found through the sentinels (the first one listed is not there; passwords on
/// both); it dies (SIGKILL); once the sentinel promoted the replica, operations and
/// announcements go through the new master.
#[test]
fn a_failover_behind_sentinel_is_followed() {
    let mut setup = SentinelSetup::start("s3cret", "sentinel-pw");
    let p = prefix();
    let alice = "alice@example.org";
    let pub_key = |etag: &str| format!("{p}pub:{alice}:{etag}");
    run_within(Duration::from_secs(40), async {
        let a = sentinel_store(&setup, &p, "node-a");
        let b = sentinel_store(&setup, &p, "node-b");
        let events = listen(&a);
        assert_eq!(next_state(&events, T).await, ClusterEvent::Connected);
        assert!(matches!(
            a.execute(ClusterOp::Follow { aor: alice.into() }).await,
            Ok(ClusterReply::Snapshot(_))
        ));
        assert_eq!(
            b.execute(publish(alice, "e1", None, "one")).await,
            Ok(ClusterReply::Done)
        );
        changed(&events, alice, "node-b").await;
        assert_eq!(
            setup.get(setup.master, &pub_key("e1")).as_deref(),
            Some(&b"one"[..])
        );
        // Replicated before the master dies.
        let _: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(2000)
            .query(&mut setup.conn(setup.master).expect("master"))
            .expect("WAIT");

        let started = std::time::Instant::now();
        setup.kill(setup.master);
        assert_eq!(next_state(&events, T).await, ClusterEvent::Disconnected);
        let replica = setup.replica;
        let promoted = {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                if setup.sentinel_master() == Some(replica) {
                    break started.elapsed();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no failover within 20 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        // The replacement of e1 (replicated) by e2 is done on the new master.
        assert_eq!(
            until_ok(
                &b,
                publish(alice, "e2", Some("e1"), "two"),
                Duration::from_secs(10)
            )
            .await,
            ClusterReply::Done
        );
        assert_eq!(
            setup.get(replica, &pub_key("e2")).as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(setup.get(replica, &pub_key("e1")), None);
        assert_eq!(setup.role(replica).as_deref(), Some("master"));
        // The pub/sub task moved there too (Connected: the core resynchronises).
        assert_eq!(
            next_state(&events, Duration::from_secs(15)).await,
            ClusterEvent::Connected
        );
        assert!(matches!(
            a.execute(lookup(alice, "e2")).await,
            Ok(ClusterReply::Publication(Some(_)))
        ));
        assert_eq!(
            b.execute(publish(alice, "e3", Some("e2"), "three")).await,
            Ok(ClusterReply::Done)
        );
        changed(&events, alice, "node-b").await;
        eprintln!(
            "promoted after {promoted:?}, followed after {:?}",
            started.elapsed()
        );
    });
}

/// A failover while the master lives (`SENTINEL FAILOVER`): Sentinel demotes the former
/// master only seconds after it names the new one, and meanwhile the former one still takes
/// writes; the nodes' pub/sub tasks notice the new master when they ask the sentinels, and
/// move there with the command connections.
#[test]
fn a_switch_of_master_is_followed_while_the_former_one_lives() {
    let setup = SentinelSetup::start("s3cret", "sentinel-pw");
    let p = prefix();
    let alice = "alice@example.org";
    run_within(Duration::from_secs(40), async {
        let a = sentinel_store(&setup, &p, "node-a");
        let b = sentinel_store(&setup, &p, "node-b");
        let events = listen(&a);
        let b_events = listen(&b);
        assert_eq!(next_state(&events, T).await, ClusterEvent::Connected);
        assert_eq!(next_state(&b_events, T).await, ClusterEvent::Connected);
        assert!(matches!(
            a.execute(ClusterOp::Follow { aor: alice.into() }).await,
            Ok(ClusterReply::Snapshot(_))
        ));
        assert_eq!(
            b.execute(publish(alice, "e1", None, "one")).await,
            Ok(ClusterReply::Done)
        );
        changed(&events, alice, "node-b").await;

        let started = std::time::Instant::now();
        let _: () = redis::cmd("SENTINEL")
            .arg("failover")
            .arg(SERVICE)
            .query(&mut setup.conn(setup.sentinel).expect("sentinel"))
            .expect("SENTINEL FAILOVER");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while setup.sentinel_master() != Some(setup.replica) {
            assert!(
                std::time::Instant::now() < deadline,
                "no failover within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let switched = started.elapsed();
        // Both pub/sub tasks move (Connected: the core resynchronises), within a check period
        // and a bit.
        let limit = MASTER_CHECK_EVERY + Duration::from_secs(5);
        assert_eq!(next_state(&events, limit).await, ClusterEvent::Connected);
        assert_eq!(next_state(&b_events, limit).await, ClusterEvent::Connected);
        let followed = started.elapsed();
        // Writes go to the new master, announcements come from it.
        assert_eq!(
            until_ok(
                &b,
                publish(alice, "e2", Some("e1"), "two"),
                Duration::from_secs(5)
            )
            .await,
            ClusterReply::Done
        );
        assert_eq!(
            setup
                .get(setup.replica, &format!("{p}pub:{alice}:e2"))
                .as_deref(),
            Some(&b"two"[..])
        );
        changed(&events, alice, "node-b").await;
        eprintln!("switched after {switched:?}, followed after {followed:?}");
    });
}

/// Operations that arrive while the command connection is being opened wait for it: one
/// connection, not one per operation (a storm of them on a Redis that just came back).
#[test]
fn concurrent_operations_share_one_connection_attempt() {
    let port = free_port();
    let mut server = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server");
    let uri = format!("redis://127.0.0.1:{port}");
    let admin = redis::Client::open(uri.as_str()).expect("client");
    let mut admin_conn = wait_for(Duration::from_secs(10), "redis-server up", || {
        admin.get_connection().ok()
    });
    let settings = ClusterSettings {
        uri,
        prefix: prefix(),
        timeout: Duration::from_secs(5),
    };
    let s = Store::open(&settings, "node-a", TokioSleep).expect("store");
    run(async {
        let ops = (0..50).map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.execute(ClusterOp::Fetch {
                    aor: format!("u{i}@example.org"),
                })
                .await
            })
        });
        for op in ops.collect::<Vec<_>>() {
            assert!(matches!(
                op.await.expect("task"),
                Ok(ClusterReply::Snapshot(_))
            ));
        }
    });
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut admin_conn)
        .expect("INFO");
    let received: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received");
    let _ = server.kill();
    let _ = server.wait();
    // The admin connection and the store's one.
    assert_eq!(received, 2, "{info}");
}
