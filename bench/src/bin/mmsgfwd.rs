//! `mmsgfwd`: a plain recvmmsg/sendmmsg RTP forwarder speaking just enough of the rtpproxy
//! control protocol for `rtpload`: the baseline rtprelay's datapaths are compared against
//! (`bench/relay_compare.sh`, target `mmsgfwd`). See `bench::mmsgfwd`. Loopback only.
//!
//! Exit codes: 0 after `--max-seconds`, 1 setup failed, 2 bad arguments.

use bench::mmsgfwd::{Config, Relay};
use clap::Parser;
use sbc_shared::proto::{split_cookie, write_udp_reply, Command, Reply};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MAX_THREADS: usize = 64;
const MAX_SESSIONS: usize = 50_000;
/// Replies kept for retransmitted commands (same cookie); cleared when full.
const REPLY_CACHE: usize = 65_536;

/// Plain recvmmsg/sendmmsg forwarder with a minimal rtpproxy control socket (loopback only).
#[derive(Debug, Parser)]
#[command(name = "mmsgfwd", version)]
struct Cli {
    /// Control protocol over UDP (cookie framed), `[udp:]IP:PORT` (loopback).
    #[arg(long, alias = "control-udp", default_value = "127.0.0.1:22222", value_parser = parse_control)]
    control: SocketAddr,
    /// Address the media sockets bind to (loopback).
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// Media port range, MIN-MAX (inclusive); a session takes 4 ports (2 legs × RTP+RTCP).
    #[arg(long, default_value = "30000-39999", value_parser = parse_ports)]
    ports: (u16, u16),
    /// Forwarding threads (one epoll set each); default 2.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Datagrams per recvmmsg/sendmmsg.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Session limit (also bounded by the port range).
    #[arg(long, default_value_t = 20_000)]
    max_sessions: usize,
    /// Do not pin thread i to the i-th allowed CPU.
    #[arg(long)]
    no_pin: bool,
    /// Exit after this many seconds (a forgotten process does not live on).
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
}

fn parse_control(s: &str) -> Result<SocketAddr, String> {
    let a = s.strip_prefix("udp:").unwrap_or(s);
    a.parse().map_err(|e| format!("{s:?}: {e}"))
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let p = |x: &str| {
        x.trim()
            .parse::<u16>()
            .map_err(|e| format!("port {x:?}: {e}"))
    };
    let (min, max) = (p(a)?, p(b)?);
    if min == 0 || min > max {
        return Err(format!("bad range {s:?}"));
    }
    Ok((min, max))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.control.ip().is_loopback() || !cli.listen.is_loopback() {
        eprintln!("mmsgfwd: loopback only: --control and --listen must be loopback addresses");
        return ExitCode::from(2);
    }
    if !(1..=MAX_THREADS).contains(&cli.threads)
        || !(1..=bench::mmsgfwd::datapath::MAX_BATCH).contains(&cli.batch)
        || !(1..=MAX_SESSIONS).contains(&cli.max_sessions)
        || !(1..=86_400).contains(&cli.max_seconds)
    {
        eprintln!(
            "mmsgfwd: --threads 1..={MAX_THREADS}, --batch 1..={}, --max-sessions 1..={MAX_SESSIONS}, --max-seconds 1..=86400",
            bench::mmsgfwd::datapath::MAX_BATCH
        );
        return ExitCode::from(2);
    }
    raise_nofile(cli.max_sessions as u64 * 4 + 256);
    let ctl = match UdpSocket::bind(cli.control) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mmsgfwd: control {}: {e}", cli.control);
            return ExitCode::from(1);
        }
    };
    let _ = ctl.set_read_timeout(Some(Duration::from_millis(200)));
    let mut relay = match Relay::new(Config {
        listen: cli.listen,
        ports: cli.ports,
        threads: cli.threads,
        batch: cli.batch,
        max_sessions: cli.max_sessions,
        pin: !cli.no_pin,
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mmsgfwd: threads: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "mmsgfwd: control {} media {} ports {}-{} ({} sessions) threads {} batch {}",
        cli.control,
        cli.listen,
        cli.ports.0,
        cli.ports.1,
        relay.capacity().min(cli.max_sessions),
        cli.threads,
        cli.batch
    );
    let deadline = Instant::now() + Duration::from_secs(cli.max_seconds);
    let mut cache: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let Ok((n, from)) = ctl.recv_from(&mut buf) else {
            continue;
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        let Ok((cookie, body)) = split_cookie(datagram) else {
            continue;
        };
        if let Some(r) = cache.get(cookie) {
            let _ = ctl.send_to(r, from);
            continue;
        }
        let reply = match Command::parse(body) {
            Ok(cmd) => relay.handle(&cmd),
            Err(e) => Reply::Error(e.code()),
        };
        let mut out = Vec::with_capacity(64);
        write_udp_reply(cookie, &reply, &mut out);
        let _ = ctl.send_to(&out, from);
        if cache.len() >= REPLY_CACHE {
            cache.clear();
        }
        cache.insert(cookie.to_vec(), out);
    }
    let (rx, fwd) = relay.counters();
    eprintln!("mmsgfwd: --max-seconds reached; received {rx} forwarded {fwd}");
    ExitCode::SUCCESS
}

fn raise_nofile(want: u64) {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        let target = want.min(r.rlim_max);
        if r.rlim_cur < target {
            r.rlim_cur = target;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
