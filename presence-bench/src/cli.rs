//! The command line: `presence-bench SCENARIO [OPTIONS]`, parsed by hand (as the daemon's own).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// U users with K mutual buddies each, then PUBLISH changes: PUBLISH→NOTIFY latency.
    Fanout,
    /// New subscription dialogs per second (subscribe, first NOTIFY, unsubscribe).
    Churn,
    /// N subscriptions held: server memory per subscription.
    Hold,
    /// List SUBSCRIBEs (RFC 5367 body) then changes: resource updates per second.
    List,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Churn => "churn",
            Scenario::Hold => "hold",
            Scenario::List => "list",
        }
    }
}

/// How many failures (lost or wrong NOTIFYs, non-2xx answers, timeouts) are tolerated before
/// the exit status is 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// At most this many.
    Count(u64),
    /// At most this fraction of the expected NOTIFYs plus requests sent.
    Fraction(f64),
}

impl Tolerance {
    /// Whether `failures` out of `total` is acceptable.
    pub fn accepts(self, failures: u64, total: u64) -> bool {
        match self {
            Tolerance::Count(n) => failures <= n,
            Tolerance::Fraction(f) => failures as f64 <= f * total as f64,
        }
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Count(n) => write!(f, "{n}"),
            Tolerance::Fraction(x) => write!(f, "{}%", x * 100.0),
        }
    }
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    /// `--server HOST:PORT`, repeatable (default 127.0.0.1:5065): several are the nodes of one
    /// cluster; connection i goes to server i % n (see [`Options::server_of_conn`]).
    pub servers: Vec<SocketAddr>,
    /// `--domain` of every user and list URI.
    pub domain: String,
    /// `--users U`; None: the scenario's default.
    pub users: Option<usize>,
    /// `--buddies K` (fanout).
    pub buddies: usize,
    /// `--connections N`: proxy mode (all users over N connections, Record-Route); None: one
    /// connection per user.
    pub connections: Option<usize>,
    /// `--rate R` PUBLISH/s (0: saturate).
    pub rate: f64,
    /// `--saturate` (or `--rate 0`): as fast as the server completes them, `--window` in flight.
    pub saturate: bool,
    /// `--window W`: most PUBLISH (or churn dialogs) in flight.
    pub window: Option<usize>,
    /// `--duration D` of the measured phase.
    pub duration: Duration,
    /// `--grace S`: how long to wait for late NOTIFYs after the last PUBLISH.
    pub grace: Duration,
    /// `--setup-rate R`: most setup requests per second (0: no limit, only the window).
    pub setup_rate: f64,
    /// `--setup-window W`: most setup requests in flight.
    pub setup_window: usize,
    /// `--setup-timeout S`: longest time for one setup phase.
    pub setup_timeout: Duration,
    /// `--timeout S`: longest wait for one answer or NOTIFY during the measured phase.
    pub timeout: Duration,
    /// `--pid PID` (repeatable): server processes to sample in /proc.
    pub pids: Vec<u32>,
    /// `--store-pid PID` (repeatable): processes of a store the servers share (redis-server),
    /// sampled apart from the servers.
    pub store_pids: Vec<u32>,
    /// `--run-id ID`: part of every user name and Call-ID (default: random).
    pub run_id: Option<String>,
    /// `--user-prefix P` (default `bench-`).
    pub user_prefix: String,
    /// `--seed N`: the publishers' order.
    pub seed: u64,
    /// `--max-loss N` or `N%`.
    pub max_loss: Tolerance,
    /// `--threads N`: worker threads (1: a current_thread runtime).
    pub threads: usize,
    /// `--dialogs N` (churn): stop after N dialogs.
    pub dialogs: Option<u64>,
    /// `--subscriptions N` (hold).
    pub subscriptions: usize,
    /// `--hold-seconds S` (hold).
    pub hold_seconds: Duration,
    /// `--then-fanout` (hold): run the fan-out phase on the held subscriptions.
    pub then_fanout: bool,
    /// `--lists L` (list).
    pub lists: usize,
    /// `--entries E` (list).
    pub entries: usize,
    /// `--deflate` (list): zlib-compressed list bodies.
    pub deflate: bool,
    /// `--expires S` of SUBSCRIBEs.
    pub subscribe_expires: u32,
    /// `--publish-expires S`.
    pub publish_expires: u32,
    /// `--no-cleanup`: leave subscriptions and publications in place.
    pub no_cleanup: bool,
    /// `--user-agent UA`.
    pub user_agent: String,
    /// `--quiet`: no progress lines on stderr.
    pub quiet: bool,
    pub help: bool,
    pub version: bool,
}

/// A command line that cannot be obeyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\nTry 'presence-bench --help' for more information.",
            self.0
        )
    }
}

impl std::error::Error for UsageError {}

impl Default for Options {
    fn default() -> Options {
        Options {
            scenario: Scenario::Fanout,
            servers: vec![SocketAddr::from(([127, 0, 0, 1], 5065))],
            domain: "sip.example.org".to_owned(),
            users: None,
            buddies: 20,
            connections: None,
            rate: 300.0,
            saturate: false,
            window: None,
            duration: Duration::from_secs(10),
            grace: Duration::from_secs(5),
            setup_rate: 0.0,
            setup_window: 200,
            setup_timeout: Duration::from_secs(120),
            timeout: Duration::from_secs(5),
            pids: Vec::new(),
            store_pids: Vec::new(),
            run_id: None,
            user_prefix: "bench-".to_owned(),
            seed: 1,
            max_loss: Tolerance::Count(0),
            threads: 1,
            dialogs: None,
            subscriptions: 10_000,
            hold_seconds: Duration::ZERO,
            then_fanout: false,
            lists: 10,
            entries: 100,
            deflate: false,
            subscribe_expires: 600,
            publish_expires: 3600,
            no_cleanup: false,
            user_agent: "presence-bench".to_owned(),
            quiet: false,
            help: false,
            version: false,
        }
    }
}

impl Options {
    /// The population: `--users`, or the scenario's default.
    pub fn user_count(&self) -> usize {
        match (self.users, self.scenario) {
            (Some(u), _) => u,
            (None, Scenario::List) => self.lists.max(self.entries + 1),
            (None, _) => 1000,
        }
    }

    /// The in-flight cap of the measured phase.
    pub fn effective_window(&self) -> usize {
        match (self.window, self.scenario) {
            (Some(w), _) => w,
            (None, Scenario::Churn) => 50,
            (None, _) if self.saturate => 64,
            (None, _) => 1000,
        }
    }

    /// Whether all users share `--connections` connections (proxy mode).
    pub fn proxy_mode(&self) -> bool {
        self.connections.is_some()
    }

    /// The servers, as given (comma-separated).
    pub fn servers_text(&self) -> String {
        self.servers
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index in `servers` of the server connection `conn` goes to: `conn % servers`.
    pub fn server_of_conn(&self, conn: u32) -> usize {
        conn as usize % self.servers.len().max(1)
    }

    /// Buddies per user for the scenarios that build the mutual mesh: `--buddies` (fanout) or
    /// `--subscriptions / users` (hold).
    pub fn mesh_buddies(&self) -> usize {
        match self.scenario {
            Scenario::Hold => self.subscriptions / self.user_count().max(1),
            _ => self.buddies,
        }
    }
}

/// The `--help` text.
pub fn usage() -> String {
    format!(
        "presence-bench {} - load tool for SIP presence servers over TCP\n\
         \n\
         Usage: presence-bench SCENARIO [OPTIONS]\n\
         \n\
         Scenarios:\n\
         \x20 fanout   U users, each with K mutual buddies, then PUBLISH changes at --rate for\n\
         \x20          --duration: PUBLISH->NOTIFY latency, NOTIFYs/s, lost and wrong NOTIFYs\n\
         \x20 churn    new subscription dialogs (200 + first NOTIFY, then unsubscribe) per second\n\
         \x20 hold     --subscriptions held (mutual mesh): server memory per subscription\n\
         \x20 list     --lists list SUBSCRIBEs of --entries entries, then changes: resource\n\
         \x20          updates per second and their latency\n\
         \n\
         Target and population:\n\
         \x20     --server HOST:PORT   server to load (default 127.0.0.1:5065). Repeatable: the\n\
         \x20                          nodes of one cluster; connection i goes to server i mod n\n\
         \x20                          (per-user mode: user i's), and in proxy mode a single\n\
         \x20                          SUBSCRIBE goes to a connection of another node than its\n\
         \x20                          presentity's PUBLISHes (every NOTIFY crosses nodes);\n\
         \x20                          a user publishes again once its NOTIFYs are all in\n\
         \x20     --domain DOMAIN      domain of every URI (default sip.example.org)\n\
         \x20     --users U            users (default 1000; list: max(L, E+1))\n\
         \x20     --buddies K          mutual buddies per user (fanout, default 20)\n\
         \x20     --connections N      proxy mode: all users over N connections, SUBSCRIBEs\n\
         \x20                          with a Record-Route to their connection (default: one\n\
         \x20                          connection per user)\n\
         \x20     --run-id ID          part of user names and Call-IDs (default: random)\n\
         \x20     --user-prefix P      user names are P<run-id>-00001... (default bench-)\n\
         \x20     --user-agent UA      User-Agent of every request (default presence-bench)\n\
         \n\
         Load:\n\
         \x20     --rate R             PUBLISH per second (default 300; 0 = --saturate)\n\
         \x20     --saturate           as fast as the server completes them (answer and every\n\
         \x20                          NOTIFY), at most --window in flight\n\
         \x20     --window W           most PUBLISH (churn: dialogs) in flight (default: 1000;\n\
         \x20                          saturate 64; churn 50)\n\
         \x20     --duration S         measured phase (default 10)\n\
         \x20     --grace S            wait for late NOTIFYs after the last PUBLISH (default 5)\n\
         \x20     --timeout S          an answer or NOTIFY later than this is late (default 5)\n\
         \x20     --seed N             order of the publishers (default 1)\n\
         \x20     --dialogs N          churn: stop after N dialogs (default: --duration only)\n\
         \x20     --subscriptions N    hold: subscriptions to hold (default 10000)\n\
         \x20     --hold-seconds S     hold: keep them this long before cleaning up\n\
         \x20     --then-fanout        hold: then run the fanout phase on them\n\
         \x20     --lists L            list: list subscriptions (default 10)\n\
         \x20     --entries E          list: entries per list (default 100)\n\
         \x20     --deflate            list: zlib-compressed list bodies (Content-Encoding)\n\
         \x20     --expires S          SUBSCRIBE Expires (default 600)\n\
         \x20     --publish-expires S  PUBLISH Expires (default 3600)\n\
         \x20     --setup-rate R       most setup requests per second (default 0: no limit)\n\
         \x20     --setup-window W     most setup requests in flight (default 200)\n\
         \x20     --setup-timeout S    longest setup phase (default 120)\n\
         \x20     --no-cleanup         leave subscriptions and publications on the server\n\
         \n\
         Measurement and output:\n\
         \x20     --pid PID            server process to sample in /proc (repeatable; its child\n\
         \x20                          processes are included)\n\
         \x20     --store-pid PID      process of a store the servers share (redis-server),\n\
         \x20                          sampled apart (repeatable): store_cpu_s, and NOTIFYs per\n\
         \x20                          CPU-second of servers + store\n\
         \x20     --max-loss N|P%      failures tolerated before exit status 1 (default 0)\n\
         \x20     --threads N          worker threads (default 1: current_thread runtime)\n\
         \x20 -q, --quiet              no progress lines on stderr\n\
         \x20 -h, --help; -V, --version\n\
         \n\
         Prints a human summary, then one JSON object as the last line. Exit status: 0, 1 when\n\
         failures exceed --max-loss, 2 for a bad command line, 3 when the setup failed.\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Parses the arguments (without the program name).
pub fn parse<I, S>(args: I) -> Result<Options, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut o = Options::default();
    let mut scenario = None;
    let mut servers_given = false;
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .ok_or_else(|| UsageError(format!("{name} needs {what}"))),
            }
        };
        match name.as_str() {
            "-h" | "--help" => o.help = true,
            "-V" | "--version" => o.version = true,
            "-q" | "--quiet" => o.quiet = true,
            "--server" => {
                let addr = parse_addr(&value("HOST:PORT")?)?;
                if !servers_given {
                    o.servers.clear();
                    servers_given = true;
                }
                o.servers.push(addr);
            }
            "--domain" => o.domain = non_empty(&name, value("a domain")?)?,
            "--users" => o.users = Some(positive(&name, &value("a count")?)?),
            "--buddies" => o.buddies = positive(&name, &value("a count")?)?,
            "--connections" => o.connections = Some(positive(&name, &value("a count")?)?),
            "--rate" => o.rate = number(&name, &value("a rate")?)?,
            "--saturate" => o.saturate = true,
            "--window" => o.window = Some(positive(&name, &value("a count")?)?),
            "--duration" => o.duration = seconds(&name, &value("seconds")?)?,
            "--grace" => o.grace = seconds(&name, &value("seconds")?)?,
            "--timeout" => o.timeout = seconds(&name, &value("seconds")?)?,
            "--setup-rate" => o.setup_rate = number(&name, &value("a rate")?)?,
            "--setup-window" => o.setup_window = positive(&name, &value("a count")?)?,
            "--setup-timeout" => o.setup_timeout = seconds(&name, &value("seconds")?)?,
            "--pid" => o.pids.push(integer(&name, &value("a process id")?)?),
            "--store-pid" => o.store_pids.push(integer(&name, &value("a process id")?)?),
            "--run-id" => {
                let v = value("an id")?;
                if !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(UsageError(format!(
                        "--run-id: letters and digits only, not {v:?}"
                    )));
                }
                o.run_id = Some(v);
            }
            "--user-prefix" => {
                let v = value("a prefix")?;
                if !v
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                {
                    return Err(UsageError(format!(
                        "--user-prefix: letters, digits, '-', '_', '.' only, not {v:?}"
                    )));
                }
                o.user_prefix = v;
            }
            "--user-agent" => o.user_agent = non_empty(&name, value("a string")?)?,
            "--seed" => o.seed = integer(&name, &value("a number")?)?,
            "--max-loss" => o.max_loss = tolerance(&value("N or P%")?)?,
            "--threads" => o.threads = positive(&name, &value("a count")?)?,
            "--dialogs" => o.dialogs = Some(integer(&name, &value("a count")?)?),
            "--subscriptions" => o.subscriptions = positive(&name, &value("a count")?)?,
            "--hold-seconds" => o.hold_seconds = seconds(&name, &value("seconds")?)?,
            "--then-fanout" => o.then_fanout = true,
            "--lists" => o.lists = positive(&name, &value("a count")?)?,
            "--entries" => o.entries = positive(&name, &value("a count")?)?,
            "--deflate" => o.deflate = true,
            "--expires" => o.subscribe_expires = integer(&name, &value("seconds")?)?,
            "--publish-expires" => o.publish_expires = integer(&name, &value("seconds")?)?,
            "--no-cleanup" => o.no_cleanup = true,
            s if s.starts_with('-') => return Err(UsageError(format!("unknown option {s}"))),
            s => {
                if scenario.is_some() {
                    return Err(UsageError(format!("unexpected argument {s:?}")));
                }
                scenario = Some(match s {
                    "fanout" => Scenario::Fanout,
                    "churn" => Scenario::Churn,
                    "hold" => Scenario::Hold,
                    "list" => Scenario::List,
                    other => {
                        return Err(UsageError(format!(
                            "unknown scenario {other:?} (fanout, churn, hold, list)"
                        )));
                    }
                });
            }
        }
    }
    if o.help || o.version {
        return Ok(o);
    }
    o.scenario = scenario.ok_or_else(|| UsageError("no scenario given".to_owned()))?;
    if o.rate == 0.0 {
        o.saturate = true;
    }
    check(&o)?;
    Ok(o)
}

/// Consistency of the population with the scenario.
fn check(o: &Options) -> Result<(), UsageError> {
    let users = o.user_count();
    if matches!(o.scenario, Scenario::Fanout | Scenario::Hold) {
        let k = o.mesh_buddies();
        if k == 0 {
            return Err(UsageError(
                "hold: --subscriptions must be at least --users".to_owned(),
            ));
        }
        if k >= users {
            return Err(UsageError(format!(
                "{k} buddies need at least {} users",
                k + 1
            )));
        }
        if k % 2 == 1 && users % 2 == 1 {
            return Err(UsageError(format!(
                "an odd number of buddies ({k}) needs an even number of users (mutual pairs)"
            )));
        }
    }
    if o.scenario == Scenario::Churn && users < 2 {
        return Err(UsageError("churn needs at least 2 users".to_owned()));
    }
    if o.scenario == Scenario::List {
        if users < o.entries + 1 {
            return Err(UsageError(format!(
                "{} entries need at least {} users",
                o.entries,
                o.entries + 1
            )));
        }
        if users < o.lists {
            return Err(UsageError(format!(
                "{} lists need at least {} users (one list per owner)",
                o.lists, o.lists
            )));
        }
    }
    if let Some(n) = o.connections
        && n > users
    {
        return Err(UsageError(format!(
            "--connections {n} is more than the {users} users"
        )));
    }
    let servers = o.servers.len();
    let conns = o.connections.unwrap_or(users);
    if conns < servers {
        return Err(UsageError(format!(
            "{servers} servers need at least {servers} {}",
            if o.proxy_mode() {
                "connections"
            } else {
                "users"
            }
        )));
    }
    Ok(())
}

fn parse_addr(v: &str) -> Result<SocketAddr, UsageError> {
    v.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| UsageError(format!("--server: cannot resolve {v:?} (HOST:PORT)")))
}

fn non_empty(name: &str, v: String) -> Result<String, UsageError> {
    if v.is_empty()
        || v.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(UsageError(format!("{name}: bad value {v:?}")));
    }
    Ok(v)
}

fn integer<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, UsageError> {
    v.parse()
        .map_err(|_| UsageError(format!("{name}: not a valid number: {v:?}")))
}

fn positive(name: &str, v: &str) -> Result<usize, UsageError> {
    match integer::<usize>(name, v)? {
        0 => Err(UsageError(format!("{name} must be at least 1"))),
        n => Ok(n),
    }
}

fn number(name: &str, v: &str) -> Result<f64, UsageError> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(UsageError(format!(
            "{name}: not a non-negative number: {v:?}"
        ))),
    }
}

fn seconds(name: &str, v: &str) -> Result<Duration, UsageError> {
    let x = number(name, v)?;
    Duration::try_from_secs_f64(x).map_err(|_| UsageError(format!("{name}: out of range: {v:?}")))
}

fn tolerance(v: &str) -> Result<Tolerance, UsageError> {
    let bad = || UsageError(format!("--max-loss: a count or a percentage, not {v:?}"));
    match v.strip_suffix('%') {
        Some(p) => match p.parse::<f64>() {
            Ok(x) if x.is_finite() && (0.0..=100.0).contains(&x) => {
                Ok(Tolerance::Fraction(x / 100.0))
            }
            _ => Err(bad()),
        },
        None => v.parse().map(Tolerance::Count).map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, UsageError> {
        parse(args.iter().copied())
    }

    #[test]
    fn defaults_and_options() {
        let o = p(&["fanout"]).unwrap();
        assert_eq!(o.scenario, Scenario::Fanout);
        assert_eq!(o.user_count(), 1000);
        assert!(!o.proxy_mode());
        assert_eq!(o.effective_window(), 1000);
        let o = p(&[
            "fanout",
            "--users=50",
            "--buddies",
            "4",
            "--connections",
            "2",
            "--rate",
            "0",
            "--pid",
            "12",
            "--pid=13",
            "--max-loss",
            "0.5%",
        ])
        .unwrap();
        assert_eq!(o.user_count(), 50);
        assert!(o.saturate && o.proxy_mode());
        assert_eq!(o.effective_window(), 64);
        assert_eq!(o.pids, vec![12, 13]);
        assert_eq!(o.max_loss, Tolerance::Fraction(0.005));
        let o = p(&["list", "--entries", "20", "--lists", "3"]).unwrap();
        assert_eq!(o.user_count(), 21);
        let o = p(&["hold", "--users", "100", "--subscriptions", "1000"]).unwrap();
        assert_eq!(o.mesh_buddies(), 10);
    }

    #[test]
    fn errors() {
        assert!(p(&[]).is_err());
        assert!(p(&["fanout", "--bogus"]).is_err());
        assert!(p(&["fanout", "--users"]).is_err());
        assert!(p(&["fanout", "--users", "0"]).is_err());
        assert!(p(&["fanout", "--users", "10", "--buddies", "10"]).is_err());
        assert!(p(&["fanout", "--users", "11", "--buddies", "3"]).is_err());
        assert!(p(&["fanout", "--users", "10", "--buddies", "3"]).is_ok());
        assert!(p(&["fanout", "--rate", "-1"]).is_err());
        assert!(p(&["fanout", "--run-id", "a b"]).is_err());
        assert!(p(&["list", "--users", "5", "--entries", "5"]).is_err());
        assert!(p(&["fanout", "churn"]).is_err());
        assert!(p(&["--help"]).unwrap().help);
    }

    #[test]
    fn several_servers() {
        let o = p(&["fanout"]).unwrap();
        assert_eq!(o.servers, vec![SocketAddr::from(([127, 0, 0, 1], 5065))]);
        assert_eq!(o.servers_text(), "127.0.0.1:5065");
        assert_eq!(o.server_of_conn(7), 0);
        // The first --server replaces the default, the next ones add nodes.
        let o = p(&["fanout", "--server", "127.0.0.1:6000"]).unwrap();
        assert_eq!(o.servers_text(), "127.0.0.1:6000");
        let o = p(&[
            "fanout",
            "--server",
            "127.0.0.1:6000",
            "--server=127.0.0.1:6001",
            "--server",
            "127.0.0.1:6002",
            "--connections",
            "6",
            "--pid",
            "10",
            "--pid",
            "11",
            "--store-pid",
            "20",
        ])
        .unwrap();
        assert_eq!(o.servers.len(), 3);
        assert_eq!(
            o.servers_text(),
            "127.0.0.1:6000,127.0.0.1:6001,127.0.0.1:6002"
        );
        assert_eq!(
            (0..6).map(|c| o.server_of_conn(c)).collect::<Vec<_>>(),
            vec![0, 1, 2, 0, 1, 2]
        );
        assert_eq!(o.pids, vec![10, 11]);
        assert_eq!(o.store_pids, vec![20]);
        // Every server needs a connection (proxy mode) or a user (per-user mode).
        let with = |extra: &[&str]| {
            let mut v = vec!["fanout"];
            for addr in ["127.0.0.1:6000", "127.0.0.1:6001", "127.0.0.1:6002"] {
                v.extend_from_slice(&["--server", addr]);
            }
            v.extend_from_slice(extra);
            p(&v)
        };
        assert!(with(&["--connections", "2"]).is_err());
        assert!(with(&["--connections", "3"]).is_ok());
        assert!(with(&["--users", "2", "--buddies", "1"]).is_err());
        assert!(with(&["--users", "4", "--buddies", "1"]).is_ok());
        assert!(p(&["fanout", "--server", "nowhere"]).is_err());
        assert!(p(&["fanout", "--store-pid", "x"]).is_err());
        assert!(usage().contains("--store-pid"));
    }

    #[test]
    fn tolerance_accepts() {
        assert!(Tolerance::Count(0).accepts(0, 10));
        assert!(!Tolerance::Count(0).accepts(1, 10));
        assert!(Tolerance::Fraction(0.1).accepts(1, 10));
        assert!(!Tolerance::Fraction(0.1).accepts(2, 10));
    }
}
