//! Named parameters in operator-written SQL (`:phone`, `:phones`, `:from`, `:to`, as soci writes
//! them) turned into the positional placeholders of a backend (`$1`… for PostgreSQL, `?` for
//! MySQL and SQLite). Values are always bound, never spliced into the text: a list parameter of N
//! values becomes N placeholders (`?, ?, ?`) at each place it occurs, with its values bound again
//! for each place.
//!
//! The scanner skips string literals (`'…'` with `''`, and backslash escapes where the backend
//! has them), quoted identifiers (`"…"`, `` `…` ``), comments (`-- …`, `/* … */`, and `# …` in
//! MySQL) and PostgreSQL casts (`x::text`), so that a colon in any of those is left alone.

use std::fmt::Write as _;

/// The SQL flavour of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(String),
}

/// A statement with named parameters, split once into text and parameter references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSql {
    dialect: Dialect,
    parts: Vec<Part>,
}

impl NamedSql {
    /// Splits `sql` (written for `dialect`) into text and `:name` references.
    pub fn parse(sql: &str, dialect: Dialect) -> NamedSql {
        let bytes = sql.as_bytes();
        let mut parts = Vec::new();
        let mut text_start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'\'' => {
                    // PostgreSQL escape strings E'…' take backslash escapes; MySQL's strings
                    // always do (unless NO_BACKSLASH_ESCAPES, which only makes us skip less).
                    let backslash = match dialect {
                        Dialect::MySql => true,
                        Dialect::Postgres => {
                            i > 0
                                && matches!(bytes[i - 1], b'E' | b'e')
                                && (i < 2 || !is_ident_byte(bytes[i - 2]))
                        }
                        Dialect::Sqlite => false,
                    };
                    i = skip_quoted(bytes, i, b'\'', backslash);
                }
                b'"' => i = skip_quoted(bytes, i, b'"', dialect == Dialect::MySql),
                b'`' => i = skip_quoted(bytes, i, b'`', false),
                b'-' if bytes.get(i + 1) == Some(&b'-') => i = skip_line(bytes, i),
                b'#' if dialect == Dialect::MySql => i = skip_line(bytes, i),
                b'/' if bytes.get(i + 1) == Some(&b'*') => {
                    i = match sql[i + 2..].find("*/") {
                        Some(end) => i + 2 + end + 2,
                        None => bytes.len(),
                    };
                }
                b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
                b':' if bytes
                    .get(i + 1)
                    .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                    && (i == 0 || !is_ident_byte(bytes[i - 1])) =>
                {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && is_ident_byte(bytes[end]) {
                        end += 1;
                    }
                    if text_start < i {
                        parts.push(Part::Text(sql[text_start..i].to_owned()));
                    }
                    parts.push(Part::Param(sql[start..end].to_owned()));
                    i = end;
                    text_start = end;
                }
                _ => i += 1,
            }
        }
        if text_start < bytes.len() {
            parts.push(Part::Text(sql[text_start..].to_owned()));
        }
        NamedSql { dialect, parts }
    }

    /// The parameter names used, each once, in order of first use.
    pub fn params(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Param(name) = p
                && !names.contains(&name.as_str())
            {
                names.push(name);
            }
        }
        names
    }

    /// Whether `name` occurs.
    pub fn uses(&self, name: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Param(n) if n == name))
    }

    /// The statement with positional placeholders, and the values to bind in order. `values`
    /// gives the values of each parameter (one for a scalar, N for a list); a parameter it does
    /// not know, or with no value, is an error.
    pub fn render<'v>(
        &self,
        values: impl Fn(&str) -> Option<&'v [String]>,
    ) -> Result<(String, Vec<&'v str>), String> {
        let mut sql = String::new();
        let mut binds: Vec<&'v str> = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => sql.push_str(t),
                Part::Param(name) => {
                    let vals = values(name)
                        .ok_or_else(|| format!("unknown named parameter ':{name}' in the query"))?;
                    if vals.is_empty() {
                        return Err(format!("no value for the parameter ':{name}'"));
                    }
                    for (k, v) in vals.iter().enumerate() {
                        if k > 0 {
                            sql.push_str(", ");
                        }
                        binds.push(v);
                        match self.dialect {
                            Dialect::Postgres => {
                                let _ = write!(sql, "${}", binds.len());
                            }
                            Dialect::MySql | Dialect::Sqlite => sql.push('?'),
                        }
                    }
                }
            }
        }
        Ok((sql, binds))
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Index just past the literal opened by the quote at `start` (or the end of the text when it is
/// not closed). A doubled quote is part of the literal.
fn skip_quoted(bytes: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
        } else if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

fn skip_line(bytes: &[u8], start: usize) -> usize {
    match bytes[start..].iter().position(|&b| b == b'\n') {
        Some(n) => start + n + 1,
        None => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(sql: &str, dialect: Dialect, phones: &[&str]) -> (String, Vec<String>) {
        let phones: Vec<String> = phones.iter().map(|s| s.to_string()).collect();
        let one = ["x".to_owned()];
        let named = NamedSql::parse(sql, dialect);
        let (sql, binds) = named
            .render(|name| match name {
                "phones" => Some(&phones[..]),
                "phone" | "from" | "to" => Some(&one[..]),
                _ => None,
            })
            .unwrap();
        (sql, binds.into_iter().map(str::to_owned).collect())
    }

    const FLEXISIP_BATCH: &str = "select username, domain from accounts where activated = true \
                                  and (username in (:phones) or phone in (:phones));";

    #[test]
    fn lists_expand_at_each_place() {
        let (sql, binds) = render(FLEXISIP_BATCH, Dialect::MySql, &["a", "b", "c"]);
        assert_eq!(
            sql,
            "select username, domain from accounts where activated = true \
             and (username in (?, ?, ?) or phone in (?, ?, ?));"
        );
        assert_eq!(binds, ["a", "b", "c", "a", "b", "c"]);
        let (sql, binds) = render(FLEXISIP_BATCH, Dialect::Postgres, &["a", "b"]);
        assert!(
            sql.ends_with("(username in ($1, $2) or phone in ($3, $4));"),
            "{sql}"
        );
        assert_eq!(binds, ["a", "b", "a", "b"]);
        let (sql, _) = render(FLEXISIP_BATCH, Dialect::Sqlite, &["a"]);
        assert!(sql.ends_with("(username in (?) or phone in (?));"), "{sql}");
    }

    #[test]
    fn literals_comments_and_casts_are_left_alone() {
        for (sql, dialect, expected) in [
            (
                "select ':phone', \":phone\", `:phone` from t where a = :phone",
                Dialect::MySql,
                "select ':phone', \":phone\", `:phone` from t where a = ?",
            ),
            (
                "select 'it''s :phone' where x = :phone -- :phone\n and y = :phone",
                Dialect::Sqlite,
                "select 'it''s :phone' where x = ? -- :phone\n and y = ?",
            ),
            (
                "select a::text from t /* :phone */ where b = :phone::text",
                Dialect::Postgres,
                "select a::text from t /* :phone */ where b = $1::text",
            ),
            (
                "select 'a\\' :phone' from t where u = :phone # :phone",
                Dialect::MySql,
                "select 'a\\' :phone' from t where u = ? # :phone",
            ),
            (
                "select E'a\\' :phone' from t where u = :phone",
                Dialect::Postgres,
                "select E'a\\' :phone' from t where u = $1",
            ),
            // Without backslash escapes (standard strings), the literal ends at the second quote.
            (
                "select 'a\\' , :phone",
                Dialect::Postgres,
                "select 'a\\' , $1",
            ),
            (
                "select 1 := 2, x:phone",
                Dialect::MySql,
                "select 1 := 2, x:phone",
            ),
            (
                "select 'unterminated :phone",
                Dialect::Sqlite,
                "select 'unterminated :phone",
            ),
        ] {
            assert_eq!(render(sql, dialect, &["p"]).0, expected, "{sql}");
        }
    }

    #[test]
    fn params_and_errors() {
        let n = NamedSql::parse(
            "select x from t where a = :from and b = :to and c = :from",
            Dialect::Postgres,
        );
        assert_eq!(n.params(), ["from", "to"]);
        assert!(n.uses("to") && !n.uses("phone"));
        let empty: Vec<String> = Vec::new();
        assert!(n.render(|_| Some(&empty[..])).is_err());
        assert!(n.render(|_| None).unwrap_err().contains(":from"));
        let from = ["sip:a@x".to_owned()];
        let to = ["sip:l@x".to_owned()];
        let (sql, binds) = n
            .render(|name| match name {
                "from" => Some(&from[..]),
                "to" => Some(&to[..]),
                _ => None,
            })
            .unwrap();
        assert_eq!(sql, "select x from t where a = $1 and b = $2 and c = $3");
        assert_eq!(binds, ["sip:a@x", "sip:l@x", "sip:a@x"]);
    }
}
