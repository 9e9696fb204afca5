//! Connection strings: sqlx URLs (`sqlite://`, `postgres://`, `mysql://`) as they are, and soci
//! strings as Flexisip's flexisip.conf has them (`db=/path/file.db` for sqlite3;
//! `db=… user=… password='…' host=… port=…` for mysql and postgresql) turned into sqlx URLs,
//! with every part percent-encoded.

use super::sql::Dialect;

/// A connection string turned into a URL sqlx understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub dialect: Dialect,
    /// soci keys that have no sqlx equivalent and were dropped (to be logged).
    pub ignored: Vec<String>,
}

/// The dialect of an sqlx URL, when `text` is one.
pub fn url_dialect(text: &str) -> Option<Dialect> {
    let scheme = text.split_once(':')?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => Some(Dialect::Sqlite),
        "postgres" | "postgresql" => Some(Dialect::Postgres),
        "mysql" | "mariadb" => Some(Dialect::MySql),
        _ => None,
    }
}

/// `text` if it is an sqlx URL (`mariadb://` is spelled `mysql://`), else the conversion of the
/// soci string for `soci_backend` (`sqlite3`, `postgresql` or `mysql`).
pub fn resolve(soci_backend: &str, text: &str) -> Result<Target, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty connection string".to_owned());
    }
    if let Some(dialect) = url_dialect(text) {
        let url = match text.get(..10) {
            Some(p) if p.eq_ignore_ascii_case("mariadb://") => format!("mysql://{}", &text[10..]),
            _ => text.to_owned(),
        };
        return Ok(Target {
            url,
            dialect,
            ignored: Vec::new(),
        });
    }
    let dialect = match soci_backend.trim().to_ascii_lowercase().as_str() {
        "sqlite3" | "sqlite" => Dialect::Sqlite,
        "postgresql" | "postgres" | "pgsql" => Dialect::Postgres,
        "mysql" | "mariadb" => Dialect::MySql,
        other => {
            return Err(format!(
                "unsupported soci backend '{other}' (expected sqlite3, postgresql or mysql)"
            ));
        }
    };
    soci_to_url(dialect, text)
}

/// Converts a soci connection string for `dialect` into an sqlx URL.
pub fn soci_to_url(dialect: Dialect, text: &str) -> Result<Target, String> {
    // soci's sqlite3 backend also takes a bare file name.
    if dialect == Dialect::Sqlite && !text.contains('=') {
        return Ok(Target {
            url: sqlite_url(text, false),
            dialect,
            ignored: Vec::new(),
        });
    }
    let pairs = parse_pairs(text)?;
    let mut db = None;
    let mut user = None;
    let mut password = None;
    let mut host = None;
    let mut port = None;
    let mut query: Vec<(&str, String)> = Vec::new();
    let mut ignored = Vec::new();
    for (key, value) in pairs {
        match (dialect, key.as_str()) {
            (_, "db" | "dbname" | "database") => db = Some(value),
            (Dialect::Postgres | Dialect::MySql, "user" | "username") => user = Some(value),
            (Dialect::Postgres | Dialect::MySql, "password" | "pass") => password = Some(value),
            (Dialect::Postgres | Dialect::MySql, "host" | "hostaddr") => host = Some(value),
            (Dialect::Postgres | Dialect::MySql, "port") => {
                let p: u16 = value
                    .parse()
                    .map_err(|_| format!("invalid port {value:?} in the connection string"))?;
                port = Some(p);
            }
            (Dialect::Postgres, "sslmode") => query.push(("sslmode", value)),
            (Dialect::Postgres, "application_name") => query.push(("application_name", value)),
            (Dialect::Postgres, "options") => query.push(("options", value)),
            (Dialect::MySql, "unix_socket") => query.push(("socket", value)),
            (Dialect::MySql, "charset") => query.push(("charset", value)),
            (Dialect::MySql, "sslca") => query.push(("ssl-ca", value)),
            (Dialect::MySql, "sslcert") => query.push(("ssl-cert", value)),
            (Dialect::MySql, "sslkey") => query.push(("ssl-key", value)),
            _ => ignored.push(key),
        }
    }
    if dialect == Dialect::Sqlite {
        let path = db.ok_or("the sqlite3 connection string has no db=PATH")?;
        return Ok(Target {
            url: sqlite_url(&path, false),
            dialect,
            ignored,
        });
    }
    let scheme = if dialect == Dialect::Postgres {
        "postgres"
    } else {
        "mysql"
    };
    let mut url = format!("{scheme}://");
    if let Some(user) = &user {
        url.push_str(&encode(user, false));
        if let Some(password) = &password {
            url.push(':');
            url.push_str(&encode(password, false));
        }
        url.push('@');
    } else if password.is_some() {
        return Err("the connection string has a password but no user".to_owned());
    }
    match host.as_deref() {
        // A socket directory (PostgreSQL): the host goes into the query.
        Some(h) if h.starts_with('/') && dialect == Dialect::Postgres => {
            url.push_str("localhost");
            query.insert(0, ("host", h.to_owned()));
        }
        Some(h) if h.contains(':') => {
            url.push('[');
            url.push_str(h.trim_start_matches('[').trim_end_matches(']'));
            url.push(']');
        }
        Some(h) if !h.is_empty() => url.push_str(&encode(h, false)),
        _ => url.push_str("localhost"),
    }
    if let Some(port) = port {
        url.push_str(&format!(":{port}"));
    }
    if let Some(db) = &db {
        url.push('/');
        url.push_str(&encode(db, false));
    }
    for (k, (key, value)) in query.iter().enumerate() {
        url.push(if k == 0 { '?' } else { '&' });
        url.push_str(key);
        url.push('=');
        url.push_str(&encode(value, false));
    }
    Ok(Target {
        url,
        dialect,
        ignored,
    })
}

/// An sqlx SQLite URL for a file path (relative paths stay relative to the working directory);
/// `create` adds `mode=rwc` (create the file if missing).
pub fn sqlite_url(path: &str, create: bool) -> String {
    let mut url = format!("sqlite://{}", encode(path, true));
    if create {
        url.push_str("?mode=rwc");
    }
    url
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (kept as they are when the result would not be UTF-8).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

/// `key=value` pairs separated by spaces; a value may be quoted with `'` or `"` (a backslash
/// escapes the next character inside quotes).
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!(
                "cannot read the connection string: '{key}' is not followed by '=' (expected key=value pairs)"
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('\'' | '"')) => {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    } else if c == q {
                        closed = true;
                        break;
                    } else {
                        value.push(c);
                    }
                }
                if !closed {
                    return Err(format!(
                        "cannot read the connection string: unterminated quote in the value of '{key}'"
                    ));
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        pairs.push((key.to_ascii_lowercase(), value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::mysql::MySqlConnectOptions;
    use sqlx::postgres::PgConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;

    use super::*;

    #[test]
    fn urls_pass_through() {
        let t = resolve("mysql", "postgres://u:p@h/db").unwrap();
        assert_eq!(
            (t.url.as_str(), t.dialect),
            ("postgres://u:p@h/db", Dialect::Postgres)
        );
        let t = resolve("sqlite3", "MariaDB://root@127.0.0.1/x").unwrap();
        assert_eq!(
            (t.url.as_str(), t.dialect),
            ("mysql://root@127.0.0.1/x", Dialect::MySql)
        );
        assert_eq!(
            resolve("", "sqlite:///var/lib/a.db").unwrap().dialect,
            Dialect::Sqlite
        );
        assert!(resolve("oracle", "db=x").unwrap_err().contains("oracle"));
        assert!(resolve("mysql", "  ").is_err());
    }

    #[test]
    fn sqlite3() {
        let t = resolve("sqlite3", "db=/var/lib/flexisip/users.db timeout=2").unwrap();
        assert_eq!(t.url, "sqlite:///var/lib/flexisip/users.db");
        assert_eq!(t.ignored, ["timeout"]);
        let t = resolve("sqlite3", "db='/tmp/my dir/a?b#c%d.db'").unwrap();
        let o = SqliteConnectOptions::from_str(&t.url).unwrap();
        assert_eq!(
            o.get_filename(),
            std::path::Path::new("/tmp/my dir/a?b#c%d.db")
        );
        let t = resolve("sqlite3", "relative.db").unwrap();
        assert_eq!(t.url, "sqlite://relative.db");
        assert!(resolve("sqlite3", "user=x").is_err());
        assert_eq!(sqlite_url("a b.db", true), "sqlite://a%20b.db?mode=rwc");
    }

    #[test]
    fn mysql() {
        let t = resolve(
            "mysql",
            "db=flexisip user=flexi password='p@ss w:o/r\\'d' host=db.example.org port=3307",
        )
        .unwrap();
        assert_eq!(t.dialect, Dialect::MySql);
        assert_eq!(
            t.url,
            "mysql://flexi:p%40ss%20w%3Ao%2Fr%27d@db.example.org:3307/flexisip"
        );
        let o = MySqlConnectOptions::from_str(&t.url).unwrap();
        assert_eq!(o.get_username(), "flexi");
        assert_eq!(o.get_host(), "db.example.org");
        assert_eq!(o.get_port(), 3307);
        assert_eq!(o.get_database(), Some("flexisip"));
        // Flexisip's default example, and a socket.
        let t = resolve(
            "mysql",
            "db=mydb user=myuser password='mypass' host=myhost.com",
        )
        .unwrap();
        assert_eq!(t.url, "mysql://myuser:mypass@myhost.com/mydb");
        let t = resolve(
            "mysql",
            "dbname=d user=u unix_socket=/run/mysqld/mysqld.sock reconnect=1",
        )
        .unwrap();
        assert_eq!(
            t.url,
            "mysql://u@localhost/d?socket=%2Frun%2Fmysqld%2Fmysqld.sock"
        );
        assert_eq!(t.ignored, ["reconnect"]);
        let o = MySqlConnectOptions::from_str(&t.url).unwrap();
        assert_eq!(
            o.get_socket().map(|p| p.as_path()),
            Some(std::path::Path::new("/run/mysqld/mysqld.sock"))
        );
    }

    #[test]
    fn postgresql() {
        let t = resolve(
            "postgresql",
            "dbname=flexisip user=postgres password=\"se cret\" host=::1 port=5433 sslmode=disable",
        )
        .unwrap();
        assert_eq!(
            t.url,
            "postgres://postgres:se%20cret@[::1]:5433/flexisip?sslmode=disable"
        );
        let o = PgConnectOptions::from_str(&t.url).unwrap();
        assert_eq!(o.get_username(), "postgres");
        assert_eq!(o.get_port(), 5433);
        assert_eq!(o.get_database(), Some("flexisip"));
        let t = resolve("postgresql", "db=x user=u host=/var/run/postgresql").unwrap();
        assert_eq!(
            t.url,
            "postgres://u@localhost/x?host=%2Fvar%2Frun%2Fpostgresql"
        );
        let o = PgConnectOptions::from_str(&t.url).unwrap();
        assert_eq!(
            o.get_socket().map(|p| p.as_path()),
            Some(std::path::Path::new("/var/run/postgresql"))
        );
    }

    #[test]
    fn bad_strings() {
        assert!(
            resolve("mysql", "db=x user")
                .unwrap_err()
                .contains("'user'")
        );
        assert!(
            resolve("mysql", "db=x password='abc")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            resolve("mysql", "db=x port=http")
                .unwrap_err()
                .contains("port")
        );
        assert!(resolve("mysql", "db=x password=p").is_err());
    }
}
