//! The transaction table: owns every client and server transaction, matches incoming messages
//! to them (§17.1.3, §17.2.3), and drives their timers from one min-heap.
//!
//! Timers are entries `(deadline, tx, slot)` in a `BinaryHeap`. Re-arming or cancelling a timer
//! does not touch the heap: an entry is stale (skipped) once its transaction is gone or the
//! transaction's slot no longer holds that deadline.

use super::client::{ClientState, ClientTransaction};
use super::key::{ClientKey, Method, ServerKey};
use super::machine::{Action, Deadlines, Disposition, Slot};
use super::output::IdMap;
use super::output::{Output, RequestMatch, ResponseMatch, Transmit, TuEvent, TxId, TxStats};
use super::server::{ServerState, ServerTransaction};
use super::timers::Timers;
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Misuse of the table by the TU (never caused by network input alone).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("an ACK never creates a transaction (RFC 3261 §17)")]
    AckTransaction,
    #[error("a transaction with this key exists already: {0}")]
    Duplicate(TxId),
    #[error("no such transaction: {0}")]
    UnknownTransaction(TxId),
    #[error("{0} is a client transaction; responses are sent through server transactions")]
    NotServer(TxId),
    #[error("response {status} discarded by {tx} in state {state:?} (RFC 3261 §17.2.1, §17.2.2)")]
    ResponseDiscarded {
        tx: TxId,
        status: u16,
        state: ServerState,
    },
}

enum Kind {
    Client {
        key: ClientKey,
        machine: ClientTransaction,
    },
    Server {
        key: ServerKey,
        machine: ServerTransaction,
    },
}

struct Entry<D> {
    dest: D,
    kind: Kind,
    /// Counted in [`TransactionTable::waiting`]: only absorbing retransmissions.
    waiting: bool,
}

impl<D> Entry<D> {
    fn deadlines(&self) -> Deadlines {
        match &self.kind {
            Kind::Client { machine, .. } => machine.deadlines,
            Kind::Server { machine, .. } => machine.deadlines,
        }
    }

    /// Past its final response: kept only to absorb retransmissions (client Completed or
    /// Accepted, server Completed, Confirmed or Accepted).
    fn is_waiting(&self) -> bool {
        match &self.kind {
            Kind::Client { machine, .. } => matches!(
                machine.state(),
                ClientState::Completed | ClientState::Accepted
            ),
            Kind::Server { machine, .. } => matches!(
                machine.state(),
                ServerState::Completed | ServerState::Confirmed | ServerState::Accepted
            ),
        }
    }

    fn is_terminated(&self) -> bool {
        match &self.kind {
            Kind::Client { machine, .. } => machine.state() == ClientState::Terminated,
            Kind::Server { machine, .. } => machine.state() == ServerState::Terminated,
        }
    }
}

/// Memory held by one transaction, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// State, key and table slots (hash map slots counted at their size, not their load).
    pub state: usize,
    /// Messages kept for re-sending: a request until its final response, the last response
    /// of a server transaction that must re-send it, an INVITE's ACK for a non-2xx.
    pub messages: usize,
}

/// All transactions of one worker, generic over the destination `D` the TU picks for each (an
/// address, a flow id…), which comes back in every [`Transmit`].
pub struct TransactionTable<D> {
    timers: Timers,
    next_id: u64,
    entries: IdMap<TxId, Entry<D>>,
    clients: HashMap<ClientKey, TxId>,
    servers: HashMap<ServerKey, TxId>,
    heap: BinaryHeap<Reverse<(Instant, TxId, Slot)>>,
    stats: TxStats,
    /// Live transactions in a wait state (see [`Entry::is_waiting`]), kept up to date by
    /// `settle` and `remove` so that [`Self::pending`] is O(1).
    waiting: usize,
    /// Scratch buffer for state machine actions, reused across calls.
    actions: Vec<Action>,
}

impl<D: Clone> TransactionTable<D> {
    pub fn new(timers: Timers) -> Self {
        TransactionTable {
            timers,
            next_id: 0,
            entries: IdMap::default(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            heap: BinaryHeap::new(),
            stats: TxStats::default(),
            waiting: 0,
            actions: Vec::new(),
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Live transactions (client and server).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Transactions still waiting for their final response (client: Calling, Trying,
    /// Proceeding; server: Trying, Proceeding): the work in progress, which a graceful stop
    /// must let finish and `limits.max_transactions` bounds. The others only absorb
    /// retransmissions until their timer ends them. O(1).
    pub fn pending(&self) -> usize {
        self.entries.len() - self.waiting
    }

    /// What live transaction `tx` costs in memory (see [`Footprint`]).
    pub fn footprint(&self, tx: TxId) -> Option<Footprint> {
        let e = self.entries.get(&tx)?;
        let (key_heap, map_slot, messages) = match &e.kind {
            Kind::Client { key, machine } => (
                key.heap_bytes(),
                std::mem::size_of::<(ClientKey, TxId)>(),
                machine.held_bytes(),
            ),
            Kind::Server { key, machine } => (
                key.heap_bytes(),
                std::mem::size_of::<(ServerKey, TxId)>(),
                machine.held_bytes(),
            ),
        };
        let armed = [Slot::Retransmit, Slot::Timeout, Slot::Linger]
            .into_iter()
            .filter(|s| e.deadlines().get(*s).is_some())
            .count();
        Some(Footprint {
            // The entry's slot, the key's slot in the by-key map (one control byte each), the
            // key's heap twice (the entry and the map each hold a copy), its timer entries.
            state: std::mem::size_of::<(TxId, Entry<D>)>()
                + 1
                + map_slot
                + 1
                + 2 * key_heap
                + armed * std::mem::size_of::<Reverse<(Instant, TxId, Slot)>>(),
            messages,
        })
    }

    /// Cumulative counters.
    pub fn stats(&self) -> TxStats {
        self.stats
    }

    // ---- client side (§17.1) ----

    /// Start a client transaction for a request the TU built (with a fresh branch in its top
    /// Via, the branch in `key`). Outputs the first transmission of `request` to `dest`; on an
    /// unreliable transport (`reliable == false`) the transaction retransmits it (Timer A or E).
    pub fn create_client(
        &mut self,
        key: ClientKey,
        request: Bytes,
        dest: D,
        reliable: bool,
        now: Instant,
        out: &mut Vec<Output<D>>,
    ) -> Result<TxId, TxError> {
        if *key.method() == Method::Ack {
            return Err(TxError::AckTransaction);
        }
        if let Some(&id) = self.clients.get(&key) {
            return Err(TxError::Duplicate(id));
        }
        let id = self.alloc_id();
        let invite = *key.method() == Method::Invite;
        let machine = ClientTransaction::start(
            invite,
            reliable,
            request,
            &self.timers,
            now,
            &mut self.actions,
        );
        self.clients.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                dest,
                kind: Kind::Client { key, machine },
                waiting: false,
            },
        );
        self.settle(id, Deadlines::default(), out);
        Ok(id)
    }

    /// A response arrived whose top Via branch and CSeq method make `key`. Says whether the TU
    /// gets it. `build_ack` is called at most once: when an INVITE client transaction receives
    /// its first 3xx–6xx, the transaction sends that ACK (§17.1.1.3) and re-sends it for every
    /// retransmission of the response; returning `None` sends none.
    pub fn on_response(
        &mut self,
        key: &ClientKey,
        status: u16,
        now: Instant,
        out: &mut Vec<Output<D>>,
        build_ack: impl FnOnce() -> Option<Bytes>,
    ) -> ResponseMatch {
        let Some(&id) = self.clients.get(key) else {
            return ResponseMatch::NoMatch;
        };
        let Some(Entry {
            kind: Kind::Client { machine, .. },
            ..
        }) = self.entries.get_mut(&id)
        else {
            return ResponseMatch::NoMatch;
        };
        let before = machine.deadlines;
        let disposition =
            machine.on_response(status, &self.timers, now, build_ack, &mut self.actions);
        self.settle(id, before, out);
        match disposition {
            Disposition::ToTu => ResponseMatch::ToTu(id),
            Disposition::Consumed => ResponseMatch::Absorbed(id),
            Disposition::Absorbed => {
                self.stats.absorbed += 1;
                ResponseMatch::Absorbed(id)
            }
        }
    }

    /// The client transaction with this key, if live.
    pub fn find_client(&self, key: &ClientKey) -> Option<TxId> {
        self.clients.get(key).copied()
    }

    /// State of a live client transaction (e.g. a proxy may CANCEL only once it is in
    /// Proceeding, §9.1).
    pub fn client_state(&self, tx: TxId) -> Option<ClientState> {
        match &self.entries.get(&tx)?.kind {
            Kind::Client { machine, .. } => Some(machine.state()),
            Kind::Server { .. } => None,
        }
    }

    // ---- server side (§17.2) ----

    /// A received request: is it a retransmission or ACK for a live server transaction?
    /// Whatever must be re-sent is appended to `out`.
    pub fn on_request(
        &mut self,
        key: &ServerKey,
        now: Instant,
        out: &mut Vec<Output<D>>,
    ) -> RequestMatch {
        let Some(&id) = self.servers.get(key) else {
            return RequestMatch::NoMatch;
        };
        let Some(Entry {
            kind: Kind::Server { machine, .. },
            ..
        }) = self.entries.get_mut(&id)
        else {
            return RequestMatch::NoMatch;
        };
        let before = machine.deadlines;
        let disposition = if key.is_ack() {
            machine.on_ack(&self.timers, now)
        } else {
            machine.on_request_retransmission(&mut self.actions)
        };
        self.settle(id, before, out);
        match disposition {
            Disposition::ToTu => RequestMatch::AckToTu(id),
            Disposition::Consumed => RequestMatch::Absorbed(id),
            Disposition::Absorbed => {
                self.stats.absorbed += 1;
                RequestMatch::Absorbed(id)
            }
        }
    }

    /// Create the server transaction for a new request (after `on_request` said `NoMatch`).
    /// Responses will be sent to `dest` (per §18.2.2: the Via `received`/`rport` address, or
    /// the connection). Sends nothing: for an INVITE the TU sends 100 Trying at once with
    /// [`send_response`](Self::send_response).
    pub fn create_server(
        &mut self,
        key: ServerKey,
        dest: D,
        reliable: bool,
    ) -> Result<TxId, TxError> {
        if key.is_ack() {
            return Err(TxError::AckTransaction);
        }
        if let Some(&id) = self.servers.get(&key) {
            return Err(TxError::Duplicate(id));
        }
        let id = self.alloc_id();
        let invite = *key.method() == Method::Invite;
        let machine = ServerTransaction::new(invite, reliable, &self.timers);
        self.servers.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                dest,
                kind: Kind::Server { key, machine },
                waiting: false,
            },
        );
        Ok(id)
    }

    /// The TU sends a response (status and serialized bytes) through server transaction `tx`.
    /// The state machine decides what happens: the bytes are output for transmission unless the
    /// state discards them (a response after the final one, other than a 2xx retransmission in
    /// Accepted), which is an error.
    pub fn send_response(
        &mut self,
        tx: TxId,
        status: u16,
        bytes: Bytes,
        now: Instant,
        out: &mut Vec<Output<D>>,
    ) -> Result<(), TxError> {
        let entry = self
            .entries
            .get_mut(&tx)
            .ok_or(TxError::UnknownTransaction(tx))?;
        let Kind::Server { machine, .. } = &mut entry.kind else {
            return Err(TxError::NotServer(tx));
        };
        let before = machine.deadlines;
        let state = machine.state();
        let result = machine.send_response(status, bytes, &self.timers, now, &mut self.actions);
        self.settle(tx, before, out);
        result.map_err(|_| TxError::ResponseDiscarded { tx, status, state })
    }

    /// The server transaction with this key, if live.
    pub fn find_server(&self, key: &ServerKey) -> Option<TxId> {
        self.servers.get(key).copied()
    }

    /// The INVITE server transaction a CANCEL (whose key is `cancel`) targets (§9.2).
    pub fn find_cancelled_invite(&self, cancel: &ServerKey) -> Option<TxId> {
        self.find_server(&cancel.cancelled_invite()?)
    }

    /// State of a live server transaction.
    pub fn server_state(&self, tx: TxId) -> Option<ServerState> {
        match &self.entries.get(&tx)?.kind {
            Kind::Server { machine, .. } => Some(machine.state()),
            Kind::Client { .. } => None,
        }
    }

    // ---- both ----

    /// The destination stored with a live transaction.
    pub fn dest(&self, tx: TxId) -> Option<&D> {
        self.entries.get(&tx).map(|e| &e.dest)
    }

    /// The shell failed to send for `tx` (§17.1.4, §17.2.4): the transaction terminates and the
    /// TU is told. Returns false if `tx` is not live.
    pub fn on_transport_error(&mut self, tx: TxId, out: &mut Vec<Output<D>>) -> bool {
        if !self.entries.contains_key(&tx) {
            return false;
        }
        self.stats.transport_errors += 1;
        out.push(Output::Tu(TuEvent::TransportError { tx }));
        self.remove(tx, out);
        true
    }

    /// The TU ends a transaction early (e.g. a proxy's Timer C, §16.8, or shutdown). Outputs
    /// `Terminated`. Returns false if `tx` is not live.
    pub fn terminate(&mut self, tx: TxId, out: &mut Vec<Output<D>>) -> bool {
        if !self.entries.contains_key(&tx) {
            return false;
        }
        self.remove(tx, out);
        true
    }

    /// The earliest instant at which [`poll`](Self::poll) has work, if any. The shell sleeps
    /// until then (or until a message arrives). Drops stale timer entries on the way.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, id, slot))) = self.heap.peek() {
            if self.is_armed(at, id, slot) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Fire every timer due at or before `now`, appending what they do to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Output<D>>) {
        while let Some(&Reverse((at, id, slot))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            let before = entry.deadlines();
            if before.get(slot) != Some(at) {
                continue;
            }
            match &mut entry.kind {
                Kind::Client { machine, .. } => {
                    machine.on_timer(slot, at, &self.timers, now, &mut self.actions)
                }
                Kind::Server { machine, .. } => {
                    machine.on_timer(slot, at, &self.timers, now, &mut self.actions)
                }
            }
            self.settle(id, before, out);
        }
    }

    fn is_armed(&self, at: Instant, id: TxId, slot: Slot) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| e.deadlines().get(slot) == Some(at))
    }

    fn alloc_id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    /// After a state machine ran for `id`: turn its actions into outputs, put newly armed
    /// deadlines on the heap, and remove the transaction if it terminated.
    fn settle(&mut self, id: TxId, before: Deadlines, out: &mut Vec<Output<D>>) {
        let Some(entry) = self.entries.get(&id) else {
            self.actions.clear();
            return;
        };
        for action in self.actions.drain(..) {
            match action {
                Action::Send {
                    bytes,
                    retransmission,
                } => {
                    if retransmission {
                        self.stats.retransmissions += 1;
                    }
                    out.push(Output::Transmit(Transmit {
                        tx: id,
                        dest: entry.dest.clone(),
                        bytes,
                        retransmission,
                    }));
                }
                Action::Timeout(timer) => {
                    self.stats.timeouts += 1;
                    out.push(Output::Tu(TuEvent::Timeout { tx: id, timer }));
                }
            }
        }
        let after = entry.deadlines();
        for slot in [Slot::Retransmit, Slot::Timeout, Slot::Linger] {
            if let Some(at) = after.get(slot) {
                if before.get(slot) != Some(at) {
                    self.heap.push(Reverse((at, id, slot)));
                }
            }
        }
        let (waiting, terminated) = (entry.is_waiting(), entry.is_terminated());
        if waiting != entry.waiting {
            if waiting {
                self.waiting += 1;
            } else {
                self.waiting -= 1;
            }
            if let Some(e) = self.entries.get_mut(&id) {
                e.waiting = waiting;
            }
        }
        if terminated {
            self.remove(id, out);
        }
    }

    fn remove(&mut self, id: TxId, out: &mut Vec<Output<D>>) {
        if let Some(entry) = self.entries.remove(&id) {
            if entry.waiting {
                self.waiting -= 1;
            }
            match entry.kind {
                Kind::Client { key, .. } => {
                    self.clients.remove(&key);
                }
                Kind::Server { key, .. } => {
                    self.servers.remove(&key);
                }
            }
            out.push(Output::Terminated(id));
        }
    }
}
