//! The port table of one shard (sans-IO): port-pair allocation, legs, latching, forwarding
//! decisions and timeouts. No sockets and no clock here: the datapath shell opens/closes sockets
//! through [`Sockets`], passes every received packet to [`Table::on_packet`] with `now`, and
//! does what the returned [`Action`] says. Tests drive it with fake sockets and injected time.
//!
//! Lookup is an array index: a packet's socket index is `slot * 2 + component`, and the slot
//! indexes the leg slab. Both legs of a stream live in the same table (shard).

pub mod alloc;
pub mod latch;
pub mod leg;
pub mod packet;
pub mod quality;
pub mod stamp;

use crate::backend::{BackendError, LegCounters, LegId, LegSpec};
use alloc::PortAllocator;
use latch::{LatchPolicy, Verdict};
use leg::Leg;
use quality::QualityStats;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use leg::Component;

/// How often a pair whose port could not be bound is skipped before `create` gives up.
const BIND_ATTEMPTS: usize = 8;

/// The shell's side of socket ownership: a leg's two sockets are bound when the slot is
/// allocated and closed when it is freed.
pub trait Sockets {
    /// Bind the pair `ip:rtp_port` (RTP) and `ip:rtp_port+1` (RTCP) for `slot`.
    fn open(&mut self, slot: u32, ip: IpAddr, rtp_port: u16) -> std::io::Result<()>;
    fn close(&mut self, slot: u32);
}

/// Why a received packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The port has no stream (a late packet after teardown).
    NoSession,
    /// Not from the party (see [`latch`]): RTP bleed, strays.
    ForeignSource,
    /// The other party's address is not known yet.
    NoPeer,
}

/// What the shell should do with a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the payload unchanged out of `slot`'s `component` socket to `dst`.
    Forward {
        slot: u32,
        component: Component,
        dst: SocketAddr,
    },
    /// A STUN message: answer it (see [`crate::stun::answer`]) back to the source from the same
    /// socket; never forwarded.
    Stun,
    Drop(DropReason),
}

/// Shard-level counters, plain integers owned by the shard (published by the shell).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_no_session: u64,
    pub dropped_foreign_source: u64,
    pub dropped_no_peer: u64,
    /// STUN requests from other than the party: not answered (also in
    /// `dropped_foreign_source`).
    pub stun_refused: u64,
    pub latches: u64,
    pub relatches: u64,
    pub streams_created: u64,
    pub streams_removed: u64,
    pub streams_expired: u64,
}

/// An expired stream: (leg A, leg B, final counters A, B).
pub type Expired = (LegId, LegId, LegCounters, LegCounters);

#[derive(Debug)]
pub struct Table {
    shard: u16,
    alloc: PortAllocator,
    legs: Vec<Option<Leg>>,
    /// The socket pool (see [`Table::refill_pool`]): `pooled[slot]` for pairs allocated and
    /// bound on `pool_ip` ahead of time, not yet a leg.
    pooled: Vec<bool>,
    pool_len: usize,
    pool_target: usize,
    pool_ip: IpAddr,
    /// Socket recycling (see [`Table::with_recycle`]): `idle[slot]` for pairs whose stream
    /// ended but whose sockets stay bound on `pool_ip` (in quarantine, or in `recycled`).
    idle: Vec<bool>,
    idle_len: usize,
    idle_max: usize,
    /// Idle pairs out of quarantine, taken back from the allocator, waiting for room in the
    /// pool.
    recycled: Vec<u32>,
    policy: LatchPolicy,
    timeout: Duration,
    active_streams: u64,
    expired: Vec<Expired>,
    pub stats: TableStats,
    /// Stream-end loss and jitter histograms (published by the shell like `stats`).
    pub quality: QualityStats,
}

impl Table {
    pub fn new(
        shard: u16,
        base_port: u16,
        pairs: u32,
        policy: LatchPolicy,
        timeout: Duration,
        seed: u64,
    ) -> Table {
        let alloc = PortAllocator::new(base_port, pairs, seed);
        let legs = vec![None; alloc.pairs() as usize];
        let pooled = vec![false; alloc.pairs() as usize];
        let idle = vec![false; alloc.pairs() as usize];
        Table {
            shard,
            alloc,
            legs,
            pooled,
            pool_len: 0,
            pool_target: 0,
            pool_ip: IpAddr::from([127, 0, 0, 1]),
            idle,
            idle_len: 0,
            idle_max: 0,
            recycled: Vec::new(),
            policy,
            timeout,
            active_streams: 0,
            expired: Vec::new(),
            stats: TableStats::default(),
            quality: QualityStats::default(),
        }
    }

    /// Keep up to `target` pairs bound on `ip` ahead of use (0: no pool, every leg is bound
    /// when it is created).
    pub fn with_pool(mut self, target: usize, ip: IpAddr) -> Table {
        self.pool_target = target;
        self.pool_ip = ip;
        self
    }

    /// Recycle sockets (`media.socket_recycle`): a freed pair bound on the pool address keeps
    /// its sockets (up to `max` such pairs; beyond, they are closed at once) through its
    /// quarantine, then goes back to the pool without a new bind, a new fixed-file
    /// registration or a close. While idle its receives stay armed, so whatever arrives is
    /// read and dropped as `no_session` (no stale datagram waits in the socket for the next
    /// stream); the next stream gets a fresh [`Leg`] (no latch, no counters). Which recycled
    /// pair a stream gets is not predictable: the control side takes a uniformly random
    /// member of the pool.
    pub fn with_recycle(mut self, max: usize) -> Table {
        self.idle_max = max;
        self
    }

    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// Pairs kept bound after their stream ended (quarantined or waiting for the pool).
    pub fn idle_pairs(&self) -> usize {
        self.idle_len
    }

    /// Give a slot back to the allocator (its sockets closed, or kept bound if it is idle). A
    /// slot whose quarantine ends meanwhile and whose sockets are still bound is taken back
    /// for the pool ([`Table::refill_pool`]).
    fn release(&mut self, slot: u32) {
        let (idle, recycled) = (&self.idle, &mut self.recycled);
        self.alloc.free_with(slot, |s| {
            let keep = idle.get(s as usize).copied().unwrap_or(false);
            if keep {
                recycled.push(s);
            }
            keep
        });
    }

    /// A slot handed out again while its sockets are still bound (`idle`): they now belong to
    /// the new owner. Returns whether it was idle.
    fn unidle(&mut self, slot: u32) -> bool {
        match self.idle.get_mut(slot as usize) {
            Some(i) if *i => {
                *i = false;
                self.idle_len -= 1;
                true
            }
            _ => false,
        }
    }

    /// Pairs bound ahead of use and not yet a leg.
    pub fn pooled_pairs(&self) -> usize {
        self.pool_len
    }

    /// The address pooled pairs are bound on.
    pub fn pool_ip(&self) -> IpAddr {
        self.pool_ip
    }

    /// Socket pool: bind pairs ahead of use until `target` are ready, so that creating a
    /// stream costs no `bind` (the shell calls this between batches, off the path of a
    /// command's reply). Pairs come from the allocator like any other: random ports, and a
    /// freed pair comes back only after its quarantine. Stops early when the allocator has
    /// nothing free (the pool never takes quarantined pairs, which only a real allocation
    /// may use as a last resort) or a port cannot be bound. Returns the legs made ready.
    pub fn refill_pool(&mut self, sockets: &mut impl Sockets) -> Vec<LegId> {
        let mut out = Vec::new();
        // Recycled pairs first: out of quarantine, still bound, nothing to do but announce.
        while self.pool_len < self.pool_target {
            let Some(slot) = self.recycled.pop() else {
                break;
            };
            self.unidle(slot);
            self.pooled[slot as usize] = true;
            self.pool_len += 1;
            out.push(self.leg_id(slot));
        }
        while self.pool_len < self.pool_target && self.alloc.has_unquarantined() {
            match self.allocate_bound(self.pool_ip, sockets) {
                Ok(slot) => {
                    self.pooled[slot as usize] = true;
                    self.pool_len += 1;
                    out.push(self.leg_id(slot));
                }
                Err(_) => break,
            }
        }
        out
    }

    /// The slot `leg` names in this shard (its RTP port), live or not.
    fn slot_of_leg(&self, leg: LegId) -> Result<u32, BackendError> {
        if leg.shard != self.shard || !leg.port.is_multiple_of(2) {
            return Err(BackendError::UnknownLeg);
        }
        self.alloc.slot_of(leg.port).ok_or(BackendError::UnknownLeg)
    }

    /// Take the pooled pair of `leg` out of the pool (bound on the pool address).
    fn claim_pooled(&mut self, leg: LegId) -> Result<u32, BackendError> {
        let slot = self.slot_of_leg(leg)?;
        match self.pooled.get_mut(slot as usize) {
            Some(p) if *p => {
                *p = false;
                self.pool_len -= 1;
                Ok(slot)
            }
            _ => Err(BackendError::UnknownLeg),
        }
    }

    /// Any recycled or pooled pair (for an allocation when the allocator has nothing left).
    fn claim_any_pooled(&mut self) -> Option<u32> {
        if let Some(slot) = self.recycled.pop() {
            self.unidle(slot);
            return Some(slot);
        }
        let slot = self.pooled.iter().position(|p| *p)? as u32;
        self.pooled[slot as usize] = false;
        self.pool_len -= 1;
        Some(slot)
    }

    /// Rebind a claimed pooled pair to `ip` if that is not the pool address; on failure the
    /// pair is released (quarantined).
    fn rebind_pooled(
        &mut self,
        slot: u32,
        ip: IpAddr,
        sockets: &mut impl Sockets,
    ) -> Result<u32, BackendError> {
        if ip == self.pool_ip {
            return Ok(slot);
        }
        sockets.close(slot);
        match sockets.open(slot, ip, self.alloc.port_of(slot)) {
            Ok(()) => Ok(slot),
            Err(e) => {
                self.release(slot);
                Err(BackendError::Bind(e.to_string()))
            }
        }
    }

    /// Bridge the two pooled pairs `a` and `b` (published by [`Table::refill_pool`]) into a
    /// stream. On failure nothing stays allocated.
    pub fn create_pooled(
        &mut self,
        (a, b): (LegId, LegId),
        (sa, sb): (LegSpec, LegSpec),
        now: Instant,
        sockets: &mut impl Sockets,
    ) -> Result<(), BackendError> {
        let la = self.claim_pooled(a)?;
        let r = self.claim_pooled(b);
        let lb = self.or_give_back(r, la, sockets)?;
        let r = self.rebind_pooled(la, sa.local_ip, sockets);
        let la = self.or_give_back(r, lb, sockets)?;
        let r = self.rebind_pooled(lb, sb.local_ip, sockets);
        let lb = self.or_give_back(r, la, sockets)?;
        self.bridge(la, lb, sa, sb, now);
        Ok(())
    }

    /// `r`, or on error close and release `other` (the half already claimed) and pass the
    /// error on.
    fn or_give_back(
        &mut self,
        r: Result<u32, BackendError>,
        other: u32,
        sockets: &mut impl Sockets,
    ) -> Result<u32, BackendError> {
        r.inspect_err(|_| {
            sockets.close(other);
            self.release(other);
        })
    }

    fn bridge(&mut self, sa: u32, sb: u32, a: LegSpec, b: LegSpec, now: Instant) {
        self.legs[sa as usize] = Some(Leg::new(a, sb, true, now));
        self.legs[sb as usize] = Some(Leg::new(b, sa, false, now));
        self.active_streams += 1;
        self.stats.streams_created += 1;
    }

    /// Number of port pairs (= legs) this shard can hold.
    pub fn pairs(&self) -> u32 {
        self.alloc.pairs()
    }

    pub fn base_port(&self) -> u16 {
        self.alloc.base()
    }

    pub fn active_streams(&self) -> u64 {
        self.active_streams
    }

    /// Port pairs that can still take a leg: the allocator's (quarantined ones included) and
    /// the pooled ones.
    pub fn free_port_pairs(&self) -> u64 {
        (self.alloc.free_pairs() + self.pool_len + self.recycled.len()) as u64
    }

    pub fn leg_id(&self, slot: u32) -> LegId {
        LegId {
            shard: self.shard,
            port: self.alloc.port_of(slot),
        }
    }

    /// Slot of an existing leg.
    pub fn slot(&self, leg: LegId) -> Result<u32, BackendError> {
        let slot = self.slot_of_leg(leg)?;
        match self.legs.get(slot as usize) {
            Some(Some(_)) => Ok(slot),
            _ => Err(BackendError::UnknownLeg),
        }
    }

    fn leg(&self, slot: u32) -> Option<&Leg> {
        self.legs.get(slot as usize).and_then(Option::as_ref)
    }

    /// Allocate and bind one pair for `ip`, skipping pairs whose ports are taken. When the
    /// allocator has nothing left, a pooled pair is used.
    fn allocate_bound(
        &mut self,
        ip: IpAddr,
        sockets: &mut impl Sockets,
    ) -> Result<u32, BackendError> {
        let mut last_err = None;
        for _ in 0..BIND_ATTEMPTS {
            let Some(slot) = self.alloc.allocate() else {
                let slot = self.claim_any_pooled().ok_or(BackendError::NoPorts)?;
                return self.rebind_pooled(slot, ip, sockets);
            };
            // The oldest quarantined pair (nothing else was free) may still be bound.
            if self.unidle(slot) {
                return self.rebind_pooled(slot, ip, sockets);
            }
            match sockets.open(slot, ip, self.alloc.port_of(slot)) {
                Ok(()) => return Ok(slot),
                Err(e) => {
                    self.release(slot);
                    last_err = Some(e);
                }
            }
        }
        Err(BackendError::Bind(
            last_err.map(|e| e.to_string()).unwrap_or_default(),
        ))
    }

    /// Allocate, bind and bridge legs A and B. On failure nothing stays allocated.
    pub fn create(
        &mut self,
        a: LegSpec,
        b: LegSpec,
        now: Instant,
        sockets: &mut impl Sockets,
    ) -> Result<(LegId, LegId), BackendError> {
        let sa = self.allocate_bound(a.local_ip, sockets)?;
        let sb = match self.allocate_bound(b.local_ip, sockets) {
            Ok(s) => s,
            Err(e) => {
                sockets.close(sa);
                self.release(sa);
                return Err(e);
            }
        };
        self.bridge(sa, sb, a, b, now);
        Ok((self.leg_id(sa), self.leg_id(sb)))
    }

    /// New signalling for a leg; rebinds its sockets if the local address changed.
    pub fn update(
        &mut self,
        leg: LegId,
        spec: LegSpec,
        sockets: &mut impl Sockets,
    ) -> Result<(), BackendError> {
        let slot = self.slot(leg)?;
        let port = self.alloc.port_of(slot);
        let Some(l) = self.legs.get_mut(slot as usize).and_then(Option::as_mut) else {
            return Err(BackendError::UnknownLeg);
        };
        if l.spec.local_ip != spec.local_ip {
            sockets.close(slot);
            if let Err(e) = sockets.open(slot, spec.local_ip, port) {
                // Keep the leg usable on its old address.
                let _ = sockets.open(slot, l.spec.local_ip, port);
                return Err(BackendError::Bind(e.to_string()));
            }
        }
        l.update(spec);
        Ok(())
    }

    pub fn counters(&self, leg: LegId, now: Instant) -> Result<LegCounters, BackendError> {
        let slot = self.slot(leg)?;
        let l = self.leg(slot).ok_or(BackendError::UnknownLeg)?;
        Ok(l.snapshot(self.leg(l.partner), now))
    }

    /// Tear down the stream `a`–`b` (either order); both must be partners.
    pub fn remove(
        &mut self,
        a: LegId,
        b: LegId,
        now: Instant,
        sockets: &mut impl Sockets,
    ) -> Result<(LegCounters, LegCounters), BackendError> {
        let sa = self.slot(a)?;
        let sb = self.slot(b)?;
        if self.leg(sa).map(|l| l.partner) != Some(sb) {
            return Err(BackendError::UnknownLeg);
        }
        let (ca, cb) = self.free_stream(sa, sb, now, sockets);
        self.stats.streams_removed += 1;
        Ok((ca, cb))
    }

    fn free_stream(
        &mut self,
        sa: u32,
        sb: u32,
        now: Instant,
        sockets: &mut impl Sockets,
    ) -> (LegCounters, LegCounters) {
        let mut out = [LegCounters::default(); 2];
        for (i, slot) in [sa, sb].into_iter().enumerate() {
            if let Some(l) = self.leg(slot) {
                out[i] = l.snapshot(self.leg(l.partner), now);
            }
        }
        for (i, slot) in [sa, sb].into_iter().enumerate() {
            if let Some(l) = self.legs.get_mut(slot as usize).and_then(Option::take) {
                // One observation per direction: what this leg received from its party.
                self.quality.observe(&out[i].quality);
                let recycle = self.pool_target > 0 && self.idle_len < self.idle_max;
                if recycle && l.spec.local_ip == self.pool_ip {
                    self.idle[slot as usize] = true;
                    self.idle_len += 1;
                } else {
                    sockets.close(slot);
                }
                self.release(slot);
            }
        }
        self.active_streams = self.active_streams.saturating_sub(1);
        (out[0], out[1])
    }

    /// Free every stream whose both legs have been idle for the timeout. Called from the
    /// shard's periodic tick (one scan per tick, no timer per leg).
    pub fn expire(&mut self, now: Instant, sockets: &mut impl Sockets) -> usize {
        let mut n = 0;
        for slot in 0..self.legs.len() as u32 {
            let Some(l) = self.leg(slot) else { continue };
            if !l.is_a {
                continue;
            }
            let partner = l.partner;
            let idle_a = now.saturating_duration_since(l.last_activity());
            let idle_b = self.leg(partner).map_or(Duration::MAX, |p| {
                now.saturating_duration_since(p.last_activity())
            });
            if idle_a >= self.timeout && idle_b >= self.timeout {
                let (ida, idb) = (self.leg_id(slot), self.leg_id(partner));
                let (ca, cb) = self.free_stream(slot, partner, now, sockets);
                self.expired.push((ida, idb, ca, cb));
                self.stats.streams_expired += 1;
                n += 1;
            }
        }
        n
    }

    /// Streams expired since the last call.
    pub fn take_expired(&mut self) -> Vec<Expired> {
        std::mem::take(&mut self.expired)
    }

    /// The forwarding decision for one packet received on `slot`'s `component` socket.
    /// Counts the packet on both legs and in [`TableStats`].
    pub fn on_packet(
        &mut self,
        slot: u32,
        component: Component,
        src: SocketAddr,
        pkt: &[u8],
        now: Instant,
    ) -> Action {
        let kind = packet::classify(pkt);
        let policy = self.policy;
        let Some(leg) = self.legs.get_mut(slot as usize).and_then(Option::as_mut) else {
            self.stats.dropped_no_session += 1;
            return Action::Drop(DropReason::NoSession);
        };
        if kind == packet::Kind::Stun {
            // Answered only for the party: a STUN answer from any port tells a prober the port
            // is live and what address it was seen from (issue 9).
            if leg.latch[component.index()].expects(&policy, leg.spec.remote, src) {
                return Action::Stun;
            }
            self.stats.stun_refused += 1;
            self.stats.dropped_foreign_source += 1;
            return Action::Drop(DropReason::ForeignSource);
        }
        let verdict = leg.latch[component.index()].check(
            &policy,
            leg.spec.remote,
            leg.spec.symmetric,
            src,
            kind.ssrc(),
            now,
        );
        match verdict {
            Verdict::Foreign => {
                leg.counters.dropped += 1;
                self.stats.dropped_foreign_source += 1;
                return Action::Drop(DropReason::ForeignSource);
            }
            Verdict::Latched => self.stats.latches += 1,
            Verdict::Relatched { .. } => self.stats.relatches += 1,
            Verdict::Accept => {}
        }
        leg.last_rx = stamp::Stamp::at(now);
        if let (packet::Kind::Rtp { ssrc }, Component::Rtp) = (kind, component) {
            if let Some((pt, seq, ts)) = packet::rtp_fields(pkt) {
                leg.quality.on_rtp(ssrc, seq, ts, pt, now);
            }
        }
        let partner = leg.partner;
        let len = pkt.len() as u64;
        let dst = self.leg(partner).and_then(|p| p.destination(component));
        let Some(dst) = dst else {
            if let Some(leg) = self.legs.get_mut(slot as usize).and_then(Option::as_mut) {
                leg.counters.dropped += 1;
            }
            self.stats.dropped_no_peer += 1;
            return Action::Drop(DropReason::NoPeer);
        };
        // What leaves the partner's ports is exactly this: its "out" counters are these.
        if let Some(leg) = self.legs.get_mut(slot as usize).and_then(Option::as_mut) {
            leg.counters.packets_in += 1;
            leg.counters.bytes_in += len;
        }
        self.stats.forwarded_packets += 1;
        self.stats.forwarded_bytes += len;
        Action::Forward {
            slot: partner,
            component,
            dst,
        }
    }

    /// Whether `slot` currently holds a leg (used by shells to discard stale completions).
    pub fn is_active(&self, slot: u32) -> bool {
        self.leg(slot).is_some()
    }
}

#[cfg(test)]
mod tests;
