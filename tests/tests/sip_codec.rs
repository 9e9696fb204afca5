//! Property tests of the SIP codec: typed messages survive serialization and parsing, URIs and
//! typed headers round-trip, wire-form variations (compact names, case, whitespace, folding) parse
//! to the same headers, arbitrary chunking of a stream frames the same messages, and no input
//! makes any parser panic.

use std::net::Ipv6Addr;

use bytes::Bytes;
use presence_proto::sip::header::parse_u32;
use presence_proto::sip::{
    CSeq, ContentType, Event, Framer, Header, HeaderName, Message, Method, NameAddr, Params,
    StartLine, SubscriptionState, Uri, Via,
};
use presence_tests::normalized;
use proptest::collection::vec;
use proptest::prelude::*;

const MAX_HEADERS: usize = 64;
const MAX_MESSAGE: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Strategies

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,10}"
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Register),
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Cancel),
        Just(Method::Bye),
        Just(Method::Options),
        Just(Method::Subscribe),
        Just(Method::Notify),
        Just(Method::Publish),
        Just(Method::Message),
        Just(Method::Info),
        Just(Method::Update),
        Just(Method::Refer),
        Just(Method::Prack),
        // `from_token` maps a generated known name to its variant.
        token().prop_map(|t| Method::from_token(t.as_bytes()).unwrap()),
    ]
}

fn hostname() -> impl Strategy<Value = String> {
    (
        vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 0..3),
        "[a-zA-Z]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?",
    )
        .prop_map(|(labels, top)| {
            let mut h = labels.join(".");
            if !h.is_empty() {
                h.push('.');
            }
            h + &top
        })
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}"))
}

fn ipv6() -> impl Strategy<Value = String> {
    any::<[u16; 8]>().prop_map(|s| Ipv6Addr::from(s).to_string())
}

/// `host` as written in URIs and Via (IPv6 references in brackets).
fn host() -> impl Strategy<Value = String> {
    prop_oneof![hostname(), ipv4(), ipv6().prop_map(|a| format!("[{a}]"))]
}

fn uri() -> impl Strategy<Value = Uri> {
    let user = "([A-Za-z0-9_.!~*'()&=+$,;?/-]|%[0-9A-Fa-f]{2}){1,12}";
    let password = "([A-Za-z0-9_.!~*'()&=+$,-]|%[0-9A-F]{2}){0,8}";
    let pchars = "([A-Za-z0-9_.!~*'()\\[\\]/:&+$-]|%[0-9A-F]{2}){1,8}";
    let hname = "([A-Za-z0-9_.!~*'()\\[\\]/?:+$-]|%[0-9A-F]{2}){1,8}";
    let hvalue = "([A-Za-z0-9_.!~*'()\\[\\]/?:+$-]|%[0-9A-F]{2}){0,8}";
    let user = prop_oneof![3 => "[a-z][a-z0-9.+_-]{0,10}", 1 => "\\+[0-9]{6,12}", 2 => user];
    let password = prop_oneof![1 => "[a-z0-9]{1,8}", 1 => password];
    let param = prop_oneof![
        2 => prop_oneof![Just("transport"), Just("user"), Just("lr"), Just("maddr"), Just("ttl")]
            .prop_map(String::from),
        3 => pchars.prop_map(String::from),
    ];
    let pvalue = prop_oneof![2 => "[a-z0-9.]{1,8}", 1 => pchars];
    (
        any::<bool>(),
        proptest::option::of((user, proptest::option::of(password))),
        host(),
        proptest::option::of(any::<u16>()),
        vec((param, proptest::option::of(pvalue)), 0..4),
        prop_oneof![3 => Just(vec![]), 1 => vec((hname, hvalue), 0..3)],
    )
        .prop_map(|(sips, userinfo, host, port, params, headers)| {
            let (user, password) = match userinfo {
                Some((u, p)) => (Some(u), p),
                None => (None, None),
            };
            Uri {
                sips,
                user,
                password,
                host,
                port,
                params,
                headers,
            }
        })
}

/// `gen-value`: token, host or quoted-string (quotes kept).
fn gen_value() -> impl Strategy<Value = String> {
    prop_oneof![
        token(),
        host(),
        ipv6(),
        "\"([\t !#-\\[\\]-~\u{e0}-\u{ff}]|\\\\[ -~])*\"",
    ]
}

fn params(max: usize) -> impl Strategy<Value = Params> {
    vec((token(), proptest::option::of(gen_value())), 0..max).prop_map(Params)
}

fn display() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[^\r\n]{0,12}")
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (display(), uri(), params(3)).prop_map(|(display, uri, params)| NameAddr {
        display,
        uri,
        params,
    })
}

fn tagged_name_addr() -> impl Strategy<Value = NameAddr> {
    (name_addr(), token()).prop_map(|(mut n, tag)| {
        n.params.0.insert(0, ("tag".to_string(), Some(tag)));
        n
    })
}

fn via() -> impl Strategy<Value = Via> {
    let transport = prop_oneof![
        Just("UDP".to_string()),
        Just("TCP".to_string()),
        Just("TLS".to_string()),
        Just("WS".to_string()),
        token().prop_map(|t| t.to_ascii_uppercase()),
    ];
    let rport = proptest::option::of(proptest::option::of(any::<u16>()));
    let received = proptest::option::of(prop_oneof![ipv4(), ipv6()]);
    (
        transport,
        host(),
        proptest::option::of(any::<u16>()),
        token(),
        received,
        rport,
        params(2),
    )
        .prop_map(|(transport, host, port, branch, received, rport, extra)| {
            let mut p = vec![("branch".to_string(), Some(format!("z9hG4bK{branch}")))];
            if let Some(r) = received {
                p.push(("received".to_string(), Some(r)));
            }
            if let Some(r) = rport {
                p.push(("rport".to_string(), r.map(|n| n.to_string())));
            }
            p.extend(extra.0);
            Via {
                transport,
                host,
                port,
                params: Params(p),
            }
        })
}

fn event() -> impl Strategy<Value = Event> {
    (token(), params(3)).prop_map(|(package, params)| Event { package, params })
}

fn content_type() -> impl Strategy<Value = ContentType> {
    (
        "[a-z0-9][a-z0-9.+-]{0,8}",
        "[a-z0-9][a-z0-9.+-]{0,8}",
        params(2),
    )
        .prop_map(|(mtype, subtype, params)| ContentType {
            mtype,
            subtype,
            params,
        })
}

fn subscription_state() -> impl Strategy<Value = SubscriptionState> {
    (
        prop_oneof![
            Just("active"),
            Just("pending"),
            Just("terminated"),
            Just("Active")
        ],
        params(2),
    )
        .prop_map(|(s, params)| SubscriptionState {
            state: s.to_string(),
            params,
        })
}

fn trimmed_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("no line ends", |b| *b != b'\r' && *b != b'\n'),
        0..max,
    )
    .prop_map(|v| {
        let start = v
            .iter()
            .position(|b| *b != b' ' && *b != b'\t')
            .unwrap_or(v.len());
        let end = v
            .iter()
            .rposition(|b| *b != b' ' && *b != b'\t')
            .map_or(start, |p| p + 1);
        v[start..end].to_vec()
    })
}

/// A header with its typed value (when it has one).
#[derive(Debug, Clone)]
enum Typed {
    Via(Vec<Via>),
    From(NameAddr),
    To(NameAddr),
    CallId(String),
    CSeq(CSeq),
    Contact(Vec<NameAddr>),
    Route(Vec<NameAddr>),
    Event(Event),
    Expires(u32),
    ContentType(ContentType),
    SubscriptionState(SubscriptionState),
    /// Unknown header: name (never a known or compact one) and raw value.
    Unknown(String, Vec<u8>),
}

fn typed() -> impl Strategy<Value = Typed> {
    prop_oneof![
        vec(via(), 1..3).prop_map(Typed::Via),
        tagged_name_addr().prop_map(Typed::From),
        name_addr().prop_map(Typed::To),
        "[A-Za-z0-9.!%*_+`'~-]{1,16}(@[a-z0-9.]{1,10})?".prop_map(Typed::CallId),
        (any::<u32>(), method()).prop_map(|(seq, method)| Typed::CSeq(CSeq { seq, method })),
        vec(name_addr(), 1..3).prop_map(Typed::Contact),
        vec(name_addr(), 1..3).prop_map(Typed::Route),
        event().prop_map(Typed::Event),
        any::<u32>().prop_map(Typed::Expires),
        content_type().prop_map(Typed::ContentType),
        subscription_state().prop_map(Typed::SubscriptionState),
        ("X-[A-Za-z0-9.!%*_+`'~-]{1,10}", trimmed_bytes(40))
            .prop_map(|(n, v)| Typed::Unknown(n, v)),
    ]
}

fn join_name_addrs(list: &[NameAddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, n) in list.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        n.write_to(&mut out);
    }
    out
}

impl Typed {
    fn header(&self) -> Header {
        let mut v = Vec::new();
        let name = match self {
            Typed::Via(list) => {
                for (i, via) in list.iter().enumerate() {
                    if i > 0 {
                        v.push(b',');
                    }
                    via.write_to(&mut v);
                }
                HeaderName::Via
            }
            Typed::From(n) => {
                n.write_to(&mut v);
                HeaderName::From
            }
            Typed::To(n) => {
                n.write_to(&mut v);
                HeaderName::To
            }
            Typed::CallId(id) => {
                v.extend_from_slice(id.as_bytes());
                HeaderName::CallId
            }
            Typed::CSeq(c) => {
                c.write_to(&mut v);
                HeaderName::CSeq
            }
            Typed::Contact(list) => {
                v = join_name_addrs(list);
                HeaderName::Contact
            }
            Typed::Route(list) => {
                v = join_name_addrs(list);
                HeaderName::Route
            }
            Typed::Event(e) => {
                e.write_to(&mut v);
                HeaderName::Event
            }
            Typed::Expires(n) => {
                v.extend_from_slice(n.to_string().as_bytes());
                HeaderName::Expires
            }
            Typed::ContentType(c) => {
                c.write_to(&mut v);
                HeaderName::ContentType
            }
            Typed::SubscriptionState(s) => {
                s.write_to(&mut v);
                HeaderName::SubscriptionState
            }
            Typed::Unknown(n, value) => {
                v.clone_from(value);
                HeaderName::from_bytes(n.as_bytes())
            }
        };
        Header {
            name,
            value: Bytes::from(v),
        }
    }

    /// The typed parser decodes `value` back to this header's typed value.
    fn check(&self, value: &[u8]) -> Result<(), TestCaseError> {
        let text = String::from_utf8_lossy(value);
        match self {
            Typed::Via(list) => {
                prop_assert_eq!(Via::parse_list(value), Some(list.clone()), "{}", text)
            }
            Typed::From(n) | Typed::To(n) => {
                prop_assert_eq!(NameAddr::parse(value), Some(n.clone()), "{}", text);
            }
            Typed::CallId(id) => prop_assert_eq!(value, id.as_bytes()),
            Typed::CSeq(c) => prop_assert_eq!(CSeq::parse(value), Some(c.clone()), "{}", text),
            Typed::Contact(list) | Typed::Route(list) => {
                prop_assert_eq!(NameAddr::parse_list(value), Some(list.clone()), "{}", text);
            }
            Typed::Event(e) => prop_assert_eq!(Event::parse(value), Some(e.clone()), "{}", text),
            Typed::Expires(n) => prop_assert_eq!(parse_u32(value), Some(*n)),
            Typed::ContentType(c) => {
                prop_assert_eq!(ContentType::parse(value), Some(c.clone()), "{}", text);
            }
            Typed::SubscriptionState(s) => {
                prop_assert_eq!(SubscriptionState::parse(value), Some(s.clone()), "{}", text);
            }
            Typed::Unknown(_, v) => prop_assert_eq!(value, v.as_slice()),
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Case {
    message: Message,
    typed: Vec<Typed>,
}

fn start_line() -> impl Strategy<Value = StartLine> {
    prop_oneof![
        (method(), uri()).prop_map(|(method, uri)| StartLine::Request {
            method,
            uri: Bytes::from(uri.to_string()),
        }),
        (
            100u16..700,
            vec(
                any::<u8>().prop_filter("no line ends", |b| *b != b'\r' && *b != b'\n'),
                0..20
            )
        )
            .prop_map(|(code, reason)| StartLine::Response {
                code,
                reason: Bytes::from(reason)
            }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (start_line(), vec(typed(), 0..12), vec(any::<u8>(), 0..200)).prop_map(
        |(start, typed, body)| {
            let headers = typed.iter().map(Typed::header).collect();
            Case {
                message: Message {
                    start,
                    headers,
                    body: Bytes::from(body),
                },
                typed,
            }
        },
    )
}

fn parse(wire: &[u8]) -> Message {
    Message::parse(Bytes::copy_from_slice(wire), MAX_HEADERS)
        .unwrap_or_else(|e| panic!("{}: {}", e.reason, String::from_utf8_lossy(wire)))
}

/// Spellings of a header name that must parse to the same `HeaderName`.
fn spellings(name: &HeaderName) -> Vec<String> {
    let long = name.as_str().to_string();
    let mut v = vec![
        long.clone(),
        long.to_ascii_lowercase(),
        long.to_ascii_uppercase(),
    ];
    let compact = match name {
        HeaderName::CallId => Some("i"),
        HeaderName::Contact => Some("m"),
        HeaderName::ContentEncoding => Some("e"),
        HeaderName::ContentLength => Some("l"),
        HeaderName::ContentType => Some("c"),
        HeaderName::From => Some("f"),
        HeaderName::Subject => Some("s"),
        HeaderName::Supported => Some("k"),
        HeaderName::To => Some("t"),
        HeaderName::Via => Some("v"),
        HeaderName::Event => Some("o"),
        HeaderName::AllowEvents => Some("u"),
        _ => None,
    };
    if let Some(c) = compact {
        v.push(c.to_string());
        v.push(c.to_ascii_uppercase());
    }
    v
}

/// Writes `m` with varied but equivalent header syntax chosen by `seed`.
fn write_varied(m: &Message, seed: &[u8]) -> Vec<u8> {
    let mut pick = seed.iter().copied().cycle();
    let mut next = move || usize::from(pick.next().unwrap_or(0));
    let full = normalized(m).to_bytes();
    let head_end = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let start_end = full.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut out = full[..start_end].to_vec();
    for h in &normalized(m).headers {
        let names = spellings(&h.name);
        out.extend_from_slice(names[next() % names.len()].as_bytes());
        out.extend_from_slice([&b""[..], b" ", b"\t", b"  "][next() % 4]);
        out.push(b':');
        out.extend_from_slice([&b""[..], b" ", b"\t ", b"   "][next() % 4]);
        // Fold at single spaces between non-blank bytes, sometimes.
        let v = &h.value;
        for (i, &b) in v.iter().enumerate() {
            let foldable = b == b' '
                && i > 0
                && i + 1 < v.len()
                && !matches!(v[i - 1], b' ' | b'\t')
                && !matches!(v[i + 1], b' ' | b'\t');
            if foldable && next() % 3 == 0 {
                out.extend_from_slice([&b"\r\n "[..], b"\r\n\t", b"\r\n   "][next() % 3]);
            } else {
                out.push(b);
            }
        }
        out.extend_from_slice([&b""[..], b" ", b"\t"][next() % 3]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&full[head_end..]);
    out
}

// ---------------------------------------------------------------------------------------------
// Properties

/// 256 cases (CI has two cores) unless `PROPTEST_CASES` asks for more.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 256;
    }
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn message_round_trip(c in case()) {
        let wire = c.message.to_bytes();
        let parsed = parse(&wire);
        prop_assert_eq!(&parsed, &normalized(&c.message));
        // The typed values decode from the parsed header values.
        for (t, h) in c.typed.iter().zip(&parsed.headers) {
            t.check(&h.value)?;
        }
        // Writing again is stable.
        prop_assert_eq!(parsed.to_bytes(), wire);
        if let StartLine::Request { uri, .. } = &c.message.start {
            prop_assert_eq!(parsed.request_uri().map(|u| u.to_string().into_bytes()), Some(uri.to_vec()));
        }
    }

    #[test]
    fn wire_variations_parse_the_same(c in case(), seed in vec(any::<u8>(), 1..64)) {
        let wire = write_varied(&c.message, &seed);
        let parsed = parse(&wire);
        prop_assert_eq!(&parsed, &normalized(&c.message), "{}", String::from_utf8_lossy(&wire));
    }

    #[test]
    fn uri_round_trip(u in uri()) {
        let text = u.to_string();
        let back = Uri::parse(text.as_bytes());
        prop_assert_eq!(back.as_ref(), Some(&u), "{}", text);
        prop_assert!(u.rfc_eq(&u));
        prop_assert_eq!(back.map(|b| b.to_string()), Some(text));
    }

    #[test]
    fn typed_headers_round_trip(t in typed()) {
        let h = t.header();
        t.check(&h.value)?;
    }

    #[test]
    fn framer_reassembles_any_chunking(
        cases in vec(case(), 1..6),
        keepalives in vec(0usize..3, 6),
        chunks in vec(1usize..97, 1..40),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            stream.extend(std::iter::repeat_n(b"\r\n".as_slice(), keepalives[i]).flatten());
            let wire = c.message.to_bytes();
            stream.extend_from_slice(&wire);
            expected.push(wire);
        }
        let mut framer = Framer::new(MAX_MESSAGE);
        let mut got: Vec<Bytes> = Vec::new();
        let mut rest = stream.as_slice();
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            framer.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(m) = framer.next_message().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(framer.buffered(), 0);
        prop_assert_eq!(got.len(), expected.len());
        for ((g, e), c) in got.iter().zip(&expected).zip(&cases) {
            prop_assert_eq!(g.as_ref(), e.as_slice());
            prop_assert_eq!(parse(g), normalized(&c.message));
        }
    }

    #[test]
    fn no_panic_on_arbitrary_bytes(data in vec(any::<u8>(), 0..300), cut in any::<usize>()) {
        let _ = Message::parse(Bytes::from(data.clone()), 16);
        let _ = Uri::parse(&data);
        let _ = NameAddr::parse(&data);
        let _ = NameAddr::parse_list(&data);
        let _ = Via::parse_list(&data);
        let _ = CSeq::parse(&data);
        let _ = Event::parse(&data);
        let _ = ContentType::parse(&data);
        let _ = SubscriptionState::parse(&data);
        let _ = parse_u32(&data);
        let _ = presence_proto::sip::token_list(&data).count();
        let mut f = Framer::new(128);
        let cut = cut % (data.len() + 1);
        f.push(&data[..cut]);
        let _ = f.take_ping();
        while let Ok(Some(_)) = f.next_message() {}
        f.push(&data[cut..]);
        while let Ok(Some(_)) = f.next_message() {}
    }

    #[test]
    fn no_panic_on_mutated_messages(c in case(), edits in vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut wire = c.message.to_bytes();
        for (pos, b) in edits {
            let i = pos % wire.len();
            wire[i] = b;
        }
        if let Ok(m) = Message::parse(Bytes::from(wire.clone()), MAX_HEADERS) {
            let _ = m.request_uri();
            for h in &m.headers {
                let _ = NameAddr::parse_list(&h.value);
                let _ = Via::parse_list(&h.value);
                let _ = CSeq::parse(&h.value);
                let _ = Event::parse(&h.value);
                let _ = ContentType::parse(&h.value);
            }
        }
        let mut f = Framer::new(MAX_MESSAGE);
        f.push(&wire);
        while let Ok(Some(_)) = f.next_message() {}
    }
}
