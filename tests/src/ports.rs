//! Loopback addresses for the three sides of the edge, and unique free ports for tests running in
//! parallel threads (and other test processes on the same machine).
//!
//! The edge tells the core side from the access side by source IP (a core address's IP, or a
//! trusted network), so access-side peers must not share the core's IP: phones send from
//! [`ACCESS_IP`], core peers listen on [`CORE_IP`], the edge on [`EDGE_IP`]. Linux routes all of
//! 127.0.0.0/8 to the loopback interface, so no setup is needed.
//!
//! Candidates come from an atomic counter starting at a PID-derived offset inside 15000..30000
//! (below Linux's ephemeral range, which starts at 32768, and below the relay's media range), and
//! a candidate is taken only if both a UDP socket and a TCP listener can bind it right now.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the edge listens.
pub const EDGE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Where access-side peers (phones: callers, registering UAs) send from.
pub const ACCESS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Where real softphones (baresip, linphonec) run. They bind their RTP sockets to the wildcard
/// address, so on loopback the kernel sends their media from 127.0.0.1 whatever IP their SIP
/// uses; a phone must announce the address it sends from (a real one does), or the relay's
/// strict-source latching rightly drops it. The relay's media address in those tests is
/// another one (127.0.0.4), so no loopback coincidence can hide a wrong SDP address.
pub const PHONE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Where core-side peers (the core, registrar, fork targets) listen.
pub const CORE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

const FIRST: u32 = 15_000;
const SPAN: u32 = 15_000;

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// Returns a port on which UDP and TCP are both free, on each of [`EDGE_IP`], [`ACCESS_IP`] and
/// [`CORE_IP`], at the time of the call.
///
/// Panics if none is found after scanning the whole span (the machine is out of ports).
pub fn free_port() -> u16 {
    // Lazily seed the counter from the PID so concurrent test binaries start far apart.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 500) * 30,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let Ok(port) = u16::try_from(FIRST + n % SPAN) else {
            continue;
        };
        if is_free(port) {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

/// `ip` with a fresh free port.
pub fn free_addr(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::from((ip, free_port()))
}

fn is_free(port: u16) -> bool {
    [EDGE_IP, ACCESS_IP, CORE_IP].iter().all(|ip| {
        let addr = SocketAddr::from((*ip, port));
        UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
    })
}
