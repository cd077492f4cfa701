//! How long the edge's client transactions take (sans-IO): first transmission → final response
//! (`edge_transaction_duration_seconds{method,class}`), INVITE → first 18x (post-dial delay,
//! `edge_invite_pdd_seconds`), and the health probes' round trip per core. Time is injected.

use crate::transaction::{IdMap, TxId};
use std::time::{Duration, Instant};

struct Started {
    at: Instant,
    method: &'static str,
    /// INVITE that has not seen an 18x yet.
    awaiting_18x: bool,
}

/// What a response means for the figures.
#[derive(Debug, PartialEq, Eq)]
pub enum Observation {
    /// An INVITE's first 18x, this long after it was sent.
    PostDialDelay(Duration),
    /// The final response (class `2xx`..`6xx`) or `timeout`.
    Done {
        method: &'static str,
        class: &'static str,
        took: Duration,
    },
}

#[derive(Default)]
pub struct Timing {
    started: IdMap<TxId, Started>,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

impl Timing {
    /// Client transaction `tx` (a request with `method`, a bounded label) was sent at `now`.
    pub fn start(&mut self, tx: TxId, method: &'static str, now: Instant) {
        self.started.insert(
            tx,
            Started {
                at: now,
                method,
                awaiting_18x: method == "INVITE",
            },
        );
    }

    /// A response with `status` reached the TU for `tx`.
    pub fn response(&mut self, tx: TxId, status: u16, now: Instant) -> Option<Observation> {
        let s = self.started.get_mut(&tx)?;
        let took = now.saturating_duration_since(s.at);
        if status < 200 {
            if s.awaiting_18x && (180..190).contains(&status) {
                s.awaiting_18x = false;
                return Some(Observation::PostDialDelay(took));
            }
            return None;
        }
        let s = self.started.remove(&tx)?;
        let class = CLASSES[(usize::from(status / 100)).clamp(1, 6) - 1];
        Some(Observation::Done {
            method: s.method,
            class,
            took,
        })
    }

    /// `tx` timed out (Timer B/F).
    pub fn timeout(&mut self, tx: TxId, now: Instant) -> Option<Observation> {
        let s = self.started.remove(&tx)?;
        Some(Observation::Done {
            method: s.method,
            class: "timeout",
            took: now.saturating_duration_since(s.at),
        })
    }

    /// `tx` is gone (terminated, failed on transport): nothing to observe.
    pub fn forget(&mut self, tx: TxId) {
        self.started.remove(&tx);
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.started.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_gets_post_dial_delay_once_then_its_duration() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Timing::default();
        t.start(TxId(1), "INVITE", t0);
        assert_eq!(
            t.response(TxId(1), 100, t0 + ms(5)),
            None,
            "100 is not ringing"
        );
        assert_eq!(
            t.response(TxId(1), 180, t0 + ms(300)),
            Some(Observation::PostDialDelay(ms(300)))
        );
        assert_eq!(
            t.response(TxId(1), 183, t0 + ms(400)),
            None,
            "first 18x only"
        );
        assert_eq!(
            t.response(TxId(1), 486, t0 + ms(2_000)),
            Some(Observation::Done {
                method: "INVITE",
                class: "4xx",
                took: ms(2_000)
            })
        );
        assert!(t.is_empty());
        assert_eq!(t.response(TxId(1), 486, t0 + ms(2_100)), None);
    }

    #[test]
    fn timeouts_and_forgotten_transactions() {
        let t0 = Instant::now();
        let mut t = Timing::default();
        t.start(TxId(2), "REGISTER", t0);
        t.start(TxId(3), "OPTIONS", t0);
        assert_eq!(
            t.timeout(TxId(2), t0 + Duration::from_secs(32)),
            Some(Observation::Done {
                method: "REGISTER",
                class: "timeout",
                took: Duration::from_secs(32)
            })
        );
        t.forget(TxId(3));
        assert_eq!(t.response(TxId(3), 200, t0), None);
        assert!(t.is_empty());
    }
}
