//! A headless baresip 1.0 (Debian `baresip-core`) driven over its `ctrl_tcp` socket.
//!
//! What it is: one phone = one `baresip -f DIR` process with its own config dir in the test's
//! [`WorkDir`], one SIP account, G.711 only. Its microphone is `aufile` playing a tone WAV
//! (one frequency per phone); what it decodes is dumped by `sndfile` to
//! `DIR/snd/dump-<time>-dec.wav` (one file per call, named to the second), which the test
//! analyses with [`super::audio`]. The player is an `aubridge` device nobody pairs with, so no
//! audio thread runs (an ALSA null device would spin a core).
//!
//! Control: `ctrl_tcp` takes netstring-framed JSON commands `{"command":"dial","params":"sip:..",
//! "token":"7"}` (the command set is the `menu` and `contact` modules': `dial`, `accept`,
//! `hangup`, `hold`, `resume`, `transfer`, `message`, `reginfo`) and answers
//! `{"response":true,"ok":..,"data":..,"token":"7"}`; call events arrive on the same connection
//! (`{"event":true,"type":"CALL_ESTABLISHED",...}`). A reader thread collects them; every
//! `wait_*` is bounded and its error carries baresip's log tail.
//!
//! baresip facts this relies on (checked by hand with baresip 1.0.0):
//! - `net_interface` takes an IP address (not `lo`): SIP binds `sip_listen`, SDP announces that
//!   IP; RTP binds the wildcard address, so on loopback its packets leave from 127.0.0.1.
//! - incoming MESSAGEs are printed only through a UI module: `stdio` is loaded with stdin a pipe
//!   kept open (never written), and the text shows up in the log as `<peer>: "<text>"`.
//! - `message` sends to the *current contact* of the `contact` module: the phone's contacts file
//!   holds exactly [`PhoneSpec::message_to`].
//! - a blind transfer needs nothing from the transferee: on REFER it dials the target itself
//!   (`TRANSFER` event) and the transferor's call closes with "Call transfered".
//! - hold/resume are re-INVITEs (`a=sendonly` / `a=sendrecv`); no event but `CALL_REMOTE_SDP`
//!   with param `answer` on the side that sent it. The dump file of the call continues.

use crate::process::ChildGuard;
use crate::workdir::WorkDir;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BARESIP: &str = "/usr/bin/baresip";
const MODULES: &str = "/usr/lib/baresip/modules";

/// True if baresip and the modules the driver loads are installed; otherwise says why the test
/// is skipped.
pub fn available(test: &str) -> bool {
    if !Path::new(BARESIP).is_file() {
        crate::skip::skip(
            test,
            format!("{BARESIP} not found (install the baresip-core package)"),
        );
        return false;
    }
    for m in ["ctrl_tcp", "aufile", "aubridge", "sndfile", "g711", "menu"] {
        let p = Path::new(MODULES).join(format!("{m}.so"));
        if !p.is_file() {
            crate::skip::skip(test, format!("{} not found (baresip-core)", p.display()));
            return false;
        }
    }
    true
}

/// How to provision one phone.
#[derive(Debug, Clone)]
pub struct PhoneSpec {
    /// User part of the AoR, also the auth user, and the label of its files.
    pub user: String,
    /// Host part of the AoR: `example.test` (carrier provisioning) or the edge's `ip:port`.
    pub domain: String,
    /// Outbound proxy (`;outbound="sip:IP:PORT;lr"`), or none: requests go to `domain`.
    pub outbound: Option<SocketAddr>,
    /// Digest password (Kamailio interop config: `pw-<user>`).
    pub password: Option<String>,
    /// Address SIP binds and SDP announces.
    pub ip: Ipv4Addr,
    pub sip_port: u16,
    /// Frequency of the tone it plays as its microphone.
    pub tone_hz: f64,
    /// Network namespace to run in (`ip netns exec`); the control socket is reached via setns.
    pub netns: Option<String>,
    /// Registration interval (s); 0 = do not register.
    pub regint: u32,
    /// `answermode=auto` (else incoming calls wait for [`Baresip::answer`]).
    pub auto_answer: bool,
    /// The one target of [`Baresip::message`].
    pub message_to: Option<String>,
}

impl PhoneSpec {
    /// A phone `user@domain` on `ip`, registering every 600 s with password `pw-<user>`,
    /// auto-answering, no outbound proxy, a fresh SIP port.
    pub fn new(user: &str, domain: &str, ip: Ipv4Addr, tone_hz: f64) -> PhoneSpec {
        PhoneSpec {
            user: user.to_string(),
            domain: domain.to_string(),
            outbound: None,
            password: Some(format!("pw-{user}")),
            ip,
            sip_port: sip_port_pair(),
            tone_hz,
            netns: None,
            regint: 600,
            auto_answer: true,
            message_to: None,
        }
    }

    pub fn outbound(mut self, proxy: SocketAddr) -> PhoneSpec {
        self.outbound = Some(proxy);
        self
    }

    pub fn message_to(mut self, uri: &str) -> PhoneSpec {
        self.message_to = Some(uri.to_string());
        self
    }

    /// `sip:user@domain`.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }
}

/// Events and responses read from the control socket, in arrival order.
#[derive(Default)]
struct Inbox {
    items: Vec<String>,
    closed: Option<String>,
}

/// A running baresip; stopped by PID on drop.
pub struct Baresip {
    pub spec: PhoneSpec,
    dir: PathBuf,
    log: PathBuf,
    guard: ChildGuard,
    // Kept open so the stdio UI never sees end of file.
    _stdin: Option<std::process::ChildStdin>,
    ctrl: TcpStream,
    inbox: Arc<(Mutex<Inbox>, Condvar)>,
    /// Per event type: index after the last event a `wait_event` consumed.
    cursors: Mutex<Vec<(String, usize)>>,
    token: AtomicU32,
}

/// A point in the received audio: the newest dump file and how many bytes it held.
#[derive(Debug, Clone)]
pub struct RecvMark {
    file: Option<PathBuf>,
    bytes: u64,
}

impl Baresip {
    /// Writes the config dir `<work>/<user>/` and starts baresip; waits (bounded) until its
    /// control socket accepts a connection. Does not wait for the registration.
    pub fn start(work: &WorkDir, spec: PhoneSpec) -> Result<Baresip, String> {
        let dir = work.path().join(format!("baresip-{}", spec.user));
        let snd = dir.join("snd");
        std::fs::create_dir_all(&snd).map_err(|e| format!("{}: {e}", snd.display()))?;
        let tone = dir.join("tone.wav");
        // Long enough for any call of the suite: aufile stops the source at end of file.
        super::audio::write_tone_wav(&tone, spec.tone_hz, 120.0, 8000)?;
        // In a namespace of its own the phone has its own loopback: a fixed port is fine.
        let ctrl_port = if spec.netns.is_some() {
            4444
        } else {
            crate::ports::free_port()
        };
        let ctrl_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ctrl_port));
        let (rtp_min, rtp_max) = rtp_ports();
        let label = &spec.user;
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t{ip}:{port}\n\
             net_interface\t{ip}\n\
             call_local_timeout\t120\n\
             call_max_calls\t4\n\
             audio_player\taubridge,nobody-{label}\n\
             audio_alert\taubridge,nobody-{label}\n\
             audio_source\taufile,{tone}\n\
             audio_buffer\t20-160\n\
             rtp_ports\t{rtp_min}-{rtp_max}\n\
             rtcp_mux\tno\n\
             jitter_buffer_delay\t5-10\n\
             module_path\t{MODULES}\n\
             module\tstdio.so\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module\taubridge.so\n\
             module\tsndfile.so\n\
             module_tmp\tuuid.so\n\
             module_tmp\taccount.so\n\
             module_app\tmenu.so\n\
             module_app\tcontact.so\n\
             module_app\tctrl_tcp.so\n\
             ctrl_tcp_listen\t{ctrl_addr}\n\
             snd_path\t{snd}\n",
            ip = spec.ip,
            port = spec.sip_port,
            tone = tone.display(),
            snd = snd.display(),
        );
        write(&dir.join("config"), &config)?;
        let mut account = format!("<{}>", spec.aor());
        if let Some(pw) = &spec.password {
            account.push_str(&format!(";auth_pass={pw}"));
        }
        if let Some(proxy) = spec.outbound {
            account.push_str(&format!(";outbound=\"sip:{proxy};lr\""));
        }
        account.push_str(&format!(";regint={}", spec.regint));
        if spec.auto_answer {
            account.push_str(";answermode=auto");
        }
        write(&dir.join("accounts"), &format!("{account}\n"))?;
        let contacts = match &spec.message_to {
            Some(uri) => format!("\"peer\" <{uri}>\n"),
            None => String::new(),
        };
        write(&dir.join("contacts"), &contacts)?;

        let log = dir.join("baresip.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("dup log: {e}"))?;
        let mut cmd = match &spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BARESIP]);
                c
            }
            None => Command::new(BARESIP),
        };
        cmd.arg("-f")
            .arg(&dir)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        let mut child = cmd.spawn().map_err(|e| format!("spawn {BARESIP}: {e}"))?;
        let stdin = child.stdin.take();
        let mut guard = ChildGuard::new(&format!("baresip-{}", spec.user), child);

        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            match connect(spec.netns.as_deref(), ctrl_addr) {
                Ok(s) => break s,
                Err(e) => {
                    if let Some(status) = guard.try_wait() {
                        return Err(format!(
                            "baresip {} exited at startup ({status})\n{}",
                            spec.user,
                            log_tail(&log)
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "baresip {}: control socket {ctrl_addr} not up within 10 s ({e})\n{}",
                            spec.user,
                            log_tail(&log)
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let inbox = Arc::new((Mutex::new(Inbox::default()), Condvar::new()));
        let reader = ctrl
            .try_clone()
            .map_err(|e| format!("clone control socket: {e}"))?;
        let shared = Arc::clone(&inbox);
        std::thread::spawn(move || read_netstrings(reader, shared));
        Ok(Baresip {
            spec,
            dir,
            log,
            guard,
            _stdin: stdin,
            ctrl,
            inbox,
            cursors: Mutex::new(Vec::new()),
            token: AtomicU32::new(0),
        })
    }

    /// baresip's output so far (status lines removed), the last `max` bytes.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log, for searching.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Who this phone is, its state and its log tail: for failure messages.
    pub fn report(&mut self) -> String {
        let state = self.guard.state();
        format!(
            "--- baresip {} ({state}), dir {} ---\n{}\n",
            self.spec.aor(),
            self.dir.display(),
            self.log_tail()
        )
    }

    /// Sends one command and waits (5 s) for its response; `Ok(data)` if baresip says ok.
    pub fn command(&self, command: &str, params: &str) -> Result<String, String> {
        let token = self.token.fetch_add(1, Ordering::SeqCst) + 1;
        let body = format!(
            "{{\"command\":\"{}\",\"params\":\"{}\",\"token\":\"{token}\"}}",
            json_escape(command),
            json_escape(params)
        );
        let frame = format!("{}:{body},", body.len());
        (&self.ctrl)
            .write_all(frame.as_bytes())
            .map_err(|e| format!("{}: send {command}: {e}", self.spec.user))?;
        let want = format!("\"token\":\"{token}\"");
        let reply = self
            .wait_item(
                |m| m.contains("\"response\":true") && m.contains(&want),
                0,
                Duration::from_secs(5),
            )
            .map(|(_, m)| m)
            .map_err(|e| format!("{}: no response to {command} {params}: {e}", self.spec.user))?;
        let data = json_field(&reply, "data").unwrap_or_default();
        if reply.contains("\"ok\":true") {
            Ok(data)
        } else {
            Err(format!(
                "{}: {command} {params} failed: {data}\n{}",
                self.spec.user,
                self.log_tail()
            ))
        }
    }

    /// First item at index ≥ `from` matching `pred`, waiting up to `timeout`.
    fn wait_item(
        &self,
        pred: impl Fn(&str) -> bool,
        from: usize,
        timeout: Duration,
    ) -> Result<(usize, String), String> {
        let (lock, cv) = &*self.inbox;
        let deadline = Instant::now() + timeout;
        let mut inbox = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((i, m)) = inbox
                .items
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| pred(m))
            {
                return Ok((i, m.clone()));
            }
            if let Some(why) = &inbox.closed {
                return Err(format!("control connection closed: {why}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("nothing within {timeout:?}"));
            }
            inbox = cv
                .wait_timeout(inbox, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Number of events and responses received so far: pass it to [`Baresip::wait_event_after`].
    pub fn mark(&self) -> usize {
        self.inbox
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .items
            .len()
    }

    /// Waits for the next not yet consumed event of `kind` (e.g. `CALL_ESTABLISHED`) whose JSON
    /// contains `needle`; consumes it and every earlier one of that kind.
    pub fn wait_event(
        &self,
        kind: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let from = {
            let cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
            cursors
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, i)| *i)
        };
        let (i, m) = self.wait_event_after(kind, needle, from, timeout)?;
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.retain(|(k, _)| k != kind);
        cursors.push((kind.to_string(), i + 1));
        Ok(m)
    }

    /// Waits for an event of `kind` containing `needle` at index ≥ `from` (see [`Baresip::mark`]).
    pub fn wait_event_after(
        &self,
        kind: &str,
        needle: &str,
        from: usize,
        timeout: Duration,
    ) -> Result<(usize, String), String> {
        let ty = format!("\"type\":\"{kind}\"");
        self.wait_item(
            |m| m.contains("\"event\":true") && m.contains(&ty) && m.contains(needle),
            from,
            timeout,
        )
        .map_err(|e| {
            format!(
                "{}: no {kind} event{}: {e}\nevents seen:\n{}\n{}",
                self.spec.user,
                if needle.is_empty() {
                    String::new()
                } else {
                    format!(" with {needle}")
                },
                self.events_summary(),
                self.log_tail()
            )
        })
    }

    /// One line per event received: type, direction, peer, param.
    pub fn events_summary(&self) -> String {
        let inbox = self.inbox.0.lock().unwrap_or_else(|p| p.into_inner());
        inbox
            .items
            .iter()
            .filter(|m| m.contains("\"event\":true") && !m.contains("CALL_RTCP"))
            .map(|m| {
                format!(
                    "  {} {} {} {}",
                    json_field(m, "type").unwrap_or_default(),
                    json_field(m, "direction").unwrap_or_default(),
                    json_field(m, "peeruri").unwrap_or_default(),
                    json_field(m, "param").unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `reginfo` until the account shows `OK` (registered), up to `timeout`.
    pub fn wait_registered(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last;
        loop {
            match self.command("reginfo", "") {
                // The state is colour-coded: "\u001B[32mOK \u001B[;m" once registered.
                Ok(data) if data.contains("[32mOK") => return Ok(()),
                Ok(data) => last = data,
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not registered within {timeout:?}; reginfo: {}\n{}",
                    self.spec.aor(),
                    last.trim(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts a call (returns once baresip accepted the command).
    pub fn dial(&self, uri: &str) -> Result<(), String> {
        self.command("dial", uri).map(|_| ())
    }

    /// Accepts the ringing incoming call.
    pub fn answer(&self) -> Result<(), String> {
        self.command("accept", "").map(|_| ())
    }

    /// Waits for the next call of this phone to be established (either direction).
    pub fn wait_established(&self, timeout: Duration) -> Result<String, String> {
        self.wait_event("CALL_ESTABLISHED", "", timeout)
    }

    /// Waits for the next established call with `peer` (a substring of its peer URI).
    pub fn wait_established_with(&self, peer: &str, timeout: Duration) -> Result<String, String> {
        self.wait_event(
            "CALL_ESTABLISHED",
            &format!("\"peeruri\":\"{peer}"),
            timeout,
        )
    }

    /// Waits for the next call of this phone to close; `Ok(reason)`.
    pub fn wait_closed(&self, timeout: Duration) -> Result<String, String> {
        self.wait_event("CALL_CLOSED", "", timeout)
            .map(|m| json_field(&m, "param").unwrap_or_default())
    }

    /// Hangs up the current call.
    pub fn hangup(&self) -> Result<(), String> {
        self.command("hangup", "").map(|_| ())
    }

    /// Puts the current call on hold (re-INVITE `a=sendonly`) and waits for the answer.
    pub fn hold(&self) -> Result<(), String> {
        self.reinvite("hold")
    }

    /// Resumes the current call (re-INVITE `a=sendrecv`) and waits for the answer.
    pub fn resume(&self) -> Result<(), String> {
        self.reinvite("resume")
    }

    fn reinvite(&self, command: &str) -> Result<(), String> {
        let from = self.mark();
        self.command(command, "")?;
        self.wait_event_after(
            "CALL_REMOTE_SDP",
            "\"param\":\"answer\"",
            from,
            Duration::from_secs(10),
        )
        .map(|_| ())
        .map_err(|e| format!("{command}: the re-INVITE got no SDP answer: {e}"))
    }

    /// Blind transfer of the current call to `uri` (REFER).
    pub fn transfer(&self, uri: &str) -> Result<(), String> {
        self.command("transfer", uri).map(|_| ())
    }

    /// Sends a MESSAGE to `uri`, which must be [`PhoneSpec::message_to`] (baresip 1.0 sends
    /// to its current contact only).
    pub fn message(&self, uri: &str, text: &str) -> Result<(), String> {
        if self.spec.message_to.as_deref() != Some(uri) {
            return Err(format!(
                "{}: MESSAGE target {uri} is not the phone's contact {:?}",
                self.spec.user, self.spec.message_to
            ));
        }
        self.command("message", text).map(|_| ())
    }

    /// Waits until the log shows a received MESSAGE with body `text`; `Ok(peer line)`.
    pub fn wait_message_received(&self, text: &str, timeout: Duration) -> Result<String, String> {
        let needle = format!(": \"{text}\"");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_text().lines().find(|l| l.contains(&needle)) {
                return Ok(line.trim().to_string());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{}: MESSAGE {text:?} not received within {timeout:?}\n{}",
                    self.spec.user,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The dumps of decoded received audio, one per call, oldest first.
    pub fn received_wav_files(&self) -> Vec<PathBuf> {
        dumps(&self.dir.join("snd"), "-dec.wav")
    }

    /// Where the received audio stands now (for [`Baresip::received_tone_since`]).
    pub fn recv_mark(&self) -> RecvMark {
        let file = self.received_wav_files().pop();
        let bytes = file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len());
        RecvMark { file, bytes }
    }

    /// Seconds of tone `hz` this phone decoded after `mark`: the rest of the file that was
    /// newest at the mark, plus every newer dump.
    pub fn received_tone_since(&self, mark: &RecvMark, hz: f64) -> Result<f64, String> {
        let mut total = 0.0;
        for f in self.received_wav_files() {
            if mark.file.as_ref().is_some_and(|m| f < *m) {
                continue;
            }
            let mut pcm = super::audio::read_wav(&f)?;
            if mark.file.as_ref() == Some(&f) {
                // 16-bit mono: past the 44-byte header, two bytes a sample.
                let skip = usize::try_from(mark.bytes.saturating_sub(44) / 2).unwrap_or(0);
                pcm.samples.drain(..skip.min(pcm.samples.len()));
            }
            total += super::audio::tone_seconds_in(&pcm, hz);
        }
        Ok(total)
    }

    /// Seconds of tone `hz` in the newest dump (the last call).
    pub fn received_tone_last_call(&self, hz: f64) -> Result<f64, String> {
        let files = self.received_wav_files();
        let last = files
            .last()
            .ok_or_else(|| format!("{}: no received audio dump yet", self.spec.user))?;
        super::audio::tone_seconds(last, hz)
    }

    /// Stops baresip: SIGTERM (it un-registers), 2 s grace, then SIGKILL.
    pub fn stop(&mut self) {
        let _ = self.guard.stop(Duration::from_secs(2));
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.ctrl.shutdown(std::net::Shutdown::Both);
        self.stop();
    }
}

/// A free port whose successor is free too: baresip listens on UDP and TCP at `sip_listen` and
/// on TLS at the next port.
fn sip_port_pair() -> u16 {
    loop {
        let p = crate::ports::free_port();
        // free_port hands out increasing candidates: the next one is usually p + 1.
        if crate::ports::free_port() == p.wrapping_add(1) {
            return p;
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A distinct RTP port range per phone of this process (baresip picks inside it and retries on
/// a busy port), below the relay's media ports and away from the SIP ports of the tests.
fn rtp_ports() -> (u16, u16) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let slot = (std::process::id() % 64 * 40 + n) % 2500;
    let min = 35_000 + slot * 10;
    (min as u16, (min + 9) as u16)
}

/// Connects to the control socket, from inside `netns` if given (a short-lived thread enters
/// the namespace; the socket stays usable from any thread).
fn connect(netns: Option<&str>, addr: SocketAddr) -> Result<TcpStream, String> {
    let Some(ns) = netns else {
        return TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(|e| e.to_string());
    };
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on a valid namespace fd; it only changes this (short-lived) thread's
        // network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "namespace connect thread panicked".to_string())?
}

/// Reader thread: splits the stream into netstrings and files them in the inbox.
fn read_netstrings(mut sock: TcpStream, inbox: Arc<(Mutex<Inbox>, Condvar)>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    let why = loop {
        match sock.read(&mut chunk) {
            Ok(0) => break "end of stream".to_string(),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Err(e) => break e.to_string(),
        }
        while let Some(colon) = buf.iter().position(|&b| b == b':') {
            let Some(len) = std::str::from_utf8(buf.get(..colon).unwrap_or(&[]))
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
            else {
                // Not a netstring: drop a byte and resynchronise.
                buf.remove(0);
                continue;
            };
            if buf.len() < colon + 1 + len + 1 {
                break;
            }
            let item = String::from_utf8_lossy(buf.get(colon + 1..colon + 1 + len).unwrap_or(&[]))
                .into_owned();
            buf.drain(..colon + 1 + len + 1);
            let (lock, cv) = &*inbox;
            lock.lock()
                .unwrap_or_else(|p| p.into_inner())
                .items
                .push(item);
            cv.notify_all();
        }
    };
    let (lock, cv) = &*inbox;
    lock.lock().unwrap_or_else(|p| p.into_inner()).closed = Some(why);
    cv.notify_all();
}

fn json_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The string value of `"key":"..."` in a flat JSON object (escapes decoded minimally).
fn json_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = json.get(start..)?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(ch);
                    }
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Files of `dir` ending in `suffix`, sorted by name (their names carry the start time).
fn dumps(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The last 4000 bytes of a baresip log with the call status lines (`[0:00:03] audio=64000/64000
/// (bit/s)`, rewritten in place many times a second) removed.
fn log_tail(path: &Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let mut clean = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("[0:") {
        clean.push_str(rest.get(..i).unwrap_or(""));
        let after = rest.get(i..).unwrap_or("");
        match after.find("(bit/s)") {
            Some(j) if j < 80 => {
                rest = after.get(j + "(bit/s)".len()..).unwrap_or("");
                rest = rest.trim_start_matches([' ', '\r']);
            }
            _ => {
                clean.push_str("[0:");
                rest = after.get(3..).unwrap_or("");
            }
        }
    }
    clean.push_str(rest);
    let start = clean.len().saturating_sub(4000);
    let start = (start..clean.len())
        .find(|&i| clean.is_char_boundary(i))
        .unwrap_or(clean.len());
    format!(
        "baresip log {} (tail):\n{}",
        path.display(),
        clean.get(start..).unwrap_or("")
    )
}
