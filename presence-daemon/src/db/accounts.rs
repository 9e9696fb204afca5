//! The account table of the embedded database, and the `presence-server accounts` subcommand
//! that manages it (or an operator's SQL database with the same columns).
//!
//! Schema (SQLite; the PostgreSQL and MySQL versions use their own types):
//! ```sql
//! create table if not exists accounts (
//!     id integer primary key, username text not null, domain text not null, phone text,
//!     activated boolean not null default true, unique (username, domain));
//! create index if not exists accounts_phone on accounts (phone);
//! ```

use presence_proto::AccountRow;

use super::connection::{Target, resolve};
use super::sql::{Dialect, NamedSql};
use super::{DbError, Pool, embedded_target, redact};
use crate::cli::AccountsCommand;
use crate::settings::{AccountBackend, DaemonConfig};

/// The table of the embedded database.
pub const EMBEDDED_TABLE: &str = "accounts";

/// Creates the account table and its phone index when they do not exist. `table` must be a plain
/// identifier.
pub async fn ensure_schema(pool: &Pool, table: &str) -> Result<(), DbError> {
    check_identifier(table)?;
    let create = match pool.dialect() {
        Dialect::Sqlite => format!(
            "create table if not exists {table} (id integer primary key, \
             username text not null, domain text not null, phone text, \
             activated boolean not null default true, unique (username, domain))"
        ),
        Dialect::Postgres => format!(
            "create table if not exists {table} (id bigserial primary key, \
             username varchar(255) not null, domain varchar(255) not null, phone varchar(64), \
             activated boolean not null default true, unique (username, domain))"
        ),
        Dialect::MySql => format!(
            "create table if not exists {table} (id bigint not null auto_increment primary key, \
             username varchar(255) not null, domain varchar(255) not null, phone varchar(64), \
             activated boolean not null default true, unique (username, domain), \
             index {table}_phone (phone)) default charset=utf8mb4"
        ),
    };
    pool.execute(&create, &[]).await?;
    if pool.dialect() != Dialect::MySql {
        let index = format!("create index if not exists {table}_phone on {table} (phone)");
        pool.execute(&index, &[]).await?;
    }
    Ok(())
}

fn check_identifier(table: &str) -> Result<(), DbError> {
    let ok = table
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(DbError::Sql(format!("invalid table name {table:?}")))
    }
}

/// Adds, lists and removes accounts of a table with the embedded schema's columns.
#[derive(Debug, Clone)]
pub struct AccountStore {
    pool: Pool,
    table: String,
}

impl AccountStore {
    /// A store on `pool`'s `table` (a plain identifier).
    pub fn new(pool: Pool, table: &str) -> Result<AccountStore, DbError> {
        check_identifier(table)?;
        Ok(AccountStore {
            pool,
            table: table.to_owned(),
        })
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn run(&self, sql: &str, values: &[(&str, &str)]) -> Result<(String, Vec<String>), DbError> {
        let owned: Vec<(&str, [String; 1])> = values
            .iter()
            .map(|(k, v)| (*k, [(*v).to_owned()]))
            .collect();
        let named = NamedSql::parse(sql, self.pool.dialect());
        let (sql, binds) = named
            .render(|name| owned.iter().find(|(k, _)| *k == name).map(|(_, v)| &v[..]))
            .map_err(DbError::Sql)?;
        Ok((sql, binds.into_iter().map(str::to_owned).collect()))
    }

    /// Adds an account; an existing `user@domain` is a [`DbError::Duplicate`].
    pub async fn add(&self, user: &str, domain: &str, phone: Option<&str>) -> Result<(), DbError> {
        let table = &self.table;
        let (sql, binds) = match phone {
            Some(phone) => self.run(
                &format!(
                    "insert into {table} (username, domain, phone) values (:user, :domain, :phone)"
                ),
                &[("user", user), ("domain", domain), ("phone", phone)],
            )?,
            None => self.run(
                &format!("insert into {table} (username, domain) values (:user, :domain)"),
                &[("user", user), ("domain", domain)],
            )?,
        };
        let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
        self.pool.execute(&sql, &binds).await?;
        Ok(())
    }

    /// Removes an account; false when there was none.
    pub async fn remove(&self, user: &str, domain: &str) -> Result<bool, DbError> {
        let (sql, binds) = self.run(
            &format!(
                "delete from {} where username = :user and domain = :domain",
                self.table
            ),
            &[("user", user), ("domain", domain)],
        )?;
        let binds: Vec<&str> = binds.iter().map(String::as_str).collect();
        Ok(self.pool.execute(&sql, &binds).await? > 0)
    }

    /// Every account, by domain then user name.
    pub async fn list(&self) -> Result<Vec<AccountRow>, DbError> {
        let sql = format!(
            "select username, domain, phone from {} order by domain, username",
            self.table
        );
        let rows = self.pool.fetch(&sql, &[]).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut cells = row.into_iter();
                let login = cells.next().flatten()?;
                Some(AccountRow {
                    login,
                    domain: cells.next().flatten(),
                    phone: cells.next().flatten(),
                })
            })
            .collect())
    }

    /// Number of rows in the table.
    pub async fn count(&self) -> Result<u64, DbError> {
        let rows = self
            .pool
            .fetch(&format!("select count(*) from {}", self.table), &[])
            .await?;
        rows.first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| DbError::Sql("count(*) returned nothing".to_owned()))
    }
}

/// Splits `user@domain` (an optional `sip:` prefix is dropped).
pub fn split_address(address: &str) -> Result<(String, String), String> {
    let a = address.trim();
    let a = a
        .strip_prefix("sip:")
        .or_else(|| a.strip_prefix("SIP:"))
        .unwrap_or(a);
    let (user, domain) = a
        .rsplit_once('@')
        .ok_or_else(|| format!("{address:?} is not an address of the form user@domain"))?;
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad(user) || bad(domain) || user.contains('@') || domain.contains([';', '<', '>']) {
        return Err(format!(
            "{address:?} is not an address of the form user@domain"
        ));
    }
    Ok((user.to_owned(), domain.to_ascii_lowercase()))
}

/// The SQL database the `accounts` subcommand works on, per the configuration: the embedded
/// database (created when absent), or the `soci` database (its `accounts` table must have the
/// columns username, domain, phone). The password file is refused.
pub async fn open_store(config: &DaemonConfig) -> Result<(AccountStore, String), String> {
    let timeout = config.proto.query_timeout;
    let (target, create): (Target, bool) = match config.account_backend() {
        AccountBackend::Unsupported(other) => {
            return Err(format!(
                "[module::Authentication] db-implementation={other} is not supported \
                 (file or soci)"
            ));
        }
        AccountBackend::File { path } => {
            return Err(format!(
                "the account database is Flexisip's password file ({}; [module::Authentication] \
                 db-implementation=file): it is edited by hand, one line per account: \
                 'user@domain clrtxt:PASSWORD ; USER-ID PHONE' (the server reads it at startup)",
                if path.is_empty() {
                    "file-path is empty"
                } else {
                    &path
                }
            ));
        }
        AccountBackend::Soci {
            backend,
            connection,
        } => (
            resolve(&backend, &connection)
                .map_err(|e| format!("[module::Authentication] soci-connection-string: {e}"))?,
            false,
        ),
        AccountBackend::Embedded { database } => (embedded_target(&database), true),
    };
    let label = redact(&target.url);
    let pool = Pool::open(&target, 1, timeout, create)?;
    if let Err(e) = pool.check(timeout).await {
        return Err(format!("cannot open the account database {label}: {e}"));
    }
    if create {
        ensure_schema(&pool, EMBEDDED_TABLE)
            .await
            .map_err(|e| format!("cannot create the accounts table in {label}: {e}"))?;
    }
    let store = AccountStore::new(pool, EMBEDDED_TABLE).map_err(|e| e.to_string())?;
    Ok((store, label))
}

/// Runs an `accounts` subcommand; what to print on stdout, or the error.
pub async fn run_command(
    config: &DaemonConfig,
    command: &AccountsCommand,
) -> Result<String, String> {
    let (store, label) = open_store(config).await?;
    let result = match command {
        AccountsCommand::Add { address, phone } => {
            let (user, domain) = split_address(address)?;
            let phone = match phone.as_deref().map(str::trim) {
                Some("") => return Err("--phone needs a phone number".to_owned()),
                Some(p) if p.chars().any(char::is_whitespace) => {
                    return Err(format!("invalid phone number {p:?}"));
                }
                other => other,
            };
            match store.add(&user, &domain, phone).await {
                Ok(()) => Ok(match phone {
                    Some(p) => format!("added {user}@{domain} (phone {p}) to {label}\n"),
                    None => format!("added {user}@{domain} to {label}\n"),
                }),
                Err(DbError::Duplicate(_)) => {
                    Err(format!("{user}@{domain} already exists in {label}"))
                }
                Err(e) => Err(format!("cannot add {user}@{domain} to {label}: {e}")),
            }
        }
        AccountsCommand::Remove { address } => {
            let (user, domain) = split_address(address)?;
            match store.remove(&user, &domain).await {
                Ok(true) => Ok(format!("removed {user}@{domain} from {label}\n")),
                Ok(false) => Err(format!("{user}@{domain} is not in {label}")),
                Err(e) => Err(format!("cannot remove {user}@{domain} from {label}: {e}")),
            }
        }
        AccountsCommand::List => match store.list().await {
            Ok(rows) => {
                let mut out = String::new();
                for row in rows {
                    out.push_str(&row.login);
                    if let Some(d) = &row.domain {
                        out.push('@');
                        out.push_str(d);
                    }
                    if let Some(p) = &row.phone {
                        out.push(' ');
                        out.push_str(p);
                    }
                    out.push('\n');
                }
                Ok(out)
            }
            Err(e) => Err(format!("cannot list the accounts of {label}: {e}")),
        },
    };
    store.pool().close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_address("alice@Example.org").unwrap(),
            ("alice".to_owned(), "example.org".to_owned())
        );
        assert_eq!(
            split_address("sip:+33612345678@example.org").unwrap(),
            ("+33612345678".to_owned(), "example.org".to_owned())
        );
        for bad in [
            "alice",
            "@example.org",
            "alice@",
            "al ice@x",
            "a@b@c",
            "a@b;x=y",
        ] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(check_identifier("accounts_1").is_ok());
        for bad in ["", "1x", "a b", "a;drop", "a\"b"] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }
}
