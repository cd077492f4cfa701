//! [`Media`]: the sharded media plane behind [`MediaBackend`]. It owns one datapath thread per
//! shard; every trait call becomes a [`Command`] on the owning shard's queue. A call that needs
//! the shard's answer waits for it on a reply channel within [`REPLY_TIMEOUT`] (else
//! [`BackendError::Unavailable`]).
//!
//! Cheap call setup (issue 12): in a batch ([`MediaBackend::begin_batch`], the control
//! server's), `U`/`L`/`D` wait for no shard. Each shard keeps a pool of pairs bound ahead of
//! use (`media.socket_pool`) and announces them on its event channel ([`Event::Pooled`]); a new
//! stream takes two of them here and the shard is told to bridge them (no bind, no reply). An
//! update is queued; a removal too, its final counters coming back as [`Event::Ended`] (as do
//! expired streams: no round trip on the tick either). To answer `UnknownLeg` without asking,
//! this side tracks which legs are live, from its own calls and the shard's events, which the
//! shard sends in order and which are read before any decision that depends on them. The
//! shards are woken once per batch. With an empty pool, or a leg on another interface than
//! `media.listen`, a call waits for its shard as before, without stalling the control
//! runtime's other tasks (see [`off_runtime`]).
//!
//! The configured port range is split into one contiguous sub-range per shard; a stream's two
//! legs are always allocated in one shard (`shard_hint % shards`, the next one when that shard
//! has no free pair), so forwarding never crosses threads.

use crate::backend::{BackendError, LegCounters, LegId, LegSpec, MediaBackend};
use crate::datapath::eventfd::EventFd;
use crate::datapath::fallback::FallbackShard;
use crate::datapath::{self, Command, Ctl, Event, Kind, ShardParams, ShardStats, SharedStats};
use crate::table::latch::LatchPolicy;
use crate::table::Expired;
use config::{DatapathKind, MediaConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::IpAddr;
use std::sync::mpsc::{
    channel, sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError,
};
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
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
    base_port: u16,
    pairs: u32,
    /// Pooled pairs announced by the shard and not yet taken; a stream takes uniformly random
    /// members ([`take_random`]): recycled pairs come back in the order their quarantine
    /// ended, which must not tell a prober which port the next call gets.
    pool: Vec<LegId>,
    /// Per slot: a leg of a stream this side believes exists.
    live: Vec<bool>,
    /// Commands queued since the doorbell last rang.
    dirty: bool,
}

impl ShardHandle {
    fn slot(&self, leg: LegId) -> Option<usize> {
        let off = leg.port.checked_sub(self.base_port)?;
        let slot = usize::from(off / 2);
        (off % 2 == 0 && slot < self.live.len()).then_some(slot)
    }

    fn is_live(&self, leg: LegId) -> bool {
        self.slot(leg).is_some_and(|s| self.live[s])
    }

    fn set_live(&mut self, leg: LegId, on: bool) {
        if let Some(s) = self.slot(leg) {
            self.live[s] = on;
        }
    }
}

/// The running media plane.
pub struct Media {
    shards: Vec<ShardHandle>,
    stats: StatsHandle,
    kind: Kind,
    /// The address pooled pairs are bound on (`media.listen`).
    listen: IpAddr,
    /// Inside a batch (see [`MediaBackend::begin_batch`]).
    batch: bool,
    /// Ended streams read from the event channels, not yet taken.
    expired: Vec<Expired>,
    removed: Vec<Expired>,
    /// Picks pooled pairs (seeded from the OS: not predictable from outside).
    rng: StdRng,
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
        listen: cfg.listen,
        batch: false,
        expired: Vec::new(),
        removed: Vec::new(),
        rng: StdRng::seed_from_u64(rand::random()),
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
            pool: cfg.socket_pool,
            recycle: cfg.socket_recycle,
            listen: cfg.listen,
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
        let (events_tx, events) = channel();
        let (ready_tx, ready_rx) = sync_channel(1);
        let ctl = Ctl {
            rx,
            wake: wake.clone(),
            events: events_tx,
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
            events,
            thread: Some(thread),
            base_port,
            pairs,
            pool: Vec::new(),
            live: vec![false; pairs as usize],
            dirty: false,
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

    /// Read every shard's events: pooled pairs, ended streams (their legs are not live any
    /// more). Called before any decision that depends on them.
    fn drain_events(&mut self) {
        for h in &mut self.shards {
            while let Ok(ev) = h.events.try_recv() {
                match ev {
                    Event::Pooled(leg) => h.pool.push(leg),
                    Event::Ended {
                        a,
                        b,
                        counters: (ca, cb),
                        expired,
                    } => {
                        h.set_live(a, false);
                        h.set_live(b, false);
                        let out = if expired {
                            &mut self.expired
                        } else {
                            &mut self.removed
                        };
                        out.push((a, b, ca, cb));
                    }
                }
            }
        }
    }

    /// Queue a command without waiting for an answer; the doorbell rings at the end of the
    /// batch (at once outside a batch).
    fn post(&mut self, shard: u16, cmd: Command) -> Result<(), BackendError> {
        let h = self
            .shards
            .get_mut(usize::from(shard))
            .ok_or(BackendError::UnknownLeg)?;
        enqueue(h, cmd)?;
        h.dirty = true;
        if !self.batch {
            ring(h);
        }
        Ok(())
    }

    /// Send a command and wait for its answer (rings the shard at once: commands queued
    /// earlier in the batch are applied first, in order). Events the shard sent before its
    /// answer are read afterwards.
    fn call<T>(
        &mut self,
        shard: u16,
        make: impl FnOnce(SyncSender<T>) -> Command,
    ) -> Result<T, BackendError> {
        let h = self
            .shards
            .get_mut(usize::from(shard))
            .ok_or(BackendError::UnknownLeg)?;
        let (tx, rx) = sync_channel(1);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        enqueue(h, make(tx))?;
        ring(h);
        let left = deadline.saturating_duration_since(Instant::now());
        let r = off_runtime(|| rx.recv_timeout(left)).map_err(|e| match e {
            RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected => BackendError::Unavailable,
        });
        self.drain_events();
        r
    }

    /// A stream from two pooled pairs of `shard`, if it has two (legs on `media.listen`).
    fn create_pooled(
        &mut self,
        shard: u16,
        a: LegSpec,
        b: LegSpec,
    ) -> Option<Result<(LegId, LegId), BackendError>> {
        let h = self.shards.get_mut(usize::from(shard))?;
        if h.pool.len() < 2 {
            return None;
        }
        let legs = (
            take_random(&mut h.pool, &mut self.rng)?,
            take_random(&mut h.pool, &mut self.rng)?,
        );
        let specs = (a, b);
        let r = if self.batch {
            self.post(
                shard,
                Command::CreatePooled {
                    legs,
                    specs,
                    reply: None,
                },
            )
        } else {
            self.call(shard, |reply| Command::CreatePooled {
                legs,
                specs,
                reply: Some(reply),
            })
            .and_then(|r| r)
        };
        Some(r.map(|()| {
            if let Some(h) = self.shards.get_mut(usize::from(shard)) {
                h.set_live(legs.0, true);
                h.set_live(legs.1, true);
            }
            legs
        }))
    }

    fn is_live(&self, leg: LegId) -> bool {
        self.shards
            .get(usize::from(leg.shard))
            .is_some_and(|h| h.is_live(leg))
    }

    fn set_live(&mut self, leg: LegId, on: bool) {
        if let Some(h) = self.shards.get_mut(usize::from(leg.shard)) {
            h.set_live(leg, on);
        }
    }
}

/// Run a wait for a shard (`f`) without stalling the control runtime. What still waits for a
/// shard, and why: a `U` whose legs cannot come from a pool (every shard's pool empty, or a leg
/// on `media.external`: the shard must bind and may fail), an `L`/`U` that moves a leg to
/// another interface (a rebind that may fail), `Q`, the `I` listing (live counters) and a full
/// command queue. Their reply depends on the shard's answer and commands execute one at a time
/// in arrival order, so the control task itself waits (a shard answers within one loop
/// iteration; [`REPLY_TIMEOUT`] at worst). On a multi-threaded tokio runtime (the relay's) the
/// wait runs in `block_in_place`: the worker hands its other tasks (the admin listener's
/// `/metrics` and `/ready`, unix-socket connections, timers) to another worker meanwhile, so
/// none of them waits behind a shard. `U`/`L`/`D` of a batch on pooled pairs never get here.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Take a uniformly random member of `pool` (O(1): the last one fills its place).
fn take_random<T>(pool: &mut Vec<T>, rng: &mut StdRng) -> Option<T> {
    if pool.is_empty() {
        return None;
    }
    let i = rng.random_range(0..pool.len());
    Some(pool.swap_remove(i))
}

/// Put a command on a shard's queue; a full queue rings the shard and waits (bounded).
fn enqueue(h: &ShardHandle, mut cmd: Command) -> Result<(), BackendError> {
    let queue = h.tx.as_ref().ok_or(BackendError::Unavailable)?;
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        match queue.try_send(cmd) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(c)) => {
                if Instant::now() >= deadline {
                    return Err(BackendError::Unavailable);
                }
                cmd = c;
                h.wake.notify();
                off_runtime(|| std::thread::sleep(Duration::from_millis(1)));
            }
            Err(TrySendError::Disconnected(_)) => return Err(BackendError::Unavailable),
        }
    }
}

fn ring(h: &mut ShardHandle) {
    h.wake.notify();
    h.dirty = false;
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
        self.drain_events();
        let pooled = a.local_ip == self.listen && b.local_ip == self.listen;
        let mut last = BackendError::NoPorts;
        // A pooled pair of any shard before a bind in the hinted one: a burst of calls larger
        // than one shard's pool should not wait for a shard while another has pairs ready.
        if pooled {
            for shard in shard_order(shard_hint, self.shards.len()) {
                match self.create_pooled(shard, a, b) {
                    Some(Ok(legs)) => return Ok(legs),
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
            }
        }
        for shard in shard_order(shard_hint, self.shards.len()) {
            match self.call(shard, |reply| Command::Create { a, b, reply })? {
                Ok(legs) => {
                    // The shard may have used pooled pairs (its allocator was empty).
                    if let Some(h) = self.shards.get_mut(usize::from(shard)) {
                        h.pool.retain(|l| *l != legs.0 && *l != legs.1);
                        h.set_live(legs.0, true);
                        h.set_live(legs.1, true);
                    }
                    return Ok(legs);
                }
                Err(e @ (BackendError::NoPorts | BackendError::Bind(_))) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn update(&mut self, leg: LegId, spec: LegSpec) -> Result<(), BackendError> {
        self.drain_events();
        if !self.is_live(leg) {
            return Err(BackendError::UnknownLeg);
        }
        // A leg on another interface may need a rebind, which may fail: wait for that answer.
        if self.batch && spec.local_ip == self.listen {
            return self.post(
                leg.shard,
                Command::Update {
                    leg,
                    spec,
                    reply: None,
                },
            );
        }
        self.call(leg.shard, |reply| Command::Update {
            leg,
            spec,
            reply: Some(reply),
        })?
    }

    fn counters(&mut self, leg: LegId) -> Result<LegCounters, BackendError> {
        self.call(leg.shard, |reply| Command::Counters { leg, reply })?
    }

    fn remove(&mut self, a: LegId, b: LegId) -> Result<(LegCounters, LegCounters), BackendError> {
        if a.shard != b.shard {
            return Err(BackendError::UnknownLeg);
        }
        let r = self.call(a.shard, |reply| Command::Remove {
            a,
            b,
            reply: Some(reply),
        })?;
        if r.is_ok() {
            self.set_live(a, false);
            self.set_live(b, false);
        }
        r
    }

    fn take_expired(&mut self) -> Vec<(LegId, LegId, LegCounters, LegCounters)> {
        self.drain_events();
        std::mem::take(&mut self.expired)
    }

    fn begin_batch(&mut self) {
        self.batch = true;
    }

    fn end_batch(&mut self) {
        self.batch = false;
        for h in self.shards.iter_mut().filter(|h| h.dirty) {
            ring(h);
        }
    }

    fn remove_deferred(
        &mut self,
        a: LegId,
        b: LegId,
    ) -> Result<Option<(LegCounters, LegCounters)>, BackendError> {
        if !self.batch {
            return self.remove(a, b).map(Some);
        }
        self.drain_events();
        if a.shard != b.shard || !self.is_live(a) || !self.is_live(b) {
            return Err(BackendError::UnknownLeg);
        }
        self.post(a.shard, Command::Remove { a, b, reply: None })?;
        self.set_live(a, false);
        self.set_live(b, false);
        Ok(None)
    }

    fn take_removed(&mut self) -> Vec<(LegId, LegId, LegCounters, LegCounters)> {
        self.drain_events();
        std::mem::take(&mut self.removed)
    }
}

/// The shards to try for a new stream: `hint % n` first, then the others in turn.
fn shard_order(hint: u64, n: usize) -> impl Iterator<Item = u16> {
    let n = n.max(1) as u64;
    (0..n).map(move |i| ((hint % n + i) % n) as u16)
}

#[cfg(test)]
mod tests {
    use super::{off_runtime, shard_order, split_range, take_random};

    /// A wait for a shard on the control runtime does not stall its other tasks, even with a
    /// single worker; outside a multi-threaded runtime it simply runs.
    #[test]
    fn waiting_for_a_shard_leaves_the_runtime_to_other_tasks() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;
        use std::time::Duration;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let ticks = Arc::new(AtomicU32::new(0));
        let t = ticks.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        let during = rt.block_on(async {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let before = ticks.load(Ordering::Relaxed);
                off_runtime(|| std::thread::sleep(Duration::from_millis(300)));
                ticks.load(Ordering::Relaxed) - before
            })
            .await
            .expect("task")
        });
        assert!(
            during >= 10,
            "other tasks ran {during} ticks during the wait"
        );
        assert_eq!(off_runtime(|| 7), 7);
    }
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Recycled pairs are announced in the order their quarantine ended: the pool must not
    /// hand them out in that order (FIFO) nor in reverse (LIFO), and every member can come
    /// first.
    #[test]
    fn pool_hand_out_is_random_not_fifo() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut firsts = [0u32; 32];
        for _ in 0..3_200 {
            let mut pool: Vec<u32> = (0..32).collect();
            let order: Vec<u32> = std::iter::from_fn(|| take_random(&mut pool, &mut rng)).collect();
            assert_eq!(order.len(), 32);
            assert_ne!(order, (0..32).collect::<Vec<_>>(), "FIFO");
            assert_ne!(order, (0..32).rev().collect::<Vec<_>>(), "LIFO");
            firsts[order[0] as usize] += 1;
        }
        // Uniform: 100 expected per member; chi-square, 31 degrees of freedom, p = 0.001 at 61.1.
        let chi2: f64 = firsts
            .iter()
            .map(|&o| (f64::from(o) - 100.0).powi(2) / 100.0)
            .sum();
        assert!(chi2 < 61.1, "chi-square {chi2:.1}: {firsts:?}");
        assert_eq!(take_random(&mut Vec::<u32>::new(), &mut rng), None);
    }

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
