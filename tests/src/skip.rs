//! Skipping an end-to-end test that misses a peer (SIPp, Kamailio, rtpengine, a softphone, root
//! for network namespaces, io_uring), and why CI never does.
//!
//! A skipped test returns early and counts as passed, and libtest hides what it printed; a CI
//! run on a machine where a package failed to install would then be green without exercising
//! anything. So:
//! - with `E2E_REQUIRE=1` (set by `.ci/run`) a missing peer is a test **failure** with the
//!   reason;
//! - without it (a developer's machine) the test is skipped, and every skip of the `cargo test`
//!   run is listed at the end of each test binary's output (collected in a file shared by the
//!   binaries that one `cargo test` runs, keyed by cargo's PID), so the last list printed is the
//!   whole run's.
//!
//! This file is also compiled into `edge/tests` and `rtprelay/tests` (`#[path]`), which cannot
//! depend on this crate.

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;

/// Whether skipping is forbidden (`E2E_REQUIRE` set to anything but empty or `0`).
pub fn required() -> bool {
    std::env::var("E2E_REQUIRE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `test` cannot run: `reason` says what is missing and how to get it. Panics under
/// `E2E_REQUIRE=1`; otherwise prints `SKIP test: reason` and records it for the summary.
pub fn skip(test: &str, reason: impl Display) {
    if required() {
        panic!("{test}: E2E_REQUIRE=1 and {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
    let line = format!("{test}: {reason}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(summary_file())
    {
        let _ = f.write_all(line.as_bytes());
    }
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe {
            libc::atexit(print_summary);
        }
    });
}

/// One file per `cargo test` run: every test binary it starts has cargo as its parent.
fn summary_file() -> PathBuf {
    std::env::temp_dir().join(format!(
        "e2e-skipped-{}.txt",
        std::os::unix::process::parent_id()
    ))
}

extern "C" fn print_summary() {
    let Ok(text) = std::fs::read_to_string(summary_file()) else {
        return;
    };
    let n = text.lines().count();
    // Written after libtest's own result line, outside any captured test output.
    eprintln!(
        "\n==== {n} end-to-end test(s) SKIPPED so far in this cargo test run (set E2E_REQUIRE=1 to make this an error) ====\n{text}"
    );
}
