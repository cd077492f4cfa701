//! CRLF keepalives (RFC 5626 §3.5.1 and §4.4.1).
//!
//! On streams a client sends a double CRLF ("ping"); the server answers a single CRLF ("pong").
//! On UDP, bare CRLF datagrams (and the 4-byte NAT keepalives some phones send) carry no message
//! and are absorbed silently. STUN Binding requests on the SIP UDP port (RFC 5626 §4.4.2, the
//! keepalive with NAT-binding discovery) are answered with the requester's reflexive address.

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

/// STUN magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// True when a UDP datagram is STUN rather than SIP (RFC 5626 §4.4.2, RFC 5389 §6): a 20-byte
/// header starting with 0x00/0x01 (a SIP message starts with a letter) and the magic cookie at
/// offset 4. Such datagrams never reach the SIP parser, whether or not they get an answer.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && matches!(data.first(), Some(0x00 | 0x01))
        && data.get(4..8) == Some(&MAGIC_COOKIE[..])
}

/// The Binding success response for a STUN datagram from `src`, or `None` for STUN that is not
/// a well-formed Binding request (ignored, RFC 5389 §7.3). Shares the relay's answerer.
pub fn stun_answer(data: &[u8], src: std::net::SocketAddr) -> Option<Vec<u8>> {
    sbc_shared::stun::answer(data, src)
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

    /// A minimal Binding request: type 0x0001, length 0, cookie, transaction id.
    fn binding_request() -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0x00, 0x00];
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[9u8; 12]);
        m
    }

    #[test]
    fn stun_classification() {
        let req = binding_request();
        assert!(is_stun(&req));
        assert!(!is_stun(&req[..19]), "shorter than a STUN header");
        let mut no_cookie = req.clone();
        no_cookie[4] = 0;
        assert!(!is_stun(&no_cookie));
        let mut bad_first = req.clone();
        bad_first[0] = 0x40;
        assert!(!is_stun(&bad_first));
        assert!(!is_stun(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n"));
        assert!(!is_stun(b"\r\n\r\n"));
    }

    #[test]
    fn stun_binding_answered_with_source() {
        let src: std::net::SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let resp = stun_answer(&binding_request(), src).expect("answered");
        // Binding success response (0x0101), same cookie and transaction id.
        assert_eq!(resp.get(0..2), Some(&[0x01, 0x01][..]));
        assert_eq!(resp.get(4..8), Some(&MAGIC_COOKIE[..]));
        assert_eq!(resp.get(8..20), Some(&[9u8; 12][..]));
        // XOR-MAPPED-ADDRESS (0x0020), IPv4: port ^ 0x2112, address ^ cookie.
        assert_eq!(resp.get(20..22), Some(&[0x00, 0x20][..]));
        let port = u16::from_be_bytes([resp[26], resp[27]]) ^ 0x2112;
        assert_eq!(port, 40000);
        let ip: Vec<u8> = (0..4).map(|i| resp[28 + i] ^ MAGIC_COOKIE[i]).collect();
        assert_eq!(ip, vec![127, 0, 0, 2]);
        // A Binding response (not a request) is STUN but gets no answer.
        let mut not_req = binding_request();
        not_req[0] = 0x01;
        not_req[1] = 0x01;
        assert!(is_stun(&not_req));
        assert!(stun_answer(&not_req, src).is_none());
    }
}
