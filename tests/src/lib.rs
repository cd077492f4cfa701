//! Shared helpers for end-to-end tests: start the real binaries and SIPp on loopback, pick ports,
//! wait for readiness, read metrics.
//!
//! What it is: a small blocking toolkit (std threads and sockets only, every wait bounded) used by
//! `tests/tests/*.rs`. What it is not: a SIP stack; [`sip_probe`] knows just enough SIP to send an
//! OPTIONS and recognise the answer.
//!
//! Central types: [`edge::Edge`] (a running `edge` child with its SIP and admin addresses),
//! [`sipp::Sipp`] (one SIPp run: builder, then [`sipp::SippRun::wait`] giving a
//! [`sipp::SippOutcome`] whose failure report carries SIPp's error log and final screen),
//! [`process::ChildGuard`] (kills its child by PID on drop), [`workdir::WorkDir`] (a per-test
//! scratch directory kept on failure).

pub mod attacker;
pub mod edge;
pub mod http;
pub mod kamailio;
pub mod metrics;
pub mod netns;
pub mod phones;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod relay;
pub mod rtpengine;
pub mod sip_probe;
pub mod sipp;
pub mod skip;
pub mod tools;
pub mod workdir;

use std::sync::{Mutex, MutexGuard};

/// Serialises the load tests of one test binary: two 200 calls/s runs at once on a 2-core machine
/// would measure the machine, not the edge.
pub fn heavy_lock() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    // A panicking holder poisons the lock; the next test should still run.
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
