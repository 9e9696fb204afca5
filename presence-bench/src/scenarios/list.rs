//! list: `--lists` users each subscribe to a resource list of `--entries` users (RFC 5367: the
//! list in the SUBSCRIBE body, zlib-deflated with `--deflate`); every entry watches the list's
//! owner back (through its own list when it has one, else a single subscription), so that the
//! mutual rule lets the owner see it. Then users publish at `--rate`: resource updates per second
//! and their latency. Kamailio does not accept lists in the SUBSCRIBE body.
//!
//! The server CPU of the list subscriptions alone (from the first list SUBSCRIBE sent to every
//! list's full state received, the answers to its NOTIFYs included) is reported per list:
//! `--duration 0` skips the PUBLISH phase, which makes a run the cost of setting up `--lists`
//! lists of `--entries` entries.

use std::collections::{HashMap, HashSet};

use super::{Check, Cpu, connect, publish_all, publish_phase, report_publish, subscribe_all};
use crate::engine::{Engine, Kind};
use crate::report::Report;

/// The entries of the list owned by `owner`: its ring neighbours 1, -1, 2, -2, …
fn entries_of(owner: u32, users: u32, entries: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(entries as usize);
    let mut d = 1;
    while out.len() < entries as usize && d < users {
        let (up, down) = ((owner + d) % users, (owner + users - d) % users);
        out.push(up);
        if out.len() < entries as usize && down != up {
            out.push(down);
        }
        d += 1;
    }
    out
}

pub async fn run(e: &mut Engine, r: &mut Report) -> Result<Check, String> {
    connect(e, r).await?;
    publish_all(e, r).await?;
    let users = e.users.len() as u32;
    let (lists, entries) = (e.opts.lists as u32, e.opts.entries as u32);
    let lists_of: Vec<Vec<u32>> = (0..lists).map(|l| entries_of(l, users, entries)).collect();
    let members: Vec<HashSet<u32>> = lists_of
        .iter()
        .map(|l| l.iter().copied().collect())
        .collect();

    // Entries that do not watch the owner through a list of their own watch it directly.
    let first_single = e.dialog_ids().end;
    for (owner, list) in lists_of.iter().enumerate() {
        let owner = owner as u32;
        for &x in list {
            let through_list = members.get(x as usize).is_some_and(|m| m.contains(&owner));
            if !through_list {
                e.add_dialog(x, Kind::Single { presentity: owner }, &[owner]);
            }
        }
    }
    let singles = first_single..e.dialog_ids().end;
    let n_singles = singles.end - singles.start;
    if n_singles > 0 {
        e.progress(&format!(
            "reverse subscriptions (entries -> owners): {n_singles} SUBSCRIBEs"
        ));
        let ids = singles.clone();
        e.setup_phase(
            "reverse subscriptions",
            n_singles as usize,
            |e, i| e.subscribe(singles.start + i as u64),
            move |e| e.all_answered(ids.clone()),
        )
        .await?;
    }

    let first_list = e.dialog_ids().end;
    for (owner, list) in lists_of.iter().enumerate() {
        let owner = owner as u32;
        e.set_list_body(owner, list);
        e.add_dialog(
            owner,
            Kind::List {
                list: owner,
                index: HashMap::new(),
            },
            list,
        );
    }
    let list_ids = first_list..e.dialog_ids().end;
    let cpu = Cpu::start(&e.opts);
    let took = subscribe_all(e, "list subscriptions", list_ids.clone()).await?;
    let list_cpu = cpu.stop(&e.opts);
    r.int("lists", "lists", u64::from(lists));
    r.int("entries", "entries per list", u64::from(entries));
    r.bool("deflate", "deflated bodies", e.opts.deflate);
    r.int(
        "reverse_subscriptions",
        "single reverse subscriptions",
        n_singles,
    );
    r.float(
        "list_setup_s",
        "lists set up (200 + full state)",
        Some(took.as_secs_f64()),
        "s",
    );
    r.latency(
        "full_state",
        "list SUBSCRIBE -> full state",
        &e.sync_times(list_ids),
    );
    list_cpu.report(r, "list_setup_", "list subscriptions");
    r.float(
        "list_setup_cpu_ms_per_list",
        "server CPU per list (SUBSCRIBE to full state)",
        list_cpu
            .server_total()
            .filter(|_| lists > 0)
            .map(|t| t * 1000.0 / f64::from(lists)),
        "ms",
    );
    let phase = publish_phase(e).await;
    Ok(report_publish(e, r, &phase))
}

#[cfg(test)]
mod tests {
    use super::entries_of;

    #[test]
    fn entries_are_distinct_neighbours() {
        assert_eq!(entries_of(0, 10, 3), vec![1, 9, 2]);
        let all = entries_of(5, 11, 10);
        let mut s = all.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert!(!all.contains(&5));
        let mut even = entries_of(0, 10, 9);
        even.sort_unstable();
        assert_eq!(even, (1..10).collect::<Vec<u32>>());
    }
}
