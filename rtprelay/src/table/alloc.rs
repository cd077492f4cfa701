//! Port-pair allocator of one shard.
//!
//! A shard owns a contiguous slice of the configured media range, `base..base + 2 * pairs`.
//! Slot `i` is the pair (RTP `base + 2i`, RTCP `base + 2i + 1`); RTP is even as RFC 3550 §11
//! recommends and RTCP sits on the next port.
//!
//! Which free pair a new stream gets is chosen **at random** (a CSPRNG seeded per shard): ports
//! handed out in order let a prober find the live ones in one packet and predict the next call's
//! port ("RTP bleed", issue 9). A pair that was just freed first waits in a **quarantine** FIFO
//! of up to a quarter of the shard's pairs before it can be chosen again, so late packets of the
//! old call find no stream rather than a new call's leg. When nothing else is free the oldest
//! quarantined pair is used: exhaustion is still only reached when every pair is in use.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

/// O(1) allocate/free of port pairs; exhaustion is a `None`, never a panic.
#[derive(Debug)]
pub struct PortAllocator {
    base: u16,
    pairs: u32,
    /// Free slots that may be chosen (in any order: a random one is taken).
    free: Vec<u32>,
    /// Freed slots, oldest first, not chosen again until they leave this queue.
    quarantine: VecDeque<u32>,
    quarantine_len: usize,
    in_use: Vec<bool>,
    rng: StdRng,
}

impl PortAllocator {
    /// `base` is made even; `pairs` is clamped so that the last RTCP port fits in `u16`.
    /// `seed` seeds the port choice (the shell passes a random one; tests a fixed one).
    pub fn new(base: u16, pairs: u32, seed: u64) -> PortAllocator {
        let base = base.saturating_add(base & 1);
        let max_pairs = (u32::from(u16::MAX) + 1 - u32::from(base)) / 2;
        let pairs = pairs.min(max_pairs);
        PortAllocator {
            base,
            pairs,
            free: (0..pairs).collect(),
            quarantine: VecDeque::new(),
            quarantine_len: (pairs / 4) as usize,
            in_use: vec![false; pairs as usize],
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn base(&self) -> u16 {
        self.base
    }

    pub fn pairs(&self) -> u32 {
        self.pairs
    }

    pub fn free_pairs(&self) -> usize {
        self.free.len() + self.quarantine.len()
    }

    /// Is a slot free outside the quarantine?
    pub fn has_unquarantined(&self) -> bool {
        !self.free.is_empty()
    }

    /// Take a random free slot (the oldest quarantined one if no other is free).
    pub fn allocate(&mut self) -> Option<u32> {
        let slot = if self.free.is_empty() {
            self.quarantine.pop_front()?
        } else {
            let i = self.rng.random_range(0..self.free.len());
            self.free.swap_remove(i)
        };
        if let Some(u) = self.in_use.get_mut(slot as usize) {
            *u = true;
        }
        Some(slot)
    }

    /// Return a slot; freeing a slot that is not in use is ignored (idempotent).
    pub fn free(&mut self, slot: u32) {
        self.free_with(slot, |_| false)
    }

    /// Return a slot like [`PortAllocator::free`]; a slot that leaves the quarantine because
    /// of it is offered to `reclaim` first: `true` takes it straight back (allocated again,
    /// never in the free list), e.g. to recycle its still-bound sockets.
    pub fn free_with(&mut self, slot: u32, mut reclaim: impl FnMut(u32) -> bool) {
        if let Some(u) = self.in_use.get_mut(slot as usize) {
            if *u {
                *u = false;
                self.quarantine.push_back(slot);
                while self.quarantine.len() > self.quarantine_len {
                    if let Some(s) = self.quarantine.pop_front() {
                        if reclaim(s) {
                            self.in_use[s as usize] = true;
                        } else {
                            self.free.push(s);
                        }
                    }
                }
            }
        }
    }

    /// Return a slot whose port could not be bound (taken by another process): it goes to the
    /// back of the quarantine, so every other free slot is tried before it is again.
    pub fn release_unusable(&mut self, slot: u32) {
        self.free(slot)
    }

    pub fn is_allocated(&self, slot: u32) -> bool {
        self.in_use.get(slot as usize).copied().unwrap_or(false)
    }

    /// RTP port of a slot.
    pub fn port_of(&self, slot: u32) -> u16 {
        // slot < pairs <= max_pairs, so this fits.
        (u32::from(self.base) + 2 * slot) as u16
    }

    /// Slot of an RTP (even) or RTCP (odd) port of this shard, if it is in range.
    pub fn slot_of(&self, port: u16) -> Option<u32> {
        let off = u32::from(port).checked_sub(u32::from(self.base))?;
        let slot = off / 2;
        (slot < self.pairs).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    #[test]
    fn allocates_even_rtp_ports_in_range() {
        let mut a = PortAllocator::new(30_001, 3, 1);
        assert_eq!(a.base(), 30_002);
        let ports: BTreeSet<u16> = (0..3)
            .map(|_| {
                let s = a.allocate().expect("free");
                a.port_of(s)
            })
            .collect();
        assert_eq!(ports, BTreeSet::from([30_002, 30_004, 30_006]));
    }

    #[test]
    fn exhaustion_is_none_not_panic() {
        let mut a = PortAllocator::new(40_000, 2, 1);
        assert!(a.allocate().is_some());
        assert!(a.allocate().is_some());
        assert_eq!(a.allocate(), None);
        assert_eq!(a.allocate(), None);
        assert_eq!(a.free_pairs(), 0);
    }

    #[test]
    fn quarantined_slots_are_used_when_nothing_else_is_free() {
        let mut a = PortAllocator::new(40_000, 8, 7);
        let all: Vec<u32> = (0..8).map(|_| a.allocate().expect("free")).collect();
        assert_eq!(a.allocate(), None);
        a.free(all[3]);
        a.free(all[5]);
        // Quarantine holds 2 (8 / 4): nothing else is free, so the oldest comes back first.
        assert_eq!(a.allocate(), Some(all[3]));
        assert_eq!(a.allocate(), Some(all[5]));
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn double_free_is_ignored() {
        let mut a = PortAllocator::new(40_000, 2, 1);
        let s = a.allocate().expect("s");
        a.free(s);
        a.free(s);
        a.free(99);
        assert_eq!(a.free_pairs(), 2);
        assert!(a.allocate().is_some());
        assert!(a.allocate().is_some());
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn slot_of_maps_rtp_and_rtcp() {
        let a = PortAllocator::new(40_000, 4, 1);
        assert_eq!(a.slot_of(40_000), Some(0));
        assert_eq!(a.slot_of(40_001), Some(0));
        assert_eq!(a.slot_of(40_006), Some(3));
        assert_eq!(a.slot_of(40_008), None);
        assert_eq!(a.slot_of(39_999), None);
    }

    #[test]
    fn top_of_port_space_is_clamped() {
        let mut a = PortAllocator::new(65_534, 10, 1);
        assert_eq!(a.pairs(), 1);
        let s = a.allocate().expect("one pair");
        assert_eq!(a.port_of(s), 65_534);
        assert_eq!(a.allocate(), None);
    }

    /// Issue 9: over 10,000 allocations (calls of a few allocations each, freed in turn) the
    /// ports are spread over the whole range — chi-square on 50 buckets — and no pair is handed
    /// out again within the quarantine window after it was freed.
    #[test]
    fn ports_are_spread_and_not_reused_soon() {
        const PAIRS: u32 = 5_000;
        const LIVE: usize = 100;
        let window = (PAIRS / 4) as usize;
        let mut a = PortAllocator::new(30_000, PAIRS, 0x5eed);
        let mut live = VecDeque::new();
        let mut freed_at: HashMap<u32, usize> = HashMap::new();
        let mut frees = 0usize;
        let mut buckets = [0u32; 50];
        let mut sequential = 0;
        let mut last = None;
        for _ in 0..10_000 {
            if live.len() == LIVE {
                let s = live.pop_front().expect("live");
                a.free(s);
                frees += 1;
                freed_at.insert(s, frees);
            }
            let s = a.allocate().expect("free pair");
            if let Some(f) = freed_at.get(&s) {
                assert!(
                    frees - f >= window,
                    "slot {s} reused {} frees after",
                    frees - f
                );
            }
            if last.is_some_and(|l: u32| s == l + 1) {
                sequential += 1;
            }
            last = Some(s);
            buckets[(s * 50 / PAIRS) as usize] += 1;
            live.push_back(s);
        }
        // 49 degrees of freedom: p = 0.001 at 85.35.
        let expected = 10_000.0 / 50.0;
        let chi2: f64 = buckets
            .iter()
            .map(|&o| (f64::from(o) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 85.35, "chi-square {chi2:.1}, buckets {buckets:?}");
        assert!(
            sequential < 50,
            "{sequential} of 10,000 were the next port in order"
        );
    }

    #[test]
    fn different_seeds_choose_different_ports() {
        let first = |seed| {
            let mut a = PortAllocator::new(30_000, 5_000, seed);
            (0..4)
                .map(|_| a.allocate().expect("free"))
                .collect::<Vec<_>>()
        };
        assert_ne!(first(1), first(2));
    }
}
