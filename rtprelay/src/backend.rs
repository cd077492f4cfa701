//! The narrow interface between the control plane and the media plane.
//!
//! The control plane (`control/`: rtpproxy protocol, sessions, reply cache) decides *what* should
//! be relayed; the media plane (`table/` + `datapath/`: sharded port table, one datapath thread
//! per shard) does the relaying. The control plane never touches a shard's table: every call here
//! becomes a command sent to the owning shard. A fake implementation makes the control plane
//! unit-testable without sockets.
//!
//! Forwarding model: a *stream* is two legs, A and B, allocated together in one shard. Leg A
//! faces party A (the offerer, from-tag of `U`): its local port is what A sends to, its remote is
//! where A receives. What arrives on A's local port leaves from B's local port toward B's remote,
//! and vice versa. Each leg owns an even RTP port and RTCP on port + 1 (rtcp-mux arrives on the
//! RTP port and is forwarded the same way).

pub use crate::table::quality::QualityFigures;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One leg: the shard that owns it and its (even) local RTP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LegId {
    pub shard: u16,
    pub port: u16,
}

/// What signalling says about one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegSpec {
    /// The address:port the party announced in SDP. `None` when unknown yet or `0.0.0.0`
    /// (hold / not yet answered): then nothing is sent to this party until it latches.
    pub remote: Option<SocketAddr>,
    /// `true`: symmetric RTP, learn the party's real source from its packets (NAT). `false`
    /// (rtpproxy's `a` modifier): send to `remote` as signalled, never latch.
    pub symmetric: bool,
    /// Local address the leg's sockets are bound to (interface selection, `e`/`i`/`l`).
    pub local_ip: IpAddr,
}

/// Per-leg counters, as seen at the leg's local port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounters {
    /// Packets/bytes received on this leg's ports and forwarded to the other leg.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets/bytes sent out of this leg's ports (forwarded from the other leg).
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Packets received here but dropped (unlatched/foreign source, no peer yet).
    pub dropped: u64,
    /// The address currently latched, if any.
    pub latched: Option<SocketAddr>,
    /// Time since the last packet received on this leg (None: never).
    pub idle: Option<Duration>,
    /// Receive quality of the party's RTP on this leg (loss, jitter: RFC 3550 A.3, A.8).
    pub quality: QualityFigures,
}

/// Why the media plane refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The shard's port range has no free pair (rtpproxy answers E81..E89 for this).
    #[error("no free media ports")]
    NoPorts,
    #[error("cannot bind media socket: {0}")]
    Bind(String),
    #[error("unknown leg")]
    UnknownLeg,
    /// The shard thread did not answer (stopped or overloaded).
    #[error("media plane unavailable")]
    Unavailable,
}

/// Implemented by the sharded media plane (`table` + `datapath`) and by test fakes.
pub trait MediaBackend: Send {
    /// Allocate legs A and B in one shard (chosen from `shard_hint`, e.g. a hash of the
    /// Call-ID) and bridge them.
    fn create(
        &mut self,
        shard_hint: u64,
        a: LegSpec,
        b: LegSpec,
    ) -> Result<(LegId, LegId), BackendError>;
    /// Apply new signalling to a leg (re-offer, answer, hold). Does not reset counters.
    fn update(&mut self, leg: LegId, spec: LegSpec) -> Result<(), BackendError>;
    /// Counters of a leg.
    fn counters(&mut self, leg: LegId) -> Result<LegCounters, BackendError>;
    /// Tear down a stream: both legs, ports freed. Returns the final counters (A, B).
    fn remove(&mut self, a: LegId, b: LegId) -> Result<(LegCounters, LegCounters), BackendError>;
    /// Streams whose both legs saw no packet for the configured timeout since the last call;
    /// the media plane has already freed them. Returned as (A, B, final counters A, B).
    fn take_expired(&mut self) -> Vec<(LegId, LegId, LegCounters, LegCounters)>;

    /// Start a batch of calls (the control server's batch of commands). Until
    /// [`MediaBackend::end_batch`], calls that need no answer from the media plane may return
    /// before it has acted: an `update` or `remove_deferred` is queued to its shard, and the
    /// shards are woken once, at the end of the batch. Outside a batch every call is complete
    /// when it returns. Default: no batching.
    fn begin_batch(&mut self) {}
    /// End the batch: wake every shard that got commands.
    fn end_batch(&mut self) {}
    /// Like [`MediaBackend::remove`], but in a batch it may return `Ok(None)` before the shard
    /// has removed the stream: the final counters then come from
    /// [`MediaBackend::take_removed`].
    fn remove_deferred(
        &mut self,
        a: LegId,
        b: LegId,
    ) -> Result<Option<(LegCounters, LegCounters)>, BackendError> {
        self.remove(a, b).map(Some)
    }
    /// Final counters of streams removed by `remove_deferred` with `Ok(None)`, as
    /// (A, B, final counters A, B).
    fn take_removed(&mut self) -> Vec<(LegId, LegId, LegCounters, LegCounters)> {
        Vec::new()
    }
}
