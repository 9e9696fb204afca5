//! RFC 4662 Resource List Meta-Information (`application/rlmi+xml`): writing the document that
//! leads each list NOTIFY, and reading it (for tests, the load tool and fuzzing).

/// `<list uri version fullState>` with its resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub uri: String,
    pub version: u32,
    pub full_state: bool,
    pub resources: Vec<Resource>,
}

/// `<resource uri>` with an optional `<name>` and its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub uri: String,
    pub name: Option<String>,
    pub instances: Vec<Instance>,
}

/// `<instance id state [reason] [cid]/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub reason: Option<String>,
    pub cid: Option<String>,
}

/// Why an RLMI document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlmiError(pub String);

/// Writes `<?xml version="1.0" encoding="UTF-8"?>` and the `<list xmlns="urn:ietf:params:xml:ns:rlmi"
/// uri=.. version=.. fullState="true|false">` document, attribute values and names escaped.
/// No `core::fmt` on this path (it runs for every list NOTIFY).
pub fn write(list: &List, out: &mut Vec<u8>) {
    todo!("{list:?} {out:?}")
}

/// Reads an RLMI document (namespace-aware; DOCTYPE refused; bounded).
pub fn parse(body: &[u8]) -> Result<List, RlmiError> {
    todo!("{body:?}")
}
