//! End-to-end tests of the metrics endpoint (`[presence-server] metrics-address`): the real daemon
//! on a free port (`metrics-address=127.0.0.1:0`, address read from the `metrics on ADDR` log
//! line), scraped over HTTP before and after SIP traffic; and the endpoint's HTTP handling (404,
//! 405, oversized and incomplete requests).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use presence_tests::daemon::{Daemon, Runtime, SipClient, unique};
use presence_tests::on_both_runtimes;

const DOMAIN: &str = "metrics.example.org";
const T: Duration = Duration::from_secs(10);

fn aor(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

/// Starts a daemon with the metrics endpoint on a free port; returns it and the endpoint.
fn start(rt: Runtime, extra: &str) -> (Daemon, SocketAddr) {
    let daemon = Daemon::start(rt, &format!("metrics-address=127.0.0.1:0\n{extra}"));
    // The endpoint is bound before the SIP transports, so its line comes before `listening on`.
    let log = daemon.log();
    let addr = log
        .lines()
        .find_map(|l| {
            let rest = &l[l.find("metrics on ")? + "metrics on ".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no 'metrics on ADDR' line:\n{log}"));
    (daemon, addr)
}

/// An HTTP response: status code, head, body.
struct Http {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` as it is and reads the response up to the server's close.
fn http(addr: SocketAddr, request: &[u8]) -> Http {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .expect("the server answers and closes");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let length: usize = header(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    assert_eq!(length, body.len(), "Content-Length");
    assert_eq!(header(head, "connection"), Some("close"), "{head}");
    Http {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The samples of one scrape: `name{labels}` → value.
struct Scrape(Vec<(String, f64)>);

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        self.0
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no sample {series}"))
    }
}

fn scrape(addr: SocketAddr) -> Scrape {
    let r = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: e2e\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.head, r.body);
    assert_eq!(
        header(&r.head, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut samples = Vec::new();
    for line in r.body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((series.to_owned(), value));
    }
    Scrape(samples)
}

/// Scrapes until `check` holds (the daemon handles what the test sent asynchronously).
fn scrape_until(addr: SocketAddr, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + T;
    loop {
        let s = scrape(addr);
        if check(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "metrics never showed {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn subscribe(c: &mut SipClient, from: &str, to: &str) {
    let msg = format!(
        "SUBSCRIBE {them} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b}\r\nFrom: <{me}>;tag={t}\r\nTo: <{them}>\r\nCall-ID: {cid}\r\nCSeq: 20 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <sip:{from}@{l};transport=tcp>\r\nContent-Length: 0\r\n\r\n",
        them = aor(to),
        me = aor(from),
        l = c.local,
        b = unique("b"),
        t = unique("t"),
        cid = unique("sub-"),
    );
    c.send(&msg);
    // The NOTIFY is answered 200 by the helper.
    let (r, n) = c.expect_response_and_notify();
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(n.method(), Some("NOTIFY"), "{n}");
}

on_both_runtimes!(metrics_follow_publish_subscribe_and_notify);
fn metrics_follow_publish_subscribe_and_notify(rt: Runtime) {
    let (daemon, addr) = start(rt, "");
    let before = scrape(addr);
    for series in [
        "presence_publications",
        "presence_subscriptions",
        "presence_list_subscriptions",
        "presence_presentities",
        "presence_notifies_sent_total",
        "presence_requests_total{method=\"PUBLISH\",status=\"200\"}",
        "presence_requests_total{method=\"SUBSCRIBE\",status=\"200\"}",
        "presence_notify_outcomes_total{outcome=\"ok\"}",
        "presence_connections",
    ] {
        assert_eq!(before.get(series), 0.0, "{series} before any traffic");
    }
    assert_eq!(before.get("presence_pending_output_bytes"), 0.0);
    assert_eq!(
        before.get("presence_database_query_duration_seconds_count"),
        0.0
    );

    let mut alice = daemon.connect();
    alice.publish_open(&aor("alice"), "talice", None, 1);
    let mut bob = daemon.connect();
    subscribe(&mut bob, "bob", "alice");
    // A 405 for another method.
    bob.send(&format!(
        "OPTIONS {a} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b}\r\nFrom: <{a}>;tag=o1\r\nTo: <{a}>\r\nCall-ID: {c}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        a = aor("bob"),
        l = bob.local,
        b = unique("b"),
        c = unique("opt-"),
    ));
    assert_eq!(bob.expect_response().status(), Some(405));
    // A list subscription (no body database needed: the list is in the SUBSCRIBE).
    let mut carol = daemon.connect();
    let entries = vec![aor("alice"), aor("bob")];
    carol.send_list_subscribe(
        &aor("carol"),
        &format!("sip:friends@{DOMAIN}"),
        &entries,
        "e2e-metrics/1.0",
    );
    let r = carol.expect_response();
    assert_eq!(r.status(), Some(200), "{r}");
    let n = carol.expect_request("NOTIFY");
    carol.send(&n.ok_response());

    // The NOTIFYs' 200s reach the core after the test saw the NOTIFYs: wait for them.
    let after = scrape_until(addr, "the two NOTIFYs answered", |s| {
        s.get("presence_notify_outcomes_total{outcome=\"ok\"}") >= 2.0
    });
    assert_eq!(after.get("presence_publications"), 1.0);
    assert_eq!(after.get("presence_subscriptions"), 2.0);
    assert_eq!(after.get("presence_list_subscriptions"), 1.0);
    assert!(after.get("presence_presentities") >= 2.0);
    assert_eq!(after.get("presence_connections"), 3.0);
    assert_eq!(
        after.get("presence_requests_total{method=\"PUBLISH\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        after.get("presence_requests_total{method=\"SUBSCRIBE\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        after.get("presence_requests_total{method=\"OTHER\",status=\"405\"}"),
        1.0
    );
    assert_eq!(after.get("presence_requests_received_total"), 4.0);
    assert_eq!(after.get("presence_responses_sent_total"), 4.0);
    assert!(after.get("presence_notifies_sent_total") >= 2.0);
    assert_eq!(
        after.get("presence_notify_outcomes_total{outcome=\"timeout\"}"),
        0.0
    );
    // Long-term presence (on by default, embedded SQLite) looked the watched users up.
    assert!(after.get("presence_database_queries_total") >= 1.0);
    let queries = after.get("presence_database_query_duration_seconds_count");
    assert!(queries >= 1.0, "{queries}");
    assert_eq!(
        after.get("presence_database_query_duration_seconds_bucket{le=\"+Inf\"}"),
        queries
    );
    assert!(after.get("presence_database_statements_total") >= 1.0);

    // A client goes away: one connection less.
    drop(carol);
    let last = scrape_until(addr, "carol's connection closed", |s| {
        s.get("presence_connections") == 2.0
    });
    assert_eq!(last.get("presence_publications"), 1.0);
    drop(daemon);
}

on_both_runtimes!(the_endpoint_serves_only_get_metrics);
fn the_endpoint_serves_only_get_metrics(rt: Runtime) {
    let (_daemon, addr) = start(rt, "");
    let r = http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.head);
    let r = http(addr, b"GET /metrics/x HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.head);
    let r = http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405, "{}", r.head);
    assert_eq!(header(&r.head, "allow"), Some("GET"), "{}", r.head);
    let r = http(addr, b"hello\r\n\r\n");
    assert_eq!(r.status, 400, "{}", r.head);
    // A head larger than 8 KiB is refused, and the endpoint goes on serving.
    let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
    for _ in 0..1000 {
        big.extend_from_slice(b"X-Filler: 0123456789\r\n");
    }
    big.extend_from_slice(b"\r\n");
    let r = http(addr, &big);
    assert_eq!(r.status, 431, "{}", r.head);
    // A query string is ignored; HTTP/1.0 is served too.
    let r = http(addr, b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body.contains("# TYPE presence_subscriptions gauge"));
}

on_both_runtimes!(an_incomplete_request_times_out);
fn an_incomplete_request_times_out(rt: Runtime) {
    let (_daemon, addr) = start(rt, "");
    let start = Instant::now();
    let r = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(r.status, 408, "{}", r.head);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(9),
        "{waited:?}"
    );
    // Scrapes work again once that client is gone.
    scrape(addr);
}

on_both_runtimes!(metrics_are_off_by_default);
fn metrics_are_off_by_default(rt: Runtime) {
    let daemon = Daemon::start(rt, "");
    assert!(!daemon.log().contains("metrics on"), "{}", daemon.log());
}
