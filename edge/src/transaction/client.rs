//! Client transactions: INVITE (RFC 3261 §17.1.1, Figure 5, with the RFC 6026 Accepted state)
//! and non-INVITE (§17.1.2, Figure 6). Pure state machines; the table owns keys, destinations
//! and the timer heap.

use super::machine::{next_deadline, Action, Deadlines, Disposition, Slot, Timer};
use super::timers::Timers;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// State of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard yet (Timers A and B run).
    Calling,
    /// Non-INVITE request sent, nothing heard yet (Timers E and F run).
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response (INVITE: 3xx–6xx; non-INVITE: any) was received; absorbing its
    /// retransmissions (Timer D or K).
    Completed,
    /// INVITE only, RFC 6026: a 2xx was received; further 2xx go to the TU (Timer M).
    Accepted,
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ClientTransaction {
    invite: bool,
    reliable: bool,
    state: ClientState,
    /// The request, for Timer A/E retransmissions; emptied once none can follow (a final
    /// response, or an INVITE's provisional), so a transaction in a wait state holds no copy.
    request: Bytes,
    /// The ACK of a non-2xx final response (§17.1.1.3), re-sent on each retransmission of it.
    ack: Option<Bytes>,
    /// Current Timer A / E interval.
    interval: Duration,
    pub deadlines: Deadlines,
}

impl ClientTransaction {
    /// Start the transaction: send the request, arm the retransmit timer (unreliable transport
    /// only) and the timeout (B or F, 64·T1, on every transport).
    pub fn start(
        invite: bool,
        reliable: bool,
        request: Bytes,
        timers: &Timers,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> ClientTransaction {
        let interval = timers.first_retransmit();
        let deadlines = Deadlines {
            retransmit: (!reliable).then(|| now + interval),
            timeout: Some(now + timers.timeout()),
            linger: None,
        };
        actions.push(Action::Send {
            bytes: request.clone(),
            retransmission: false,
        });
        ClientTransaction {
            invite,
            reliable,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            request,
            ack: None,
            interval,
            deadlines,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Message bytes this transaction keeps (request, ACK).
    pub fn held_bytes(&self) -> usize {
        self.request.len() + self.ack.as_ref().map_or(0, Bytes::len)
    }

    /// A response matched this transaction. `build_ack` is called at most once, when an INVITE
    /// transaction first enters Completed.
    pub fn on_response(
        &mut self,
        status: u16,
        timers: &Timers,
        now: Instant,
        build_ack: impl FnOnce() -> Option<Bytes>,
        actions: &mut Vec<Action>,
    ) -> Disposition {
        if status < 100 {
            // Not a SIP status (§7.2: 1xx–6xx); dropped without counting it as a retransmission.
            return Disposition::Consumed;
        }
        if self.invite {
            self.invite_response(status, timers, now, build_ack, actions)
        } else {
            self.non_invite_response(status, timers, now)
        }
    }

    fn invite_response(
        &mut self,
        status: u16,
        timers: &Timers,
        now: Instant,
        build_ack: impl FnOnce() -> Option<Bytes>,
        actions: &mut Vec<Action>,
    ) -> Disposition {
        use ClientState::*;
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                // §17.1.1.2: no more retransmissions in Proceeding; Timer B only bounds Calling
                // (Timer C of the proxy, §16.6 step 11, bounds Proceeding).
                self.state = Proceeding;
                self.deadlines.retransmit = None;
                self.deadlines.timeout = None;
                self.request = Bytes::new();
                Disposition::ToTu
            }
            (Calling | Proceeding, 200..=299) => {
                // RFC 6026 §8.4: Accepted, so that 2xx retransmissions and forked 2xx still
                // reach the TU; Timer M bounds the state.
                self.state = Accepted;
                self.request = Bytes::new();
                self.deadlines.clear();
                self.deadlines.linger = Some(now + timers.timeout());
                Disposition::ToTu
            }
            (Calling | Proceeding, _) => {
                // §17.1.1.3: the transaction ACKs a non-2xx final response itself.
                self.state = Completed;
                self.request = Bytes::new();
                self.deadlines.clear();
                self.ack = build_ack();
                if let Some(ack) = &self.ack {
                    actions.push(Action::Send {
                        bytes: ack.clone(),
                        retransmission: false,
                    });
                }
                self.linger(timers.timer_d(self.reliable), now);
                Disposition::ToTu
            }
            (Completed, 300..) => {
                // A retransmitted final response: our ACK was lost, send it again.
                if let Some(ack) = &self.ack {
                    actions.push(Action::Send {
                        bytes: ack.clone(),
                        retransmission: true,
                    });
                }
                Disposition::Absorbed
            }
            (Accepted, 200..=299) => Disposition::ToTu,
            _ => Disposition::Absorbed,
        }
    }

    fn non_invite_response(&mut self, status: u16, timers: &Timers, now: Instant) -> Disposition {
        use ClientState::*;
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => {
                // §17.1.2.2: retransmissions go on (at T2 once Timer E next fires).
                self.state = Proceeding;
                Disposition::ToTu
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                self.request = Bytes::new();
                self.deadlines.clear();
                self.linger(timers.t4_or_zero(self.reliable), now);
                Disposition::ToTu
            }
            _ => Disposition::Absorbed,
        }
    }

    /// Enter a linger period (Timer D or K); zero means terminate now (reliable transport).
    fn linger(&mut self, wait: Duration, now: Instant) {
        if wait.is_zero() {
            self.terminate();
        } else {
            self.deadlines.linger = Some(now + wait);
        }
    }

    pub fn terminate(&mut self) {
        self.state = ClientState::Terminated;
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
        use ClientState::*;
        match slot {
            Slot::Retransmit => {
                self.deadlines.retransmit = None;
                self.interval = match (self.invite, self.state) {
                    (true, Calling) => timers.next_a(self.interval),
                    (false, Trying) => timers.next_capped(self.interval),
                    (false, Proceeding) => timers.proceeding_e(),
                    _ => return,
                };
                actions.push(Action::Send {
                    bytes: self.request.clone(),
                    retransmission: true,
                });
                self.deadlines.retransmit = Some(next_deadline(fired, self.interval, now));
            }
            Slot::Timeout => {
                self.deadlines.timeout = None;
                if matches!(self.state, Calling | Trying | Proceeding) {
                    actions.push(Action::Timeout(if self.invite {
                        Timer::B
                    } else {
                        Timer::F
                    }));
                    self.terminate();
                }
            }
            Slot::Linger => {
                self.terminate();
            }
        }
    }
}
