//! [`Stamp`]: an `Option<Instant>` in 8 bytes instead of 16 (the port table keeps a few per
//! leg; issue 12 bounds memory per session).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A point in time as nanoseconds since a process-wide epoch, plus one; 0 is "none". 2^64 ns
/// is 584 years: no wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp(u64);

/// The epoch: a day before the first use, so that instants taken a little earlier (tests
/// build their `t0` first) are still after it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

impl Stamp {
    pub const NONE: Stamp = Stamp(0);

    /// `t` (an instant before the epoch is taken as the epoch).
    pub fn at(t: Instant) -> Stamp {
        let ns = t.saturating_duration_since(epoch()).as_nanos();
        Stamp(u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1)
    }

    pub fn get(self) -> Option<Instant> {
        (self.0 != 0).then(|| epoch() + Duration::from_nanos(self.0 - 1))
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = Instant::now();
        assert_eq!(Stamp::at(t).get(), Some(t));
        let later = t + Duration::from_secs(3600);
        assert_eq!(Stamp::at(later).get(), Some(later));
        assert_eq!(Stamp::NONE.get(), None);
        assert!(Stamp::default().is_none() && !Stamp::at(t).is_none());
        assert_eq!(std::mem::size_of::<Stamp>(), 8);
    }
}
