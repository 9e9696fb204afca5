//! fanout: U users, each with K mutual buddies (single subscriptions both ways), every user
//! published; then PUBLISH changes at `--rate` (or saturation) for `--duration`.

use super::{Check, connect, mesh, publish_all, publish_phase, report_publish, subscribe_all};
use crate::engine::Engine;
use crate::report::Report;

pub async fn run(e: &mut Engine, r: &mut Report) -> Result<Check, String> {
    connect(e, r).await?;
    publish_all(e, r).await?;
    let k = e.opts.mesh_buddies() as u32;
    let ids = mesh(e, k);
    let subs = ids.end - ids.start;
    let took = subscribe_all(e, "mutual subscriptions", ids).await?;
    r.int("buddies", "mutual buddies per user", u64::from(k));
    r.int("subscriptions", "subscriptions", subs);
    r.float(
        "subscribe_setup_s",
        "subscriptions set up (200 + full NOTIFY)",
        Some(took.as_secs_f64()),
        "s",
    );
    let phase = publish_phase(e).await;
    Ok(report_publish(e, r, &phase))
}
