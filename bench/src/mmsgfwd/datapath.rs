//! The forwarding threads: one epoll set per thread over the sockets of the sessions it owns,
//! `recvmmsg` a batch from each readable socket, latch the sender, and `sendmmsg` the batch out
//! of the partner socket straight from the receive buffers. Nothing else per packet.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Receive buffer per datagram.
pub const BUF_SIZE: usize = 2048;
/// Upper bound on `--batch`.
pub const MAX_BATCH: usize = 1024;
/// recvmmsg rounds per readable socket per epoll wake (fairness between sockets).
const ROUNDS: usize = 4;
const EVENTS: usize = 256;
/// epoll token of the thread's eventfd.
const WAKE: u64 = u64::MAX;
/// Longest epoll sleep (nothing is timed; this only bounds a wait).
const WAIT_MS: i32 = 1000;

/// A peer address as the kernel wants it.
#[derive(Clone, Copy)]
pub struct Peer {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Peer {
    pub fn new(addr: std::net::SocketAddr) -> Peer {
        let sa = socket2::SockAddr::from(addr);
        // SAFETY: an all-zero sockaddr_storage is valid; we copy at most its size.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = (sa.len() as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: both regions are at least `len` bytes and do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                len,
            );
        }
        Peer {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

/// One side of a session: the RTP and RTCP sockets its party talks to, and where that party is.
pub struct Leg {
    pub socks: [UdpSocket; 2],
    /// Per component: the party's address (from the SDP, then the first packet's source).
    pub peer: [Option<Peer>; 2],
    pub latched: [bool; 2],
}

/// Legs 0 (the `U` party, A) and 1 (the `L` party, B). A packet on leg l's socket goes out of
/// leg 1-l's socket of the same component, to leg 1-l's peer.
pub struct Session {
    pub legs: [Leg; 2],
}

/// Control → thread messages.
pub enum Msg {
    Add(u64, Box<Session>),
    /// Set (not latch) leg's peer address for both components (`L` after `U`).
    Peer(u64, usize, Box<[Option<Peer>; 2]>),
    Remove(u64),
}

/// The control side's handle on one forwarding thread.
pub struct Handle {
    inbox: Arc<Mutex<Vec<Msg>>>,
    wake: Arc<OwnedFd>,
    pub counters: Arc<Counters>,
}

/// The two counters (updated once per batch).
#[derive(Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
}

impl Handle {
    pub fn send(&self, m: Msg) {
        if let Ok(mut q) = self.inbox.lock() {
            q.push(m);
        }
        let one: u64 = 1;
        // SAFETY: 8-byte write to our eventfd.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                size_of::<u64>(),
            );
        }
    }
}

/// Start forwarding thread `index` (pinned to `cpu` if given).
pub fn spawn(index: usize, cpu: Option<usize>, batch: usize) -> io::Result<Handle> {
    // SAFETY: plain syscalls; each fd is owned once.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
    epoll_add(epfd.as_raw_fd(), wake.as_raw_fd(), WAKE)?;
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Counters::default());
    let (w_wake, w_inbox, w_counters) = (wake.clone(), inbox.clone(), counters.clone());
    std::thread::Builder::new()
        .name(format!("mmsgfwd-{index}"))
        .spawn(move || {
            if let Some(c) = cpu {
                pin(c);
            }
            // Built on the thread: the batch memory (raw pointers) never crosses threads.
            Worker {
                epfd,
                wake: w_wake,
                inbox: w_inbox,
                counters: w_counters,
                slots: Vec::new(),
                free: Vec::new(),
                ids: std::collections::HashMap::new(),
                batch: Batch::new(batch),
            }
            .run()
        })?;
    Ok(Handle {
        inbox,
        wake,
        counters,
    })
}

fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks.
    unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set.
    unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn epoll_add(epfd: RawFd, fd: RawFd, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: data,
    };
    // SAFETY: valid fds and event struct.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Batch memory, allocated once per thread; the vectors never move after `new`.
struct Batch {
    n: usize,
    bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    hdrs: Vec<libc::mmsghdr>,
    out_iov: Vec<libc::iovec>,
    out_hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new(n: usize) -> Batch {
        let n = n.clamp(1, MAX_BATCH);
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: mmsghdr and sockaddr_storage are plain data; zero is a valid empty value.
        let (h, s): (libc::mmsghdr, libc::sockaddr_storage) = unsafe { (zeroed(), zeroed()) };
        let mut b = Batch {
            n,
            bufs: vec![0u8; n * BUF_SIZE],
            iov: vec![empty; n],
            names: vec![s; n],
            hdrs: vec![h; n],
            out_iov: vec![empty; n],
            out_hdrs: vec![h; n],
        };
        let base = b.bufs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: i * BUF_SIZE < bufs.len().
            b.iov[i] = libc::iovec {
                iov_base: unsafe { base.add(i * BUF_SIZE) }.cast(),
                iov_len: BUF_SIZE,
            };
            b.out_iov[i] = b.iov[i];
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.iov[i];
            h.msg_iovlen = 1;
            let o = &mut b.out_hdrs[i].msg_hdr;
            o.msg_iov = &mut b.out_iov[i];
            o.msg_iovlen = 1;
        }
        b
    }
}

struct Worker {
    epfd: OwnedFd,
    wake: Arc<OwnedFd>,
    inbox: Arc<Mutex<Vec<Msg>>>,
    counters: Arc<Counters>,
    slots: Vec<Option<Box<Session>>>,
    free: Vec<usize>,
    ids: std::collections::HashMap<u64, usize>,
    batch: Batch,
}

impl Worker {
    fn run(&mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        // Runs until the process exits (the control thread bounds its lifetime).
        loop {
            // SAFETY: events has EVENTS entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    WAIT_MS,
                )
            };
            let (mut rx, mut fwd) = (0u64, 0u64);
            for ev in events.iter().take(n.max(0) as usize) {
                let data = ev.u64;
                if data == WAKE {
                    self.drain_inbox();
                } else {
                    let (r, f) = self.service(data);
                    rx += r;
                    fwd += f;
                }
            }
            if rx > 0 {
                self.counters.received.fetch_add(rx, Ordering::Relaxed);
                self.counters.forwarded.fetch_add(fwd, Ordering::Relaxed);
            }
        }
    }

    fn drain_inbox(&mut self) {
        let mut v = [0u8; 8];
        // SAFETY: 8-byte read from our eventfd (non-blocking).
        unsafe { libc::read(self.wake.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
        let msgs = match self.inbox.lock() {
            Ok(mut q) => std::mem::take(&mut *q),
            Err(_) => return,
        };
        for m in msgs {
            match m {
                Msg::Add(id, s) => {
                    let slot = self.free.pop().unwrap_or_else(|| {
                        self.slots.push(None);
                        self.slots.len() - 1
                    });
                    for (l, leg) in s.legs.iter().enumerate() {
                        for (c, sock) in leg.socks.iter().enumerate() {
                            let token = (slot as u64) << 2 | (l as u64) << 1 | c as u64;
                            let _ = epoll_add(self.epfd.as_raw_fd(), sock.as_raw_fd(), token);
                        }
                    }
                    if let Some(x) = self.slots.get_mut(slot) {
                        *x = Some(s);
                    }
                    self.ids.insert(id, slot);
                }
                Msg::Peer(id, leg, peer) => {
                    let s = self
                        .ids
                        .get(&id)
                        .and_then(|&slot| self.slots.get_mut(slot))
                        .and_then(|s| s.as_mut());
                    if let Some(l) = s.and_then(|s| s.legs.get_mut(leg)) {
                        for ((p, latched), new) in l.peer.iter_mut().zip(l.latched).zip(*peer) {
                            if !latched {
                                *p = new;
                            }
                        }
                    }
                }
                Msg::Remove(id) => {
                    if let Some(slot) = self.ids.remove(&id) {
                        // Closing the only descriptors removes them from the epoll set.
                        if let Some(x) = self.slots.get_mut(slot) {
                            *x = None;
                        }
                        self.free.push(slot);
                    }
                }
            }
        }
    }

    /// Read and forward from one readable socket: (received, forwarded).
    fn service(&mut self, token: u64) -> (u64, u64) {
        let slot = (token >> 2) as usize;
        let l = ((token >> 1) & 1) as usize;
        let c = (token & 1) as usize;
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return (0, 0);
        };
        let b = &mut self.batch;
        let (mut rx, mut fwd) = (0u64, 0u64);
        let in_fd = s.legs[l].socks[c].as_raw_fd();
        let out_fd = s.legs[1 - l].socks[c].as_raw_fd();
        for _ in 0..ROUNDS {
            for h in b.hdrs.iter_mut() {
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            // SAFETY: hdrs point into this batch's buffers (stable), n entries.
            let got = unsafe {
                libc::recvmmsg(
                    in_fd,
                    b.hdrs.as_mut_ptr(),
                    b.n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                break;
            }
            let got = got as usize;
            rx += got as u64;
            let leg = &mut s.legs[l];
            if !leg.latched[c] {
                let h = &b.hdrs[0].msg_hdr;
                leg.peer[c] = Some(Peer {
                    storage: b.names[0],
                    len: h.msg_namelen,
                });
                leg.latched[c] = true;
            }
            if let Some(peer) = s.legs[1 - l].peer[c].as_ref() {
                for i in 0..got {
                    b.out_iov[i].iov_len = b.hdrs[i].msg_len as usize;
                    let o = &mut b.out_hdrs[i].msg_hdr;
                    o.msg_name = (&peer.storage as *const libc::sockaddr_storage
                        as *mut libc::sockaddr_storage)
                        .cast();
                    o.msg_namelen = peer.len;
                }
                // SAFETY: out_hdrs point at the receive buffers and at `peer`, alive here.
                let sent = unsafe {
                    libc::sendmmsg(out_fd, b.out_hdrs.as_mut_ptr(), got as libc::c_uint, 0)
                };
                if sent > 0 {
                    fwd += sent as u64;
                }
            }
            if got < b.n {
                break;
            }
        }
        (rx, fwd)
    }
}
