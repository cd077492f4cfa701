//! CRLF keepalives (RFC 5626 §3.5.1 and §4.4.1).
//!
//! On streams a client sends a double CRLF ("ping"); the server answers a single CRLF ("pong").
//! On UDP, bare CRLF datagrams (and the 4-byte NAT keepalives some phones send) carry no message
//! and are absorbed silently.

/// What to do with bytes that precede a message on a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamKeepalive {
    /// Nothing keepalive-like at the front.
    None,
    /// `n` leading bytes were a ping: drop them and send a pong.
    Ping(usize),
    /// `n` leading bytes were stray CRLFs (e.g. a pong, or the tail of a message): drop them.
    Skip(usize),
    /// Only part of a possible ping so far: wait for more.
    Incomplete,
}

/// Inspect the front of a stream buffer.
pub fn stream_front(buf: &[u8]) -> StreamKeepalive {
    if buf.starts_with(b"\r\n\r\n") {
        return StreamKeepalive::Ping(4);
    }
    if buf.first() != Some(&b'\r') && buf.first() != Some(&b'\n') {
        return StreamKeepalive::None;
    }
    if b"\r\n\r\n".starts_with(buf) {
        return StreamKeepalive::Incomplete;
    }
    let n = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    StreamKeepalive::Skip(n)
}

/// The pong for a stream ping.
pub const PONG: &[u8] = b"\r\n";

/// True for UDP datagrams that are keepalives, not SIP messages: whitespace only (CRLF, CRLFCRLF),
/// or a short all-zero / 4-byte probe.
pub fn is_datagram_keepalive(data: &[u8]) -> bool {
    data.is_empty()
        || data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        || (data.len() <= 4 && data.iter().all(|b| *b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong_on_streams() {
        assert_eq!(stream_front(b"\r\n\r\nINVITE"), StreamKeepalive::Ping(4));
        assert_eq!(stream_front(b"\r\n"), StreamKeepalive::Incomplete);
        assert_eq!(stream_front(b"\r\nINVITE"), StreamKeepalive::Skip(2));
        assert_eq!(stream_front(b"INVITE"), StreamKeepalive::None);
    }

    #[test]
    fn datagram_keepalives() {
        assert!(is_datagram_keepalive(b"\r\n\r\n"));
        assert!(is_datagram_keepalive(b"\r\n"));
        assert!(is_datagram_keepalive(&[0, 0, 0, 0]));
        assert!(!is_datagram_keepalive(b"OPTIONS sip:a SIP/2.0\r\n"));
    }
}
