//! End-to-end list subscription over TCP against the real daemon: a deflated 500-entry list
//! SUBSCRIBE, publications of several entries, and every NOTIFY decoded (inflate, multipart,
//! RLMI, PIDF parts) and checked.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use presence_tests::daemon::{Daemon, Runtime, SipClient, unique};
use presence_tests::on_both_runtimes;
use presence_tests::sim::{ListNotify, decode_list};

const DOMAIN: &str = "lists.example.org";

fn aor(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

/// Reads list NOTIFYs (answering each) until `wanted` resources have had an instance; returns them.
fn collect_until(
    c: &mut SipClient,
    wanted: &BTreeSet<String>,
    deadline: Duration,
) -> Vec<ListNotify> {
    let end = Instant::now() + deadline;
    let mut got = Vec::new();
    let mut seen = BTreeSet::new();
    while !wanted.is_subset(&seen) {
        let left = end.saturating_duration_since(Instant::now());
        let n = c
            .recv(left)
            .unwrap_or_else(|e| panic!("waiting for list NOTIFYs ({seen:?} so far): {e:?}"));
        assert_eq!(n.method(), Some("NOTIFY"), "{n}");
        c.send(&n.ok_response());
        let l = decode_list(&n.to_message());
        seen.extend(l.with_instances().into_iter().map(str::to_owned));
        got.push(l);
    }
    got
}

on_both_runtimes!(deflated_500_entry_list_subscription_end_to_end);
fn deflated_500_entry_list_subscription_end_to_end(rt: Runtime) {
    let daemon = Daemon::start(rt, "bypass-condition=e2e-lists\nlist-notify-interval=300");
    let mut publisher = daemon.connect();
    let published = ["u007", "u123", "u250", "u499"];
    for (i, u) in published.iter().enumerate() {
        publisher.publish_open(
            &aor(u),
            &format!("t{u}"),
            Some(&format!("first-{u}")),
            i as u32 + 1,
        );
    }

    let mut bob = daemon.connect();
    let entries: Vec<String> = (0..500).map(|i| aor(&format!("u{i:03}"))).collect();
    let list = format!("sip:friends@{DOMAIN}");
    let (compressed, plain) =
        bob.send_list_subscribe(&aor("bob"), &list, &entries, "e2e-lists/1.0");
    assert!(compressed < plain / 4);
    let r = bob.expect_response();
    assert_eq!(r.status(), Some(200), "{r}");
    assert_eq!(r.header("Require"), Some("eventlist"));

    // Full state: 500 resources, instances for the 4 published ones.
    let n = bob.expect_request("NOTIFY");
    bob.send(&n.ok_response());
    assert_eq!(n.header("Event"), Some("Presence"));
    let full = decode_list(&n.to_message());
    assert!(
        full.compressed,
        "Accept-Encoding: deflate and a large body: compressed"
    );
    assert_eq!((full.rlmi.version, full.rlmi.full_state), (0, true));
    assert_eq!(full.rlmi.resources.len(), 500);
    let order: Vec<&str> = full.rlmi.resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        order,
        entries.iter().map(String::as_str).collect::<Vec<_>>(),
        "list order kept"
    );
    let mut with: Vec<&str> = full.with_instances();
    with.sort();
    assert_eq!(
        with,
        published
            .iter()
            .map(|u| aor(u))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for u in published {
        let doc = full.pidf_of(&aor(u)).expect("a PIDF part per instance");
        assert!(doc.contains(&format!("first-{u}")), "{doc}");
    }

    // Changes to three entries (one new) arrive as partial state, each resource once.
    let mut n = 10;
    for u in ["u007", "u123", "u321"] {
        n += 1;
        publisher.publish_open(&aor(u), &format!("t{u}"), Some(&format!("second-{u}")), n);
    }
    let wanted: BTreeSet<String> = ["u007", "u123", "u321"].iter().map(|u| aor(u)).collect();
    let partials = collect_until(&mut bob, &wanted, Duration::from_secs(10));
    let mut version = 0;
    for l in &partials {
        version += 1;
        assert_eq!(l.rlmi.version, version, "versions increase by one");
        assert!(!l.rlmi.full_state);
        assert!(l.rlmi.resources.len() <= 3);
        for uri in l.with_instances() {
            let user = uri.split('@').next().unwrap().trim_start_matches("sip:");
            assert!(l.pidf_of(uri).unwrap().contains(&format!("second-{user}")));
        }
    }

    // Unsubscribe: 200, then a terminated NOTIFY.
    let unsub = format!(
        "SUBSCRIBE {list} SIP/2.0\r\nVia: SIP/2.0/TCP {l};branch=z9hG4bK.{b};rport\r\nFrom: \"bob\" <{me}>;tag=bobtag\r\nTo: <{list}>;tag={tt}\r\nCall-ID: {cid}\r\nCSeq: 21 SUBSCRIBE\r\nMax-Forwards: 70\r\nSupported: eventlist\r\nEvent: presence\r\nExpires: 0\r\nContact: <sip:bob@{l};transport=tcp>\r\nContent-Length: 0\r\n\r\n",
        l = bob.local,
        b = unique("b"),
        me = aor("bob"),
        tt = r.tag("To").expect("our tag"),
        cid = r.header("Call-ID").unwrap(),
    );
    bob.send(&unsub);
    let (ok, last) = bob.expect_response_and_notify();
    assert_eq!(ok.status(), Some(200));
    bob.send(&last.ok_response());
    let l = decode_list(&last.to_message());
    assert_eq!(l.state.state, "terminated");
    assert_eq!(l.rlmi.version, version + 1);
}
