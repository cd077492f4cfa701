//! Interop: Kamailio 5.6's `rtpproxy` module drives rtprelay. SIPp uac → Kamailio → SIPp uas,
//! with `rtpproxy_offer` on the INVITE, `rtpproxy_answer` on the 200 and `unforce_rtp_proxy`
//! on the BYE (tests/kamailio/relay.cfg). The SIPp scenarios (tests/kamailio/*.xml) check that
//! both SDPs were rewritten to the relay; the relay's /metrics must count the U, L and D.
//!
//! A small recording proxy sits between Kamailio and the relay's control port so the test
//! keeps (in its work dir, `control.log`) exactly what the module sends and what it got back.
//! Skipped with a message when kamailio, sipp or the rtprelay binary is missing.

use e2e::process::ChildGuard;
use e2e::relay::{relay_or_skip, Relay};
use e2e::sipp::{self, Scenario, Sipp};
use e2e::workdir::{tail, WorkDir};
use e2e::{ports, sip_probe, tools};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const KAMAILIO: &str = "/usr/sbin/kamailio";
const CALLS: u32 = 20;

fn kamailio_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kamailio")
}

/// A UDP proxy for control datagrams that records every command and reply. Replies are routed
/// back by cookie (unique per command in flight).
struct Recorder {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    fn start(relay: SocketAddr) -> Recorder {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        front.set_nonblocking(true).unwrap();
        back.set_nonblocking(true).unwrap();
        let addr = front.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut clients: HashMap<Vec<u8>, SocketAddr> = HashMap::new();
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                let mut idle = true;
                if let Ok((n, from)) = front.recv_from(&mut buf) {
                    idle = false;
                    let d = &buf[..n];
                    let cookie = d.split(|b| *b == b' ').next().unwrap_or_default().to_vec();
                    clients.insert(cookie, from);
                    l.lock()
                        .unwrap()
                        .push(format!("> {}", String::from_utf8_lossy(d).escape_debug()));
                    let _ = back.send_to(d, relay);
                }
                if let Ok((n, _)) = back.recv_from(&mut buf) {
                    idle = false;
                    let d = &buf[..n];
                    l.lock()
                        .unwrap()
                        .push(format!("< {}", String::from_utf8_lossy(d).escape_debug()));
                    let cookie = d.split(|b| *b == b' ').next().unwrap_or_default();
                    if let Some(to) = clients.get(cookie) {
                        let _ = front.send_to(d, to);
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Recorder {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Write the config for these ports and start Kamailio in the foreground; waits until it
/// answers OPTIONS.
fn start_kamailio(
    dir: &WorkDir,
    sip: SocketAddr,
    relay: SocketAddr,
    uas: SocketAddr,
) -> (ChildGuard, PathBuf) {
    let template = std::fs::read_to_string(kamailio_dir().join("relay.cfg")).unwrap();
    let cfg = template
        .replace("@SIP_PORT@", &sip.port().to_string())
        .replace("@RELAY_PORT@", &relay.port().to_string())
        .replace("@UAS_PORT@", &uas.port().to_string());
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let log = dir.path().join("kamailio.log");
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(KAMAILIO)
        .arg("-f")
        .arg(&cfg_path)
        .args(["-DD", "-E", "-m", "32", "-M", "4"])
        .arg("-Y")
        .arg(&run_dir)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn kamailio");
    let mut guard = ChildGuard::new("kamailio", child);
    if let Err(e) =
        sip_probe::wait_for_200(std::net::Ipv4Addr::LOCALHOST, sip, Duration::from_secs(15))
    {
        let state = guard.try_wait();
        panic!(
            "kamailio not ready ({e}), exit {state:?}\nlog:\n{}",
            tail(&log, 4000)
        );
    }
    (guard, log)
}

fn tools_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    if !Path::new(KAMAILIO).is_file() {
        e2e::skip::skip(
            test,
            format!("{KAMAILIO} not found (install the kamailio package)"),
        );
        return None;
    }
    let relay = relay_or_skip(test)?;
    let sipp = tools::sipp_or_skip(test)?;
    Some((relay, sipp))
}

#[test]
fn relay_kamailio_rtpproxy_module_drives_calls() {
    let test = "relay_kamailio_rtpproxy_module_drives_calls";
    let Some((relay_bin, sipp_bin)) = tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let relay = Relay::start(&relay_bin, &dir, &["--log-level", "debug"])
        .unwrap_or_else(|f| panic!("rtprelay did not start: {}\n{}", f.message, f.log));
    let recorder = Recorder::start(relay.control_addr());

    let uas = Sipp::new(
        &sipp_bin,
        "uas",
        Scenario::File(kamailio_dir().join("uas_relay.xml")),
    )
    .calls(CALLS)
    .timeout(Duration::from_secs(60))
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"));
    let sip = SocketAddr::from(([127, 0, 0, 1], ports::free_port()));
    let (mut kamailio, kamailio_log) = start_kamailio(&dir, sip, recorder.addr, uas.local_addr());
    let uac = Sipp::new(
        &sipp_bin,
        "uac",
        Scenario::File(kamailio_dir().join("uac_relay.xml")),
    )
    .remote(sip)
    .calls(CALLS)
    .rate(10)
    .timeout(Duration::from_secs(60))
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"));
    let outcomes = vec![uac.wait(), uas.wait()];
    let control = recorder.lines();
    std::fs::write(dir.path().join("control.log"), control.join("\n")).unwrap();
    let context = || {
        let log = relay.log_text();
        format!(
            "--- rtprelay log (tail) ---\n{}\n--- kamailio log ---\n{}\n--- control (first 40) ---\n{}",
            log.get(log.len().saturating_sub(3000)..).unwrap_or_default(),
            tail(&kamailio_log, 3000),
            control.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
        )
    };
    if let Some(msg) = sipp::failure_report(test, &outcomes) {
        panic!("{msg}{}", context());
    }
    for o in &outcomes {
        let c = o.counts.unwrap_or_default();
        assert_eq!(
            (c.successful, c.failed),
            (u64::from(CALLS), 0),
            "{}",
            o.summary()
        );
    }

    // The relay executed one U, one L and one D per call.
    let n = f64::from(CALLS);
    for cmd in ["U", "L", "D"] {
        let v = relay.wait_metric(
            "rtprelay_control_commands_total",
            &[("command", cmd), ("result", "ok")],
            n,
            Duration::from_secs(5),
        );
        assert_eq!(v, n, "relay counted {v} {cmd} commands\n{}", context());
    }
    assert_eq!(
        relay.metric_sum("rtprelay_control_commands_total", &[("result", "error")]),
        0.0,
        "{}",
        context()
    );
    assert_eq!(
        relay.metric_sum("rtprelay_streams", &[]),
        0.0,
        "{}",
        context()
    );
    // What the module sent, as seen on the wire (cookie, command letter + modifiers).
    let sent: Vec<&String> = control.iter().filter(|l| l.starts_with("> ")).collect();
    for letter in ['U', 'L', 'D'] {
        assert!(
            sent.iter()
                .any(|l| l.split(' ').nth(2).is_some_and(|c| c.starts_with(letter))),
            "no {letter} command on the wire:\n{}",
            control.join("\n")
        );
    }
    assert!(kamailio.is_running(), "kamailio died\n{}", context());
}
