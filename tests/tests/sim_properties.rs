//! Model-based property test: random sequences of PUBLISH, SUBSCRIBE, refreshes, unsubscribes,
//! NOTIFY answers and time passing, all through one proxy connection (so the server's output has
//! one total order), checked against a model of who watches whom:
//! - every request gets exactly one response;
//! - NOTIFY CSeqs strictly increase within a dialog, and nothing follows a terminated NOTIFY;
//! - a watcher only ever sees published tuples of a presentity that watches it back (or itself).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use presence_proto::Config;
use presence_proto::sip::{CSeq, HeaderName, Message, NameAddr, SubscriptionState};
use presence_tests::sim::{Dialog, Sim, Ua, answer};
use proptest::prelude::*;

const USERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        user: usize,
        expires: u32,
    },
    Unpublish {
        user: usize,
    },
    Subscribe {
        watcher: usize,
        target: usize,
        expires: u32,
    },
    Refresh {
        dialog: usize,
        expires: u32,
    },
    Advance {
        secs: u64,
    },
    SetAnswer {
        code: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, prop::sample::select(vec![0u32, 30, 600])).prop_map(|(user, expires)| Op::Publish { user, expires }),
        1 => (0..3usize).prop_map(|user| Op::Unpublish { user }),
        4 => (0..3usize, 0..3usize, prop::sample::select(vec![0u32, 20, 60, 600]))
            .prop_map(|(watcher, target, expires)| Op::Subscribe { watcher, target, expires }),
        2 => (0..8usize, prop::sample::select(vec![0u32, 20, 600])).prop_map(|(dialog, expires)| Op::Refresh { dialog, expires }),
        2 => (1..90u64).prop_map(|secs| Op::Advance { secs }),
        1 => prop::sample::select(vec![200u16, 200, 200, 481, 408]).prop_map(|code| Op::SetAnswer { code }),
    ]
}

#[derive(Default)]
struct Model {
    /// Live dialogs: Call-ID → (watcher, presentity).
    active: BTreeMap<String, (usize, usize)>,
    /// Last NOTIFY CSeq per Call-ID; terminated dialogs.
    last_cseq: BTreeMap<String, u32>,
    ended: BTreeSet<String>,
    /// Dialogs that got their terminated NOTIFY.
    terminated: BTreeSet<String>,
}

impl Model {
    fn watches(&self, w: usize, p: usize) -> bool {
        self.active.values().any(|&(a, b)| a == w && b == p)
    }
}

fn user_of(uri: &[u8]) -> usize {
    let n = NameAddr::parse(uri).expect("name-addr");
    let u = n.uri.user.unwrap_or_default();
    USERS.iter().position(|x| *x == u).expect("known user")
}

fn run(ops: Vec<Op>) {
    let mut sim = Sim::new(Config::default());
    let proxy = sim.connect_from("127.0.0.1:5060".parse().unwrap());
    let mut uas: Vec<Ua> = USERS
        .iter()
        .map(|u| {
            let mut ua = Ua::new(&mut sim, u);
            ua.conn = proxy;
            ua
        })
        .collect();
    let rr = "Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\n";
    let mut model = Model::default();
    let mut dialogs: Vec<(usize, Dialog)> = Vec::new();
    let mut etags: Vec<Option<String>> = vec![None; USERS.len()];
    let mut answer_code = 200u16;

    for op in ops {
        let mut expect_response = true;
        match op {
            Op::Publish { user, expires } => {
                let body = uas[user].pidf("t", USERS[user], Some("away"));
                let etag = etags[user].clone();
                let m = uas[user].publish_msg(Some(&body), Some(expires), etag.as_deref());
                sim.send(proxy, m);
            }
            Op::Unpublish { user } => {
                let Some(etag) = etags[user].take() else {
                    continue;
                };
                let m = uas[user].publish_msg(None, Some(0), Some(&etag));
                sim.send(proxy, m);
            }
            Op::Subscribe {
                watcher,
                target,
                expires,
            } => {
                let t = uas[target].uri();
                let (m, d) = uas[watcher].subscribe_msg(&t, Some(expires), rr);
                if expires > 0 {
                    model.active.insert(d.call_id.clone(), (watcher, target));
                }
                sim.send(proxy, m);
                dialogs.push((watcher, d));
            }
            Op::Refresh { dialog, expires } => {
                let Some((w, d)) = dialogs.get_mut(dialog) else {
                    continue;
                };
                if d.to_tag.is_empty() || model.ended.contains(&d.call_id) {
                    continue;
                }
                if expires == 0 {
                    model.active.remove(&d.call_id);
                }
                let m = uas[*w].resubscribe_msg(d, expires);
                sim.send(proxy, m);
            }
            Op::Advance { secs } => {
                sim.advance(Duration::from_secs(secs));
                expect_response = false;
            }
            Op::SetAnswer { code } => {
                answer_code = code;
                continue;
            }
        }
        let responses = drain(
            &mut sim,
            proxy,
            &mut model,
            &mut dialogs,
            &mut etags,
            answer_code,
        );
        if expect_response {
            assert_eq!(responses, 1, "every request gets exactly one response");
        } else {
            assert_eq!(responses, 0);
        }
    }
    let _ = &mut uas;
}

/// Checks what the server sent so far, in order, against the model (as it was when the server
/// produced it), then answers the NOTIFYs one by one, each answer's consequences checked before
/// the next answer is sent. Returns the number of responses seen.
fn drain(
    sim: &mut Sim,
    proxy: presence_proto::ConnId,
    model: &mut Model,
    dialogs: &mut [(usize, Dialog)],
    etags: &mut [Option<String>],
    answer_code: u16,
) -> usize {
    let mut responses = 0;
    let mut answers = Vec::new();
    for m in sim.recv_all(proxy) {
        if !m.is_request() {
            responses += 1;
            on_response(&m, dialogs, etags);
            continue;
        }
        check_notify(&m, model);
        answers.push(m);
    }
    for m in answers {
        let call_id = String::from_utf8_lossy(m.header(&HeaderName::CallId).unwrap()).into_owned();
        let code = if model.ended.contains(&call_id) {
            200
        } else {
            answer_code
        };
        if code != 200 {
            model.active.remove(&call_id);
            model.ended.insert(call_id);
        }
        sim.send(proxy, answer(&m, code));
        responses += drain(sim, proxy, model, dialogs, etags, answer_code);
    }
    responses
}

fn on_response(r: &Message, dialogs: &mut [(usize, Dialog)], etags: &mut [Option<String>]) {
    let cseq = CSeq::parse(r.header(&HeaderName::CSeq).unwrap()).unwrap();
    let call_id = String::from_utf8_lossy(r.header(&HeaderName::CallId).unwrap()).into_owned();
    match cseq.method.as_str() {
        "PUBLISH" => {
            let user = user_of(r.header(&HeaderName::From).unwrap());
            match r.status() {
                Some(200) => {
                    etags[user] = r
                        .header(&HeaderName::SipEtag)
                        .map(|e| String::from_utf8_lossy(e).into_owned())
                }
                Some(412) => etags[user] = None,
                other => panic!("PUBLISH answered {other:?}"),
            }
        }
        "SUBSCRIBE" => {
            let to = NameAddr::parse(r.header(&HeaderName::To).unwrap()).unwrap();
            if let Some((_, d)) = dialogs.iter_mut().find(|(_, d)| d.call_id == call_id)
                && r.status() == Some(200)
            {
                d.to_tag = to.tag().unwrap_or_default().to_owned();
            }
        }
        other => panic!("unexpected response to {other}"),
    }
}

fn check_notify(n: &Message, model: &mut Model) {
    let call_id = String::from_utf8_lossy(n.header(&HeaderName::CallId).unwrap()).into_owned();
    assert!(
        !model.terminated.contains(&call_id),
        "a NOTIFY after the terminated one"
    );
    let cseq = CSeq::parse(n.header(&HeaderName::CSeq).unwrap())
        .unwrap()
        .seq;
    if let Some(prev) = model.last_cseq.insert(call_id.clone(), cseq) {
        assert!(cseq > prev, "NOTIFY CSeq must increase within a dialog");
    }
    let st = SubscriptionState::parse(n.header(&HeaderName::SubscriptionState).unwrap()).unwrap();
    let watcher = user_of(n.header(&HeaderName::To).unwrap());
    let presentity = user_of(n.header(&HeaderName::From).unwrap());
    let body = String::from_utf8_lossy(&n.body);
    if body.contains("<tuple") {
        assert!(
            watcher == presentity || model.watches(presentity, watcher),
            "{} sees {}'s tuples without being watched back",
            USERS[watcher],
            USERS[presentity]
        );
    }
    if st.state == "terminated" {
        model.terminated.insert(call_id.clone());
        model.ended.insert(call_id.clone());
        model.active.remove(&call_id);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn server_keeps_its_promises(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
