//! The daemon's configuration: the `[presence-server]` and `[module::Authentication]` sections of
//! flexisip.conf, typed and validated.
//!
//! Every `[presence-server]` key is described once in [`PRESENCE_KEYS`] (name, type, default, one
//! line of documentation); the defaults of [`DaemonConfig`] are obtained by applying those default
//! strings, so the table, [`dump_default_config`] and [`DaemonConfig::default`] cannot disagree.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::{EMBEDDED_POOL_SIZE, MAX_POOL_SIZE};
use crate::ini;
use crate::transport::{ListenAddr, Protocol, TransportUri, parse_transport};

/// Our section.
pub const PRESENCE_SECTION: &str = "presence-server";
/// The authentication module's section, read for long-term presence (user database).
pub const AUTH_SECTION: &str = "module::Authentication";

/// How a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true`/`false`/`1`/`0`/`yes`/`no`.
    Bool,
    /// A non-negative integer.
    Int,
    /// A duration; a plain number is in seconds; suffixes `ms`, `s`, `min`, `h`, `d`.
    Seconds,
    /// A duration; a plain number is in milliseconds; same suffixes.
    Millis,
    /// Free text (the rest of the line).
    String,
    /// Whitespace- (or comma-) separated words.
    StringList,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDef {
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    /// One line of documentation.
    pub doc: &'static str,
    /// False for keys that are recognised (so not reported as unknown) but have no effect yet.
    pub used: bool,
}

const fn key(name: &'static str, kind: Kind, default: &'static str, doc: &'static str) -> KeyDef {
    KeyDef {
        name,
        kind,
        default,
        doc,
        used: true,
    }
}

const fn unused(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    doc: &'static str,
) -> KeyDef {
    KeyDef {
        name,
        kind,
        default,
        doc,
        used: false,
    }
}

/// The keys of `[presence-server]`, in dump order. Names and defaults are Flexisip's, except
/// `max-expires` and `max-message-size`, which are ours.
pub const PRESENCE_KEYS: &[KeyDef] = &[
    key(
        "enabled",
        Kind::Bool,
        "true",
        "Run the presence server. When false no transport is opened and the process idles until stopped.",
    ),
    key(
        "transports",
        Kind::StringList,
        "sip:127.0.0.1:5065;transport=tcp",
        "SIP URIs to listen on, separated by spaces. Only transport=tcp is served (sips: and transport=tls are refused); port 0 picks a free port.",
    ),
    key(
        "expires",
        Kind::Seconds,
        "600",
        "Expiry of a PUBLISH that has no Expires header, in seconds (suffixes ms, s, min, h, d are accepted).",
    ),
    key(
        "max-expires",
        Kind::Seconds,
        "86400",
        "Longest expiry granted to a PUBLISH or a SUBSCRIBE, in seconds; longer requests are shortened (not in Flexisip).",
    ),
    key(
        "max-presence-elements",
        Kind::Int,
        "10",
        "Maximum number of publications (ETags) kept at once for one presentity; the oldest is dropped.",
    ),
    key(
        "support-legacy-client",
        Kind::Bool,
        "true",
        "Send NOTIFYs with 'Event: Presence' and bare list Content-ID values, as liblinphone < 5.4 needs; false sends the RFC forms.",
    ),
    key(
        "bypass-condition",
        Kind::String,
        "false",
        "Watchers whose User-Agent contains this text (case-insensitive) see full presence without a mutual subscription; 'false' or empty: nobody.",
    ),
    key(
        "max-message-size",
        Kind::Int,
        "65536",
        "Largest SIP message accepted on a connection, in bytes (head and body); a larger one closes the connection (not in Flexisip).",
    ),
    key(
        "notify-limit",
        Kind::Int,
        "200",
        "Most resources carried in one list NOTIFY; the others follow in later NOTIFYs.",
    ),
    key(
        "list-notify-interval",
        Kind::Millis,
        "2000",
        "Least time between two list NOTIFYs carrying changes, in ms (Flexisip hard-codes 2 s; not in Flexisip).",
    ),
    key(
        "list-overflow-delay",
        Kind::Millis,
        "500",
        "Delay before the follow-up of a list NOTIFY that reached notify-limit, in ms (not in Flexisip).",
    ),
    key(
        "max-list-entries",
        Kind::Int,
        "5000",
        "Most entries accepted in one resource list; a longer list is refused with 413 (not in Flexisip).",
    ),
    key(
        "max-inflated-size",
        Kind::Int,
        "1048576",
        "Largest size a deflate-compressed request body may inflate to, in bytes; beyond, 413 (not in Flexisip).",
    ),
    key(
        "max-subscriptions",
        Kind::Int,
        "100000",
        "Most subscriptions at once; a new SUBSCRIBE beyond gets 503 with Retry-After, refreshes still work (not in Flexisip).",
    ),
    key(
        "max-subscriptions-per-connection",
        Kind::Int,
        "10000",
        "Most subscriptions created over one connection; keep it large, as behind a proxy all users share a few connections (not in Flexisip).",
    ),
    key(
        "max-publications",
        Kind::Int,
        "100000",
        "Most publications at once; an initial PUBLISH beyond gets 503 with Retry-After (not in Flexisip).",
    ),
    key(
        "max-pending-output",
        Kind::Int,
        "16777216",
        "Most bytes queued for one connection and not yet written; a peer that stops reading is disconnected when its output passes this, in bytes (not in Flexisip).",
    ),
    key(
        "partial-message-timeout",
        Kind::Millis,
        "10000",
        "Longest time, in ms, a connection may hold an incomplete SIP message; past it the connection is closed (not in Flexisip).",
    ),
    key(
        "idle-connection-timeout",
        Kind::Seconds,
        "3600",
        "A connection without traffic for this long, in seconds, and used by no subscription is closed; 0: never (not in Flexisip).",
    ),
    key(
        "long-term-enabled",
        Kind::Bool,
        "true",
        "Long-term presence: watched users found in the account database appear open and away when they publish nothing, and phone aliases resolve. Default true with the embedded database; false (Flexisip's default) when [module::Authentication] db-implementation is set.",
    ),
    key(
        "accounts-database",
        Kind::String,
        "presence-accounts.db",
        "Embedded account database, used when [module::Authentication] has no db-implementation: a SQLite file (relative to the working directory; created with its schema when absent) or an sqlx URL (not in Flexisip).",
    ),
    key(
        "soci-users-with-phones-request",
        Kind::String,
        "",
        "SQL finding the accounts of a list of user parts (:phones, expanded into bound parameters); returns login, domain[, phone]. Empty: a default on the accounts table (username, domain, phone, activated).",
    ),
    key(
        "soci-user-with-phone-request",
        Kind::String,
        "",
        "SQL finding the login of one user part or phone number (:phone); used, once per user, when soci-users-with-phones-request is empty.",
    ),
    key(
        "account-cache-lifetime",
        Kind::Seconds,
        "300",
        "How long an account lookup (found or not) is remembered, in seconds (not in Flexisip, whose cache never expires).",
    ),
    key(
        "account-cache-size",
        Kind::Int,
        "100000",
        "Most account lookups remembered at once (not in Flexisip).",
    ),
    key(
        "max-query-batch",
        Kind::Int,
        "100",
        "Most user parts looked up by one SQL statement; a list of N users costs N / max-query-batch statements (not in Flexisip).",
    ),
    key(
        "database-query-timeout",
        Kind::Millis,
        "5000",
        "Longest wait for a database answer, in ms; past it the request is answered without it (not in Flexisip).",
    ),
    key(
        "rls-database-connection",
        Kind::String,
        "",
        "Database of server-known resource lists: an sqlx URL (sqlite://, postgres://, mysql://) or a soci connection string, which means MySQL as in Flexisip.",
    ),
    key(
        "rls-database-request",
        Kind::String,
        "",
        "SQL returning the members of a server-known list, one name-addr per row in the first column (named parameters :from, the subscriber, and :to, the list URI).",
    ),
    key(
        "rls-database-max-thread",
        Kind::Int,
        "50",
        "Connections to the list database (at most 64 are opened).",
    ),
    key(
        "rls-database-max-thread-queue-size",
        Kind::Int,
        "50",
        "List queries allowed to wait for a connection, on top of the account queries'.",
    ),
    key(
        "last-activity-retention-time",
        Kind::Millis,
        "86400000",
        "How long the time of last activity is remembered after a publication ends, in milliseconds.",
    ),
    key(
        "metrics-address",
        Kind::String,
        "",
        "Address (IP:port, e.g. 127.0.0.1:9150) of an HTTP endpoint serving metrics in the Prometheus text format at /metrics; port 0 picks a free port; empty: no endpoint (not in Flexisip).",
    ),
    key(
        "redis-server-uri",
        Kind::String,
        "",
        "Cluster mode: several nodes share short-term presence (publications, who watches whom) through this Redis server, e.g. redis://127.0.0.1:6379/0, or the master Redis Sentinel names, e.g. redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/mymaster/0; empty: a single node, no Redis (not in Flexisip).",
    ),
    key(
        "redis-key-prefix",
        Kind::String,
        "presence:",
        "Cluster mode: prefix of every Redis key and channel name, so that several services (or test runs) can share one Redis (not in Flexisip).",
    ),
    key(
        "cluster-node-name",
        Kind::String,
        "",
        "Cluster mode: this node's name in Redis, different on every node; empty: a random name at each start (not in Flexisip).",
    ),
    key(
        "cluster-timeout",
        Kind::Millis,
        "1000",
        "Cluster mode: longest wait for Redis, in ms; past it a request is answered from this node's state (not in Flexisip).",
    ),
    unused(
        "leak-detector",
        Kind::Bool,
        "false",
        "Not used by this server (a debugging aid of Flexisip's SIP stack); accepted for compatibility.",
    ),
];

/// Deprecated spellings of `[presence-server]` keys: (old, new). Read with a warning; the new key
/// wins when both are set.
pub const PRESENCE_DEPRECATED: &[(&str, &str)] = &[
    ("soci-connection-string", "rls-database-connection"),
    ("external-list-subscription-request", "rls-database-request"),
    ("max-thread", "rls-database-max-thread"),
    (
        "max-thread-queue-size",
        "rls-database-max-thread-queue-size",
    ),
];

/// The `[module::Authentication]` keys we read (the section's other keys belong to the proxy and
/// are ignored silently): where the accounts of long-term presence are.
pub const AUTH_KEYS: &[KeyDef] = &[
    key(
        "db-implementation",
        Kind::String,
        "file",
        "User database backend: file or soci; when absent, the embedded database (accounts-database).",
    ),
    key(
        "file-path",
        Kind::String,
        "",
        "Password file of the file backend.",
    ),
    key(
        "soci-backend",
        Kind::String,
        "mysql",
        "soci backend of the user database.",
    ),
    key(
        "soci-connection-string",
        Kind::String,
        "",
        "Connection string of the user database.",
    ),
    unused(
        "soci-password-request",
        Kind::String,
        "",
        "Password query (not used by presence).",
    ),
    key(
        "soci-poolsize",
        Kind::Int,
        "100",
        "Connections to the user database (at most 64 are opened).",
    ),
    key(
        "soci-max-queue-size",
        Kind::Int,
        "1000",
        "Queries allowed to wait for a connection.",
    ),
    unused(
        "cache-expire",
        Kind::Seconds,
        "1800",
        "Password cache lifetime (not used by presence).",
    ),
    key(
        "soci-user-with-phone-request",
        Kind::String,
        "",
        "Deprecated here: fallback for the [presence-server] key of the same name.",
    ),
    key(
        "soci-users-with-phones-request",
        Kind::String,
        "",
        "Deprecated here: fallback for the [presence-server] key of the same name.",
    ),
];

/// Deprecated spellings of `[module::Authentication]` keys.
pub const AUTH_DEPRECATED: &[(&str, &str)] = &[("datasource", "file-path")];

/// Server-side resource lists database (`rls-database-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsDatabase {
    pub connection: String,
    pub request: String,
    pub max_thread: u32,
    pub max_thread_queue_size: u32,
}

/// What we read from `[module::Authentication]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// True when the file sets `db-implementation`: the operator's account database is used
    /// instead of the embedded one.
    pub configured: bool,
    pub db_implementation: String,
    pub file_path: String,
    pub soci_backend: String,
    pub soci_connection_string: String,
    pub soci_poolsize: u32,
    pub soci_max_queue_size: u32,
    /// The deprecated phone queries, only when explicitly set in this section.
    pub soci_user_with_phone_request: Option<String>,
    pub soci_users_with_phones_request: Option<String>,
}

/// The daemon's whole configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `transports` that are served (TCP ones), in order.
    pub listen: Vec<ListenAddr>,
    /// What the core needs (`contact` is filled in by the runtime once it has bound).
    pub proto: presence_proto::Config,
    /// `long-term-enabled` (also in `proto`): when false no account database is opened.
    pub long_term_enabled: bool,
    /// `accounts-database`: the embedded account database (a SQLite path or an sqlx URL).
    pub accounts_database: String,
    /// `rls-database-*`.
    pub rls_database: RlsDatabase,
    /// `soci-user-with-phone-request`.
    pub soci_user_with_phone_request: String,
    /// `soci-users-with-phones-request`.
    pub soci_users_with_phones_request: String,
    /// `leak-detector` (no effect).
    pub leak_detector: bool,
    /// `metrics-address`: where the metrics endpoint listens (None: no endpoint).
    pub metrics_address: Option<SocketAddr>,
    /// `redis-server-uri` (empty: no cluster).
    pub redis_server_uri: String,
    /// `redis-key-prefix`.
    pub redis_key_prefix: String,
    /// `cluster-node-name`.
    pub cluster_node_name: String,
    /// `cluster-timeout`.
    pub cluster_timeout: Duration,
    /// `[module::Authentication]`.
    pub auth: AuthConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        let mut cfg = DaemonConfig::blank();
        let mut warnings = Vec::new();
        for def in PRESENCE_KEYS {
            if let Err(reason) = apply_presence(&mut cfg, def.name, def.default, &mut warnings) {
                unreachable!("default of {} is invalid: {reason}", def.name);
            }
        }
        for def in AUTH_KEYS {
            if let Err(reason) = apply_auth(&mut cfg, def.name, def.default) {
                unreachable!("default of {} is invalid: {reason}", def.name);
            }
        }
        cfg.auth.soci_user_with_phone_request = None;
        cfg.auth.soci_users_with_phones_request = None;
        finish(&mut cfg, true, "defaults", &mut warnings);
        cfg
    }
}

/// Where the accounts of long-term presence are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountBackend {
    /// No `db-implementation` in the file: our embedded database (`accounts-database`).
    Embedded { database: String },
    /// `db-implementation=file`: Flexisip's password file.
    File { path: String },
    /// `db-implementation=soci`: an SQL database.
    Soci { backend: String, connection: String },
    /// Another `db-implementation` (Flexisip's test-only `fixed`, or a typo).
    Unsupported(String),
}

impl DaemonConfig {
    /// Where the accounts are, per `[module::Authentication]`.
    pub fn account_backend(&self) -> AccountBackend {
        if !self.auth.configured {
            return AccountBackend::Embedded {
                database: self.accounts_database.clone(),
            };
        }
        match self.auth.db_implementation.trim() {
            "file" => AccountBackend::File {
                path: self.auth.file_path.clone(),
            },
            "soci" => AccountBackend::Soci {
                backend: self.auth.soci_backend.clone(),
                connection: self.auth.soci_connection_string.clone(),
            },
            other => AccountBackend::Unsupported(other.to_owned()),
        }
    }

    /// Connections to the account database.
    pub fn account_pool_size(&self) -> u32 {
        match self.account_backend() {
            AccountBackend::Soci { .. } => self.auth.soci_poolsize.min(MAX_POOL_SIZE),
            _ => EMBEDDED_POOL_SIZE,
        }
    }

    /// Connections to the list database.
    pub fn list_pool_size(&self) -> u32 {
        self.rls_database.max_thread.clamp(1, MAX_POOL_SIZE)
    }

    /// The cluster store's settings (None: a single node, `redis-server-uri` is empty).
    pub fn cluster(&self) -> Option<crate::cluster::ClusterSettings> {
        let uri = self.redis_server_uri.trim();
        (!uri.is_empty()).then(|| crate::cluster::ClusterSettings {
            uri: uri.to_owned(),
            prefix: self.redis_key_prefix.clone(),
            timeout: self.cluster_timeout,
        })
    }

    /// Whether server-known lists are configured (`rls-database-connection` and
    /// `rls-database-request` both set).
    pub fn server_known_lists(&self) -> bool {
        !self.rls_database.connection.trim().is_empty()
            && !self.rls_database.request.trim().is_empty()
    }

    fn blank() -> DaemonConfig {
        DaemonConfig {
            enabled: false,
            listen: Vec::new(),
            proto: presence_proto::Config::default(),
            long_term_enabled: false,
            accounts_database: String::new(),
            rls_database: RlsDatabase {
                connection: String::new(),
                request: String::new(),
                max_thread: 0,
                max_thread_queue_size: 0,
            },
            soci_user_with_phone_request: String::new(),
            soci_users_with_phones_request: String::new(),
            leak_detector: false,
            metrics_address: None,
            redis_server_uri: String::new(),
            redis_key_prefix: String::new(),
            cluster_node_name: String::new(),
            cluster_timeout: Duration::ZERO,
            auth: AuthConfig {
                configured: false,
                db_implementation: String::new(),
                file_path: String::new(),
                soci_backend: String::new(),
                soci_connection_string: String::new(),
                soci_poolsize: 0,
                soci_max_queue_size: 0,
                soci_user_with_phone_request: None,
                soci_users_with_phones_request: None,
            },
        }
    }
}

/// A configuration that was read, with the warnings to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: DaemonConfig,
    pub warnings: Vec<String>,
}

/// Why the configuration cannot be used. The process must exit non-zero with this message.
#[derive(Debug)]
pub struct ConfigError(pub Box<ConfigErrorKind>);

impl ConfigError {
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.0
    }
}

impl From<ConfigErrorKind> for ConfigError {
    fn from(kind: ConfigErrorKind) -> Self {
        ConfigError(Box::new(kind))
    }
}

/// The details of a [`ConfigError`].
#[derive(Debug)]
pub enum ConfigErrorKind {
    /// The file cannot be read.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A line of our section cannot be read.
    Syntax {
        origin: String,
        section: String,
        line: usize,
        text: String,
        reason: String,
    },
    /// A value is invalid.
    Value {
        origin: String,
        section: String,
        key: String,
        value: String,
        /// None for a default value combined with an invalid explicit one elsewhere.
        line: Option<usize>,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            ConfigErrorKind::Io { path, error } => {
                write!(
                    f,
                    "cannot read configuration file {}: {error}",
                    path.display()
                )
            }
            ConfigErrorKind::Syntax {
                origin,
                section,
                line,
                text,
                reason,
            } => write!(
                f,
                "configuration error in {origin} line {line}, section [{section}]: {reason}: {text:?}"
            ),
            ConfigErrorKind::Value {
                origin,
                section,
                key,
                value,
                line,
                reason,
            } => {
                write!(f, "configuration error in {origin}")?;
                if let Some(line) = line {
                    write!(f, " line {line}")?;
                }
                // A URI's password is not repeated (logs, terminals).
                let value = crate::cluster::without_password(value);
                write!(
                    f,
                    ": invalid value {value:?} for key '{key}' in section [{section}]: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Reads a configuration file.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::from(ConfigErrorKind::Io {
            path: path.to_owned(),
            error,
        })
    })?;
    parse_config(&text, &path.display().to_string())
}

/// Reads configuration text. `origin` names it in messages (usually the file path).
pub fn parse_config(text: &str, origin: &str) -> Result<Loaded, ConfigError> {
    let ini = ini::parse(text);
    let mut cfg = DaemonConfig::default();
    let mut warnings = Vec::new();
    let at = |line: usize| format!("{origin} line {line}");

    for issue in &ini.issues {
        match issue.section.as_deref() {
            Some(PRESENCE_SECTION) => {
                return Err(ConfigErrorKind::Syntax {
                    origin: origin.to_owned(),
                    section: PRESENCE_SECTION.to_owned(),
                    line: issue.line,
                    text: issue.text.clone(),
                    reason: issue.reason.to_owned(),
                }
                .into());
            }
            Some(AUTH_SECTION) | None => warnings.push(format!(
                "{}: {}: {:?}; line ignored",
                at(issue.line),
                issue.reason,
                issue.text
            )),
            Some(_) => {}
        }
    }

    // [presence-server]
    let ours: Vec<&ini::Entry> = ini
        .entries
        .iter()
        .filter(|e| e.section == PRESENCE_SECTION)
        .collect();
    let explicit: HashSet<&str> = ours.iter().map(|e| e.key.as_str()).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for entry in &ours {
        let name = match lookup(entry.key.as_str(), PRESENCE_KEYS, PRESENCE_DEPRECATED) {
            Lookup::Unknown => {
                warnings.push(format!(
                    "{}: unknown key '{}' in section [{PRESENCE_SECTION}]; ignored",
                    at(entry.line),
                    entry.key
                ));
                continue;
            }
            Lookup::Deprecated(new) if explicit.contains(new) => {
                warnings.push(format!(
                    "{}: key '{}' of [{PRESENCE_SECTION}] is deprecated and ignored because '{new}' is set",
                    at(entry.line),
                    entry.key
                ));
                continue;
            }
            Lookup::Deprecated(new) => {
                warnings.push(format!(
                    "{}: key '{}' of [{PRESENCE_SECTION}] is deprecated; use '{new}'",
                    at(entry.line),
                    entry.key
                ));
                new
            }
            Lookup::Known(name) => name,
        };
        if let Some(previous) = seen.insert(name, entry.line) {
            warnings.push(format!(
                "{}: key '{name}' of [{PRESENCE_SECTION}] was already set on line {previous}; the last value wins",
                at(entry.line)
            ));
        }
        apply_presence(&mut cfg, name, &entry.value, &mut warnings).map_err(|reason| {
            ConfigError::from(ConfigErrorKind::Value {
                origin: origin.to_owned(),
                section: PRESENCE_SECTION.to_owned(),
                key: entry.key.clone(),
                value: entry.value.clone(),
                line: Some(entry.line),
                reason,
            })
        })?;
        if let Some(def) = PRESENCE_KEYS.iter().find(|d| d.name == name)
            && !def.used
            && entry.value != def.default
        {
            warnings.push(format!(
                "{}: key '{name}' of [{PRESENCE_SECTION}] is not yet used by this server; ignored",
                at(entry.line)
            ));
        }
    }

    // [module::Authentication]: only the keys we know; the rest is the proxy's business.
    let auth: Vec<&ini::Entry> = ini
        .entries
        .iter()
        .filter(|e| e.section == AUTH_SECTION)
        .collect();
    let auth_explicit: HashSet<&str> = auth.iter().map(|e| e.key.as_str()).collect();
    for entry in &auth {
        let name = match lookup(entry.key.as_str(), AUTH_KEYS, AUTH_DEPRECATED) {
            Lookup::Unknown => continue,
            Lookup::Deprecated(new) if auth_explicit.contains(new) => continue,
            Lookup::Deprecated(new) => {
                warnings.push(format!(
                    "{}: key '{}' of [{AUTH_SECTION}] is deprecated; use '{new}'",
                    at(entry.line),
                    entry.key
                ));
                new
            }
            Lookup::Known(name) => name,
        };
        apply_auth(&mut cfg, name, &entry.value).map_err(|reason| {
            ConfigError::from(ConfigErrorKind::Value {
                origin: origin.to_owned(),
                section: AUTH_SECTION.to_owned(),
                key: entry.key.clone(),
                value: entry.value.clone(),
                line: Some(entry.line),
                reason,
            })
        })?;
    }
    // Flexisip falls back to the deprecated [module::Authentication] phone queries when they are
    // explicitly set and ours are not.
    for (ours_set, theirs, target, name) in [
        (
            explicit.contains("soci-user-with-phone-request"),
            cfg.auth.soci_user_with_phone_request.clone(),
            &mut cfg.soci_user_with_phone_request,
            "soci-user-with-phone-request",
        ),
        (
            explicit.contains("soci-users-with-phones-request"),
            cfg.auth.soci_users_with_phones_request.clone(),
            &mut cfg.soci_users_with_phones_request,
            "soci-users-with-phones-request",
        ),
    ] {
        if let (false, Some(value)) = (ours_set, theirs) {
            warnings.push(format!(
                "{origin}: [{AUTH_SECTION}] {name} is deprecated; set it in [{PRESENCE_SECTION}]"
            ));
            *target = value;
        }
    }

    cfg.auth.configured = auth_explicit.contains("db-implementation");
    finish(
        &mut cfg,
        explicit.contains("long-term-enabled"),
        origin,
        &mut warnings,
    );

    if cfg.proto.publish_default_expires > cfg.proto.max_expires {
        warnings.push(format!(
            "{origin}: [{PRESENCE_SECTION}] expires ({}) is longer than max-expires ({}); publications will be shortened",
            cfg.proto.publish_default_expires, cfg.proto.max_expires
        ));
    }
    Ok(Loaded {
        config: cfg,
        warnings,
    })
}

/// Where `key` of `[section]` is set in `text`: the line and value of its last setting (or of a
/// deprecated spelling of it), for error messages about settings checked after the reading.
/// A `[presence-server]` phone query set only in `[module::Authentication]` is found there.
pub fn locate(text: &str, section: &str, key: &str) -> Option<(usize, String)> {
    let ini = ini::parse(text);
    let deprecated = match section {
        PRESENCE_SECTION => PRESENCE_DEPRECATED,
        AUTH_SECTION => AUTH_DEPRECATED,
        _ => &[],
    };
    let find = |section: &str| {
        let spellings = || {
            std::iter::once(key).chain(
                deprecated
                    .iter()
                    .filter(|(_, new)| *new == key)
                    .map(|(old, _)| *old),
            )
        };
        // The key itself wins over a deprecated spelling, as when reading.
        spellings().find_map(|name| {
            ini.entries
                .iter()
                .rev()
                .find(|e| e.section == section && e.key == name)
                .map(|e| (e.line, e.value.clone()))
        })
    };
    find(section).or_else(|| match (section, key) {
        (PRESENCE_SECTION, "soci-users-with-phones-request" | "soci-user-with-phone-request") => {
            find(AUTH_SECTION)
        }
        _ => None,
    })
}

/// Settings that depend on several keys: long-term presence's default, server-known lists, the
/// core's query limits from the pool sizes.
fn finish(
    cfg: &mut DaemonConfig,
    long_term_explicit: bool,
    origin: &str,
    warnings: &mut Vec<String>,
) {
    if cfg.auth.configured && !long_term_explicit {
        // Flexisip refuses to start in this case; we keep its default.
        cfg.long_term_enabled = false;
        warnings.push(format!(
            "{origin}: [{AUTH_SECTION}] db-implementation is set but [{PRESENCE_SECTION}] \
             long-term-enabled is not: long-term presence is off, as in Flexisip; set \
             long-term-enabled=true to look watched users up in that database"
        ));
    }
    let rls = &cfg.rls_database;
    match (
        rls.connection.trim().is_empty(),
        rls.request.trim().is_empty(),
    ) {
        (false, true) => warnings.push(format!(
            "{origin}: [{PRESENCE_SECTION}] rls-database-connection is set but \
             rls-database-request is empty: server-known lists are off"
        )),
        (true, false) => warnings.push(format!(
            "{origin}: [{PRESENCE_SECTION}] rls-database-request is set but \
             rls-database-connection is empty: server-known lists are off"
        )),
        _ => {}
    }
    cfg.proto.long_term_enabled = cfg.long_term_enabled;
    cfg.proto.cluster = cfg.cluster().map(|c| presence_proto::ClusterConfig {
        node: cfg.cluster_node_name.clone(),
        timeout: c.timeout,
    });
    cfg.proto.server_known_lists = cfg.server_known_lists();
    let (account_slots, account_queue) = match (cfg.long_term_enabled, cfg.account_backend()) {
        (false, _) => (0, 0),
        // Answered from memory: no connection to wait for.
        (true, AccountBackend::File { .. }) => (16, 1000),
        (true, AccountBackend::Soci { .. }) => {
            (cfg.account_pool_size(), cfg.auth.soci_max_queue_size)
        }
        (true, _) => (cfg.account_pool_size(), 1000),
    };
    let (list_slots, list_queue) = if cfg.proto.server_known_lists {
        (cfg.list_pool_size(), cfg.rls_database.max_thread_queue_size)
    } else {
        (0, 0)
    };
    cfg.proto.max_inflight_queries = (account_slots + list_slots).max(1) as usize;
    cfg.proto.max_queued_queries = account_queue.saturating_add(list_queue) as usize;
}

enum Lookup {
    Known(&'static str),
    Deprecated(&'static str),
    Unknown,
}

fn lookup(name: &str, keys: &[KeyDef], deprecated: &[(&str, &'static str)]) -> Lookup {
    if let Some(def) = keys.iter().find(|d| d.name == name) {
        return Lookup::Known(def.name);
    }
    match deprecated.iter().find(|(old, _)| *old == name) {
        Some((_, new)) => Lookup::Deprecated(new),
        None => Lookup::Unknown,
    }
}

fn apply_presence(
    cfg: &mut DaemonConfig,
    name: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    match name {
        "enabled" => cfg.enabled = parse_bool(value)?,
        "transports" => cfg.listen = parse_transports(value, warnings)?,
        "expires" => cfg.proto.publish_default_expires = parse_seconds(value, 0)?,
        "max-expires" => cfg.proto.max_expires = parse_seconds(value, 1)?,
        "max-presence-elements" => {
            cfg.proto.max_presence_elements = parse_int(value, 1, u32::MAX.into())? as usize
        }
        "support-legacy-client" => cfg.proto.support_legacy_client = parse_bool(value)?,
        "bypass-condition" => {
            cfg.proto.bypass_condition =
                (!value.is_empty() && value != "false").then(|| value.to_owned())
        }
        "max-message-size" => {
            cfg.proto.max_message_size = parse_int(value, 1024, 64 * 1024 * 1024)? as usize
        }
        "notify-limit" => cfg.proto.notify_limit = parse_int(value, 1, u32::MAX.into())? as usize,
        "list-notify-interval" => {
            cfg.proto.list_notify_interval = parse_duration(value, Unit::Millis)?
        }
        "list-overflow-delay" => {
            cfg.proto.list_overflow_delay = parse_duration(value, Unit::Millis)?
        }
        "max-list-entries" => cfg.proto.max_list_entries = parse_int(value, 1, 1_000_000)? as usize,
        "max-inflated-size" => {
            cfg.proto.max_inflated_size = parse_int(value, 1024, 256 * 1024 * 1024)? as usize
        }
        "max-subscriptions" => {
            cfg.proto.max_subscriptions = parse_int(value, 1, 100_000_000)? as usize
        }
        "max-subscriptions-per-connection" => {
            cfg.proto.max_subscriptions_per_connection = parse_int(value, 1, 100_000_000)? as usize
        }
        "max-publications" => {
            cfg.proto.max_publications = parse_int(value, 1, 100_000_000)? as usize
        }
        "max-pending-output" => {
            cfg.proto.max_pending_output = parse_int(value, 64 * 1024, 1 << 40)? as usize
        }
        "partial-message-timeout" => {
            let d = parse_duration(value, Unit::Millis)?;
            if d < Duration::from_millis(100) {
                return Err("must be at least 100 ms".to_owned());
            }
            cfg.proto.partial_message_timeout = d
        }
        "idle-connection-timeout" => {
            let d = parse_duration(value, Unit::Seconds)?;
            cfg.proto.idle_connection_timeout = (!d.is_zero()).then_some(d)
        }
        "long-term-enabled" => cfg.long_term_enabled = parse_bool(value)?,
        "accounts-database" => {
            if value.trim().is_empty() {
                return Err("must name a SQLite file or give a database URL".to_owned());
            }
            cfg.accounts_database = value.trim().to_owned()
        }
        "account-cache-lifetime" => {
            cfg.proto.account_cache_lifetime = parse_duration(value, Unit::Seconds)?
        }
        "account-cache-size" => {
            cfg.proto.account_cache_size = parse_int(value, 0, 100_000_000)? as usize
        }
        "max-query-batch" => cfg.proto.max_query_batch = parse_int(value, 1, 10_000)? as usize,
        "database-query-timeout" => {
            let d = parse_duration(value, Unit::Millis)?;
            if d < Duration::from_millis(10) {
                return Err("must be at least 10 ms".to_owned());
            }
            cfg.proto.query_timeout = d
        }
        "rls-database-connection" => cfg.rls_database.connection = value.to_owned(),
        "rls-database-request" => cfg.rls_database.request = value.to_owned(),
        "rls-database-max-thread" => {
            cfg.rls_database.max_thread = parse_int(value, 1, u32::MAX.into())? as u32
        }
        "rls-database-max-thread-queue-size" => {
            cfg.rls_database.max_thread_queue_size = parse_int(value, 0, u32::MAX.into())? as u32
        }
        "soci-user-with-phone-request" => cfg.soci_user_with_phone_request = value.to_owned(),
        "soci-users-with-phones-request" => cfg.soci_users_with_phones_request = value.to_owned(),
        "last-activity-retention-time" => {
            cfg.proto.last_activity_retention = parse_duration(value, Unit::Millis)?
        }
        "leak-detector" => cfg.leak_detector = parse_bool(value)?,
        "redis-server-uri" => {
            let uri = value.trim();
            if !uri.is_empty() {
                redis_uri_ok(uri)?;
            }
            cfg.redis_server_uri = uri.to_owned()
        }
        "redis-key-prefix" => cfg.redis_key_prefix = value.trim().to_owned(),
        "cluster-node-name" => {
            let name = value.trim();
            if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("must not contain spaces or control characters".to_owned());
            }
            cfg.cluster_node_name = name.to_owned()
        }
        "cluster-timeout" => {
            let d = parse_duration(value, Unit::Millis)?;
            if d < Duration::from_millis(10) {
                return Err("must be at least 10 ms".to_owned());
            }
            cfg.cluster_timeout = d
        }
        "metrics-address" => {
            let value = value.trim();
            cfg.metrics_address = if value.is_empty() {
                None
            } else {
                Some(value.parse().map_err(|_| {
                    "expected an IP address and a port, e.g. 127.0.0.1:9150 or [::1]:9150 \
                     (empty: no metrics endpoint)"
                        .to_owned()
                })?)
            }
        }
        other => unreachable!("no handler for [presence-server] {other}"),
    }
    Ok(())
}

fn apply_auth(cfg: &mut DaemonConfig, name: &str, value: &str) -> Result<(), String> {
    let auth = &mut cfg.auth;
    match name {
        "db-implementation" => auth.db_implementation = value.trim().to_owned(),
        "file-path" => auth.file_path = value.to_owned(),
        "soci-backend" => auth.soci_backend = value.to_owned(),
        "soci-connection-string" => auth.soci_connection_string = value.to_owned(),
        "soci-poolsize" => auth.soci_poolsize = parse_int(value, 1, u32::MAX.into())? as u32,
        "soci-max-queue-size" => {
            auth.soci_max_queue_size = parse_int(value, 0, u32::MAX.into())? as u32
        }
        "cache-expire" => {
            parse_duration(value, Unit::Seconds)?;
        }
        "soci-password-request" => {}
        "soci-user-with-phone-request" => {
            auth.soci_user_with_phone_request = Some(value.to_owned())
        }
        "soci-users-with-phones-request" => {
            auth.soci_users_with_phones_request = Some(value.to_owned())
        }
        other => unreachable!("no handler for [module::Authentication] {other}"),
    }
    Ok(())
}

/// Checks a Redis URI's form (without connecting).
fn redis_uri_ok(uri: &str) -> Result<(), String> {
    let scheme = uri.split_once("://").map(|(s, _)| s);
    if scheme == Some("redis+sentinel") {
        return crate::cluster::sentinel::Sentinel::parse(uri)
            .map(drop)
            .map_err(|e| format!("not a usable Redis Sentinel URI: {e}"));
    }
    if !matches!(scheme, Some("redis" | "unix" | "redis+unix")) {
        return Err(
            "expected a redis:// (or unix://, redis+sentinel://) URI, e.g. redis://127.0.0.1:6379/0 (rediss:// is not supported)"
                .to_owned(),
        );
    }
    redis::Client::open(uri)
        .map(drop)
        .map_err(|e| format!("not a usable Redis URI: {e}"))
}

/// Parses a boolean: `true`/`false`, `1`/`0`, `yes`/`no` (case-insensitive).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("expected a boolean (true, false, 1, 0, yes or no)".to_owned()),
    }
}

fn parse_int(value: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = value
        .parse()
        .map_err(|_| format!("expected a whole number between {min} and {max}"))?;
    if n < min || n > max {
        return Err(format!("out of range (must be between {min} and {max})"));
    }
    Ok(n)
}

/// The unit of a duration written without suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
}

/// Parses a duration: a whole number followed by an optional unit suffix (`ms`, `s`, `min`, `h`,
/// `d`); without suffix the number is in `plain` units.
pub fn parse_duration(value: &str, plain: Unit) -> Result<Duration, String> {
    let err = || {
        format!(
            "expected a duration: a whole number of {}, or a number with a unit suffix (ms, s, min, h, d)",
            if plain == Unit::Seconds {
                "seconds"
            } else {
                "milliseconds"
            }
        )
    };
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits);
    let n: u64 = number.parse().map_err(|_| err())?;
    let millis_per_unit: u64 = match suffix.trim() {
        "" if plain == Unit::Seconds => 1000,
        "" => 1,
        "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    let ms = n
        .checked_mul(millis_per_unit)
        .ok_or_else(|| "duration too long".to_owned())?;
    Ok(Duration::from_millis(ms))
}

fn parse_seconds(value: &str, min: u32) -> Result<u32, String> {
    let d = parse_duration(value, Unit::Seconds)?;
    if d.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".to_owned());
    }
    let secs = u32::try_from(d.as_secs()).map_err(|_| "duration too long".to_owned())?;
    if secs < min {
        return Err(format!("must be at least {min} s"));
    }
    Ok(secs)
}

fn parse_transports(value: &str, warnings: &mut Vec<String>) -> Result<Vec<ListenAddr>, String> {
    let uris: Vec<TransportUri> = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(|w| parse_transport(w).map_err(|e| format!("{e} ({w})")))
        .collect::<Result<_, _>>()?;
    if uris.is_empty() {
        return Err("no transport to listen on".to_owned());
    }
    let mut listen = Vec::new();
    for t in uris {
        if t.protocol == Protocol::Tcp {
            listen.push(ListenAddr {
                uri: t.uri,
                bind_host: t.bind_host,
                port: t.port,
                advertised_host: t.host,
            });
        } else {
            warnings.push(format!(
                "[{PRESENCE_SECTION}] transports: {} is not served: only TCP is supported (add ;transport=tcp)",
                t.uri
            ));
        }
    }
    if listen.is_empty() {
        return Err(
            "only TCP transports are supported: add ;transport=tcp to the URI \
                    (a SIP URI without a transport parameter means UDP)"
                .to_owned(),
        );
    }
    Ok(listen)
}

/// The default `[presence-server]` section, every key with its default value and a `#` comment.
pub fn dump_default_config() -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Default configuration of presence-server {}, in flexisip.conf syntax.\n\
         # Only the [presence-server] section is read, and from [module::Authentication] the keys\n\
         # db-implementation, file-path and soci-*; every other section is ignored.\n\
         # Durations are in seconds unless said otherwise; suffixes ms, s, min, h, d are accepted.\n\
         \n[{PRESENCE_SECTION}]\n",
        env!("CARGO_PKG_VERSION")
    ));
    for def in PRESENCE_KEYS {
        out.push_str(&format!("\n# {}\n{}={}\n", def.doc, def.name, def.default));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, ConfigError> {
        parse_config(text, "test.conf")
    }

    #[test]
    fn a_refused_uri_is_reported_without_its_password() {
        for uri in [
            "rediss://user:s3cret@10.0.0.5:6379/0",
            "redis+sentinel://user:s3cret@10.0.0.5:0/mymaster",
        ] {
            let text = format!("[presence-server]\nredis-server-uri={uri}\n");
            let Err(e) = parse(&text) else {
                panic!("{uri} accepted")
            };
            let e = e.to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(e.contains("redis-server-uri") && e.contains("***"), "{e}");
        }
    }

    #[test]
    fn defaults_agree_with_the_core() {
        let cfg = DaemonConfig::default();
        let core = presence_proto::Config::default();
        assert!(cfg.enabled);
        assert_eq!(cfg.listen.len(), 1);
        assert_eq!(cfg.listen[0].bind_host, "127.0.0.1");
        assert_eq!(cfg.listen[0].port, 5065);
        assert_eq!(cfg.proto.publish_default_expires, 600);
        assert_eq!(
            cfg.proto.publish_default_expires,
            core.publish_default_expires
        );
        assert_eq!(cfg.proto.max_expires, core.max_expires);
        assert_eq!(cfg.proto.max_presence_elements, 10);
        assert_eq!(cfg.proto.max_presence_elements, core.max_presence_elements);
        assert_eq!(cfg.proto.support_legacy_client, core.support_legacy_client);
        assert_eq!(cfg.proto.bypass_condition, None);
        assert_eq!(cfg.proto.max_message_size, 65536);
        assert_eq!(cfg.proto.max_message_size, core.max_message_size);
        assert_eq!(cfg.proto.notify_limit, 200);
        assert_eq!(cfg.proto.notify_limit, core.notify_limit);
        assert_eq!(cfg.proto.list_notify_interval, core.list_notify_interval);
        assert_eq!(cfg.proto.list_overflow_delay, core.list_overflow_delay);
        assert_eq!(cfg.proto.max_list_entries, core.max_list_entries);
        assert_eq!(cfg.proto.max_inflated_size, core.max_inflated_size);
        assert_eq!(cfg.proto.max_subscriptions, core.max_subscriptions);
        assert_eq!(
            cfg.proto.max_subscriptions_per_connection,
            core.max_subscriptions_per_connection
        );
        assert_eq!(cfg.proto.max_publications, core.max_publications);
        assert_eq!(
            cfg.proto.partial_message_timeout,
            core.partial_message_timeout
        );
        assert_eq!(
            cfg.proto.idle_connection_timeout,
            core.idle_connection_timeout
        );
        // The embedded account database makes long-term presence work out of the box.
        assert!(cfg.long_term_enabled && cfg.proto.long_term_enabled);
        assert_eq!(
            cfg.account_backend(),
            AccountBackend::Embedded {
                database: "presence-accounts.db".into()
            }
        );
        assert!(!cfg.proto.server_known_lists);
        assert_eq!(cfg.rls_database.max_thread, 50);
        assert_eq!(cfg.rls_database.max_thread_queue_size, 50);
        assert_eq!(
            cfg.proto.last_activity_retention,
            core.last_activity_retention
        );
        assert_eq!(cfg.proto.query_timeout, core.query_timeout);
        assert_eq!(cfg.proto.max_query_batch, core.max_query_batch);
        assert_eq!(cfg.proto.account_cache_size, core.account_cache_size);
        assert_eq!(
            cfg.proto.account_cache_lifetime,
            core.account_cache_lifetime
        );
        assert_eq!(cfg.auth.db_implementation, "file");
        assert!(!cfg.auth.configured);
        assert_eq!(cfg.auth.soci_poolsize, 100);
    }

    #[test]
    fn dump_parses_back_to_the_defaults() {
        let dump = dump_default_config();
        let loaded = parse(&dump).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(
            format!("{:?}", loaded.config),
            format!("{:?}", DaemonConfig::default())
        );
        for def in PRESENCE_KEYS {
            assert!(
                dump.contains(&format!("\n{}={}\n", def.name, def.default)),
                "{}",
                def.name
            );
        }
        // Every key has a one-line comment right above it.
        let lines: Vec<&str> = dump.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !l.starts_with('#') && l.contains('=') {
                assert!(lines[i - 1].starts_with("# "), "{l}");
            }
        }
        for def in PRESENCE_KEYS.iter().filter(|d| !d.used) {
            assert!(def.doc.starts_with("Not yet used") || def.doc.starts_with("Not used"));
        }
    }

    #[test]
    fn an_operators_flexisip_conf() {
        let loaded = parse(
            "[global]\n\
             default-servers=proxy presence\n\
             some garbage the proxy may accept\n\
             [module::Registrar]\n\
             reg-domains=*\n\
             [module::Authentication]\n\
             enabled=true\n\
             auth-domains=sip.example.org\n\
             db-implementation=soci\n\
             soci-poolsize=20\n\
             datasource=/etc/flexisip/users.db\n\
             [presence-server]\n\
             transports=sip:0.0.0.0:5065;transport=tcp sip:[::1]:5065;transport=tcp\n\
             expires = 2min\n\
             bypass-condition=bypass\n\
             support-legacy-client=no\n\
             max-presence-elements=3\n\
             max-expires=1h\n\
             max-message-size=131072\n\
             [conference-server]\n\
             transport=sip:127.0.0.1:6064\n",
        )
        .unwrap();
        let cfg = loaded.config;
        assert_eq!(cfg.listen.len(), 2);
        assert_eq!(cfg.listen[1].bind_host, "::1");
        assert_eq!(cfg.proto.publish_default_expires, 120);
        assert_eq!(cfg.proto.max_expires, 3600);
        assert_eq!(cfg.proto.bypass_condition.as_deref(), Some("bypass"));
        assert!(!cfg.proto.support_legacy_client);
        assert_eq!(cfg.proto.max_presence_elements, 3);
        assert_eq!(cfg.proto.max_message_size, 131072);
        assert_eq!(cfg.auth.db_implementation, "soci");
        assert_eq!(cfg.auth.soci_poolsize, 20);
        assert_eq!(cfg.auth.file_path, "/etc/flexisip/users.db");
        assert!(matches!(cfg.account_backend(), AccountBackend::Soci { .. }));
        // The operator's database, without an explicit long-term-enabled: off, as in Flexisip.
        assert!(!cfg.long_term_enabled && !cfg.proto.long_term_enabled);
        // Only the deprecated `datasource` and the long-term default are worth a warning; other
        // sections are silent.
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("datasource"));
        assert!(loaded.warnings[1].contains("long-term-enabled"));
    }

    #[test]
    fn unknown_keys_warn() {
        let loaded = parse("[presence-server]\nfrobnicate=1\n").unwrap();
        assert_eq!(
            loaded.warnings,
            vec![
                "test.conf line 2: unknown key 'frobnicate' in section [presence-server]; ignored"
            ]
        );
    }

    #[test]
    fn bad_values_name_section_key_value_and_line() {
        for (text, key, value) in [
            ("[presence-server]\n\nexpires=soon\n", "expires", "soon"),
            ("[presence-server]\n\nenabled=maybe\n", "enabled", "maybe"),
            (
                "[presence-server]\n\nmax-presence-elements=-1\n",
                "max-presence-elements",
                "-1",
            ),
            (
                "[presence-server]\n\nnotify-limit=12x\n",
                "notify-limit",
                "12x",
            ),
            (
                "[presence-server]\n\ntransports=sip:127.0.0.1:99999;transport=tcp\n",
                "transports",
                "",
            ),
            ("[presence-server]\n\nmax-expires=0\n", "max-expires", "0"),
            ("[presence-server]\n\nexpires=1500ms\n", "expires", "1500ms"),
            ("[presence-server]\n\ntransports=\n", "transports", ""),
            (
                "[presence-server]\n\nmetrics-address=localhost:9150\n",
                "metrics-address",
                "localhost:9150",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains("line 3"), "{err}");
            assert!(err.contains("[presence-server]"), "{err}");
            assert!(err.contains(&format!("'{key}'")), "{err}");
            assert!(err.contains(value), "{err}");
        }
        let err = parse("[module::Authentication]\nsoci-poolsize=lots\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[module::Authentication]") && err.contains("soci-poolsize"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_in_our_section() {
        let err = parse("[presence-server]\nexpires 600\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("expires 600"),
            "{err}"
        );
    }

    #[test]
    fn transports() {
        let err = parse("[presence-server]\ntransports=sips:127.0.0.1:5065\n").unwrap_err();
        assert!(
            err.to_string().contains("TLS transports are not supported"),
            "{err}"
        );
        let err =
            parse("[presence-server]\ntransports=sip:127.0.0.1:5065;transport=tls\n").unwrap_err();
        assert!(
            err.to_string().contains("TLS transports are not supported"),
            "{err}"
        );
        let err = parse("[presence-server]\ntransports=sip:127.0.0.1:5065\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("only TCP transports are supported"),
            "{err}"
        );
        let loaded = parse(
            "[presence-server]\ntransports=sip:127.0.0.1:5065;transport=udp, sip:127.0.0.1:0;transport=tcp\n",
        )
        .unwrap();
        assert_eq!(loaded.config.listen.len(), 1);
        assert_eq!(loaded.config.listen[0].port, 0);
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("only TCP is supported"));
    }

    #[test]
    fn deprecated_spellings() {
        let loaded = parse(
            "[presence-server]\nsoci-connection-string=db=x\nmax-thread=7\n\
             max-thread-queue-size=9\nexternal-list-subscription-request=select 1\n",
        )
        .unwrap();
        let c = &loaded.config.rls_database;
        assert_eq!(
            (c.connection.as_str(), c.request.as_str()),
            ("db=x", "select 1")
        );
        assert_eq!((c.max_thread, c.max_thread_queue_size), (7, 9));
        assert_eq!(
            loaded
                .warnings
                .iter()
                .filter(|w| w.contains("deprecated"))
                .count(),
            4
        );
        // The new spelling wins, wherever it is.
        let loaded = parse("[presence-server]\nmax-thread=7\nrls-database-max-thread=8\n").unwrap();
        assert_eq!(loaded.config.rls_database.max_thread, 8);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("ignored because"))
        );
    }

    #[test]
    fn phone_queries_fall_back_to_the_auth_section() {
        let loaded =
            parse("[module::Authentication]\nsoci-user-with-phone-request=select :phone\n")
                .unwrap();
        assert_eq!(loaded.config.soci_user_with_phone_request, "select :phone");
        let loaded = parse(
            "[presence-server]\nsoci-user-with-phone-request=ours :phone\n\
             [module::Authentication]\nsoci-user-with-phone-request=theirs :phone\n",
        )
        .unwrap();
        assert_eq!(loaded.config.soci_user_with_phone_request, "ours :phone");
    }

    #[test]
    fn booleans_and_durations() {
        for (v, b) in [
            ("true", true),
            ("1", true),
            ("YES", true),
            ("false", false),
            ("0", false),
            ("no", false),
        ] {
            assert_eq!(parse_bool(v), Ok(b));
        }
        assert!(parse_bool("on").is_err());
        let s = |v| parse_duration(v, Unit::Seconds);
        assert_eq!(s("600"), Ok(Duration::from_secs(600)));
        assert_eq!(s("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(s("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(s("2 h"), Ok(Duration::from_secs(7200)));
        assert_eq!(s("1d"), Ok(Duration::from_secs(86400)));
        assert!(s("").is_err() && s("-1").is_err() && s("1y").is_err() && s("1.5").is_err());
        assert_eq!(
            parse_duration("250", Unit::Millis),
            Ok(Duration::from_millis(250))
        );
    }

    #[test]
    fn unused_keys_warn_only_when_changed() {
        let loaded = parse("[presence-server]\nnotify-limit=200\nleak-detector=true\n").unwrap();
        assert_eq!(loaded.config.proto.notify_limit, 200);
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("leak-detector"));
        assert!(loaded.warnings[0].contains("not yet used"));
        assert!(loaded.config.leak_detector);
    }

    #[test]
    fn database_keys() {
        let cfg = parse(
            "[presence-server]\n\
             long-term-enabled=false\n\
             accounts-database=/var/lib/presence/accounts.db\n\
             database-query-timeout=250\n\
             account-cache-lifetime=1min\n\
             account-cache-size=10\n\
             max-query-batch=7\n\
             last-activity-retention-time=1h\n\
             rls-database-connection=postgres://u@h/d\n\
             rls-database-request=select uri from lists where owner = :from and list = :to\n\
             rls-database-max-thread=500\n",
        )
        .unwrap()
        .config;
        assert!(!cfg.long_term_enabled && !cfg.proto.long_term_enabled);
        assert_eq!(cfg.accounts_database, "/var/lib/presence/accounts.db");
        assert_eq!(cfg.proto.query_timeout, Duration::from_millis(250));
        assert_eq!(cfg.proto.account_cache_lifetime, Duration::from_secs(60));
        assert_eq!(cfg.proto.account_cache_size, 10);
        assert_eq!(cfg.proto.max_query_batch, 7);
        assert_eq!(cfg.proto.last_activity_retention, Duration::from_secs(3600));
        assert!(cfg.proto.server_known_lists);
        // Pools are capped; only the list database is open (long-term presence is off).
        assert_eq!(cfg.list_pool_size(), 64);
        assert_eq!(cfg.proto.max_inflight_queries, 64);
        assert_eq!(cfg.proto.max_queued_queries, 50);
        for (text, key) in [
            ("database-query-timeout=0", "database-query-timeout"),
            ("max-query-batch=0", "max-query-batch"),
            ("accounts-database=", "accounts-database"),
        ] {
            let err = parse(&format!("[presence-server]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn account_backends() {
        let loaded = parse(
            "[module::Authentication]\ndb-implementation=file\nfile-path=/etc/flexisip/passwd\n\
             [presence-server]\nlong-term-enabled=true\n",
        )
        .unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let cfg = loaded.config;
        assert!(cfg.long_term_enabled);
        assert_eq!(
            cfg.account_backend(),
            AccountBackend::File {
                path: "/etc/flexisip/passwd".into()
            }
        );
        let cfg = parse(
            "[module::Authentication]\ndb-implementation=soci\nsoci-backend=postgresql\n\
             soci-connection-string=db=f user=u\nsoci-poolsize=500\nsoci-max-queue-size=7\n\
             [presence-server]\nlong-term-enabled=yes\n",
        )
        .unwrap()
        .config;
        assert_eq!(
            cfg.account_backend(),
            AccountBackend::Soci {
                backend: "postgresql".into(),
                connection: "db=f user=u".into()
            }
        );
        assert_eq!(cfg.account_pool_size(), 64);
        assert_eq!(cfg.proto.max_inflight_queries, 64);
        assert_eq!(cfg.proto.max_queued_queries, 7);
        let cfg = parse("[module::Authentication]\ndb-implementation=fixed\n")
            .unwrap()
            .config;
        assert_eq!(
            cfg.account_backend(),
            AccountBackend::Unsupported("fixed".into())
        );
        // Without db-implementation the rest of the section does not matter.
        let cfg = parse("[module::Authentication]\nfile-path=/x\n")
            .unwrap()
            .config;
        assert!(cfg.long_term_enabled);
        assert!(matches!(
            cfg.account_backend(),
            AccountBackend::Embedded { .. }
        ));
        // Half a list configuration is worth a warning.
        let loaded = parse("[presence-server]\nrls-database-request=select 1\n").unwrap();
        assert!(!loaded.config.proto.server_known_lists);
        assert!(
            loaded.warnings[0].contains("server-known lists are off"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn duplicates_warn_and_the_last_wins() {
        let loaded = parse("[presence-server]\nexpires=10\nexpires=20\n").unwrap();
        assert_eq!(loaded.config.proto.publish_default_expires, 20);
        assert!(loaded.warnings[0].contains("already set on line 2"));
    }

    #[test]
    fn bypass_condition() {
        let b = |v: &str| {
            parse(&format!("[presence-server]\nbypass-condition={v}\n"))
                .unwrap()
                .config
                .proto
                .bypass_condition
        };
        assert_eq!(b("false"), None);
        assert_eq!(b(""), None);
        assert_eq!(
            b("full-presence-support"),
            Some("full-presence-support".to_owned())
        );
    }

    #[test]
    fn locate_finds_the_last_setting() {
        let text = "[presence-server]\nexpires=1\nsoci-connection-string=db=x\nexpires=2\n\
                    [module::Authentication]\nsoci-users-with-phones-request=select 1\n\
                    datasource=/p\n";
        let at = |section, key| locate(text, section, key);
        assert_eq!(at(PRESENCE_SECTION, "expires"), Some((4, "2".to_owned())));
        assert_eq!(
            at(PRESENCE_SECTION, "rls-database-connection"),
            Some((3, "db=x".to_owned()))
        );
        assert_eq!(
            at(PRESENCE_SECTION, "soci-users-with-phones-request"),
            Some((6, "select 1".to_owned()))
        );
        assert_eq!(at(AUTH_SECTION, "file-path"), Some((7, "/p".to_owned())));
        assert_eq!(at(AUTH_SECTION, "soci-backend"), None);
    }

    /// packaging/presence-server.conf (packaging/gen-conf.sh) lists every key, commented out
    /// with its default, and reads back as the defaults with the state directory's database.
    #[test]
    fn the_packaged_configuration_lists_every_key() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/presence-server.conf"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let database = "/var/lib/presence-server/presence-accounts.db";
        for def in PRESENCE_KEYS {
            let line = match def.name {
                "accounts-database" => format!("accounts-database={database}"),
                name => format!("#{name}={}", def.default),
            };
            assert!(
                text.contains(&format!("\n# {}\n{line}\n", def.doc)),
                "packaging/presence-server.conf lacks {line:?} (or its description): run \
                 `cargo build --release -p runtime-tokio && packaging/gen-conf.sh`"
            );
        }
        let loaded = parse(&text).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let expected = DaemonConfig {
            accounts_database: database.to_owned(),
            ..DaemonConfig::default()
        };
        assert_eq!(format!("{:?}", loaded.config), format!("{expected:?}"));
    }

    #[test]
    fn metrics_address() {
        let m = |v: &str| {
            parse(&format!("[presence-server]\nmetrics-address={v}\n"))
                .unwrap()
                .config
                .metrics_address
        };
        assert_eq!(DaemonConfig::default().metrics_address, None);
        assert_eq!(m(""), None);
        assert_eq!(m("127.0.0.1:9150"), Some("127.0.0.1:9150".parse().unwrap()));
        assert_eq!(m(" [::1]:0 "), Some("[::1]:0".parse().unwrap()));
        for bad in ["9150", "127.0.0.1", "[::1]", "127.0.0.1:99999"] {
            let err = parse(&format!("[presence-server]\nmetrics-address={bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("'metrics-address'"), "{err}");
        }
    }
}
