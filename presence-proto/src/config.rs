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
        }
    }
}
