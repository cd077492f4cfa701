//! The probe packet: an RTP header (RFC 3550 §5.1) followed by a G.711-sized payload whose first
//! bytes carry what the receiver needs (run id, stream, direction, send time).
//!
//! ```text
//!  0..12  RTP: V=2, PT=0 (PCMU), sequence, timestamp (+160 per packet = 20 ms at 8 kHz), SSRC
//! 12..16  magic "RTPL"
//! 16..20  run id (random per run: strays from an earlier run are ignored)
//! 20..24  stream index
//! 24      direction (0: A→B, 1: B→A)
//! 25..32  reserved
//! 32..40  send time, CLOCK_REALTIME ns (the clock of SO_TIMESTAMPNS; loopback only)
//! 40..48  packet number within its stream direction
//! 48..    0xFF (PCMU silence)
//! ```

/// Bytes of the RTP header (no CSRC, no extension).
pub const RTP_HEADER: usize = 12;
/// Smallest probe: header + the fields above.
pub const MIN_SIZE: usize = 48;
/// Default size: 12 + 160 (G.711, 20 ms).
pub const DEFAULT_SIZE: usize = 172;
/// Largest probe the tool sends.
pub const MAX_SIZE: usize = 1500;
/// RTP timestamp increment per packet (8 kHz × 20 ms).
pub const TS_STEP: u32 = 160;

const MAGIC: [u8; 4] = *b"RTPL";

/// What a probe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub run: u32,
    pub stream: u32,
    pub dir: u8,
    pub number: u64,
    pub sent_ns: u64,
}

impl Probe {
    /// The SSRC of a stream direction (distinct per stream and direction).
    pub fn ssrc(&self) -> u32 {
        self.run ^ (self.stream.wrapping_mul(2) | u32::from(self.dir & 1))
    }
}

/// Write the constant parts of a probe (fill byte, magic, run, stream, direction, SSRC) into
/// `buf`; [`stamp`] then writes the per-packet fields.
pub fn prepare(buf: &mut [u8], run: u32, stream: u32, dir: u8) {
    buf.fill(0xFF);
    let p = Probe {
        run,
        stream,
        dir,
        number: 0,
        sent_ns: 0,
    };
    if let Some(h) = buf.get_mut(..MIN_SIZE) {
        h[0] = 0x80; // V=2, no padding, no extension, no CSRC
        h[1] = 0; // M=0, PT=0 PCMU
        h[8..12].copy_from_slice(&p.ssrc().to_be_bytes());
        h[12..16].copy_from_slice(&MAGIC);
        h[16..20].copy_from_slice(&run.to_be_bytes());
        h[20..24].copy_from_slice(&stream.to_be_bytes());
        h[24] = dir;
        h[25..32].fill(0);
    }
}

/// Write sequence number, timestamp, packet number and send time.
pub fn stamp(buf: &mut [u8], number: u64, sent_ns: u64) {
    if let Some(h) = buf.get_mut(..MIN_SIZE) {
        h[2..4].copy_from_slice(&(number as u16).to_be_bytes());
        h[4..8].copy_from_slice(&(number as u32).wrapping_mul(TS_STEP).to_be_bytes());
        h[32..40].copy_from_slice(&sent_ns.to_be_bytes());
        h[40..48].copy_from_slice(&number.to_be_bytes());
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Read a probe of run `run`; `None` for anything else (short, not RTP v2, foreign run).
pub fn read(buf: &[u8], run: u32) -> Option<Probe> {
    if buf.len() < MIN_SIZE || buf.first()? >> 6 != 2 || buf.get(12..16)? != MAGIC {
        return None;
    }
    if be32(buf, 16)? != run {
        return None;
    }
    Some(Probe {
        run,
        stream: be32(buf, 20)?,
        dir: *buf.get(24)?,
        number: be64(buf, 40)?,
        sent_ns: be64(buf, 32)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = [0u8; DEFAULT_SIZE];
        prepare(&mut b, 0xABCD_0123, 1999, 1);
        stamp(&mut b, 70_000, 123_456_789);
        let p = read(&b, 0xABCD_0123).unwrap();
        assert_eq!(
            p,
            Probe {
                run: 0xABCD_0123,
                stream: 1999,
                dir: 1,
                number: 70_000,
                sent_ns: 123_456_789
            }
        );
        // RTP header: version 2, PCMU, 16-bit sequence, timestamp in 8 kHz units.
        assert_eq!(b[0] >> 6, 2);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), 70_000u64 as u16);
        assert_eq!(
            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            70_000u32 * TS_STEP
        );
        assert_eq!(u32::from_be_bytes([b[8], b[9], b[10], b[11]]), p.ssrc());
        assert_eq!(b[DEFAULT_SIZE - 1], 0xFF);
    }

    #[test]
    fn rejects_strays() {
        let mut b = [0u8; DEFAULT_SIZE];
        prepare(&mut b, 7, 1, 0);
        stamp(&mut b, 1, 1);
        assert!(read(&b, 8).is_none(), "another run");
        assert!(read(&b[..MIN_SIZE - 1], 7).is_none(), "short");
        let mut c = b;
        c[0] = 0x40;
        assert!(read(&c, 7).is_none(), "not RTP v2");
        let mut d = b;
        d[13] = b'x';
        assert!(read(&d, 7).is_none(), "no magic");
        assert!(read(&[], 7).is_none());
    }

    #[test]
    fn ssrc_distinct_per_stream_and_direction() {
        let s = |stream, dir| {
            Probe {
                run: 5,
                stream,
                dir,
                number: 0,
                sent_ns: 0,
            }
            .ssrc()
        };
        assert_ne!(s(1, 0), s(1, 1));
        assert_ne!(s(1, 0), s(2, 0));
    }
}
