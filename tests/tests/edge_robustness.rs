//! Robustness: a flood of malformed datagrams must neither crash the edge nor starve valid
//! traffic, and must be counted as parse errors.

use e2e::edge::{start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics;
use e2e::ports::{free_addr, ACCESS_IP, CORE_IP};
use e2e::sip_probe::OptionsProbe;
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const GARBAGE: usize = 20_000;
/// 20,000 datagrams in ~4 s: bursts of 50 every 10 ms.
const BURST: usize = 50;
const BURST_GAP: Duration = Duration::from_millis(10);

/// Prefixes that push a parser past its first checks before the garbage starts.
const PREFIXES: &[&[u8]] = &[
    b"",
    b"INVITE ",
    b"SIP/2.0 ",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n",
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP ",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 99999\r\n\r\n",
];

/// Sends `GARBAGE` random datagrams to `target`; returns how many were sent.
fn flood(target: SocketAddr, seed: u64, stop: &AtomicBool) -> usize {
    let Ok(socket) = UdpSocket::bind((ACCESS_IP, 0)) else {
        return 0;
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    let mut buf = vec![0u8; 1500];
    while sent < GARBAGE && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        for _ in 0..BURST {
            let len = rng.random_range(1..=1500usize);
            let prefix = PREFIXES
                .get(rng.random_range(0..PREFIXES.len()))
                .copied()
                .unwrap_or(b"");
            let datagram = buf.get_mut(..len).unwrap_or(&mut []);
            rng.fill_bytes(datagram);
            let n = prefix.len().min(len);
            if let (Some(dst), Some(src)) = (datagram.get_mut(..n), prefix.get(..n)) {
                dst.copy_from_slice(src);
            }
            // A full socket buffer may drop some; that is the edge's problem only if it stalls.
            let _ = socket.send_to(datagram, target);
            sent += 1;
        }
        thread::sleep(BURST_GAP);
    }
    sent
}

#[test]
fn garbage_flood_does_not_starve_options() {
    let test = "garbage_flood_does_not_starve_options";
    let Some(edge_bin) = edge_or_skip(test) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    // Nothing listens at the core: nothing in this test should be forwarded successfully.
    let mut edge = start_or_panic(&edge_bin, &dir, &EdgeArgs::udp_core(free_addr(CORE_IP)));
    let target = edge.sip_addr();
    let seed = u64::from(std::process::id()) ^ 0x5eed;
    eprintln!("{test}: garbage seed {seed}");

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || flood(target, seed, &stop))
    };

    let probe = OptionsProbe::new(ACCESS_IP, target).unwrap_or_else(|e| panic!("bind probe: {e}"));
    let mut answered_first_try = 0u32;
    let mut transactions = 0u32;
    let mut failures = Vec::new();
    let probe_deadline = Instant::now() + Duration::from_secs(60);
    while (!flooder.is_finished() || transactions < 50) && Instant::now() < probe_deadline {
        transactions += 1;
        match probe.transaction(Duration::from_millis(500), Duration::from_secs(2)) {
            Ok(a) if a.status == 200 => {
                if a.attempts == 1 {
                    answered_first_try += 1;
                }
            }
            Ok(a) => failures.push(format!("#{transactions}: answered {}", a.status)),
            Err(e) => failures.push(format!("#{transactions}: {e}")),
        }
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap_or(0);
    eprintln!(
        "{test}: {sent} garbage datagrams, {transactions} OPTIONS, {answered_first_try} answered to the first try"
    );

    assert!(
        edge.is_running(),
        "{test}: edge died under garbage\n{}",
        edge.report()
    );
    assert_eq!(sent, GARBAGE, "{test}: flooder did not send everything");
    assert!(
        failures.is_empty(),
        "{test}: {} of {transactions} OPTIONS not answered 200 within 2 s: {failures:?}\n{}",
        failures.len(),
        edge.report()
    );
    assert!(
        f64::from(answered_first_try) >= 0.95 * f64::from(transactions),
        "{test}: only {answered_first_try} of {transactions} OPTIONS answered to the first try"
    );
    let samples = edge
        .metrics()
        .unwrap_or_else(|e| panic!("{test}: /metrics: {e}\n{}", edge.report()));
    let parse_errors = metrics::sum(&samples, "edge_sip_parse_errors_total", &[]).unwrap_or(0.0);
    assert!(
        parse_errors > 0.0,
        "{test}: edge_sip_parse_errors_total is {parse_errors} after {sent} garbage datagrams"
    );
    // Still healthy afterwards.
    probe
        .transaction(Duration::from_millis(500), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{test}: OPTIONS after the flood: {e}\n{}", edge.report()));
    assert!(edge.is_running(), "{test}: edge died\n{}", edge.report());
}
