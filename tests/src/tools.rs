//! Locating the programs the tests run: SIPp on the PATH, the workspace's own binaries in the
//! cargo target directory of the running test.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// SIPp, from `$E2E_SIPP`, `/usr/bin/sipp` or the PATH.
pub fn sipp() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("E2E_SIPP") {
        return Some(PathBuf::from(p));
    }
    let fixed = PathBuf::from("/usr/bin/sipp");
    if fixed.is_file() {
        return Some(fixed);
    }
    find_on_path("sipp")
}

/// A binary of this workspace (`edge`, `rtprelay`), from `$E2E_<NAME>_BIN` or next to the test
/// executable: `target/<profile>/deps/<test>-<hash>` → `target/<profile>/<name>`.
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    let var = format!("E2E_{}_BIN", name.to_ascii_uppercase());
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let candidate = profile_dir.join(name);
    if !candidate.is_file() {
        return None;
    }
    assert_fresh(&candidate);
    Some(candidate)
}

/// The end-to-end tests must run the binaries of the tree under test, never an old build left in
/// `target/`: a binary older than any source file cargo built it from (its dep-info file,
/// `target/<profile>/<name>.d`, lists them) fails the test, with the command that fixes it.
fn assert_fresh(bin: &Path) {
    let Some(built) = modified(bin) else {
        return;
    };
    let Ok(dep_info) = std::fs::read_to_string(bin.with_extension("d")) else {
        return;
    };
    // `target: src1 src2 ...`; spaces inside paths are escaped as `\ `.
    let deps = dep_info.split_once(": ").map_or("", |(_, d)| d);
    let newer = deps
        .replace("\\ ", "\u{0}")
        .split_whitespace()
        .map(|p| PathBuf::from(p.replace('\u{0}', " ")))
        .find(|p| modified(p).is_some_and(|t| t > built));
    if let Some(p) = newer {
        panic!(
            "{} is older than {}: run `cargo build --workspace --bins` (the end-to-end tests \
             never run a stale binary)",
            bin.display(),
            p.display()
        );
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Where the SIPp scenarios live: `<workspace>/bench/sipp/<file>`.
pub fn scenario(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("bench")
        .join("sipp")
        .join(file)
}

/// `uac_rtp.xml` (a call playing 5 s of G.711 audio) copied into `dir` with the absolute path
/// of its pcap, as SIPp resolves the scenario's relative path from its working directory.
pub fn rtp_call_scenario(dir: &std::path::Path) -> PathBuf {
    let pcap = scenario("pcap/g711a-5s.pcap");
    let text = std::fs::read_to_string(scenario("uac_rtp.xml")).expect("uac_rtp.xml");
    let uac_xml = dir.join("uac_rtp.xml");
    std::fs::write(
        &uac_xml,
        text.replace("pcap/g711a-5s.pcap", &pcap.display().to_string()),
    )
    .expect("write uac_rtp.xml");
    uac_xml
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The tools an edge test needs, or `None` after printing why the test is skipped.
pub struct EdgeTools {
    pub sipp: PathBuf,
    pub edge: PathBuf,
}

pub fn edge_tools_or_skip(test: &str) -> Option<EdgeTools> {
    let Some(sipp) = sipp() else {
        crate::skip::skip(test, "sipp not found (install the sip-tester package)");
        return None;
    };
    let Some(edge) = workspace_bin("edge") else {
        crate::skip::skip(test, "edge binary not found next to the test executable (run `cargo build --workspace --bins` first)");
        return None;
    };
    Some(EdgeTools { sipp, edge })
}

/// The edge binary alone (for tests that need no SIPp), or `None` after printing why.
pub fn edge_or_skip(test: &str) -> Option<PathBuf> {
    let found = workspace_bin("edge");
    if found.is_none() {
        crate::skip::skip(test, "edge binary not found next to the test executable (run `cargo build --workspace --bins` first)");
    }
    found
}

pub fn sipp_or_skip(test: &str) -> Option<PathBuf> {
    let found = sipp();
    if found.is_none() {
        crate::skip::skip(test, "sipp not found (install the sip-tester package)");
    }
    found
}
