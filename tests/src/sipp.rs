//! Running SIPp: a builder for one instance, spawning it in the test's work dir with error log,
//! statistics and final screen traced to files, and a bounded wait whose outcome explains a
//! failure (exit code meaning, counts, error log, screen).
//!
//! SIPp exit codes (SIPp manual, "Exit codes"): 0 all calls succeeded, 1 at least one call failed,
//! 97 exit on internal command, 99 normal exit without calls processed, 255 (-1) fatal error,
//! 254 (-2) fatal error binding a socket.

use crate::ports::free_port;
use crate::process::ChildGuard;
use crate::workdir::{tail, WorkDir};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub enum Scenario {
    /// One of SIPp's embedded scenarios (`-sn uac`, `-sn uas`).
    Builtin(&'static str),
    /// A scenario file (`-sf`), usually from `bench/sipp/`.
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `-t u1`: one UDP socket.
    Udp,
    /// `-t t1`: one TCP connection.
    Tcp,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// Builder for one SIPp instance.
pub struct Sipp {
    bin: PathBuf,
    label: String,
    scenario: Scenario,
    transport: Transport,
    ip: Ipv4Addr,
    local_port: Option<u16>,
    remote: Option<SocketAddr>,
    send_to: Option<SocketAddr>,
    calls: u32,
    rate: Option<u32>,
    keys: Vec<(String, String)>,
    timeout: Duration,
    trace_msg: bool,
    extra: Vec<String>,
}

impl Sipp {
    /// `label` names the log files and appears in failure reports ("uac", "core", "fork1"...).
    pub fn new(bin: &Path, label: &str, scenario: Scenario) -> Sipp {
        Sipp {
            bin: bin.to_path_buf(),
            label: label.to_string(),
            scenario,
            transport: Transport::Udp,
            ip: Ipv4Addr::LOCALHOST,
            local_port: None,
            remote: None,
            send_to: None,
            calls: 1,
            rate: None,
            keys: Vec::new(),
            timeout: Duration::from_secs(30),
            trace_msg: false,
            extra: Vec::new(),
        }
    }

    pub fn transport(mut self, t: Transport) -> Sipp {
        self.transport = t;
        self
    }

    /// Local IP (`-i`, also the media IP `-mi`); 127.0.0.1 if not set. Edge tests put access-side
    /// peers on [`crate::ports::ACCESS_IP`] and core-side ones on [`crate::ports::CORE_IP`].
    pub fn ip(mut self, ip: Ipv4Addr) -> Sipp {
        self.ip = ip;
        self
    }

    /// Local SIP port (`-p`); a fresh free port if not set.
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.local_port = Some(port);
        self
    }

    /// Where requests go (the edge, or another SIPp when validating scenarios directly).
    pub fn remote(mut self, addr: SocketAddr) -> Sipp {
        self.remote = Some(addr);
        self
    }

    /// Send every message to `addr` (`-rsa`) while `[remote_ip]:[remote_port]` (the
    /// Request-URI of the scenarios) stay the `remote`: a call to a target through a proxy.
    pub fn send_to(mut self, addr: SocketAddr) -> Sipp {
        self.send_to = Some(addr);
        self
    }

    /// Stop after this many calls (`-m`).
    pub fn calls(mut self, n: u32) -> Sipp {
        self.calls = n;
        self
    }

    /// New calls per second (`-r`).
    pub fn rate(mut self, cps: u32) -> Sipp {
        self.rate = Some(cps);
        self
    }

    /// A `[name]` keyword for the scenario (`-key name value`).
    pub fn key(mut self, name: &str, value: &str) -> Sipp {
        self.keys.push((name.to_string(), value.to_string()));
        self
    }

    /// SIPp's global timeout (`-timeout`, with `-timeout_error` so hitting it fails the run).
    pub fn timeout(mut self, t: Duration) -> Sipp {
        self.timeout = t;
        self
    }

    /// Log every message sent and received (for few-call runs; shown in the failure report).
    pub fn trace_msg(mut self, on: bool) -> Sipp {
        self.trace_msg = on;
        self
    }

    pub fn arg(mut self, a: &str) -> Sipp {
        self.extra.push(a.to_string());
        self
    }

    /// Starts SIPp and, for a server (no remote), waits until its SIP port is bound.
    pub fn spawn(self, dir: &WorkDir) -> Result<SippRun, String> {
        let port = self.local_port.unwrap_or_else(free_port);
        let control_port = free_port();
        let base = dir.path().join(&self.label);
        let files = SippFiles {
            stdout: with_suffix(&base, "stdout.log"),
            errors: with_suffix(&base, "errors.log"),
            screen: with_suffix(&base, "screen.log"),
            stats: with_suffix(&base, "stats.csv"),
            messages: self.trace_msg.then(|| with_suffix(&base, "messages.log")),
        };
        let mut cmd = Command::new(&self.bin);
        if let Some(remote) = self.remote {
            cmd.arg(remote.to_string());
        }
        match &self.scenario {
            Scenario::Builtin(name) => cmd.args(["-sn", name]),
            Scenario::File(path) => cmd.arg("-sf").arg(path),
        };
        let ip = self.ip.to_string();
        cmd.args(["-nostdin", "-i", &ip, "-mi", &ip])
            .args(["-p", &port.to_string(), "-cp", &control_port.to_string()])
            .args(["-t", self.transport.flag()])
            .args(["-m", &self.calls.to_string()])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs().max(1))])
            .arg("-timeout_error")
            .arg("-trace_err")
            .arg("-error_file")
            .arg(&files.errors)
            .arg("-trace_screen")
            .arg("-screen_file")
            .arg(&files.screen)
            .arg("-trace_stat")
            .arg("-stf")
            .arg(&files.stats);
        if let Some(addr) = self.send_to {
            cmd.args(["-rsa", &addr.to_string()]);
        }
        if let Some(rate) = self.rate {
            cmd.args(["-r", &rate.to_string()]);
        }
        if let Some(messages) = &files.messages {
            cmd.arg("-trace_msg").arg("-message_file").arg(messages);
        }
        for (k, v) in &self.keys {
            cmd.args(["-key", k, v]);
        }
        cmd.args(&self.extra);
        let stdout = std::fs::File::create(&files.stdout)
            .map_err(|e| format!("create {}: {e}", files.stdout.display()))?;
        let stderr = stdout
            .try_clone()
            .map_err(|e| format!("dup log file: {e}"))?;
        cmd.current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let command_line = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let mut run = SippRun {
            guard: ChildGuard::new(&self.label, child),
            label: self.label,
            local: SocketAddr::from((self.ip, port)),
            command_line,
            files,
            wait_limit: self.timeout + Duration::from_secs(15),
        };
        if self.remote.is_none() {
            run.wait_bound(self.transport, Duration::from_secs(10))?;
        }
        Ok(run)
    }
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push("_");
    s.push(suffix);
    PathBuf::from(s)
}

struct SippFiles {
    stdout: PathBuf,
    errors: PathBuf,
    screen: PathBuf,
    stats: PathBuf,
    messages: Option<PathBuf>,
}

/// A running SIPp.
pub struct SippRun {
    guard: ChildGuard,
    label: String,
    local: SocketAddr,
    command_line: String,
    files: SippFiles,
    wait_limit: Duration,
}

impl SippRun {
    /// The address SIPp listens on (`-i`:`-p`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn wait_bound(&mut self, transport: Transport, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let taken = match transport {
                Transport::Udp => UdpSocket::bind(self.local).is_err(),
                Transport::Tcp => TcpListener::bind(self.local).is_err(),
            };
            if taken {
                return Ok(());
            }
            if let Some(status) = self.guard.try_wait() {
                return Err(format!(
                    "sipp {} exited ({status}) before binding {}\n{}",
                    self.label,
                    self.local,
                    self.report()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "sipp {} did not bind {} within {timeout:?}\n{}",
            self.label,
            self.local,
            self.report()
        ))
    }

    /// Waits for SIPp to exit (bounded by its own -timeout plus a margin; killed after that).
    pub fn wait(mut self) -> SippOutcome {
        let status = self.guard.wait_timeout(self.wait_limit);
        let (code, hung) = match status {
            Some(s) => (s.code(), false),
            None => {
                self.guard.stop(Duration::from_millis(500));
                (None, true)
            }
        };
        SippOutcome {
            label: self.label.clone(),
            code,
            hung,
            counts: read_counts(&self.files.stats),
            failure_kinds: read_failure_kinds(&self.files.stats),
            messages: self
                .files
                .messages
                .as_ref()
                .and_then(|m| std::fs::read_to_string(m).ok()),
            report: self.report(),
        }
    }

    /// Everything useful to read when this SIPp failed.
    fn report(&self) -> String {
        let mut r = format!(
            "--- sipp {} ---\ncommand: {}\n",
            self.label, self.command_line
        );
        let errors = &self.files.errors;
        if errors.exists() {
            r += &format!("error log {}:\n{}\n", errors.display(), tail(errors, 4000));
        } else {
            r += "error log: (none written)\n";
        }
        r += &format!("final screen:\n{}\n", tail(&self.files.screen, 3000));
        if let Some(m) = &self.files.messages {
            r += &format!("messages {}:\n{}\n", m.display(), tail(m, 6000));
        }
        r += &format!("stdout/stderr tail:\n{}\n", tail(&self.files.stdout, 1500));
        r
    }
}

/// Call counts from SIPp's statistics file (cumulative columns of the last line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub successful: u64,
    pub failed: u64,
}

/// The header and the last line of SIPp's statistics CSV, split on `;`.
fn read_stats(stats: &Path) -> Option<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(stats).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let split = |l: &str| {
        l.split(';')
            .map(|f| f.trim().to_string())
            .collect::<Vec<_>>()
    };
    let header = split(lines.next()?);
    let last = split(lines.next_back()?);
    Some((header, last))
}

/// Non-zero cumulative `Failed*(C)` columns other than the total: why calls failed
/// (e.g. `FailedUnexpectedMessage`, `FailedRegexpHdrNotFound`, `FailedTimeoutOnRecv`).
fn read_failure_kinds(stats: &Path) -> Vec<(String, u64)> {
    let Some((header, last)) = read_stats(stats) else {
        return Vec::new();
    };
    header
        .iter()
        .zip(last.iter())
        .filter_map(|(h, v)| {
            let kind = h.strip_suffix("(C)")?;
            let n: u64 = v.parse().ok()?;
            (kind.starts_with("Failed") && kind != "FailedCall" && n > 0)
                .then(|| (kind.to_string(), n))
        })
        .collect()
}

fn read_counts(stats: &Path) -> Option<Counts> {
    let (header, last) = read_stats(stats)?;
    let column = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| h.trim() == name)?;
        last.get(i)?.trim().parse().ok()
    };
    Some(Counts {
        successful: column("SuccessfulCall(C)")?,
        failed: column("FailedCall(C)")?,
    })
}

/// How a SIPp run ended.
#[derive(Debug)]
pub struct SippOutcome {
    pub label: String,
    /// Exit code (None if killed by a signal or by us after hanging).
    pub code: Option<i32>,
    pub hung: bool,
    pub counts: Option<Counts>,
    /// Non-zero failure reasons from the statistics file, e.g. `("FailedTimeoutOnRecv", 3)`.
    pub failure_kinds: Vec<(String, u64)>,
    /// The message trace, when `trace_msg` was on.
    pub messages: Option<String>,
    pub report: String,
}

impl SippOutcome {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub fn summary(&self) -> String {
        let meaning = match self.code {
            Some(0) => "all calls succeeded",
            Some(1) => "at least one call failed",
            Some(97) => "exit on internal command",
            Some(99) => "normal exit without calls processed",
            Some(255) => "fatal error",
            Some(254) => "fatal error binding a socket",
            Some(_) => "unknown exit code",
            None if self.hung => "did not exit in time, killed",
            None => "killed by a signal",
        };
        format!(
            "sipp {}: exit {:?} ({meaning}), counts {:?}, failures {:?}",
            self.label, self.code, self.counts, self.failure_kinds
        )
    }
}

/// `None` if every run exited 0, else every run's summary and the full report of each failed one.
pub fn failure_report(test: &str, outcomes: &[SippOutcome]) -> Option<String> {
    let failed: Vec<&SippOutcome> = outcomes.iter().filter(|o| !o.ok()).collect();
    if failed.is_empty() {
        return None;
    }
    let mut msg = format!(
        "{test}: {} of {} SIPp runs failed\n",
        failed.len(),
        outcomes.len()
    );
    for o in outcomes {
        msg += &format!("  {}\n", o.summary());
    }
    for o in failed {
        msg += &o.report;
    }
    Some(msg)
}

/// Panics with [`failure_report`] unless every run exited 0.
pub fn assert_all_ok(test: &str, outcomes: &[SippOutcome]) {
    if let Some(msg) = failure_report(test, outcomes) {
        panic!("{msg}");
    }
}

/// `n` phones (users `e2e1`..`e2eN`, one binding each) register from the access side through
/// the edge at `edge_sip` to a SIPp registrar on `core`, at `rate` per second; the two SIPp
/// outcomes (phones, registrar).
pub fn register_through(
    sipp: &Path,
    dir: &WorkDir,
    edge_sip: SocketAddr,
    core: SocketAddr,
    n: u32,
    rate: u32,
) -> Vec<SippOutcome> {
    let limit = Duration::from_secs(60);
    let file = |f: &str| Scenario::File(crate::tools::scenario(f));
    let registrar = Sipp::new(sipp, "registrar", file("uas_registrar.xml"))
        .ip(crate::ports::CORE_IP)
        .local_port(core.port())
        .calls(n)
        .timeout(limit)
        .spawn(dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let phones = Sipp::new(sipp, "phones", file("uac_register.xml"))
        .ip(crate::ports::ACCESS_IP)
        .remote(edge_sip)
        .calls(n)
        .rate(rate)
        .timeout(limit)
        .spawn(dir)
        .unwrap_or_else(|e| panic!("{e}"));
    vec![phones.wait(), registrar.wait()]
}

/// One line of SIPp's `-trace_rtt` file: when a response-time measure ended and how long it
/// took (both in ms, on SIPp's own clock, which starts with the run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttSample {
    pub date_ms: f64,
    pub rtt_ms: f64,
}

/// Every sample of the `*_rtt.csv` files SIPp wrote into `dir` (`-trace_rtt`; with
/// `-rtt_freq 1` one line per `rtd="true"` response, e.g. per successful REGISTER), in file
/// order. Lines that are not `date;rtt;rtd` numbers (the header) are skipped.
pub fn read_rtt(dir: &Path) -> Vec<RttSample> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut samples = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with("_rtt.csv") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let mut fields = line.split(';');
            let (Some(date), Some(rtt)) = (fields.next(), fields.next()) else {
                continue;
            };
            if let (Ok(date_ms), Ok(rtt_ms)) = (date.trim().parse(), rtt.trim().parse()) {
                samples.push(RttSample { date_ms, rtt_ms });
            }
        }
    }
    samples
}

/// The longest time (ms) between two consecutive completions of `samples`, with the two
/// completion dates around it; `None` with fewer than two samples.
pub fn longest_gap(samples: &[RttSample]) -> Option<(f64, f64, f64)> {
    let mut dates: Vec<f64> = samples.iter().map(|s| s.date_ms).collect();
    dates.sort_by(f64::total_cmp);
    dates
        .windows(2)
        .map(|w| (w[1] - w[0], w[0], w[1]))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}
