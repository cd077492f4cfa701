//! UDP shell: one socket per listen address; each datagram is one message (RFC 3261 §18.3).

use super::{keepalive, Source, Transport};
use crate::server::Edge;
use bytes::Bytes;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Bind with a large receive buffer: bursts of REGISTER refreshes must not overflow it.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    let _ = sock.set_recv_buffer_size(8 << 20);
    let _ = sock.set_send_buffer_size(8 << 20);
    sock.set_nonblocking(true)?;
    super::recverr::enable(&sock, addr.is_ipv6())?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

pub async fn recv_loop(edge: Rc<Edge>, index: usize) {
    let (local, sock) = edge.udp[index].clone();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, remote) = match sock.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                // A pending ICMP error surfaces here once (ECONNREFUSED…); `error_loop` reads
                // the details from the error queue. Not fatal.
                tracing::debug!(%local, error = %e, "udp recv");
                continue;
            }
        };
        let data = &buf[..n];
        let src = Source {
            transport: Transport::Udp,
            remote,
            local,
            flow: None,
        };
        // Before anything else: keepalives are packets too.
        if !edge.admit(&src) {
            continue;
        }
        if keepalive::is_datagram_keepalive(data) {
            continue;
        }
        if keepalive::is_stun(data) {
            // RFC 5626 §4.4.2: answer on the socket it came in on so the reflexive address
            // is the one the phone's SIP flow uses.
            if let Some(resp) = keepalive::stun_answer(data, remote) {
                edge.metrics.stun_answered.inc();
                let _ = sock.try_send_to(&resp, remote);
            } else {
                edge.metrics.drop("stun_not_binding_request");
            }
            continue;
        }
        edge.on_message(Bytes::copy_from_slice(data), src);
    }
}

/// ICMP errors of socket `index` ([`super::recverr`]): each destination found unreachable is a
/// transport error for the proxy (client transactions toward it fail, a core fails over).
pub async fn error_loop(edge: Rc<Edge>, index: usize) {
    let (local, sock) = edge.udp[index].clone();
    let fd = sock.as_raw_fd();
    loop {
        match sock
            .async_io(Interest::ERROR, || super::recverr::drain(fd))
            .await
        {
            Ok(addrs) => {
                for addr in addrs {
                    tracing::debug!(%local, %addr, "ICMP unreachable");
                    edge.on_transport_error(super::Dest {
                        transport: Transport::Udp,
                        addr,
                        flow: None,
                    });
                }
            }
            Err(e) => {
                tracing::warn!(%local, error = %e, "udp error queue");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
