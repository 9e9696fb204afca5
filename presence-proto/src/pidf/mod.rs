//! PIDF (RFC 3863) with RPID (RFC 4480): reading what clients publish, composing what watchers get.
//!
//! Reading is namespace-aware (quick-xml `NsReader`): elements are matched on (namespace URI,
//! local name), never on prefixes. Published documents are kept as a small owned tree of
//! namespace-resolved elements, so tuples from any client (Linphone's `pidfonline`, OMA service
//! descriptions, baresip...) can be re-serialized into a composed document with correct
//! namespace declarations.

pub mod compose;
pub mod long_term;
pub mod parse;
pub mod time;
pub mod tree;

pub use compose::{compose, note_only};
pub use long_term::{format_rfc3339, long_term};
pub use parse::{PidfError, parse};
pub use tree::{Element, Namespaces, Node, write_element};

/// XML namespaces this module knows by name.
pub mod ns {
    pub const PIDF: &str = "urn:ietf:params:xml:ns:pidf";
    pub const DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
    pub const RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
    pub const PIDFONLINE: &str = "http://www.linphone.org/xsds/pidfonline.xsd";
    pub const OMA_PRES: &str = "urn:oma:xml:prs:pidf:oma-pres";
    pub const CAPS: &str = "urn:ietf:params:xml:ns:pidf:caps";
}

/// One published PIDF document, reduced to what composition needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The `entity` attribute of `<presence>`, as written.
    pub entity: String,
    /// `<tuple>` elements, in document order, with their `id` attribute.
    pub tuples: Vec<Tuple>,
    /// Presence-level `<note>` elements.
    pub notes: Vec<Element>,
    /// The `dm:person` elements' content, merged if the document has several.
    pub person: Option<Person>,
}

/// A `<tuple>`; `element` is the whole element (status, contact, notes, timestamp, extensions).
#[derive(Debug, Clone, PartialEq)]
pub struct Tuple {
    pub id: String,
    pub element: Element,
}

/// What is kept of a `dm:person`: its id, its `rpid:activities` children (each activity element,
/// e.g. `rpid:away`, `rpid:on-the-phone`, `rpid:other` with text), its other children that are not
/// the timestamp (notes, `rpid:mood`, ...), and its timestamp (a `dm:timestamp`, or a `timestamp`
/// in the PIDF namespace as liblinphone writes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub id: String,
    pub activities: Vec<Element>,
    pub other: Vec<Element>,
    pub timestamp: Option<String>,
}
