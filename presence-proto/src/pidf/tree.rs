//! A minimal owned XML tree with resolved namespaces, and its serializer.

use super::ns;
use crate::sip::text::write_uint;

/// The namespace of the `xml:` prefix (`xml:lang`...): always in scope, never declared.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// An element: namespace URI (None when unbound), local name, attributes, children.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    /// Attributes: (namespace URI of the attribute, None for unprefixed), local name, unescaped value.
    /// `xmlns` declarations are not kept (they are regenerated on output).
    pub attrs: Vec<(Option<String>, String, String)>,
    pub children: Vec<Node>,
}

/// A child node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Element(Element),
    /// Unescaped character data (whitespace-only text between elements is dropped at parse time).
    Text(String),
}

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(ns, n, _)| ns.is_none() && n == name)
            .map(|(_, _, v)| v.as_str())
    }
    pub fn child_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }
    /// Concatenated direct text content.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }
}

/// Serializes elements with namespace prefixes chosen by a [`Namespaces`] table.
/// Known namespaces use fixed prefixes (PIDF is the default namespace of the document; `dm`,
/// `rpid`, `pidfonline`, `op` for OMA, `c` for caps); any other namespace gets a generated
/// prefix (`ns1`, `ns2`...) declared on the element where it is first used.
///
/// The element is written as if it were inside a composed document's `<presence>` root that
/// declares the PIDF namespace as default and every fixed prefix ([`Namespaces::document`]).
/// Use [`Namespaces::write`] to write in another scope.
pub fn write_element(el: &Element, out: &mut Vec<u8>) {
    Namespaces::document().write(el, out);
}

/// Namespaces with a fixed prefix, in bit order of [`Namespaces`]'s `known` mask.
pub(crate) const KNOWN: [(&str, &str); 5] = [
    (ns::DATA_MODEL, "dm"),
    (ns::RPID, "rpid"),
    (ns::PIDFONLINE, "pidfonline"),
    (ns::OMA_PRES, "op"),
    (ns::CAPS, "c"),
];
pub(crate) const KNOWN_DM: u8 = 1 << 0;
pub(crate) const KNOWN_RPID: u8 = 1 << 1;
const KNOWN_ALL: u8 = (1 << KNOWN.len()) - 1;

fn known_index(uri: &str) -> Option<usize> {
    KNOWN.iter().position(|(u, _)| *u == uri)
}

/// The namespace bindings in scope while writing, and the generator of `nsN` prefixes.
#[derive(Debug, Clone)]
pub struct Namespaces {
    /// Whether the default namespace in scope is PIDF (otherwise: no default namespace).
    default_pidf: bool,
    /// Bit i set: `KNOWN[i]`'s prefix is declared in scope.
    known: u8,
    /// Generated bindings in scope: (namespace URI, n) for prefix `ns{n}`; innermost last.
    generated: Vec<(String, u32)>,
    /// Last generated number.
    next: u32,
}

/// How an element or attribute name is prefixed.
#[derive(Clone, Copy)]
enum Prefix<'a> {
    None,
    Fixed(&'a str),
    Generated(u32),
}

impl Namespaces {
    /// The scope inside a composed `<presence>`: PIDF is the default namespace and every fixed
    /// prefix (`dm`, `rpid`, `pidfonline`, `op`, `c`) is declared.
    pub fn document() -> Self {
        Self::with_known(KNOWN_ALL)
    }

    /// The scope inside a root that declares PIDF as default namespace and the fixed prefixes
    /// of the namespaces in `declared` (URIs without a fixed prefix are ignored).
    pub fn root(declared: &[&str]) -> Self {
        let mut known = 0;
        for uri in declared {
            if let Some(i) = known_index(uri) {
                known |= 1 << i;
            }
        }
        Self::with_known(known)
    }

    /// A scope with no binding at all (no default namespace, no prefix): writing an element
    /// in it produces a standalone fragment carrying every declaration it needs.
    pub fn empty() -> Self {
        Namespaces {
            default_pidf: false,
            known: 0,
            generated: Vec::new(),
            next: 0,
        }
    }

    pub(crate) fn with_known(known: u8) -> Self {
        Namespaces {
            default_pidf: true,
            known,
            generated: Vec::new(),
            next: 0,
        }
    }

    /// Writes the declarations of this scope (` xmlns="..." xmlns:dm="..."`...), for the root
    /// element that establishes it.
    pub fn write_declarations(&self, out: &mut Vec<u8>) {
        if self.default_pidf {
            out.extend_from_slice(b" xmlns=\"");
            escape_attr(ns::PIDF, out);
            out.push(b'"');
        }
        for (i, (uri, prefix)) in KNOWN.iter().enumerate() {
            if self.known & (1 << i) != 0 {
                write_decl(Prefix::Fixed(prefix), uri, out);
            }
        }
        for (uri, n) in &self.generated {
            write_decl(Prefix::Generated(*n), uri, out);
        }
    }

    /// Writes `el` in this scope, declaring what is missing on the elements that need it.
    pub fn write(&mut self, el: &Element, out: &mut Vec<u8>) {
        self.write_parts(
            el.ns.as_deref(),
            &el.name,
            None,
            &el.attrs,
            &el.children,
            out,
        );
    }

    /// Writes an element given by parts; when `id` is given it is written as the unprefixed
    /// `id` attribute and any unprefixed `id` in `attrs` is skipped.
    pub(crate) fn write_parts(
        &mut self,
        ns: Option<&str>,
        name: &str,
        id: Option<&str>,
        attrs: &[(Option<String>, String, String)],
        children: &[Node],
        out: &mut Vec<u8>,
    ) {
        let saved_default = self.default_pidf;
        let saved_known = self.known;
        let saved_generated = self.generated.len();

        // Element prefix, and the declaration it needs, if any.
        let mut default_decl: Option<&str> = None;
        let mut decl: Option<Prefix<'static>> = None;
        let prefix = match ns {
            Some(uri) if uri == ns::PIDF => {
                if !self.default_pidf {
                    self.default_pidf = true;
                    default_decl = Some(ns::PIDF);
                }
                Prefix::None
            }
            None => {
                if self.default_pidf {
                    self.default_pidf = false;
                    default_decl = Some("");
                }
                Prefix::None
            }
            Some(uri) if uri == XML_NS => Prefix::Fixed("xml"),
            Some(uri) => {
                let (p, new) = self.prefix_for(uri);
                if new {
                    decl = Some(p);
                }
                p
            }
        };

        out.push(b'<');
        write_qname(prefix, name, out);
        if let Some(uri) = default_decl {
            out.extend_from_slice(b" xmlns=\"");
            escape_attr(uri, out);
            out.push(b'"');
        }
        if let (Some(p), Some(uri)) = (decl, ns) {
            write_decl(p, uri, out);
        }
        // Declarations needed by attributes.
        for (ans, _, _) in attrs {
            if let Some(uri) = ans.as_deref()
                && uri != XML_NS
            {
                let (p, new) = self.prefix_for(uri);
                if new {
                    write_decl(p, uri, out);
                }
            }
        }
        if let Some(id) = id {
            out.extend_from_slice(b" id=\"");
            escape_attr(id, out);
            out.push(b'"');
        }
        for (ans, aname, value) in attrs {
            if id.is_some() && ans.is_none() && aname == "id" {
                continue;
            }
            let p = match ans.as_deref() {
                None => Prefix::None,
                Some(XML_NS) => Prefix::Fixed("xml"),
                Some(uri) => self.prefix_for(uri).0,
            };
            out.push(b' ');
            write_qname(p, aname, out);
            out.extend_from_slice(b"=\"");
            escape_attr(value, out);
            out.push(b'"');
        }
        if children.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            for child in children {
                match child {
                    Node::Element(e) => self.write(e, out),
                    Node::Text(t) => escape_text(t, out),
                }
            }
            out.extend_from_slice(b"</");
            write_qname(prefix, name, out);
            out.push(b'>');
        }

        self.default_pidf = saved_default;
        self.known = saved_known;
        self.generated.truncate(saved_generated);
    }

    /// The prefix bound to `uri` for a prefixed name (never the default namespace), binding a
    /// fixed or generated one when none is in scope; `true` when a declaration must be written.
    fn prefix_for(&mut self, uri: &str) -> (Prefix<'static>, bool) {
        if uri == XML_NS {
            return (Prefix::Fixed("xml"), false);
        }
        if let Some(i) = known_index(uri) {
            let p = Prefix::Fixed(KNOWN[i].1);
            if self.known & (1 << i) != 0 {
                return (p, false);
            }
            self.known |= 1 << i;
            return (p, true);
        }
        if let Some((_, n)) = self.generated.iter().rev().find(|(u, _)| u == uri) {
            return (Prefix::Generated(*n), false);
        }
        self.next += 1;
        self.generated.push((uri.to_owned(), self.next));
        (Prefix::Generated(self.next), true)
    }
}

fn write_qname(prefix: Prefix<'_>, name: &str, out: &mut Vec<u8>) {
    match prefix {
        Prefix::None => {}
        Prefix::Fixed(p) => {
            out.extend_from_slice(p.as_bytes());
            out.push(b':');
        }
        Prefix::Generated(n) => {
            out.extend_from_slice(b"ns");
            write_uint(out, u64::from(n));
            out.push(b':');
        }
    }
    out.extend_from_slice(name.as_bytes());
}

fn write_decl(prefix: Prefix<'_>, uri: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b" xmlns");
    match prefix {
        Prefix::None => {}
        Prefix::Fixed(p) => {
            out.push(b':');
            out.extend_from_slice(p.as_bytes());
        }
        Prefix::Generated(n) => {
            out.extend_from_slice(b":ns");
            write_uint(out, u64::from(n));
        }
    }
    out.extend_from_slice(b"=\"");
    escape_attr(uri, out);
    out.push(b'"');
}

/// Escapes character data: `&`, `<`, `>` and `\r` (which XML end-of-line handling would
/// otherwise turn into `\n`).
pub fn escape_text(s: &str, out: &mut Vec<u8>) {
    escape(s, out, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\r' => Some(b"&#13;"),
        _ => None,
    });
}

/// Escapes a double-quoted attribute value: `&`, `<`, `>`, `"`, and the whitespace characters
/// that attribute-value normalization would turn into spaces.
pub fn escape_attr(s: &str, out: &mut Vec<u8>) {
    escape(s, out, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'"' => Some(b"&quot;"),
        b'\t' => Some(b"&#9;"),
        b'\n' => Some(b"&#10;"),
        b'\r' => Some(b"&#13;"),
        _ => None,
    });
}

#[inline]
fn escape(s: &str, out: &mut Vec<u8>, replacement: impl Fn(u8) -> Option<&'static [u8]>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(r) = replacement(b) {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(r);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(
        ns: Option<&str>,
        name: &str,
        attrs: &[(Option<&str>, &str, &str)],
        children: Vec<Node>,
    ) -> Element {
        Element {
            ns: ns.map(str::to_owned),
            name: name.to_owned(),
            attrs: attrs
                .iter()
                .map(|(n, k, v)| (n.map(str::to_owned), k.to_string(), v.to_string()))
                .collect(),
            children,
        }
    }

    fn write(e: &Element) -> String {
        let mut out = Vec::new();
        write_element(e, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_concatenates_direct_text() {
        let e = el(
            None,
            "a",
            &[],
            vec![
                Node::Text("x".into()),
                Node::Element(el(None, "b", &[], vec![Node::Text("no".into())])),
                Node::Text("y".into()),
            ],
        );
        assert_eq!(e.text(), "xy");
    }

    #[test]
    fn known_prefixes_and_default() {
        let e = el(
            Some(ns::PIDF),
            "status",
            &[],
            vec![
                Node::Element(el(
                    Some(ns::PIDF),
                    "basic",
                    &[],
                    vec![Node::Text("open".into())],
                )),
                Node::Element(el(Some(ns::PIDFONLINE), "online", &[], vec![])),
            ],
        );
        assert_eq!(
            write(&e),
            "<status><basic>open</basic><pidfonline:online/></status>"
        );
    }

    #[test]
    fn unknown_namespaces_get_generated_prefixes() {
        let inner = el(Some("urn:x"), "b", &[(Some("urn:y"), "at", "1")], vec![]);
        let e = el(
            Some("urn:x"),
            "a",
            &[],
            vec![Node::Element(inner.clone()), Node::Element(inner)],
        );
        assert_eq!(
            write(&e),
            "<ns1:a xmlns:ns1=\"urn:x\"><ns1:b xmlns:ns2=\"urn:y\" ns2:at=\"1\"/><ns1:b xmlns:ns3=\"urn:y\" ns3:at=\"1\"/></ns1:a>"
        );
    }

    #[test]
    fn unbound_element_undeclares_default() {
        let e = el(
            Some(ns::PIDF),
            "tuple",
            &[],
            vec![Node::Element(el(
                None,
                "x",
                &[],
                vec![Node::Element(el(Some(ns::PIDF), "note", &[], vec![]))],
            ))],
        );
        assert_eq!(
            write(&e),
            "<tuple><x xmlns=\"\"><note xmlns=\"urn:ietf:params:xml:ns:pidf\"/></x></tuple>"
        );
    }

    #[test]
    fn xml_lang_and_escaping() {
        let e = el(
            Some(ns::PIDF),
            "note",
            &[(Some(XML_NS), "lang", "en"), (None, "q", "a\"<&>\n\t\r")],
            vec![Node::Text("1 < 2 & 3 > \"0\"\r\n".into())],
        );
        assert_eq!(
            write(&e),
            "<note xml:lang=\"en\" q=\"a&quot;&lt;&amp;&gt;&#10;&#9;&#13;\">1 &lt; 2 &amp; 3 &gt; \"0\"&#13;\n</note>"
        );
    }

    #[test]
    fn empty_scope_declares_everything() {
        let e = el(
            Some(ns::PIDF),
            "a",
            &[],
            vec![Node::Element(el(Some(ns::RPID), "away", &[], vec![]))],
        );
        let mut out = Vec::new();
        Namespaces::empty().write(&e, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<a xmlns=\"urn:ietf:params:xml:ns:pidf\"><rpid:away xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"/></a>"
        );
    }

    #[test]
    fn pidf_namespaced_attribute_gets_a_prefix() {
        let e = el(Some(ns::PIDF), "a", &[(Some(ns::PIDF), "x", "1")], vec![]);
        assert_eq!(
            write(&e),
            "<a xmlns:ns1=\"urn:ietf:params:xml:ns:pidf\" ns1:x=\"1\"/>"
        );
    }

    #[test]
    fn write_uint_digits() {
        for n in [0u32, 7, 10, 99, 12345, u32::MAX] {
            let mut out = Vec::new();
            write_uint(&mut out, u64::from(n));
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
