//! Publications and what each watcher has seen of them: sending PUBLISHes (each with a new
//! note), the NOTIFYs each one must cause, and the views' cursors over the notes (see the
//! module documentation of [`super`]).

use std::time::{Duration, Instant};

use super::{Engine, State, TxnKind};
use crate::sip::Publish;

/// What one watcher saw of one user.
#[derive(Debug)]
pub(super) struct View {
    pub(super) dialog: u64,
    pub(super) user: u32,
    /// Index into `seqs_of[user]` of the next `seq` to see.
    pub(super) cursor: u32,
    pub(super) synced: bool,
    /// List view: changes may be coalesced.
    pub(super) list: bool,
}

/// One PUBLISH with a note.
#[derive(Debug)]
pub(super) struct Pub {
    pub(super) user: u32,
    pub(super) sent: Instant,
    pub(super) measured: bool,
    /// Views that must see it (its user's watchers when sent).
    pub(super) expected: u32,
    pub(super) got: u32,
    pub(super) answered: bool,
    pub(super) failed: bool,
    /// Answered (or failed) and seen by every view.
    pub(super) complete: bool,
    /// No longer counted in the saturation window (complete, or given up).
    pub(super) released: bool,
}

impl Engine {
    /// Sends a PUBLISH with a new note for `user` (SIP-If-Match when it has a publication).
    /// Measured ones expect a NOTIFY on every view of the user. Returns the `seq`.
    pub fn publish(&mut self, user: u32, measured: bool) -> u64 {
        let seq = self.pubs.len() as u64;
        let now = Instant::now();
        let Some(u) = self.users.get_mut(user as usize) else {
            return seq;
        };
        u.busy = true;
        u.cseq += 1;
        let (conn, cseq, expected) = (u.conn, u.cseq, if measured { u.watchers } else { 0 });
        let etag = u.etag.clone();
        self.pubs.push(Pub {
            user,
            sent: now,
            measured,
            expected,
            got: 0,
            answered: false,
            failed: false,
            complete: false,
            released: false,
        });
        if let Some(s) = self.seqs_of.get_mut(user as usize) {
            s.push(seq);
        }
        if measured {
            self.m.publish_sent += 1;
            self.incomplete += 1;
            self.window_used += 1;
            self.publish_in_flight += 1;
            self.open_pubs.push_back(seq);
        }
        let txn = self.new_txn(TxnKind::Publish { seq }, false);
        let expires = self.opts.publish_expires;
        self.write(conn, |b, hop, out| {
            b.publish(
                out,
                hop,
                &Publish {
                    user,
                    cseq,
                    txn,
                    expires,
                    etag: etag.as_deref(),
                    seq: Some(seq),
                },
            );
        });
        seq
    }

    /// Publishes for a user chosen at random among those without a PUBLISH in flight; false
    /// when every user is busy.
    pub fn publish_random(&mut self) -> bool {
        let n = self.users.len() as u64;
        if n == 0 {
            return false;
        }
        let start = self.rng.next_u64() % n;
        for i in 0..n {
            let u = ((start + i) % n) as u32;
            if self.users.get(u as usize).is_some_and(|u| !u.busy) {
                self.publish(u, true);
                return true;
            }
        }
        false
    }

    /// Removes `user`'s publication (Expires: 0), if it has one.
    pub(super) fn unpublish(&mut self, user: u32) -> bool {
        let Some(u) = self.users.get_mut(user as usize) else {
            return false;
        };
        let Some(etag) = u.etag.take() else {
            return false;
        };
        u.cseq += 1;
        let (conn, cseq) = (u.conn, u.cseq);
        let txn = self.new_txn(TxnKind::Unpublish, true);
        self.write(conn, |b, hop, out| {
            b.publish(
                out,
                hop,
                &Publish {
                    user,
                    cseq,
                    txn,
                    expires: 0,
                    etag: Some(&etag),
                    seq: None,
                },
            );
        });
        true
    }

    /// Whether every user's last PUBLISH was answered.
    pub fn publications_answered(&self) -> bool {
        self.users.iter().all(|u| !u.busy)
    }

    /// Sets each user's expected NOTIFY count from the established dialogs' views.
    pub fn arm_expectations(&mut self) {
        for u in &mut self.users {
            u.watchers = 0;
        }
        for v in &self.views {
            let live = self
                .dialog(v.dialog)
                .is_some_and(|d| d.state == State::Active);
            if live && let Some(u) = self.users.get_mut(v.user as usize) {
                u.watchers += 1;
            }
        }
    }

    /// Views expected per PUBLISH, summed over users (for the report).
    pub fn total_watchers(&self) -> u64 {
        self.users.iter().map(|u| u64::from(u.watchers)).sum()
    }

    /// Gives up on measured PUBLISHes older than `timeout` for the saturation window.
    pub fn expire_window(&mut self, now: Instant, timeout: Duration) {
        while let Some(&seq) = self.open_pubs.front() {
            let Some(p) = self.pubs.get_mut(seq as usize) else {
                self.open_pubs.pop_front();
                continue;
            };
            if !p.released && p.sent + timeout > now {
                break;
            }
            if !p.released {
                p.released = true;
                self.window_used = self.window_used.saturating_sub(1);
                let (user, answered) = (p.user, p.answered);
                if answered && self.hold_publishers() {
                    self.free_publisher(user);
                }
            }
            self.open_pubs.pop_front();
        }
    }

    /// Notes expected on views but never seen, over measured PUBLISHes (call after the drain).
    pub fn lost(&self) -> u64 {
        self.pubs
            .iter()
            .filter(|p| p.measured && !p.failed)
            .map(|p| u64::from(p.expected.saturating_sub(p.got)))
            .sum()
    }

    /// Notes expected over measured PUBLISHes that were accepted.
    pub fn expected_notes(&self) -> u64 {
        self.pubs
            .iter()
            .filter(|p| p.measured && !p.failed)
            .map(|p| u64::from(p.expected))
            .sum()
    }

    /// Measured PUBLISHes without an answer.
    pub fn unanswered_publishes(&self) -> u64 {
        self.pubs
            .iter()
            .filter(|p| p.measured && !p.answered)
            .count() as u64
    }

    pub(super) fn check_complete(&mut self, seq: u64) {
        let Some(p) = self.pubs.get_mut(seq as usize) else {
            return;
        };
        if p.complete || !p.answered || p.got < p.expected {
            return;
        }
        p.complete = true;
        if p.measured {
            self.incomplete = self.incomplete.saturating_sub(1);
            if !p.released {
                p.released = true;
                self.window_used = self.window_used.saturating_sub(1);
            }
            let user = p.user;
            if self.hold_publishers() {
                self.free_publisher(user);
            }
        }
    }

    /// With several servers: `user`'s last PUBLISH is complete (or given up), it may publish
    /// again.
    fn free_publisher(&mut self, user: u32) {
        if let Some(u) = self.users.get_mut(user as usize) {
            u.busy = false;
        }
    }

    /// View `v` shows the note `seq`.
    pub(super) fn see(&mut self, v: u32, seq: u64, at: Instant) {
        let Some(view) = self.views.get(v as usize) else {
            return;
        };
        let (user, list, dialog) = (view.user, view.list, view.dialog);
        let mut cursor = view.cursor as usize;
        let Some(seqs) = self.seqs_of.get(user as usize) else {
            return;
        };
        if self.pubs.get(seq as usize).is_none_or(|p| p.user != user) {
            self.m.wrong += 1;
            return;
        }
        if let Some(&last) = cursor.checked_sub(1).and_then(|c| seqs.get(c))
            && last >= seq
        {
            if last == seq {
                self.m.duplicates += 1;
            } else {
                self.m.wrong += 1;
            }
            return;
        }
        // Every seq up to `seq` is passed: delivered if it is `seq` or the view is a list
        // (coalesced), skipped (lost) otherwise.
        let first = cursor;
        while seqs.get(cursor).is_some_and(|&s| s <= seq) {
            cursor += 1;
        }
        let caught_up = cursor == seqs.len();
        if let Some(view) = self.views.get_mut(v as usize) {
            view.cursor = cursor as u32;
            if caught_up && !view.synced {
                view.synced = true;
                self.unsynced_views = self.unsynced_views.saturating_sub(1);
                if let Some(d) = self.dialog_mut(dialog) {
                    d.unsynced = d.unsynced.saturating_sub(1);
                    if d.unsynced == 0 {
                        d.synced_at = Some(at);
                    }
                }
            }
        }
        for i in first..cursor {
            let Some(&s) = self.seqs_of.get(user as usize).and_then(|seqs| seqs.get(i)) else {
                continue;
            };
            let coalesced = s != seq;
            if coalesced && !list {
                if self.pubs.get(s as usize).is_some_and(|p| p.measured) {
                    self.m.superseded += 1;
                }
                continue;
            }
            let Some(p) = self.pubs.get_mut(s as usize) else {
                continue;
            };
            p.got += 1;
            if p.measured {
                let latency = at.saturating_duration_since(p.sent);
                if coalesced {
                    self.m.coalesced += 1;
                } else if list {
                    self.m.resource_updates += 1;
                } else {
                    self.m.delivered += 1;
                }
                if list {
                    self.m.list_latency.record(latency);
                } else {
                    self.m.latency.record(latency);
                }
                self.m.last_delivery = Some(at);
            }
            self.check_complete(s);
        }
    }
}
