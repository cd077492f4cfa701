//! `rtpload`: iperf-like RTP load through a relay speaking the rtpproxy control protocol.
//! See `bench/README.md` and the `bench::rtpload` modules.
//!
//! Exit codes: 0 run completed (whatever the loss), 1 the run could not be done (relay not
//! answering, no stream set up), 2 bad arguments.

use bench::rtpload::control::{self, Client, ClientOptions};
use bench::rtpload::net::{self, RawAddr, RecvBatch, SendBatch, BATCH};
use bench::rtpload::pacer::Pacer;
use bench::rtpload::packet;
use bench::rtpload::procfs;
use bench::rtpload::report::{RelayProcess, Report};
use bench::rtpload::stats::{Histogram, StreamRx};
use clap::Parser;
use sbc_shared::proto::Command;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bounds that keep a run finite and the machine usable.
const MAX_STREAMS: usize = 50_000;
const MAX_DURATION_S: f64 = 600.0;
const MAX_PPS: f64 = 10_000.0;
/// Longest drain after the last send.
const MAX_DRAIN: Duration = Duration::from_secs(10);

/// RTP load through any rtpproxy-protocol relay (rtprelay, rtpengine --listen-udp). Loopback only.
#[derive(Debug, Parser)]
#[command(name = "rtpload", version)]
struct Cli {
    /// The relay's control socket, `[udp:]IP:PORT` (loopback).
    #[arg(long, default_value = "127.0.0.1:22222", value_parser = parse_control)]
    control: SocketAddr,
    /// Streams (relay sessions) to open.
    #[arg(long, short = 'n', default_value_t = 100)]
    streams: usize,
    /// Packets per second per stream and direction (50 = 20 ms ptime).
    #[arg(long, short = 'p', default_value_t = 50.0)]
    pps: f64,
    /// Seconds of sending.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Packet size in bytes (12-byte RTP header + payload; 172 = G.711 20 ms).
    #[arg(long, default_value_t = packet::DEFAULT_SIZE)]
    size: usize,
    /// Send A→B only (default: both directions).
    #[arg(long)]
    oneway: bool,
    /// Local UDP sockets per side (streams are spread over them).
    #[arg(long, default_value_t = 2)]
    sockets: usize,
    /// Sender threads.
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Receiver threads.
    #[arg(long, default_value_t = 1)]
    receivers: usize,
    /// Address the endpoints bind to (loopback).
    #[arg(long, default_value = "127.0.0.1")]
    local: IpAddr,
    /// PID of the relay: report its CPU per forwarded packet and its RSS.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// After the last send, receivers stop once nothing arrived for this long (ms); a relay
    /// with queued packets is drained for at most 10 s more.
    #[arg(long, default_value_t = 500)]
    drain_ms: u64,
    /// Control commands in flight at once.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Leave the streams open at the end (no D).
    #[arg(long)]
    keep: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Measure call setup only: N × (U, L, D) pipelined, no media; with `--relay-pid`, prints
    /// the relay's CPU (utime+stime) ÷ N.
    #[arg(long, value_name = "N")]
    setup_only: Option<usize>,
}

fn parse_control(s: &str) -> Result<SocketAddr, String> {
    let a = s.strip_prefix("udp:").unwrap_or(s);
    a.parse().map_err(|e| format!("{s:?}: {e}"))
}

/// One stream direction as a sender sees it.
struct Item {
    stream: u32,
    dir: u8,
    socket: usize,
    dest: RawAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = check(&cli) {
        eprintln!("rtpload: {e}");
        return ExitCode::from(2);
    }
    if let Some(calls) = cli.setup_only {
        return match setup_only(&cli, calls) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rtpload: {e}");
                ExitCode::from(1)
            }
        };
    }
    match run(&cli) {
        Ok(report) => {
            if cli.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.human());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtpload: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(cli: &Cli) -> Result<(), String> {
    if !cli.control.ip().is_loopback() || !cli.local.is_loopback() {
        return Err("loopback only: --control and --local must be loopback addresses".into());
    }
    if cli.streams == 0 || cli.streams > MAX_STREAMS {
        return Err(format!("--streams must be 1..={MAX_STREAMS}"));
    }
    if !(cli.pps > 0.0 && cli.pps <= MAX_PPS) {
        return Err(format!("--pps must be in (0, {MAX_PPS}]"));
    }
    if !(cli.duration > 0.0 && cli.duration <= MAX_DURATION_S) {
        return Err(format!("--duration must be in (0, {MAX_DURATION_S}] s"));
    }
    if !(packet::MIN_SIZE..=packet::MAX_SIZE).contains(&cli.size) {
        return Err(format!(
            "--size must be {}..={}",
            packet::MIN_SIZE,
            packet::MAX_SIZE
        ));
    }
    for (name, v) in [
        ("--sockets", cli.sockets),
        ("--senders", cli.senders),
        ("--receivers", cli.receivers),
    ] {
        if !(1..=64).contains(&v) {
            return Err(format!("{name} must be 1..=64"));
        }
    }
    if cli.window == 0 || !(10..=10_000).contains(&cli.drain_ms) {
        return Err("--window must be >= 1 and --drain-ms 10..=10000".into());
    }
    Ok(())
}

/// Calls open at once in `--setup-only` (U of a chunk, then L, then D): bounded so that a
/// default port range (2,500 streams) is never exhausted.
const SETUP_CHUNK: usize = 500;
const MAX_SETUP_CALLS: usize = 1_000_000;

/// A control client to the relay under test, checked with `V`.
fn connect(cli: &Cli) -> Result<Client, String> {
    let mut client = Client::new(
        cli.control,
        ClientOptions {
            window: cli.window,
            ..ClientOptions::default()
        },
    )
    .map_err(|e| format!("control socket: {e}"))?;
    client
        .call(&Command::Version)
        .map_err(|e| format!("relay at {} does not answer V: {e}", cli.control))?;
    Ok(client)
}

/// `--setup-only N`: N calls, each U + L + D (one stream, as Kamailio sends them), pipelined
/// with `--window` commands in flight, in chunks of [`SETUP_CHUNK`] calls. Reports wall time,
/// failures and, with `--relay-pid`, the relay's utime+stime ÷ N (clock ticks of 10 ms: use
/// N ≥ 10,000 for a figure to ±1 µs).
fn setup_only(cli: &Cli, calls: usize) -> Result<String, String> {
    if calls == 0 || calls > MAX_SETUP_CALLS {
        return Err(format!("--setup-only must be 1..={MAX_SETUP_CALLS}"));
    }
    let mut client = connect(cli)?;
    let run_id: u32 = rand::random();
    // Party addresses only appear in signalling: nothing is sent to them.
    let a: SocketAddr = SocketAddr::new(cli.local, 9);
    let b: SocketAddr = SocketAddr::new(cli.local, 11);
    let rss_before = cli.relay_pid.and_then(procfs::rss_bytes);
    let cpu_before = cli.relay_pid.and_then(procfs::cpu_time);
    let start = Instant::now();
    let (mut failed, mut first_error) = (0usize, None);
    // `U`/`L` must answer a port (0 is a refusal), `D` a plain `0`.
    let mut count = |rs: Vec<Result<sbc_shared::proto::Reply, String>>, port: bool| {
        for r in rs {
            let bad = match r {
                Ok(rep) => match rep.port() {
                    Some((0, _)) if port => Some(format!("{rep:?}")),
                    _ => rep.error().map(|e| format!("{e:?}")),
                },
                Err(e) => Some(e),
            };
            if let Some(e) = bad {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    };
    let mut i = 0;
    while i < calls {
        let end = (i + SETUP_CHUNK).min(calls);
        let u: Vec<Command> = (i..end).map(|j| control::offer(run_id, j, a)).collect();
        count(client.run(&u), true);
        let l: Vec<Command> = (i..end).map(|j| control::answer(run_id, j, b)).collect();
        count(client.run(&l), true);
        let d: Vec<Command> = (i..end).map(|j| control::delete(run_id, j)).collect();
        count(client.run(&d), false);
        i = end;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = cli.relay_pid.and_then(procfs::cpu_time);
    let rss_after = cli.relay_pid.and_then(procfs::rss_bytes);
    let mut line = format!(
        "setup-only calls={calls} failed_commands={failed} wall_s={wall:.3} calls_per_s={:.0}",
        calls as f64 / wall.max(1e-9)
    );
    if let (Some(b0), Some(b1)) = (cpu_before, cpu_after) {
        let cpu = b1.saturating_sub(b0).as_secs_f64();
        line += &format!(
            " relay_cpu_s={cpu:.2} relay_cpu_us_per_call={:.1}",
            cpu * 1e6 / calls as f64
        );
    }
    if let (Some(r0), Some(r1)) = (rss_before, rss_after) {
        line += &format!(" relay_rss_before={r0} relay_rss_after={r1}");
    }
    if let Some(e) = first_error {
        line += &format!(" first_error={e:?}");
    }
    Ok(line)
}

fn run(cli: &Cli) -> Result<Report, String> {
    let n = cli.streams;
    let k = cli.sockets;
    net::raise_nofile(4096);
    let bind =
        |_| net::bind_udp(SocketAddr::new(cli.local, 0), 8 << 20).map_err(|e| format!("bind: {e}"));
    let side_a: Vec<UdpSocket> = (0..k).map(bind).collect::<Result<_, _>>()?;
    let side_b: Vec<UdpSocket> = (0..k).map(bind).collect::<Result<_, _>>()?;
    let addr_of = |s: &UdpSocket| s.local_addr().map_err(|e| format!("local_addr: {e}"));
    let a_addrs: Vec<SocketAddr> = side_a.iter().map(addr_of).collect::<Result<_, _>>()?;
    let b_addrs: Vec<SocketAddr> = side_b.iter().map(addr_of).collect::<Result<_, _>>()?;
    let run_id: u32 = rand::random();

    let mut client = connect(cli)?;

    let rss_before = cli.relay_pid.and_then(procfs::rss_bytes);
    // Open the streams: U (party A), then L (party B).
    let setup_start = Instant::now();
    let offers: Vec<Command> = (0..n)
        .map(|i| control::offer(run_id, i, a_addrs[i % k]))
        .collect();
    let u = client.run(&offers);
    let answers: Vec<Command> = (0..n)
        .map(|i| control::answer(run_id, i, b_addrs[i % k]))
        .collect();
    let l = client.run(&answers);
    let setup_s = setup_start.elapsed().as_secs_f64();
    let relay_ip = cli.control.ip();
    // Per stream: (where B sends = U's port, where A sends = L's port).
    let mut ports: Vec<Option<(SocketAddr, SocketAddr)>> = Vec::with_capacity(n);
    let mut first_error = None;
    for (ur, lr) in u.iter().zip(&l) {
        let pair = ur
            .clone()
            .and_then(|r| control::relay_port(&r, relay_ip))
            .and_then(|to_b| {
                lr.clone()
                    .and_then(|r| control::relay_port(&r, relay_ip))
                    .map(|to_a| (to_b, to_a))
            });
        match pair {
            Ok((to_b, to_a)) if to_b.ip().is_loopback() && to_a.ip().is_loopback() => {
                ports.push(Some((to_b, to_a)))
            }
            Ok(_) => {
                first_error.get_or_insert_with(|| "relay answered a non-loopback address".into());
                ports.push(None);
            }
            Err(e) => {
                first_error.get_or_insert(e);
                ports.push(None);
            }
        }
    }
    let setup_failed = ports.iter().filter(|p| p.is_none()).count();
    if setup_failed == n {
        return Err(format!(
            "no stream could be set up: {}",
            first_error.unwrap_or_default()
        ));
    }
    if let Some(e) = &first_error {
        eprintln!("rtpload: {setup_failed} of {n} streams not set up (first error: {e})");
    }
    // Let the relay settle (RSS of the allocated sessions, not of the control burst).
    std::thread::sleep(Duration::from_millis(200));
    let rss_streams = cli.relay_pid.and_then(procfs::rss_bytes);

    // Sender work lists: both directions of every stream that was set up.
    let dirs: u8 = if cli.oneway { 1 } else { 2 };
    let mut work: Vec<Vec<Item>> = (0..cli.senders).map(|_| Vec::new()).collect();
    let mut slot = 0usize;
    for (i, p) in ports.iter().enumerate() {
        let Some((to_b_port, to_a_port)) = p else {
            continue;
        };
        for dir in 0..dirs {
            // dir 0: A → relay (L's port) → B; dir 1: B → relay (U's port) → A.
            let (socket, dest) = if dir == 0 {
                (i % k, RawAddr::new(*to_a_port))
            } else {
                (k + i % k, RawAddr::new(*to_b_port))
            };
            if let Some(w) = work.get_mut(slot % cli.senders) {
                w.push(Item {
                    stream: i as u32,
                    dir,
                    socket,
                    dest,
                });
            }
            slot += 1;
        }
    }
    let all_socks: Vec<&UdpSocket> = side_a.iter().chain(side_b.iter()).collect();
    let fds: Vec<RawFd> = all_socks.iter().map(|s| s.as_raw_fd()).collect();
    // Send and arrival times are CLOCK_REALTIME ns: the clock of the kernel's receive
    // timestamps (one clock, loopback only).
    for sock in &all_socks {
        net::enable_rx_timestamps(sock).map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let duration = Duration::from_secs_f64(cli.duration);
    let cpu_before = cli.relay_pid.and_then(procfs::cpu_time);
    let udp_before = procfs::udp_buffer_errors();
    let tool_before = own_cpu();

    let receivers: Vec<_> = (0..cli.receivers)
        .map(|r| {
            let mine: Vec<RawFd> = fds
                .iter()
                .enumerate()
                .filter(|(j, _)| j % cli.receivers == r)
                .map(|(_, fd)| *fd)
                .collect();
            let stop = stop.clone();
            let quiet = Duration::from_millis(cli.drain_ms);
            std::thread::Builder::new()
                .name(format!("rtpload-rx-{r}"))
                .spawn(move || receive(&mine, n, run_id, &stop, quiet))
                .map_err(|e| format!("spawn: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let send_start = Instant::now();
    let senders: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(t, items)| {
            let batches: Vec<SendBatch> = all_socks
                .iter()
                .map(|s| SendBatch::new(s, cli.size))
                .collect();
            let size = cli.size;
            let rate = cli.pps * items.len() as f64;
            std::thread::Builder::new()
                .name(format!("rtpload-tx-{t}"))
                .spawn(move || send(items, batches, size, rate, duration, run_id))
                .map_err(|e| format!("spawn: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let (mut sent, mut send_failed) = (0u64, 0u64);
    for s in senders {
        let (a, b) = s.join().map_err(|_| "sender panicked".to_string())?;
        sent += a;
        send_failed += b;
    }
    let send_s = send_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut streams = vec![StreamRx::default(); n * 2];
    let mut hist = Histogram::default();
    let (mut strays, mut in_window) = (0, 0);
    for r in receivers {
        let got = r.join().map_err(|_| "receiver panicked".to_string())?;
        for (a, b) in streams.iter_mut().zip(&got.streams) {
            a.merge(b);
        }
        hist.merge(&got.latency);
        strays += got.strays;
        in_window += got.in_window;
    }
    let cpu_after = cli.relay_pid.and_then(procfs::cpu_time);
    let active_s = send_start.elapsed().as_secs_f64();
    let (kernel_rcvbuf_errors, kernel_sndbuf_errors) =
        match (udp_before, procfs::udp_buffer_errors()) {
            (Some(a), Some(b)) => (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1)),
            _ => (0, 0),
        };
    let tool_cpu_s = (own_cpu() - tool_before).as_secs_f64();

    let delete_failed = if cli.keep {
        0
    } else {
        let dels: Vec<Command> = ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .map(|(i, _)| control::delete(run_id, i))
            .collect();
        client
            .run(&dels)
            .iter()
            .filter(|r| !matches!(r, Ok(rep) if rep.error().is_none()))
            .count()
    };
    std::thread::sleep(Duration::from_millis(200));
    let rss_end = cli.relay_pid.and_then(procfs::rss_bytes);

    let received: u64 = streams.iter().map(|s| s.received).sum();
    let out_of_order: u64 = streams.iter().map(|s| s.out_of_order).sum();
    let jitters: Vec<f64> = streams
        .iter()
        .filter(|s| s.received >= 2)
        .map(|s| s.jitter_ns / 1e6)
        .collect();
    let lost = sent.saturating_sub(received);
    let live = n - setup_failed;
    let relay_process = cli.relay_pid.map(|pid| {
        let cpu_s = match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
            _ => f64::NAN,
        };
        let before = rss_before.unwrap_or(0);
        let with = rss_streams.unwrap_or(0);
        RelayProcess {
            pid,
            cpu_s,
            cpu_us_per_packet: cpu_s * 1e6 / received.max(1) as f64,
            cpu_percent: 100.0 * cpu_s / active_s.max(1e-9),
            rss_before_bytes: before,
            rss_with_streams_bytes: with,
            rss_per_stream_bytes: (with as f64 - before as f64) / live.max(1) as f64,
            rss_end_bytes: rss_end.unwrap_or(0),
        }
    });
    let us = |ns: u64| ns as f64 / 1000.0;
    Ok(Report {
        relay: cli.control.to_string(),
        streams: live,
        directions: dirs,
        pps_per_direction: cli.pps,
        packet_bytes: cli.size,
        duration_s: send_s,
        setup_s,
        setup_failed,
        delete_failed,
        offered_pps: cli.pps * f64::from(dirs) * live as f64,
        sent,
        sent_pps: sent as f64 / send_s.max(1e-9),
        send_failed,
        kernel_rcvbuf_errors,
        kernel_sndbuf_errors,
        received,
        lost,
        loss_percent: if sent == 0 {
            0.0
        } else {
            100.0 * lost as f64 / sent as f64
        },
        out_of_order,
        foreign: strays,
        forwarded_pps: in_window.min(received) as f64 / send_s.max(1e-9),
        backlog: received.saturating_sub(in_window),
        jitter_mean_ms: if jitters.is_empty() {
            0.0
        } else {
            jitters.iter().sum::<f64>() / jitters.len() as f64
        },
        jitter_max_ms: jitters.iter().copied().fold(0.0, f64::max),
        latency_mean_us: us(hist.mean_ns()),
        latency_p50_us: us(hist.quantile_ns(0.5)),
        latency_p99_us: us(hist.quantile_ns(0.99)),
        latency_p999_us: us(hist.quantile_ns(0.999)),
        latency_max_us: us(hist.max_ns()),
        tool_cpu_s,
        relay_process,
    })
}

/// This process's user + system CPU time.
fn own_cpu() -> Duration {
    // SAFETY: getrusage with a valid out pointer.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A sender thread: paces its stream directions round robin (packet m goes to item m mod len),
/// batching per socket. Returns (sent, failed).
fn send(
    items: Vec<Item>,
    mut batches: Vec<SendBatch>,
    size: usize,
    rate: f64,
    duration: Duration,
    run: u32,
) -> (u64, u64) {
    if items.is_empty() {
        return (0, 0);
    }
    let len = items.len() as u64;
    let mut templates = vec![0u8; items.len() * size];
    for (it, t) in items.iter().zip(templates.chunks_mut(size)) {
        packet::prepare(t, run, it.stream, it.dir);
    }
    // Wake up for batches of ~0.5 ms of traffic (at least one packet, at most 2 ms apart).
    let want = ((rate * 0.0005) as u64).max(1);
    let mut pacer = Pacer::new(rate, duration);
    let (mut sent, mut failed) = (0u64, 0u64);
    let start = Instant::now();
    // A sender that fell behind does not run over: it stops at the end of the window, and what
    // it did not send shows as sent_pps < offered_pps.
    let hard_stop = duration + Duration::from_millis(50);
    while !pacer.done() {
        let elapsed = start.elapsed();
        if elapsed >= hard_stop {
            break;
        }
        let due = pacer.take_due(elapsed, 4 * BATCH as u64);
        if due == 0 {
            let wait = pacer.wait_for(elapsed, want).min(Duration::from_millis(2));
            std::thread::sleep(wait);
            continue;
        }
        let first = pacer.issued() - due;
        let now_ns = net::realtime_ns();
        for m in first..first + due {
            let idx = (m % len) as usize;
            let (Some(it), Some(tpl)) =
                (items.get(idx), templates.get(idx * size..(idx + 1) * size))
            else {
                continue;
            };
            let Some(b) = batches.get_mut(it.socket) else {
                continue;
            };
            if b.is_full() {
                let f = b.flush();
                sent += f.sent as u64;
                failed += f.failed as u64;
            }
            let buf = b.push(&it.dest);
            buf.copy_from_slice(tpl);
            packet::stamp(buf, m / len, now_ns);
        }
        for b in batches.iter_mut().filter(|b| !b.is_empty()) {
            let f = b.flush();
            sent += f.sent as u64;
            failed += f.failed as u64;
        }
    }
    (sent, failed)
}

/// A receiver thread: reads its sockets until `stop` and then until quiet, accounting each
/// probe.
fn receive(
    fds: &[RawFd],
    streams: usize,
    run: u32,
    stop: &AtomicBool,
    quiet: Duration,
) -> Received {
    let mut st = vec![StreamRx::default(); streams * 2];
    let mut hist = Histogram::default();
    let mut strays = 0u64;
    let mut rb = RecvBatch::default();
    let mut ready = Vec::with_capacity(fds.len());
    let mut last_packet = Instant::now();
    let mut in_window = 0u64;
    let mut stop_seen: Option<Instant> = None;
    loop {
        if stop_seen.is_none() && stop.load(Ordering::Relaxed) {
            stop_seen = Some(Instant::now());
        }
        net::poll_readable(fds, &mut ready, 5);
        let mut got = 0;
        for (fd, r) in fds.iter().zip(&ready) {
            if !*r {
                continue;
            }
            loop {
                let read_at = net::realtime_ns();
                let n = rb.recv(*fd, |d, stamp| match packet::read(d, run) {
                    Some(p) if (p.stream as usize) < streams && p.dir < 2 => {
                        let now = stamp.unwrap_or(read_at);
                        let i = p.stream as usize * 2 + usize::from(p.dir);
                        if let Some(s) = st.get_mut(i) {
                            s.on_packet(p.number, p.sent_ns, now);
                        }
                        hist.record(now.saturating_sub(p.sent_ns));
                    }
                    _ => strays += 1,
                });
                got += n;
                if n < BATCH {
                    break;
                }
            }
        }
        if got > 0 {
            last_packet = Instant::now();
            if stop_seen.is_none() {
                in_window += got as u64;
            }
        }
        if let Some(t) = stop_seen {
            if last_packet.elapsed() >= quiet || t.elapsed() >= MAX_DRAIN {
                break;
            }
        }
    }
    Received {
        streams: st,
        latency: hist,
        strays,
        in_window,
    }
}

/// What one receiver thread saw.
struct Received {
    /// Per stream direction (index stream*2+dir).
    streams: Vec<StreamRx>,
    latency: Histogram,
    /// Datagrams that were not probes of this run.
    strays: u64,
    /// Datagrams (probes or not) received before the senders finished.
    in_window: u64,
}
