//! The plain values the transaction table hands back to the shell and the TU.

use super::machine::Timer;
use bytes::Bytes;
use std::fmt;

/// Identifies one transaction in a [`TransactionTable`](super::TransactionTable). Never reused
/// by a table, so a stale id simply finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxId(pub u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// Bytes to send, and where: the destination the TU gave the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<D> {
    pub tx: TxId,
    pub dest: D,
    pub bytes: Bytes,
    /// A retransmission by the transaction layer (timer A/E/G, a response re-sent for a
    /// retransmitted request, an ACK re-sent for a retransmitted final response); counted in
    /// [`TxStats::retransmissions`].
    pub retransmission: bool,
}

/// Something the TU must learn about that it did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuEvent {
    /// Timer B or F: no final response to the client transaction's request (a proxy acts as if
    /// a 408 arrived, §16.7 step 2 / §16.8). Timer H: the ACK for a non-2xx final response never
    /// came (§17.2.1). The transaction is terminated (a `Terminated` output follows).
    Timeout { tx: TxId, timer: Timer },
    /// The shell reported a transport failure for this transaction (§17.1.4, §17.2.4); it is
    /// terminated (a `Terminated` output follows).
    TransportError { tx: TxId },
}

/// One output of the transaction table, in the order it must be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<D> {
    Transmit(Transmit<D>),
    Tu(TuEvent),
    /// The transaction reached Terminated and was removed from the table; its id is dead.
    Terminated(TxId),
}

/// What became of a received request ([`TransactionTable::on_request`](super::TransactionTable::on_request)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMatch {
    /// No server transaction has this key. A non-ACK request is new: the TU creates a server
    /// transaction for it with `create_server`. An ACK that matches nothing is the ACK of a
    /// 2xx (its own transaction, RFC 3261 §17): the proxy core forwards it without creating any
    /// transaction.
    NoMatch,
    /// Matched a transaction that absorbed it: a retransmitted request (any response to re-send
    /// is already in the outputs) or the ACK of a non-2xx final response. Nothing for the TU.
    Absorbed(TxId),
    /// An ACK matched an INVITE server transaction in Accepted (RFC 6026 §8.7): pass it to the
    /// TU, i.e. the proxy forwards it like any ACK of a 2xx.
    AckToTu(TxId),
}

/// What became of a received response ([`TransactionTable::on_response`](super::TransactionTable::on_response)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMatch {
    /// No client transaction has this key: a stray response. RFC 3261 §16.7 step 1 had a proxy
    /// forward it statelessly; RFC 6026 (whose Accepted states now carry the 2xx
    /// retransmissions) replaces that with: do not forward it.
    NoMatch,
    /// The TU must process this response (§16.7).
    ToTu(TxId),
    /// A retransmission absorbed by the transaction (any ACK to re-send is in the outputs).
    Absorbed(TxId),
}

/// Cumulative counters for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Transmits with `retransmission: true` handed out.
    pub retransmissions: u64,
    /// Retransmitted requests and responses absorbed by a transaction.
    pub absorbed: u64,
    /// Timeouts reported (Timers B, F, H).
    pub timeouts: u64,
    /// Transport errors reported by the shell.
    pub transport_errors: u64,
}
