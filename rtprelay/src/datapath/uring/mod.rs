//! The io_uring datapath of one shard.
//!
//! Why it is built this way (see DESIGN.md, "What makes the io_uring datapath fast"): on this
//! class of machine syscalls dominate, so everything is batched into one `io_uring_enter` per
//! loop iteration:
//! - the ring is created on the shard thread with SINGLE_ISSUER + DEFER_TASKRUN (completions are
//!   only produced when this thread enters the kernel, no IPIs/task-work interruptions), falling
//!   back to COOP_TASKRUN;
//! - every media socket is a fixed file (index `slot * 2 + component`, so a completion maps to its
//!   leg by arithmetic) with one multishot RECVMSG armed, all drawing from the shard's
//!   provided-buffer ring;
//! - a packet is forwarded by a SENDMSG that points into the very buffer it was received in; the
//!   buffer returns to the ring when the send completes (no copy);
//! - a multishot TIMEOUT (100 ms) drives expiry; an eventfd READ wakes the loop for commands.
//!
//! Files: `setup` (ring flags, kernel requirements), `sockets` (fixed-file bookkeeping),
//! `userdata` (what a completion refers to); this file is the loop.

mod setup;
mod sockets;
mod userdata;

use super::bufring::BufRing;
use super::sockaddr::{self, NAME_LEN};
use super::stats::{Gauges, IoStats};
use super::{after_batch, apply, Ctl, ShardParams, BUF_SIZE, TICK};
use crate::table::{Action, Component, Table};
use io_uring::squeue::Entry;
use io_uring::types::{CancelBuilder, Fd, Fixed, RecvMsgOut, TimeoutFlags, Timespec};
use io_uring::{cqueue, opcode, IoUring, SubmissionQueue, Submitter};
use setup::build_ring;
use sockets::UringSockets;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};
use userdata::*;

/// The shard's one provided-buffer group.
const BGID: u16 = 0;
/// Batching of the wait (see `run`): completions wanted per wake-up, and how long to wait for
/// them (µs) once at least one is there. 30 µs is far below RTP jitter-buffer scales; measured
/// on the 2-vCPU dev box it lowered CPU per packet at full load (~2.5 -> ~1.8 µs), neutral at
/// 50 kpps.
const WANT: usize = 32;
const MIN_WAIT_US: u32 = 30;

/// Memory a SENDMSG points at while in flight: one per receive buffer, indexed by buffer id
/// (a buffer is in at most one send at a time).
struct SendSlot {
    addr: libc::sockaddr_storage,
    iov: libc::iovec,
    msg: libc::msghdr,
}

/// Everything but the ring (so the loop can borrow the ring's queues and this at once).
struct State {
    table: Table,
    socks: UringSockets,
    bufs: BufRing,
    sends: Box<[SendSlot]>,
    recv_hdr: Box<libc::msghdr>,
    tick: Box<Timespec>,
    wake_buf: Box<u64>,
    ctl: Ctl,
    io: IoStats,
    stop: bool,
    /// Commands were applied or streams expired in this iteration (see `after_batch`).
    batch: bool,
    next_tick: Instant,
    /// The kernel supports `min_wait_usec` (6.12+).
    min_wait: bool,
    /// Multishot TIMEOUT (6.4+); cleared when the kernel refuses it.
    tick_multishot: bool,
    /// Multishot receives armed and not yet ended; sends submitted and not yet completed.
    inflight_recv: usize,
    inflight_send: usize,
}

pub struct UringShard {
    // Declared first: dropped (and its requests torn down) before the memory they point at.
    ring: IoUring,
    st: State,
}

impl UringShard {
    /// Set up the ring, the fixed-file table and the buffer ring on the calling (shard) thread.
    /// On failure the control endpoints are handed back so the fallback can use them.
    pub fn new(params: &ShardParams, ctl: Ctl) -> Result<UringShard, (io::Error, Ctl)> {
        match Self::setup(params) {
            Ok((ring, table, bufs, files)) => {
                ctl.stats.set_datapath(super::Kind::IoUring);
                let mut shard = Self::assemble(ring, table, bufs, files, ctl);
                // The pool is ready before the shard reports ready (its ring updates are
                // applied at the top of the first loop iteration).
                let st = &mut shard.st;
                after_batch(&mut st.table, &mut st.socks, &st.ctl.events);
                Ok(shard)
            }
            Err(e) => Err((e, ctl)),
        }
    }

    fn setup(params: &ShardParams) -> io::Result<(IoUring, Table, BufRing, u32)> {
        let table = params.table();
        let files = table.pairs() * 2;
        let nbuf = params.ring_buffers.clamp(16, 32768);
        let cq = (nbuf * 2).clamp(1024, 65536);
        let ring = build_ring(nbuf.min(4096), cq)?;
        let bufs = BufRing::new(nbuf, BUF_SIZE)?;
        let sub = ring.submitter();
        sub.register_files_sparse(files)?;
        // SAFETY: the ring memory lives in `bufs`, which outlives the ring (see field order
        // of `UringShard`) and is never moved (mmap).
        unsafe { sub.register_buf_ring_with_flags(bufs.ring_addr(), bufs.entries(), BGID, 0)? };
        Ok((ring, table, bufs, files))
    }

    fn assemble(ring: IoUring, table: Table, bufs: BufRing, files: u32, ctl: Ctl) -> UringShard {
        let n = files as usize;
        let min_wait = ring.params().is_feature_min_timeout();
        let mut socks = Vec::new();
        socks.resize_with(n, || None);
        // SAFETY: msghdr is plain data; zero = no name, no iov, no control.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        let sends = (0..bufs.entries())
            .map(|_| SendSlot {
                addr: sockaddr::empty_storage(),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                // SAFETY: as above.
                msg: unsafe { std::mem::zeroed() },
            })
            .collect();
        UringShard {
            ring,
            st: State {
                table,
                socks: UringSockets {
                    socks,
                    gens: vec![0; n],
                    updates: Vec::new(),
                    arm: Vec::new(),
                    cancel: Vec::new(),
                },
                bufs,
                sends,
                recv_hdr,
                tick: Box::new(Timespec::from(TICK)),
                wake_buf: Box::new(0),
                ctl,
                io: IoStats::default(),
                stop: false,
                batch: false,
                next_tick: Instant::now() + TICK,
                min_wait,
                tick_multishot: true,
                inflight_recv: 0,
                inflight_send: 0,
            },
        }
    }

    /// Run until `Stop` (or the control side hangs up).
    pub fn run(mut self) {
        let (mut submitter, mut sq, mut cq) = self.ring.split();
        // Saves the fd lookup on every io_uring_enter (best effort).
        let _ = submitter.register_ring_fd();
        let st = &mut self.st;
        st.arm_wake(&submitter, &mut sq);
        st.arm_tick(&submitter, &mut sq);
        while !st.stop {
            st.apply_socket_changes(&submitter, &mut sq);
            st.bufs.commit();
            sq.sync();
            let r = if st.min_wait {
                // Wait for WANT completions but at most MIN_WAIT_US, then return with what is
                // there: fewer wake-ups per packet under load, bounded added latency.
                let ts = Timespec::from(TICK);
                let args = io_uring::types::SubmitArgs::new()
                    .min_wait_usec(MIN_WAIT_US)
                    .timespec(&ts);
                submitter.submit_with_args(WANT, &args)
            } else {
                submitter.submit_and_wait(1)
            };
            match r {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // EBUSY: completions are backed up; reaping them below makes room.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => {
                    tracing::error!(shard = st.table.shard(), error = %e, "io_uring_enter failed; shard stops");
                    break;
                }
            }
            cq.sync();
            let now = Instant::now();
            st.batch = false;
            for cqe in &mut cq {
                st.on_cqe(&cqe, now, &submitter, &mut sq);
            }
            cq.sync();
            if now >= st.next_tick {
                st.table.expire(now, &mut st.socks);
                st.next_tick = now + TICK;
                st.batch = true;
                crate::sd_notify::test_stall_point();
            }
            if st.batch && !st.stop {
                after_batch(&mut st.table, &mut st.socks, &st.ctl.events);
            }
            st.io.loop_iterations += 1;
            let gauges = st.gauges();
            st.ctl.stats.publish(&st.table.stats, gauges, &st.io);
            st.ctl.stats.publish_quality(&st.table.quality);
        }
        st.teardown(&submitter, &mut sq, &mut cq);
    }
}

/// Queue an SQE, submitting to make room if the SQ is full. Returns false if it could not be
/// queued (the ring is wedged); the caller undoes what the entry would have done.
fn push(submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, e: &Entry) -> bool {
    for _ in 0..8 {
        // SAFETY: every entry built by this module points at memory owned by `State`, which
        // outlives the request (buffers/slots are reused only after the completion).
        if unsafe { sq.push(e) }.is_ok() {
            return true;
        }
        sq.sync();
        let _ = submitter.submit();
        sq.sync();
    }
    false
}

impl State {
    fn arm_wake(&mut self, submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>) {
        let e = opcode::Read::new(
            Fd(self.ctl.wake.as_raw_fd()),
            (&mut *self.wake_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(CTL_WAKE);
        push(submitter, sq, &e);
    }

    fn arm_tick(&mut self, submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>) {
        let flags = if self.tick_multishot {
            TimeoutFlags::MULTISHOT
        } else {
            TimeoutFlags::empty()
        };
        let e = opcode::Timeout::new(&*self.tick)
            .count(0)
            .flags(flags)
            .build()
            .user_data(CTL_TIMEOUT);
        push(submitter, sq, &e);
    }

    fn arm_recv(&mut self, idx: u32, submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>) {
        let gen = self.socks.gens.get(idx as usize).copied().unwrap_or(0);
        let e = opcode::RecvMsgMulti::new(Fixed(idx), &*self.recv_hdr, BGID)
            .build()
            .user_data(recv_ud(idx, gen));
        if push(submitter, sq, &e) {
            self.inflight_recv += 1;
        }
    }

    /// Apply queued file-table updates, cancels and arms (in that order).
    fn apply_socket_changes(&mut self, submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>) {
        // One syscall per run of consecutive indexes (a pair's RTP and RTCP are neighbours).
        let updates = std::mem::take(&mut self.socks.updates);
        let mut i = 0;
        while let Some(&(first, _)) = updates.get(i) {
            let mut fds = vec![updates[i].1];
            while let Some(&(idx, fd)) = updates.get(i + fds.len()) {
                if idx != first + fds.len() as u32 {
                    break;
                }
                fds.push(fd);
            }
            i += fds.len();
            if let Err(e) = submitter.register_files_update(first, &fds) {
                tracing::warn!(idx = first, error = %e, "fixed file update failed");
            }
        }
        for ud in std::mem::take(&mut self.socks.cancel) {
            let e = opcode::AsyncCancel::new(ud).build().user_data(CTL_CANCEL);
            push(submitter, sq, &e);
        }
        for idx in std::mem::take(&mut self.socks.arm) {
            if self
                .socks
                .socks
                .get(idx as usize)
                .is_some_and(Option::is_some)
            {
                self.arm_recv(idx, submitter, sq);
            }
        }
    }

    fn on_cqe(
        &mut self,
        cqe: &cqueue::Entry,
        now: Instant,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
    ) {
        let ud = cqe.user_data();
        match ud >> OP_SHIFT {
            OP_RECV => self.on_recv(cqe, now, submitter, sq),
            OP_SEND => {
                self.inflight_send = self.inflight_send.saturating_sub(1);
                if cqe.result() < 0 {
                    self.io.send_errors += 1;
                }
                self.bufs.push((ud & 0xffff) as u16);
            }
            _ => match ud {
                CTL_WAKE => {
                    self.drain_commands(now);
                    if !self.stop {
                        self.arm_wake(submitter, sq);
                    }
                }
                // A multishot timeout that ended (should not happen with count 0): re-arm.
                // A one-shot timeout fired, or (before 6.4) MULTISHOT was refused: re-arm,
                // one-shot from then on.
                CTL_TIMEOUT if !cqueue::more(cqe.flags()) && !self.stop => {
                    if cqe.result() == -libc::EINVAL {
                        self.tick_multishot = false;
                    }
                    self.arm_tick(submitter, sq);
                }
                _ => {}
            },
        }
    }

    /// Every buffer the shard holds is in a send in flight (all other paths give it back
    /// before returning), so the rest are free: in the ring, or pushed and committed at the
    /// top of the next iteration. Filled buffers whose completion is not reaped yet count as
    /// free (the kernel's ring head is not shared with user space).
    fn gauges(&self) -> Gauges {
        let held = self.inflight_send.min(usize::from(self.bufs.entries()));
        Gauges {
            active_streams: self.table.active_streams(),
            free_port_pairs: self.table.free_port_pairs(),
            free_buffers: (usize::from(self.bufs.entries()) - held) as u64,
        }
    }

    fn drain_commands(&mut self, now: Instant) {
        loop {
            match self.ctl.rx.try_recv() {
                Ok(cmd) => {
                    self.io.commands += 1;
                    self.batch = true;
                    if !apply(cmd, &mut self.table, &mut self.socks, &self.ctl.events, now) {
                        self.stop = true;
                        return;
                    }
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.stop = true;
                    return;
                }
            }
        }
    }

    fn on_recv(
        &mut self,
        cqe: &cqueue::Entry,
        now: Instant,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
    ) {
        let ud = cqe.user_data();
        let (idx, gen) = recv_parts(ud);
        let res = cqe.result();
        let flags = cqe.flags();
        if !cqueue::more(flags) {
            self.inflight_recv = self.inflight_recv.saturating_sub(1);
        }
        let current = self.socks.gens.get(idx as usize).map(|&g| gen_bits(g)) == Some(gen)
            && self
                .socks
                .socks
                .get(idx as usize)
                .is_some_and(Option::is_some);
        if !cqueue::more(flags) && current && !self.stop {
            // The multishot ended. Transient reasons (ring ran dry, overflow, signal) re-arm;
            // a hard error (bad fixed file, ...) would fail again at once, so it is logged and
            // the socket left unarmed instead of spinning.
            let transient = res >= 0 || [libc::ENOBUFS, libc::EAGAIN, libc::EINTR].contains(&-res);
            if transient {
                self.io.multishot_rearms += 1;
                self.socks.arm.push(idx);
            } else {
                tracing::warn!(
                    shard = self.table.shard(),
                    idx,
                    error = %io::Error::from_raw_os_error(-res),
                    "receive failed; socket not re-armed"
                );
            }
        }
        if res == -libc::ENOBUFS {
            self.io.buffer_exhausted += 1;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return;
        };
        if res < 0 || !current {
            self.bufs.push(bid);
            return;
        }
        let len = res as usize;
        let Some(buf) = self.bufs.get(bid, len) else {
            return;
        };
        let Ok(msg) = RecvMsgOut::parse(buf, &self.recv_hdr) else {
            self.bufs.push(bid);
            return;
        };
        self.io.rx_packets += 1;
        self.io.rx_bytes += msg.payload_data().len() as u64;
        if msg.is_payload_truncated() {
            self.io.dropped_truncated += 1;
            self.bufs.push(bid);
            return;
        }
        let Some(src) = sockaddr::parse(msg.name_data()) else {
            self.bufs.push(bid);
            return;
        };
        let payload = msg.payload_data();
        let (off, plen) = (len - payload.len(), payload.len());
        let slot = idx / 2;
        match self
            .table
            .on_packet(slot, Component::from_index(idx as usize), src, payload, now)
        {
            Action::Forward {
                slot: out,
                component,
                dst,
            } => {
                let out_idx = out * 2 + component.index() as u32;
                self.send(bid, off, plen, out_idx, dst, submitter, sq);
            }
            Action::Stun => match crate::stun::answer(payload, src) {
                Some(resp) => {
                    let n = resp.len();
                    if let Some(b) = self.bufs.get_mut(bid) {
                        if let Some(dst) = b.get_mut(..n) {
                            dst.copy_from_slice(&resp);
                            self.io.stun_answered += 1;
                            self.send(bid, 0, n, idx, src, submitter, sq);
                            return;
                        }
                    }
                    self.bufs.push(bid);
                }
                None => {
                    self.io.stun_ignored += 1;
                    self.bufs.push(bid);
                }
            },
            Action::Drop(_) => self.bufs.push(bid),
        }
    }

    /// SENDMSG `len` bytes at `off` of buffer `bid` out of fixed file `out_idx` to `dst`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        bid: u16,
        off: usize,
        len: usize,
        out_idx: u32,
        dst: std::net::SocketAddr,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
    ) {
        let open = self
            .socks
            .socks
            .get(out_idx as usize)
            .is_some_and(Option::is_some);
        let (Some(base), Some(slot)) = (self.bufs.ptr(bid), self.sends.get_mut(usize::from(bid)))
        else {
            return;
        };
        if !open {
            self.io.send_errors += 1;
            self.bufs.push(bid);
            return;
        }
        let namelen = sockaddr::write(dst, &mut slot.addr);
        slot.iov = libc::iovec {
            // SAFETY: off + len <= buffer size (both come from the parsed receive).
            iov_base: unsafe { base.add(off) }.cast(),
            iov_len: len,
        };
        slot.msg.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
        slot.msg.msg_namelen = namelen;
        slot.msg.msg_iov = &mut slot.iov;
        slot.msg.msg_iovlen = 1;
        // SENDMSG rather than SEND with a destination address: measured the same or better
        // here (the address needs the same async copy either way).
        let e = opcode::SendMsg::new(Fixed(out_idx), &slot.msg)
            .build()
            .user_data(send_ud(bid));
        if push(submitter, sq, &e) {
            self.inflight_send += 1;
        } else {
            self.io.send_errors += 1;
            self.bufs.push(bid);
        }
    }

    /// Cancel everything in flight, reap until no receive or send is left, then unregister the
    /// files so every socket (and its port) is released before `run` returns — ring teardown
    /// after close is asynchronous in the kernel and would keep the ports bound a little longer.
    fn teardown(
        &mut self,
        submitter: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
        cq: &mut io_uring::CompletionQueue<'_>,
    ) {
        let e = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(CTL_CANCEL_ALL);
        if push(submitter, sq, &e) {
            sq.sync();
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut cancelled = false;
            while Instant::now() < deadline
                && !(cancelled && self.inflight_recv == 0 && self.inflight_send == 0)
            {
                let ts = Timespec::from(Duration::from_millis(20));
                let args = io_uring::types::SubmitArgs::new().timespec(&ts);
                let _ = submitter.submit_with_args(1, &args);
                cq.sync();
                for cqe in &mut *cq {
                    let ud = cqe.user_data();
                    match ud >> OP_SHIFT {
                        OP_RECV if !cqueue::more(cqe.flags()) => {
                            self.inflight_recv = self.inflight_recv.saturating_sub(1)
                        }
                        OP_SEND => self.inflight_send = self.inflight_send.saturating_sub(1),
                        _ if ud == CTL_CANCEL_ALL => cancelled = true,
                        _ => {}
                    }
                }
                cq.sync();
            }
        }
        if let Err(e) = submitter.unregister_files() {
            tracing::debug!(error = %e, "unregister files");
        }
        let _ = submitter.unregister_buf_ring(BGID);
    }
}
