//! hold: N subscriptions held (the mutual ring with N / U buddies per user), set up at a bounded
//! rate; the server's memory before and after gives the memory per subscription. Then hold them
//! `--hold-seconds`, and with `--then-fanout` run the fanout phase on them.

use std::time::{Duration, Instant};

use super::{
    Check, Cpu, connect, mesh, publish_all, publish_phase, report_memory, report_publish,
    subscribe_all,
};
use crate::engine::Engine;
use crate::procfs;
use crate::report::Report;

pub async fn run(e: &mut Engine, r: &mut Report) -> Result<Check, String> {
    connect(e, r).await?;
    let connected = procfs::sample(&e.opts.pids);
    publish_all(e, r).await?;
    let before = procfs::sample(&e.opts.pids);
    let k = e.opts.mesh_buddies() as u32;
    let ids = mesh(e, k);
    let subs = ids.end - ids.start;
    let cpu = Cpu::start(&e.opts);
    let took = subscribe_all(e, "held subscriptions", ids.clone()).await?;
    let setup_cpu = cpu.stop(&e.opts);
    // Let the allocator settle (and late NOTIFY answers be processed) before sampling.
    e.pump(Instant::now() + Duration::from_millis(500)).await;
    let after = procfs::sample(&e.opts.pids);
    let held = e.established(ids);
    r.int("buddies", "mutual buddies per user", u64::from(k));
    r.int("subscriptions", "subscriptions held", held);
    r.float(
        "subscribe_setup_s",
        "subscriptions set up (200 + full NOTIFY)",
        Some(took.as_secs_f64()),
        "s",
    );
    r.float(
        "subscribe_rate",
        "subscriptions set up per second",
        Some(subs as f64 / took.as_secs_f64().max(1e-9)),
        "/s",
    );
    setup_cpu.report(r, "setup_", "subscription setup");
    r.float(
        "subscriptions_per_cpu_s",
        "subscriptions per server CPU-second",
        setup_cpu.per_cpu_second(subs),
        "",
    );
    r.section("Server memory");
    report_memory(r, "connected", "after connecting", connected.as_ref());
    report_memory(r, "before", "before subscribing", before.as_ref());
    report_memory(r, "after", "with the subscriptions", after.as_ref());
    let per_sub = match (&before, &after) {
        (Some(b), Some(a)) if held > 0 => {
            Some((a.memory_kb() as f64 - b.memory_kb() as f64) * 1024.0 / held as f64)
        }
        _ => None,
    };
    r.float(
        "bytes_per_subscription",
        "memory per subscription (PSS, else RSS)",
        per_sub,
        "bytes",
    );
    let mut check = Check::default();
    if !e.opts.hold_seconds.is_zero() {
        e.progress(&format!(
            "holding {held} subscriptions for {:.0} s",
            e.opts.hold_seconds.as_secs_f64()
        ));
        let cpu = Cpu::start(&e.opts);
        let until = Instant::now() + e.opts.hold_seconds;
        e.measuring = true;
        while Instant::now() < until {
            e.pump(until).await;
        }
        e.measuring = false;
        let hold_cpu = cpu.stop(&e.opts);
        r.section("Holding");
        r.float(
            "hold_s",
            "held for",
            Some(e.opts.hold_seconds.as_secs_f64()),
            "s",
        );
        r.int("hold_notifies", "NOTIFYs while holding", e.m.notifies);
        hold_cpu.report(r, "hold_", "holding");
        report_memory(
            r,
            "held",
            "after holding",
            procfs::sample(&e.opts.pids).as_ref(),
        );
    }
    if e.opts.then_fanout {
        e.m.notifies = 0;
        let phase = publish_phase(e).await;
        check = report_publish(e, r, &phase);
    } else {
        check.failures =
            e.m.non_2xx() + e.m.closed_connections + e.m.terminated_by_server + e.m.wrong;
        check.total = subs;
    }
    Ok(check)
}
