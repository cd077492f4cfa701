//! Memory per session (issue 12: ≤ 1 kB besides the kernel's socket buffers), measured: the
//! heap the session manager holds per call, counted by a test allocator on this thread, plus
//! the two legs' entries in the shard's slab (`Option<Leg>`, preallocated per port pair).

use super::proto::Command;
use super::{SessionConfig, SessionManager};
use crate::backend::{BackendError, LegCounters, LegId, LegSpec, MediaBackend};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// The system allocator, counting the live bytes of the current thread.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + delta));
}

// SAFETY: forwards to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A media plane that allocates nothing (so only the session manager is measured).
struct Ports(u16);

impl MediaBackend for Ports {
    fn create(&mut self, _: u64, _: LegSpec, _: LegSpec) -> Result<(LegId, LegId), BackendError> {
        self.0 = self.0.wrapping_add(4);
        let leg = |port| LegId { shard: 0, port };
        Ok((leg(self.0), leg(self.0 + 2)))
    }
    fn update(&mut self, _: LegId, _: LegSpec) -> Result<(), BackendError> {
        Ok(())
    }
    fn counters(&mut self, _: LegId) -> Result<LegCounters, BackendError> {
        Ok(LegCounters::default())
    }
    fn remove(&mut self, _: LegId, _: LegId) -> Result<(LegCounters, LegCounters), BackendError> {
        Ok(Default::default())
    }
    fn take_expired(&mut self) -> Vec<(LegId, LegId, LegCounters, LegCounters)> {
        Vec::new()
    }
}

/// Bytes per call the session manager holds for `calls` calls of one stream each, with
/// Kamailio-like Call-IDs (36 characters) and tags (10): heap only, maps included.
fn heap_per_call(calls: usize) -> f64 {
    let cfg = SessionConfig {
        internal: [127, 0, 0, 1].into(),
        advertise: None,
        external: None,
        timeout: Duration::from_secs(60),
        max_sessions: calls,
        media_ports: (2, 3),
        quotas: Default::default(),
    };
    let mut m = SessionManager::new(cfg);
    let mut b = Ports(0);
    let now = Instant::now();
    let cmds: Vec<(Command, Command)> = (0..calls)
        .map(|i| {
            let u = format!("U 6c1d8a0e-4f2b-4c3a-9d5e-{i:012} 192.0.2.1 4000 a1b2c3d4e5;1");
            let l = format!(
                "L 6c1d8a0e-4f2b-4c3a-9d5e-{i:012} 192.0.2.2 5000 a1b2c3d4e5;1 f6a7b8c9d0;1"
            );
            let p = |s: String| Command::parse(s.as_bytes()).expect("command");
            (p(u), p(l))
        })
        .collect();
    let before = LIVE.with(Cell::get);
    for (u, l) in &cmds {
        assert!(m.handle(u, &mut b, now).error().is_none());
        assert!(m.handle(l, &mut b, now).error().is_none());
    }
    let after = LIVE.with(Cell::get);
    assert_eq!(m.streams(), calls);
    (after - before) as f64 / calls as f64
}

/// Issue 12: ≤ 1 kB per session besides the kernel's socket buffers. Measured here 435–450 B of
/// control heap (the stream with its tags, the Call-ID stored once as an `Arc<str>` shared by
/// `calls`, `by_leg` and `ending`, the owner inside the stream, the maps' buckets) + 544 B of
/// shard slab (two 272-byte legs: times as 8-byte stamps, latched addresses packed, "out"
/// counters read from the partner) ≈ 1.0 kB. The bounds fail if either side regrows.
#[test]
fn memory_per_session_is_bounded() {
    const CONTROL_MAX: f64 = 470.0;
    const SLAB_MAX: usize = 544;
    const SESSION_MAX: f64 = 1024.0;
    let slab = 2 * std::mem::size_of::<Option<crate::table::leg::Leg>>();
    assert!(slab <= SLAB_MAX, "{slab} B of shard slab per session");
    // Hash maps grow by doubling: measured just past a doubling (worst) and just before it.
    for calls in [1_000, 1_800] {
        let control = heap_per_call(calls);
        eprintln!("{calls} calls: control {control:.0} B + shard slab {slab} B per session");
        assert!(
            control <= CONTROL_MAX,
            "{control:.0} B of control heap per session"
        );
        assert!(
            control + slab as f64 <= SESSION_MAX,
            "{:.0} B per session",
            control + slab as f64
        );
    }
}
