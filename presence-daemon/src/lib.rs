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
pub mod db;
pub mod driver;
pub mod ini;
pub mod logging;
pub mod settings;
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
    // The accounts subcommand is a command-line tool: only warnings and errors are logged.
    match cli.accounts {
        Some(_) => logging::init_level(if cli.debug { "debug" } else { "warn" }),
        None => logging::init(cli.debug),
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
