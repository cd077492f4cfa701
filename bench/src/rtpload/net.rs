//! Socket plumbing: non-blocking UDP sockets with large buffers, and batched `sendmmsg` /
//! `recvmmsg` with buffers allocated once per batch object (no allocation per packet).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// Packets per `sendmmsg`/`recvmmsg` call.
pub const BATCH: usize = 64;
/// Receive buffer size per packet (larger than any probe, so truncation is visible).
pub const RX_BUF: usize = 2048;

/// A bound, non-blocking UDP socket with socket buffers of `buf_bytes` (raised past
/// `net.core.rmem_max` when running as root, else capped by it).
pub fn bind_udp(addr: SocketAddr, buf_bytes: usize) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr)?;
    sock.set_nonblocking(true)?;
    let s = socket2::SockRef::from(&sock);
    let _ = s.set_recv_buffer_size(buf_bytes);
    let _ = s.set_send_buffer_size(buf_bytes);
    let fd = sock.as_raw_fd();
    let v = libc::c_int::try_from(buf_bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt on an fd we own with a valid c_int option value; failure (not
        // root) is harmless: the plain sizes above stay.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(sock)
}

/// A destination in the form `sendmmsg` wants.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    pub fn new(addr: SocketAddr) -> Self {
        // SAFETY: an all-zero sockaddr_storage is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6)
                };
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

/// Up to [`BATCH`] datagrams queued for one socket, sent with one `sendmmsg`.
pub struct SendBatch {
    fd: RawFd,
    size: usize,
    bufs: Vec<u8>,
    addrs: Vec<RawAddr>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    len: usize,
}

// SAFETY: the raw pointers in `iov`/`hdrs` point into this object's own buffers and are
// rewritten before every use; the object is used by one thread at a time.
unsafe impl Send for SendBatch {}

/// Outcome of a flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    pub failed: usize,
}

impl SendBatch {
    pub fn new(sock: &UdpSocket, size: usize) -> Self {
        // SAFETY: all-zero iovec/mmsghdr are valid (null pointers, zero lengths).
        let (iov, hdrs) = unsafe { (vec![zeroed(); BATCH], vec![zeroed(); BATCH]) };
        SendBatch {
            fd: sock.as_raw_fd(),
            size,
            bufs: vec![0; size * BATCH],
            addrs: vec![RawAddr::new(SocketAddr::from(([127, 0, 0, 1], 9))); BATCH],
            iov,
            hdrs,
            len: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next slot: its packet buffer to fill, addressed to `to`. Call only when not full.
    pub fn push(&mut self, to: &RawAddr) -> &mut [u8] {
        let i = self.len.min(BATCH - 1);
        self.len = i + 1;
        if let Some(a) = self.addrs.get_mut(i) {
            *a = *to;
        }
        let start = i * self.size;
        self.bufs
            .get_mut(start..start + self.size)
            .unwrap_or(&mut [])
    }

    /// Send everything queued; `EAGAIN` (socket buffer full) is retried a few times, then the
    /// rest counts as failed.
    pub fn flush(&mut self) -> Flushed {
        let n = self.len;
        self.len = 0;
        let mut out = Flushed::default();
        if n == 0 {
            return out;
        }
        for i in 0..n {
            let iov = &mut self.iov[i];
            iov.iov_base = self.bufs[i * self.size..].as_mut_ptr().cast();
            iov.iov_len = self.size;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i].storage as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.addrs[i].len;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut done = 0;
        let mut retries = 0;
        while done < n {
            // SAFETY: hdrs[done..n] are initialised above and point into live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                done += r as usize;
                out.sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            retries += 1;
            if e.kind() == io::ErrorKind::WouldBlock && retries < 4 {
                std::thread::yield_now();
                continue;
            }
            if e.kind() == io::ErrorKind::WouldBlock {
                out.failed += n - done;
                break;
            }
            // Another error (e.g. ECONNREFUSED from an ICMP): skip the first message.
            out.failed += 1;
            done += 1;
        }
        out
    }
}

/// Ask the kernel to stamp every datagram received on `sock` with its arrival time
/// (`SO_TIMESTAMPNS`, CLOCK_REALTIME): latency is then measured up to the moment the packet
/// reached the tool's socket, not to when a (possibly starved) receiver thread read it.
pub fn enable_rx_timestamps(sock: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on an fd we own with a valid c_int.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CLOCK_REALTIME in ns (the clock of `SO_TIMESTAMPNS`).
pub fn realtime_ns() -> u64 {
    // SAFETY: clock_gettime with a valid out pointer.
    let ts = unsafe {
        let mut ts: libc::timespec = zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        ts
    };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Room for one `SCM_TIMESTAMPNS` control message.
const CMSG_ROOM: usize = 64;

/// A `recvmmsg` batch for one socket.
pub struct RecvBatch {
    bufs: Vec<u8>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    cmsgs: Vec<u64>,
}

// SAFETY: as for SendBatch.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: all-zero iovec/mmsghdr are valid.
        let (iov, hdrs) = unsafe { (vec![zeroed(); BATCH], vec![zeroed(); BATCH]) };
        RecvBatch {
            bufs: vec![0; RX_BUF * BATCH],
            iov,
            hdrs,
            // u64 elements: aligned for cmsghdr.
            cmsgs: vec![0; CMSG_ROOM / 8 * BATCH],
        }
    }
}

impl RecvBatch {
    /// Receive what is queued on `fd` (up to [`BATCH`], non-blocking) and hand each datagram
    /// to `f` with its kernel arrival time (ns, CLOCK_REALTIME) when the socket has
    /// [`enable_rx_timestamps`]. Returns the number received (0 when nothing was queued).
    pub fn recv(&mut self, fd: RawFd, mut f: impl FnMut(&[u8], Option<u64>)) -> usize {
        for i in 0..BATCH {
            let iov = &mut self.iov[i];
            iov.iov_base = self.bufs[i * RX_BUF..].as_mut_ptr().cast();
            iov.iov_len = RX_BUF;
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = std::ptr::null_mut();
            h.msg_hdr.msg_namelen = 0;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i * CMSG_ROOM / 8..].as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = CMSG_ROOM as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: hdrs point into our buffers, sized as declared.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return 0;
        }
        let n = r as usize;
        for i in 0..n {
            let len = (self.hdrs[i].msg_len as usize).min(RX_BUF);
            let ts = timestamp(&self.hdrs[i].msg_hdr);
            if let Some(d) = self.bufs.get(i * RX_BUF..i * RX_BUF + len) {
                f(d, ts);
            }
        }
        n
    }
}

/// The `SCM_TIMESTAMPNS` of a received message, if any.
fn timestamp(h: &libc::msghdr) -> Option<u64> {
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within
    // msg_controllen; the data of an SCM_TIMESTAMPNS message is a timespec.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Wait until one of `fds` is readable or `timeout_ms` passes; returns the readiness flags in
/// `ready` (same order).
pub fn poll_readable(fds: &[RawFd], ready: &mut Vec<bool>, timeout_ms: i32) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: p is a valid array of pollfd of the given length.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    ready.clear();
    ready.extend(p.iter().map(|x| x.revents & libc::POLLIN != 0));
}

/// Raise RLIMIT_NOFILE's soft limit to `want` (bounded by the hard limit).
pub fn raise_nofile(want: u64) {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r: libc::rlimit = zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < want {
            r.rlim_cur = want.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn batch_send_and_receive_on_loopback() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let b = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        enable_rx_timestamps(&b).unwrap();
        let before = realtime_ns();
        let to = RawAddr::new(b.local_addr().unwrap());
        let mut sb = SendBatch::new(&a, 100);
        for i in 0..BATCH {
            assert!(!sb.is_full());
            let buf = sb.push(&to);
            buf.fill(i as u8);
        }
        assert!(sb.is_full());
        assert_eq!(
            sb.flush(),
            Flushed {
                sent: BATCH,
                failed: 0
            }
        );
        assert!(sb.is_empty());
        let mut rb = RecvBatch::default();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut ready = Vec::new();
        while got.len() < BATCH && Instant::now() < deadline {
            poll_readable(&[b.as_raw_fd()], &mut ready, 100);
            rb.recv(b.as_raw_fd(), |d, ts| {
                got.push((d.len(), d[0], ts.is_some()))
            });
        }
        assert_eq!(got.len(), BATCH);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, g)| *g == (100, i as u8, true)));
        // Nothing queued: returns 0 at once (non-blocking).
        assert_eq!(rb.recv(b.as_raw_fd(), |_, _| {}), 0);
        // Kernel stamps are on the realtime clock, between send and now.
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        let mut stamp = None;
        while stamp.is_none() && Instant::now() < deadline {
            poll_readable(&[b.as_raw_fd()], &mut ready, 100);
            rb.recv(b.as_raw_fd(), |_, ts| stamp = ts);
        }
        let stamp = stamp.unwrap();
        assert!(before <= stamp && stamp <= realtime_ns());
    }
}
