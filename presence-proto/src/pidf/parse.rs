//! Reading a published PIDF document.

use super::Document;

/// Why a PIDF body was refused (the text goes into a `Warning` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidfError(pub String);

/// Parses a PIDF document. Refuses: non-UTF-8, malformed XML, a root that is not
/// `{urn:ietf:params:xml:ns:pidf}presence`, a missing `entity`, a tuple without `id`, DTDs
/// (`<!DOCTYPE`: refused, never expanded), more than `max_depth` nesting levels (use 32) or more
/// than 256 tuples. Unknown elements are kept in the tree.
pub fn parse(body: &[u8]) -> Result<Document, PidfError> {
    todo!("{body:?}")
}
