//! RFC 4475, "SIP Torture Test Messages": the 49 messages of its section 3, as files in
//! `tests/vectors/rfc4475/` (see the README there for how they were rebuilt), run through our stack
//! at two levels:
//!
//! - the codec: [`Framer`] cuts the bytes as a TCP stream, [`Message::parse`] parses each message,
//!   and the typed parsers decode what the RFC says must (or must not) be understood;
//! - the whole server: the bytes arrive on one connection of a simulated [`Server`] as if a proxy
//!   sent them, and we check what goes back and whether the connection survives.
//!
//! [`CASES`] gives, for every message, the expected outcome at both levels and why (the RFC
//! section's expectation, and RFC 3261 where our presence server answers differently from the
//! general-purpose element RFC 4475 has in mind). The messages arrive over TCP, not UDP as most of
//! them "ostensibly" did: a framing error loses the stream, and the connection is closed after the
//! error response (RFC 4475 §3.1.2.3); bytes after a message are the next message (§3.1.1.8).

use std::time::Duration;

use bytes::Bytes;
use presence_proto::Config;
use presence_proto::sip::{
    CSeq, ContentType, FrameError, Framer, HeaderName, Message, Method, NameAddr, Salvaged,
    StartLine, Uri, Via, token_list,
};
use presence_tests::sim::{Sim, Ua, header};

/// What the codec makes of a message's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// Framed as `n` messages, each parsed by `Message::parse` (dblreq: 2, then 3 bytes of an
    /// incomplete third one).
    Parsed(usize),
    /// Framed, rejected by `Message::parse` with this reason.
    Rejected(&'static str),
    /// The framer cannot delimit it: this error, the head still handed over.
    Unframed(FrameError),
    /// The framer waits for more bytes (the declared body is not all there).
    Incomplete,
}

/// What the connection does after the server has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Open and in sync: a following SUBSCRIBE on it gets its 200 and NOTIFY.
    Open,
    /// Closed by the server at once (the stream cannot be resynchronised).
    Closed,
    /// Kept open while the rest of a message may still arrive, then closed by
    /// `partial-message-timeout`.
    PartialTimeout,
}

struct Case {
    /// The file name (without `.dat`), as in the RFC.
    name: &'static str,
    /// RFC 4475 section.
    section: &'static str,
    codec: Codec,
    /// Status of each response, in order; empty: nothing is sent back.
    statuses: &'static [u16],
    after: After,
    /// The RFC's expectation, and why we answer what we answer.
    why: &'static str,
}

const PARSED: Codec = Codec::Parsed(1);
const BAD_START: Codec = Codec::Rejected("malformed start line");

#[rustfmt::skip]
const CASES: &[Case] = &[
    // 3.1.1: valid messages. Parsers must accept them; every request is one we do not serve.
    Case { name: "wsinv", section: "3.1.1.1", codec: PARSED, statuses: &[405], after: After::Open,
        why: "well formed (folding, LWS, escaped quotes, compact forms, leading zeros): an INVITE, which a presence server recognizes but does not support: 405 with Allow (RFC 3261 §8.2.1)" },
    Case { name: "intmeth", section: "3.1.1.2", codec: PARSED, statuses: &[501], after: After::Open,
        why: "well formed; the method is unknown: endpoints answer 501 listing what they support in Allow (RFC 4475; RFC 3261 §21.5.2)" },
    Case { name: "esc01", section: "3.1.1.3", codec: PARSED, statuses: &[405], after: After::Open,
        why: "well formed, % escapes decoded where the grammar says `escaped` only: INVITE, 405" },
    Case { name: "escnull", section: "3.1.1.4", codec: PARSED, statuses: &[405], after: After::Open,
        why: "well formed, %00 in user parts must not shorten them: REGISTER, 405 (we are no registrar)" },
    Case { name: "esc02", section: "3.1.1.5", codec: PARSED, statuses: &[501], after: After::Open,
        why: "RE%47IST%45R is an unknown method, not REGISTER: an endpoint rejects it with 501 (RFC 4475)" },
    Case { name: "lwsdisp", section: "3.1.1.6", codec: PARSED, statuses: &[405], after: After::Open,
        why: "no LWS between display name and <: accepted as well formed (RFC 4475); OPTIONS gets what an INVITE would get, 405 (RFC 3261 §11.2)" },
    Case { name: "longreq", section: "3.1.1.7", codec: PARSED, statuses: &[405], after: After::Open,
        why: "well formed, long values and 34 Vias, all echoed in the 405" },
    Case { name: "dblreq", section: "3.1.1.8", codec: Codec::Parsed(2), statuses: &[405, 405], after: After::PartialTimeout,
        why: "over UDP the octets after the REGISTER are noise; over TCP they are the next message: the INVITE gets its own 405, and the 3 bytes left over by its too-short Content-Length (150 for 153) wait for the rest of a message that never comes" },
    Case { name: "semiuri", section: "3.1.1.9", codec: PARSED, statuses: &[405], after: After::Open,
        why: "well formed, the Request-URI user part is `user;par=u%40example.net`: OPTIONS, 405" },
    Case { name: "transports", section: "3.1.1.10", codec: PARSED, statuses: &[405], after: After::Open,
        why: "well formed, every Via transport, an unknown one included: OPTIONS, 405" },
    Case { name: "mpart01", section: "3.1.1.11", codec: PARSED, statuses: &[405], after: After::Open,
        why: "well formed, a binary body with NULs framed by Content-Length: MESSAGE, 405" },
    Case { name: "unreason", section: "3.1.1.12", codec: PARSED, statuses: &[], after: After::Open,
        why: "well-formed response, UTF-8 reason phrase: no transaction of ours, dropped silently" },
    Case { name: "noreason", section: "3.1.1.13", codec: PARSED, statuses: &[], after: After::Open,
        why: "well-formed response with an empty reason phrase: dropped silently" },
    // 3.1.2: invalid messages.
    Case { name: "badinv01", section: "3.1.2.1", codec: PARSED, statuses: &[400], after: After::Open,
        why: "extra ; and , in Via and Contact: syntactically invalid, 400 (RFC 4475); the lines themselves parse, the Via value does not" },
    Case { name: "clerr", section: "3.1.2.2", codec: Codec::Incomplete, statuses: &[], after: After::PartialTimeout,
        why: "Content-Length larger than the body: over a stream, wait for more data and close when none comes (RFC 4475)" },
    Case { name: "ncl", section: "3.1.2.3", codec: Codec::Unframed(FrameError::BadContentLength), statuses: &[400], after: After::Closed,
        why: "negative Content-Length: respond with an error; over TCP the framing error is not recoverable, close (RFC 4475)" },
    Case { name: "scalar02", section: "3.1.2.4", codec: PARSED, statuses: &[400], after: After::Open,
        why: "CSeq above 2**32-1: 400 due to the CSeq (RFC 4475; RFC 3261 §8.1.1.5)" },
    Case { name: "scalarlg", section: "3.1.2.5", codec: PARSED, statuses: &[], after: After::Open,
        why: "response with out-of-range scalars: simply discarded (RFC 4475)" },
    Case { name: "quotbal", section: "3.1.2.6", codec: PARSED, statuses: &[400], after: After::Open,
        why: "unterminated quote in the To display name: 400 (RFC 4475); we infer nothing" },
    Case { name: "ltgtruri", section: "3.1.2.7", codec: Codec::Rejected("malformed Request-URI"), statuses: &[400], after: After::Open,
        why: "Request-URI enclosed in <>: reasonable always to reject with 400 (RFC 4475); answered from the salvaged head" },
    Case { name: "lwsruri", section: "3.1.2.8", codec: BAD_START, statuses: &[400], after: After::Open,
        why: "LWS inside the Request-URI: 400 (RFC 4475)" },
    Case { name: "lwsstart", section: "3.1.2.9", codec: BAD_START, statuses: &[400], after: After::Open,
        why: "several SP between start-line elements: acceptable to reject as malformed (RFC 4475); we do, 400" },
    Case { name: "trws", section: "3.1.2.10", codec: BAD_START, statuses: &[400], after: After::Open,
        why: "SP after the SIP-Version: acceptable to reject as malformed (RFC 4475); 400, not 505: the version itself is fine" },
    Case { name: "escruri", section: "3.1.2.11", codec: PARSED, statuses: &[400], after: After::Open,
        why: "escaped headers in the Request-URI, not allowed there (RFC 3261 §19.1.1): acceptable to reject with 400 (RFC 4475)" },
    Case { name: "baddate", section: "3.1.2.12", codec: PARSED, statuses: &[405], after: After::Open,
        why: "non-GMT Date: do not reject unless the Date matters to the processing (RFC 4475); it does not to us: INVITE, 405" },
    Case { name: "regbadct", section: "3.1.2.13", codec: PARSED, statuses: &[405], after: After::Open,
        why: "Contact URI with headers outside <>: 400 is reasonable, inferring the brackets allowed (RFC 4475); we never read a REGISTER's Contact: 405" },
    Case { name: "badaspec", section: "3.1.2.14", codec: PARSED, statuses: &[405], after: After::Open,
        why: "spaces inside <> in To: parsers must not break, 400 reasonable, ignoring the spaces allowed (RFC 4475); our name-addr parser ignores them, so OPTIONS gets 405" },
    Case { name: "baddn", section: "3.1.2.15", codec: PARSED, statuses: &[400], after: After::Open,
        why: "unquoted display names with commas in From and To: reasonable always to reject with 400 (RFC 4475)" },
    Case { name: "badvers", section: "3.1.2.16", codec: Codec::Rejected("unsupported SIP version"), statuses: &[505], after: After::Open,
        why: "SIP/7.0: 505 Version Not Supported (RFC 4475; RFC 3261 §21.5.6)" },
    Case { name: "mismatch01", section: "3.1.2.17", codec: PARSED, statuses: &[400], after: After::Open,
        why: "CSeq method differs from the request method: any element responds 400 (RFC 4475)" },
    Case { name: "mismatch02", section: "3.1.2.18", codec: PARSED, statuses: &[501], after: After::Open,
        why: "unknown method and a mismatching CSeq method: 501, preferred to 400 (RFC 4475)" },
    Case { name: "bigcode", section: "3.1.2.19", codec: Codec::Rejected("malformed status code"), statuses: &[], after: After::Open,
        why: "response code above 699: simply drop it (RFC 4475); the connection stays" },
    // 3.2: transaction layer.
    Case { name: "badbranch", section: "3.2.1", codec: PARSED, statuses: &[405], after: After::Open,
        why: "branch is only the magic cookie: parsers must not break; 400 or RFC 2543 matching allowed (RFC 4475); we match no request transactions: OPTIONS, 405" },
    // 3.3: application layer.
    Case { name: "insuf", section: "3.3.1", codec: PARSED, statuses: &[400], after: After::Open,
        why: "no Call-ID, From, To or Max-Forwards: must not break, ideally 400 (RFC 4475); answered from its Via and CSeq" },
    Case { name: "unkscm", section: "3.3.2", codec: PARSED, statuses: &[405], after: After::Open,
        why: "unknown Request-URI scheme: RFC 4475 expects 416 from an element processing OPTIONS; RFC 3261 §8.2.1 inspects the method before the URI (§8.2.2.1), and we do not serve OPTIONS: 405 (a SUBSCRIBE would get 416)" },
    Case { name: "novelsc", section: "3.3.3", codec: PARSED, statuses: &[405], after: After::Open,
        why: "atypical Request-URI scheme: 416 or 404 expected (RFC 4475); method first (RFC 3261 §8.2.1): 405" },
    Case { name: "unksm2", section: "3.3.4", codec: PARSED, statuses: &[400], after: After::Open,
        why: "non-SIP URIs in To, From, Contact: parsers must not fail, a registrar answers 400 (RFC 4475); we need SIP or SIPS URIs in From and To: 400" },
    Case { name: "bext01", section: "3.3.5", codec: PARSED, statuses: &[405], after: After::Open,
        why: "unknown Require/Proxy-Require: 420 expected (RFC 4475); method inspection comes before Require (RFC 3261 §8.2.1, §8.2.2.3): 405" },
    Case { name: "invut", section: "3.3.6", codec: PARSED, statuses: &[405], after: After::Open,
        why: "unknown body type: 415 expected (RFC 4475); method first: 405" },
    Case { name: "regaut01", section: "3.3.7", codec: PARSED, statuses: &[405], after: After::Open,
        why: "unknown authorization scheme: 401 or ignored (RFC 4475); REGISTER, 405" },
    Case { name: "multi01", section: "3.3.8", codec: PARSED, statuses: &[400], after: After::Open,
        why: "several Call-ID, To, From, Max-Forwards and CSeq values: must not break, 400 (RFC 4475)" },
    Case { name: "mcl01", section: "3.3.9", codec: Codec::Unframed(FrameError::BadContentLength), statuses: &[400], after: After::Closed,
        why: "two different Content-Lengths: respond with an error; over TCP the framing is lost, close (RFC 4475)" },
    Case { name: "bcast", section: "3.3.10", codec: PARSED, statuses: &[], after: After::Open,
        why: "response with a broadcast Via: well formed, no transaction of ours: dropped" },
    Case { name: "zeromf", section: "3.3.11", codec: PARSED, statuses: &[405], after: After::Open,
        why: "Max-Forwards 0: an endpoint processes the request as usual (RFC 4475): OPTIONS, 405" },
    Case { name: "cparam01", section: "3.3.12", codec: PARSED, statuses: &[405], after: After::Open,
        why: "unknownparam is a contact-param (addr-spec form): the codec says so; REGISTER, 405" },
    Case { name: "cparam02", section: "3.3.13", codec: PARSED, statuses: &[405], after: After::Open,
        why: "unknownparam is a URI parameter (name-addr form): the codec says so; REGISTER, 405" },
    Case { name: "regescrt", section: "3.3.14", codec: PARSED, statuses: &[405], after: After::Open,
        why: "escaped header in a bracketed Contact URI: well formed; REGISTER, 405" },
    Case { name: "sdp01", section: "3.3.15", codec: PARSED, statuses: &[405], after: After::Open,
        why: "Accept without application/sdp: 406 or 400 expected (RFC 4475); method first: INVITE, 405" },
    // 3.4: backward compatibility.
    Case { name: "inv2543", section: "3.4.1", codec: Codec::Unframed(FrameError::BadContentLength), statuses: &[400], after: After::Closed,
        why: "RFC 2543 INVITE without Content-Length, to be accepted over UDP (RFC 4475); on a stream Content-Length is mandatory (RFC 3261 §18.3, §20.14): the body cannot be delimited, 400 then close" },
];

/// All the messages of RFC 4475 section 3.
const ALL: [&str; 49] = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badinv01",
    "clerr",
    "ncl",
    "scalar02",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
    "badbranch",
    "insuf",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "multi01",
    "mcl01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/vectors/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The messages of `name`, framed and parsed (the test fails if one does not parse).
fn parsed(name: &str) -> Vec<Message> {
    let mut f = Framer::new(Config::default().max_message_size);
    f.push(&vector(name));
    let mut out = Vec::new();
    while let Ok(Some(raw)) = f.next_message() {
        out.push(
            Message::parse(raw, Config::default().max_headers)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    assert!(!out.is_empty(), "{name}: no message");
    out
}

fn one(name: &str) -> Message {
    parsed(name).swap_remove(0)
}

/// The codec outcome of a vector.
fn codec_outcome(name: &str) -> Codec {
    let config = Config::default();
    let mut f = Framer::new(config.max_message_size);
    f.push(&vector(name));
    let mut n = 0;
    loop {
        match f.next_message() {
            Ok(Some(raw)) => match Message::parse(raw, config.max_headers) {
                Ok(_) => n += 1,
                Err(e) => {
                    assert_eq!(n, 0, "{name}: a rejected message after parsed ones");
                    return Codec::Rejected(e.reason);
                }
            },
            Ok(None) if n == 0 => return Codec::Incomplete,
            Ok(None) => return Codec::Parsed(n),
            Err(e) => {
                assert_eq!(n, 0, "{name}: a framing error after parsed messages");
                assert!(
                    f.take_failed_head().is_some(),
                    "{name}: the head of a message that cannot be framed is handed over"
                );
                return Codec::Unframed(e);
            }
        }
    }
}

#[test]
fn every_message_of_the_rfc_is_in_the_table_once() {
    let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(names, ALL);
    for name in ALL {
        assert!(!vector(name).is_empty());
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/rfc4475");
    let files = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dat"))
        })
        .count();
    assert_eq!(files, ALL.len(), "one .dat file per message, no other");
    // Every message is CRLF-terminated line by line (the RFC's "exact bytes"), outside bodies.
    for name in ALL {
        let data = vector(name);
        let head_end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("{name}: no blank line"));
        let head = &data[..head_end];
        assert!(
            head.iter()
                .enumerate()
                .all(|(i, &b)| b != b'\n' || head.get(i.wrapping_sub(1)) == Some(&b'\r')),
            "{name}: bare LF in the head"
        );
    }
}

#[test]
fn codec_outcomes() {
    let mut wrong = Vec::new();
    for case in CASES {
        let got = codec_outcome(case.name);
        if got != case.codec {
            wrong.push(format!(
                "{} ({}): expected {:?}, got {:?} ({})",
                case.name, case.section, case.codec, got, case.why
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The requests of a vector as the server sees them (salvaged, so unparsable ones count too),
/// in order, with the head of a message that cannot be framed; responses left out.
fn requests(name: &str) -> Vec<Salvaged> {
    let config = Config::default();
    let mut f = Framer::new(config.max_message_size);
    f.push(&vector(name));
    let mut raws = Vec::new();
    loop {
        match f.next_message() {
            Ok(Some(raw)) => raws.push(raw),
            Ok(None) => break,
            Err(_) => {
                raws.extend(f.take_failed_head());
                break;
            }
        }
    }
    raws.iter()
        .filter_map(|raw| Message::salvage(raw, config.max_headers))
        .filter(|s| !s.is_response)
        .collect()
}

fn values(headers: &[presence_proto::sip::Header], name: HeaderName) -> Vec<Bytes> {
    headers
        .iter()
        .filter(|h| h.name == name)
        .map(|h| h.value.clone())
        .collect()
}

/// A SUBSCRIBE on `conn`, after the torture message, gets its 200 and NOTIFY: the connection is
/// open and the stream in sync.
fn still_served(sim: &mut Sim, conn: presence_proto::ConnId, what: &str) {
    let mut ua = Ua::new(sim, "watcher");
    ua.conn = conn;
    let (_, r) = ua.subscribe(sim, "sip:watcher@example.org", Some(60));
    assert_eq!(r.status(), Some(200), "{what}: SUBSCRIBE after the message");
    ua.expect_notify(sim, 200);
}

fn run_case(case: &Case) {
    let what = format!("{} ({}; {})", case.name, case.section, case.why);
    let mut sim = Sim::new(Config::default());
    let proxy = sim.connect();
    let before = sim.server.stats();
    sim.send(proxy, vector(case.name));
    let responses = sim.recv_all(proxy);
    let statuses: Vec<u16> = responses.iter().filter_map(Message::status).collect();
    assert_eq!(statuses.len(), responses.len(), "{what}: only responses");
    assert_eq!(statuses, case.statuses, "{what}: statuses");

    // Each response goes with its request: Via, From, Call-ID, CSeq copied (RFC 3261 §8.2.6.2).
    let reqs = requests(case.name);
    assert!(reqs.len() >= responses.len(), "{what}");
    for (req, resp) in reqs.iter().zip(&responses) {
        for name in [HeaderName::CallId, HeaderName::CSeq, HeaderName::From] {
            assert_eq!(
                values(&req.headers, name.clone()),
                values(&resp.headers, name.clone()),
                "{what}: {name} copied"
            );
        }
        let req_vias = values(&req.headers, HeaderName::Via);
        let resp_vias = values(&resp.headers, HeaderName::Via);
        assert_eq!(req_vias.len(), resp_vias.len(), "{what}: every Via copied");
        assert_eq!(
            req_vias[1..],
            resp_vias[1..],
            "{what}: Vias below the top copied"
        );
        match Via::parse_list(&req_vias[0]) {
            // The top Via is re-written with `received` (RFC 3261 §18.2.1).
            Some(top) => {
                let echoed = Via::parse_list(&resp_vias[0]).expect("our top Via parses");
                assert_eq!(echoed.len(), top.len(), "{what}");
                assert_eq!(echoed[0].branch(), top[0].branch(), "{what}: branch");
                assert_eq!(echoed[0].received(), Some("127.0.0.1"), "{what}");
            }
            None => assert_eq!(req_vias[0], resp_vias[0], "{what}: raw top Via copied"),
        }
        let code = resp.status().unwrap_or_default();
        let reason = match &resp.start {
            StartLine::Response { reason, .. } => String::from_utf8_lossy(reason).into_owned(),
            StartLine::Request { .. } => unreachable!(),
        };
        match code {
            405 | 501 => assert_eq!(
                header(resp, HeaderName::Allow).as_deref(),
                Some("PUBLISH, SUBSCRIBE"),
                "{what}: Allow"
            ),
            400 => {
                assert!(reason.starts_with("Bad Request ("), "{what}: {reason}");
                let w = header(resp, HeaderName::Warning).expect("Warning");
                assert!(w.starts_with("399 presence-server \""), "{what}: {w}");
            }
            505 => assert_eq!(reason, "Version Not Supported"),
            _ => panic!("{what}: unexpected {code}"),
        }
        // A To tag is added when the To parses and has none (RFC 3261 §8.2.6.2).
        if let Some(to) = req.header(&HeaderName::To)
            && let Some(to) = NameAddr::parse(to)
        {
            let echoed = NameAddr::parse(resp.header(&HeaderName::To).expect("To")).expect("To");
            match to.tag() {
                Some(tag) => assert_eq!(echoed.tag(), Some(tag), "{what}"),
                None => assert!(echoed.tag().is_some(), "{what}: To tag added"),
            }
        }
    }
    let stats = sim.server.stats();
    if case.statuses.is_empty() && case.after == After::Open {
        assert_eq!(stats.responses_sent, before.responses_sent, "{what}");
    }

    match case.after {
        After::Open => {
            assert!(!sim.conn(proxy).closed_by_server, "{what}: kept open");
            still_served(&mut sim, proxy, &what);
        }
        After::Closed => assert!(sim.conn(proxy).closed_by_server, "{what}: closed"),
        After::PartialTimeout => {
            assert!(!sim.conn(proxy).closed_by_server, "{what}: waits");
            sim.advance(Config::default().partial_message_timeout - Duration::from_millis(1));
            assert!(!sim.conn(proxy).closed_by_server, "{what}: still waits");
            sim.advance(Duration::from_millis(1));
            assert!(
                sim.conn(proxy).closed_by_server,
                "{what}: closed at the timeout"
            );
            assert!(sim.recv_all(proxy).is_empty(), "{what}");
        }
    }
}

#[test]
fn server_outcomes() {
    for case in CASES {
        run_case(case);
    }
}

/// All the messages back to back on one connection, each followed by a SUBSCRIBE: every
/// message whose connection stays in sync is answered as on its own.
#[test]
fn the_in_sync_messages_on_one_connection() {
    let mut sim = Sim::new(Config::default());
    let proxy = sim.connect();
    let mut ua = Ua::new(&mut sim, "watcher");
    ua.conn = proxy;
    for case in CASES.iter().filter(|c| c.after == After::Open) {
        sim.send(proxy, vector(case.name));
        let statuses: Vec<u16> = sim
            .recv_all(proxy)
            .iter()
            .filter_map(Message::status)
            .collect();
        assert_eq!(statuses, case.statuses, "{}", case.name);
        let (_, r) = ua.subscribe(&mut sim, "sip:watcher@example.org", Some(60));
        assert_eq!(r.status(), Some(200), "after {}", case.name);
        ua.expect_notify(&mut sim, 200);
    }
    assert!(!sim.conn(proxy).closed_by_server);
}

// Key fields the codec must get right, message by message.

fn uri(raw: &str) -> Uri {
    Uri::parse(raw.as_bytes()).unwrap_or_else(|| panic!("{raw}"))
}

fn vias(m: &Message) -> Vec<Via> {
    m.headers_named(&HeaderName::Via)
        .flat_map(|v| Via::parse_list(v).expect("Via parses"))
        .collect()
}

fn name_addr(m: &Message, name: HeaderName) -> NameAddr {
    NameAddr::parse(m.header(&name).unwrap_or_else(|| panic!("{name}")))
        .unwrap_or_else(|| panic!("{name} parses"))
}

fn text(m: &Message, name: HeaderName) -> String {
    header(m, name.clone()).unwrap_or_else(|| panic!("{name}"))
}

#[test]
fn wsinv_fields() {
    let m = one("wsinv");
    assert_eq!(m.method(), Some(&Method::Invite));
    let ruri = m.request_uri().expect("Request-URI");
    assert_eq!(
        (ruri.user.as_deref(), ruri.host.as_str()),
        (Some("vivekg"), "chair-dnrc.example.com")
    );
    assert_eq!(ruri.param("unknownparam"), Some(None));
    let to = name_addr(&m, HeaderName::To);
    assert!(to.uri.rfc_eq(&uri("sip:vivekg@chair-dnrc.example.com")));
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = name_addr(&m, HeaderName::From);
    assert_eq!(from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(text(&m, HeaderName::MaxForwards), "0068");
    let cseq = CSeq::parse(m.header(&HeaderName::CSeq).unwrap()).expect("folded CSeq");
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    assert_eq!(text(&m, HeaderName::CallId), "wsinv.ndaksdj@192.0.2.1");
    let v = vias(&m);
    let got: Vec<(&str, &str, Option<&str>)> = v
        .iter()
        .map(|v| (v.transport.as_str(), v.host.as_str(), v.branch()))
        .collect();
    assert_eq!(
        got,
        [
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    assert_eq!(text(&m, HeaderName::Subject), "");
    assert_eq!(
        text(&m, HeaderName::Other("newfangledheader".into())),
        "newfangled value continued newfangled value",
        "folding is one SP"
    );
    assert_eq!(
        text(
            &m,
            HeaderName::Other("UnknownHeaderWithUnusualValue".into())
        ),
        ";;,,;;,;"
    );
    let route = NameAddr::parse_list(m.header(&HeaderName::Route).unwrap()).unwrap();
    assert_eq!(route[0].uri.param("lr"), Some(None));
    assert_eq!(route[0].uri.param("unknownwith"), Some(Some("value")));
    assert_eq!(route[0].uri.param("unknown-no-value"), Some(None));
    let contact = NameAddr::parse_list(m.header(&HeaderName::Contact).unwrap()).unwrap();
    assert_eq!(contact.len(), 1);
    assert_eq!(contact[0].display.as_deref(), Some("Quoted string \"\""));
    assert_eq!(contact[0].params.get("newparam"), Some(Some("newvalue")));
    assert_eq!(contact[0].params.get("secondparam"), Some(None));
    assert_eq!(contact[0].params.get("q"), Some(Some("0.33")));
    assert!(
        ContentType::parse(m.header(&HeaderName::ContentType).unwrap())
            .unwrap()
            .is("application/sdp")
    );
    assert_eq!(m.body.len(), 150);
    assert!(m.body.starts_with(b"v=0\r\n") && m.body.ends_with(b"a=rtpmap:31 LPC\r\n"));
}

#[test]
fn intmeth_fields() {
    let m = one("intmeth");
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(&Method::Other(method.into())));
    let ruri = m.request_uri().expect("Request-URI");
    assert_eq!(
        ruri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        ruri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(ruri.host, "example.com");
    assert_eq!(vias(&m)[0].branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = name_addr(&m, HeaderName::To);
    assert_eq!(
        to.display.as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}"),
        "quoted-pairs of control characters, NUL included"
    );
    assert_eq!(
        to.uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let from = name_addr(&m, HeaderName::From);
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    let odd = from
        .params
        .get("fromParam''~+*_!.-%")
        .flatten()
        .expect("param");
    assert_eq!(
        presence_proto::sip::header::unquote_value(odd),
        "работающий"
    );
    assert_eq!(
        m.header(&HeaderName::CallId).unwrap().as_ref(),
        b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        "% is no escape, quotes and brackets need no balance"
    );
    let cseq = CSeq::parse(m.header(&HeaderName::CSeq).unwrap()).unwrap();
    assert_eq!(cseq.seq, 139_122_385);
    assert_eq!(cseq.method, Method::Other(method.into()));
    assert_eq!(
        m.header(&HeaderName::Other("extensionHeader-!.%*+_`'~".into()))
            .unwrap()
            .as_ref(),
        "\u{feff}大停電".as_bytes()
    );
    assert_eq!(text(&m, HeaderName::MaxForwards), "255");
    assert!(m.body.is_empty());
}

#[test]
fn esc01_fields() {
    let m = one("esc01");
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(ruri.host, "example.net");
    assert_eq!(ruri.aor_key(), "sips:user@example.com@example.net");
    let to = name_addr(&m, HeaderName::To);
    assert!(
        to.uri.rfc_eq(&uri("sip:user@example.com")),
        "%75se%72 is user"
    );
    let from = name_addr(&m, HeaderName::From);
    assert_eq!(from.uri.aor_key(), "I have spaces@example.net");
    assert_eq!(
        text(&m, HeaderName::CallId),
        "esc01.239409asdfakjkn23onasd0-3234"
    );
    assert_eq!(text(&m, HeaderName::ContentType), "application/sdp");
    let contact = name_addr(&m, HeaderName::Contact).uri;
    assert!(contact.rfc_eq(&uri("sip:caller@host5.example.net;lr;name=value%2541")));
    assert!(
        !contact.rfc_eq(&uri("sip:caller@host5.example.net;lr;name=valueA")),
        "v%61lue%25%34%31 is value%41, never unescaped twice"
    );
    assert_eq!(m.body.len(), 150);
}

#[test]
fn escnull_fields() {
    let m = one("escnull");
    assert_eq!(m.method(), Some(&Method::Register));
    let to = name_addr(&m, HeaderName::To).uri;
    assert_eq!(
        to.aor_key(),
        "null-\0-null@example.com",
        "not shortened at the NUL"
    );
    let contacts: Vec<String> = m
        .headers_named(&HeaderName::Contact)
        .map(|c| NameAddr::parse(c).unwrap().uri.aor_key())
        .collect();
    assert_eq!(contacts, ["\0@host5.example.com", "\0\0@host5.example.com"]);
    assert_eq!(text(&m, HeaderName::ContentLength), "0");
}

#[test]
fn esc02_fields() {
    let m = one("esc02");
    assert_eq!(m.method(), Some(&Method::Other("RE%47IST%45R".into())));
    assert_ne!(m.method(), Some(&Method::Register));
    assert_eq!(
        name_addr(&m, HeaderName::To).display.as_deref(),
        Some("%Z%45")
    );
    let contacts: Vec<&Bytes> = m.headers_named(&HeaderName::Contact).collect();
    assert_eq!(
        contacts,
        [
            &b"<sip:alias1@host1.example.com>"[..],
            &b"<sip:alias3@host3.example.com>"[..]
        ],
        "C%6Fntact is another header"
    );
    assert_eq!(
        text(&m, HeaderName::Other("C%6Fntact".into())),
        "<sip:alias2@host2.example.com>"
    );
    assert_eq!(vias(&m)[0].branch(), Some("z9hG4bK209%fzsnel234"));
    let cseq = CSeq::parse(m.header(&HeaderName::CSeq).unwrap()).unwrap();
    assert_eq!(cseq.method, Method::Other("RE%47IST%45R".into()));
}

#[test]
fn lwsdisp_longreq_dblreq_semiuri_transports_fields() {
    let m = one("lwsdisp");
    let from = name_addr(&m, HeaderName::From);
    assert_eq!(
        (from.display.as_deref(), from.tag()),
        (Some("caller"), Some("323"))
    );

    let m = one("longreq");
    let to = name_addr(&m, HeaderName::To);
    assert_eq!(
        to.display.unwrap(),
        format!("I have a user name of {} proportion", "extreme".repeat(10))
    );
    assert_eq!(to.uri.port, Some(6000));
    assert_eq!(to.uri.params.len(), 3);
    assert_eq!(
        to.uri.param(&format!(
            "very{}ParameterNameWithNoValue",
            "long".repeat(25)
        )),
        Some(None)
    );
    let from = name_addr(&m, HeaderName::From);
    assert_eq!(from.tag().unwrap(), format!("12{}424", "982".repeat(50)));
    assert_eq!(from.params.0.len(), 3);
    assert_eq!(
        text(&m, HeaderName::CallId),
        format!("longreq.one{}longcallid", "really".repeat(20))
    );
    let v = vias(&m);
    assert_eq!(v.len(), 34);
    assert_eq!(v[0].host, "sip33.example.com");
    assert_eq!(v[32].host, "sip1.example.com");
    assert_eq!(
        v[33].branch().unwrap(),
        format!("very{}branchvalue", "long".repeat(50))
    );
    assert_eq!(v[33].received(), Some("192.0.2.5"));
    let unknown = format!("Unknown-{}-Name", "Long".repeat(20));
    assert!(text(&m, HeaderName::Other(unknown)).ends_with("-parameter-value"));
    assert_eq!(m.body.len(), 150);

    // Over a stream the INVITE is the next message; its Content-Length (150) is shorter than its
    // body (153), so 3 bytes are left for a third message.
    let ms = parsed("dblreq");
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].method(), Some(&Method::Register));
    assert!(ms[0].body.is_empty(), "Content-Length: 0 honoured");
    assert_eq!(
        text(&ms[0], HeaderName::CallId),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    );
    assert_eq!(ms[1].method(), Some(&Method::Invite));
    assert_eq!(ms[1].body.len(), 150);
    let mut f = Framer::new(65536);
    f.push(&vector("dblreq"));
    while let Ok(Some(_)) = f.next_message() {}
    assert_eq!(f.buffered(), 3);

    let m = one("semiuri");
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(ruri.host, "example.com");
    assert!(ruri.params.is_empty());
    assert_eq!(ruri.aor_key(), "user;par=u@example.net@example.com");
    let accept = m.header(&HeaderName::Accept).unwrap();
    assert_eq!(token_list(accept).count(), 6, "folded Accept list");

    let m = one("transports");
    let t: Vec<String> = vias(&m).into_iter().map(|v| v.transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        text(&m, HeaderName::CallId),
        "transports.kijh4akdnaqjkwendsasfdj"
    );
}

#[test]
fn mpart01_unreason_noreason_fields() {
    let m = one("mpart01");
    assert_eq!(m.method(), Some(&Method::Message));
    assert_eq!(m.body.len(), 553);
    assert!(m.body.contains(&0), "NULs in the body");
    let ct = ContentType::parse(m.header(&HeaderName::ContentType).unwrap()).unwrap();
    let boundary = ct.params.get("boundary").flatten().unwrap();
    let parts = presence_proto::multipart::parse(&m.body, boundary, 10).expect("multipart");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].body.as_ref(), b"Hello");
    assert!(parts[1].body.contains(&0));

    let m = one("unreason");
    assert_eq!(m.status(), Some(200));
    let StartLine::Response { reason, .. } = &m.start else {
        panic!()
    };
    assert_eq!(
        String::from_utf8(reason.to_vec()).unwrap(),
        "= 2**3 * 5**2 но сто девяносто девять - простое"
    );
    assert_eq!(m.body.len(), 154);

    let m = one("noreason");
    assert_eq!(
        m.start,
        StartLine::Response {
            code: 100,
            reason: Bytes::new()
        }
    );
}

#[test]
fn invalid_messages_fields() {
    // badinv01: the lines are fine, the Via and Contact values are not.
    let m = one("badinv01");
    assert!(Via::parse_list(m.header(&HeaderName::Via).unwrap()).is_none());
    assert!(NameAddr::parse_list(m.header(&HeaderName::Contact).unwrap()).is_none());
    // scalar02: CSeq over 2**32-1 does not parse; Expires saturates.
    let m = one("scalar02");
    assert!(CSeq::parse(m.header(&HeaderName::CSeq).unwrap()).is_none());
    assert_eq!(
        presence_proto::sip::header::parse_u32(m.header(&HeaderName::Expires).unwrap()),
        Some(u32::MAX)
    );
    let m = one("scalarlg");
    assert_eq!(m.status(), Some(503));
    assert!(CSeq::parse(m.header(&HeaderName::CSeq).unwrap()).is_none());
    // quotbal, baddn: From/To that do not parse.
    let m = one("quotbal");
    assert!(NameAddr::parse(m.header(&HeaderName::To).unwrap()).is_none());
    let m = one("baddn");
    assert!(NameAddr::parse(m.header(&HeaderName::From).unwrap()).is_none());
    assert!(NameAddr::parse(m.header(&HeaderName::To).unwrap()).is_none());
    // badaspec: the spaces inside <> are ignored (allowed, RFC 4475 §3.1.2.14).
    let m = one("badaspec");
    let to = name_addr(&m, HeaderName::To);
    assert_eq!(to.display.as_deref(), Some("Watson, Thomas"));
    assert!(to.uri.rfc_eq(&uri("sip:t.watson@example.org")));
    // regbadct: a URI with headers outside <>; the brackets are inferred (RFC 4475 §3.1.2.13).
    let c = name_addr(&one("regbadct"), HeaderName::Contact);
    assert_eq!(
        c.uri.headers,
        [("Route".to_owned(), "%3Csip:sip.example.com%3E".to_owned())]
    );
    // escruri: URI headers in the Request-URI.
    let m = one("escruri");
    assert_eq!(
        m.request_uri().unwrap().headers,
        [("Route".to_owned(), "%3Csip:example.com%3E".to_owned())]
    );
    // mismatch01/02.
    let m = one("mismatch01");
    let cseq = CSeq::parse(m.header(&HeaderName::CSeq).unwrap()).unwrap();
    assert_eq!(
        (m.method(), cseq.method),
        (Some(&Method::Options), Method::Invite)
    );
    assert_eq!(
        one("mismatch02").method(),
        Some(&Method::Other("NEWMETHOD".into()))
    );
    // The start lines that do not parse, and what salvage recovers.
    for (name, version) in [
        ("ltgtruri", false),
        ("lwsruri", false),
        ("lwsstart", false),
        ("trws", false),
        ("badvers", true),
    ] {
        let raw = Bytes::from(vector(name));
        let e = Message::parse(raw.clone(), 128).unwrap_err();
        assert_eq!(e.is_unsupported_version(), version, "{name}");
        let s = Message::salvage(&raw, 128).expect(name);
        assert!(!s.is_response, "{name}");
        assert!(s.header(&HeaderName::Via).is_some(), "{name}");
        assert!(s.header(&HeaderName::CSeq).is_some(), "{name}");
        assert!(s.header(&HeaderName::CallId).is_some(), "{name}");
    }
    let s = Message::salvage(&Bytes::from(vector("bigcode")), 128).unwrap();
    assert!(s.is_response);
    // Framing errors hand over the head.
    for name in ["ncl", "mcl01", "inv2543"] {
        let mut f = Framer::new(65536);
        f.push(&vector(name));
        assert_eq!(
            f.next_message(),
            Err(FrameError::BadContentLength),
            "{name}"
        );
        let head = f.take_failed_head().expect("head");
        assert!(head.ends_with(b"\r\n\r\n"), "{name}");
        let m = Message::parse(head, 128).expect("the head alone parses");
        assert!(m.header(&HeaderName::Via).is_some(), "{name}");
    }
}

#[test]
fn application_layer_fields() {
    let m = one("badbranch");
    assert_eq!(vias(&m)[0].branch(), Some("z9hG4bK"));
    let m = one("insuf");
    for name in [HeaderName::CallId, HeaderName::From, HeaderName::To] {
        assert!(m.header(&name).is_none());
    }
    let m = one("unkscm");
    assert!(m.request_uri().is_none(), "not a SIP URI");
    assert!(
        matches!(&m.start, StartLine::Request { uri, .. } if uri.as_ref() == b"nobodyKnowsThisScheme:totallyopaquecontent")
    );
    let m = one("novelsc");
    assert!(
        matches!(&m.start, StartLine::Request { uri, .. } if uri.as_ref() == b"soap.beep://192.0.2.103:3002")
    );
    let m = one("unksm2");
    assert!(NameAddr::parse(m.header(&HeaderName::To).unwrap()).is_none());
    let m = one("bext01");
    let require: Vec<&[u8]> = token_list(m.header(&HeaderName::Require).unwrap()).collect();
    assert_eq!(
        require,
        [&b"nothingSupportsThis"[..], b"nothingSupportsThisEither"]
    );
    let m = one("invut");
    assert!(
        ContentType::parse(m.header(&HeaderName::ContentType).unwrap())
            .unwrap()
            .is("application/unknownformat")
    );
    assert_eq!(m.body.len(), 40);
    let m = one("multi01");
    for name in [
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::From,
        HeaderName::To,
        HeaderName::MaxForwards,
    ] {
        assert_eq!(m.headers_named(&name).count(), 2, "{name}");
    }
    let m = one("bcast");
    assert_eq!(vias(&m)[1].host, "255.255.255.255");
    assert_eq!(text(&one("zeromf"), HeaderName::MaxForwards), "0");
    // cparam01: addr-spec form, the parameter belongs to the Contact; cparam02: to the URI.
    let c = name_addr(&one("cparam01"), HeaderName::Contact);
    assert!(c.uri.params.is_empty());
    assert_eq!(c.params.get("unknownparam"), Some(None));
    let c = name_addr(&one("cparam02"), HeaderName::Contact);
    assert_eq!(c.uri.param("unknownparam"), Some(None));
    assert!(c.params.0.is_empty());
    let c = name_addr(&one("regescrt"), HeaderName::Contact);
    assert_eq!(
        c.uri.headers,
        [("Route".to_owned(), "%3Csip:sip.example.com%3E".to_owned())]
    );
    assert_eq!(
        text(&one("sdp01"), HeaderName::Accept),
        "text/nobodyKnowsThis"
    );
}
