//! `presence-daemon`: everything the daemon binaries share that does not depend on an async
//! runtime: the command line, flexisip.conf reading, logging, and the small facts a runtime needs
//! to drive [`presence_proto::Server`] (seed, `Contact` URI, limits of the I/O loop).
//!
//! A runtime binary does:
//! ```no_run
//! # fn run(_: presence_daemon::DaemonConfig) -> Result<(), String> { Ok(()) }
//! fn main() -> std::process::ExitCode {
//!     let config = match presence_daemon::startup(std::env::args_os().skip(1)) {
//!         presence_daemon::Startup::Run(config) => config,
//!         presence_daemon::Startup::Exit(code) => return code,
//!         // `accounts …`: run presence_daemon::run_accounts on an async runtime.
//!         presence_daemon::Startup::Accounts(..) => return std::process::ExitCode::SUCCESS,
//!     };
//!     // bind config.listen, set config.proto.contact, run the core...
//!     # let _ = run(*config);
//!     std::process::ExitCode::SUCCESS
//! }
//! ```

pub mod cli;
pub mod cluster;
pub mod db;
pub mod driver;
pub mod http;
pub mod ini;
pub mod logging;
pub mod metrics;
pub mod settings;
pub mod systemd;
pub mod transport;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub use cli::AccountsCommand;
pub use db::Databases;
pub use driver::{Core, random_seed};
pub use settings::{
    ConfigError, DaemonConfig, Loaded, dump_default_config, load_file, parse_config,
};
pub use transport::{ListenAddr, contact_uri};

/// What `main` must do after [`startup`].
#[derive(Debug)]
pub enum Startup {
    /// Serve with this configuration (logging is initialised).
    Run(Box<DaemonConfig>),
    /// Exit now with this code (help, version, dump printed; or an error reported).
    Exit(ExitCode),
    /// Run an `accounts` subcommand with this configuration ([`run_accounts`]), then exit.
    Accounts(Box<DaemonConfig>, AccountsCommand),
}

/// Exit code for a bad command line.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for an unusable configuration or a failure to start.
pub const EXIT_CONFIG: u8 = 1;

/// Parses the command line (without the program name), prints help/version/default
/// configuration when asked, initialises logging, and reads the configuration file: `--config`,
/// else [`cli::DEFAULT_CONFIG_PATH`] when it exists, else the defaults. Errors are reported on
/// stderr and turned into [`Startup::Exit`] with a non-zero code.
pub fn startup<I>(args: I) -> Startup
where
    I: IntoIterator<Item = OsString>,
{
    let cli = match cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("presence-server: {e}");
            return Startup::Exit(ExitCode::from(EXIT_USAGE));
        }
    };
    if cli.help {
        return print_and_exit(&cli::usage());
    }
    if cli.version {
        return print_and_exit(&cli::version());
    }
    if cli.dump_default_config {
        return print_and_exit(&dump_default_config());
    }
    // The accounts subcommand and --check-config are command-line tools: only warnings and
    // errors are logged.
    if cli.accounts.is_some() || cli.check_config {
        logging::init_level(if cli.debug { "debug" } else { "warn" });
    } else {
        logging::init(cli.debug);
    }

    let default_path = Path::new(cli::DEFAULT_CONFIG_PATH);
    let path = match &cli.config {
        Some(p) => Some(p.as_path()),
        None if default_path.exists() => Some(default_path),
        None => None,
    };
    let loaded = match path {
        Some(p) => load_file(p),
        None => Ok(Loaded {
            config: DaemonConfig::default(),
            warnings: Vec::new(),
        }),
    };
    match loaded {
        Ok(Loaded { config, warnings }) => {
            match path {
                Some(p) => tracing::info!("configuration read from {}", p.display()),
                None => tracing::info!(
                    "no configuration file ({} does not exist): using defaults",
                    cli::DEFAULT_CONFIG_PATH
                ),
            }
            for w in warnings {
                tracing::warn!("{w}");
            }
            if cli.check_config {
                return check_config(path, &config);
            }
            match cli.accounts {
                Some(command) => Startup::Accounts(Box::new(config), command),
                None => Startup::Run(Box::new(config)),
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            Startup::Exit(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// `--check-config`: the database part of the configuration is checked too (connection strings,
/// queries, password file), without connecting; a one-line summary on stdout, or the error.
fn check_config(path: Option<&Path>, config: &DaemonConfig) -> Startup {
    let databases = match db::Plan::new(config) {
        Ok(plan) => plan.describe(),
        Err(e) => {
            // Reported like the errors of the file's reading: file, line, section, key, value.
            let text = path.and_then(|p| std::fs::read_to_string(p).ok());
            let (line, value) = text
                .as_deref()
                .and_then(|t| settings::locate(t, e.section, e.key))
                .map_or((None, String::new()), |(l, v)| (Some(l), v));
            let error = ConfigError::from(settings::ConfigErrorKind::Value {
                origin: path.map_or("the defaults".to_owned(), |p| p.display().to_string()),
                section: e.section.to_owned(),
                key: e.key.to_owned(),
                value,
                line,
                reason: e.reason,
            });
            tracing::error!("{error}");
            return Startup::Exit(ExitCode::from(EXIT_CONFIG));
        }
    };
    let origin = match path {
        Some(p) => p.display().to_string(),
        None => format!("defaults ({} does not exist)", cli::DEFAULT_CONFIG_PATH),
    };
    let listen = if config.enabled {
        let uris: Vec<&str> = config.listen.iter().map(|l| l.uri.as_str()).collect();
        format!("transports {}", uris.join(" "))
    } else {
        "enabled=false (no transport)".to_owned()
    };
    let metrics = match config.metrics_address {
        Some(addr) => format!("metrics on {addr}"),
        None => "no metrics endpoint".to_owned(),
    };
    print_and_exit(&format!(
        "configuration OK: {origin}: {listen}; {databases}; {metrics}\n"
    ))
}

fn print_and_exit(text: &str) -> Startup {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Startup::Exit(ExitCode::SUCCESS),
        Err(_) => Startup::Exit(ExitCode::FAILURE),
    }
}

/// Runs an `accounts` subcommand (on whatever async runtime the caller uses): prints its output on
/// stdout, or the error on stderr; the exit code (0, or [`EXIT_CONFIG`] on failure).
pub async fn run_accounts(config: &DaemonConfig, command: &AccountsCommand) -> ExitCode {
    match db::accounts::run_command(config, command).await {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("presence-server: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
