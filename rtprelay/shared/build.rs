//! Embeds the git commit in both binaries (`rtprelay_build_info{commit}`,
//! `edge_build_info{commit}`, via `sbc_shared::GIT_COMMIT`): `git rev-parse --short HEAD` at
//! build time, `unknown` outside a git checkout (a source tarball) or without git.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SBC_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves (a commit or a checkout); in a worktree `.git` is a file naming
    // the real git dir, so ask git where HEAD lives rather than guessing.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(p) = Command::new("git")
            .args(["rev-parse", "--git-path", path])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
        {
            println!("cargo:rerun-if-changed={}", p.trim());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
