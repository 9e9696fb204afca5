//! Redis Sentinel in front of the cluster store: the `redis+sentinel://` form of
//! `redis-server-uri` and the resolution of the current master.
//!
//! `redis+sentinel://[user:password@]host1[:port][,host2[:port]...]/SERVICE[/DB]`
//! `[?sentinel-username=U&sentinel-password=P]`: the sentinels (port 26379 by default; IPv6
//! addresses in brackets), the name they monitor the master under, and the master's database
//! (0 by default). The user and password before `@` are the master's (and its replicas', as
//! Sentinel promotes one of them); the sentinels themselves are contacted without
//! authentication unless the query gives theirs (both percent-encoded, as in any URI).
//!
//! Before each connection (the command connection and the pub/sub connection, again after every
//! failure) the sentinels are asked in the given order, starting with the one that answered
//! last, each within `cluster-timeout`: `SENTINEL get-master-addr-by-name SERVICE`, then a
//! connection to the address given and `ROLE`, which must say `master` (otherwise, or when it
//! does not answer, the next sentinel is asked).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    Value,
};
use tracing::{debug, info};

use super::{Either, Sleeper, lock, race};

/// The scheme of a `redis-server-uri` naming sentinels.
pub const SCHEME: &str = "redis+sentinel://";
/// Sentinel's usual port.
pub const DEFAULT_PORT: u16 = 26379;

const FORM: &str = "expected redis+sentinel://[user:password@]host[:port][,host[:port]...]/SERVICE[/DB][?sentinel-username=U&sentinel-password=P]";

/// A host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The master found by [`Sentinel::resolve`], checked with `ROLE`.
pub struct Master {
    pub addr: Addr,
    /// A client for it (with the URI's user, password and database).
    pub client: redis::Client,
    /// The connection the check was made on.
    pub conn: MultiplexedConnection,
}

/// The sentinels of a `redis+sentinel://` URI.
#[derive(Debug)]
pub struct Sentinel {
    service: String,
    sentinels: Vec<Addr>,
    /// How to authenticate to the sentinels (the query's `sentinel-username`/`-password`).
    auth: RedisConnectionInfo,
    /// The master's connection settings (user, password, database); the address is the
    /// sentinels'.
    master: ConnectionInfo,
    /// The sentinel that answered last: asked first next time.
    first: AtomicUsize,
    /// The master found last (a change is logged).
    last: Mutex<Option<Addr>>,
    /// The URI without its passwords.
    shown: String,
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_addr(s: &str) -> Result<Addr, String> {
    let bad = || format!("bad sentinel address {s:?} ({FORM})");
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@[]".contains(c))
    {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok(Addr {
        host: host.to_owned(),
        port,
    })
}

impl Sentinel {
    /// The sentinels of `uri`; None when it is not a `redis+sentinel://` URI; an error (that
    /// shows no password) when it is one but malformed.
    pub fn parse(uri: &str) -> Result<Option<Sentinel>, String> {
        let Some(rest) = uri.strip_prefix(SCHEME) else {
            return Ok(None);
        };
        if rest.contains('#') {
            return Err(format!("no fragment (#) expected ({FORM})"));
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let Some((authority, path)) = rest.split_once('/') else {
            return Err(format!("no service name ({FORM})"));
        };
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .map(parse_addr)
            .collect::<Result<Vec<_>, _>>()?;
        let mut segments = path.split('/');
        let service = percent_decode(segments.next().unwrap_or_default())?;
        if service.is_empty() || service.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("no service name ({FORM})"));
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(d) => d
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| format!("bad database number {d:?} ({FORM})"))?,
        };
        if segments.next().is_some() {
            return Err(format!("too many path segments ({FORM})"));
        }
        // The master's user and password, decoded as the redis crate decodes its own URIs.
        let userinfo_at = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let master = format!("redis://{userinfo_at}localhost/{db}")
            .into_connection_info()
            .map_err(|_| format!("bad user or password before '@' ({FORM})"))?;
        let mut auth = RedisConnectionInfo::default();
        let mut shown_query = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let value = percent_decode(value)?;
            match name {
                "sentinel-username" => {
                    auth = auth.set_username(value);
                    shown_query.push(param.to_owned());
                }
                "sentinel-password" => {
                    auth = auth.set_password(value);
                    shown_query.push(format!("{name}=***"));
                }
                _ => {
                    return Err(format!(
                        "unknown parameter {name:?} (sentinel-username and sentinel-password \
                         are known)"
                    ));
                }
            }
        }
        let mut shown = SCHEME.to_owned();
        if let Some(u) = userinfo {
            match u.split_once(':') {
                Some((user, _)) => write!(shown, "{user}:***@"),
                None => write!(shown, "{u}@"),
            }
            .ok();
        }
        let hosts: Vec<String> = sentinels.iter().map(Addr::to_string).collect();
        write!(shown, "{}/{service}/{db}", hosts.join(",")).ok();
        if !shown_query.is_empty() {
            write!(shown, "?{}", shown_query.join("&")).ok();
        }
        Ok(Some(Sentinel {
            service,
            sentinels,
            auth,
            master,
            first: AtomicUsize::new(0),
            last: Mutex::new(None),
            shown,
        }))
    }

    /// The URI without its passwords.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn config(timeout: Duration) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
    }

    /// The sentinels' indexes, from the one that answered last.
    fn order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.sentinels.len();
        let first = self.first.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| (first + i) % n)
    }

    /// Sentinel `i`'s master, within `timeout`.
    async fn ask<S: Sleeper>(
        &self,
        i: usize,
        sleeper: &S,
        timeout: Duration,
    ) -> Result<Addr, String> {
        let at = &self.sentinels[i];
        let info = ConnectionAddr::Tcp(at.host.clone(), at.port)
            .into_connection_info()
            .map_err(|e| e.to_string())?
            .set_redis_settings(self.auth.clone());
        let client = super::client(info).map_err(|e| e.to_string())?;
        let query = async {
            let mut c = client
                .get_multiplexed_async_connection_with_config(&Self::config(timeout))
                .await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.service)
                .query_async::<Option<(String, u16)>>(&mut c)
                .await
        };
        match race(query, sleeper.sleep(timeout)).await {
            Either::Left(Ok(Some((host, port)))) => Ok(Addr { host, port }),
            Either::Left(Ok(None)) => Err(format!("does not know {:?}", self.service)),
            Either::Left(Err(e)) => Err(e.to_string()),
            Either::Right(()) => Err(format!("no answer in {timeout:?}")),
        }
    }

    /// Connects to `addr` and checks that it is a master, within `timeout`.
    async fn check<S: Sleeper>(
        &self,
        addr: &Addr,
        sleeper: &S,
        timeout: Duration,
    ) -> Result<(redis::Client, MultiplexedConnection), String> {
        let info = self
            .master
            .clone()
            .set_addr(ConnectionAddr::Tcp(addr.host.clone(), addr.port));
        let client = super::client(info).map_err(|e| e.to_string())?;
        let role = async {
            let mut c = client
                .get_multiplexed_async_connection_with_config(&Self::config(timeout))
                .await?;
            let role = redis::cmd("ROLE").query_async::<Value>(&mut c).await?;
            Ok::<_, redis::RedisError>((c, role))
        };
        match race(role, sleeper.sleep(timeout)).await {
            Either::Left(Ok((conn, Value::Array(parts)))) => {
                match parts.first().and_then(super::bytes_of) {
                    Some(b"master") => Ok((client, conn)),
                    Some(other) => Err(format!("is a {}", String::from_utf8_lossy(other))),
                    None => Err("bad ROLE reply".to_owned()),
                }
            }
            Either::Left(Ok(_)) => Err("bad ROLE reply".to_owned()),
            Either::Left(Err(e)) => Err(e.to_string()),
            Either::Right(()) => Err(format!("no answer in {timeout:?}")),
        }
    }

    /// The current master: the first sentinel that names one which answers `ROLE` as a master.
    /// The error lists what each sentinel gave.
    pub async fn resolve<S: Sleeper>(
        &self,
        sleeper: &S,
        timeout: Duration,
    ) -> Result<Master, String> {
        let mut errors: Vec<String> = Vec::new();
        let mut refused: Vec<Addr> = Vec::new();
        for i in self.order() {
            let via = &self.sentinels[i];
            let addr = match self.ask(i, sleeper, timeout).await {
                Ok(a) => a,
                Err(e) => {
                    errors.push(format!("sentinel {via}: {e}"));
                    continue;
                }
            };
            if refused.contains(&addr) {
                continue;
            }
            match self.check(&addr, sleeper, timeout).await {
                Ok((client, conn)) => {
                    self.first.store(i, Ordering::Relaxed);
                    let previous = lock(&self.last).replace(addr.clone());
                    if previous.as_ref() != Some(&addr) {
                        info!(
                            "cluster store: master {} at {addr} via sentinel {via}",
                            self.service
                        );
                    } else {
                        debug!(
                            "cluster store: master {} at {addr} via sentinel {via}",
                            self.service
                        );
                    }
                    return Ok(Master { addr, client, conn });
                }
                Err(e) => {
                    errors.push(format!("sentinel {via}: master {addr}: {e}"));
                    refused.push(addr);
                }
            }
        }
        Err(format!(
            "no master {:?} found through the sentinels ({})",
            self.service,
            errors.join("; ")
        ))
    }

    /// The master the first sentinel to answer names now (not checked); None if none answers.
    pub async fn current<S: Sleeper>(&self, sleeper: &S, timeout: Duration) -> Option<Addr> {
        for i in self.order() {
            match self.ask(i, sleeper, timeout).await {
                Ok(a) => return Some(a),
                Err(e) => debug!("cluster store: sentinel {}: {e}", self.sentinels[i]),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Sentinel {
        Sentinel::parse(uri)
            .expect("valid")
            .expect("a sentinel URI")
    }

    #[test]
    fn the_sentinel_form_is_parsed() {
        let s = parse("redis+sentinel://10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster/2");
        assert_eq!(s.service, "mymaster");
        assert_eq!(
            s.sentinels
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.0.0.1:26380", "sentinel-b:26379", "[::1]:26381"]
        );
        assert_eq!(s.master.redis_settings().db(), 2);
        assert_eq!(s.master.redis_settings().password(), None);
        assert_eq!(s.auth.password(), None);
        assert_eq!(
            s.shown(),
            "redis+sentinel://10.0.0.1:26380,sentinel-b:26379,[::1]:26381/mymaster/2"
        );

        let s = parse(
            "redis+sentinel://bob:s%40cret@h/presence?sentinel-username=watch&sentinel-password=p%26w",
        );
        assert_eq!(s.master.redis_settings().db(), 0);
        assert_eq!(s.master.redis_settings().username(), Some("bob"));
        assert_eq!(s.master.redis_settings().password(), Some("s@cret"));
        assert_eq!(s.auth.username(), Some("watch"));
        assert_eq!(s.auth.password(), Some("p&w"));
        assert_eq!(
            s.shown(),
            "redis+sentinel://bob:***@h:26379/presence/0?sentinel-username=watch&sentinel-password=***"
        );
        assert!(!s.shown().contains("cret"));
        let s = parse("redis+sentinel://:pw@h:1/m/");
        assert_eq!(s.master.redis_settings().password(), Some("pw"));
        assert_eq!(s.shown(), "redis+sentinel://:***@h:1/m/0");
    }

    #[test]
    fn other_schemes_are_not_sentinel_uris() {
        assert!(Sentinel::parse("redis://h:6379/0").unwrap().is_none());
        assert!(Sentinel::parse("unix:///run/redis.sock").unwrap().is_none());
    }

    #[test]
    fn malformed_sentinel_uris_are_refused() {
        for uri in [
            "redis+sentinel://",
            "redis+sentinel://h:26379",
            "redis+sentinel://h:26379/",
            "redis+sentinel:///m",
            "redis+sentinel://h,/m",
            "redis+sentinel://h:0/m",
            "redis+sentinel://h:99999/m",
            "redis+sentinel://h:x/m",
            "redis+sentinel://[::1/m",
            "redis+sentinel://h/m/x",
            "redis+sentinel://h/m/-1",
            "redis+sentinel://h/m/0/extra",
            "redis+sentinel://h/m?password=x",
            "redis+sentinel://h/m?sentinel-password=%zz",
            "redis+sentinel://h/m#f",
        ] {
            assert!(Sentinel::parse(uri).is_err(), "{uri} accepted");
        }
        let e = Sentinel::parse("redis+sentinel://u:topsecret@h:x/m").unwrap_err();
        assert!(!e.contains("topsecret"), "{e}");
    }
}
