//! Network namespaces for tests that need several hosts (phone, NAT, core): commands run with
//! checked exit status, processes started inside a namespace, namespaces deleted on drop.

use crate::process::ChildGuard;
use std::path::Path;
use std::process::{Command, Stdio};

/// The test's namespaces; deleted on drop. Declare it before the processes that run inside, so
/// they are stopped first.
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `args` and panics with its stderr unless it succeeds.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args` and returns its stdout (whatever the exit status).
pub fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `cmd` inside namespace `ns`, output to `log`; stopped by PID when the guard drops.
pub fn spawn_in(ns: &str, name: &str, log: &Path, cmd: &[&str]) -> ChildGuard {
    let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = file.try_clone().unwrap_or_else(|e| panic!("dup log: {e}"));
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    ChildGuard::new(name, child)
}
