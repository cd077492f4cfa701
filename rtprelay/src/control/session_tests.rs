//! SessionManager tests through the codec, against the fake media plane.

use super::fake::{FakeBackend, FakeCalls};
use super::proto::{Command, Reply};
use super::{Client, Quotas, SessionConfig, SessionManager};
use crate::backend::{BackendError, LegCounters, LegId};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const INTERNAL: [u8; 4] = [127, 0, 0, 1];
const EXTERNAL: [u8; 4] = [127, 0, 0, 2];

fn cfg() -> SessionConfig {
    SessionConfig {
        internal: IpAddr::from(INTERNAL),
        advertise: None,
        external: Some(IpAddr::from(EXTERNAL)),
        timeout: Duration::from_secs(60),
        max_sessions: 100,
        media_ports: (30000, 30099),
        quotas: Default::default(),
    }
}

struct T {
    m: SessionManager,
    b: FakeBackend,
    now: Instant,
}

impl T {
    fn new() -> T {
        T::with(cfg(), 64)
    }

    fn with(cfg: SessionConfig, legs: usize) -> T {
        T {
            m: SessionManager::new(cfg),
            b: FakeBackend::new(30000, legs),
            now: Instant::now(),
        }
    }

    fn run(&mut self, s: &str) -> Reply {
        let cmd = Command::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
        self.m.handle(&cmd, &mut self.b, self.now)
    }

    fn text(&mut self, s: &str) -> String {
        let mut out = Vec::new();
        self.run(s).encode(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn port(&mut self, s: &str) -> u16 {
        match self.run(s).port() {
            Some((p, _)) if p != 0 => p,
            other => panic!("{s}: no port: {other:?}"),
        }
    }
}

fn leg(port: u16) -> LegId {
    LegId { shard: 0, port }
}

fn sa(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn version_and_features() {
    let mut t = T::new();
    assert_eq!(t.text("V"), "20040107");
    assert_eq!(t.text("VF 20050322"), "1");
    assert_eq!(t.text("VF 20080403"), "1");
    assert_eq!(t.text("VF 20071116"), "0");
    assert_eq!(t.text("VF 20081224"), "0");
}

#[test]
fn offer_creates_stream_and_answers_b_port() {
    let mut t = T::new();
    assert_eq!(t.text("U call1 192.0.2.10 4000 ftag;1"), "30002 127.0.0.1");
    let a = t.b.spec(leg(30000)).unwrap();
    assert_eq!(a.remote, sa("192.0.2.10:4000"));
    assert!(a.symmetric);
    assert_eq!(a.local_ip, IpAddr::from(INTERNAL));
    let b = t.b.spec(leg(30002)).unwrap();
    assert_eq!(b.remote, None);
    assert_eq!((t.m.sessions(), t.m.streams()), (1, 1));
}

#[test]
fn repeated_offer_updates_a_and_returns_same_port() {
    let mut t = T::new();
    let calls = t.b.calls();
    let p1 = t.port("U call1 192.0.2.10 4000 ftag;1");
    let p2 = t.port("U call1 192.0.2.11 4002 ftag;1 ttag;1");
    assert_eq!(p1, p2);
    assert_eq!(FakeCalls::get(&calls.create), 1);
    assert_eq!(FakeCalls::get(&calls.update), 1);
    assert_eq!(t.b.spec(leg(30000)).unwrap().remote, sa("192.0.2.11:4002"));
    assert_eq!(t.m.streams(), 1);
}

#[test]
fn lookup_sets_b_and_answers_a_port() {
    let mut t = T::new();
    assert_eq!(t.port("U call1 192.0.2.10 4000 ftag;1"), 30002);
    // 200 OK: From/To as in the dialog, address of the callee.
    assert_eq!(
        t.text("L call1 198.51.100.7 5000 ftag;1 ttag;1"),
        "30000 127.0.0.1"
    );
    assert_eq!(
        t.b.spec(leg(30002)).unwrap().remote,
        sa("198.51.100.7:5000")
    );
    // Repeated L (retransmitted 200 OK): same answer.
    assert_eq!(t.port("L call1 198.51.100.7 5000 ftag;1 ttag;1"), 30000);
}

#[test]
fn lookup_matches_swapped_tags() {
    // Late offer: the 200 OK carries the offer (U with the callee's tag first), the ACK the
    // answer, and Kamailio swaps the tags for a request: L callid ip port callee caller.
    let mut t = T::new();
    assert_eq!(t.port("U call1 198.51.100.7 5000 callee;1 caller;1"), 30002);
    assert_eq!(t.port("L call1 192.0.2.10 4000 callee;1 caller;1"), 30000);
    assert_eq!(t.b.spec(leg(30002)).unwrap().remote, sa("192.0.2.10:4000"));
    // The same answer with unswapped tags finds the same stream from the other side.
    assert_eq!(t.port("L call1 198.51.100.8 5002 caller;1 callee;1"), 30002);
    assert_eq!(
        t.b.spec(leg(30000)).unwrap().remote,
        sa("198.51.100.8:5002")
    );
    assert_eq!(t.m.streams(), 1);
}

#[test]
fn lookup_unknown_session_answers_port_zero() {
    let mut t = T::new();
    assert_eq!(t.text("L nocall 192.0.2.1 4000 a;1 b;1"), "0 0.0.0.0");
    assert_eq!(t.text("L nocall ::1 4000 a;1 b;1"), "0 :: 6");
    t.port("U call1 192.0.2.10 4000 ftag;1");
    assert_eq!(t.text("L call1 192.0.2.1 4000 other;1 x;1"), "0 0.0.0.0");
    assert_eq!(t.text("L call1 192.0.2.1 4000 ftag;2 ttag;2"), "0 0.0.0.0");
    assert_eq!(t.m.streams(), 1);
}

#[test]
fn reinvite_from_callee_updates_b() {
    let mut t = T::new();
    t.port("U call1 192.0.2.10 4000 caller;1");
    t.port("L call1 198.51.100.7 5000 caller;1 callee;1");
    // re-INVITE from the callee: its From tag is the dialog's callee tag.
    assert_eq!(t.port("U call1 198.51.100.9 5004 callee;1 caller;1"), 30000);
    assert_eq!(
        t.b.spec(leg(30002)).unwrap().remote,
        sa("198.51.100.9:5004")
    );
    assert_eq!(t.port("L call1 192.0.2.12 4004 callee;1 caller;1"), 30002);
    assert_eq!(t.b.spec(leg(30000)).unwrap().remote, sa("192.0.2.12:4004"));
}

#[test]
fn hold_address_clears_remote() {
    let mut t = T::new();
    t.port("U call1 192.0.2.10 4000 ftag;1");
    t.port("U call1 0.0.0.0 4000 ftag;1");
    assert_eq!(t.b.spec(leg(30000)).unwrap().remote, None);
    t.port("U call1 192.0.2.10 0 ftag;1");
    assert_eq!(t.b.spec(leg(30000)).unwrap().remote, None);
}

#[test]
fn asymmetric_modifier() {
    let mut t = T::new();
    t.port("Ua call1 192.0.2.10 4000 ftag;1");
    assert!(!t.b.spec(leg(30000)).unwrap().symmetric);
    assert!(t.b.spec(leg(30002)).unwrap().symmetric);
    t.port("LA call1 192.0.2.11 4000 ftag;1 ttag;1");
    assert!(!t.b.spec(leg(30002)).unwrap().symmetric);
    t.port("U call1 192.0.2.10 4000 ftag;1");
    assert!(t.b.spec(leg(30000)).unwrap().symmetric);
}

#[test]
fn interface_selection() {
    let mut t = T::new();
    // Caller on the external side, callee internal: B's port is announced internally.
    assert_eq!(
        t.text("Uei call1 192.0.2.10 4000 ftag;1"),
        "30002 127.0.0.1"
    );
    assert_eq!(
        t.b.spec(leg(30000)).unwrap().local_ip,
        IpAddr::from(EXTERNAL)
    );
    assert_eq!(
        t.b.spec(leg(30002)).unwrap().local_ip,
        IpAddr::from(INTERNAL)
    );
    assert_eq!(
        t.text("Lie call1 10.0.0.5 4000 ftag;1 ttag;1"),
        "30000 127.0.0.2"
    );
    // Kamailio's upper-case form, and l<addr>.
    assert_eq!(t.text("UIE call2 10.0.0.9 4000 f;1"), "30006 127.0.0.2");
    assert_eq!(
        t.text("Ul127.0.0.2 call3 192.0.2.1 4000 f;1"),
        "30010 127.0.0.1"
    );
    assert_eq!(
        t.b.spec(leg(30008)).unwrap().local_ip,
        IpAddr::from(EXTERNAL)
    );
    assert_eq!(t.text("Ul10.9.9.9 call4 192.0.2.1 4000 f;1"), "E33");

    let mut no_ext = T::with(
        SessionConfig {
            external: None,
            ..cfg()
        },
        8,
    );
    assert_eq!(no_ext.text("Ue call1 192.0.2.1 4000 f;1"), "E33");
    assert_eq!(no_ext.m.streams(), 0);
}

#[test]
fn advertised_and_ipv6_addresses() {
    let adv: IpAddr = "203.0.113.5".parse().unwrap();
    let mut t = T::with(
        SessionConfig {
            advertise: Some(adv),
            ..cfg()
        },
        8,
    );
    assert_eq!(t.text("U c 192.0.2.1 4000 f;1"), "30002 203.0.113.5");
    assert_eq!(
        t.text("Ul203.0.113.5 c2 192.0.2.1 4000 f;1"),
        "30006 203.0.113.5"
    );

    let v6: IpAddr = "::1".parse().unwrap();
    let mut t = T::with(
        SessionConfig {
            internal: v6,
            external: None,
            ..cfg()
        },
        8,
    );
    assert_eq!(t.text("U6 c 2001:db8::1 4000 f;1"), "30002 ::1 6");
    assert_eq!(
        t.b.spec(leg(30000)).unwrap().remote,
        sa("[2001:db8::1]:4000")
    );

    let any: IpAddr = "0.0.0.0".parse().unwrap();
    let mut t = T::with(
        SessionConfig {
            internal: any,
            external: None,
            ..cfg()
        },
        8,
    );
    assert_eq!(t.text("U c 192.0.2.1 4000 f;1"), "30002");
}

#[test]
fn streams_and_branches_are_separate() {
    let mut t = T::new();
    let s1 = t.port("U call1 192.0.2.10 4000 ftag;1");
    let s2 = t.port("U call1 192.0.2.10 4002 ftag;2");
    let s3 = t.port("U call1;z9hG4bKx 192.0.2.10 4000 ftag;1");
    assert!(s1 != s2 && s2 != s3 && s1 != s3);
    assert_eq!((t.m.sessions(), t.m.streams()), (1, 3));
    // D with a branch only deletes that branch; without, everything of the Call-ID.
    assert_eq!(t.text("D call1;z9hG4bKx ftag"), "0");
    assert_eq!(t.m.streams(), 2);
    assert_eq!(t.text("D call1 ftag"), "0");
    assert_eq!((t.m.sessions(), t.m.streams()), (0, 0));
    assert_eq!(t.b.live_legs(), 0);
}

#[test]
fn delete_dialog_and_unknown() {
    let mut t = T::new();
    t.port("U call1 192.0.2.10 4000 caller;1");
    t.port("L call1 198.51.100.7 5000 caller;1 callee;1");
    assert_eq!(t.text("D nocall caller"), "E50");
    assert_eq!(t.text("D call1 stranger"), "E50");
    assert_eq!(t.text("D call1 caller otherfork"), "E50");
    assert_eq!(t.text("D call1 caller;2"), "E50");
    assert_eq!(t.m.streams(), 1);
    // BYE from the callee: tags reversed.
    assert_eq!(t.text("D call1 callee caller"), "0");
    assert_eq!(t.m.streams(), 0);
    assert_eq!(t.text("D call1 callee caller"), "E50");
}

#[test]
fn delete_before_answer_matches_any_to_tag() {
    let mut t = T::new();
    t.port("U call1 192.0.2.10 4000 caller;1");
    assert_eq!(t.text("D call1 caller callee"), "0");
    assert_eq!(t.m.streams(), 0);
}

#[test]
fn fork_answer_rebinds_b() {
    let mut t = T::new();
    t.port("U call1 192.0.2.10 4000 caller;1");
    t.port("L call1 198.51.100.7 5000 caller;1 fork1;1");
    assert_eq!(t.port("L call1 198.51.100.8 5000 caller;1 fork2;1"), 30000);
    assert_eq!(
        t.b.spec(leg(30002)).unwrap().remote,
        sa("198.51.100.8:5000")
    );
    assert_eq!(t.text("D call1 caller fork1"), "E50");
    assert_eq!(t.text("D call1 fork2 caller"), "0");
}

#[test]
fn weak_references() {
    let mut t = T::new();
    // Created weak only: a plain D does not remove it, Dw does.
    t.port("Uw call1 192.0.2.10 4000 caller;1");
    assert_eq!(t.text("D call1 caller"), "0");
    assert_eq!(t.m.streams(), 1);
    assert_eq!(t.text("Dw call1 caller"), "0");
    assert_eq!(t.m.streams(), 0);

    // Strong (U) plus weak on B (Lw): D leaves it for the weak user, Dw from B removes it.
    t.port("U call2 192.0.2.10 4000 caller;1");
    t.port("Lw call2 198.51.100.7 5000 caller;1 callee;1");
    assert_eq!(t.text("D call2 caller callee"), "0");
    assert_eq!(t.m.streams(), 1);
    assert_eq!(t.text("Dw call2 caller callee"), "0"); // A side's weak ref: none held
    assert_eq!(t.m.streams(), 1);
    assert_eq!(t.text("Dw call2 callee caller"), "0");
    assert_eq!(t.m.streams(), 0);
}

#[test]
fn query_counters_and_ttl() {
    let mut t = T::new();
    t.port("U call1 192.0.2.10 4000 caller;1");
    t.port("L call1 198.51.100.7 5000 caller;1 callee;1");
    let a = LegCounters {
        packets_in: 10,
        bytes_in: 1720,
        packets_out: 9,
        bytes_out: 1548,
        dropped: 1,
        latched: sa("192.0.2.10:4000"),
        idle: Some(Duration::from_secs(5)),
        ..LegCounters::default()
    };
    let b = LegCounters {
        packets_in: 9,
        bytes_in: 1548,
        packets_out: 10,
        bytes_out: 1720,
        dropped: 2,
        latched: None,
        idle: Some(Duration::from_secs(20)),
        ..LegCounters::default()
    };
    t.b.set_counters(leg(30000), a);
    t.b.set_counters(leg(30002), b);
    t.now += Duration::from_secs(30);
    // ttl = 60 - min(idle 5, idle 20, 30 since signalling) = 55.
    assert_eq!(t.text("Q call1 caller callee"), "55 10 9 19 3");
    assert_eq!(t.text("Q call1 callee caller"), "55 10 9 19 3");
    assert_eq!(
        t.text("Q call1 caller callee ttl packets_in bytes_out"),
        "55 19 3268"
    );
    assert_eq!(
        t.text("Qv call1 caller callee"),
        "ttl=55 packets_in=19 packets_out=19 packets_dropped=3 bytes_in=3268 bytes_out=3268"
    );
    assert_eq!(
        t.text("Qv call1 caller callee packets_dropped"),
        "packets_dropped=3"
    );
    assert_eq!(t.text("Q call1 caller callee bogus"), "E34");
    assert_eq!(t.text("Q call1 nobody"), "E50");
    assert_eq!(t.text("Q nocall caller"), "E50");
    t.b.fail_next(BackendError::Unavailable);
    assert_eq!(t.text("Q call1 caller"), "E62");
    // Long idle: ttl bottoms out at 0.
    t.b.set_counters(
        leg(30000),
        LegCounters {
            idle: Some(Duration::from_secs(600)),
            ..a
        },
    );
    t.b.set_counters(leg(30002), LegCounters { idle: None, ..b });
    t.now += Duration::from_secs(100);
    assert_eq!(t.text("Q call1 caller callee ttl"), "0");
}

#[test]
fn info_and_global_stats() {
    let mut t = T::new();
    t.port("U call1 192.0.2.10 4000 caller;1");
    t.port("U call2 192.0.2.11 4000 caller;1");
    t.b.set_counters(
        leg(30000),
        LegCounters {
            packets_in: 7,
            packets_out: 5,
            dropped: 1,
            ..Default::default()
        },
    );
    t.run("D call2 caller");
    assert_eq!(
        t.text("Ib"),
        "sessions created: 2\nactive sessions: 1\nactive calls: 1\nsessions timed out: 0"
    );
    let full = t.text("I");
    assert!(
        full.contains("call1/1 caller/NONE: caller = 30000 -> 192.0.2.10:4000"),
        "{full}"
    );
    assert_eq!(t.text("G"), "2 1 0 1 1 7 5 1");
    assert_eq!(t.text("G nsess_created npkts_rcvd"), "2 7");
    assert_eq!(t.text("Gv nsess_active"), "nsess_active=1");
    assert_eq!(t.text("G bogus"), "E34");
    t.b.fail_next(BackendError::Unavailable);
    assert_eq!(t.text("G npkts_relayed"), "E68");
    // Counters of ended streams stay in the totals.
    t.run("D call1 caller");
    assert_eq!(t.text("G npkts_rcvd npkts_relayed npkts_discard"), "7 5 1");
}

#[test]
fn info_lists_at_most_the_limit() {
    let mut t = T::with(
        SessionConfig {
            max_sessions: 1000,
            media_ports: (30000, 30099),
            quotas: Default::default(),
            ..cfg()
        },
        2 * (super::INFO_MAX_STREAMS + 5),
    );
    for i in 0..super::INFO_MAX_STREAMS + 3 {
        t.port(&format!("U call{i} 192.0.2.1 4000 f;1"));
    }
    let s = t.text("I");
    assert!(s.ends_with("\n... 3 more"), "{s}");
}

#[test]
fn delete_all() {
    let mut t = T::new();
    for i in 0..5 {
        t.port(&format!("U call{i} 192.0.2.1 4000 f;1"));
        t.port(&format!("U call{i} 192.0.2.1 4002 f;2"));
    }
    assert_eq!(t.m.streams(), 10);
    assert_eq!(t.text("X"), "0");
    assert_eq!((t.m.sessions(), t.m.streams()), (0, 0));
    assert_eq!(t.b.live_legs(), 0);
    assert_eq!(t.b.free_legs(), 64);
}

#[test]
fn port_exhaustion_and_backend_errors() {
    let mut t = T::with(cfg(), 3);
    t.port("U call1 192.0.2.1 4000 f;1");
    assert_eq!(t.text("U call2 192.0.2.1 4000 f;1"), "E81");
    assert_eq!(t.m.streams(), 1);
    t.run("D call1 f");
    assert_eq!(t.port("U call2 192.0.2.1 4000 f;1"), 30002);
    t.run("X");
    t.b.fail_next(BackendError::Bind("in use".into()));
    assert_eq!(t.text("U call3 192.0.2.1 4000 f;1"), "E82");
    t.b.fail_next(BackendError::Unavailable);
    assert_eq!(t.text("U call3 192.0.2.1 4000 f;1"), "E98");
    assert_eq!(t.m.streams(), 0);
}

#[test]
fn session_limit() {
    let mut t = T::with(
        SessionConfig {
            max_sessions: 2,
            media_ports: (30000, 30099),
            quotas: Default::default(),
            ..cfg()
        },
        64,
    );
    t.port("U call1 192.0.2.1 4000 f;1");
    t.port("U call2 192.0.2.1 4000 f;1");
    assert_eq!(t.text("U call3 192.0.2.1 4000 f;1"), "E98");
    // A further stream of a known call is not a new session.
    t.port("U call2 192.0.2.1 4002 f;2");
    assert_eq!((t.m.sessions(), t.m.streams()), (2, 3));
}

#[test]
fn unknown_leg_on_update_forgets_stream() {
    let mut t = T::new();
    t.port("U call1 192.0.2.1 4000 f;1");
    t.b.fail_next(BackendError::UnknownLeg);
    assert_eq!(t.text("U call1 192.0.2.1 4000 f;1"), "E50");
    assert_eq!(t.m.streams(), 0);
    // The next offer starts afresh.
    assert!(t.port("U call1 192.0.2.1 4000 f;1") > 0);
}

#[test]
fn expire_drops_timed_out_streams() {
    let mut t = T::new();
    t.port("U call1 192.0.2.1 4000 f;1");
    t.port("U call1 192.0.2.1 4002 f;2");
    t.port("U call2 192.0.2.1 4000 f;1");
    assert_eq!(t.m.expire(&mut t.b, t.now), 0);
    assert!(t.b.expire(leg(30000)));
    assert!(t.b.expire(leg(30008)));
    assert_eq!(t.m.expire(&mut t.b, t.now), 2);
    assert_eq!((t.m.sessions(), t.m.streams()), (1, 1));
    assert_eq!(t.m.totals().streams_timed_out, 2);
    assert_eq!(t.text("Q call2 f"), "E50");
    assert_eq!(t.text("Q call1 f;2").split(' ').count(), 5);
    assert_eq!(t.text("Q call1 f;1"), "E50");
}

#[test]
fn media_ops_are_refused() {
    let mut t = T::new();
    assert_eq!(t.text("R call1 f t"), "E65");
    assert_eq!(t.text("N call1 f t"), "E65");
    assert_eq!(t.text("C call1 x f t"), "E65");
    assert_eq!(t.text("P call1 prompt 0 f t"), "E60");
    assert_eq!(t.text("S call1 f t"), "E60");
}

mod random {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = String> {
        let call = prop_oneof![Just("c1"), Just("c2"), Just("c3;br")];
        let tag = prop_oneof![
            Just("t1"),
            Just("t2"),
            Just("t3"),
            Just("t1;2"),
            Just("t2;2")
        ];
        let mods = prop_oneof![Just(""), Just("w"), Just("a"), Just("ei"), Just("ie")];
        let addr = prop_oneof![
            Just("192.0.2.1 4000"),
            Just("0.0.0.0 0"),
            Just("2001:db8::1 5000")
        ];
        (0..8u8, call, tag.clone(), tag, mods, addr).prop_map(|(k, c, f, t, m, a)| match k {
            0 | 1 => format!("U{m} {c} {a} {f}"),
            2 => format!("U{m} {c} {a} {f} {t}"),
            3 => format!("L{m} {c} {a} {f} {t}"),
            4 => format!("D{} {c} {f}", if m == "w" { "w" } else { "" }),
            5 => format!("D{} {c} {f} {t}", if m == "w" { "w" } else { "" }),
            6 => format!("Q {c} {f} {t}"),
            _ => "EXPIRE".to_string(),
        })
    }

    proptest! {
        /// Any command sequence keeps the manager and the media plane in agreement: every
        /// stream the manager knows owns exactly two live legs, nothing leaks, nothing panics.
        #[test]
        fn manager_and_media_plane_agree(ops in proptest::collection::vec(op(), 1..60), x in any::<bool>()) {
            let mut t = T::with(SessionConfig { max_sessions: 2, ..cfg() }, 10);
            for o in &ops {
                if o == "EXPIRE" {
                    // Time out the lowest live A leg, if any.
                    if let Some(p) = (30000..30020).step_by(2).find(|p| t.b.spec(leg(*p)).is_some()) {
                        if t.b.expire(leg(p)) {
                            let now = t.now;
                            t.m.expire(&mut t.b, now);
                        }
                    }
                } else {
                    let _ = t.run(o);
                }
                prop_assert_eq!(t.m.streams() * 2, t.b.live_legs(), "after {}", o);
                prop_assert!(t.m.sessions() <= t.m.streams());
                prop_assert!(t.m.sessions() <= 2);
                prop_assert_eq!(t.m.calls_of(Client::Local), t.m.sessions(), "after {}", o);
            }
            if x {
                t.run("X");
                prop_assert_eq!((t.m.streams(), t.b.live_legs(), t.b.free_legs()), (0, 0, 10));
            }
        }
    }
}

#[test]
fn offer_or_answer_naming_our_own_socket_is_refused() {
    let mut t = T::new();
    // The call's first pass is anchored normally.
    let b_port = t.port("U c1 192.0.2.1 4000 alice;1");
    // Second pass through the same relay: the SDP now names the relay's own port.
    assert_eq!(
        t.text(&format!("U c1 127.0.0.1 {b_port} alice;1 bob;1")),
        "E35"
    );
    assert_eq!(t.text("L c1 127.0.0.2 30010 alice;1 bob;1"), "E35");
    assert_eq!(t.m.totals().loops_refused, 2);
    // Nothing changed: the stream still sends toward the phone's address.
    assert_eq!(t.m.streams(), 1);
    // The same IP outside the media range, or another IP, is a party like any other.
    let a_port = t.port("L c1 127.0.0.1 5004 alice;1 bob;1");
    assert_ne!(a_port, b_port);
    assert_eq!(t.m.totals().loops_refused, 2);
}

#[test]
fn per_call_stream_quota_answers_e83_and_keeps_the_call() {
    let quotas = Quotas {
        max_streams_per_call: 3,
        max_sessions_per_client: 0,
    };
    let mut t = T::with(SessionConfig { quotas, ..cfg() }, 64);
    for n in 1..=3 {
        t.port(&format!("U big 192.0.2.1 {} alice;{n}", 4000 + 2 * n));
    }
    assert_eq!(t.text("U big 192.0.2.1 5000 alice;4"), "E83");
    assert_eq!(t.text("U big 192.0.2.1 5002 alice;200"), "E83");
    assert_eq!(t.m.streams(), 3);
    assert_eq!(t.m.totals().stream_quota_refused, 2);
    // Existing streams are still updated (re-INVITE), and other calls are not affected.
    t.port("U big 192.0.2.1 4100 alice;1");
    t.port("U other 192.0.2.1 4000 bob;1");
    assert_eq!(t.m.streams(), 4);
}

#[test]
fn per_client_session_quota_answers_e84_per_client() {
    let quotas = Quotas {
        max_streams_per_call: 0,
        max_sessions_per_client: 2,
    };
    let mut t = T::with(SessionConfig { quotas, ..cfg() }, 64);
    let greedy = Client::Ip("192.0.2.66".parse().expect("ip"));
    let other = Client::Ip("192.0.2.77".parse().expect("ip"));
    let run = |t: &mut T, client, s: &str| {
        let cmd = Command::parse(s.as_bytes()).expect("parse");
        let now = t.now;
        let mut out = Vec::new();
        t.m.handle_from(client, &cmd, &mut t.b, now)
            .encode(&mut out);
        String::from_utf8(out).expect("utf8")
    };
    assert!(!run(&mut t, greedy, "U g1 192.0.2.1 4000 a;1").starts_with('E'));
    assert!(!run(&mut t, greedy, "U g2 192.0.2.1 4000 a;1").starts_with('E'));
    assert_eq!(run(&mut t, greedy, "U g3 192.0.2.1 4000 a;1"), "E84");
    // A second stream of a call it holds is not a new session.
    assert!(!run(&mut t, greedy, "U g1 192.0.2.1 4002 a;2").starts_with('E'));
    // Another client is not affected.
    assert!(!run(&mut t, other, "U o1 192.0.2.1 4000 a;1").starts_with('E'));
    assert_eq!(t.m.calls_of(greedy), 2);
    // A deleted call frees its place.
    assert!(!run(&mut t, greedy, "D g2 a").starts_with('E'));
    assert_eq!(t.m.calls_of(greedy), 1);
    assert!(!run(&mut t, greedy, "U g3 192.0.2.1 4000 a;1").starts_with('E'));
    assert_eq!(t.m.totals().client_quota_refused, 1);
}
