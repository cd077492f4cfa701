//! Pacing: packet `m` of a sender is due at `m / rate` seconds after its start. The sender asks
//! how many packets are due at `now` and sends them as one batch, so a late wake-up turns into
//! a bigger batch, never into a lower rate. Sans-IO: time is passed in.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Pacer {
    /// Packets per second.
    rate: f64,
    /// Packets handed out so far.
    issued: u64,
    /// Total packets of the run.
    total: u64,
}

impl Pacer {
    pub fn new(rate: f64, duration: Duration) -> Self {
        let total = (rate * duration.as_secs_f64()).round() as u64;
        Pacer {
            rate,
            issued: 0,
            total,
        }
    }

    /// Packets due at `elapsed` (since the sender's start) and not yet handed out, at most
    /// `max`. They are counted as handed out.
    pub fn take_due(&mut self, elapsed: Duration, max: u64) -> u64 {
        let due = ((elapsed.as_secs_f64() * self.rate) as u64 + 1).min(self.total);
        let n = due.saturating_sub(self.issued).min(max);
        self.issued += n;
        n
    }

    /// Index of the next packet to hand out.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    pub fn done(&self) -> bool {
        self.issued >= self.total
    }

    /// How long until `want` more packets are due (for sleeping between batches).
    pub fn wait_for(&self, elapsed: Duration, want: u64) -> Duration {
        let at = (self.issued + want.max(1) - 1) as f64 / self.rate;
        Duration::from_secs_f64((at - elapsed.as_secs_f64()).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_and_bounds() {
        let mut p = Pacer::new(1000.0, Duration::from_secs(1));
        assert_eq!(
            p.take_due(Duration::ZERO, 100),
            1,
            "packet 0 is due at once"
        );
        assert_eq!(p.take_due(Duration::from_millis(10), 100), 10);
        assert_eq!(p.take_due(Duration::from_millis(10), 100), 0);
        // A late wake-up: everything due, in batches of at most `max`.
        assert_eq!(p.take_due(Duration::from_millis(500), 100), 100);
        assert_eq!(p.issued(), 111);
        assert_eq!(p.take_due(Duration::from_secs(5), 10_000), 889);
        assert!(p.done());
        assert_eq!(p.take_due(Duration::from_secs(6), 10_000), 0);
    }

    #[test]
    fn wait_for_next_batch() {
        let mut p = Pacer::new(100.0, Duration::from_secs(10));
        p.take_due(Duration::ZERO, 10);
        // Packets 1..=4 are due at 10..40 ms: 4 more at 40 ms.
        assert_eq!(p.wait_for(Duration::ZERO, 4), Duration::from_millis(40));
        assert_eq!(p.wait_for(Duration::from_secs(1), 4), Duration::ZERO);
    }
}
