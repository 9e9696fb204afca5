//! Composing the PIDF document a watcher receives.

use super::parse::is_ncname;
use super::time::parse_rfc3339;
use super::tree::{KNOWN, KNOWN_DM, KNOWN_RPID, Namespaces, Node, escape_attr, escape_text};
use super::{Document, Element, Tuple, ns};

const XML_DECL: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Writes one PIDF document for `entity` merging `docs` (newest publication first):
/// - every tuple of every document, de-duplicated by tuple id (the first seen wins);
/// - presence-level notes, de-duplicated;
/// - one `dm:person` when any document has a person: the union of activities (de-duplicated),
///   the other person children of the newest document that has a person, the id of that person
///   (or a generated valid xs:ID when it has none), and the latest timestamp (RFC 3339 values
///   compared as instants, zones applied; unparsable ones ignored), written as `dm:timestamp`.
///
/// When the result would have no tuple and no person, writes [`note_only`] instead.
/// Output: `<?xml version="1.0" encoding="UTF-8"?>` then `<presence xmlns="urn:ietf:params:xml:ns:pidf"
/// xmlns:dm=... xmlns:rpid=... entity="...">`, tuples, notes, person. No `core::fmt` on this path.
///
/// The output is appended to `out`. Tuples are written as `<tuple id="...">` with the
/// [`Tuple::id`] and the element's other attributes and children. `xmlns:pidfonline`,
/// `xmlns:op` and `xmlns:c` are declared on the root only when used. The person's `id` is
/// replaced by a generated one when it is empty, not an NCName, or the id of a written tuple.
/// Activities are written inside one `<rpid:activities>`, omitted when there are none.
pub fn compose(entity: &str, docs: &[&Document], out: &mut Vec<u8>) {
    // Tuples, first seen wins.
    let total: usize = docs.iter().map(|d| d.tuples.len()).sum();
    let mut tuples: Vec<&Tuple> = Vec::with_capacity(total);
    if total <= 64 {
        for t in docs.iter().flat_map(|d| &d.tuples) {
            if !tuples.iter().any(|k| k.id == t.id) {
                tuples.push(t);
            }
        }
    } else {
        let mut seen = std::collections::HashSet::with_capacity(total);
        for t in docs.iter().flat_map(|d| &d.tuples) {
            if seen.insert(t.id.as_str()) {
                tuples.push(t);
            }
        }
    }

    let newest_person = docs.iter().find_map(|d| d.person.as_ref());
    if tuples.is_empty() && newest_person.is_none() {
        note_only(entity, out);
        return;
    }

    let mut notes: Vec<&Element> = Vec::new();
    for n in docs.iter().flat_map(|d| &d.notes) {
        if !notes.contains(&n) {
            notes.push(n);
        }
    }

    let mut activities: Vec<&Element> = Vec::new();
    let mut timestamp: Option<(i64, &str)> = None;
    for p in docs.iter().filter_map(|d| d.person.as_ref()) {
        for a in &p.activities {
            if !activities.contains(&a) {
                activities.push(a);
            }
        }
        if let Some(ts) = p.timestamp.as_deref() {
            let ts = ts.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
            if let Some(t) = parse_rfc3339(ts)
                && timestamp.is_none_or(|(best, _)| t > best)
            {
                timestamp = Some((t, ts));
            }
        }
    }

    // Root declarations: dm and rpid always, the other fixed prefixes when used.
    let mut used = KNOWN_DM | KNOWN_RPID;
    let mut stack: Vec<&Element> = Vec::new();
    for t in &tuples {
        used |= known_used(&t.element, &mut stack);
    }
    for n in &notes {
        used |= known_used(n, &mut stack);
    }
    if let Some(p) = newest_person {
        for e in activities.iter().copied().chain(&p.other) {
            used |= known_used(e, &mut stack);
        }
    }
    let mut scope = Namespaces::with_known(used);

    out.extend_from_slice(XML_DECL);
    out.extend_from_slice(b"<presence");
    scope.write_declarations(out);
    out.extend_from_slice(b" entity=\"");
    escape_attr(entity, out);
    out.extend_from_slice(b"\">");

    for t in &tuples {
        let e = &t.element;
        scope.write_parts(
            Some(ns::PIDF),
            "tuple",
            Some(&t.id),
            &e.attrs,
            &e.children,
            out,
        );
    }
    for n in &notes {
        scope.write(n, out);
    }
    if let Some(p) = newest_person {
        out.extend_from_slice(b"<dm:person id=\"");
        let id_ok = is_ncname(&p.id) && !tuples.iter().any(|t| t.id == p.id);
        if id_ok {
            escape_attr(&p.id, out);
        } else {
            write_generated_id(entity, &tuples, out);
        }
        out.extend_from_slice(b"\">");
        if !activities.is_empty() {
            out.extend_from_slice(b"<rpid:activities>");
            for a in &activities {
                scope.write(a, out);
            }
            out.extend_from_slice(b"</rpid:activities>");
        }
        for o in &p.other {
            scope.write(o, out);
        }
        if let Some((_, ts)) = timestamp {
            out.extend_from_slice(b"<dm:timestamp>");
            escape_text(ts, out);
            out.extend_from_slice(b"</dm:timestamp>");
        }
        out.extend_from_slice(b"</dm:person>");
    }
    out.extend_from_slice(b"</presence>");
}

/// The document sent when nothing is known (or nothing may be shown):
/// `<presence entity=...><note xml:lang="en">No presence information available yet</note></presence>`.
pub fn note_only(entity: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(XML_DECL);
    out.extend_from_slice(b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"");
    escape_attr(entity, out);
    out.extend_from_slice(
        b"\"><note xml:lang=\"en\">No presence information available yet</note></presence>",
    );
}

/// Bit mask (see `tree::KNOWN`) of the fixed-prefix namespaces used by `el` and its descendants.
fn known_used<'a>(el: &'a Element, stack: &mut Vec<&'a Element>) -> u8 {
    let mut mask = 0u8;
    stack.push(el);
    while let Some(e) = stack.pop() {
        mask |= known_bit(e.ns.as_deref());
        for (ans, _, _) in &e.attrs {
            mask |= known_bit(ans.as_deref());
        }
        for c in &e.children {
            if let Node::Element(c) = c {
                stack.push(c);
            }
        }
    }
    mask
}

fn known_bit(uri: Option<&str>) -> u8 {
    match uri {
        Some(u) => KNOWN
            .iter()
            .position(|(k, _)| *k == u)
            .map_or(0, |i| 1 << i),
        None => 0,
    }
}

/// Writes a person id derived from the entity (`p` + 8 hex digits of its FNV-1a hash), unique
/// among the written tuple ids.
fn write_generated_id(entity: &str, tuples: &[&Tuple], out: &mut Vec<u8>) {
    let mut h: u32 = 0x811c_9dc5;
    for &b in entity.as_bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    loop {
        let mut id = [b'p', 0, 0, 0, 0, 0, 0, 0, 0];
        for (i, d) in id[1..].iter_mut().enumerate() {
            *d = b"0123456789abcdef"[((h >> (28 - 4 * i)) & 0xf) as usize];
        }
        // Hex digits and 'p' only: valid UTF-8.
        let s = std::str::from_utf8(&id).unwrap_or("p");
        if !tuples.iter().any(|t| t.id == s) {
            out.extend_from_slice(&id);
            return;
        }
        h = h.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn tuple(id: &str, basic: &str) -> Tuple {
        let body = format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple id="{id}"><status><basic>{basic}</basic></status></tuple></presence>"#
        );
        parse(body.as_bytes()).unwrap().tuples.remove(0)
    }

    fn out(entity: &str, docs: &[&Document]) -> String {
        let mut o = Vec::new();
        compose(entity, docs, &mut o);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn note_only_exact() {
        let mut o = Vec::new();
        note_only("sip:a&b@c", &mut o);
        assert_eq!(
            o,
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:a&amp;b@c\"><note xml:lang=\"en\">No presence information available yet</note></presence>"
        );
        assert_eq!(out("sip:a&b@c", &[]), String::from_utf8(o).unwrap());
        let d = parse(out("sip:x", &[]).as_bytes()).unwrap();
        assert_eq!(d.notes[0].text(), "No presence information available yet");
        assert!(d.tuples.is_empty() && d.person.is_none());
    }

    #[test]
    fn exact_output() {
        let doc = Document {
            entity: "sip:a@b".into(),
            tuples: vec![tuple("t1", "open")],
            notes: vec![],
            person: Some(super::super::Person {
                id: "p1".into(),
                activities: vec![Element {
                    ns: Some(ns::RPID.into()),
                    name: "away".into(),
                    attrs: vec![],
                    children: vec![],
                }],
                other: vec![],
                timestamp: Some("2026-01-01T00:00:00Z".into()),
            }),
        };
        assert_eq!(
            out("sip:a@b", &[&doc]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:a@b\"><tuple id=\"t1\"><status><basic>open</basic></status></tuple><dm:person id=\"p1\"><rpid:activities><rpid:away/></rpid:activities><dm:timestamp>2026-01-01T00:00:00Z</dm:timestamp></dm:person></presence>"
        );
    }

    #[test]
    fn generated_person_id() {
        let mut doc = Document {
            entity: "e".into(),
            tuples: vec![tuple("t1", "open")],
            notes: vec![],
            person: Some(super::super::Person {
                id: String::new(),
                activities: vec![],
                other: vec![],
                timestamp: None,
            }),
        };
        let a = out("sip:a@b", &[&doc]);
        let id = parse(a.as_bytes()).unwrap().person.unwrap().id;
        assert!(is_ncname(&id) && id.len() == 9, "{id}");
        // Colliding with a tuple id: another one.
        doc.person.as_mut().unwrap().id = "t1".into();
        let id2 = parse(out("sip:a@b", &[&doc]).as_bytes())
            .unwrap()
            .person
            .unwrap()
            .id;
        assert_eq!(id2, id);
        doc.tuples[0].id = id.clone();
        doc.person.as_mut().unwrap().id = "1bad".into();
        let id3 = parse(out("sip:a@b", &[&doc]).as_bytes())
            .unwrap()
            .person
            .unwrap()
            .id;
        assert!(is_ncname(&id3) && id3 != id);
    }

    #[test]
    fn optional_prefixes_declared_only_when_used() {
        let body = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:pidfonline="http://www.linphone.org/xsds/pidfonline.xsd" entity="e"><tuple id="t"><status><basic>open</basic><pidfonline:online/></status></tuple></presence>"#;
        let d = parse(body).unwrap();
        let o = out("e", &[&d]);
        assert!(o.contains(" xmlns:pidfonline=\"http://www.linphone.org/xsds/pidfonline.xsd\""));
        assert!(o.contains("<pidfonline:online/>"));
        assert!(!o.contains("xmlns:op") && !o.contains("xmlns:c="));
    }
}
