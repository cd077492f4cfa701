use super::*;
use sbc_shared::proto::{split_cookie, CallId, Tag, Update};

const A: &str = "127.0.0.1:22222";
const B: &str = "127.0.0.2:22222";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client(relays: &[(&str, u32)], now: Instant) -> (RelayClient, MediaMetrics) {
    let metrics = MediaMetrics::unregistered().unwrap();
    let cfg = ClientConfig {
        relays: relays.iter().map(|(a, w)| (addr(a), *w)).collect(),
        retransmit: Duration::from_millis(500),
        tries: 3,
        health_interval: Duration::from_secs(5),
    };
    (
        RelayClient::new(cfg, 0xabcd, Some(metrics.clone()), now),
        metrics,
    )
}

fn offer() -> Command {
    Command::Update(Update::new(
        CallId::new("c1"),
        "10.0.0.5".parse().unwrap(),
        4000,
        Tag::with_stream("ft", 1),
    ))
}

fn drain(c: &mut RelayClient) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

/// The reply datagram for a transmit: same cookie, given answer.
fn answer(t: &Transmit, reply: &str) -> Vec<u8> {
    let (cookie, _) = split_cookie(&t.data).unwrap();
    let mut d = cookie.to_vec();
    d.push(b' ');
    d.extend_from_slice(reply.as_bytes());
    d.push(b'\n');
    d
}

#[test]
fn command_reply_by_cookie_records_latency() {
    let t0 = Instant::now();
    let (mut c, m) = client(&[(A, 1)], t0);
    let id = c.send(offer(), Target::Any, t0);
    let tx = drain(&mut c);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].to, addr(A));
    assert_eq!(tx[0].data, b"0000abcd_0 U c1 10.0.0.5 4000 ft;1");
    c.handle_datagram(
        addr(A),
        &answer(&tx[0], "30000 203.0.113.1"),
        t0 + Duration::from_millis(3),
    );
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Reply {
            id,
            relay: 0,
            reply: Reply::Port {
                port: 30000,
                addr: Some("203.0.113.1".parse().unwrap())
            },
            latency: Duration::from_millis(3),
        })
    );
    assert_eq!(c.in_flight(), 0);
    let h = m.command_seconds.with_label_values(&["U"]);
    assert_eq!(h.get_sample_count(), 1);
    assert!((h.get_sample_sum() - 0.003).abs() < 1e-9);
}

#[test]
fn retransmits_then_times_out_and_marks_relay_down() {
    let t0 = Instant::now();
    let (mut c, m) = client(&[(A, 1)], t0);
    c.handle_timeout(t0); // first health ping, left unanswered
    drain(&mut c);
    let id = c.send(offer(), Target::Any, t0);
    let first = drain(&mut c);
    for n in 1..3u64 {
        let at = t0 + Duration::from_millis(500 * n);
        assert_eq!(c.poll_timeout(), Some(at));
        c.handle_timeout(at);
        let tx: Vec<_> = drain(&mut c)
            .into_iter()
            .filter(|t| !t.data.ends_with(b" V"))
            .collect();
        assert_eq!(tx, first, "retransmission {n} uses the same cookie");
        assert_eq!(c.poll_event(), None);
    }
    c.handle_timeout(t0 + Duration::from_millis(1500));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id,
            error: ClientError::Timeout(addr(A))
        })
    );
    assert!(!c.is_up(0));
    assert_eq!(m.failures.with_label_values(&["timeout"]).get(), 1); // pings are not commands
    assert_eq!(m.relays_up.get(), 0);
    // New calls fail fast while no relay is up.
    let id2 = c.send(offer(), Target::Any, t0 + Duration::from_secs(2));
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id: id2,
            error: ClientError::NoRelay
        })
    );
}

#[test]
fn new_call_fails_over_to_the_next_relay() {
    let t0 = Instant::now();
    let (mut c, _) = client(&[(A, 1), (B, 1)], t0);
    let id = c.send(offer(), Target::Any, t0);
    let tx = drain(&mut c);
    assert_eq!(tx[0].to, addr(A));
    let mut now = t0;
    let mut moved = None;
    for _ in 0..3 {
        now += Duration::from_millis(500);
        c.handle_timeout(now);
        for t in drain(&mut c) {
            if t.to == addr(B) && !t.data.ends_with(b" V") {
                moved = Some(t);
            }
        }
    }
    let moved = moved.expect("re-sent to B");
    assert_ne!(
        split_cookie(&moved.data).unwrap().0,
        split_cookie(&tx[0].data).unwrap().0
    );
    assert!(!c.is_up(0));
    // A late answer from A (old cookie) is ignored; B's answer completes the command.
    c.handle_datagram(addr(A), &answer(&tx[0], "30000 127.0.0.1"), now);
    assert_eq!(c.poll_event(), None);
    c.handle_datagram(addr(B), &answer(&moved, "31000 127.0.0.2"), now);
    match c.poll_event() {
        Some(ClientEvent::Reply { id: got, relay, .. }) => {
            assert_eq!((got, relay), (id, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pinned_command_does_not_fail_over() {
    let t0 = Instant::now();
    let (mut c, _) = client(&[(A, 1), (B, 1)], t0);
    let id = c.send(offer(), Target::Relay(0), t0);
    let mut now = t0;
    for _ in 0..3 {
        now += Duration::from_millis(500);
        c.handle_timeout(now);
        assert!(drain(&mut c)
            .iter()
            .all(|t| t.to == addr(A) || t.data.ends_with(b" V")));
    }
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id,
            error: ClientError::Timeout(addr(A))
        })
    );
    let id = c.send(offer(), Target::Relay(7), now);
    assert_eq!(
        c.poll_event(),
        Some(ClientEvent::Failed {
            id,
            error: ClientError::UnknownRelay(7)
        })
    );
}

#[test]
fn replies_from_elsewhere_or_garbage_are_ignored() {
    let t0 = Instant::now();
    let (mut c, _) = client(&[(A, 1)], t0);
    c.send(offer(), Target::Any, t0);
    let tx = drain(&mut c);
    c.handle_datagram(addr("127.0.0.9:22222"), &answer(&tx[0], "30000"), t0);
    c.handle_datagram(addr(A), b"ffffffff_0 30000\n", t0);
    c.handle_datagram(addr(A), b"0000abcd_x 30000\n", t0);
    c.handle_datagram(addr(A), b"\xff\x00garbage", t0);
    c.handle_datagram(addr(A), b"", t0);
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.in_flight(), 1);
}

#[test]
fn weights_spread_new_calls() {
    let t0 = Instant::now();
    let (mut c, _) = client(&[(A, 3), (B, 1)], t0);
    let mut to_a = 0;
    for _ in 0..8 {
        c.send(offer(), Target::Any, t0);
        if drain(&mut c)[0].to == addr(A) {
            to_a += 1;
        }
    }
    assert_eq!(to_a, 6);
}

#[test]
fn health_ping_brings_a_relay_back() {
    let t0 = Instant::now();
    let (mut c, m) = client(&[(A, 1), (B, 1)], t0);
    c.handle_timeout(t0);
    let pings = drain(&mut c);
    assert_eq!(pings.len(), 2);
    assert!(pings.iter().all(|p| p.data.ends_with(b" V")));
    // A answers, B stays silent and goes down.
    c.handle_datagram(addr(A), &answer(&pings[0], "20040107"), t0);
    for n in 1..=3 {
        c.handle_timeout(t0 + Duration::from_millis(500 * n));
    }
    drain(&mut c);
    assert!(c.is_up(0) && !c.is_up(1));
    assert_eq!(m.relays_up.get(), 1);
    for _ in 0..3 {
        c.send(offer(), Target::Any, t0 + Duration::from_secs(2));
        assert_eq!(drain(&mut c)[0].to, addr(A));
    }
    // Next ping round: B answers and is used again; A answers garbage and goes down.
    let t1 = t0 + Duration::from_secs(5);
    c.handle_timeout(t1);
    let pings: Vec<_> = drain(&mut c)
        .into_iter()
        .filter(|t| t.data.ends_with(b" V"))
        .collect();
    assert_eq!(pings.len(), 2);
    for p in &pings {
        let r = if p.to == addr(B) { "20040107" } else { "E8" };
        c.handle_datagram(p.to, &answer(p, r), t1);
    }
    assert!(!c.is_up(0) && c.is_up(1));
    c.send(offer(), Target::Any, t1);
    assert_eq!(drain(&mut c)[0].to, addr(B));
}

#[test]
fn error_reply_is_delivered_and_counted() {
    let t0 = Instant::now();
    let (mut c, m) = client(&[(A, 1)], t0);
    let id = c.send(offer(), Target::Any, t0);
    let tx = drain(&mut c);
    c.handle_datagram(addr(A), &answer(&tx[0], "E8"), t0);
    assert!(matches!(
        c.poll_event(),
        Some(ClientEvent::Reply { id: got, reply: Reply::Error(_), .. }) if got == id
    ));
    assert_eq!(m.failures.with_label_values(&["error"]).get(), 1);
}

/// A reload that replaces relay A by B: new calls go to B; A keeps its calls (a command
/// targeted at A still reaches it) but gets no new call and no health ping.
#[test]
fn reloaded_relay_set_retires_the_old_and_adds_the_new() {
    let t0 = Instant::now();
    let (mut c, _) = client(&[(A, 1)], t0);
    c.set_relays(&[(addr(B), 3)], t0);
    let states = c.states();
    assert_eq!(states.len(), 1);
    assert_eq!(
        (states[0].addr, states[0].weight, states[0].up),
        (addr(B), 3, true)
    );
    for _ in 0..3 {
        c.send(offer(), Target::Any, t0);
        let tx = drain(&mut c);
        assert_eq!(tx.len(), 1);
        assert_eq!(tx[0].to, addr(B));
    }
    c.send(offer(), Target::Relay(0), t0);
    assert_eq!(drain(&mut c)[0].to, addr(A), "a call on A still reaches A");
    c.handle_timeout(t0 + Duration::from_secs(60));
    assert!(
        drain(&mut c)
            .iter()
            .all(|t| t.to != addr(A) || !t.data.ends_with(b" V")),
        "retired relay pinged"
    );
}

#[test]
fn operator_disables_a_relay_for_new_calls() {
    let t0 = Instant::now();
    let (mut c, _) = client(&[(A, 1), (B, 1)], t0);
    assert!(c.set_enabled(addr(A), false, t0));
    for _ in 0..3 {
        c.send(offer(), Target::Any, t0);
        assert_eq!(drain(&mut c)[0].to, addr(B));
    }
    assert!(c.states()[0].disabled);
    assert!(c.set_enabled(addr(A), true, t0));
    let to: Vec<SocketAddr> = (0..2)
        .map(|_| {
            c.send(offer(), Target::Any, t0);
            drain(&mut c)[0].to
        })
        .collect();
    assert!(to.contains(&addr(A)), "{to:?}");
    assert!(!c.set_enabled(addr("192.0.2.1:22222"), false, t0));
}
