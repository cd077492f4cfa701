//! Unique free loopback ports for tests running in parallel threads (and other test processes on
//! the same machine).
//!
//! Candidates come from an atomic counter starting at a PID-derived offset inside 15000..30000
//! (below Linux's ephemeral range, which starts at 32768, and below the relay's media range), and
//! a candidate is taken only if both a UDP socket and a TCP listener can bind it right now.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 15_000;
const SPAN: u32 = 15_000;

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// Returns a loopback port on which UDP and TCP are both free at the time of the call.
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

/// A loopback socket address on a fresh free port.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

fn is_free(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
}
