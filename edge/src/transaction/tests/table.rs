//! Matching (§17.1.3, §17.2.3), timer bookkeeping and table-level operations.

use super::*;

#[test]
fn response_matches_branch_and_cseq_method() {
    let mut sim = Sim::default_timers();
    let (invite, _) = sim.client("z9hG4bKx", Method::Invite, false);
    let (cancel, _) = sim.client("z9hG4bKx", Method::Cancel, false);
    assert_ne!(invite, cancel);
    // Same branch, CSeq method tells them apart (a CANCEL copies its INVITE's branch).
    assert_eq!(
        sim.response("z9hG4bKx", Method::Cancel, 200).0,
        ResponseMatch::ToTu(cancel)
    );
    assert_eq!(sim.table.client_state(invite), Some(ClientState::Calling));
    assert_eq!(
        sim.response("z9hG4bKx", Method::Invite, 487).0,
        ResponseMatch::ToTu(invite)
    );
    // Another branch or another method: stray.
    assert_eq!(
        sim.response("z9hG4bKy", Method::Invite, 200).0,
        ResponseMatch::NoMatch
    );
    assert_eq!(
        sim.response("z9hG4bKx", Method::from_name("BYE"), 200).0,
        ResponseMatch::NoMatch
    );
    // The branch is compared exactly.
    assert_eq!(
        sim.response("Z9HG4BKX", Method::Invite, 487).0,
        ResponseMatch::NoMatch
    );
}

#[test]
fn ack_matches_its_invite_server_transaction_by_branch_and_sent_by() {
    let mut sim = Sim::default_timers();
    let tx = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(tx, 486, "486").unwrap();
    let mut out = Vec::new();
    // Other branch, or other sent-by: not this transaction's ACK.
    let other_branch = ServerKey::new("z9hG4bKb", "ua.example:5060", Method::Ack);
    let other_host = ServerKey::new("z9hG4bKa", "other.example:5060", Method::Ack);
    let other_port = ServerKey::new("z9hG4bKa", "ua.example:5062", Method::Ack);
    for key in [other_branch, other_host, other_port] {
        assert_eq!(
            sim.table.on_request(&key, sim.now, &mut out),
            RequestMatch::NoMatch
        );
    }
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Completed));
    // sent-by host compares case-insensitively.
    let same = ServerKey::new("z9hG4bKa", "UA.Example:5060", Method::Ack);
    assert_eq!(
        sim.table.on_request(&same, sim.now, &mut out),
        RequestMatch::Absorbed(tx)
    );
    assert_eq!(sim.table.server_state(tx), Some(ServerState::Confirmed));
}

#[test]
fn cancel_runs_its_own_server_transaction_and_finds_its_invite() {
    let mut sim = Sim::default_timers();
    let invite = sim.server("z9hG4bKa", Method::Invite, false);
    sim.respond(invite, 100, "100").unwrap();
    // A CANCEL does not match the INVITE transaction (§17.2.3: method differs)…
    let (m, out) = sim.request("z9hG4bKa", Method::Cancel);
    assert_eq!(m, RequestMatch::NoMatch);
    assert!(
        out.is_empty(),
        "the INVITE's 100 must not be re-sent for a CANCEL"
    );
    // …but the proxy finds the INVITE it targets (§9.2).
    let cancel_key = ServerKey::new("z9hG4bKa", "ua.example:5060", Method::Cancel);
    assert_eq!(sim.table.find_cancelled_invite(&cancel_key), Some(invite));
    let cancel = sim.server("z9hG4bKa", Method::Cancel, false);
    assert_ne!(cancel, invite);
    assert_eq!(
        sim.request("z9hG4bKa", Method::Cancel).0,
        RequestMatch::Absorbed(cancel)
    );
    // A non-CANCEL key targets no INVITE.
    let bye = ServerKey::new("z9hG4bKa", "ua.example:5060", Method::from_name("BYE"));
    assert_eq!(sim.table.find_cancelled_invite(&bye), None);
    assert_eq!(sim.table.len(), 2);
}

#[test]
fn ack_without_transaction_is_no_match_and_creates_nothing() {
    let mut sim = Sim::default_timers();
    assert_eq!(
        sim.request("z9hG4bK2xx", Method::Ack).0,
        RequestMatch::NoMatch
    );
    let ack = ServerKey::new("z9hG4bK2xx", "ua.example:5060", Method::Ack);
    assert_eq!(
        sim.table.create_server(ack, "ua", false),
        Err(TxError::AckTransaction)
    );
    let mut out = Vec::new();
    let client_ack = sim.table.create_client(
        ClientKey::new("z9hG4bK2xx", Method::Ack),
        b("ACK"),
        "core",
        false,
        sim.now,
        &mut out,
    );
    assert_eq!(client_ack, Err(TxError::AckTransaction));
    assert!(out.is_empty());
    assert!(sim.table.is_empty());
}

#[test]
fn duplicate_keys_are_refused() {
    let mut sim = Sim::default_timers();
    let (c, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let mut out = Vec::new();
    let again = sim.table.create_client(
        ClientKey::new("z9hG4bK1", Method::Invite),
        b("REQUEST"),
        "core",
        false,
        sim.now,
        &mut out,
    );
    assert_eq!(again, Err(TxError::Duplicate(c)));
    assert!(out.is_empty(), "a refused client transaction sends nothing");
    let s = sim.server("z9hG4bK1", Method::Invite, false);
    let key = ServerKey::new("z9hG4bK1", "ua.example:5060", Method::Invite);
    assert_eq!(
        sim.table.create_server(key, "ua", false),
        Err(TxError::Duplicate(s))
    );
    // Client and server keys live in separate spaces.
    assert_eq!(sim.table.len(), 2);
}

#[test]
fn methods_are_case_sensitive() {
    assert_eq!(Method::from_name("INVITE"), Method::Invite);
    assert_eq!(Method::from_name("invite"), Method::Other("invite".into()));
    assert_eq!(Method::from_name("CANCEL").as_str(), "CANCEL");
    // A lowercase "invite" runs a non-INVITE transaction (Timer E, capped at T2).
    let mut sim = Sim::default_timers();
    sim.client("z9hG4bK1", Method::from_name("invite"), false);
    let log = sim.run_until(ms(12_000));
    assert_eq!(
        retransmit_instants(&log),
        at_ms(&[500, 1_500, 3_500, 7_500, 11_500])
    );
}

#[test]
fn stale_timers_are_skipped_by_next_deadline() {
    let mut sim = Sim::default_timers();
    let (a, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let (_b, _) = sim.client("z9hG4bK2", Method::from_name("OPTIONS"), false);
    assert_eq!(sim.table.next_deadline(), Some(sim.start + ms(500)));
    // The INVITE gets a 180: its Timers A and B are dead; the OPTIONS' E still is due at T1.
    sim.response("z9hG4bK1", Method::Invite, 180);
    sim.response("z9hG4bK2", Method::from_name("OPTIONS"), 200);
    // OPTIONS is Completed (Timer K at 5 s); nothing else is armed.
    assert_eq!(sim.table.next_deadline(), Some(sim.start + ms(5_000)));
    let log = sim.run_until(Duration::from_secs(100));
    assert_eq!(log.len(), 1, "only the OPTIONS' Timer K: {log:?}");
    assert_eq!(sim.table.client_state(a), Some(ClientState::Proceeding));
}

#[test]
fn late_poll_sends_one_retransmission_not_a_burst() {
    let mut sim = Sim::default_timers();
    sim.client("z9hG4bK1", Method::Invite, false);
    // The shell wakes up 5 s late: Timer A fires once and is re-armed after `now`.
    let mut out = Vec::new();
    sim.table.poll(sim.start + ms(5_000), &mut out);
    assert_eq!(transmits(&out), vec![(b("REQUEST"), true)]);
    let next = sim.table.next_deadline().unwrap();
    assert_eq!(next, sim.start + ms(5_000 + 1_000));
}

#[test]
fn transport_error_terminates_and_informs_the_tu() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    let mut out = Vec::new();
    assert!(sim.table.on_transport_error(tx, &mut out));
    assert_eq!(
        out,
        vec![
            Output::Tu(TuEvent::TransportError { tx }),
            Output::Terminated(tx)
        ]
    );
    assert!(sim.table.is_empty());
    assert_eq!(sim.table.next_deadline(), None, "its timers are stale");
    assert!(!sim.table.on_transport_error(tx, &mut out));
    assert_eq!(sim.table.stats().transport_errors, 1);
}

#[test]
fn terminate_frees_the_key() {
    let mut sim = Sim::default_timers();
    let (tx, _) = sim.client("z9hG4bK1", Method::Invite, false);
    sim.response("z9hG4bK1", Method::Invite, 100);
    let mut out = Vec::new();
    assert!(sim.table.terminate(tx, &mut out));
    assert_eq!(out, vec![Output::Terminated(tx)]);
    assert_eq!(
        sim.response("z9hG4bK1", Method::Invite, 200).0,
        ResponseMatch::NoMatch
    );
    assert_eq!(
        sim.table
            .find_client(&ClientKey::new("z9hG4bK1", Method::Invite)),
        None
    );
    let (again, _) = sim.client("z9hG4bK1", Method::Invite, false);
    assert_ne!(again, tx, "ids are never reused");
    assert!(!sim.table.terminate(tx, &mut out));
}

#[test]
fn each_transaction_transmits_to_its_own_destination() {
    let mut sim = Sim::default_timers();
    let mut out = Vec::new();
    let a = sim
        .table
        .create_client(
            ClientKey::new("z9hG4bK1", Method::Invite),
            b("A"),
            "core-a",
            false,
            sim.now,
            &mut out,
        )
        .unwrap();
    let c = sim
        .table
        .create_client(
            ClientKey::new("z9hG4bK2", Method::Invite),
            b("C"),
            "core-c",
            false,
            sim.now,
            &mut out,
        )
        .unwrap();
    sim.table.poll(sim.start + ms(500), &mut out);
    let dests: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) => Some((t.tx, t.dest, t.bytes.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(dests.len(), 4);
    assert!(dests.iter().all(
        |(tx, dest, bytes)| (*tx == a && *dest == "core-a" && bytes == "A")
            || (*tx == c && *dest == "core-c" && bytes == "C")
    ));
    assert_eq!(sim.table.dest(a), Some(&"core-a"));
}

#[test]
fn len_counts_live_client_and_server_transactions() {
    let mut sim = Sim::default_timers();
    assert_eq!(sim.table.len(), 0);
    sim.client("z9hG4bK1", Method::Invite, true);
    let s = sim.server("z9hG4bK9", Method::from_name("OPTIONS"), true);
    assert_eq!(sim.table.len(), 2);
    sim.respond(s, 200, "200").unwrap();
    assert_eq!(sim.table.len(), 1);
    sim.run_until(Duration::from_secs(40));
    assert_eq!(sim.table.len(), 0);
}

#[test]
fn proxy_flow_invite_forwarded_and_answered() {
    // The usage of the module doc: INVITE in from a UA, 100 at once, one branch to the core,
    // 180 and 200 relayed back, retransmissions absorbed on both sides.
    let mut sim = Sim::default_timers();
    let mut out = Vec::new();
    let skey = ServerKey::new("z9hG4bKua", "10.0.0.1:5060", Method::Invite);
    assert_eq!(
        sim.table.on_request(&skey, sim.now, &mut out),
        RequestMatch::NoMatch
    );
    let stx = sim.table.create_server(skey.clone(), "ua", false).unwrap();
    sim.table
        .send_response(stx, 100, b("100"), sim.now, &mut out)
        .unwrap();
    let ckey = ClientKey::new("z9hG4bKedge1", Method::Invite);
    let ctx = sim
        .table
        .create_client(ckey.clone(), b("INVITE'"), "core", false, sim.now, &mut out)
        .unwrap();
    assert_eq!(
        transmits(&out),
        vec![(b("100"), false), (b("INVITE'"), false)]
    );
    out.clear();
    sim.set(ms(300));
    assert_eq!(
        sim.table
            .on_response(&ckey, 180, sim.now, &mut out, || None),
        ResponseMatch::ToTu(ctx)
    );
    sim.table
        .send_response(stx, 180, b("180"), sim.now, &mut out)
        .unwrap();
    sim.set(ms(600));
    // The UA retransmits its INVITE: the 180 goes back, the core sees nothing.
    assert_eq!(
        sim.table.on_request(&skey, sim.now, &mut out),
        RequestMatch::Absorbed(stx)
    );
    sim.set(ms(900));
    assert_eq!(
        sim.table
            .on_response(&ckey, 200, sim.now, &mut out, || None),
        ResponseMatch::ToTu(ctx)
    );
    sim.table
        .send_response(stx, 200, b("200"), sim.now, &mut out)
        .unwrap();
    assert_eq!(
        transmits(&out),
        vec![(b("180"), false), (b("180"), true), (b("200"), false)]
    );
    assert_eq!(sim.table.client_state(ctx), Some(ClientState::Accepted));
    assert_eq!(sim.table.server_state(stx), Some(ServerState::Accepted));
    // Both Accepted states end 64·T1 later; nothing is retransmitted meanwhile.
    let log = sim.run_until(Duration::from_secs(60));
    // Same instant: the heap orders by id, the server transaction was created first.
    assert_eq!(
        log,
        vec![
            (ms(900 + 32_000), Output::Terminated(stx)),
            (ms(900 + 32_000), Output::Terminated(ctx)),
        ]
    );
    assert!(sim.table.is_empty());
}

#[test]
fn timers_come_from_config() {
    let cfg = config::TimersConfig {
        t1_ms: 250,
        t2_ms: 2_000,
        t4_ms: 3_000,
        ..config::TimersConfig::default()
    };
    let t = Timers::from(&cfg);
    assert_eq!((t.t1, t.t2, t.t4), (ms(250), ms(2_000), ms(3_000)));
    assert_eq!(
        Timers::from(&config::TimersConfig::default()),
        Timers::default()
    );
    assert_eq!(t.timeout(), ms(16_000));
}

#[test]
fn zero_t1_does_not_spin() {
    let mut sim = Sim::new(Timers {
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        t4: Duration::ZERO,
    });
    sim.client("z9hG4bK1", Method::from_name("OPTIONS"), false);
    let mut out = Vec::new();
    sim.table.poll(sim.start + ms(1), &mut out);
    // Timer F (64·0 = 0) ended it at once; at most the 1 ms-floored retransmit ran before.
    assert!(out.len() <= 3, "{out:?}");
    assert!(sim.table.is_empty());
}
