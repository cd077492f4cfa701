//! Kamailio 5.6 as the core registrar (`tests/kamailio/registrar.cfg`, which logs one
//! `REGCOUNT <AoR>` line per REGISTER it receives), started in the foreground on its own port.

use crate::ports::{free_port, ACCESS_IP, CORE_IP};
use crate::process::ChildGuard;
use crate::sip_probe;
use crate::tools::{edge_tools_or_skip, EdgeTools};
use crate::workdir::{tail, WorkDir};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const KAMAILIO: &str = "/usr/sbin/kamailio";

/// `tests/kamailio/`: configs and scenarios of the Kamailio tests.
pub fn kamailio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kamailio")
}

/// The edge test tools, or `None` after saying why the test is skipped.
pub fn tools_or_skip(test: &str) -> Option<EdgeTools> {
    if !Path::new(KAMAILIO).is_file() {
        crate::skip::skip(
            test,
            format!("{KAMAILIO} not found (install the kamailio package)"),
        );
        return None;
    }
    edge_tools_or_skip(test)
}

/// A running Kamailio; stopped by PID on drop.
pub struct Kamailio {
    _guard: ChildGuard,
    pub sip: SocketAddr,
    pub log: PathBuf,
}

impl Kamailio {
    /// Writes `tests/kamailio/registrar.cfg` for a fresh port and starts Kamailio in the
    /// foreground; waits (bounded) until it answers OPTIONS.
    pub fn start(dir: &WorkDir) -> Kamailio {
        Kamailio::start_cfg(dir, "registrar.cfg", &[])
    }

    /// Like [`Kamailio::start`] with another template of `tests/kamailio/`: `@SIP_PORT@` is
    /// replaced by a fresh port, then each `(placeholder, value)` of `subst` in turn.
    pub fn start_cfg(dir: &WorkDir, template: &str, subst: &[(&str, &str)]) -> Kamailio {
        let sip = SocketAddr::from((CORE_IP, free_port()));
        Kamailio::start_cfg_at(dir, template, sip, subst)
    }

    /// Like [`Kamailio::start_cfg`] on a given loopback address: the template's
    /// `listen=udp:127.0.0.3:@SIP_PORT@` becomes `listen=udp:<sip>`.
    pub fn start_cfg_at(
        dir: &WorkDir,
        template: &str,
        sip: SocketAddr,
        subst: &[(&str, &str)],
    ) -> Kamailio {
        let text = std::fs::read_to_string(kamailio_dir().join(template))
            .unwrap_or_else(|e| panic!("tests/kamailio/{template}: {e}"));
        let mut cfg = text
            .replace(
                "listen=udp:127.0.0.3:@SIP_PORT@",
                &format!("listen=udp:{sip}"),
            )
            .replace("@SIP_PORT@", &sip.port().to_string());
        for (from, to) in subst {
            cfg = cfg.replace(from, to);
        }
        let cfg_path = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).expect("write kamailio.cfg");
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&run_dir).expect("kamailio run dir");
        let log = dir.path().join("kamailio.log");
        let out = std::fs::File::create(&log).expect("kamailio log");
        let err = out.try_clone().expect("dup kamailio log");
        let child = Command::new(KAMAILIO)
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .arg("-Y")
            .arg(&run_dir)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn kamailio");
        let mut guard = ChildGuard::new("kamailio", child);
        if let Err(e) = sip_probe::wait_for_200(ACCESS_IP, sip, Duration::from_secs(15)) {
            let state = guard.try_wait();
            panic!(
                "kamailio not ready ({e}), exit {state:?}\nlog:\n{}",
                tail(&log, 4000)
            );
        }
        Kamailio {
            _guard: guard,
            sip,
            log,
        }
    }

    /// REGISTERs Kamailio received, per AoR (its `REGCOUNT <To URI>` log lines).
    pub fn registers(&self) -> HashMap<String, usize> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut counts = HashMap::new();
        for line in text.lines() {
            if let Some(aor) = line.split("REGCOUNT ").nth(1) {
                *counts.entry(aor.trim().to_string()).or_insert(0) += 1;
            }
        }
        counts
    }
}
