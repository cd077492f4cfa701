//! `SocketAddr` <-> kernel `sockaddr` without allocation (the hot path converts one per packet).

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Space for either family; `sockaddr_in6` is the larger one we use.
pub const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();

pub fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    unsafe { zeroed() }
}

/// Write `addr` into `out`; returns the length to pass as `msg_namelen`.
pub fn write(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe {
                (out as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
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
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                (out as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Parse a kernel-written name (as raw bytes, e.g. inside an io_uring recvmsg buffer).
pub fn parse(name: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([*name.first()?, *name.get(1)?]);
    match i32::from(family) {
        libc::AF_INET if name.len() >= size_of::<libc::sockaddr_in>() => {
            let port = u16::from_be_bytes([name[2], name[3]]);
            let ip = Ipv4Addr::new(name[4], name[5], name[6], name[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if name.len() >= size_of::<libc::sockaddr_in6>() => {
            let port = u16::from_be_bytes([name[2], name[3]]);
            let flow = u32::from_ne_bytes([name[4], name[5], name[6], name[7]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&name[8..24]);
            let scope = u32::from_ne_bytes([name[24], name[25], name[26], name[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// Parse a `sockaddr_storage` filled by the kernel with length `len`.
pub fn parse_storage(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: the storage is `size_of::<sockaddr_storage>()` initialised bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts((s as *const libc::sockaddr_storage).cast::<u8>(), len)
    };
    parse(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for a in ["127.0.0.1:30000", "[2001:db8::1]:5004", "0.0.0.0:1"] {
            let addr: SocketAddr = a.parse().expect("addr");
            let mut st = empty_storage();
            let len = write(addr, &mut st);
            assert_eq!(parse_storage(&st, len), Some(addr));
        }
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[2, 0, 1]), None);
    }
}
