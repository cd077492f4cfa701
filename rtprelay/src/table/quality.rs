//! Receive quality of one leg's RTP, as RFC 3550 Appendix A computes it for a receiver report:
//! sequence number tracking and packet counts (A.1), expected and lost packets (A.3) and
//! interarrival jitter (A.8). The relay is a receiver for each party's media, so these describe
//! the path from the party to the relay, per direction. Fed only with RTP (not RTCP, not STUN,
//! not opaque DTLS/ZRTP) on the leg's RTP port, after the source check: packets from strangers
//! are not the party's stream.
//!
//! Sans-IO: arrival time is the `now` the shell passes to the table.
//!
//! Clock rate: jitter is measured in RTP timestamp units, so it needs the payload format's
//! clock rate. The relay does not read SDP, so it knows the rate only for the static payload
//! types of RFC 3551 §6 (tables 4 and 5); every other payload type (the dynamic 96..=127 of
//! Opus, AMR-WB, telephone-event, ...) is assumed to run at 8000 Hz. The jitter of a stream
//! whose dynamic codec uses another clock (Opus: 48000) is therefore wrong by that factor;
//! loss figures do not depend on the clock.
//!
//! One source at a time: a new SSRC (the party's phone restarted its stream) folds the old
//! source's expected/received into the leg's totals and starts over (A.1 `init_seq`); the
//! jitter reported is the current source's.

use super::stamp::Stamp;
use std::time::Instant;

/// A.1: a jump of more than this many numbers ahead is a restart (or garbage), not loss.
const MAX_DROPOUT: u16 = 3000;
/// A.1: up to this many numbers behind is a late (reordered) or duplicate packet.
const MAX_MISORDER: u16 = 100;
/// A.1: packets in sequence before a source is declared valid.
const MIN_SEQUENTIAL: u16 = 2;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// RTP clock rate of a payload type: RFC 3551 §6 for the static types, else 8000 Hz (see the
/// module doc).
pub fn clock_rate(pt: u8) -> u32 {
    match pt {
        6 => 16_000,
        10 | 11 => 44_100,
        16 => 11_025,
        17 => 22_050,
        14 | 25 | 26 | 28 | 31..=34 => 90_000,
        // 0..=5, 7..=9 (G.722 keeps 8000 by RFC 3551 §4.5.2), 12, 13, 15, 18, and unknown.
        _ => 8_000,
    }
}

/// A.1's per-source sequence state (`struct source`, the sequence part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SeqState {
    max_seq: u16,
    /// Shifted count of sequence number cycles (a multiple of 2^16).
    cycles: u32,
    base_seq: u32,
    /// Last 'bad' sequence number + 1 (RTP_SEQ_MOD + 1: none).
    bad_seq: u32,
    /// Sequential packets still needed before the source is valid.
    probation: u16,
    /// Packets received (duplicates included, as in A.3).
    received: u32,
}

impl SeqState {
    /// A new source: `init_seq(s, seq); s->max_seq = seq - 1; s->probation = MIN_SEQUENTIAL`.
    fn new(seq: u16) -> SeqState {
        let mut s = SeqState::default();
        s.init(seq);
        s.max_seq = seq.wrapping_sub(1);
        s.probation = MIN_SEQUENTIAL;
        s
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
    }

    /// A.1 `update_seq`: whether the packet counts (false: probation or a bad jump).
    fn update(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            // Only a packet in sequence moves probation on.
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                // Sequence number wrapped: count another 64K cycle.
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: a restarted sender if the next packet follows this one.
            if u32::from(seq) == self.bad_seq {
                self.init(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        } else {
            // Duplicate or reordered packet: counted, max_seq unchanged.
        }
        self.received += 1;
        true
    }

    /// A.3: extended highest sequence number received.
    fn extended_max(&self) -> u64 {
        u64::from(self.cycles) + u64::from(self.max_seq)
    }

    /// A.3: `expected = extended_max - base_seq + 1` (0 while on probation or before any
    /// packet: a validated source has received at least its first packet).
    fn expected(&self) -> u64 {
        if self.probation > 0 || self.received == 0 {
            return 0;
        }
        (self.extended_max() + 1).saturating_sub(u64::from(self.base_seq))
    }
}

/// Final (or current) figures of one leg's received RTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityFigures {
    /// A.3 expected packets (all sources of the leg).
    pub expected: u64,
    /// A.3 received packets (duplicates included).
    pub received: u64,
    /// A.3 cumulative lost, clamped at 0 (duplicates can make `received > expected`).
    pub lost: u64,
    /// A.8 interarrival jitter of the current source, in microseconds.
    pub jitter_us: u64,
}

impl QualityFigures {
    /// lost / expected, `None` when no RTP was counted (nothing to judge).
    pub fn loss_ratio(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.lost as f64 / self.expected as f64)
    }

    pub fn jitter_seconds(&self) -> f64 {
        self.jitter_us as f64 / 1e6
    }
}

/// One leg's receive statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quality {
    ssrc: Option<u32>,
    seq: SeqState,
    /// Expected/received of earlier sources of this leg.
    prior_expected: u64,
    prior_received: u64,
    /// Arrival times are counted from here (the first RTP packet of the leg).
    epoch: Stamp,
    /// A.8 relative transit time of the previous packet (if `has_transit`), measured at
    /// `rate`.
    transit: u32,
    has_transit: bool,
    /// A.8 jitter estimate ×16 (the integer form: `jitter += d - ((jitter + 8) >> 4)`), in
    /// timestamp units of `rate`.
    jitter16: u64,
    rate: u32,
}

impl Quality {
    /// Account one RTP packet from the party: sequence number `seq`, RTP timestamp `ts`,
    /// payload type `pt`, arrived at `now`. A few integer operations, no allocation.
    pub fn on_rtp(&mut self, ssrc: u32, seq: u16, ts: u32, pt: u8, now: Instant) {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.prior_expected += self.seq.expected();
                self.prior_received += u64::from(self.seq.received);
            }
            self.ssrc = Some(ssrc);
            self.seq = SeqState::new(seq);
            self.has_transit = false;
            self.jitter16 = 0;
        }
        if !self.seq.update(seq) {
            return;
        }
        let rate = clock_rate(pt);
        let epoch = self.epoch.get().unwrap_or(now);
        if self.epoch.is_none() {
            self.epoch = Stamp::at(now);
        }
        let since = now.saturating_duration_since(epoch);
        // Arrival in timestamp units; only differences matter, so it may wrap like `ts`.
        let arrival = since
            .as_secs()
            .wrapping_mul(u64::from(rate))
            .wrapping_add(u64::from(since.subsec_nanos()) * u64::from(rate) / 1_000_000_000)
            as u32;
        let transit = arrival.wrapping_sub(ts);
        match (self.has_transit, self.transit, self.rate) {
            // A.8: D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}) = transit_i - transit_{i-1}.
            (true, prev, prev_rate) if prev_rate == rate => {
                let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
                self.jitter16 = self.jitter16 + d - ((self.jitter16 + 8) >> 4);
            }
            // First packet, or the clock changed (a payload type switch): no difference to
            // take; the estimate so far is kept.
            _ => {}
        }
        (self.transit, self.has_transit) = (transit, true);
        self.rate = rate;
    }

    /// A.8 jitter in timestamp units, as a receiver report carries it (`jitter >> 4`).
    pub fn jitter_units(&self) -> u64 {
        self.jitter16 >> 4
    }

    /// The figures so far (all sources of the leg).
    pub fn figures(&self) -> QualityFigures {
        let expected = self.prior_expected + self.seq.expected();
        let received = self.prior_received + u64::from(self.seq.received);
        let jitter_us = if self.rate == 0 {
            0
        } else {
            // jitter16 / 16 / rate seconds, in µs, rounded to nearest.
            (self.jitter16 * 1_000_000 + u64::from(self.rate) * 8) / (u64::from(self.rate) * 16)
        };
        QualityFigures {
            expected,
            received,
            lost: expected.saturating_sub(received),
            jitter_us,
        }
    }
}

/// A Prometheus-style histogram of plain integers, owned by the shard: 10 upper bounds plus
/// the implicit `+Inf` bucket (counts are per bucket here; the exporter makes them cumulative).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Hist {
    pub counts: [u64; 11],
    pub sum: f64,
}

impl Hist {
    pub fn observe(&mut self, bounds: &[f64; 10], v: f64) {
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Upper bounds of `rtprelay_stream_packet_loss_ratio`.
pub const LOSS_BOUNDS: [f64; 10] = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
/// Upper bounds of `rtprelay_stream_jitter_seconds` (a G.711 frame is 0.02 s; jitter buffers
/// typically hold 0.04..0.2 s).
pub const JITTER_BOUNDS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2];

/// The shard's stream-end quality histograms: one observation per direction (leg) that
/// received RTP, when its stream is deleted or times out.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QualityStats {
    pub loss: Hist,
    pub jitter: Hist,
    /// Legs observed (changes whenever the histograms do; lets the shell publish only then).
    pub observations: u64,
}

impl QualityStats {
    /// Observe a leg's final figures; a leg without counted RTP is not observed.
    pub fn observe(&mut self, f: &QualityFigures) {
        let Some(loss) = f.loss_ratio() else { return };
        self.loss.observe(&LOSS_BOUNDS, loss);
        self.jitter.observe(&JITTER_BOUNDS, f.jitter_seconds());
        self.observations += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SSRC: u32 = 0x1234_5678;

    /// Feed `seqs` at 20 ms intervals with timestamps 160 apart (PCMU), arrival perfectly
    /// regular: jitter stays 0, so only the sequence arithmetic is exercised.
    fn feed(seqs: &[u16]) -> Quality {
        let t0 = Instant::now();
        let mut q = Quality::default();
        for (i, &s) in seqs.iter().enumerate() {
            let at = t0 + Duration::from_millis(20 * i as u64);
            q.on_rtp(SSRC, s, 160 * i as u32, 0, at);
        }
        q
    }

    #[test]
    fn in_order_stream_counts_from_the_second_packet() {
        // A.1: the first packet starts probation, the second (in sequence) validates the
        // source and becomes base_seq: 10 packets -> 9 expected, 9 received, 0 lost.
        let seqs: Vec<u16> = (100..110).collect();
        let f = feed(&seqs).figures();
        assert_eq!((f.expected, f.received, f.lost), (9, 9, 0));
        assert_eq!(f.jitter_us, 0);
        assert_eq!(f.loss_ratio(), Some(0.0));
    }

    #[test]
    fn nothing_received_nothing_expected() {
        assert_eq!(Quality::default().figures(), QualityFigures::default());
        // One packet only: still on probation.
        assert_eq!(feed(&[7]).figures(), QualityFigures::default());
    }

    #[test]
    fn wraps_at_65535() {
        // 65533, 65534 (valid, base 65534), 65535, 0, 1, 2: one cycle counted.
        let q = feed(&[65533, 65534, 65535, 0, 1, 2]);
        assert_eq!(q.seq.cycles, RTP_SEQ_MOD);
        assert_eq!(q.seq.extended_max(), 65536 + 2);
        let f = q.figures();
        // expected = 65538 - 65534 + 1 = 5; received 5.
        assert_eq!((f.expected, f.received, f.lost), (5, 5, 0));
    }

    #[test]
    fn loss_across_the_wrap() {
        // Base 65534; 65535 and 1 lost; highest 3 in cycle 1.
        let f = feed(&[65533, 65534, 0, 2, 3]).figures();
        // expected = (65536 + 3) - 65534 + 1 = 6 (65534, 65535, 0, 1, 2, 3); received 4.
        assert_eq!((f.expected, f.received, f.lost), (6, 4, 2));
        assert_eq!(f.loss_ratio(), Some(2.0 / 6.0));
    }

    #[test]
    fn reordered_packets_are_not_lost() {
        // 12 arrives after 13: received anyway, max_seq stays 13.
        let f = feed(&[10, 11, 13, 12, 14]).figures();
        assert_eq!((f.expected, f.received, f.lost), (4, 4, 0));
    }

    #[test]
    fn reordered_across_the_wrap_does_not_add_a_cycle() {
        // 0 arrives before 65535: the late 65535 is "behind" (udelta > 65536 - 100).
        let q = feed(&[65533, 65534, 0, 65535, 1]);
        assert_eq!(q.seq.cycles, RTP_SEQ_MOD);
        let f = q.figures();
        // expected = (65536 + 1) - 65534 + 1 = 4; received 4.
        assert_eq!((f.expected, f.received, f.lost), (4, 4, 0));
    }

    #[test]
    fn duplicates_are_received_and_loss_is_clamped() {
        // A.3 counts duplicates as received: 5 received for 3 expected -> lost 0, not -2.
        let f = feed(&[1, 2, 3, 3, 4, 4]).figures();
        assert_eq!((f.expected, f.received), (3, 5));
        assert_eq!(f.lost, 0);
        assert_eq!(f.loss_ratio(), Some(0.0));
    }

    #[test]
    fn gap_within_dropout_is_loss() {
        // 2, 3 valid (base 3), then 3 + 2999 = 3002 (< MAX_DROPOUT ahead): 2998 lost.
        let f = feed(&[2, 3, 3002]).figures();
        assert_eq!((f.expected, f.received, f.lost), (3000, 2, 2998));
    }

    #[test]
    fn large_jump_is_a_restart_not_loss() {
        // 20000 is 19980 ahead (> MAX_DROPOUT): ignored once, then 20001 follows it, so the
        // source restarts at 20001 (init_seq drops the old counts, as A.1 does).
        let q = feed(&[19, 20, 21, 20000, 20001, 20002]);
        let f = q.figures();
        assert_eq!(q.seq.base_seq, 20001);
        assert_eq!((f.expected, f.received, f.lost), (2, 2, 0));
        // A single stray jump is dropped and does not disturb the count.
        let f = feed(&[19, 20, 21, 40000, 22, 23]).figures();
        assert_eq!((f.expected, f.received, f.lost), (4, 4, 0));
    }

    #[test]
    fn probation_restarts_on_out_of_sequence() {
        // 5 then 7: not in sequence, probation back to 1 with max 7; 8 validates (base 8).
        let f = feed(&[5, 7, 8, 9]).figures();
        assert_eq!((f.expected, f.received, f.lost), (2, 2, 0));
    }

    #[test]
    fn new_ssrc_folds_the_old_source_into_the_totals() {
        let t0 = Instant::now();
        let mut q = Quality::default();
        // Source 1: 1, 2, 3, 5 -> base 2, expected 4, received 3.
        for (i, s) in [1u16, 2, 3, 5].into_iter().enumerate() {
            q.on_rtp(1, s, 0, 0, t0 + Duration::from_millis(20 * i as u64));
        }
        // Source 2: 900, 901, 902 -> base 901, expected 2, received 2.
        for (i, s) in [900u16, 901, 902].into_iter().enumerate() {
            q.on_rtp(2, s, 0, 0, t0 + Duration::from_millis(100 + 20 * i as u64));
        }
        let f = q.figures();
        assert_eq!((f.expected, f.received, f.lost), (6, 5, 1));
    }

    #[test]
    fn jitter_follows_a_8() {
        // PCMU (8000 Hz): timestamps 160 apart; arrivals at 0, 20, 45, 60, 80 ms.
        // Arrival in units: 0, 160, 360, 480, 640 (only differences matter: the code counts
        // from the first counted packet). Packets 1 and 2 are probation/base, and
        // A.8 needs a previous transit, so differences start at the third counted packet.
        // Counted packets (seq 2..5) arrive at 160, 360, 480, 640 with ts 160, 320, 480, 640:
        //   transit: 0, 40, 0, 0
        //   D:          40, 40, 0
        // Integer A.8 (J16 = 16 × jitter): J16 += D - ((J16 + 8) >> 4)
        //   40 - 0 = 40; 40 + 40 - ((40 + 8) >> 4 = 3) = 77; 77 + 0 - ((77 + 8) >> 4 = 5) = 72
        // jitter = 72 >> 4 = 4 units; in seconds 72 / 16 / 8000 = 0.5625 ms = 563 µs (rounded).
        let t0 = Instant::now();
        let mut q = Quality::default();
        for (i, ms) in [0u64, 20, 45, 60, 80].into_iter().enumerate() {
            q.on_rtp(
                SSRC,
                1 + i as u16,
                160 * i as u32,
                0,
                t0 + Duration::from_millis(ms),
            );
        }
        assert_eq!(q.jitter16, 72);
        assert_eq!(q.jitter_units(), 4);
        assert_eq!(q.figures().jitter_us, 563);
    }

    #[test]
    fn jitter_is_independent_of_the_timestamp_origin_and_wraps() {
        // Same pattern, timestamps starting just below 2^32: the transit differences, and so
        // the jitter, are the same.
        let t0 = Instant::now();
        let mut q = Quality::default();
        let ts0 = u32::MAX - 300;
        for (i, ms) in [0u64, 20, 45, 60, 80].into_iter().enumerate() {
            let ts = ts0.wrapping_add(160 * i as u32);
            q.on_rtp(SSRC, 1 + i as u16, ts, 0, t0 + Duration::from_millis(ms));
        }
        assert_eq!(q.jitter16, 72);
    }

    #[test]
    fn jitter_uses_the_payload_types_clock() {
        // G.711 at 16 kHz does not exist, but DVI4/16000 (PT 6) does: 20 ms = 320 units.
        // Arrivals 0, 20, 45 ms, ts 0, 320, 640: counted packets 2, 3 -> transit 0, 80:
        // D = 80 -> J16 = 80, jitter = 5 units = 80 / 16 / 16000 s = 312.5 µs -> 313.
        let t0 = Instant::now();
        let mut q = Quality::default();
        for (i, ms) in [0u64, 20, 45].into_iter().enumerate() {
            q.on_rtp(
                SSRC,
                i as u16,
                320 * i as u32,
                6,
                t0 + Duration::from_millis(ms),
            );
        }
        assert_eq!(q.jitter16, 80);
        assert_eq!(q.figures().jitter_us, 313);
        assert_eq!(clock_rate(0), 8000);
        assert_eq!(clock_rate(9), 8000);
        assert_eq!(clock_rate(34), 90_000);
        assert_eq!(clock_rate(111), 8000);
    }

    #[test]
    fn histograms_bucket_by_upper_bound() {
        let mut s = QualityStats::default();
        // No RTP counted: not observed.
        s.observe(&QualityFigures::default());
        assert_eq!(s.observations, 0);
        s.observe(&QualityFigures {
            expected: 1000,
            received: 1000,
            lost: 0,
            jitter_us: 1000,
        });
        s.observe(&QualityFigures {
            expected: 1000,
            received: 990,
            lost: 10,
            jitter_us: 250_000,
        });
        assert_eq!(s.observations, 2);
        // 0 -> le 0; 0.01 -> le 0.01 (index 3).
        assert_eq!(s.loss.counts[0], 1);
        assert_eq!(s.loss.counts[3], 1);
        assert_eq!(s.loss.sum, 0.01);
        // 0.001 s -> le 0.001; 0.25 s -> +Inf.
        assert_eq!(s.jitter.counts[0], 1);
        assert_eq!(s.jitter.counts[10], 1);
        assert_eq!(s.jitter.count(), 2);
    }
}
