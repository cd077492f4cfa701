//! End-to-end tests of the media plane on loopback, run against BOTH datapaths (the io_uring
//! ones skip with a message when io_uring cannot be set up here).

#[path = "../../tests/src/skip.rs"]
mod skip;
use config::{DatapathKind, MediaConfig};
use rtprelay::backend::{BackendError, LegId, LegSpec, MediaBackend};
use rtprelay::datapath::Kind;
use rtprelay::media::{self, Media, StartError};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const LOOP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn cfg(kind: DatapathKind, port_min: u16, pairs: u16, timeout_s: u64) -> MediaConfig {
    MediaConfig {
        listen: LOOP,
        port_min,
        port_max: port_min + 2 * pairs - 1,
        threads: 1,
        datapath: kind,
        pin_threads: false,
        timeout_s,
        strict_source: true,
        ring_buffers: 1024,
        ..MediaConfig::default()
    }
}

/// Start the media plane, or `None` (skip) if io_uring is not available here.
fn start(c: &MediaConfig) -> Option<Media> {
    match media::start(c) {
        Ok(m) => {
            let want = match c.datapath {
                DatapathKind::IoUring => Kind::IoUring,
                _ => Kind::Fallback,
            };
            assert_eq!(m.datapath_kind(), want);
            Some(m)
        }
        Err(StartError::IoUring(e)) => {
            skip::skip(
                "datapath_relay",
                format!("the io_uring datapath cannot be set up here: {e}"),
            );
            None
        }
        Err(e) => panic!("media start failed: {e}"),
    }
}

fn party() -> UdpSocket {
    party_on("127.0.0.1")
}

fn party_on(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind party");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s
}

fn spec(remote: Option<SocketAddr>) -> LegSpec {
    LegSpec {
        remote,
        symmetric: true,
        local_ip: LOOP,
    }
}

fn relay(leg: LegId) -> SocketAddr {
    SocketAddr::new(LOOP, leg.port)
}

fn rtp(ssrc: u32, seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Receive one datagram; returns (len, source, seq).
fn recv(s: &UdpSocket) -> Option<(usize, SocketAddr, u16)> {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    Some((n, from, u16::from_be_bytes([buf[2], buf[3]])))
}

fn nothing_arrives(s: &UdpSocket) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let none = s.recv_from(&mut buf).is_err();
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    none
}

fn forwards_1000_each_way(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    let (pa, pb) = (party(), party());
    let (a, b) = m
        .create(
            7,
            spec(Some(pa.local_addr().expect("a"))),
            spec(Some(pb.local_addr().expect("b"))),
        )
        .expect("create");
    const N: u16 = 1000;
    const BURST: u16 = 50;
    let (mut got_a, mut got_b) = (0u16, 0u16);
    for burst in 0..N / BURST {
        for i in 0..BURST {
            let seq = burst * BURST + i;
            pa.send_to(&rtp(0xaaaa, seq), relay(a)).expect("send a");
            pb.send_to(&rtp(0xbbbb, seq), relay(b)).expect("send b");
        }
        for i in 0..BURST {
            let seq = burst * BURST + i;
            let (n, from, s) = recv(&pb).unwrap_or_else(|| panic!("B lost packet {seq}"));
            assert_eq!((n, from, s), (172, relay(b), seq));
            got_b += 1;
            let (n, from, s) = recv(&pa).unwrap_or_else(|| panic!("A lost packet {seq}"));
            assert_eq!((n, from, s), (172, relay(a), seq));
            got_a += 1;
        }
    }
    assert_eq!((got_a, got_b), (N, N));
    let ca = m.counters(a).expect("counters a");
    let cb = m.counters(b).expect("counters b");
    let n = u64::from(N);
    assert_eq!(
        (ca.packets_in, ca.bytes_in, ca.packets_out, ca.dropped),
        (n, n * 172, n, 0)
    );
    assert_eq!(
        (cb.packets_in, cb.packets_out, cb.bytes_out),
        (n, n, n * 172)
    );
    assert_eq!(ca.latched, Some(pa.local_addr().expect("a")));
    assert!(ca.idle.expect("idle") < Duration::from_secs(5));
    // Stats are published once per loop iteration: give the shard a tick.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let st = m.stats();
        if st[0].forwarded_packets == 2 * n || Instant::now() > deadline {
            assert_eq!(st[0].forwarded_packets, 2 * n);
            assert_eq!(st[0].forwarded_bytes, 2 * n * 172);
            assert_eq!(st[0].rx_packets, 2 * n);
            assert_eq!(st[0].active_streams, 1);
            assert_eq!(st[0].send_errors, 0);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (fa, fb) = m.remove(a, b).expect("remove");
    assert_eq!((fa.packets_in, fb.packets_in), (n, n));
    assert_eq!(m.counters(a), Err(BackendError::UnknownLeg));
    m.shutdown();
    assert_eq!(m.counters(a), Err(BackendError::Unavailable));
}

fn attacker_gets_nothing_and_moves_no_latch(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    let (pa, pb) = (party(), party());
    // 127.0.0.2 is loopback too, but a different IP from the signalled 127.0.0.1.
    let evil = party_on("127.0.0.2");
    let (a, b) = m
        .create(
            1,
            spec(Some(pa.local_addr().expect("a"))),
            spec(Some(pb.local_addr().expect("b"))),
        )
        .expect("create");
    for i in 0..10 {
        evil.send_to(&rtp(0xeeee, i), relay(a)).expect("evil a");
        evil.send_to(&rtp(0xeeee, i), relay(b)).expect("evil b");
    }
    assert!(nothing_arrives(&pb), "attacker packet forwarded to B");
    assert!(nothing_arrives(&pa), "attacker packet forwarded to A");
    let ca = m.counters(a).expect("a");
    assert_eq!((ca.latched, ca.dropped, ca.packets_in), (None, 10, 0));
    // The real parties talk; the attacker keeps spraying and still gets nothing.
    for i in 0..5 {
        pa.send_to(&rtp(0xaaaa, i), relay(a)).expect("a");
        pb.send_to(&rtp(0xbbbb, i), relay(b)).expect("b");
        evil.send_to(&rtp(0xaaaa, i), relay(a)).expect("evil");
    }
    for _ in 0..5 {
        assert_eq!(recv(&pb).expect("b gets a").1, relay(b));
        assert_eq!(recv(&pa).expect("a gets b").1, relay(a));
    }
    assert!(nothing_arrives(&evil), "attacker received media");
    assert!(
        nothing_arrives(&pb),
        "attacker packet forwarded after latch"
    );
    let ca = m.counters(a).expect("a");
    assert_eq!(ca.latched, Some(pa.local_addr().expect("a")));
    assert_eq!((ca.packets_in, ca.dropped), (5, 15));
    let st = m.stats();
    assert!(st[0].dropped_foreign_source >= 20);
}

fn stun_is_answered(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    let (pa, pb, prober) = (party(), party(), party_on("127.0.0.2"));
    let (a, b) = m
        .create(
            3,
            spec(Some(pa.local_addr().expect("a"))),
            spec(Some(pb.local_addr().expect("b"))),
        )
        .expect("create");
    // Binding request, no attributes (RFC 8489 §5).
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(&[9u8; 12]);
    // Another IP than A's: no answer, the port does not show it is live (issue 9).
    prober.send_to(&req, relay(a)).expect("stun");
    assert!(nothing_arrives(&prober), "STUN answered to a stranger");
    pa.send_to(&req, relay(a)).expect("stun");
    let mut buf = [0u8; 512];
    let (n, from) = pa.recv_from(&mut buf).expect("stun answer");
    assert_eq!(from, relay(a));
    let (msg, _) = stun_rs::MessageDecoderBuilder::default()
        .build()
        .decode(&buf[..n])
        .expect("stun response");
    assert_eq!(msg.class(), stun_rs::MessageClass::SuccessResponse);
    assert_eq!(msg.transaction_id().as_bytes(), &[9u8; 12]);
    let xma = msg
        .get::<stun_rs::attributes::stun::XorMappedAddress>()
        .expect("xma")
        .as_xor_mapped_address()
        .expect("xma");
    assert_eq!(*xma.socket_address(), pa.local_addr().expect("a"));
    assert!(nothing_arrives(&pb), "STUN forwarded");
    assert_eq!(m.counters(a).expect("a").latched, None, "STUN latched");
    assert_eq!(m.counters(b).expect("b").packets_out, 0);
}

fn stream_times_out(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 4, 1)) else {
        return;
    };
    let (a, b) = m.create(0, spec(None), spec(None)).expect("create");
    let (a2, b2) = m.create(0, spec(None), spec(None)).expect("create 2");
    // The range (4 pairs) is full now.
    assert_eq!(
        m.create(0, spec(None), spec(None)),
        Err(BackendError::NoPorts)
    );
    let t0 = Instant::now();
    let mut expired = Vec::new();
    while expired.len() < 2 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        expired.extend(m.take_expired());
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "expired too early: {elapsed:?}"
    );
    let mut ids: Vec<(LegId, LegId)> = expired.iter().map(|e| (e.0, e.1)).collect();
    ids.sort_by_key(|p| p.0.port);
    let mut want = vec![(a, b), (a2, b2)];
    want.sort_by_key(|p| p.0.port);
    assert_eq!(ids, want);
    assert_eq!(m.counters(a), Err(BackendError::UnknownLeg));
    assert_eq!(m.stats()[0].streams_expired, 2);
    // The ports are free again (and the sockets really closed: binding them works).
    let (a3, _) = m.create(0, spec(None), spec(None)).expect("ports reused");
    assert!([a.port, b.port, a2.port, b2.port].contains(&a3.port));
}

fn two_shards_route_by_hint(kind: DatapathKind, port_min: u16) {
    let mut c = cfg(kind, port_min, 16, 60);
    c.threads = 2;
    let Some(mut m) = start(&c) else {
        return;
    };
    assert_eq!(m.shard_count(), 2);
    let ranges = m.shard_ports();
    assert_eq!(ranges, vec![(port_min, 8), (port_min + 16, 8)]);
    for hint in [10u64, 11] {
        let (pa, pb) = (party(), party());
        let (a, b) = m
            .create(
                hint,
                spec(Some(pa.local_addr().expect("a"))),
                spec(Some(pb.local_addr().expect("b"))),
            )
            .expect("create");
        let shard = (hint % 2) as u16;
        assert_eq!((a.shard, b.shard), (shard, shard));
        let (base, pairs) = ranges[usize::from(shard)];
        for leg in [a, b] {
            assert!(
                leg.port >= base && leg.port < base + 2 * pairs as u16,
                "{leg:?}"
            );
        }
        pa.send_to(&rtp(1, 1), relay(a)).expect("a");
        assert_eq!(recv(&pb).expect("b gets a").1, relay(b));
        pb.send_to(&rtp(2, 1), relay(b)).expect("b");
        assert_eq!(recv(&pa).expect("a gets b").1, relay(a));
    }
    let wrong = LegId {
        shard: 7,
        port: port_min,
    };
    assert_eq!(m.counters(wrong), Err(BackendError::UnknownLeg));
    let st = m.stats();
    assert_eq!(st.len(), 2);
    // Every stream hinted to shard 0: once its 8 pairs (4 streams, one made above) are used
    // the rest spill into shard 1 instead of being refused; only a full relay refuses.
    let mut shards = [0u32; 2];
    for _ in 0..6 {
        let (a, b) = m.create(0, spec(None), spec(None)).expect("spills over");
        assert_eq!(a.shard, b.shard);
        shards[usize::from(a.shard)] += 1;
    }
    assert_eq!(shards, [3, 3]);
    assert_eq!(
        m.create(0, spec(None), spec(None)),
        Err(BackendError::NoPorts)
    );
}

fn rtcp_latches_on_its_own_port(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    let (pa, pb, pb_rtcp) = (party(), party(), party());
    let (a, b) = m
        .create(
            2,
            spec(Some(pa.local_addr().expect("a"))),
            spec(Some(pb.local_addr().expect("b"))),
        )
        .expect("create");
    let rtcp_port = |leg: LegId| SocketAddr::new(LOOP, leg.port + 1);
    let mut rr = [0u8; 32];
    rr[0] = 0x80;
    rr[1] = 201;
    // B's RTCP comes from its own socket (own NAT mapping) and latches B's RTCP side.
    pb_rtcp.send_to(&rr, rtcp_port(b)).expect("b rtcp");
    assert!(
        nothing_arrives(&pa),
        "A has no RTCP destination: RTCP on port+1 of A's remote"
    );
    // A's RTCP now goes to where B's RTCP came from, out of B's RTCP port.
    pa.send_to(&rr, rtcp_port(a)).expect("a rtcp");
    let mut buf = [0u8; 64];
    let (n, from) = pb_rtcp.recv_from(&mut buf).expect("b rtcp gets a rtcp");
    assert_eq!((n, from), (32, rtcp_port(b)));
    // rtcp-mux: RTCP on the RTP port travels the RTP path.
    pa.send_to(&rr, relay(a)).expect("a rtcp-mux");
    let (n, from) = pb.recv_from(&mut buf).expect("b gets muxed rtcp");
    assert_eq!((n, from), (32, relay(b)));
}

fn update_moves_destination(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    let (pa, pb, pb2) = (party(), party(), party());
    let mut sb = spec(Some(pb.local_addr().expect("b")));
    sb.symmetric = false;
    let (a, b) = m
        .create(4, spec(Some(pa.local_addr().expect("a"))), sb)
        .expect("create");
    pa.send_to(&rtp(1, 1), relay(a)).expect("a");
    assert!(recv(&pb).is_some(), "B gets media at its signalled address");
    // Re-INVITE: B moved.
    sb.remote = Some(pb2.local_addr().expect("b2"));
    m.update(b, sb).expect("update");
    pa.send_to(&rtp(1, 2), relay(a)).expect("a");
    let (_, from, seq) = recv(&pb2).expect("B's new address gets media");
    assert_eq!((from, seq), (relay(b), 2));
    assert!(nothing_arrives(&pb));
    let cb = m.counters(b).expect("b");
    assert_eq!(cb.packets_out, 2, "counters survive update");
    // A port of the shard that holds no leg (ports are chosen at random).
    let free = (port_min..port_min + 16)
        .step_by(2)
        .find(|p| *p != a.port && *p != b.port)
        .expect("a free port");
    let gone = LegId {
        shard: 0,
        port: free,
    };
    assert_eq!(m.update(gone, sb), Err(BackendError::UnknownLeg));
}

/// A tiny receive-buffer ring (16 buffers) against bursts of 100: on io_uring the multishot
/// receive runs out of buffers, ends, and must be re-armed without losing what the socket holds.
fn tiny_buffer_ring_bursts(kind: DatapathKind, port_min: u16) {
    let mut c = cfg(kind, port_min, 8, 60);
    c.ring_buffers = 16;
    let Some(mut m) = start(&c) else {
        return;
    };
    let (pa, pb) = (party(), party());
    let (a, _b) = m
        .create(5, spec(None), spec(Some(pb.local_addr().expect("b"))))
        .expect("create");
    const BURSTS: u16 = 20;
    const BURST: u16 = 100;
    for burst in 0..BURSTS {
        for i in 0..BURST {
            pa.send_to(&rtp(0xaaaa, burst * BURST + i), relay(a))
                .expect("send");
        }
        for i in 0..BURST {
            let seq = burst * BURST + i;
            let (_, _, s) = recv(&pb).unwrap_or_else(|| panic!("lost packet {seq}"));
            assert_eq!(s, seq);
        }
    }
    std::thread::sleep(Duration::from_millis(250));
    let st = m.stats()[0];
    eprintln!(
        "{kind:?}: buffer_exhausted {} multishot_rearms {}",
        st.buffer_exhausted, st.multishot_rearms
    );
    assert_eq!(st.forwarded_packets, u64::from(BURSTS * BURST));
    if kind == DatapathKind::IoUring {
        assert!(st.multishot_rearms > 0, "16 buffers never ran dry?");
        assert!(st.buffer_exhausted > 0);
    }
}

/// An idle shard sleeps: about one loop iteration per 100 ms tick, no spinning.
fn idle_shard_does_not_spin(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    // A stream with open sockets and a command or two, then silence.
    let (a, _) = m.create(0, spec(None), spec(None)).expect("create");
    m.counters(a).expect("counters");
    std::thread::sleep(Duration::from_millis(200));
    let before = m.stats()[0].loop_iterations;
    std::thread::sleep(Duration::from_secs(1));
    let loops = m.stats()[0].loop_iterations - before;
    assert!(
        (3..=40).contains(&loops),
        "{loops} loop iterations in 1 s idle"
    );
}

/// Legs bound on ::1 relay IPv6 (sockaddr_in6 through both shells).
fn ipv6_legs(kind: DatapathKind, port_min: u16) {
    let Ok(pa) = UdpSocket::bind("[::1]:0") else {
        skip::skip("datapath_relay ipv6_legs", "no ::1 on this machine");
        return;
    };
    let pb = UdpSocket::bind("[::1]:0").expect("::1 b");
    for p in [&pa, &pb] {
        p.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
    }
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    let v6 = |remote: Option<SocketAddr>| LegSpec {
        remote,
        symmetric: true,
        local_ip: "::1".parse().expect("::1"),
    };
    let (a, b) = m
        .create(
            6,
            v6(Some(pa.local_addr().expect("a"))),
            v6(Some(pb.local_addr().expect("b"))),
        )
        .expect("create v6");
    let r = |leg: LegId| SocketAddr::new("::1".parse().expect("::1"), leg.port);
    pa.send_to(&rtp(1, 7), r(a)).expect("send v6");
    let (n, from, seq) = recv(&pb).expect("B gets v6");
    assert_eq!((n, from, seq), (172, r(b), 7));
    pb.send_to(&rtp(2, 8), r(b)).expect("send v6");
    let (_, from, seq) = recv(&pa).expect("A gets v6");
    assert_eq!((from, seq), (r(a), 8));
    assert_eq!(
        m.counters(a).expect("a").latched,
        Some(pa.local_addr().expect("a"))
    );
}

/// Socket recycling (`media.socket_recycle`): with 8 pairs (a quarantine of 2) the same ports
/// come back within a few calls, still bound and armed; each new stream on them forwards and
/// latches its own parties, starting from zero counters and no latch.
fn recycled_pairs_forward_with_clean_state(kind: DatapathKind, port_min: u16) {
    let Some(mut m) = start(&cfg(kind, port_min, 8, 60)) else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    let mut repeats = 0;
    for call in 0..8u16 {
        let (pa, pb) = (party(), party());
        let (a, b) = m
            .create(
                u64::from(call),
                spec(Some(pa.local_addr().expect("a"))),
                spec(Some(pb.local_addr().expect("b"))),
            )
            .expect("create");
        for leg in [a, b] {
            repeats += usize::from(!seen.insert(leg.port));
            let c = m.counters(leg).expect("counters");
            assert_eq!((c.packets_in, c.latched), (0, None), "call {call}: {leg:?}");
        }
        pa.send_to(&rtp(0xaaaa, call), relay(a)).expect("send a");
        let (_, from, seq) = recv(&pb).unwrap_or_else(|| panic!("call {call}: B got nothing"));
        assert_eq!((from, seq), (relay(b), call));
        pb.send_to(&rtp(0xbbbb, call), relay(b)).expect("send b");
        let (_, from, seq) = recv(&pa).unwrap_or_else(|| panic!("call {call}: A got nothing"));
        assert_eq!((from, seq), (relay(a), call));
        assert_eq!(
            m.counters(a).expect("a").latched,
            Some(pa.local_addr().expect("a"))
        );
        m.remove(a, b).expect("remove");
    }
    assert!(
        repeats > 0,
        "no port came back in 16 allocations of 8 pairs"
    );
}

macro_rules! both_datapaths {
    ($($name:ident: $port:expr;)*) => {
        mod fallback {
            $(#[test] fn $name() { super::$name(config::DatapathKind::Fallback, $port); })*
        }
        mod io_uring {
            $(#[test] fn $name() { super::$name(config::DatapathKind::IoUring, $port + 1000); })*
        }
    };
}

both_datapaths! {
    forwards_1000_each_way: 46_000;
    attacker_gets_nothing_and_moves_no_latch: 46_100;
    stun_is_answered: 46_200;
    stream_times_out: 46_300;
    two_shards_route_by_hint: 46_500;
    rtcp_latches_on_its_own_port: 46_800;
    update_moves_destination: 46_900;
    tiny_buffer_ring_bursts: 46_950;
    idle_shard_does_not_spin: 46_970;
    ipv6_legs: 46_550;
    recycled_pairs_forward_with_clean_state: 45_600;
}

#[test]
fn auto_picks_a_datapath() {
    let m = media::start(&cfg(DatapathKind::Auto, 46_400, 4, 60)).expect("auto start");
    eprintln!("auto datapath: {}", m.datapath_kind().as_str());
    assert_eq!(m.stats()[0].datapath, Some(m.datapath_kind()));
    // The stats handle works from another thread.
    let h = m.stats_handle();
    let kind = m.datapath_kind();
    let snap = std::thread::spawn(move || (h.datapath_kind(), h.snapshot()))
        .join()
        .expect("reader thread");
    assert_eq!(snap.0, Some(kind));
    assert_eq!(snap.1.len(), 1);
    assert_eq!(snap.1[0].datapath, Some(kind));
}
