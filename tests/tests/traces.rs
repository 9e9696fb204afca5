//! Every message of the real-client captures in `shared/traces/*.txt` frames, parses, and its key
//! headers decode. See `shared/traces/README.md` for the file format.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use presence_proto::sip::header::parse_u32;
use presence_proto::sip::{
    CSeq, ContentType, Event, Framer, Header, HeaderName, Message, Method, NameAddr, StartLine,
    SubscriptionState, Via, token_list,
};

const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces");
const MAX_MESSAGE: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// One captured message.
struct Captured {
    /// `file.txt#n`, for messages.
    name: String,
    /// The start line given in the `#####` marker.
    marker_start_line: String,
    /// The exact wire bytes (a compressed body is taken from `bin/`).
    wire: Vec<u8>,
    /// The raw body came from `bin/` (Content-Encoding: deflate).
    binary_body: bool,
}

fn traces_dir() -> PathBuf {
    let dir = Path::new(TRACES);
    assert!(
        dir.is_dir(),
        "trace directory {} is missing: the captures under shared/traces/ are required by this test",
        dir.display()
    );
    dir.to_path_buf()
}

/// Splits `data` into lines, each with its line end.
fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split_inclusive(|&b| b == b'\n').collect()
}

/// Reads every message of one capture file.
fn read_capture(dir: &Path, file: &Path) -> Vec<Captured> {
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
    let lines = lines(&data);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line_is_message_marker(line) {
            // Comments before the first message.
            assert!(
                !line.starts_with(b"#####"),
                "{file_name}: unexpected marker {}",
                String::from_utf8_lossy(line)
            );
            i += 1;
            continue;
        }
        let marker = String::from_utf8_lossy(line).trim_end().to_string();
        let n: String = marker[6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let marker_start_line = marker
            .split_once(" | ")
            .map(|(_, s)| s.to_string())
            .unwrap_or_else(|| panic!("{file_name}: no start line in marker {marker}"));
        i += 1;
        let mut text = Vec::new();
        while i < lines.len() && !lines[i].starts_with(b"#####") {
            text.extend_from_slice(lines[i]);
            i += 1;
        }
        let name = format!("{file_name}#{n}");
        let mut binary_body = false;
        if i < lines.len() && lines[i].starts_with(b"##### [") {
            // A compressed body replaced by notes: the head ends with its blank line and the raw
            // body is in bin/.
            assert!(
                text.ends_with(b"\r\n\r\n"),
                "{name}: head before the body notes"
            );
            let mut bin_file = None;
            let mut declared_len = None;
            while i < lines.len() && !(line_is_message_marker(lines[i])) {
                let note = String::from_utf8_lossy(lines[i]);
                if let Some(rest) = note.strip_prefix("##### [raw body bytes saved as ") {
                    bin_file = Some(rest.trim_end().trim_end_matches(']').to_string());
                }
                if let Some(rest) = note.strip_prefix("##### [binary body, ") {
                    declared_len = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok());
                }
                i += 1;
            }
            let bin_file =
                bin_file.unwrap_or_else(|| panic!("{name}: no `raw body bytes saved as` note"));
            let body = std::fs::read(dir.join("bin").join(&bin_file))
                .unwrap_or_else(|e| panic!("{name}: bin/{bin_file}: {e}"));
            assert_eq!(
                Some(body.len()),
                declared_len,
                "{name}: size of bin/{bin_file}"
            );
            text.extend_from_slice(&body);
            binary_body = true;
        } else {
            // The exact wire bytes, then one LF separating them from the next marker.
            assert_eq!(text.pop(), Some(b'\n'), "{name}: separator line");
        }
        out.push(Captured {
            name,
            marker_start_line,
            wire: text,
            binary_body,
        });
    }
    out
}

fn line_is_message_marker(line: &[u8]) -> bool {
    line.starts_with(b"##### ") && line.get(6).is_some_and(u8::is_ascii_digit)
}

/// All capture files (sorted) with their messages.
fn load_all() -> Vec<(String, Vec<Captured>)> {
    let dir = traces_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.txt capture in {}", dir.display());
    files
        .iter()
        .map(|f| {
            let messages = read_capture(&dir, f);
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

/// What parsing the serialized message gives back (`write_to` moves Content-Length last).
fn normalized(m: &Message) -> Message {
    let mut n = m.clone();
    n.headers.retain(|h| h.name != HeaderName::ContentLength);
    n.headers.push(Header {
        name: HeaderName::ContentLength,
        value: Bytes::from(m.body.len().to_string()),
    });
    n
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
        c.marker_start_line,
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
    if c.binary_body {
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
            binary += usize::from(c.binary_body);
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
