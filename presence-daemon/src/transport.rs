//! The `transports` key: SIP URIs naming where to listen.
//!
//! Accepted shape: `sip:HOST[:PORT][;param...]` where HOST is an IPv4 address, a bracketed IPv6
//! address, a host name or `*` (all IPv4 interfaces). `transport=tcp` selects TCP; without a
//! `transport` parameter a SIP URI means UDP (RFC 3261 §18), which this server does not serve.
//! `sips:` URIs and `transport=tls` are refused, as Flexisip's presence server does. A `maddr`
//! parameter gives the address to bind when it differs from the advertised host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The transport protocol named by a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    /// Anything else that is not TLS (`sctp`, `ws`, ...).
    Other,
}

/// One parsed `transports` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportUri {
    /// The URI as written.
    pub uri: String,
    pub protocol: Protocol,
    /// Host advertised in our `Contact` (the URI host, brackets removed for IPv6).
    pub host: String,
    /// Host or address to bind (`maddr` if present, else `host`; `*` becomes `0.0.0.0`).
    pub bind_host: String,
    /// Port (5060 when absent; 0 lets the system pick a free port).
    pub port: u16,
}

/// Where a TCP listener must be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// The `transports` URI this comes from.
    pub uri: String,
    /// Host name or IP literal to bind (no brackets).
    pub bind_host: String,
    pub port: u16,
    /// Host to put in our `Contact` (no brackets).
    pub advertised_host: String,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bind_host.contains(':') {
            write!(f, "[{}]:{}", self.bind_host, self.port)
        } else {
            write!(f, "{}:{}", self.bind_host, self.port)
        }
    }
}

/// Why a `transports` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    Tls,
    Malformed(&'static str),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Tls => f.write_str("TLS transports are not supported"),
            TransportError::Malformed(why) => write!(f, "unparsable SIP URI: {why}"),
        }
    }
}

/// Parses one transport URI.
pub fn parse_transport(uri: &str) -> Result<TransportUri, TransportError> {
    let (scheme, rest) = uri.split_once(':').ok_or(TransportError::Malformed(
        "expected sip:HOST[:PORT];transport=tcp",
    ))?;
    if scheme.eq_ignore_ascii_case("sips") {
        return Err(TransportError::Tls);
    }
    if !scheme.eq_ignore_ascii_case("sip") {
        return Err(TransportError::Malformed("the scheme must be sip:"));
    }
    // URI parameters follow the first ';'; headers ('?') make no sense here.
    let (hostport, params) = match rest.split_once(';') {
        Some((hp, p)) => (hp, p),
        None => (rest, ""),
    };
    if hostport.contains('@') {
        return Err(TransportError::Malformed(
            "a listening URI has no user part",
        ));
    }
    if hostport.contains('?') || params.contains('?') {
        return Err(TransportError::Malformed("a listening URI has no headers"));
    }
    let (host, port) = split_host_port(hostport)?;
    let mut protocol = Protocol::Udp;
    let mut maddr = None;
    for param in params.split(';').filter(|p| !p.is_empty()) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.eq_ignore_ascii_case("transport") {
            protocol = match value.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "tls" | "tls-sctp" | "wss" => return Err(TransportError::Tls),
                "" => return Err(TransportError::Malformed("empty transport parameter")),
                _ => Protocol::Other,
            };
        } else if name.eq_ignore_ascii_case("maddr") {
            if value.is_empty() {
                return Err(TransportError::Malformed("empty maddr parameter"));
            }
            maddr = Some(
                value
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            );
        }
    }
    let bind_host = match maddr {
        Some(m) => m,
        None if host == "*" => Ipv4Addr::UNSPECIFIED.to_string(),
        None => host.clone(),
    };
    Ok(TransportUri {
        uri: uri.to_owned(),
        protocol,
        host,
        bind_host,
        port,
    })
}

fn split_host_port(hostport: &str) -> Result<(String, u16), TransportError> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or(TransportError::Malformed("unterminated IPv6 reference"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(TransportError::Malformed("invalid IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(TransportError::Malformed("garbage after ']'"))?,
            ),
        };
        (addr, port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(TransportError::Malformed("missing host"));
    }
    let valid_name = host == "*"
        || host.parse::<IpAddr>().is_ok()
        || host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_name {
        return Err(TransportError::Malformed("invalid host"));
    }
    let port = match port {
        None => 5060,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| TransportError::Malformed("invalid port"))?,
    };
    Ok((host.to_owned(), port))
}

/// Our `Contact` URI for a listener bound to `bound`: `sip:HOST:PORT;transport=tcp`, where HOST is
/// the advertised host of the `transports` URI (its IP literal or name) and PORT the bound port
/// (which differs from the configured one when that was 0). An unspecified address (`0.0.0.0`,
/// `::`, `*`) cannot be advertised: the loopback address stands in, and the returned flag is
/// false so the caller can warn.
pub fn contact_uri(listen: &ListenAddr, bound: SocketAddr) -> (String, bool) {
    let mut exact = true;
    let host = match listen.advertised_host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() || listen.advertised_host == "*" => {
            exact = false;
            if ip.is_ipv4() {
                "127.0.0.1".to_owned()
            } else {
                "[::1]".to_owned()
            }
        }
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) if listen.advertised_host == "*" => {
            exact = false;
            "127.0.0.1".to_owned()
        }
        Err(_) => listen.advertised_host.clone(),
    };
    (format!("sip:{host}:{};transport=tcp", bound.port()), exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_transport() {
        let t = parse_transport("sip:127.0.0.1:5065;transport=tcp").unwrap();
        assert_eq!(t.protocol, Protocol::Tcp);
        assert_eq!(
            (t.host.as_str(), t.bind_host.as_str(), t.port),
            ("127.0.0.1", "127.0.0.1", 5065)
        );
    }

    #[test]
    fn variants() {
        let t = parse_transport("SIP:[::1]:0;Transport=TCP").unwrap();
        assert_eq!(
            (t.protocol, t.host.as_str(), t.port),
            (Protocol::Tcp, "::1", 0)
        );
        let t = parse_transport("sip:presence.example.org;transport=tcp;maddr=10.0.0.1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.bind_host.as_str(), t.port),
            ("presence.example.org", "10.0.0.1", 5060)
        );
        let t = parse_transport("sip:*:5065;transport=tcp").unwrap();
        assert_eq!(t.bind_host, "0.0.0.0");
        assert_eq!(
            parse_transport("sip:127.0.0.1:5065").unwrap().protocol,
            Protocol::Udp
        );
        assert_eq!(
            parse_transport("sip:h;transport=udp").unwrap().protocol,
            Protocol::Udp
        );
        assert_eq!(
            parse_transport("sip:h;transport=sctp").unwrap().protocol,
            Protocol::Other
        );
    }

    #[test]
    fn tls_is_refused() {
        assert_eq!(
            parse_transport("sips:127.0.0.1:5066"),
            Err(TransportError::Tls)
        );
        assert_eq!(
            parse_transport("sip:127.0.0.1:5066;transport=tls"),
            Err(TransportError::Tls)
        );
        assert_eq!(
            TransportError::Tls.to_string(),
            "TLS transports are not supported",
            "Flexisip's wording"
        );
    }

    #[test]
    fn malformed() {
        for bad in [
            "127.0.0.1:5065",
            "http://x",
            "sip:",
            "sip::5065",
            "sip:host:port",
            "sip:host:70000",
            "sip:[::1",
            "sip:[nope]:1",
            "sip:user@host;transport=tcp",
            "sip:ho st",
            "sip:h;transport=",
        ] {
            assert!(
                matches!(parse_transport(bad), Err(TransportError::Malformed(_))),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn contacts() {
        let l = |host: &str| ListenAddr {
            uri: String::new(),
            bind_host: host.to_owned(),
            port: 0,
            advertised_host: host.to_owned(),
        };
        let v4: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let v6: SocketAddr = "[::1]:40000".parse().unwrap();
        assert_eq!(
            contact_uri(&l("127.0.0.1"), v4),
            ("sip:127.0.0.1:40000;transport=tcp".to_owned(), true)
        );
        assert_eq!(
            contact_uri(&l("::1"), v6),
            ("sip:[::1]:40000;transport=tcp".to_owned(), true)
        );
        assert_eq!(
            contact_uri(&l("presence.example.org"), v4),
            (
                "sip:presence.example.org:40000;transport=tcp".to_owned(),
                true
            )
        );
        assert_eq!(
            contact_uri(&l("0.0.0.0"), "0.0.0.0:5065".parse().unwrap()),
            ("sip:127.0.0.1:5065;transport=tcp".to_owned(), false)
        );
        assert_eq!(l("::1").to_string(), "[::1]:0");
    }
}
