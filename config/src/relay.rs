//! `rtprelay` configuration. See `config/examples/rtprelay.toml` for every key with its default.

use crate::edge::{admin_default, AdminConfig, LogConfig};
use crate::{ConfigError, Validate};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub control: ControlConfig,
    pub media: MediaConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            control: ControlConfig::default(),
            media: MediaConfig::default(),
            admin: admin_default(9561),
            log: LogConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// rtpproxy protocol over UDP (cookie-framed). rtpproxy's customary port is 22222.
    pub udp: Option<SocketAddr>,
    /// rtpproxy protocol over a unix stream socket (`unix:` one command per connection is also
    /// accepted as a persistent line-per-command connection).
    pub unix: Option<String>,
    /// Only these sources may send commands (the protocol has no authentication).
    pub allow: Vec<IpNet>,
    /// How long a reply stays in the retransmission cache (s).
    pub reply_cache_s: u64,
    /// Streams one call (Call-ID) may hold; one more is refused with `E83`. 0: no limit.
    pub max_streams_per_call: usize,
    /// Calls one control client (source IP) may hold; a new call beyond is refused with
    /// `E84`. 0: only the relay-wide limit (a quarter of the media ports).
    pub max_sessions_per_client: usize,
    /// On SIGTERM new calls are refused (`E98`) and streams in progress go on until they end,
    /// for at most this long (s; 0: stop at once).
    pub drain_timeout_s: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            udp: Some(SocketAddr::from(([127, 0, 0, 1], 22222))),
            unix: None,
            allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            reply_cache_s: 30,
            max_streams_per_call: 16,
            max_sessions_per_client: 0,
            drain_timeout_s: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DatapathKind {
    /// io_uring when it can be set up, else the recvmmsg/sendmmsg fallback.
    #[default]
    Auto,
    IoUring,
    Fallback,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address the media sockets bind to.
    pub listen: IpAddr,
    /// Address announced in replies (public address behind 1:1 NAT). Empty: `listen`.
    pub advertise: Option<IpAddr>,
    /// Optional second ("external") interface for bridging (`e`/`i` modifiers).
    pub external: Option<IpAddr>,
    /// First media port (inclusive, made even).
    pub port_min: u16,
    /// Last media port (inclusive).
    pub port_max: u16,
    /// Datapath threads (= port-table shards); 0 = number of CPUs.
    pub threads: usize,
    pub datapath: DatapathKind,
    /// Pin each datapath thread to a CPU.
    pub pin_threads: bool,
    /// A session with no packets for this long is deleted (s).
    pub timeout_s: u64,
    /// Latch only the address given by signalling (or the first source when that is private);
    /// never re-latch to another address except by the SSRC-checked rule.
    pub strict_source: bool,
    /// Provided buffers per shard ring (io_uring); a power of two.
    pub ring_buffers: u32,
    /// Port pairs each shard keeps bound ahead of use on `listen` (random ports, like any
    /// allocation), so that a new stream costs no bind; 0 = bind when a stream is created.
    pub socket_pool: usize,
    /// Port pairs per shard kept bound after their stream ended, to go back to the socket pool
    /// once their quarantine is over (no close, no new bind); beyond this many, a freed pair's
    /// sockets are closed at once. Bounds the idle open sockets a burst of call ends leaves
    /// (two descriptors per pair). 0 = always close; only with `socket_pool` > 0.
    pub socket_recycle: usize,
}

/// Upper bound of `media.socket_pool` (pairs per shard).
pub const MAX_SOCKET_POOL: usize = 4096;
/// Upper bound of `media.socket_recycle` (pairs per shard).
pub const MAX_SOCKET_RECYCLE: usize = 16384;

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            listen: IpAddr::from([127, 0, 0, 1]),
            advertise: None,
            external: None,
            port_min: 30_000,
            port_max: 40_000,
            threads: 0,
            datapath: DatapathKind::Auto,
            pin_threads: true,
            timeout_s: 60,
            strict_source: true,
            ring_buffers: 4096,
            socket_pool: 32,
            socket_recycle: 1024,
        }
    }
}

impl Validate for RelayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.log.filter()?;
        let m = &self.media;
        if m.port_min < 1024 || m.port_max <= m.port_min {
            return Err(ConfigError::invalid(
                "media.port_max",
                "need 1024 <= media.port_min < media.port_max",
            ));
        }
        if (m.port_max - m.port_min) < 3 {
            return Err(ConfigError::invalid(
                "media.port_max",
                "range must hold at least two port pairs",
            ));
        }
        if !m.ring_buffers.is_power_of_two() || !(16..=32768).contains(&m.ring_buffers) {
            return Err(ConfigError::invalid(
                "media.ring_buffers",
                "must be a power of two in 16..=32768",
            ));
        }
        if m.socket_pool > MAX_SOCKET_POOL {
            return Err(ConfigError::invalid(
                "media.socket_pool",
                "must be at most 4096 (pairs per shard)",
            ));
        }
        if m.socket_recycle > MAX_SOCKET_RECYCLE {
            return Err(ConfigError::invalid(
                "media.socket_recycle",
                "must be at most 16384 (pairs per shard)",
            ));
        }
        if m.timeout_s == 0 {
            return Err(ConfigError::invalid("media.timeout_s", "must be >= 1"));
        }
        if self.control.udp.is_none() && self.control.unix.is_none() {
            return Err(ConfigError::invalid(
                "control.udp",
                "no control socket (set control.udp or control.unix)",
            ));
        }
        Ok(())
    }
}
