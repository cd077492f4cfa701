//! `Q`: per-stream counters.
//!
//! Plain `Q callid from-tag [to-tag]` answers rtpengine's/rtpproxy's five numbers
//! `ttl a_in b_in relayed dropped`: seconds left before the inactivity timeout, packets
//! received from party A and from party B, packets relayed (both directions) and packets
//! dropped (both legs). With stat names (protocol 20080403: `Q callid ft tt name...`) it
//! answers those values in order; `Qv` writes `name=value`. Names: `ttl`, `packets_in`,
//! `packets_out`, `packets_dropped`, `bytes_in`, `bytes_out`. When the tags carry no `;n` the
//! lowest-numbered matching stream answers. Unknown stream: `E50`; unknown name: `E34`; the
//! media plane failing to report: `E62`.

use super::proto::{ErrorCode, Query, Reply};
use super::session::SessionManager;
use crate::backend::{LegCounters, MediaBackend};
use std::time::Instant;

/// Every name `Q` knows, in the order `Qv` without names lists them.
pub const QUERY_STATS: &[&str] = &[
    "ttl",
    "packets_in",
    "packets_out",
    "packets_dropped",
    "bytes_in",
    "bytes_out",
];

impl SessionManager {
    pub(super) fn query(
        &mut self,
        q: &Query,
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> Reply {
        let Some(st) = self.calls.get(q.call.id.as_str()).and_then(|streams| {
            streams
                .iter()
                .filter(|st| {
                    st.matches(&q.call, &q.from_tag, q.to_tag.as_ref())
                        .is_some()
                })
                .min_by_key(|st| st.number)
        }) else {
            return ErrorCode::SESSION_UNKNOWN.into();
        };
        let (ca, cb) = match (backend.counters(st.legs[0]), backend.counters(st.legs[1])) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(call_id = %q.call.id, error = %e, "counters unavailable");
                return ErrorCode::QUERY_FAILED.into();
            }
        };
        let ttl = self.ttl(st, &ca, &cb, now);
        if q.stats.is_empty() && !q.verbose {
            return Reply::Text(format!(
                "{ttl} {} {} {} {}",
                ca.packets_in,
                cb.packets_in,
                ca.packets_out + cb.packets_out,
                ca.dropped + cb.dropped
            ));
        }
        let names: Vec<&str> = if q.stats.is_empty() {
            QUERY_STATS.to_vec()
        } else {
            q.stats.iter().map(String::as_str).collect()
        };
        let mut parts = Vec::with_capacity(names.len());
        for name in names {
            let Some(v) = stat(name, ttl, &ca, &cb) else {
                return ErrorCode::INVALID_STAT.into();
            };
            parts.push(if q.verbose {
                format!("{name}={v}")
            } else {
                v.to_string()
            });
        }
        Reply::Text(parts.join(" "))
    }
}

fn stat(name: &str, ttl: u64, a: &LegCounters, b: &LegCounters) -> Option<u64> {
    Some(match name {
        "ttl" => ttl,
        "packets_in" => a.packets_in + b.packets_in,
        "packets_out" => a.packets_out + b.packets_out,
        "packets_dropped" => a.dropped + b.dropped,
        "bytes_in" => a.bytes_in + b.bytes_in,
        "bytes_out" => a.bytes_out + b.bytes_out,
        _ => return None,
    })
}
