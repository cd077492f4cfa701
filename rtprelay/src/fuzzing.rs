//! Fuzzing entry points: the relay's parsers of network bytes, driven as the relay drives them.
//!
//! The cargo-fuzz targets in `tests/fuzz/fuzz_targets/` call these functions, and the stable
//! test `tests/tests/fuzz_corpus.rs` replays every committed corpus file through them. None of
//! them may panic on any input; the `assert!`s state invariants that hold whatever the input.

use crate::backend::LegSpec;
use crate::control::cache::ReplyCache;
use crate::control::fake::FakeBackend;
use crate::control::proto::{framing, Command, Reply};
use crate::control::{Endpoint, SessionConfig, SessionManager};
use crate::table::latch::LatchPolicy;
use crate::table::packet::{self, Kind, STUN_MAGIC};
use crate::table::{Action, Component, Sockets, Table};
pub use sbc_shared::fuzzing::stun_seeds;
use sbc_shared::stun;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::methods::BINDING;
use stun_rs::{MessageClass, MessageDecoderBuilder};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9)))
}

/// Control input as the relay's control server receives it: the whole input parsed as one
/// command (and as a reply, which the edge's relay client parses); every command that parses
/// encodes to text that parses back to the same command. Then the input split at LF into
/// datagrams (cookie framing, reply cache) and unix-socket lines, executed in order by an
/// [`Endpoint`] over an in-memory media backend, with the expiry tick in between. Every reply
/// the endpoint sends parses as a reply.
pub fn control_command(data: &[u8]) {
    codec_round_trip(data);
    if let Ok((_, body)) = framing::split_cookie(data) {
        codec_round_trip(body);
    }
    let _ = framing::split_udp_reply(data);

    let cfg = SessionConfig {
        internal: IpAddr::from([127, 0, 0, 1]),
        advertise: None,
        external: Some(IpAddr::from([192, 0, 2, 50])),
        timeout: Duration::from_secs(60),
        max_sessions: 8,
        media_ports: (30_000, 30_063),
        quotas: crate::control::Quotas {
            max_streams_per_call: 4,
            max_sessions_per_client: 6,
        },
    };
    let mut endpoint = Endpoint::new(
        SessionManager::new(cfg),
        ReplyCache::new(Duration::from_secs(30), 64),
    );
    let mut backend = FakeBackend::new(30_000, 16);
    let mut now = Instant::now();
    let src = sa("127.0.0.1:5060");
    for (i, line) in data.split(|b| *b == b'\n').take(64).enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if i % 2 == 0 {
            let (reply, _) = endpoint.datagram(src, line, &mut backend, now);
            if let Some(reply) = reply {
                let r = framing::split_udp_reply(&reply);
                assert!(
                    r.is_ok(),
                    "reply datagram does not parse: {:?}",
                    String::from_utf8_lossy(&reply)
                );
            }
        } else {
            let (reply, _) = endpoint.line(line, &mut backend, now);
            let text = reply.strip_suffix(b"\n").unwrap_or(&reply);
            assert!(
                Reply::parse(text).is_ok(),
                "stream reply does not parse: {:?}",
                String::from_utf8_lossy(&reply)
            );
        }
        now += Duration::from_secs(7);
        endpoint.tick(&mut backend, now);
    }
}

/// `Command::parse` and `Command::encode` are inverses (proto.rs); likewise `Reply` for the
/// replies the relay produces.
fn codec_round_trip(text: &[u8]) {
    if let Ok(cmd) = Command::parse(text) {
        let _ = cmd.name();
        let mut wire = Vec::new();
        cmd.encode(&mut wire);
        match Command::parse(&wire) {
            Ok(again) => assert_eq!(
                again,
                cmd,
                "command changes over encode+parse: {:?} -> {:?}",
                String::from_utf8_lossy(text),
                String::from_utf8_lossy(&wire)
            ),
            Err(e) => panic!(
                "encoded command does not parse ({e}): {:?} -> {:?}",
                String::from_utf8_lossy(text),
                String::from_utf8_lossy(&wire)
            ),
        }
    }
    if let Ok(reply) = Reply::parse(text) {
        let _ = (reply.port(), reply.error());
        let mut wire = Vec::new();
        reply.encode(&mut wire);
        assert!(
            Reply::parse(&wire).is_ok(),
            "encoded reply does not parse: {:?}",
            String::from_utf8_lossy(&wire)
        );
    }
}

/// A datagram on a media port, as the datapath handles it: [`packet::classify`] (through
/// [`Table::on_packet`]) decides it is STUN, then [`stun::answer`] answers it. The answer is a
/// Binding success response with the request's transaction id and the source as
/// XOR-MAPPED-ADDRESS, small enough for the datapath's buffer, and classified as STUN itself.
pub fn stun_media(data: &[u8]) {
    if packet::classify(data) != Kind::Stun {
        return;
    }
    for src in ["198.51.100.7:40000", "[2001:db8::5]:5004"] {
        let src = sa(src);
        let Some(resp) = stun::answer(data, src) else {
            continue;
        };
        assert!(resp.len() <= 20 + 24 + 8, "answer larger than its bound");
        assert_eq!(packet::classify(&resp), Kind::Stun, "answer is STUN");
        let decoded = MessageDecoderBuilder::default().build().decode(&resp);
        let Ok((m, _)) = decoded else {
            panic!("answer does not decode: {decoded:?}");
        };
        assert_eq!(m.class(), MessageClass::SuccessResponse);
        assert_eq!(m.method(), BINDING);
        assert_eq!(
            Some(&m.transaction_id().as_bytes()[..]),
            data.get(8..20),
            "transaction id echoed"
        );
        let xma = m
            .get::<XorMappedAddress>()
            .and_then(|a| a.as_xor_mapped_address().ok())
            .map(|x| *x.socket_address());
        assert_eq!(xma, Some(src), "XOR-MAPPED-ADDRESS is the source");
    }
}

#[derive(Default)]
struct FakeSockets {
    open: u64,
}

impl Sockets for FakeSockets {
    fn open(&mut self, slot: u32, _ip: IpAddr, _rtp_port: u16) -> std::io::Result<()> {
        self.open |= 1 << slot;
        Ok(())
    }
    fn close(&mut self, slot: u32) {
        self.open &= !(1 << slot);
    }
}

/// Packets on media ports, through the port table as the datapath feeds it. The first byte
/// picks the latch policy and the signalled addresses; the rest is a sequence of packets, each
/// `[control, length, payload...]`: `control` selects the leg, the component, one of a few
/// sources (the signalled ones, a NAT rebinding, strangers) and how much time passes; a few
/// control values re-signal a leg or run the expiry. Each packet is first classified on its
/// own. Checks: the classification matches the header bytes; a forward goes out of the other
/// leg; the counters add up.
pub fn rtp_classify(data: &[u8]) {
    let Some((&setup, mut rest)) = data.split_first() else {
        return;
    };
    let policy = if setup & 1 == 0 {
        LatchPolicy::strict()
    } else {
        LatchPolicy::loose()
    };
    let sources = [
        sa("203.0.113.1:4000"),
        sa("203.0.113.1:4002"),
        sa("10.0.0.2:5000"),
        sa("198.51.100.9:6000"),
        sa("[2001:db8::7]:7000"),
        sa("203.0.113.2:5000"),
        sa("0.0.0.0:0"),
        sa("203.0.113.2:5999"),
    ];
    let remote = |bits: u8| match bits & 3 {
        0 => None,
        1 => Some(sources[0]),
        2 => Some(sources[2]),
        _ => Some(sources[4]),
    };
    let local = IpAddr::from([127, 0, 0, 1]);
    let spec = |bits: u8| LegSpec {
        remote: remote(bits),
        symmetric: bits & 4 == 0,
        local_ip: local,
    };
    let mut now = Instant::now();
    // A fixed seed: the same input must take the same path (reproducible findings).
    let mut table = Table::new(
        0,
        30_000,
        4,
        policy,
        Duration::from_secs(30),
        u64::from(setup),
    );
    let mut sockets = FakeSockets::default();
    let Ok((a, b)) = table.create(spec(setup >> 1), spec(setup >> 4), now, &mut sockets) else {
        return;
    };
    let (Ok(sa_), Ok(sb_)) = (table.slot(a), table.slot(b)) else {
        panic!("a created leg has no slot");
    };
    let mut packets = 0u64;
    let mut stun = 0u64;
    let mut expired = false;
    while let [control, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        check_classify(pkt);
        match control {
            0xfe => {
                let _ = table.update(a, spec(*len), &mut sockets);
                continue;
            }
            0xff => {
                now += Duration::from_secs(31);
                expired |= table.expire(now, &mut sockets) > 0;
                continue;
            }
            _ => {}
        }
        let slot = if control & 1 == 0 { sa_ } else { sb_ };
        let component = Component::from_index(usize::from(control >> 1 & 1));
        let src = sources[usize::from(control >> 2 & 7)];
        now += Duration::from_millis(u64::from(control >> 5) * 700);
        let action = table.on_packet(slot, component, src, pkt, now);
        match action {
            Action::Forward {
                slot: out,
                component: c,
                ..
            } => {
                assert!(!expired, "forwarded after expiry");
                assert_eq!(out, if slot == sa_ { sb_ } else { sa_ }, "to the partner");
                assert_eq!(c, component, "same component");
                packets += 1;
            }
            Action::Stun => {
                assert_eq!(packet::classify(pkt), Kind::Stun);
                let _ = stun::answer(pkt, src);
                stun += 1;
            }
            Action::Drop(_) => {}
        }
    }
    assert_eq!(table.stats.forwarded_packets, packets, "forward count");
    if !expired {
        let (Ok(ca), Ok(cb)) = (table.counters(a, now), table.counters(b, now)) else {
            panic!("live legs have counters");
        };
        assert_eq!(ca.packets_in + cb.packets_in, packets, "packets in");
        assert_eq!(ca.packets_out + cb.packets_out, packets, "packets out");
        assert_eq!(ca.packets_in, cb.packets_out, "a -> b");
    }
    let _ = stun;
}

/// The classification agrees with the bytes it was taken from (RFC 7983 demultiplexing).
fn check_classify(pkt: &[u8]) {
    let be32 = |at: usize| {
        pkt.get(at..at + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    };
    match packet::classify(pkt) {
        Kind::Stun => {
            assert!(pkt.len() >= 20 && pkt[0] <= 3 && be32(4) == Some(STUN_MAGIC));
        }
        Kind::Rtp { ssrc } => {
            assert!((128..=191).contains(&pkt[0]) && pkt.len() >= 12);
            assert_eq!(be32(8), Some(ssrc));
        }
        Kind::Rtcp { ssrc } => {
            assert!((128..=191).contains(&pkt[0]) && (192..=223).contains(&pkt[1]));
            assert_eq!(be32(4), Some(ssrc));
        }
        Kind::Other => {}
    }
}

/// Seed inputs for the relay's targets, `(target, name, bytes)`; see `edge::fuzzing::seeds`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let commands: &[&[u8]] = &[
        b"V",
        b"VF 20040107",
        b"VF 20050322",
        b"U cookie callid 1.2.3.4 5000 fromtag",
        b"Uc0,8,101 a1b2@10.0.0.1 192.0.2.10 40000 ftag;1",
        b"UAIE c1;br1 10.0.0.1 4000 f;1 t;1 /var/run/notify.sock ntag",
        b"U6 c6 2001:db8::1 5004 f;2",
        b"UZ20 c1 0.0.0.0 4000 f;1 t;1",
        b"L c1 192.0.2.20 5000 f;1 t;1",
        b"LsI c1 192.0.2.20 5000 f;2 t;2",
        b"D c1 f",
        b"Dw c1 f t",
        b"Q c1 f t",
        b"Qv c1 f t packets_in packets_out ttl",
        b"I",
        b"Ib",
        b"G",
        b"Gv packets_in sessions_created",
        b"X",
        b"R c1 f t",
        b"P c1 prompt session f t",
        b"E8",
        b"30002 127.0.0.1",
        b"40000 2001:db8::1 6",
    ];
    for (i, c) in commands.iter().enumerate() {
        out.push(("control_command", format!("cmd-{i:02}"), c.to_vec()));
        let mut dgram = format!("{}_{i} ", 4242 + i).into_bytes();
        dgram.extend_from_slice(c);
        out.push(("control_command", format!("dgram-{i:02}"), dgram));
    }
    // A call as Kamailio drives it, datagrams and unix lines alternating.
    out.push((
        "control_command",
        "session".into(),
        b"1_1 V\nVF 20050322\n1_2 U c1 192.0.2.10 40000 f;1\nL c1 192.0.2.20 5000 f;1 t;1\n\
1_3 Q c1 f t\nUI c1 198.51.100.1 6000 f;1 t;1\n1_4 D c1 f\nX\n1_2 U c1 192.0.2.10 40000 f;1\n"
            .to_vec(),
    ));
    for (i, s) in stun_seeds().into_iter().enumerate() {
        out.push(("stun_media", format!("stun-{i:02}"), s.clone()));
    }
    // Media: setup byte, then [control, length, payload] packets.
    let mut rtp = vec![0x80u8, 0, 0, 1, 0, 0, 0, 160];
    rtp.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    rtp.extend_from_slice(&[0xd5; 20]);
    let mut rtcp = vec![0x81u8, 200, 0, 6];
    rtcp.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    rtcp.extend_from_slice(&[0; 20]);
    let stun = stun_seeds().into_iter().next().unwrap_or_default();
    let dtls = vec![0x16u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1];
    let packet = |control: u8, p: &[u8]| {
        let mut v = vec![control, p.len().min(255) as u8];
        v.extend_from_slice(p.get(..p.len().min(255)).unwrap_or_default());
        v
    };
    for setup in [0x12u8, 0x13, 0x00, 0x25, 0x4a] {
        let mut s = vec![setup];
        // A from its signalled address, B from a NAT, A's rebinding, a stranger, RTCP, STUN.
        for (c, p) in [
            (0x00, &rtp),
            (0x09, &rtp),
            (0x02, &rtcp),
            (0x24, &rtp),
            (0x0c, &rtp),
            (0x01, &rtp),
            (0x10, &dtls),
            (0x00, &stun),
            (0xfe, &rtp),
            (0x00, &rtp),
            (0xff, &dtls),
            (0x01, &rtp),
        ] {
            s.extend_from_slice(&packet(c, p));
        }
        out.push(("rtp_classify", format!("media-{setup:02x}"), s));
    }
    out
}
