//! Server transactions: RFC 3261 §17.2.1 (INVITE, + RFC 6026 Accepted) and §17.2.2.

use super::*;

#[test]
fn invite_server_sends_100_at_once_and_resends_it_for_retransmitted_invite() {
    let mut sim = Sim::default_timers();
    let (m, _) = sim.request("z9hG4bKa", Method::Invite);
    assert_eq!(m, RequestMatch::NoMatch);
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Proceeding));
    let out = sim.respond(tx, 100, "100").unwrap();
    assert_eq!(
        out,
        vec![Output::Transmit(Transmit {
            tx,
            dest: "ua",
            bytes: b("100"),
            retransmission: false
        })]
    );
    sim.set(ms(500));
    let (m, out) = sim.request("z9hG4bKa", Method::Invite);
    assert_eq!(m, RequestMatch::Absorbed(tx));
    assert_eq!(transmits(&out), vec![(b("100"), true)]);
    // The most recent provisional is the one re-sent.
    sim.respond(tx, 180, "180").unwrap();
    let (_, out) = sim.request("z9hG4bKa", Method::Invite);
    assert_eq!(transmits(&out), vec![(b("180"), true)]);
    let stats = sim.table.stats();
    assert_eq!((stats.absorbed, stats.retransmissions), (2, 2));
    // Proceeding has no timer of its own: the TU must answer.
    assert_eq!(sim.table.next_deadline(), None);
}

#[test]
fn invite_server_retransmission_before_any_response_is_absorbed_silently() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    let (m, out) = sim.request("z9hG4bKa", Method::Invite);
    assert_eq!(m, RequestMatch::Absorbed(tx));
    assert!(out.is_empty());
    assert_eq!(sim.table.stats().absorbed, 1);
}

#[test]
fn invite_server_timer_g_doubles_up_to_t2_until_timer_h() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(tx, 100, "100").unwrap();
    let out = sim.respond(tx, 486, "486").unwrap();
    assert_eq!(transmits(&out), vec![(b("486"), false)]);
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Completed));
    let log = sim.run_until(Duration::from_secs(100));
    // §17.2.1: T1, then MIN(2·T1, T2)…; Timer H = 64·T1.
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500])
    );
    assert!(log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Transmit(t) => Some(t.bytes.clone()),
            _ => None,
        })
        .all(|bytes| bytes == b("486")));
    assert_eq!(
        log[log.len() - 2..],
        [
            (
                ms(32_000),
                Output::Tu(TuEvent::Timeout {
                    tx,
                    timer: Timer::H
                })
            ),
            (ms(32_000), Output::Terminated(tx)),
        ]
    );
}

#[test]
fn invite_server_ack_confirms_stops_timer_g_and_timer_i_ends_it() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(tx, 404, "404").unwrap();
    let log = sim.run_until(ms(2_000));
    assert_eq!(retransmit_instants(&log), at_ms(&[500, 1_500]));
    let (m, out) = sim.request("z9hG4bKa", Method::Ack);
    assert_eq!(m, RequestMatch::Absorbed(tx));
    assert!(out.is_empty());
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Confirmed));
    // ACK and INVITE retransmissions are absorbed silently in Confirmed.
    sim.set(ms(3_000));
    assert_eq!(
        sim.request("z9hG4bKa", Method::Ack),
        (RequestMatch::Absorbed(tx), vec![])
    );
    assert_eq!(
        sim.request("z9hG4bKa", Method::Invite),
        (RequestMatch::Absorbed(tx), vec![])
    );
    // Timer I = T4 after the ACK; no more G, no H timeout.
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(log, vec![(ms(2_000 + 5_000), Output::Terminated(tx))]);
    assert_eq!(
        sim.table.stats().absorbed,
        2,
        "the first ACK is not a retransmission"
    );
    assert_eq!(sim.table.stats().timeouts, 0);
}

#[test]
fn invite_server_retransmitted_invite_in_completed_resends_the_final_response() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(tx, 100, "100").unwrap();
    sim.respond(tx, 480, "480").unwrap();
    let (m, out) = sim.request("z9hG4bKa", Method::Invite);
    assert_eq!(m, RequestMatch::Absorbed(tx));
    assert_eq!(transmits(&out), vec![(b("480"), true)]);
}

#[test]
fn invite_server_2xx_accepted_absorbs_invite_passes_2xx_and_ack_and_timer_l_ends_it() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(tx, 100, "100").unwrap();
    sim.set(ms(1_000));
    let out = sim.respond(tx, 200, "200").unwrap();
    assert_eq!(transmits(&out), vec![(b("200"), false)]);
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Accepted));
    // RFC 6026: INVITE retransmissions absorbed without a re-send (the TU retransmits 2xx).
    assert_eq!(
        sim.request("z9hG4bKa", Method::Invite),
        (RequestMatch::Absorbed(tx), vec![])
    );
    // 2xx from the TU (retransmission from downstream) is sent; other responses discarded.
    let out = sim.respond(tx, 200, "200").unwrap();
    assert_eq!(transmits(&out), vec![(b("200"), false)]);
    assert!(matches!(
        sim.respond(tx, 486, "486"),
        Err(TxError::ResponseDiscarded {
            status: 486,
            state: ServerState::Accepted,
            ..
        })
    ));
    // An ACK reusing the branch goes to the TU.
    assert_eq!(
        sim.request("z9hG4bKa", Method::Ack).0,
        RequestMatch::AckToTu(tx)
    );
    // No Timer G for 2xx; Timer L = 64·T1.
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(log, vec![(ms(1_000 + 32_000), Output::Terminated(tx))]);
}

#[test]
fn invite_server_reliable_has_no_timer_g_but_timer_h() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, true);
    sim.respond(tx, 500, "500").unwrap();
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(
        log,
        vec![
            (
                ms(32_000),
                Output::Tu(TuEvent::Timeout {
                    tx,
                    timer: Timer::H
                })
            ),
            (ms(32_000), Output::Terminated(tx)),
        ]
    );
}

#[test]
fn invite_server_reliable_ack_terminates_at_once() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, true);
    sim.respond(tx, 500, "500").unwrap();
    let (m, out) = sim.request("z9hG4bKa", Method::Ack);
    assert_eq!(m, RequestMatch::Absorbed(tx));
    // Timer I is zero on a reliable transport.
    assert_eq!(out, vec![Output::Terminated(tx)]);
    assert!(sim.table.is_empty());
}

#[test]
fn invite_server_discards_responses_after_the_final_one() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(tx, 486, "486").unwrap();
    for status in [180, 200, 486] {
        assert_eq!(
            sim.respond(tx, status, "late"),
            Err(TxError::ResponseDiscarded {
                tx,
                status,
                state: ServerState::Completed
            })
        );
    }
}

#[test]
fn invite_server_timer_g_respects_non_default_t1_t2() {
    let mut sim = Sim::new(Timers {
        t1: ms(250),
        t2: ms(1_000),
        t4: ms(5_000),
    });
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(tx, 486, "486").unwrap();
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[
            250, 750, 1_750, 2_750, 3_750, 4_750, 5_750, 6_750, 7_750, 8_750, 9_750, 10_750,
            11_750, 12_750, 13_750, 14_750, 15_750
        ])
    );
    assert_eq!(log.last(), Some(&(ms(16_000), Output::Terminated(tx))));
}

#[test]
fn non_invite_server_trying_absorbs_then_final_is_resent_and_timer_j_ends_it() {
    let mut sim = Sim::default_timers();
    let method = Method::from_name("REGISTER");
    let tx = sim.server("z9hG4bKr", method.clone(), false);
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Trying));
    // §17.2.2: a retransmission in Trying is discarded.
    assert_eq!(
        sim.request("z9hG4bKr", method.clone()),
        (RequestMatch::Absorbed(tx), vec![])
    );
    sim.set(ms(100));
    let out = sim.respond(tx, 200, "200").unwrap();
    assert_eq!(transmits(&out), vec![(b("200"), false)]);
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Completed));
    let (m, out) = sim.request("z9hG4bKr", method.clone());
    assert_eq!(m, RequestMatch::Absorbed(tx));
    assert_eq!(transmits(&out), vec![(b("200"), true)]);
    // No response retransmission by timer for non-INVITE; Timer J = 64·T1.
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(log, vec![(ms(100 + 32_000), Output::Terminated(tx))]);
    assert_eq!(sim.table.stats().absorbed, 2);
}

#[test]
fn non_invite_server_proceeding_resends_the_provisional() {
    let mut sim = Sim::default_timers();
    let method = Method::from_name("SUBSCRIBE");
    let tx = sim.server("z9hG4bKr", method.clone(), false);
    sim.respond(tx, 100, "100").unwrap();
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Proceeding));
    let (_, out) = sim.request("z9hG4bKr", method.clone());
    assert_eq!(transmits(&out), vec![(b("100"), true)]);
}

#[test]
fn non_invite_server_reliable_terminates_on_final_response() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKr", Method::from_name("OPTIONS"), true);
    let out = sim.respond(tx, 200, "200").unwrap();
    // Timer J is zero on a reliable transport.
    assert_eq!(transmits(&out), vec![(b("200"), false)]);
    assert_eq!(out.last(), Some(&Output::Terminated(tx)));
    assert!(sim.table.is_empty());
    assert_eq!(
        sim.respond(tx, 200, "200"),
        Err(TxError::UnknownTransaction(tx))
    );
}

#[test]
fn non_invite_server_discards_a_second_final_response() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKr", Method::from_name("OPTIONS"), false);
    sim.respond(tx, 200, "200").unwrap();
    assert!(matches!(
        sim.respond(tx, 500, "500"),
        Err(TxError::ResponseDiscarded { .. })
    ));
    // The stored response is still the first one.
    let (_, out) = sim.request("z9hG4bKr", Method::from_name("OPTIONS"));
    assert_eq!(transmits(&out), vec![(b("200"), true)]);
}

#[test]
fn server_rejects_status_codes_outside_100_to_699() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    for status in [0, 99, 700] {
        assert!(matches!(
            sim.respond(tx, status, "x"),
            Err(TxError::ResponseDiscarded { .. })
        ));
    }
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Proceeding));
}
