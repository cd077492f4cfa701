//! The datapath: one thread per shard, each owning its [`Table`], its sockets and (on the
//! io_uring path) its ring. The control thread talks to a shard only through [`Command`]s on a
//! bounded queue plus an eventfd wake-up; replies come back on a per-command channel.
//!
//! Two shells run the same table code:
//! - [`uring`]: multishot RECVMSG on fixed files drawing from a provided-buffer ring, SENDMSG
//!   straight from the received buffer, one `submit_and_wait` per loop iteration;
//! - [`fallback`]: epoll + recvmmsg/sendmmsg, for kernels or sandboxes without io_uring.
//!
//! Measured on the 2-vCPU dev VM (`tests/datapath_blast.rs`, 172-byte packets, one shard, CPU of
//! the shard thread ÷ packets forwarded; the box was shared, so ±30 % noise): io_uring, the
//! fallback and a bare recvmmsg/sendmmsg loop all land at ~1.8–2.6 µs per packet, at 50 kpps and
//! at saturation. A profile of the io_uring shard shows why they cannot differ much: user space
//! (table, latching, SQE building) is < 5 % of its CPU and io_uring's own overhead ~5 %; the
//! rest is the kernel's UDP send path, which on loopback also runs the receiver's delivery
//! (`__alloc_skb`, copies, routing, `net_rx_action`), plus sleep/wake-up (`finish_task_switch`,
//! ~12 % at 50 kpps). Hence the design: one `io_uring_enter` per batch, a wait that asks for
//! up to 32 completions with a 30 µs `min_wait` (fewer wake-ups), and no per-packet syscalls.

pub mod bufring;
pub mod eventfd;
pub mod fallback;
pub mod sockaddr;
pub mod socket;
pub mod stats;
pub mod uring;

use crate::backend::{BackendError, LegCounters, LegId, LegSpec};
use crate::table::{Sockets, Table};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use stats::{Gauges, ShardStats, SharedStats};

/// Interval of the per-shard tick that drives expiry (one timer per shard, none per leg).
pub const TICK: Duration = Duration::from_millis(100);

/// Largest datagram relayed; longer ones are dropped as truncated.
pub const BUF_SIZE: usize = 2048;

/// Which datapath a shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    IoUring,
    Fallback,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IoUring => "io_uring",
            Kind::Fallback => "fallback",
        }
    }
}

/// A request from the control thread to one shard. Commands without a reply channel (or with
/// `reply: None`) are fire-and-forget: their outcome, if any, comes back as an [`Event`].
#[derive(Debug)]
pub enum Command {
    /// Allocate and bind two pairs now (the pool had none).
    Create {
        a: LegSpec,
        b: LegSpec,
        reply: SyncSender<Result<(LegId, LegId), BackendError>>,
    },
    /// Bridge two pooled pairs (announced by [`Event::Pooled`]) into a stream. Should it fail,
    /// an [`Event::Ended`] reports the stream gone (as if it had timed out).
    CreatePooled {
        legs: (LegId, LegId),
        specs: (LegSpec, LegSpec),
        reply: Option<SyncSender<Result<(), BackendError>>>,
    },
    Update {
        leg: LegId,
        spec: LegSpec,
        reply: Option<SyncSender<Result<(), BackendError>>>,
    },
    Counters {
        leg: LegId,
        reply: SyncSender<Result<LegCounters, BackendError>>,
    },
    /// Without a reply channel the final counters come back as [`Event::Ended`].
    Remove {
        a: LegId,
        b: LegId,
        reply: Option<SyncSender<Result<(LegCounters, LegCounters), BackendError>>>,
    },
    Stop,
}

/// What a shard tells the control thread unasked, in order, on its event channel.
// Most events are `Ended`; boxing its counters would cost an allocation per stream end.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A pair of the socket pool is bound and ready to become a leg.
    Pooled(LegId),
    /// A stream is gone: expired (`expired: true`; also a pooled create that failed) or removed
    /// by a fire-and-forget [`Command::Remove`]; its final counters.
    Ended {
        a: LegId,
        b: LegId,
        counters: (LegCounters, LegCounters),
        expired: bool,
    },
}

/// Apply one command to the shard's table. Returns `false` on `Stop`.
pub fn apply(
    cmd: Command,
    table: &mut Table,
    sockets: &mut impl Sockets,
    events: &Sender<Event>,
    now: Instant,
) -> bool {
    // A failed reply send means the caller gave up waiting; the work is done anyway (and a
    // created stream will expire). A failed event send means the control side is gone.
    match cmd {
        Command::Create { a, b, reply } => {
            let _ = reply.send(table.create(a, b, now, sockets));
        }
        Command::CreatePooled { legs, specs, reply } => {
            let r = table.create_pooled(legs, specs, now, sockets);
            if let Err(e) = &r {
                tracing::warn!(shard = table.shard(), error = %e, "pooled create failed");
                if reply.is_none() {
                    let _ = events.send(Event::Ended {
                        a: legs.0,
                        b: legs.1,
                        counters: Default::default(),
                        expired: true,
                    });
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(r);
            }
        }
        Command::Update { leg, spec, reply } => {
            let r = table.update(leg, spec, sockets);
            match reply {
                Some(reply) => {
                    let _ = reply.send(r);
                }
                None => {
                    if let Err(e) = r {
                        // Raced with expiry (reported as Ended) or a failed rebind.
                        tracing::debug!(shard = table.shard(), ?leg, error = %e, "update not applied");
                    }
                }
            }
        }
        Command::Counters { leg, reply } => {
            let _ = reply.send(table.counters(leg, now));
        }
        Command::Remove { a, b, reply } => {
            let r = table.remove(a, b, now, sockets);
            match reply {
                Some(reply) => {
                    let _ = reply.send(r);
                }
                None => match r {
                    Ok(counters) => {
                        let _ = events.send(Event::Ended {
                            a,
                            b,
                            counters,
                            expired: false,
                        });
                    }
                    Err(e) => {
                        tracing::debug!(shard = table.shard(), ?a, error = %e, "remove not applied")
                    }
                },
            }
        }
        Command::Stop => return false,
    }
    true
}

/// Between batches: report expired streams and refill the socket pool.
pub fn after_batch(table: &mut Table, sockets: &mut impl Sockets, events: &Sender<Event>) {
    for (a, b, ca, cb) in table.take_expired() {
        let _ = events.send(Event::Ended {
            a,
            b,
            counters: (ca, cb),
            expired: true,
        });
    }
    for leg in table.refill_pool(sockets) {
        let _ = events.send(Event::Pooled(leg));
    }
}

/// The control endpoints a shard thread owns: its command queue, its doorbell, its event
/// channel, its stats block.
#[derive(Debug)]
pub struct Ctl {
    pub rx: Receiver<Command>,
    pub wake: Arc<eventfd::EventFd>,
    pub events: Sender<Event>,
    pub stats: Arc<SharedStats>,
}

/// Everything a shard thread needs to build its table and shell.
#[derive(Debug, Clone)]
pub struct ShardParams {
    pub index: u16,
    pub base_port: u16,
    pub pairs: u32,
    pub policy: crate::table::latch::LatchPolicy,
    pub timeout: Duration,
    pub ring_buffers: u32,
    pub pin_cpu: Option<usize>,
    /// Socket pool: pairs kept bound ahead of use (`media.socket_pool`), on `listen`.
    pub pool: usize,
    /// Socket recycling: freed pairs kept bound at most (`media.socket_recycle`).
    pub recycle: usize,
    pub listen: std::net::IpAddr,
}

impl ShardParams {
    pub fn table(&self) -> Table {
        Table::new(
            self.index,
            self.base_port,
            self.pairs,
            self.policy,
            self.timeout,
            // The port choice must not be predictable from outside (issue 9).
            rand::random(),
        )
        .with_pool(self.pool, self.listen)
        .with_recycle(self.recycle)
    }
}

/// Pin the calling thread to one CPU (best effort; failure is logged, not fatal).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against the set size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, error = %std::io::Error::last_os_error(), "cannot pin datapath thread");
        }
    }
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: as above; sched_getaffinity fills the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}
