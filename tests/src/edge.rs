//! Starting the `edge` binary on fresh ports of [`EDGE_IP`] and waiting until it answers an
//! OPTIONS sent from the access side.
//!
//! CLI used (the edge's contract): `--listen-udp ADDR`, `--listen-tcp ADDR`, `--core
//! [udp:|tcp:]IP:PORT`, `--admin ADDR`, `--health-interval 0` (unless given), `--source-rate 0`
//! (unless given, or a `--config` file is), plus any extra
//! flags a test passes (`--recurse-3xx false`, `--forking sequential`, ...).

use crate::http;
use crate::metrics::{self, Sample};
use crate::ports::{free_port, ACCESS_IP, EDGE_IP};
use crate::process::ChildGuard;
use crate::sip_probe::OptionsProbe;
use crate::workdir::{tail, WorkDir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What to start the edge with.
#[derive(Debug, Clone, Default)]
pub struct EdgeArgs {
    /// Also listen on TCP (same port as UDP).
    pub tcp: bool,
    /// `--core` values, e.g. `udp:127.0.0.1:5070` or `tcp:127.0.0.1:5070`.
    pub cores: Vec<String>,
    /// Extra flags, passed as they are.
    pub extra: Vec<String>,
}

impl EdgeArgs {
    pub fn udp_core(core: SocketAddr) -> EdgeArgs {
        EdgeArgs {
            cores: vec![format!("udp:{core}")],
            ..EdgeArgs::default()
        }
    }

    pub fn extra(mut self, flags: &[&str]) -> EdgeArgs {
        self.extra.extend(flags.iter().map(|s| s.to_string()));
        self
    }
}

/// A running edge.
pub struct Edge {
    guard: ChildGuard,
    sip: SocketAddr,
    admin: SocketAddr,
    log: PathBuf,
    command_line: String,
}

impl Edge {
    /// Starts the edge and waits (bounded) until an OPTIONS to it is answered 200 and its admin
    /// `/health` answers 200. On failure the error carries the edge's exit status and log tail.
    pub fn start(bin: &Path, dir: &WorkDir, args: &EdgeArgs) -> Result<Edge, String> {
        let sip = SocketAddr::from((EDGE_IP, free_port()));
        let admin = SocketAddr::from((EDGE_IP, free_port()));
        let log = dir.path().join("edge.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("create edge log: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("dup edge log: {e}"))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--listen-udp", &sip.to_string()]);
        if args.tcp {
            cmd.args(["--listen-tcp", &sip.to_string()]);
        }
        for core in &args.cores {
            cmd.args(["--core", core]);
        }
        cmd.args(["--admin", &admin.to_string()]);
        // Pure SIP tests run without an RTP relay: media anchoring off unless a test asks.
        if !args.extra.iter().any(|a| a == "--media-mode") {
            cmd.args(["--media-mode", "never"]);
        }
        // SIPp cores treat an unexpected OPTIONS as a scenario error: health probes are off
        // unless a test asks.
        if !args.extra.iter().any(|a| a == "--health-interval") {
            cmd.args(["--health-interval", "0"]);
        }
        // Load tests send hundreds of calls/s from one access-side IP: the per-source rate
        // limit is off unless a test asks (a flag, or a config file of its own).
        if !args
            .extra
            .iter()
            .any(|a| a == "--source-rate" || a == "--config")
        {
            cmd.args(["--source-rate", "0"]);
        }
        cmd.args(&args.extra);
        // `E2E_EDGE_LOG=debug` (any tracing filter) to see the edge's decisions in its log.
        if let Ok(level) = std::env::var("E2E_EDGE_LOG") {
            cmd.args(["--log-level", &level]);
        }
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let command_line = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut edge = Edge {
            guard: ChildGuard::new("edge", child),
            sip,
            admin,
            log,
            command_line,
        };
        match edge.wait_ready(Duration::from_secs(15)) {
            Ok(()) => Ok(edge),
            Err(e) => Err(format!("{e}\n{}", edge.report())),
        }
    }

    /// Until an OPTIONS is answered 200 and `/health` answers 200; fails at once if the edge
    /// exits.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let probe =
            OptionsProbe::new(ACCESS_IP, self.sip).map_err(|e| format!("bind probe: {e}"))?;
        let mut last = String::from("never tried");
        let mut sip_ok = false;
        while Instant::now() < deadline {
            if let Some(status) = self.guard.try_wait() {
                return Err(format!(
                    "edge exited during startup ({status}); last probe: {last}"
                ));
            }
            if !sip_ok {
                match probe.transaction(Duration::from_millis(100), Duration::from_millis(300)) {
                    Ok(a) if a.status == 200 => sip_ok = true,
                    Ok(a) => last = format!("OPTIONS to {} answered {}", self.sip, a.status),
                    Err(e) => last = e,
                }
                continue;
            }
            match http::get(self.admin, "/health", Duration::from_secs(1)) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("GET /health on {} answered {}", self.admin, r.status),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("edge not ready within {timeout:?}: {last}"))
    }

    /// SIP address (UDP, and TCP when enabled).
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.pid()
    }

    /// True while the edge process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.guard.is_running()
    }

    /// `GET /metrics`, as text.
    pub fn metrics_text(&self) -> Result<String, String> {
        let r = http::get(self.admin, "/metrics", Duration::from_secs(5))?;
        if r.status != 200 {
            return Err(format!("GET /metrics answered {}", r.status));
        }
        Ok(r.body)
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self) -> Result<Vec<Sample>, String> {
        self.metrics_text().map(|t| metrics::parse(&t))
    }

    /// Command line, exit status if it died, and the tail of its log.
    /// The edge's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM (a graceful stop: the edge drains) and returns at once.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `sig` (e.g. SIGHUP: reload) and returns at once.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.guard.try_wait().is_some() {
            return;
        }
        if let Some(pid) = self.guard.pid().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) on our own child's PID, not reaped yet (try_wait above), so the
            // PID cannot have been reused.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Waits at most `timeout` for the edge to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.guard.wait_timeout(timeout)
    }

    pub fn report(&mut self) -> String {
        let state = self.guard.state();
        format!(
            "--- edge ({state}) ---\ncommand: {}\nlog {}:\n{}\n",
            self.command_line,
            self.log.display(),
            tail(&self.log, 4000)
        )
    }
}

/// Panics with the SIPp failure report and the edge's state and log unless every run exited 0.
pub fn assert_calls_ok(test: &str, outcomes: &[crate::sipp::SippOutcome], edge: &mut Edge) {
    if let Some(msg) = crate::sipp::failure_report(test, outcomes) {
        panic!("{msg}{}", edge.report());
    }
}

/// Starts the edge or panics with the reason (its log included).
pub fn start_or_panic(bin: &Path, dir: &WorkDir, args: &EdgeArgs) -> Edge {
    Edge::start(bin, dir, args).unwrap_or_else(|e| panic!("edge did not start: {e}"))
}
