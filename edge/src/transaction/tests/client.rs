//! Client transactions: RFC 3261 §17.1.1 (INVITE, + RFC 6026 Accepted) and §17.1.2.

use super::*;
use std::cell::Cell;

#[test]
fn invite_client_sends_request_at_once_to_its_destination() {
    let mut sim = Sim::default_timers();
    let (tx, out) = sim.client("z9hG4bK1", Method::Invite, false);
    assert_eq!(
        out,
        vec![Output::Transmit(Transmit {
            tx,
            dest: "core",
            bytes: b("REQUEST"),
            retransmission: false,
        })]
    );
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Calling));
}

#[test]
fn invite_client_timer_a_doubles_from_t1_until_timer_b() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let log = sim.run_until(Duration::from_secs(100));
    // Timer A fires at T1, then 2·T1 later, 4·T1 later… (§17.1.1.2): 0.5, 1.5, 3.5, 7.5,
    // 15.5, 31.5 s; Timer B (64·T1 = 32 s) ends it.
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[500, 1_500, 3_500, 7_500, 15_500, 31_500])
    );
    let tail: Vec<_> = log
        .iter()
        .filter(|(_, o)| !matches!(o, Output::Transmit(_)))
        .collect();
    assert_eq!(
        tail,
        vec![
            &(
                ms(32_000),
                Output::Tu(TuEvent::Timeout {
                    tx,
                    timer: Timer::B
                })
            ),
            &(ms(32_000), Output::Terminated(tx)),
        ]
    );
    assert!(sim.table.is_empty());
    assert_eq!(sim.table.stats().retransmissions, 6);
    assert_eq!(sim.table.stats().timeouts, 1);
}

#[test]
fn invite_client_provisional_stops_retransmissions_and_timer_b() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let log = sim.run_until(ms(600));
    assert_eq!(retransmit_instants(&log), at_ms(&[500]));
    let (m, out) = sim.response("z9hG4bK1", Method::Invite, 180);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    assert!(out.is_empty());
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Proceeding));
    // Neither Timer A nor Timer B is left: the proxy's Timer C bounds Proceeding.
    assert_eq!(sim.table.next_deadline(), None);
    assert!(sim.run_until(Duration::from_secs(300)).is_empty());
    assert_eq!(sim.table.len(), 1);
    // Further provisionals still reach the TU.
    assert_eq!(
        sim.response("z9hG4bK1", Method::Invite, 183).0,
        ResponseMatch::ToTu(tx)
    );
}

#[test]
fn invite_client_non_2xx_is_acked_by_the_transaction_and_timer_d_ends_it() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    sim.set(ms(1_000));
    let (m, out) = sim.response("z9hG4bK1", Method::Invite, 486);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    assert_eq!(transmits(&out), vec![(b("ACK"), false)]);
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Completed));

    // The 486 is retransmitted (our ACK was lost): the same ACK goes again, absorbed.
    sim.set(ms(2_000));
    let (m, out) = sim.response("z9hG4bK1", Method::Invite, 486);
    assert_eq!(m, ResponseMatch::Absorbed(tx));
    assert_eq!(transmits(&out), vec![(b("ACK"), true)]);

    // No INVITE retransmission after Completed; Timer D = 32 s after the 486.
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(log, vec![(ms(33_000), Output::Terminated(tx))]);
    let stats = sim.table.stats();
    assert_eq!(
        (stats.retransmissions, stats.absorbed, stats.timeouts),
        (1, 1, 0)
    );
}

#[test]
fn invite_client_builds_the_ack_once() {
    let mut sim = Sim::default_timers();
    sim.client("z9hG4bK1", Method::Invite, false);
    let calls = Cell::new(0);
    let key = ClientKey::new("z9hG4bK1", Method::Invite);
    let mut out = Vec::new();
    for _ in 0..3 {
        sim.table.on_response(&key, 503, sim.now, &mut out, || {
            calls.set(calls.get() + 1);
            Some(b("ACK"))
        });
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(
        transmits(&out),
        vec![(b("ACK"), false), (b("ACK"), true), (b("ACK"), true)]
    );
}

#[test]
fn invite_client_without_ack_bytes_sends_nothing_but_completes() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let mut out = Vec::new();
    let key = ClientKey::new("z9hG4bK1", Method::Invite);
    let m = sim.table.on_response(&key, 404, sim.now, &mut out, || None);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    assert!(out.is_empty());
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Completed));
}

#[test]
fn invite_client_2xx_enters_accepted_passes_further_2xx_and_timer_m_ends_it() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    sim.set(ms(2_000));
    let (m, out) = sim.response("z9hG4bK1", Method::Invite, 200);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    assert!(
        out.is_empty(),
        "the ACK of a 2xx is the TU's, not the transaction's"
    );
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Accepted));
    // RFC 6026: retransmitted or forked 2xx reach the TU; other responses are absorbed.
    assert_eq!(
        sim.response("z9hG4bK1", Method::Invite, 200).0,
        ResponseMatch::ToTu(tx)
    );
    assert_eq!(
        sim.response("z9hG4bK1", Method::Invite, 202).0,
        ResponseMatch::ToTu(tx)
    );
    assert_eq!(
        sim.response("z9hG4bK1", Method::Invite, 180).0,
        ResponseMatch::Absorbed(tx)
    );
    assert_eq!(
        sim.response("z9hG4bK1", Method::Invite, 486).0,
        ResponseMatch::Absorbed(tx)
    );
    // No INVITE retransmission once accepted (the one at 0.5 and 1.5 s happened before).
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(log, vec![(ms(2_000 + 32_000), Output::Terminated(tx))]);
}

#[test]
fn invite_client_reliable_never_retransmits_but_timer_b_still_runs() {
    let mut sim = Sim::default_timers();
    let (tx, out) = sim.client("z9hG4bK1", Method::Invite, true);
    assert_eq!(transmits(&out).len(), 1);
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(
        log,
        vec![
            (
                ms(32_000),
                Output::Tu(TuEvent::Timeout {
                    tx,
                    timer: Timer::B
                })
            ),
            (ms(32_000), Output::Terminated(tx)),
        ]
    );
    assert_eq!(sim.table.stats().retransmissions, 0);
}

#[test]
fn invite_client_reliable_non_2xx_terminates_at_once() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, true);
    let (m, out) = sim.response("z9hG4bK1", Method::Invite, 603);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    // Timer D is zero on a reliable transport: the ACK is sent, then the transaction ends.
    assert_eq!(
        out,
        vec![
            Output::Transmit(Transmit {
                tx,
                dest: "core",
                bytes: b("ACK"),
                retransmission: false
            }),
            Output::Terminated(tx),
        ]
    );
    assert!(sim.table.is_empty());
}

#[test]
fn invite_client_respects_non_default_t1() {
    let mut sim = Sim::new(Timers {
        t1: ms(100),
        t2: ms(400),
        t4: ms(1_000),
    });
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let log = sim.run_until(Duration::from_secs(10));
    // Timer A is not capped by T2 (only E and G are).
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[100, 300, 700, 1_500, 3_100, 6_300])
    );
    assert_eq!(log.last(), Some(&(ms(6_400), Output::Terminated(tx))));
}

#[test]
fn non_invite_client_timer_e_doubles_up_to_t2_until_timer_f() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::from_name("REGISTER"), false);
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Trying));
    let log = sim.run_until(Duration::from_secs(100));
    // §17.1.2.2: T1, then MIN(2·T1, T2), MIN(4·T1, T2)…: intervals 0.5, 1, 2, 4, 4, 4… s.
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500])
    );
    assert_eq!(
        log[log.len() - 2..],
        [
            (
                ms(32_000),
                Output::Tu(TuEvent::Timeout {
                    tx,
                    timer: Timer::F
                })
            ),
            (ms(32_000), Output::Terminated(tx)),
        ]
    );
}

#[test]
fn non_invite_client_proceeding_retransmits_every_t2_and_timer_f_still_fires() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::from_name("OPTIONS"), false);
    sim.run_until(ms(600));
    let (m, _) = sim.response("z9hG4bK1", Method::from_name("OPTIONS"), 100);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Proceeding));
    let log = sim.run_until(Duration::from_secs(100));
    // The pending Timer E (due 1.5 s) fires, then it is reset to T2 each time.
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[1_500, 5_500, 9_500, 13_500, 17_500, 21_500, 25_500, 29_500])
    );
    assert_eq!(log.last(), Some(&(ms(32_000), Output::Terminated(tx))));
    assert_eq!(sim.table.stats().timeouts, 1);
}

#[test]
fn non_invite_client_final_response_stops_retransmission_and_timer_k_ends_it() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::from_name("BYE"), false);
    sim.run_until(ms(2_000));
    let (m, out) = sim.response("z9hG4bK1", Method::from_name("BYE"), 200);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    assert!(out.is_empty(), "no ACK for non-INVITE");
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Completed));
    // Retransmissions of the final response are absorbed in Completed.
    assert_eq!(
        sim.response("z9hG4bK1", Method::from_name("BYE"), 200).0,
        ResponseMatch::Absorbed(tx)
    );
    let log = sim.run_until(Duration::from_secs(100));
    // Timer K = T4 = 5 s.
    assert_eq!(log, vec![(ms(7_000), Output::Terminated(tx))]);
    assert_eq!(sim.table.stats().absorbed, 1);
}

#[test]
fn non_invite_client_reliable_no_retransmission_and_k_is_zero() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::from_name("REGISTER"), true);
    assert_eq!(sim.run_until(ms(10_000)), vec![]);
    let (m, out) = sim.response("z9hG4bK1", Method::from_name("REGISTER"), 401);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    assert_eq!(out, vec![Output::Terminated(tx)]);
    assert!(sim.table.is_empty());
}

#[test]
fn non_invite_client_respects_non_default_t1_t2_t4() {
    let mut sim = Sim::new(Timers {
        t1: ms(200),
        t2: ms(1_000),
        t4: ms(2_500),
    });
    let (tx, _) = sim.client("z9hG4bK1", Method::from_name("MESSAGE"), false);
    let log = sim.run_until(ms(5_000));
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[200, 600, 1_400, 2_400, 3_400, 4_400])
    );
    let (m, _) = sim.response("z9hG4bK1", Method::from_name("MESSAGE"), 202);
    assert_eq!(m, ResponseMatch::ToTu(tx));
    let log = sim.run_until(ms(60_000));
    assert_eq!(log, vec![(ms(5_000 + 2_500), Output::Terminated(tx))]);
}

#[test]
fn client_drops_non_sip_status_without_state_change() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let (m, out) = sim.response("z9hG4bK1", Method::Invite, 42);
    assert_eq!(m, ResponseMatch::Absorbed(tx));
    assert!(out.is_empty());
    assert_eq!(sim.table.client_state(tx), Some(ClientState::Calling));
    assert_eq!(sim.table.stats().absorbed, 0);
}
