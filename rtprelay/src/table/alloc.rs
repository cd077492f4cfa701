//! Port-pair allocator of one shard.
//!
//! A shard owns a contiguous slice of the configured media range, `base..base + 2 * pairs`.
//! Slot `i` is the pair (RTP `base + 2i`, RTCP `base + 2i + 1`); RTP is even as RFC 3550 §11
//! recommends and RTCP sits on the next port. Free slots are kept in a FIFO so that a port that
//! was just freed is the *last* one handed out again: late packets of the old call then find
//! no stream rather than a new call's leg.

use std::collections::VecDeque;

/// O(1) allocate/free of port pairs; exhaustion is a `None`, never a panic.
#[derive(Debug)]
pub struct PortAllocator {
    base: u16,
    pairs: u32,
    free: VecDeque<u32>,
    in_use: Vec<bool>,
}

impl PortAllocator {
    /// `base` is made even; `pairs` is clamped so that the last RTCP port fits in `u16`.
    pub fn new(base: u16, pairs: u32) -> PortAllocator {
        let base = base.saturating_add(base & 1);
        let max_pairs = (u32::from(u16::MAX) + 1 - u32::from(base)) / 2;
        let pairs = pairs.min(max_pairs);
        PortAllocator {
            base,
            pairs,
            free: (0..pairs).collect(),
            in_use: vec![false; pairs as usize],
        }
    }

    pub fn base(&self) -> u16 {
        self.base
    }

    pub fn pairs(&self) -> u32 {
        self.pairs
    }

    pub fn free_pairs(&self) -> usize {
        self.free.len()
    }

    /// Take the oldest free slot.
    pub fn allocate(&mut self) -> Option<u32> {
        let slot = self.free.pop_front()?;
        if let Some(u) = self.in_use.get_mut(slot as usize) {
            *u = true;
        }
        Some(slot)
    }

    /// Return a slot; freeing a slot that is not in use is ignored (idempotent).
    pub fn free(&mut self, slot: u32) {
        if let Some(u) = self.in_use.get_mut(slot as usize) {
            if *u {
                *u = false;
                self.free.push_back(slot);
            }
        }
    }

    /// Put a slot that could not be used (port taken by another process) at the back of the
    /// queue: it is retried only after every other free slot.
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

    #[test]
    fn allocates_even_rtp_ports_in_range() {
        let mut a = PortAllocator::new(30_001, 3);
        assert_eq!(a.base(), 30_002);
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                let s = a.allocate().expect("free");
                a.port_of(s)
            })
            .collect();
        assert_eq!(ports, vec![30_002, 30_004, 30_006]);
        assert!(ports.iter().all(|p| p % 2 == 0));
    }

    #[test]
    fn exhaustion_is_none_not_panic() {
        let mut a = PortAllocator::new(40_000, 2);
        assert!(a.allocate().is_some());
        assert!(a.allocate().is_some());
        assert_eq!(a.allocate(), None);
        assert_eq!(a.allocate(), None);
        assert_eq!(a.free_pairs(), 0);
    }

    #[test]
    fn freed_ports_are_reused_oldest_first() {
        let mut a = PortAllocator::new(40_000, 3);
        let s0 = a.allocate().expect("s0");
        let s1 = a.allocate().expect("s1");
        let s2 = a.allocate().expect("s2");
        assert_eq!(a.allocate(), None);
        a.free(s1);
        a.free(s0);
        assert_eq!(a.allocate(), Some(s1));
        assert_eq!(a.allocate(), Some(s0));
        assert_eq!(a.allocate(), None);
        assert!(a.is_allocated(s2));
    }

    #[test]
    fn double_free_is_ignored() {
        let mut a = PortAllocator::new(40_000, 2);
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
        let a = PortAllocator::new(40_000, 4);
        assert_eq!(a.slot_of(40_000), Some(0));
        assert_eq!(a.slot_of(40_001), Some(0));
        assert_eq!(a.slot_of(40_006), Some(3));
        assert_eq!(a.slot_of(40_008), None);
        assert_eq!(a.slot_of(39_999), None);
    }

    #[test]
    fn top_of_port_space_is_clamped() {
        let mut a = PortAllocator::new(65_534, 10);
        assert_eq!(a.pairs(), 1);
        let s = a.allocate().expect("one pair");
        assert_eq!(a.port_of(s), 65_534);
        assert_eq!(a.allocate(), None);
    }
}
