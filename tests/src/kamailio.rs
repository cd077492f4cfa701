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

/// A running Kamailio; stopped by PID on drop (and, when started in its own process group,
/// its whole group SIGKILLed first: a SIGSTOPped Kamailio's children would not die with it).
pub struct Kamailio {
    guard: ChildGuard,
    pub sip: SocketAddr,
    pub log: PathBuf,
    /// Started with [`Kamailio::start_cfg_at_in_group`]: the group's ID is the main PID.
    own_group: bool,
    /// The group got SIGKILL already: never signal that group ID again.
    group_killed: bool,
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
        Kamailio::spawn(dir, template, sip, subst, false)
    }

    /// Like [`Kamailio::start_cfg_at`], in a process group of its own (main process and the
    /// children it forks), so a fault test can stop or kill all of it with
    /// [`Kamailio::signal_group`]. The group is SIGKILLed on drop, even while stopped.
    pub fn start_cfg_at_in_group(
        dir: &WorkDir,
        template: &str,
        sip: SocketAddr,
        subst: &[(&str, &str)],
    ) -> Kamailio {
        Kamailio::spawn(dir, template, sip, subst, true)
    }

    fn spawn(
        dir: &WorkDir,
        template: &str,
        sip: SocketAddr,
        subst: &[(&str, &str)],
        own_group: bool,
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
        let mut cmd = Command::new(KAMAILIO);
        if own_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        let child = cmd
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
            guard,
            sip,
            log,
            own_group,
            group_killed: false,
        }
    }

    /// The main process's PID (also the process group's ID with
    /// [`Kamailio::start_cfg_at_in_group`]).
    pub fn pid(&self) -> Option<u32> {
        self.guard.pid()
    }

    /// Sends `sig` to Kamailio's whole process group (main process and children). Only for a
    /// Kamailio started with [`Kamailio::start_cfg_at_in_group`]; does nothing once the main
    /// process has been reaped or the group was SIGKILLed.
    pub fn signal_group(&mut self, sig: libc::c_int) {
        assert!(
            self.own_group,
            "signal_group needs Kamailio::start_cfg_at_in_group"
        );
        if self.group_killed || self.guard.try_wait().is_some() {
            return;
        }
        if let Some(pgid) = self.guard.pid().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: killpg(2) on the group whose leader is our own child, not reaped yet
            // (try_wait above), so the group ID cannot have been reused.
            unsafe {
                libc::killpg(pgid, sig);
            }
        }
        if sig == libc::SIGKILL {
            self.group_killed = true;
        }
    }

    /// Lines of Kamailio's log so far containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
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

impl Drop for Kamailio {
    fn drop(&mut self) {
        // Before the guard (a field, dropped after this) reaps the main process: SIGKILL
        // reaches stopped processes too, and the children go with the group.
        if self.own_group {
            self.signal_group(libc::SIGKILL);
        }
    }
}
