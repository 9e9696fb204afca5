//! Logs: `tracing` events formatted on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The level is `info` (`debug` with `--debug`) unless `RUST_LOG`
/// is set, which then chooses. Calling it twice is harmless (the second call does nothing).
pub fn init(debug: bool) {
    init_level(if debug { "debug" } else { "info" });
}

/// Installs the global subscriber with `default` as the filter unless `RUST_LOG` is set.
pub fn init_level(default: &str) {
    let (filter, bad_env) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(f) => (f, None),
            Err(e) => (
                EnvFilter::new(default),
                Some(format!("ignoring RUST_LOG={spec:?}: {e}")),
            ),
        },
        _ => (EnvFilter::new(default), None),
    };
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init()
        .is_ok();
    if installed && let Some(msg) = bad_env {
        tracing::warn!("{msg}");
    }
}
