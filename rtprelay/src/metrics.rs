//! Media plane metrics: the shards' counters ([`ShardStats`]) as Prometheus families.
//!
//! The shards publish their counters with relaxed atomic stores once per loop iteration
//! (`datapath::stats`); nothing on the hot path knows about Prometheus. [`ShardCollector`] is a
//! `prometheus` collector that takes a snapshot at scrape time and brings its counter vectors
//! up to date (the shard counters are monotonic, so each counter is advanced by the difference),
//! so a scrape always sees current values and no refresher thread is needed.
//!
//! Families (labels bounded: `shard` is a shard index, `reason`/`kind`/`result` fixed sets):
//! - `rtprelay_packets_received_total{shard}`, `rtprelay_bytes_received_total{shard}`
//! - `rtprelay_packets_forwarded_total{shard}`, `rtprelay_bytes_forwarded_total{shard}`
//! - `rtprelay_drops_total{shard,reason}`: `no_session` (no stream on the port),
//!   `foreign_source` (not the latched/signalled party: RTP bleed, strays), `no_peer` (the
//!   other party's address is not known yet), `truncated`, `buffer_exhausted` (io_uring
//!   provided-buffer ring empty), `send_error`
//! - `rtprelay_streams_active{shard}` (gauge), `rtprelay_streams_created_total{shard}`,
//!   `rtprelay_streams_removed_total{shard}`, `rtprelay_timeouts_total{shard}`
//! - `rtprelay_latches_total{shard,kind}` (`first`, `relatch`)
//! - `rtprelay_stun_requests_total{shard,result}` (`answered`, `ignored`: not a
//!   binding request, `refused`: not from the port's party)
//! - `rtprelay_multishot_rearms_total{shard}`, `rtprelay_datapath_loop_iterations_total{shard}`,
//!   `rtprelay_datapath_commands_total{shard}`
//! - `rtprelay_datapath_info{shard,datapath}` = 1
//!
//! The collector reads the shards through a [`StatsHandle`], so the control server can own
//! the media plane (as its backend) without sharing it.

use crate::datapath::ShardStats;
use crate::media::StatsHandle;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Where the collector gets its snapshot from (the media plane, or a test's closure).
pub type StatsSource = Box<dyn Fn() -> Vec<ShardStats> + Send + Sync>;

/// Drop reasons, in the order of [`drop_counts`].
pub const DROP_REASONS: [&str; 6] = [
    "no_session",
    "foreign_source",
    "no_peer",
    "truncated",
    "buffer_exhausted",
    "send_error",
];

fn drop_counts(s: &ShardStats) -> [u64; 6] {
    [
        s.dropped_no_session,
        s.dropped_foreign_source,
        s.dropped_no_peer,
        s.dropped_truncated,
        s.buffer_exhausted,
        s.send_errors,
    ]
}

/// Prometheus collector over the shards' published counters.
pub struct ShardCollector {
    source: StatsSource,
    rx_packets: IntCounterVec,
    rx_bytes: IntCounterVec,
    fwd_packets: IntCounterVec,
    fwd_bytes: IntCounterVec,
    drops: IntCounterVec,
    active: IntGaugeVec,
    created: IntCounterVec,
    removed: IntCounterVec,
    timeouts: IntCounterVec,
    latches: IntCounterVec,
    stun: IntCounterVec,
    rearms: IntCounterVec,
    loops: IntCounterVec,
    commands: IntCounterVec,
    info: IntGaugeVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

/// Advance a monotonic counter to `value` (never backwards).
fn advance(vec: &IntCounterVec, labels: &[&str], value: u64) {
    let c = vec.with_label_values(labels);
    let now = c.get();
    if value > now {
        c.inc_by(value - now);
    }
}

impl ShardCollector {
    pub fn new(source: StatsSource) -> prometheus::Result<Self> {
        let s = &["shard"];
        Ok(ShardCollector {
            source,
            rx_packets: counter(
                "rtprelay_packets_received_total",
                "Datagrams received on media ports",
                s,
            )?,
            rx_bytes: counter(
                "rtprelay_bytes_received_total",
                "Bytes received on media ports",
                s,
            )?,
            fwd_packets: counter(
                "rtprelay_packets_forwarded_total",
                "Datagrams forwarded to the other leg",
                s,
            )?,
            fwd_bytes: counter(
                "rtprelay_bytes_forwarded_total",
                "Bytes forwarded to the other leg",
                s,
            )?,
            drops: counter(
                "rtprelay_drops_total",
                "Datagrams dropped by the media plane, by reason",
                &["shard", "reason"],
            )?,
            active: IntGaugeVec::new(
                Opts::new("rtprelay_streams_active", "Streams allocated in the shard"),
                s,
            )?,
            created: counter("rtprelay_streams_created_total", "Streams allocated", s)?,
            removed: counter("rtprelay_streams_removed_total", "Streams freed", s)?,
            timeouts: counter(
                "rtprelay_timeouts_total",
                "Streams freed because both legs were silent for media.timeout_s",
                s,
            )?,
            latches: counter(
                "rtprelay_latches_total",
                "Source addresses learned (first) or re-learned (relatch)",
                &["shard", "kind"],
            )?,
            stun: counter(
                "rtprelay_stun_requests_total",
                "STUN binding requests on media ports",
                &["shard", "result"],
            )?,
            rearms: counter(
                "rtprelay_multishot_rearms_total",
                "io_uring multishot receives that ended and were armed again",
                s,
            )?,
            loops: counter(
                "rtprelay_datapath_loop_iterations_total",
                "Datapath loop iterations (batches)",
                s,
            )?,
            commands: counter(
                "rtprelay_datapath_commands_total",
                "Control commands applied by the shard",
                s,
            )?,
            info: IntGaugeVec::new(
                Opts::new("rtprelay_datapath_info", "Datapath run by the shard"),
                &["shard", "datapath"],
            )?,
        })
    }

    /// Create the collector and register it.
    pub fn register(registry: &Registry, source: StatsSource) -> prometheus::Result<()> {
        registry.register(Box::new(ShardCollector::new(source)?))
    }

    fn vecs(&self) -> [&dyn Collector; 15] {
        [
            &self.rx_packets,
            &self.rx_bytes,
            &self.fwd_packets,
            &self.fwd_bytes,
            &self.drops,
            &self.active,
            &self.created,
            &self.removed,
            &self.timeouts,
            &self.latches,
            &self.stun,
            &self.rearms,
            &self.loops,
            &self.commands,
            &self.info,
        ]
    }

    /// Bring every family up to date with one snapshot.
    fn refresh(&self, stats: &[ShardStats]) {
        for s in stats {
            let shard = s.shard.to_string();
            let l = [shard.as_str()];
            advance(&self.rx_packets, &l, s.rx_packets);
            advance(&self.rx_bytes, &l, s.rx_bytes);
            advance(&self.fwd_packets, &l, s.forwarded_packets);
            advance(&self.fwd_bytes, &l, s.forwarded_bytes);
            for (reason, n) in DROP_REASONS.iter().zip(drop_counts(s)) {
                advance(&self.drops, &[&shard, reason], n);
            }
            self.active
                .with_label_values(&l)
                .set(i64::try_from(s.active_streams).unwrap_or(i64::MAX));
            advance(&self.created, &l, s.streams_created);
            advance(&self.removed, &l, s.streams_removed);
            advance(&self.timeouts, &l, s.streams_expired);
            advance(&self.latches, &[&shard, "first"], s.latches);
            advance(&self.latches, &[&shard, "relatch"], s.relatches);
            advance(&self.stun, &[&shard, "answered"], s.stun_answered);
            advance(&self.stun, &[&shard, "ignored"], s.stun_ignored);
            advance(&self.stun, &[&shard, "refused"], s.stun_refused);
            advance(&self.rearms, &l, s.multishot_rearms);
            advance(&self.loops, &l, s.loop_iterations);
            advance(&self.commands, &l, s.commands);
            if let Some(kind) = s.datapath {
                self.info.with_label_values(&[&shard, kind.as_str()]).set(1);
            }
        }
    }
}

impl Collector for ShardCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.vecs().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh(&(self.source)());
        self.vecs().into_iter().flat_map(|c| c.collect()).collect()
    }
}

/// A [`StatsSource`] reading a running media plane (lock-free, see [`StatsHandle`]).
pub fn media_source(handle: StatsHandle) -> StatsSource {
    Box::new(move || handle.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::Kind;
    use prometheus::{Encoder, TextEncoder};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    fn text(r: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exports_each_shard_and_follows_the_counters() {
        let fwd = Arc::new(AtomicU64::new(10));
        let f = fwd.clone();
        let source: StatsSource = Box::new(move || {
            let n = f.load(Ordering::Relaxed);
            vec![
                ShardStats {
                    shard: 0,
                    datapath: Some(Kind::IoUring),
                    forwarded_packets: n,
                    forwarded_bytes: n * 172,
                    dropped_foreign_source: 3,
                    active_streams: 2,
                    streams_expired: 1,
                    multishot_rearms: 4,
                    ..ShardStats::default()
                },
                ShardStats {
                    shard: 1,
                    datapath: Some(Kind::IoUring),
                    forwarded_packets: 7,
                    ..ShardStats::default()
                },
            ]
        });
        let r = Registry::new();
        ShardCollector::register(&r, source).unwrap();
        let t = text(&r);
        assert!(
            t.contains("rtprelay_packets_forwarded_total{shard=\"0\"} 10"),
            "{t}"
        );
        assert!(t.contains("rtprelay_packets_forwarded_total{shard=\"1\"} 7"));
        assert!(t.contains("rtprelay_bytes_forwarded_total{shard=\"0\"} 1720"));
        assert!(t.contains("rtprelay_drops_total{reason=\"foreign_source\",shard=\"0\"} 3"));
        assert!(t.contains("rtprelay_drops_total{reason=\"buffer_exhausted\",shard=\"1\"} 0"));
        assert!(t.contains("rtprelay_streams_active{shard=\"0\"} 2"));
        assert!(t.contains("rtprelay_timeouts_total{shard=\"0\"} 1"));
        assert!(t.contains("rtprelay_multishot_rearms_total{shard=\"0\"} 4"));
        assert!(t.contains("rtprelay_datapath_info{datapath=\"io_uring\",shard=\"0\"} 1"));
        fwd.store(25, Ordering::Relaxed);
        let t = text(&r);
        assert!(
            t.contains("rtprelay_packets_forwarded_total{shard=\"0\"} 25"),
            "{t}"
        );
        // A (never expected) smaller snapshot does not move a counter backwards.
        fwd.store(5, Ordering::Relaxed);
        assert!(text(&r).contains("rtprelay_packets_forwarded_total{shard=\"0\"} 25"));
    }

    #[test]
    fn coexists_with_other_families() {
        let r = Registry::new();
        crate::control::ControlMetrics::register(&r).unwrap();
        // No name clashes with the control plane's families...
        ShardCollector::register(&r, Box::new(Vec::new)).unwrap();
        // ...and the descriptors are real: a second collector is refused as a duplicate.
        assert!(ShardCollector::register(&r, Box::new(Vec::new)).is_err());
    }
}
