//! Metrics in the Prometheus text format (version 0.0.4), served by the optional HTTP endpoint
//! of `[presence-server] metrics-address` ([`crate::http`]).
//!
//! A scrape goes through the core task like any other input: the runtime's HTTP task sends
//! [`Input::Metrics`](crate::driver::Input::Metrics) with a [`Scrape`] and waits on its
//! [`ScrapeReply`]; the core task renders the text ([`render`]) from the core's
//! [`Stats`], the driver's figures ([`DriverFigures`]) and the databases' [`DatabaseMetrics`]
//! (which the query tasks update as they run), and replies. The channel is an `async-channel`
//! one, which works on any runtime.
//!
//! Every name starts with `presence_`; counters end with `_total`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use presence_proto::Stats;

/// The core task's half of a scrape: [`Scrape::reply`] hands the rendered text to the HTTP task.
#[derive(Debug)]
pub struct Scrape(async_channel::Sender<String>);

/// The HTTP task's half of a scrape.
#[derive(Debug)]
pub struct ScrapeReply(async_channel::Receiver<String>);

/// A scrape request and where its answer arrives.
pub fn scrape() -> (Scrape, ScrapeReply) {
    let (tx, rx) = async_channel::bounded(1);
    (Scrape(tx), ScrapeReply(rx))
}

impl Scrape {
    /// Answers the scrape (never blocks; ignored when the HTTP task gave up).
    pub fn reply(self, text: String) {
        let _ = self.0.try_send(text);
    }
}

impl ScrapeReply {
    /// The rendered metrics; None when the core task dropped the request (shutting down).
    pub async fn recv(self) -> Option<String> {
        self.0.recv().await.ok()
    }
}

/// Upper bounds (seconds) of the query latency histogram's buckets, as written in `le` labels.
pub const LATENCY_BUCKETS: [(&str, Duration); 14] = [
    ("0.0005", Duration::from_micros(500)),
    ("0.001", Duration::from_millis(1)),
    ("0.0025", Duration::from_micros(2500)),
    ("0.005", Duration::from_millis(5)),
    ("0.01", Duration::from_millis(10)),
    ("0.025", Duration::from_millis(25)),
    ("0.05", Duration::from_millis(50)),
    ("0.1", Duration::from_millis(100)),
    ("0.25", Duration::from_millis(250)),
    ("0.5", Duration::from_millis(500)),
    ("1", Duration::from_secs(1)),
    ("2.5", Duration::from_millis(2500)),
    ("5", Duration::from_secs(5)),
    ("10", Duration::from_secs(10)),
];

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS`]), updated with atomics from any
/// task or thread.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound (`+Inf`).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|(_, bound)| elapsed <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the histogram's `_bucket`, `_sum` and `_count` lines (HELP and TYPE are the
    /// caller's).
    fn write(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, (le, _)) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        // The count of the +Inf bucket, read once, so that the lines agree with each other.
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// What the databases count, updated by the query tasks ([`crate::Databases::execute`]).
#[derive(Debug, Default)]
pub struct DatabaseMetrics {
    /// SQL statements sent.
    pub(crate) statements: AtomicU64,
    /// Duration of each query (one core query: one or more statements), successful or not.
    pub latency: Histogram,
    /// Queries that failed (database unreachable, SQL error, timeout).
    pub(crate) errors: AtomicU64,
}

impl DatabaseMetrics {
    /// Records a finished query.
    pub fn record(&self, elapsed: Duration, ok: bool) {
        self.latency.observe(elapsed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// SQL statements sent so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Queries that failed so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// What the driver knows and the core does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverFigures {
    /// Connections in the driver's table (inbound, and outbound being established or open).
    pub connections: usize,
    /// Bytes queued to sockets and not yet written.
    pub pending_output: usize,
    /// Connections closed because their peer did not read (`max-pending-output`).
    pub slow_readers_closed: u64,
}

/// One metric family: HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Renders every metric in the Prometheus text format.
pub fn render(stats: &Stats, driver: &DriverFigures, db: Option<&DatabaseMetrics>) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;
    family(
        o,
        "presence_build_info",
        "gauge",
        "The server's version (the value is always 1).",
    );
    let _ = writeln!(
        o,
        "presence_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    // Flexisip's counters.
    let gauges = [
        (
            "presence_presentities",
            "Presentities known (published, watched or both).",
            stats.presentities,
        ),
        (
            "presence_publications",
            "Publications (ETags) alive.",
            stats.publications,
        ),
        (
            "presence_subscriptions",
            "Subscriptions alive, to single presentities and to resource lists.",
            stats.subscriptions,
        ),
        (
            "presence_list_subscriptions",
            "Subscriptions to resource lists alive (included in presence_subscriptions).",
            stats.list_subscriptions,
        ),
        (
            "presence_connections",
            "TCP connections open or being established.",
            driver.connections,
        ),
        (
            "presence_pending_output_bytes",
            "Bytes queued to sockets and not yet written.",
            driver.pending_output,
        ),
        ("presence_timers", "Timers armed in the core.", stats.timers),
    ];
    for (name, help, value) in gauges {
        single(o, name, "gauge", help, value as u64);
    }

    let counters = [
        (
            "presence_requests_received_total",
            "SIP requests received (answered or not).",
            stats.requests_received,
        ),
        (
            "presence_responses_sent_total",
            "SIP responses sent.",
            stats.responses_sent,
        ),
        (
            "presence_notifies_sent_total",
            "NOTIFY requests sent.",
            stats.notifies_sent,
        ),
        (
            "presence_protocol_errors_total",
            "Malformed messages and streams that cannot be framed.",
            stats.protocol_errors,
        ),
    ];
    for (name, help, value) in counters {
        single(o, name, "counter", help, value);
    }

    family(
        o,
        "presence_requests_total",
        "counter",
        "SIP requests answered, by method (PUBLISH, SUBSCRIBE, OTHER) and response status \
         (\"other\": a status not listed).",
    );
    for (method, status, n) in stats.requests_answered() {
        let _ = match status {
            0 => writeln!(
                o,
                "presence_requests_total{{method=\"{method}\",status=\"other\"}} {n}"
            ),
            s => writeln!(
                o,
                "presence_requests_total{{method=\"{method}\",status=\"{s}\"}} {n}"
            ),
        };
    }

    family(
        o,
        "presence_notify_outcomes_total",
        "counter",
        "Outcomes of the NOTIFYs of active subscriptions: ok (2xx), error (a final error \
         response), timeout (no final response in time), connection_lost (the connection closed \
         first).",
    );
    for (outcome, n) in [
        ("ok", stats.notify_ok),
        ("error", stats.notify_error_responses),
        ("timeout", stats.notify_timeouts),
        ("connection_lost", stats.notify_connection_lost),
    ] {
        let _ = writeln!(
            o,
            "presence_notify_outcomes_total{{outcome=\"{outcome}\"}} {n}"
        );
    }

    family(
        o,
        "presence_limit_rejections_total",
        "counter",
        "Requests refused with 503 because a limit was reached, by configuration key.",
    );
    for (limit, n) in [
        ("max-subscriptions", stats.subscription_limit_hits),
        (
            "max-subscriptions-per-connection",
            stats.connection_subscription_limit_hits,
        ),
        ("max-publications", stats.publication_limit_hits),
    ] {
        let _ = writeln!(
            o,
            "presence_limit_rejections_total{{limit=\"{limit}\"}} {n}"
        );
    }

    family(
        o,
        "presence_connections_closed_by_limit_total",
        "counter",
        "Connections closed by the server because of a limit, by configuration key \
         (max-pending-output: output produced faster than the limit between two writes, or a \
         peer that stopped reading).",
    );
    for (reason, n) in [
        ("partial-message-timeout", stats.partial_message_timeouts),
        ("idle-connection-timeout", stats.idle_connection_timeouts),
        (
            "max-pending-output",
            stats.output_overflows + driver.slow_readers_closed,
        ),
    ] {
        let _ = writeln!(
            o,
            "presence_connections_closed_by_limit_total{{limit=\"{reason}\"}} {n}"
        );
    }

    single(
        o,
        "presence_database_queries_total",
        "counter",
        "Database queries issued by the core (account lookups, list members).",
        stats.queries_issued,
    );
    single(
        o,
        "presence_database_query_failures_total",
        "counter",
        "Database queries the core saw fail (errors, and no answer within database-query-timeout).",
        stats.query_failures,
    );
    let none = DatabaseMetrics::default();
    let db = db.unwrap_or(&none);
    single(
        o,
        "presence_database_statements_total",
        "counter",
        "SQL statements sent to the databases.",
        db.statements(),
    );
    single(
        o,
        "presence_database_errors_total",
        "counter",
        "Database queries that ended in an error (unreachable database, SQL error, timeout).",
        db.errors(),
    );
    family(
        o,
        "presence_database_query_duration_seconds",
        "histogram",
        "Time taken by database queries, successful or not.",
    );
    db.latency
        .write(o, "presence_database_query_duration_seconds");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample named exactly `series` (name and labels).
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.write(&mut out, "x");
        assert_eq!(
            sample(&out, "x_bucket{le=\"0.0005\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&out, "x_bucket{le=\"0.0025\"}").as_deref(),
            Some("1")
        );
        assert_eq!(sample(&out, "x_bucket{le=\"0.005\"}").as_deref(), Some("3"));
        assert_eq!(sample(&out, "x_bucket{le=\"10\"}").as_deref(), Some("3"));
        assert_eq!(sample(&out, "x_bucket{le=\"+Inf\"}").as_deref(), Some("4"));
        assert_eq!(sample(&out, "x_count").as_deref(), Some("4"));
        assert_eq!(sample(&out, "x_sum").as_deref(), Some("60.0061"));
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn render_is_valid_exposition_text() {
        let mut stats = Stats {
            publications: 2,
            subscriptions: 3,
            list_subscriptions: 1,
            notify_ok: 5,
            output_overflows: 1,
            ..Stats::default()
        };
        stats.requests_by_status[0][0] = 7;
        let driver = DriverFigures {
            connections: 4,
            pending_output: 10,
            slow_readers_closed: 2,
        };
        let db = DatabaseMetrics::default();
        db.record(Duration::from_millis(2), true);
        db.record(Duration::from_millis(20), false);
        let text = render(&stats, &driver, Some(&db));
        assert_eq!(sample(&text, "presence_publications").as_deref(), Some("2"));
        assert_eq!(
            sample(&text, "presence_list_subscriptions").as_deref(),
            Some("1")
        );
        assert_eq!(sample(&text, "presence_connections").as_deref(), Some("4"));
        assert_eq!(
            sample(
                &text,
                "presence_requests_total{method=\"PUBLISH\",status=\"200\"}"
            )
            .as_deref(),
            Some("7")
        );
        assert_eq!(
            sample(
                &text,
                "presence_requests_total{method=\"OTHER\",status=\"other\"}"
            )
            .as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(&text, "presence_notify_outcomes_total{outcome=\"ok\"}").as_deref(),
            Some("5")
        );
        assert_eq!(
            sample(
                &text,
                "presence_connections_closed_by_limit_total{limit=\"max-pending-output\"}"
            )
            .as_deref(),
            Some("3")
        );
        assert_eq!(
            sample(&text, "presence_database_errors_total").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "presence_database_query_duration_seconds_count").as_deref(),
            Some("2")
        );

        // Every sample belongs to a family announced just before with HELP and TYPE; counters
        // end in _total; names are prefixed.
        let mut families: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    text.contains(&format!("# HELP {name} ")),
                    "no HELP for {name}"
                );
                assert!(name.starts_with("presence_"), "{name}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
                assert!(
                    !families.iter().any(|(n, _)| n == name),
                    "{name} announced twice"
                );
                families.push((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let (family, kind) = families.last().expect("a sample before any TYPE");
            let base = match kind.as_str() {
                "histogram" => name
                    .strip_suffix("_bucket")
                    .or_else(|| name.strip_suffix("_sum"))
                    .or_else(|| name.strip_suffix("_count"))
                    .unwrap_or(name),
                _ => name,
            };
            assert_eq!(base, family, "{line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.ends_with('\n'));
    }

    #[tokio::test]
    async fn a_scrape_is_answered_through_the_channel() {
        let (scrape, reply) = scrape();
        scrape.reply("text".to_owned());
        assert_eq!(reply.recv().await.as_deref(), Some("text"));
        let (scrape, reply) = super::scrape();
        drop(scrape);
        assert_eq!(reply.recv().await, None);
    }
}
