//! The core's timers: a heap of (deadline, what) with lazy cancellation (a fired entry is checked
//! against the current state, so re-arming never needs to find and remove the old entry), and a FIFO
//! for NOTIFY transaction timeouts, whose deadlines are monotonic because the timeout is constant.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use super::{ConnId, PubId, SubId};
use crate::cluster::ClusterOpId;
use crate::query::QueryId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    SubscriptionExpiry(SubId),
    PublicationExpiry(PubId),
    /// A list subscription's batched (or overflowing) changes are due.
    ListNotify(SubId),
    /// A database query's result is due.
    QueryDeadline(QueryId),
    /// A connection's incomplete message may have been pending too long.
    PartialMessage(ConnId),
    /// A connection may have been idle too long.
    IdleConnection(ConnId),
    /// A cluster operation's result is due.
    ClusterDeadline(ClusterOpId),
    /// A relation in a followed presentity's watch set may have expired (cluster mode).
    ClusterWatchExpiry(u64),
    /// The grace period after a reconnection to the cluster store ends.
    ClusterResyncEnd,
    /// Cluster writes that failed are due for another try.
    ClusterRetry,
    /// A PUBLISH's 200 held for its cluster write (that write's id) is due.
    ClusterAnswer(ClusterOpId),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// (deadline, subscription, NOTIFY CSeq) in send order.
    notifies: VecDeque<(Instant, SubId, u32)>,
}

impl Timers {
    pub(crate) fn arm(&mut self, at: Instant, timer: Timer) {
        self.heap.push(Reverse((at, timer)));
    }

    pub(crate) fn arm_notify(&mut self, at: Instant, sub: SubId, cseq: u32) {
        self.notifies.push_back((at, sub, cseq));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|Reverse((at, _))| *at);
        let fifo = self.notifies.front().map(|(at, _, _)| *at);
        match (heap, fifo) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Pops one heap timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((_, t))| t),
            _ => None,
        }
    }

    /// Pops one NOTIFY deadline due at `now`.
    pub(crate) fn pop_notify_due(&mut self, now: Instant) -> Option<(SubId, u32)> {
        match self.notifies.front() {
            Some((at, _, _)) if *at <= now => self.notifies.pop_front().map(|(_, s, c)| (s, c)),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.notifies.len()
    }
}
