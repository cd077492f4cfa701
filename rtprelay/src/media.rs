//! [`Media`]: the sharded media plane behind [`MediaBackend`]. It owns one datapath thread per
//! shard; every trait call becomes a [`Command`] on the owning shard's queue, answered on a
//! reply channel within [`REPLY_TIMEOUT`] (else [`BackendError::Unavailable`]).
//!
//! The configured port range is split into one contiguous sub-range per shard; a stream's two
//! legs are always allocated in one shard (`shard_hint % shards`, the next one when that shard
//! has no free pair), so forwarding never crosses threads.

use crate::backend::{BackendError, LegCounters, LegId, LegSpec, MediaBackend};
use crate::datapath::eventfd::EventFd;
use crate::datapath::fallback::FallbackShard;
use crate::datapath::{self, Command, Ctl, Kind, ShardParams, ShardStats, SharedStats};
use crate::table::latch::LatchPolicy;
use config::{DatapathKind, MediaConfig};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a control call waits for its shard.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Commands queued per shard before callers wait.
const QUEUE: usize = 1024;
/// How long `start` waits for a shard thread to set up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("media.port_min..media.port_max ({min}..={max}) holds fewer than two port pairs")]
    Range { min: u16, max: u16 },
    #[error("io_uring datapath unavailable (media.datapath = \"io_uring\"): {0}")]
    IoUring(String),
    #[error("cannot start datapath shard {shard}: {reason}")]
    Shard { shard: u16, reason: String },
}

struct ShardHandle {
    /// `None` after shutdown (dropping it disconnects the queue, which also stops the shard).
    tx: Option<SyncSender<Command>>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
    base_port: u16,
    pairs: u32,
}

/// The running media plane.
pub struct Media {
    shards: Vec<ShardHandle>,
    stats: StatsHandle,
    kind: Kind,
}

/// A cheap, cloneable, thread-safe reader of every shard's counters (for the metrics exporter,
/// which runs on another thread than the one owning [`Media`]). Lock-free: relaxed loads.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle {
    shards: Vec<Arc<SharedStats>>,
    kind: Option<Kind>,
}

impl StatsHandle {
    pub fn snapshot(&self) -> Vec<ShardStats> {
        self.shards
            .iter()
            .enumerate()
            .map(|(i, s)| s.snapshot(i as u16))
            .collect()
    }

    /// Shards whose thread has returned (a running relay has none).
    pub fn stopped_shards(&self) -> Vec<u16> {
        (0..)
            .zip(&self.shards)
            .filter(|(_, s)| s.is_stopped())
            .map(|(i, _)| i)
            .collect()
    }

    /// The datapath running (same as [`Media::datapath_kind`]).
    pub fn datapath_kind(&self) -> Option<Kind> {
        self.kind
    }
}

/// Split `min..=max` into `n` contiguous runs of port pairs: (base, pairs) per shard.
pub fn split_range(min: u16, max: u16, n: usize) -> Vec<(u16, u32)> {
    let base = u32::from(min) + u32::from(min & 1);
    let total = (u32::from(max) + 1).saturating_sub(base) / 2;
    // Each shard needs at least two pairs (one stream).
    let n = (n as u32).min(total / 2).max(1);
    let (per, rem) = (total / n, total % n);
    let mut out = Vec::with_capacity(n as usize);
    let mut b = base;
    for i in 0..n {
        let pairs = per + u32::from(i < rem);
        out.push((b as u16, pairs));
        b += 2 * pairs;
    }
    out
}

/// Start the media plane: one datapath thread per shard.
pub fn start(cfg: &MediaConfig) -> Result<Media, StartError> {
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let ranges = split_range(cfg.port_min, cfg.port_max, threads);
    if ranges.iter().map(|r| r.1).sum::<u32>() < 2 {
        return Err(StartError::Range {
            min: cfg.port_min,
            max: cfg.port_max,
        });
    }
    let total_ports: u64 = ranges.iter().map(|r| u64::from(r.1) * 2).sum();
    datapath::socket::raise_nofile(total_ports * 2 + 1024);
    let cpus = datapath::allowed_cpus();
    let policy = if cfg.strict_source {
        LatchPolicy::strict()
    } else {
        LatchPolicy::loose()
    };
    let mut media = Media {
        shards: Vec::new(),
        stats: StatsHandle::default(),
        kind: Kind::Fallback,
    };
    let mut requested = cfg.datapath;
    for (i, &(base_port, pairs)) in ranges.iter().enumerate() {
        let params = ShardParams {
            index: i as u16,
            base_port,
            pairs,
            policy,
            timeout: Duration::from_secs(cfg.timeout_s),
            ring_buffers: cfg.ring_buffers,
            pin_cpu: (cfg.pin_threads && !cpus.is_empty()).then(|| cpus[i % cpus.len()]),
        };
        let kind = media.spawn(params, requested)?;
        if i == 0 {
            media.kind = kind;
            // All shards run the same datapath as shard 0.
            if requested == DatapathKind::Auto && kind == Kind::Fallback {
                requested = DatapathKind::Fallback;
            }
        } else if kind != media.kind {
            media.kind = Kind::Fallback;
        }
    }
    media.stats.kind = Some(media.kind);
    Ok(media)
}

/// The body of a shard thread: io_uring if requested and possible, else the fallback.
fn shard_main(
    params: ShardParams,
    requested: DatapathKind,
    ctl: Ctl,
    ready: SyncSender<Result<Kind, StartError>>,
) {
    if let Some(cpu) = params.pin_cpu {
        datapath::pin_to_cpu(cpu);
    }
    let ctl = if requested == DatapathKind::Fallback {
        ctl
    } else {
        match datapath::uring::UringShard::new(&params, ctl) {
            Ok(shard) => {
                let _ = ready.send(Ok(Kind::IoUring));
                shard.run();
                return;
            }
            Err((e, ctl)) => {
                if requested == DatapathKind::IoUring {
                    let _ = ready.send(Err(StartError::IoUring(e.to_string())));
                    return;
                }
                tracing::warn!(shard = params.index, error = %e, "io_uring unavailable, using the recvmmsg fallback");
                ctl
            }
        }
    };
    match FallbackShard::new(&params, ctl) {
        Ok(shard) => {
            let _ = ready.send(Ok(Kind::Fallback));
            shard.run();
        }
        Err((e, _)) => {
            let _ = ready.send(Err(StartError::Shard {
                shard: params.index,
                reason: e.to_string(),
            }));
        }
    }
}

impl Media {
    fn spawn(&mut self, params: ShardParams, requested: DatapathKind) -> Result<Kind, StartError> {
        let index = params.index;
        let shard_err = |reason: String| StartError::Shard {
            shard: index,
            reason,
        };
        let wake = Arc::new(EventFd::new().map_err(|e| shard_err(e.to_string()))?);
        let stats = Arc::new(SharedStats::default());
        let (tx, rx) = sync_channel(QUEUE);
        let (ready_tx, ready_rx) = sync_channel(1);
        let ctl = Ctl {
            rx,
            wake: wake.clone(),
            stats: stats.clone(),
        };
        let (base_port, pairs) = (params.base_port, params.pairs);
        let thread = std::thread::Builder::new()
            .name(format!("rtp-shard-{index}"))
            .spawn(move || {
                // Marks the shard stopped however the thread ends (`/ready` reports it).
                struct Stopped(Arc<SharedStats>);
                impl Drop for Stopped {
                    fn drop(&mut self) {
                        self.0.set_stopped();
                    }
                }
                let _stopped = Stopped(ctl.stats.clone());
                shard_main(params, requested, ctl, ready_tx)
            })
            .map_err(|e| shard_err(e.to_string()))?;
        let kind = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(kind)) => kind,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err(shard_err("thread did not start".into())),
        };
        self.shards.push(ShardHandle {
            tx: Some(tx),
            wake,
            thread: Some(thread),
            base_port,
            pairs,
        });
        self.stats.shards.push(stats);
        Ok(kind)
    }

    /// Which datapath runs (io_uring only if every shard runs it).
    pub fn datapath_kind(&self) -> Kind {
        self.kind
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Each shard's (first RTP port, number of port pairs).
    pub fn shard_ports(&self) -> Vec<(u16, u32)> {
        self.shards.iter().map(|s| (s.base_port, s.pairs)).collect()
    }

    /// Lock-free snapshot of every shard's counters (published once per loop iteration).
    pub fn stats(&self) -> Vec<ShardStats> {
        self.stats.snapshot()
    }

    /// A reader of the same counters that can be moved to another thread.
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Stop and join every shard thread (their sockets and ports are released when this
    /// returns). Idempotent; later calls on the trait answer `Unavailable`.
    pub fn shutdown(&mut self) {
        for s in &mut self.shards {
            if let Some(tx) = s.tx.take() {
                // If the queue is full the disconnect stops the shard once it has drained it.
                let _ = tx.try_send(Command::Stop);
            }
            s.wake.notify();
        }
        for s in &mut self.shards {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn call<T>(
        &self,
        shard: u16,
        make: impl FnOnce(SyncSender<T>) -> Command,
    ) -> Result<T, BackendError> {
        let h = self
            .shards
            .get(usize::from(shard))
            .ok_or(BackendError::UnknownLeg)?;
        let queue = h.tx.as_ref().ok_or(BackendError::Unavailable)?;
        let (tx, rx) = sync_channel(1);
        let mut cmd = make(tx);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            match queue.try_send(cmd) {
                Ok(()) => break,
                Err(TrySendError::Full(c)) => {
                    if Instant::now() >= deadline {
                        return Err(BackendError::Unavailable);
                    }
                    cmd = c;
                    h.wake.notify();
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => return Err(BackendError::Unavailable),
            }
        }
        h.wake.notify();
        let left = deadline.saturating_duration_since(Instant::now());
        rx.recv_timeout(left).map_err(|e| match e {
            RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => BackendError::Unavailable,
        })
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl MediaBackend for Media {
    fn create(
        &mut self,
        shard_hint: u64,
        a: LegSpec,
        b: LegSpec,
    ) -> Result<(LegId, LegId), BackendError> {
        // The hinted shard first; when its ports are used up (or a port cannot be bound) the
        // next shards in turn: a call is refused only when no shard has a free pair, as with a
        // single range (rtpproxy, rtpengine). Hashing alone would refuse calls while half the
        // range is free whenever the Call-IDs happen to favour one shard.
        let mut last = BackendError::NoPorts;
        for shard in shard_order(shard_hint, self.shards.len()) {
            match self.call(shard, |reply| Command::Create { a, b, reply })? {
                Ok(legs) => return Ok(legs),
                Err(e @ (BackendError::NoPorts | BackendError::Bind(_))) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn update(&mut self, leg: LegId, spec: LegSpec) -> Result<(), BackendError> {
        self.call(leg.shard, |reply| Command::Update { leg, spec, reply })?
    }

    fn counters(&mut self, leg: LegId) -> Result<LegCounters, BackendError> {
        self.call(leg.shard, |reply| Command::Counters { leg, reply })?
    }

    fn remove(&mut self, a: LegId, b: LegId) -> Result<(LegCounters, LegCounters), BackendError> {
        if a.shard != b.shard {
            return Err(BackendError::UnknownLeg);
        }
        self.call(a.shard, |reply| Command::Remove { a, b, reply })?
    }

    fn take_expired(&mut self) -> Vec<(LegId, LegId, LegCounters, LegCounters)> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            match self.call(i as u16, |reply| Command::TakeExpired { reply }) {
                Ok(mut v) => out.append(&mut v),
                Err(e) => tracing::warn!(shard = i, error = %e, "cannot collect expired streams"),
            }
        }
        out
    }
}

/// The shards to try for a new stream: `hint % n` first, then the others in turn.
fn shard_order(hint: u64, n: usize) -> impl Iterator<Item = u16> {
    let n = n.max(1) as u64;
    (0..n).map(move |i| ((hint % n + i) % n) as u16)
}

#[cfg(test)]
mod tests {
    use super::{shard_order, split_range};

    #[test]
    fn shard_order_starts_at_the_hint_and_visits_every_shard_once() {
        assert_eq!(shard_order(5, 3).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(shard_order(u64::MAX, 2).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(shard_order(7, 0).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn split_is_contiguous_even_and_covers_range() {
        let r = split_range(30_001, 30_020, 3);
        // Pairs start at 30002; the last pair (30020, 30021) does not fit under 30020.
        assert_eq!(r, vec![(30_002, 3), (30_008, 3), (30_014, 3)]);
        let r = split_range(40_000, 40_009, 2);
        assert_eq!(r, vec![(40_000, 3), (40_006, 2)]);
    }

    #[test]
    fn small_range_means_fewer_shards() {
        assert_eq!(
            split_range(40_000, 40_007, 8),
            vec![(40_000, 2), (40_004, 2)]
        );
        assert_eq!(split_range(40_000, 40_005, 8), vec![(40_000, 3)]);
        assert_eq!(split_range(40_000, 40_001, 2), vec![(40_000, 1)]);
    }
}
