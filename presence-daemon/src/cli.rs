//! The command line, a subset of Flexisip's: `--config`, `--server presence`, `--debug`, plus
//! `--dump-default-config`, `--check-config`, `--help` and `--version`, and the `accounts`
//! subcommand that manages the account database (`accounts add USER@DOMAIN [--phone NUMBER]`,
//! `accounts list`, `accounts remove USER@DOMAIN`).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// Where the configuration is read when `--config` is not given (if the file exists).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/flexisip/flexisip.conf";

/// Parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    /// `-c PATH`, `--config PATH`, `--config=PATH`.
    pub config: Option<PathBuf>,
    /// `-d`, `--debug`: debug-level logs.
    pub debug: bool,
    /// `--dump-default-config`.
    pub dump_default_config: bool,
    /// `--check-config`: load and check the configuration, then exit.
    pub check_config: bool,
    /// `-h`, `--help`.
    pub help: bool,
    /// `-V`, `--version`.
    pub version: bool,
    /// `accounts …`: manage the account database instead of serving.
    pub accounts: Option<AccountsCommand>,
}

/// `presence-server accounts …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountsCommand {
    /// `accounts add USER@DOMAIN [--phone NUMBER]`.
    Add {
        address: String,
        phone: Option<String>,
    },
    /// `accounts list`.
    List,
    /// `accounts remove USER@DOMAIN`.
    Remove { address: String },
}

/// A command line that cannot be obeyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\nTry 'presence-server --help' for more information.",
            self.0
        )
    }
}

impl std::error::Error for UsageError {}

/// The `--help` text.
pub fn usage() -> String {
    format!(
        "presence-server {} - a SIP presence server (PUBLISH, SUBSCRIBE, NOTIFY over TCP),\n\
         compatible with Flexisip's presence server and its flexisip.conf.\n\
         \n\
         Usage: presence-server [OPTIONS]\n\
         \x20      presence-server [OPTIONS] accounts add USER@DOMAIN [--phone NUMBER]\n\
         \x20      presence-server [OPTIONS] accounts list\n\
         \x20      presence-server [OPTIONS] accounts remove USER@DOMAIN\n\
         \n\
         Options:\n\
         \x20 -c, --config PATH        configuration file in flexisip.conf syntax (default:\n\
         \x20                          {DEFAULT_CONFIG_PATH} when it exists, else built-in defaults)\n\
         \x20     --server presence    accepted for compatibility with flexisip; no other server\n\
         \x20 -d, --debug              debug-level logs (RUST_LOG, when set, chooses instead)\n\
         \x20     --dump-default-config\n\
         \x20                          print the default [presence-server] section and exit\n\
         \x20     --check-config       check the configuration (as at startup, without listening\n\
         \x20                          or connecting to databases), print a summary and exit\n\
         \x20 -h, --help               print this help and exit\n\
         \x20 -V, --version            print the version and exit\n\
         \n\
         The accounts subcommand manages the account database of long-term presence: the\n\
         embedded SQLite file ([presence-server] accounts-database, default\n\
         presence-accounts.db in the working directory, created when absent), or the SQL\n\
         database of [module::Authentication] db-implementation=soci (its accounts table).\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The `--version` text.
pub fn version() -> String {
    format!("presence-server {}\n", env!("CARGO_PKG_VERSION"))
}

/// Parses the arguments (without the program name).
pub fn parse_args<I, T>(args: I) -> Result<Cli, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut cli = Cli::default();
    let mut args = args.into_iter().map(Into::into);
    // After `accounts`: its words, and `--phone`.
    let mut accounts: Option<Vec<String>> = None;
    let mut phone: Option<String> = None;
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            return Err(UsageError(format!("unexpected argument {arg:?}")));
        };
        if !text.starts_with('-') || text == "-" {
            match &mut accounts {
                Some(words) => words.push(text.to_owned()),
                None if text == "accounts" => accounts = Some(Vec::new()),
                None => return Err(UsageError(format!("unknown argument '{text}'"))),
            }
            continue;
        }
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(OsString::from(v))),
            _ => (text, None),
        };
        let mut value = |what: &str| -> Result<OsString, UsageError> {
            match inline.clone().or_else(|| args.next()) {
                Some(v) => Ok(v),
                None => Err(UsageError(format!("option '{name}' needs {what}"))),
            }
        };
        match name {
            "-c" | "--config" => cli.config = Some(PathBuf::from(value("a file path")?)),
            "--server" => {
                let v = value("a server name")?;
                if v != "presence" {
                    return Err(UsageError(format!(
                        "unsupported server {v:?}: this program only runs the presence server \
                         ('--server presence')"
                    )));
                }
            }
            "-d" | "--debug" => cli.debug = true,
            "--dump-default-config" => cli.dump_default_config = true,
            "--check-config" => cli.check_config = true,
            "-h" | "--help" => cli.help = true,
            "-V" | "--version" => cli.version = true,
            "--phone" if accounts.is_some() => {
                let v = value("a phone number")?;
                let Some(v) = v.to_str() else {
                    return Err(UsageError(format!("unexpected phone number {v:?}")));
                };
                phone = Some(v.to_owned());
            }
            _ => return Err(UsageError(format!("unknown argument '{text}'"))),
        }
        if inline.is_some() && !matches!(name, "--config" | "--server" | "--phone") {
            return Err(UsageError(format!("option '{name}' takes no value")));
        }
    }
    if let Some(words) = accounts {
        cli.accounts = Some(accounts_command(&words, phone)?);
    }
    Ok(cli)
}

fn accounts_command(
    words: &[String],
    phone: Option<String>,
) -> Result<AccountsCommand, UsageError> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    if phone.is_some() && words.first() != Some(&"add") {
        return Err(UsageError("--phone is only for 'accounts add'".to_owned()));
    }
    let command = match words.as_slice() {
        ["add", address] => AccountsCommand::Add {
            address: (*address).to_owned(),
            phone,
        },
        ["list"] => AccountsCommand::List,
        ["remove", address] => AccountsCommand::Remove {
            address: (*address).to_owned(),
        },
        ["add"] | ["remove"] => {
            return Err(UsageError(format!(
                "'accounts {}' needs an address (user@domain)",
                words[0]
            )));
        }
        [] => {
            return Err(UsageError(
                "'accounts' needs a subcommand: add, list or remove".to_owned(),
            ));
        }
        [verb, ..] if !matches!(*verb, "add" | "list" | "remove") => {
            return Err(UsageError(format!(
                "unknown accounts subcommand '{verb}' (add, list or remove)"
            )));
        }
        [verb, rest @ ..] => {
            return Err(UsageError(format!(
                "unexpected argument '{}' after 'accounts {verb}'",
                rest.last().copied().unwrap_or_default()
            )));
        }
    };
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(parse_args::<_, &str>([]), Ok(Cli::default()));
        let cli = parse_args(["--config", "/tmp/f.conf", "--server", "presence", "-d"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/tmp/f.conf")));
        assert!(cli.debug);
        let cli =
            parse_args(["--config=/x", "--server=presence", "--dump-default-config"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/x")));
        assert!(cli.dump_default_config);
        let cli = parse_args(["--check-config", "-c", "/y"]).unwrap();
        assert!(cli.check_config);
        assert_eq!(cli.config, Some(PathBuf::from("/y")));
        assert!(parse_args(["--check-config=yes"]).is_err());
        assert!(parse_args(["-c", "a"]).unwrap().config.is_some());
        assert!(parse_args(["--help"]).unwrap().help);
        assert!(parse_args(["-V"]).unwrap().version);
    }

    #[test]
    fn errors() {
        let err = parse_args(["--server", "proxy"]).unwrap_err();
        assert!(err.0.contains("unsupported server \"proxy\""), "{err}");
        assert!(parse_args(["--server"]).is_err());
        assert!(parse_args(["--config"]).is_err());
        assert!(parse_args(["--frobnicate"]).is_err());
        assert!(parse_args(["--debug=yes"]).is_err());
        assert!(parse_args(["stray"]).is_err());
    }

    #[test]
    fn accounts() {
        let cli = parse_args([
            "-c",
            "/x.conf",
            "accounts",
            "add",
            "alice@example.org",
            "--phone",
            "+33612345678",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/x.conf")));
        assert_eq!(
            cli.accounts,
            Some(AccountsCommand::Add {
                address: "alice@example.org".into(),
                phone: Some("+33612345678".into())
            })
        );
        let cli = parse_args(["accounts", "add", "--phone=+1", "bob@x", "--config", "/y"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/y")));
        assert_eq!(
            cli.accounts,
            Some(AccountsCommand::Add {
                address: "bob@x".into(),
                phone: Some("+1".into())
            })
        );
        assert_eq!(
            parse_args(["accounts", "list"]).unwrap().accounts,
            Some(AccountsCommand::List)
        );
        assert_eq!(
            parse_args(["accounts", "remove", "a@b"]).unwrap().accounts,
            Some(AccountsCommand::Remove {
                address: "a@b".into()
            })
        );
        for (args, message) in [
            (&["accounts"][..], "needs a subcommand"),
            (&["accounts", "add"][..], "needs an address"),
            (&["accounts", "frob"][..], "unknown accounts subcommand"),
            (&["accounts", "list", "x"][..], "unexpected argument 'x'"),
            (
                &["accounts", "remove", "a@b", "--phone", "1"][..],
                "only for 'accounts add'",
            ),
            (&["--phone", "1"][..], "unknown argument '--phone'"),
            (
                &["accounts", "add", "a@b", "--phone"][..],
                "needs a phone number",
            ),
        ] {
            let err = parse_args(args.iter().copied()).unwrap_err();
            assert!(err.0.contains(message), "{args:?}: {err}");
        }
    }
}
