//! `sipflood`: a bounded SIP flood for the edge's rate limit (loopback only).
//!
//! Sends `--rate` datagrams/s in total, spread round-robin over the source IPs (`--sources`,
//! default 127.0.0.2..=127.0.0.9, one UDP socket each), to `--target` for `--duration` seconds
//! or until `--count` datagrams are sent, whichever comes first, then prints what it sent. The
//! mix: junk (random bytes, and text that is not SIP) and valid-looking INVITEs and REGISTERs
//! (fresh Call-ID and branch each), in the proportion of `--junk-percent`. Answers are not read.
//!
//! Exit codes: 0 run completed, 1 could not run (bind), 2 bad arguments.
//! Last line of stdout: `sipflood sent=N junk=N invite=N register=N errors=N elapsed_s=F rate=F`.

use clap::Parser;
use rand::Rng;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Upper bounds that keep a run finite.
const MAX_DURATION_S: f64 = 600.0;
const MAX_RATE: u32 = 500_000;
/// Messages prepared per kind and source, cycled through.
const POOL: usize = 256;

#[derive(Debug, Parser)]
#[command(name = "sipflood", version)]
struct Cli {
    /// Where to send, `IP:PORT` (loopback only).
    #[arg(long)]
    target: SocketAddr,
    /// Datagrams per second, all sources together.
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    /// Seconds to flood.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many datagrams (0: only the duration bounds the run).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Source IPs, comma-separated, or a range `FIRST-LAST` (IPv4, loopback only).
    #[arg(long, default_value = "127.0.0.2-127.0.0.9")]
    sources: String,
    /// Share of junk datagrams in percent; the rest alternates INVITE and REGISTER.
    #[arg(long, default_value_t = 34)]
    junk_percent: u8,
}

fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let bad = |e: std::net::AddrParseError| format!("--sources `{s}`: {e}");
    let ips: Vec<Ipv4Addr> = match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (Ipv4Addr, Ipv4Addr) = (a.parse().map_err(bad)?, b.parse().map_err(bad)?);
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1024 {
                return Err(format!(
                    "--sources `{s}`: empty or more than 1025 addresses"
                ));
            }
            (a..=b).map(Ipv4Addr::from).collect()
        }
        None => s
            .split(',')
            .map(|p| p.trim().parse().map_err(bad))
            .collect::<Result<_, _>>()?,
    };
    if ips.is_empty() || ips.iter().any(|ip| !ip.is_loopback()) {
        return Err(format!("--sources `{s}`: loopback addresses only"));
    }
    Ok(ips)
}

#[derive(Clone, Copy)]
enum Kind {
    Invite,
    Register,
}

fn sip(kind: Kind, from: SocketAddr, to: SocketAddr, n: usize, rng: &mut impl Rng) -> Vec<u8> {
    let tag: u64 = rng.random();
    let call_id: u64 = rng.random();
    let branch: u64 = rng.random();
    let (method, ruri, to_uri, extra) = match kind {
        Kind::Invite => (
            "INVITE",
            format!("sip:+1555{n:07}@{to}"),
            format!("<sip:+1555{n:07}@{to}>"),
            "",
        ),
        Kind::Register => (
            "REGISTER",
            format!("sip:{}", to.ip()),
            format!("<sip:flood{n}@{}>", to.ip()),
            "Expires: 3600\r\n",
        ),
    };
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK{branch:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:flood{n}@{}>;tag={tag:x}\r\n\
         To: {to_uri}\r\n\
         Call-ID: {call_id:x}@{}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:flood{n}@{from}>\r\n\
         {extra}User-Agent: sipflood\r\n\
         Content-Length: 0\r\n\r\n",
        from.ip(),
        from.ip()
    )
    .into_bytes()
}

fn junk(n: usize, rng: &mut impl Rng) -> Vec<u8> {
    if n.is_multiple_of(2) {
        let len = rng.random_range(20..600);
        (0..len).map(|_| rng.random()).collect()
    } else {
        format!("GARBAGE {n} not/sip\r\nX: {}\r\n\r\n", "y".repeat(n % 200)).into_bytes()
    }
}

struct Source {
    sock: UdpSocket,
    pools: [Vec<Vec<u8>>; 3],
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.target.ip().is_loopback() {
        eprintln!("sipflood: --target must be a loopback address");
        return ExitCode::from(2);
    }
    if !(cli.duration > 0.0 && cli.duration <= MAX_DURATION_S) {
        eprintln!("sipflood: --duration must be in (0, {MAX_DURATION_S}]");
        return ExitCode::from(2);
    }
    if cli.rate == 0 || cli.rate > MAX_RATE || cli.junk_percent > 100 {
        eprintln!("sipflood: --rate must be 1..={MAX_RATE}, --junk-percent 0..=100");
        return ExitCode::from(2);
    }
    let ips = match parse_sources(&cli.sources) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sipflood: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rng = rand::rng();
    let mut sources = Vec::new();
    for ip in &ips {
        let sock = match UdpSocket::bind(SocketAddr::new(IpAddr::V4(*ip), 0)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sipflood: bind {ip}: {e}");
                return ExitCode::from(1);
            }
        };
        let _ = sock.set_nonblocking(true);
        let from = sock.local_addr().expect("bound");
        let pools = [
            (0..POOL).map(|n| junk(n, &mut rng)).collect(),
            (0..POOL)
                .map(|n| sip(Kind::Invite, from, cli.target, n, &mut rng))
                .collect(),
            (0..POOL)
                .map(|n| sip(Kind::Register, from, cli.target, n, &mut rng))
                .collect(),
        ];
        sources.push(Source { sock, pools });
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(cli.duration);
    let per_ns = 1e9 / f64::from(cli.rate);
    let mut counts = [0u64; 3];
    let mut errors = 0u64;
    let mut sent = 0u64;
    // Paced in 1 ms slices: send what is due, then sleep to the next slice.
    'run: loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = (now.duration_since(start).as_nanos() as f64 / per_ns) as u64 + 1;
        while sent < due {
            if (cli.count > 0 && sent >= cli.count)
                || (sent.is_multiple_of(1024) && Instant::now() >= end)
            {
                break 'run;
            }
            let i = sent as usize;
            let src = &sources[i % sources.len()];
            let round = i / sources.len();
            let kind = if (round * 37 % 100) < usize::from(cli.junk_percent) {
                0
            } else {
                1 + round % 2
            };
            let msg = &src.pools[kind][round % POOL];
            match src.sock.send_to(msg, cli.target) {
                Ok(_) => counts[kind] += 1,
                Err(_) => errors += 1,
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ok: u64 = counts.iter().sum();
    println!(
        "sipflood sent={ok} junk={} invite={} register={} errors={errors} sources={} elapsed_s={elapsed:.2} rate={:.0}",
        counts[0],
        counts[1],
        counts[2],
        sources.len(),
        ok as f64 / elapsed
    );
    ExitCode::SUCCESS
}
