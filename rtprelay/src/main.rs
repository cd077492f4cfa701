//! The `rtprelay` binary: configuration (file + flags), logging, the media plane, metrics, the
//! admin listener and the control server. Runs with no config file on loopback.
//!
//! Exit codes: 0 on SIGINT/SIGTERM, 1 when a component cannot start (ports, io_uring asked
//! for but unavailable), 2 on a configuration error (one line naming the key).

use clap::{Parser, ValueEnum};
use config::{ConfigError, DatapathKind, LogFormat, RelayConfig, Validate};
use prometheus::Registry;
use rtprelay::control::{server, ControlMetrics};
use rtprelay::metrics::{media_source, ShardCollector};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DatapathArg {
    Auto,
    #[value(name = "io_uring", alias = "io-uring")]
    IoUring,
    Fallback,
}

/// RTP/RTCP relay driven by the rtpproxy control protocol. Flags override the config file.
#[derive(Debug, Parser)]
#[command(name = "rtprelay", version)]
struct Cli {
    /// TOML config file (see config/examples/rtprelay.toml); without it, loopback defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration (file and flags), print it with every default filled in, and
    /// exit: 0 when valid, 2 when not.
    #[arg(long)]
    check_config: bool,
    /// Control protocol over UDP (cookie framed), e.g. 127.0.0.1:22222.
    #[arg(long, value_name = "ADDR")]
    control_udp: Option<SocketAddr>,
    /// Control protocol over a unix stream socket at this path.
    #[arg(long, value_name = "PATH")]
    control_unix: Option<String>,
    /// Address the media sockets bind to.
    #[arg(long, value_name = "IP")]
    listen: Option<IpAddr>,
    /// Address announced in replies (1:1 NAT).
    #[arg(long, value_name = "IP")]
    advertise: Option<IpAddr>,
    /// Media port range, MIN-MAX (inclusive).
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_ports)]
    ports: Option<(u16, u16)>,
    /// Datapath threads (= port-table shards); 0 = number of CPUs.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// auto (io_uring if it can be set up), io_uring (fail if not) or fallback (recvmmsg).
    #[arg(long, value_enum)]
    datapath: Option<DatapathArg>,
    /// Delete a stream after this many seconds without packets.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Allow re-latching to a new source (RTP-bleed unsafe); default is strict.
    #[arg(long)]
    no_strict_source: bool,
    /// Admin HTTP listener (/metrics, /health).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// tracing filter, e.g. `info` or `rtprelay=debug`.
    #[arg(long, value_name = "L")]
    log_level: Option<String>,
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {s:?}"))?;
    let min = a
        .trim()
        .parse::<u16>()
        .map_err(|e| format!("port {a:?}: {e}"))?;
    let max = b
        .trim()
        .parse::<u16>()
        .map_err(|e| format!("port {b:?}: {e}"))?;
    Ok((min, max))
}

/// The effective config: the file (or defaults), then every flag given, then validation.
fn effective_config(cli: &Cli) -> Result<RelayConfig, ConfigError> {
    let mut cfg: RelayConfig = match &cli.config {
        Some(path) => config::from_file(path)?,
        None => RelayConfig::default(),
    };
    if let Some(a) = cli.control_udp {
        cfg.control.udp = Some(a);
    }
    if let Some(p) = &cli.control_unix {
        cfg.control.unix = Some(p.clone());
    }
    if let Some(ip) = cli.listen {
        cfg.media.listen = ip;
    }
    if let Some(ip) = cli.advertise {
        cfg.media.advertise = Some(ip);
    }
    if let Some((min, max)) = cli.ports {
        cfg.media.port_min = min;
        cfg.media.port_max = max;
    }
    if let Some(n) = cli.threads {
        cfg.media.threads = n;
    }
    if let Some(d) = cli.datapath {
        cfg.media.datapath = match d {
            DatapathArg::Auto => DatapathKind::Auto,
            DatapathArg::IoUring => DatapathKind::IoUring,
            DatapathArg::Fallback => DatapathKind::Fallback,
        };
    }
    if let Some(t) = cli.timeout {
        cfg.media.timeout_s = t;
    }
    if cli.no_strict_source {
        cfg.media.strict_source = false;
    }
    if let Some(a) = cli.admin {
        cfg.admin.listen = a;
    }
    if cli.log_json {
        cfg.log.format = LogFormat::Json;
    }
    if let Some(l) = &cli.log_level {
        cfg.log.level = l.clone();
    }
    cfg.validate()?;
    Ok(cfg)
}

/// A config error on one line: toml's multi-line report (location, source snippet, caret,
/// message) is reduced to location, message and the offending source line, which names the key.
fn one_line(e: &ConfigError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // The snippet line looks like `2 | port_min = "x"`.
    let snippet = lines.iter().find_map(|l| {
        let (n, src) = l.split_once('|')?;
        let n = n.trim();
        (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| src.trim())
    });
    match (lines.first(), lines.last()) {
        (Some(first), Some(last)) if lines.len() > 1 => match snippet {
            Some(src) => format!("{first}: {last} (in `{src}`)"),
            None => format!("{first}: {last}"),
        },
        _ => text.trim().to_string(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match effective_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtprelay: config error: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        return match config::to_toml(&cfg) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rtprelay: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Err(e) = rtprelay::logging::init(&cfg.log) {
        eprintln!("rtprelay: config error: {e}");
        return ExitCode::from(2);
    }
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rtprelay: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: RelayConfig) -> Result<(), String> {
    let media = rtprelay::media::start(&cfg.media).map_err(|e| e.to_string())?;
    tracing::info!(
        datapath = media.datapath_kind().as_str(),
        requested = ?cfg.media.datapath,
        shards = media.shard_count(),
        ports = %format!("{}-{}", cfg.media.port_min, cfg.media.port_max),
        listen = %cfg.media.listen,
        "media plane running"
    );
    let stats = media.stats_handle();
    let shard_stats = media.stats_handle();
    let ready_stats = media.stats_handle();
    let shards = media.shard_count();
    let datapath = media.datapath_kind().as_str();
    let registry = Registry::new();
    let control_metrics =
        ControlMetrics::register(&registry).map_err(|e| format!("metrics: {e}"))?;
    ShardCollector::register(&registry, media_source(stats))
        .map_err(|e| format!("metrics: {e}"))?;
    rtprelay::metrics::register_process(&registry, datapath)
        .map_err(|e| format!("metrics: {e}"))?;

    // The control task calls the media plane synchronously (short queue round trips); a second
    // worker keeps /metrics answering meanwhile.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("rtprelay-ctl")
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = rt.block_on(async {
        // Register the signal handlers first, so a SIGTERM/SIGINT during startup is not lost.
        let shutdown = shutdown_signal()?;
        let admin = rtprelay::admin::bind(cfg.admin.listen)
            .await
            .map_err(|e| format!("admin.listen {}: {e}", cfg.admin.listen))?;
        let session = rtprelay::control::SessionConfig::from_config(
            &cfg.media,
            &cfg.control,
            server::default_max_sessions(&cfg.media),
        );
        let ctl = server::Server::bind(&cfg.control, session, Box::new(media), control_metrics)
            .await
            .map_err(|e| {
                format!(
                    "control socket (control.udp {:?}, control.unix {:?}): {e}",
                    cfg.control.udp, cfg.control.unix
                )
            })?;
        tracing::info!(udp = ?ctl.udp_addr(), unix = ?cfg.control.unix, "control listening");
        // Served once the control server exists: /ready reads its drain flag.
        let draining = ctl.drain_flag();
        let ready: rtprelay::admin::ReadyCheck = std::sync::Arc::new(move || {
            rtprelay::admin::relay_readiness(
                draining.load(std::sync::atomic::Ordering::Relaxed),
                &ready_stats.stopped_shards(),
            )
        });
        tokio::spawn(rtprelay::admin::serve_with_ready(admin, registry, ready));
        tracing::info!(admin = %cfg.admin.listen, "admin listener ready");
        let mut notifier = rtprelay::sd_notify::Notifier::from_env();
        if let Some(n) = &notifier {
            n.ready(&format!(
                "control {}, {shards} {datapath} shard(s), ports {}-{}",
                ctl.udp_addr()
                    .map_or_else(|| "unix".to_string(), |a| a.to_string()),
                cfg.media.port_min,
                cfg.media.port_max
            ));
        }
        let drain = std::time::Duration::from_secs(cfg.control.drain_timeout_s);
        // The control server runs as a task on a worker, not in `block_on` on this thread: the
        // workers poll the socket readiness, so a datagram then wakes the thread that runs the
        // server instead of waking a worker that has to wake this thread (a context switch per
        // batch of commands, ~15 % of the relay's CPU in `rtpload --setup-only`).
        let control = tokio::spawn(ctl.serve_with_drain(shutdown, drain));
        let result = tokio::select! {
            r = control => match r {
                Ok(r) => r.map_err(|e| format!("control server: {e}")),
                Err(e) => Err(format!("control server task: {e}")),
            },
            _ = watchdog(notifier.as_mut(), shard_stats) => Ok(()),
        };
        tracing::info!("stopped");
        if let Some(n) = &notifier {
            n.stopping("shutting down");
        }
        result
    });
    // Dropping the runtime drops the control server and with it the media plane, whose Drop
    // stops and joins the shard threads.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// `WATCHDOG=1` only while every shard's loop keeps turning (each turns at least every 100 ms
/// tick when idle) and this control runtime answers: a stuck shard gets the relay restarted.
/// Never returns.
async fn watchdog(
    notifier: Option<&mut rtprelay::sd_notify::Notifier>,
    stats: rtprelay::media::StatsHandle,
) {
    let Some(n) = notifier else {
        return std::future::pending().await;
    };
    let mut last: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now: Vec<u64> = stats.snapshot().iter().map(|s| s.loop_iterations).collect();
        let moved = last.is_empty()
            || (now.len() == last.len() && now.iter().zip(&last).all(|(a, b)| a > b));
        if n.watchdog_tick(std::time::Instant::now(), moved) {
            last = now;
        }
    }
}

/// SIGTERM or SIGINT, as stop requests for the control server (the first drains, the second
/// stops at once; with `control.drain_timeout_s = 0` the first stops). SIGHUP is logged. The
/// handlers are installed when this is called.
fn shutdown_signal() -> Result<tokio::sync::mpsc::UnboundedReceiver<()>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (kind, name) in [
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
    ] {
        let mut s = signal(kind).map_err(|e| format!("{name} handler: {e}"))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                tracing::info!(signal = name, "stop requested");
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
    }
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::warn!(
                "SIGHUP: configuration reload is not implemented yet; restart rtprelay to apply a changed file"
            );
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rtprelay").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_run_on_loopback() {
        let c = effective_config(&cli(&[])).unwrap();
        assert!(c.media.listen.is_loopback());
        assert!(c.control.udp.unwrap().ip().is_loopback());
    }

    #[test]
    fn flags_override() {
        let c = effective_config(&cli(&[
            "--ports",
            "40000-40099",
            "--datapath",
            "fallback",
            "--threads",
            "1",
            "--timeout",
            "5",
            "--no-strict-source",
            "--control-udp",
            "127.0.0.1:9",
        ]))
        .unwrap();
        assert_eq!((c.media.port_min, c.media.port_max), (40000, 40099));
        assert_eq!(c.media.datapath, DatapathKind::Fallback);
        assert_eq!(c.media.threads, 1);
        assert_eq!(c.media.timeout_s, 5);
        assert!(!c.media.strict_source);
        assert_eq!(c.control.udp.unwrap().port(), 9);
        assert_eq!(
            cli(&["--datapath", "io_uring"]).datapath.map(|d| d as u8),
            Some(DatapathArg::IoUring as u8)
        );
    }

    #[test]
    fn bad_values_name_the_key_on_one_line() {
        let e = effective_config(&cli(&["--ports", "40000-39000"])).unwrap_err();
        let l = one_line(&e);
        assert!(l.contains("media.port_max") && !l.contains('\n'), "{l}");
        let e = config::from_str::<RelayConfig>("[media]\nport_mn = 3\n").unwrap_err();
        let l = one_line(&e);
        assert!(
            l.contains("port_mn") && l.contains("line 2") && !l.contains('\n'),
            "{l}"
        );
        let e = config::from_str::<RelayConfig>("[media]\nport_min = \"x\"\n").unwrap_err();
        let l = one_line(&e);
        assert!(l.contains("port_min = \"x\"") && !l.contains('\n'), "{l}");
        assert!(Cli::try_parse_from(["rtprelay", "--ports", "1-x"]).is_err());
    }
}
