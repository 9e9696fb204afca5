//! SIP and SIPS URIs (RFC 3261 §19.1): parsing, serialization and §19.1.4 comparison.

/// A `sip:` or `sips:` URI. Other schemes (`tel:`, `urn:`...) are rejected by [`Uri::parse`].
/// User and password are kept as written (escapes undecoded) so the URI re-serializes
/// byte-for-byte; comparisons decode escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub sips: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host as written (IPv6 references keep their brackets).
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` URI parameters, order kept.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` URI headers, order kept.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    /// Parses a complete URI (the whole input must be consumed, surrounding whitespace allowed).
    pub fn parse(input: &[u8]) -> Option<Uri> {
        todo!("{input:?}")
    }
    /// Appends the wire form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        todo!("{out:?}")
    }
    /// Value of a URI parameter (name case-insensitive); `Some(None)` for a flag parameter.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        todo!("{name}")
    }
    /// RFC 3261 §19.1.4 equality: scheme, user and password case-sensitive after unescaping, host
    /// case-insensitive, ports equal (absent ≠ 5060), `user`/`ttl`/`method`/`maddr`/`transport`
    /// must match when either side has them, other parameters must match when both have them,
    /// URI headers must match as sets.
    pub fn rfc_eq(&self, other: &Uri) -> bool {
        todo!("{other:?}")
    }
    /// The address-of-record key used to index presentities and watchers:
    /// `user@host` with the user unescaped and the host lower-cased, port and parameters
    /// dropped, except `;user=phone` which is kept (a phone number is another identity).
    pub fn aor_key(&self) -> String {
        todo!()
    }
    /// `sip:user@host` (scheme kept, port and parameters dropped): the identity form used as
    /// PIDF `entity`.
    pub fn identity(&self) -> String {
        todo!()
    }
}

impl std::fmt::Display for Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}
