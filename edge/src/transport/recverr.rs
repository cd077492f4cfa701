//! ICMP errors on the SIP UDP sockets (`IP_RECVERR` / `IPV6_RECVERR`, ip(7), ipv6(7)).
//!
//! The SIP sockets are unconnected (one per listen address serves every peer), and Linux
//! reports an ICMP error to an unconnected UDP socket only when `IP_RECVERR` is set; it then
//! queues it on the socket's error queue with the *destination* of the datagram that caused it.
//! Reading that queue turns "port unreachable" (the core's process is gone) or "host
//! unreachable" into a transport error for that address at once (RFC 3261 §18.4: ICMP errors
//! are transport errors), instead of waiting for Timer B/F or missed health probes.
//!
//! A pending error is also reported once by the next `sendto` on the socket (it fails with
//! that error and the datagram is not sent): [`is_icmp_error`] tells the sender to try again.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Ask the kernel to queue ICMP errors on `sock`.
pub fn enable(sock: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
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

/// Errors an ICMP message surfaces as (on receive, or once on the next send).
pub fn is_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN)
    )
}

/// Read every queued error: the destinations found unreachable. `WouldBlock` when the queue
/// held none (so an async caller waits for the next error readiness).
pub fn drain(fd: RawFd) -> io::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    // Bounded: a flood of ICMP must not keep the event loop here.
    for _ in 0..256 {
        match read_one(fd) {
            Ok(Some(addr)) => out.push(addr),
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// One error-queue entry: `Some(destination)` when it is an ICMP unreachable.
fn read_one(fd: RawFd) -> io::Result<Option<SocketAddr>> {
    // SAFETY: plain-old-data buffers; recvmsg writes at most their given lengths.
    unsafe {
        let mut name: libc::sockaddr_storage = zeroed();
        let mut data = [0u8; 64];
        let mut control = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 64]>();
        if libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut unreachable = false;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let recverr = (c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_RECVERR)
                || (c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
            if recverr {
                let ee: libc::sock_extended_err =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let icmp = ee.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    || ee.ee_origin == libc::SO_EE_ORIGIN_ICMP6;
                unreachable |=
                    icmp && is_icmp_error(&io::Error::from_raw_os_error(ee.ee_errno as i32));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok(unreachable.then(|| sockaddr(&name)).flatten())
    }
}

fn sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    // SAFETY: the family field says which sockaddr the storage holds.
    unsafe {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                let a = &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a = &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// A datagram to a closed loopback port comes back as ICMP port unreachable: the error
    /// queue names that destination (and only with `IP_RECVERR` set).
    #[test]
    fn closed_port_is_reported_with_its_destination() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&s, false).unwrap();
        s.send_to(b"OPTIONS", dead).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let got = loop {
            match drain(s.as_raw_fd()) {
                Ok(v) => break v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("no error queued: {e}"),
            }
        };
        assert_eq!(got, vec![dead]);
        assert_eq!(
            drain(s.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "drained"
        );
    }

    #[test]
    fn without_recverr_nothing_is_queued() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"OPTIONS", dead).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            drain(s.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn icmp_errors_are_told_apart() {
        assert!(is_icmp_error(&io::Error::from_raw_os_error(
            libc::ECONNREFUSED
        )));
        assert!(!is_icmp_error(&io::Error::from_raw_os_error(libc::EAGAIN)));
    }
}
