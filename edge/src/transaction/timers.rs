//! The timer bases of RFC 3261 §17.1.1.1 (T1, T2, T4) and the timers derived from them
//! (RFC 3261 Table 4, RFC 6026 Table 1).

use std::time::Duration;

/// Timer bases. Every transaction timer is derived from these (RFC 3261 Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate: first retransmit interval (Timers A, E, G) and unit of the 64·T1 timeouts.
    pub t1: Duration,
    /// Retransmit interval cap for non-INVITE requests (Timer E) and INVITE responses (Timer G).
    pub t2: Duration,
    /// Time a message may stay in the network (Timers I and K).
    pub t4: Duration,
}

impl Default for Timers {
    /// The RFC 3261 §17.1.1.1 recommended values: 500 ms, 4 s, 5 s.
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl From<&config::TimersConfig> for Timers {
    fn from(c: &config::TimersConfig) -> Self {
        Timers {
            t1: Duration::from_millis(c.t1_ms),
            t2: Duration::from_millis(c.t2_ms),
            t4: Duration::from_millis(c.t4_ms),
        }
    }
}

/// Shortest retransmit interval we ever arm. A zero T1 (rejected by config validation, but
/// `Timers` is a plain struct) would otherwise make a retransmit timer fire forever at one
/// instant.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Timer D for unreliable transports (RFC 3261 Table 4: "> 32 s").
const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

impl Timers {
    /// First retransmit interval of Timers A, E and G: T1.
    pub fn first_retransmit(&self) -> Duration {
        self.t1.max(MIN_INTERVAL)
    }

    /// 64·T1: Timers B, F, H (transaction timeout), J (unreliable), L and M (RFC 6026).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// Next Timer A interval: doubles without a cap (§17.1.1.2).
    pub fn next_a(&self, current: Duration) -> Duration {
        current.saturating_mul(2).max(MIN_INTERVAL)
    }

    /// Next Timer E (in Trying) or Timer G interval: doubles, capped at T2 (§17.1.2.2,
    /// §17.2.1).
    pub fn next_capped(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2).max(MIN_INTERVAL)
    }

    /// Timer E interval once the non-INVITE client transaction is in Proceeding: T2
    /// (§17.1.2.2).
    pub fn proceeding_e(&self) -> Duration {
        self.t2.max(MIN_INTERVAL)
    }

    /// Timer D: wait for retransmitted final responses after the ACK (§17.1.1.2).
    pub fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            TIMER_D_UNRELIABLE
        }
    }

    /// Timers I and K: T4 on unreliable transports, zero on reliable ones (§17.2.1,
    /// §17.1.2.2).
    pub fn t4_or_zero(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64·T1 on unreliable transports, zero on reliable ones (§17.2.2).
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.timeout()
        }
    }
}
