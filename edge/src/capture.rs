//! SIP capture shell (`[hep]`): a copy of every SIP message the edge receives or sends goes to a
//! capture collector (Homer) as one HEP v3 datagram ([`crate::hep`] builds it).
//!
//! Capture must never hold up SIP: each copy is one non-blocking `send_to` on a socket of its
//! own; when the socket's buffer is full (the collector's path is slower than the SIP traffic)
//! the copy is dropped and counted (`edge_hep_dropped_total`), never queued or retried.
//! Keepalives (CRLF, the 4-byte NAT ping, STUN) are not SIP messages and are not captured.

use crate::hep;
use crate::metrics::Metrics;
use config::{HepConfig, Transport};
use prometheus::IntCounter;
use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Exporter {
    sock: UdpSocket,
    collector: SocketAddr,
    agent_id: u32,
    password: Option<Vec<u8>>,
    /// One packet buffer reused for every copy (the shell is single-threaded).
    buf: RefCell<Vec<u8>>,
    sent: IntCounter,
    dropped: IntCounter,
}

impl Exporter {
    /// The exporter for `cfg`, or `None` when capture is off. The socket is bound to an
    /// ephemeral port of the collector's address family.
    pub fn new(cfg: &HepConfig, metrics: &Metrics) -> std::io::Result<Option<Exporter>> {
        if !cfg.enabled {
            return Ok(None);
        }
        let domain = socket2::Domain::for_address(cfg.collector);
        let sock =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        // Room for a burst of copies (a REGISTER storm) before any is dropped.
        let _ = sock.set_send_buffer_size(4 << 20);
        sock.set_nonblocking(true)?;
        let any: SocketAddr = if cfg.collector.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        sock.bind(&any.into())?;
        Ok(Some(Exporter {
            sock: sock.into(),
            collector: cfg.collector,
            agent_id: cfg.agent_id,
            password: cfg.password.as_ref().map(|p| p.as_bytes().to_vec()),
            buf: RefCell::new(Vec::with_capacity(4096)),
            sent: metrics.hep_sent.clone(),
            dropped: metrics.hep_dropped.clone(),
        }))
    }

    /// Copies one message that went from `src` to `dst` (the edge's own address is one of them)
    /// to the collector, time-stamped now.
    pub fn capture(&self, transport: Transport, src: SocketAddr, dst: SocketAddr, msg: &[u8]) {
        if !is_sip(msg) {
            return;
        }
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let c = hep::Capture {
            transport,
            src,
            dst,
            time,
            agent_id: self.agent_id,
            auth_key: self.password.as_deref(),
            correlation_id: hep::call_id(msg),
            payload: msg,
        };
        let mut buf = self.buf.borrow_mut();
        let sent = hep::encode(&c, &mut buf)
            .is_ok()
            .then(|| self.sock.send_to(&buf, self.collector).is_ok());
        match sent {
            Some(true) => self.sent.inc(),
            // Would block, an unreachable collector, or a message too large for one packet.
            _ => self.dropped.inc(),
        }
    }
}

/// A SIP message starts with a method or `SIP/2.0`, both tokens of letters (RFC 3261 §7.1);
/// every keepalive starts with CR, LF, a zero byte or STUN's 0b00 type bits.
fn is_sip(msg: &[u8]) -> bool {
    msg.first().is_some_and(u8::is_ascii_alphabetic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalives_are_not_sip_messages() {
        assert!(is_sip(b"OPTIONS sip:a SIP/2.0\r\n"));
        assert!(is_sip(b"SIP/2.0 200 OK\r\n"));
        for ka in [
            &b"\r\n\r\n"[..],
            b"\r\n",
            b"\0\0\0\0",
            &[0x00, 0x01, 0x00, 0x00],
            b"",
        ] {
            assert!(!is_sip(ka), "{ka:?}");
        }
    }

    #[test]
    fn one_datagram_per_message_to_the_collector_and_counted() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        let cfg = HepConfig {
            enabled: true,
            collector: collector.local_addr().unwrap(),
            agent_id: 9,
            password: None,
        };
        let metrics = Metrics::new();
        let x = Exporter::new(&cfg, &metrics).unwrap().unwrap();
        let (a, b) = (
            "127.0.0.2:5060".parse().unwrap(),
            "127.0.0.1:5070".parse().unwrap(),
        );
        let msg = b"SIP/2.0 180 Ringing\r\nCall-ID: c1\r\n\r\n";
        x.capture(Transport::Tcp, a, b, msg);
        x.capture(Transport::Udp, a, b, b"\r\n\r\n");
        let mut buf = [0u8; 2048];
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let n = collector.recv(&mut buf).unwrap();
        let d = hep::decode(&buf[..n]).unwrap();
        assert_eq!((d.src, d.dst, d.ip_proto), (a, b, hep::PROTO_TCP));
        assert_eq!(d.payload, msg);
        assert_eq!(d.correlation_id.as_deref(), Some(&b"c1"[..]));
        assert_eq!((metrics.hep_sent.get(), metrics.hep_dropped.get()), (1, 0));
        assert!(Exporter::new(&HepConfig::default(), &metrics)
            .unwrap()
            .is_none());
    }
}
