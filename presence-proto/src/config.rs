//! Protocol configuration of the core (what `[presence-server]` sets, plus limits).

use std::time::Duration;

/// Everything the core needs to know; the daemon fills it from flexisip.conf.
#[derive(Debug, Clone)]
pub struct Config {
    /// Default PUBLISH expiry when the request has no `Expires` (`expires`, seconds).
    pub publish_default_expires: u32,
    /// Default SUBSCRIBE expiry when the request has no `Expires` (RFC 3856: 3600).
    pub subscribe_default_expires: u32,
    /// Longest expiry granted to a PUBLISH or SUBSCRIBE (longer requests are shortened).
    pub max_expires: u32,
    /// Maximum simultaneous publications per presentity; the oldest is dropped (`max-presence-elements`).
    pub max_presence_elements: usize,
    /// NOTIFY `Event: Presence` and bare list `Content-ID`s (`support-legacy-client`).
    pub support_legacy_client: bool,
    /// User-Agent substring (case-insensitive) exempting a watcher from the mutual rule
    /// (`bypass-condition`; None = never).
    pub bypass_condition: Option<String>,
    /// Largest SIP message accepted on a connection (head + body).
    pub max_message_size: usize,
    /// Largest number of header lines in one message.
    pub max_headers: usize,
    /// A NOTIFY without a final response after this long ends its subscription (64×T1 = 32 s).
    pub notify_timeout: Duration,
    /// Our own address for `Contact` headers (`sip:HOST:PORT;transport=tcp`); the runtime sets it
    /// once it knows the listening address.
    pub contact: String,
    /// Value of the `User-Agent`/`Server` header we send.
    pub user_agent: String,
    /// Most resources carried by one list NOTIFY (`notify-limit`); the rest follow.
    pub notify_limit: usize,
    /// Least time between two list NOTIFYs carrying changes (Flexisip hard-codes 2 s).
    pub list_notify_interval: Duration,
    /// Delay before the follow-up of a list NOTIFY that hit `notify_limit`.
    pub list_overflow_delay: Duration,
    /// Most entries accepted in one resource list.
    pub max_list_entries: usize,
    /// Largest size a `Content-Encoding: deflate` request body may inflate to.
    pub max_inflated_size: usize,
    /// Long-term presence: watched presentities are looked up in the account database; an
    /// existing account without publication appears open and away (`long-term-enabled`).
    pub long_term_enabled: bool,
    /// A bodyless list SUBSCRIBE asks the database for the list (`rls-database-request` is set).
    pub server_known_lists: bool,
    /// How long the core waits for a query's result before answering without it.
    pub query_timeout: Duration,
    /// Most users looked up by one `Query::Accounts`.
    pub max_query_batch: usize,
    /// Most queries in flight at once; more wait in a queue.
    pub max_inflight_queries: usize,
    /// Most queries waiting for a slot; beyond, requests needing one get 503.
    pub max_queued_queries: usize,
    /// Account lookups remembered (found or not).
    pub account_cache_size: usize,
    /// How long an account lookup is remembered.
    pub account_cache_lifetime: Duration,
    /// How long the time of a user's last activity is remembered (`last-activity-retention-time`).
    pub last_activity_retention: Duration,
    /// Most subscriptions at once (`max-subscriptions`); a new SUBSCRIBE beyond gets 503.
    pub max_subscriptions: usize,
    /// Most subscriptions created over one connection (`max-subscriptions-per-connection`);
    /// behind a proxy all users share a few connections, so it is large.
    pub max_subscriptions_per_connection: usize,
    /// Most publications at once (`max-publications`); an initial PUBLISH beyond gets 503.
    pub max_publications: usize,
    /// Most bytes written to one connection between two drains of the actions
    /// (`max-pending-output`; the runtime applies the same bound to what it has not written
    /// yet): past it the connection is closed, as if it had failed.
    pub max_pending_output: usize,
    /// A connection holding an incomplete message for longer is closed (slowloris).
    pub partial_message_timeout: Duration,
    /// A connection without traffic for this long, and without a subscription using it, is
    /// closed (`idle-connection-timeout`); None: never.
    pub idle_connection_timeout: Option<Duration>,
    /// Wall-clock time at one instant, to write timestamps (the core reads no clock); None: no
    /// timestamps are written.
    pub wall_clock: Option<(std::time::Instant, std::time::SystemTime)>,
    /// Several nodes sharing short-term presence through a store (`redis-server-uri`); None: a
    /// single node, the store is never asked.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            publish_default_expires: 600,
            subscribe_default_expires: 3600,
            max_expires: 86_400,
            max_presence_elements: 10,
            support_legacy_client: true,
            bypass_condition: None,
            max_message_size: 64 * 1024,
            max_headers: 128,
            notify_timeout: Duration::from_secs(32),
            contact: "sip:127.0.0.1:5065;transport=tcp".to_owned(),
            user_agent: "presence-server".to_owned(),
            notify_limit: 200,
            list_notify_interval: Duration::from_secs(2),
            list_overflow_delay: Duration::from_millis(500),
            max_list_entries: 5000,
            max_inflated_size: 1024 * 1024,
            long_term_enabled: false,
            server_known_lists: false,
            query_timeout: Duration::from_secs(5),
            max_query_batch: 100,
            max_inflight_queries: 32,
            max_queued_queries: 1000,
            account_cache_size: 100_000,
            account_cache_lifetime: Duration::from_secs(300),
            last_activity_retention: Duration::from_secs(86_400),
            max_subscriptions: 100_000,
            max_subscriptions_per_connection: 10_000,
            max_publications: 100_000,
            max_pending_output: 16 * 1024 * 1024,
            partial_message_timeout: Duration::from_secs(10),
            idle_connection_timeout: Some(Duration::from_secs(3600)),
            wall_clock: None,
            cluster: None,
        }
    }
}
