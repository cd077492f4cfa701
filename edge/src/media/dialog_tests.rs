use super::*;
use crate::media::client::ClientError;
use sbc_shared::proto::Reply;
use std::collections::HashMap;

const CALLER: &str = "caller-tag";
const CALLEE: &str = "callee-tag";
const CALL: &str = "call-1@10.0.0.5";

fn cfg(mode: MediaMode) -> DialogConfig {
    DialogConfig {
        mode,
        rewrite: RewriteOptions::default(),
        max_duration: Duration::from_secs(3600),
        early_timeout: Duration::from_secs(200),
        relay_ips: vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
        max_streams: 8,
        check_interval_s: 0,
    }
}

fn sdp(addr: &str, ports: &[u16]) -> Vec<u8> {
    let mut s = format!("v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n");
    for p in ports {
        s.push_str(&format!("m=audio {p} RTP/AVP 0\r\n"));
    }
    s.into_bytes()
}

/// A relay in memory: per (call, tag, stream) a stable port, as rtpproxy gives the same
/// port to the same party again; L of an unknown call answers `0 0.0.0.0`.
#[derive(Default)]
struct FakeRelay {
    ports: HashMap<(String, String, u32), u16>,
    live: HashMap<String, RelayId>,
    deleted: Vec<(RelayId, String)>,
    seen: Vec<(RelayId, Command)>,
}

impl FakeRelay {
    fn answer(&mut self, relay: RelayId, cmd: &Command) -> Reply {
        self.seen.push((relay, cmd.clone()));
        let mut port = |call: &str, tag: &str, n: u32| {
            let next = 30000u16.wrapping_add(2 * self.ports.len() as u16);
            *self
                .ports
                .entry((call.to_owned(), tag.to_owned(), n))
                .or_insert(next)
        };
        match cmd {
            Command::Update(u) => {
                self.live.insert(u.call.id.clone(), relay);
                // The port the *other* party sends to, to reach this one.
                let p = port(&u.call.id, &u.from_tag.tag, u.stream_number());
                Reply::Port {
                    port: p,
                    addr: Some("203.0.113.1".parse().unwrap()),
                }
            }
            Command::Lookup(u) => {
                if !self.live.contains_key(&u.call.id) {
                    return Reply::Port {
                        port: 0,
                        addr: Some("0.0.0.0".parse().unwrap()),
                    };
                }
                let to = u.to_tag.as_ref().map_or("", |t| t.tag.as_str());
                let p = port(&u.call.id, to, u.stream_number());
                Reply::Port {
                    port: p,
                    addr: Some("203.0.113.1".parse().unwrap()),
                }
            }
            Command::Delete(d) => {
                self.deleted.push((relay, d.call.id.clone()));
                self.ports.retain(|(c, _, _), _| *c != d.call.id);
                match self.live.remove(&d.call.id) {
                    Some(_) => Reply::OK,
                    None => Reply::Error(sbc_shared::proto::ErrorCode::SESSION_UNKNOWN),
                }
            }
            _ => Reply::Error(sbc_shared::proto::ErrorCode(8)),
        }
    }
}

struct World {
    d: MediaDialogs,
    relay: FakeRelay,
    now: Instant,
    /// Relay picked for `Target::Any`.
    any: RelayId,
    metrics: MediaMetrics,
}

impl World {
    fn new(mode: MediaMode) -> Self {
        let metrics = MediaMetrics::unregistered().unwrap();
        World {
            d: MediaDialogs::new(cfg(mode), Some(metrics.clone())),
            relay: FakeRelay::default(),
            now: Instant::now(),
            any: 0,
            metrics,
        }
    }

    /// Answer every request (and what the answers trigger); return the completions.
    fn pump(&mut self, mut send: Vec<RelayRequest>) -> Vec<Completion> {
        let mut done = Vec::new();
        while !send.is_empty() {
            let mut next = Vec::new();
            for r in send {
                let relay = match r.target {
                    Target::Any => self.any,
                    Target::Relay(x) => x,
                };
                let reply = self.relay.answer(relay, &r.command);
                let step = self.d.on_relay_reply(r.id, Ok((relay, reply)), self.now);
                next.extend(step.send);
                done.extend(step.done);
            }
            send = next;
        }
        done
    }

    fn msg(
        &mut self,
        kind: SipKind,
        to_tag: Option<&str>,
        from: &str,
        body: Option<&[u8]>,
    ) -> Step {
        self.msg_nat(kind, to_tag, from, body, false)
    }

    fn msg_nat(
        &mut self,
        kind: SipKind,
        to_tag: Option<&str>,
        from: &str,
        body: Option<&[u8]>,
        nated: bool,
    ) -> Step {
        let ev = SipEvent {
            call_id: CALL,
            from_tag: from,
            to_tag,
            kind,
            sdp: body,
            sender: Peer {
                source: "198.51.100.9".parse().unwrap(),
                nated,
                access: false,
            },
            target_nated: false,
        };
        self.d.on_message(&ev, self.now)
    }

    /// Send a message whose SDP must be rewritten through the relay; return the new body.
    fn relayed(&mut self, kind: SipKind, to_tag: Option<&str>, from: &str, body: &[u8]) -> String {
        let step = self.msg(kind, to_tag, from, Some(body));
        let BodyAction::Hold(op) = step.body else {
            panic!("not held: {step:?}");
        };
        let done = self.pump(step.send);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].op, op);
        match &done[0].outcome {
            Outcome::Rewrite(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn teardown(&mut self, step: Step) {
        assert_eq!(step.body, BodyAction::Unchanged);
        assert!(
            step.send
                .iter()
                .all(|r| matches!(r.command, Command::Delete(_))),
            "{step:?}"
        );
        let done = self.pump(step.send);
        assert!(done.is_empty());
    }

    fn assert_freed(&self) {
        assert_eq!(self.d.dialogs(), 0, "dialogs");
        assert_eq!(self.d.sessions(), 0, "sessions");
        assert!(
            self.relay.live.is_empty(),
            "relay sessions: {:?}",
            self.relay.live
        );
        assert_eq!(self.metrics.dialogs.get(), 0);
        assert_eq!(self.metrics.sessions.get(), 0);
    }
}

fn req(m: Method) -> SipKind {
    SipKind::Request(m)
}

fn resp(status: u16, m: Method) -> SipKind {
    SipKind::Response { status, method: m }
}

fn port_of(body: &str) -> Vec<u16> {
    body.lines()
        .filter_map(|l| l.strip_prefix("m=audio "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

fn commands(w: &World) -> Vec<String> {
    w.relay
        .seen
        .iter()
        .map(|(r, c)| {
            let mut v = Vec::new();
            c.encode(&mut v);
            format!("{r}:{}", String::from_utf8(v).unwrap())
        })
        .collect()
}

#[test]
fn basic_call_offer_answer_bye() {
    let mut w = World::new(MediaMode::Always);
    let offer = w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    assert!(offer.contains("c=IN IP4 203.0.113.1\r\n"));
    assert!(offer.contains("o=- 1 2 IN IP4 10.0.0.5"));
    assert_eq!(w.d.dialogs(), 1);
    assert_eq!(w.d.sessions(), 1);
    assert_eq!(w.metrics.dialogs.get(), 1);
    assert_eq!(
        w.msg(resp(180, Method::Invite), Some(CALLEE), CALLER, None),
        Step::unchanged(vec![])
    );
    let answer = w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    assert_ne!(port_of(&answer), port_of(&offer));
    assert_eq!(
        w.msg(req(Method::Ack), Some(CALLEE), CALLER, None),
        Step::unchanged(vec![])
    );
    let bye = w.msg(req(Method::Bye), Some(CALLEE), CALLER, None);
    w.teardown(bye);
    assert_eq!(
        commands(&w),
        [
            format!("0:U {CALL} 10.0.0.5 4000 {CALLER};1"),
            format!("0:L {CALL} 192.0.2.7 5000 {CALLER};1 {CALLEE};1"),
            format!("0:D {CALL} {CALLER}"),
        ]
    );
    w.assert_freed();
    assert_eq!(w.d.poll_timeout(), None);
}

#[test]
fn bye_from_callee_and_183_then_200_answers() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    let early = w.relayed(
        resp(183, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    let fin = w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    assert_eq!(port_of(&early), port_of(&fin));
    // A retransmitted 200 repeats the answer, not a new offer.
    let again = w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    assert_eq!(port_of(&again), port_of(&fin));
    assert!(commands(&w)[1..].iter().all(|c| c.starts_with("0:L ")));
    let bye = w.msg(req(Method::Bye), Some(CALLER), CALLEE, None);
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn forked_answers_are_all_lookups() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    w.relayed(
        resp(183, Method::Invite),
        Some("fork1"),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    w.relayed(
        resp(183, Method::Invite),
        Some("fork2"),
        CALLER,
        &sdp("192.0.2.8", &[5000]),
    );
    w.relayed(
        resp(200, Method::Invite),
        Some("fork1"),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    // Both forks answer 200; the second 2xx is forwarded too and is still an answer.
    w.relayed(
        resp(200, Method::Invite),
        Some("fork2"),
        CALLER,
        &sdp("192.0.2.8", &[5000]),
    );
    let c = commands(&w);
    assert_eq!(c.len(), 5);
    assert!(
        c[1..]
            .iter()
            .all(|c| c.starts_with(&format!("0:L {CALL} "))),
        "{c:?}"
    );
    assert!(c[4].ends_with(&format!("{CALLER};1 fork2;1")));
    let bye = w.msg(req(Method::Bye), Some("fork2"), CALLER, None);
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn reinvite_and_update_keep_relay_ports() {
    let mut w = World::new(MediaMode::Always);
    let offer = w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    let answer = w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    w.msg(req(Method::Ack), Some(CALLEE), CALLER, None);
    // Caller re-INVITE (hold), callee answers.
    let re = w.relayed(
        req(Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("0.0.0.0", &[4000]),
    );
    assert_eq!(port_of(&re), port_of(&offer));
    let re_ans = w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    assert_eq!(port_of(&re_ans), port_of(&answer));
    // Callee UPDATE: an offer from the callee side.
    let up = w.relayed(
        req(Method::Update),
        Some(CALLER),
        CALLEE,
        &sdp("192.0.2.7", &[5002]),
    );
    assert_eq!(port_of(&up), port_of(&answer));
    let up_ans = w.relayed(
        resp(200, Method::Update),
        Some(CALLER),
        CALLEE,
        &sdp("10.0.0.5", &[4000]),
    );
    assert_eq!(port_of(&up_ans), port_of(&offer));
    let c = commands(&w);
    assert_eq!(
        c[4],
        format!("0:U {CALL} 192.0.2.7 5002 {CALLEE};1 {CALLER};1")
    );
    assert_eq!(
        c[5],
        format!("0:L {CALL} 10.0.0.5 4000 {CALLEE};1 {CALLER};1")
    );
    // Every in-dialog command stayed on the call's relay.
    assert!(w.relay.seen.iter().all(|(r, _)| *r == 0));
    let bye = w.msg(req(Method::Bye), Some(CALLEE), CALLER, None);
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn cancel_frees() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    let cancel = w.msg(req(Method::Cancel), None, CALLER, None);
    w.teardown(cancel);
    w.assert_freed();
    // The 487 that follows finds nothing left to do.
    assert_eq!(
        w.msg(resp(487, Method::Invite), Some(CALLEE), CALLER, None),
        Step::unchanged(vec![])
    );
}

#[test]
fn cancel_after_the_2xx_keeps_the_call_until_bye() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    let cancel = w.msg(req(Method::Cancel), None, CALLER, None);
    assert_eq!(cancel, Step::unchanged(vec![]));
    assert_eq!(w.d.dialogs(), 1);
    let bye = w.msg(req(Method::Bye), Some(CALLEE), CALLER, None);
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn failure_response_frees_and_a_new_invite_starts_over() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    let fail = w.msg(resp(407, Method::Invite), Some("proxy"), CALLER, None);
    w.teardown(fail);
    w.assert_freed();
    // Authenticated retry: same Call-ID and From tag, a new call state.
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    assert_eq!(w.d.dialogs(), 1);
    let fail = w.msg(resp(486, Method::Invite), Some(CALLEE), CALLER, None);
    w.teardown(fail);
    w.assert_freed();
}

#[test]
fn invite_timeout_frees() {
    let mut w = World::new(MediaMode::Always);
    let t0 = w.now;
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    w.relayed(
        resp(183, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    assert_eq!(w.d.poll_timeout(), Some(t0 + Duration::from_secs(200)));
    assert!(w.d.on_timer(t0 + Duration::from_secs(199)).is_empty());
    let send = w.d.on_timer(t0 + Duration::from_secs(200));
    assert_eq!(send.len(), 1);
    w.teardown(Step::unchanged(send));
    w.assert_freed();
}

#[test]
fn max_duration_frees_a_call_without_bye() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    w.now += Duration::from_secs(10);
    let answered = w.now;
    w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    // The early timeout no longer applies once the call is confirmed.
    assert!(w.d.on_timer(answered + Duration::from_secs(300)).is_empty());
    assert_eq!(
        w.d.poll_timeout(),
        Some(answered + Duration::from_secs(3600))
    );
    let send = w.d.on_timer(answered + Duration::from_secs(3600));
    w.teardown(Step::unchanged(send));
    w.assert_freed();
}

#[test]
fn late_offer_in_200_answer_in_ack() {
    let mut w = World::new(MediaMode::Always);
    assert_eq!(
        w.msg(req(Method::Invite), None, CALLER, None),
        Step::unchanged(vec![])
    );
    assert_eq!(w.d.dialogs(), 1);
    let offer = w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    let answer = w.relayed(
        req(Method::Ack),
        Some(CALLEE),
        CALLER,
        &sdp("10.0.0.5", &[4000]),
    );
    assert_ne!(port_of(&offer), port_of(&answer));
    assert_eq!(
        commands(&w),
        [
            format!("0:U {CALL} 192.0.2.7 5000 {CALLEE};1 {CALLER};1"),
            format!("0:L {CALL} 10.0.0.5 4000 {CALLEE};1 {CALLER};1"),
        ]
    );
    let bye = w.msg(req(Method::Bye), Some(CALLER), CALLEE, None);
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn several_streams_follow_the_first_to_its_relay() {
    let mut w = World::new(MediaMode::Always);
    w.any = 1;
    let body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 4002 RTP/AVP 96\r\n";
    let step = w.msg(req(Method::Invite), None, CALLER, Some(body));
    assert_eq!(
        step.send.len(),
        1,
        "second stream waits for the relay choice"
    );
    assert_eq!(step.send[0].target, Target::Any);
    let done = w.pump(step.send);
    let Outcome::Rewrite(out) = &done[0].outcome else {
        panic!("{done:?}")
    };
    let out = String::from_utf8(out.clone()).unwrap();
    assert!(out.contains("m=audio 30000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=video 30002 "));
    assert_eq!(
        commands(&w),
        [
            format!("1:U {CALL} 10.0.0.5 4000 {CALLER};1"),
            format!("1:U {CALL} 10.0.0.5 4002 {CALLER};3"),
        ]
    );
    assert_eq!(w.d.sessions(), 2);
    assert_eq!(w.metrics.sessions.get(), 2);
    let bye = w.msg(req(Method::Bye), Some(CALLEE), CALLER, None);
    assert_eq!(bye.send[0].target, Target::Relay(1));
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn relay_timeout_on_initial_offer_fails_and_forgets_the_call() {
    let mut w = World::new(MediaMode::Always);
    let step = w.msg(
        req(Method::Invite),
        None,
        CALLER,
        Some(&sdp("10.0.0.5", &[4000])),
    );
    let id = step.send[0].id;
    let r = w.d.on_relay_reply(
        id,
        Err(ClientError::Timeout("127.0.0.1:22222".parse().unwrap())),
        w.now,
    );
    assert!(r.send.is_empty(), "no relay holds anything");
    assert!(matches!(
        r.done.unwrap().outcome,
        Outcome::Failed(MediaError::Relay(ClientError::Timeout(_)))
    ));
    w.assert_freed();
    // The rest of the call passes untouched.
    assert_eq!(
        w.msg(
            resp(200, Method::Invite),
            Some(CALLEE),
            CALLER,
            Some(&sdp("192.0.2.7", &[5000]))
        ),
        Step::unchanged(vec![])
    );
}

#[test]
fn second_stream_refused_fails_the_offer_and_deletes() {
    let mut w = World::new(MediaMode::Always);
    let step = w.msg(
        req(Method::Invite),
        None,
        CALLER,
        Some(&sdp("10.0.0.5", &[4000, 4002])),
    );
    let first = &step.send[0];
    let reply = w.relay.answer(0, &first.command);
    let r = w.d.on_relay_reply(first.id, Ok((0, reply)), w.now);
    assert!(r.done.is_none());
    assert_eq!(r.send.len(), 1);
    let r = w.d.on_relay_reply(
        r.send[0].id,
        Ok((0, Reply::Error(sbc_shared::proto::ErrorCode(8)))),
        w.now,
    );
    assert!(matches!(
        r.done.unwrap().outcome,
        Outcome::Failed(MediaError::Refused(_))
    ));
    w.teardown(Step::unchanged(r.send));
    w.assert_freed();
}

#[test]
fn cancel_while_first_offer_in_flight_deletes_once_the_relay_is_known() {
    let mut w = World::new(MediaMode::Always);
    w.any = 1;
    let step = w.msg(
        req(Method::Invite),
        None,
        CALLER,
        Some(&sdp("10.0.0.5", &[4000])),
    );
    let cancel = w.msg(req(Method::Cancel), None, CALLER, None);
    assert!(cancel.send.is_empty(), "relay not known yet");
    assert_eq!(w.d.dialogs(), 0);
    let done = w.pump(step.send);
    assert_eq!(done[0].outcome, Outcome::Failed(MediaError::Gone));
    assert_eq!(w.relay.deleted, vec![(1, CALL.to_owned())]);
    w.assert_freed();
    assert_eq!(w.d.held(), 0);
}

#[test]
fn lookup_refused_keeps_the_call() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    // The relay lost the session (restart): L answers 0 0.0.0.0.
    w.relay.live.clear();
    let step = w.msg(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        Some(&sdp("192.0.2.7", &[5000])),
    );
    let done = w.pump(step.send);
    assert!(matches!(
        done[0].outcome,
        Outcome::Failed(MediaError::Refused(_))
    ));
    assert_eq!(w.metrics.failures.with_label_values(&["refused"]).get(), 1);
    assert_eq!(w.d.dialogs(), 1);
    let bye = w.msg(req(Method::Bye), Some(CALLEE), CALLER, None);
    assert_eq!(bye.send.len(), 1);
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn failed_reinvite_keeps_the_call() {
    let mut w = World::new(MediaMode::Always);
    w.relayed(req(Method::Invite), None, CALLER, &sdp("10.0.0.5", &[4000]));
    w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("192.0.2.7", &[5000]),
    );
    w.relayed(
        req(Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("10.0.0.5", &[4000]),
    );
    let s = w.msg(resp(491, Method::Invite), Some(CALLEE), CALLER, None);
    assert!(s.send.is_empty());
    assert_eq!(w.d.dialogs(), 1);
    // The callee's next SDP is an offer again (the caller's offer was void).
    let step = w.msg(
        req(Method::Invite),
        Some(CALLER),
        CALLEE,
        Some(&sdp("192.0.2.7", &[5000])),
    );
    assert!(matches!(step.send[0].command, Command::Update(_)));
    w.pump(step.send);
    let bye = w.msg(req(Method::Bye), Some(CALLER), CALLEE, None);
    w.teardown(bye);
    w.assert_freed();
}

#[test]
fn mode_nat_relays_only_nated_calls() {
    let mut w = World::new(MediaMode::Nat);
    let body = sdp("10.0.0.5", &[4000]);
    let s = w.msg_nat(req(Method::Invite), None, CALLER, Some(&body), false);
    assert_eq!(s, Step::unchanged(vec![]));
    assert_eq!(w.d.dialogs(), 0);
    let s = w.msg_nat(req(Method::Invite), None, "other", Some(&body), true);
    assert!(matches!(s.body, BodyAction::Hold(_)));
    w.pump(s.send);
    assert_eq!(w.d.dialogs(), 1);
    let cancel = w.msg(req(Method::Cancel), None, "other", None);
    w.teardown(cancel);
    w.assert_freed();
}

#[test]
fn mode_never_fixes_nated_sdp_only() {
    let mut w = World::new(MediaMode::Never);
    let body = sdp("10.0.0.5", &[4000]);
    let s = w.msg_nat(req(Method::Invite), None, CALLER, Some(&body), true);
    let BodyAction::Replace(out) = s.body else {
        panic!("{s:?}")
    };
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("c=IN IP4 198.51.100.9\r\n"));
    assert!(out.contains("m=audio 4000 "));
    assert!(s.send.is_empty());
    // The (public) callee's answer is left alone; a NATed one is fixed.
    let s = w.msg_nat(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        Some(&body),
        false,
    );
    assert_eq!(s, Step::unchanged(vec![]));
    let s = w.msg_nat(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        Some(&body),
        true,
    );
    assert!(matches!(s.body, BodyAction::Replace(_)));
    assert_eq!(w.d.dialogs(), 0);
    assert!(w.relay.seen.is_empty());
}

#[test]
fn call_ids_and_tags_that_would_break_a_command_are_left_alone() {
    let mut w = World::new(MediaMode::Always);
    let body = sdp("10.0.0.5", &[4000]);
    for (call_id, tag) in [
        ("a b", "t"),
        ("a;x", "t"),
        ("", "t"),
        ("c", "t 1.2.3.4"),
        ("c", ""),
    ] {
        let ev = SipEvent {
            call_id,
            from_tag: tag,
            to_tag: None,
            kind: req(Method::Invite),
            sdp: Some(&body),
            sender: Peer {
                source: "198.51.100.9".parse().unwrap(),
                nated: false,
                access: false,
            },
            target_nated: false,
        };
        assert_eq!(w.d.on_message(&ev, w.now), Step::unchanged(vec![]));
    }
    assert_eq!(w.d.dialogs(), 0);
}

#[test]
fn unparsable_sdp_is_forwarded_unchanged() {
    let mut w = World::new(MediaMode::Always);
    let s = w.msg(req(Method::Invite), None, CALLER, Some(b"not sdp"));
    assert_eq!(s, Step::unchanged(vec![]));
    // The dialog exists (a later SDP may still be anchored) and is freed by its end.
    let cancel = w.msg(req(Method::Cancel), None, CALLER, None);
    w.teardown(cancel);
    w.assert_freed();
}

mod random {
    use super::*;
    use proptest::prelude::*;

    /// One step of a random run over three calls.
    #[derive(Debug, Clone)]
    enum Ev {
        /// A SIP message of call `c`.
        Sip { c: usize, what: u8, sdp: bool },
        /// Deliver in-flight relay request `i` (modulo their number): answered, or lost.
        Deliver { i: usize, ok: bool },
        /// Time passes.
        Wait { secs: u64 },
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            4 => (0usize..3, 0u8..12, any::<bool>()).prop_map(|(c, what, sdp)| Ev::Sip { c, what, sdp }),
            4 => (any::<usize>(), proptest::bool::weighted(0.85)).prop_map(|(i, ok)| Ev::Deliver { i, ok }),
            1 => (1u64..400).prop_map(|secs| Ev::Wait { secs }),
        ]
    }

    fn sip(c: usize, what: u8) -> (SipKind, &'static str, Option<&'static str>) {
        // (kind, from tag, to tag): caller "a", callee "b".
        match what {
            0 => (req(Method::Invite), "a", None),
            1 => (resp(183, Method::Invite), "a", Some("b")),
            2 => (resp(200, Method::Invite), "a", Some("b")),
            3 => (resp(486 + c as u16, Method::Invite), "a", Some("b")),
            4 => (req(Method::Ack), "a", Some("b")),
            5 => (req(Method::Invite), "a", Some("b")),
            6 => (req(Method::Invite), "b", Some("a")),
            7 => (resp(200, Method::Invite), "b", Some("a")),
            8 => (req(Method::Update), "b", Some("a")),
            9 => (req(Method::Bye), "a", Some("b")),
            10 => (req(Method::Bye), "b", Some("a")),
            _ => (req(Method::Cancel), "a", None),
        }
    }

    proptest! {
        /// Whatever the order of messages, relay answers and losses: once the run is over
        /// and the timers have fired, no relay session, dialog or held message is left.
        #[test]
        fn every_path_frees_the_relay(evs in proptest::collection::vec(ev(), 1..60)) {
            let mut w = World::new(MediaMode::Always);
            let mut flight: Vec<RelayRequest> = Vec::new();
            let calls = ["p0", "p1", "p2"];
            for e in evs {
                match e {
                    Ev::Sip { c, what, sdp: with } => {
                        let (kind, from, to) = sip(c, what);
                        let body = sdp("10.0.0.5", &[4000, 4002]);
                        let ev = SipEvent {
                            call_id: calls[c],
                            from_tag: from,
                            to_tag: to,
                            kind,
                            sdp: with.then_some(&body[..]),
                            sender: Peer { source: "198.51.100.9".parse().unwrap(), nated: false, access: false },
                            target_nated: false,
                        };
                        flight.extend(w.d.on_message(&ev, w.now).send);
                    }
                    Ev::Deliver { i, ok } => {
                        if flight.is_empty() {
                            continue;
                        }
                        let r = flight.remove(i % flight.len());
                        let relay = match r.target { Target::Any => 0, Target::Relay(x) => x };
                        // A D that never reaches the relay leaves the session to the
                        // relay's own inactivity timeout: not this machine's to free.
                        let ok = ok || matches!(r.command, Command::Delete(_));
                        let result = if ok {
                            Ok((relay, w.relay.answer(relay, &r.command)))
                        } else {
                            Err(ClientError::Timeout("127.0.0.1:22222".parse().unwrap()))
                        };
                        flight.extend(w.d.on_relay_reply(r.id, result, w.now).send);
                    }
                    Ev::Wait { secs } => {
                        w.now += Duration::from_secs(secs);
                        flight.extend(w.d.on_timer(w.now));
                    }
                }
            }
            // Drain: answer everything in flight, let every timer fire, answer again.
            w.pump(std::mem::take(&mut flight));
            let later = w.now + Duration::from_secs(100_000);
            let send = w.d.on_timer(later);
            w.pump(send);
            prop_assert_eq!(w.d.dialogs(), 0);
            prop_assert_eq!(w.d.sessions(), 0);
            prop_assert_eq!(w.d.held(), 0);
            prop_assert!(w.relay.live.is_empty(), "relay still holds {:?}", w.relay.live);
            prop_assert_eq!(w.d.poll_timeout(), None);
        }
    }
}

/// CPU per call of the media core (parse, U/L/D, rewrite of offer and answer), measured in
/// the build profile of the test run. Ignored: a figure, run with `--ignored --nocapture`.
#[test]
#[ignore]
fn cost_per_call() {
    let mut w = World::new(MediaMode::Always);
    let offer = sdp("10.0.0.5", &[4000]);
    let answer = sdp("192.0.2.7", &[5000]);
    let n = 20_000;
    let start = std::time::Instant::now();
    for i in 0..n {
        let call = format!("perf-{i}");
        for (kind, from, to, body) in [
            (req(Method::Invite), CALLER, None, Some(&offer[..])),
            (
                resp(200, Method::Invite),
                CALLER,
                Some(CALLEE),
                Some(&answer[..]),
            ),
            (req(Method::Bye), CALLER, Some(CALLEE), None),
        ] {
            let e = SipEvent {
                call_id: &call,
                from_tag: from,
                to_tag: to,
                kind,
                sdp: body,
                sender: Peer {
                    source: "198.51.100.9".parse().unwrap(),
                    nated: false,
                    access: false,
                },
                target_nated: false,
            };
            let step = w.d.on_message(&e, w.now);
            w.pump(step.send);
        }
    }
    let per_call = start.elapsed() / n;
    println!("media core: {per_call:?} per call (offer + answer + bye, fake relay included)");
    w.assert_freed();
    assert!(per_call < Duration::from_millis(1));
}

/// An on-net call crosses the edge twice (A → edge → core → edge → B) with the same Call-ID and
/// tags. The second pass carries SDP that already names the relay: it must go through
/// unchanged, so that one relay session joins A and B (before, the second pass sent U/L with
/// the relay's own address and each side's media looped into the relay).
#[test]
fn call_crossing_the_edge_twice_is_anchored_once() {
    let mut w = World::new(MediaMode::Always);
    let a = sdp("10.0.0.5", &[4000]);
    let b = sdp("10.0.0.9", &[6000]);
    // Pass 1: A's offer from the access side, toward the core.
    let to_core = w.relayed(req(Method::Invite), None, CALLER, &a);
    // Pass 2: the core sends it back to the edge, toward B.
    let to_b = w.msg(req(Method::Invite), None, CALLER, Some(to_core.as_bytes()));
    assert_eq!(to_b, Step::unchanged(vec![]), "second pass re-anchored");
    // B answers (pass 2): this answer is the one that reaches the relay, with B's address.
    let answer = w.relayed(resp(200, Method::Invite), Some(CALLEE), CALLER, &b);
    // Pass 1 sees that answer coming back from the core: unchanged to A.
    let to_a = w.msg(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        Some(answer.as_bytes()),
    );
    assert_eq!(to_a, Step::unchanged(vec![]));
    // A re-INVITE from B (hold) takes the same path the other way round.
    let hold = sdp("10.0.0.9", &[6000]);
    let to_core = w.relayed(req(Method::Invite), Some(CALLER), CALLEE, &hold);
    let again = w.msg(
        req(Method::Invite),
        Some(CALLER),
        CALLEE,
        Some(to_core.as_bytes()),
    );
    assert_eq!(again, Step::unchanged(vec![]));
    let a_answer = w.relayed(resp(200, Method::Invite), Some(CALLER), CALLEE, &a);
    let back = w.msg(
        resp(200, Method::Invite),
        Some(CALLER),
        CALLEE,
        Some(a_answer.as_bytes()),
    );
    assert_eq!(back, Step::unchanged(vec![]));
    // Every command named a phone, never the relay's own 203.0.113.1.
    let cmds = commands(&w);
    assert!(cmds.iter().all(|c| !c.contains("203.0.113.1")), "{cmds:?}");
    assert_eq!(
        cmds,
        [
            format!("0:U {CALL} 10.0.0.5 4000 {CALLER};1"),
            format!("0:L {CALL} 10.0.0.9 6000 {CALLER};1 {CALLEE};1"),
            format!("0:U {CALL} 10.0.0.9 6000 {CALLEE};1 {CALLER};1"),
            format!("0:L {CALL} 10.0.0.5 4000 {CALLEE};1 {CALLER};1"),
        ]
    );
    let bye = w.msg(req(Method::Bye), Some(CALLEE), CALLER, None);
    w.teardown(bye);
    w.assert_freed();
    // Once the call is gone its relay ports are forgotten: a later SDP naming them (a new
    // call that got the same ports) is anchored as usual.
    assert!(w.d.anchored.is_empty());
}

/// Issue 9: a phone's private SDP address is replaced by its signalling source in the relay
/// command (the relay then latches only that IP); the core's SDP is taken as it is.
#[test]
fn access_phones_give_the_relay_their_source_ip() {
    let mut w = World::new(MediaMode::Always);
    let phone = |nated| Peer {
        source: "198.51.100.9".parse().unwrap(),
        nated,
        access: true,
    };
    let ev = SipEvent {
        call_id: CALL,
        from_tag: CALLER,
        to_tag: None,
        kind: req(Method::Invite),
        sdp: Some(&sdp("192.168.1.10", &[4000])),
        sender: phone(false),
        target_nated: false,
    };
    let step = w.d.on_message(&ev, w.now);
    w.pump(step.send);
    // The core answers from a private media gateway: kept.
    w.relayed(
        resp(200, Method::Invite),
        Some(CALLEE),
        CALLER,
        &sdp("10.20.0.7", &[5000]),
    );
    assert_eq!(
        commands(&w),
        [
            format!("0:U {CALL} 198.51.100.9 4000 {CALLER};1"),
            format!("0:L {CALL} 10.20.0.7 5000 {CALLER};1 {CALLEE};1"),
        ]
    );
}

/// Issue 9: an SDP with more streams than `max_streams` opens nothing on the relay and the
/// request is refused with 488; the call is not remembered; a normal call still works.
#[test]
fn too_many_streams_are_refused_before_any_relay_command() {
    let mut w = World::new(MediaMode::Always);
    let ports: Vec<u16> = (0..200).map(|i| 4000 + 2 * i).collect();
    let step = w.msg(
        req(Method::Invite),
        None,
        CALLER,
        Some(&sdp("10.0.0.5", &ports)),
    );
    assert_eq!(
        step.body,
        BodyAction::Refuse {
            status: 488,
            reason: "Not Acceptable Here (too many media streams)"
        }
    );
    assert!(step.send.is_empty());
    assert_eq!((w.d.dialogs(), w.d.sessions()), (0, 0));
    // Exactly at the limit is fine.
    let offer = w.relayed(
        req(Method::Invite),
        None,
        CALLER,
        &sdp("10.0.0.5", &ports[..8]),
    );
    assert!(offer.contains("c=IN IP4 203.0.113.1\r\n"));
    assert_eq!(w.d.sessions(), 8);
    // A re-INVITE of the call that grows it past the limit is refused too; the call stays.
    let step = w.msg(
        req(Method::Invite),
        Some(CALLEE),
        CALLER,
        Some(&sdp("10.0.0.5", &ports[..9])),
    );
    assert!(matches!(step.body, BodyAction::Refuse { status: 488, .. }));
    assert_eq!(w.d.dialogs(), 1);
}
