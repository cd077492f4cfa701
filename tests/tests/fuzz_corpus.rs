//! Replays every committed fuzz corpus and regression input (`tests/fuzz/corpus/<target>/`,
//! `tests/fuzz/regressions/<target>/`) through the same entry points the cargo-fuzz targets
//! call, on the stable toolchain: a regression fails this test without nightly. A target whose
//! corpus directory is missing or empty fails too, so a deleted corpus cannot pass silently.
//!
//! `cargo test -p e2e --test fuzz_corpus -- --ignored write_seeds` (re)writes the seed inputs
//! into the corpus directories (see `tests/fuzz/README.md`).

use std::path::{Path, PathBuf};

type Entry = fn(&[u8]);

const TARGETS: &[(&str, Entry)] = &[
    ("sip_message", edge::fuzzing::sip_message),
    ("sdp", edge::fuzzing::sdp),
    ("stream_framing", edge::fuzzing::stream_framing),
    ("stun_sip", edge::fuzzing::stun_sip_port),
    ("location_log", edge::fuzzing::location_log),
    ("control_command", rtprelay::fuzzing::control_command),
    ("stun_media", rtprelay::fuzzing::stun_media),
    ("rtp_classify", rtprelay::fuzzing::rtp_classify),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `entry` on every file of `dir`; the names of the files that panicked.
fn replay(entry: Entry, dir: &Path) -> (usize, Vec<String>) {
    let mut failed = Vec::new();
    let list = files(dir);
    for f in &list {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    (list.len(), failed)
}

#[test]
fn every_corpus_and_regression_input_replays() {
    let mut failed = Vec::new();
    for (name, entry) in TARGETS {
        let corpus = fuzz_dir().join("corpus").join(name);
        let (n, f) = replay(*entry, &corpus);
        assert!(
            n > 0,
            "corpus of {name} missing or empty: {}",
            corpus.display()
        );
        failed.extend(f);
        let (_, f) = replay(*entry, &fuzz_dir().join("regressions").join(name));
        failed.extend(f);
    }
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
}

#[test]
fn every_target_has_a_fuzz_target_file() {
    for (name, _) in TARGETS {
        let p = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(p.is_file(), "{} missing", p.display());
    }
}

/// Writes the seed inputs of every target into its corpus directory.
#[test]
#[ignore = "writes the seed corpus; run by hand (tests/fuzz/README.md)"]
fn write_seeds() {
    let mut all = edge::fuzzing::seeds();
    all.extend(rtprelay::fuzzing::seeds());
    for (target, name, bytes) in all {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
    }
}
