//! RFC 4826 resource lists (`application/resource-lists+xml`), as carried in a list SUBSCRIBE body
//! (RFC 5367): reading the entries, and writing a list (for tests and the load tool).

use std::collections::HashSet;

use crate::pidf::tree::{escape_attr, escape_text};
use crate::xml;

/// The resource-lists namespace.
pub const NS: &str = "urn:ietf:params:xml:ns:resource-lists";
/// Maximum element nesting, `<resource-lists>` being level 1.
pub const MAX_DEPTH: usize = 16;

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

impl std::fmt::Display for ResourceListsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResourceListsError::Invalid(why) => write!(f, "invalid resource list: {why}"),
            ResourceListsError::TooManyEntries { max } => {
                write!(f, "resource list has more than {max} entries")
            }
        }
    }
}

impl std::error::Error for ResourceListsError {}

/// Where the reader is.
#[derive(Clone, Copy)]
enum Open {
    Root,
    List,
    /// An `<entry>`: the index of its kept [`Entry`], None when skipped (empty or repeated URI).
    Entry(Option<usize>),
    /// The `<display-name>` of a kept entry.
    DisplayName(usize),
    /// Anything else (its content is ignored).
    Other,
}

/// Reads every `<entry uri>` of every `<list>`, following nested lists in document order (depth
/// bounded, e.g. 16). `<entry-ref>` and `<external>` are not resolved: they are skipped with a
/// `tracing::info!` line. Entries with an empty URI are skipped; a URI listed twice is kept once
/// (the first). Elements are matched on (namespace, local name); unknown elements are ignored.
///
/// Details: one `tracing::info!` line per document, whatever the number of references (with
/// their count and the first `ref`/`anchor`). Only entries that are children of a `<list>`
/// (itself a child of the root or of a list) count; the depth bound is [`MAX_DEPTH`]. The
/// display name is the text of the entry's first `<display-name>`, trimmed of XML white space;
/// a blank one counts as absent.
pub fn parse(body: &[u8], max_entries: usize) -> Result<Vec<Entry>, ResourceListsError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut name = String::new();
    let mut too_many = false;
    let mut references = 0usize;
    let mut first_reference = String::new();
    let result = xml::walk(body, MAX_DEPTH, |ev| {
        match ev {
            xml::Ev::Start(el) => {
                let (rl, local) = (el.ns == Some(NS), el.name);
                let open = match stack.last() {
                    None if rl && local == "resource-lists" => Open::Root,
                    None => {
                        return Err(format!(
                            "root element is not {{{NS}}}resource-lists but {{{}}}{local}",
                            el.ns.unwrap_or("")
                        ));
                    }
                    Some(Open::Root | Open::List) if rl && local == "list" => Open::List,
                    Some(Open::List) if rl && local == "entry" => {
                        let uri = el.attr("uri").map_or("", xml::trim);
                        if uri.is_empty() || seen.contains(uri) {
                            Open::Entry(None)
                        } else {
                            if entries.len() >= max_entries {
                                too_many = true;
                                return Err(String::new());
                            }
                            seen.insert(uri.to_owned());
                            entries.push(Entry {
                                uri: uri.to_owned(),
                                name: None,
                            });
                            Open::Entry(Some(entries.len() - 1))
                        }
                    }
                    Some(Open::List) if rl && (local == "entry-ref" || local == "external") => {
                        if references == 0 {
                            first_reference = el
                                .attr("ref")
                                .or(el.attr("anchor"))
                                .unwrap_or_default()
                                .to_owned();
                        }
                        references += 1;
                        Open::Other
                    }
                    Some(Open::Entry(Some(i))) if rl && local == "display-name" => {
                        name.clear();
                        Open::DisplayName(*i)
                    }
                    Some(_) => Open::Other,
                };
                stack.push(open);
            }
            xml::Ev::Text(t) => {
                if let Some(Open::DisplayName(_)) = stack.last() {
                    name.push_str(t);
                }
            }
            xml::Ev::End => {
                if let Some(Open::DisplayName(i)) = stack.pop() {
                    let trimmed = xml::trim(&name);
                    if let Some(e) = entries.get_mut(i)
                        && e.name.is_none()
                        && !trimmed.is_empty()
                    {
                        e.name = Some(trimmed.to_owned());
                    }
                }
            }
        }
        Ok(())
    });
    if references > 0 {
        // One line per document, however many references it holds.
        tracing::info!(
            references,
            first = %first_reference,
            "resource list: <entry-ref>/<external> not resolved, skipped"
        );
    }
    match result {
        Ok(()) => Ok(entries),
        Err(_) if too_many => Err(ResourceListsError::TooManyEntries { max: max_entries }),
        Err(why) => Err(ResourceListsError::Invalid(why)),
    }
}

/// Writes `<resource-lists xmlns=...><list>` with one `<entry uri>` (and `<display-name>`) per
/// entry, escaped.
///
/// The output starts with an XML declaration; `parse` reads back the same entries as long as
/// URIs and names have no leading or trailing white space, names are not empty, URIs are not
/// empty or repeated, and every character is one XML allows.
pub fn write(entries: &[Entry], out: &mut Vec<u8>) {
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"");
    out.extend_from_slice(NS.as_bytes());
    out.extend_from_slice(b"\">\n<list>\n");
    for e in entries {
        out.extend_from_slice(b"<entry uri=\"");
        escape_attr(&e.uri, out);
        match &e.name {
            Some(name) => {
                out.extend_from_slice(b"\"><display-name>");
                escape_text(name, out);
                out.extend_from_slice(b"</display-name></entry>\n");
            }
            None => out.extend_from_slice(b"\"/>\n"),
        }
    }
    out.extend_from_slice(b"</list>\n</resource-lists>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decompressed body of the list SUBSCRIBE in `shared/traces/linphone-subscribe-rls-list.txt`.
    const LINPHONE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="urn:ietf:params:xml:ns:resource-lists">
 <list>
  <entry uri="sip:+33612345678@127.0.0.1;user=phone"/>
  <entry uri="sip:alice@127.0.0.1"/>
  <entry uri="sip:dave@127.0.0.1"/>
 </list>
</resource-lists>
"#;

    fn entry(uri: &str, name: Option<&str>) -> Entry {
        Entry {
            uri: uri.to_owned(),
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn linphone_list() {
        assert_eq!(
            parse(LINPHONE.as_bytes(), 100),
            Ok(vec![
                entry("sip:+33612345678@127.0.0.1;user=phone", None),
                entry("sip:alice@127.0.0.1", None),
                entry("sip:dave@127.0.0.1", None),
            ])
        );
        assert_eq!(
            parse(LINPHONE.as_bytes(), 2),
            Err(ResourceListsError::TooManyEntries { max: 2 })
        );
        assert_eq!(parse(LINPHONE.as_bytes(), 3).map(|e| e.len()), Ok(3));
    }

    #[test]
    fn rfc4826_example() {
        // RFC 4826 §3.3 (abridged), with prefixes, display names, nested lists and references.
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
   <rl:resource-lists xmlns:rl="urn:ietf:params:xml:ns:resource-lists"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
    <rl:list name="friends">
     <rl:entry uri="sip:bill@example.com">
      <rl:display-name>Bill Doe</rl:display-name>
     </rl:entry>
     <rl:entry-ref ref="resource-lists/users/sip:bill@example.com/index/~~/resource-lists/list%5b@name=%22list1%22%5d/entry%5b@uri=%22sip:petri@example.com%22%5d"/>
     <rl:list name="close-friends">
      <rl:display-name>Close Friends</rl:display-name>
      <rl:entry uri="sip:joe@example.com">
       <rl:display-name>  Joe
 Smith </rl:display-name>
      </rl:entry>
      <rl:entry uri="sip:nancy@example.com">
       <rl:display-name xml:lang="en">Nancy Gross</rl:display-name>
       <rl:display-name xml:lang="fr">Nancy la Grosse</rl:display-name>
      </rl:entry>
      <rl:external anchor="http://xcap.example.org/resource-lists/users/sip:a@example.org/index/~~/resource-lists/list%5b@name=%22mkti%22%5d">
       <rl:display-name>Marketing</rl:display-name>
      </rl:external>
     </rl:list>
     <rl:entry uri=" sip:last@example.com&#9;"><x:display-name xmlns:x="urn:other">no</x:display-name></rl:entry>
    </rl:list>
   </rl:resource-lists>"#;
        assert_eq!(
            parse(doc.as_bytes(), 100),
            Ok(vec![
                entry("sip:bill@example.com", Some("Bill Doe")),
                entry("sip:joe@example.com", Some("Joe\n Smith")),
                entry("sip:nancy@example.com", Some("Nancy Gross")),
                entry("sip:last@example.com", None),
            ])
        );
    }

    #[test]
    fn skips_empty_and_repeated() {
        let doc = r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>
<entry uri="sip:a@x"/><entry uri=""/><entry/><entry uri="  "/>
<entry uri="sip:a@x"><display-name>second</display-name></entry>
<entry uri="sip:b@x"><display-name> </display-name><display-name>B</display-name></entry>
<entry uri="sip:A@x"/>
</list><list><entry uri="sip:b@x"/><entry uri="sip:c@x"/></list>
<entry uri="sip:not-in-a-list@x"/>
<other><list><entry uri="sip:inside-unknown@x"/></list></other>
<list xmlns="urn:other"><entry uri="sip:other-ns@x"/></list>
</resource-lists>"#;
        assert_eq!(
            parse(doc.as_bytes(), 4),
            Ok(vec![
                entry("sip:a@x", None),
                entry("sip:b@x", Some("B")),
                entry("sip:A@x", None),
                entry("sip:c@x", None),
            ])
        );
        // Repeated URIs do not count against the cap.
        assert_eq!(
            parse(doc.as_bytes(), 3),
            Err(ResourceListsError::TooManyEntries { max: 3 })
        );
        assert_eq!(
            parse(
                b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
                0
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn escapes_and_references() {
        let doc = "\u{FEFF}<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"sip:a&amp;b@x;user=phone?h=&lt;&quot;&#x3e;\"><display-name>&lt;Élodie&gt; &amp; <![CDATA[<co>]]>&#x1F600;</display-name></entry></list></resource-lists>";
        assert_eq!(
            parse(doc.as_bytes(), 10),
            Ok(vec![entry(
                "sip:a&b@x;user=phone?h=<\">",
                Some("<Élodie> & <co>😀")
            )])
        );
    }

    #[test]
    fn refusals() {
        let cases: &[&[u8]] = &[
            b"",
            b"  ",
            b"not xml",
            b"<resource-lists/>",
            b"<resource-lists xmlns=\"urn:other\"/>",
            b"<list xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list></resource-lists>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>junk",
            b"junk<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><x:list/></resource-lists>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"a\" uri=\"b\"/></list></resource-lists>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"&foo;\"/></list></resource-lists>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"&#1;\"/></list></resource-lists>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"a\x01\"/></list></resource-lists>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><list><entry uri=\"\xc3\x28\"/></list></resource-lists>",
            b"<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">&</resource-lists>",
            b"<!DOCTYPE r [<!ENTITY a \"b\">]><resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"/>",
        ];
        for c in cases {
            assert!(
                matches!(parse(c, 10), Err(ResourceListsError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn depth_is_bounded() {
        let nest = |n: usize| {
            let mut s =
                String::from(r#"<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">"#);
            for _ in 0..n {
                s.push_str("<list>");
            }
            s.push_str(r#"<entry uri="sip:deep@x"/>"#);
            for _ in 0..n {
                s.push_str("</list>");
            }
            s.push_str("</resource-lists>");
            s
        };
        // resource-lists + 14 lists + entry = 16 levels: accepted; one more: refused.
        assert_eq!(parse(nest(14).as_bytes(), 10).map(|e| e.len()), Ok(1));
        assert!(matches!(
            parse(nest(15).as_bytes(), 10),
            Err(ResourceListsError::Invalid(_))
        ));
        assert!(parse(nest(100_000).as_bytes(), 10).is_err());
    }

    #[test]
    fn write_then_parse() {
        let entries = vec![
            entry("sip:+33612345678@127.0.0.1;user=phone", None),
            entry("sip:a&b@x", Some("<Zoë> \"&\" 'x'\r\n\ttab")),
            entry("sip:\"q\"<>@x\n", None),
        ];
        let mut out = Vec::new();
        write(&entries, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"));
        assert!(text.contains("<entry uri=\"sip:+33612345678@127.0.0.1;user=phone\"/>"));
        let mut expected = entries.clone();
        expected[2].uri = "sip:\"q\"<>@x".to_owned();
        // The trailing LF of the URI is written as a reference, kept by normalization, then trimmed.
        assert_eq!(parse(&out, 10), Ok(expected));
    }
}
