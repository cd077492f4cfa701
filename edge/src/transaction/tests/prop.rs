//! Random event sequences: the table never panics, never transmits for a dead transaction, and
//! every transaction that does not wait on the TU terminates by itself.

use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

#[derive(Debug, Clone)]
enum Op {
    CreateClient {
        branch: u8,
        method: u8,
        reliable: bool,
    },
    Response {
        branch: u8,
        method: u8,
        status: u16,
    },
    CreateServer {
        branch: u8,
        method: u8,
        reliable: bool,
    },
    Request {
        branch: u8,
        method: u8,
    },
    Respond {
        pick: usize,
        status: u16,
    },
    Advance {
        ms: u64,
    },
    TransportError {
        pick: usize,
    },
    Terminate {
        pick: usize,
    },
}

fn method(i: u8) -> Method {
    match i % 4 {
        0 => Method::Invite,
        1 => Method::Ack,
        2 => Method::Cancel,
        _ => Method::from_name("OPTIONS"),
    }
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(100u16),
        Just(180),
        Just(200),
        Just(302),
        Just(486),
        Just(0),
        Just(99),
        Just(700),
        100u16..700
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 0u8..4, any::<bool>()).prop_map(|(branch, method, reliable)| Op::CreateClient {
            branch,
            method,
            reliable
        }),
        (0u8..3, 0u8..4, status()).prop_map(|(branch, method, status)| Op::Response {
            branch,
            method,
            status
        }),
        (0u8..3, 0u8..4, any::<bool>()).prop_map(|(branch, method, reliable)| Op::CreateServer {
            branch,
            method,
            reliable
        }),
        (0u8..3, 0u8..4).prop_map(|(branch, method)| Op::Request { branch, method }),
        (any::<usize>(), status()).prop_map(|(pick, status)| Op::Respond { pick, status }),
        (0u64..40_000).prop_map(|ms| Op::Advance { ms }),
        any::<usize>().prop_map(|pick| Op::TransportError { pick }),
        any::<usize>().prop_map(|pick| Op::Terminate { pick }),
    ]
}

/// Checks outputs as they come: no output for a terminated transaction, one `Terminated` each.
#[derive(Default)]
struct Checker {
    created: Vec<TxId>,
    dead: HashSet<TxId>,
}

impl Checker {
    fn check(&mut self, out: &mut Vec<Out>) {
        for o in out.drain(..) {
            let tx = match &o {
                Output::Transmit(t) => t.tx,
                Output::Tu(TuEvent::Timeout { tx, .. } | TuEvent::TransportError { tx }) => *tx,
                Output::Terminated(tx) => *tx,
            };
            assert!(!self.dead.contains(&tx), "{o:?} after termination");
            if matches!(o, Output::Terminated(_)) {
                self.dead.insert(tx);
            }
        }
    }

    fn live(&self) -> Vec<TxId> {
        self.created
            .iter()
            .copied()
            .filter(|tx| !self.dead.contains(tx))
            .collect()
    }

    fn pick(&self, pick: usize) -> Option<TxId> {
        self.created.get(pick % self.created.len().max(1)).copied()
    }
}

proptest! {
    #[test]
    fn random_events_keep_the_table_consistent(ops in proptest::collection::vec(op(), 0..60)) {
        let mut sim = Sim::default_timers();
        let mut out = Vec::new();
        let mut c = Checker::default();
        for op in ops {
            match op {
                Op::CreateClient { branch, method: m, reliable } => {
                    let key = ClientKey::new(&format!("z9hG4bK{branch}"), method(m));
                    if let Ok(tx) = sim.table.create_client(key, b("REQ"), "core", reliable, sim.now, &mut out) {
                        c.created.push(tx);
                    }
                }
                Op::Response { branch, method: m, status } => {
                    let key = ClientKey::new(&format!("z9hG4bK{branch}"), method(m));
                    sim.table.on_response(&key, status, sim.now, &mut out, || Some(b("ACK")));
                }
                Op::CreateServer { branch, method: m, reliable } => {
                    let key = ServerKey::new(&format!("z9hG4bK{branch}"), "ua:5060", method(m));
                    if let Ok(tx) = sim.table.create_server(key, "ua", reliable) {
                        c.created.push(tx);
                    }
                }
                Op::Request { branch, method: m } => {
                    let key = ServerKey::new(&format!("z9hG4bK{branch}"), "ua:5060", method(m));
                    sim.table.on_request(&key, sim.now, &mut out);
                }
                Op::Respond { pick, status } => {
                    if let Some(tx) = c.pick(pick) {
                        let _ = sim.table.send_response(tx, status, b("RESP"), sim.now, &mut out);
                    }
                }
                Op::Advance { ms: step } => {
                    c.check(&mut out);
                    let until = sim.now - sim.start + ms(step);
                    for (_, o) in sim.run_until(until) {
                        out.push(o);
                    }
                }
                Op::TransportError { pick } => {
                    if let Some(tx) = c.pick(pick) {
                        sim.table.on_transport_error(tx, &mut out);
                    }
                }
                Op::Terminate { pick } => {
                    if let Some(tx) = c.pick(pick) {
                        sim.table.terminate(tx, &mut out);
                    }
                }
            }
            c.check(&mut out);
            prop_assert_eq!(sim.table.len(), c.live().len());
            // The O(1) in-progress count agrees with the states, one by one.
            let in_progress = c.live().into_iter().filter(|&tx| {
                matches!(sim.table.client_state(tx), Some(ClientState::Calling | ClientState::Trying | ClientState::Proceeding))
                    || matches!(sim.table.server_state(tx), Some(ServerState::Trying | ServerState::Proceeding))
            }).count();
            prop_assert_eq!(sim.table.pending(), in_progress);
        }
        // Give every live server transaction a final response, then let all timers run out:
        // only INVITE client transactions in Proceeding (bounded by the TU's Timer C) remain.
        for tx in c.live() {
            let _ = sim.table.send_response(tx, 500, b("500"), sim.now, &mut out);
        }
        c.check(&mut out);
        let until = sim.now - sim.start + Duration::from_secs(200);
        for (_, o) in sim.run_until(until) {
            out.push(o);
        }
        c.check(&mut out);
        for tx in c.live() {
            prop_assert_eq!(sim.table.client_state(tx), Some(ClientState::Proceeding));
        }
        prop_assert_eq!(sim.table.next_deadline(), None);
    }
}
