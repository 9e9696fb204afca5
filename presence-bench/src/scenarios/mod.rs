//! The scenarios, and the phases they share: the mutual mesh of subscriptions, the initial
//! publications, the measured PUBLISH phase, server CPU and memory sampling, the common report.

pub mod churn;
pub mod fanout;
pub mod hold;
pub mod list;

use std::time::{Duration, Instant};

use crate::cli::{Options, Scenario};
use crate::engine::{Engine, Kind};
use crate::procfs::{self, Sample};
use crate::report::Report;

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// Exit status: 0 ok, 1 failures above `--max-loss`, 3 setup failed.
    pub status: i32,
}

/// Runs the scenario of `opts` against the server.
pub async fn run(opts: Options, names: crate::names::Names) -> Outcome {
    let mut e = Engine::new(opts, names);
    let mut r = Report::new();
    header(&mut r, &e);
    let result = match e.opts.scenario {
        Scenario::Fanout => fanout::run(&mut e, &mut r).await,
        Scenario::Churn => churn::run(&mut e, &mut r).await,
        Scenario::Hold => hold::run(&mut e, &mut r).await,
        Scenario::List => list::run(&mut e, &mut r).await,
    };
    let status = match result {
        Ok(check) => {
            if !e.opts.no_cleanup {
                e.progress("cleaning up (unsubscribe, unpublish)");
            }
            finish(&mut e, &mut r, Some(check)).await
        }
        Err(why) => {
            e.progress(&format!("setup failed: {why}"));
            r.section("Setup failed");
            r.str("setup_error", "reason", &why);
            finish(&mut e, &mut r, None).await
        }
    };
    Outcome { report: r, status }
}

/// Failures of the measured phase and the total they are compared to for `--max-loss`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Check {
    pub failures: u64,
    pub total: u64,
}

/// Cleans up, adds the error counters and the verdict.
async fn finish(e: &mut Engine, r: &mut Report, check: Option<Check>) -> i32 {
    let cleanup = if e.opts.no_cleanup {
        e.close();
        None
    } else {
        let (took, unfinished) = e.cleanup().await;
        if unfinished > 0 {
            e.progress(&format!(
                "cleanup incomplete: {unfinished} unsubscribe/unpublish requests unsent or \
                 unanswered; the server keeps them until they expire"
            ));
        }
        Some((took, unfinished))
    };
    if e.opts.servers.len() > 1 {
        r.section("Several servers");
        r.int(
            "watches",
            "watches (single subscriptions, list entries)",
            e.watches,
        );
        r.int(
            "cross_node_watches",
            "watches whose presentity publishes on another node",
            e.cross_node,
        );
        r.float(
            "cross_node_fraction",
            "share of watches crossing nodes",
            (e.watches > 0).then(|| e.cross_node as f64 / e.watches as f64),
            "",
        );
    }
    let m = &e.m;
    r.section("Cleanup");
    r.float(
        "cleanup_s",
        "unsubscribe and unpublish",
        cleanup.map(|c| c.0.as_secs_f64()),
        "s",
    );
    r.opt_int(
        "cleanup_unfinished",
        "requests unsent or unanswered",
        cleanup.map(|c| c.1),
        "",
    );
    r.int(
        "cleanup_errors",
        "non-2xx answers in the cleanup",
        m.cleanup_errors,
    );
    r.section("Errors");
    r.counts(
        "errors",
        "non-2xx answers",
        m.errors.iter().map(|(k, n)| (k.clone(), *n)).collect(),
    );
    r.counts(
        "unexpected",
        "unexpected messages",
        m.unexpected
            .iter()
            .map(|(k, n)| ((*k).to_owned(), *n))
            .collect(),
    );
    r.int(
        "foreign_notifies",
        "NOTIFYs of other runs (481)",
        m.foreign_notifies,
    );
    r.int(
        "closed_connections",
        "connections closed by the server",
        m.closed_connections,
    );
    r.section("Result");
    let (status, verdict) = match check {
        None => (3, "setup failed"),
        Some(c) if e.opts.max_loss.accepts(c.failures, c.total) => (0, "ok"),
        Some(_) => (1, "failures above --max-loss"),
    };
    if let Some(c) = check {
        r.int("failures", "failures", c.failures);
    }
    r.str(
        "max_loss",
        "tolerated (--max-loss)",
        &e.opts.max_loss.to_string(),
    );
    r.str("result", "result", verdict);
    status
}

fn header(r: &mut Report, e: &Engine) {
    let o = &e.opts;
    r.section(&format!("presence-bench {}", o.scenario.as_str()));
    r.str("scenario", "scenario", o.scenario.as_str());
    r.str("server", "server", &o.servers_text());
    if o.servers.len() > 1 {
        r.int("servers", "servers (cluster nodes)", o.servers.len() as u64);
    }
    r.str("domain", "domain", &o.domain);
    r.str("run_id", "run id", &e.names.run);
    r.str(
        "mode",
        "mode",
        if o.proxy_mode() { "proxy" } else { "per-user" },
    );
    r.int(
        "connections",
        "connections",
        o.connections.unwrap_or(e.users.len()) as u64,
    );
    r.int("users", "users", e.users.len() as u64);
    r.int("threads", "bench threads", o.threads as u64);
    r.str(
        "pids",
        "server PIDs sampled",
        &o.pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    r.opt_int(
        "server_processes",
        "server processes sampled (with children)",
        procfs::sample(&o.pids).map(|s| s.processes as u64),
        "",
    );
}

/// Server, store and own CPU from one point in time.
pub struct Cpu {
    pub at: Instant,
    server: Option<Sample>,
    /// The `--store-pid` processes; None without them.
    store: Option<Sample>,
    own: f64,
}

/// CPU used between two points.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub wall: f64,
    /// Server (user, system) seconds; None without `--pid`.
    pub server: Option<(f64, f64)>,
    pub own: f64,
    /// Server memory (RSS, PSS in kB) at the start and at the end.
    pub memory: [Option<(u64, Option<u64>)>; 2],
    /// `--store-pid` was given (the store figures are reported, null when unreadable).
    pub store_sampled: bool,
    /// Store (user, system) seconds.
    pub store: Option<(f64, f64)>,
}

impl CpuUse {
    pub fn server_total(&self) -> Option<f64> {
        self.server.map(|(u, s)| u + s)
    }

    /// `count` per server CPU-second.
    pub fn per_cpu_second(&self, count: u64) -> Option<f64> {
        self.server_total()
            .filter(|&t| t > 0.0)
            .map(|t| count as f64 / t)
    }

    /// Store CPU seconds (user + system).
    pub fn store_total(&self) -> Option<f64> {
        self.store.map(|(u, s)| u + s)
    }

    /// `count` per CPU-second of the servers and the store together.
    pub fn per_cpu_second_with_store(&self, count: u64) -> Option<f64> {
        let t = self.server_total()? + self.store_total()?;
        (t > 0.0).then(|| count as f64 / t)
    }

    /// With `--store-pid`: `key` = `count` per CPU-second of servers + store.
    pub fn report_with_store(&self, r: &mut Report, key: &str, label: &str, count: u64) {
        if self.store_sampled {
            r.float(key, label, self.per_cpu_second_with_store(count), "");
        }
    }

    pub fn report(&self, r: &mut Report, prefix: &str, what: &str) {
        r.float(
            &format!("{prefix}server_cpu_user_s"),
            &format!("server CPU user ({what})"),
            self.server.map(|c| c.0),
            "s",
        );
        r.float(
            &format!("{prefix}server_cpu_sys_s"),
            &format!("server CPU system ({what})"),
            self.server.map(|c| c.1),
            "s",
        );
        r.float(
            &format!("{prefix}server_cpu_s"),
            &format!("server CPU total ({what})"),
            self.server_total(),
            "s",
        );
        r.float(
            &format!("{prefix}server_cpu_util"),
            "server CPU / wall time",
            self.server_total()
                .filter(|_| self.wall > 0.0)
                .map(|t| t / self.wall),
            "cores",
        );
        r.float(
            &format!("{prefix}bench_cpu_s"),
            &format!("presence-bench CPU ({what})"),
            Some(self.own),
            "s",
        );
        if self.store_sampled {
            r.float(
                &format!("{prefix}store_cpu_s"),
                &format!("store CPU total ({what})"),
                self.store_total(),
                "s",
            );
            r.float(
                &format!("{prefix}store_cpu_util"),
                "store CPU / wall time",
                self.store_total()
                    .filter(|_| self.wall > 0.0)
                    .map(|t| t / self.wall),
                "cores",
            );
        }
        for (i, when) in ["start", "end"].into_iter().enumerate() {
            let m = self.memory.get(i).copied().flatten();
            r.opt_int(
                &format!("{prefix}rss_{when}_kb"),
                &format!("server RSS at the {when}"),
                m.map(|m| m.0),
                "kB",
            );
            r.opt_int(
                &format!("{prefix}pss_{when}_kb"),
                &format!("server PSS at the {when}"),
                m.and_then(|m| m.1),
                "kB",
            );
        }
    }
}

impl Cpu {
    /// Samples the servers (`--pid`) and the store (`--store-pid`).
    pub fn start(o: &Options) -> Cpu {
        Cpu {
            at: Instant::now(),
            server: procfs::sample(&o.pids),
            store: procfs::sample(&o.store_pids),
            own: procfs::own_cpu_seconds(),
        }
    }

    pub fn stop(&self, o: &Options) -> CpuUse {
        let end = procfs::sample(&o.pids);
        let store_end = procfs::sample(&o.store_pids);
        CpuUse {
            store_sampled: !o.store_pids.is_empty(),
            store: match (&self.store, &store_end) {
                (Some(a), Some(b)) => Some(b.cpu_since(a)),
                _ => None,
            },
            wall: self.at.elapsed().as_secs_f64(),
            server: match (&self.server, &end) {
                (Some(a), Some(b)) => Some(b.cpu_since(a)),
                _ => None,
            },
            own: procfs::own_cpu_seconds() - self.own,
            memory: [&self.server, &end].map(|s| s.as_ref().map(|s| (s.rss_kb, s.pss_kb))),
        }
    }
}

/// Memory of the server's processes (kB) as the report shows it.
pub fn report_memory(r: &mut Report, prefix: &str, label: &str, s: Option<&Sample>) {
    r.opt_int(
        &format!("{prefix}_rss_kb"),
        &format!("server RSS {label}"),
        s.map(|s| s.rss_kb),
        "kB",
    );
    r.opt_int(
        &format!("{prefix}_pss_kb"),
        &format!("server PSS {label}"),
        s.and_then(|s| s.pss_kb),
        "kB",
    );
}

/// The users `user` watches in a ring of `users` with `k` mutual buddies: ±1..±k/2, and the
/// opposite user when `k` is odd (the command line checks that `users` is then even).
pub fn ring(user: u32, users: u32, k: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(k as usize);
    for d in 1..=k / 2 {
        out.push((user + d) % users);
        out.push((user + users - d % users) % users);
    }
    if k % 2 == 1 {
        out.push((user + users / 2) % users);
    }
    out
}

/// Opens the connections (fails the run when the server cannot be reached).
pub async fn connect(e: &mut Engine, r: &mut Report) -> Result<(), String> {
    let n = e.opts.connections.unwrap_or(e.users.len());
    e.progress(&format!(
        "connecting {n} connection(s) to {}",
        e.opts.servers_text()
    ));
    let took = e.connect().await?;
    r.section("Setup");
    r.float("connect_s", "connecting", Some(took.as_secs_f64()), "s");
    Ok(())
}

/// Every user publishes a first document (PUBLISH, Expires `--publish-expires`).
pub async fn publish_all(e: &mut Engine, r: &mut Report) -> Result<(), String> {
    let users = e.users.len();
    e.progress(&format!("publishing the initial presence of {users} users"));
    let took = e
        .setup_phase(
            "initial PUBLISHes",
            users,
            |e, i| {
                e.publish(i as u32, false);
            },
            |e| e.publications_answered(),
        )
        .await?;
    r.float(
        "publish_setup_s",
        "initial PUBLISHes",
        Some(took.as_secs_f64()),
        "s",
    );
    Ok(())
}

/// Creates the dialogs of the mutual ring (`k` buddies per user), not sent yet; returns their
/// ids.
pub fn mesh(e: &mut Engine, k: u32) -> std::ops::Range<u64> {
    let users = e.users.len() as u32;
    let first = e.dialog_ids().end;
    for u in 0..users {
        for b in ring(u, users, k) {
            e.add_dialog(u, Kind::Single { presentity: b }, &[b]);
        }
    }
    first..e.dialog_ids().end
}

/// Sends the initial SUBSCRIBEs of `ids` and waits for every answer and every view to be up to
/// date with the publications. Returns the time taken.
pub async fn subscribe_all(
    e: &mut Engine,
    what: &str,
    ids: std::ops::Range<u64>,
) -> Result<Duration, String> {
    let total = (ids.end - ids.start) as usize;
    e.progress(&format!("{what}: {total} SUBSCRIBEs"));
    let first = ids.start;
    e.setup_phase(
        what,
        total,
        |e, i| e.subscribe(first + i as u64),
        move |e| e.all_answered(ids.clone()) && e.unsynced_views == 0,
    )
    .await
}

/// Figures of a measured PUBLISH phase.
#[derive(Debug, Clone, Copy)]
pub struct PublishPhase {
    pub cpu: CpuUse,
    /// Start to the last PUBLISH sent.
    pub sending: Duration,
    /// Start to the last note delivered (or the end of sending).
    pub delivering: Duration,
    pub lost: u64,
    pub expected: u64,
    pub unanswered: u64,
}

/// PUBLISHes at `--rate` (or saturation) for `--duration`, then waits up to `--grace` for the
/// last NOTIFYs.
pub async fn publish_phase(e: &mut Engine) -> PublishPhase {
    let (rate, duration, window) = (e.opts.rate, e.opts.duration, e.opts.effective_window());
    let saturate = e.opts.saturate;
    e.arm_expectations();
    e.progress(&format!(
        "measuring: {} for {:.0} s ({} NOTIFYs expected per PUBLISH on average)",
        if saturate {
            format!("saturation, {window} PUBLISH in flight")
        } else {
            format!("{rate} PUBLISH/s")
        },
        duration.as_secs_f64(),
        e.total_watchers() as f64 / e.users.len().max(1) as f64
    ));
    let cpu = Cpu::start(&e.opts);
    let start = cpu.at;
    e.measuring = true;
    let stop = start + duration;
    let planned = (rate * duration.as_secs_f64()).round() as u64;
    let mut due_done = 0u64;
    loop {
        let now = Instant::now();
        if now >= stop {
            break;
        }
        if saturate {
            e.expire_window(now, e.opts.timeout);
            while e.window_used < window {
                if !e.publish_random() {
                    break;
                }
            }
            e.pump(stop.min(now + Duration::from_millis(50))).await;
        } else {
            let due = (((now - start).as_secs_f64() * rate) as u64 + 1).min(planned);
            while due_done < due {
                due_done += 1;
                if e.publish_in_flight >= window || !e.publish_random() {
                    e.m.publish_behind += 1;
                }
            }
            let next = if due_done < planned {
                start + Duration::from_secs_f64(due_done as f64 / rate)
            } else {
                stop
            };
            e.pump(next.min(stop)).await;
        }
    }
    let sending = start.elapsed();
    let drain = Instant::now() + e.opts.grace;
    let _ = e.wait_until(drain, |e| e.incomplete == 0).await;
    e.measuring = false;
    let cpu = cpu.stop(&e.opts);
    let delivering =
        e.m.last_delivery
            .map_or(sending, |t| t.saturating_duration_since(start).max(sending));
    PublishPhase {
        cpu,
        sending,
        delivering,
        lost: e.lost(),
        expected: e.expected_notes(),
        unanswered: e.unanswered_publishes(),
    }
}

/// The report of a publish phase; returns its failures.
pub fn report_publish(e: &Engine, r: &mut Report, p: &PublishPhase) -> Check {
    let m = &e.m;
    let o = &e.opts;
    r.section("Measured phase");
    r.float(
        "duration_s",
        "PUBLISH phase",
        Some(p.sending.as_secs_f64()),
        "s",
    );
    r.float(
        "rate_target",
        "target rate",
        (!o.saturate).then_some(o.rate),
        "PUBLISH/s",
    );
    r.bool("saturate", "saturation", o.saturate);
    r.int("window", "window", o.effective_window() as u64);
    r.int("publish_sent", "PUBLISH sent", m.publish_sent);
    r.int("publish_ok", "PUBLISH 2xx", m.publish_ok);
    r.int("publish_failed", "PUBLISH non-2xx", m.publish_failed);
    r.int("publish_unanswered", "PUBLISH unanswered", p.unanswered);
    r.int(
        "publish_behind",
        "PUBLISH due but not sent",
        m.publish_behind,
    );
    r.float(
        "publish_rate",
        "PUBLISH rate achieved (2xx)",
        Some(m.publish_ok as f64 / p.sending.as_secs_f64().max(1e-9)),
        "/s",
    );
    r.latency("publish_rtt", "PUBLISH -> answer", &m.publish_rtt);
    let singles = m.delivered > 0 || m.resource_updates == 0;
    r.int("notify_expected", "notes expected", p.expected);
    r.int("notify_received", "NOTIFYs received", m.notifies);
    r.int(
        "notify_delivered",
        "notes delivered by single NOTIFYs",
        m.delivered,
    );
    r.int("notify_lost", "notes lost", p.lost);
    if o.servers.len() > 1 {
        r.int(
            "notify_superseded",
            "of which passed over by a newer note",
            m.superseded,
        );
    }
    r.int("notify_wrong", "wrong notes", m.wrong);
    r.int("notify_no_note", "NOTIFYs without a note", m.no_note);
    r.int("notify_bad_body", "undecodable NOTIFY bodies", m.bad_bodies);
    r.int(
        "notify_duplicates",
        "NOTIFYs repeating a note",
        m.duplicates,
    );
    r.int(
        "terminated_by_server",
        "subscriptions terminated by the server",
        m.terminated_by_server,
    );
    let delivering = p.delivering.as_secs_f64().max(1e-9);
    r.float(
        "notify_rate",
        "NOTIFY rate",
        Some(m.notifies as f64 / delivering),
        "/s",
    );
    if singles {
        r.latency("latency", "PUBLISH -> NOTIFY", &m.latency);
    }
    if e.opts.scenario == Scenario::List {
        r.int("resource_updates", "resource updates", m.resource_updates);
        r.int(
            "resource_coalesced",
            "older notes passed over (coalesced)",
            m.coalesced,
        );
        r.float(
            "resource_update_rate",
            "resource update rate",
            Some(m.resource_updates as f64 / delivering),
            "/s",
        );
        r.latency(
            "list_latency",
            "PUBLISH -> resource update",
            &m.list_latency,
        );
    }
    r.section("Server CPU (measured phase)");
    p.cpu.report(r, "", "measured phase");
    r.float(
        "notifies_per_cpu_s",
        "NOTIFYs per server CPU-second",
        p.cpu.per_cpu_second(m.notifies),
        "",
    );
    p.cpu.report_with_store(
        r,
        "notifies_per_cpu_s_with_store",
        "NOTIFYs per CPU-second, servers + store",
        m.notifies,
    );
    if e.opts.scenario == Scenario::List {
        r.float(
            "resource_updates_per_cpu_s",
            "resource updates per server CPU-second",
            p.cpu.per_cpu_second(m.resource_updates + m.coalesced),
            "",
        );
    }
    let failures = p.lost
        + m.wrong
        + m.no_note
        + m.bad_bodies
        + m.non_2xx()
        + p.unanswered
        + m.terminated_by_server
        + m.closed_connections;
    Check {
        failures,
        total: p.expected + m.publish_sent,
    }
}

#[cfg(test)]
mod tests {
    use super::ring;

    #[test]
    fn rings_are_mutual() {
        for (users, k) in [(50u32, 4u32), (10, 3), (10, 9), (11, 10), (1000, 20)] {
            for u in 0..users {
                let mine = ring(u, users, k);
                assert_eq!(mine.len(), k as usize);
                let mut sorted = mine.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), k as usize, "distinct");
                assert!(!mine.contains(&u));
                for b in mine {
                    assert!(ring(b, users, k).contains(&u), "{u} <-> {b}");
                }
            }
        }
    }
}
