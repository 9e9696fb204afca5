//! `presence-server`: the presence server daemon on tokio.

use std::process::ExitCode;
use std::time::Duration;

use presence_daemon::{EXIT_CONFIG, Startup, startup};

fn main() -> ExitCode {
    let startup = startup(std::env::args_os().skip(1));
    if let Startup::Exit(code) = startup {
        return code;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = match startup {
        Startup::Run(config) => config,
        Startup::Accounts(config, command) => {
            return runtime.block_on(presence_daemon::run_accounts(&config, &command));
        }
        Startup::Exit(code) => return code,
    };
    let result = runtime.block_on(runtime_tokio::run(*config));
    // Do not wait for a blocked name resolution or similar at exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
