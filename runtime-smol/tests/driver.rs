//! The smol driver against a fake core that speaks a line protocol ([`LineCore`]): the same tests
//! as `runtime-tokio/tests/driver.rs` (accept, read, coalesced write, close after flush, outbound
//! connect, timers, database queries, shutdown), on smol's sockets, timers and tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_daemon::Databases;
use presence_tests::line_core::LineCore;
use smol::Timer;
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(5);

/// `f`'s output, or None when it takes longer than `d`.
async fn timeout<O>(d: Duration, f: impl Future<Output = O>) -> Option<O> {
    async { Some(f.await) }
        .or(async {
            Timer::after(d).await;
            None
        })
        .await
}

struct Harness {
    addr: SocketAddr,
    events: Receiver<String>,
    stop: Option<Sender<()>>,
    /// Receives when `serve` has returned.
    server: Receiver<()>,
}

impl Harness {
    async fn start() -> Harness {
        Harness::with_databases(Databases::none()).await
    }

    async fn with_databases(databases: Databases) -> Harness {
        Harness::with(
            databases,
            presence_daemon::driver::DEFAULT_MAX_PENDING_OUTPUT,
        )
        .await
    }

    async fn with(databases: Databases, max_pending_output: usize) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ev_tx, events) = channel::unbounded();
        let (stop, stopped) = channel::bounded::<()>(1);
        // `serve` runs its tasks on the thread that polls it: give it one.
        let (done, server) = channel::bounded::<()>(1);
        std::thread::spawn(move || {
            smol::block_on(runtime_smol::serve(
                vec![listener],
                None,
                LineCore::new(move |event| {
                    let _ = ev_tx.try_send(event);
                }),
                Arc::new(databases),
                max_pending_output,
                async move {
                    let _ = stopped.recv().await;
                },
            ));
            let _ = done.try_send(());
        });
        Harness {
            addr,
            events,
            stop: Some(stop),
            server,
        }
    }
    async fn event(&mut self) -> String {
        timeout(T, self.events.recv())
            .await
            .expect("no event in time")
            .expect("core gone")
    }
}

async fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    timeout(T, r.read_line(&mut line))
        .await
        .expect("no line in time")
        .unwrap();
    line
}

async fn expect_eof(r: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    let n = timeout(T, r.read_to_end(&mut rest))
        .await
        .expect("no EOF in time")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "unexpected bytes {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn echo_close_and_peer_close() {
    smol::block_on(async {
        let mut h = Harness::start().await;
        let mut a = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
        assert_eq!(h.event().await, "opened 1");
        a.get_mut().write_all(b"one\ntw").await.unwrap();
        assert_eq!(read_line(&mut a).await, "echo:one\n");
        a.get_mut().write_all(b"o\nthree\n").await.unwrap();
        assert_eq!(read_line(&mut a).await, "echo:two\n");
        assert_eq!(read_line(&mut a).await, "echo:three\n");
        // What was sent before the Close is written before the connection is closed.
        a.get_mut().write_all(b"last\nclose\n").await.unwrap();
        assert_eq!(read_line(&mut a).await, "echo:last\n");
        expect_eof(&mut a).await;

        // A peer that closes is reported once.
        let b = TcpStream::connect(h.addr).await.unwrap();
        assert_eq!(h.event().await, "opened 2");
        drop(b);
        assert_eq!(h.event().await, "closed 2");

        // The server still serves.
        let mut c = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
        c.get_mut().write_all(b"hi\n").await.unwrap();
        assert_eq!(read_line(&mut c).await, "echo:hi\n");
        assert_eq!(h.event().await, "opened 3");
        h.stop.take().unwrap().try_send(()).unwrap();
        timeout(T, h.server.recv())
            .await
            .expect("serve did not stop")
            .expect("the server thread ended");
        expect_eof(&mut c).await;
    })
}

#[test]
fn a_peer_that_stops_reading_is_disconnected() {
    smol::block_on(async {
        let mut h = Harness::with(Databases::none(), 64 * 1024).await;
        let mut slow = TcpStream::connect(h.addr).await.unwrap();
        assert_eq!(h.event().await, "opened 1");
        // 50 MB of answers asked for, none read: more than the socket buffers hold.
        let asks = "flood 10000\n".repeat(5000);
        let _ = timeout(T, slow.write_all(asks.as_bytes())).await;
        assert_eq!(
            h.event().await,
            "closed 1",
            "the driver closed it and told the core"
        );
        // What the kernel held arrives, then the end: far less than was asked.
        let mut got = Vec::new();
        let _ = timeout(T, slow.read_to_end(&mut got))
            .await
            .expect("the connection was not closed");
        assert!(got.len() < 40_000_000, "{} bytes arrived", got.len());
        // Others are served.
        let mut other = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
        other.get_mut().write_all(b"hi\n").await.unwrap();
        assert_eq!(read_line(&mut other).await, "echo:hi\n");
    })
}

#[test]
fn outbound_connections() {
    smol::block_on(async {
        let mut h = Harness::start().await;
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut a = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
        assert_eq!(h.event().await, "opened 1");
        a.get_mut()
            .write_all(format!("connect {}\n", peer.local_addr().unwrap().port()).as_bytes())
            .await
            .unwrap();
        let (out, _) = timeout(T, peer.accept()).await.unwrap().unwrap();
        let mut out = BufReader::new(out);
        assert_eq!(
            read_line(&mut out).await,
            "hello\n",
            "the Send queued before the connect"
        );
        out.get_mut().write_all(b"from peer\n").await.unwrap();
        assert_eq!(read_line(&mut out).await, "echo:from peer\n");
        drop(out);
        assert_eq!(h.event().await, "closed 2");

        // A refused connection is reported closed.
        let closed_port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        a.get_mut()
            .write_all(format!("connect {closed_port}\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(h.event().await, "closed 3");
    })
}

#[test]
fn timers_fire() {
    smol::block_on(async {
        let h = Harness::start().await;
        let mut a = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
        let start = Instant::now();
        a.get_mut().write_all(b"timer\n").await.unwrap();
        assert_eq!(read_line(&mut a).await, "tick\n");
        assert!(start.elapsed() >= Duration::from_millis(20));
    })
}

#[test]
fn many_queued_lines_are_all_answered() {
    smol::block_on(async {
        let h = Harness::start().await;
        let a = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
        let mut input = String::new();
        for i in 0..2000 {
            input.push_str(&format!("line {i}\n"));
        }
        let (mut rd, mut wr) = (a.get_ref().clone(), a.get_ref().clone());
        let mut got = Vec::new();
        let write = async {
            wr.write_all(input.as_bytes()).await.unwrap();
        };
        let read = async {
            let mut buf = [0u8; 8192];
            while !got.ends_with(b"echo:line 1999\n") {
                let n = timeout(T, rd.read(&mut buf))
                    .await
                    .expect("stalled")
                    .unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&buf[..n]);
            }
        };
        smol::future::zip(write, read).await;
        let text = String::from_utf8(got).unwrap();
        assert_eq!(text.lines().count(), 2000);
        assert!(
            text.lines()
                .enumerate()
                .all(|(i, l)| l == format!("echo:line {i}"))
        );
        drop(h);
    })
}

#[test]
fn queries_run_and_come_back() {
    smol::block_on(async {
        // A password file as the account database (the SQL backends are tested in presence-daemon).
        let dir = std::env::temp_dir().join(format!("presence-driver-smol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        std::fs::write(
        &passwd,
        "version:1\nalice@example.org clrtxt:a ;\nbob@example.org clrtxt:b ; bob +33612345678\n",
    )
    .unwrap();
        let config = presence_daemon::parse_config(
            &format!(
                "[module::Authentication]\ndb-implementation=file\nfile-path={}\n\
             [presence-server]\nlong-term-enabled=true\n",
                passwd.display()
            ),
            "test.conf",
        )
        .unwrap()
        .config;
        let databases = Databases::connect(&config).await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let h = Harness::with_databases(databases).await;
        let mut a = BufReader::new(TcpStream::connect(h.addr).await.unwrap());
        a.get_mut()
            .write_all(b"query alice +33612345678 carol\nquery nobody\nlist\nafter\n")
            .await
            .unwrap();
        // The echo is written at once; the query results follow as they come.
        let mut lines = Vec::new();
        for _ in 0..4 {
            lines.push(read_line(&mut a).await);
        }
        lines.sort();
        assert_eq!(
            lines,
            [
                "accounts:\n",
                "accounts:alice@example.org,bob@example.org\n",
                "echo:after\n",
                "error:no list database: rls-database-connection and rls-database-request are not set\n",
            ]
        );
        drop(h);
    })
}
