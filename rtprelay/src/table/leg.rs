//! One leg: the relay's port pair facing one party, its signalled spec, its latches (RTP and
//! RTCP latch separately, RFC 3550 §11: RTCP may come from its own NAT mapping) and counters.

use super::latch::{trusted, Latch};
use super::quality::Quality;
use super::stamp::Stamp;
use crate::backend::{LegCounters, LegSpec};
use std::net::SocketAddr;
use std::time::Instant;

/// Which socket of a leg's pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// Even port: RTP, and RTCP when rtcp-mux (RFC 5761).
    Rtp = 0,
    /// Odd port (RTP + 1): RTCP.
    Rtcp = 1,
}

impl Component {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Component {
        if i & 1 == 0 {
            Component::Rtp
        } else {
            Component::Rtcp
        }
    }
}

/// Received and forwarded from this leg's party. What leaves a leg's ports is what its
/// partner received and forwarded, so "out" figures are read from the partner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub dropped: u64,
}

#[derive(Debug, Clone)]
pub struct Leg {
    pub spec: LegSpec,
    /// Slot of the other leg of the stream.
    pub partner: u32,
    /// Leg A of its stream (the one expiry and removal are reported for).
    pub is_a: bool,
    pub latch: [Latch; 2],
    pub counters: Counters,
    /// Receive statistics of the party's RTP (RFC 3550 A.1/A.3/A.8).
    pub quality: Quality,
    /// Last accepted packet on either port.
    pub last_rx: Stamp,
    pub created: Stamp,
}

impl Leg {
    pub fn new(spec: LegSpec, partner: u32, is_a: bool, now: Instant) -> Leg {
        Leg {
            spec,
            partner,
            is_a,
            latch: [Latch::default(); 2],
            counters: Counters::default(),
            quality: Quality::default(),
            last_rx: Stamp::NONE,
            created: Stamp::at(now),
        }
    }

    /// Where media for this leg's party goes on `component`: the latched source (symmetric
    /// RTP) or the signalled address (RTCP: signalled port + 1, RFC 3550 §11). A private
    /// signalled address gets nothing before latching: it names a host behind some NAT, and
    /// whoever holds that address on the relay's side of the network is not the party.
    pub fn destination(&self, component: Component) -> Option<SocketAddr> {
        if self.spec.symmetric {
            if let Some(a) = self.latch[component.index()].addr() {
                return Some(a);
            }
        }
        let remote = trusted(self.spec.remote)?;
        match component {
            Component::Rtp => Some(remote),
            Component::Rtcp => Some(SocketAddr::new(remote.ip(), remote.port().checked_add(1)?)),
        }
    }

    /// Last time this leg was alive: last packet, or creation if none yet.
    pub fn last_activity(&self) -> Instant {
        self.last_rx
            .get()
            .or_else(|| self.created.get())
            .unwrap_or_else(Instant::now)
    }

    /// Counters of this leg; `partner`'s received-and-forwarded are what this leg sent.
    pub fn snapshot(&self, partner: Option<&Leg>, now: Instant) -> LegCounters {
        let out = partner.map(|p| p.counters).unwrap_or_default();
        LegCounters {
            packets_in: self.counters.packets_in,
            bytes_in: self.counters.bytes_in,
            packets_out: out.packets_in,
            bytes_out: out.bytes_in,
            dropped: self.counters.dropped,
            latched: self.latch[Component::Rtp.index()].addr(),
            idle: self.last_rx.get().map(|t| now.saturating_duration_since(t)),
            quality: self.quality.figures(),
        }
    }

    /// New signalling. The latches are reset when the party's address or symmetry changed.
    pub fn update(&mut self, spec: LegSpec) {
        if spec.remote != self.spec.remote || spec.symmetric != self.spec.symmetric {
            for l in &mut self.latch {
                l.reset();
            }
        }
        self.spec = spec;
    }
}
