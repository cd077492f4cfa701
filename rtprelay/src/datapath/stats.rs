//! Per-shard statistics. The shard counts in plain integers it owns and publishes them with
//! relaxed atomic stores once per loop iteration into its own cache-line-aligned block; readers
//! (the metrics exporter) load them without locks and without disturbing other shards.

use super::Kind;
use crate::table::TableStats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
        }

        /// A snapshot of one shard's counters (all monotonic except `active_streams`).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct ShardStats {
            pub shard: u16,
            pub datapath: Option<Kind>,
            $($(#[$m])* pub $f: u64,)*
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
    streams_created,
    streams_removed,
    /// Streams freed because both legs were silent for `media.timeout_s`.
    streams_expired,
    loop_iterations,
    commands,
}

impl SharedStats {
    pub fn set_datapath(&self, kind: Kind) {
        let v = match kind {
            Kind::IoUring => 1,
            Kind::Fallback => 2,
        };
        self.datapath.store(v, Relaxed);
    }

    /// Publish the shard's current counters.
    pub fn publish(&self, t: &TableStats, active_streams: u64, io: &IoStats) {
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
        s(&self.active_streams, active_streams);
        s(&self.streams_created, t.streams_created);
        s(&self.streams_removed, t.streams_removed);
        s(&self.streams_expired, t.streams_expired);
        s(&self.loop_iterations, io.loop_iterations);
        s(&self.commands, io.commands);
    }
}
