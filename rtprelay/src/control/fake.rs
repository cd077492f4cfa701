//! An in-memory [`MediaBackend`] for tests and the bench: honest about ports (unique even
//! ports from a fixed pool, [`BackendError::NoPorts`] when it runs out, freed on remove), and
//! it counts every call so tests can prove a command was (or was not) executed.

use crate::backend::{BackendError, LegCounters, LegId, LegSpec, MediaBackend};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How often each [`MediaBackend`] method was called. Shared (`Arc`) so a test can watch a
/// backend that a server task owns.
#[derive(Debug, Default)]
pub struct FakeCalls {
    pub create: AtomicU64,
    pub update: AtomicU64,
    pub counters: AtomicU64,
    pub remove: AtomicU64,
    pub take_expired: AtomicU64,
}

impl FakeCalls {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
struct FakeLeg {
    spec: LegSpec,
    counters: LegCounters,
    peer: LegId,
}

/// The fake media plane. Each leg takes an even port and its odd RTCP neighbour.
#[derive(Debug)]
pub struct FakeBackend {
    free: BTreeSet<u16>,
    legs: HashMap<LegId, FakeLeg>,
    expired: Vec<(LegId, LegId, LegCounters, LegCounters)>,
    fail_next: Option<BackendError>,
    calls: Arc<FakeCalls>,
}

impl FakeBackend {
    /// A pool of `legs` legs on even ports starting at `port_min` (rounded up to even).
    pub fn new(port_min: u16, legs: usize) -> Self {
        let base = port_min.saturating_add(port_min % 2);
        let free = (0..legs)
            .filter_map(|i| {
                u16::try_from(i * 2)
                    .ok()
                    .and_then(|off| base.checked_add(off))
            })
            .filter(|p| *p < u16::MAX)
            .collect();
        FakeBackend {
            free,
            legs: HashMap::new(),
            expired: Vec::new(),
            fail_next: None,
            calls: Arc::new(FakeCalls::default()),
        }
    }

    /// Call counters, shareable with a test while the backend is moved into a server.
    pub fn calls(&self) -> Arc<FakeCalls> {
        Arc::clone(&self.calls)
    }

    /// The current signalling state of a leg.
    pub fn spec(&self, leg: LegId) -> Option<LegSpec> {
        self.legs.get(&leg).map(|l| l.spec)
    }

    /// Pretend traffic: set a leg's counters.
    pub fn set_counters(&mut self, leg: LegId, counters: LegCounters) {
        if let Some(l) = self.legs.get_mut(&leg) {
            l.counters = counters;
        }
    }

    /// Pretend the stream of leg `a` timed out: free it and queue it for `take_expired`.
    pub fn expire(&mut self, a: LegId) -> bool {
        let Some(b) = self.legs.get(&a).map(|l| l.peer) else {
            return false;
        };
        match self.free_pair(a, b) {
            Some((ca, cb)) => {
                self.expired.push((a, b, ca, cb));
                true
            }
            None => false,
        }
    }

    /// Make the next call that can fail fail with `e`.
    pub fn fail_next(&mut self, e: BackendError) {
        self.fail_next = Some(e);
    }

    /// Legs currently allocated.
    pub fn live_legs(&self) -> usize {
        self.legs.len()
    }

    /// Free ports left (legs).
    pub fn free_legs(&self) -> usize {
        self.free.len()
    }

    fn injected(&mut self) -> Result<(), BackendError> {
        self.fail_next.take().map_or(Ok(()), Err)
    }

    fn free_pair(&mut self, a: LegId, b: LegId) -> Option<(LegCounters, LegCounters)> {
        if self.legs.get(&a).map(|l| l.peer) != Some(b) {
            return None;
        }
        let la = self.legs.remove(&a)?;
        let lb = self.legs.remove(&b)?;
        self.free.insert(a.port);
        self.free.insert(b.port);
        Some((la.counters, lb.counters))
    }
}

impl MediaBackend for FakeBackend {
    fn create(
        &mut self,
        _shard_hint: u64,
        a: LegSpec,
        b: LegSpec,
    ) -> Result<(LegId, LegId), BackendError> {
        self.calls.create.fetch_add(1, Ordering::Relaxed);
        self.injected()?;
        if self.free.len() < 2 {
            return Err(BackendError::NoPorts);
        }
        let pa = self.free.pop_first().ok_or(BackendError::NoPorts)?;
        let pb = self.free.pop_first().ok_or(BackendError::NoPorts)?;
        let (la, lb) = (LegId { shard: 0, port: pa }, LegId { shard: 0, port: pb });
        self.legs.insert(
            la,
            FakeLeg {
                spec: a,
                counters: LegCounters::default(),
                peer: lb,
            },
        );
        self.legs.insert(
            lb,
            FakeLeg {
                spec: b,
                counters: LegCounters::default(),
                peer: la,
            },
        );
        Ok((la, lb))
    }

    fn update(&mut self, leg: LegId, spec: LegSpec) -> Result<(), BackendError> {
        self.calls.update.fetch_add(1, Ordering::Relaxed);
        self.injected()?;
        let l = self.legs.get_mut(&leg).ok_or(BackendError::UnknownLeg)?;
        l.spec = spec;
        Ok(())
    }

    fn counters(&mut self, leg: LegId) -> Result<LegCounters, BackendError> {
        self.calls.counters.fetch_add(1, Ordering::Relaxed);
        self.injected()?;
        self.legs
            .get(&leg)
            .map(|l| l.counters)
            .ok_or(BackendError::UnknownLeg)
    }

    fn remove(&mut self, a: LegId, b: LegId) -> Result<(LegCounters, LegCounters), BackendError> {
        self.calls.remove.fetch_add(1, Ordering::Relaxed);
        self.injected()?;
        self.free_pair(a, b).ok_or(BackendError::UnknownLeg)
    }

    fn take_expired(&mut self) -> Vec<(LegId, LegId, LegCounters, LegCounters)> {
        self.calls.take_expired.fetch_add(1, Ordering::Relaxed);
        std::mem::take(&mut self.expired)
    }
}
