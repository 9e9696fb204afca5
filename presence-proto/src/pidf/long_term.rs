//! The long-term presence document (Flexisip's "default element"): a user who exists in the
//! account database but publishes nothing appears open, with the `away` activity, and a
//! `<contact>` naming the account's SIP URI (also for a phone-number alias, which is how a client
//! maps a phone number to a SIP identity).

use super::tree::{escape_attr, escape_text};

/// Writes the long-term document for `entity`: one tuple `tuple_id` with `<basic>open</basic>`
/// and `<contact>`, one `dm:person` `person_id` with `<rpid:away/>` and, when known, the time of
/// the user's last activity as `dm:timestamp` (RFC 3339, UTC).
pub fn long_term(
    entity: &str,
    contact: &str,
    tuple_id: &str,
    person_id: &str,
    last_activity: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"");
    escape_attr(entity, out);
    out.extend_from_slice(b"\"><tuple id=\"");
    escape_attr(tuple_id, out);
    out.extend_from_slice(b"\"><status><basic>open</basic></status><contact>");
    escape_text(contact, out);
    out.extend_from_slice(b"</contact></tuple><dm:person id=\"");
    escape_attr(person_id, out);
    out.extend_from_slice(b"\"><rpid:activities><rpid:away/></rpid:activities>");
    if let Some(ts) = last_activity {
        out.extend_from_slice(b"<dm:timestamp>");
        escape_text(ts, out);
        out.extend_from_slice(b"</dm:timestamp>");
    }
    out.extend_from_slice(b"</dm:person></presence>");
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = String::with_capacity(20);
    let two = |s: &mut String, v: i64| {
        s.push(char::from(b'0' + (v / 10 % 10) as u8));
        s.push(char::from(b'0' + (v % 10) as u8));
    };
    let y = year.clamp(0, 9999);
    two(&mut s, y / 100);
    two(&mut s, y % 100);
    s.push('-');
    two(&mut s, month);
    s.push('-');
    two(&mut s, day);
    s.push('T');
    two(&mut s, rem / 3600);
    s.push(':');
    two(&mut s, rem / 60 % 60);
    s.push(':');
    two(&mut s, rem % 60);
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_the_parser() {
        for secs in [
            0i64,
            951_782_400,
            1_795_463_904,
            4_102_444_799,
            1_709_164_800,
        ] {
            let s = format_rfc3339(secs);
            assert_eq!(
                super::super::time::parse_rfc3339(&s),
                Some(secs * 1000),
                "{s}"
            );
        }
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn long_term_document_parses_as_pidf() {
        let mut out = Vec::new();
        long_term(
            "sip:+33612345678@example.org;user=phone",
            "sip:alice@example.org",
            "lt1",
            "p1",
            Some("2026-11-26T10:00:00Z"),
            &mut out,
        );
        let doc = crate::pidf::parse(&out).expect("parses");
        assert_eq!(doc.tuples.len(), 1);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("<basic>open</basic>")
                && text.contains("<contact>sip:alice@example.org</contact>")
        );
        let person = doc.person.expect("person");
        assert_eq!(person.activities.len(), 1);
        assert_eq!(person.activities[0].name, "away");
        assert_eq!(person.timestamp.as_deref(), Some("2026-11-26T10:00:00Z"));
    }
}
