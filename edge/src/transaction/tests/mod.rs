//! Transaction layer tests: simulated time, no sockets, no sleeping. Every test drives the
//! public table API the proxy uses.

mod client;
mod memory;
mod prop;
mod server;
mod table;

use super::*;
use bytes::Bytes;
use std::time::{Duration, Instant};

pub(super) type Out = Output<&'static str>;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// A table plus a simulated clock starting at `start`.
pub(super) struct Sim {
    pub table: TransactionTable<&'static str>,
    pub start: Instant,
    pub now: Instant,
}

impl Sim {
    pub fn new(timers: Timers) -> Sim {
        let start = Instant::now();
        Sim {
            table: TransactionTable::new(timers),
            start,
            now: start,
        }
    }

    pub fn default_timers() -> Sim {
        Sim::new(Timers::default())
    }

    /// Move the clock to `at` after start (without firing timers).
    pub fn set(&mut self, at: Duration) {
        self.now = self.start + at;
    }

    /// Fire timers in order up to and including `until` (after start), jumping straight to each
    /// deadline as an event loop would. Returns every output with its instant (after start).
    pub fn run_until(&mut self, until: Duration) -> Vec<(Duration, Out)> {
        let limit = self.start + until;
        let mut log = Vec::new();
        let mut out = Vec::new();
        // Bounded: the test timers cannot produce more events than this.
        for _ in 0..10_000 {
            match self.table.next_deadline() {
                Some(at) if at <= limit => {
                    assert!(at >= self.now, "deadline in the past");
                    self.now = at;
                    self.table.poll(at, &mut out);
                    for o in out.drain(..) {
                        log.push((at - self.start, o));
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(limit);
        log
    }

    pub fn client(&mut self, branch: &str, method: Method, reliable: bool) -> (TxId, Vec<Out>) {
        let mut out = Vec::new();
        let id = self
            .table
            .create_client(
                ClientKey::new(branch, method),
                b("REQUEST"),
                "core",
                reliable,
                self.now,
                &mut out,
            )
            .expect("create client");
        (id, out)
    }

    pub fn response(
        &mut self,
        branch: &str,
        method: Method,
        status: u16,
    ) -> (ResponseMatch, Vec<Out>) {
        let mut out = Vec::new();
        let m = self.table.on_response(
            &ClientKey::new(branch, method),
            status,
            self.now,
            &mut out,
            || Some(b("ACK")),
        );
        (m, out)
    }

    pub fn server(&mut self, branch: &str, method: Method, reliable: bool) -> TxId {
        self.table
            .create_server(
                ServerKey::new(branch, "ua.example:5060", method),
                "ua",
                reliable,
            )
            .expect("create server")
    }

    pub fn request(&mut self, branch: &str, method: Method) -> (RequestMatch, Vec<Out>) {
        let mut out = Vec::new();
        let m = self.table.on_request(
            &ServerKey::new(branch, "ua.example:5060", method),
            self.now,
            &mut out,
        );
        (m, out)
    }

    pub fn respond(
        &mut self,
        tx: TxId,
        status: u16,
        bytes: &'static str,
    ) -> Result<Vec<Out>, TxError> {
        let mut out = Vec::new();
        self.table
            .send_response(tx, status, b(bytes), self.now, &mut out)
            .map(|()| out)
    }
}

/// Instants of the transmits with `retransmission: true` in a log.
pub(super) fn retransmit_instants(log: &[(Duration, Out)]) -> Vec<Duration> {
    log.iter()
        .filter_map(|(at, o)| match o {
            Output::Transmit(t) if t.retransmission => Some(*at),
            _ => None,
        })
        .collect()
}

/// The transmitted bytes in a list of outputs, with their retransmission flag.
pub(super) fn transmits(out: &[Out]) -> Vec<(Bytes, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit(t) => Some((t.bytes.clone(), t.retransmission)),
            _ => None,
        })
        .collect()
}

/// `[T1·k for k in ks]` style helper: durations from millisecond counts.
pub(super) fn at_ms(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|&n| ms(n)).collect()
}
