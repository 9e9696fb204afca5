//! The cluster store's adapter: runs the core's [`ClusterOp`]s on Redis and reports Redis's
//! change announcements and connection state as [`ClusterEvent`]s. Runtime-neutral: the `redis`
//! crate runs on tokio when a tokio runtime is current and on smol otherwise, and the runtime
//! gives its timer ([`Sleeper`]) and spawns the futures:
//!
//! - one task per operation ([`Store::execute`], like the database queries): it runs on the
//!   shared multiplexed connection, opened on first use and again after a failure (at most one
//!   attempt per [`RETRY_PAUSE`] while Redis is unreachable, so requests fail fast then); every
//!   operation is bounded by `cluster-timeout` here too;
//! - one long-lived task ([`Store::run_events`]): the pub/sub connection, which subscribes to
//!   the channel of every followed presentity (again after each reconnection, before reporting
//!   [`ClusterEvent::Connected`]), forwards announcements, pings Redis when quiet so that a dead
//!   link is noticed, and reconnects with exponential backoff, logging the outage once.
//!
//! Behind Redis Sentinel (a `redis+sentinel://` URI, [`sentinel`]), every connection is opened
//! to the master the sentinels name (checked with `ROLE`), resolved again before each
//! (re)connection. A failover is followed thus: the dead master's connections fail, and a
//! demoted one's are closed by Sentinel or answer `READONLY`, which drops the command
//! connection too; the pub/sub task also asks the sentinels every [`MASTER_CHECK_EVERY`] and
//! moves to a new master at once (its [`ClusterEvent::Connected`] resynchronises the core).
//!
//! Key layout and scripts: `presence-proto/src/server/cluster.rs` and [`scripts`].

mod scripts;
pub mod sentinel;

use std::collections::{BTreeMap, BTreeSet};
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use presence_proto::{
    ClusterError, ClusterEvent, ClusterOp, ClusterReply, Snapshot, StoredDialog, StoredPublication,
};
use redis::aio::{MultiplexedConnection, PubSub, PubSubSink};
use redis::{AsyncConnectionConfig, Script, Value};
use tracing::{debug, error, info, warn};

/// Least pause between two connection attempts to an unreachable Redis (operations fail at
/// once in between).
pub const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Backoff of the pub/sub reconnection: from this...
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// ...doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A quiet pub/sub connection is pinged this often.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Behind Sentinel, the pub/sub task asks the sentinels this often whether the master moved.
pub const MASTER_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The cluster settings of `[presence-server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis-server-uri` (`redis://[user:password@]host[:port][/db]`, `unix://`, or
    /// `redis+sentinel://`: [`sentinel`]).
    pub uri: String,
    /// `redis-key-prefix`: every key and channel name starts with it.
    pub prefix: String,
    /// `cluster-timeout`.
    pub timeout: Duration,
}

/// The runtime's timer.
pub trait Sleeper: Clone + Send + Sync + 'static {
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

enum Either<A, B> {
    Left(A),
    Right(B),
}

/// The first of two futures to finish (`a` wins a tie).
async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(x) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(x));
        }
        if let Poll::Ready(y) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(y));
        }
        Poll::Pending
    })
    .await
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Scripts {
    publish: Script,
    unpublish: Script,
    fetch: Script,
    lookup: Script,
    watch: Script,
    dialog: Script,
}

/// Where the store is: one Redis, or the master the sentinels name.
enum Target {
    Direct(redis::Client),
    Sentinel(sentinel::Sentinel),
}

struct Inner {
    target: Target,
    /// The URI without its password, for logs.
    shown: String,
    prefix: String,
    node: String,
    timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Held while the command connection is being opened.
    connecting: futures_util::lock::Mutex<()>,
    /// No connection attempt before this instant (Redis was unreachable).
    retry_at: Mutex<Option<Instant>>,
    sink: Mutex<Option<PubSubSink>>,
    /// Channels to be subscribed to (the followed presentities').
    channels: Mutex<BTreeSet<String>>,
    scripts: Scripts,
}

/// A handle on the cluster store; cheap to clone.
#[derive(Clone)]
pub struct Store<S> {
    inner: Arc<Inner>,
    sleeper: S,
}

impl<S> std::fmt::Debug for Store<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("uri", &self.inner.shown)
            .field("node", &self.inner.node)
            .finish()
    }
}

/// `redis://user:secret@host` → `redis://user:***@host` (the sentinel form: without its
/// passwords either).
pub(crate) fn without_password(uri: &str) -> String {
    if let Ok(Some(s)) = sentinel::Sentinel::parse(uri) {
        return s.shown().to_owned();
    }
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => match uri[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &uri[..s + 3 + c], &uri[at..]),
            None => uri.to_owned(),
        },
        _ => uri.to_owned(),
    }
}

/// A client whose connections send at once (`TCP_NODELAY`): a script invocation written in
/// two pieces would otherwise wait for the delayed ACK of the first (up to 40 ms).
pub(crate) fn client(params: impl redis::IntoConnectionInfo) -> redis::RedisResult<redis::Client> {
    let info = params.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    redis::Client::open(info.set_tcp_settings(tcp))
}

fn failed(e: impl std::fmt::Display) -> ClusterError {
    ClusterError(e.to_string())
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => std::str::from_utf8(bytes_of(other)?).ok()?.parse().ok(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl<S: Sleeper> Store<S> {
    /// A store for `node` (the core's [`presence_proto::Server::cluster_node`]); connects on
    /// first use. Fails only on a malformed URI.
    pub fn open(settings: &ClusterSettings, node: &str, sleeper: S) -> Result<Store<S>, String> {
        let target = match sentinel::Sentinel::parse(&settings.uri) {
            Ok(Some(s)) => Target::Sentinel(s),
            Ok(None) => Target::Direct(
                client(settings.uri.as_str())
                    .map_err(|e| format!("redis-server-uri {:?}: {e}", settings.uri))?,
            ),
            Err(e) => {
                return Err(format!(
                    "redis-server-uri {:?}: {e}",
                    without_password(&settings.uri)
                ));
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                target,
                shown: without_password(&settings.uri),
                prefix: settings.prefix.clone(),
                node: node.to_owned(),
                timeout: settings.timeout,
                conn: Mutex::new(None),
                connecting: futures_util::lock::Mutex::new(()),
                retry_at: Mutex::new(None),
                sink: Mutex::new(None),
                // This node's own channel (dialogs taken over by others), from the start.
                channels: Mutex::new(BTreeSet::from([format!("{}node:{node}", settings.prefix)])),
                scripts: Scripts {
                    publish: Script::new(scripts::PUBLISH),
                    unpublish: Script::new(scripts::UNPUBLISH),
                    fetch: Script::new(scripts::FETCH),
                    lookup: Script::new(scripts::LOOKUP),
                    watch: Script::new(scripts::WATCH),
                    dialog: Script::new(scripts::DIALOG),
                },
            }),
            sleeper,
        })
    }

    fn key(&self, kind: &str, aor: &str) -> String {
        let p = &self.inner.prefix;
        let mut k = String::with_capacity(p.len() + kind.len() + aor.len());
        k.push_str(p);
        k.push_str(kind);
        k.push_str(aor);
        k
    }

    fn pub_prefix(&self, aor: &str) -> String {
        let mut k = self.key("pub:", aor);
        k.push(':');
        k
    }

    /// `P dlg:{call-id}:{tag}`.
    fn dialog_key(&self, call_id: &str, tag: &str) -> String {
        let mut k = self.key("dlg:", call_id);
        k.push(':');
        k.push_str(tag);
        k
    }

    fn channel(&self, aor: &str) -> String {
        self.key("chg:", aor)
    }

    /// Runs one operation, within `cluster-timeout`.
    pub async fn execute(&self, op: ClusterOp) -> Result<ClusterReply, ClusterError> {
        let timeout = self.inner.timeout;
        match race(self.run(op), self.sleeper.sleep(timeout)).await {
            Either::Left(r) => r,
            Either::Right(()) => Err(ClusterError(format!("no answer in {timeout:?}"))),
        }
    }

    /// The command connection: the open one, or a new one (unless Redis failed recently).
    async fn connection(&self) -> Result<MultiplexedConnection, ClusterError> {
        if let Some(c) = lock(&self.inner.conn).clone() {
            return Ok(c);
        }
        // One attempt at a time: the operations that arrive meanwhile wait for its outcome
        // rather than each opening a connection of its own.
        let _connecting = self.inner.connecting.lock().await;
        if let Some(c) = lock(&self.inner.conn).clone() {
            return Ok(c);
        }
        if lock(&self.inner.retry_at).is_some_and(|at| Instant::now() < at) {
            return Err(ClusterError("Redis unreachable (retrying)".into()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.timeout))
            .set_response_timeout(Some(self.inner.timeout));
        let opened = match &self.inner.target {
            Target::Direct(client) => client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(failed),
            // The connection the master was checked on (same timeouts).
            Target::Sentinel(s) => s
                .resolve(&self.sleeper, self.inner.timeout)
                .await
                .map(|m| m.conn)
                .map_err(ClusterError),
        };
        match opened {
            Ok(c) => {
                *lock(&self.inner.retry_at) = None;
                *lock(&self.inner.conn) = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                *lock(&self.inner.retry_at) = Some(Instant::now() + RETRY_PAUSE);
                Err(e)
            }
        }
    }

    /// A new pub/sub connection (and, behind Sentinel, the master's address).
    async fn open_pubsub(&self) -> Result<(PubSub, Option<sentinel::Addr>), String> {
        let timeout = self.inner.timeout;
        let (client, master) = match &self.inner.target {
            Target::Direct(client) => (client.clone(), None),
            Target::Sentinel(s) => {
                let m = s.resolve(&self.sleeper, timeout).await?;
                (m.client, Some(m.addr))
            }
        };
        match race(client.get_async_pubsub(), self.sleeper.sleep(timeout)).await {
            Either::Left(Ok(pubsub)) => Ok((pubsub, master)),
            Either::Left(Err(e)) => Err(e.to_string()),
            Either::Right(()) => Err(format!("no connection in {timeout:?}")),
        }
    }

    /// Runs a script invocation, dropping the connection when it failed.
    async fn invoke(&self, inv: &redis::ScriptInvocation<'_>) -> Result<Value, ClusterError> {
        let mut conn = self.connection().await?;
        match inv.invoke_async::<Value>(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                // READONLY / MASTERDOWN: a replica (a master demoted by a failover); the next
                // connection goes to the master the sentinels name now.
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
                    || matches!(e.code(), Some("READONLY" | "MASTERDOWN"))
                {
                    *lock(&self.inner.conn) = None;
                }
                Err(failed(e))
            }
        }
    }

    async fn run(&self, op: ClusterOp) -> Result<ClusterReply, ClusterError> {
        let node = self.inner.node.as_str();
        match op {
            ClusterOp::Follow { aor } => {
                let channel = self.channel(&aor);
                lock(&self.inner.channels).insert(channel.clone());
                let sink = lock(&self.inner.sink).clone();
                if let Some(mut sink) = sink
                    && let Err(e) = sink.subscribe(&channel).await
                {
                    // The events task subscribes it again when it reconnects.
                    debug!("cluster: cannot subscribe to {channel}: {e}");
                }
                self.fetch(&aor).await
            }
            ClusterOp::Unfollow { aor } => {
                let channel = self.channel(&aor);
                lock(&self.inner.channels).remove(&channel);
                let sink = lock(&self.inner.sink).clone();
                if let Some(mut sink) = sink {
                    sink.unsubscribe(&channel).await.map_err(failed)?;
                }
                Ok(ClusterReply::Done)
            }
            ClusterOp::Fetch { aor } => self.fetch(&aor).await,
            ClusterOp::Publish {
                aor,
                etag,
                replaces,
                expires,
                payload,
                max,
            } => {
                let prefix = self.pub_prefix(&aor);
                let new_key = format!("{prefix}{etag}");
                let old_key = match &replaces {
                    Some(old) => format!("{prefix}{old}"),
                    None => new_key.clone(),
                };
                let mut inv = self.inner.scripts.publish.prepare_invoke();
                inv.key(self.key("pubs:", &aor))
                    .key(new_key)
                    .key(old_key)
                    .arg(&etag)
                    .arg(replaces.as_deref().unwrap_or(""))
                    .arg(millis(expires))
                    .arg(payload.as_ref())
                    .arg(max)
                    .arg(self.channel(&aor))
                    .arg(node)
                    .arg(prefix);
                self.invoke(&inv).await.map(|_| ClusterReply::Done)
            }
            ClusterOp::Unpublish { aor, etag } => {
                let mut inv = self.inner.scripts.unpublish.prepare_invoke();
                inv.key(self.key("pubs:", &aor))
                    .key(format!("{}{etag}", self.pub_prefix(&aor)))
                    .arg(&etag)
                    .arg(self.channel(&aor))
                    .arg(node);
                self.invoke(&inv).await.map(|_| ClusterReply::Done)
            }
            ClusterOp::Lookup { aor, etag } => {
                let mut inv = self.inner.scripts.lookup.prepare_invoke();
                inv.key(format!("{}{etag}", self.pub_prefix(&aor)));
                let found = match self.invoke(&inv).await? {
                    Value::Array(v) if v.len() == 2 => {
                        let payload = bytes_of(&v[0]).ok_or_else(|| failed("bad LOOKUP reply"))?;
                        let ttl = int_of(&v[1]).ok_or_else(|| failed("bad LOOKUP reply"))?;
                        Some(StoredPublication {
                            etag,
                            expires: Duration::from_millis(ttl.max(0).unsigned_abs()),
                            payload: bytes::Bytes::copy_from_slice(payload),
                        })
                    }
                    _ => None,
                };
                Ok(ClusterReply::Publication(found))
            }
            ClusterOp::Watch {
                watcher,
                dialog,
                presentities,
                expires,
                announce,
            } => {
                let mut inv = self.inner.scripts.watch.prepare_invoke();
                let ttl = if expires.is_zero() {
                    0
                } else {
                    millis(expires)
                };
                inv.key(self.key("watch:", &watcher))
                    .arg(&dialog)
                    .arg(ttl)
                    .arg(self.channel(&watcher))
                    .arg(node)
                    .arg(if announce { "1" } else { "0" });
                for p in &presentities {
                    inv.arg(p);
                }
                self.invoke(&inv).await.map(|_| ClusterReply::Done)
            }
            ClusterOp::Dialog {
                call_id,
                tag,
                expires,
                record,
                previous,
            } => {
                let mut inv = self.inner.scripts.dialog.prepare_invoke();
                let previous = previous.as_deref().unwrap_or(node);
                let ttl = if expires.is_zero() {
                    0
                } else {
                    millis(expires)
                };
                inv.key(self.dialog_key(&call_id, &tag))
                    .arg(record.as_ref())
                    .arg(ttl)
                    .arg(presence_proto::cluster::dialog_owner_prefix(node))
                    .arg(presence_proto::cluster::dialog_owner_prefix(previous))
                    .arg(self.key("node:", previous))
                    .arg(presence_proto::cluster::encode_taken(&call_id, &tag, node).as_ref());
                match self.invoke(&inv).await? {
                    Value::Int(0) => Ok(ClusterReply::Taken),
                    _ => Ok(ClusterReply::Done),
                }
            }
            ClusterOp::LookupDialog { call_id, tag } => {
                let mut inv = self.inner.scripts.lookup.prepare_invoke();
                inv.key(self.dialog_key(&call_id, &tag));
                let found = match self.invoke(&inv).await? {
                    Value::Array(v) if v.len() == 2 => {
                        let bad = || failed("bad dialog LOOKUP reply");
                        let record = bytes_of(&v[0]).ok_or_else(bad)?;
                        let ttl = int_of(&v[1]).ok_or_else(bad)?;
                        Some(StoredDialog {
                            expires: Duration::from_millis(ttl.max(0).unsigned_abs()),
                            record: bytes::Bytes::copy_from_slice(record),
                        })
                    }
                    _ => None,
                };
                Ok(ClusterReply::Dialog(found))
            }
        }
    }

    async fn fetch(&self, aor: &str) -> Result<ClusterReply, ClusterError> {
        let mut inv = self.inner.scripts.fetch.prepare_invoke();
        inv.key(self.key("pubs:", aor))
            .key(self.key("watch:", aor))
            .arg(self.pub_prefix(aor));
        let bad = || failed("bad FETCH reply");
        let Value::Array(parts) = self.invoke(&inv).await? else {
            return Err(bad());
        };
        let (Some(Value::Array(pubs)), Some(watches)) = (parts.first(), parts.get(1)) else {
            return Err(bad());
        };
        let mut snap = Snapshot::default();
        for p in pubs.chunks(3) {
            let [etag, payload, ttl] = p else {
                return Err(bad());
            };
            let etag = std::str::from_utf8(bytes_of(etag).ok_or_else(bad)?).map_err(|_| bad())?;
            snap.publications.push(StoredPublication {
                etag: etag.to_owned(),
                expires: Duration::from_millis(int_of(ttl).ok_or_else(bad)?.max(0).unsigned_abs()),
                payload: bytes::Bytes::copy_from_slice(bytes_of(payload).ok_or_else(bad)?),
            });
        }
        let mut watched: BTreeMap<String, Duration> = BTreeMap::new();
        if let Value::Array(w) = watches {
            for pair in w.chunks(2) {
                let [member, left] = pair else {
                    return Err(bad());
                };
                let member = bytes_of(member).ok_or_else(bad)?;
                let presentity = member.split(|b| *b == b'\n').next().unwrap_or_default();
                let Ok(presentity) = std::str::from_utf8(presentity) else {
                    continue;
                };
                let left =
                    Duration::from_millis(int_of(left).ok_or_else(bad)?.max(0).unsigned_abs());
                let e = watched.entry(presentity.to_owned()).or_default();
                *e = (*e).max(left);
            }
        }
        snap.watches = watched.into_iter().collect();
        Ok(ClusterReply::Snapshot(snap))
    }

    /// An announcement, as the core's event: a change on `P chg:{aor}`, or a dialog taken
    /// over on this node's channel `P node:{name}`.
    fn event(&self, msg: &redis::Msg) -> Option<ClusterEvent> {
        let channel = msg.get_channel_name().strip_prefix(&self.inner.prefix)?;
        if channel.strip_prefix("node:") == Some(self.inner.node.as_str()) {
            return presence_proto::cluster::decode_taken(msg.get_payload_bytes());
        }
        let aor = channel.strip_prefix("chg:")?;
        let origin = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
        Some(ClusterEvent::Changed {
            aor: aor.to_owned(),
            origin,
        })
    }

    /// Forwards announcements until the connection is lost, or the sentinels name another
    /// master than `master` (asked every [`MASTER_CHECK_EVERY`]), or the core task is gone
    /// (None); pings Redis when it is quiet.
    async fn forward<F, Fut>(
        &self,
        sink: &PubSubSink,
        stream: &mut redis::aio::PubSubStream,
        emit: &mut F,
        master: Option<&sentinel::Addr>,
    ) -> Option<Lost>
    where
        F: FnMut(ClusterEvent) -> Fut,
        Fut: Future<Output = bool>,
    {
        let timeout = self.inner.timeout;
        let mut checked = Instant::now();
        loop {
            if let (Target::Sentinel(s), Some(master)) = (&self.inner.target, master)
                && checked.elapsed() >= MASTER_CHECK_EVERY
            {
                checked = Instant::now();
                if let Either::Left(Some(now)) = race(
                    s.current(&self.sleeper, timeout),
                    self.sleeper.sleep(timeout),
                )
                .await
                    && now != *master
                {
                    return Some(Lost::Moved(now));
                }
            }
            match race(stream.next(), self.sleeper.sleep(PING_EVERY)).await {
                Either::Left(Some(msg)) => {
                    if let Some(ev) = self.event(&msg)
                        && !emit(ev).await
                    {
                        return None;
                    }
                }
                Either::Left(None) => return Some(Lost::Failed("connection closed".to_owned())),
                Either::Right(()) => {
                    let mut s = sink.clone();
                    match race(s.ping::<redis::Value>(), self.sleeper.sleep(timeout)).await {
                        Either::Left(Ok(_)) => {}
                        Either::Left(Err(e)) => return Some(Lost::Failed(format!("ping: {e}"))),
                        Either::Right(()) => {
                            return Some(Lost::Failed("ping timed out".to_owned()));
                        }
                    }
                }
            }
        }
    }

    /// The pub/sub side, until `emit` returns false (the core task is gone): connects,
    /// subscribes every followed channel, reports [`ClusterEvent::Connected`], forwards
    /// announcements; on loss reports [`ClusterEvent::Disconnected`] (once per outage, logged as
    /// an error) and reconnects with backoff. When the sentinels name a new master, reconnects
    /// to it at once (without [`ClusterEvent::Disconnected`]).
    pub async fn run_events<F, Fut>(&self, mut emit: F)
    where
        F: FnMut(ClusterEvent) -> Fut,
        Fut: Future<Output = bool>,
    {
        let inner = &self.inner;
        let timeout = inner.timeout;
        let mut backoff = MIN_BACKOFF;
        // None: nothing reported yet; Some(up).
        let mut reported: Option<bool> = None;
        let mut down_since: Option<Instant> = None;
        loop {
            let mut moved = None;
            let failure = match self.open_pubsub().await {
                Ok((pubsub, master)) => {
                    let (sink, mut stream) = pubsub.split();
                    // The sink first, then the channels: a Follow in between subscribes itself.
                    *lock(&inner.sink) = Some(sink.clone());
                    let channels: Vec<String> = lock(&inner.channels).iter().cloned().collect();
                    let mut subscribed = Ok(());
                    for channel in &channels {
                        let mut s = sink.clone();
                        match race(s.subscribe(channel), self.sleeper.sleep(timeout)).await {
                            Either::Left(Ok(())) => {}
                            Either::Left(Err(e)) => {
                                subscribed = Err(e.to_string());
                                break;
                            }
                            Either::Right(()) => {
                                subscribed = Err("SUBSCRIBE timed out".into());
                                break;
                            }
                        }
                    }
                    match subscribed {
                        Err(e) => e,
                        Ok(()) => {
                            match down_since.take() {
                                Some(t) => info!(
                                    "cluster store {}: connected again after {:.1} s ({} channels); resynchronising",
                                    inner.shown,
                                    t.elapsed().as_secs_f64(),
                                    channels.len()
                                ),
                                None => info!("cluster store {}: connected", inner.shown),
                            }
                            backoff = MIN_BACKOFF;
                            reported = Some(true);
                            // Redis answers again: the command connection may be retried now
                            // (the resynchronisation's writes must not fail fast).
                            *lock(&inner.retry_at) = None;
                            if !emit(ClusterEvent::Connected).await {
                                return;
                            }
                            match self
                                .forward(&sink, &mut stream, &mut emit, master.as_ref())
                                .await
                            {
                                Some(Lost::Failed(lost)) => lost,
                                Some(Lost::Moved(to)) => {
                                    moved = Some(to);
                                    String::new()
                                }
                                None => return,
                            }
                        }
                    }
                }
                Err(e) => e,
            };
            *lock(&inner.sink) = None;
            // The command connection most likely went with it.
            *lock(&inner.conn) = None;
            if let Some(to) = moved {
                warn!(
                    "cluster store {}: the sentinels name a new master, {to}: moving to it",
                    inner.shown
                );
                continue;
            }
            if reported != Some(false) {
                error!(
                    "cluster store {} unreachable ({failure}): serving from this node's state; \
                     retrying",
                    inner.shown
                );
                down_since = Some(Instant::now());
                reported = Some(false);
                if !emit(ClusterEvent::Disconnected).await {
                    return;
                }
            } else {
                debug!(
                    "cluster store {}: still unreachable ({failure})",
                    inner.shown
                );
            }
            self.sleeper.sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Why [`Store::forward`] returned.
enum Lost {
    /// The connection failed (the reason).
    Failed(String),
    /// The sentinels name another master.
    Moved(sentinel::Addr),
}

/// Logs the cluster mode at startup.
pub fn log_startup(settings: &ClusterSettings, node: &str) {
    info!(
        "cluster mode: store {}, key prefix {:?}, node {node}, timeout {:?}",
        without_password(&settings.uri),
        settings.prefix,
        settings.timeout
    );
    if settings.prefix.is_empty() {
        warn!("redis-key-prefix is empty: keys are not namespaced");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            without_password("redis://u:secret@h:6379/0"),
            "redis://u:***@h:6379/0"
        );
        assert_eq!(without_password("redis://h:6379"), "redis://h:6379");
        assert_eq!(without_password("redis://u@h"), "redis://u@h");
    }
}
