//! XML reading shared by the PIDF, resource-lists and RLMI readers: one strict, namespace-aware
//! quick-xml setup (UTF-8 only, characters XML 1.0 forbids refused, DOCTYPE refused, only the
//! five predefined entities), the pieces every reader needs (namespace resolution, references,
//! attribute values, the depth bound), and a small event walker for the list formats.
//!
//! Errors are the texts the readers report (they end up in `Warning` headers and logs).

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesRef, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// Maximum unprefixed attributes kept per element by [`walk`].
const MAX_ATTRIBUTES: usize = 64;

/// The reason given for a DOCTYPE (never expanded: refused).
pub(crate) const DTD_NOT_ALLOWED: &str = "DTD not allowed";

/// A reader over `body`: a UTF-8 byte order mark skipped, then refused with `not_utf8` when not
/// UTF-8, or when it holds a character XML 1.0 forbids; end names checked, no unmatched end tag,
/// no dangling `&`, empty elements reported as such, text untrimmed.
pub(crate) fn reader<'a>(body: &'a [u8], not_utf8: &str) -> Result<NsReader<&'a [u8]>, String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|_| not_utf8.to_owned())?;
    check_chars(text)?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.allow_dangling_amp = false;
    config.expand_empty_elements = false;
    config.trim_text(false);
    Ok(reader)
}

/// The reason given for what quick-xml refuses.
pub(crate) fn malformed(e: impl std::fmt::Display) -> String {
    format!("malformed XML: {e}")
}

/// The namespace of a resolved name: None when unbound; an unknown prefix is refused.
pub(crate) fn namespace(resolved: ResolveResult<'_>) -> Result<Option<&str>, String> {
    match resolved {
        ResolveResult::Bound(n) => Ok(Some(n.0)),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(p) => Err(format!("unbound namespace prefix '{p}'")),
    }
}

/// Refuses a new element when `open` elements are already open and the bound is `max_depth`
/// levels (the root being level 1).
pub(crate) fn check_depth(open: usize, max_depth: usize) -> Result<(), String> {
    if open >= max_depth {
        return Err("elements nested too deep".to_owned());
    }
    Ok(())
}

/// The character a reference stands for: a character reference to a character XML allows, or
/// one of the five predefined entities (no other entity exists: DTDs are refused).
pub(crate) fn reference(r: BytesRef<'_>) -> Result<char, String> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err("invalid character reference".to_owned()),
        };
    }
    match &*r.into_inner() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => Err("unknown entity reference".to_owned()),
    }
}

/// An attribute's value after XML 1.0 attribute-value normalization, references resolved; a
/// character XML forbids is refused.
pub(crate) fn attribute_value<'a>(a: &Attribute<'a>) -> Result<Cow<'a, str>, String> {
    let value = a
        .normalized_value(XmlVersion::Explicit1_0)
        .map_err(malformed)?;
    if !value.chars().all(is_xml_char) {
        return Err("invalid character in attribute value".to_owned());
    }
    Ok(value)
}

/// XML white space (space, tab, CR, LF).
pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Trims XML white space.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

/// Characters allowed by XML 1.0 (`Char` production).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Refuses characters XML 1.0 forbids anywhere in the document (C0 controls other than tab,
/// CR and LF; U+FFFE, U+FFFF).
fn check_chars(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let bad = match c {
            b'\t' | b'\n' | b'\r' => false,
            0..=0x1F => true,
            // U+FFFE and U+FFFF are EF BF BE / EF BF BF.
            0xEF => b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)),
            _ => false,
        };
        if bad {
            return Err("character not allowed in XML".to_owned());
        }
    }
    Ok(())
}

/// What [`walk`] reports, in document order. Every `Start` is matched by an `End` (an empty
/// element gives both); text comes in pieces (references and CDATA apart).
pub(crate) enum Ev<'a> {
    Start(Start<'a>),
    End,
    /// Character data inside the root element, line ends normalized, references resolved.
    Text(&'a str),
}

/// An element as [`walk`] reports it.
pub(crate) struct Start<'a> {
    /// The namespace, None when unbound.
    pub(crate) ns: Option<&'a str>,
    /// The local name.
    pub(crate) name: &'a str,
    /// Unprefixed attributes with their normalized values (namespace declarations and prefixed
    /// attributes left out).
    attrs: &'a [(String, String)],
}

impl<'a> Start<'a> {
    /// The value of an unprefixed attribute.
    pub(crate) fn attr(&self, name: &str) -> Option<&'a str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The event walker of the list formats (resource lists, RLMI): walks `body`, calling `on` for
/// each event; an `Err` from `on` stops the walk and is returned as is. Refuses: non-UTF-8,
/// characters XML 1.0 forbids, malformed XML, a DOCTYPE, unbound element prefixes, more than
/// `max_depth` nesting levels (the root is level 1), entity references other than the
/// predefined ones, content outside the single root.
pub(crate) fn walk(
    body: &[u8],
    max_depth: usize,
    mut on: impl FnMut(Ev<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut reader = reader(body, "not UTF-8")?;
    let mut depth = 0usize;
    let mut root_done = false;
    let mut attrs: Vec<(String, String)> = Vec::new();
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(malformed)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root_done {
                    return Err("content after the root element".to_owned());
                }
                check_depth(depth, max_depth)?;
                let ns = namespace(resolved)?;
                attrs.clear();
                for a in e.attributes() {
                    let a = a.map_err(malformed)?;
                    if a.key.as_namespace_binding().is_some() || a.key.prefix().is_some() {
                        continue;
                    }
                    if attrs.len() >= MAX_ATTRIBUTES {
                        return Err("too many attributes".to_owned());
                    }
                    let value = attribute_value(&a)?;
                    let key = a.key.local_name();
                    attrs.push((key.as_ref().to_owned(), value.into_owned()));
                }
                let local = e.local_name();
                let name: &str = local.as_ref();
                on(Ev::Start(Start {
                    ns,
                    name,
                    attrs: &attrs,
                }))?;
                if matches!(event, Event::Empty(_)) {
                    on(Ev::End)?;
                    root_done = depth == 0;
                } else {
                    depth += 1;
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match (check_end_names, no unmatched ends).
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| "unexpected end tag".to_owned())?;
                on(Ev::End)?;
                root_done = depth == 0;
            }
            Event::Text(t) => {
                let t = t.xml10_content();
                if depth > 0 {
                    on(Ev::Text(&t))?;
                } else if !trim(&t).is_empty() {
                    return Err("text outside the root element".to_owned());
                }
            }
            Event::CData(c) => {
                if depth == 0 {
                    return Err("CDATA outside the root element".to_owned());
                }
                on(Ev::Text(&c.xml10_content()))?;
            }
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err("reference outside the root element".to_owned());
                }
                on(Ev::Text(reference(r)?.encode_utf8(&mut [0; 4])))?;
            }
            Event::DocType(_) => return Err(DTD_NOT_ALLOWED.to_owned()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if depth > 0 {
        return Err("unexpected end of document".to_owned());
    }
    if !root_done {
        return Err("no root element".to_owned());
    }
    Ok(())
}
