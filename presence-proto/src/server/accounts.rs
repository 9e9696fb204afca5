//! Account lookups (long-term presence and phone-number aliases) and server-known lists: the
//! queries the core asks the runtime to run, their bounded queue and deadlines, the bounded
//! lookup cache, and the requests parked until their lookups are done.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::timers::Timer;
use super::{Action, ConnId, Server};
use crate::query::{AccountRow, Query, QueryError, QueryId, QueryResult};
use crate::resource_lists::Entry;
use crate::sip::{Message, NameAddr};

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Found {
        login: String,
    },
    Absent,
    /// The database failed: nothing known, retried on the next occasion.
    Failed,
}

#[derive(Debug)]
struct Cached {
    state: Lookup,
    until: Instant,
}

/// Why a query was issued.
#[derive(Debug)]
enum Purpose {
    Accounts { keys: Vec<String> },
    Members { parked: u64 },
}

/// A request waiting for lookups.
#[derive(Debug)]
struct Parked {
    conn: ConnId,
    remote: SocketAddr,
    msg: Message,
    keys: HashSet<String>,
    members: Option<Vec<Entry>>,
    waiting_members: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Accounts {
    cache: HashMap<String, Cached>,
    /// Cache keys in insertion order, for eviction (may hold keys already replaced).
    order: VecDeque<String>,
    next_query: u64,
    inflight: HashMap<QueryId, Purpose>,
    queued: VecDeque<(QueryId, Query, Purpose)>,
    /// Keys being looked up.
    looking_up: HashSet<String>,
    parked: HashMap<u64, Parked>,
    next_parked: u64,
    /// The members of a server-known list, handed to the re-dispatched SUBSCRIBE.
    pub(crate) prefetched: Option<Vec<Entry>>,
    /// Queries issued so far (for stats and benchmarks).
    pub(crate) issued: u64,
}

/// Why a request cannot wait for its lookups.
#[derive(Debug)]
pub(crate) struct Overloaded;

/// `user@host[;user=phone]` → (user, host, phone).
pub(crate) fn split_key(key: &str) -> (&str, &str, bool) {
    let (rest, phone) = match key.strip_suffix(";user=phone") {
        Some(r) => (r, true),
        None => (key, false),
    };
    match rest.rsplit_once('@') {
        Some((u, h)) => (u, h, phone),
        None => ("", rest, phone),
    }
}

/// The account a lookup of `key` found among `rows`: a row whose login or phone is the user
/// part, preferring one whose domain (when the query returns domains) is the key's host.
fn match_rows(key: &str, rows: &[AccountRow]) -> Lookup {
    let (user, host, _) = split_key(key);
    let mut candidates = rows
        .iter()
        .filter(|r| r.login == user || r.phone.as_deref() == Some(user));
    let first = candidates.clone().next();
    match candidates
        .find(|r| {
            r.domain
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(host))
        })
        .or(first)
    {
        Some(r) => Lookup::Found {
            login: r.login.clone(),
        },
        None => Lookup::Absent,
    }
}

impl Accounts {
    pub(crate) fn issued(&self) -> u64 {
        self.issued
    }

    /// A lookup still valid at `now` (valid at least at the instant it was made, so a request
    /// re-dispatched after its lookups always proceeds, even with a zero lifetime).
    fn cached(&self, key: &str, now: Instant) -> Option<&Lookup> {
        self.cache
            .get(key)
            .filter(|c| c.until >= now)
            .map(|c| &c.state)
    }

    fn remember(&mut self, key: String, state: Lookup, until: Instant, max: usize) {
        while self.cache.len() >= max.max(1) {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.cache.remove(&old);
        }
        if self
            .cache
            .insert(key.clone(), Cached { state, until })
            .is_none()
        {
            self.order.push_back(key);
        }
    }
}

impl Server {
    /// Whether the accounts of `keys` are known (cached). When not, issues the lookups, parks
    /// the request, and returns false: it is handled again once they are done (or failed).
    /// Answers 503 and returns false when the query queue is full.
    pub(crate) fn accounts_gate(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        keys: &[String],
        members: Option<Vec<Entry>>,
    ) -> bool {
        if !self.config.long_term_enabled {
            return true;
        }
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| self.accounts.cached(k, now).is_none())
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return true;
        }
        if self.lookup(now, &missing).is_err() {
            self.overloaded(conn, remote, msg);
            return false;
        }
        self.park(
            conn,
            remote,
            msg,
            missing.into_iter().collect(),
            members,
            false,
        );
        false
    }

    /// Asks the database for a server-known list and parks the request until it answers.
    pub(crate) fn members_gate(
        &mut self,
        now: Instant,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        from: String,
        to: String,
    ) {
        let parked = self.park(conn, remote, msg, HashSet::new(), None, true);
        if self
            .issue(
                now,
                Query::ListMembers { from, to },
                Purpose::Members { parked },
            )
            .is_err()
        {
            self.accounts.parked.remove(&parked);
            self.overloaded(conn, remote, msg);
        }
    }

    fn overloaded(&mut self, conn: ConnId, remote: SocketAddr, msg: &Message) {
        let w = super::response::warning("Database busy");
        self.respond(
            conn,
            remote,
            msg,
            503,
            "Service Unavailable",
            &[("Retry-After", b"10"), ("Warning", &w)],
        );
    }

    fn park(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        msg: &Message,
        keys: HashSet<String>,
        members: Option<Vec<Entry>>,
        waiting_members: bool,
    ) -> u64 {
        self.accounts.next_parked += 1;
        let id = self.accounts.next_parked;
        debug!(
            parked = id,
            keys = keys.len(),
            "request waits for the database"
        );
        self.accounts.parked.insert(
            id,
            Parked {
                conn,
                remote,
                msg: msg.clone(),
                keys,
                members,
                waiting_members,
            },
        );
        id
    }

    /// Looks up the accounts of `keys` in the background (results are applied to the
    /// presentities when they arrive), re-asking for those found absent before (`force`).
    pub(crate) fn refresh_accounts(&mut self, now: Instant, keys: &[String]) {
        if !self.config.long_term_enabled {
            return;
        }
        let stale: Vec<String> = keys
            .iter()
            .filter(|k| !matches!(self.accounts.cached(k, now), Some(Lookup::Found { .. })))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !stale.is_empty() && self.lookup(now, &stale).is_err() {
            warn!(
                keys = stale.len(),
                "account lookups dropped: query queue full"
            );
        }
    }

    /// Issues `Accounts` queries for the keys not already being looked up, in batches.
    fn lookup(&mut self, now: Instant, keys: &[String]) -> Result<(), Overloaded> {
        let todo: Vec<String> = keys
            .iter()
            .filter(|k| !self.accounts.looking_up.contains(*k))
            .cloned()
            .collect();
        let batch = self.config.max_query_batch.max(1);
        let queries = todo.len().div_ceil(batch);
        if self.accounts.queued.len() + queries
            > self.config.max_queued_queries
                + self
                    .config
                    .max_inflight_queries
                    .saturating_sub(self.accounts.inflight.len())
        {
            return Err(Overloaded);
        }
        for chunk in todo.chunks(batch) {
            let mut users: Vec<String> = chunk.iter().map(|k| split_key(k).0.to_owned()).collect();
            users.sort_unstable();
            users.dedup();
            self.accounts.looking_up.extend(chunk.iter().cloned());
            let _ = self.issue(
                now,
                Query::Accounts { users },
                Purpose::Accounts {
                    keys: chunk.to_vec(),
                },
            );
        }
        Ok(())
    }

    /// Sends a query now if a slot is free, else queues it.
    fn issue(&mut self, now: Instant, query: Query, purpose: Purpose) -> Result<(), Overloaded> {
        self.accounts.next_query += 1;
        let id = QueryId(self.accounts.next_query);
        if self.accounts.inflight.len() < self.config.max_inflight_queries.max(1) {
            self.start_query(now, id, query, purpose);
            Ok(())
        } else if self.accounts.queued.len() < self.config.max_queued_queries {
            self.accounts.queued.push_back((id, query, purpose));
            Ok(())
        } else {
            Err(Overloaded)
        }
    }

    fn start_query(&mut self, now: Instant, id: QueryId, query: Query, purpose: Purpose) {
        self.accounts.issued += 1;
        self.accounts.inflight.insert(id, purpose);
        self.timers
            .arm(now + self.config.query_timeout, Timer::QueryDeadline(id));
        self.output.connect(Action::Query { id, query });
    }

    /// A query's deadline passed: it counts as failed (a late result is ignored).
    pub(crate) fn query_deadline(&mut self, now: Instant, id: QueryId) {
        if self.accounts.inflight.contains_key(&id) {
            warn!(?id, "database query timed out");
            self.query_result(now, id, Err(QueryError("timeout".into())));
        }
    }

    /// The outcome of a query.
    pub fn query_result(
        &mut self,
        now: Instant,
        id: QueryId,
        result: Result<QueryResult, QueryError>,
    ) {
        let Some(purpose) = self.accounts.inflight.remove(&id) else {
            return;
        };
        if let Err(e) = &result {
            self.stats.query_failures += 1;
            warn!(?id, error = %e.0, "database query failed");
        }
        match purpose {
            Purpose::Accounts { keys } => {
                let rows = match &result {
                    Ok(QueryResult::Accounts(rows)) => Some(rows.as_slice()),
                    _ => None,
                };
                let lifetime = self.config.account_cache_lifetime;
                let max = self.config.account_cache_size;
                for key in &keys {
                    let (state, life) = match rows {
                        Some(rows) => (match_rows(key, rows), lifetime),
                        None => (Lookup::Failed, lifetime.min(Duration::from_secs(30))),
                    };
                    self.accounts.looking_up.remove(key);
                    self.accounts.remember(key.clone(), state, now + life, max);
                    self.apply_account(now, key);
                }
                let done: HashSet<&String> = keys.iter().collect();
                let ready: Vec<u64> = self
                    .accounts
                    .parked
                    .iter_mut()
                    .filter_map(|(id, p)| {
                        p.keys.retain(|k| !done.contains(k));
                        (p.keys.is_empty() && !p.waiting_members).then_some(*id)
                    })
                    .collect();
                let mut ready = ready;
                ready.sort_unstable();
                for id in ready {
                    self.redispatch(now, id);
                }
            }
            Purpose::Members { parked } => match result {
                Ok(QueryResult::ListMembers(rows)) => {
                    let members = rows
                        .iter()
                        .filter_map(|row| {
                            let n = NameAddr::parse(row.as_bytes())?;
                            let mut uri = Vec::new();
                            n.uri.write_to(&mut uri);
                            Some(Entry {
                                uri: String::from_utf8_lossy(&uri).into_owned(),
                                name: n.display,
                            })
                        })
                        .collect();
                    if let Some(p) = self.accounts.parked.get_mut(&parked) {
                        p.members = Some(members);
                        p.waiting_members = false;
                    }
                    self.redispatch(now, parked);
                }
                _ => {
                    if let Some(p) = self.accounts.parked.remove(&parked) {
                        self.overloaded(p.conn, p.remote, &p.msg);
                    }
                }
            },
        }
        while self.accounts.inflight.len() < self.config.max_inflight_queries.max(1) {
            let Some((id, query, purpose)) = self.accounts.queued.pop_front() else {
                break;
            };
            self.start_query(now, id, query, purpose);
        }
        self.close_overflowing(now);
    }

    /// Handles a parked request again, its lookups done.
    fn redispatch(&mut self, now: Instant, id: u64) {
        let Some(p) = self.accounts.parked.remove(&id) else {
            return;
        };
        if !self.is_open(p.conn) {
            return;
        }
        self.accounts.prefetched = p.members;
        self.handle_request(now, p.conn, Some(p.remote), &p.msg);
        self.accounts.prefetched = None;
    }

    /// Brings a presentity's account (and alias link) in line with the cache, and tells its
    /// watchers when that changes what they see.
    pub(crate) fn apply_account(&mut self, now: Instant, key: &str) {
        let changed = match self.accounts.cached(key, now).cloned() {
            Some(Lookup::Found { login }) => {
                let (user, host, phone) = split_key(key);
                let contact = format!("sip:{login}@{host}");
                let alias =
                    (phone || login != user).then(|| (format!("{login}@{host}"), contact.clone()));
                self.presentities.set_account(key, contact, alias)
            }
            Some(Lookup::Absent) => self.presentities.clear_account(key),
            Some(Lookup::Failed) | None => false,
        };
        if !changed {
            return;
        }
        info!(presentity = %key, "account state changed");
        // Access through an alias may have changed both ways.
        let watches = self
            .presentities
            .get(key)
            .map(|p| p.watchers.clone())
            .unwrap_or_default();
        for w in &watches {
            self.recheck_watch(now, *w, key);
        }
        let watchers: Vec<String> = watches
            .iter()
            .filter_map(|w| {
                self.subscriptions
                    .map
                    .get(&w.sub)
                    .map(|s| s.watcher.clone())
            })
            .collect();
        for watcher in watchers {
            self.reevaluate_access(now, &watcher, key);
        }
        self.presentities.invalidate(key);
        self.tell_watchers(now, key, true);
    }
}
