//! Churn dialogs: subscribe, first NOTIFY, unsubscribe, terminated NOTIFY, as fast as the
//! window allows; finished ones are forgotten so that memory stays bounded.

use std::time::{Duration, Instant};

use super::{Engine, Kind, State, TxnKind};

impl Engine {
    /// Starts one churn dialog between two random users.
    pub fn churn_start(&mut self) {
        let n = self.users.len() as u64;
        let watcher = (self.rng.next_u64() % n) as u32;
        let other = 1 + self.rng.next_u64() % (n - 1).max(1);
        let presentity = ((u64::from(watcher) + other) % n) as u32;
        let id = self.add_dialog(watcher, Kind::Churn { presentity }, &[]);
        self.subscribe(id);
        self.churn.started += 1;
        self.churn.active += 1;
    }

    /// Moves a churn dialog on: unsubscribes once the 200 and the first NOTIFY are in, ends it
    /// once the unsubscribe's 200 and the terminated NOTIFY are in.
    pub(super) fn churn_step(&mut self, id: u64) {
        enum Step {
            Unsubscribe(Duration),
            Done(Duration),
        }
        let step = {
            let Some(d) = self.dialog_mut(id) else {
                return;
            };
            if !matches!(d.kind, Kind::Churn { .. }) {
                return;
            }
            match d.state {
                State::Active if d.first_notify.is_some() && d.unsubscribed_at.is_none() => {
                    let ready = d.first_notify.max(d.answered).unwrap_or(d.sent);
                    Step::Unsubscribe(ready.saturating_duration_since(d.sent))
                }
                State::Closing if d.unsubscribe_answered && d.got_terminated => {
                    d.state = State::Ended;
                    d.to_tag = None;
                    d.remote_target = None;
                    Step::Done(d.unsubscribed_at.map(|t| t.elapsed()).unwrap_or_default())
                }
                _ => return,
            }
        };
        match step {
            Step::Unsubscribe(setup) => {
                if self.measuring {
                    self.churn.setup.record(setup);
                }
                self.unsubscribe(id, false);
            }
            Step::Done(teardown) => {
                self.churn.active = self.churn.active.saturating_sub(1);
                if self.measuring {
                    self.churn.completed += 1;
                    self.churn.teardown.record(teardown);
                }
            }
        }
    }

    /// Gives up on churn dialogs older than `timeout` and forgets finished ones.
    pub fn churn_sweep(&mut self, now: Instant, timeout: Duration) {
        let base = self.dialog_base;
        for (i, d) in self.dialogs.iter_mut().enumerate() {
            if !matches!(d.kind, Kind::Churn { .. }) {
                continue;
            }
            let stuck = matches!(d.state, State::Pending | State::Active | State::Closing);
            if stuck && d.sent + timeout < now {
                d.state = State::Failed;
                self.churn.active = self.churn.active.saturating_sub(1);
                self.churn.timed_out += 1;
                // A late answer for it must not count twice.
                let id = base + i as u64;
                self.txns.retain(|_, t| {
                    !matches!(t.kind, TxnKind::Subscribe { dialog } | TxnKind::Unsubscribe { dialog } if dialog == id)
                });
            } else if stuck {
                break;
            }
        }
        while self.dialogs.front().is_some_and(|d| {
            matches!(d.kind, Kind::Churn { .. }) && matches!(d.state, State::Ended | State::Failed)
        }) {
            self.dialogs.pop_front();
            self.dialog_base += 1;
        }
    }
}
