//! `edge` configuration. See `config/examples/edge.toml` for every key with its default.

use crate::{ConfigError, Validate};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    pub sip: SipConfig,
    pub limits: LimitsConfig,
    pub timers: TimersConfig,
    pub routing: RoutingConfig,
    pub proxy: ProxyConfig,
    pub media: crate::EdgeMediaConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub registrar: crate::RegistrarConfig,
    pub hep: HepConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP listen addresses (IPv4 or IPv6).
    pub listen_udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub listen_tcp: Vec<SocketAddr>,
    /// Host (or IP) written into Via and Record-Route instead of the listen IP, e.g. the public
    /// address when the edge sits behind a 1:1 NAT. Empty: the listen address.
    pub advertise: Option<String>,
}

impl Default for SipConfig {
    fn default() -> Self {
        let addr: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        SipConfig {
            listen_udp: vec![addr],
            listen_tcp: vec![addr],
            advertise: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest SIP message accepted (bytes); larger ones get 513 or are dropped.
    pub max_message_bytes: usize,
    /// Most header fields in one message; more gets 400.
    pub max_headers: usize,
    /// Most transactions in progress (before their final response); beyond it new requests
    /// get 503. Transactions in wait states (absorbing retransmissions, a few hundred bytes
    /// each) are bounded by their RFC 3261 timers, not by this.
    pub max_transactions: usize,
    /// Most server transactions of one access-side source IP still waiting for their final
    /// response (a NAT site is one source); beyond it its new requests get a stateless 503.
    pub max_transactions_per_source: usize,
    /// Most simultaneous TCP connections (inbound and outbound); more inbound ones are refused.
    pub max_tcp_connections: usize,
    /// Most simultaneous inbound TCP connections from one source IP.
    pub max_tcp_connections_per_ip: usize,
    /// Most simultaneous outbound TCP connections the edge opens itself.
    pub max_tcp_outbound: usize,
    /// TCP connections idle between messages are closed after this many seconds.
    pub tcp_idle_timeout_s: u64,
    /// A message whose first byte arrived at t must be complete by t + this many seconds, however
    /// slowly the rest trickles in (slowloris); else the connection is closed.
    pub tcp_message_deadline_s: u64,
    /// Most bytes queued for writing on one TCP connection; a peer that lets more pile up (it
    /// does not read) is disconnected.
    pub tcp_write_queue_bytes: usize,
    /// A TCP write that makes no progress for this many seconds closes the connection.
    pub tcp_write_timeout_s: u64,
    /// Per-source packet rate limit on the access side (packets/s per source IP: requests,
    /// responses and keepalives alike); 0 turns the limit off.
    pub source_rate: u32,
    /// Packets a source may send at once above `source_rate` (token bucket size).
    pub source_burst: u32,
    /// A source over its limit is dropped silently for this many seconds; 0 drops only the
    /// packets over the limit.
    pub source_block_s: u64,
    /// Most sources tracked at once (memory bound under a spoofed-source flood); idle sources
    /// are evicted, and sources beyond it share one bucket.
    pub max_tracked_sources: usize,
    /// Per-network limits replacing `source_rate`/`source_burst`, first match wins: e.g. a
    /// customer PBX trunk on the access side with a contracted call rate.
    pub source_overrides: Vec<SourceOverride>,
}

/// One `limits.source_overrides` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOverride {
    /// Source network (`ip/prefix`).
    pub network: IpNet,
    /// Packets/s per source IP in `network`; 0: not limited.
    pub rate: u32,
    /// Bucket size; defaults to twice `rate`.
    #[serde(default)]
    pub burst: Option<u32>,
}

impl SourceOverride {
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate.saturating_mul(2))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 65_535,
            max_headers: 128,
            max_transactions: 200_000,
            max_transactions_per_source: 10_000,
            max_tcp_connections: 10_000,
            max_tcp_connections_per_ip: 64,
            max_tcp_outbound: 1024,
            tcp_idle_timeout_s: 600,
            tcp_message_deadline_s: 10,
            tcp_write_queue_bytes: 1 << 20,
            tcp_write_timeout_s: 10,
            source_rate: 50,
            source_burst: 100,
            source_block_s: 60,
            max_tracked_sources: 100_000,
            source_overrides: Vec::new(),
        }
    }
}

impl LimitsConfig {
    /// The TCP guards: zero would refuse every connection or close every one at once.
    fn validate_tcp(&self) -> Result<(), ConfigError> {
        let counts = [
            ("limits.max_tcp_connections", self.max_tcp_connections),
            (
                "limits.max_tcp_connections_per_ip",
                self.max_tcp_connections_per_ip,
            ),
            ("limits.max_tcp_outbound", self.max_tcp_outbound),
        ];
        for (key, v) in counts {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be >= 1"));
            }
        }
        let seconds = [
            ("limits.tcp_idle_timeout_s", self.tcp_idle_timeout_s),
            ("limits.tcp_message_deadline_s", self.tcp_message_deadline_s),
            ("limits.tcp_write_timeout_s", self.tcp_write_timeout_s),
        ];
        for (key, v) in seconds {
            if !(1..=86_400).contains(&v) {
                return Err(ConfigError::invalid(key, "must be 1..=86400 seconds"));
            }
        }
        // One message must fit, or every large response would close its connection.
        if self.tcp_write_queue_bytes < self.max_message_bytes {
            return Err(ConfigError::invalid(
                "limits.tcp_write_queue_bytes",
                "must be >= limits.max_message_bytes",
            ));
        }
        Ok(())
    }
}

/// RFC 3261 §17 timer bases.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimersConfig {
    /// T1: RTT estimate (ms).
    pub t1_ms: u64,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE responses (ms).
    pub t2_ms: u64,
    /// T4: maximum time a message stays in the network (ms).
    pub t4_ms: u64,
    /// Timer C (§16.6 step 11): proxy INVITE transaction timeout (s), > 3 minutes per RFC.
    pub timer_c_s: u64,
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            timer_c_s: 180,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Core proxies/registrars in order of preference: `ip:port` or a domain name (`name` is
    /// resolved by DNS SRV `_sip._udp|_sip._tcp.name` then A/AAAA, RFC 3263; `name:port` by
    /// A/AAAA only), optionally prefixed by `udp:` or `tcp:` (default udp) and followed by
    /// `;priority=N` (lower first, default 0; equal priorities keep list order). The first
    /// healthy one gets access-side requests.
    pub core: Vec<String>,
    /// Sources in these networks are "core side" (besides the core addresses themselves).
    pub trusted_networks: Vec<IpNet>,
    /// Seconds between OPTIONS health probes to each core entry; 0 turns probing off.
    pub health_interval_s: u64,
    /// Consecutive probes left unanswered for one interval each before a core entry is marked
    /// down (its in-flight requests without a provisional then fail over to the next entry).
    /// Down is detected after `health_misses` × `health_interval_s`; a closed port (ICMP
    /// unreachable) marks it down at once.
    pub health_misses: u32,
    /// DNS servers (`ip:port`) for domain-name core entries; empty: the system's
    /// (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            core: vec!["127.0.0.1:5070".to_string()],
            trusted_networks: Vec::new(),
            health_interval_s: 10,
            health_misses: 2,
            dns_servers: Vec::new(),
        }
    }
}

/// Transport of a SIP hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// One entry of `routing.core`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreTarget {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Lower is preferred (like DNS SRV priority, RFC 2782).
    pub priority: u16,
}

impl CoreTarget {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (s, priority) = split_params(s)?;
        let (transport, rest) = if let Some(r) = s.strip_prefix("udp:") {
            (Transport::Udp, r)
        } else if let Some(r) = s.strip_prefix("tcp:") {
            (Transport::Tcp, r)
        } else {
            (Transport::Udp, s)
        };
        let addr = rest
            .parse()
            .map_err(|_| format!("`{s}` is not [udp:|tcp:]ip:port[;priority=N]"))?;
        Ok(CoreTarget {
            transport,
            addr,
            priority,
        })
    }
}

/// A `routing.core` entry given as a domain name, resolved at run time (RFC 3263 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreDomain {
    pub transport: Transport,
    /// Lower-case, without a trailing dot.
    pub name: String,
    /// An explicit port: A/AAAA only, no SRV (RFC 3263 §4.2).
    pub port: Option<u16>,
    pub priority: u16,
}

/// One entry of `routing.core`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEntry {
    Addr(CoreTarget),
    Domain(CoreDomain),
}

impl CoreEntry {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(t) = CoreTarget::parse(s) {
            return Ok(CoreEntry::Addr(t));
        }
        let (entry, priority) = split_params(s)?;
        let (transport, rest) = if let Some(r) = entry.strip_prefix("udp:") {
            (Transport::Udp, r)
        } else if let Some(r) = entry.strip_prefix("tcp:") {
            (Transport::Tcp, r)
        } else {
            (Transport::Udp, entry)
        };
        let bad = || format!("`{s}` is not [udp:|tcp:](ip:port|domain[:port])[;priority=N]");
        let (name, port) = match rest.rsplit_once(':') {
            Some((n, p)) => (n, Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if !is_domain(&name) {
            return Err(bad());
        }
        Ok(CoreEntry::Domain(CoreDomain {
            transport,
            name,
            port,
            priority,
        }))
    }

    pub fn priority(&self) -> u16 {
        match self {
            CoreEntry::Addr(t) => t.priority,
            CoreEntry::Domain(d) => d.priority,
        }
    }
}

/// A fully qualified host name: two or more LDH labels (RFC 1123 §2.1), the last not numeric
/// (so a mistyped IP address is an error, not a name lookup).
fn is_domain(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let ldh = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(ldh)
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits `entry;priority=N` into the entry and its priority (0 when absent).
fn split_params(s: &str) -> Result<(&str, u16), String> {
    let mut parts = s.split(';');
    let entry = parts.next().unwrap_or_default().trim();
    let mut priority = 0;
    for p in parts {
        match p.trim().split_once('=') {
            Some(("priority", v)) => {
                priority = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{s}`: priority must be 0..=65535"))?;
            }
            _ => return Err(format!("`{s}`: unknown parameter `{p}` (only priority=N)")),
        }
    }
    Ok((entry, priority))
}

impl RoutingConfig {
    /// Every core entry (addresses and domain names) by priority, ties in list order.
    pub fn core_entries(&self) -> Vec<CoreEntry> {
        // validate() has checked every entry.
        let mut v: Vec<CoreEntry> = self
            .core
            .iter()
            .filter_map(|s| CoreEntry::parse(s).ok())
            .collect();
        v.sort_by_key(CoreEntry::priority);
        v
    }

    /// The core entries given as addresses, by priority (a stable sort: equal priorities keep list order).
    pub fn core_targets(&self) -> Vec<CoreTarget> {
        // validate() has checked every entry.
        let mut v: Vec<CoreTarget> = self
            .core
            .iter()
            .filter_map(|s| CoreTarget::parse(s).ok())
            .collect();
        v.sort_by_key(|c| c.priority);
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForkingMode {
    Parallel,
    Sequential,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Insert Record-Route so in-dialog requests traverse the edge (needed for NAT traversal).
    pub record_route: bool,
    /// Follow 3xx Contacts (§16.7 step 6) instead of passing the 3xx upstream.
    pub recurse_3xx: bool,
    /// Most 3xx recursions for one request.
    pub max_redirects: u32,
    /// How several targets of one request are tried (§16.6).
    pub forking: ForkingMode,
    /// Max-Forwards put on requests that arrive without one.
    pub default_max_forwards: u32,
    /// Most Contacts of one 3xx from the core that are followed (the rest are ignored).
    pub max_redirect_targets: usize,
    /// Largest request sent over UDP (RFC 3261 §18.1.1: a fragmented datagram is lost with any
    /// of its fragments). A larger one goes over TCP to the same next hop when the edge
    /// listens on TCP, else it is answered 513. The RFC's figure for an unknown path MTU is
    /// 1300; the default leaves room for large SDP on paths that reassemble reliably.
    pub max_udp_request_bytes: usize,
    /// Header fields removed from every request coming from the access side before it goes
    /// on: identity the core must assert itself, never take from a phone.
    pub strip_identity_headers: Vec<String>,
    /// File holding the key of the Record-Route integrity token (created with a random key
    /// when missing, mode 0600; relative paths are under the working directory). Keep it
    /// across restarts so that dialogs survive them.
    pub route_secret_file: std::path::PathBuf,
    /// On SIGTERM the edge drains: new dialog-forming requests and OPTIONS get 503 with
    /// `Retry-After` of this many seconds, while transactions and anchored calls in progress
    /// go on, for at most `drain_timeout_s` (0: stop at once).
    pub drain_timeout_s: u64,
    pub drain_retry_after_s: u32,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            record_route: true,
            recurse_3xx: true,
            max_redirects: 5,
            forking: ForkingMode::Parallel,
            default_max_forwards: 70,
            max_redirect_targets: 5,
            max_udp_request_bytes: 4096,
            strip_identity_headers: vec![
                "P-Asserted-Identity".into(),
                "P-Preferred-Identity".into(),
                "Remote-Party-ID".into(),
            ],
            route_secret_file: std::path::PathBuf::from("data/route.secret"),
            drain_timeout_s: 60,
            drain_retry_after_s: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// HTTP listener for `/metrics` and `/health`.
    pub listen: SocketAddr,
}

impl AdminConfig {
    fn with_port(port: u16) -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig::with_port(9560)
    }
}

/// SIP capture: a copy of every SIP message the edge sends and receives, in HEP v3 over UDP,
/// to a capture collector (Homer, sipcapture.org).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HepConfig {
    /// Off unless set: capture costs one datagram per SIP message.
    pub enabled: bool,
    /// The collector's `ip:port` (UDP).
    pub collector: SocketAddr,
    /// Capture agent id written in every packet: tells this edge apart at the collector.
    pub agent_id: u32,
    /// Authentication key the collector expects (HEP chunk 14); none when absent.
    pub password: Option<String>,
}

impl Default for HepConfig {
    fn default() -> Self {
        HepConfig {
            enabled: false,
            collector: SocketAddr::from(([127, 0, 0, 1], 9060)),
            agent_id: 0,
            password: None,
        }
    }
}

impl HepConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && (self.collector.ip().is_unspecified() || self.collector.port() == 0) {
            return Err(ConfigError::invalid(
                "hep.collector",
                format!("{} is not a collector address (ip:port)", self.collector),
            ));
        }
        // The key is one HEP chunk next to a message of up to 64 KiB in one datagram.
        if let Some(p) = &self.password {
            if p.is_empty() || p.len() > 1024 {
                return Err(ConfigError::invalid(
                    "hep.password",
                    "must be 1 to 1024 bytes (leave it out for none)",
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// tracing filter, e.g. `info` or `edge=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Level words `log.level` accepts (case-insensitive); `warning` and `err` are the syslog and
/// Kamailio spellings of `warn` and `error`.
pub const LOG_LEVELS: &str = "off, error (err), warn (warning), info, debug, trace";

impl LogConfig {
    /// The tracing filter for `level`: comma-separated `LEVEL` or `target=LEVEL` directives, with
    /// the level words normalised. Anything else is an error naming the accepted words (a typo
    /// must not silently turn logging off, which is what the filter parser does with an unknown
    /// word: it takes it for a target name).
    pub fn filter(&self) -> Result<String, ConfigError> {
        let bad = |what: &str| {
            ConfigError::invalid(
                "log.level",
                format!("`{what}` is not a level; use one of {LOG_LEVELS}, or target=LEVEL"),
            )
        };
        let mut out = Vec::new();
        for directive in self.level.split(',').map(str::trim) {
            if directive.is_empty() {
                continue;
            }
            let (target, word) = match directive.rsplit_once('=') {
                Some((t, w)) if !t.trim().is_empty() => (Some(t.trim()), w.trim()),
                Some(_) => return Err(bad(directive)),
                None => (None, directive),
            };
            let level = match word.to_ascii_lowercase().as_str() {
                "off" => "off",
                "error" | "err" => "error",
                "warn" | "warning" => "warn",
                "info" => "info",
                "debug" => "debug",
                "trace" => "trace",
                _ => return Err(bad(word)),
            };
            if target.is_some_and(|t| {
                !t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b))
            }) {
                return Err(bad(directive));
            }
            out.push(match target {
                Some(t) => format!("{t}={level}"),
                None => level.to_string(),
            });
        }
        if out.is_empty() {
            return Err(bad(&self.level));
        }
        Ok(out.join(","))
    }
}

impl Validate for EdgeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.log.filter()?;
        self.media.validate()?;
        self.registrar.validate()?;
        self.hep.validate()?;
        if self.sip.listen_udp.is_empty() && self.sip.listen_tcp.is_empty() {
            return Err(ConfigError::invalid(
                "sip.listen_udp",
                "no UDP or TCP listen address",
            ));
        }
        if self.routing.health_interval_s > 86_400 {
            return Err(ConfigError::invalid(
                "routing.health_interval_s",
                "must be 0 (off) to 86400",
            ));
        }
        if !(1..=100).contains(&self.routing.health_misses) {
            return Err(ConfigError::invalid(
                "routing.health_misses",
                "must be 1 to 100",
            ));
        }
        for c in &self.routing.core {
            CoreEntry::parse(c).map_err(|r| ConfigError::invalid("routing.core", r))?;
        }
        let l = &self.limits;
        if !(512..=1 << 20).contains(&l.max_message_bytes) {
            return Err(ConfigError::invalid(
                "limits.max_message_bytes",
                "must be between 512 and 1048576",
            ));
        }
        if l.max_transactions_per_source == 0 {
            return Err(ConfigError::invalid(
                "limits.max_transactions_per_source",
                "must be >= 1",
            ));
        }
        if l.max_headers < 8 {
            return Err(ConfigError::invalid("limits.max_headers", "must be >= 8"));
        }
        l.validate_tcp()?;
        if l.source_rate > 0 && l.source_burst == 0 {
            return Err(ConfigError::invalid(
                "limits.source_burst",
                "must be >= 1 when limits.source_rate is set",
            ));
        }
        if l.source_block_s > 86_400 {
            return Err(ConfigError::invalid(
                "limits.source_block_s",
                "must be 0 (drop only) to 86400",
            ));
        }
        if !(1..=10_000_000).contains(&l.max_tracked_sources) {
            return Err(ConfigError::invalid(
                "limits.max_tracked_sources",
                "must be 1..=10000000",
            ));
        }
        for o in &l.source_overrides {
            if o.rate > 0 && o.burst() == 0 {
                return Err(ConfigError::invalid(
                    "limits.source_overrides",
                    format!("{}: burst must be >= 1", o.network),
                ));
            }
        }
        let t = &self.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms {
            return Err(ConfigError::invalid(
                "timers.t2_ms",
                "need 0 < timers.t1_ms <= timers.t2_ms",
            ));
        }
        if t.timer_c_s < 1 {
            return Err(ConfigError::invalid("timers.timer_c_s", "must be >= 1"));
        }
        if !(1300..=65_000).contains(&self.proxy.max_udp_request_bytes) {
            return Err(ConfigError::invalid(
                "proxy.max_udp_request_bytes",
                "must be between 1300 and 65000",
            ));
        }
        if self.proxy.max_redirect_targets == 0 || self.proxy.max_redirect_targets > 100 {
            return Err(ConfigError::invalid(
                "proxy.max_redirect_targets",
                "must be 1..=100",
            ));
        }
        if let Some(bad) = self.proxy.strip_identity_headers.iter().find(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
        }) {
            return Err(ConfigError::invalid(
                "proxy.strip_identity_headers",
                format!("{bad:?} is not a header field name"),
            ));
        }
        if self.proxy.default_max_forwards == 0 || self.proxy.default_max_forwards > 255 {
            return Err(ConfigError::invalid(
                "proxy.default_max_forwards",
                "must be 1..=255",
            ));
        }
        Ok(())
    }
}

/// Shared with rtprelay's config.
pub(crate) fn admin_default(port: u16) -> AdminConfig {
    AdminConfig::with_port(port)
}

#[cfg(test)]
mod log_tests {
    use super::*;

    fn filter(level: &str) -> Result<String, ConfigError> {
        LogConfig {
            level: level.into(),
            ..LogConfig::default()
        }
        .filter()
    }

    #[test]
    fn log_levels_are_normalised_or_refused_by_name() {
        assert_eq!(filter("warning").unwrap(), "warn");
        assert_eq!(filter("ERR").unwrap(), "error");
        assert_eq!(
            filter("info, edge::proxy=Debug").unwrap(),
            "info,edge::proxy=debug"
        );
        for bad in ["warnings", "", "verbose", "edge=loud", "=info", "a b=info"] {
            let e = filter(bad).unwrap_err().to_string();
            assert!(
                e.contains("log.level") && e.contains("warning"),
                "{bad}: {e}"
            );
        }
    }
}
