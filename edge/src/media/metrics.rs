//! Prometheus objects of media anchoring, registered on the registry the caller passes (the
//! edge's `/metrics` registry). Labels are bounded: the command letter and a failure reason.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Relay command latency buckets (s): loopback answers in ~100 µs, a retransmitted one in
/// ~0.5 s, a failed one after `retransmit × tries`.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Clone)]
pub struct MediaMetrics {
    /// `edge_media_dialogs`: calls whose media the edge anchors (state held in
    /// [`super::MediaDialogs`]).
    pub dialogs: IntGauge,
    /// `edge_media_sessions`: media streams currently held on a relay.
    pub sessions: IntGauge,
    /// `edge_relay_command_seconds{command}`: time from first send to reply.
    pub command_seconds: HistogramVec,
    /// `edge_relay_failures_total{reason}`: `timeout` (a relay did not answer any try),
    /// `error` (an `E<n>` or port-0 answer), `no_relay` (no relay up for a new call).
    pub failures: IntCounterVec,
    /// `edge_relays_up`: relays currently considered up.
    pub relays_up: IntGauge,
    /// `edge_relay_up{relay}`: 1 while that relay is up and in rotation (0: down, disabled by
    /// the operator or retired by a reload).
    pub relay_up: IntGaugeVec,
    /// `edge_media_refused_total{reason}`: messages refused for media reasons:
    /// `too_many_streams` (488, `media.max_streams_per_sdp`), `relay_failure` (503 while no
    /// relay answers, `media.on_relay_failure = "reject"`).
    pub refused: IntCounterVec,
    /// `edge_media_lost_calls_total{outcome}`: confirmed calls whose relay no longer had their
    /// streams (media timed out, relay restarted): `bye` (ended with a BYE to both parties),
    /// `untracked` (no dialog record to send a BYE with: only the relay state was freed).
    pub lost_calls: IntCounterVec,
}

impl MediaMetrics {
    /// Create and register on `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.dialogs.clone()))?;
        registry.register(Box::new(m.sessions.clone()))?;
        registry.register(Box::new(m.command_seconds.clone()))?;
        registry.register(Box::new(m.failures.clone()))?;
        registry.register(Box::new(m.relays_up.clone()))?;
        registry.register(Box::new(m.relay_up.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        registry.register(Box::new(m.lost_calls.clone()))?;
        Ok(m)
    }

    /// Metrics not registered anywhere (tests, or media anchoring without `/metrics`).
    pub fn unregistered() -> prometheus::Result<Self> {
        let m = Self::bare()?;
        // Every known label set from the start: `rate()` and dashboards have no gaps on a
        // fresh node.
        for r in ["timeout", "error", "no_relay", "refused"] {
            m.failures.with_label_values(&[r]).inc_by(0);
        }
        for r in ["too_many_streams", "relay_failure"] {
            m.refused.with_label_values(&[r]).inc_by(0);
        }
        for c in ["U", "L", "D", "Q", "V"] {
            let _ = m.command_seconds.with_label_values(&[c]);
        }
        Ok(m)
    }

    fn bare() -> prometheus::Result<Self> {
        Ok(MediaMetrics {
            dialogs: IntGauge::new("edge_media_dialogs", "Dialogs with anchored media")?,
            sessions: IntGauge::new("edge_media_sessions", "Media streams held on a relay")?,
            command_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "edge_relay_command_seconds",
                    "Relay control command latency by command",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["command"],
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "edge_relay_failures_total",
                    "Failed relay commands by reason",
                ),
                &["reason"],
            )?,
            relays_up: IntGauge::new("edge_relays_up", "Relays currently considered up")?,
            relay_up: IntGaugeVec::new(
                Opts::new("edge_relay_up", "1 while the relay is up and in rotation"),
                &["relay"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "edge_media_refused_total",
                    "SIP messages refused for media reasons",
                ),
                &["reason"],
            )?,
            lost_calls: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "edge_media_lost_calls_total",
                        "Confirmed calls whose relay lost their media, by how they were ended",
                    ),
                    &["outcome"],
                )?;
                for o in ["bye", "untracked"] {
                    c.with_label_values(&[o]).inc_by(0);
                }
                c
            },
        })
    }
}
