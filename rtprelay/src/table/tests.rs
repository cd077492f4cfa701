//! Table tests: fake sockets, injected time.

use super::*;
use std::collections::BTreeSet;

#[derive(Default)]
struct FakeSockets {
    open: BTreeSet<u32>,
    /// Ports that "another process" holds.
    taken: BTreeSet<u16>,
    closes: usize,
}

impl Sockets for FakeSockets {
    fn open(&mut self, slot: u32, _ip: IpAddr, rtp_port: u16) -> std::io::Result<()> {
        if self.taken.contains(&rtp_port) {
            return Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        }
        assert!(self.open.insert(slot), "slot {slot} opened twice");
        Ok(())
    }
    fn close(&mut self, slot: u32) {
        assert!(self.open.remove(&slot), "slot {slot} closed but not open");
        self.closes += 1;
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn spec(remote: Option<&str>) -> LegSpec {
    LegSpec {
        remote: remote.map(sa),
        symmetric: true,
        local_ip: "127.0.0.1".parse().expect("ip"),
    }
}

fn rtp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn table(pairs: u32, strict: bool) -> Table {
    let policy = if strict {
        LatchPolicy::strict()
    } else {
        LatchPolicy::loose()
    };
    Table::new(3, 30_000, pairs, policy, Duration::from_secs(30), 0x7e57)
}

#[test]
fn create_forward_both_ways_and_count() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, b) = t
        .create(
            spec(Some("203.0.113.1:4000")),
            spec(Some("203.0.113.2:5000")),
            t0,
            &mut s,
        )
        .expect("create");
    assert_eq!((a.shard, b.shard), (3, 3));
    assert!(a.port != b.port && a.port % 2 == 0 && b.port % 2 == 0);
    assert!([a.port, b.port]
        .iter()
        .all(|p| (30_000..30_008).contains(p)));
    let sa_ = t.slot(a).expect("a");
    let sb_ = t.slot(b).expect("b");
    let p = rtp(1);
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("203.0.113.1:4000"), &p, t0),
        Action::Forward {
            slot: sb_,
            component: Component::Rtp,
            dst: sa("203.0.113.2:5000")
        }
    );
    // B latches on a NATed port; A's media then goes to the latched port.
    assert_eq!(
        t.on_packet(sb_, Component::Rtp, sa("203.0.113.2:6000"), &p, t0),
        Action::Forward {
            slot: sa_,
            component: Component::Rtp,
            dst: sa("203.0.113.1:4000")
        }
    );
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("203.0.113.1:4000"), &p, t0),
        Action::Forward {
            slot: sb_,
            component: Component::Rtp,
            dst: sa("203.0.113.2:6000")
        }
    );
    let ca = t.counters(a, t0).expect("ca");
    assert_eq!((ca.packets_in, ca.bytes_in, ca.packets_out), (2, 344, 1));
    assert_eq!(ca.latched, Some(sa("203.0.113.1:4000")));
    let cb = t.counters(b, t0).expect("cb");
    assert_eq!((cb.packets_in, cb.packets_out, cb.bytes_out), (1, 2, 344));
    assert_eq!(t.stats.forwarded_packets, 3);
    assert_eq!(t.stats.latches, 2);
}

#[test]
fn rtcp_latches_separately_and_goes_to_port_plus_one() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, b) = t
        .create(spec(None), spec(Some("203.0.113.2:5000")), t0, &mut s)
        .expect("create");
    let (sa_, sb_) = (t.slot(a).expect("a"), t.slot(b).expect("b"));
    let mut rr = vec![0u8; 32];
    rr[0] = 0x80;
    rr[1] = 201;
    assert_eq!(
        t.on_packet(sa_, Component::Rtcp, sa("198.51.100.7:7001"), &rr, t0),
        Action::Forward {
            slot: sb_,
            component: Component::Rtcp,
            dst: sa("203.0.113.2:5001")
        }
    );
    // A's RTP is not latched by RTCP: B's RTP has no destination yet.
    assert_eq!(
        t.on_packet(sb_, Component::Rtp, sa("203.0.113.2:5000"), &rtp(2), t0),
        Action::Drop(DropReason::NoPeer)
    );
    assert_eq!(
        t.on_packet(sb_, Component::Rtcp, sa("203.0.113.2:5001"), &rr, t0),
        Action::Forward {
            slot: sa_,
            component: Component::Rtcp,
            dst: sa("198.51.100.7:7001")
        }
    );
    assert_eq!(t.stats.dropped_no_peer, 1);
    assert_eq!(t.counters(b, t0).expect("b").dropped, 1);
}

#[test]
fn foreign_source_is_dropped_counted_and_moves_no_latch() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, b) = t
        .create(
            spec(Some("203.0.113.1:4000")),
            spec(Some("203.0.113.2:5000")),
            t0,
            &mut s,
        )
        .expect("create");
    let (sa_, sb_) = (t.slot(a).expect("a"), t.slot(b).expect("b"));
    // The attacker sends first.
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.66:1234"), &rtp(9), t0),
        Action::Drop(DropReason::ForeignSource)
    );
    let ca = t.counters(a, t0).expect("a");
    assert_eq!((ca.latched, ca.dropped, ca.packets_in), (None, 1, 0));
    assert_eq!(t.stats.dropped_foreign_source, 1);
    // The party latches, then the attacker again: still dropped.
    t.on_packet(sa_, Component::Rtp, sa("203.0.113.1:4000"), &rtp(1), t0);
    let later = t0 + Duration::from_secs(20);
    assert_eq!(
        t.on_packet(
            sa_,
            Component::Rtp,
            sa("198.51.100.66:1234"),
            &rtp(1),
            later
        ),
        Action::Drop(DropReason::ForeignSource)
    );
    assert_eq!(
        t.counters(a, later).expect("a").latched,
        Some(sa("203.0.113.1:4000"))
    );
    // B's media still goes to the party.
    assert!(matches!(
        t.on_packet(sb_, Component::Rtp, sa("203.0.113.2:5000"), &rtp(2), later),
        Action::Forward { dst, .. } if dst == sa("203.0.113.1:4000")
    ));
}

#[test]
fn private_signalled_latches_first_source() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, _b) = t
        .create(spec(Some("192.168.1.10:4000")), spec(None), t0, &mut s)
        .expect("create");
    let sa_ = t.slot(a).expect("a");
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:40000"), &rtp(1), t0),
        Action::Drop(DropReason::NoPeer)
    );
    assert_eq!(
        t.counters(a, t0).expect("a").latched,
        Some(sa("198.51.100.3:40000"))
    );
}

#[test]
fn nat_rebinding_by_ssrc_rule() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, b) = t
        .create(spec(None), spec(Some("203.0.113.2:5000")), t0, &mut s)
        .expect("create");
    let sa_ = t.slot(a).expect("a");
    t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:40000"), &rtp(77), t0);
    let t3 = t0 + Duration::from_secs(3);
    // Different SSRC from the new port: refused.
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:40002"), &rtp(78), t3),
        Action::Drop(DropReason::ForeignSource)
    );
    // Same SSRC, same IP, after silence: the NAT rebound, follow it.
    assert!(matches!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:40002"), &rtp(77), t3),
        Action::Forward { .. }
    ));
    assert_eq!(
        t.counters(a, t3).expect("a").latched,
        Some(sa("198.51.100.3:40002"))
    );
    assert_eq!(t.stats.relatches, 1);
    let sb_ = t.slot(b).expect("b");
    assert!(matches!(
        t.on_packet(sb_, Component::Rtp, sa("203.0.113.2:5000"), &rtp(5), t3),
        Action::Forward { dst, .. } if dst == sa("198.51.100.3:40002")
    ));
}

#[test]
fn loose_mode_relatches() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, false);
    let (a, _) = t
        .create(spec(Some("203.0.113.1:4000")), spec(None), t0, &mut s)
        .expect("create");
    let sa_ = t.slot(a).expect("a");
    t.on_packet(sa_, Component::Rtp, sa("198.51.100.66:1"), &rtp(1), t0);
    assert_eq!(
        t.counters(a, t0).expect("a").latched,
        Some(sa("198.51.100.66:1"))
    );
    let t5 = t0 + Duration::from_secs(5);
    t.on_packet(sa_, Component::Rtp, sa("203.0.113.1:4000"), &rtp(2), t5);
    assert_eq!(
        t.counters(a, t5).expect("a").latched,
        Some(sa("203.0.113.1:4000"))
    );
}

#[test]
fn update_with_new_remote_resets_latch() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, _) = t
        .create(spec(None), spec(None), t0, &mut s)
        .expect("create");
    let sa_ = t.slot(a).expect("a");
    t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:1"), &rtp(1), t0);
    t.update(a, spec(None), &mut s).expect("same spec");
    assert!(t.counters(a, t0).expect("a").latched.is_some());
    t.update(a, spec(Some("203.0.113.9:9000")), &mut s)
        .expect("update");
    let c = t.counters(a, t0).expect("a");
    assert_eq!(c.latched, None);
    assert_eq!(
        c.packets_in, 0,
        "counters survive update (no peer: not counted in)"
    );
    assert_eq!(c.dropped, 1);
}

#[test]
fn stun_is_answered_only_for_the_party_and_no_session_is_counted() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, b) = t
        .create(spec(None), spec(Some("203.0.113.2:5000")), t0, &mut s)
        .expect("create");
    let (sa_, sb_) = (t.slot(a).expect("a"), t.slot(b).expect("b"));
    let mut stun = vec![0u8; 20];
    stun[1] = 1;
    stun[4..8].copy_from_slice(&packet::STUN_MAGIC.to_be_bytes());
    // A's address is unknown: nobody is answered before A latches, so a prober cannot tell
    // a live port from a dead one.
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:1"), &stun, t0),
        Action::Drop(DropReason::ForeignSource)
    );
    assert_eq!(t.counters(a, t0).expect("a").latched, None);
    t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:1"), &rtp(1), t0);
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:1"), &stun, t0),
        Action::Stun
    );
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:2"), &stun, t0),
        Action::Drop(DropReason::ForeignSource)
    );
    // B signalled a public address: its IP is expected before latching, no other.
    assert_eq!(
        t.on_packet(sb_, Component::Rtp, sa("203.0.113.2:7777"), &stun, t0),
        Action::Stun
    );
    assert_eq!(
        t.on_packet(sb_, Component::Rtp, sa("203.0.113.9:5000"), &stun, t0),
        Action::Drop(DropReason::ForeignSource)
    );
    assert_eq!(t.stats.stun_refused, 3);
    let unused = (0..4)
        .find(|&slot| !t.is_active(slot))
        .expect("a free slot");
    assert_eq!(
        t.on_packet(unused, Component::Rtp, sa("198.51.100.3:1"), &rtp(1), t0),
        Action::Drop(DropReason::NoSession)
    );
    assert_eq!(
        t.on_packet(999, Component::Rtp, sa("198.51.100.3:1"), &rtp(1), t0),
        Action::Drop(DropReason::NoSession)
    );
    assert_eq!(t.stats.dropped_no_session, 2);
}

#[test]
fn nothing_is_sent_to_a_private_address_before_latching() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let (a, b) = t
        .create(
            spec(Some("203.0.113.1:4000")),
            spec(Some("192.168.1.10:5000")),
            t0,
            &mut s,
        )
        .expect("create");
    let (sa_, sb_) = (t.slot(a).expect("a"), t.slot(b).expect("b"));
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("203.0.113.1:4000"), &rtp(1), t0),
        Action::Drop(DropReason::NoPeer)
    );
    // B latches (first source: its real address is unknown), then gets A's media there.
    t.on_packet(sb_, Component::Rtp, sa("198.51.100.20:40000"), &rtp(2), t0);
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("203.0.113.1:4000"), &rtp(1), t0),
        Action::Forward {
            slot: sb_,
            component: Component::Rtp,
            dst: sa("198.51.100.20:40000")
        }
    );
}

#[test]
fn exhaustion_and_reuse() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(5, true);
    let (a1, b1) = t.create(spec(None), spec(None), t0, &mut s).expect("1");
    let (_a2, _b2) = t.create(spec(None), spec(None), t0, &mut s).expect("2");
    // One pair left: not enough for a stream; nothing leaks.
    assert_eq!(
        t.create(spec(None), spec(None), t0, &mut s),
        Err(BackendError::NoPorts)
    );
    assert_eq!(s.open.len(), 4);
    t.remove(a1, b1, t0, &mut s).expect("remove");
    assert_eq!(t.counters(a1, t0), Err(BackendError::UnknownLeg));
    let (a3, b3) = t.create(spec(None), spec(None), t0, &mut s).expect("3");
    let ports: BTreeSet<u16> = [a3.port, b3.port].into_iter().collect();
    assert!(
        ports.contains(&a1.port) || ports.contains(&b1.port),
        "freed ports are reused: {ports:?}"
    );
    assert_eq!(t.active_streams(), 2);
    assert_eq!(s.open.len(), 4);
}

#[test]
fn taken_ports_are_skipped() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    s.taken.insert(30_000);
    let mut t = table(4, true);
    let (a, b) = t
        .create(spec(None), spec(None), t0, &mut s)
        .expect("create");
    for p in [a.port, b.port] {
        assert!([30_002, 30_004, 30_006].contains(&p), "{p}");
    }
    // Every port taken: a bind error, not a panic or a loop.
    let mut s2 = FakeSockets::default();
    s2.taken.extend([30_000, 30_002, 30_004, 30_006]);
    let mut t2 = table(4, true);
    assert!(matches!(
        t2.create(spec(None), spec(None), t0, &mut s2),
        Err(BackendError::Bind(_))
    ));
}

#[test]
fn remove_checks_partnership_and_ids() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(6, true);
    let (a1, _b1) = t.create(spec(None), spec(None), t0, &mut s).expect("1");
    let (_a2, b2) = t.create(spec(None), spec(None), t0, &mut s).expect("2");
    assert_eq!(t.remove(a1, b2, t0, &mut s), Err(BackendError::UnknownLeg));
    let odd = LegId {
        shard: 3,
        port: a1.port + 1,
    };
    assert_eq!(t.counters(odd, t0), Err(BackendError::UnknownLeg));
    let other_shard = LegId {
        shard: 4,
        port: a1.port,
    };
    assert_eq!(t.counters(other_shard, t0), Err(BackendError::UnknownLeg));
    let out_of_range = LegId {
        shard: 3,
        port: 50_000,
    };
    assert_eq!(t.counters(out_of_range, t0), Err(BackendError::UnknownLeg));
}

#[test]
fn timeout_needs_both_legs_idle() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(6, true);
    let (a, b) = t
        .create(spec(None), spec(Some("203.0.113.2:5000")), t0, &mut s)
        .expect("1");
    let (a2, b2) = t.create(spec(None), spec(None), t0, &mut s).expect("2");
    let sa_ = t.slot(a).expect("a");
    // Only leg A of stream 1 talks (one-way audio is still a live call).
    for sec in [10, 20, 30, 40] {
        t.on_packet(
            sa_,
            Component::Rtp,
            sa("198.51.100.3:1"),
            &rtp(1),
            t0 + Duration::from_secs(sec),
        );
    }
    assert_eq!(t.expire(t0 + Duration::from_secs(29), &mut s), 0);
    assert_eq!(t.expire(t0 + Duration::from_secs(30), &mut s), 1);
    let exp = t.take_expired();
    assert_eq!(exp.len(), 1);
    assert_eq!((exp[0].0, exp[0].1), (a2, b2));
    assert!(t.take_expired().is_empty());
    assert_eq!(t.counters(a2, t0), Err(BackendError::UnknownLeg));
    assert_eq!(t.expire(t0 + Duration::from_secs(69), &mut s), 0);
    assert_eq!(t.expire(t0 + Duration::from_secs(70), &mut s), 1);
    let exp = t.take_expired();
    assert_eq!((exp[0].0, exp[0].1), (a, b));
    assert_eq!(exp[0].2.packets_in, 4);
    assert_eq!(t.active_streams(), 0);
    assert!(s.open.is_empty());
    assert_eq!(t.stats.streams_expired, 2);
}

#[test]
fn asymmetric_leg_sends_to_signalled_even_after_traffic() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    let mut b_spec = spec(Some("203.0.113.2:5000"));
    b_spec.symmetric = false;
    let (a, b) = t.create(spec(None), b_spec, t0, &mut s).expect("create");
    let (sa_, sb_) = (t.slot(a).expect("a"), t.slot(b).expect("b"));
    t.on_packet(sb_, Component::Rtp, sa("203.0.113.2:7777"), &rtp(1), t0);
    assert_eq!(t.counters(b, t0).expect("b").latched, None);
    assert_eq!(
        t.on_packet(sa_, Component::Rtp, sa("198.51.100.3:1"), &rtp(1), t0),
        Action::Forward {
            slot: sb_,
            component: Component::Rtp,
            dst: sa("203.0.113.2:5000")
        }
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Create,
        Remove(usize),
        Packet {
            slot: u32,
            rtcp: bool,
            src: u8,
            bytes: Vec<u8>,
        },
        Advance(u8),
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Create),
            (0usize..8).prop_map(Op::Remove),
            (
                0u32..12,
                any::<bool>(),
                0u8..4,
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(slot, rtcp, src, bytes)| Op::Packet {
                    slot,
                    rtcp,
                    src,
                    bytes
                }),
            (0u8..40).prop_map(Op::Advance),
            Just(Op::Expire),
        ]
    }

    proptest! {
        /// Random control and packet sequences never panic, never leak sockets or ports, and
        /// keep the counts consistent.
        #[test]
        fn random_ops_keep_invariants(strict in any::<bool>(), ops in proptest::collection::vec(op(), 1..80)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = FakeSockets::default();
            let mut t = table(8, strict);
            let mut streams: Vec<(LegId, LegId)> = Vec::new();
            for op in ops {
                match op {
                    Op::Create => match t.create(spec(Some("203.0.113.1:4000")), spec(None), now, &mut s) {
                        Ok(p) => streams.push(p),
                        Err(e) => prop_assert_eq!(e, BackendError::NoPorts),
                    },
                    Op::Remove(i) => {
                        if i < streams.len() {
                            let (a, b) = streams.remove(i);
                            prop_assert!(t.remove(a, b, now, &mut s).is_ok());
                        }
                    }
                    Op::Packet { slot, rtcp, src, bytes } => {
                        let src = SocketAddr::from(([203, 0, 113, src], 4000));
                        let c = if rtcp { Component::Rtcp } else { Component::Rtp };
                        if let Action::Forward { slot: out, .. } = t.on_packet(slot, c, src, &bytes, now) {
                            prop_assert!(t.is_active(out));
                            prop_assert!(t.is_active(slot));
                        }
                    }
                    Op::Advance(secs) => now += Duration::from_secs(u64::from(secs)),
                    Op::Expire => {
                        t.expire(now, &mut s);
                        let gone: Vec<_> = t.take_expired().into_iter().map(|e| (e.0, e.1)).collect();
                        streams.retain(|p| !gone.contains(p));
                    }
                }
                prop_assert_eq!(t.active_streams() as usize, streams.len());
                prop_assert_eq!(s.open.len(), streams.len() * 2);
            }
        }
    }
}

/// An RTP packet of `ssrc` with sequence number `seq`, PCMU timestamp `ts`.
fn rtp_seq(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
    let mut p = rtp(ssrc);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p
}

#[test]
fn quality_per_direction_rtp_only_observed_at_stream_end() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(8, true);
    let (ra, rb) = ("203.0.113.1:4000", "203.0.113.2:5000");
    let (a, b) = t
        .create(spec(Some(ra)), spec(Some(rb)), t0, &mut s)
        .expect("create");
    let (sa_, sb_) = (t.slot(a).expect("a"), t.slot(b).expect("b"));
    // A sends 0..=100 without 50 (1 lost of 100 counted: seq 0 is probation, base 1), evenly.
    for seq in (0u16..=100).filter(|s| *s != 50) {
        let at = t0 + Duration::from_millis(20 * u64::from(seq));
        let p = rtp_seq(7, seq, 160 * u32::from(seq));
        assert!(matches!(
            t.on_packet(sa_, Component::Rtp, sa(ra), &p, at),
            Action::Forward { .. }
        ));
    }
    // Neither RTCP (on either port), STUN, a stranger's RTP nor B's own RTP counts for A.
    let mut rtcp = rtp(7);
    rtcp[1] = 200;
    t.on_packet(sa_, Component::Rtp, sa(ra), &rtcp, t0);
    t.on_packet(sa_, Component::Rtcp, sa("203.0.113.1:4001"), &rtcp, t0);
    let stranger = rtp_seq(9, 5000, 0);
    t.on_packet(sa_, Component::Rtp, sa("198.51.100.9:1"), &stranger, t0);
    // B sends 3 packets in order.
    for seq in 10u16..13 {
        let p = rtp_seq(8, seq, 160 * u32::from(seq));
        t.on_packet(
            sb_,
            Component::Rtp,
            sa(rb),
            &p,
            t0 + Duration::from_millis(20 * u64::from(seq)),
        );
    }
    let ca = t.counters(a, t0).expect("a").quality;
    assert_eq!(
        (ca.expected, ca.received, ca.lost, ca.jitter_us),
        (100, 99, 1, 0)
    );
    let cb = t.counters(b, t0).expect("b").quality;
    assert_eq!((cb.expected, cb.lost), (2, 0));
    // Nothing observed while the stream lives.
    assert_eq!(t.quality.observations, 0);
    let (fa, fb) = t.remove(a, b, t0, &mut s).expect("remove");
    assert_eq!((fa.quality, fb.quality), (ca, cb));
    // One observation per direction: A's 1 % (bucket le 0.01), B's 0 (le 0).
    assert_eq!(t.quality.observations, 2);
    assert_eq!(t.quality.loss.counts[3], 1);
    assert_eq!(t.quality.loss.counts[0], 1);
    assert_eq!(t.quality.jitter.counts[0], 2);
    // A stream that received no RTP is not observed (no loss to judge), also on timeout.
    let (a, b) = t
        .create(spec(Some(ra)), spec(Some(rb)), t0, &mut s)
        .expect("create");
    assert_eq!(t.expire(t0 + Duration::from_secs(31), &mut s), 1);
    assert!(t.slot(a).is_err() && t.slot(b).is_err());
    assert_eq!(t.quality.observations, 2);
}

fn lo() -> IpAddr {
    "127.0.0.1".parse().expect("ip")
}

/// Socket pool: the pool refills to its target with bound pairs on distinct ports; taking two
/// for a stream leaves a gap the next refill closes.
#[test]
fn socket_pool_refills_to_target() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(64, true).with_pool(8, lo());
    let ready = t.refill_pool(&mut s);
    assert_eq!(ready.len(), 8);
    assert_eq!(s.open.len(), 8, "every pooled pair is bound");
    let ports: BTreeSet<u16> = ready.iter().map(|l| l.port).collect();
    assert_eq!(ports.len(), 8);
    assert_eq!((t.pooled_pairs(), t.free_port_pairs()), (8, 64));
    assert!(t.refill_pool(&mut s).is_empty(), "already at target");
    t.create_pooled((ready[0], ready[1]), (spec(None), spec(None)), t0, &mut s)
        .expect("pooled create");
    assert_eq!(t.active_streams(), 1);
    assert_eq!(t.pooled_pairs(), 6);
    // A pair taken already (or never pooled) cannot be bridged again.
    assert_eq!(
        t.create_pooled((ready[0], ready[2]), (spec(None), spec(None)), t0, &mut s),
        Err(BackendError::UnknownLeg)
    );
    assert_eq!(
        t.pooled_pairs(),
        6,
        "the failed create gave nothing back to the pool"
    );
    assert_eq!(t.refill_pool(&mut s).len(), 2, "refilled to 8");
    assert_eq!(t.pooled_pairs(), 8);
}

/// Socket pool reuse: a freed pair comes back to the pool only after its quarantine.
#[test]
fn socket_pool_reuses_a_freed_pair_only_after_quarantine() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    // 8 pairs: quarantine of 2; the pool takes all 8.
    let mut t = table(8, true).with_pool(8, lo());
    let ready = t.refill_pool(&mut s);
    assert_eq!(ready.len(), 8);
    let first = (ready[0], ready[1]);
    t.create_pooled(first, (spec(None), spec(None)), t0, &mut s)
        .expect("create 1");
    t.remove(first.0, first.1, t0, &mut s).expect("remove 1");
    assert!(
        t.refill_pool(&mut s).is_empty(),
        "a pair in quarantine must not come back"
    );
    let second = (ready[2], ready[3]);
    t.create_pooled(second, (spec(None), spec(None)), t0, &mut s)
        .expect("create 2");
    t.remove(second.0, second.1, t0, &mut s).expect("remove 2");
    // Two more frees pushed the first stream's pairs out of the quarantine.
    let back: BTreeSet<u16> = t.refill_pool(&mut s).iter().map(|l| l.port).collect();
    assert_eq!(back, BTreeSet::from([first.0.port, first.1.port]));
}

/// Exhaustion: with every pair in the pool, a plain create uses pooled pairs, then NoPorts.
#[test]
fn socket_pool_exhaustion_falls_back_to_pooled_then_no_ports() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    let mut t = table(4, true).with_pool(16, lo());
    assert_eq!(
        t.refill_pool(&mut s).len(),
        4,
        "the pool stops at the range"
    );
    t.create(spec(None), spec(None), t0, &mut s).expect("1");
    t.create(spec(None), spec(None), t0, &mut s).expect("2");
    assert_eq!(t.pooled_pairs(), 0);
    assert_eq!(
        t.create(spec(None), spec(None), t0, &mut s),
        Err(BackendError::NoPorts)
    );
    assert_eq!(s.open.len(), 4);
    // No pool at all: binds on create, as before.
    let mut s = FakeSockets::default();
    let mut t = table(4, true);
    assert!(t.refill_pool(&mut s).is_empty());
    t.create(spec(None), spec(None), t0, &mut s)
        .expect("bound on create");
    assert_eq!(s.open.len(), 2);
}

/// Socket recycling: a freed pair keeps its sockets through its quarantine (no close), comes
/// back to the pool only once the quarantine is over (no new bind), and the next stream on it
/// starts clean (no latch, no counters). Beyond `with_recycle`'s bound, freed pairs are closed.
#[test]
fn socket_recycle_reuses_bound_pairs_after_quarantine_with_clean_state() {
    let t0 = Instant::now();
    let mut s = FakeSockets::default();
    // 8 pairs: quarantine of 2; a pool of 2 (one stream).
    let mut t = table(8, true).with_pool(2, lo()).with_recycle(8);
    let p1 = t.refill_pool(&mut s);
    let first = (p1[0], p1[1]);
    t.create_pooled(first, (spec(None), spec(None)), t0, &mut s)
        .expect("create 1");
    // Latch and count on the first stream.
    let slot = |l: LegId| u32::from((l.port - 30_000) / 2);
    let src = sa("192.168.1.5:4000");
    t.on_packet(slot(first.0), Component::Rtp, src, &rtp(1), t0);
    assert_eq!(
        t.counters(first.0, t0).expect("counters").latched,
        Some(src)
    );
    t.remove(first.0, first.1, t0, &mut s).expect("remove 1");
    assert_eq!(s.closes, 0, "kept bound");
    assert_eq!(t.idle_pairs(), 2);
    assert_eq!(s.open.len(), 2);
    // In quarantine: the refill binds other pairs.
    let p2 = t.refill_pool(&mut s);
    assert_eq!(p2.len(), 2);
    assert!(p2.iter().all(|l| *l != first.0 && *l != first.1));
    assert_eq!(s.open.len(), 4);
    // A packet on an idle pair is no stream's.
    assert_eq!(
        t.on_packet(slot(first.0), Component::Rtp, src, &rtp(1), t0),
        Action::Drop(DropReason::NoSession)
    );
    t.create_pooled((p2[0], p2[1]), (spec(None), spec(None)), t0, &mut s)
        .expect("create 2");
    t.remove(p2[0], p2[1], t0, &mut s).expect("remove 2");
    // Two frees later the first pairs left the quarantine: back in the pool, not rebound.
    let p3: BTreeSet<u16> = t.refill_pool(&mut s).iter().map(|l| l.port).collect();
    assert_eq!(p3, BTreeSet::from([first.0.port, first.1.port]));
    assert_eq!((s.open.len(), s.closes), (4, 0), "no bind, no close");
    assert_eq!(
        t.idle_pairs(),
        2,
        "the second stream's pairs, in quarantine"
    );
    t.create_pooled(first, (spec(None), spec(None)), t0, &mut s)
        .expect("create 3 on recycled pairs");
    for leg in [first.0, first.1] {
        let c = t.counters(leg, t0).expect("counters");
        assert_eq!(c, LegCounters::default(), "clean state on {leg:?}");
    }
    // The bound: one idle pair at most; the other is closed at once.
    let mut s = FakeSockets::default();
    let mut t = table(8, true).with_pool(2, lo()).with_recycle(1);
    let p = t.refill_pool(&mut s);
    t.create_pooled((p[0], p[1]), (spec(None), spec(None)), t0, &mut s)
        .expect("create");
    t.remove(p[0], p[1], t0, &mut s).expect("remove");
    assert_eq!((t.idle_pairs(), s.closes, s.open.len()), (1, 1, 1));
    // Exhaustion uses idle pairs too (the oldest quarantined one is bound already).
    let mut s = FakeSockets::default();
    let mut t = table(2, true).with_pool(2, lo()).with_recycle(8);
    let p = t.refill_pool(&mut s);
    t.create_pooled((p[0], p[1]), (spec(None), spec(None)), t0, &mut s)
        .expect("create");
    t.remove(p[0], p[1], t0, &mut s).expect("remove");
    t.create(spec(None), spec(None), t0, &mut s)
        .expect("create on recycled pairs");
    assert_eq!((s.open.len(), s.closes), (2, 0));
}

/// Issue 12 (memory per session): a leg's slab entry stays within 272 bytes (half of the
/// shard's share of the 1 kB per session; `control/session_memory.rs` checks the sum). The
/// parts that made it 384: two 80-byte latches (now 48: packed address, 8-byte stamps), 16-byte
/// `Option<Instant>`s (now [`stamp::Stamp`]), "out" counters (read from the partner).
#[test]
fn leg_slab_entry_is_bounded() {
    let leg = std::mem::size_of::<Option<Leg>>();
    assert!(leg <= 272, "Option<Leg> is {leg} bytes");
    assert!(std::mem::size_of::<latch::Latch>() <= 48);
    assert!(std::mem::size_of::<quality::Quality>() <= 72);
}
