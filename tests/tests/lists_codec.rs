//! The list codecs (`encoding`, `resource_lists`, `rlmi`, `multipart`): round-trip properties,
//! and the real bodies of the Linphone captures in `shared/traces/` (the deflated resource lists
//! of the list SUBSCRIBEs, and the multipart/related RLMI NOTIFYs that liblinphone accepted).

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;
use presence_proto::encoding::{self, InflateError};
use presence_proto::multipart::{self, Part};
use presence_proto::pidf;
use presence_proto::resource_lists::{self, Entry};
use presence_proto::rlmi::{self, Instance, List, Resource};
use presence_proto::sip::{ContentType, HeaderName, Message};
use presence_tests::traces::{capture_files, read, read_capture, traces_dir};
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Captures.

/// The messages of a capture whose body is on the wire as is (see shared/traces/README.md):
/// (`file#n`, exact bytes). Messages with a compressed body (replaced by notes) are left out.
fn plain_messages(file: &Path) -> Vec<(String, Vec<u8>)> {
    read_capture(file)
        .into_iter()
        .filter(|c| c.bin.is_none())
        .map(|c| (c.name, c.wire))
        .collect()
}

/// The text between `##### [decompressed body, N bytes]` and `##### [end of body]` in a capture,
/// checked against N.
fn decompressed_note(file: &Path) -> Vec<u8> {
    let data = read(file);
    let text = String::from_utf8_lossy(&data);
    let (_, rest) = text
        .split_once("##### [decompressed body, ")
        .unwrap_or_else(|| panic!("{}: no decompressed body note", file.display()));
    let (len, rest) = rest.split_once(" bytes]\n").expect("note format");
    let (body, _) = rest
        .split_once("##### [end of body]")
        .expect("end of body note");
    let len: usize = len.parse().expect("note length");
    let body = body.as_bytes();
    // The note is followed by a line end that is not part of the body when the body has none.
    let body = if body.len() == len + 1 {
        &body[..len]
    } else {
        body
    };
    assert_eq!(
        body.len(),
        len,
        "{}: decompressed body length",
        file.display()
    );
    body.to_vec()
}

fn uris(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.uri.as_str()).collect()
}

#[test]
fn linphone_deflated_list_subscribe_body() {
    let dir = traces_dir();
    let raw = read(&dir.join("bin/linphone-subscribe-rls-list-msg15.bin"));
    assert_eq!(raw.len(), 211);
    assert!(encoding::is_zlib_header(&raw));
    let body = encoding::inflate(&raw, 64 << 10).expect("the captured body inflates");
    assert_eq!(
        body,
        decompressed_note(&dir.join("linphone-subscribe-rls-list.txt"))
    );
    assert_eq!(encoding::inflate(&raw, body.len()).as_ref(), Ok(&body));
    assert_eq!(
        encoding::inflate(&raw, body.len() - 1),
        Err(InflateError::TooLarge)
    );
    let entries = resource_lists::parse(&body, 100).expect("the captured list parses");
    assert_eq!(
        uris(&entries),
        [
            "sip:+33612345678@127.0.0.1;user=phone",
            "sip:alice@127.0.0.1",
            "sip:dave@127.0.0.1"
        ]
    );
    assert!(entries.iter().all(|e| e.name.is_none()));
    assert_eq!(
        resource_lists::parse(&body, 2),
        Err(resource_lists::ResourceListsError::TooManyEntries { max: 2 })
    );
    // What we would write for it reads back the same.
    let mut out = Vec::new();
    resource_lists::write(&entries, &mut out);
    assert_eq!(resource_lists::parse(&out, 100), Ok(entries));
}

#[test]
fn linphonec_deflated_list_subscribe_body() {
    let dir = traces_dir();
    let raw = read(&dir.join("bin/linphonec-subscribe-rls-list-msg9.bin"));
    let body = encoding::inflate(&raw, 64 << 10).expect("the captured body inflates");
    assert_eq!(
        body,
        decompressed_note(&dir.join("linphonec-subscribe-rls-list.txt"))
    );
    let entries = resource_lists::parse(&body, 100).expect("the captured list parses");
    assert_eq!(
        uris(&entries),
        ["sip:alice@127.0.0.1", "sip:carol@127.0.0.1"]
    );
}

#[test]
fn linphone_uncompressed_list_subscribe_body() {
    let dir = traces_dir();
    let messages = plain_messages(&dir.join("linphone-subscribe-rls-list-small.txt"));
    let (name, wire) = messages
        .iter()
        .find(|(_, m)| m.starts_with(b"SUBSCRIBE") && m.windows(14).any(|w| w == b"resource-lists"))
        .expect("a list SUBSCRIBE with a body");
    let m = Message::parse(Bytes::copy_from_slice(wire), 64)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    assert!(m.header(&HeaderName::ContentEncoding).is_none(), "{name}");
    let entries = resource_lists::parse(&m.body, 100).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    assert_eq!(uris(&entries), ["sip:alice@127.0.0.1"], "{name}");
}

/// The boundary parameter of a Content-Type (quotes removed).
fn boundary(content_type: &[u8]) -> String {
    let ct = ContentType::parse(content_type).expect("Content-Type parses");
    assert!(ct.is("multipart/related"));
    let b = ct
        .params
        .get("boundary")
        .flatten()
        .expect("a boundary parameter");
    b.trim_matches('"').to_owned()
}

#[test]
fn captured_multipart_notifies() {
    let files = capture_files();
    let mut notifies = 0;
    let mut instances = 0;
    for file in &files {
        for (name, wire) in plain_messages(file) {
            if !wire.starts_with(b"NOTIFY ") {
                continue;
            }
            let m =
                Message::parse(Bytes::from(wire), 64).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let Some(ct) = m.header(&HeaderName::ContentType) else {
                continue;
            };
            if !ct.to_ascii_lowercase().starts_with(b"multipart/related") {
                continue;
            }
            notifies += 1;
            let boundary = boundary(ct);
            let parts =
                multipart::parse(&m.body, &boundary, 100).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!parts.is_empty(), "{name}");
            let first = &parts[0];
            assert!(
                first
                    .header("Content-Type")
                    .unwrap_or_default()
                    .starts_with("application/rlmi+xml"),
                "{name}"
            );
            assert_eq!(
                first.header("Content-Transfer-Encoding"),
                Some("binary"),
                "{name}"
            );
            let list = rlmi::parse(&first.body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(list.uri.starts_with("sip:"), "{name}");
            // Every instance's cid names one PIDF part, byte for byte (no angle brackets), and
            // every PIDF part is named by one instance.
            let cids: Vec<&str> = list
                .resources
                .iter()
                .flat_map(|r| &r.instances)
                .filter_map(|i| i.cid.as_deref())
                .collect();
            assert_eq!(cids.len(), parts.len() - 1, "{name}");
            for p in &parts[1..] {
                let id = p
                    .header("Content-ID")
                    .unwrap_or_else(|| panic!("{name}: part without Content-ID"));
                assert!(cids.contains(&id), "{name}: {id}");
                assert!(
                    p.header("Content-Type")
                        .unwrap_or_default()
                        .starts_with("application/pidf+xml")
                );
                pidf::parse(&p.body).unwrap_or_else(|e| panic!("{name}: {id}: {e}"));
                instances += 1;
            }
            // Our writers reproduce the same parts and RLMI document.
            let mut out = Vec::new();
            multipart::write(&mut out, &boundary, &parts);
            assert_eq!(
                multipart::parse(&out, &boundary, 100).as_ref(),
                Ok(&parts),
                "{name}"
            );
            out.clear();
            rlmi::write(&list, &mut out);
            assert_eq!(rlmi::parse(&out).as_ref(), Ok(&list), "{name}");
        }
    }
    assert!(
        notifies >= 10,
        "only {notifies} multipart NOTIFYs in the captures"
    );
    assert!(
        instances >= 5,
        "only {instances} PIDF parts in the captures"
    );
}

#[test]
fn our_notify_layout_reads_back() {
    // The layout the server writes: RLMI part, then PIDF parts named by bare cids.
    let list = List {
        uri: "sip:rls@example.org".into(),
        version: 3,
        full_state: false,
        resources: vec![Resource {
            uri: "sip:+33612345678@example.org;user=phone".into(),
            name: Some("Zoë".into()),
            instances: vec![Instance {
                id: "1".into(),
                state: "active".into(),
                reason: None,
                cid: Some("abcdefg@example.org".into()),
            }],
        }],
    };
    let pidf_doc = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:+33612345678@example.org;user=phone\"/>";
    let boundary = "----------0123456789abcdef";
    let mut body = Vec::new();
    multipart::write_part_head(
        &mut body,
        boundary,
        "rlmi1@example.org",
        "application/rlmi+xml;charset=\"UTF-8\"",
    );
    rlmi::write(&list, &mut body);
    multipart::write_part_end(&mut body);
    multipart::write_part_head(
        &mut body,
        boundary,
        "abcdefg@example.org",
        "application/pidf+xml;charset=\"UTF-8\"",
    );
    body.extend_from_slice(pidf_doc);
    multipart::write_part_end(&mut body);
    multipart::write_close(&mut body, boundary);
    let compressed = encoding::deflate_if_smaller(&body).expect("worth compressing");
    let inflated = encoding::inflate(&compressed, body.len()).expect("inflates");
    let parts = multipart::parse(&inflated, boundary, 10).expect("parses");
    assert_eq!(parts.len(), 2);
    assert_eq!(rlmi::parse(&parts[0].body), Ok(list));
    assert_eq!(parts[1].header("content-id"), Some("abcdefg@example.org"));
    assert_eq!(parts[1].body, Bytes::from_static(pidf_doc));
    pidf::parse(&parts[1].body).expect("PIDF part parses");
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// Any characters XML allows, the markup ones and white space included.
fn xml_text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[\\PC\t\n\r&<>\"']{{0,{max}}}")).expect("regex")
}

fn trim_xml(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// SIP-like URIs with the characters clients really use (`+`, `;user=phone`) and those that
/// need escaping, or any XML text; never blank, no leading or trailing white space.
fn list_uri() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (
            "[a-zA-Z0-9+&<>\"'.éü日本-]{1,12}",
            "[a-z0-9.]{1,10}",
            prop::sample::select(vec!["", ";user=phone", ";transport=tcp", "?h=a&b=<c>", ";x=\"q\""]),
        )
            .prop_map(|(u, h, p)| format!("sip:{u}@{h}{p}")),
        1 => xml_text(24).prop_map(|s| trim_xml(&s).to_owned()),
    ]
    .prop_filter("not blank", |s| !s.is_empty())
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    vec(
        (list_uri(), proptest::option::of(xml_text(20))).prop_map(|(uri, name)| Entry {
            uri,
            name: name
                .map(|n| trim_xml(&n).to_owned())
                .filter(|n| !n.is_empty()),
        }),
        0..20,
    )
    .prop_map(|mut v| {
        let mut seen = HashSet::new();
        v.retain(|e| seen.insert(e.uri.clone()));
        v
    })
}

fn rlmi_list() -> impl Strategy<Value = List> {
    let instance = (
        xml_text(10),
        prop::sample::select(vec!["active", "pending", "terminated"]).prop_map(str::to_owned),
        proptest::option::of(xml_text(10)),
        proptest::option::of(xml_text(20)),
    )
        .prop_map(|(id, state, reason, cid)| Instance {
            id,
            state,
            reason,
            cid,
        });
    let resource = (
        list_uri(),
        proptest::option::of(xml_text(20)),
        vec(instance, 0..3),
    )
        .prop_map(|(uri, name, instances)| Resource {
            uri,
            name,
            instances,
        });
    (
        xml_text(30),
        any::<u32>(),
        any::<bool>(),
        vec(resource, 0..12),
    )
        .prop_map(|(uri, version, full_state, resources)| List {
            uri,
            version,
            full_state,
            resources,
        })
}

/// RFC 2046 boundaries: 1 to 70 `bchars`, not ending with a space.
fn boundary_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9A-Za-z'()+_,./:=?-]([0-9A-Za-z'()+_,./:=? -]{0,68}[0-9A-Za-z'()+_,./:=?-])?",
        "[ab-]{1,3}",
    ]
}

/// Breaks every occurrence of `--boundary` (each replacement removes a `-`, so this ends).
fn without_delimiter(mut body: Vec<u8>, boundary: &str) -> Vec<u8> {
    let mut dash = b"--".to_vec();
    dash.extend_from_slice(boundary.as_bytes());
    while let Some(i) = body.windows(dash.len()).position(|w| w == dash.as_slice()) {
        body[i] = b'X';
    }
    body
}

/// Bodies made of random bytes and of the pieces delimiters are made of.
fn body_bytes(boundary: String) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        vec(any::<u8>(), 0..40),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"--".to_vec()),
        Just(b" \t".to_vec()),
        Just(boundary.clone().into_bytes()),
    ];
    vec(piece, 0..12).prop_map(move |pieces| without_delimiter(pieces.concat(), &boundary))
}

fn header_value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[\\PC]{0,30}")
        .expect("regex")
        .prop_map(|s| s.trim_matches([' ', '\t']).to_owned())
}

fn parts(boundary: String) -> impl Strategy<Value = Vec<Part>> {
    let header = ("[A-Za-z][!-9;-~]{0,19}", header_value());
    vec(
        (vec(header, 0..5), body_bytes(boundary)).prop_map(|(headers, body)| Part {
            headers,
            body: Bytes::from(body),
        }),
        1..8,
    )
}

proptest! {
    #[test]
    fn resource_lists_round_trip(entries in entries()) {
        let mut out = Vec::new();
        resource_lists::write(&entries, &mut out);
        prop_assert_eq!(resource_lists::parse(&out, 1000), Ok(entries.clone()));
        if !entries.is_empty() {
            prop_assert_eq!(
                resource_lists::parse(&out, entries.len() - 1),
                Err(resource_lists::ResourceListsError::TooManyEntries { max: entries.len() - 1 })
            );
        }
    }

    #[test]
    fn rlmi_round_trip(list in rlmi_list()) {
        let mut out = Vec::new();
        rlmi::write(&list, &mut out);
        prop_assert_eq!(rlmi::parse(&out), Ok(list));
    }

    #[test]
    fn multipart_round_trip((boundary, parts) in boundary_strategy().prop_flat_map(|b| (Just(b.clone()), parts(b)))) {
        let mut out = Vec::new();
        multipart::write(&mut out, &boundary, &parts);
        prop_assert_eq!(multipart::parse(&out, &boundary, 100), Ok(parts.clone()));
        // With a preamble and an epilogue.
        let mut framed = b"This is a preamble.\r\n".to_vec();
        framed.extend_from_slice(&out);
        framed.extend_from_slice(b"epilogue\r\n--");
        prop_assert_eq!(multipart::parse(&framed, &boundary, 100), Ok(parts.clone()));
        prop_assert!(multipart::parse(&out, &boundary, parts.len() - 1).is_err());
    }

    #[test]
    fn notify_multipart_round_trip(
        (boundary, items) in boundary_strategy().prop_flat_map(|b| {
            let item = ("[!-~]{1,30}", "[a-z]{1,10}/[a-z+.-]{1,20}(;charset=\"UTF-8\")?", body_bytes(b.clone()));
            (Just(b), vec(item, 1..6))
        })
    ) {
        let mut out = Vec::new();
        for (cid, ct, body) in &items {
            multipart::write_part_head(&mut out, &boundary, cid, ct);
            out.extend_from_slice(body);
            multipart::write_part_end(&mut out);
        }
        multipart::write_close(&mut out, &boundary);
        let parts = multipart::parse(&out, &boundary, 100).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parts.len(), items.len());
        for (p, (cid, ct, body)) in parts.iter().zip(&items) {
            prop_assert_eq!(
                &p.headers,
                &vec![
                    ("Content-Transfer-Encoding".to_owned(), "binary".to_owned()),
                    ("Content-Id".to_owned(), cid.clone()),
                    ("Content-Type".to_owned(), ct.clone()),
                ]
            );
            prop_assert_eq!(&p.body[..], &body[..]);
        }
    }

    #[test]
    fn deflate_inflate_identity(
        data in prop_oneof![
            vec(any::<u8>(), 0..4096),
            vec(prop::sample::select(b"<>/=\" abcdefsip:@".to_vec()), 0..8192),
        ]
    ) {
        let z = encoding::deflate(&data);
        prop_assert!(encoding::is_zlib_header(&z));
        prop_assert_eq!(encoding::inflate(&z, data.len()), Ok(data.clone()));
        if !data.is_empty() {
            prop_assert_eq!(encoding::inflate(&z, data.len() - 1), Err(InflateError::TooLarge));
        }
        let raw = miniz_raw(&data);
        prop_assert_eq!(encoding::inflate(&raw, data.len()), Ok(data.clone()));
        match encoding::deflate_if_smaller(&data) {
            Some(c) => {
                prop_assert!(data.len() >= 256 && c.len() + 27 <= data.len());
                prop_assert_eq!(encoding::inflate(&c, data.len()), Ok(data.clone()));
            }
            None => prop_assert!(data.len() < 256 || z.len() + 27 > data.len()),
        }
    }

    #[test]
    fn inflate_never_exceeds_the_cap(
        data in prop_oneof![
            vec(any::<u8>(), 0..512),
            (vec(any::<u8>(), 0..2048), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(d, i, x)| {
                // A corrupted stream.
                let mut z = encoding::deflate(&d);
                let at = i.index(z.len());
                z[at] ^= x.max(1);
                z
            }),
            (0usize..300_000).prop_map(|n| encoding::deflate(&vec![0u8; n])),
        ],
        max in 0usize..4096,
    ) {
        match encoding::inflate(&data, max) {
            Ok(out) => {
                prop_assert!(out.len() <= max);
                // The same stream with a larger cap gives the same body.
                prop_assert_eq!(encoding::inflate(&data, max * 2 + 1), Ok(out));
            }
            Err(InflateError::TooLarge) => {
                prop_assert!(!matches!(encoding::inflate(&data, max * 2 + 1), Ok(ref v) if v.len() <= max));
            }
            Err(InflateError::Corrupt) => {}
        }
    }
}

/// Raw deflate (RFC 1951), as a lenient peer might send; through the public zlib output: the
/// zlib stream minus its 2-byte header and 4-byte Adler-32 trailer.
fn miniz_raw(data: &[u8]) -> Vec<u8> {
    let z = encoding::deflate(data);
    z[2..z.len() - 4].to_vec()
}
