//! The SIP transaction layer: RFC 3261 §17 with the RFC 6026 corrections (the INVITE
//! *Accepted* states, Timers L and M).
//!
//! Sans-IO: no sockets, no clock, no SIP parsing. The caller (the proxy core, "TU") parses
//! messages, builds the [keys](ClientKey) from the top Via and CSeq, serializes what is to be
//! sent into [`Bytes`](bytes::Bytes), and passes `now`. The [`TransactionTable`] answers with
//! plain values: a [`RequestMatch`] / [`ResponseMatch`] telling whether the TU sees the message,
//! and [`Output`]s appended to a caller-owned `Vec`: [`Transmit`] (bytes + the destination `D`
//! the TU stored in the transaction), [`TuEvent`] (timeouts, transport errors) and
//! `Terminated(TxId)` (the transaction is gone, its id is dead).
//!
//! | RFC | here |
//! |---|---|
//! | §17.1.1 INVITE client, Timers A, B, D; RFC 6026 Accepted + Timer M | [`ClientState`] `Calling → Proceeding → Completed / Accepted` |
//! | §17.1.2 non-INVITE client, Timers E, F, K | `Trying → Proceeding → Completed` |
//! | §17.2.1 INVITE server, Timers G, H, I; RFC 6026 Accepted + Timer L | [`ServerState`] `Proceeding → Completed → Confirmed / Accepted` |
//! | §17.2.2 non-INVITE server, Timer J | `Trying → Proceeding → Completed` |
//! | §17.1.3 / §17.2.3 matching | [`ClientKey`] (branch + CSeq method), [`ServerKey`] (branch + sent-by + method, ACK → INVITE) |
//!
//! Each transaction is reliable (TCP: no retransmissions; Timers D, I, J, K are zero, so the
//! transaction ends inside the call that completes it) or not (UDP), chosen at creation.
//! Timers are `(deadline, id, slot)` entries of one min-heap; stale entries are skipped.
//!
//! # What stays with the TU
//! - An INVITE server transaction in Proceeding and an INVITE client transaction in Proceeding
//!   have no timer: the proxy's Timer C (§16.6 step 11, §16.8) answers / cancels, and
//!   [`TransactionTable::terminate`] ends a client transaction that never completes.
//! - The ACK of a 2xx and stray responses never reach a transaction ([`RequestMatch::NoMatch`],
//!   [`ResponseMatch::NoMatch`]).
//! - Limits (`limits.max_transactions`): check [`TransactionTable::len`] before creating.
//!
//! # How a proxy drives it
//! ```
//! use bytes::Bytes;
//! use edge::transaction::*;
//! use std::time::{Duration, Instant};
//!
//! # fn main() -> Result<(), TxError> {
//! // D: where to send. Here a string; the shell would use e.g. (Transport, SocketAddr, FlowId).
//! let mut table: TransactionTable<&str> = TransactionTable::new(Timers::default());
//! let mut out: Vec<Output<&str>> = Vec::new();
//! let now = Instant::now();
//!
//! // 1. An INVITE arrives from a UA: top Via branch + sent-by, method.
//! let skey = ServerKey::new("z9hG4bKua1", "10.0.0.1:5060", Method::Invite);
//! let stx = match table.on_request(&skey, now, &mut out) {
//!     // New request: create the server transaction, answer 100 Trying at once (§16.2).
//!     RequestMatch::NoMatch => {
//!         let stx = table.create_server(skey, "ua", /* reliable */ false)?;
//!         table.send_response(stx, 100, Bytes::from_static(b"SIP/2.0 100 Trying..."), now, &mut out)?;
//!         stx
//!     }
//!     // A retransmission: the transaction re-sent its last response (in `out`); stop here.
//!     RequestMatch::Absorbed(_) => unreachable!("first INVITE"),
//!     // An ACK for a 2xx reusing the INVITE's branch: forward it like any 2xx ACK.
//!     RequestMatch::AckToTu(_) => unreachable!("not an ACK"),
//! };
//!
//! // 2. Forward it: one client transaction per branch, each with its own branch id and target.
//! let ckey = ClientKey::new("z9hG4bKedge1", Method::Invite);
//! let ctx = table.create_client(ckey.clone(), Bytes::from_static(b"INVITE ..."), "core", false, now, &mut out)?;
//!
//! // 3. The shell sends every Transmit to its `dest` and tracks the other outputs.
//! for o in out.drain(..) {
//!     match o {
//!         Output::Transmit(t) => { /* send t.bytes to t.dest; on failure: table.on_transport_error(t.tx, ..) */ }
//!         Output::Tu(TuEvent::Timeout { tx, timer }) => { /* B/F: act as if 408 came (§16.7); H: ACK lost */ }
//!         Output::Tu(TuEvent::TransportError { tx }) => { /* as a 503 for a client tx (§16.7) */ }
//!         Output::Terminated(tx) => { /* drop the proxy's per-tx context */ }
//!     }
//! }
//!
//! // 4. A response arrives from the core: top Via branch + CSeq method.
//! let later = now + Duration::from_millis(40);
//! let m = table.on_response(&ckey, 486, later, &mut out, || {
//!     // Only called for an INVITE's first 3xx-6xx: the ACK the transaction sends (§17.1.1.3),
//!     // built by the TU from the INVITE and the response (§17.1.1.3 rules).
//!     Some(Bytes::from_static(b"ACK ..."))
//! });
//! match m {
//!     // §16.7: the proxy core processes it (best response, forwards 486 upstream).
//!     ResponseMatch::ToTu(tx) => {
//!         assert_eq!(tx, ctx);
//!         table.send_response(stx, 486, Bytes::from_static(b"SIP/2.0 486 ..."), later, &mut out)?;
//!     }
//!     ResponseMatch::Absorbed(_) => {} // a retransmission: nothing to do (the ACK re-send is in `out`)
//!     ResponseMatch::NoMatch => {}     // stray: RFC 6026, not forwarded
//! }
//!
//! // 5. The event loop sleeps until the next deadline, then fires the timers.
//! while let Some(at) = table.next_deadline() {
//!     if at > now + Duration::from_secs(1) { break; }
//!     table.poll(at, &mut out); // Timer G retransmits the 486 to "ua", ...
//! }
//! assert!(out.iter().any(|o| matches!(o, Output::Transmit(t) if t.retransmission && t.dest == "ua")));
//! assert_eq!(table.len(), 2);
//! assert_eq!(table.stats().retransmissions, 1);
//! # Ok(())
//! # }
//! ```

mod client;
mod key;
mod machine;
mod output;
mod server;
mod table;
mod timers;

pub use client::ClientState;
pub use key::{ClientKey, Method, ServerKey};
pub use machine::Timer;
pub use output::{Output, RequestMatch, ResponseMatch, Transmit, TuEvent, TxId, TxStats};
pub use server::ServerState;
pub use table::{TransactionTable, TxError};
pub use timers::Timers;

#[cfg(test)]
mod tests;
