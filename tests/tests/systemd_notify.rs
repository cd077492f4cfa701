//! systemd integration (issue 10): each daemon started as a `Type=notify` unit with `WatchdogSec=`
//! would start it — `NOTIFY_SOCKET` pointing at a socket this test owns, `WATCHDOG_USEC` set.
//! READY=1 arrives, and at that moment the ports already answer; WATCHDOG=1 keeps arriving; an
//! event loop blocked on purpose (the `SBC_TEST_STALL_AFTER_S` hook) stops the WATCHDOG
//! messages, which is what gets a stuck process restarted.

use e2e::ports::{free_port, CORE_IP, EDGE_IP};
use e2e::process::ChildGuard;
use e2e::relay::{free_media_block, relay_or_skip};
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 1 s: WATCHDOG=1 every 0.5 s.
const WATCHDOG_USEC: &str = "1000000";
const STALL_AFTER_S: u64 = 4;

/// Messages on `sock` until `until`.
fn messages(sock: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
}

/// Starts `bin` as a `Type=notify` unit with `WatchdogSec=1` would, plus the stall hook; its
/// output goes to `<name>.log` in `dir`.
fn spawn_as_unit(
    bin: &std::path::Path,
    name: &str,
    args: &[String],
    dir: &WorkDir,
    notify: &str,
) -> (ChildGuard, std::path::PathBuf) {
    let log = dir.path().join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(bin)
        .args(args)
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env("SBC_TEST_STALL_AFTER_S", STALL_AFTER_S.to_string())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    (ChildGuard::new(name, child), log)
}

fn notify_socket(dir: &WorkDir) -> (UnixDatagram, String) {
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    (sock, path.display().to_string())
}

/// Runs the daemon's side of the test once it is spawned: READY then `answers` must hold,
/// WATCHDOG=1 keeps coming until the stall, then stops.
fn check(
    test: &str,
    mut child: ChildGuard,
    sock: UnixDatagram,
    log: &std::path::Path,
    answers: impl Fn() -> bool,
) {
    let started = Instant::now();
    let fail = |what: String, child: &mut ChildGuard| -> ! {
        let _ = child.try_wait();
        panic!(
            "{test}: {what}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    };
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    let ready = loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.contains("READY=1") {
                    break m;
                }
            }
            Err(e) => fail(format!("no READY=1 within 15 s: {e}"), &mut child),
        }
    };
    let ready_after = started.elapsed();
    if !answers() {
        fail(
            format!("READY=1 ({ready:?}) but the ports do not answer yet"),
            &mut child,
        );
    }
    // Until the stall: WATCHDOG=1 at least every 0.5 s (allow scheduling slack).
    let stall_at = started + Duration::from_secs(STALL_AFTER_S);
    let before = messages(&sock, stall_at - Duration::from_millis(200));
    let dogs: Vec<Instant> = before
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    let window =
        (stall_at - Duration::from_millis(200)).saturating_duration_since(started + ready_after);
    let expect = (window.as_millis() / 500) as usize;
    if dogs.len() + 1 < expect || dogs.is_empty() {
        fail(
            format!(
                "{} WATCHDOG=1 in {window:?} before the stall (want about {expect})",
                dogs.len()
            ),
            &mut child,
        );
    }
    // The loop blocks at STALL_AFTER_S (+ at most one tick): give it 1 s, then nothing may come.
    let _ = messages(&sock, stall_at + Duration::from_millis(1000));
    let after = messages(&sock, stall_at + Duration::from_millis(3500));
    let late = after.iter().filter(|(_, m)| m == "WATCHDOG=1").count();
    if late != 0 {
        fail(
            format!("{late} WATCHDOG=1 while the event loop is blocked"),
            &mut child,
        );
    }
    eprintln!(
        "{test}: PASS READY=1 after {ready_after:?} ({}), ports answering; {} WATCHDOG=1 before the stall, 0 in the 2.5 s after it",
        ready.replace('\n', " | "),
        dogs.len()
    );
}

#[test]
fn edge_notifies_ready_and_feeds_the_watchdog_from_its_loop() {
    let test = "edge_notifies_ready_and_feeds_the_watchdog_from_its_loop";
    let Some(bin) = edge_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let (sock, path) = notify_socket(&dir);
    let sip = SocketAddr::from((EDGE_IP, free_port()));
    let admin = SocketAddr::from((EDGE_IP, free_port()));
    let core = SocketAddr::from((CORE_IP, free_port()));
    let args = [
        "--listen-udp".to_string(),
        sip.to_string(),
        "--admin".into(),
        admin.to_string(),
        "--core".into(),
        format!("udp:{core}"),
        "--media-mode".into(),
        "never".into(),
        "--health-interval".into(),
        "0".into(),
    ];
    let (child, log) = spawn_as_unit(&bin, "edge", &args, &dir, &path);
    let answers = || {
        let s = UdpSocket::bind((EDGE_IP, 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let me = s.local_addr().expect("addr");
        let options = format!(
            "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsd1\r\nMax-Forwards: 70\r\n\
From: <sip:probe@{me}>;tag=1\r\nTo: <sip:{sip}>\r\nCall-ID: sdnotify\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
        );
        s.send_to(options.as_bytes(), sip).expect("send");
        let mut buf = [0u8; 2048];
        s.recv(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"SIP/2.0 200"))
    };
    check(test, child, sock, &log, answers);
}

#[test]
fn rtprelay_notifies_ready_and_the_watchdog_watches_its_shards() {
    let test = "rtprelay_notifies_ready_and_the_watchdog_watches_its_shards";
    let Some(bin) = relay_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let (sock, path) = notify_socket(&dir);
    let control = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (lo, hi) = free_media_block();
    let args = [
        "--control-udp".to_string(),
        control.to_string(),
        "--admin".into(),
        admin.to_string(),
        "--ports".into(),
        format!("{lo}-{hi}"),
    ];
    let (child, log) = spawn_as_unit(&bin, "rtprelay", &args, &dir, &path);
    let answers = || {
        let s = UdpSocket::bind(("127.0.0.1", 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s.send_to(b"sd1 V", control).expect("send");
        let mut buf = [0u8; 256];
        s.recv(&mut buf)
            .is_ok_and(|n| &buf[..n] == b"sd1 20040107\n")
    };
    check(test, child, sock, &log, answers);
}
