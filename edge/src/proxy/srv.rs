//! DNS SRV target order (RFC 2782, as used by RFC 3263 §4.4), sans-IO: the shell resolves
//! `_sip._udp|_sip._tcp.<name>` and each target's A/AAAA; this module orders the results.
//! Lower priority first; within one priority a weighted random order, so that over successive
//! resolutions each target leads in proportion to its weight. Randomness is injected.

use std::net::SocketAddr;

/// One resolved address of an SRV target (priority/weight 0 when it came from A/AAAA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub addr: SocketAddr,
    pub priority: u16,
    pub weight: u16,
}

/// RFC 2782 order. `pick(total)` returns a uniform number in `0..=total`.
pub fn order(mut targets: Vec<Resolved>, mut pick: impl FnMut(u32) -> u32) -> Vec<Resolved> {
    // Stable sort: equal keys keep the order DNS gave.
    targets.sort_by_key(|t| t.priority);
    let mut out = Vec::with_capacity(targets.len());
    let mut rest = targets.as_slice();
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|t| t.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(n);
        weighted(group.to_vec(), &mut pick, &mut out);
        rest = tail;
    }
    out
}

/// RFC 2782 "Usage rules": zero-weight entries first, then repeatedly select the first entry
/// whose running weight sum reaches a random number in 0..=total, and remove it.
fn weighted(mut group: Vec<Resolved>, pick: &mut impl FnMut(u32) -> u32, out: &mut Vec<Resolved>) {
    group.sort_by_key(|t| t.weight != 0);
    while !group.is_empty() {
        let total: u32 = group.iter().map(|t| u32::from(t.weight)).sum();
        let r = pick(total).min(total);
        let mut sum = 0u32;
        let i = group
            .iter()
            .position(|t| {
                sum += u32::from(t.weight);
                sum >= r
            })
            .unwrap_or(0);
        out.push(group.remove(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(port: u16, priority: u16, weight: u16) -> Resolved {
        Resolved {
            addr: SocketAddr::from(([10, 0, 0, 1], port)),
            priority,
            weight,
        }
    }

    fn ports(v: &[Resolved]) -> Vec<u16> {
        v.iter().map(|t| t.addr.port()).collect()
    }

    #[test]
    fn priority_first() {
        let v = vec![r(3, 20, 0), r(1, 10, 0), r(2, 10, 0), r(4, 5, 0)];
        assert_eq!(ports(&order(v, |_| 0)), vec![4, 1, 2, 3]);
    }

    #[test]
    fn weights_within_a_priority() {
        let v = vec![r(1, 10, 60), r(2, 10, 40), r(3, 10, 0)];
        // r = 0: the zero-weight entry (placed first) is chosen, then 0 again picks port 1.
        assert_eq!(ports(&order(v.clone(), |_| 0)), vec![3, 1, 2]);
        // r = total: the last entry of the running sum.
        assert_eq!(ports(&order(v.clone(), |t| t)), vec![2, 1, 3]);
        // r = 61 of 100: past 60, so port 2 first.
        let mut first = true;
        let got = order(v, |t| if std::mem::take(&mut first) { 61 } else { t });
        assert_eq!(ports(&got)[0], 2);
    }

    #[test]
    fn weighted_share_over_many_orders() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let v = vec![r(1, 10, 75), r(2, 10, 25), r(9, 20, 100)];
        let mut first1 = 0;
        for _ in 0..4000 {
            let o = order(v.clone(), |t| rng.random_range(0..=t));
            assert_eq!(o.last().map(|t| t.addr.port()), Some(9), "priority 20 last");
            if o[0].addr.port() == 1 {
                first1 += 1;
            }
        }
        // 75 % expected (RFC 2782 selection gives ~ (75+1)/101 with the inclusive range).
        assert!((2800..3250).contains(&first1), "{first1}");
    }

    #[test]
    fn a_huge_pick_is_clamped() {
        let v = vec![r(1, 0, 1), r(2, 0, 1)];
        assert_eq!(ports(&order(v, |_| u32::MAX)), vec![2, 1]);
    }
}
