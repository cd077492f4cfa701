//! `edge` binary: load the config (embedded defaults, TOML file, then flags), start the shell.

use clap::Parser;
use config::{EdgeConfig, ForkingMode, IpNet, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "SIP edge proxy and mid-registrar")]
struct Args {
    /// TOML config file (every key optional; see config/examples/edge.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Validate the configuration (file and flags), print it with every default filled in, and
    /// exit: 0 when valid, 2 when not (like `kamailio -c`).
    #[arg(long)]
    check_config: bool,
    /// UDP listen address (repeatable). Any --listen-* flag replaces both listen lists of the file.
    #[arg(long = "listen-udp")]
    listen_udp: Vec<SocketAddr>,
    /// TCP listen address (repeatable).
    #[arg(long = "listen-tcp")]
    listen_tcp: Vec<SocketAddr>,
    /// Core proxy/registrar, `[udp:|tcp:]ip:port` (repeatable; replaces routing.core).
    #[arg(long)]
    core: Vec<String>,
    /// Seconds between OPTIONS health probes to each core entry, 0 = off (replaces
    /// routing.health_interval_s).
    #[arg(long = "health-interval")]
    health_interval: Option<u64>,
    /// Unanswered health probes in a row before a core entry is down (overrides
    /// routing.health_misses).
    #[arg(long = "health-misses")]
    health_misses: Option<u32>,
    /// Seconds between the relay checks of confirmed calls, 0 = off (overrides
    /// media.check_interval_s).
    #[arg(long = "media-check-interval")]
    media_check_interval: Option<u64>,
    /// Network treated as core side (repeatable; added to routing.trusted_networks).
    #[arg(long)]
    trusted: Vec<IpNet>,
    /// Admin HTTP address for /metrics and /health.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Do not insert Record-Route.
    #[arg(long)]
    no_record_route: bool,
    /// parallel | sequential
    #[arg(long)]
    forking: Option<String>,
    /// Follow 3xx Contacts: true | false.
    #[arg(long = "recurse-3xx")]
    recurse_3xx: Option<bool>,
    /// Media anchoring: always | nat | never (replaces media.mode).
    #[arg(long = "media-mode")]
    media_mode: Option<String>,
    /// RTP relay control address `ip:port` (repeatable; replaces media.relays, weight 1).
    #[arg(long)]
    relay: Vec<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// tracing filter, e.g. `info`, `edge=debug`.
    #[arg(long)]
    log_level: Option<String>,
    /// Mid-registrar mode: mirror | contact | aor (replaces registrar.mode).
    #[arg(long = "registrar-mode")]
    registrar_mode: Option<String>,
    /// Per-source packet rate limit of the access side, packets/s; 0 = off (replaces
    /// limits.source_rate).
    #[arg(long = "source-rate")]
    source_rate: Option<u32>,
    /// Packets a source may send at once above the rate (replaces limits.source_burst).
    #[arg(long = "source-burst")]
    source_burst: Option<u32>,
    /// Seconds a source over its rate limit is dropped; 0 = drop only the excess (replaces
    /// limits.source_block_s).
    #[arg(long = "source-block")]
    source_block: Option<u64>,
    /// Copy every SIP message sent and received to this HEP v3 collector `ip:port` (UDP);
    /// turns hep.enabled on (replaces hep.collector).
    #[arg(long = "hep-collector")]
    hep_collector: Option<SocketAddr>,
    /// Location log path (replaces registrar.store_path).
    #[arg(long)]
    store: Option<PathBuf>,
}

fn load(args: &Args) -> Result<EdgeConfig, String> {
    let mut cfg: EdgeConfig = match &args.config {
        Some(path) => config::from_file(path).map_err(|e| e.to_string())?,
        None => EdgeConfig::default(),
    };
    if !args.listen_udp.is_empty() || !args.listen_tcp.is_empty() {
        cfg.sip.listen_udp = args.listen_udp.clone();
        cfg.sip.listen_tcp = args.listen_tcp.clone();
    }
    if !args.core.is_empty() {
        cfg.routing.core = args.core.clone();
    }
    if let Some(s) = args.media_check_interval {
        cfg.media.check_interval_s = s;
    }
    if let Some(n) = args.health_misses {
        cfg.routing.health_misses = n;
    }
    if let Some(s) = args.health_interval {
        cfg.routing.health_interval_s = s;
    }
    cfg.routing
        .trusted_networks
        .extend(args.trusted.iter().cloned());
    if let Some(a) = args.admin {
        cfg.admin.listen = a;
    }
    if args.no_record_route {
        cfg.proxy.record_route = false;
    }
    if let Some(f) = &args.forking {
        cfg.proxy.forking = match f.as_str() {
            "parallel" => ForkingMode::Parallel,
            "sequential" => ForkingMode::Sequential,
            other => return Err(format!("--forking: `{other}` is not parallel|sequential")),
        };
    }
    if let Some(r) = args.recurse_3xx {
        cfg.proxy.recurse_3xx = r;
    }
    if let Some(m) = &args.media_mode {
        cfg.media.mode = match m.as_str() {
            "always" => config::MediaMode::Always,
            "nat" => config::MediaMode::Nat,
            "never" => config::MediaMode::Never,
            other => return Err(format!("--media-mode: `{other}` is not always|nat|never")),
        };
    }
    if !args.relay.is_empty() {
        cfg.media.relays = args
            .relay
            .iter()
            .map(|a| config::RelayTarget {
                addr: *a,
                weight: 1,
            })
            .collect();
    }
    if args.log_json {
        cfg.log.format = LogFormat::Json;
    }
    if let Some(l) = &args.log_level {
        cfg.log.level = l.clone();
    }
    if let Some(m) = &args.registrar_mode {
        cfg.registrar.mode = match m.as_str() {
            "mirror" => config::RegistrarMode::Mirror,
            "contact" => config::RegistrarMode::Contact,
            "aor" => config::RegistrarMode::Aor,
            other => {
                return Err(format!(
                    "--registrar-mode: `{other}` is not mirror|contact|aor"
                ))
            }
        };
    }
    if let Some(r) = args.source_rate {
        cfg.limits.source_rate = r;
    }
    if let Some(b) = args.source_burst {
        cfg.limits.source_burst = b;
    }
    if let Some(b) = args.source_block {
        cfg.limits.source_block_s = b;
    }
    if let Some(c) = args.hep_collector {
        cfg.hep.enabled = true;
        cfg.hep.collector = c;
    }
    if let Some(p) = &args.store {
        cfg.registrar.store_path = p.clone();
    }
    config::Validate::validate(&cfg).map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() {
    let args = Args::parse();
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edge: {e}");
            std::process::exit(2);
        }
    };
    if args.check_config {
        match config::to_toml(&cfg) {
            Ok(text) => {
                print!("{text}");
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("edge: {e}");
                std::process::exit(2);
            }
        }
    }
    let set_level = match sbc_shared::logging::init(&cfg.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("edge: {e}");
            std::process::exit(2);
        }
    };
    let reloader = edge::server::Reloader {
        load: Box::new(move || load(&args)),
        set_level,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let metrics = edge::metrics::Metrics::new();
    if let Err(e) = local.block_on(&rt, edge::server::run(cfg, metrics, Some(reloader))) {
        eprintln!("edge: {e}");
        std::process::exit(1);
    }
}
