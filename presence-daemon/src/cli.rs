//! The command line, a subset of Flexisip's: `--config`, `--server presence`, `--debug`, plus
//! `--dump-default-config`, `--help` and `--version`.

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
    /// `-h`, `--help`.
    pub help: bool,
    /// `-V`, `--version`.
    pub version: bool,
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
         \n\
         Options:\n\
         \x20 -c, --config PATH        configuration file in flexisip.conf syntax (default:\n\
         \x20                          {DEFAULT_CONFIG_PATH} when it exists, else built-in defaults)\n\
         \x20     --server presence    accepted for compatibility with flexisip; no other server\n\
         \x20 -d, --debug              debug-level logs (RUST_LOG, when set, chooses instead)\n\
         \x20     --dump-default-config\n\
         \x20                          print the default [presence-server] section and exit\n\
         \x20 -h, --help               print this help and exit\n\
         \x20 -V, --version            print the version and exit\n",
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
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            return Err(UsageError(format!("unexpected argument {arg:?}")));
        };
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
            "-h" | "--help" => cli.help = true,
            "-V" | "--version" => cli.version = true,
            _ => return Err(UsageError(format!("unknown argument '{text}'"))),
        }
        if inline.is_some() && !matches!(name, "--config" | "--server") {
            return Err(UsageError(format!("option '{name}' takes no value")));
        }
    }
    Ok(cli)
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
}
