//! Fuzz seeds both daemons use: the edge's `stun_sip` target and the relay's `stun_media` target
//! start from the same STUN messages.

use std::net::SocketAddr;
use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::methods::BINDING;
use stun_rs::MessageClass;

/// STUN seeds: Binding requests as ICE agents and keepalives send them (bare, with
/// FINGERPRINT, with USERNAME/PRIORITY/ICE-CONTROLLING/MESSAGE-INTEGRITY), a Binding success
/// response and an indication.
pub fn stun_seeds() -> Vec<Vec<u8>> {
    use stun_rs::attributes::stun::{Fingerprint, MessageIntegrity, Software, UserName};
    use stun_rs::{HMACKey, MessageEncoderBuilder, StunMessageBuilder, TransactionId};
    let encode = |b: StunMessageBuilder| {
        let mut buf = [0u8; 512];
        MessageEncoderBuilder::default()
            .build()
            .encode(&mut buf, &b.build())
            .ok()
            .and_then(|n| buf.get(..n).map(<[u8]>::to_vec))
    };
    let id = TransactionId::from([7u8; 12]);
    let req = || StunMessageBuilder::new(BINDING, MessageClass::Request).with_transaction_id(id);
    let mut out: Vec<Option<Vec<u8>>> = vec![
        encode(req()),
        encode(req().with_attribute(Fingerprint::default())),
        encode(
            StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
                .with_transaction_id(id)
                .with_attribute(XorMappedAddress::from(SocketAddr::from((
                    [198, 51, 100, 7],
                    40000,
                )))),
        ),
        encode(StunMessageBuilder::new(BINDING, MessageClass::Indication).with_transaction_id(id)),
    ];
    if let (Ok(user), Ok(sw), Ok(key)) = (
        UserName::new("abcd:efgh"),
        Software::new("fuzz"),
        HMACKey::new_short_term("secret-password"),
    ) {
        out.push(encode(
            req()
                .with_attribute(user)
                .with_attribute(sw)
                .with_attribute(MessageIntegrity::new(key))
                .with_attribute(Fingerprint::default()),
        ));
    }
    // Binding request with PRIORITY, ICE-CONTROLLING and USE-CANDIDATE, as browsers send.
    let mut ice = vec![0x00, 0x01, 0x00, 0x18, 0x21, 0x12, 0xa4, 0x42];
    ice.extend_from_slice(&[1u8; 12]);
    ice.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x1e, 0xff]);
    ice.extend_from_slice(&[0x80, 0x2a, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
    ice.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
    out.push(Some(ice));
    out.into_iter().flatten().collect()
}
