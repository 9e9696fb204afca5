//! Every message of the real-client captures in `shared/traces/*.txt` frames, parses, and its key
//! headers decode. See `shared/traces/README.md` for the file format.

use bytes::Bytes;
use presence_proto::sip::header::parse_u32;
use presence_proto::sip::{
    CSeq, ContentType, Event, Framer, HeaderName, Message, Method, NameAddr, StartLine,
    SubscriptionState, Via, token_list,
};
use presence_tests::normalized;
use presence_tests::traces::{Captured, capture_files, read_capture};

const MAX_MESSAGE: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// All capture files (sorted) with their messages.
fn load_all() -> Vec<(String, Vec<Captured>)> {
    capture_files()
        .iter()
        .map(|f| {
            let messages = read_capture(f);
            assert!(!messages.is_empty(), "{}: no message", f.display());
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                messages,
            )
        })
        .collect()
}

fn header<'a>(m: &'a Message, name: &HeaderName, what: &str) -> &'a Bytes {
    m.header(name)
        .unwrap_or_else(|| panic!("{what}: no {} header", name.as_str()))
}

fn check_name_addr_round_trip(n: &NameAddr, what: &str) {
    let mut out = Vec::new();
    n.write_to(&mut out);
    assert_eq!(
        NameAddr::parse(&out).as_ref(),
        Some(n),
        "{what}: {}",
        String::from_utf8_lossy(&out)
    );
}

/// Frames, parses and decodes one captured message.
fn check_message(c: &Captured) {
    let what = c.name.as_str();

    // Framing: exactly one message, all bytes used (so Content-Length is right).
    let mut framer = Framer::new(MAX_MESSAGE);
    framer.push(&c.wire);
    let framed = framer
        .next_message()
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let framed = framed.unwrap_or_else(|| panic!("{what}: incomplete"));
    assert_eq!(framed.as_ref(), c.wire.as_slice(), "{what}: framed bytes");
    assert_eq!(framer.next_message(), Ok(None), "{what}");
    assert_eq!(framer.buffered(), 0, "{what}");

    // Parsing.
    let m = Message::parse(framed, MAX_HEADERS).unwrap_or_else(|e| panic!("{what}: {}", e.reason));
    let first_line = c.wire.split(|&b| b == b'\r').next().unwrap();
    assert_eq!(
        String::from_utf8_lossy(first_line),
        c.start_line,
        "{what}: start line"
    );
    let cl = parse_u32(header(&m, &HeaderName::ContentLength, what)).expect("Content-Length");
    assert_eq!(cl as usize, m.body.len(), "{what}: body length");

    match &m.start {
        StartLine::Request { method, .. } => {
            let uri = m
                .request_uri()
                .unwrap_or_else(|| panic!("{what}: Request-URI"));
            assert!(!uri.host.is_empty());
            assert!(
                !matches!(method, Method::Other(_)),
                "{what}: unexpected method {method:?}"
            );
        }
        StartLine::Response { code, .. } => assert!((100..700).contains(code)),
    }

    // Via: every value decodes; the top one has an RFC 3261 branch.
    let via_name = HeaderName::Via;
    let vias: Vec<Via> = m
        .headers_named(&via_name)
        .flat_map(|v| Via::parse_list(v).unwrap_or_else(|| panic!("{what}: Via {v:?}")))
        .collect();
    assert!(!vias.is_empty(), "{what}: no Via");
    assert!(
        vias[0].branch().is_some_and(|b| b.starts_with("z9hG4bK")),
        "{what}: branch"
    );
    for v in &vias {
        let mut out = Vec::new();
        v.write_to(&mut out);
        assert_eq!(Via::parse_list(&out), Some(vec![v.clone()]), "{what}");
    }

    // From / To.
    let from = NameAddr::parse(header(&m, &HeaderName::From, what))
        .unwrap_or_else(|| panic!("{what}: From"));
    assert!(
        from.tag().is_some_and(|t| !t.is_empty()),
        "{what}: From tag"
    );
    check_name_addr_round_trip(&from, what);
    let to =
        NameAddr::parse(header(&m, &HeaderName::To, what)).unwrap_or_else(|| panic!("{what}: To"));
    if m.status().is_some_and(|s| s > 100) {
        assert!(to.tag().is_some(), "{what}: To tag in a response");
    }
    check_name_addr_round_trip(&to, what);

    // Call-ID, CSeq.
    assert!(
        !header(&m, &HeaderName::CallId, what).is_empty(),
        "{what}: Call-ID"
    );
    let cseq =
        CSeq::parse(header(&m, &HeaderName::CSeq, what)).unwrap_or_else(|| panic!("{what}: CSeq"));
    if let Some(method) = m.method() {
        assert_eq!(&cseq.method, method, "{what}: CSeq method");
    }

    // Contact, Route, Record-Route when present.
    for name in [
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
    ] {
        for v in m.headers_named(&name) {
            let list = NameAddr::parse_list(v)
                .unwrap_or_else(|| panic!("{what}: {} {:?}", name.as_str(), v));
            for n in &list {
                check_name_addr_round_trip(n, what);
            }
        }
    }

    // Event for SUBSCRIBE / PUBLISH / NOTIFY; Subscription-State for NOTIFY.
    if matches!(
        m.method(),
        Some(Method::Subscribe | Method::Publish | Method::Notify)
    ) {
        let event = Event::parse(header(&m, &HeaderName::Event, what))
            .unwrap_or_else(|| panic!("{what}: Event"));
        assert!(event.is("presence"), "{what}: Event {}", event.package);
    }
    if m.method() == Some(&Method::Notify) {
        let state = SubscriptionState::parse(header(&m, &HeaderName::SubscriptionState, what))
            .unwrap_or_else(|| panic!("{what}: Subscription-State"));
        assert!(
            ["active", "pending", "terminated"]
                .iter()
                .any(|s| state.is(s)),
            "{what}"
        );
    }

    // Other typed headers when present.
    if let Some(v) = m.header(&HeaderName::ContentType) {
        let ct = ContentType::parse(v).unwrap_or_else(|| panic!("{what}: Content-Type {v:?}"));
        assert!(!ct.subtype.is_empty());
    }
    for name in [
        HeaderName::Expires,
        HeaderName::MaxForwards,
        HeaderName::MinExpires,
    ] {
        if let Some(v) = m.header(&name) {
            assert!(parse_u32(v).is_some(), "{what}: {} {v:?}", name.as_str());
        }
    }
    for name in [
        HeaderName::Supported,
        HeaderName::Require,
        HeaderName::Allow,
        HeaderName::Accept,
    ] {
        for v in m.headers_named(&name) {
            assert!(token_list(v).count() > 0, "{what}: {} {v:?}", name.as_str());
        }
    }

    // Compressed bodies: deflate, zlib-wrapped (RFC 1950 header).
    if c.bin.is_some() {
        let enc = header(&m, &HeaderName::ContentEncoding, what);
        assert!(
            token_list(enc).any(|t| t.eq_ignore_ascii_case(b"deflate")),
            "{what}"
        );
        assert_eq!(m.body.first(), Some(&0x78), "{what}: zlib header");
    }

    // Serialization round trip.
    let again = Message::parse(Bytes::from(m.to_bytes()), MAX_HEADERS).expect("re-parse");
    assert_eq!(again, normalized(&m), "{what}: round trip");
}

#[test]
fn every_captured_message_frames_parses_and_decodes() {
    let all = load_all();
    let mut count = 0;
    let mut binary = 0;
    for (_, messages) in &all {
        for c in messages {
            check_message(c);
            count += 1;
            binary += usize::from(c.bin.is_some());
        }
    }
    // The README lists nine flows; two of them carry a compressed body.
    assert!(all.len() >= 9, "only {} capture files", all.len());
    assert!(count >= 200, "only {count} messages");
    assert!(binary >= 2, "only {binary} compressed bodies");
}

#[test]
fn captured_streams_frame_under_any_chunking() {
    for (file, messages) in load_all() {
        let stream: Vec<u8> = messages
            .iter()
            .flat_map(|c| [b"\r\n\r\n".as_slice(), c.wire.as_slice()])
            .flatten()
            .copied()
            .collect();
        for chunk in [1, 2, 3, 7, 64, 511, 1500, stream.len()] {
            let mut framer = Framer::new(MAX_MESSAGE);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                framer.push(piece);
                while let Some(m) = framer
                    .next_message()
                    .unwrap_or_else(|e| panic!("{file}: {e:?}"))
                {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), messages.len(), "{file}: chunk {chunk}");
            for (g, c) in got.iter().zip(&messages) {
                assert_eq!(g.as_ref(), c.wire.as_slice(), "{}: chunk {chunk}", c.name);
            }
            assert_eq!(framer.buffered(), 0);
        }
    }
}
