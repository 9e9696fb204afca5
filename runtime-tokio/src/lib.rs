//! The presence server on tokio: binds the configured TCP transports and drives the sans-IO core.
//!
//! Runtime choice: a `current_thread` runtime. The core is single-threaded by design and the I/O
//! tasks only move bytes, so one thread runs everything and no state crosses threads (nothing was
//! measured yet; a second runtime thread would mostly add wake-up costs, see
//! `shared/notes/performance.md`).
//!
//! Tasks:
//! - one accept task per listener, which sets TCP_NODELAY and hands the socket to the core task;
//! - one task per connection that owns the write half (writes what the core sends, coalescing
//!   queued chunks into one write) and a reader task that forwards bytes and end of stream;
//! - the core task ([`serve`]), the only owner of the [`presence_proto::Server`] (through
//!   [`Driver`]): it handles one input, then up to [`MAX_INPUT_BATCH`] more that are already
//!   queued (fewer once the core holds
//!   [`DRAIN_AT`](presence_daemon::driver::DRAIN_AT) bytes of output), then fires due timers and
//!   drains the core's actions, so each connection gets one write per batch;
//! - one task per database query the core asks for (`Action::Query`): it runs
//!   [`Databases::execute`] and hands the outcome back to the core task as an input. The core
//!   bounds the number of queries in flight and their wait, so the runtime runs what it is given;
//! - with `metrics-address`, the metrics task: it serves one HTTP connection at a time
//!   ([`presence_daemon::http`]) and gets the text of a scrape from the core task
//!   (`Input::Metrics`);
//! - in cluster mode (`redis-server-uri`), one task per cluster operation (`Action::Cluster`, run
//!   by [`cluster::Store::execute`]) and one that forwards the store's events
//!   ([`cluster::Store::run_events`]); `redis` runs on this tokio runtime.
//!
//! The runtime never looks inside the bytes, nor inside the queries.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use presence_daemon::driver::{
    ACCEPT_ERROR_PAUSE, CONNECT_TIMEOUT, INPUT_QUEUE, MAX_INPUT_BATCH, READ_BUFFER_SIZE,
    SHUTDOWN_GRACE, WRITE_TIMEOUT, bind_listeners, bind_metrics, coalesce, log_stopped, new_server,
    write_timed_out,
};
use presence_daemon::driver::{Backlog, Driver, Outlet};
use presence_daemon::http::{self, RequestReader};
use presence_daemon::systemd::notify_ready;
use presence_daemon::{Core, DaemonConfig, Databases, ListenAddr, cluster, metrics};
use presence_proto::{ClusterOp, ClusterOpId, ConnId, Query, QueryId, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Runs the daemon until SIGTERM or SIGINT. Errors are startup failures (signals, binding).
pub async fn run(config: DaemonConfig) -> Result<(), String> {
    // Install the signal handlers first, so that a signal sent as soon as we log "listening"
    // is not fatal.
    let shutdown = shutdown_signal().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    if !config.enabled {
        info!("[presence-server] enabled=false: not listening; waiting for SIGTERM or SIGINT");
        notify_ready();
        shutdown.await;
        info!("stopped");
        return Ok(());
    }
    // Configuration errors stop the startup; a database that is down is only logged.
    let databases = Arc::new(Databases::connect(&config).await?);
    let metrics = match bind_metrics(&config)? {
        Some(l) => Some(TcpListener::from_std(l).map_err(|e| format!("cannot listen: {e}"))?),
        None => None,
    };
    let listeners = bind(&config.listen)?;
    let first = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .ok_or_else(|| "no listening socket".to_owned())?;
    let server = new_server(&config, first);
    let cluster = match (config.cluster(), server.cluster_node()) {
        (Some(settings), Some(node)) => {
            cluster::log_startup(&settings, node);
            Some(ClusterStore::open(&settings, node, TokioSleep)?)
        }
        _ => None,
    };
    notify_ready();
    serve_with(
        listeners,
        metrics,
        server,
        Arc::clone(&databases),
        cluster,
        config.proto.max_pending_output,
        shutdown,
    )
    .await;
    databases.close().await;
    Ok(())
}

/// Binds a listener per address (logging `listening on ADDR` for each), as tokio listeners.
pub fn bind(listen: &[ListenAddr]) -> Result<Vec<TcpListener>, String> {
    bind_listeners(listen)?
        .into_iter()
        .map(|l| TcpListener::from_std(l).map_err(|e| format!("cannot listen: {e}")))
        .collect()
}

/// Resolves on the first SIGTERM or SIGINT (logging which).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!("{name} received: shutting down");
    })
}

/// What reaches the core task.
type Input = presence_daemon::driver::Input<TcpStream>;

/// A connection's writer, as the driver sees it.
struct Writer {
    out: mpsc::UnboundedSender<Bytes>,
    backlog: Arc<Backlog>,
    abort: oneshot::Sender<()>,
}

impl Outlet for Writer {
    fn send(&self, data: Bytes) -> usize {
        let len = data.len();
        // Counted before it is queued: the writer may write it (and subtract) at once.
        let pending = self.backlog.queued(len);
        // A failed send means the connection task ended; it reports the closure itself.
        if self.out.send(data).is_err() {
            self.backlog.written(len);
        }
        pending
    }
    fn pending(&self) -> usize {
        self.backlog.get()
    }
    fn abort(self) {
        let _ = self.abort.send(());
    }
}

/// The driver's half of a new connection's writer, and the connection task's half.
fn writer() -> (Writer, WriterEnd) {
    let (out, out_rx) = mpsc::unbounded_channel();
    let (abort, abort_rx) = oneshot::channel();
    let backlog = Arc::new(Backlog::default());
    let end = WriterEnd {
        out: out_rx,
        backlog: Arc::clone(&backlog),
        abort: abort_rx,
    };
    (
        Writer {
            out,
            backlog,
            abort,
        },
        end,
    )
}

/// What a connection task writes from.
struct WriterEnd {
    out: mpsc::UnboundedReceiver<Bytes>,
    backlog: Arc<Backlog>,
    /// Resolves with `Ok` when the driver aborts the connection (`Err`: the writer was dropped,
    /// which means flush and close).
    abort: oneshot::Receiver<()>,
}

/// Serves `listeners` with `core` until `shutdown` resolves, running the core's queries on
/// `databases` (and serving metrics on `metrics`); then stops accepting, drops the queries in
/// flight, lets writers flush for at most [`SHUTDOWN_GRACE`] and returns.
pub async fn serve<C: Core>(
    listeners: Vec<TcpListener>,
    metrics: Option<TcpListener>,
    core: C,
    databases: Arc<Databases>,
    max_pending_output: usize,
    shutdown: impl Future<Output = ()>,
) {
    let (dbs, max) = (databases, max_pending_output);
    serve_with(listeners, metrics, core, dbs, None, max, shutdown).await
}

/// The cluster store on tokio.
pub type ClusterStore = cluster::Store<TokioSleep>;

/// tokio's timer, for the cluster store's adapter.
#[derive(Debug, Clone, Copy)]
pub struct TokioSleep;

impl cluster::Sleeper for TokioSleep {
    fn sleep(&self, d: std::time::Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(d)
    }
}

/// [`serve`], in cluster mode when `cluster` is given: its operations run one task each, and
/// one task forwards its events.
pub async fn serve_with<C: Core>(
    listeners: Vec<TcpListener>,
    metrics: Option<TcpListener>,
    core: C,
    databases: Arc<Databases>,
    cluster: Option<ClusterStore>,
    max_pending_output: usize,
    shutdown: impl Future<Output = ()>,
) {
    let (tx, mut rx) = mpsc::channel::<Input>(INPUT_QUEUE);
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        acceptors.spawn(accept_loop(listener, tx.clone()));
    }
    if let Some(listener) = metrics {
        acceptors.spawn(metrics_loop(listener, tx.clone()));
    }
    if let Some(store) = &cluster {
        acceptors.spawn(cluster_events(store.clone(), tx.clone()));
    }
    let mut tasks = JoinSet::new();
    let mut queries = JoinSet::new();
    let mut cluster_ops = JoinSet::new();
    let mut driver: Driver<C, Writer> = Driver::new(core)
        .with_max_pending_output(max_pending_output)
        .with_database_metrics(databases.metrics());
    tokio::pin!(shutdown);
    loop {
        let deadline = driver.deadline();
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            input = rx.recv() => {
                // We hold a sender, so the channel never ends while we loop.
                let Some(input) = input else { break };
                handle(&mut driver, input, &tx, &mut tasks);
                for _ in 1..MAX_INPUT_BATCH {
                    if driver.should_drain() {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(input) => handle(&mut driver, input, &tx, &mut tasks),
                        Err(_) => break,
                    }
                }
            }
            () = sleep_until(deadline) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            Some(_) = queries.join_next(), if !queries.is_empty() => {}
            Some(_) = cluster_ops.join_next(), if !cluster_ops.is_empty() => {}
        }
        driver.fire_due_timers();
        driver.drain_with(
            |conn, target| {
                let (writer, end) = writer();
                tasks.spawn(connection(conn, Socket::Connect(target), end, tx.clone()));
                writer
            },
            |id, query| {
                queries.spawn(run_query(Arc::clone(&databases), id, query, tx.clone()));
            },
            |id, op| {
                if let Some(store) = &cluster {
                    cluster_ops.spawn(run_cluster_op(store.clone(), id, op, tx.clone()));
                }
            },
        );
    }

    acceptors.abort_all();
    queries.abort_all();
    cluster_ops.abort_all();
    rx.close();
    let open = driver.connections();
    driver.close_all();
    drop(tx);
    let flushed = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    log_stopped(open, if flushed.is_ok() { 0 } else { tasks.len() });
}

fn handle<C: Core>(
    driver: &mut Driver<C, Writer>,
    input: Input,
    tx: &mpsc::Sender<Input>,
    tasks: &mut JoinSet<()>,
) {
    driver.handle(Instant::now(), input, |conn, stream| {
        let (writer, end) = writer();
        tasks.spawn(connection(conn, Socket::Accepted(stream), end, tx.clone()));
        writer
    });
}

/// Runs one query and reports its outcome to the core task.
async fn run_query(
    databases: Arc<Databases>,
    id: QueryId,
    query: Query,
    events: mpsc::Sender<Input>,
) {
    let result = databases.execute(&query).await;
    let _ = events.send(Input::QueryDone(id, result)).await;
}

/// Runs one cluster operation and reports its outcome to the core task.
async fn run_cluster_op(
    store: ClusterStore,
    id: ClusterOpId,
    op: ClusterOp,
    events: mpsc::Sender<Input>,
) {
    let result = store.execute(op).await;
    let _ = events.send(Input::ClusterDone(id, result)).await;
}

/// Forwards the cluster store's events to the core task.
async fn cluster_events(store: ClusterStore, events: mpsc::Sender<Input>) {
    store
        .run_events(|event| {
            let events = events.clone();
            async move { events.send(Input::Cluster(event)).await.is_ok() }
        })
        .await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(listener: TcpListener, events: mpsc::Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    debug!("TCP_NODELAY on a connection from {remote}: {e}");
                }
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
                if events
                    .send(Input::Accepted(stream, remote, local))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// The metrics endpoint: one connection at a time, each within [`http::EXCHANGE_TIMEOUT`].
async fn metrics_loop(listener: TcpListener, events: mpsc::Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, remote)) => {
                let exchange = metrics_exchange(&mut stream, &events);
                if tokio::time::timeout(http::EXCHANGE_TIMEOUT, exchange)
                    .await
                    .is_err()
                {
                    debug!("metrics: {remote} took too long");
                }
            }
            Err(e) => {
                warn!("metrics: accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Reads one request, gets the metrics from the core task when it is a scrape, answers, closes.
async fn metrics_exchange(stream: &mut TcpStream, events: &mpsc::Sender<Input>) {
    let read = async {
        let mut reader = RequestReader::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    if let Some(request) = reader.push(&buf[..n]) {
                        return Some(request);
                    }
                }
            }
        }
    };
    let response = match tokio::time::timeout(http::READ_TIMEOUT, read).await {
        Err(_) => http::timeout_response(),
        Ok(None) => return,
        Ok(Some(http::Request::Respond(response))) => response,
        Ok(Some(http::Request::Scrape)) => {
            let (scrape, reply) = metrics::scrape();
            let _ = events.send(Input::Metrics(scrape)).await;
            match reply.recv().await {
                Some(text) => http::metrics_response(&text),
                None => http::unavailable_response(),
            }
        }
    };
    if stream.write_all(&response).await.is_ok() && stream.shutdown().await.is_ok() {
        // Lingering close: what the client still sends is read and dropped until it closes, so
        // that closing with unread bytes (a reset) does not destroy the response.
        let drain = async {
            let mut buf = [0u8; 1024];
            let mut left = http::LINGER_BYTES;
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                left = left.saturating_sub(n);
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(http::LINGER, drain).await;
    }
}

enum Socket {
    Accepted(TcpStream),
    Connect(Target),
}

/// One connection: connects if needed, starts the reader, then writes what the core sends until
/// the core drops the writer (then shuts the socket down), a write fails (then reports it) or the
/// driver aborts it (then closes at once, dropping the queue).
async fn connection(conn: ConnId, socket: Socket, end: WriterEnd, events: mpsc::Sender<Input>) {
    let WriterEnd {
        mut out,
        backlog,
        abort,
    } = end;
    let stream = match socket {
        Socket::Accepted(stream) => stream,
        Socket::Connect(target) => {
            let addr = (target.host.as_str(), target.port);
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(?conn, "TCP_NODELAY: {e}");
                    }
                    debug!(?conn, "connected to {}:{}", target.host, target.port);
                    stream
                }
                Ok(Err(e)) => {
                    warn!("cannot connect to {}:{}: {e}", target.host, target.port);
                    let _ = events.send(Input::Closed(conn)).await;
                    return;
                }
                Err(_) => {
                    warn!(
                        "cannot connect to {}:{}: no answer in {CONNECT_TIMEOUT:?}",
                        target.host, target.port
                    );
                    let _ = events.send(Input::Closed(conn)).await;
                    return;
                }
            }
        }
    };
    let (rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(read_loop(conn, rd, events.clone()));
    let aborted = async {
        if abort.await.is_err() {
            // Dropped without an abort: flush and close, which `write_loop` does.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        written = write_loop(&mut wr, &mut out, &backlog) => match written {
            Ok(()) => {
                let _ = wr.shutdown().await;
            }
            Err(e) => {
                debug!(?conn, "write failed: {e}");
                let _ = events.send(Input::Closed(conn)).await;
            }
        },
        () = aborted => debug!(?conn, "aborted with {} bytes unwritten", backlog.get()),
    }
    reader.abort();
}

async fn write_loop(
    wr: &mut OwnedWriteHalf,
    out: &mut mpsc::UnboundedReceiver<Bytes>,
    backlog: &Backlog,
) -> std::io::Result<()> {
    while let Some(first) = out.recv().await {
        let data = coalesce(first, || out.try_recv().ok());
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&data)).await {
            Ok(result) => result?,
            Err(_) => return Err(write_timed_out()),
        }
        backlog.written(data.len());
    }
    Ok(())
}

async fn read_loop(conn: ConnId, mut rd: OwnedReadHalf, events: mpsc::Sender<Input>) {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_SIZE);
    loop {
        buf.reserve(READ_BUFFER_SIZE);
        match rd.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {
                if events
                    .send(Input::Data(conn, buf.split().freeze()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                debug!(?conn, "read failed: {e}");
                break;
            }
        }
    }
    let _ = events.send(Input::Closed(conn)).await;
}
