//! RFC 4662 Resource List Meta-Information (`application/rlmi+xml`): writing the document that
//! leads each list NOTIFY, and reading it (for tests, the load tool and fuzzing).

use crate::pidf::tree::{escape_attr, escape_text};
use crate::xml;

/// The RLMI namespace.
pub const NS: &str = "urn:ietf:params:xml:ns:rlmi";
/// Maximum element nesting accepted by [`parse`], `<list>` being level 1.
pub const MAX_DEPTH: usize = 16;

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

impl std::fmt::Display for RlmiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid RLMI document: {}", self.0)
    }
}

impl std::error::Error for RlmiError {}

/// Writes `<?xml version="1.0" encoding="UTF-8"?>` and the `<list xmlns="urn:ietf:params:xml:ns:rlmi"
/// uri=.. version=.. fullState="true|false">` document, attribute values and names escaped.
/// No `core::fmt` on this path (it runs for every list NOTIFY).
///
/// Shape: the declaration, LF, the `<list>` start tag, LF, then one line per resource
/// (`<resource uri="…">[<name>…</name>][<instance id="…" state="…" [reason="…"] [cid="…"]/>…]</resource>`
/// and LF), then `</list>` (no final line end).
pub fn write(list: &List, out: &mut Vec<u8>) {
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<list xmlns=\"");
    out.extend_from_slice(NS.as_bytes());
    out.extend_from_slice(b"\" uri=\"");
    escape_attr(&list.uri, out);
    out.extend_from_slice(b"\" version=\"");
    out.extend_from_slice(itoa::Buffer::new().format(list.version).as_bytes());
    out.extend_from_slice(if list.full_state {
        b"\" fullState=\"true\">\n"
    } else {
        b"\" fullState=\"false\">\n"
    });
    for r in &list.resources {
        out.extend_from_slice(b"<resource uri=\"");
        escape_attr(&r.uri, out);
        out.extend_from_slice(b"\">");
        if let Some(name) = &r.name {
            out.extend_from_slice(b"<name>");
            escape_text(name, out);
            out.extend_from_slice(b"</name>");
        }
        for i in &r.instances {
            out.extend_from_slice(b"<instance id=\"");
            escape_attr(&i.id, out);
            out.extend_from_slice(b"\" state=\"");
            escape_attr(&i.state, out);
            if let Some(reason) = &i.reason {
                out.extend_from_slice(b"\" reason=\"");
                escape_attr(reason, out);
            }
            if let Some(cid) = &i.cid {
                out.extend_from_slice(b"\" cid=\"");
                escape_attr(cid, out);
            }
            out.extend_from_slice(b"\"/>");
        }
        out.extend_from_slice(b"</resource>\n");
    }
    out.extend_from_slice(b"</list>");
}

/// Where the reader is.
#[derive(Clone, Copy)]
enum Open {
    List,
    Resource,
    /// The first `<name>` of the last resource.
    Name,
    /// Anything else (its content is ignored).
    Other,
}

/// Reads an RLMI document (namespace-aware; DOCTYPE refused; bounded).
///
/// The root must be `{urn:ietf:params:xml:ns:rlmi}list` with `uri`, `version` (an unsigned
/// 32-bit decimal) and `fullState` (`true`, `false`, `1` or `0`); each `<resource>` needs a `uri`
/// and each `<instance>` an `id` and a `state`. Values are kept as written (after XML
/// attribute normalization). A resource's name is the text of its first `<name>`, kept as is;
/// list-level names, extra attributes, unknown elements and anything inside `<instance>` are
/// ignored. Prefixes do not matter. Nesting is bounded by [`MAX_DEPTH`].
pub fn parse(body: &[u8]) -> Result<List, RlmiError> {
    let mut list: Option<List> = None;
    let mut stack: Vec<Open> = Vec::new();
    let mut name = String::new();
    xml::walk(body, MAX_DEPTH, |ev| {
        match ev {
            xml::Ev::Start(el) => {
                let (rlmi, local) = (el.ns == Some(NS), el.name);
                let required = |attr: &str| {
                    el.attr(attr)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("<{local}> without {attr}"))
                };
                let open = match (stack.last(), list.as_mut()) {
                    (None, _) if rlmi && local == "list" => {
                        let uri = required("uri")?;
                        let version = required("version")?;
                        let version = parse_u32(xml::trim(&version))
                            .ok_or_else(|| format!("invalid version '{version}'"))?;
                        let full_state = match xml::trim(&required("fullState")?) {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            other => return Err(format!("invalid fullState '{other}'")),
                        };
                        list = Some(List {
                            uri,
                            version,
                            full_state,
                            resources: Vec::new(),
                        });
                        Open::List
                    }
                    (None, _) => {
                        return Err(format!(
                            "root element is not {{{NS}}}list but {{{}}}{local}",
                            el.ns.unwrap_or("")
                        ));
                    }
                    (Some(Open::List), Some(l)) if rlmi && local == "resource" => {
                        l.resources.push(Resource {
                            uri: required("uri")?,
                            name: None,
                            instances: Vec::new(),
                        });
                        Open::Resource
                    }
                    (Some(Open::Resource), Some(l)) if rlmi => {
                        let r = l
                            .resources
                            .last_mut()
                            .ok_or_else(|| "no resource".to_owned())?;
                        match local {
                            "name" if r.name.is_none() => {
                                name.clear();
                                Open::Name
                            }
                            "instance" => {
                                r.instances.push(Instance {
                                    id: required("id")?,
                                    state: required("state")?,
                                    reason: el.attr("reason").map(str::to_owned),
                                    cid: el.attr("cid").map(str::to_owned),
                                });
                                Open::Other
                            }
                            _ => Open::Other,
                        }
                    }
                    _ => Open::Other,
                };
                stack.push(open);
            }
            xml::Ev::Text(t) => {
                if let Some(Open::Name) = stack.last() {
                    name.push_str(t);
                }
            }
            xml::Ev::End => {
                if let (Some(Open::Name), Some(l)) = (stack.pop(), list.as_mut())
                    && let Some(r) = l.resources.last_mut()
                {
                    r.name = Some(std::mem::take(&mut name));
                }
            }
        }
        Ok(())
    })
    .map_err(RlmiError)?;
    list.ok_or_else(|| RlmiError("no root element".to_owned()))
}

/// ASCII decimal digits only (no sign), at most `u32::MAX`.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, state: &str, reason: Option<&str>, cid: Option<&str>) -> Instance {
        Instance {
            id: id.to_owned(),
            state: state.to_owned(),
            reason: reason.map(str::to_owned),
            cid: cid.map(str::to_owned),
        }
    }

    fn resource(uri: &str, name: Option<&str>, instances: Vec<Instance>) -> Resource {
        Resource {
            uri: uri.to_owned(),
            name: name.map(str::to_owned),
            instances,
        }
    }

    #[test]
    fn write_exact_shape() {
        let list = List {
            uri: "sip:rls@127.0.0.1".to_owned(),
            version: 0,
            full_state: true,
            resources: vec![
                resource(
                    "sip:+33612345678@127.0.0.1;user=phone",
                    None,
                    vec![instance("1", "active", None, Some("6fea1a0@127.0.0.1"))],
                ),
                resource(
                    "sip:a&b@x",
                    Some("Zoë <&>"),
                    vec![instance("1", "terminated", Some("rejected"), None)],
                ),
                resource("sip:dave@127.0.0.1", None, vec![]),
            ],
        };
        let mut out = Vec::new();
        write(&list, &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <list xmlns=\"urn:ietf:params:xml:ns:rlmi\" uri=\"sip:rls@127.0.0.1\" version=\"0\" fullState=\"true\">\n\
             <resource uri=\"sip:+33612345678@127.0.0.1;user=phone\"><instance id=\"1\" state=\"active\" cid=\"6fea1a0@127.0.0.1\"/></resource>\n\
             <resource uri=\"sip:a&amp;b@x\"><name>Zoë &lt;&amp;&gt;</name><instance id=\"1\" state=\"terminated\" reason=\"rejected\"/></resource>\n\
             <resource uri=\"sip:dave@127.0.0.1\"></resource>\n\
             </list>"
        );
        assert_eq!(parse(&out), Ok(list.clone()));

        let empty = List {
            uri: "u\"\t\r\n".to_owned(),
            version: u32::MAX,
            full_state: false,
            resources: vec![],
        };
        out.clear();
        write(&empty, &mut out);
        assert!(out.ends_with(b"version=\"4294967295\" fullState=\"false\">\n</list>"));
        assert_eq!(parse(&out), Ok(empty));
    }

    #[test]
    fn reads_the_stub_notify() {
        // The RLMI part of the first list NOTIFY in shared/traces/linphone-subscribe-rls-list.txt.
        let doc = r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:rls@127.0.0.1" version="0" fullState="true">
<resource uri="sip:+33612345678@127.0.0.1;user=phone"><instance id="8139a8" state="active" cid="6fea1a0d@127.0.0.1"/></resource>
<resource uri="sip:alice@127.0.0.1"><instance id="b9444b" state="active" cid="27858f3b@127.0.0.1"/></resource>
<resource uri="sip:dave@127.0.0.1"></resource>
</list>
"#;
        let l = parse(doc.as_bytes()).unwrap();
        assert_eq!(l.uri, "sip:rls@127.0.0.1");
        assert_eq!(l.version, 0);
        assert!(l.full_state);
        assert_eq!(l.resources.len(), 3);
        assert_eq!(l.resources[0].uri, "sip:+33612345678@127.0.0.1;user=phone");
        assert_eq!(
            l.resources[0].instances,
            vec![instance(
                "8139a8",
                "active",
                None,
                Some("6fea1a0d@127.0.0.1")
            )]
        );
        assert!(l.resources[2].instances.is_empty());
    }

    #[test]
    fn tolerant_reader() {
        // RFC 4662 §5.3-style document with prefixes, list names, extra attributes and elements.
        let doc = r#"<r:list xmlns:r="urn:ietf:params:xml:ns:rlmi" xmlns:e="urn:ext"
 uri="sip:adam-friends@example.com" version="7" fullState=" 0 " cid="x@y" e:extra="1">
  <r:name xml:lang="en">Buddy List at COM</r:name>
  <e:thing><r:resource uri="sip:ignored@x"/></e:thing>
  <r:resource uri="sip:bob@example.com" e:x="y">
    <r:name>Bob Smith</r:name>
    <r:name xml:lang="fr">Robert</r:name>
    <e:ext/>
    <r:instance id="juwigmtboe" state="active" cid="bUZBsM@pres.example.com"><e:x>y</e:x></r:instance>
    <r:instance id="hqzsuxtfyq" state="terminated" reason="rejected" extra="z"/>
  </r:resource>
  <resource xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:dave@example.com"><name>  Dave
</name></resource>
</r:list>"#;
        let l = parse(doc.as_bytes()).unwrap();
        assert_eq!(l.version, 7);
        assert!(!l.full_state);
        assert_eq!(
            l.resources,
            vec![
                resource(
                    "sip:bob@example.com",
                    Some("Bob Smith"),
                    vec![
                        instance(
                            "juwigmtboe",
                            "active",
                            None,
                            Some("bUZBsM@pres.example.com")
                        ),
                        instance("hqzsuxtfyq", "terminated", Some("rejected"), None),
                    ]
                ),
                resource("sip:dave@example.com", Some("  Dave\n"), vec![]),
            ]
        );
    }

    #[test]
    fn refusals() {
        let cases: &[&str] = &[
            "",
            "<list/>",
            r#"<list xmlns="urn:other" uri="u" version="0" fullState="true"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" version="0" fullState="true"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" fullState="true"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="0"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="-1" fullState="true"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="4294967296" fullState="true"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="+1" fullState="true"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="0" fullState="yes"/>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="0" fullState="true"><resource/></list>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="0" fullState="true"><resource uri="r"><instance id="1"/></resource></list>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="0" fullState="true"><resource uri="r"><instance state="active"/></resource></list>"#,
            r#"<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="0" fullState="true">"#,
            r#"<!DOCTYPE list><list xmlns="urn:ietf:params:xml:ns:rlmi" uri="u" version="0" fullState="true"/>"#,
        ];
        for c in cases {
            assert!(parse(c.as_bytes()).is_err(), "{c}");
        }
    }
}
