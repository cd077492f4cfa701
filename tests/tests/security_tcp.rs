//! TCP at the trust boundary: slowloris peers are closed at the message deadline while a normal
//! TCP client keeps being served, a peer that never reads is disconnected with the edge's memory
//! bounded, and one IP cannot take more than its share of connections.

use e2e::edge::{start_or_panic, Edge, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics;
use e2e::ports::EDGE_IP;
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Opens a TCP connection from `ip` (any port) to `target`.
fn connect_from(
    ip: Ipv4Addr,
    target: SocketAddr,
    rcvbuf: Option<usize>,
) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(n) = rcvbuf {
        // Before connect, so the window the edge sees is small from the start.
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&SocketAddr::from((ip, 0)).into())?;
    s.connect_timeout(&target.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// An OPTIONS to the edge itself over TCP (answered 200 by the edge), `pad` bytes of Via
/// parameter to make the request (and so its response, which copies the Via) large.
fn options_tcp(target: SocketAddr, local: SocketAddr, n: u64, pad: usize) -> String {
    let pad = if pad == 0 {
        String::new()
    } else {
        format!(";pad={}", "A".repeat(pad))
    };
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-tcp-{pid}-{n};rport{pad}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=t{n}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: e2e-tcp-{pid}-{n}@{ip}\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        pid = std::process::id(),
        ip = local.ip()
    )
}

/// Reads one SIP response (headers and Content-Length body) from a blocking stream; its status.
fn read_status(stream: &mut TcpStream, timeout: Duration) -> Result<u16, String> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let body: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim().eq_ignore_ascii_case("content-length") || k.trim() == "l")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + body {
                return head
                    .get(8..11)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("not a response: {head:.80}"));
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Err("no response in time".into())
}

/// One OPTIONS over an open connection, answered?
fn options_exchange(stream: &mut TcpStream, target: SocketAddr, n: u64) -> Result<u16, String> {
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    stream
        .write_all(options_tcp(target, local, n, 0).as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    read_status(stream, Duration::from_secs(2))
}

/// Is a non-blocking socket closed by the other side (EOF or reset)?
fn is_closed(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match stream.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn rss_kib(edge: &Edge) -> u64 {
    let Some(pid) = edge.pid() else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn security_events(edge: &Edge, event: &str) -> f64 {
    let samples = edge.metrics().unwrap_or_default();
    metrics::sum(&samples, "edge_security_events_total", &[("event", event)]).unwrap_or(0.0)
}

/// Starts a TCP edge with `[limits]` lines from a config file. The per-source rate limit is
/// off: these tests are about the TCP guards, and their peers send far faster than a phone
/// (the rate limit would stop them first; `security_flood.rs` tests it).
fn start_tcp_edge(bin: &Path, dir: &WorkDir, limits: &str) -> Edge {
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, format!("[limits]\nsource_rate = 0\n{limits}\n"))
        .expect("write edge.toml");
    let args = EdgeArgs {
        tcp: true,
        ..EdgeArgs::default()
    }
    .extra(&["--config", &file.to_string_lossy()]);
    start_or_panic(bin, dir, &args)
}

const SLOW_PEERS: usize = 1_000;
const DEADLINE_S: u64 = 5;
/// Slower than any real client, far faster than the idle timeout: a per-read timeout would
/// never fire.
const TRICKLE: Duration = Duration::from_secs(2);

#[test]
fn slowloris_peers_are_closed_at_the_message_deadline() {
    let test = "slowloris_peers_are_closed_at_the_message_deadline";
    let Some(bin) = edge_or_skip(test) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    // 1,000 peers over 8 IPs is 125 per IP: the per-IP cap is raised so only the deadline acts.
    let mut edge = start_tcp_edge(
        &bin,
        &dir,
        &format!("max_tcp_connections_per_ip = 200\ntcp_message_deadline_s = {DEADLINE_S}"),
    );
    let target = edge.sip_addr();
    let rss_start = rss_kib(&edge);

    // A normal client on its own IP, one OPTIONS per second throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut ok = 0u32;
            let mut failed = Vec::new();
            let mut stream = match connect_from(Ipv4Addr::new(127, 0, 0, 10), target, None) {
                Ok(s) => s,
                Err(e) => return (ok, vec![format!("connect: {e}")]),
            };
            for n in 1..=40u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match options_exchange(&mut stream, target, n) {
                    Ok(200) => ok += 1,
                    Ok(s) => failed.push(format!("#{n}: {s}")),
                    Err(e) => failed.push(format!("#{n}: {e}")),
                }
                thread::sleep(Duration::from_secs(1));
            }
            (ok, failed)
        })
    };

    let request = options_tcp(target, SocketAddr::from((EDGE_IP, 5060)), 0, 0).into_bytes();
    let start = Instant::now();
    // (stream, time of its first byte, when it was seen closed)
    let mut peers: Vec<(TcpStream, Instant, Option<Instant>)> = Vec::with_capacity(SLOW_PEERS);
    for i in 0..SLOW_PEERS {
        let ip = Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8);
        let mut s = connect_from(ip, target, None)
            .unwrap_or_else(|e| panic!("slow peer {i} from {ip}: connect: {e}"));
        s.write_all(&request[..1]).expect("first byte");
        s.set_nonblocking(true).expect("nonblocking");
        peers.push((s, Instant::now(), None));
    }
    let connected_in = start.elapsed();
    let open_after_connect = edge
        .metrics()
        .ok()
        .and_then(|m| metrics::max(&m, "edge_tcp_connections", &[]))
        .unwrap_or(0.0);
    let rss_loaded = rss_kib(&edge);

    let mut sent = 1usize;
    let mut next_byte = Instant::now() + TRICKLE;
    let give_up = Instant::now() + Duration::from_secs(DEADLINE_S + 8);
    while Instant::now() < give_up && peers.iter().any(|p| p.2.is_none()) {
        let now = Instant::now();
        let trickle = now >= next_byte;
        for (s, _, closed) in peers.iter_mut().filter(|p| p.2.is_none()) {
            // A write error (reset) is a close as good as an EOF.
            let wrote_failed =
                trickle && sent < request.len() && s.write(&request[sent..=sent]).is_err();
            if wrote_failed || is_closed(s) {
                *closed = Some(now);
            }
        }
        if trickle {
            sent += 1;
            next_byte = now + TRICKLE;
        }
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let (normal_ok, normal_failed) = normal.join().expect("normal client thread");

    let lifetimes: Vec<Duration> = peers
        .iter()
        .filter_map(|(_, first, closed)| closed.map(|c| c - *first))
        .collect();
    let still_open = peers.len() - lifetimes.len();
    let min = lifetimes.iter().min().copied().unwrap_or_default();
    let max = lifetimes.iter().max().copied().unwrap_or_default();
    let events = security_events(&edge, "tcp_message_deadline");
    let rss_end = rss_kib(&edge);
    eprintln!(
        "{test}: {SLOW_PEERS} slow peers over 8 IPs connected in {connected_in:?} \
         (edge_tcp_connections {open_after_connect}), one byte per {TRICKLE:?}, \
         deadline {DEADLINE_S} s: closed {} (first byte → close: min {min:?}, max {max:?}), \
         still open {still_open}; tcp_message_deadline events {events}; normal TCP client \
         {normal_ok} OPTIONS answered 200, {} failed {:?}; edge RSS {rss_start} → {rss_loaded} \
         → {rss_end} KiB",
        lifetimes.len(),
        normal_failed.len(),
        normal_failed
    );
    let report = edge.report();
    assert_eq!(still_open, 0, "slow peers left open\n{report}");
    assert!(
        max <= Duration::from_secs(DEADLINE_S + 5),
        "a slow peer lived {max:?}\n{report}"
    );
    // Closed by the deadline, not by anything earlier (the first byte reaches the edge after it
    // was written, so the edge's clock starts no earlier than ours).
    assert!(
        min >= Duration::from_millis(DEADLINE_S * 1000 - 200),
        "a slow peer was closed after {min:?}, before the deadline\n{report}"
    );
    assert!(
        events >= SLOW_PEERS as f64,
        "{events} deadline events\n{report}"
    );
    assert!(
        normal_failed.is_empty(),
        "normal client failed: {normal_failed:?}\n{report}"
    );
    assert!(
        normal_ok >= 5,
        "normal client answered only {normal_ok} times\n{report}"
    );
}

#[test]
fn a_peer_that_never_reads_is_disconnected_with_memory_bounded() {
    let test = "a_peer_that_never_reads_is_disconnected_with_memory_bounded";
    let Some(bin) = edge_or_skip(test) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let mut edge = start_tcp_edge(&bin, &dir, "");
    let target = edge.sip_addr();
    let rss_start = rss_kib(&edge);

    // A 4 KiB receive window that is never read: every ~30 KB response piles up at the edge.
    let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 7), target, Some(4096)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    let local = s.local_addr().expect("local addr");
    let start = Instant::now();
    let mut sent_bytes = 0usize;
    let mut requests = 0u64;
    let mut peak_rss = rss_start;
    let mut error = None;
    // Bounded: at most 3,000 requests (~90 MB, far beyond every buffer) or 30 s.
    while requests < 3_000 && start.elapsed() < Duration::from_secs(30) {
        let req = options_tcp(target, local, requests + 1, 30_000);
        match s.write_all(req.as_bytes()) {
            Ok(()) => {
                sent_bytes += req.len();
                requests += 1;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        if requests.is_multiple_of(20) {
            peak_rss = peak_rss.max(rss_kib(&edge));
        }
    }
    let closed_after = start.elapsed();
    thread::sleep(Duration::from_millis(300));
    let rss_end = rss_kib(&edge);
    peak_rss = peak_rss.max(rss_end);
    let queue_events = security_events(&edge, "tcp_write_queue");
    let timeout_events = security_events(&edge, "tcp_write_timeout");
    eprintln!(
        "{test}: peer never reading sent {requests} OPTIONS ({} MB) before {:?} after \
         {closed_after:?}; tcp_write_queue events {queue_events}, tcp_write_timeout events \
         {timeout_events}; edge RSS start {rss_start} KiB, peak {peak_rss} KiB, end {rss_end} KiB",
        sent_bytes / 1_000_000,
        error.as_ref().map(|e| e.kind())
    );
    let report = edge.report();
    assert!(
        error.is_some(),
        "the edge never closed the connection of a peer that does not read\n{report}"
    );
    assert!(
        queue_events + timeout_events >= 1.0,
        "closed, but not by a write guard\n{report}"
    );
    // The queue bound is 1 MiB; kernel buffers are not in the edge's RSS.
    assert!(
        peak_rss < rss_start + 32 * 1024,
        "edge RSS grew from {rss_start} to {peak_rss} KiB\n{report}"
    );
    // The edge still serves others.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 8), target, None).expect("connect");
    assert_eq!(options_exchange(&mut other, target, 1), Ok(200), "{report}");
}

#[test]
fn one_ip_cannot_exceed_its_connection_cap() {
    let test = "one_ip_cannot_exceed_its_connection_cap";
    let Some(bin) = edge_or_skip(test) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    // Defaults: 64 connections per IP.
    let mut edge = start_tcp_edge(&bin, &dir, "");
    let target = edge.sip_addr();
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let mut conns: Vec<TcpStream> = (0..65)
        .map(|i| connect_from(ip, target, None).unwrap_or_else(|e| panic!("connect {i}: {e}")))
        .collect();
    // The refused one is accepted by the kernel and closed by the edge at once.
    thread::sleep(Duration::from_millis(500));
    let mut closed = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_nonblocking(true).expect("nonblocking");
        if is_closed(c) {
            closed.push(i);
        }
    }
    let refused = security_events(&edge, "tcp_per_ip_limit");
    // Another IP still gets in, and the 64 kept connections work.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 6), target, None).expect("connect");
    let other_status = options_exchange(&mut other, target, 1);
    let kept = conns
        .iter_mut()
        .enumerate()
        .find(|(i, _)| !closed.contains(i))
        .map(|(_, c)| c);
    let kept_status = kept.map(|c| {
        c.set_nonblocking(false).expect("blocking");
        options_exchange(c, target, 2)
    });
    eprintln!(
        "{test}: 65 connections from {ip}: closed by the edge {closed:?}, tcp_per_ip_limit \
         events {refused}; another IP's OPTIONS: {other_status:?}; a kept connection's OPTIONS: \
         {kept_status:?}"
    );
    let report = edge.report();
    assert_eq!(closed.len(), 1, "exactly one of 65 closed\n{report}");
    assert_eq!(refused, 1.0, "{report}");
    assert_eq!(other_status, Ok(200), "{report}");
    assert_eq!(kept_status, Some(Ok(200)), "{report}");
}
