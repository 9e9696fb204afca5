//! The presence server on smol: binds the configured TCP transports and drives the sans-IO core.
//!
//! The same tasks as `runtime-tokio`, on smol's pieces (async-io reactor and timers, async-net
//! sockets, async-channel queues, async-signal for SIGTERM/SIGINT):
//! - one accept task per listener, which sets TCP_NODELAY and hands the socket to the core task;
//! - one task per connection that owns the writing side (writes what the core sends, coalescing
//!   queued chunks into one write) and a reader task that forwards bytes and end of stream;
//! - the core task ([`serve`]), the only owner of the [`presence_proto::Server`] (through
//!   [`Driver`]): it handles one input, then up to [`MAX_INPUT_BATCH`] more that are already
//!   queued (fewer once the core holds
//!   [`DRAIN_AT`](presence_daemon::driver::DRAIN_AT) bytes of output), then fires due timers and
//!   drains the core's actions, so each connection gets one write per batch;
//! - one task per database query the core asks for (`Action::Query`): it runs
//!   [`Databases::execute`] (sqlx runs on async-io when no tokio runtime is current) and hands the
//!   outcome back to the core task as an input;
//! - with `metrics-address`, the metrics task: it serves one HTTP connection at a time
//!   ([`presence_daemon::http`]) and gets the text of a scrape from the core task
//!   (`Input::Metrics`);
//! - in cluster mode (`redis-server-uri`), one task per cluster operation (`Action::Cluster`, run
//!   by [`cluster::Store::execute`]) and one that forwards the store's events
//!   ([`cluster::Store::run_events`]); `redis` runs on smol (it spawns its connection drivers on
//!   smol's global executor).
//!
//! Threads: one, like the tokio daemon's `current_thread` runtime. [`serve`] runs a
//! [`LocalExecutor`] on the thread that polls it (`smol::block_on` on the main thread) and spawns
//! every task there, and a connection's reader runs inside its writer's task: no message crosses
//! threads (with the tasks on smol's global executor thread, each read and each write was a
//! cross-thread wake-up, and the daemon did 3–4× fewer NOTIFYs per CPU-second). Dropping a smol
//! [`Task`] cancels it, which stands for tokio's `abort`.
//!
//! The runtime never looks inside the bytes, nor inside the queries.

use std::future::Future;
use std::pin::pin;
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
use smol::channel::{self, Receiver, Sender};
use smol::future::{self, FutureExt as _};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt as _;
use smol::{LocalExecutor, Task, Timer};
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
        Some(l) => Some(TcpListener::try_from(l).map_err(|e| format!("cannot listen: {e}"))?),
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
            Some(ClusterStore::open(&settings, node, SmolSleep)?)
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

/// Binds a listener per address (logging `listening on ADDR` for each), as smol listeners.
pub fn bind(listen: &[ListenAddr]) -> Result<Vec<TcpListener>, String> {
    bind_listeners(listen)?
        .into_iter()
        .map(|l| TcpListener::try_from(l).map_err(|e| format!("cannot listen: {e}")))
        .collect()
}

/// Resolves on the first SIGTERM or SIGINT (logging which).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use async_signal::{Signal, Signals};
    let mut signals = Signals::new([Signal::Term, Signal::Int])?;
    Ok(async move {
        let name = loop {
            match signals.next().await {
                Some(Ok(Signal::Term)) => break "SIGTERM",
                Some(Ok(Signal::Int)) => break "SIGINT",
                // Only the two registered signals are delivered; errors are transient reads.
                Some(_) => continue,
                None => future::pending().await,
            }
        };
        info!("{name} received: shutting down");
    })
}

/// What reaches the core task.
type Input = presence_daemon::driver::Input<TcpStream>;

/// A connection's writer, as the driver sees it.
struct Writer {
    out: Sender<Bytes>,
    backlog: Arc<Backlog>,
    abort: Sender<()>,
}

impl Outlet for Writer {
    fn send(&self, data: Bytes) -> usize {
        let len = data.len();
        // Counted before it is queued: the writer may write it (and subtract) at once.
        let pending = self.backlog.queued(len);
        // A failed send means the connection task ended; it reports the closure itself.
        if self.out.try_send(data).is_err() {
            self.backlog.written(len);
        }
        pending
    }
    fn pending(&self) -> usize {
        self.backlog.get()
    }
    fn abort(self) {
        let _ = self.abort.try_send(());
    }
}

/// The driver's half of a new connection's writer, and the connection task's half.
fn writer() -> (Writer, WriterEnd) {
    let (out, out_rx) = channel::unbounded();
    let (abort, abort_rx) = channel::bounded(1);
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
    out: Receiver<Bytes>,
    backlog: Arc<Backlog>,
    /// Receives when the driver aborts the connection (closed: the writer was dropped, which
    /// means flush and close).
    abort: Receiver<()>,
}

/// What woke the core task up.
enum Wake {
    Shutdown,
    Input(Option<Input>),
    Timer,
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

/// The cluster store on smol.
pub type ClusterStore = cluster::Store<SmolSleep>;

/// smol's timer, for the cluster store's adapter.
#[derive(Debug, Clone, Copy)]
pub struct SmolSleep;

impl cluster::Sleeper for SmolSleep {
    async fn sleep(&self, d: std::time::Duration) {
        Timer::after(d).await;
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
    let ex = LocalExecutor::new();
    ex.run(serve_on(
        &ex,
        listeners,
        metrics,
        core,
        databases,
        cluster,
        max_pending_output,
        shutdown,
    ))
    .await
}

/// [`serve`], spawning every task on `ex` (the thread that polls `serve`).
#[allow(clippy::too_many_arguments)]
async fn serve_on<C: Core>(
    ex: &LocalExecutor<'_>,
    listeners: Vec<TcpListener>,
    metrics: Option<TcpListener>,
    core: C,
    databases: Arc<Databases>,
    cluster: Option<ClusterStore>,
    max_pending_output: usize,
    shutdown: impl Future<Output = ()>,
) {
    let (tx, rx) = channel::bounded::<Input>(INPUT_QUEUE);
    let mut acceptors: Vec<Task<()>> = listeners
        .into_iter()
        .map(|listener| ex.spawn(accept_loop(listener, tx.clone())))
        .collect();
    if let Some(listener) = metrics {
        acceptors.push(ex.spawn(metrics_loop(listener, tx.clone())));
    }
    if let Some(store) = &cluster {
        acceptors.push(ex.spawn(cluster_events(store.clone(), tx.clone())));
    }
    let mut tasks: Vec<Task<()>> = Vec::new();
    let mut queries: Vec<Task<()>> = Vec::new();
    let mut cluster_ops: Vec<Task<()>> = Vec::new();
    let mut driver: Driver<C, Writer> = Driver::new(core)
        .with_max_pending_output(max_pending_output)
        .with_database_metrics(databases.metrics());
    let mut shutdown = pin!(shutdown);
    loop {
        let deadline = driver.deadline();
        // Biased like tokio's `select!`: shutdown first, then inputs, then the timer.
        let wake = async {
            shutdown.as_mut().await;
            Wake::Shutdown
        }
        .or(async { Wake::Input(rx.recv().await.ok()) })
        .or(async {
            sleep_until(deadline).await;
            Wake::Timer
        })
        .await;
        match wake {
            Wake::Shutdown => break,
            // We hold a sender, so the channel never ends while we loop.
            Wake::Input(None) => break,
            Wake::Input(Some(input)) => {
                handle(ex, &mut driver, input, &tx, &mut tasks);
                for _ in 1..MAX_INPUT_BATCH {
                    if driver.should_drain() {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(input) => handle(ex, &mut driver, input, &tx, &mut tasks),
                        Err(_) => break,
                    }
                }
            }
            Wake::Timer => {}
        }
        driver.fire_due_timers();
        driver.drain_with(
            |conn, target| {
                let (writer, end) = writer();
                tasks.push(ex.spawn(connection(conn, Socket::Connect(target), end, tx.clone())));
                writer
            },
            |id, query| {
                queries.push(ex.spawn(run_query(Arc::clone(&databases), id, query, tx.clone())));
            },
            |id, op| {
                if let Some(store) = &cluster {
                    let op = run_cluster_op(store.clone(), id, op, tx.clone());
                    cluster_ops.push(ex.spawn(op));
                }
            },
        );
        // Finished tasks are forgotten (tokio's JoinSet reaps them the same way).
        tasks.retain(|t| !t.is_finished());
        queries.retain(|t| !t.is_finished());
        cluster_ops.retain(|t| !t.is_finished());
    }

    drop(acceptors);
    drop(queries);
    drop(cluster_ops);
    rx.close();
    let open = driver.connections();
    driver.close_all();
    drop(tx);
    let flushed = async {
        while let Some(task) = tasks.last_mut() {
            task.await;
            tasks.pop();
        }
        true
    }
    .or(async {
        Timer::after(SHUTDOWN_GRACE).await;
        false
    })
    .await;
    let unflushed = if flushed {
        0
    } else {
        tasks.iter().filter(|t| !t.is_finished()).count()
    };
    log_stopped(open, unflushed);
}

fn handle<C: Core>(
    ex: &LocalExecutor<'_>,
    driver: &mut Driver<C, Writer>,
    input: Input,
    tx: &Sender<Input>,
    tasks: &mut Vec<Task<()>>,
) {
    driver.handle(Instant::now(), input, |conn, stream| {
        let (writer, end) = writer();
        tasks.push(ex.spawn(connection(conn, Socket::Accepted(stream), end, tx.clone())));
        writer
    });
}

/// Runs one query and reports its outcome to the core task.
async fn run_query(databases: Arc<Databases>, id: QueryId, query: Query, events: Sender<Input>) {
    let result = databases.execute(&query).await;
    let _ = events.send(Input::QueryDone(id, result)).await;
}

/// Runs one cluster operation and reports its outcome to the core task.
async fn run_cluster_op(
    store: ClusterStore,
    id: ClusterOpId,
    op: ClusterOp,
    events: Sender<Input>,
) {
    let result = store.execute(op).await;
    let _ = events.send(Input::ClusterDone(id, result)).await;
}

/// Forwards the cluster store's events to the core task.
async fn cluster_events(store: ClusterStore, events: Sender<Input>) {
    store
        .run_events(|event| {
            let events = events.clone();
            async move { events.send(Input::Cluster(event)).await.is_ok() }
        })
        .await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => {
            Timer::at(d).await;
        }
        None => future::pending().await,
    }
}

async fn accept_loop(listener: TcpListener, events: Sender<Input>) {
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
                Timer::after(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// The metrics endpoint: one connection at a time, each within [`http::EXCHANGE_TIMEOUT`].
async fn metrics_loop(listener: TcpListener, events: Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, remote)) => {
                let done = async {
                    metrics_exchange(&mut stream, &events).await;
                    true
                }
                .or(async {
                    Timer::after(http::EXCHANGE_TIMEOUT).await;
                    false
                })
                .await;
                if !done {
                    debug!("metrics: {remote} took too long");
                }
            }
            Err(e) => {
                warn!("metrics: accept failed: {e}");
                Timer::after(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Reads one request, gets the metrics from the core task when it is a scrape, answers, closes.
async fn metrics_exchange(stream: &mut TcpStream, events: &Sender<Input>) {
    let read = async {
        let mut reader = RequestReader::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Some(None),
                Ok(n) => {
                    if let Some(request) = reader.push(&buf[..n]) {
                        return Some(Some(request));
                    }
                }
            }
        }
    }
    .or(async {
        Timer::after(http::READ_TIMEOUT).await;
        None
    });
    let response = match read.await {
        None => http::timeout_response(),
        Some(None) => return,
        Some(Some(http::Request::Respond(response))) => response,
        Some(Some(http::Request::Scrape)) => {
            let (scrape, reply) = metrics::scrape();
            let _ = events.send(Input::Metrics(scrape)).await;
            match reply.recv().await {
                Some(text) => http::metrics_response(&text),
                None => http::unavailable_response(),
            }
        }
    };
    if stream.write_all(&response).await.is_ok() && stream.close().await.is_ok() {
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
        drain
            .or(async {
                Timer::after(http::LINGER).await;
            })
            .await;
    }
}

enum Socket {
    Accepted(TcpStream),
    Connect(Target),
}

/// One connection: connects if needed, starts the reader, then writes what the core sends until
/// the core drops the writer (then shuts the socket down), a write fails (then reports it) or the
/// driver aborts it (then closes at once, dropping the queue).
async fn connection(conn: ConnId, socket: Socket, end: WriterEnd, events: Sender<Input>) {
    let WriterEnd {
        out,
        backlog,
        abort,
    } = end;
    let stream = match socket {
        Socket::Accepted(stream) => stream,
        Socket::Connect(target) => {
            let addr = (target.host.as_str(), target.port);
            let connected = async { Some(TcpStream::connect(addr).await) }
                .or(async {
                    Timer::after(CONNECT_TIMEOUT).await;
                    None
                })
                .await;
            match connected {
                Some(Ok(stream)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(?conn, "TCP_NODELAY: {e}");
                    }
                    debug!(?conn, "connected to {}:{}", target.host, target.port);
                    stream
                }
                Some(Err(e)) => {
                    warn!("cannot connect to {}:{}: {e}", target.host, target.port);
                    let _ = events.send(Input::Closed(conn)).await;
                    return;
                }
                None => {
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
    // async-net streams are shared handles: the reader gets a clone. It runs inside this task
    // (no cross-task wake-up per read) until the writing side ends.
    let reader = {
        let (rd, events) = (stream.clone(), events.clone());
        async move {
            read_loop(conn, rd, events).await;
            future::pending::<Option<std::io::Result<()>>>().await
        }
    };
    let mut wr = stream;
    let aborted = async {
        if abort.recv().await.is_err() {
            // Dropped without an abort: flush and close, which `write_loop` does.
            future::pending::<()>().await;
        }
        None
    };
    match async { Some(write_loop(&mut wr, &out, &backlog).await) }
        .or(aborted)
        .or(reader)
        .await
    {
        Some(Ok(())) => {
            let _ = wr.close().await;
        }
        Some(Err(e)) => {
            debug!(?conn, "write failed: {e}");
            let _ = events.send(Input::Closed(conn)).await;
        }
        None => {
            debug!(?conn, "aborted with {} bytes unwritten", backlog.get());
            let _ = wr.shutdown(std::net::Shutdown::Both);
        }
    }
}

async fn write_loop(
    wr: &mut TcpStream,
    out: &Receiver<Bytes>,
    backlog: &Backlog,
) -> std::io::Result<()> {
    while let Ok(first) = out.recv().await {
        let data = coalesce(first, || out.try_recv().ok());
        let written = async { Some(wr.write_all(&data).await) }
            .or(async {
                Timer::after(WRITE_TIMEOUT).await;
                None
            })
            .await;
        match written {
            Some(result) => result?,
            None => return Err(write_timed_out()),
        }
        backlog.written(data.len());
    }
    Ok(())
}

async fn read_loop(conn: ConnId, mut rd: TcpStream, events: Sender<Input>) {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_SIZE);
    loop {
        buf.resize(READ_BUFFER_SIZE, 0);
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
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
