//! Per-shard statistics. The shard counts in plain integers it owns and publishes them with
//! relaxed atomic stores once per loop iteration into its own cache-line-aligned block; readers
//! (the metrics exporter) load them without locks and without disturbing other shards.
//!
//! The stream-end quality histograms (loss, jitter) are published the same way, as per-bucket
//! counts, but only in an iteration where a stream ended (the table's observation count moved):
//! an idle or busy-forwarding shard pays one relaxed load for them. A scrape may see one
//! histogram's buckets from just before a stream end and its sum from just after; the next
//! scrape is consistent again.

use super::Kind;
use crate::table::quality::{Hist, QualityStats};
use crate::table::TableStats;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The shard's gauges at the end of a loop iteration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Streams allocated in the shard's table.
    pub active_streams: u64,
    /// Port pairs the shard's allocator can hand out (quarantined ones included).
    pub free_port_pairs: u64,
    /// Receive buffers free: io_uring, the provided-buffer ring's entries not held by a send in
    /// flight; the fallback, its fixed recvmmsg batch (all free between iterations).
    pub free_buffers: u64,
}

/// Counters kept by the IO shell (the table keeps the forwarding ones).
#[derive(Debug, Clone, Copy, Default)]
pub struct IoStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub stun_answered: u64,
    pub stun_ignored: u64,
    /// io_uring: a receive found the provided-buffer ring empty (ENOBUFS).
    pub buffer_exhausted: u64,
    /// Datagrams longer than a buffer (dropped).
    pub dropped_truncated: u64,
    pub send_errors: u64,
    /// io_uring: a multishot RECVMSG ended and was armed again.
    pub multishot_rearms: u64,
    pub loop_iterations: u64,
    pub commands: u64,
}

macro_rules! shard_stats {
    ($($(#[$m:meta])* $f:ident),* $(,)?) => {
        /// The shared, atomically published block of one shard.
        #[repr(align(64))]
        #[derive(Debug, Default)]
        pub struct SharedStats {
            /// 1 = io_uring, 2 = fallback, 0 = not started.
            datapath: AtomicU64,
            $($f: AtomicU64,)*
            loss: SharedHist,
            jitter: SharedHist,
            /// `QualityStats::observations` last published.
            quality_seen: AtomicU64,
            /// The shard thread has returned (stopped, failed, or panicked).
            stopped: AtomicBool,
        }

        /// A snapshot of one shard's counters (all monotonic except the gauges
        /// `active_streams`, `free_port_pairs`, `free_buffers`).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct ShardStats {
            pub shard: u16,
            pub datapath: Option<Kind>,
            $($(#[$m])* pub $f: u64,)*
            /// Stream-end packet loss ratio per direction (`rtprelay_stream_packet_loss_ratio`).
            pub loss: HistSnapshot,
            /// Stream-end jitter per direction (`rtprelay_stream_jitter_seconds`).
            pub jitter: HistSnapshot,
        }

        impl SharedStats {
            pub fn snapshot(&self, shard: u16) -> ShardStats {
                ShardStats {
                    shard,
                    datapath: match self.datapath.load(Relaxed) {
                        1 => Some(Kind::IoUring),
                        2 => Some(Kind::Fallback),
                        _ => None,
                    },
                    $($f: self.$f.load(Relaxed),)*
                    loss: self.loss.snapshot(),
                    jitter: self.jitter.snapshot(),
                }
            }
        }
    };
}

shard_stats! {
    /// Datagrams received on media ports (all of them, forwarded or not).
    rx_packets,
    rx_bytes,
    /// Datagrams forwarded to the other leg.
    forwarded_packets,
    forwarded_bytes,
    /// Dropped: no stream on the port (late packets after teardown).
    dropped_no_session,
    /// Dropped: not from the latched/signalled party (RTP bleed, strays).
    dropped_foreign_source,
    /// Dropped: the other party's address is not known yet.
    dropped_no_peer,
    /// Dropped: longer than a receive buffer.
    dropped_truncated,
    /// Receives that found no free buffer (io_uring provided-buffer ring empty).
    buffer_exhausted,
    /// Sends that failed.
    send_errors,
    stun_answered,
    stun_ignored,
    /// STUN from other than the party of the port: not answered (issue 9).
    stun_refused,
    /// Multishot receives that ended and were re-armed.
    multishot_rearms,
    latches,
    relatches,
    /// Gauge: streams currently allocated in this shard.
    active_streams,
    /// Gauge: port pairs free in the shard's allocator (quarantine included).
    free_port_pairs,
    /// Gauge: receive buffers free (see [`Gauges::free_buffers`]).
    free_buffers,
    streams_created,
    streams_removed,
    /// Streams freed because both legs were silent for `media.timeout_s`.
    streams_expired,
    loop_iterations,
    commands,
}

/// A histogram's published buckets (per bucket, not cumulative; the last is `+Inf`).
#[derive(Debug, Default)]
pub struct SharedHist {
    counts: [AtomicU64; 11],
    /// `f64::to_bits` of the sum.
    sum: AtomicU64,
}

/// A snapshot of a [`SharedHist`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistSnapshot {
    pub counts: [u64; 11],
    pub sum_bits: u64,
}

impl HistSnapshot {
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits)
    }
}

impl From<&Hist> for HistSnapshot {
    fn from(h: &Hist) -> Self {
        HistSnapshot {
            counts: h.counts,
            sum_bits: h.sum.to_bits(),
        }
    }
}

impl SharedHist {
    fn store(&self, h: &Hist) {
        for (a, v) in self.counts.iter().zip(h.counts) {
            a.store(v, Relaxed);
        }
        self.sum.store(h.sum.to_bits(), Relaxed);
    }

    fn snapshot(&self) -> HistSnapshot {
        HistSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Relaxed)),
            sum_bits: self.sum.load(Relaxed),
        }
    }
}

impl SharedStats {
    /// Publish the stream-end histograms if a stream ended since the last call.
    pub fn publish_quality(&self, q: &QualityStats) {
        if self.quality_seen.load(Relaxed) != q.observations {
            self.loss.store(&q.loss);
            self.jitter.store(&q.jitter);
            self.quality_seen.store(q.observations, Relaxed);
        }
    }

    /// Mark the shard thread as gone (called on its way out, panics included).
    pub fn set_stopped(&self) {
        self.stopped.store(true, Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Relaxed)
    }

    pub fn set_datapath(&self, kind: Kind) {
        let v = match kind {
            Kind::IoUring => 1,
            Kind::Fallback => 2,
        };
        self.datapath.store(v, Relaxed);
    }

    /// Publish the shard's current counters.
    pub fn publish(&self, t: &TableStats, g: Gauges, io: &IoStats) {
        let s = |a: &AtomicU64, v: u64| a.store(v, Relaxed);
        s(&self.rx_packets, io.rx_packets);
        s(&self.rx_bytes, io.rx_bytes);
        s(&self.forwarded_packets, t.forwarded_packets);
        s(&self.forwarded_bytes, t.forwarded_bytes);
        s(&self.dropped_no_session, t.dropped_no_session);
        s(&self.dropped_foreign_source, t.dropped_foreign_source);
        s(&self.dropped_no_peer, t.dropped_no_peer);
        s(&self.dropped_truncated, io.dropped_truncated);
        s(&self.buffer_exhausted, io.buffer_exhausted);
        s(&self.send_errors, io.send_errors);
        s(&self.stun_answered, io.stun_answered);
        s(&self.stun_ignored, io.stun_ignored);
        s(&self.stun_refused, t.stun_refused);
        s(&self.multishot_rearms, io.multishot_rearms);
        s(&self.latches, t.latches);
        s(&self.relatches, t.relatches);
        s(&self.active_streams, g.active_streams);
        s(&self.free_port_pairs, g.free_port_pairs);
        s(&self.free_buffers, g.free_buffers);
        s(&self.streams_created, t.streams_created);
        s(&self.streams_removed, t.streams_removed);
        s(&self.streams_expired, t.streams_expired);
        s(&self.loop_iterations, io.loop_iterations);
        s(&self.commands, io.commands);
    }
}
