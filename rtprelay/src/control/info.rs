//! `V`, `VF`, `I`, `G`, and the refused recorder/player/copy family.
//!
//! - `V` answers the base version `20040107`; `VF <date>` answers `1` for the capability
//!   dates listed in [`super::proto::SUPPORTED_FEATURES`], else `0`.
//! - `I` answers totals, one `name: value` per line, then (not with `Ib`) one line per
//!   stream, at most [`INFO_MAX_STREAMS`] of them followed by `... N more`. In rtpproxy's
//!   words, kept for compatibility, a "session" is a stream: `sessions created`,
//!   `active sessions` and `sessions timed out` count streams (`rtprelay_streams`,
//!   `rtprelay_streams_created_total`, `rtprelay_timeouts_total`); `active calls` counts
//!   Call-IDs (`rtprelay_sessions`).
//! - `G [name...]` answers relay-wide counters in the order asked (all of [`GLOBAL_STATS`]
//!   when none is named), space separated; `Gv` writes `name=value`. Unknown name: `E34`;
//!   the media plane failing to report live counters: `E68`.
//! - `R`/`N`/`C` answer `E65`, `P`/`S` answer `E60`: rtprelay neither records nor plays.

use super::proto::{
    feature_supported, Command, ErrorCode, MediaOp, MediaOpKind, Reply, BASE_VERSION,
};
use super::session::SessionManager;
use crate::backend::MediaBackend;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

/// Streams listed by a non-brief `I` (the reply must fit a datagram).
pub const INFO_MAX_STREAMS: usize = 100;

/// `G` names (rtpproxy's where one exists).
pub const GLOBAL_STATS: &[&str] = &[
    "nsess_created",
    "nsess_destroyed",
    "nsess_timeout",
    "nsess_active",
    "ncalls_active",
    "npkts_rcvd",
    "npkts_relayed",
    "npkts_discard",
];

impl SessionManager {
    pub(super) fn version(&self, cmd: &Command) -> Reply {
        match cmd {
            Command::VersionFeature(date) => Reply::Number(u64::from(feature_supported(*date))),
            _ => Reply::Number(u64::from(BASE_VERSION)),
        }
    }

    pub(super) fn info(&self, brief: bool, backend: &mut dyn MediaBackend, now: Instant) -> Reply {
        let t = self.totals;
        let mut s = format!(
            "sessions created: {}\nactive sessions: {}\nactive calls: {}\nsessions timed out: {}",
            t.streams_created,
            self.streams(),
            self.sessions(),
            t.streams_timed_out
        );
        if brief {
            return Reply::Text(s);
        }
        let mut listed = 0;
        for (call_id, streams) in &self.calls {
            for st in streams {
                if listed == INFO_MAX_STREAMS {
                    let _ = write!(s, "\n... {} more", self.streams() - listed);
                    return Reply::Text(s);
                }
                listed += 1;
                let ca = backend.counters(st.legs[0]).unwrap_or_default();
                let cb = backend.counters(st.legs[1]).unwrap_or_default();
                let _ = write!(
                    s,
                    "\n{call_id}{}{}/{} {}/{}: caller = {} -> {}, callee = {} -> {}, packets = {}/{}/{}/{}, ttl = {}",
                    if st.branch.is_some() { ";" } else { "" },
                    st.branch.as_deref().unwrap_or(""),
                    st.number,
                    st.a_tag,
                    st.b_tag.as_deref().unwrap_or("NONE"),
                    st.legs[0].port,
                    addr(ca.latched.or(st.specs[0].remote)),
                    st.legs[1].port,
                    addr(cb.latched.or(st.specs[1].remote)),
                    ca.packets_in,
                    cb.packets_in,
                    ca.packets_out + cb.packets_out,
                    ca.dropped + cb.dropped,
                    self.ttl(st, &ca, &cb, now),
                );
            }
        }
        Reply::Text(s)
    }

    pub(super) fn stats(
        &self,
        verbose: bool,
        names: &[String],
        backend: &mut dyn MediaBackend,
    ) -> Reply {
        let names: Vec<&str> = if names.is_empty() {
            GLOBAL_STATS.to_vec()
        } else {
            names.iter().map(String::as_str).collect()
        };
        if let Some(bad) = names.iter().find(|n| !GLOBAL_STATS.contains(n)) {
            tracing::debug!(name = bad, "unknown statistic");
            return ErrorCode::INVALID_STAT.into();
        }
        // Live streams' packets are only gathered when asked for: one call per leg.
        let (mut rcvd, mut relayed, mut discard) = (
            self.totals.ended_packets_in,
            self.totals.ended_packets_relayed,
            self.totals.ended_packets_dropped,
        );
        if names.iter().any(|n| n.starts_with("npkts")) {
            for st in self.calls.values().flatten() {
                for leg in st.legs {
                    match backend.counters(leg) {
                        Ok(c) => {
                            rcvd += c.packets_in;
                            relayed += c.packets_out;
                            discard += c.dropped;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "counters unavailable");
                            return ErrorCode::STATS_FAILED.into();
                        }
                    }
                }
            }
        }
        let t = self.totals;
        let parts: Vec<String> = names
            .iter()
            .map(|name| {
                let v = match *name {
                    "nsess_created" => t.streams_created,
                    "nsess_destroyed" => t.streams_destroyed,
                    "nsess_timeout" => t.streams_timed_out,
                    "nsess_active" => self.streams() as u64,
                    "ncalls_active" => self.sessions() as u64,
                    "npkts_rcvd" => rcvd,
                    "npkts_relayed" => relayed,
                    _ => discard,
                };
                if verbose {
                    format!("{name}={v}")
                } else {
                    v.to_string()
                }
            })
            .collect();
        Reply::Text(parts.join(" "))
    }

    pub(super) fn media_op(&self, op: &MediaOp) -> Reply {
        match op.kind {
            MediaOpKind::Play | MediaOpKind::StopPlay => ErrorCode::PLAYER_FAILED.into(),
            MediaOpKind::Record | MediaOpKind::NoRecord | MediaOpKind::Copy => {
                ErrorCode::RECORD_FAILED.into()
            }
        }
    }
}

fn addr(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "NONE".to_owned(), |a| a.to_string())
}
