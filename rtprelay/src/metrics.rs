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
//! - `rtprelay_streams{shard}` (gauge), `rtprelay_streams_created_total{shard}`,
//!   `rtprelay_streams_removed_total{shard}`, `rtprelay_timeouts_total{shard}`
//! - `rtprelay_free_port_pairs{shard}`, `rtprelay_free_buffers{shard}` (gauges)
//! - `rtprelay_latches_total{shard,kind}` (`first`, `relatch`)
//! - `rtprelay_stun_requests_total{shard,result}` (`answered`, `ignored`: not a
//!   binding request, `refused`: not from the port's party)
//! - `rtprelay_multishot_rearms_total{shard}`, `rtprelay_datapath_loop_iterations_total{shard}`,
//!   `rtprelay_datapath_commands_total{shard}`
//! - `rtprelay_datapath_info{shard,datapath}` = 1
//! - `rtprelay_stream_packet_loss_ratio{shard}`, `rtprelay_stream_jitter_seconds{shard}`
//!   (histograms, one observation per direction that received RTP, at stream end; the shards
//!   keep the bucket counts, see `table::quality`, and this collector only makes them
//!   cumulative)
//!
//! The full table, with the control plane's and the process families, is in
//! `rtprelay/README.md` ("Metrics").
//!
//! The collector reads the shards through a [`StatsHandle`], so the control server can own
//! the media plane (as its backend) without sharing it.

use crate::datapath::stats::HistSnapshot;
use crate::datapath::ShardStats;
use crate::media::StatsHandle;
use crate::table::quality::{JITTER_BOUNDS, LOSS_BOUNDS};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use std::collections::HashMap;

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
    streams: IntGaugeVec,
    free_pairs: IntGaugeVec,
    free_buffers: IntGaugeVec,
    created: IntCounterVec,
    removed: IntCounterVec,
    timeouts: IntCounterVec,
    latches: IntCounterVec,
    stun: IntCounterVec,
    rearms: IntCounterVec,
    loops: IntCounterVec,
    commands: IntCounterVec,
    info: IntGaugeVec,
    loss: Desc,
    jitter: Desc,
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
            streams: IntGaugeVec::new(
                Opts::new("rtprelay_streams", "Streams (leg pairs) allocated in the shard"),
                s,
            )?,
            free_pairs: IntGaugeVec::new(
                Opts::new(
                    "rtprelay_free_port_pairs",
                    "Port pairs free in the shard's allocator (quarantined ones included)",
                ),
                s,
            )?,
            free_buffers: IntGaugeVec::new(
                Opts::new(
                    "rtprelay_free_buffers",
                    "Receive buffers free: io_uring provided-buffer ring entries not in a send; fallback: its fixed recvmmsg batch",
                ),
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
            loss: Desc::new(
                "rtprelay_stream_packet_loss_ratio".into(),
                "Per direction at stream end: RTP packets lost / expected (RFC 3550 A.3) from the party to the relay".into(),
                vec!["shard".into()],
                HashMap::new(),
            )?,
            jitter: Desc::new(
                "rtprelay_stream_jitter_seconds".into(),
                "Per direction at stream end: RTP interarrival jitter (RFC 3550 A.8) from the party to the relay".into(),
                vec!["shard".into()],
                HashMap::new(),
            )?,
        })
    }

    /// Create the collector and register it.
    pub fn register(registry: &Registry, source: StatsSource) -> prometheus::Result<()> {
        registry.register(Box::new(ShardCollector::new(source)?))
    }

    fn vecs(&self) -> [&dyn Collector; 17] {
        [
            &self.rx_packets,
            &self.rx_bytes,
            &self.fwd_packets,
            &self.fwd_bytes,
            &self.drops,
            &self.streams,
            &self.free_pairs,
            &self.free_buffers,
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
            for (g, v) in [
                (&self.streams, s.active_streams),
                (&self.free_pairs, s.free_port_pairs),
                (&self.free_buffers, s.free_buffers),
            ] {
                g.with_label_values(&l)
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
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
        let mut d: Vec<&Desc> = self.vecs().into_iter().flat_map(|c| c.desc()).collect();
        d.extend([&self.loss, &self.jitter]);
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = (self.source)();
        self.refresh(&stats);
        let mut out: Vec<MetricFamily> =
            self.vecs().into_iter().flat_map(|c| c.collect()).collect();
        out.push(histogram_family(
            &self.loss,
            &LOSS_BOUNDS,
            stats.iter().map(|s| (s.shard, &s.loss)),
        ));
        out.push(histogram_family(
            &self.jitter,
            &JITTER_BOUNDS,
            stats.iter().map(|s| (s.shard, &s.jitter)),
        ));
        out
    }
}

/// A histogram family from the shards' per-bucket counts (made cumulative here).
fn histogram_family<'a>(
    desc: &Desc,
    bounds: &[f64; 10],
    shards: impl Iterator<Item = (u16, &'a HistSnapshot)>,
) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(MetricType::HISTOGRAM);
    let metrics = shards
        .map(|(shard, h)| {
            let mut label = LabelPair::default();
            label.set_name("shard".into());
            label.set_value(shard.to_string());
            let mut cumulative = 0;
            let buckets = bounds
                .iter()
                .zip(h.counts)
                .map(|(bound, n)| {
                    cumulative += n;
                    let mut b = proto::Bucket::default();
                    b.set_cumulative_count(cumulative);
                    b.set_upper_bound(*bound);
                    b
                })
                .collect();
            let mut hist = proto::Histogram::default();
            hist.set_bucket(buckets);
            hist.set_sample_count(h.counts.iter().sum());
            hist.set_sample_sum(h.sum());
            let mut m = Metric::from_label(vec![label]);
            m.set_histogram(hist);
            m
        })
        .collect();
    family.set_metric(metrics);
    family
}

pub use sbc_shared::GIT_COMMIT;

/// Register `rtprelay_build_info{version,commit,datapath}` = 1 and, on Linux, the process
/// families (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_virtual_memory_bytes`,
/// `process_start_time_seconds`, `process_threads`) read from `/proc/self` at scrape time.
pub fn register_process(registry: &Registry, datapath: &str) -> prometheus::Result<()> {
    let info = IntGaugeVec::new(
        Opts::new(
            "rtprelay_build_info",
            "Always 1; the labels name the running build and datapath",
        ),
        &["version", "commit", "datapath"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_COMMIT, datapath])
        .set(1);
    registry.register(Box::new(info))?;
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
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
                    free_port_pairs: 98,
                    free_buffers: 4093,
                    streams_expired: 1,
                    multishot_rearms: 4,
                    loss: HistSnapshot {
                        // One direction with no loss, one with 1 %, one with 30 %.
                        counts: [1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0],
                        sum_bits: 0.31f64.to_bits(),
                    },
                    jitter: HistSnapshot {
                        counts: [0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1],
                        sum_bits: 0.5f64.to_bits(),
                    },
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
        assert!(t.contains("rtprelay_streams{shard=\"0\"} 2"));
        assert!(t.contains("rtprelay_free_port_pairs{shard=\"0\"} 98"));
        assert!(t.contains("rtprelay_free_buffers{shard=\"0\"} 4093"));
        assert!(t.contains("rtprelay_free_buffers{shard=\"1\"} 0"));
        // Every per-shard counter exists at 0 from the first scrape (no gap for rate()).
        assert!(t.contains("rtprelay_timeouts_total{shard=\"1\"} 0"));
        assert!(t.contains("rtprelay_latches_total{kind=\"relatch\",shard=\"1\"} 0"));
        assert!(t.contains("rtprelay_stun_requests_total{result=\"refused\",shard=\"1\"} 0"));
        assert!(t.contains("rtprelay_timeouts_total{shard=\"0\"} 1"));
        assert!(t.contains("rtprelay_multishot_rearms_total{shard=\"0\"} 4"));
        assert!(t.contains("rtprelay_datapath_info{datapath=\"io_uring\",shard=\"0\"} 1"));
        // Histograms: cumulative buckets, +Inf = count.
        for line in [
            "rtprelay_stream_packet_loss_ratio_bucket{shard=\"0\",le=\"0\"} 1",
            "rtprelay_stream_packet_loss_ratio_bucket{shard=\"0\",le=\"0.01\"} 2",
            "rtprelay_stream_packet_loss_ratio_bucket{shard=\"0\",le=\"0.2\"} 2",
            "rtprelay_stream_packet_loss_ratio_bucket{shard=\"0\",le=\"0.5\"} 3",
            "rtprelay_stream_packet_loss_ratio_bucket{shard=\"0\",le=\"+Inf\"} 3",
            "rtprelay_stream_packet_loss_ratio_sum{shard=\"0\"} 0.31",
            "rtprelay_stream_packet_loss_ratio_count{shard=\"0\"} 3",
            "rtprelay_stream_packet_loss_ratio_count{shard=\"1\"} 0",
            "rtprelay_stream_jitter_seconds_bucket{shard=\"0\",le=\"0.01\"} 2",
            "rtprelay_stream_jitter_seconds_bucket{shard=\"0\",le=\"0.2\"} 2",
            "rtprelay_stream_jitter_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3",
            "rtprelay_stream_jitter_seconds_count{shard=\"0\"} 3",
        ] {
            assert!(t.contains(line), "{line} missing:\n{t}");
        }
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
    fn build_info_and_process_families() {
        let r = Registry::new();
        register_process(&r, "io_uring").unwrap();
        let t = text(&r);
        let want = format!(
            "rtprelay_build_info{{commit=\"{GIT_COMMIT}\",datapath=\"io_uring\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(t.contains(&want), "{t}");
        assert!(!GIT_COMMIT.is_empty());
        #[cfg(target_os = "linux")]
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                t.contains(&format!("\n{family} ")),
                "{family} missing:\n{t}"
            );
        }
    }

    #[test]
    fn coexists_with_other_families() {
        let r = Registry::new();
        crate::control::ControlMetrics::register(&r).unwrap();
        register_process(&r, "fallback").unwrap();
        // No name clashes with the control plane's families...
        ShardCollector::register(&r, Box::new(Vec::new)).unwrap();
        // ...and the descriptors are real: a second collector is refused as a duplicate.
        assert!(ShardCollector::register(&r, Box::new(Vec::new)).is_err());
    }
}
