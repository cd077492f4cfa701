//! `--check-config` on both binaries (issue 10): a valid configuration is printed with every
//! default filled in (and the print is itself a valid file for `--config`), exit 0; an invalid
//! one names the key, exit 2.

use e2e::relay::relay_or_skip;
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::path::Path;
use std::process::Command;

fn check(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .arg("--check-config")
        .args(args)
        .output()
        .expect("run --check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn round_trip(
    test: &str,
    bin: &Path,
    flags: &[&str],
    must_contain: &str,
    bad: &str,
    bad_key: &str,
) {
    let dir = WorkDir::new(test);
    let (code, printed, err) = check(bin, flags);
    assert_eq!(code, 0, "{test}: {err}");
    assert!(
        printed.contains(must_contain),
        "{test}: flags not applied:\n{printed}"
    );
    let file = dir.path().join("effective.toml");
    std::fs::write(&file, &printed).expect("write");
    let file = file.display().to_string();
    let (code, again, err) = check(bin, &["--config", &file]);
    assert_eq!(
        (code, again.as_str()),
        (0, printed.as_str()),
        "{test}: {err}"
    );
    let broken = dir.path().join("bad.toml");
    std::fs::write(&broken, bad).expect("write");
    let (code, out, err) = check(bin, &["--config", &broken.display().to_string()]);
    assert_eq!(code, 2, "{test}: bad file accepted:\n{out}");
    assert!(
        err.contains(bad_key),
        "{test}: error does not name {bad_key}: {err}"
    );
    eprintln!(
        "{test}: PASS {} lines printed, re-read identically; bad file: {}",
        printed.lines().count(),
        err.trim()
    );
}

#[test]
fn edge_check_config() {
    let test = "edge_check_config";
    let Some(bin) = edge_or_skip(test) else {
        return;
    };
    round_trip(
        test,
        &bin,
        &["--core", "udp:192.0.2.1:5060", "--log-level", "warning"],
        "udp:192.0.2.1:5060",
        "[log]\nlevel = \"warnings\"\n",
        "log.level",
    );
}

#[test]
fn rtprelay_check_config() {
    let test = "rtprelay_check_config";
    let Some(bin) = relay_or_skip(test) else {
        return;
    };
    round_trip(
        test,
        &bin,
        &["--ports", "40000-40999"],
        "port_max = 40999",
        "[control]\nmax_streams_per_call = \"x\"\n",
        "max_streams_per_call",
    );
}
