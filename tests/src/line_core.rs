//! A fake core for the runtimes' driver tests (`runtime-tokio/tests/driver.rs`,
//! `runtime-smol/tests/driver.rs`): it speaks a line protocol, so those tests check the plumbing
//! (accept, read, coalesced write, close after flush, outbound connect, timers, database queries,
//! shutdown) without depending on the SIP core.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use presence_daemon::Core;
use presence_proto::{Action, ConnId, Query, QueryError, QueryId, QueryResult, Target};

/// Lines in, `echo:LINE` out; `close` closes; `connect PORT` opens an outbound connection and
/// says `hello` on it; `timer` answers `tick` 20 ms later. Output of one drain is one `Send` per
/// connection. `query USER…` asks the database for accounts and `list` for a list, answering
/// `accounts:LOGIN@DOMAIN…`, `members:N` or `error:MESSAGE` when the result comes back;
/// `flood N` answers N bytes of `x` and a newline. Events are reported to the test.
pub struct LineCore {
    queries: HashMap<QueryId, ConnId>,
    next: u64,
    bufs: HashMap<ConnId, Vec<u8>>,
    pending: BTreeMap<ConnId, Vec<u8>>,
    actions: Vec<Action>,
    timers: Vec<(Instant, ConnId)>,
    events: Box<dyn FnMut(String) + Send>,
}

impl LineCore {
    /// A core reporting its events (`opened N`, `closed N`) to `events`.
    pub fn new(events: impl FnMut(String) + Send + 'static) -> Self {
        LineCore {
            queries: HashMap::new(),
            next: 0,
            bufs: HashMap::new(),
            pending: BTreeMap::new(),
            actions: Vec::new(),
            timers: Vec::new(),
            events: Box::new(events),
        }
    }
    fn out(&mut self, conn: ConnId, text: &str) {
        self.pending
            .entry(conn)
            .or_default()
            .extend_from_slice(text.as_bytes());
    }
    fn flush(&mut self) {
        for (conn, data) in std::mem::take(&mut self.pending) {
            self.actions.push(Action::Send {
                conn,
                data: Bytes::from(data),
            });
        }
    }
}

impl Core for LineCore {
    fn query_result(&mut self, _: Instant, id: QueryId, result: Result<QueryResult, QueryError>) {
        let Some(conn) = self.queries.remove(&id) else {
            return;
        };
        let text = match result {
            Ok(QueryResult::Accounts(rows)) => {
                let mut found: Vec<String> = rows
                    .iter()
                    .map(|r| format!("{}@{}", r.login, r.domain.as_deref().unwrap_or("?")))
                    .collect();
                found.sort();
                format!("accounts:{}\n", found.join(","))
            }
            Ok(QueryResult::ListMembers(m)) => format!("members:{}\n", m.len()),
            Err(e) => format!("error:{}\n", e.0),
        };
        self.out(conn, &text);
    }
    fn connection_opened(&mut self, _: Instant, _: SocketAddr, _: SocketAddr) -> ConnId {
        self.next += 1;
        (self.events)(format!("opened {}", self.next));
        ConnId(self.next)
    }
    fn connection_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let buf = self.bufs.entry(conn).or_default();
        buf.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            lines.push(String::from_utf8_lossy(&line[..pos]).into_owned());
        }
        for line in lines {
            if line == "close" {
                self.flush();
                self.actions.push(Action::Close { conn });
            } else if let Some(port) = line.strip_prefix("connect ") {
                self.next += 1;
                let out = ConnId(self.next);
                let port = port.parse().unwrap_or(1);
                self.actions.push(Action::Connect {
                    conn: out,
                    target: Target {
                        host: "127.0.0.1".into(),
                        port,
                    },
                });
                self.out(out, "hello\n");
            } else if let Some(users) = line.strip_prefix("query ") {
                self.next += 1;
                let id = QueryId(self.next);
                self.queries.insert(id, conn);
                let users = users.split(' ').map(str::to_owned).collect();
                self.actions.push(Action::Query {
                    id,
                    query: Query::Accounts { users },
                });
            } else if line == "list" {
                self.next += 1;
                let id = QueryId(self.next);
                self.queries.insert(id, conn);
                self.actions.push(Action::Query {
                    id,
                    query: Query::ListMembers {
                        from: "sip:a@x".into(),
                        to: "sip:l@x".into(),
                    },
                });
            } else if let Some(n) = line.strip_prefix("flood ") {
                let n = n.parse().unwrap_or(0);
                let mut text = "x".repeat(n);
                text.push('\n');
                self.out(conn, &text);
            } else if line == "timer" {
                self.timers.push((now + Duration::from_millis(20), conn));
            } else {
                self.out(conn, &format!("echo:{line}\n"));
            }
        }
    }
    fn connection_closed(&mut self, _: Instant, conn: ConnId) {
        (self.events)(format!("closed {}", conn.0));
    }
    fn handle_timeout(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self.timers.iter().partition(|(t, _)| *t <= now);
        self.timers = later;
        for (_, conn) in due {
            self.out(conn, "tick\n");
        }
    }
    fn poll_action(&mut self) -> Option<Action> {
        self.flush();
        (!self.actions.is_empty()).then(|| self.actions.remove(0))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().map(|(t, _)| *t).min()
    }
}
