//! A headless `linphonec` (Debian package `linphone-cli`, liblinphone 5.1) driven as a real,
//! unmodified softphone: its own HOME and `linphonerc` in a work-dir subdirectory, SIP bound to
//! one loopback address, audio from and to WAV files.
//!
//! How it is driven (all checked by hand against Kamailio 5.6 on loopback):
//! - Commands go to linphonec's stdin, a pipe the driver keeps open; linphonec's stdout is
//!   collected line by line by a reader thread, and waits look for its event lines:
//!   `Receiving new incoming call from <uri>, assigned id N`, `Call N with <uri> connected.`,
//!   `Media streams established with <uri> for call N (audio).`,
//!   `Call N with <uri> ended (<reason>).`, `Call N with <uri> error.`. Lines may start with the
//!   prompt `linphonec> ` (events are printed while the prompt is shown).
//! - linphonec prints nothing when a registration succeeds: [`Linphone::wait_registered`]
//!   polls `status register` (`registered, identity=... duration=N` once registered).
//! - Audio: `soundcard use files` first, then `play <wav>` (the "microphone") and
//!   `record <wav>` (what it decodes). Both are read when a call's streams start, so they are
//!   set before the call (or before answering); a new `record` before each call gives one file
//!   per call. The recording is 16-bit mono at the codec's rate (8 kHz with the G.711 configured
//!   here, 48 kHz with linphone's default opus), and its header states a data length 44 bytes
//!   longer than the file (the reader in [`super::audio`] copes).
//! - It does not exit when its stdin closes; `quit` (or SIGTERM) ends it cleanly, unregistering.
//! - Codecs: liblinphone re-adds every codec missing from `linphonerc`, enabled and opus first,
//!   so the file lists them all with only PCMU/PCMA enabled.
//! - liblinphone rewrites its config file (the password becomes `ha1`), so each start writes a
//!   fresh `linphonerc`; passing `-c <file>` keeps it out of the real HOME, and HOME (with
//!   `.local/share/linphone` for its database) is private too.
//! - SIP and RTP are bound to the phone's own address (`[sip] bind_address`, `[rtp]
//!   bind_address`): by default RTP binds `[::0]`, and on loopback its packets then leave from
//!   127.0.0.1 while its SDP says 127.0.0.2 (a relay checking sources drops them all).
//! - Its full log (`-d 6 -l`) holds every SIP message sent and received; [`Linphone::sip_trace`]
//!   condenses it to one line per message for failure reports.
//!
//! SIP behaviour worth knowing (liblinphone 5.1): it REGISTERs with `Supported: gruu` and
//! `+sip.instance`, and once the registrar returned a `pub-gruu` it uses that GRUU as the
//! Contact of its dialogs (INVITE and 2xx), so in-dialog requests towards it carry the GRUU as
//! Request-URI and must be resolved by the registrar. The REGISTER Request-URI is the identity's
//! domain even when `reg_proxy` names another host; requests other than REGISTER only go to
//! `reg_proxy` when `reg_route` is set (otherwise the Request-URI's host is resolved).

use crate::process::ChildGuard;
use crate::workdir::{tail, WorkDir};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where Debian's `linphone-cli` installs it.
pub const LINPHONEC: &str = "/usr/bin/linphonec";

/// linphonec from `$E2E_LINPHONEC` or [`LINPHONEC`], or `None` after printing why the test is
/// skipped.
pub fn linphonec_or_skip(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("E2E_LINPHONEC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(LINPHONEC));
    if path.is_file() {
        Some(path)
    } else {
        crate::skip::skip(
            test,
            format!(
                "{} not found (install the linphone-cli package)",
                path.display()
            ),
        );
        None
    }
}

/// An even RTP port whose RTCP neighbour is free too (liblinphone binds both), both taken
/// from [`crate::ports::free_port`]'s counter so no later pick (another phone's SIP port) can
/// land on either: with sockets bound to the same address the last one bound gets the packets.
pub fn free_rtp_port() -> u16 {
    for _ in 0..200 {
        let rtp = crate::ports::free_port();
        if !rtp.is_multiple_of(2) {
            continue;
        }
        if crate::ports::free_port() == rtp + 1 {
            return rtp;
        }
    }
    panic!("no free RTP port pair");
}

/// How to provision one phone.
#[derive(Debug, Clone)]
pub struct LinphoneSpec {
    /// Label: the subdirectory of the work dir holding its HOME, config, log and recordings.
    pub name: String,
    pub user: String,
    pub password: String,
    /// Host part of the AoR: `example.test`, or the edge's `IP:PORT` (provisioning (b)).
    pub domain: String,
    /// Digest realm of the credentials.
    pub realm: String,
    /// Server address (`reg_proxy`), e.g. `sip:127.0.0.1:5060`.
    pub registrar: String,
    /// Outbound proxy (`reg_route`), e.g. `sip:127.0.0.1:5060;lr`: every request, REGISTER
    /// included, then carries it as Route and is sent there.
    pub outbound_proxy: Option<String>,
    /// Local SIP address (UDP): linphonec binds this IP and port.
    pub sip: SocketAddr,
    /// Local RTP port (RTCP on the next one).
    pub rtp_port: u16,
    /// WAV played as its microphone.
    pub tone_wav: PathBuf,
    /// Registration lifetime asked for.
    pub expires: u32,
}

impl LinphoneSpec {
    /// A phone `user` (password `pw-<user>`, realm `example.test`) on `sip`, registering at
    /// `registrar` with AoR `sip:<user>@<domain>`, no outbound proxy.
    pub fn new(
        name: &str,
        user: &str,
        domain: &str,
        registrar: &str,
        sip: SocketAddr,
        tone_wav: &Path,
    ) -> LinphoneSpec {
        LinphoneSpec {
            name: name.to_string(),
            user: user.to_string(),
            password: format!("pw-{user}"),
            domain: domain.to_string(),
            realm: "example.test".to_string(),
            registrar: registrar.to_string(),
            outbound_proxy: None,
            sip,
            rtp_port: free_rtp_port(),
            tone_wav: tone_wav.to_path_buf(),
            expires: 600,
        }
    }

    pub fn outbound_proxy(mut self, route: &str) -> LinphoneSpec {
        self.outbound_proxy = Some(route.to_string());
        self
    }

    /// `sip:<user>@<domain>`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }

    /// The `linphonerc` for this phone: UDP only on `sip`, G.711 only, no video, ICE, STUN,
    /// UPnP, echo canceller, presence publish.
    pub fn linphonerc(&self) -> String {
        let route = self
            .outbound_proxy
            .as_ref()
            .map(|r| format!("reg_route={r}\n"))
            .unwrap_or_default();
        format!(
            "[sip]\n\
             sip_port={port}\n\
             sip_tcp_port=0\n\
             sip_tls_port=0\n\
             bind_address={ip}\n\
             use_ipv6=0\n\
             default_proxy=0\n\
             contact=sip:{user}@{ip}:{port}\n\
             register_only_when_network_is_up=0\n\
             register_only_when_upnp_is_ok=0\n\
             guess_hostname=0\n\
             inc_timeout=30\n\
             \n\
             [rtp]\n\
             audio_rtp_port={rtp}\n\
             bind_address={ip}\n\
             video_rtp_port=0\n\
             text_rtp_port=0\n\
             \n\
             [net]\n\
             firewall_policy=0\n\
             \n\
             [nat_policy_default_values]\n\
             stun_server=\n\
             protocols=\n\
             \n\
             [video]\n\
             enabled=0\n\
             display=0\n\
             capture=0\n\
             automatically_initiate=0\n\
             automatically_accept=0\n\
             \n\
             [sound]\n\
             echocancellation=0\n\
             \n\
             [misc]\n\
             enable_basic_to_client_group_chat_room_migration=0\n\
             \n\
             [proxy_0]\n\
             reg_proxy={registrar}\n\
             {route}\
             reg_identity={aor}\n\
             reg_expires={expires}\n\
             reg_sendregister=1\n\
             publish=0\n\
             avpf=0\n\
             dial_escape_plus=0\n\
             \n\
             [auth_info_0]\n\
             username={user}\n\
             passwd={password}\n\
             realm={realm}\n\
             domain={domain}\n\
             \n\
             {codecs}",
            port = self.sip.port(),
            ip = self.sip.ip(),
            user = self.user,
            rtp = self.rtp_port,
            registrar = self.registrar,
            aor = self.aor(),
            expires = self.expires,
            password = self.password,
            realm = self.realm,
            domain = self.domain,
            codecs = codecs(),
        )
    }
}

/// Every audio codec liblinphone 5.1 knows, listed with only PCMU and PCMA enabled: codecs
/// missing from the file are added back enabled (opus first), so all are named.
fn codecs() -> String {
    const ALL: [(&str, u32, u32, bool); 19] = [
        ("PCMU", 8000, 1, true),
        ("PCMA", 8000, 1, true),
        ("opus", 48000, 2, false),
        ("speex", 16000, 1, false),
        ("speex", 8000, 1, false),
        ("speex", 32000, 1, false),
        ("GSM", 8000, 1, false),
        ("G722", 8000, 1, false),
        ("G729", 8000, 1, false),
        ("G726-16", 8000, 1, false),
        ("G726-24", 8000, 1, false),
        ("G726-32", 8000, 1, false),
        ("G726-40", 8000, 1, false),
        ("AAL2-G726-16", 8000, 1, false),
        ("AAL2-G726-24", 8000, 1, false),
        ("AAL2-G726-32", 8000, 1, false),
        ("AAL2-G726-40", 8000, 1, false),
        ("L16", 44100, 2, false),
        ("L16", 44100, 1, false),
    ];
    ALL.iter()
        .enumerate()
        .map(|(i, (mime, rate, channels, on))| {
            format!(
                "\n[audio_codec_{i}]\nmime={mime}\nrate={rate}\nchannels={channels}\nenabled={}\n",
                u8::from(*on)
            )
        })
        .collect()
}

/// One call as seen by one phone: linphonec's call id and where in its output the call began
/// (waits only look at later lines, so an earlier call's events never match).
#[derive(Debug, Clone, Copy)]
pub struct CallRef {
    pub id: u32,
    since: usize,
}

/// A running linphonec; killed by PID on drop.
pub struct Linphone {
    guard: ChildGuard,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    spec: LinphoneSpec,
    home: PathBuf,
    log: PathBuf,
    stderr: PathBuf,
    command_line: String,
}

/// Bounded waits poll the collected output this often.
const POLL: Duration = Duration::from_millis(50);

impl Linphone {
    /// Writes the HOME and `linphonerc`, starts linphonec and switches it to WAV files,
    /// playing `spec.tone_wav`. Does not wait for the registration ([`Self::wait_registered`]).
    pub fn start(bin: &Path, dir: &WorkDir, spec: &LinphoneSpec) -> Result<Linphone, String> {
        let home = dir.path().join(&spec.name);
        let data = home.join(".local").join("share").join("linphone");
        std::fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
        let rc = home.join("linphonerc");
        std::fs::write(&rc, spec.linphonerc())
            .map_err(|e| format!("write {}: {e}", rc.display()))?;
        let log = home.join("linphonec.log");
        let stderr = home.join("stderr.txt");
        let err = std::fs::File::create(&stderr).map_err(|e| format!("create stderr: {e}"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&rc)
            .args(["-d", "6", "-l"])
            .arg(&log)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local").join("share"))
            .env_remove("DISPLAY")
            .current_dir(&home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err);
        let command_line = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = stdout {
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut l) = sink.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let mut phone = Linphone {
            guard: ChildGuard::new(&format!("linphonec-{}", spec.name), child),
            stdin,
            lines,
            spec: spec.clone(),
            home,
            log,
            stderr,
            command_line,
        };
        let since = phone.mark();
        phone.command("soundcard use files")?;
        phone.wait_line(since, Duration::from_secs(10), "soundcard use files", |l| {
            l.contains("Using wav files instead of soundcard")
        })?;
        let tone = spec.tone_wav.display().to_string();
        phone.command(&format!("play {tone}"))?;
        Ok(phone)
    }

    pub fn spec(&self) -> &LinphoneSpec {
        &self.spec
    }

    /// `sip:<user>@<domain>`.
    pub fn aor(&self) -> String {
        self.spec.aor()
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.pid()
    }

    /// Its private HOME (config, log, recordings).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Sends one command line.
    pub fn command(&mut self, cmd: &str) -> Result<(), String> {
        let name = self.spec.name.clone();
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(format!("{name}: stdin already closed"));
        };
        stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{name}: write {cmd:?}: {e}\n{}", self.report()))
    }

    /// Number of output lines so far: waits started from here see only what comes after.
    pub fn mark(&self) -> usize {
        self.lines.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// Output lines from `since` on.
    pub fn lines_since(&self, since: usize) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.get(since..).map(<[String]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits (bounded) for an output line after `since` matching `pred`; fails at once if
    /// linphonec exits. Returns the line.
    pub fn wait_line(
        &mut self,
        since: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines_since(since).into_iter().find(|l| pred(l)) {
                return Ok(line);
            }
            if let Some(status) = self.guard.try_wait() {
                let report = self.report();
                return Err(format!(
                    "{}: linphonec exited ({status}) while waiting for {what}\n{report}",
                    self.spec.name,
                ));
            }
            if Instant::now() >= deadline {
                let report = self.report();
                return Err(format!(
                    "{}: no {what} within {timeout:?}\n{report}",
                    self.spec.name,
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `status register` until it says `registered, identity=...`.
    pub fn wait_registered(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let since = self.mark();
            self.command("status register")?;
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.wait_line(
                since,
                left.min(Duration::from_secs(2)),
                "answer to `status register`",
                |l| l.contains("registered") || l.contains("identity="),
            );
            if let Ok(line) = &answer {
                if line.contains("registered, identity=") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let last = answer.unwrap_or_else(|e| e.lines().next().unwrap_or("").to_string());
                let report = self.report();
                return Err(format!(
                    "{}: not registered as {} within {timeout:?} (last status: {last})\n{report}",
                    self.spec.name,
                    self.aor(),
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `record <path>`: where the audio it decodes in the next call goes.
    pub fn record_to(&mut self, path: &Path) -> Result<(), String> {
        self.command(&format!("record {}", path.display()))
    }

    /// `autoanswer enable|disable`.
    pub fn set_autoanswer(&mut self, on: bool) -> Result<(), String> {
        let since = self.mark();
        self.command(if on {
            "autoanswer enable"
        } else {
            "autoanswer disable"
        })?;
        self.wait_line(since, Duration::from_secs(5), "autoanswer answer", |l| {
            l.contains("Auto answer")
        })
        .map(|_| ())
    }

    /// `call <uri>`; returns once linphonec assigned the call an id.
    pub fn call(&mut self, uri: &str) -> Result<CallRef, String> {
        let since = self.mark();
        self.command(&format!("call {uri}"))?;
        let line = self.wait_line(since, Duration::from_secs(5), "call id", |l| {
            l.contains("assigned id")
        })?;
        let Some(id) = id_after(&line, "assigned id ") else {
            let report = self.report();
            return Err(format!(
                "{}: `call {uri}` gave {line:?}\n{report}",
                self.spec.name
            ));
        };
        Ok(CallRef { id, since })
    }

    /// Waits for an incoming call (`Receiving new incoming call from <uri>, assigned id N`)
    /// after `since`.
    pub fn wait_incoming(&mut self, since: usize, timeout: Duration) -> Result<CallRef, String> {
        let line = self.wait_line(since, timeout, "incoming call", |l| {
            l.contains("Receiving new incoming call from")
        })?;
        let id = id_after(&line, "assigned id ")
            .ok_or_else(|| format!("{}: no call id in {line:?}", self.spec.name))?;
        Ok(CallRef { id, since })
    }

    /// `answer N`.
    pub fn answer(&mut self, call: CallRef) -> Result<(), String> {
        self.command(&format!("answer {}", call.id))
    }

    /// Waits until the call is connected and its audio streams run (`Media streams established
    /// ... for call N`); fails at once on `Call N ... error.` or `... ended`.
    pub fn wait_connected(&mut self, call: CallRef, timeout: Duration) -> Result<(), String> {
        let media = format!("for call {} (", call.id);
        let prefix = format!("Call {} with ", call.id);
        let line = self.wait_line(call.since, timeout, "connected call", |l| {
            (l.contains("Media streams established") && l.contains(&media))
                || (l.contains(&prefix) && (l.contains(" error.") || l.contains(" ended (")))
        })?;
        if line.contains("Media streams established") {
            Ok(())
        } else {
            let report = self.report();
            Err(format!(
                "{}: call {} failed: {line}\n{report}",
                self.spec.name, call.id
            ))
        }
    }

    /// `terminate N`: sends BYE (or CANCEL).
    pub fn terminate(&mut self, call: CallRef) -> Result<(), String> {
        self.command(&format!("terminate {}", call.id))
    }

    /// Waits for `Call N with <uri> ended (<reason>).` (or `error.`); returns the line.
    pub fn wait_ended(&mut self, call: CallRef, timeout: Duration) -> Result<String, String> {
        let prefix = format!("Call {} with ", call.id);
        self.wait_line(call.since, timeout, "end of call", |l| {
            l.contains(&prefix) && (l.contains(" ended (") || l.contains(" error."))
        })
    }

    /// Whether the call's end was already printed.
    pub fn has_ended(&self, call: CallRef) -> bool {
        let prefix = format!("Call {} with ", call.id);
        self.lines_since(call.since)
            .iter()
            .any(|l| l.contains(&prefix) && (l.contains(" ended (") || l.contains(" error.")))
    }

    /// Console lines about `call` (`Call N ...`) since it began.
    pub fn call_lines(&self, call: CallRef) -> Vec<String> {
        let key = format!("Call {} ", call.id);
        self.lines_since(call.since)
            .into_iter()
            .filter(|l| l.contains(&key))
            .collect()
    }

    /// The output of `calls` (no active call: `No active call.`).
    pub fn calls(&mut self) -> Result<Vec<String>, String> {
        let since = self.mark();
        self.command("calls")?;
        self.wait_line(since, Duration::from_secs(5), "answer to `calls`", |l| {
            l.contains("No active call") || l.contains("Call states")
        })?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(self.lines_since(since))
    }

    /// One line per SIP message in its log: time, direction (`->` sent, `<-` received), peer
    /// and start line, plus the Contact / Route / Record-Route headers of dialog-forming
    /// messages; the last `max` entries.
    pub fn sip_trace(&self, max: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        sip_trace_of(&text, max)
    }

    /// Its SIP log's raw text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Command line, state, the tail of its console output and its SIP trace.
    pub fn report(&mut self) -> String {
        let state = self.guard.state();
        let out = self.lines_since(0);
        let start = out.len().saturating_sub(40);
        format!(
            "--- linphonec {} ({state}) ---\ncommand: {}\nconsole (last {} lines):\n{}\nstderr:\n{}\nSIP trace ({}):\n{}\n",
            self.spec.name,
            self.command_line,
            out.len() - start,
            out.get(start..).unwrap_or(&[]).join("\n"),
            tail(&self.stderr, 800),
            self.log.display(),
            self.sip_trace(40),
        )
    }

    /// `quit` (it unregisters), then up to `grace` to exit, then SIGTERM/SIGKILL by PID.
    pub fn stop(&mut self, grace: Duration) {
        if self.guard.try_wait().is_none() {
            let _ = self.command("quit");
            self.stdin = None;
            if self.guard.wait_timeout(grace).is_none() {
                self.guard.stop(Duration::from_millis(500));
            }
        }
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        // linphonec does not exit when its stdin closes: `quit` (it unregisters), a short
        // grace, then the guard's SIGTERM (which it also handles cleanly) and SIGKILL.
        if self.guard.try_wait().is_none() {
            if let Some(stdin) = self.stdin.as_mut() {
                let _ = stdin.write_all(b"quit\n").and_then(|()| stdin.flush());
            }
            let _ = self.guard.wait_timeout(Duration::from_millis(1000));
        }
        self.stdin = None;
    }
}

fn id_after(line: &str, key: &str) -> Option<u32> {
    let rest = line.split(key).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// See [`Linphone::sip_trace`].
pub fn sip_trace_of(log: &str, max: usize) -> String {
    let mut entries: Vec<String> = Vec::new();
    let mut lines = log.lines().peekable();
    while let Some(line) = lines.next() {
        let (dir, peer) = if let Some(rest) = line.split("message sent to [").nth(1) {
            ("->", rest.split(']').next().unwrap_or(""))
        } else if let Some(rest) = line.split("new bytes from [").nth(1) {
            ("<-", rest.split(']').next().unwrap_or(""))
        } else {
            continue;
        };
        let time = line.get(11..23).unwrap_or("");
        let Some(start) = lines.next() else { break };
        let mut entry = format!("{time} {dir} {peer}: {start}");
        // Headers up to the blank line.
        while let Some(h) = lines.peek() {
            if h.trim().is_empty() || h.starts_with("20") && h.contains("-message-") {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("contact:")
                || lower.starts_with("route:")
                || lower.starts_with("record-route:")
                || lower.starts_with("cseq:")
            {
                entry.push_str(" | ");
                entry.push_str(h.trim());
            }
            lines.next();
        }
        entries.push(entry);
    }
    let start = entries.len().saturating_sub(max);
    entries.get(start..).unwrap_or(&[]).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_condenses_messages() {
        let log = "2026-12-02 10:04:08:482 belle-sip-message-channel [0x5]: message sent to [UDP://127.0.0.3:5160], size: [603] bytes\n\
BYE sip:bob@example.test;gr=urn:uuid:1 SIP/2.0\n\
Via: SIP/2.0/UDP 127.0.0.2:16060\n\
CSeq: 22 BYE\n\
Route: <sip:127.0.0.3:5160;lr=on>\n\
\n\
2026-12-02 10:04:08:490 belle-sip-message-channel [0x5]: received [300] new bytes from [UDP://127.0.0.3:5160]:\n\
SIP/2.0 200 Ok\n\
CSeq: 22 BYE\n\
\n";
        let t = sip_trace_of(log, 10);
        assert_eq!(
            t,
            "10:04:08:482 -> UDP://127.0.0.3:5160: BYE sip:bob@example.test;gr=urn:uuid:1 SIP/2.0 | CSeq: 22 BYE | Route: <sip:127.0.0.3:5160;lr=on>\n\
10:04:08:490 <- UDP://127.0.0.3:5160: SIP/2.0 200 Ok | CSeq: 22 BYE"
        );
    }

    #[test]
    fn ids_are_parsed() {
        assert_eq!(
            id_after(
                "Receiving new incoming call from sip:a@x, assigned id 3",
                "assigned id "
            ),
            Some(3)
        );
        assert_eq!(
            id_after(
                "Establishing call id to sip:b@x, assigned id 12",
                "assigned id "
            ),
            Some(12)
        );
    }
}
