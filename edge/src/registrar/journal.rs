//! The location log's writer thread: the SIP event loop hands it changes and never waits for
//! the disk (a `write`, an `fsync` or a compaction can each take milliseconds to seconds on a
//! busy disk, and every one of them used to stall every phone's signalling).
//!
//! Group commit: the thread takes every batch queued while it was busy (woken at most once per
//! group, see [`GATHER`]), writes them in order, and fsyncs at most once per [`SYNC_EVERY`]
//! (and on [`Journal::sync`]), so under load many
//! registrations share one fsync and a crash loses at most the last interval's changes — the
//! same bound as before, minus the stalls. Compaction reads the log back and rewrites it on the
//! same thread ([`Store::compact_from_log`]): the event loop never copies the location table.
//!
//! Order: one queue, one consumer, batches written in the order they were queued, so the log
//! replays to the table the event loop had.

use super::mode::Change;
use super::persist::{Clock, Store};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest time a written change waits for its fsync.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);

/// After a wake-up the writer lets changes gather this long before taking them: under load
/// the event loop wakes it at most once per group instead of once per event (a futex wake
/// and a context switch each, measured at ~10 % of the edge's CPU at 2,000 REGISTER/s).
const GATHER: Duration = Duration::from_millis(5);

/// One event's changes, queued by the event loop.
struct Batch {
    changes: Vec<Change>,
    clock: Clock,
    live: usize,
}

enum Wake {
    /// Changes are queued.
    Changes,
    /// Write and fsync everything queued, then answer.
    Sync(Sender<Result<(), String>>),
}

/// What the writer did since the shell last asked ([`Journal::take_outcomes`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// Failed writes, fsyncs or compactions, in order ("what: error").
    pub errors: Vec<String>,
    /// At least one write succeeded after the last error.
    pub recovered: bool,
    pub compactions: u64,
}

/// State shared by the handle and the writer.
#[derive(Default)]
struct Shared {
    /// Changes in the order the event loop queued them.
    queue: Mutex<Vec<Batch>>,
    /// The writer has been woken for the queue and has not taken it yet.
    signalled: AtomicBool,
    /// Changes queued and not yet written.
    queued: AtomicUsize,
    outcomes: Mutex<Outcomes>,
}

/// The handle the event loop holds. Dropping it flushes, fsyncs and joins the thread.
pub struct Journal {
    tx: Option<Sender<Wake>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Journal {
    /// Starts the writer thread on an open store.
    pub fn spawn(store: Store) -> std::io::Result<Journal> {
        let (tx, rx) = channel();
        let shared = Arc::new(Shared::default());
        let w = Writer::new(store, shared.clone());
        let thread = std::thread::Builder::new()
            .name("location-log".into())
            .spawn(move || w.run(rx))?;
        Ok(Journal {
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }

    /// Queues changes (never blocks on the disk; wakes the writer only if it is not already
    /// on its way). `live` is the table's binding count after them, for the compaction
    /// decision.
    pub fn append(&self, changes: Vec<Change>, clock: Clock, live: usize) {
        if changes.is_empty() {
            return;
        }
        self.shared
            .queued
            .fetch_add(changes.len(), Ordering::Relaxed);
        lock(&self.shared.queue).push(Batch {
            changes,
            clock,
            live,
        });
        if !self.shared.signalled.swap(true, Ordering::AcqRel) {
            let sent = self.tx.as_ref().map(|tx| tx.send(Wake::Changes));
            if !matches!(sent, Some(Ok(()))) {
                self.record_error("append: the location-log writer thread is gone".into());
            }
        }
    }

    /// Changes queued but not yet written.
    pub fn backlog(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Writes and fsyncs everything queued so far, waiting for it (shutdown, tests).
    pub fn sync(&self) -> Result<(), String> {
        let (tx, rx) = channel();
        let gone = || "sync: the location-log writer thread is gone".to_string();
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(Wake::Sync(tx))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    /// What happened since the last call (errors to log and count, recovery).
    pub fn take_outcomes(&self) -> Outcomes {
        std::mem::take(&mut *lock(&self.shared.outcomes))
    }

    fn record_error(&self, e: String) {
        lock(&self.shared.outcomes).errors.push(e);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Writer {
    store: Store,
    shared: Arc<Shared>,
    /// Written but not yet fsynced since this instant.
    dirty_since: Option<Instant>,
    live: usize,
}

impl Writer {
    fn new(store: Store, shared: Arc<Shared>) -> Self {
        Writer {
            store,
            shared,
            dirty_since: None,
            live: 0,
        }
    }

    fn run(mut self, rx: Receiver<Wake>) {
        loop {
            // Sleep until woken or the pending fsync is due.
            let wake = match self.dirty_since {
                Some(t) => match rx.recv_timeout(SYNC_EVERY.saturating_sub(t.elapsed())) {
                    Ok(w) => Some(w),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(w) => Some(w),
                    Err(_) => break,
                },
            };
            let mut waiting = Vec::new();
            match wake {
                Some(Wake::Changes) => std::thread::sleep(GATHER),
                Some(Wake::Sync(reply)) => waiting.push(reply),
                None => {}
            }
            // Any other wake-ups queued meanwhile join this group.
            while let Ok(w) = rx.try_recv() {
                if let Wake::Sync(reply) = w {
                    waiting.push(reply);
                }
            }
            self.write_queued();
            let due = self.dirty_since.is_some_and(|t| t.elapsed() >= SYNC_EVERY);
            if due || !waiting.is_empty() {
                let r = self.fsync();
                // Before answering: a `sync` caller sees the outcome of everything it queued.
                self.maybe_compact();
                for w in waiting {
                    let _ = w.send(r.clone());
                }
            }
        }
        self.write_queued();
        let _ = self.fsync();
    }

    /// Takes everything queued (in order) and writes it.
    fn write_queued(&mut self) {
        self.shared.signalled.store(false, Ordering::Release);
        let batches = std::mem::take(&mut *lock(&self.shared.queue));
        for b in batches {
            self.live = b.live;
            let r = self.store.append(&b.changes, b.clock);
            self.shared
                .queued
                .fetch_sub(b.changes.len(), Ordering::Relaxed);
            self.dirty_since.get_or_insert_with(Instant::now);
            self.outcome("append", r.map_err(|e| e.to_string()));
        }
    }

    fn fsync(&mut self) -> Result<(), String> {
        if self.dirty_since.take().is_none() {
            return Ok(());
        }
        let r = self.store.sync().map_err(|e| e.to_string());
        self.outcome("sync", r.clone());
        r
    }

    fn maybe_compact(&mut self) {
        if !self.store.should_compact(self.live) {
            return;
        }
        let r = self.store.compact_from_log(Clock::system());
        let ok = r.is_ok();
        self.outcome("compact", r.map_err(|e| e.to_string()));
        if ok {
            lock(&self.shared.outcomes).compactions += 1;
        }
    }

    fn outcome(&self, what: &str, r: Result<(), String>) {
        let mut o = lock(&self.shared.outcomes);
        match r {
            Ok(()) => o.recovered = true,
            Err(e) => {
                o.recovered = false;
                o.errors.push(format!("{what}: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::location::tests::binding;
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edge-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("location.log")
    }

    fn up(aor: &str, contact: &str, now: Instant, cseq: u32) -> Change {
        let mut b = binding(aor, contact, now, 3600);
        b.cseq = cseq;
        Change::Upsert(Box::new(b))
    }

    fn rm(aor: &str, contact: &str) -> Change {
        Change::Remove {
            aor: aor.into(),
            contact: contact.into(),
        }
    }

    #[test]
    fn batches_are_written_in_order_and_durable_after_sync() {
        let path = tmp("order");
        let clock = Clock::system();
        let j = Journal::spawn(Store::open(&path, 0).unwrap()).unwrap();
        // Many small batches from the "event loop", with the same key changing state: only
        // in-order writing replays to the final state.
        for i in 0..2_000u32 {
            let aor = format!("sip:u{}@d", i % 50);
            let c = format!("sip:u{}@10.0.0.1", i % 50);
            let batch = match i % 3 {
                0 => vec![up(&aor, &c, clock.now, i)],
                1 => vec![rm(&aor, &c)],
                _ => vec![
                    up(&aor, &c, clock.now, i),
                    rm(&aor, &c),
                    up(&aor, &c, clock.now, i),
                ],
            };
            j.append(batch, clock, 50);
        }
        j.sync().unwrap();
        assert_eq!(j.backlog(), 0);
        let loaded = Store::load(&path, Clock::system()).unwrap();
        let mut got: Vec<(String, u32)> = loaded
            .bindings
            .iter()
            .map(|b| (b.aor.clone(), b.cseq))
            .collect();
        got.sort();
        // The last change of key k was made at the largest i ≡ k (mod 50); present unless it
        // was a remove (i % 3 == 1), with the CSeq of that i.
        let mut want: Vec<(String, u32)> = (0..50u32)
            .filter_map(|k| {
                let last = (0..2_000u32).filter(|i| i % 50 == k).max().unwrap();
                (last % 3 != 1).then(|| (format!("sip:u{k}@d"), last))
            })
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(loaded.skipped, 0);
        assert!(j.take_outcomes().errors.is_empty());
    }

    #[test]
    fn sync_returns_only_once_the_records_are_in_the_file() {
        let path = tmp("durable");
        let clock = Clock::system();
        let j = Journal::spawn(Store::open(&path, 0).unwrap()).unwrap();
        j.append(vec![up("sip:a@d", "sip:a@h", clock.now, 1)], clock, 1);
        j.sync().unwrap();
        // Read with another handle while the writer is still alive (a crash now keeps it).
        let loaded = Store::load(&path, Clock::system()).unwrap();
        assert_eq!(loaded.bindings.len(), 1);
        // A record cut by a crash mid-write is skipped on load; the writer resumes after it.
        drop(j);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"U\tsip:b@d\tsip:b@h\tud").unwrap();
        drop(f);
        let loaded = Store::load(&path, Clock::system()).unwrap();
        assert_eq!((loaded.bindings.len(), loaded.skipped), (1, 1));
        let j = Journal::spawn(Store::open(&path, loaded.records).unwrap()).unwrap();
        j.append(vec![up("sip:c@d", "sip:c@h", clock.now, 1)], clock, 2);
        drop(j); // drop flushes and fsyncs
        let loaded = Store::load(&path, Clock::system()).unwrap();
        assert_eq!((loaded.bindings.len(), loaded.skipped), (2, 1));
    }

    #[test]
    fn writes_are_fsynced_within_the_group_window_without_a_sync_call() {
        let path = tmp("window");
        let clock = Clock::system();
        let j = Journal::spawn(Store::open(&path, 0).unwrap()).unwrap();
        j.append(vec![up("sip:a@d", "sip:a@h", clock.now, 1)], clock, 1);
        // The backlog drains without anyone waiting for it.
        let t0 = Instant::now();
        while j.backlog() > 0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(j.backlog(), 0);
        assert_eq!(
            Store::load(&path, Clock::system()).unwrap().bindings.len(),
            1
        );
    }

    #[test]
    fn compaction_runs_on_the_writer_and_keeps_live_bindings() {
        let path = tmp("compact");
        let clock = Clock::system();
        let j = Journal::spawn(Store::open(&path, 0).unwrap()).unwrap();
        // 3,000 refreshes of 10 bindings: far more records than live bindings.
        for i in 0..3_000u32 {
            let k = i % 10;
            j.append(
                vec![up(
                    &format!("sip:u{k}@d"),
                    &format!("sip:u{k}@h"),
                    clock.now,
                    i,
                )],
                clock,
                10,
            );
        }
        j.sync().unwrap();
        j.append(vec![up("sip:new@d", "sip:new@h", clock.now, 1)], clock, 11);
        j.sync().unwrap();
        assert!(j.take_outcomes().compactions >= 1);
        let loaded = Store::load(&path, Clock::system()).unwrap();
        assert_eq!(loaded.bindings.len(), 11);
        assert!(
            loaded.records <= 12,
            "compacted: {} records",
            loaded.records
        );
        let newest = loaded
            .bindings
            .iter()
            .find(|b| b.aor == "sip:u9@d")
            .unwrap();
        assert_eq!(newest.cseq, 2_999);
    }

    #[test]
    fn a_failing_disk_is_reported_not_fatal() {
        // A directory where the log should be: open works on the parent, writes fail.
        let path = tmp("fail");
        let store = Store::open(&path, 0).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let j = Journal::spawn(store).unwrap();
        // The open file handle still works (unlinked file): writes succeed; compaction's
        // rename onto a directory fails and is reported.
        let clock = Clock::system();
        for i in 0..1_500u32 {
            j.append(vec![up("sip:a@d", "sip:a@h", clock.now, i)], clock, 1);
        }
        j.sync().unwrap();
        let o = j.take_outcomes();
        assert!(o.errors.iter().any(|e| e.starts_with("compact:")), "{o:?}");
    }
}
