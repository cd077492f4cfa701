//! Transports: where SIP messages come from and go to.
//!
//! The types here are plain values shared by the sans-IO proxy core (which decides *where* a
//! message goes) and the tokio shell (`udp.rs`, `tcp.rs`, which does the sending). A TCP
//! connection is a *flow* (RFC 5626 §3): responses and requests toward that peer reuse it.

pub mod guard;
pub mod keepalive;
pub mod recverr;
pub mod tcp;
pub mod udp;

pub use config::Transport;
use std::net::SocketAddr;

/// Identifies one TCP connection for its lifetime. Never reused.
pub type FlowId = u64;

/// Where a message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub transport: Transport,
    /// The packet's real source (what RFC 3581 `received`/`rport` report).
    pub remote: SocketAddr,
    /// The local listen address it arrived on.
    pub local: SocketAddr,
    /// The TCP connection, for stream transports.
    pub flow: Option<FlowId>,
}

/// Where a message must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dest {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Use this TCP connection if it is still open (else connect / use another to `addr`).
    pub flow: Option<FlowId>,
}

impl Dest {
    /// Reply toward a source over the same flow (RFC 3581 §4: to the source ip:port).
    pub fn back_to(src: &Source) -> Dest {
        Dest {
            transport: src.transport,
            addr: src.remote,
            flow: src.flow,
        }
    }

    pub fn is_reliable(&self) -> bool {
        self.transport == Transport::Tcp
    }
}

/// One message for the shell to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub dest: Dest,
    pub bytes: bytes::Bytes,
}
