//! A minimal owned XML tree with resolved namespaces, and its serializer.

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
        self.attrs.iter().find(|(ns, n, _)| ns.is_none() && n == name).map(|(_, _, v)| v.as_str())
    }
    pub fn child_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }
    /// Concatenated direct text content.
    pub fn text(&self) -> String {
        todo!()
    }
}

/// Serializes elements with namespace prefixes chosen by a [`Namespaces`] table.
/// Known namespaces use fixed prefixes (PIDF is the default namespace of the document; `dm`,
/// `rpid`, `pidfonline`, `op` for OMA, `c` for caps); any other namespace gets a generated
/// prefix (`ns1`, `ns2`...) declared on the element where it is first used.
pub fn write_element(el: &Element, out: &mut Vec<u8>) {
    todo!("{el:?} {out:?}")
}
