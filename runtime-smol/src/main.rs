//! `presence-server-smol`: the presence server daemon on smol.

use std::process::ExitCode;

use presence_daemon::{EXIT_CONFIG, Startup, startup};

fn main() -> ExitCode {
    let config = match startup(std::env::args_os().skip(1)) {
        Startup::Run(config) => config,
        Startup::Accounts(config, command) => {
            return smol::block_on(presence_daemon::run_accounts(&config, &command));
        }
        Startup::Exit(code) => return code,
    };
    // The tasks left on smol's executor (a blocked name resolution or similar) end with the
    // process.
    match smol::block_on(runtime_smol::run(*config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
