//! What the RFC 3550 receive statistics (`table::quality`) add to the per-packet cost of the
//! forwarding decision: `Table::on_packet` for RTP (accounted) against the same packets with a
//! non-RTP first byte (relayed opaquely, not accounted), on one stream, with fake sockets.
//! A measurement, not a check: run with
//! `cargo test --release -p rtprelay --test table_cost -- --ignored --nocapture`.

use rtprelay::backend::LegSpec;
use rtprelay::table::latch::LatchPolicy;
use rtprelay::table::{Action, Component, Sockets, Table};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

struct NoSockets;

impl Sockets for NoSockets {
    fn open(&mut self, _: u32, _: IpAddr, _: u16) -> std::io::Result<()> {
        Ok(())
    }
    fn close(&mut self, _: u32) {}
}

fn ns_per_packet(first_byte: u8) -> f64 {
    let t0 = Instant::now();
    let mut t = Table::new(
        0,
        30_000,
        16,
        LatchPolicy::strict(),
        Duration::from_secs(60),
        1,
    );
    let party: SocketAddr = "203.0.113.1:4000".parse().unwrap();
    let spec = |remote: &str| LegSpec {
        remote: Some(remote.parse().unwrap()),
        symmetric: true,
        local_ip: "127.0.0.1".parse().unwrap(),
    };
    let (a, _) = t
        .create(
            spec("203.0.113.1:4000"),
            spec("203.0.113.2:5000"),
            t0,
            &mut NoSockets,
        )
        .unwrap();
    let slot = t.slot(a).unwrap();
    let mut p = [0u8; 172];
    p[0] = first_byte;
    p[8..12].copy_from_slice(&7u32.to_be_bytes());
    const N: u32 = 2_000_000;
    let start = Instant::now();
    let mut forwarded = 0u32;
    for i in 0..N {
        p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        p[4..8].copy_from_slice(&(i.wrapping_mul(160)).to_be_bytes());
        let now = t0 + Duration::from_micros(20_000 * u64::from(i));
        if let Action::Forward { .. } =
            t.on_packet(slot, Component::Rtp, party, std::hint::black_box(&p), now)
        {
            forwarded += 1;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(N);
    assert_eq!(forwarded, N);
    ns
}

#[test]
#[ignore = "measurement; run explicitly with --release --ignored --nocapture"]
fn quality_accounting_cost() {
    for round in 0..3 {
        let opaque = ns_per_packet(0x40);
        let rtp = ns_per_packet(0x80);
        println!(
            "round {round}: on_packet opaque {opaque:.1} ns, RTP with A.1/A.8 accounting {rtp:.1} ns (+{:.1} ns)",
            rtp - opaque
        );
    }
}
