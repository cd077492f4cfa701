//! Just enough packet classification for the forwarder: STUN or RTP/RTCP (and the stream's
//! SSRC, used by the latch's rebinding rule). Everything else (DTLS, ZRTP, garbage) is relayed
//! opaquely — the relay is not the media's judge.
//!
//! Demultiplexing by first byte follows RFC 7983 §7: 0..=3 STUN, 128..=191 RTP/RTCP.

/// STUN magic cookie (RFC 5389 §6).
pub const STUN_MAGIC: u32 = 0x2112_A442;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A STUN message (any class); answered or ignored, never forwarded.
    Stun,
    /// RTP (RFC 3550 §5.1): SSRC at bytes 8..12.
    Rtp { ssrc: u32 },
    /// RTCP (RFC 3550 §6.4; on the RTP port when rtcp-mux, RFC 5761 §4): sender SSRC at 4..8.
    Rtcp { ssrc: u32 },
    /// Anything else; forwarded as is.
    Other,
}

impl Kind {
    /// The sender's SSRC, if the packet is RTP or RTCP.
    pub fn ssrc(self) -> Option<u32> {
        match self {
            Kind::Rtp { ssrc } | Kind::Rtcp { ssrc } => Some(ssrc),
            _ => None,
        }
    }
}

/// The RTP fixed header fields the receive statistics need (RFC 3550 §5.1): payload type,
/// sequence number, timestamp. `None` if shorter than the 12-byte fixed header.
pub fn rtp_fields(pkt: &[u8]) -> Option<(u8, u16, u32)> {
    let h = pkt.get(..12)?;
    Some((
        h[1] & 0x7f,
        u16::from_be_bytes([h[2], h[3]]),
        u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
    ))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn classify(pkt: &[u8]) -> Kind {
    let Some(&first) = pkt.first() else {
        return Kind::Other;
    };
    match first {
        0..=3 => {
            // RFC 5389 §6: 20-byte header, length a multiple of 4, magic cookie.
            if pkt.len() >= 20 && be32(pkt, 4) == Some(STUN_MAGIC) {
                Kind::Stun
            } else {
                Kind::Other
            }
        }
        128..=191 => {
            // RFC 5761 §4: payload types 64..=95 (second byte 192..=223) are RTCP.
            let second = pkt.get(1).copied().unwrap_or(0);
            if (192..=223).contains(&second) {
                be32(pkt, 4).map_or(Kind::Other, |ssrc| Kind::Rtcp { ssrc })
            } else if pkt.len() >= 12 {
                be32(pkt, 8).map_or(Kind::Other, |ssrc| Kind::Rtp { ssrc })
            } else {
                Kind::Other
            }
        }
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_ssrc() {
        let mut p = [0u8; 172];
        p[0] = 0x80;
        p[1] = 0;
        p[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(classify(&p), Kind::Rtp { ssrc: 0xdead_beef });
    }

    #[test]
    fn rtcp_sender_ssrc() {
        let mut p = [0u8; 28];
        p[0] = 0x80;
        p[1] = 200; // SR
        p[4..8].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(classify(&p), Kind::Rtcp { ssrc: 7 });
    }

    #[test]
    fn rtp_header_fields() {
        let mut p = [0u8; 12];
        p[0] = 0x80;
        p[1] = 0x80 | 8; // marker bit + PCMA
        p[2..4].copy_from_slice(&65535u16.to_be_bytes());
        p[4..8].copy_from_slice(&0xfedc_ba98u32.to_be_bytes());
        assert_eq!(rtp_fields(&p), Some((8, 65535, 0xfedc_ba98)));
        assert_eq!(rtp_fields(&p[..11]), None);
    }

    #[test]
    fn stun_needs_cookie() {
        let mut p = [0u8; 20];
        p[1] = 1;
        assert_eq!(classify(&p), Kind::Other);
        p[4..8].copy_from_slice(&STUN_MAGIC.to_be_bytes());
        assert_eq!(classify(&p), Kind::Stun);
    }

    #[test]
    fn short_and_empty_are_other() {
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[0x80, 0, 1]), Kind::Other);
        assert_eq!(classify(&[0x80, 200, 1]), Kind::Other);
        assert_eq!(classify(&[0x16, 0xfe, 0xfd]), Kind::Other);
    }
}
