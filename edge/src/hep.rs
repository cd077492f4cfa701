//! HEP v3 (Homer Encapsulation Protocol, sipcapture.org), sans-IO: how one captured SIP message
//! is wrapped for a capture collector such as Homer. No socket, no clock: the shell
//! ([`crate::capture`]) passes the addresses, the wall-clock time and the bytes, and sends the
//! packet this module builds.
//!
//! A HEP v3 packet is the ASCII id `HEP3`, a 16-bit total length (the whole packet, these six
//! bytes included), then chunks. Every chunk is a 16-bit vendor id (0: the generic chunks of the
//! spec), a 16-bit type id, a 16-bit length (the chunk, its six header bytes included) and the
//! value. All integers are in network byte order. The generic chunk types used here:
//!
//! | type | value | meaning |
//! |---|---|---|
//! | 1 | u8 | IP family: 2 (AF_INET) or 10 (AF_INET6) |
//! | 2 | u8 | IP protocol: 17 UDP, 6 TCP |
//! | 3 / 4 | 4 bytes | IPv4 source / destination |
//! | 5 / 6 | 16 bytes | IPv6 source / destination |
//! | 7 / 8 | u16 | source / destination port |
//! | 9 / 10 | u32 | timestamp: seconds since the epoch / microseconds within the second |
//! | 11 | u8 | protocol type: 1 = SIP |
//! | 12 | u32 | capture agent id |
//! | 14 | bytes | authentication key (the collector's password), optional |
//! | 15 | bytes | the captured payload: the SIP message as it was on the wire |
//! | 17 | bytes | correlation id, optional: the Call-ID, so Homer groups a call's messages |

use config::Transport;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

const MAGIC: &[u8; 4] = b"HEP3";
const HEADER: usize = 6;
const CHUNK_HEADER: usize = 6;

/// `AF_INET` and `AF_INET6` as the spec writes the family (the Linux values).
pub const FAMILY_IPV4: u8 = 2;
pub const FAMILY_IPV6: u8 = 10;
/// IANA protocol numbers.
pub const PROTO_UDP: u8 = 17;
pub const PROTO_TCP: u8 = 6;
/// HEP protocol type of a SIP payload.
pub const PROTO_TYPE_SIP: u8 = 1;

/// Generic chunk type ids (vendor 0).
mod chunk {
    pub const IP_FAMILY: u16 = 1;
    pub const IP_PROTO: u16 = 2;
    pub const IPV4_SRC: u16 = 3;
    pub const IPV4_DST: u16 = 4;
    pub const IPV6_SRC: u16 = 5;
    pub const IPV6_DST: u16 = 6;
    pub const SRC_PORT: u16 = 7;
    pub const DST_PORT: u16 = 8;
    pub const TIME_S: u16 = 9;
    pub const TIME_US: u16 = 10;
    pub const PROTO_TYPE: u16 = 11;
    pub const AGENT_ID: u16 = 12;
    pub const AUTH_KEY: u16 = 14;
    pub const PAYLOAD: u16 = 15;
    pub const CORRELATION_ID: u16 = 17;
}

/// One SIP message as seen on the wire, to be encapsulated.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// Wall-clock time since the Unix epoch.
    pub time: Duration,
    pub agent_id: u32,
    pub auth_key: Option<&'a [u8]>,
    pub correlation_id: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// The packet would exceed the 16-bit total length (a SIP message near 64 KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HEP packet larger than 65535 bytes")]
pub struct TooLarge;

/// Appends the HEP v3 packet of `c` to `out` (cleared first). Both addresses are written in
/// one family: if either is IPv6, an IPv4 one is written IPv4-mapped.
pub fn encode(c: &Capture<'_>, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    out.clear();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0, 0]); // total length, filled in below
    let (src, dst) = (c.src.ip(), c.dst.ip());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(out, chunk::IP_FAMILY, &[FAMILY_IPV4]);
            put(out, chunk::IP_PROTO, &[ip_proto(c.transport)]);
            put(out, chunk::IPV4_SRC, &s.octets());
            put(out, chunk::IPV4_DST, &d.octets());
        }
        _ => {
            put(out, chunk::IP_FAMILY, &[FAMILY_IPV6]);
            put(out, chunk::IP_PROTO, &[ip_proto(c.transport)]);
            put(out, chunk::IPV6_SRC, &as_v6(src).octets());
            put(out, chunk::IPV6_DST, &as_v6(dst).octets());
        }
    }
    put(out, chunk::SRC_PORT, &c.src.port().to_be_bytes());
    put(out, chunk::DST_PORT, &c.dst.port().to_be_bytes());
    // u32 seconds: wraps in 2106, as the spec's field does.
    put(out, chunk::TIME_S, &(c.time.as_secs() as u32).to_be_bytes());
    put(out, chunk::TIME_US, &c.time.subsec_micros().to_be_bytes());
    put(out, chunk::PROTO_TYPE, &[PROTO_TYPE_SIP]);
    put(out, chunk::AGENT_ID, &c.agent_id.to_be_bytes());
    if let Some(key) = c.auth_key {
        put(out, chunk::AUTH_KEY, key);
    }
    if let Some(id) = c.correlation_id {
        put(out, chunk::CORRELATION_ID, id);
    }
    put(out, chunk::PAYLOAD, c.payload);
    let total = u16::try_from(out.len()).map_err(|_| TooLarge)?;
    out[4..6].copy_from_slice(&total.to_be_bytes());
    Ok(())
}

fn ip_proto(t: Transport) -> u8 {
    match t {
        Transport::Udp => PROTO_UDP,
        Transport::Tcp => PROTO_TCP,
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// One generic chunk. A value too long for the 16-bit chunk length makes the whole packet too
/// long as well, which `encode` reports; the length written here then does not matter.
fn put(out: &mut Vec<u8>, type_id: u16, value: &[u8]) {
    let len = (CHUNK_HEADER + value.len()).min(u16::MAX as usize) as u16;
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&type_id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// The Call-ID of a SIP message, read straight from its header lines (full or compact form
/// `i`, RFC 3261 §20.8) without parsing the message: capture runs before the parser and must
/// cope with anything that arrives.
pub fn call_id(msg: &[u8]) -> Option<&[u8]> {
    // The header section ends at the first blank line (RFC 3261 §7); the start line is skipped.
    let end = memchr::memmem::find(msg, b"\r\n\r\n").unwrap_or(msg.len());
    msg[..end].split(|b| *b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        let is_call_id = name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i");
        (is_call_id && !value.is_empty()).then_some(value)
    })
}

/// A decoded HEP v3 packet: what a collector sees. For tests and tools; the edge only encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub ip_family: u8,
    pub ip_proto: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub time_s: u32,
    pub time_us: u32,
    pub proto_type: u8,
    pub agent_id: u32,
    pub auth_key: Option<Vec<u8>>,
    pub correlation_id: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a HEP v3 packet (no HEP3 id)")]
    Magic,
    #[error("total length {declared} but {actual} bytes")]
    Length { declared: usize, actual: usize },
    #[error("chunk type {0} truncated or with a bad length")]
    Chunk(u16),
    #[error("mandatory chunk type {0} missing")]
    Missing(u16),
}

/// Decodes one HEP v3 packet. Chunks of other vendors and unknown generic types are skipped,
/// as the spec asks of a receiver.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    if buf.len() < HEADER || &buf[..4] != MAGIC {
        return Err(DecodeError::Magic);
    }
    let declared = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    if declared != buf.len() {
        return Err(DecodeError::Length {
            declared,
            actual: buf.len(),
        });
    }
    let mut f = Fields::default();
    let mut rest = &buf[HEADER..];
    while !rest.is_empty() {
        if rest.len() < CHUNK_HEADER {
            return Err(DecodeError::Chunk(0));
        }
        let vendor = u16::from_be_bytes([rest[0], rest[1]]);
        let type_id = u16::from_be_bytes([rest[2], rest[3]]);
        let len = u16::from_be_bytes([rest[4], rest[5]]) as usize;
        if len < CHUNK_HEADER || len > rest.len() {
            return Err(DecodeError::Chunk(type_id));
        }
        let value = &rest[CHUNK_HEADER..len];
        rest = &rest[len..];
        if vendor == 0 {
            f.set(type_id, value)?;
        }
    }
    f.finish()
}

#[derive(Default)]
struct Fields {
    family: Option<u8>,
    proto: Option<u8>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    time_s: Option<u32>,
    time_us: Option<u32>,
    proto_type: Option<u8>,
    agent_id: Option<u32>,
    auth_key: Option<Vec<u8>>,
    correlation_id: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

impl Fields {
    fn set(&mut self, type_id: u16, v: &[u8]) -> Result<(), DecodeError> {
        let bad = || DecodeError::Chunk(type_id);
        let u8_ = || -> Result<u8, DecodeError> {
            <[u8; 1]>::try_from(v).map(|a| a[0]).map_err(|_| bad())
        };
        let u16_ = || {
            <[u8; 2]>::try_from(v)
                .map(u16::from_be_bytes)
                .map_err(|_| bad())
        };
        let u32_ = || {
            <[u8; 4]>::try_from(v)
                .map(u32::from_be_bytes)
                .map_err(|_| bad())
        };
        let v4 = || {
            <[u8; 4]>::try_from(v)
                .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
                .map_err(|_| bad())
        };
        let v6 = || {
            <[u8; 16]>::try_from(v)
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                .map_err(|_| bad())
        };
        match type_id {
            chunk::IP_FAMILY => self.family = Some(u8_()?),
            chunk::IP_PROTO => self.proto = Some(u8_()?),
            chunk::IPV4_SRC => self.src = Some(v4()?),
            chunk::IPV4_DST => self.dst = Some(v4()?),
            chunk::IPV6_SRC => self.src = Some(v6()?),
            chunk::IPV6_DST => self.dst = Some(v6()?),
            chunk::SRC_PORT => self.sport = Some(u16_()?),
            chunk::DST_PORT => self.dport = Some(u16_()?),
            chunk::TIME_S => self.time_s = Some(u32_()?),
            chunk::TIME_US => self.time_us = Some(u32_()?),
            chunk::PROTO_TYPE => self.proto_type = Some(u8_()?),
            chunk::AGENT_ID => self.agent_id = Some(u32_()?),
            chunk::AUTH_KEY => self.auth_key = Some(v.to_vec()),
            chunk::PAYLOAD => self.payload = Some(v.to_vec()),
            chunk::CORRELATION_ID => self.correlation_id = Some(v.to_vec()),
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Decoded, DecodeError> {
        let missing = DecodeError::Missing;
        Ok(Decoded {
            ip_family: self.family.ok_or(missing(chunk::IP_FAMILY))?,
            ip_proto: self.proto.ok_or(missing(chunk::IP_PROTO))?,
            src: SocketAddr::new(
                self.src.ok_or(missing(chunk::IPV4_SRC))?,
                self.sport.ok_or(missing(chunk::SRC_PORT))?,
            ),
            dst: SocketAddr::new(
                self.dst.ok_or(missing(chunk::IPV4_DST))?,
                self.dport.ok_or(missing(chunk::DST_PORT))?,
            ),
            time_s: self.time_s.ok_or(missing(chunk::TIME_S))?,
            time_us: self.time_us.ok_or(missing(chunk::TIME_US))?,
            proto_type: self.proto_type.ok_or(missing(chunk::PROTO_TYPE))?,
            agent_id: self.agent_id.ok_or(missing(chunk::AGENT_ID))?,
            auth_key: self.auth_key,
            correlation_id: self.correlation_id,
            payload: self.payload.ok_or(missing(chunk::PAYLOAD))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INVITE: &[u8] =
        b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: abc@1.2.3.4\r\nContent-Length: 0\r\n\r\n";

    fn sample(payload: &[u8]) -> Capture<'_> {
        Capture {
            transport: Transport::Udp,
            src: "192.0.2.1:5060".parse().unwrap(),
            dst: "198.51.100.7:5070".parse().unwrap(),
            time: Duration::new(1_700_000_000, 123_456_789),
            agent_id: 2001,
            auth_key: Some(b"secret"),
            correlation_id: Some(b"abc@1.2.3.4"),
            payload,
        }
    }

    /// One chunk written out from the spec's layout: vendor 0, type, length incl. 6 header bytes.
    fn chunk(type_id: u16, value: &[u8]) -> Vec<u8> {
        let mut c = vec![0, 0];
        c.extend_from_slice(&type_id.to_be_bytes());
        c.extend_from_slice(&((6 + value.len()) as u16).to_be_bytes());
        c.extend_from_slice(value);
        c
    }

    #[test]
    fn ipv4_udp_packet_is_byte_exact_with_the_spec_layout() {
        let mut body = Vec::new();
        body.extend(chunk(1, &[2]));
        body.extend(chunk(2, &[17]));
        body.extend(chunk(3, &[192, 0, 2, 1]));
        body.extend(chunk(4, &[198, 51, 100, 7]));
        body.extend(chunk(7, &[0x13, 0xc4])); // 5060
        body.extend(chunk(8, &[0x13, 0xce])); // 5070
        body.extend(chunk(9, &[0x65, 0x53, 0xf1, 0x00])); // 1_700_000_000
        body.extend(chunk(10, &[0x00, 0x01, 0xe2, 0x40])); // 123_456 µs
        body.extend(chunk(11, &[1]));
        body.extend(chunk(12, &[0, 0, 0x07, 0xd1])); // 2001
        body.extend(chunk(14, b"secret"));
        body.extend(chunk(17, b"abc@1.2.3.4"));
        body.extend(chunk(15, INVITE));
        let mut want = b"HEP3".to_vec();
        want.extend_from_slice(&((6 + body.len()) as u16).to_be_bytes());
        want.extend(body);

        let mut got = Vec::new();
        encode(&sample(INVITE), &mut got).unwrap();
        assert_eq!(got, want);
        assert_eq!(&got[..4], b"HEP3");
        assert_eq!(u16::from_be_bytes([got[4], got[5]]) as usize, got.len());
    }

    #[test]
    fn ipv6_tcp_without_optional_chunks() {
        let c = Capture {
            transport: Transport::Tcp,
            src: "[2001:db8::1]:5061".parse().unwrap(),
            dst: "[2001:db8::2]:15060".parse().unwrap(),
            auth_key: None,
            correlation_id: None,
            ..sample(INVITE)
        };
        let mut got = Vec::new();
        encode(&c, &mut got).unwrap();
        let mut body = Vec::new();
        body.extend(chunk(1, &[10]));
        body.extend(chunk(2, &[6]));
        body.extend(chunk(
            5,
            &"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets(),
        ));
        body.extend(chunk(
            6,
            &"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets(),
        ));
        body.extend(chunk(7, &5061u16.to_be_bytes()));
        body.extend(chunk(8, &15060u16.to_be_bytes()));
        body.extend(chunk(9, &1_700_000_000u32.to_be_bytes()));
        body.extend(chunk(10, &123_456u32.to_be_bytes()));
        body.extend(chunk(11, &[1]));
        body.extend(chunk(12, &2001u32.to_be_bytes()));
        body.extend(chunk(15, INVITE));
        assert_eq!(&got[6..], &body[..]);
        assert_eq!(got.len(), 6 + body.len());
    }

    #[test]
    fn round_trip_gives_back_every_field() {
        let mut buf = Vec::new();
        encode(&sample(INVITE), &mut buf).unwrap();
        let d = decode(&buf).unwrap();
        assert_eq!(
            d,
            Decoded {
                ip_family: FAMILY_IPV4,
                ip_proto: PROTO_UDP,
                src: "192.0.2.1:5060".parse().unwrap(),
                dst: "198.51.100.7:5070".parse().unwrap(),
                time_s: 1_700_000_000,
                time_us: 123_456,
                proto_type: PROTO_TYPE_SIP,
                agent_id: 2001,
                auth_key: Some(b"secret".to_vec()),
                correlation_id: Some(b"abc@1.2.3.4".to_vec()),
                payload: INVITE.to_vec(),
            }
        );
    }

    #[test]
    fn mixed_families_are_written_as_ipv6_mapped() {
        let c = Capture {
            dst: "[2001:db8::2]:5060".parse().unwrap(),
            ..sample(INVITE)
        };
        let mut buf = Vec::new();
        encode(&c, &mut buf).unwrap();
        let d = decode(&buf).unwrap();
        assert_eq!(d.ip_family, FAMILY_IPV6);
        assert_eq!(d.src, "[::ffff:192.0.2.1]:5060".parse().unwrap());
    }

    #[test]
    fn a_payload_over_the_16_bit_length_is_refused() {
        let big = vec![b'x'; 65_535];
        let mut buf = Vec::new();
        assert_eq!(encode(&sample(&big), &mut buf), Err(TooLarge));
    }

    #[test]
    fn decoder_skips_unknown_chunks_and_rejects_bad_lengths() {
        let mut buf = Vec::new();
        encode(&sample(INVITE), &mut buf).unwrap();
        // A vendor chunk (vendor 0x0010) inserted after the header is skipped.
        let mut with_vendor = buf[..6].to_vec();
        with_vendor.extend_from_slice(&[0x00, 0x10, 0x00, 0x01, 0x00, 0x07, 0xff]);
        with_vendor.extend_from_slice(&buf[6..]);
        let n = with_vendor.len() as u16;
        with_vendor[4..6].copy_from_slice(&n.to_be_bytes());
        assert_eq!(decode(&with_vendor).unwrap(), decode(&buf).unwrap());
        // Total length that does not match the datagram.
        let mut short = buf.clone();
        short.pop();
        assert!(matches!(decode(&short), Err(DecodeError::Length { .. })));
        assert_eq!(decode(b"HEP2\x00\x06"), Err(DecodeError::Magic));
    }

    #[test]
    fn call_id_from_full_and_compact_headers_only() {
        assert_eq!(call_id(INVITE), Some(&b"abc@1.2.3.4"[..]));
        let compact = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h\r\ni:  x-1 \r\n\r\n";
        assert_eq!(call_id(compact), Some(&b"x-1"[..]));
        // A body line that looks like a header is not one.
        let body = b"BYE sip:a@b SIP/2.0\r\nCSeq: 2 BYE\r\n\r\nCall-ID: fake\r\n";
        assert_eq!(call_id(body), None);
        assert_eq!(call_id(b"\r\n\r\n"), None);
    }

    proptest! {
        #[test]
        fn any_capture_round_trips(
            v6 in any::<bool>(),
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            ports in any::<(u16, u16)>(),
            secs in any::<u32>(),
            micros in 0u32..1_000_000,
            agent in any::<u32>(),
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            payload in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let ip = |x: [u8; 16]| -> IpAddr {
                if v6 {
                    Ipv6Addr::from(x).into()
                } else {
                    Ipv4Addr::new(x[0], x[1], x[2], x[3]).into()
                }
            };
            let c = Capture {
                transport: if v6 { Transport::Tcp } else { Transport::Udp },
                src: SocketAddr::new(ip(a), ports.0),
                dst: SocketAddr::new(ip(b), ports.1),
                time: Duration::new(u64::from(secs), micros * 1000),
                agent_id: agent,
                auth_key: key.as_deref(),
                correlation_id: None,
                payload: &payload,
            };
            let mut buf = Vec::new();
            encode(&c, &mut buf).unwrap();
            let d = decode(&buf).unwrap();
            prop_assert_eq!(d.src, c.src);
            prop_assert_eq!(d.dst, c.dst);
            prop_assert_eq!((d.time_s, d.time_us), (secs, micros));
            prop_assert_eq!(d.agent_id, agent);
            prop_assert_eq!(d.auth_key, key);
            prop_assert_eq!(d.payload, payload);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = b"HEP3".to_vec();
            b.extend_from_slice(&((bytes.len() + 6) as u16).to_be_bytes());
            b.extend_from_slice(&bytes);
            let _ = decode(&b);
            let _ = call_id(&bytes);
        }
    }
}
