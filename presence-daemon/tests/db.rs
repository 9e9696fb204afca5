//! The database adapter against real servers: the same scenarios on SQLite (a temporary file),
//! PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and MariaDB (127.0.0.1:3306, root, no
//! password). Each test creates its own tables, with unique names, in a `presence_test` database
//! (created when missing) and drops them at the end. A server that cannot be reached fails the
//! tests: `.ci/run` starts them. `PRESENCE_TEST_POSTGRES_URL` and `PRESENCE_TEST_MYSQL_URL`
//! point the tests at other servers (databases that already exist). Every scenario runs on tokio
//! and on smol (sqlx picks async-io when no tokio runtime is current), as the two daemons do.
//!
//! Also here: the password file backend, the embedded database and the `accounts` subcommand
//! (library side; both binaries are run in tests/tests/e2e_databases.rs).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use presence_daemon::cli::AccountsCommand;
use presence_daemon::db::accounts::{AccountStore, ensure_schema, run_command};
use presence_daemon::db::connection::{Target, resolve};
use presence_daemon::db::sql::{Dialect, NamedSql};
use presence_daemon::db::{DbError, Pool};
use presence_daemon::{DaemonConfig, Databases, parse_config};
use presence_proto::{AccountRow, Query, QueryResult};
use smol::future::FutureExt as _;

const TEST_DB: &str = "presence_test";
const T: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
    MariaDb,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}_{n}_{nanos:x}", std::process::id())
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Makes sure `presence_test` exists on a server (several tests may race: errors are ignored,
/// the connection that follows tells).
async fn create_test_database(admin_url: &str, dialect: Dialect) {
    let target = Target {
        url: admin_url.to_owned(),
        dialect,
        ignored: Vec::new(),
    };
    let pool = Pool::open(&target, 1, T, false).expect("admin pool");
    if let Err(e) = pool.check(T).await {
        panic!(
            "the {} server at {admin_url} is unreachable ({e}); `.ci/run` starts it",
            dialect.name()
        );
    }
    let exists = match dialect {
        Dialect::Postgres => pool
            .fetch("select 1 from pg_database where datname = $1", &[TEST_DB])
            .await
            .map(|rows| !rows.is_empty())
            .unwrap_or(false),
        _ => false,
    };
    if !exists {
        let sql = match dialect {
            Dialect::MySql => format!("create database if not exists {TEST_DB}"),
            _ => format!("create database {TEST_DB}"),
        };
        let _ = pool.execute(&sql, &[]).await;
    }
    pool.close().await;
}

/// One backend's database for one test, with its two tables.
struct Fixture {
    backend: Backend,
    /// sqlx URL of the test database.
    url: String,
    /// The same as a soci connection string (with soci-backend).
    soci: (String, String),
    accounts: String,
    lists: String,
    store: AccountStore,
    sqlite_file: Option<PathBuf>,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let (url, soci, sqlite_file) = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", unique("presence-db-")));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let soci = ("sqlite3".to_owned(), format!("db={}", path.display()));
                (url, soci, Some(path))
            }
            Backend::Postgres => match std::env::var("PRESENCE_TEST_POSTGRES_URL") {
                Ok(url) => (url.clone(), ("postgresql".to_owned(), url), None),
                Err(_) => {
                    create_test_database(
                        "postgres://postgres@127.0.0.1:5432/postgres",
                        Dialect::Postgres,
                    )
                    .await;
                    (
                        format!("postgres://postgres@127.0.0.1:5432/{TEST_DB}"),
                        (
                            "postgresql".to_owned(),
                            format!("dbname={TEST_DB} user=postgres host=127.0.0.1 port=5432"),
                        ),
                        None,
                    )
                }
            },
            Backend::MariaDb => match std::env::var("PRESENCE_TEST_MYSQL_URL") {
                Ok(url) => (url.clone(), ("mysql".to_owned(), url), None),
                Err(_) => {
                    create_test_database("mysql://root@127.0.0.1:3306", Dialect::MySql).await;
                    (
                        format!("mysql://root@127.0.0.1:3306/{TEST_DB}"),
                        (
                            "mysql".to_owned(),
                            format!("db={TEST_DB} user=root host=127.0.0.1 port=3306"),
                        ),
                        None,
                    )
                }
            },
        };
        let target = resolve("", &url).expect("test URL");
        let pool = Pool::open(&target, 4, T, true).expect("pool");
        if let Err(e) = pool.check(T).await {
            panic!("{backend:?} at {url} is unreachable ({e}); `.ci/run` starts it");
        }
        let accounts = unique("acc_");
        let lists = unique("lists_");
        ensure_schema(&pool, &accounts).await.expect("schema");
        let store = AccountStore::new(pool.clone(), &accounts).expect("store");
        let text_type = if backend == Backend::MariaDb {
            "varchar(255)"
        } else {
            "text"
        };
        pool.execute(
            &format!(
                "create table {lists} (owner {text_type} not null, list {text_type} not null, \
                 position integer not null, entry {text_type} not null)"
            ),
            &[],
        )
        .await
        .expect("lists table");
        Fixture {
            backend,
            url,
            soci,
            accounts,
            lists,
            store,
            sqlite_file,
        }
    }

    fn pool(&self) -> &Pool {
        self.store.pool()
    }

    /// The standard data set: a few accounts, 300 numbered ones with phones, lists.
    async fn populate(&self) {
        let s = &self.store;
        s.add("alice", "example.org", Some("+33612345678"))
            .await
            .unwrap();
        s.add("bob", "example.org", None).await.unwrap();
        s.add("carol", "other.org", Some("+33700000001"))
            .await
            .unwrap();
        s.add("o'brien", "example.org", None).await.unwrap();
        s.add("back\\slash", "example.org", None).await.unwrap();
        s.add("quote\"d", "example.org", None).await.unwrap();
        // An account that is not activated.
        self.pool()
            .execute(
                &format!(
                    "insert into {} (username, domain, phone, activated) values ('dave', 'example.org', '+33699999999', false)",
                    self.accounts
                ),
                &[],
            )
            .await
            .unwrap();
        self.bulk((0..300).map(|i| (format!("u{i}"), format!("+3361{i:07}"))))
            .await;
        let entries: &[(&str, &str, &str)] = &[
            (
                "sip:alice@example.org",
                "sip:friends@example.org",
                "\"Bob\" <sip:bob@example.org>",
            ),
            (
                "sip:alice@example.org",
                "sip:friends@example.org",
                "sip:carol@other.org",
            ),
            (
                "sip:alice@example.org",
                "sip:friends@example.org",
                "\"O'Brien \\\"Jr\\\"\" <sip:o%27brien@example.org>",
            ),
            (
                "sip:bob@example.org",
                "sip:friends@example.org",
                "<sip:alice@example.org>",
            ),
        ];
        for (position, (owner, list, entry)) in entries.iter().enumerate() {
            let position = position.to_string();
            let (sql, binds) = render(
                &format!(
                    "insert into {} (owner, list, position, entry) values (:o, :l, :p, :e)",
                    self.lists
                ),
                self.dialect(),
                &[("o", owner), ("l", list), ("p", &position), ("e", entry)],
            );
            // The position is bound as text: every backend converts it.
            let sql = if self.backend == Backend::Postgres {
                sql.replace("$3,", "$3::integer,")
            } else {
                sql
            };
            let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
            self.pool().execute(&sql, &binds).await.unwrap();
        }
    }

    /// Inserts (user, phone) accounts in example.org with one statement.
    async fn bulk(&self, rows: impl Iterator<Item = (String, String)>) {
        let rows: Vec<(String, String)> = rows.collect();
        let mut sql = format!(
            "insert into {} (username, domain, phone) values ",
            self.accounts
        );
        let mut values: Vec<(String, String)> = Vec::new();
        for (i, (user, phone)) in rows.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(:u{i}, :d, :p{i})"));
            values.push((format!("u{i}"), user.clone()));
            values.push((format!("p{i}"), phone.clone()));
        }
        values.push(("d".to_owned(), "example.org".to_owned()));
        let refs: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (sql, binds) = render(&sql, self.dialect(), &refs);
        let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
        self.pool().execute(&sql, &binds).await.unwrap();
    }

    fn dialect(&self) -> Dialect {
        self.pool().dialect()
    }

    fn batch_request(&self) -> String {
        format!(
            "select username, domain, phone from {} where activated = true and \
             (username in (:phones) or phone in (:phones))",
            self.accounts
        )
    }

    fn list_request(&self) -> String {
        format!(
            "select entry from {} where owner = :from and list = :to order by position",
            self.lists
        )
    }

    /// A configuration with this database as the soci account database and the list database.
    fn config(&self, presence: &str) -> DaemonConfig {
        let (backend, connection) = &self.soci;
        let text = format!(
            "[module::Authentication]\n\
             db-implementation=soci\n\
             soci-backend={backend}\n\
             soci-connection-string={connection}\n\
             [presence-server]\n\
             long-term-enabled=true\n\
             max-query-batch=100\n\
             rls-database-connection={}\n\
             rls-database-request={}\n\
             {presence}\n",
            self.url,
            self.list_request()
        );
        let loaded = parse_config(&text, "test.conf").expect("test configuration");
        loaded.config
    }

    async fn databases(&self) -> Databases {
        let extra = format!("soci-users-with-phones-request={}", self.batch_request());
        Databases::connect(&self.config(&extra))
            .await
            .expect("connect")
    }

    async fn count(&self) -> u64 {
        self.store.count().await.expect("count")
    }

    async fn drop_tables(&self) {
        for t in [&self.accounts, &self.lists] {
            let _ = self.pool().execute(&format!("drop table {t}"), &[]).await;
        }
        self.pool().close().await;
        if let Some(path) = &self.sqlite_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn render(sql: &str, dialect: Dialect, values: &[(&str, &str)]) -> (String, Vec<String>) {
    let owned: Vec<(String, [String; 1])> = values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), [(*v).to_owned()]))
        .collect();
    let (sql, binds) = NamedSql::parse(sql, dialect)
        .render(|name| owned.iter().find(|(k, _)| k == name).map(|(_, v)| &v[..]))
        .expect("render");
    (sql, binds.into_iter().map(str::to_owned).collect())
}

/// The async runtime a scenario runs on: sqlx picks tokio when a tokio runtime is current, else
/// async-io (smol).
#[derive(Clone, Copy)]
enum Rt {
    Tokio,
    Smol,
}

/// Runs `scenario` on a fresh fixture of `backend`, on `rt`, dropping the tables afterwards even
/// when the scenario panics.
fn run<F, Fut>(backend: Backend, rt: Rt, scenario: F)
where
    F: FnOnce(std::sync::Arc<Fixture>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let body = async move {
        let fixture = std::sync::Arc::new(Fixture::new(backend).await);
        fixture.populate().await;
        let outcome = std::panic::AssertUnwindSafe(scenario(std::sync::Arc::clone(&fixture)))
            .catch_unwind()
            .await;
        fixture.drop_tables().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e);
        }
    };
    match rt {
        Rt::Tokio => block_on(body),
        Rt::Smol => smol::block_on(async {
            assert!(tokio::runtime::Handle::try_current().is_err());
            body.await
        }),
    }
}

async fn lookup(dbs: &Databases, users: &[&str]) -> Vec<AccountRow> {
    let users = users.iter().map(|s| s.to_string()).collect();
    match dbs.execute(&Query::Accounts { users }).await {
        Ok(QueryResult::Accounts(mut rows)) => {
            rows.sort_by(|a, b| a.login.cmp(&b.login));
            rows
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn row(login: &str, domain: &str, phone: Option<&str>) -> AccountRow {
    AccountRow {
        login: login.into(),
        domain: Some(domain.into()),
        phone: phone.map(Into::into),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios, run on each backend.
// ---------------------------------------------------------------------------------------------

async fn single_lookups(f: std::sync::Arc<Fixture>) {
    let dbs = f.databases().await;
    assert_eq!(
        lookup(&dbs, &["alice"]).await,
        [row("alice", "example.org", Some("+33612345678"))]
    );
    // By phone: the same account.
    assert_eq!(
        lookup(&dbs, &["+33612345678"]).await,
        [row("alice", "example.org", Some("+33612345678"))]
    );
    // NULL phone.
    assert_eq!(
        lookup(&dbs, &["bob"]).await,
        [row("bob", "example.org", None)]
    );
    assert_eq!(
        lookup(&dbs, &["carol"]).await,
        [row("carol", "other.org", Some("+33700000001"))]
    );
    assert!(lookup(&dbs, &["nobody"]).await.is_empty());
    assert!(lookup(&dbs, &[]).await.is_empty());
    // Not activated.
    assert!(lookup(&dbs, &["dave"]).await.is_empty());
    assert!(lookup(&dbs, &["+33699999999"]).await.is_empty());
    // Quotes and backslashes are data.
    assert_eq!(
        lookup(&dbs, &["o'brien"]).await,
        [row("o'brien", "example.org", None)]
    );
    assert_eq!(
        lookup(&dbs, &["back\\slash"]).await,
        [row("back\\slash", "example.org", None)]
    );
    assert_eq!(
        lookup(&dbs, &["quote\"d"]).await,
        [row("quote\"d", "example.org", None)]
    );
}

async fn batch_lookups(f: std::sync::Arc<Fixture>) {
    let dbs = f.databases().await;
    // Login and phone matches together, duplicates asked once.
    let rows = lookup(&dbs, &["alice", "+33700000001", "bob", "nobody", "alice"]).await;
    assert_eq!(
        rows,
        [
            row("alice", "example.org", Some("+33612345678")),
            row("bob", "example.org", None),
            row("carol", "other.org", Some("+33700000001")),
        ]
    );
    // 1000 phone numbers, 300 of them known: 10 statements of 100.
    let mut users: Vec<String> = (0..300).map(|i| format!("+3361{i:07}")).collect();
    users.extend((0..700).map(|i| format!("+3362{i:07}")));
    let before = dbs.statements();
    let start = Instant::now();
    let result = dbs
        .execute(&Query::Accounts {
            users: users.clone(),
        })
        .await;
    let elapsed = start.elapsed();
    let Ok(QueryResult::Accounts(rows)) = result else {
        panic!("unexpected {result:?}");
    };
    assert_eq!(
        dbs.statements() - before,
        10,
        "1000 users in batches of 100"
    );
    assert_eq!(rows.len(), 300);
    for r in &rows {
        let n: usize = r.login[1..].parse().expect("uN");
        assert_eq!(r.phone.as_deref(), Some(format!("+3361{n:07}").as_str()));
        assert_eq!(r.domain.as_deref(), Some("example.org"));
    }
    println!(
        "{:?}: 1000 users (300 known) in {} statements, {elapsed:?}",
        f.backend,
        dbs.statements() - before
    );
    // Logins in a batch too.
    let logins: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let before = dbs.statements();
    let Ok(QueryResult::Accounts(rows)) = dbs.execute(&Query::Accounts { users: logins }).await
    else {
        panic!("login batch failed");
    };
    assert_eq!((rows.len(), dbs.statements() - before), (300, 3));
}

async fn injection_shaped_entries(f: std::sync::Arc<Fixture>) {
    let dbs = f.databases().await;
    let before = f.count().await;
    let drop_it = format!("'; drop table {}; --", f.accounts);
    let shaped: Vec<&str> = vec![
        "x') or 1=1 --",
        "x\") or 1=1 --",
        &drop_it,
        "'; drop table accounts; --",
        "' or '1'='1",
        "\\' or 1=1 #",
        "alice' --",
        "alice'",
        "'alice'",
        "\"alice\"",
        "\\",
        "'",
        "%",
        "_",
        ":phones",
        "$1",
        "?",
        "alice\0",
        "nul\0byte",
        "1 union select username, domain, phone from accounts",
    ];
    // Each alone, then all in one batch with a real user.
    for s in &shaped {
        assert!(lookup(&dbs, &[s]).await.is_empty(), "{s:?} found something");
    }
    let mut with_alice = shaped.clone();
    with_alice.push("alice");
    assert_eq!(
        lookup(&dbs, &with_alice).await,
        [row("alice", "example.org", Some("+33612345678"))]
    );
    // The list query binds its parameters too.
    for s in &shaped {
        let members = dbs
            .execute(&Query::ListMembers {
                from: (*s).to_owned(),
                to: "sip:friends@example.org' or '1'='1".to_owned(),
            })
            .await;
        assert_eq!(members, Ok(QueryResult::ListMembers(Vec::new())), "{s:?}");
    }
    // Nothing was dropped or changed.
    assert_eq!(f.count().await, before);
    assert_eq!(
        lookup(&dbs, &["alice"]).await,
        [row("alice", "example.org", Some("+33612345678"))]
    );
}

async fn single_query_mode(f: std::sync::Arc<Fixture>) {
    // Only soci-user-with-phone-request: one statement per user; a phone match tells its phone.
    let extra = format!(
        "soci-user-with-phone-request=select username from {} where activated = true and \
         (username = :phone or phone = :phone)",
        f.accounts
    );
    let dbs = Databases::connect(&f.config(&extra))
        .await
        .expect("connect");
    let before = dbs.statements();
    let rows = lookup(&dbs, &["+33612345678", "bob", "nobody", "x') or 1=1 --"]).await;
    assert_eq!(
        rows,
        [
            AccountRow {
                login: "alice".into(),
                domain: None,
                phone: Some("+33612345678".into())
            },
            AccountRow {
                login: "bob".into(),
                domain: None,
                phone: None
            },
        ]
    );
    assert_eq!(dbs.statements() - before, 4);
}

async fn flexisip_two_column_query(f: std::sync::Arc<Fixture>) {
    // Flexisip's default batch query returns no phone column: rows are matched by login.
    let extra = format!(
        "soci-users-with-phones-request=select username, domain from {} where activated = true \
         and (username in (:phones) or phone in (:phones));",
        f.accounts
    );
    let dbs = Databases::connect(&f.config(&extra))
        .await
        .expect("connect");
    assert_eq!(
        lookup(&dbs, &["alice", "bob"]).await,
        [
            row("alice", "example.org", None),
            row("bob", "example.org", None)
        ]
    );
}

async fn list_members(f: std::sync::Arc<Fixture>) {
    let dbs = f.databases().await;
    let members = |from: &str, to: &str| {
        let q = Query::ListMembers {
            from: from.into(),
            to: to.into(),
        };
        let dbs = &dbs;
        async move { dbs.execute(&q).await }
    };
    assert_eq!(
        members("sip:alice@example.org", "sip:friends@example.org").await,
        Ok(QueryResult::ListMembers(vec![
            "\"Bob\" <sip:bob@example.org>".into(),
            "sip:carol@other.org".into(),
            "\"O'Brien \\\"Jr\\\"\" <sip:o%27brien@example.org>".into(),
        ]))
    );
    // Per subscriber (:from).
    assert_eq!(
        members("sip:bob@example.org", "sip:friends@example.org").await,
        Ok(QueryResult::ListMembers(vec![
            "<sip:alice@example.org>".into()
        ]))
    );
    assert_eq!(
        members("sip:carol@other.org", "sip:friends@example.org").await,
        Ok(QueryResult::ListMembers(Vec::new()))
    );
}

async fn bad_sql_is_an_error(f: std::sync::Arc<Fixture>) {
    let extra = format!(
        "soci-users-with-phones-request=select username, domain from {}_missing where username in (:phones)",
        f.accounts
    );
    let dbs = Databases::connect(&f.config(&extra))
        .await
        .expect("connect");
    let err = dbs
        .execute(&Query::Accounts {
            users: vec!["alice".into()],
        })
        .await
        .unwrap_err();
    assert!(err.0.contains("account database"), "{err:?}");
    // Not taken for an unreachable database: the next query is tried too (and fails the same way).
    let err2 = dbs
        .execute(&Query::Accounts {
            users: vec!["bob".into()],
        })
        .await
        .unwrap_err();
    assert!(!err2.0.contains("unreachable"), "{err2:?}");
}

async fn unreachable_database(f: std::sync::Arc<Fixture>) {
    // A database where nothing listens: the daemon starts, queries fail within the timeout, and
    // while it is down they fail at once.
    let (backend, url) = match f.backend {
        Backend::Sqlite => ("sqlite3", "db=/nonexistent-dir/presence/x.db".to_owned()),
        Backend::Postgres => ("postgresql", "postgres://postgres@127.0.0.1:1/x".to_owned()),
        Backend::MariaDb => ("mysql", "mysql://root@127.0.0.1:1/x".to_owned()),
    };
    let text = format!(
        "[module::Authentication]\ndb-implementation=soci\nsoci-backend={backend}\n\
         soci-connection-string={url}\n[presence-server]\nlong-term-enabled=true\n\
         database-query-timeout=1000\n"
    );
    let config = parse_config(&text, "test.conf").unwrap().config;
    let start = Instant::now();
    let dbs = Databases::connect(&config)
        .await
        .expect("a down database is no startup error");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let query = Query::Accounts {
        users: vec!["alice".into()],
    };
    let start = Instant::now();
    let err = dbs.execute(&query).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}: {err:?}",
        start.elapsed()
    );
    let start = Instant::now();
    let err2 = dbs.execute(&query).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(1500), "{err2:?}");
    if f.backend != Backend::Sqlite {
        assert!(err2.0.contains("unreachable"), "{err2:?}");
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
    }
}

async fn schema_and_store(f: std::sync::Arc<Fixture>) {
    // ensure_schema is idempotent; the store adds, refuses duplicates, lists and removes.
    ensure_schema(f.pool(), &f.accounts).await.unwrap();
    let s = &f.store;
    let before = f.count().await;
    s.add("zed", "example.org", Some("+1555")).await.unwrap();
    assert!(matches!(
        s.add("zed", "example.org", None).await,
        Err(DbError::Duplicate(_))
    ));
    // Same user in another domain is another account.
    s.add("zed", "other.org", None).await.unwrap();
    let list = s.list().await.unwrap();
    assert_eq!(list.len() as u64, before + 2);
    assert!(list.contains(&row("zed", "example.org", Some("+1555"))));
    assert!(s.remove("zed", "example.org").await.unwrap());
    assert!(!s.remove("zed", "example.org").await.unwrap());
    assert_eq!(f.count().await, before + 1);
}

/// The scenarios on one backend, each on tokio (`BACKEND::tokio::NAME`) and on smol
/// (`BACKEND::smol::NAME`).
macro_rules! backend_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;
            backend_tests!(@on tokio, $backend, Rt::Tokio);
            backend_tests!(@on smol, $backend, Rt::Smol);
        }
    };
    (@on $name:ident, $backend:expr, $rt:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn single_lookups() {
                run($backend, $rt, super::super::single_lookups);
            }
            #[test]
            fn batch_lookups() {
                run($backend, $rt, super::super::batch_lookups);
            }
            #[test]
            fn injection_shaped_entries() {
                run($backend, $rt, super::super::injection_shaped_entries);
            }
            #[test]
            fn single_query_mode() {
                run($backend, $rt, super::super::single_query_mode);
            }
            #[test]
            fn flexisip_two_column_query() {
                run($backend, $rt, super::super::flexisip_two_column_query);
            }
            #[test]
            fn list_members() {
                run($backend, $rt, super::super::list_members);
            }
            #[test]
            fn bad_sql_is_an_error() {
                run($backend, $rt, super::super::bad_sql_is_an_error);
            }
            #[test]
            fn unreachable_database() {
                run($backend, $rt, super::super::unreachable_database);
            }
            #[test]
            fn schema_and_store() {
                run($backend, $rt, super::super::schema_and_store);
            }
        }
    };
}

backend_tests!(sqlite, Backend::Sqlite);
backend_tests!(postgres, Backend::Postgres);
backend_tests!(mariadb, Backend::MariaDb);

// ---------------------------------------------------------------------------------------------
// The password file, the embedded database and the accounts subcommand.
// ---------------------------------------------------------------------------------------------

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(unique("presence-db-test-"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One runtime only: the password file is read synchronously at startup and answered from
/// memory, with no runtime involved; the smol daemon reaches the same code in `e2e_databases`.
#[test]
fn password_file() {
    let dir = TempDir::new();
    let path = dir.0.join("passwd");
    std::fs::write(
        &path,
        "version:1\n\
         # Flexisip's syntax\n\
         alice@example.org clrtxt:secret ;\n\
         bob@example.org md5:97ffb1c6af18e5687bf26cdf35e45d30 sha256:d758 ; bob +33612345678\n\
         this line is broken\n",
    )
    .unwrap();
    let text = format!(
        "[module::Authentication]\ndb-implementation=file\nfile-path={}\n\
         [presence-server]\nlong-term-enabled=true\n",
        path.display()
    );
    let config = parse_config(&text, "test.conf").unwrap().config;
    block_on(async {
        let dbs = Databases::connect(&config).await.unwrap();
        assert_eq!(
            lookup(&dbs, &["+33612345678", "alice", "carol", "x') or 1=1 --"]).await,
            [
                row("alice", "example.org", None),
                row("bob", "example.org", Some("+33612345678")),
            ]
        );
        assert_eq!(dbs.statements(), 0);
        // The subcommand does not edit the password file.
        let err = run_command(&config, &AccountsCommand::List)
            .await
            .unwrap_err();
        assert!(err.contains("edited by hand"), "{err}");
        // A missing file is a startup error.
        let text = "[module::Authentication]\ndb-implementation=file\nfile-path=/nonexistent/passwd\n\
                    [presence-server]\nlong-term-enabled=true\n";
        let config = parse_config(text, "test.conf").unwrap().config;
        let err = Databases::connect(&config).await.unwrap_err();
        assert!(err.contains("/nonexistent/passwd"), "{err}");
    });
}

/// One runtime only: the `accounts` subcommand is runtime-neutral library code run once on
/// tokio; on smol, the same SQL paths run in `runs_without_tokio` and the smol binary's
/// `e2e_databases` tests.
#[test]
fn embedded_database_and_accounts_subcommand() {
    let dir = TempDir::new();
    let file = dir.0.join("sub dir").join("accounts.db");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let config = parse_config(
        &format!("[presence-server]\naccounts-database={}\n", file.display()),
        "test.conf",
    )
    .unwrap()
    .config;
    assert!(config.long_term_enabled);
    block_on(async {
        let cmd = |c: AccountsCommand| {
            let config = config.clone();
            async move { run_command(&config, &c).await }
        };
        assert_eq!(cmd(AccountsCommand::List).await.unwrap(), "");
        assert!(file.exists(), "created by the first use");
        let out = cmd(AccountsCommand::Add {
            address: "alice@Example.org".into(),
            phone: Some("+33612345678".into()),
        })
        .await
        .unwrap();
        assert!(
            out.starts_with("added alice@example.org (phone +33612345678)"),
            "{out}"
        );
        cmd(AccountsCommand::Add {
            address: "sip:bob@example.org".into(),
            phone: None,
        })
        .await
        .unwrap();
        let err = cmd(AccountsCommand::Add {
            address: "alice@example.org".into(),
            phone: None,
        })
        .await
        .unwrap_err();
        assert!(err.contains("already exists"), "{err}");
        let err = cmd(AccountsCommand::Add {
            address: "nodomain".into(),
            phone: None,
        })
        .await
        .unwrap_err();
        assert!(err.contains("user@domain"), "{err}");
        assert_eq!(
            cmd(AccountsCommand::List).await.unwrap(),
            "alice@example.org +33612345678\nbob@example.org\n"
        );

        // The daemon's view of the same file: found by login and by phone.
        let dbs = Databases::connect(&config).await.unwrap();
        assert_eq!(
            lookup(&dbs, &["+33612345678", "bob", "carol"]).await,
            [
                row("alice", "example.org", Some("+33612345678")),
                row("bob", "example.org", None),
            ]
        );
        // An account added later is found by the next lookup (no cache here).
        cmd(AccountsCommand::Add {
            address: "carol@example.org".into(),
            phone: None,
        })
        .await
        .unwrap();
        assert_eq!(lookup(&dbs, &["carol"]).await.len(), 1);

        let out = cmd(AccountsCommand::Remove {
            address: "bob@example.org".into(),
        })
        .await
        .unwrap();
        assert!(out.starts_with("removed bob@example.org"), "{out}");
        let err = cmd(AccountsCommand::Remove {
            address: "bob@example.org".into(),
        })
        .await
        .unwrap_err();
        assert!(err.contains("is not in"), "{err}");
        assert!(lookup(&dbs, &["bob"]).await.is_empty());
        dbs.close().await;

        // long-term-enabled=false: no account database is opened, lookups fail.
        let off = parse_config(
            &format!(
                "[presence-server]\nlong-term-enabled=false\naccounts-database={}\n",
                dir.0.join("never.db").display()
            ),
            "test.conf",
        )
        .unwrap()
        .config;
        let dbs = Databases::connect(&off).await.unwrap();
        assert!(!dbs.has_accounts());
        assert!(
            dbs.execute(&Query::Accounts {
                users: vec!["alice".into()]
            })
            .await
            .is_err()
        );
        assert!(!dir.0.join("never.db").exists());
    });
}

/// One runtime only: configuration errors are found before any query runs (no runtime involved).
#[test]
fn configuration_errors() {
    block_on(async {
        for (text, message) in [
            (
                "[module::Authentication]\ndb-implementation=soci\nsoci-backend=oracle\n\
                 soci-connection-string=db=x\n[presence-server]\nlong-term-enabled=true\n",
                "oracle",
            ),
            (
                "[module::Authentication]\ndb-implementation=fixed\n[presence-server]\n\
                 long-term-enabled=true\n",
                "fixed",
            ),
            (
                "[presence-server]\nsoci-users-with-phones-request=select username from a where u = :phone\n",
                "unknown parameter ':phone'",
            ),
            (
                "[presence-server]\nsoci-users-with-phones-request=select username from a\n",
                "must contain :phones",
            ),
            (
                "[presence-server]\nsoci-users-with-phones-request=\n\
                 soci-user-with-phone-request=select username from a where u = ':phone'\n",
                "must contain :phone",
            ),
            (
                "[presence-server]\nsoci-users-with-phones-request=select username from a where u in (:phones) and d = :domain\n",
                ":domain",
            ),
            (
                "[presence-server]\nlong-term-enabled=false\nrls-database-connection=db=x user='y\n\
                 rls-database-request=select 1 where :from = :to\n",
                "rls-database-connection",
            ),
            (
                "[presence-server]\nlong-term-enabled=false\nrls-database-connection=sqlite::memory:\n\
                 rls-database-request=select :owner\n",
                ":owner",
            ),
        ] {
            let config = parse_config(text, "test.conf").unwrap().config;
            let err = Databases::connect(&config).await.unwrap_err();
            assert!(err.contains(message), "{text}: {err}");
        }
    });
}

#[test]
fn runs_without_tokio() {
    // sqlx picks the runtime it runs in: the same adapter on smol (no tokio runtime here), with
    // its timeout.
    let dir = TempDir::new();
    let config = parse_config(
        &format!(
            "[presence-server]\naccounts-database={}\ndatabase-query-timeout=2000\n",
            dir.0.join("smol.db").display()
        ),
        "test.conf",
    )
    .unwrap()
    .config;
    smol::block_on(async {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let out = run_command(
            &config,
            &AccountsCommand::Add {
                address: "alice@example.org".into(),
                phone: Some("+33612345678".into()),
            },
        )
        .await
        .unwrap();
        assert!(out.starts_with("added"), "{out}");
        let dbs = Databases::connect(&config).await.unwrap();
        assert_eq!(
            lookup(&dbs, &["+33612345678"]).await,
            [row("alice", "example.org", Some("+33612345678"))]
        );
        // A dead server: the error comes within the timeout, from async-io's timer.
        let dead = parse_config(
            "[module::Authentication]\ndb-implementation=soci\nsoci-backend=postgresql\n\
             soci-connection-string=postgres://postgres@127.0.0.1:1/x\n\
             [presence-server]\nlong-term-enabled=true\ndatabase-query-timeout=500\n",
            "test.conf",
        )
        .unwrap()
        .config;
        let dbs = Databases::connect(&dead).await.unwrap();
        let start = Instant::now();
        assert!(
            dbs.execute(&Query::Accounts {
                users: vec!["alice".into()]
            })
            .await
            .is_err()
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    });
}
