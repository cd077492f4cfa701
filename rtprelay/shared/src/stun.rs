//! STUN binding requests on media ports (sans-IO).
//!
//! ICE agents and NAT keepalives (RFC 8445 §7.2, RFC 7675 consent freshness) send STUN Binding
//! requests to the relay's media ports. The relay answers them inline with a Binding success
//! response carrying XOR-MAPPED-ADDRESS = the request's source (RFC 8489 §14.2), plus
//! FINGERPRINT if the request had one (RFC 8489 §7.3: mirror the client's choice). The relay
//! holds no ICE credentials, so MESSAGE-INTEGRITY is neither checked nor added. STUN is never
//! forwarded to the other party and never latches.

use std::net::SocketAddr;
use stun_rs::attributes::stun::{Fingerprint, XorMappedAddress};
use stun_rs::methods::BINDING;
use stun_rs::{MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder};

/// Upper bound of a response: header + XOR-MAPPED-ADDRESS (IPv6) + FINGERPRINT.
const MAX_RESPONSE: usize = 20 + 24 + 8;

/// The response to a Binding request from `src`, or `None` if `req` is not a well-formed
/// Binding request (other STUN classes/methods and garbage are ignored, RFC 8489 §6.3).
pub fn answer(req: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    let decoder = MessageDecoderBuilder::default().build();
    let (msg, _) = decoder.decode(req).ok()?;
    if msg.method() != BINDING || msg.class() != MessageClass::Request {
        return None;
    }
    let mut builder = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*msg.transaction_id())
        .with_attribute(XorMappedAddress::from(src));
    if msg.get::<Fingerprint>().is_some() {
        builder = builder.with_attribute(Fingerprint::default());
    }
    let resp = builder.build();
    let mut buf = [0u8; MAX_RESPONSE];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, &resp)
        .ok()?;
    buf.get(..n).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_rs::attributes::stun::{Software, UserName};
    use stun_rs::TransactionId;

    fn request(fingerprint: bool) -> Vec<u8> {
        let mut b = StunMessageBuilder::new(BINDING, MessageClass::Request)
            .with_transaction_id(TransactionId::from([7u8; 12]))
            .with_attribute(UserName::new("abcd:efgh").expect("username"))
            .with_attribute(Software::new("test").expect("software"));
        if fingerprint {
            b = b.with_attribute(Fingerprint::default());
        }
        let mut buf = [0u8; 128];
        let n = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buf, &b.build())
            .expect("encode");
        buf[..n].to_vec()
    }

    fn decode(resp: &[u8]) -> stun_rs::StunMessage {
        MessageDecoderBuilder::default()
            .build()
            .decode(resp)
            .expect("decodable response")
            .0
    }

    #[test]
    fn answers_with_xor_mapped_address_and_fingerprint() {
        let src: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        let resp = answer(&request(true), src).expect("answered");
        let m = decode(&resp);
        assert_eq!(m.class(), MessageClass::SuccessResponse);
        assert_eq!(m.method(), BINDING);
        assert_eq!(m.transaction_id().as_bytes(), &[7u8; 12]);
        let xma = m
            .get::<XorMappedAddress>()
            .expect("xma")
            .as_xor_mapped_address()
            .expect("xma type");
        assert_eq!(*xma.socket_address(), src);
        assert!(m.get::<Fingerprint>().is_some());
    }

    #[test]
    fn no_fingerprint_unless_asked_and_ipv6() {
        let src: SocketAddr = "[2001:db8::5]:5004".parse().expect("addr");
        let resp = answer(&request(false), src).expect("answered");
        let m = decode(&resp);
        assert!(m.get::<Fingerprint>().is_none());
        let xma = m
            .get::<XorMappedAddress>()
            .expect("xma")
            .as_xor_mapped_address()
            .expect("xma type");
        assert_eq!(*xma.socket_address(), src);
    }

    #[test]
    fn ignores_responses_and_garbage() {
        let src: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
        let resp = answer(&request(true), src).expect("answered");
        assert_eq!(answer(&resp, src), None, "a response is not answered");
        assert_eq!(answer(&[], src), None);
        assert_eq!(answer(&[0u8; 19], src), None);
        let mut truncated = request(true);
        truncated.truncate(30);
        assert_eq!(answer(&truncated, src), None);
        let rtp = [0x80u8; 172];
        assert_eq!(answer(&rtp, src), None);
    }

    #[test]
    fn ice_request_with_unknown_attributes_is_answered() {
        // Binding request: PRIORITY (0x0024) and ICE-CONTROLLING (0x802A), as browsers send.
        let mut req = vec![0x00, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(&[1u8; 12]);
        req.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x1e, 0xff]);
        req.extend_from_slice(&[0x80, 0x2a, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
        let src: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let m = decode(&answer(&req, src).expect("answered"));
        assert_eq!(m.transaction_id().as_bytes(), &[1u8; 12]);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes (also with a valid-looking header) never panic the STUN answerer.
        #[test]
        fn answer_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..120), header in any::<bool>()) {
            if header && bytes.len() >= 20 {
                bytes[0] = 0;
                bytes[1] = 1;
                let len = (bytes.len() - 20) as u16;
                bytes[2..4].copy_from_slice(&len.to_be_bytes());
                bytes[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
            }
            let _ = super::answer(&bytes, "192.0.2.1:5000".parse().expect("addr"));
        }
    }
}
