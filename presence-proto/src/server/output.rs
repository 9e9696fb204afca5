//! The queue of actions for the runtime: connection management in order, and per-connection
//! output buffers that coalesce every message written to one connection during a drain.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::{Action, ConnId};

#[derive(Debug)]
pub(crate) struct Output {
    /// Connect/Close (and Sends flushed ahead of a Close), in order.
    ordered: VecDeque<Action>,
    /// Bytes written per connection since the last drain.
    buffers: HashMap<ConnId, Vec<u8>>,
    /// Connections with a non-empty buffer, in first-write order.
    dirty: Vec<ConnId>,
    /// A connection's buffer may not grow past this between two drains.
    limit: usize,
    /// The buffer handed out last and its length then (what was appended is counted when the
    /// next buffer is handed out, or on [`Output::settle`]).
    open: Option<(ConnId, usize)>,
    /// Bytes in `buffers` (as of the last settle).
    unflushed: usize,
    /// Connections whose buffer passed `limit`, not yet taken.
    over: Vec<ConnId>,
}

impl Output {
    /// Output whose per-connection buffers may hold `limit` bytes between two drains.
    pub(crate) fn new(limit: usize) -> Output {
        Output {
            ordered: VecDeque::new(),
            buffers: HashMap::new(),
            dirty: Vec::new(),
            limit,
            open: None,
            unflushed: 0,
            over: Vec::new(),
        }
    }

    /// The buffer to append one message to for `conn`.
    pub(crate) fn buffer(&mut self, conn: ConnId) -> &mut Vec<u8> {
        self.settle();
        let buf = self.buffers.entry(conn).or_default();
        if buf.is_empty() {
            self.dirty.push(conn);
        }
        self.open = Some((conn, buf.len()));
        buf
    }

    /// Counts what was appended to the buffer handed out last.
    fn settle(&mut self) {
        let Some((conn, before)) = self.open.take() else {
            return;
        };
        if let Some(buf) = self.buffers.get(&conn) {
            self.unflushed += buf.len().saturating_sub(before);
            if buf.len() > self.limit && before <= self.limit {
                self.over.push(conn);
            }
        }
    }

    /// Bytes written and not yet handed to the runtime.
    pub(crate) fn unflushed(&mut self) -> usize {
        self.settle();
        self.unflushed
    }

    /// Connections whose output passed the limit since the last call.
    pub(crate) fn take_over(&mut self) -> Vec<ConnId> {
        self.settle();
        std::mem::take(&mut self.over)
    }

    /// Removes `conn`'s buffer (uncounting it).
    fn remove(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        self.settle();
        let buf = self.buffers.remove(&conn)?;
        self.unflushed -= buf.len();
        if !buf.is_empty() {
            self.dirty.retain(|c| *c != conn);
        }
        Some(buf)
    }

    pub(crate) fn connect(&mut self, action: Action) {
        self.ordered.push_back(action);
    }

    /// Queues a close of `conn` after whatever was already written to it.
    pub(crate) fn close(&mut self, conn: ConnId) {
        if let Some(buf) = self.remove(conn)
            && !buf.is_empty()
        {
            self.ordered.push_back(Action::Send {
                conn,
                data: Bytes::from(buf),
            });
        }
        self.ordered.push_back(Action::Close { conn });
    }

    /// Drops what was written to a connection that is gone.
    pub(crate) fn discard(&mut self, conn: ConnId) {
        self.remove(conn);
    }

    /// Queues a close of `conn`, dropping what was written to it.
    pub(crate) fn abort(&mut self, conn: ConnId) {
        self.remove(conn);
        self.ordered.push_back(Action::Close { conn });
    }

    pub(crate) fn poll(&mut self) -> Option<Action> {
        self.settle();
        if let Some(action) = self.ordered.pop_front() {
            return Some(action);
        }
        while let Some(conn) = self.dirty.pop() {
            if let Some(buf) = self.buffers.get_mut(&conn)
                && !buf.is_empty()
            {
                self.unflushed -= buf.len();
                let data = Bytes::from(std::mem::take(buf));
                return Some(Action::Send { conn, data });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends(out: &mut Output) -> Vec<(u64, usize)> {
        let mut all = Vec::new();
        while let Some(a) = out.poll() {
            match a {
                Action::Send { conn, data } => all.push((conn.0, data.len())),
                Action::Close { conn } => all.push((conn.0, usize::MAX)),
                _ => {}
            }
        }
        all
    }

    #[test]
    fn counts_what_is_written_and_flags_a_buffer_past_the_limit() {
        let (a, b) = (ConnId(1), ConnId(2));
        let mut out = Output::new(10);
        out.buffer(a).extend_from_slice(b"123456");
        out.buffer(b).extend_from_slice(b"12");
        assert_eq!(out.unflushed(), 8);
        assert!(out.take_over().is_empty());
        // `a` passes 10 bytes: flagged once.
        out.buffer(a).extend_from_slice(b"123456");
        out.buffer(a).extend_from_slice(b"1");
        assert_eq!(out.take_over(), vec![a]);
        assert!(out.take_over().is_empty());
        assert_eq!(out.unflushed(), 15);
        // Aborted: its bytes are dropped and a Close queued; `b` is still sent.
        out.abort(a);
        assert_eq!(out.unflushed(), 2);
        assert_eq!(sends(&mut out), vec![(1, usize::MAX), (2, 2)]);
        assert_eq!(out.unflushed(), 0);
        // After a drain, the count starts again.
        out.buffer(b).extend_from_slice(b"12345678");
        assert!(out.take_over().is_empty());
        assert_eq!(sends(&mut out), vec![(2, 8)]);
        out.buffer(b).extend_from_slice(b"12345678");
        out.close(b);
        assert_eq!(out.unflushed(), 0);
        assert_eq!(sends(&mut out), vec![(2, 8), (2, usize::MAX)]);
    }
}
