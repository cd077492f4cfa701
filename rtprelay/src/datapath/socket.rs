//! Media sockets: one UDP socket per port, bound when a leg is allocated.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Bind a non-blocking UDP socket on `ip:port`. SO_REUSEADDR stays off: two relays (or two
/// legs) must never share a port, and a port still held by a lingering socket must fail loudly
/// so the allocator skips it.
pub fn bind_udp(ip: IpAddr, port: u16) -> io::Result<UdpSocket> {
    let addr = SocketAddr::new(ip, port);
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(false)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Bind the RTP (even) and RTCP (odd) sockets of a pair.
pub fn bind_pair(ip: IpAddr, rtp_port: u16) -> io::Result<[UdpSocket; 2]> {
    let rtcp_port = rtp_port
        .checked_add(1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "port out of range"))?;
    let rtp = bind_udp(ip, rtp_port)?;
    let rtcp = bind_udp(ip, rtcp_port)?;
    Ok([rtp, rtcp])
}

/// Raise RLIMIT_NOFILE's soft limit toward `want` (bounded by the hard limit): every relay port
/// is a descriptor, and registered fixed files count against it too.
pub fn raise_nofile(want: u64) {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        let target = want.min(r.rlim_max);
        if r.rlim_cur < target {
            r.rlim_cur = target;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
