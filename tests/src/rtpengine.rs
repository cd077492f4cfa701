//! Stock rtpengine (Debian's `rtpengine-daemon`) in userspace, driven over its legacy rtpproxy
//! UDP interface (`--listen-udp`), as Kamailio's `rtpproxy` module or our edge drive it.

use crate::ports::free_port;
use crate::process::ChildGuard;
use crate::workdir::{tail, WorkDir};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const RTPENGINE: &str = "/usr/bin/rtpengine";

/// True when rtpengine is installed; else says why `test` is skipped.
pub fn available(test: &str) -> bool {
    let found = Path::new(RTPENGINE).is_file();
    if !found {
        crate::skip::skip(
            test,
            format!("{RTPENGINE} not installed (Debian package rtpengine-daemon)"),
        );
    }
    found
}

/// A running rtpengine; stopped by PID on drop.
pub struct Rtpengine {
    pub guard: ChildGuard,
    /// Its rtpproxy-protocol control address (loopback).
    pub control: SocketAddr,
    /// Its log (per-call "Final packet stats" at log level 6).
    pub log: PathBuf,
}

impl Rtpengine {
    /// Starts rtpengine with its media on `media_ip` (ports 22000–23999) and deletes calls at
    /// once on `D`, so the final stats are logged when a call ends.
    pub fn start(dir: &WorkDir, media_ip: IpAddr) -> Rtpengine {
        let control = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = dir.path().join("rtpengine.log");
        let out = std::fs::File::create(&log).expect("rtpengine log");
        let child = Command::new(RTPENGINE)
            .args(["--config-file=none", "--table=-1"])
            .arg(format!("--interface={media_ip}"))
            .arg(format!("--listen-udp={control}"))
            .arg(format!("--listen-cli=127.0.0.1:{}", free_port()))
            .args([
                "--foreground",
                "--log-stderr",
                "--log-level=6",
                "--delete-delay=0",
            ])
            .args(["--port-min=22000", "--port-max=23999"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup rtpengine log"))
            .stderr(out)
            .spawn()
            .expect("spawn rtpengine");
        let mut guard = ChildGuard::new("rtpengine", child);
        std::thread::sleep(Duration::from_millis(500));
        assert!(guard.is_running(), "rtpengine exited: {}", tail(&log, 3000));
        Rtpengine {
            guard,
            control,
            log,
        }
    }
}
