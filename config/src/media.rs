//! `[media]` of the edge: media anchoring policy and the RTP relays it drives. See
//! `config/examples/edge.toml` for every key with its default.

use crate::{ConfigError, Validate};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// When the edge puts a call's media through a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    /// Every call with SDP is anchored on a relay.
    #[default]
    Always,
    /// Only calls where one side is behind NAT.
    Nat,
    /// Never; a NATed phone's c= lines are set to its received source address instead
    /// (what Kamailio's nathelper `fix_nated_sdp` does).
    Never,
}

/// What to do with a message whose relay command failed (timeout on every relay, error reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RelayFailure {
    /// Forward the SDP unchanged: a NATed phone's private SDP then reaches the other party,
    /// which means silent or one-way audio; only for networks where phones are reachable.
    Forward,
    /// Fail the call: a request with an offer gets 503 Service Unavailable (counted in
    /// `edge_media_refused_total{reason="relay_failure"}`, logged once per relay outage);
    /// responses are forwarded unchanged.
    #[default]
    Reject,
}

/// One relay (rtpproxy protocol over UDP: rtprelay, rtpproxy or rtpengine `--listen-udp`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelayTarget {
    /// Control address, e.g. `127.0.0.1:22222`.
    pub addr: SocketAddr,
    /// Share of new calls relative to the other live relays.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeMediaConfig {
    pub mode: MediaMode,
    /// The relay set; new calls are spread by weight over the relays that are up.
    pub relays: Vec<RelayTarget>,
    /// Keep ICE candidates (and ice-ufrag/pwd/options) in relayed SDP instead of removing them.
    pub keep_ice: bool,
    pub on_relay_failure: RelayFailure,
    /// Most media streams (relayable m= lines) one SDP may have; more: 488 Not Acceptable
    /// Here, and nothing is opened on a relay.
    pub max_streams_per_sdp: usize,
    /// Retransmit a relay command after this long without a reply (ms).
    pub retransmit_ms: u64,
    /// Sends of one command (first + retransmissions) before the relay counts as failed.
    pub command_tries: u32,
    /// Interval of the `V` health ping to each relay (ms); a relay that failed a command is
    /// skipped for new calls until a ping succeeds.
    pub health_interval_ms: u64,
    /// A dialog that never sees a BYE is deleted on the relay after this long (s).
    pub max_call_duration_s: u64,
    /// An INVITE with an offer that gets no final response within this long is cleaned up
    /// (s; a backstop behind the proxy's Timer C).
    pub early_timeout_s: u64,
    /// Every this many seconds each confirmed call's streams are queried on its relay (`Q`);
    /// a call the relay no longer knows (its media timed out, or the relay restarted and lost
    /// it) is ended with a BYE to both parties. 0 turns the check off.
    pub check_interval_s: u64,
}

impl Default for EdgeMediaConfig {
    fn default() -> Self {
        EdgeMediaConfig {
            mode: MediaMode::Always,
            relays: vec![RelayTarget {
                addr: SocketAddr::from(([127, 0, 0, 1], 22222)),
                weight: 1,
            }],
            keep_ice: false,
            on_relay_failure: RelayFailure::Reject,
            max_streams_per_sdp: 8,
            retransmit_ms: 500,
            command_tries: 3,
            health_interval_ms: 5_000,
            max_call_duration_s: 14_400,
            early_timeout_s: 200,
            check_interval_s: 5,
        }
    }
}

impl Validate for EdgeMediaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.mode != MediaMode::Never && self.relays.is_empty() {
            return Err(ConfigError::invalid(
                "media.relays",
                "at least one relay unless media.mode = \"never\"",
            ));
        }
        if self.relays.iter().any(|r| r.weight == 0) {
            return Err(ConfigError::invalid("media.relays", "weight must be >= 1"));
        }
        if self.retransmit_ms == 0 || self.command_tries == 0 {
            return Err(ConfigError::invalid(
                "media.retransmit_ms",
                "retransmit_ms and command_tries must be >= 1",
            ));
        }
        if self.health_interval_ms < 100 {
            return Err(ConfigError::invalid(
                "media.health_interval_ms",
                "must be >= 100",
            ));
        }
        if self.max_streams_per_sdp == 0 {
            return Err(ConfigError::invalid(
                "media.max_streams_per_sdp",
                "must be >= 1",
            ));
        }
        if self.check_interval_s > 3_600 {
            return Err(ConfigError::invalid(
                "media.check_interval_s",
                "must be 0 (off) to 3600",
            ));
        }
        if self.max_call_duration_s == 0 || self.early_timeout_s == 0 {
            return Err(ConfigError::invalid(
                "media.max_call_duration_s",
                "max_call_duration_s and early_timeout_s must be >= 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parse() {
        let d = EdgeMediaConfig::default();
        assert!(d.validate().is_ok());
        let c: EdgeMediaConfig = crate::from_str(
            r#"mode = "nat"
relays = [{ addr = "127.0.0.1:22222", weight = 3 }, { addr = "127.0.0.2:22222" }]
keep_ice = true
on_relay_failure = "forward"
max_streams_per_sdp = 4
"#,
        )
        .unwrap();
        assert_eq!(c.mode, MediaMode::Nat);
        assert_eq!(c.relays.len(), 2);
        assert_eq!(c.relays[0].weight, 3);
        assert_eq!(c.relays[1].weight, 1);
        assert!(c.keep_ice);
        assert_eq!(d.on_relay_failure, RelayFailure::Reject);
        assert_eq!((d.max_streams_per_sdp, c.max_streams_per_sdp), (8, 4));
        assert_eq!(c.on_relay_failure, RelayFailure::Forward);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = crate::from_str::<EdgeMediaConfig>("relays = []").unwrap_err();
        assert!(e.to_string().contains("media.relays"), "{e}");
        assert!(crate::from_str::<EdgeMediaConfig>("mode = \"never\"\nrelays = []").is_ok());
        let e = crate::from_str::<EdgeMediaConfig>("command_tries = 0").unwrap_err();
        assert!(e.to_string().contains("media.retransmit_ms"), "{e}");
        assert!(crate::from_str::<EdgeMediaConfig>("bogus = 1").is_err());
    }
}
