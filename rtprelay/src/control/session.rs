//! The session manager: which legs of the media plane belong to which call.
//!
//! Sans-IO: [`SessionManager::handle`] takes one parsed command, the media backend and `now`,
//! and returns the reply; [`SessionManager::expire`] drops what the media plane timed out.
//! No sockets, no clock. One file per command family: `update.rs` (U/L), `delete.rs` (D/X),
//! `query.rs` (Q), `info.rs` (V/VF/I/G and the refused R/N/P/S/C).
//!
//! Model. A *call* is everything under one Call-ID. It holds *streams*: one per media stream
//! number (`;n` on the tags, the m= line position) and `;branch` suffix of the Call-ID. A stream
//! is one pair of legs in the media plane: leg A faces the party of the from-tag of the `U`
//! that created it (the offerer), leg B the other party. rtpproxy calls our stream a
//! "session"; `rtprelay_sessions` counts calls (Call-IDs) and `rtprelay_streams` streams.
//!
//! Weak sessions (`w` modifier, rtpproxy semantics): a stream remembers a *strong* reference
//! (any non-weak `U`/`L`) and one *weak* reference per side (a weak `U`/`L` about that side).
//! `D` drops the strong reference, `Dw` the weak reference of the side whose tag is its
//! from-tag; the stream is removed once no reference is left. So when several proxies share
//! the relay, the weak users' teardown does not kill a call that a strong user still needs,
//! and a stream created only by weak commands survives a plain `D`.

use super::proto::{CallId, Command, ErrorCode, Reply, Tag};
use crate::backend::{BackendError, LegCounters, LegId, LegSpec, MediaBackend};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the session manager needs to know about the relay's addresses and limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The internal interface (`media.listen`): the default, and what `i` selects.
    pub internal: IpAddr,
    /// Announced in replies instead of `internal` (`media.advertise`, 1:1 NAT).
    pub advertise: Option<IpAddr>,
    /// The external interface (`media.external`), selected by `e`.
    pub external: Option<IpAddr>,
    /// The media plane's inactivity timeout (`media.timeout_s`), for the `Q` ttl.
    pub timeout: Duration,
    /// Maximum concurrent calls (Call-IDs); a `U` for a new call beyond it answers `E98`.
    pub max_sessions: usize,
    /// The media port range (inclusive): with the addresses above, the relay's own sockets,
    /// which a `U`/`L` must never name as a party's address (a media loop).
    pub media_ports: (u16, u16),
    /// Per-call and per-client limits (issue 9: one INVITE or one client must not take the
    /// whole relay).
    pub quotas: Quotas,
}

/// Limits below the relay-wide `max_sessions`; 0 means no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Streams (`;n` media lines, all branches) one Call-ID may hold; one more answers `E83`.
    pub max_streams_per_call: usize,
    /// Calls one control client (source IP; all unix-socket clients count as one) may hold;
    /// a `U` for a new call beyond it answers `E84`.
    pub max_sessions_per_client: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        let c = config::ControlConfig::default();
        Quotas {
            max_streams_per_call: c.max_streams_per_call,
            max_sessions_per_client: c.max_sessions_per_client,
        }
    }
}

impl Quotas {
    pub fn from_control(c: &config::ControlConfig) -> Self {
        Quotas {
            max_streams_per_call: c.max_streams_per_call,
            max_sessions_per_client: c.max_sessions_per_client,
        }
    }
}

/// Who sent a command: the UDP source IP, or a local (unix socket) client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Ip(IpAddr),
    Local,
}

impl SessionConfig {
    pub fn from_config(
        media: &config::MediaConfig,
        control: &config::ControlConfig,
        max_sessions: usize,
    ) -> Self {
        SessionConfig {
            internal: media.listen,
            advertise: media.advertise,
            external: media.external,
            timeout: Duration::from_secs(media.timeout_s),
            max_sessions,
            media_ports: (media.port_min, media.port_max),
            quotas: Quotas::from_control(control),
        }
    }

    /// Is `addr:port` one of the relay's own media sockets? A proxy that anchors a call a
    /// second time (the call spiralled through the core back to it) would otherwise point a
    /// leg at the relay itself: each side's media is then sent to the relay's own port and
    /// strict-source latching drops everything (no audio, and no error anywhere).
    pub fn is_own_socket(&self, addr: IpAddr, port: u16) -> bool {
        // Listening on the wildcard, the relay owns every local address; loopback is the one
        // it can be sure of.
        let ours = addr == self.internal
            || Some(addr) == self.advertise
            || Some(addr) == self.external
            || (self.internal.is_unspecified() && addr.is_loopback());
        ours && port != 0 && (self.media_ports.0..=self.media_ports.1).contains(&port)
    }
}

/// Leg A (offerer, from-tag of the creating `U`) or leg B (answerer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    A = 0,
    B = 1,
}

impl Side {
    pub(super) fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    pub(super) fn idx(self) -> usize {
        self as usize
    }
}

/// One media stream of a call: a pair of legs in the media plane.
#[derive(Debug, Clone)]
pub(super) struct Stream {
    pub(super) branch: Option<String>,
    pub(super) number: u32,
    pub(super) a_tag: Box<str>,
    pub(super) b_tag: Option<Box<str>>,
    pub(super) legs: [LegId; 2],
    pub(super) specs: [LegSpec; 2],
    pub(super) strong: bool,
    pub(super) weak: [bool; 2],
    pub(super) created: Instant,
    /// The client that created the call (every stream of a call carries it: no map of owners).
    pub(super) owner: Client,
    /// Last `U`/`L` about this stream (the media timeout also counts from signalling).
    pub(super) signalled: Instant,
}

impl Stream {
    /// Which side a tag names, if any.
    pub(super) fn side_of(&self, tag: &str) -> Option<Side> {
        if *self.a_tag == *tag {
            Some(Side::A)
        } else if self.b_tag.as_deref() == Some(tag) {
            Some(Side::B)
        } else {
            None
        }
    }

    /// D/Q matching: the from-tag names a side and the to-tag (if any) the other side or an
    /// answerer not known yet; `;n` on the from-tag restricts to that stream number.
    pub(super) fn matches(&self, call: &CallId, from: &Tag, to: Option<&Tag>) -> Option<Side> {
        if call.branch.is_some() && call.branch != self.branch {
            return None;
        }
        if from.stream.is_some_and(|n| n != self.number) {
            return None;
        }
        let side = self.side_of(&from.tag)?;
        match (to, side) {
            (None, _) => Some(side),
            (Some(t), Side::A) if self.b_tag.is_none() || self.b_tag.as_deref() == Some(&t.tag) => {
                Some(side)
            }
            (Some(t), Side::B) if *self.a_tag == *t.tag => Some(side),
            _ => None,
        }
    }
}

/// Relay-wide totals (the `I` and `G` answers; streams that ended are folded in here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub streams_created: u64,
    pub streams_destroyed: u64,
    pub streams_timed_out: u64,
    /// Packets received/relayed/dropped by streams that have ended.
    pub ended_packets_in: u64,
    pub ended_packets_relayed: u64,
    pub ended_packets_dropped: u64,
    /// `U`/`L` refused because they named one of the relay's own sockets (`E35`).
    pub loops_refused: u64,
    /// `U` refused by the per-call stream quota (`E83`).
    pub stream_quota_refused: u64,
    /// `U` refused by the per-client session quota (`E84`).
    pub client_quota_refused: u64,
}

/// Why a stream ended (logged with its final counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndReason {
    Deleted,
    DeleteAll,
    Timeout,
    MediaPlaneLost,
}

/// A Call-ID as the session manager keeps it: one allocation shared by `calls`, `by_leg`,
/// and `ending`.
pub(super) type CallKey = Arc<str>;

/// Call-ID + tags → legs, for the whole relay. Owned by the single control task.
#[derive(Debug)]
pub struct SessionManager {
    pub(super) cfg: SessionConfig,
    /// Call-ID → its streams (all branches).
    pub(super) calls: HashMap<CallKey, Vec<Stream>>,
    /// Leg A of every stream → its Call-ID (to find streams the media plane expired).
    pub(super) by_leg: HashMap<LegId, CallKey>,
    pub(super) stream_count: usize,
    pub(super) totals: Totals,
    /// How many calls each client holds (a call's client is in its streams).
    pub(super) per_client: HashMap<Client, usize>,
    /// The client of the command being handled.
    pub(super) client: Client,
    /// Draining: a `U` for a new call is refused (`E98`), everything else goes on.
    pub(super) draining: bool,
    /// Streams already forgotten whose final counters the media plane reports later (see
    /// [`MediaBackend::remove_deferred`]), by leg A: logged and folded into the totals then.
    pub(super) ending: HashMap<LegId, Ending>,
}

/// A removed stream waiting for its final counters.
#[derive(Debug)]
pub(super) struct Ending {
    call_id: CallKey,
    stream: Stream,
    reason: EndReason,
    at: Instant,
}

impl SessionManager {
    pub fn new(cfg: SessionConfig) -> Self {
        SessionManager {
            cfg,
            calls: HashMap::new(),
            by_leg: HashMap::new(),
            stream_count: 0,
            totals: Totals::default(),
            per_client: HashMap::new(),
            client: Client::Local,
            draining: false,
            ending: HashMap::new(),
        }
    }

    /// Refuse new calls (graceful stop) or accept them again.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Execute one command from a local client (see [`SessionManager::handle_from`]).
    pub fn handle(&mut self, cmd: &Command, backend: &mut dyn MediaBackend, now: Instant) -> Reply {
        self.handle_from(Client::Local, cmd, backend, now)
    }

    /// Execute one command from `client`. Never panics on any parsed command; failures are
    /// `E<n>` replies.
    pub fn handle_from(
        &mut self,
        client: Client,
        cmd: &Command,
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> Reply {
        self.client = client;
        match cmd {
            Command::Version | Command::VersionFeature(_) => self.version(cmd),
            Command::Update(u) => self.offer(u, backend, now),
            Command::Lookup(u) => self.answer(u, backend, now),
            Command::Delete(d) => self.delete(d, backend, now),
            Command::Query(q) => self.query(q, backend, now),
            Command::Info { brief } => self.info(*brief, backend, now),
            Command::Stats { verbose, names } => self.stats(*verbose, names, backend),
            Command::DeleteAll => self.delete_all(backend, now),
            Command::MediaOp(op) => self.media_op(op),
        }
    }

    /// Drop the streams the media plane timed out (it has already freed their ports).
    /// Returns how many streams ended.
    pub fn expire(&mut self, backend: &mut dyn MediaBackend, now: Instant) -> usize {
        self.collect_removed(backend);
        let expired = backend.take_expired();
        let mut n = 0;
        for (a, _b, ca, cb) in expired {
            let Some(call_id) = self.by_leg.get(&a).cloned() else {
                continue;
            };
            let Some(idx) = self
                .calls
                .get(&call_id)
                .and_then(|s| s.iter().position(|st| st.legs[0] == a))
            else {
                continue;
            };
            self.forget(&call_id, idx, (ca, cb), EndReason::Timeout, now);
            n += 1;
        }
        n
    }

    /// Log and account the removed streams whose final counters have come back.
    pub fn collect_removed(&mut self, backend: &mut dyn MediaBackend) {
        for (a, _b, ca, cb) in backend.take_removed() {
            if let Some(e) = self.ending.remove(&a) {
                self.log_end(&e.call_id, &e.stream, (ca, cb), e.reason, e.at);
            }
        }
    }

    /// Removed streams whose final counters have not come back yet.
    pub fn ending(&self) -> usize {
        self.ending.len()
    }

    /// Calls (Call-IDs) currently known.
    pub fn sessions(&self) -> usize {
        self.calls.len()
    }

    /// Streams (leg pairs) currently allocated.
    pub fn streams(&self) -> usize {
        self.stream_count
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Tear a stream down in the media plane, then forget it.
    pub(super) fn remove_stream(
        &mut self,
        call_id: &str,
        idx: usize,
        backend: &mut dyn MediaBackend,
        reason: EndReason,
        now: Instant,
    ) {
        let Some(st) = self.calls.get(call_id).and_then(|s| s.get(idx)) else {
            return;
        };
        let key = self.by_leg.get(&st.legs[0]).cloned();
        let counters = match backend.remove_deferred(st.legs[0], st.legs[1]) {
            Ok(Some(c)) => c,
            Ok(None) => {
                // Gone from the media plane's point of view; counters later.
                if let Some(stream) = self.detach(call_id, idx, reason) {
                    let a = stream.legs[0];
                    let ending = Ending {
                        call_id: key.unwrap_or_else(|| CallKey::from(call_id)),
                        stream,
                        reason,
                        at: now,
                    };
                    if let Some(old) = self.ending.insert(a, ending) {
                        // Its counters never came (the leg is reused already): log without.
                        let zero = (LegCounters::default(), LegCounters::default());
                        self.log_end(&old.call_id, &old.stream, zero, old.reason, old.at);
                    }
                }
                return;
            }
            Err(e) => {
                // The media plane no longer has it (e.g. it expired between two ticks): the
                // entry must go anyway, or it would leak.
                tracing::debug!(call_id, error = %e, "media plane could not remove stream");
                (LegCounters::default(), LegCounters::default())
            }
        };
        self.forget(call_id, idx, counters, reason, now);
    }

    /// Remove the entry (the media plane side is already gone), log and account it.
    pub(super) fn forget(
        &mut self,
        call_id: &str,
        idx: usize,
        counters: (LegCounters, LegCounters),
        reason: EndReason,
        now: Instant,
    ) {
        if let Some(st) = self.detach(call_id, idx, reason) {
            self.log_end(call_id, &st, counters, reason, now);
        }
    }

    /// Remove the entry and count it as ended (the packet totals come with its counters).
    fn detach(&mut self, call_id: &str, idx: usize, reason: EndReason) -> Option<Stream> {
        let streams = self.calls.get_mut(call_id)?;
        if idx >= streams.len() {
            return None;
        }
        let st = streams.swap_remove(idx);
        if streams.is_empty() {
            self.calls.remove(call_id);
            self.disown(st.owner);
        }
        self.by_leg.remove(&st.legs[0]);
        self.stream_count = self.stream_count.saturating_sub(1);
        self.totals.streams_destroyed += 1;
        if reason == EndReason::Timeout {
            self.totals.streams_timed_out += 1;
        }
        Some(st)
    }

    /// Fold a stream's final counters into the totals and log its end.
    fn log_end(
        &mut self,
        call_id: &str,
        st: &Stream,
        (ca, cb): (LegCounters, LegCounters),
        reason: EndReason,
        now: Instant,
    ) {
        self.totals.ended_packets_in += ca.packets_in + cb.packets_in;
        self.totals.ended_packets_relayed += ca.packets_out + cb.packets_out;
        self.totals.ended_packets_dropped += ca.dropped + cb.dropped;
        tracing::info!(
            call_id,
            branch = st.branch.as_deref().unwrap_or(""),
            stream = st.number,
            reason = ?reason,
            duration_s = now.saturating_duration_since(st.created).as_secs(),
            a_port = st.legs[0].port,
            b_port = st.legs[1].port,
            a_packets_in = ca.packets_in,
            b_packets_in = cb.packets_in,
            a_bytes_in = ca.bytes_in,
            b_bytes_in = cb.bytes_in,
            dropped = ca.dropped + cb.dropped,
            a_latched = %Latched(ca.latched),
            b_latched = %Latched(cb.latched),
            // What each leg received from its party (RFC 3550 A.3 expected/lost, A.8 jitter;
            // 0 expected: no RTP counted). Also in the stream-end histograms of the shard.
            a_rtp_expected = ca.quality.expected,
            a_rtp_lost = ca.quality.lost,
            a_jitter_us = ca.quality.jitter_us,
            b_rtp_expected = cb.quality.expected,
            b_rtp_lost = cb.quality.lost,
            b_jitter_us = cb.quality.jitter_us,
            "stream ended"
        );
    }

    /// Calls held per client (for the per-client quota).
    pub fn calls_of(&self, client: Client) -> usize {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    /// A `U` that would add a stream to `call_id` (a new call if it has none): refused when it
    /// is over the per-call stream quota or the client's session quota.
    pub(super) fn over_quota(&mut self, call_id: &str) -> Option<Reply> {
        let q = self.cfg.quotas;
        match self.calls.get(call_id) {
            Some(streams) => {
                if q.max_streams_per_call > 0 && streams.len() >= q.max_streams_per_call {
                    self.totals.stream_quota_refused += 1;
                    tracing::info!(
                        call_id,
                        limit = q.max_streams_per_call,
                        "per-call stream quota reached"
                    );
                    return Some(ErrorCode::STREAM_QUOTA.into());
                }
            }
            None => {
                let held = self.calls_of(self.client);
                if q.max_sessions_per_client > 0 && held >= q.max_sessions_per_client {
                    self.totals.client_quota_refused += 1;
                    tracing::info!(call_id, client = ?self.client, limit = q.max_sessions_per_client, "per-client session quota reached");
                    return Some(ErrorCode::CLIENT_QUOTA.into());
                }
            }
        }
        None
    }

    /// A new call of the current client.
    /// The client a new stream of `call_id` belongs to: the call's, or the current client's
    /// for a new call (counted now).
    pub(super) fn own(&mut self, call_id: &str) -> Client {
        if let Some(st) = self.calls.get(call_id).and_then(|s| s.first()) {
            return st.owner;
        }
        *self.per_client.entry(self.client).or_default() += 1;
        self.client
    }

    fn disown(&mut self, c: Client) {
        if let Some(n) = self.per_client.get_mut(&c) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(&c);
            }
        }
    }

    /// Whole seconds until the media plane would time the stream out (never negative).
    pub(super) fn ttl(&self, st: &Stream, ca: &LegCounters, cb: &LegCounters, now: Instant) -> u64 {
        let since_signalling = now.saturating_duration_since(st.signalled);
        let idle = [ca.idle, cb.idle]
            .into_iter()
            .flatten()
            .fold(since_signalling, Duration::min);
        // Rounded up: a stream with 0.3 s left is not expired yet, so it shows 1.
        let left = self.cfg.timeout.saturating_sub(idle);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }

    /// The address to announce for a local address (`advertise` stands in for `internal`).
    /// `None` when it would be the unspecified address: the client then keeps its own.
    pub(super) fn announce(&self, local: IpAddr) -> Option<IpAddr> {
        let a = if local == self.cfg.internal {
            self.cfg.advertise.unwrap_or(local)
        } else {
            local
        };
        (!a.is_unspecified()).then_some(a)
    }
}

/// A latched address as the "stream ended" line shows it (`-`: none), formatted in place.
struct Latched(Option<std::net::SocketAddr>);

impl std::fmt::Display for Latched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Which shard should own a call: a stable hash of the Call-ID, so all streams of a call
/// tend to land in one shard.
pub(super) fn shard_hint(call_id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    call_id.hash(&mut h);
    h.finish()
}

/// The answer for a media plane refusal.
pub(super) fn backend_error(e: &BackendError) -> ErrorCode {
    match e {
        BackendError::NoPorts => ErrorCode::NO_PORTS,
        BackendError::Bind(_) => ErrorCode::BIND_FAILED,
        BackendError::UnknownLeg => ErrorCode::SESSION_UNKNOWN,
        BackendError::Unavailable => ErrorCode::OVERLOAD,
    }
}
