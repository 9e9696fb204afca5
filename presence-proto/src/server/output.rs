//! The queue of actions for the runtime: connection management in order, and per-connection
//! output buffers that coalesce every message written to one connection during a drain.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::{Action, ConnId};

#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Connect/Close (and Sends flushed ahead of a Close), in order.
    ordered: VecDeque<Action>,
    /// Bytes written per connection since the last drain.
    buffers: HashMap<ConnId, Vec<u8>>,
    /// Connections with a non-empty buffer, in first-write order.
    dirty: Vec<ConnId>,
}

impl Output {
    /// The buffer to append one message to for `conn`.
    pub(crate) fn buffer(&mut self, conn: ConnId) -> &mut Vec<u8> {
        let buf = self.buffers.entry(conn).or_default();
        if buf.is_empty() {
            self.dirty.push(conn);
        }
        buf
    }

    pub(crate) fn connect(&mut self, action: Action) {
        self.ordered.push_back(action);
    }

    /// Queues a close of `conn` after whatever was already written to it.
    pub(crate) fn close(&mut self, conn: ConnId) {
        if let Some(buf) = self.buffers.remove(&conn)
            && !buf.is_empty()
        {
            self.dirty.retain(|c| *c != conn);
            self.ordered.push_back(Action::Send {
                conn,
                data: Bytes::from(buf),
            });
        }
        self.ordered.push_back(Action::Close { conn });
    }

    /// Drops what was written to a connection that is gone.
    pub(crate) fn discard(&mut self, conn: ConnId) {
        if self.buffers.remove(&conn).is_some() {
            self.dirty.retain(|c| *c != conn);
        }
    }

    pub(crate) fn poll(&mut self) -> Option<Action> {
        if let Some(action) = self.ordered.pop_front() {
            return Some(action);
        }
        while let Some(conn) = self.dirty.pop() {
            if let Some(buf) = self.buffers.get_mut(&conn)
                && !buf.is_empty()
            {
                let data = Bytes::from(std::mem::take(buf));
                return Some(Action::Send { conn, data });
            }
        }
        None
    }
}
