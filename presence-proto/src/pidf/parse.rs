//! Reading a published PIDF document.

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::NsReader;

use super::time::parse_rfc3339;
use super::tree::{Element, Node};
use super::{Document, Person, Tuple, ns};
use crate::xml;

/// Why a PIDF body was refused (the text goes into a `Warning` header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidfError(pub String);

impl std::fmt::Display for PidfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PidfError {}

/// Maximum element nesting, `<presence>` being level 1.
pub const MAX_DEPTH: usize = 32;
/// Maximum number of `<tuple>` elements in one document.
pub const MAX_TUPLES: usize = 256;
/// Maximum number of elements in one document (bounds the memory a body can make us allocate).
pub const MAX_ELEMENTS: usize = 10_000;
/// Maximum number of attributes on one element.
pub const MAX_ATTRIBUTES: usize = 64;

const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

fn err(msg: &str) -> PidfError {
    PidfError(msg.to_owned())
}

/// Parses a PIDF document. Refuses: non-UTF-8, malformed XML, a root that is not
/// `{urn:ietf:params:xml:ns:pidf}presence`, a missing `entity`, a tuple without `id`, DTDs
/// (`<!DOCTYPE`: refused, never expanded), more than `max_depth` nesting levels (use 32) or more
/// than 256 tuples. Unknown elements are kept in the tree.
///
/// Also refused: characters XML 1.0 forbids (C0 controls other than tab, CR, LF; U+FFFE,
/// U+FFFF), entity references other than the five predefined ones, character references to
/// forbidden characters, unbound prefixes, duplicate attributes, an empty `entity` or tuple
/// `id`, more than [`MAX_ELEMENTS`] elements or [`MAX_ATTRIBUTES`] attributes on an element.
/// A UTF-8 byte order mark is skipped. Presence-level children other than tuples, notes and
/// persons are dropped; several `dm:person` elements are merged (first id, activities and other
/// children concatenated, latest timestamp).
pub fn parse(body: &[u8]) -> Result<Document, PidfError> {
    let mut reader = xml::reader(body, "PIDF body is not UTF-8").map_err(PidfError)?;

    let mut builder = Builder::default();
    // Open elements below the root; the root itself is not kept as an Element.
    let mut stack: Vec<Element> = Vec::new();
    let mut root_open = false;
    let mut root_done = false;
    let mut pending = String::new();
    let mut elements = 0usize;

    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| PidfError(xml::malformed(e)))?;
        let ns = xml::namespace(resolved)
            .map_err(PidfError)?
            .map(str::to_owned);
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if root_done {
                    return Err(err("content after the root element"));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(err("too many elements"));
                }
                xml::check_depth(stack.len() + 1, MAX_DEPTH).map_err(PidfError)?;
                if !root_open {
                    if !xml::trim(&pending).is_empty() {
                        return Err(err("text before the root element"));
                    }
                    pending.clear();
                    let root = read_element(&reader, ns, e)?;
                    if !root.is(ns::PIDF, "presence") {
                        return Err(err(
                            "root element is not {urn:ietf:params:xml:ns:pidf}presence",
                        ));
                    }
                    match root.attr("entity") {
                        Some(entity) if !entity.is_empty() => builder.entity = entity.to_owned(),
                        _ => return Err(err("presence without entity")),
                    }
                    root_open = !empty;
                    root_done = empty;
                    continue;
                }
                flush_text(&mut pending, &mut stack);
                let el = read_element(&reader, ns, e)?;
                if empty {
                    close(el, &mut stack, &mut builder)?;
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                flush_text(&mut pending, &mut stack);
                match stack.pop() {
                    Some(el) => close(el, &mut stack, &mut builder)?,
                    None if root_open => {
                        root_open = false;
                        root_done = true;
                    }
                    None => return Err(err("unexpected end tag")),
                }
            }
            Event::Text(t) => pending.push_str(&t.xml10_content()),
            Event::CData(c) => {
                if !root_open {
                    return Err(err("CDATA outside the root element"));
                }
                pending.push_str(&c.xml10_content());
            }
            Event::GeneralRef(r) => {
                if !root_open {
                    return Err(err("reference outside the root element"));
                }
                pending.push(xml::reference(r).map_err(PidfError)?);
            }
            Event::DocType(_) => return Err(err(xml::DTD_NOT_ALLOWED)),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if root_open || !stack.is_empty() {
        return Err(err("unexpected end of document"));
    }
    if !root_done {
        return Err(err("no root element"));
    }
    if !xml::trim(&pending).is_empty() {
        return Err(err("text after the root element"));
    }
    Ok(builder.finish())
}

/// What is accumulated from the direct children of `<presence>`.
#[derive(Default)]
struct Builder {
    entity: String,
    tuples: Vec<Tuple>,
    notes: Vec<Element>,
    person: Option<Person>,
}

impl Builder {
    fn finish(self) -> Document {
        Document {
            entity: self.entity,
            tuples: self.tuples,
            notes: self.notes,
            person: self.person,
        }
    }

    fn top_level(&mut self, el: Element) -> Result<(), PidfError> {
        if el.is(ns::PIDF, "tuple") {
            let id = match el.attr("id") {
                Some(id) if !id.is_empty() => id.to_owned(),
                _ => return Err(err("tuple without id")),
            };
            if self.tuples.len() >= MAX_TUPLES {
                return Err(err("too many tuples"));
            }
            self.tuples.push(Tuple { id, element: el });
        } else if el.is(ns::PIDF, "note") {
            self.notes.push(el);
        } else if el.is(ns::DATA_MODEL, "person") {
            self.add_person(el);
        }
        Ok(())
    }

    fn add_person(&mut self, el: Element) {
        let person = self.person.get_or_insert_with(|| Person {
            id: String::new(),
            activities: Vec::new(),
            other: Vec::new(),
            timestamp: None,
        });
        if person.id.is_empty()
            && let Some(id) = el.attr("id")
        {
            person.id = id.to_owned();
        }
        for child in el.children {
            let Node::Element(child) = child else {
                continue;
            };
            if child.is(ns::RPID, "activities") {
                for a in child.children {
                    if let Node::Element(a) = a {
                        person.activities.push(a);
                    }
                }
            } else if child.is(ns::DATA_MODEL, "timestamp") || child.is(ns::PIDF, "timestamp") {
                let ts = xml::trim(&child.text()).to_owned();
                person.timestamp = Some(match person.timestamp.take() {
                    None => ts,
                    Some(old) => latest(old, ts),
                });
            } else {
                person.other.push(child);
            }
        }
    }
}

/// The later of two timestamps (the first on ties; a parsable one over an unparsable one).
pub(crate) fn latest(a: String, b: String) -> String {
    match (parse_rfc3339(&a), parse_rfc3339(&b)) {
        (Some(x), Some(y)) if y > x => b,
        (None, Some(_)) => b,
        _ => a,
    }
}

/// Attaches a closed element to its parent, or hands a child of `<presence>` to the builder.
fn close(el: Element, stack: &mut [Element], builder: &mut Builder) -> Result<(), PidfError> {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(Node::Element(el));
            Ok(())
        }
        None => builder.top_level(el),
    }
}

/// Turns accumulated character data into a text node of the innermost open element, dropping
/// whitespace-only runs (and any text directly inside `<presence>`).
fn flush_text(pending: &mut String, stack: &mut [Element]) {
    if pending.is_empty() {
        return;
    }
    if !xml::trim(pending).is_empty()
        && let Some(parent) = stack.last_mut()
    {
        parent.children.push(Node::Text(std::mem::take(pending)));
    }
    pending.clear();
}

/// Reads an element's name and attributes, resolving attribute namespaces in the current scope.
fn read_element<R>(
    reader: &NsReader<R>,
    ns: Option<String>,
    e: &BytesStart<'_>,
) -> Result<Element, PidfError> {
    let local_name = e.local_name();
    let name: &str = local_name.as_ref();
    check_ncname(name)?;
    if let Some(n) = &ns {
        check_namespace(n)?;
    }
    let mut attrs: Vec<(Option<String>, String, String)> = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| PidfError(xml::malformed(e)))?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, local) = reader.resolver().resolve_attribute(attr.key);
        let ans = xml::namespace(resolved)
            .map_err(PidfError)?
            .map(str::to_owned);
        if ans.as_deref() == Some(XMLNS_NS) {
            continue;
        }
        if let Some(n) = &ans {
            check_namespace(n)?;
        }
        let local: &str = local.as_ref();
        check_ncname(local)?;
        let value = xml::attribute_value(&attr).map_err(PidfError)?;
        if attrs.len() >= MAX_ATTRIBUTES {
            return Err(err("too many attributes"));
        }
        if attrs.iter().any(|(n, l, _)| *n == ans && l == local) {
            return Err(err("duplicate attribute"));
        }
        attrs.push((ans, local.to_owned(), value.into_owned()));
    }
    Ok(Element {
        ns,
        name: name.to_owned(),
        attrs,
        children: Vec::new(),
    })
}

/// Namespace URIs are kept as written (quick-xml does not expand references in declarations):
/// refuse the characters that would need escaping (and white space or control characters,
/// which attribute normalization would change) so the URI is the same on output.
fn check_namespace(uri: &str) -> Result<(), PidfError> {
    if uri.is_empty()
        || uri.bytes().any(|b| {
            matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'')
                || b.is_ascii_whitespace()
                || b.is_ascii_control()
        })
        || uri == XMLNS_NS
    {
        return Err(err("invalid namespace name"));
    }
    Ok(())
}

/// An XML `NCName` (a name without `:`, as element and attribute local names, prefixes and
/// `xs:ID` values), per the `NameStartChar` / `NameChar` productions of XML 1.0 5th edition.
pub fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if is_name_start_char(c) => chars.all(is_name_char),
        _ => false,
    }
}

fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

fn check_ncname(name: &str) -> Result<(), PidfError> {
    if is_ncname(name) {
        Ok(())
    } else {
        Err(PidfError(format!(
            "invalid name '{}'",
            name.escape_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::XML_NS;
    use super::*;

    const LINPHONE_AWAY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@127.0.0.1" xmlns="urn:ietf:params:xml:ns:pidf">
 <tuple id="wke48z">
  <status>
   <basic>open</basic>
  </status>
  <contact priority="0.8">sip:alice@127.0.0.1</contact>
  <note xml:lang="en">Gone fishing</note>
  <timestamp>2026-11-23T20:02:49Z</timestamp>
 </tuple>
 <dm:person id="i.5u42">
  <rpid:activities>
   <rpid:away/>
  </rpid:activities>
  <timestamp>2026-11-23T20:02:49Z</timestamp>
 </dm:person>
</presence>"#;

    #[test]
    fn linphone_away() {
        let d = parse(LINPHONE_AWAY.replace('\n', "\r\n").as_bytes()).unwrap();
        assert_eq!(d.entity, "sip:alice@127.0.0.1");
        assert_eq!(d.tuples.len(), 1);
        let t = &d.tuples[0];
        assert_eq!(t.id, "wke48z");
        let status = t
            .element
            .child_elements()
            .find(|e| e.is(ns::PIDF, "status"))
            .unwrap();
        let basic = status.child_elements().next().unwrap();
        assert!(basic.is(ns::PIDF, "basic"));
        assert_eq!(basic.children, vec![Node::Text("open".into())]);
        let note = t
            .element
            .child_elements()
            .find(|e| e.is(ns::PIDF, "note"))
            .unwrap();
        assert_eq!(
            note.attrs,
            vec![(Some(XML_NS.to_owned()), "lang".to_owned(), "en".to_owned())]
        );
        assert_eq!(note.text(), "Gone fishing");
        let contact = t
            .element
            .child_elements()
            .find(|e| e.is(ns::PIDF, "contact"))
            .unwrap();
        assert_eq!(contact.attr("priority"), Some("0.8"));
        let p = d.person.unwrap();
        assert_eq!(p.id, "i.5u42");
        assert_eq!(p.activities.len(), 1);
        assert!(p.activities[0].is(ns::RPID, "away"));
        assert!(p.other.is_empty());
        assert_eq!(p.timestamp.as_deref(), Some("2026-11-23T20:02:49Z"));
    }

    #[test]
    fn prefixes_do_not_matter() {
        let doc = r#"<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:ietf:params:xml:ns:pidf:data-model" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b">
  <p:tuple id="t"><p:status><p:basic>open</p:basic></p:status></p:tuple>
  <x:person id="p"><r:activities><r:busy/></r:activities><x:timestamp>2026-01-01T00:00:00Z</x:timestamp></x:person>
  <p:note>hi</p:note>
</p:presence>"#;
        let d = parse(doc.as_bytes()).unwrap();
        assert_eq!(d.tuples[0].id, "t");
        assert!(d.person.as_ref().unwrap().activities[0].is(ns::RPID, "busy"));
        assert_eq!(
            d.person.unwrap().timestamp.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(d.notes[0].text(), "hi");
        // A `presence` in the wrong namespace (same prefix-less spelling) is refused.
        assert!(parse(br#"<presence xmlns="urn:other" entity="sip:a@b"/>"#).is_err());
        assert!(parse(br#"<presence entity="sip:a@b"/>"#).is_err());
    }

    #[test]
    fn persons_merge() {
        let doc = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b">
  <dm:person id="p4159"><rpid:activities/></dm:person>
  <dm:person id="p2"><rpid:activities><rpid:away/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood><dm:timestamp>2026-01-01T10:00:00+02:00</dm:timestamp></dm:person>
  <dm:person><rpid:activities><rpid:meal/></rpid:activities><dm:timestamp>2026-01-01T09:00:00Z</dm:timestamp></dm:person>
</presence>"#;
        let p = parse(doc.as_bytes()).unwrap().person.unwrap();
        assert_eq!(p.id, "p4159");
        assert_eq!(p.activities.len(), 2);
        assert_eq!(p.other.len(), 1);
        assert!(p.other[0].is(ns::RPID, "mood"));
        assert_eq!(p.timestamp.as_deref(), Some("2026-01-01T09:00:00Z"));
    }

    #[test]
    fn references() {
        let doc = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a&amp;b@c&#x2e;d"><note>&lt;&gt;&amp;&apos;&quot; &#233;&#x1F600; <![CDATA[<x>]]></note><note>  </note></presence>"#;
        let d = parse(doc.as_bytes()).unwrap();
        assert_eq!(d.entity, "sip:a&b@c.d");
        assert_eq!(
            d.notes[0].children,
            vec![Node::Text("<>&'\" é😀 <x>".into())]
        );
        assert!(d.notes[1].children.is_empty());
        for bad in ["&foo;", "&#0;", "&#1;", "&#xFFFE;", "&", "&#xD800;"] {
            let doc = format!(
                r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><note>{bad}</note></presence>"#
            );
            assert!(parse(doc.as_bytes()).is_err(), "{bad}");
            let doc = format!(r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e{bad}"/>"#);
            assert!(parse(doc.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn line_ends_and_attribute_normalization() {
        let doc = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"a\r\nb\tc&#10;d\"><note>x\r\ny\rz&#13;</note></presence>";
        let d = parse(doc.as_bytes()).unwrap();
        assert_eq!(d.entity, "a b c\nd");
        assert_eq!(d.notes[0].text(), "x\ny\nz\r");
    }

    #[test]
    fn refusals() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"<?xml version=\"1.0\"?>",
            b"not xml",
            b"\xff\xfe<\x00",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\">",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"></presense>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"\"/>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><tuple/></presence>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><tuple id=\"\"/></presence>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><x:y/></presence>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\" entity=\"f\"/>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:a=\"urn:x\" xmlns:b=\"urn:x\" entity=\"e\" a:z=\"1\" b:z=\"2\"/>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"/><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"/>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"/>junk",
            b"junk<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"/>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\">\x01</presence>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"\xc3\x28\"/>",
            b"<!DOCTYPE presence><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"/>",
            b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:xmlns=\"urn:x\" entity=\"e\"/>",
        ];
        for c in cases {
            assert!(parse(c).is_err(), "{}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn ncnames() {
        for ok in [
            "a",
            "_x",
            "tuple",
            "on-the-phone",
            "i.5u42",
            "été",
            "x·y",
            "日本",
        ] {
            assert!(is_ncname(ok), "{ok}");
        }
        for bad in [
            "", "1a", "-a", ".a", "a:b", "a b", "a\"b", "a=b", "×", "a×", "\u{3000}",
        ] {
            assert!(!is_ncname(bad), "{bad}");
        }
    }

    #[test]
    fn billion_laughs_is_refused() {
        let doc = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><note>&lol3;</note></presence>"#;
        assert_eq!(parse(doc), Err(err("DTD not allowed")));
    }

    #[test]
    fn depth_is_bounded() {
        let nest = |n: usize| {
            let mut s = String::from(
                r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple id="t">"#,
            );
            for _ in 0..n {
                s.push_str("<x>");
            }
            for _ in 0..n {
                s.push_str("</x>");
            }
            s.push_str("</tuple></presence>");
            s
        };
        // presence + tuple + 30 = 32 levels: accepted; one more: refused.
        assert!(parse(nest(30).as_bytes()).is_ok());
        assert!(parse(nest(31).as_bytes()).is_err());
        assert!(parse(nest(100_000).as_bytes()).is_err());
    }

    #[test]
    fn tuple_count_is_bounded() {
        let doc = |n: usize| {
            let mut s =
                String::from(r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e">"#);
            for i in 0..n {
                s.push_str(&format!(
                    r#"<tuple id="t{i}"><status><basic>open</basic></status></tuple>"#
                ));
            }
            s.push_str("</presence>");
            s
        };
        assert_eq!(parse(doc(256).as_bytes()).unwrap().tuples.len(), 256);
        assert!(parse(doc(257).as_bytes()).is_err());
    }

    #[test]
    fn unknown_elements_are_kept() {
        let doc = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:op="urn:oma:xml:prs:pidf:oma-pres" entity="e">
<tuple id="t"><status><basic>open</basic></status><op:service-description><op:service-id>org.3gpp.urn:urn-7:3gpp-service.ims.icsi.mmtel</op:service-id><op:version>1.0</op:version></op:service-description><ext xmlns="urn:ext" a="1"><y xmlns="">text</y></ext></tuple></presence>"#;
        let d = parse(doc.as_bytes()).unwrap();
        let kids: Vec<_> = d.tuples[0].element.child_elements().collect();
        assert!(kids[1].is(ns::OMA_PRES, "service-description"));
        assert!(kids[2].is("urn:ext", "ext"));
        assert_eq!(kids[2].attr("a"), Some("1"));
        let y = kids[2].child_elements().next().unwrap();
        assert_eq!(y.ns, None);
        assert_eq!(y.text(), "text");
    }
}
