//! The databases of the presence server, behind one runtime-neutral type: [`Databases`] runs the
//! core's [`Query`]s (account lookups for long-term presence and phone aliases, members of
//! server-known lists) and returns their [`QueryResult`].
//!
//! - Accounts come from, in this order of precedence:
//!   - `[module::Authentication] db-implementation=file`: Flexisip's password file, read once
//!     at startup ([`file`]);
//!   - `db-implementation=soci`: the SQL database of `soci-backend` / `soci-connection-string`
//!     (a soci string or an sqlx URL, [`connection`]), queried with `[presence-server]
//!     soci-users-with-phones-request` (`:phones`, batched) or `soci-user-with-phone-request`
//!     (`:phone`, one query per user);
//!   - no `db-implementation` in the file: the embedded database, a SQLite file
//!     (`accounts-database`, default `presence-accounts.db` in the working directory, or any
//!     sqlx URL), created with [`accounts::EMBEDDED_TABLE`]'s schema when absent.
//! - Lists come from `rls-database-connection` (a URL, or a soci string meaning MySQL as in
//!   Flexisip) and `rls-database-request` (`:from`, `:to`).
//!
//! Every statement binds its values ([`sql`]): a user part never becomes SQL text. Each database
//! has a bounded sqlx pool that opens connections lazily and reopens them by itself, so a
//! database that is down at startup is reported loudly but does not stop the daemon; while a
//! database cannot be reached, queries fail fast (one attempt per [`RETRY_INTERVAL`] goes through
//! to see whether it is back). Every [`Databases::execute`] is bounded by the query timeout.
//!
//! sqlx is built for both tokio and smol and picks whichever runtime it runs in.

pub mod accounts;
pub mod connection;
pub mod file;
pub mod sql;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use presence_proto::{AccountRow, Query, QueryError, QueryResult};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{AssertSqlSafe, ConnectOptions, Row, ValueRef};
use tracing::{error, info, warn};

use crate::metrics::DatabaseMetrics;
use crate::settings::{AUTH_SECTION, AccountBackend, DaemonConfig, PRESENCE_SECTION};
use connection::{Target, resolve, sqlite_url, url_dialect};
use file::PasswordFile;
use sql::{Dialect, NamedSql};

/// Flexisip's default single lookup (the deprecated `[module::Authentication]` default), used
/// with a soci database when neither phone query is configured.
pub const FLEXISIP_SINGLE_REQUEST: &str = "select username from accounts where activated = true and (username = :phone or phone = :phone)";
/// The batch lookup of the embedded database, also used with a soci database when neither phone
/// query is configured: Flexisip's default with the phone as a third column, so that phone
/// aliases resolve in batches too.
pub const DEFAULT_BATCH_REQUEST: &str = "select username, domain, phone from accounts \
     where activated = true and (username in (:phones) or phone in (:phones))";
/// While a database cannot be reached, one query per interval is let through to find out whether
/// it is back; the others fail at once.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Largest pool for one database, whatever the configuration says.
pub const MAX_POOL_SIZE: u32 = 64;
/// Pool of the embedded SQLite database.
pub const EMBEDDED_POOL_SIZE: u32 = 4;
/// How long the startup check of a database may take.
const STARTUP_CHECK: Duration = Duration::from_secs(3);

/// A pool of one of the three backends.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Runs `$body` with `$p` bound to the concrete pool (the body is compiled once per backend).
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
            Pool::MySql($p) => $body,
        }
    };
}

impl Pool {
    /// A lazy pool of at most `size` connections to `target` (nothing is connected yet).
    /// `create`: a SQLite file is created when missing. `acquire_timeout` bounds the wait for a
    /// connection (including connecting).
    pub fn open(
        target: &Target,
        size: u32,
        acquire_timeout: Duration,
        create: bool,
    ) -> Result<Pool, String> {
        let size = size.clamp(1, MAX_POOL_SIZE);
        let bad = |e: sqlx::Error| format!("invalid connection URL {}: {e}", redact(&target.url));
        Ok(match target.dialect {
            Dialect::Sqlite => {
                let options = target
                    .url
                    .parse::<SqliteConnectOptions>()
                    .map_err(bad)?
                    .create_if_missing(create)
                    .busy_timeout(acquire_timeout);
                Pool::Sqlite(pool_options(size, acquire_timeout).connect_lazy_with(options))
            }
            Dialect::Postgres => {
                let options = target.url.parse::<PgConnectOptions>().map_err(bad)?;
                Pool::Postgres(pool_options(size, acquire_timeout).connect_lazy_with(options))
            }
            Dialect::MySql => {
                let options = target.url.parse::<MySqlConnectOptions>().map_err(bad)?;
                Pool::MySql(pool_options(size, acquire_timeout).connect_lazy_with(options))
            }
        })
    }

    /// Checks that `target`'s URL is one sqlx accepts for its backend, without connecting.
    pub fn validate(target: &Target) -> Result<(), String> {
        let bad = |e: sqlx::Error| format!("invalid connection URL {}: {e}", redact(&target.url));
        match target.dialect {
            Dialect::Sqlite => target.url.parse::<SqliteConnectOptions>().map(drop),
            Dialect::Postgres => target.url.parse::<PgConnectOptions>().map(drop),
            Dialect::MySql => target.url.parse::<MySqlConnectOptions>().map(drop),
        }
        .map_err(bad)
    }

    /// The backend's SQL flavour.
    pub fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::MySql(_) => Dialect::MySql,
        }
    }

    /// Opens one connection outside the pool, to report why a database cannot be reached (the
    /// pool only says that it timed out).
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let attempt = async {
            with_pool!(self, p => {
                let mut conn = p.connect_options().connect().await.map_err(|e| e.to_string())?;
                sqlx::Connection::ping(&mut conn).await.map_err(|e| e.to_string())?;
                let _ = sqlx::Connection::close(conn).await;
                Ok(())
            })
        };
        match sqlx::__rt::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer in {} ms", timeout.as_millis())),
        }
    }

    /// Runs `sql` with `binds` and returns every row, each column read as text (NULL → None;
    /// numbers in decimal; bytes as UTF-8).
    pub async fn fetch(
        &self,
        sql: &str,
        binds: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, DbError> {
        with_pool!(self, p => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                query = query.bind(b.to_string());
            }
            let rows = query.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut cells = Vec::with_capacity(row.len());
                for i in 0..row.len() {
                    let raw = row.try_get_raw(i)?;
                    let cell = if raw.is_null() {
                        None
                    } else if let Ok(s) = row.try_get::<String, _>(i) {
                        Some(s)
                    } else if let Ok(n) = row.try_get::<i64, _>(i) {
                        Some(n.to_string())
                    } else if let Ok(n) = row.try_get::<i32, _>(i) {
                        Some(n.to_string())
                    } else if let Ok(b) = row.try_get::<Vec<u8>, _>(i) {
                        Some(String::from_utf8_lossy(&b).into_owned())
                    } else {
                        return Err(DbError::Sql(format!(
                            "column {} of the result cannot be read as text",
                            i + 1
                        )));
                    };
                    cells.push(cell);
                }
                out.push(cells);
            }
            Ok(out)
        })
    }

    /// Runs a statement that returns no rows; the number of rows it changed.
    pub async fn execute(&self, sql: &str, binds: &[&str]) -> Result<u64, DbError> {
        with_pool!(self, p => {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for b in binds {
                query = query.bind(b.to_string());
            }
            Ok(query.execute(p).await?.rows_affected())
        })
    }

    /// Number of open connections.
    pub fn size(&self) -> u32 {
        with_pool!(self, p => p.size())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        with_pool!(self, p => p.close().await)
    }
}

fn pool_options<DB: sqlx::Database>(size: u32, acquire_timeout: Duration) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The database could not be reached (no connection, I/O, timeout).
    Unreachable(String),
    /// The database answered with an error (bad SQL, constraint...), or the result is unusable.
    Sql(String),
    /// A unique constraint refused the statement.
    Duplicate(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unreachable(e) | DbError::Sql(e) | DbError::Duplicate(e) => f.write_str(e),
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Duplicate(e.to_string()),
            sqlx::Error::Database(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::Encode(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::RowNotFound => DbError::Sql(e.to_string()),
            sqlx::Error::PoolTimedOut => DbError::Unreachable(
                "no database connection could be obtained in time (database down or all connections busy)"
                    .to_owned(),
            ),
            _ => DbError::Unreachable(e.to_string()),
        }
    }
}

/// A URL with its password replaced by `***`, for logs; for a SQLite URL, the file path.
pub fn redact(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        return connection::percent_decode(path);
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!(
                "{scheme}://{user}:***@{}{}",
                &authority[at + 1..],
                &rest[authority_end..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// One SQL database with its health: while it is unreachable, queries fail fast.
#[derive(Debug)]
struct SqlSource {
    /// For messages: what it is ("account database", "list database") and its redacted URL.
    label: String,
    pool: Pool,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Set while the database is believed unreachable: (last attempt, last error).
    down: Option<(Instant, String)>,
}

impl SqlSource {
    fn new(label: String, pool: Pool) -> SqlSource {
        SqlSource {
            label,
            pool,
            health: Mutex::new(Health::default()),
        }
    }

    /// Whether a query may go to the database now; the error to return instead.
    fn admit(&self) -> Result<(), QueryError> {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((last, reason)) = &mut health.down {
            let now = Instant::now();
            if now.duration_since(*last) < RETRY_INTERVAL {
                return Err(QueryError(format!("{} unreachable: {reason}", self.label)));
            }
            *last = now;
        }
        Ok(())
    }

    fn record(&self, outcome: &Result<Vec<Vec<Option<String>>>, DbError>) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Err(DbError::Unreachable(reason)) => {
                if health.down.is_none() {
                    error!("{} unreachable: {reason}", self.label);
                }
                health.down = Some((Instant::now(), reason.clone()));
            }
            _ => {
                if health.down.take().is_some() {
                    info!("{} reachable again", self.label);
                }
            }
        }
    }

    async fn fetch(
        &self,
        sql: &str,
        binds: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, QueryError> {
        self.admit()?;
        let outcome = self.pool.fetch(sql, binds).await;
        self.record(&outcome);
        outcome.map_err(|e| QueryError(format!("{}: {e}", self.label)))
    }
}

/// Where accounts are looked up.
#[derive(Debug)]
enum Accounts {
    File(PasswordFile),
    Sql {
        source: SqlSource,
        /// The batch query (`:phones`); when None, `single` runs once per user.
        batch: Option<NamedSql>,
        single: Option<NamedSql>,
    },
}

/// The databases of the daemon. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Databases {
    accounts: Option<Accounts>,
    lists: Option<(SqlSource, NamedSql)>,
    timeout: Duration,
    batch_size: usize,
    metrics: Arc<DatabaseMetrics>,
}

impl Databases {
    /// No database: every query fails.
    pub fn none() -> Databases {
        Databases {
            accounts: None,
            lists: None,
            timeout: Duration::from_secs(5),
            batch_size: 100,
            metrics: Arc::default(),
        }
    }

    /// Opens what `config` asks for ([`Plan::new`]): the account database when long-term
    /// presence is enabled, the list database when `rls-database-connection` and
    /// `rls-database-request` are set. Errors are configuration errors (bad connection string,
    /// unreadable password file, query without its parameter); a database that does not answer
    /// is only logged.
    pub async fn connect(config: &DaemonConfig) -> Result<Databases, String> {
        let plan = Plan::new(config).map_err(|e| e.to_string())?;
        let timeout = config.proto.query_timeout;
        let mut dbs = Databases {
            timeout,
            batch_size: config.proto.max_query_batch.max(1),
            ..Databases::none()
        };
        if let Some(accounts) = plan.accounts {
            dbs.accounts = Some(open_accounts(config, accounts, timeout).await?);
        }
        if let Some((target, request)) = plan.lists {
            let pool = Pool::open(
                &target,
                config.list_pool_size(),
                acquire_timeout(timeout),
                false,
            )?;
            let label = format!("list database {}", redact(&target.url));
            startup_check(&pool, &label).await;
            dbs.lists = Some((SqlSource::new(label, pool), request));
        }
        Ok(dbs)
    }

    /// Runs one query, within the query timeout. Never panics; every failure is a
    /// [`QueryError`].
    pub async fn execute(&self, query: &Query) -> Result<QueryResult, QueryError> {
        let work = async {
            match query {
                Query::Accounts { users } => self.accounts(users).await.map(QueryResult::Accounts),
                Query::ListMembers { from, to } => {
                    self.list(from, to).await.map(QueryResult::ListMembers)
                }
            }
        };
        let started = Instant::now();
        let result = match sqlx::__rt::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(QueryError(format!(
                "no answer from the database in {} ms",
                self.timeout.as_millis()
            ))),
        };
        self.metrics.record(started.elapsed(), result.is_ok());
        result
    }

    /// Number of SQL statements sent so far (to check batching).
    pub fn statements(&self) -> u64 {
        self.metrics.statements()
    }

    /// The query counters and latency histogram, shared with the metrics renderer.
    pub fn metrics(&self) -> Arc<DatabaseMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Whether account lookups are possible (long-term presence enabled).
    pub fn has_accounts(&self) -> bool {
        self.accounts.is_some()
    }

    /// Whether server-known lists are configured.
    pub fn has_lists(&self) -> bool {
        self.lists.is_some()
    }

    /// Closes the pools.
    pub async fn close(&self) {
        if let Some(Accounts::Sql { source, .. }) = &self.accounts {
            source.pool.close().await;
        }
        if let Some((source, _)) = &self.lists {
            source.pool.close().await;
        }
    }

    async fn accounts(&self, users: &[String]) -> Result<Vec<AccountRow>, QueryError> {
        let Some(accounts) = &self.accounts else {
            return Err(QueryError(
                "no account database: long-term presence is disabled".to_owned(),
            ));
        };
        // A NUL byte cannot be in any account (PostgreSQL refuses it in text and would fail the
        // whole batch): such user parts are not looked up.
        let mut wanted: Vec<String> = users
            .iter()
            .filter(|u| !u.is_empty() && !u.contains('\0'))
            .cloned()
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        match accounts {
            Accounts::File(file) => Ok(file.lookup(&wanted)),
            Accounts::Sql {
                source,
                batch: Some(batch),
                ..
            } => {
                let mut found = Vec::new();
                for chunk in wanted.chunks(self.batch_size) {
                    let (sql, binds) = batch
                        .render(|name| (name == "phones").then_some(chunk))
                        .map_err(QueryError)?;
                    self.metrics.statements.fetch_add(1, Ordering::Relaxed);
                    for row in source.fetch(&sql, &binds).await? {
                        let mut cells = row.into_iter();
                        let Some(Some(login)) = cells.next() else {
                            continue;
                        };
                        found.push(AccountRow {
                            login,
                            domain: cells.next().flatten(),
                            phone: cells.next().flatten(),
                        });
                    }
                }
                Ok(found)
            }
            Accounts::Sql {
                source,
                batch: None,
                single: Some(single),
            } => {
                let mut found = Vec::new();
                for user in &wanted {
                    let value = std::slice::from_ref(user);
                    let (sql, binds) = single
                        .render(|name| (name == "phone").then_some(value))
                        .map_err(QueryError)?;
                    self.metrics.statements.fetch_add(1, Ordering::Relaxed);
                    for row in source.fetch(&sql, &binds).await? {
                        let Some(Some(login)) = row.into_iter().next() else {
                            continue;
                        };
                        // The single query gives only the login: when it differs from what
                        // was asked, what was asked is the account's phone.
                        let phone = (login != *user).then(|| user.clone());
                        found.push(AccountRow {
                            login,
                            domain: None,
                            phone,
                        });
                    }
                }
                Ok(found)
            }
            Accounts::Sql {
                batch: None,
                single: None,
                ..
            } => Err(QueryError("no account query configured".to_owned())),
        }
    }

    async fn list(&self, from: &str, to: &str) -> Result<Vec<String>, QueryError> {
        let Some((source, request)) = &self.lists else {
            return Err(QueryError(
                "no list database: rls-database-connection and rls-database-request are not set"
                    .to_owned(),
            ));
        };
        if from.contains('\0') || to.contains('\0') {
            // No row can hold it (and PostgreSQL would refuse the statement).
            return Ok(Vec::new());
        }
        let from = [from.to_owned()];
        let to = [to.to_owned()];
        let (sql, binds) = request
            .render(|name| match name {
                "from" => Some(&from[..]),
                "to" => Some(&to[..]),
                _ => None,
            })
            .map_err(QueryError)?;
        self.metrics.statements.fetch_add(1, Ordering::Relaxed);
        let rows = source.fetch(&sql, &binds).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect())
    }
}

/// The pool's wait for a connection: a little shorter than the query timeout, so that a database
/// that is down is reported as such rather than as a timeout.
fn acquire_timeout(timeout: Duration) -> Duration {
    (timeout * 9 / 10).max(Duration::from_millis(50))
}

fn log_ignored(target: &Target, key: &str) {
    if !target.ignored.is_empty() {
        warn!(
            "{key}: ignoring the soci parameters {} (no equivalent here)",
            target.ignored.join(", ")
        );
    }
}

/// Tries a connection at startup and says loudly when it fails; never fails itself.
async fn startup_check(pool: &Pool, label: &str) {
    match pool.check(STARTUP_CHECK).await {
        Ok(()) => info!("{label}: connected"),
        Err(e) => error!(
            "{label} is unreachable: {e}. The server runs anyway; lookups fail until the \
             database answers (connections are retried)"
        ),
    }
}

/// A database setting that cannot be used: the key at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// `presence-server` or `module::Authentication`.
    pub section: &'static str,
    pub key: &'static str,
    pub reason: String,
}

impl PlanError {
    fn new(section: &'static str, key: &'static str, reason: impl Into<String>) -> PlanError {
        PlanError {
            section,
            key,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.section, self.key, self.reason)
    }
}

impl std::error::Error for PlanError {}

/// What the configuration asks of the databases, checked as far as can be without connecting:
/// the backends, the connection strings (converted and parsed as sqlx URLs), the queries and
/// their parameters, the password file (read). [`Databases::connect`] opens what it describes;
/// `--check-config` stops here.
#[derive(Debug)]
pub struct Plan {
    accounts: Option<AccountsPlan>,
    lists: Option<(Target, NamedSql)>,
}

#[derive(Debug)]
enum AccountsPlan {
    File {
        path: String,
        file: PasswordFile,
    },
    Sql {
        target: Target,
        batch: Option<NamedSql>,
        single: Option<NamedSql>,
        /// The embedded database (created with its schema) rather than the operator's.
        embedded: bool,
    },
}

impl Plan {
    /// Checks the database part of `config`; the error names the key at fault.
    pub fn new(config: &DaemonConfig) -> Result<Plan, PlanError> {
        let accounts = match config.long_term_enabled {
            true => Some(plan_accounts(config)?),
            false => None,
        };
        let rls = &config.rls_database;
        let lists = if !rls.connection.trim().is_empty() && !rls.request.trim().is_empty() {
            let bad = |e| PlanError::new(PRESENCE_SECTION, "rls-database-connection", e);
            let target = resolve("mysql", &rls.connection).map_err(bad)?;
            Pool::validate(&target).map_err(bad)?;
            log_ignored(&target, "rls-database-connection");
            let request = NamedSql::parse(&rls.request, target.dialect);
            for p in request.params() {
                if p != "from" && p != "to" {
                    return Err(PlanError::new(
                        PRESENCE_SECTION,
                        "rls-database-request",
                        format!("unknown parameter ':{p}' (only :from and :to are known)"),
                    ));
                }
            }
            for p in ["from", "to"] {
                if !request.uses(p) {
                    warn!("[presence-server] rls-database-request does not use :{p}");
                }
            }
            Some((target, request))
        } else {
            None
        };
        Ok(Plan { accounts, lists })
    }

    /// One line: where accounts and lists come from (passwords redacted).
    pub fn describe(&self) -> String {
        let accounts = match &self.accounts {
            None => "accounts: none (long-term presence off)".to_owned(),
            Some(AccountsPlan::File { path, file }) => {
                format!("accounts: password file {path} ({} accounts)", file.len())
            }
            Some(AccountsPlan::Sql {
                target, embedded, ..
            }) => format!(
                "accounts: {} {} {}",
                if *embedded { "embedded" } else { "soci" },
                target.dialect.name(),
                redact(&target.url)
            ),
        };
        let lists = match &self.lists {
            None => "server-known lists: none".to_owned(),
            Some((target, _)) => format!(
                "server-known lists: {} {}",
                target.dialect.name(),
                redact(&target.url)
            ),
        };
        format!("{accounts}; {lists}")
    }
}

/// The account part of [`Plan::new`].
fn plan_accounts(config: &DaemonConfig) -> Result<AccountsPlan, PlanError> {
    match config.account_backend() {
        AccountBackend::Unsupported(other) => Err(PlanError::new(
            AUTH_SECTION,
            "db-implementation",
            format!("db-implementation={other} is not supported (file or soci)"),
        )),
        AccountBackend::File { path } => {
            let bad = |e| PlanError::new(AUTH_SECTION, "file-path", e);
            if path.trim().is_empty() {
                return Err(bad(
                    "db-implementation=file but file-path is empty".to_owned()
                ));
            }
            let (file, warnings) = PasswordFile::load(std::path::Path::new(&path)).map_err(bad)?;
            for w in warnings {
                warn!("password file {path}: {w}");
            }
            Ok(AccountsPlan::File { path, file })
        }
        AccountBackend::Soci {
            backend,
            connection,
        } => {
            let bad = |e| PlanError::new(AUTH_SECTION, "soci-connection-string", e);
            let target = resolve(&backend, &connection).map_err(bad)?;
            Pool::validate(&target).map_err(bad)?;
            log_ignored(&target, "soci-connection-string");
            let (batch, single) = phone_queries(config, target.dialect, true)?;
            Ok(AccountsPlan::Sql {
                target,
                batch,
                single,
                embedded: false,
            })
        }
        AccountBackend::Embedded { database } => {
            let target = embedded_target(&database);
            Pool::validate(&target)
                .map_err(|e| PlanError::new(PRESENCE_SECTION, "accounts-database", e))?;
            let (batch, single) = phone_queries(config, target.dialect, false)?;
            Ok(AccountsPlan::Sql {
                target,
                batch,
                single,
                embedded: true,
            })
        }
    }
}

/// Opens the account database of a [`Plan`].
async fn open_accounts(
    config: &DaemonConfig,
    plan: AccountsPlan,
    timeout: Duration,
) -> Result<Accounts, String> {
    match plan {
        AccountsPlan::File { path, file } => {
            info!(
                "account database: password file {path} ({} accounts)",
                file.len()
            );
            Ok(Accounts::File(file))
        }
        AccountsPlan::Sql {
            target,
            batch,
            single,
            embedded,
        } => {
            let pool = Pool::open(
                &target,
                config.account_pool_size(),
                acquire_timeout(timeout),
                embedded,
            )?;
            let label = format!("account database {}", redact(&target.url));
            if embedded {
                match accounts::ensure_schema(&pool, accounts::EMBEDDED_TABLE).await {
                    Ok(()) => {
                        info!(
                            "{label}: ready (embedded; manage it with 'presence-server accounts')"
                        )
                    }
                    Err(e) => error!(
                        "{label}: cannot create or open the accounts table: {e}. The server runs \
                         anyway; lookups fail until the database is usable"
                    ),
                }
            } else {
                startup_check(&pool, &label).await;
            }
            Ok(Accounts::Sql {
                source: SqlSource::new(label, pool),
                batch,
                single,
            })
        }
    }
}

/// The target of `accounts-database`: an sqlx URL as it is, else a SQLite file path.
pub fn embedded_target(database: &str) -> Target {
    let database = database.trim();
    match url_dialect(database) {
        Some(_) => match resolve("", database) {
            Ok(t) => t,
            Err(_) => Target {
                url: sqlite_url(database, true),
                dialect: Dialect::Sqlite,
                ignored: Vec::new(),
            },
        },
        None => Target {
            url: sqlite_url(database, true),
            dialect: Dialect::Sqlite,
            ignored: Vec::new(),
        },
    }
}

/// The batch and single account queries for a database: the operator's, else the defaults
/// (with a notice for a soci database, whose schema is the operator's).
fn phone_queries(
    config: &DaemonConfig,
    dialect: Dialect,
    soci: bool,
) -> Result<(Option<NamedSql>, Option<NamedSql>), PlanError> {
    let batch_text = config.soci_users_with_phones_request.trim();
    let single_text = config.soci_user_with_phone_request.trim();
    if batch_text.is_empty() && single_text.is_empty() {
        if soci {
            warn!(
                "[presence-server] soci-users-with-phones-request and soci-user-with-phone-request \
                 are empty: using \"{DEFAULT_BATCH_REQUEST}\""
            );
        }
        return Ok((Some(NamedSql::parse(DEFAULT_BATCH_REQUEST, dialect)), None));
    }
    let check =
        |text: &str, key: &'static str, param: &str| -> Result<Option<NamedSql>, PlanError> {
            if text.is_empty() {
                return Ok(None);
            }
            let named = NamedSql::parse(text, dialect);
            if let Some(p) = named.params().into_iter().find(|p| *p != param) {
                return Err(PlanError::new(
                    PRESENCE_SECTION,
                    key,
                    format!("unknown parameter ':{p}' (only :{param} is known)"),
                ));
            }
            if !named.uses(param) {
                return Err(PlanError::new(
                    PRESENCE_SECTION,
                    key,
                    format!("must contain :{param}"),
                ));
            }
            Ok(Some(named))
        };
    let batch = check(batch_text, "soci-users-with-phones-request", "phones")?;
    let single = check(single_text, "soci-user-with-phone-request", "phone")?;
    Ok((batch, single))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(
            redact("sqlite://presence-accounts.db?mode=rwc"),
            "presence-accounts.db"
        );
        assert_eq!(redact("sqlite:///tmp/a%20b.db"), "/tmp/a b.db");
        assert_eq!(redact("db=x"), "db=x");
    }

    #[test]
    fn embedded_targets() {
        let t = embedded_target("presence-accounts.db");
        assert_eq!(t.url, "sqlite://presence-accounts.db?mode=rwc");
        assert_eq!(t.dialect, Dialect::Sqlite);
        let t = embedded_target("postgres://postgres@127.0.0.1/presence");
        assert_eq!(t.dialect, Dialect::Postgres);
        let t = embedded_target("/var/lib/presence/accounts.db");
        assert_eq!(t.url, "sqlite:///var/lib/presence/accounts.db?mode=rwc");
    }
}
