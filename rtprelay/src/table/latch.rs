//! Symmetric-RTP latching: which source address a leg accepts media from, and therefore where
//! the other leg's media is sent back to (RFC 4961 symmetric RTP; "comedia", RFC 4145 §4).
//!
//! A relay that simply learns "the last source that sent to this port" can be hijacked by anyone
//! who sprays packets at relay ports ("RTP bleed"): the attacker receives the call's media. The
//! policy here is a pure function of (latch state, signalled address, packet source, SSRC, now).
//!
//! # Strict policy (`media.strict_source = true`, the default)
//! 1. Unlatched, signalled address public: the first packet whose source *IP* equals the
//!    signalled IP latches (any port: a NAT keeps the public IP but may change the port, and the
//!    edge's NAT fixing puts the public IP into the SDP). Packets from any other IP are dropped
//!    and counted as `ForeignSource`; they change nothing.
//! 2. Unlatched, signalled address private (RFC 1918, RFC 4193 ULA, RFC 6598 CGNAT 100.64/10,
//!    link-local), unspecified (`0.0.0.0`, hold) or missing: the party is behind a NAT and its
//!    real address is unknown, so the first source latches.
//! 3. Latched: only packets from exactly the latched address are accepted. The one exception
//!    is **NAT rebinding**: a packet that (a) is RTP/RTCP carrying the *same SSRC* as the last
//!    packet accepted from the latched address, (b) comes from the *same IP* with a new port, and
//!    (c) arrives after the latched address has been silent for at least
//!    [`LatchPolicy::rebind_silence`] moves the latch to the new port. A packet from a foreign
//!    address with a different SSRC (or from a different IP, or while the latched source is still
//!    talking) never moves the latch — so an attacker must already know the SSRC *and* share the
//!    party's public IP *and* wait until the party stops sending.
//! 4. **Learning**: for [`LatchPolicy::learning`] after the first latch, a packet from *exactly*
//!    the signalled address (IP and port) moves a latch taken by another source (once: when
//!    the signalled address holds the latch, learning is over): the party said
//!    it is there, so an earlier source was at best a guess — another port of the same IP
//!    (another phone behind the same NAT, or stale media of an old call still hitting a re-used
//!    port after a relay restart). rtpengine's "heuristic" endpoint learning ranks sources the
//!    same way. After the window only rule 3 applies.
//!
//! # Loose policy (`strict_source = false`)
//! The first source latches; a different source re-latches once the latched one has been silent
//! for `rebind_silence` (no IP or SSRC check). Packets from others meanwhile are dropped.
//!
//! # Asymmetric legs (`symmetric = false`, rtpproxy's `a` modifier)
//! Never latch; media goes to the signalled address. In strict mode a packet is accepted only if
//! its source IP is the signalled IP (when that is public); loose mode accepts any source.
//!
//! A change of the signalled address (re-INVITE) resets the latch: the party has moved.

use super::stamp::Stamp;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long the latched source must be silent before the rebinding rule may apply.
pub const DEFAULT_REBIND_SILENCE: Duration = Duration::from_secs(2);
/// How long after the first latch the signalled address itself may still take the latch.
pub const DEFAULT_LEARNING: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchPolicy {
    pub strict: bool,
    pub rebind_silence: Duration,
    pub learning: Duration,
}

impl LatchPolicy {
    pub fn strict() -> LatchPolicy {
        LatchPolicy {
            strict: true,
            rebind_silence: DEFAULT_REBIND_SILENCE,
            learning: DEFAULT_LEARNING,
        }
    }

    pub fn loose() -> LatchPolicy {
        LatchPolicy {
            strict: false,
            ..LatchPolicy::strict()
        }
    }
}

/// The outcome for one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the latched address (or any acceptable source of an asymmetric leg).
    Accept,
    /// First latch on this source.
    Latched,
    /// The latch moved (NAT rebinding / loose re-latch) from the given address.
    Relatched { from: SocketAddr },
    /// Not from the party: drop, count, change nothing.
    Foreign,
}

impl Verdict {
    pub fn accepted(self) -> bool {
        !matches!(self, Verdict::Foreign)
    }
}

/// Latch state of one component (RTP or RTCP port) of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latch {
    addr: Packed,
    /// SSRC of the last RTP/RTCP packet accepted from `addr`.
    ssrc: u32,
    has_ssrc: bool,
    /// Time of the last packet accepted from `addr`.
    last: Stamp,
    /// When the first latch happened (start of the learning window).
    since: Stamp,
    /// The signalled address itself was latched once: learning is over.
    learned: bool,
}

/// An `Option<SocketAddr>` in 24 bytes instead of 32 (two per leg): the IP, the port, the
/// IPv6 scope (a link-local source is answered through its interface); the IPv6 flow label is
/// not kept (it says nothing about where to send).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Packed {
    ip: [u8; 16],
    scope: u32,
    port: u16,
    /// 0: none, 4: IPv4 (first 4 bytes of `ip`), 6: IPv6.
    family: u8,
}

impl Packed {
    fn new(a: SocketAddr) -> Packed {
        let mut ip = [0u8; 16];
        match a {
            SocketAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.ip().octets());
                Packed {
                    ip,
                    scope: 0,
                    port: v4.port(),
                    family: 4,
                }
            }
            SocketAddr::V6(v6) => Packed {
                ip: v6.ip().octets(),
                scope: v6.scope_id(),
                port: v6.port(),
                family: 6,
            },
        }
    }

    fn get(&self) -> Option<SocketAddr> {
        match self.family {
            4 => {
                let [a, b, c, d, ..] = self.ip;
                Some(SocketAddr::from(([a, b, c, d], self.port)))
            }
            6 => Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                self.ip.into(),
                self.port,
                0,
                self.scope,
            ))),
            _ => None,
        }
    }
}

/// Private, shared or link-local: an address that says "I am behind a NAT" when it appears in
/// SDP seen by a public relay. Loopback is *not* private: it is a real, reachable address here.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()                                   // RFC 1918
                || (o[0] == 100 && (o[1] & 0xc0) == 64)        // RFC 6598 100.64/10
                || v4.is_link_local()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s0 = v6.segments()[0];
            (s0 & 0xfe00) == 0xfc00              // RFC 4193 ULA fc00::/7
                || (s0 & 0xffc0) == 0xfe80 // link-local fe80::/10
        }
    }
}

/// A signalled address usable as a destination: not missing, not `0.0.0.0`/`::` (hold), port set.
pub fn usable(remote: Option<SocketAddr>) -> Option<SocketAddr> {
    remote.filter(|r| !r.ip().is_unspecified() && r.port() != 0)
}

/// A signalled address that says where the party really is: usable and not private. Media is
/// sent to it before latching and, in strict mode, only its IP may latch.
pub fn trusted(remote: Option<SocketAddr>) -> Option<SocketAddr> {
    usable(remote).filter(|s| !is_private(s.ip()))
}

impl Latch {
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.get()
    }

    pub fn reset(&mut self) {
        *self = Latch::default();
    }

    /// Is `src` the party of this latch, without changing anything? The latched address once
    /// latched; before, a source on the signalled IP when that is public (strict policy; the
    /// loose one expects anyone until latched). Used for STUN, which is answered only to the
    /// party: nobody else learns that the port is live.
    pub fn expects(
        &self,
        policy: &LatchPolicy,
        signalled: Option<SocketAddr>,
        src: SocketAddr,
    ) -> bool {
        match self.addr.get() {
            Some(latched) => latched == src,
            None => match trusted(signalled) {
                Some(s) => s.ip() == src.ip(),
                None => !policy.strict,
            },
        }
    }

    /// Decide on a packet from `src` with SSRC `ssrc` (None: not RTP/RTCP), updating the latch.
    pub fn check(
        &mut self,
        policy: &LatchPolicy,
        signalled: Option<SocketAddr>,
        symmetric: bool,
        src: SocketAddr,
        ssrc: Option<u32>,
        now: Instant,
    ) -> Verdict {
        let public_signalled = trusted(signalled);
        if !symmetric {
            return match public_signalled {
                Some(s) if policy.strict && s.ip() != src.ip() => Verdict::Foreign,
                _ => Verdict::Accept,
            };
        }
        let Some(latched) = self.addr.get() else {
            if let Some(s) = public_signalled {
                if policy.strict && s.ip() != src.ip() {
                    return Verdict::Foreign;
                }
            }
            self.latch(src, ssrc, now);
            self.learned = usable(signalled) == Some(src);
            return Verdict::Latched;
        };
        if latched == src {
            if ssrc.is_some() {
                self.set_ssrc(ssrc);
            }
            self.last = Stamp::at(now);
            return Verdict::Accept;
        }
        let learning = self
            .since
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < policy.learning);
        if learning && !self.learned && usable(signalled) == Some(src) {
            self.latch(src, ssrc, now);
            self.learned = true;
            return Verdict::Relatched { from: latched };
        }
        let silent = self
            .last
            .get()
            .is_none_or(|t| now.saturating_duration_since(t) >= policy.rebind_silence);
        let may_move = if policy.strict {
            silent && ssrc.is_some() && ssrc == self.ssrc() && src.ip() == latched.ip()
        } else {
            silent
        };
        if may_move {
            self.latch(src, ssrc, now);
            Verdict::Relatched { from: latched }
        } else {
            Verdict::Foreign
        }
    }

    fn ssrc(&self) -> Option<u32> {
        self.has_ssrc.then_some(self.ssrc)
    }

    fn set_ssrc(&mut self, ssrc: Option<u32>) {
        self.has_ssrc = ssrc.is_some();
        self.ssrc = ssrc.unwrap_or(0);
    }

    fn latch(&mut self, src: SocketAddr, ssrc: Option<u32>, now: Instant) {
        self.addr = Packed::new(src);
        self.set_ssrc(ssrc);
        self.last = Stamp::at(now);
        if self.since.is_none() {
            self.since = Stamp::at(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    const S: Option<u32> = Some(0x1234);
    const OTHER: Option<u32> = Some(0x9999);

    #[test]
    fn packed_address_round_trip() {
        for a in [
            "192.0.2.1:4000",
            "[2001:db8::1]:5004",
            "[fe80::1%3]:6000",
            "0.0.0.0:0",
        ] {
            let a = sa(a);
            assert_eq!(Packed::new(a).get(), Some(a));
        }
        assert_eq!(Packed::default().get(), None);
        assert!(std::mem::size_of::<Latch>() <= 48);
    }

    #[test]
    fn strict_latches_signalled_ip_only() {
        let t0 = Instant::now();
        let p = LatchPolicy::strict();
        let mut l = Latch::default();
        let sig = Some(sa("203.0.113.5:4000"));
        // Foreign IP first: dropped, nothing latched.
        assert_eq!(
            l.check(&p, sig, true, sa("198.51.100.66:4000"), S, t0),
            Verdict::Foreign
        );
        assert_eq!(l.addr(), None);
        // Same IP (port rewritten by NAT): latches.
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:5555"), S, t0),
            Verdict::Latched
        );
        assert_eq!(l.addr(), Some(sa("203.0.113.5:5555")));
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:5555"), S, t0),
            Verdict::Accept
        );
    }

    /// Stale media of an old call (same IP, another port) hits a re-used port first: the
    /// party's own packets from its signalled address take the latch during learning, and
    /// only then; afterwards the latch holds.
    #[test]
    fn the_signalled_address_wins_the_latch_while_learning() {
        let t0 = Instant::now();
        let p = LatchPolicy::strict();
        let mut l = Latch::default();
        let sig = Some(sa("203.0.113.5:4000"));
        let stale = sa("203.0.113.5:6000");
        assert_eq!(l.check(&p, sig, true, stale, OTHER, t0), Verdict::Latched);
        let t1 = t0 + Duration::from_millis(2_500);
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4000"), S, t1),
            Verdict::Relatched { from: stale }
        );
        assert_eq!(l.check(&p, sig, true, stale, OTHER, t1), Verdict::Foreign);
        // The window counts from the first latch: a late signalled source does not move it.
        let mut l = Latch::default();
        l.check(&p, sig, true, stale, OTHER, t0);
        let late = t0 + p.learning;
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4000"), S, late),
            Verdict::Foreign
        );
        // Another port of the signalled IP is no better than the first guess.
        let mut l = Latch::default();
        l.check(&p, sig, true, stale, OTHER, t0);
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4002"), S, t0),
            Verdict::Foreign
        );
    }

    #[test]
    fn foreign_source_never_moves_strict_latch() {
        let t0 = Instant::now();
        let p = LatchPolicy::strict();
        let mut l = Latch::default();
        let sig = Some(sa("203.0.113.5:4000"));
        l.check(&p, sig, true, sa("203.0.113.5:4000"), S, t0);
        let later = t0 + Duration::from_secs(60);
        // Different IP, even with the same SSRC and after long silence.
        assert_eq!(
            l.check(&p, sig, true, sa("198.51.100.66:4000"), S, later),
            Verdict::Foreign
        );
        // Same IP, different SSRC.
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4002"), OTHER, later),
            Verdict::Foreign
        );
        // Same IP, no SSRC (not RTP).
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4002"), None, later),
            Verdict::Foreign
        );
        assert_eq!(l.addr(), Some(sa("203.0.113.5:4000")));
    }

    #[test]
    fn strict_rebinding_rule_needs_same_ssrc_same_ip_and_silence() {
        let t0 = Instant::now();
        let p = LatchPolicy::strict();
        let mut l = Latch::default();
        let sig = Some(sa("203.0.113.5:4000"));
        l.check(&p, sig, true, sa("203.0.113.5:4000"), S, t0);
        // Too early: the latched source talked 1 s ago.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4100"), S, t1),
            Verdict::Foreign
        );
        let t2 = t0 + p.rebind_silence;
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4100"), S, t2),
            Verdict::Relatched {
                from: sa("203.0.113.5:4000")
            }
        );
        assert_eq!(l.addr(), Some(sa("203.0.113.5:4100")));
        // The old port is now foreign.
        assert_eq!(
            l.check(&p, sig, true, sa("203.0.113.5:4000"), S, t2),
            Verdict::Foreign
        );
    }

    #[test]
    fn ssrc_tracks_latest_from_latched_source() {
        let t0 = Instant::now();
        let p = LatchPolicy::strict();
        let mut l = Latch::default();
        let src = sa("10.0.0.1:4000");
        l.check(&p, None, true, src, S, t0);
        l.check(&p, None, true, src, OTHER, t0);
        let t = t0 + Duration::from_secs(10);
        assert_eq!(
            l.check(&p, None, true, sa("10.0.0.1:4444"), S, t),
            Verdict::Foreign
        );
        assert!(matches!(
            l.check(&p, None, true, sa("10.0.0.1:4444"), OTHER, t),
            Verdict::Relatched { .. }
        ));
    }

    #[test]
    fn private_or_missing_signalled_latches_first_source() {
        let t0 = Instant::now();
        let p = LatchPolicy::strict();
        for sig in [
            Some(sa("192.168.1.20:4000")),
            Some(sa("10.1.2.3:4000")),
            Some(sa("172.20.0.1:4000")),
            Some(sa("100.64.3.4:4000")),
            Some(sa("[fd00::1]:4000")),
            Some(sa("0.0.0.0:4000")),
            None,
        ] {
            let mut l = Latch::default();
            assert_eq!(
                l.check(&p, sig, true, sa("198.51.100.9:31000"), S, t0),
                Verdict::Latched,
                "{sig:?}"
            );
            assert_eq!(l.addr(), Some(sa("198.51.100.9:31000")));
        }
    }

    #[test]
    fn loose_relatches_after_silence_without_checks() {
        let t0 = Instant::now();
        let p = LatchPolicy::loose();
        let mut l = Latch::default();
        let sig = Some(sa("203.0.113.5:4000"));
        assert_eq!(
            l.check(&p, sig, true, sa("198.51.100.1:1"), None, t0),
            Verdict::Latched
        );
        assert_eq!(
            l.check(&p, sig, true, sa("198.51.100.2:2"), OTHER, t0),
            Verdict::Foreign
        );
        let t = t0 + p.rebind_silence;
        assert!(matches!(
            l.check(&p, sig, true, sa("198.51.100.2:2"), OTHER, t),
            Verdict::Relatched { .. }
        ));
        assert_eq!(l.addr(), Some(sa("198.51.100.2:2")));
    }

    #[test]
    fn asymmetric_never_latches() {
        let t0 = Instant::now();
        let sig = Some(sa("203.0.113.5:4000"));
        let mut l = Latch::default();
        let strict = LatchPolicy::strict();
        assert_eq!(
            l.check(&strict, sig, false, sa("203.0.113.5:9"), S, t0),
            Verdict::Accept
        );
        assert_eq!(
            l.check(&strict, sig, false, sa("198.51.100.1:9"), S, t0),
            Verdict::Foreign
        );
        let loose = LatchPolicy::loose();
        assert_eq!(
            l.check(&loose, sig, false, sa("198.51.100.1:9"), S, t0),
            Verdict::Accept
        );
        assert_eq!(l.addr(), None);
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.0.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "100.127.0.1",
            "169.254.1.1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "100.128.0.1",
            "8.8.8.8",
            "127.0.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
        assert!(is_private("fe80::1".parse().expect("ip")));
        assert!(is_private("::ffff:10.0.0.1".parse().expect("ip")));
    }
}
