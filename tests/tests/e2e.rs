//! End-to-end tests: the real `presence-server` binary, its configuration handling, and SIP over
//! real TCP connections. Requests are modelled on liblinphone's (shared/traces/linphone-*.txt).
//!
//! Each test starts its own daemon on a free port; waits are reads with timeouts, never sleeps.

use std::time::{Duration, Instant};

use presence_daemon::settings::PRESENCE_KEYS;
use presence_tests::daemon::{Daemon, Runtime, SipClient, SipMessage, run_to_exit, unique};
use presence_tests::on_both_runtimes;

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Command line and configuration.

on_both_runtimes!(dump_default_config_parses_and_lists_every_key);
fn dump_default_config_parses_and_lists_every_key(rt: Runtime) {
    let run = run_to_exit(rt, &["--dump-default-config"], None, EXIT_TIMEOUT);
    assert!(run.status.success(), "{run:?}");
    let loaded = presence_daemon::parse_config(&run.stdout, "dump").expect("the dump parses");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        format!("{:?}", loaded.config),
        format!("{:?}", presence_daemon::DaemonConfig::default()),
        "the dump reads back as the defaults"
    );
    assert!(run.stdout.contains("[presence-server]"));
    for key in PRESENCE_KEYS {
        let line = format!("\n{}={}\n", key.name, key.default);
        assert!(
            run.stdout.contains(&line),
            "{} missing from the dump:\n{}",
            key.name,
            run.stdout
        );
    }
}

on_both_runtimes!(help_and_version);
fn help_and_version(rt: Runtime) {
    let run = run_to_exit(rt, &["--help"], None, EXIT_TIMEOUT);
    assert!(run.status.success());
    for option in [
        "--config",
        "--debug",
        "--dump-default-config",
        "--server",
        "--version",
    ] {
        assert!(
            run.stdout.contains(option),
            "{option} not in --help:\n{}",
            run.stdout
        );
    }
    let run = run_to_exit(rt, &["--version"], None, EXIT_TIMEOUT);
    assert!(run.status.success());
    assert!(run.stdout.starts_with("presence-server "), "{}", run.stdout);
}

on_both_runtimes!(a_bad_value_is_a_startup_error_naming_the_key);
fn a_bad_value_is_a_startup_error_naming_the_key(rt: Runtime) {
    let config = "[global]\nlog-level=debug\n\n[presence-server]\ntransports=sip:127.0.0.1:0;transport=tcp\nexpires=soon\n";
    let run = run_to_exit(rt, &[], Some(config), EXIT_TIMEOUT);
    assert!(!run.status.success(), "{run:?}");
    for part in ["'expires'", "\"soon\"", "line 6", "[presence-server]"] {
        assert!(run.stderr.contains(part), "{part} not in:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
}

on_both_runtimes!(tls_and_udp_transports_are_refused);
fn tls_and_udp_transports_are_refused(rt: Runtime) {
    let run = run_to_exit(
        rt,
        &[],
        Some("[presence-server]\ntransports=sips:127.0.0.1:0\n"),
        EXIT_TIMEOUT,
    );
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("TLS transports are not supported"),
        "{}",
        run.stderr
    );
    let run = run_to_exit(
        rt,
        &[],
        Some("[presence-server]\ntransports=sip:127.0.0.1:0\n"),
        EXIT_TIMEOUT,
    );
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("only TCP transports are supported"),
        "{}",
        run.stderr
    );
}

on_both_runtimes!(an_unknown_key_is_a_warning_and_the_daemon_starts);
fn an_unknown_key_is_a_warning_and_the_daemon_starts(rt: Runtime) {
    let daemon = Daemon::start(rt, "frobnicate-the-widgets=yes");
    let log = daemon.log();
    let warning = log
        .lines()
        .find(|l| l.contains("frobnicate-the-widgets"))
        .unwrap_or_else(|| panic!("no warning naming the key:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("unknown key"), "{warning}");
}

on_both_runtimes!(only_the_presence_server_can_be_run);
fn only_the_presence_server_can_be_run(rt: Runtime) {
    let run = run_to_exit(rt, &["--server", "proxy"], None, EXIT_TIMEOUT);
    assert!(!run.status.success(), "{run:?}");
    assert!(run.stderr.contains("proxy"), "{}", run.stderr);
    assert!(!run.stderr.contains("listening on"), "{}", run.stderr);
}

on_both_runtimes!(sigterm_stops_the_daemon_promptly_with_status_0);
fn sigterm_stops_the_daemon_promptly_with_status_0(rt: Runtime) {
    let mut daemon = Daemon::start(rt, "");
    // An idle client must not hold the shutdown up.
    let mut idle = daemon.connect();
    let start = Instant::now();
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(EXIT_TIMEOUT)
        .expect("the daemon did not exit after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        daemon.log().contains("SIGTERM received"),
        "{}",
        daemon.log()
    );
    idle.expect_closed(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// SIP.

const DOMAIN: &str = "127.0.0.1";

fn aor(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

/// A PIDF document as liblinphone publishes it (trace linphone-publish.txt, message 3).
fn pidf(user: &str, tuple_id: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<presence xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" xmlns:pidfonline=\"http://www.linphone.org/xsds/pidfonline.xsd\" entity=\"{aor}\" xmlns=\"urn:ietf:params:xml:ns:pidf\">\n\
 <tuple id=\"{tuple_id}\">\n\
  <status>\n\
   <basic>open</basic>\n\
   <pidfonline:online/>\n\
  </status>\n\
  <contact priority=\"0.8\">{aor}</contact>\n\
  <note xml:lang=\"en\">{note}</note>\n\
  <timestamp>2026-11-23T20:02:47Z</timestamp>\n\
 </tuple>\n\
</presence>\n",
        aor = aor(user)
    )
}

/// A user agent: one connection, liblinphone-like requests.
struct Ua {
    user: &'static str,
    conn: SipClient,
    publish_call_id: String,
    publish_tag: String,
    cseq: u32,
}

/// The subscriber's view of a subscription dialog.
struct Dialog {
    call_id: String,
    from_tag: String,
    to_user: &'static str,
    to_tag: String,
    /// Where in-dialog requests go (the Contact of the 200).
    target: String,
    cseq: u32,
}

impl Ua {
    fn new(daemon: &Daemon, user: &'static str) -> Ua {
        Ua {
            user,
            conn: daemon.connect(),
            publish_call_id: unique("pub-"),
            publish_tag: unique("pt"),
            cseq: 20,
        }
    }

    fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/TCP {};branch=z9hG4bK.{};rport",
            self.conn.local,
            unique("b")
        )
    }

    fn contact(&self) -> String {
        format!("sip:{}@{};transport=tcp", self.user, self.conn.local)
    }

    /// Sends a PUBLISH (with a body unless `body` is None) and returns the response.
    fn publish(&mut self, body: Option<&str>, expires: u32, etag: Option<&str>) -> SipMessage {
        self.cseq += 1;
        let me = aor(self.user);
        let mut msg = format!(
            "PUBLISH {me} SIP/2.0\r\n{}\r\nFrom: \"{u}\" <{me}>;tag={}\r\nTo: \"{u}\" <{me}>\r\n\
             CSeq: {} PUBLISH\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nSupported: replaces, outbound, gruu\r\n\
             Event: presence\r\nExpires: {expires}\r\nUser-Agent: Unknown\r\n",
            self.via(),
            self.publish_tag,
            self.cseq,
            self.publish_call_id,
            u = self.user,
        );
        if let Some(etag) = etag {
            msg.push_str(&format!("SIP-If-Match: {etag}\r\n"));
        }
        match body {
            Some(b) => msg.push_str(&format!(
                "Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => msg.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.conn.send(&msg);
        let r = self.conn.expect_response();
        assert_eq!(
            r.header("CSeq"),
            Some(format!("{} PUBLISH", self.cseq).as_str()),
            "{r}"
        );
        assert_eq!(
            r.header("Call-ID"),
            Some(self.publish_call_id.as_str()),
            "{r}"
        );
        r
    }

    /// Sends an initial SUBSCRIBE to `to_user` (Request-URI = the AOR); returns the dialog, the
    /// 200 and the first NOTIFY (answered).
    fn subscribe(
        &mut self,
        to_user: &'static str,
        expires: u32,
    ) -> (Dialog, SipMessage, SipMessage) {
        let call_id = unique("sub-");
        let from_tag = unique("st");
        let (me, them) = (aor(self.user), aor(to_user));
        let msg = format!(
            "SUBSCRIBE {them} SIP/2.0\r\n{}\r\nFrom: \"{u}\" <{me}>;tag={from_tag}\r\nTo: \"{to_user}\" <{them}>\r\n\
             CSeq: 20 SUBSCRIBE\r\nCall-ID: {call_id}\r\nMax-Forwards: 70\r\nSupported: replaces, outbound, gruu\r\n\
             Event: presence\r\nExpires: {expires}\r\n\
             Contact: <{}>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000058755>\"\r\n\
             User-Agent: Unknown\r\nContent-Length: 0\r\n\r\n",
            self.via(),
            self.contact(),
            u = self.user,
        );
        self.conn.send(&msg);
        let (r, n) = self.conn.expect_response_and_notify();
        assert_eq!(
            r.status(),
            Some(200),
            "SUBSCRIBE is answered 200 (never 202):\n{r}"
        );
        assert_eq!(r.header("CSeq"), Some("20 SUBSCRIBE"), "{r}");
        assert_eq!(r.header("Call-ID"), Some(call_id.as_str()), "{r}");
        assert_eq!(r.tag("From"), Some(from_tag.clone()), "{r}");
        let to_tag = r
            .tag("To")
            .unwrap_or_else(|| panic!("the 200 creates the dialog: To tag\n{r}"));
        let contact = r
            .header("Contact")
            .unwrap_or_else(|| panic!("the 200 has a Contact\n{r}"));
        let target = contact
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(uri, _)| uri.to_owned())
            .unwrap_or_else(|| contact.split(';').next().unwrap_or(contact).to_owned());
        let dialog = Dialog {
            call_id,
            from_tag,
            to_user,
            to_tag,
            target,
            cseq: 20,
        };
        self.check_notify(&dialog, &n);
        (dialog, r, n)
    }

    /// Sends an in-dialog SUBSCRIBE (refresh, or unsubscribe with 0); returns the 200 and the
    /// NOTIFY (answered).
    fn resubscribe(&mut self, d: &mut Dialog, expires: u32) -> (SipMessage, SipMessage) {
        d.cseq += 1;
        let (me, them) = (aor(self.user), aor(d.to_user));
        let msg = format!(
            "SUBSCRIBE {} SIP/2.0\r\n{}\r\nFrom: \"{u}\" <{me}>;tag={}\r\nTo: \"{}\" <{them}>;tag={}\r\n\
             CSeq: {} SUBSCRIBE\r\nCall-ID: {}\r\nMax-Forwards: 70\r\nSupported: replaces, outbound, gruu\r\n\
             Event: presence\r\nExpires: {expires}\r\nContact: <{}>\r\nUser-Agent: Unknown\r\nContent-Length: 0\r\n\r\n",
            d.target,
            self.via(),
            d.from_tag,
            d.to_user,
            d.to_tag,
            d.cseq,
            d.call_id,
            self.contact(),
            u = self.user,
        );
        self.conn.send(&msg);
        let (r, n) = self.conn.expect_response_and_notify();
        assert_eq!(r.status(), Some(200), "{r}");
        assert_eq!(
            r.header("CSeq"),
            Some(format!("{} SUBSCRIBE", d.cseq).as_str()),
            "{r}"
        );
        assert_eq!(r.tag("To"), Some(d.to_tag.clone()), "same dialog:\n{r}");
        self.check_notify(d, &n);
        (r, n)
    }

    /// The next request on this connection must be a NOTIFY in dialog `d`; answered 200.
    fn expect_notify(&mut self, d: &Dialog) -> SipMessage {
        let n = self.conn.expect_request("NOTIFY");
        self.check_notify(d, &n);
        n
    }

    /// RFC 6665 §4.2.2 / RFC 3856: a NOTIFY inside the dialog, towards our Contact.
    fn check_notify(&self, d: &Dialog, n: &SipMessage) {
        assert_eq!(n.method(), Some("NOTIFY"), "{n}");
        assert_eq!(
            n.request_uri(),
            Some(self.contact().as_str()),
            "sent to our Contact:\n{n}"
        );
        assert_eq!(n.header("Call-ID"), Some(d.call_id.as_str()), "{n}");
        assert_eq!(n.tag("To"), Some(d.from_tag.clone()), "{n}");
        assert_eq!(n.tag("From"), Some(d.to_tag.clone()), "{n}");
        assert!(
            n.header("From")
                .is_some_and(|f| f.contains(&aor(d.to_user))),
            "{n}"
        );
        assert_eq!(
            n.header("Event"),
            Some("presence"),
            "single NOTIFYs: the package as registered, even in legacy mode:\n{n}"
        );
        assert!(n.header("Subscription-State").is_some(), "{n}");
        assert!(
            n.header("CSeq").is_some_and(|c| c.ends_with(" NOTIFY")),
            "{n}"
        );
        assert!(!n.headers("Via").is_empty(), "{n}");
    }
}

fn state(n: &SipMessage) -> String {
    let value = n.header("Subscription-State").unwrap_or_default();
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn expires_param(n: &SipMessage) -> u32 {
    n.header_param("Subscription-State", "expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("Subscription-State without expires:\n{n}"))
}

fn assert_pidf(n: &SipMessage, presentity: &str) {
    assert_eq!(
        n.header("Content-Type"),
        Some("application/pidf+xml"),
        "{n}"
    );
    let body = n.body_str();
    assert!(body.contains("urn:ietf:params:xml:ns:pidf"), "{n}");
    assert!(
        body.contains(&format!("entity=\"{}\"", aor(presentity))),
        "{n}"
    );
}

on_both_runtimes!(publish_subscribe_notify_and_the_mutual_rule);
fn publish_subscribe_notify_and_the_mutual_rule(rt: Runtime) {
    let daemon = Daemon::start(rt, "");
    let mut alice = Ua::new(&daemon, "alice");
    let mut bob = Ua::new(&daemon, "bob");

    // RFC 3903: 200 with a SIP-ETag and the granted Expires.
    let r = alice.publish(Some(&pidf("alice", "g8aklh", "alice-online")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");
    let alice_etag = r
        .header("SIP-ETag")
        .unwrap_or_else(|| panic!("no SIP-ETag:\n{r}"))
        .to_owned();
    assert!(!alice_etag.is_empty());
    assert_eq!(r.header("Expires"), Some("600"), "{r}");
    assert!(
        r.tag("To").is_some(),
        "RFC 3261 §8.2.6.2: the UAS adds a To tag:\n{r}"
    );
    let r = bob.publish(Some(&pidf("bob", "bob4tp", "bob-online")), 600, None);
    assert_eq!(r.status(), Some(200), "{r}");

    // bob watches alice: 200 with Expires, then a NOTIFY at once. Not mutual: note only.
    let (bob_watches_alice, r, n) = bob.subscribe("alice", 600);
    let granted: u32 = r
        .header("Expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    assert!(granted > 0 && granted <= 600, "{r}");
    assert!(
        r.header("Contact")
            .is_some_and(|c| c.contains(&format!("127.0.0.1:{}", daemon.port()))),
        "the server's Contact is its listening address:\n{r}"
    );
    assert_eq!(state(&n), "active", "{n}");
    assert!(expires_param(&n) <= granted, "{n}");
    assert_pidf(&n, "alice");
    assert!(
        n.body_str()
            .contains("No presence information available yet"),
        "{n}"
    );
    assert!(
        !n.body_str().contains("g8aklh"),
        "not mutual: alice's tuple is withheld:\n{n}"
    );

    // alice watches bob back: mutual. alice sees bob's tuple, and bob is re-notified with alice's.
    let (_alice_watches_bob, _r, n) = alice.subscribe("bob", 600);
    assert_eq!(state(&n), "active", "{n}");
    assert_pidf(&n, "bob");
    assert!(n.body_str().contains("bob4tp"), "mutual: bob's tuple:\n{n}");
    let n = bob.expect_notify(&bob_watches_alice);
    assert_eq!(state(&n), "active", "{n}");
    assert_pidf(&n, "alice");
    assert!(
        n.body_str().contains("g8aklh"),
        "mutual now: alice's tuple:\n{n}"
    );
    assert!(n.body_str().contains("alice-online"), "{n}");

    // alice modifies her publication (SIP-If-Match): a new ETag, and bob is notified.
    let r = alice.publish(
        Some(&pidf("alice", "wke48z", "Gone fishing")),
        600,
        Some(&alice_etag),
    );
    assert_eq!(r.status(), Some(200), "{r}");
    let new_etag = r.header("SIP-ETag").unwrap_or_else(|| panic!("{r}"));
    assert_ne!(
        new_etag, alice_etag,
        "a fresh ETag on every successful PUBLISH"
    );
    let n = bob.expect_notify(&bob_watches_alice);
    assert!(
        n.body_str().contains("wke48z") && n.body_str().contains("Gone fishing"),
        "{n}"
    );
    assert!(
        !n.body_str().contains("g8aklh"),
        "the old publication was replaced:\n{n}"
    );

    // The superseded ETag is no longer valid: 412 (RFC 3903 §6).
    let r = alice.publish(None, 600, Some(&alice_etag));
    assert_eq!(r.status(), Some(412), "{r}");
}

on_both_runtimes!(unsubscribe_gives_a_terminated_notify);
fn unsubscribe_gives_a_terminated_notify(rt: Runtime) {
    let daemon = Daemon::start(rt, "");
    let mut bob = Ua::new(&daemon, "bob");
    let (mut d, _r, n) = bob.subscribe("alice", 600);
    assert_eq!(state(&n), "active", "{n}");
    let (r, n) = bob.resubscribe(&mut d, 0);
    assert_eq!(
        r.header("Expires"),
        Some("0"),
        "the 2xx to every SUBSCRIBE carries Expires:\n{r}"
    );
    assert_eq!(state(&n), "terminated", "{n}");
    // The subscription is gone: a refresh of it is 481 (RFC 6665 §4.2.1.2).
    d.cseq += 1;
    let msg = format!(
        "SUBSCRIBE {} SIP/2.0\r\n{}\r\nFrom: <{}>;tag={}\r\nTo: <{}>;tag={}\r\nCSeq: {} SUBSCRIBE\r\n\
         Call-ID: {}\r\nMax-Forwards: 70\r\nEvent: presence\r\nExpires: 600\r\nContact: <{}>\r\n\
         Content-Length: 0\r\n\r\n",
        d.target,
        bob.via(),
        aor("bob"),
        d.from_tag,
        aor("alice"),
        d.to_tag,
        d.cseq,
        d.call_id,
        bob.contact()
    );
    bob.conn.send(&msg);
    let r = bob.conn.expect_response();
    assert_eq!(r.status(), Some(481), "{r}");
}

on_both_runtimes!(other_methods_get_405_with_allow);
fn other_methods_get_405_with_allow(rt: Runtime) {
    let daemon = Daemon::start(rt, "");
    let mut c = daemon.connect();
    let msg = format!(
        "OPTIONS {} SIP/2.0\r\nVia: SIP/2.0/TCP {};branch=z9hG4bK.{};rport\r\nFrom: <{}>;tag=o1\r\n\
         To: <{}>\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        aor("alice"),
        c.local,
        unique("b"),
        aor("bob"),
        aor("alice"),
        unique("opt-")
    );
    c.send(&msg);
    let r = c.expect_response();
    assert_eq!(r.status(), Some(405), "{r}");
    let allow = r
        .header("Allow")
        .unwrap_or_else(|| panic!("405 without Allow:\n{r}"))
        .to_ascii_uppercase();
    assert!(
        allow.contains("PUBLISH") && allow.contains("SUBSCRIBE"),
        "{r}"
    );
    assert_eq!(r.header("CSeq"), Some("1 OPTIONS"), "{r}");
}

on_both_runtimes!(garbage_closes_the_connection_and_the_server_goes_on);
fn garbage_closes_the_connection_and_the_server_goes_on(rt: Runtime) {
    let daemon = Daemon::start(rt, "");
    let mut evil = daemon.connect();
    // A TLS ClientHello-like start and no Content-Length: the stream cannot be framed.
    evil.send_bytes(b"\x16\x03\x01\x02\x00garbage that is not SIP\r\nContent-Length: lots\r\n\r\n");
    evil.expect_closed(Duration::from_secs(5));
    // A new connection is served.
    let mut bob = Ua::new(&daemon, "bob");
    let r = bob.publish(Some(&pidf("bob", "bob4tp", "still here")), 60, None);
    assert_eq!(r.status(), Some(200), "{r}");
}
