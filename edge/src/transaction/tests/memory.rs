//! What a transaction costs once it only waits (RFC 3261 §17 wait states, RFC 6026 Accepted):
//! its key, its timers and the one message it may still have to re-send — at most 512 bytes
//! of state, and no copy of a request or response it can no longer send.

use super::*;
use crate::transport::{Dest, Transport};

const LIMIT: usize = 512;

fn dest() -> Dest {
    Dest {
        transport: Transport::Udp,
        addr: "203.0.113.45:5060".parse().unwrap(),
        flow: None,
    }
}

/// A realistic INVITE with SDP (~900 bytes) and its 200 with SDP.
fn big(kind: &str) -> Bytes {
    let mut s = format!("{kind} sip:bob@example.com SIP/2.0\r\n");
    while s.len() < 900 {
        s.push_str("X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    Bytes::from(s)
}

fn table() -> TransactionTable<Dest> {
    TransactionTable::new(Timers::default())
}

const BRANCH: &str = "z9hG4bK3f9a1c2e7b5d4a60b8e2f1c9";

#[test]
fn invite_server_in_accepted_keeps_no_response() {
    let mut t = table();
    let now = Instant::now();
    let mut out = Vec::new();
    let key = ServerKey::new(BRANCH, "203.0.113.45:5060", Method::Invite);
    let tx = t.create_server(key, dest(), false).unwrap();
    t.send_response(tx, 100, big("SIP/2.0 100"), now, &mut out)
        .unwrap();
    t.send_response(tx, 200, big("SIP/2.0 200"), now, &mut out)
        .unwrap();
    assert_eq!(t.server_state(tx), Some(ServerState::Accepted));
    let f = t.footprint(tx).unwrap();
    assert_eq!(f.messages, 0, "the TU re-sends 2xx (RFC 6026 §8.5)");
    assert!(f.state <= LIMIT, "{f:?}");
    // The 200 still went out, once.
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Transmit(t) if t.bytes.starts_with(b"SIP/2.0 200")))
            .count(),
        1
    );
}

#[test]
fn client_transactions_drop_their_request_at_the_final_response() {
    let now = Instant::now();
    for (invite, status) in [(true, 200), (true, 486), (true, 180), (false, 200)] {
        let mut t = table();
        let mut out = Vec::new();
        let method = if invite {
            Method::Invite
        } else {
            Method::Other("REGISTER".into())
        };
        let key = ClientKey::new(BRANCH, method);
        let tx = t
            .create_client(key.clone(), big("INVITE"), dest(), false, now, &mut out)
            .unwrap();
        assert!(
            t.footprint(tx).unwrap().messages >= 900,
            "kept to retransmit"
        );
        let ack = Bytes::from_static(b"ACK sip:bob@example.com SIP/2.0\r\n\r\n");
        t.on_response(&key, status, now, &mut out, || Some(ack.clone()));
        let f = t.footprint(tx).unwrap();
        let kept = if invite && status >= 300 {
            ack.len()
        } else {
            0
        };
        assert_eq!(f.messages, kept, "invite={invite} status={status}");
        assert!(f.state <= LIMIT, "{f:?}");
    }
}

#[test]
fn non_invite_server_in_completed_keeps_only_its_last_response() {
    let mut t = table();
    let now = Instant::now();
    let mut out = Vec::new();
    let key = ServerKey::new(
        BRANCH,
        "203.0.113.45:5060",
        Method::Other("REGISTER".into()),
    );
    let tx = t.create_server(key.clone(), dest(), false).unwrap();
    let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    t.send_response(tx, 200, ok.clone(), now, &mut out).unwrap();
    assert_eq!(t.server_state(tx), Some(ServerState::Completed));
    let f = t.footprint(tx).unwrap();
    assert_eq!(f.messages, ok.len());
    assert!(f.state <= LIMIT, "{f:?}");
    // And it still answers a retransmission with it (§17.2.2).
    out.clear();
    assert_eq!(
        t.on_request(&key, now, &mut out),
        RequestMatch::Absorbed(tx)
    );
    assert!(matches!(&out[..], [Output::Transmit(t)] if t.bytes == ok));
}
