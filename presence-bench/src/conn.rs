//! TCP connections to the server: one reader task (framing with presence-proto's `Framer`,
//! parsing, answering NOTIFYs, one event batch per read) and one writer task (one write per
//! wake-up of everything queued since the last one) per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use presence_proto::sip::{Framer, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use crate::inbound::{Event, decode};
use crate::names::Names;
use crate::sip::Hop;

/// Largest message accepted from the server (a full-state list NOTIFY can be large).
const MAX_MESSAGE: usize = 64 << 20;
/// Most header lines in one message.
const MAX_HEADERS: usize = 128;

/// The events of one read on one connection.
#[derive(Debug)]
pub struct Batch {
    pub conn: u32,
    /// When the bytes were read (latencies end here, not when the engine gets to them).
    pub at: Instant,
    pub events: Vec<Event>,
}

/// The output side of a connection, shared by the engine, the reader (answers to NOTIFYs) and
/// the writer.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Mutex<Vec<u8>>,
    wake: Notify,
    closing: AtomicBool,
}

impl Outbox {
    /// The pending bytes, to append to. Call [`Outbox::kick`] after.
    pub fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Wakes the writer.
    pub fn kick(&self) {
        self.wake.notify_one();
    }
    /// Asks the writer to flush and shut the connection down.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.kick();
    }
}

/// The engine's handle on one connection.
#[derive(Debug)]
pub struct Conn {
    pub out: Arc<Outbox>,
    pub hop: Hop,
    pub open: bool,
    /// Bytes were appended since the last kick.
    pub dirty: bool,
}

/// Connects connection number `idx` and starts its tasks.
pub async fn connect(
    server: SocketAddr,
    idx: u32,
    record_route: bool,
    names: Arc<Names>,
    events: UnboundedSender<Batch>,
    timeout: Duration,
) -> std::io::Result<Conn> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(server))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let (rd, wr) = stream.into_split();
    let out = Arc::new(Outbox::default());
    tokio::spawn(reader(rd, idx, Arc::clone(&out), names, events));
    tokio::spawn(writer(wr, Arc::clone(&out)));
    Ok(Conn {
        out,
        hop: Hop {
            local: local.to_string().into_bytes(),
            record_route,
        },
        open: true,
        dirty: false,
    })
}

async fn reader(
    mut rd: OwnedReadHalf,
    conn: u32,
    out: Arc<Outbox>,
    names: Arc<Names>,
    events: UnboundedSender<Batch>,
) {
    let mut framer = Framer::new(MAX_MESSAGE);
    let mut buf = vec![0u8; 64 * 1024];
    let mut replies: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let at = Instant::now();
        let mut batch = Vec::new();
        let mut fatal = n == 0;
        if let Some(data) = buf.get(..n) {
            framer.push(data);
        }
        loop {
            match framer.next_message() {
                Ok(Some(raw)) => match Message::parse(raw, MAX_HEADERS) {
                    Ok(m) => batch.push(decode(&names, &m, &mut replies)),
                    Err(_) => batch.push(Event::Unexpected("message that does not parse")),
                },
                Ok(None) => break,
                Err(_) => {
                    batch.push(Event::Unexpected("stream that cannot be framed"));
                    fatal = true;
                    break;
                }
            }
        }
        if !replies.is_empty() {
            out.lock().extend_from_slice(&replies);
            out.kick();
            replies.clear();
        }
        if fatal {
            batch.push(Event::Closed);
        }
        if !batch.is_empty()
            && events
                .send(Batch {
                    conn,
                    at,
                    events: batch,
                })
                .is_err()
        {
            return;
        }
        if fatal {
            out.close();
            return;
        }
    }
}

async fn writer(mut wr: OwnedWriteHalf, out: Arc<Outbox>) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        out.wake.notified().await;
        std::mem::swap(&mut *out.lock(), &mut buf);
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
        }
        if out.closing.load(Ordering::Acquire) && out.lock().is_empty() {
            let _ = wr.shutdown().await;
            return;
        }
    }
}
