//! A bounded loopback blast: CPU per forwarded packet of each datapath against a bare
//! recvmmsg/sendmmsg forwarder on the same box. Ignored by default (it measures, it does not
//! verify much); run with
//! `cargo test --release -p rtprelay --test datapath_blast -- --ignored --nocapture`.

#[path = "../../tests/src/skip.rs"]
mod skip;
use config::{DatapathKind, MediaConfig};
use rtprelay::backend::{LegSpec, MediaBackend};
use rtprelay::media;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LOOP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SECS: u64 = 2;
const PKT: usize = 172;
const BATCH: usize = 32;

/// On-CPU nanoseconds of a thread of this process, found by name (a new thread sets its name
/// itself, so allow it a moment).
fn thread_cpu_ns(name: &str) -> Option<u64> {
    for _ in 0..50 {
        if let Some(ns) = thread_cpu_ns_once(name) {
            return Some(ns);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn thread_cpu_ns_once(name: &str) -> Option<u64> {
    for e in std::fs::read_dir("/proc/self/task").ok()? {
        let p = e.ok()?.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let s = std::fs::read_to_string(p.join("schedstat")).ok()?;
            return s.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// Send 172-byte packets to `dst` with sendmmsg until `stop`: as fast as possible, or paced at
/// `rate` packets/s (small bursts every ~100 µs, like many calls' packets coalescing).
fn blaster(dst: SocketAddr, rate: Option<u64>, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let s = UdpSocket::bind((LOOP, 0)).expect("bind");
    s.connect(dst).expect("connect");
    let mut pkt = [0u8; PKT];
    pkt[0] = 0x80;
    pkt[8..12].copy_from_slice(&0x5151u32.to_be_bytes());
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: pkt.as_mut_ptr().cast(),
            iov_len: PKT,
        })
        .collect();
    // SAFETY: zeroed mmsghdr is valid; pointers set below stay valid for the loop.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    let t0 = std::time::Instant::now();
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let want = match rate {
            None => BATCH as u64,
            Some(r) => {
                let due = (t0.elapsed().as_secs_f64() * r as f64) as u64;
                if due <= total {
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                (due - total).min(BATCH as u64)
            }
        };
        // SAFETY: hdrs point at live iovecs/packet.
        let n = unsafe { libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), want as u32, 0) };
        if n > 0 {
            total += n as u64;
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// Count datagrams arriving on `s` until `stop`.
fn sink(s: UdpSocket, stop: Arc<AtomicBool>, got: Arc<AtomicU64>) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: 2048,
        })
        .collect();
    // SAFETY: as above.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: hdrs point at live buffers.
        let n = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            got.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

struct Result {
    name: String,
    forwarded: u64,
    cpu_ns: u64,
    sent: u64,
    received: u64,
}

impl Result {
    fn per_packet(&self) -> f64 {
        self.cpu_ns as f64 / self.forwarded.max(1) as f64
    }

    fn print(&self) {
        let secs = SECS as f64;
        eprintln!(
            "{:>14}: offered {:>8.0} pps, forwarded {:>8.0} pps, received {:>8.0} pps, \
             forwarder CPU {:>5.2} µs/packet ({:.0}% of a core)",
            self.name,
            self.sent as f64 / secs,
            self.forwarded as f64 / secs,
            self.received as f64 / secs,
            self.cpu_ns as f64 / 1000.0 / self.forwarded.max(1) as f64,
            self.cpu_ns as f64 / 1e7 / secs,
        );
    }
}

/// Run blaster -> `relay_port` -> (forwarder) -> sink for SECS seconds.
fn run_load(
    name: String,
    rate: Option<u64>,
    relay: SocketAddr,
    sink_sock: UdpSocket,
    cpu: impl Fn() -> u64,
    forwarded: impl Fn() -> u64,
) -> Result {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let got = Arc::new(AtomicU64::new(0));
    let sink_t = {
        let (stop, got) = (stop.clone(), got.clone());
        std::thread::spawn(move || sink(sink_sock, stop, got))
    };
    let (cpu0, fwd0) = (cpu(), forwarded());
    let blast_t = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || blaster(relay, rate, stop, sent))
    };
    std::thread::sleep(Duration::from_secs(SECS));
    let (cpu1, fwd1) = (cpu(), forwarded());
    stop.store(true, Ordering::Relaxed);
    blast_t.join().expect("blaster");
    sink_t.join().expect("sink");
    Result {
        name,
        forwarded: fwd1 - fwd0,
        cpu_ns: cpu1 - cpu0,
        sent: sent.load(Ordering::Relaxed),
        received: got.load(Ordering::Relaxed),
    }
}

fn relay_run(
    kind: DatapathKind,
    name: &'static str,
    rate: Option<u64>,
    port_min: u16,
) -> Option<Result> {
    let cfg = MediaConfig {
        listen: LOOP,
        port_min,
        port_max: port_min + 15,
        threads: 1,
        datapath: kind,
        pin_threads: false,
        ring_buffers: 4096,
        ..MediaConfig::default()
    };
    let mut m = match media::start(&cfg) {
        Ok(m) => m,
        Err(e) => {
            skip::skip(name, e);
            return None;
        }
    };
    let sink_sock = UdpSocket::bind((LOOP, 0)).expect("sink");
    let spec = |remote| LegSpec {
        remote,
        symmetric: true,
        local_ip: LOOP,
    };
    let (a, _b) = m
        .create(
            0,
            spec(None),
            spec(Some(sink_sock.local_addr().expect("sink"))),
        )
        .expect("create");
    let stats = |m: &media::Media| m.stats()[0].forwarded_packets;
    let r = run_load(
        label(name, rate),
        rate,
        SocketAddr::new(LOOP, a.port),
        sink_sock,
        || thread_cpu_ns("rtp-shard-0").expect("shard thread"),
        || stats(&m),
    );
    let st = m.stats()[0];
    eprintln!(
        "{:>14}  stats: rx {} fwd {} buffer_exhausted {} rearms {} send_errors {} loops {}",
        name,
        st.rx_packets,
        st.forwarded_packets,
        st.buffer_exhausted,
        st.multishot_rearms,
        st.send_errors,
        st.loop_iterations
    );
    m.shutdown();
    Some(r)
}

fn label(name: &str, rate: Option<u64>) -> String {
    match rate {
        None => format!("{name}@max"),
        Some(r) => format!("{name}@{}k", r / 1000),
    }
}

/// The reference: the thinnest recvmmsg/sendmmsg forwarder (no table, fixed destination).
fn bare_run(rate: Option<u64>) -> Result {
    let rx = UdpSocket::bind((LOOP, 0)).expect("bare rx");
    let relay = rx.local_addr().expect("addr");
    let sink_sock = UdpSocket::bind((LOOP, 0)).expect("sink");
    let out = UdpSocket::bind((LOOP, 0)).expect("bare out");
    out.connect(sink_sock.local_addr().expect("sink"))
        .expect("connect");
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = Arc::new(AtomicU64::new(0));
    let t = {
        let (stop, fwd) = (stop.clone(), fwd.clone());
        std::thread::Builder::new()
            .name("bare-fwd".into())
            .spawn(move || {
                let mut bufs = vec![[0u8; 2048]; 64];
                let mut iov: Vec<libc::iovec> = bufs
                    .iter_mut()
                    .map(|b| libc::iovec {
                        iov_base: b.as_mut_ptr().cast(),
                        iov_len: 2048,
                    })
                    .collect();
                // SAFETY: as above.
                let mut hdrs: Vec<libc::mmsghdr> =
                    (0..64).map(|_| unsafe { std::mem::zeroed() }).collect();
                for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
                    h.msg_hdr.msg_iov = v;
                    h.msg_hdr.msg_iovlen = 1;
                }
                while !stop.load(Ordering::Relaxed) {
                    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
                        v.iov_len = 2048;
                        h.msg_hdr.msg_iov = v;
                    }
                    // SAFETY: hdrs point at live buffers.
                    let n = unsafe {
                        libc::recvmmsg(
                            rx.as_raw_fd(),
                            hdrs.as_mut_ptr(),
                            64,
                            libc::MSG_WAITFORONE,
                            std::ptr::null_mut(),
                        )
                    };
                    if n <= 0 {
                        continue;
                    }
                    for i in 0..n as usize {
                        iov[i].iov_len = hdrs[i].msg_len as usize;
                    }
                    // SAFETY: same headers, lengths now the received sizes.
                    let s =
                        unsafe { libc::sendmmsg(out.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0) };
                    if s > 0 {
                        fwd.fetch_add(s as u64, Ordering::Relaxed);
                    }
                }
            })
            .expect("spawn")
    };
    let r = run_load(
        label("bare", rate),
        rate,
        relay,
        sink_sock,
        || thread_cpu_ns("bare-fwd").expect("bare thread"),
        || fwd.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    t.join().expect("bare");
    r
}

#[test]
#[ignore = "measurement; run explicitly with --release --ignored --nocapture"]
fn blast_compare_datapaths() {
    // The box is shared: repeat interleaved and keep each configuration's best (least
    // disturbed) CPU per packet.
    let reps: usize = std::env::var("BLAST_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // BLAST_ONLY=bare|fallback|io_uring and BLAST_RATE=<pps>|max narrow the run (profiling).
    let only = std::env::var("BLAST_ONLY").unwrap_or_default();
    let rates = match std::env::var("BLAST_RATE").ok().as_deref() {
        Some("max") => vec![None],
        Some(r) => vec![Some(r.parse().expect("BLAST_RATE: pps or max"))],
        None => vec![Some(50_000), None],
    };
    let want = |name: &str| only.is_empty() || only == name;
    let mut best: Vec<Result> = Vec::new();
    for _ in 0..reps {
        for &rate in &rates {
            for r in [
                want("bare").then(|| bare_run(rate)),
                want("fallback")
                    .then(|| relay_run(DatapathKind::Fallback, "fallback", rate, 46_600))
                    .flatten(),
                want("io_uring")
                    .then(|| relay_run(DatapathKind::IoUring, "io_uring", rate, 46_700))
                    .flatten(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(r.forwarded > 0, "{} forwarded nothing", r.name);
                match best.iter_mut().find(|b| b.name == r.name) {
                    Some(b) if b.per_packet() > r.per_packet() => *b = r,
                    Some(_) => {}
                    None => best.push(r),
                }
            }
        }
    }
    eprintln!("best of {reps}:");
    for r in &best {
        r.print();
    }
}
