//! Subscription dialogs: single, list and churn ones, their SUBSCRIBEs (initial and within the
//! dialog) and the NOTIFYs they receive.

use std::collections::HashMap;
use std::time::Instant;

use super::publications::View;
use super::{Engine, TxnKind};
use crate::inbound::{Content, ListContent};
use crate::sip::{Subscribe, Target};
use crate::stats::Histogram;

/// What a dialog subscribes to.
#[derive(Debug)]
pub enum Kind {
    Single {
        presentity: u32,
    },
    List {
        list: u32,
        /// user → view index.
        index: HashMap<u32, u32>,
    },
    /// A churn dialog: subscribe, first NOTIFY, unsubscribe, terminated NOTIFY.
    Churn {
        presentity: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Initial SUBSCRIBE sent.
    Pending,
    /// 2xx received.
    Active,
    /// Unsubscribe sent.
    Closing,
    /// Unsubscribed, or terminated by the server.
    Ended,
    /// Refused, or timed out.
    Failed,
}

#[derive(Debug)]
pub struct Dialog {
    pub conn: u32,
    pub watcher: u32,
    pub kind: Kind,
    pub state: State,
    pub(super) cseq: u32,
    pub(super) to_tag: Option<Box<[u8]>>,
    pub(super) remote_target: Option<Box<[u8]>>,
    pub sent: Instant,
    pub answered: Option<Instant>,
    pub first_notify: Option<Instant>,
    pub notifies: u32,
    /// First view index and count.
    pub(super) views: (u32, u32),
    /// Views not yet up to date with the user's publications.
    pub(super) unsynced: u32,
    /// When every view became up to date.
    pub synced_at: Option<Instant>,
    pub(super) unsubscribed_at: Option<Instant>,
    pub(super) unsubscribe_answered: bool,
    pub(super) got_terminated: bool,
}

impl Engine {
    pub(super) fn dialog(&self, id: u64) -> Option<&Dialog> {
        let i = id.checked_sub(self.dialog_base)?;
        self.dialogs.get(usize::try_from(i).ok()?)
    }

    pub(super) fn dialog_mut(&mut self, id: u64) -> Option<&mut Dialog> {
        let i = id.checked_sub(self.dialog_base)?;
        self.dialogs.get_mut(usize::try_from(i).ok()?)
    }

    /// Dialog ids currently kept.
    pub fn dialog_ids(&self) -> std::ops::Range<u64> {
        self.dialog_base..self.dialog_base + self.dialogs.len() as u64
    }

    /// Creates a dialog of `watcher` (not sent yet). `view_users`: the users it shows (one for a
    /// single subscription, the entries of a list).
    pub fn add_dialog(&mut self, watcher: u32, kind: Kind, view_users: &[u32]) -> u64 {
        let id = self.dialog_base + self.dialogs.len() as u64;
        let list = matches!(kind, Kind::List { .. });
        let first_view = self.views.len() as u32;
        let mut kind = kind;
        for (i, &u) in view_users.iter().enumerate() {
            self.views.push(View {
                dialog: id,
                user: u,
                cursor: 0,
                synced: false,
                list,
            });
            if let Kind::List { index, .. } = &mut kind {
                index.insert(u, first_view + i as u32);
            }
        }
        self.unsynced_views += view_users.len() as u64;
        let conn = match &kind {
            Kind::Single { presentity } | Kind::Churn { presentity } => {
                let conn = self.dialog_conn(watcher, Some(*presentity));
                self.count_cross_node(conn, &[*presentity]);
                conn
            }
            Kind::List { .. } => {
                let conn = self.dialog_conn(watcher, None);
                self.count_cross_node(conn, view_users);
                conn
            }
        };
        self.dialogs.push_back(Dialog {
            conn,
            watcher,
            kind,
            state: State::Pending,
            cseq: 0,
            to_tag: None,
            remote_target: None,
            sent: Instant::now(),
            answered: None,
            first_notify: None,
            notifies: 0,
            views: (first_view, view_users.len() as u32),
            unsynced: view_users.len() as u32,
            synced_at: None,
            unsubscribed_at: None,
            unsubscribe_answered: false,
            got_terminated: false,
        });
        id
    }

    /// The resource-lists body of list `list` (deflated with `--deflate`), kept for the run.
    pub fn set_list_body(&mut self, list: u32, entries: &[u32]) {
        let mut uri = Vec::new();
        let entries: Vec<presence_proto::resource_lists::Entry> = entries
            .iter()
            .map(|&u| {
                uri.clear();
                self.names.write_user_uri(&mut uri, u);
                presence_proto::resource_lists::Entry {
                    uri: String::from_utf8_lossy(&uri).into_owned(),
                    name: None,
                }
            })
            .collect();
        let mut body = Vec::new();
        presence_proto::resource_lists::write(&entries, &mut body);
        if self.opts.deflate {
            body = presence_proto::encoding::deflate(&body);
        }
        self.list_bodies.insert(list, body);
    }

    /// Sends the initial SUBSCRIBE of dialog `id`.
    pub fn subscribe(&mut self, id: u64) {
        let expires = self.opts.subscribe_expires;
        let deflated = self.opts.deflate;
        let Some(d) = self.dialog_mut(id) else {
            return;
        };
        d.cseq += 1;
        d.sent = Instant::now();
        d.state = State::Pending;
        let (conn, watcher, cseq) = (d.conn, d.watcher, d.cseq);
        let target = match &d.kind {
            Kind::Single { presentity } | Kind::Churn { presentity } => Ok(*presentity),
            Kind::List { list, .. } => Err(*list),
        };
        let txn = self.new_txn(TxnKind::Subscribe { dialog: id }, false);
        let body = match target {
            Err(list) => self.list_bodies.remove(&list),
            Ok(_) => None,
        };
        self.write(conn, |b, hop, out| {
            let target = match (target, &body) {
                (Ok(p), _) => Target::User(p),
                (Err(list), body) => Target::List {
                    list,
                    body: body.as_deref().unwrap_or_default(),
                    deflated,
                },
            };
            b.subscribe(
                out,
                hop,
                &Subscribe {
                    watcher,
                    target,
                    dialog: id,
                    cseq,
                    txn,
                    expires,
                    to_tag: None,
                    remote_target: None,
                },
            );
        });
        if let (Err(list), Some(body)) = (target, body) {
            self.list_bodies.insert(list, body);
        }
    }

    /// Sends `SUBSCRIBE Expires: 0` in dialog `id` (if it is established).
    pub fn unsubscribe(&mut self, id: u64, cleanup: bool) -> bool {
        let deflated = self.opts.deflate;
        let Some(d) = self.dialog_mut(id) else {
            return false;
        };
        if d.state != State::Active {
            return false;
        }
        d.cseq += 1;
        d.state = State::Closing;
        d.unsubscribed_at = Some(Instant::now());
        let (conn, watcher, cseq) = (d.conn, d.watcher, d.cseq);
        let target = match &d.kind {
            Kind::Single { presentity } | Kind::Churn { presentity } => Ok(*presentity),
            Kind::List { list, .. } => Err(*list),
        };
        let to_tag = d.to_tag.clone();
        let remote_target = d.remote_target.clone();
        let txn = self.new_txn(TxnKind::Unsubscribe { dialog: id }, cleanup);
        self.write(conn, |b, hop, out| {
            let target = match target {
                Ok(p) => Target::User(p),
                Err(list) => Target::List {
                    list,
                    body: &[],
                    deflated,
                },
            };
            b.subscribe(
                out,
                hop,
                &Subscribe {
                    watcher,
                    target,
                    dialog: id,
                    cseq,
                    txn,
                    expires: 0,
                    to_tag: to_tag.as_deref(),
                    remote_target: remote_target.as_deref(),
                },
            );
        });
        true
    }

    /// Whether every dialog in `ids` has its answer (or failed).
    pub fn all_answered(&self, ids: std::ops::Range<u64>) -> bool {
        ids.into_iter()
            .all(|id| self.dialog(id).is_none_or(|d| d.state != State::Pending))
    }

    /// Times (from SUBSCRIBE to every view up to date) of the dialogs in `ids`.
    pub fn sync_times(&self, ids: std::ops::Range<u64>) -> Histogram {
        let mut h = Histogram::new();
        for id in ids {
            if let Some(d) = self.dialog(id)
                && let Some(at) = d.synced_at
            {
                h.record(at.saturating_duration_since(d.sent));
            }
        }
        h
    }

    /// Dialogs established (2xx) among `ids`.
    pub fn established(&self, ids: std::ops::Range<u64>) -> u64 {
        ids.into_iter()
            .filter(|&id| {
                self.dialog(id)
                    .is_some_and(|d| matches!(d.state, State::Active | State::Closing))
            })
            .count() as u64
    }

    pub(super) fn fail_dialog(&mut self, id: u64) {
        let is_churn;
        let (first, count) = {
            let Some(d) = self.dialog_mut(id) else {
                return;
            };
            if d.state == State::Failed {
                return;
            }
            d.state = State::Failed;
            is_churn = matches!(d.kind, Kind::Churn { .. });
            d.unsynced = 0;
            d.views
        };
        if is_churn {
            self.churn.active = self.churn.active.saturating_sub(1);
            self.churn.failed += 1;
        } else {
            self.setup_failures += 1;
        }
        for v in first..first + count {
            if let Some(view) = self.views.get_mut(v as usize)
                && !view.synced
            {
                view.synced = true;
                self.unsynced_views = self.unsynced_views.saturating_sub(1);
            }
        }
    }

    pub(super) fn on_notify(&mut self, at: Instant, id: u64, terminated: bool, content: Content) {
        let measuring = self.measuring;
        if measuring {
            self.m.notifies += 1;
        }
        let (is_list, is_churn, single_view) = {
            let Some(d) = self.dialog_mut(id) else {
                *self
                    .m
                    .unexpected
                    .entry("NOTIFY in a dialog already forgotten")
                    .or_default() += 1;
                return;
            };
            d.notifies += 1;
            if d.first_notify.is_none() {
                d.first_notify = Some(at);
            }
            if terminated {
                d.got_terminated = true;
            }
            (
                matches!(d.kind, Kind::List { .. }),
                matches!(d.kind, Kind::Churn { .. }),
                (d.views.1 == 1).then_some(d.views.0),
            )
        };
        if terminated {
            self.on_terminated(id);
        }
        if is_churn {
            self.churn_step(id);
            return;
        }
        match content {
            Content::Bad(why) => {
                self.m.bad_bodies += 1;
                *self.m.unexpected.entry(why).or_default() += 1;
            }
            Content::Empty | Content::Single(None) => {
                // Restricted documents are normal while the mutual subscriptions are being
                // set up; a terminated NOTIFY may have no body.
                if measuring && !terminated && !is_list {
                    self.m.no_note += 1;
                }
            }
            Content::Single(Some(seq)) => match single_view {
                Some(v) if !is_list => self.see(v, seq, at),
                _ => self.m.wrong += 1,
            },
            Content::List(l) => {
                if is_list {
                    self.on_list(id, at, l);
                } else {
                    self.m.wrong += 1;
                }
            }
        }
    }

    pub(super) fn on_terminated(&mut self, id: u64) {
        let measuring = self.measuring;
        let Some(d) = self.dialog_mut(id) else {
            return;
        };
        match d.state {
            State::Closing if d.unsubscribe_answered && !matches!(d.kind, Kind::Churn { .. }) => {
                d.state = State::Ended;
            }
            State::Active | State::Pending => {
                d.state = State::Ended;
                if measuring {
                    self.m.terminated_by_server += 1;
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_list(&mut self, id: u64, at: Instant, l: ListContent) {
        if l.foreign > 0 {
            self.m.wrong += u64::from(l.foreign);
        }
        for (user, seq) in l.resources {
            let view = match self.dialog(id) {
                Some(Dialog {
                    kind: Kind::List { index, .. },
                    ..
                }) => index.get(&user).copied(),
                _ => None,
            };
            match (view, seq) {
                (Some(v), Some(seq)) => self.see(v, seq, at),
                (Some(_), None) => {}
                (None, _) => self.m.wrong += 1,
            }
        }
    }
}
