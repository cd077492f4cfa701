//! Server transactions: INVITE (RFC 3261 §17.2.1, Figure 7, with the RFC 6026 Accepted state)
//! and non-INVITE (§17.2.2, Figure 8). Pure state machines; the table owns keys, destinations
//! and the timer heap.

use super::machine::{next_deadline, Action, Deadlines, Disposition, Slot, Timer};
use super::timers::Timers;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// State of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE only: request received, no response sent yet.
    Trying,
    /// INVITE: from creation until the final response; non-INVITE: after a provisional.
    Proceeding,
    /// A final response (INVITE: 3xx–6xx) was sent; INVITE waits for the ACK (Timers G, H),
    /// non-INVITE absorbs request retransmissions (Timer J).
    Completed,
    /// INVITE only: the ACK arrived; absorbing ACK retransmissions (Timer I).
    Confirmed,
    /// INVITE only, RFC 6026: a 2xx was sent; INVITE retransmissions are absorbed, further 2xx
    /// from the TU are sent, an ACK goes to the TU (Timer L).
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ServerTransaction {
    invite: bool,
    reliable: bool,
    state: ServerState,
    /// Most recent response sent: re-sent on request retransmissions and by Timer G.
    last_response: Option<Bytes>,
    /// Current Timer G interval.
    interval: Duration,
    pub deadlines: Deadlines,
}

/// Why a response from the TU was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Discarded;

impl ServerTransaction {
    /// A new request created the transaction. Nothing is sent: the TU answers (for INVITE a
    /// proxy sends 100 Trying at once, §16.2 / §17.2.1).
    pub fn new(invite: bool, reliable: bool, timers: &Timers) -> ServerTransaction {
        ServerTransaction {
            invite,
            reliable,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            interval: timers.first_retransmit(),
            deadlines: Deadlines::default(),
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Message bytes this transaction keeps (its last response).
    pub fn held_bytes(&self) -> usize {
        self.last_response.as_ref().map_or(0, Bytes::len)
    }

    /// A retransmission of the request (not an ACK) arrived.
    pub fn on_request_retransmission(&mut self, actions: &mut Vec<Action>) -> Disposition {
        use ServerState::*;
        let resend = match (self.invite, self.state) {
            // §17.2.1: re-send the most recent provisional (if any) or the final response.
            (true, Proceeding | Completed) => true,
            // RFC 6026 §8.7: absorbed in Accepted; Confirmed absorbs everything (§17.2.1).
            (true, _) => false,
            // §17.2.2: Trying discards, Proceeding and Completed re-send the last response.
            (false, Proceeding | Completed) => true,
            (false, _) => false,
        };
        if resend {
            if let Some(resp) = &self.last_response {
                actions.push(Action::Send {
                    bytes: resp.clone(),
                    retransmission: true,
                });
            }
        }
        Disposition::Absorbed
    }

    /// An ACK matched this (INVITE) transaction.
    pub fn on_ack(&mut self, timers: &Timers, now: Instant) -> Disposition {
        match self.state {
            ServerState::Completed => {
                // §17.2.1: stop retransmitting, absorb ACK retransmissions for Timer I.
                self.state = ServerState::Confirmed;
                self.deadlines.clear();
                self.linger(timers.t4_or_zero(self.reliable), now);
                Disposition::Consumed
            }
            // RFC 6026 §8.7: an ACK in Accepted goes to the TU (a 2xx ACK reusing the branch).
            ServerState::Accepted => Disposition::ToTu,
            _ => Disposition::Absorbed,
        }
    }

    /// The TU sends a response with `status` through this transaction.
    pub fn send_response(
        &mut self,
        status: u16,
        bytes: Bytes,
        timers: &Timers,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> Result<(), Discarded> {
        use ServerState::*;
        if !(100..=699).contains(&status) {
            return Err(Discarded);
        }
        let provisional = status < 200;
        let success = (200..300).contains(&status);
        match (self.invite, self.state) {
            (true, Proceeding) if provisional => {}
            (true, Proceeding) if success => {
                // RFC 6026 §8.5: Accepted; the TU (UAS core or proxy) retransmits 2xx itself.
                self.state = Accepted;
                self.deadlines.linger = Some(now + timers.timeout());
                // Nothing is re-sent in Accepted (the TU retransmits 2xx): keep no copy.
                self.last_response = None;
                actions.push(Action::Send {
                    bytes,
                    retransmission: false,
                });
                return Ok(());
            }
            (true, Proceeding) => {
                // §17.2.1: Completed; Timer G (unreliable only) and Timer H.
                self.state = Completed;
                if !self.reliable {
                    self.interval = timers.first_retransmit();
                    self.deadlines.retransmit = Some(now + self.interval);
                }
                self.deadlines.timeout = Some(now + timers.timeout());
            }
            // RFC 6026 §8.7: 2xx retransmissions from the TU pass through in Accepted.
            (true, Accepted) if success => {
                actions.push(Action::Send {
                    bytes,
                    retransmission: false,
                });
                return Ok(());
            }
            (false, Trying | Proceeding) if provisional => self.state = Proceeding,
            (false, Trying | Proceeding) => {
                self.state = Completed;
                self.last_response = Some(bytes.clone());
                actions.push(Action::Send {
                    bytes,
                    retransmission: false,
                });
                self.linger(timers.timer_j(self.reliable), now);
                return Ok(());
            }
            // §17.2.1, §17.2.2: responses after the final one are discarded.
            _ => return Err(Discarded),
        }
        self.last_response = Some(bytes.clone());
        actions.push(Action::Send {
            bytes,
            retransmission: false,
        });
        Ok(())
    }

    /// Enter a linger period (Timer I or J); zero means terminate now (reliable transport).
    fn linger(&mut self, wait: Duration, now: Instant) {
        if wait.is_zero() {
            self.terminate();
        } else {
            self.deadlines.linger = Some(now + wait);
        }
    }

    pub fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.deadlines.clear();
    }

    /// The timer in `slot`, due at `fired`, fired at `now`.
    pub fn on_timer(
        &mut self,
        slot: Slot,
        fired: Instant,
        timers: &Timers,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        match slot {
            Slot::Retransmit => {
                self.deadlines.retransmit = None;
                if self.state != ServerState::Completed {
                    return;
                }
                // Timer G (§17.2.1): re-send the final response, double the interval up to T2.
                if let Some(resp) = &self.last_response {
                    actions.push(Action::Send {
                        bytes: resp.clone(),
                        retransmission: true,
                    });
                }
                self.interval = timers.next_capped(self.interval);
                self.deadlines.retransmit = Some(next_deadline(fired, self.interval, now));
            }
            Slot::Timeout => {
                self.deadlines.timeout = None;
                if self.state == ServerState::Completed {
                    // Timer H: the ACK never came; the TU is told of the failure (§17.2.1).
                    actions.push(Action::Timeout(Timer::H));
                    self.terminate();
                }
            }
            Slot::Linger => self.terminate(),
        }
    }
}
