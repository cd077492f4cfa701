//! Control plane metrics (Prometheus). Labels have bounded cardinality: `command` is one of
//! the protocol's command names (or `unknown`/`none`), `result` one of `ok`, `error`,
//! `retransmit`, `dropped`; `reason` one of `source`, `framing`.
//!
//! Streams and their timeouts are counted by the media plane, per shard
//! (`rtprelay_streams{shard}`, `rtprelay_timeouts_total{shard}`, see [`crate::metrics`]); the
//! control plane only adds what the shards cannot know: calls (`rtprelay_sessions`).
//!
//! Every label set known in advance is created at registration (value 0), so `rate()` and
//! `increase()` have a starting point on a fresh node instead of a gap until the first event.

use super::endpoint::Outcome;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Commands whose `{command, result}` series exist from the start (the common ones; the rare
/// `R`/`N`/`P`/`S`/`C` appear on first use).
const KNOWN_COMMANDS: [&str; 9] = ["U", "L", "D", "Q", "I", "G", "V", "VF", "X"];

/// Handles to the control plane's metrics. Cheap to clone (the handles are shared).
#[derive(Debug, Clone)]
pub struct ControlMetrics {
    /// `rtprelay_control_commands_total{command, result}`.
    pub commands: IntCounterVec,
    /// `rtprelay_control_rejected_total{reason}`: inputs dropped before parsing (`source`: not
    /// in `control.allow`; `framing`: datagram without cookie, line too long).
    pub rejected: IntCounterVec,
    /// `rtprelay_sessions`: calls (Call-IDs) with at least one stream. (Streams are the
    /// media plane's `rtprelay_streams{shard}`.)
    pub sessions: IntGauge,
    /// `rtprelay_control_loops_refused_total`: `U`/`L` refused (`E35`) because they named
    /// one of the relay's own media sockets.
    pub loops_refused: IntCounter,
    /// `rtprelay_control_quota_refused_total{quota}`: `U` refused by a quota (`stream`: the
    /// per-call stream quota, `E83`; `client`: the per-client session quota, `E84`).
    pub quota_refused: IntCounterVec,
    /// `commands` of [`KNOWN_COMMANDS`] × [`RESULTS`], resolved once: a label lookup hashes
    /// and locks, per command.
    known: std::sync::Arc<[IntCounter]>,
}

/// Results whose series are resolved in advance, in [`ControlMetrics::known`] order.
const RESULTS: [&str; 3] = ["ok", "error", "retransmit"];

impl ControlMetrics {
    /// Create the metrics and register them on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = ControlMetrics {
            commands: IntCounterVec::new(
                Opts::new(
                    "rtprelay_control_commands_total",
                    "Control commands by command and result",
                ),
                &["command", "result"],
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "rtprelay_control_rejected_total",
                    "Control inputs dropped unanswered",
                ),
                &["reason"],
            )?,
            sessions: IntGauge::new("rtprelay_sessions", "Calls (Call-IDs) with relayed media")?,
            loops_refused: IntCounter::new(
                "rtprelay_control_loops_refused_total",
                "U/L commands refused because their address was one of the relay's own media sockets",
            )?,
            quota_refused: IntCounterVec::new(
                Opts::new(
                    "rtprelay_control_quota_refused_total",
                    "U commands refused by the per-call stream or per-client session quota",
                ),
                &["quota"],
            )?,
            known: std::sync::Arc::from([]),
        };
        let m = ControlMetrics {
            known: KNOWN_COMMANDS
                .iter()
                .flat_map(|c| RESULTS.iter().map(move |r| (*c, *r)))
                .map(|(c, r)| m.commands.with_label_values(&[c, r]))
                .collect(),
            ..m
        };
        registry.register(Box::new(m.loops_refused.clone()))?;
        registry.register(Box::new(m.quota_refused.clone()))?;
        registry.register(Box::new(m.commands.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.sessions.clone()))?;
        m.create_known_labels();
        Ok(m)
    }

    /// Create every label set known in advance at 0.
    fn create_known_labels(&self) {
        for command in KNOWN_COMMANDS {
            for result in ["ok", "error", "retransmit"] {
                self.commands.with_label_values(&[command, result]);
            }
        }
        self.commands.with_label_values(&["unknown", "error"]);
        self.commands.with_label_values(&["none", "dropped"]);
        for reason in ["source", "framing"] {
            self.rejected.with_label_values(&[reason]);
        }
        for quota in ["stream", "client"] {
            self.quota_refused.with_label_values(&[quota]);
        }
    }

    /// Count one processed input.
    pub fn record(&self, outcome: Outcome) {
        let (command, result) = (outcome.command, outcome.result.label());
        let known = KNOWN_COMMANDS
            .iter()
            .position(|c| *c == command)
            .and_then(|c| {
                let r = RESULTS.iter().position(|r| *r == result)?;
                self.known.get(c * RESULTS.len() + r)
            });
        match known {
            Some(counter) => counter.inc(),
            None => self.commands.with_label_values(&[command, result]).inc(),
        }
    }

    /// Count an input dropped before parsing.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// Publish the session manager's current size and totals.
    pub fn publish(&self, sessions: &super::SessionManager) {
        self.set_sessions(sessions.sessions());
        let loops = sessions.totals().loops_refused;
        self.loops_refused
            .inc_by(loops.saturating_sub(self.loops_refused.get()));
        let t = sessions.totals();
        for (quota, total) in [
            ("stream", t.stream_quota_refused),
            ("client", t.client_quota_refused),
        ] {
            let c = self.quota_refused.with_label_values(&[quota]);
            c.inc_by(total.saturating_sub(c.get()));
        }
    }

    /// Publish the number of calls.
    pub fn set_sessions(&self, sessions: usize) {
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::endpoint::OutcomeKind;
    use prometheus::Encoder;

    #[test]
    fn registered_and_exported() {
        let r = Registry::new();
        let m = ControlMetrics::register(&r).unwrap();
        m.record(Outcome {
            command: "U",
            result: OutcomeKind::Ok,
        });
        m.record(Outcome {
            command: "U",
            result: OutcomeKind::Ok,
        });
        m.reject("source");
        m.set_sessions(3);
        for command in KNOWN_COMMANDS {
            m.record(Outcome {
                command,
                result: OutcomeKind::Retransmit,
            });
        }
        m.record(Outcome {
            command: "unknown",
            result: OutcomeKind::Error,
        });
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("rtprelay_control_commands_total{command=\"U\",result=\"ok\"} 2"),
            "{text}"
        );
        assert!(text.contains("rtprelay_control_rejected_total{reason=\"source\"} 1"));
        for command in KNOWN_COMMANDS {
            let line = format!(
                "rtprelay_control_commands_total{{command=\"{command}\",result=\"retransmit\"}} 1"
            );
            assert!(text.contains(&line), "{line}");
        }
        assert!(text
            .contains("rtprelay_control_commands_total{command=\"unknown\",result=\"error\"} 1"));
        assert!(text.contains("rtprelay_sessions 3"));
        // Known label sets exist before their first event.
        assert!(text.contains("rtprelay_control_commands_total{command=\"D\",result=\"error\"} 0"));
        assert!(text.contains("rtprelay_control_rejected_total{reason=\"framing\"} 0"));
        assert!(text.contains("rtprelay_control_quota_refused_total{quota=\"client\"} 0"));
        // The removed duplicates stay removed (streams and timeouts are per shard).
        assert!(!text.contains("rtprelay_streams"));
        assert!(!text.contains("timeouts_total"));
        // Registering twice on one registry is refused, not silently duplicated.
        assert!(ControlMetrics::register(&r).is_err());
    }
}
