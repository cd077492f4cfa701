//! Receive-side accounting: per stream direction counts, reordering, RFC 3550 interarrival
//! jitter, and a latency histogram. Plain data, no IO; merged across receiver threads at the
//! end of a run.

/// Per stream direction receive state.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamRx {
    pub received: u64,
    /// Packets whose number is not above the highest seen (reordered or duplicated).
    pub out_of_order: u64,
    /// Highest packet number seen + 1 (0: nothing yet).
    pub next_expected: u64,
    /// RFC 3550 §6.4.1 jitter estimate, in ns.
    pub jitter_ns: f64,
    /// Previous relative transit time (arrival − send), in ns.
    prev_transit: Option<i64>,
}

impl StreamRx {
    /// Account one packet: `number` within its stream direction, `sent_ns` and `arrival_ns` on
    /// the run's clock.
    ///
    /// Jitter follows RFC 3550 §6.4.1 / A.8: J += (|D(i−1,i)| − J)/16 with D the difference of
    /// relative transit times. S is the actual send time carried in the payload rather than the
    /// RTP timestamp, so the tool's batching of sends is not counted as jitter; what remains is
    /// what the path (the relay) adds.
    pub fn on_packet(&mut self, number: u64, sent_ns: u64, arrival_ns: u64) {
        self.received += 1;
        if number < self.next_expected {
            self.out_of_order += 1;
        } else {
            self.next_expected = number + 1;
        }
        let transit = arrival_ns as i64 - sent_ns as i64;
        if let Some(prev) = self.prev_transit {
            let d = (transit - prev).unsigned_abs() as f64;
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.prev_transit = Some(transit);
    }

    /// Combine the state of the same stream direction seen by two receivers (not expected:
    /// each direction arrives on one socket).
    pub fn merge(&mut self, o: &StreamRx) {
        self.received += o.received;
        self.out_of_order += o.out_of_order;
        self.next_expected = self.next_expected.max(o.next_expected);
        self.jitter_ns = self.jitter_ns.max(o.jitter_ns);
    }
}

/// Latency histogram: 1 µs buckets up to 1 ms, 10 µs up to 10 ms, 1 ms up to 1 s, then one
/// overflow bucket. Fixed size, no allocation per sample.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

const FINE: u64 = 1_000; // 1 µs buckets below 1 ms
const MID: u64 = 900; // 10 µs buckets, 1..10 ms
const COARSE: u64 = 990; // 1 ms buckets, 10 ms..1 s
const BUCKETS: usize = (FINE + MID + COARSE + 1) as usize;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    let us = ns / 1_000;
    let i = if us < 1_000 {
        us
    } else if us < 10_000 {
        FINE + (us - 1_000) / 10
    } else if us < 1_000_000 {
        FINE + MID + (us - 10_000) / 1_000
    } else {
        FINE + MID + COARSE
    };
    i as usize
}

/// Upper bound of a bucket, in ns.
fn bucket_top(i: usize) -> u64 {
    let i = i as u64;
    let us = if i < FINE {
        i + 1
    } else if i < FINE + MID {
        1_000 + (i - FINE + 1) * 10
    } else if i < FINE + MID + COARSE {
        10_000 + (i - FINE - MID + 1) * 1_000
    } else {
        u64::MAX / 1_000
    };
    us * 1_000
}

impl Histogram {
    pub fn record(&mut self, ns: u64) {
        if let Some(b) = self.buckets.get_mut(bucket_of(ns)) {
            *b += 1;
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ns += o.sum_ns;
        self.max_ns = self.max_ns.max(o.max_ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    pub fn mean_ns(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum_ns / u128::from(self.count)) as u64
        }
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), capped at the maximum seen;
    /// 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_top(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_rfc3550() {
        let mut s = StreamRx::default();
        // Constant transit: no jitter.
        for i in 0..10u64 {
            s.on_packet(i, i * 20_000_000, i * 20_000_000 + 50_000);
        }
        assert_eq!(s.jitter_ns, 0.0);
        assert_eq!(s.received, 10);
        // One packet 160 µs late: J = 160/16 = 10 µs, then the next (back to normal) adds
        // (160 − 10)/16.
        s.on_packet(10, 200_000_000, 200_000_000 + 210_000);
        assert!((s.jitter_ns - 10_000.0).abs() < 1e-6);
        s.on_packet(11, 220_000_000, 220_000_000 + 50_000);
        assert!((s.jitter_ns - (10_000.0 + 150_000.0 / 16.0)).abs() < 1e-6);
    }

    #[test]
    fn reordering_counted() {
        let mut s = StreamRx::default();
        for n in [0, 1, 3, 2, 4, 4] {
            s.on_packet(n, 0, 0);
        }
        assert_eq!(s.received, 6);
        assert_eq!(s.out_of_order, 2);
        assert_eq!(s.next_expected, 5);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ns(0.5), 0);
        for us in 1..=1000u64 {
            h.record(us * 1_000 - 1);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile_ns(0.5), 500_000);
        assert_eq!(h.quantile_ns(0.99), 990_000);
        assert_eq!(h.quantile_ns(1.0), 999_999);
        h.record(5_000_000);
        h.record(2_000_000_000);
        assert_eq!(h.max_ns(), 2_000_000_000);
        assert_eq!(h.quantile_ns(1.0), 2_000_000_000);
        let mut g = Histogram::default();
        g.record(7_500_000);
        g.merge(&h);
        assert_eq!(g.count(), 1003);
        assert_eq!(bucket_top(bucket_of(7_500_000)), 7_510_000);
        assert_eq!(bucket_top(bucket_of(123_456_789)), 124_000_000);
    }
}
