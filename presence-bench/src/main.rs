//! presence-bench: a load tool for SIP presence servers over TCP (ours, Kamailio, Flexisip...).
//! See README.md for the scenarios, the options and the JSON fields.

mod cli;
mod conn;
mod engine;
mod inbound;
mod names;
mod procfs;
mod report;
mod scenarios;
mod sip;
mod stats;

use std::process::ExitCode;

/// A short random run id (lower-case letters and digits) from the clock and the process id.
fn random_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = presence_proto::rng::Rng::new(nanos ^ (u64::from(std::process::id()) << 32));
    let mut n = rng.next_u64();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| {
            let c = alphabet[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

fn main() -> ExitCode {
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("presence-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        print!("{}", cli::usage());
        return ExitCode::SUCCESS;
    }
    if opts.version {
        println!("presence-bench {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let run = opts.run_id.clone().unwrap_or_else(random_run_id);
    let names = names::Names::new(&opts.user_prefix, &run, &opts.domain);
    let runtime = if opts.threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("presence-bench: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let outcome = runtime.block_on(scenarios::run(opts, names));
    runtime.shutdown_background();
    print!("{}", outcome.report.human());
    println!("{}", outcome.report.json());
    ExitCode::from(u8::try_from(outcome.status).unwrap_or(1))
}
