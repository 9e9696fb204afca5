//! The flexisip.conf dialect of INI.
//!
//! - `[section]` headers (a trailing `# comment` after the `]` is allowed);
//! - `key=value` lines, with optional spaces around `=`; the value runs to the end of the line and
//!   is trimmed (a `#` inside a value is part of the value);
//! - lines whose first non-blank character is `#` or `;` are comments; blank lines are ignored;
//! - a value ending in a backslash continues on the next line: the backslash is removed and the
//!   next line, without its leading blanks, is appended (`select a \` + `  from b` gives
//!   `select a from b`).
//!
//! This module only splits the text; typing and validation are in [`crate::settings`]. Lines it
//! cannot read are returned as [`Issue`]s so that the caller decides: an operator's flexisip.conf
//! also holds the proxy's sections, whose oddities are none of our business.

/// One `key=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The section the line is in (without brackets).
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based line number of the key (the first line of a continued value).
    pub line: usize,
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The section the line is in, if any.
    pub section: Option<String>,
    /// 1-based line number.
    pub line: usize,
    /// The line as written (trimmed).
    pub text: String,
    pub reason: &'static str,
}

/// The result of reading a file: entries in file order, and unreadable lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    pub entries: Vec<Entry>,
    pub issues: Vec<Issue>,
}

/// Splits `text` into entries. Never fails: see [`Ini::issues`].
pub fn parse(text: &str) -> Ini {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ini = Ini::default();
    let mut section: Option<String> = None;
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((line_no, raw)) = lines.next() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            match rest.split_once(']') {
                Some((name, after))
                    if !name.trim().is_empty()
                        && (after.trim().is_empty() || after.trim_start().starts_with('#')) =>
                {
                    section = Some(name.trim().to_owned());
                }
                _ => ini.issues.push(Issue {
                    section: section.clone(),
                    line: line_no,
                    text: line.to_owned(),
                    reason: "malformed section header (expected [name])",
                }),
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            ini.issues.push(Issue {
                section: section.clone(),
                line: line_no,
                text: line.to_owned(),
                reason: "expected key=value",
            });
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            ini.issues.push(Issue {
                section: section.clone(),
                line: line_no,
                text: line.to_owned(),
                reason: "malformed key (expected key=value)",
            });
            continue;
        }
        let mut value = value.trim().to_owned();
        while value.ends_with('\\') {
            value.pop();
            match lines.next() {
                Some((_, next)) => value.push_str(next.trim()),
                None => break,
            }
        }
        let Some(section) = section.clone() else {
            ini.issues.push(Issue {
                section: None,
                line: line_no,
                text: line.to_owned(),
                reason: "key outside of any [section]",
            });
            continue;
        };
        ini.entries.push(Entry {
            section,
            key: key.to_owned(),
            value,
            line: line_no,
        });
    }
    ini
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(ini: &Ini) -> Vec<(&str, &str, &str, usize)> {
        ini.entries
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.value.as_str(), e.line))
            .collect()
    }

    #[test]
    fn sections_keys_comments() {
        let ini = parse(
            "# a comment\n\
             [global]\n\
             debug=true\n\
             \n\
             [presence-server]   # ours\n\
             ; another comment\n\
             expires = 600\n\
             \ttransports =  sip:127.0.0.1:5065;transport=tcp   sip:[::1]:5065;transport=tcp \n\
             bypass-condition=a#b\n\
             empty=\n",
        );
        assert_eq!(
            kv(&ini),
            vec![
                ("global", "debug", "true", 3),
                ("presence-server", "expires", "600", 7),
                (
                    "presence-server",
                    "transports",
                    "sip:127.0.0.1:5065;transport=tcp   sip:[::1]:5065;transport=tcp",
                    8
                ),
                ("presence-server", "bypass-condition", "a#b", 9),
                ("presence-server", "empty", "", 10),
            ]
        );
        assert!(ini.issues.is_empty());
    }

    #[test]
    fn continuation_lines() {
        let ini = parse("[s]\nq=select a \\\n   from b \\\n  where c\nnext=1\n");
        assert_eq!(
            kv(&ini),
            vec![
                ("s", "q", "select a from b where c", 2),
                ("s", "next", "1", 5)
            ]
        );
        // A backslash on the last line of the file does not loop.
        let ini = parse("[s]\nq=x\\");
        assert_eq!(kv(&ini), vec![("s", "q", "x", 2)]);
    }

    #[test]
    fn crlf_and_bom() {
        let ini = parse("\u{feff}[s]\r\nk = v\r\n");
        assert_eq!(kv(&ini), vec![("s", "k", "v", 2)]);
    }

    #[test]
    fn issues_are_reported_with_line_numbers() {
        let ini = parse("orphan=1\n[s]\njust words\n[broken\n=v\n");
        let got: Vec<_> = ini.issues.iter().map(|i| (i.line, i.reason)).collect();
        assert_eq!(
            got,
            vec![
                (1, "key outside of any [section]"),
                (3, "expected key=value"),
                (4, "malformed section header (expected [name])"),
                (5, "malformed key (expected key=value)"),
            ]
        );
        assert_eq!(ini.issues[1].section.as_deref(), Some("s"));
        assert!(ini.entries.is_empty());
    }
}
