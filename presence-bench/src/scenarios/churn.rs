//! churn: subscription dialogs created and ended as fast as `--window` in flight allows, for
//! `--duration` or `--dialogs`: SUBSCRIBE (Expires `--expires`) → 200 and first NOTIFY →
//! SUBSCRIBE Expires 0 → 200 and terminated NOTIFY, each between two random users.

use std::time::{Duration, Instant};

use super::{Check, Cpu, connect};
use crate::engine::Engine;
use crate::report::Report;

pub async fn run(e: &mut Engine, r: &mut Report) -> Result<Check, String> {
    connect(e, r).await?;
    let window = e.opts.effective_window();
    let limit = e.opts.dialogs;
    let timeout = e.opts.timeout;
    e.progress(&format!(
        "measuring: subscription churn, {window} dialogs in flight, for {:.0} s{}",
        e.opts.duration.as_secs_f64(),
        limit.map_or(String::new(), |n| format!(" or {n} dialogs"))
    ));
    let cpu = Cpu::start(&e.opts);
    let start = cpu.at;
    let stop = start + e.opts.duration;
    e.measuring = true;
    loop {
        let now = Instant::now();
        let all_started = limit.is_some_and(|n| e.churn.started >= n);
        if now >= stop || all_started {
            break;
        }
        e.churn_sweep(now, timeout);
        while e.churn.active < window && limit.is_none_or(|n| e.churn.started < n) {
            e.churn_start();
        }
        e.pump(stop.min(now + Duration::from_millis(50))).await;
    }
    let sending = start.elapsed();
    let drain = Instant::now() + e.opts.grace;
    while e.churn.active > 0 && Instant::now() < drain {
        e.churn_sweep(Instant::now(), timeout);
        e.pump(drain.min(Instant::now() + Duration::from_millis(50)))
            .await;
    }
    let elapsed = start.elapsed();
    e.measuring = false;
    let cpu = cpu.stop(&e.opts);
    let unfinished = e.churn.active as u64;
    let c = &e.churn;
    r.section("Measured phase");
    r.float(
        "duration_s",
        "churn phase (starting dialogs)",
        Some(sending.as_secs_f64()),
        "s",
    );
    r.int("window", "dialogs in flight", window as u64);
    r.int("dialogs_started", "dialogs started", c.started);
    r.int("dialogs_completed", "dialogs completed", c.completed);
    r.int("dialogs_failed", "dialogs refused", c.failed);
    r.int("dialogs_timed_out", "dialogs timed out", c.timed_out);
    r.int("dialogs_unfinished", "dialogs unfinished", unfinished);
    r.int("notify_received", "NOTIFYs received", e.m.notifies);
    r.float(
        "dialog_rate",
        "dialogs per second",
        Some(c.completed as f64 / elapsed.as_secs_f64().max(1e-9)),
        "/s",
    );
    r.latency("setup", "SUBSCRIBE -> 200 + first NOTIFY", &c.setup);
    r.latency("teardown", "unSUBSCRIBE -> 200 + terminated", &c.teardown);
    r.section("Server CPU (measured phase)");
    cpu.report(r, "", "measured phase");
    r.float(
        "dialogs_per_cpu_s",
        "dialogs per server CPU-second",
        cpu.per_cpu_second(c.completed),
        "",
    );
    r.float(
        "notifies_per_cpu_s",
        "NOTIFYs per server CPU-second",
        cpu.per_cpu_second(e.m.notifies),
        "",
    );
    cpu.report_with_store(
        r,
        "dialogs_per_cpu_s_with_store",
        "dialogs per CPU-second, servers + store",
        c.completed,
    );
    Ok(Check {
        failures: c.timed_out + unfinished + e.m.non_2xx() + e.m.closed_connections,
        total: c.started,
    })
}
