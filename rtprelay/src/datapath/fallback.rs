//! The portable datapath: epoll over the shard's sockets and its eventfd, `recvmmsg` a batch
//! from each readable socket, decide per packet with the table, and `sendmmsg` the forwarded
//! batch out of the partner socket straight from the receive buffers (no copy). Used when
//! io_uring cannot be set up (seccomp in containers, old kernels) or when configured.

use super::sockaddr;
use super::socket::bind_pair;
use super::stats::{Gauges, IoStats};
use super::{after_batch, apply, Ctl, ShardParams, BUF_SIZE, TICK};
use crate::table::{Action, Component, Sockets, Table};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::TryRecvError;
use std::time::Instant;

/// Datagrams per recvmmsg/sendmmsg call.
const BATCH: usize = 64;
/// recvmmsg rounds per readable socket per loop iteration (fairness between sockets).
const ROUNDS: usize = 4;
const EVENTS: usize = 256;
const WAKE: u64 = u64::MAX;

/// The shard's sockets, indexed by `slot * 2 + component`, registered in the shard's epoll.
pub struct EpollSockets {
    epfd: OwnedFd,
    socks: Vec<Option<UdpSocket>>,
}

impl EpollSockets {
    fn new(pairs: u32) -> io::Result<EpollSockets> {
        // SAFETY: plain syscall; the fd is owned once.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut socks = Vec::new();
        socks.resize_with(pairs as usize * 2, || None);
        Ok(EpollSockets {
            // SAFETY: fresh valid fd.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            socks,
        })
    }

    fn add(&self, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: data,
        };
        // SAFETY: valid epoll fd, valid event struct.
        let r = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn fd(&self, idx: usize) -> Option<RawFd> {
        self.socks.get(idx)?.as_ref().map(AsRawFd::as_raw_fd)
    }
}

impl Sockets for EpollSockets {
    fn open(&mut self, slot: u32, ip: IpAddr, rtp_port: u16) -> io::Result<()> {
        let pair = bind_pair(ip, rtp_port)?;
        let base = slot as usize * 2;
        if base + 1 >= self.socks.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "slot out of range",
            ));
        }
        for (c, s) in pair.into_iter().enumerate() {
            self.add(s.as_raw_fd(), (base + c) as u64)?;
            self.socks[base + c] = Some(s);
        }
        Ok(())
    }

    fn close(&mut self, slot: u32) {
        let base = slot as usize * 2;
        for c in 0..2 {
            // Closing the only descriptor removes it from the epoll set.
            if let Some(s) = self.socks.get_mut(base + c) {
                s.take();
            }
        }
    }
}

/// Receive and send batch memory, allocated once per shard.
struct Batch {
    bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
    out_iov: Vec<libc::iovec>,
    out_names: Vec<libc::sockaddr_storage>,
    out_hdrs: Vec<libc::mmsghdr>,
}

fn zero_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data; null pointers and zero lengths are valid "empty" values.
    unsafe { std::mem::zeroed() }
}

impl Batch {
    fn new() -> Batch {
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Batch {
            bufs: vec![0u8; BATCH * BUF_SIZE],
            iov: vec![empty; BATCH],
            names: vec![sockaddr::empty_storage(); BATCH],
            hdrs: vec![zero_mmsghdr(); BATCH],
            out_iov: vec![empty; BATCH],
            out_names: vec![sockaddr::empty_storage(); BATCH],
            out_hdrs: vec![zero_mmsghdr(); BATCH],
        }
    }

    /// Point the receive headers at the buffers (the vectors never move after `new`).
    fn prepare_recv(&mut self) {
        let base = self.bufs.as_mut_ptr();
        for i in 0..BATCH {
            self.iov[i] = libc::iovec {
                // SAFETY: i * BUF_SIZE < bufs.len().
                iov_base: unsafe { base.add(i * BUF_SIZE) }.cast(),
                iov_len: BUF_SIZE,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
    }
}

pub struct FallbackShard {
    table: Table,
    socks: EpollSockets,
    ctl: Ctl,
    io: IoStats,
    batch: Batch,
}

impl FallbackShard {
    /// Set up the shard; on failure the control endpoints are handed back.
    pub fn new(params: &ShardParams, ctl: Ctl) -> Result<FallbackShard, (io::Error, Ctl)> {
        let mut table = params.table();
        let mut socks = match EpollSockets::new(table.pairs()) {
            Ok(s) => s,
            Err(e) => return Err((e, ctl)),
        };
        if let Err(e) = socks.add(ctl.wake.as_raw_fd(), WAKE) {
            return Err((e, ctl));
        }
        ctl.stats.set_datapath(super::Kind::Fallback);
        // The pool is ready before the shard reports ready.
        after_batch(&mut table, &mut socks, &ctl.events);
        Ok(FallbackShard {
            table,
            socks,
            ctl,
            io: IoStats::default(),
            batch: Batch::new(),
        })
    }

    /// Run until `Stop` (or the control side hangs up).
    pub fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            // Round up: a sub-millisecond remainder must sleep 1 ms, not spin with timeout 0.
            let ms = wait.as_micros().div_ceil(1000).min(TICK.as_millis()) as i32;
            // SAFETY: events has EVENTS entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.socks.epfd.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    ms,
                )
            };
            let now = Instant::now();
            let mut woken = false;
            for ev in events.iter().take(n.max(0) as usize) {
                let data = ev.u64;
                if data == WAKE {
                    woken = true;
                } else {
                    self.service(data as usize, now);
                }
            }
            let mut batch = false;
            if woken {
                self.ctl.wake.drain();
                loop {
                    match self.ctl.rx.try_recv() {
                        Ok(cmd) => {
                            self.io.commands += 1;
                            batch = true;
                            if !apply(cmd, &mut self.table, &mut self.socks, &self.ctl.events, now)
                            {
                                return;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
            }
            if now >= next_tick {
                self.table.expire(now, &mut self.socks);
                next_tick = now + TICK;
                batch = true;
                crate::sd_notify::test_stall_point();
            }
            if batch {
                after_batch(&mut self.table, &mut self.socks, &self.ctl.events);
            }
            self.io.loop_iterations += 1;
            let gauges = Gauges {
                active_streams: self.table.active_streams(),
                free_port_pairs: self.table.free_port_pairs(),
                // The fixed recvmmsg batch, reused every call: all free between iterations.
                free_buffers: BATCH as u64,
            };
            self.ctl.stats.publish(&self.table.stats, gauges, &self.io);
            self.ctl.stats.publish_quality(&self.table.quality);
        }
    }

    /// Drain (a bounded amount of) one readable socket.
    fn service(&mut self, idx: usize, now: Instant) {
        let Some(fd) = self.socks.fd(idx) else { return };
        let slot = (idx / 2) as u32;
        let component = Component::from_index(idx);
        for _ in 0..ROUNDS {
            self.batch.prepare_recv();
            // SAFETY: hdrs holds BATCH headers pointing at live buffers.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.batch.hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                return;
            }
            let n = n as usize;
            let mut out_idx = usize::MAX;
            let mut queued = 0usize;
            for i in 0..n {
                let h = &self.batch.hdrs[i];
                let len = (h.msg_len as usize).min(BUF_SIZE);
                let flags = h.msg_hdr.msg_flags;
                let src = sockaddr::parse_storage(&self.batch.names[i], h.msg_hdr.msg_namelen);
                self.io.rx_packets += 1;
                self.io.rx_bytes += len as u64;
                if flags & libc::MSG_TRUNC != 0 {
                    self.io.dropped_truncated += 1;
                    continue;
                }
                let Some(src) = src else { continue };
                let start = i * BUF_SIZE;
                let pkt = &self.batch.bufs[start..start + len];
                match self.table.on_packet(slot, component, src, pkt, now) {
                    Action::Forward {
                        slot: out,
                        component: c,
                        dst,
                    } => {
                        let oi = out as usize * 2 + c.index();
                        if oi != out_idx && queued > 0 {
                            self.flush(out_idx, queued);
                            queued = 0;
                        }
                        out_idx = oi;
                        let b = &mut self.batch;
                        b.out_iov[queued] = libc::iovec {
                            // SAFETY: start + len <= bufs.len().
                            iov_base: unsafe { b.bufs.as_mut_ptr().add(start) }.cast(),
                            iov_len: len,
                        };
                        let namelen = sockaddr::write(dst, &mut b.out_names[queued]);
                        let oh = &mut b.out_hdrs[queued];
                        oh.msg_hdr.msg_name =
                            (&mut b.out_names[queued] as *mut libc::sockaddr_storage).cast();
                        oh.msg_hdr.msg_namelen = namelen;
                        oh.msg_hdr.msg_iov = &mut b.out_iov[queued];
                        oh.msg_hdr.msg_iovlen = 1;
                        oh.msg_hdr.msg_control = std::ptr::null_mut();
                        oh.msg_hdr.msg_controllen = 0;
                        oh.msg_hdr.msg_flags = 0;
                        queued += 1;
                    }
                    Action::Stun => match crate::stun::answer(pkt, src) {
                        Some(resp) => {
                            if send_to(fd, &resp, src) {
                                self.io.stun_answered += 1;
                            } else {
                                self.io.send_errors += 1;
                            }
                        }
                        None => self.io.stun_ignored += 1,
                    },
                    Action::Drop(_) => {}
                }
            }
            if queued > 0 {
                self.flush(out_idx, queued);
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// sendmmsg the queued batch out of socket `idx`.
    fn flush(&mut self, idx: usize, queued: usize) {
        let Some(fd) = self.socks.fd(idx) else {
            self.io.send_errors += queued as u64;
            return;
        };
        let mut done = 0usize;
        // A short count means the socket buffer filled: retry the rest once, then drop.
        for _ in 0..2 {
            // SAFETY: out_hdrs[done..queued] are filled and point at live memory.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.batch.out_hdrs.as_mut_ptr().add(done),
                    (queued - done) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                // The first datagram failed (e.g. unreachable destination): skip it.
                done += 1;
                self.io.send_errors += 1;
            } else {
                done += r as usize;
            }
            if done >= queued {
                return;
            }
        }
        self.io.send_errors += (queued - done) as u64;
    }
}

/// One datagram with sendto (used for the rare STUN answers).
fn send_to(fd: RawFd, buf: &[u8], dst: SocketAddr) -> bool {
    let mut st = sockaddr::empty_storage();
    let len = sockaddr::write(dst, &mut st);
    // SAFETY: buf and st are valid for the call.
    let r = unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&st as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    r >= 0
}
