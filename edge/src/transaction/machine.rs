//! What the client and server state machines share: their timer slots and the actions they ask
//! the table to carry out.

use bytes::Bytes;
use std::time::Instant;

/// The RFC names of the transaction timers, reported with a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client retransmit (§17.1.1.2).
    A,
    /// INVITE client timeout (§17.1.1.2).
    B,
    /// INVITE client wait for response retransmissions (§17.1.1.2).
    D,
    /// Non-INVITE client retransmit (§17.1.2.2).
    E,
    /// Non-INVITE client timeout (§17.1.2.2).
    F,
    /// INVITE server response retransmit (§17.2.1).
    G,
    /// INVITE server wait for ACK (§17.2.1).
    H,
    /// INVITE server wait for ACK retransmissions (§17.2.1).
    I,
    /// Non-INVITE server wait for request retransmissions (§17.2.2).
    J,
    /// Non-INVITE client wait for response retransmissions (§17.1.2.2).
    K,
    /// INVITE server wait in Accepted (RFC 6026 §8.7).
    L,
    /// INVITE client wait in Accepted (RFC 6026 §8.4).
    M,
}

/// The three timer roles a transaction can have armed at once. Each transaction holds at most
/// one deadline per slot; the table's heap entries name a slot and are stale when the slot no
/// longer holds that deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Slot {
    /// A, E, G.
    Retransmit,
    /// B, F, H.
    Timeout,
    /// D, I, J, K, L, M: the state's lifetime ends, the transaction terminates.
    Linger,
}

/// Armed deadlines of one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deadlines {
    pub retransmit: Option<Instant>,
    pub timeout: Option<Instant>,
    pub linger: Option<Instant>,
}

impl Deadlines {
    pub fn get(&self, slot: Slot) -> Option<Instant> {
        match slot {
            Slot::Retransmit => self.retransmit,
            Slot::Timeout => self.timeout,
            Slot::Linger => self.linger,
        }
    }

    pub fn clear(&mut self) {
        *self = Deadlines::default();
    }
}

/// Something a state machine wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Hand these bytes to the transport, towards the transaction's destination.
    Send { bytes: Bytes, retransmission: bool },
    /// The transaction timed out (B, F, H); it is terminated too.
    Timeout(Timer),
}

/// What a state machine did with an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Pass the message to the TU.
    ToTu,
    /// The message was expected by the transaction and consumed by it (the ACK of a non-2xx
    /// final response).
    Consumed,
    /// A retransmission (or a message the state ignores), absorbed.
    Absorbed,
}

/// Next deadline of a periodic timer that fired at `fired` (its scheduled instant) and was seen
/// at `now`: keeps the RFC schedule exact when polled on time, and never lands in the past when
/// polled late (so a late poll sends one retransmission, not a burst).
pub(crate) fn next_deadline(
    fired: Instant,
    interval: std::time::Duration,
    now: Instant,
) -> Instant {
    let next = fired + interval;
    if next > now {
        next
    } else {
        now + interval
    }
}
