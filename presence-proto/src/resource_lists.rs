//! RFC 4826 resource lists (`application/resource-lists+xml`), as carried in a list SUBSCRIBE body
//! (RFC 5367): reading the entries, and writing a list (for tests and the load tool).

/// One `<entry>`: its `uri` attribute exactly as written (only surrounding white space trimmed:
/// clients match resources by string, `;user=phone` included), and its `<display-name>` if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uri: String,
    pub name: Option<String>,
}

/// Why a resource list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceListsError {
    /// Not well-formed XML, a DOCTYPE (never expanded: refused), not UTF-8, too deep, or a root
    /// that is not `{urn:ietf:params:xml:ns:resource-lists}resource-lists`. The text says which.
    Invalid(String),
    /// More entries than the cap.
    TooManyEntries { max: usize },
}

/// Reads every `<entry uri>` of every `<list>`, following nested lists in document order (depth
/// bounded, e.g. 16). `<entry-ref>` and `<external>` are not resolved: they are skipped with a
/// `tracing::info!` line. Entries with an empty URI are skipped; a URI listed twice is kept once
/// (the first). Elements are matched on (namespace, local name); unknown elements are ignored.
pub fn parse(body: &[u8], max_entries: usize) -> Result<Vec<Entry>, ResourceListsError> {
    todo!("{body:?} {max_entries}")
}

/// Writes `<resource-lists xmlns=...><list>` with one `<entry uri>` (and `<display-name>`) per
/// entry, escaped.
pub fn write(entries: &[Entry], out: &mut Vec<u8>) {
    todo!("{entries:?} {out:?}")
}
