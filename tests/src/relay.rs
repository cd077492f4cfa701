//! Starting the `rtprelay` binary on its own loopback ports and talking to it: rtpproxy
//! commands over UDP (cookie framed), `/metrics`, its log.
//!
//! CLI used (the relay's contract): `--control-udp ADDR --admin ADDR --ports MIN-MAX
//! --listen 127.0.0.1` (another IP with [`Relay::start_on`]), plus any extra flags a test passes (`--datapath fallback`, ...).
//! Media port blocks come from 61000..65000, above Linux's default ephemeral range
//! (32768..60999) and the e2e control/SIP ports (15000..30000), so they cannot collide with
//! sockets the tests or other programs open.

use crate::http;
use crate::metrics::{self, Sample};
use crate::ports::free_port;
use crate::process::ChildGuard;
use crate::workdir::{tail, WorkDir};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Media ports per relay started by a test.
pub const MEDIA_BLOCK: u16 = 64;
const MEDIA_FIRST: u32 = 61_000;
const MEDIA_SPAN: u32 = 4_000;

/// A block of `MEDIA_BLOCK` even-aligned UDP ports free on loopback right now.
pub fn free_media_block() -> (u16, u16) {
    free_media_range(MEDIA_BLOCK)
}

/// A block of `size` (a multiple of `MEDIA_BLOCK`) UDP ports free on loopback right now.
pub fn free_media_range(size: u16) -> (u16, u16) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let size = size.max(MEDIA_BLOCK);
    let seed = (std::process::id() % 61) * u32::from(MEDIA_BLOCK);
    for _ in 0..(MEDIA_SPAN / u32::from(MEDIA_BLOCK)) {
        let n = NEXT.fetch_add(u32::from(size / MEDIA_BLOCK).max(1), Ordering::SeqCst);
        let off = (seed + n * u32::from(MEDIA_BLOCK)) % (MEDIA_SPAN - u32::from(size));
        let Ok(min) = u16::try_from(MEDIA_FIRST + off) else {
            continue;
        };
        let max = min + size - 1;
        let all_free = (min..=max).all(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
        if all_free {
            return (min, max);
        }
    }
    panic!(
        "no free media port block in {MEDIA_FIRST}..{}",
        MEDIA_FIRST + MEDIA_SPAN
    );
}

/// A stream as the relay logged it when it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedStream {
    pub reason: String,
    pub a_packets_in: u64,
    pub b_packets_in: u64,
    /// The address leg A (the offerer's side) latched to, `-` if none.
    pub a_latched: String,
    pub b_latched: String,
}

/// A running relay.
pub struct Relay {
    guard: ChildGuard,
    control: SocketAddr,
    admin: SocketAddr,
    ports: (u16, u16),
    log: PathBuf,
    command_line: String,
    sock: UdpSocket,
    cookie: u32,
}

/// Why a relay did not start.
#[derive(Debug)]
pub struct StartFailure {
    pub exit: Option<ExitStatus>,
    /// The relay's output (it logs the reason).
    pub log: String,
    pub message: String,
}

impl Relay {
    /// Starts the relay and waits (bounded) until it answers `V` on its control port and
    /// `/health` on its admin port.
    pub fn start(bin: &Path, dir: &WorkDir, extra: &[&str]) -> Result<Relay, StartFailure> {
        Relay::start_on(bin, dir, Ipv4Addr::LOCALHOST, extra)
    }

    /// Like [`Relay::start`] with the media sockets on `media_ip` (`--listen`), e.g. an address
    /// the phones do not use, so that no loopback coincidence hides a wrong address in SDP.
    pub fn start_on(
        bin: &Path,
        dir: &WorkDir,
        media_ip: Ipv4Addr,
        extra: &[&str],
    ) -> Result<Relay, StartFailure> {
        let control = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        Relay::start_at(bin, dir, media_ip, (control, admin), extra)
    }

    /// SIGKILL this relay (a crash: nothing is cleaned up), then start the same binary again
    /// on the same control, admin and media addresses, as systemd's `Restart=` would.
    pub fn crash_and_restart(
        &mut self,
        bin: &Path,
        dir: &WorkDir,
        extra: &[&str],
    ) -> Result<Relay, StartFailure> {
        if let Some(pid) = self.pid().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) on our own, not yet reaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.guard.wait_timeout(Duration::from_secs(5));
        let ports = format!("{}-{}", self.ports.0, self.ports.1);
        let mut args: Vec<&str> = vec!["--ports", &ports];
        args.extend(extra);
        Relay::start_at(
            bin,
            dir,
            Ipv4Addr::LOCALHOST,
            (self.control, self.admin),
            &args,
        )
    }

    fn start_at(
        bin: &Path,
        dir: &WorkDir,
        media_ip: Ipv4Addr,
        (control, admin): (SocketAddr, SocketAddr),
        extra: &[&str],
    ) -> Result<Relay, StartFailure> {
        // A test that needs more than MEDIA_BLOCK ports passes its own `--ports MIN-MAX`.
        let own_ports = extra
            .iter()
            .position(|a| *a == "--ports")
            .and_then(|i| extra.get(i + 1))
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        let ports = own_ports.unwrap_or_else(free_media_block);
        let log = (0..)
            .map(|n| match n {
                0 => dir.path().join(format!("rtprelay-{}.log", control.port())),
                n => dir
                    .path()
                    .join(format!("rtprelay-{}.{n}.log", control.port())),
            })
            .find(|p| !p.exists())
            .expect("a free log name");
        let fail = |message: String| StartFailure {
            exit: None,
            log: String::new(),
            message,
        };
        let out = std::fs::File::create(&log).map_err(|e| fail(format!("create log: {e}")))?;
        let err = out.try_clone().map_err(|e| fail(format!("dup log: {e}")))?;
        let mut cmd = Command::new(bin);
        if own_ports.is_none() {
            cmd.args(["--ports", &format!("{}-{}", ports.0, ports.1)]);
        }
        cmd.args(["--control-udp", &control.to_string()])
            .args(["--admin", &admin.to_string()])
            .args(["--listen", &media_ip.to_string()])
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let command_line = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .map_err(|e| fail(format!("spawn {}: {e}", bin.display())))?;
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| fail(format!("control client socket: {e}")))?;
        let mut relay = Relay {
            guard: ChildGuard::new("rtprelay", child),
            control,
            admin,
            ports,
            log,
            command_line,
            sock,
            cookie: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = relay.guard.try_wait() {
                return Err(StartFailure {
                    exit: Some(status),
                    log: relay.log_text(),
                    message: format!("rtprelay exited at startup: {status}"),
                });
            }
            if let Ok(r) = relay.command_timeout("V", Duration::from_millis(200)) {
                if r == "20040107" {
                    break;
                }
            }
            if Instant::now() >= deadline {
                let message = format!("rtprelay did not answer V within 15 s\n{}", relay.report());
                return Err(fail(message));
            }
        }
        if let Err(e) = http::wait_ok(admin, "/health", Duration::from_secs(10)) {
            return Err(fail(format!("{e}\n{}", relay.report())));
        }
        Ok(relay)
    }

    pub fn control_addr(&self) -> SocketAddr {
        self.control
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The media port range it was given.
    pub fn ports(&self) -> (u16, u16) {
        self.ports
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.pid()
    }

    /// Send `cmd` with a fresh cookie; the reply without cookie and newline.
    pub fn command(&mut self, cmd: &str) -> Result<String, String> {
        self.command_timeout(cmd, Duration::from_secs(3))
    }

    fn command_timeout(&mut self, cmd: &str, timeout: Duration) -> Result<String, String> {
        self.cookie += 1;
        let cookie = format!("t{}", self.cookie);
        self.command_with_cookie(&cookie, cmd, timeout)
    }

    /// Send `cmd` with the given cookie (to test retransmissions); the reply without cookie.
    pub fn command_with_cookie(
        &self,
        cookie: &str,
        cmd: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let msg = format!("{cookie} {cmd}");
        self.sock
            .send_to(msg.as_bytes(), self.control)
            .map_err(|e| format!("send {msg:?}: {e}"))?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no reply to {msg:?} within {timeout:?}"));
            }
            let _ = self.sock.set_read_timeout(Some(left));
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned();
            // Replies to earlier (timed out) commands carry other cookies: skip them.
            if let Some(body) = text.strip_prefix(&format!("{cookie} ")) {
                return Ok(body.trim_end_matches('\n').to_string());
            }
        }
    }

    /// `GET /metrics`, parsed.
    pub fn metrics(&self) -> Result<Vec<Sample>, String> {
        let r = http::get(self.admin, "/metrics", Duration::from_secs(5))?;
        if r.status != 200 {
            return Err(format!("GET /metrics answered {}", r.status));
        }
        Ok(metrics::parse(&r.body))
    }

    /// Sum of a metric over all label sets including `want` (0 when absent).
    pub fn metric_sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.metrics()
            .ok()
            .and_then(|m| metrics::sum(&m, name, want))
            .unwrap_or(0.0)
    }

    /// Polls until `metric_sum(name, want) == value` or `timeout` (the shards publish their
    /// counters once per loop iteration); returns the last value seen.
    pub fn wait_metric(
        &self,
        name: &str,
        want: &[(&str, &str)],
        value: f64,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.metric_sum(name, want);
            if v == value || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then up to `grace` to exit (SIGKILL after that); its exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.guard.stop(grace)
    }

    /// Waits at most `timeout` for the relay to exit by itself (no signal sent).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.guard.wait_timeout(timeout)
    }

    /// Per call (Call-ID) of every stream the relay ended so far: its end reason and the
    /// packets it received from each party, from the `stream ended` log lines.
    pub fn ended_streams(&self) -> std::collections::HashMap<String, (String, u64, u64)> {
        self.ended()
            .into_iter()
            .map(|(call, e)| (call, (e.reason, e.a_packets_in, e.b_packets_in)))
            .collect()
    }

    /// Per call (Call-ID), the `stream ended` log line of its last stream, parsed.
    pub fn ended(&self) -> std::collections::HashMap<String, EndedStream> {
        let mut out = std::collections::HashMap::new();
        for line in self
            .log_text()
            .lines()
            .filter(|l| l.contains("stream ended"))
        {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{name}=")))
                    .map(|v| v.trim_matches('"').to_string())
                    .unwrap_or_default()
            };
            let count = |n: &str| field(n).parse().unwrap_or(0u64);
            out.insert(
                field("call_id"),
                EndedStream {
                    reason: field("reason"),
                    a_packets_in: count("a_packets_in"),
                    b_packets_in: count("b_packets_in"),
                    a_latched: field("a_latched"),
                    b_latched: field("b_latched"),
                },
            );
        }
        out
    }

    /// The relay's output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Command line, exit status if it died, and the tail of its log.
    pub fn report(&mut self) -> String {
        let state = self.guard.state();
        format!(
            "--- rtprelay ({state}) ---\ncommand: {}\nlog {}:\n{}\n",
            self.command_line,
            self.log.display(),
            tail(&self.log, 4000)
        )
    }
}

/// The rtprelay binary, or `None` after printing why the test is skipped.
pub fn relay_or_skip(test: &str) -> Option<PathBuf> {
    let found = crate::tools::workspace_bin("rtprelay");
    if found.is_none() {
        crate::skip::skip(test, "rtprelay binary not found next to the test executable (run `cargo build -p rtprelay` first)");
    }
    found
}

/// rtprelay inside network namespace `ns`: media on `media_ip` (ports 30000–30999), control on
/// the namespace's own 127.0.0.1:22222 and admin on 127.0.0.1:9561 (nothing else listens
/// there). Stopped by PID when the guard drops.
pub fn spawn_in_netns(
    ns: &str,
    bin: &Path,
    media_ip: &str,
    log: &Path,
) -> crate::process::ChildGuard {
    let bin = bin.display().to_string();
    crate::netns::spawn_in(
        ns,
        "rtprelay",
        log,
        &[
            &bin,
            "--control-udp",
            "127.0.0.1:22222",
            "--listen",
            media_ip,
            "--admin",
            "127.0.0.1:9561",
            "--ports",
            "30000-30999",
        ],
    )
}
