//! The counters of a run.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::stats::Histogram;

/// The counters of a run. "Measured" ones only count during the measured phase.
#[derive(Debug, Default)]
pub struct Metrics {
    pub publish_sent: u64,
    pub publish_ok: u64,
    pub publish_failed: u64,
    /// PUBLISHes due by the rate but not sent (window full, every user busy).
    pub publish_behind: u64,
    /// NOTIFY requests received while measuring.
    pub notifies: u64,
    /// Notes delivered to single subscriptions while measuring.
    pub delivered: u64,
    /// Notes delivered to list subscriptions (resource instances carrying a new note).
    pub resource_updates: u64,
    /// Older notes of a list resource passed over by a newer one.
    pub coalesced: u64,
    /// Measured notes of a single subscription passed over by a newer note of the same user
    /// (counted as lost too: the server sent the later state only).
    pub superseded: u64,
    /// NOTIFYs or resources carrying a note of another user, an older note, or none.
    pub wrong: u64,
    /// NOTIFYs repeating the last note seen (not counted as failures).
    pub duplicates: u64,
    /// Single NOTIFYs without a note while measuring.
    pub no_note: u64,
    /// Subscriptions the server terminated on its own.
    pub terminated_by_server: u64,
    /// Undecodable bodies.
    pub bad_bodies: u64,
    pub latency: Histogram,
    pub list_latency: Histogram,
    pub publish_rtt: Histogram,
    /// When the last measured note arrived.
    pub last_delivery: Option<Instant>,
    /// Non-2xx final answers outside the cleanup, by "METHOD code".
    pub errors: BTreeMap<String, u64>,
    pub cleanup_errors: u64,
    pub unexpected: BTreeMap<&'static str, u64>,
    pub foreign_notifies: u64,
    pub closed_connections: u64,
}

impl Metrics {
    pub fn non_2xx(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Churn bookkeeping.
#[derive(Debug, Default)]
pub struct Churn {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub active: usize,
    /// SUBSCRIBE sent → 200 and first NOTIFY both received.
    pub setup: Histogram,
    /// Unsubscribe sent → 200 and terminated NOTIFY both received.
    pub teardown: Histogram,
}
