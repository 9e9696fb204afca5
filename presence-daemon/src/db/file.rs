//! Flexisip's password file (`[module::Authentication] db-implementation=file`, `file-path`):
//!
//! ```text
//! version:1
//! # a comment
//! alice@example.org clrtxt:secret ;
//! bob@example.org md5:97ffb1c6af18e5687bf26cdf35e45d30 sha256:d758… ; bob-id +33612345678
//! ```
//!
//! Each line is `user@domain`, one or more `algo:password`, `;`, then optionally a user id and a
//! phone alias. Presence only needs the login, the domain and the phone; passwords are not kept.
//! The file is read once, at startup.

use std::collections::HashMap;
use std::path::Path;

use presence_proto::AccountRow;

/// The accounts of a password file, indexed by login and by phone.
#[derive(Debug, Clone, Default)]
pub struct PasswordFile {
    rows: Vec<AccountRow>,
    by_key: HashMap<String, Vec<usize>>,
}

impl PasswordFile {
    /// Reads and parses the file. Lines that cannot be read are skipped and returned as warnings;
    /// a missing file or a missing `version:1` header is an error.
    pub fn load(path: &Path) -> Result<(PasswordFile, Vec<String>), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
        PasswordFile::parse(&text).map_err(|e| format!("password file {}: {e}", path.display()))
    }

    /// Parses the text of a password file.
    pub fn parse(text: &str) -> Result<(PasswordFile, Vec<String>), String> {
        let mut lines = text.lines().enumerate();
        let version = lines
            .by_ref()
            .find(|(_, l)| !l.trim().is_empty())
            .map(|(_, l)| l.trim());
        match version {
            Some("version:1") => {}
            Some(v) if v.starts_with("version:") => {
                return Err(format!("unsupported {v:?} (only version:1 is)"));
            }
            _ => return Err("the first line must be 'version:1'".to_owned()),
        }
        let mut file = PasswordFile::default();
        let mut warnings = Vec::new();
        for (n, line) in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok(row) => file.push(row),
                Err(reason) => warnings.push(format!("line {}: {reason}; line ignored", n + 1)),
            }
        }
        Ok((file, warnings))
    }

    fn push(&mut self, row: AccountRow) {
        let index = self.rows.len();
        let mut keys = vec![row.login.clone()];
        if let Some(phone) = &row.phone
            && phone != &row.login
        {
            keys.push(phone.clone());
        }
        for key in keys {
            self.by_key.entry(key).or_default().push(index);
        }
        self.rows.push(row);
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the file has no account.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The accounts whose login or phone is one of `users` (each account once).
    pub fn lookup(&self, users: &[String]) -> Vec<AccountRow> {
        let mut found: Vec<usize> = users
            .iter()
            .filter_map(|u| self.by_key.get(u))
            .flatten()
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|i| self.rows[i].clone()).collect()
    }
}

fn parse_line(line: &str) -> Result<AccountRow, String> {
    let (creds, rest) = line.split_once(';').ok_or("no ';' after the passwords")?;
    let mut words = creds.split_whitespace();
    let identity = words.next().ok_or("empty line")?;
    let (user, domain) = identity
        .split_once('@')
        .ok_or_else(|| format!("{identity:?} is not user@domain"))?;
    if user.is_empty() || domain.is_empty() {
        return Err(format!("{identity:?} is not user@domain"));
    }
    let mut passwords = 0;
    for w in words {
        match w.split_once(':') {
            Some(("clrtxt" | "md5" | "sha256", _)) => passwords += 1,
            _ => {
                return Err(format!(
                    "{w:?} is not algo:password (clrtxt, md5 or sha256)"
                ));
            }
        }
    }
    if passwords == 0 {
        return Err("no password".to_owned());
    }
    let mut extra = rest.split_whitespace();
    let _user_id = extra.next();
    let phone = extra.next().map(str::to_owned);
    if extra.next().is_some() {
        return Err("more than a user id and a phone after ';'".to_owned());
    }
    Ok(AccountRow {
        login: unescape(user),
        domain: Some(domain.to_owned()),
        phone,
    })
}

/// Flexisip writes a space in a user name as `%20`: `%XX` escapes are decoded.
fn unescape(text: &str) -> String {
    super::connection::percent_decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "version:1\n\
        # accounts\n\
        \n\
        alice@example.org clrtxt:secret ;\n\
        bob@example.org md5:97ffb1c6af18e5687bf26cdf35e45d30 sha256:d7580069 ; bob-id +33612345678\n\
        carol%20c@example.org clrtxt:x ;carol\n\
        alice@other.org clrtxt:y ; alice +33700000000\n\
        broken line without semicolon\n\
        example.org clrtxt:x ;\n";

    fn users(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_flexisip_lines() {
        let (file, warnings) = PasswordFile::parse(FILE).unwrap();
        assert_eq!(file.len(), 4);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("line 8:"), "{warnings:?}");
        let rows = file.lookup(&users(&["+33612345678"]));
        assert_eq!(
            rows,
            [AccountRow {
                login: "bob".into(),
                domain: Some("example.org".into()),
                phone: Some("+33612345678".into())
            }]
        );
        let rows = file.lookup(&users(&["alice", "nobody", "carol c"]));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].domain.as_deref(), Some("example.org"));
        assert_eq!(rows[0].phone, None);
        assert_eq!(rows[1].login, "carol c");
        assert_eq!(rows[2].domain.as_deref(), Some("other.org"));
        // One row per account even when both its login and its phone are asked for.
        assert_eq!(file.lookup(&users(&["alice", "+33700000000"])).len(), 2);
        assert!(file.lookup(&users(&["x') or 1=1 --"])).is_empty());
    }

    #[test]
    fn header_is_required() {
        assert!(PasswordFile::parse("alice@x clrtxt:a ;\n").is_err());
        assert!(
            PasswordFile::parse("version:2\n")
                .unwrap_err()
                .contains("version:2")
        );
        assert!(PasswordFile::parse("").is_err());
        let (file, w) = PasswordFile::parse("\nversion:1\r\nalice@x clrtxt:a ;\r\n").unwrap();
        assert_eq!((file.len(), w.len()), (1, 0));
    }
}
