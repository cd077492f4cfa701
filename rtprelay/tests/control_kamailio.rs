//! Interop: Kamailio's `rtpproxy` module driving the control server (fake media plane).
//!
//! Kamailio probes `V` and `VF 20050322` at startup, then for a call sipp places through it
//! sends `U` (INVITE), `L` (200 OK) and `D` (BYE): over UDP (cookies) and over a `unix:`
//! socket (one command per connection, no newline).
//! Skips (passes with a message) when `kamailio` or `sipp` is not installed.

#[path = "../../tests/src/skip.rs"]
mod skip;
use config::ControlConfig;
use prometheus::Registry;
use rtprelay::control::fake::{FakeBackend, FakeCalls};
use rtprelay::control::server::Server;
use rtprelay::control::{ControlMetrics, SessionConfig};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

fn installed(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the child's whole process group (Kamailio forks workers) when the test ends, pass
/// or fail: SIGTERM, then SIGKILL if it lingers.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let Ok(pgid) = i32::try_from(self.0.id()) else {
            return;
        };
        // SAFETY: kill(2) with a negative pid signals the group this test created
        // (`process_group(0)` below); no memory is involved.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Start `cmd` as the leader of a new process group.
fn spawn_group(cmd: &mut Command) -> Reap {
    Reap(cmd.process_group(0).spawn().expect("spawn"))
}

fn kamailio_cfg(sip: u16, uas: u16, control: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{sip}
mpath="{MODULES}/"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "rtpproxy.so"
modparam("rtpproxy", "rtpproxy_sock", "{control}")
modparam("rtpproxy", "rtpproxy_tout", 1)

request_route {{
    if (has_totag()) {{
        # sipp's built-in scenarios ignore Record-Route: send in-dialog requests on directly.
        if (is_method("BYE")) {{ rtpproxy_destroy(); }}
        loose_route();
        $du = "sip:127.0.0.1:{uas}";
        t_relay();
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        if (!rtpproxy_offer()) {{ sl_send_reply("500", "relay offer failed"); exit; }}
        t_on_reply("ANSWER");
    }}
    $du = "sip:127.0.0.1:{uas}";
    t_relay();
}}

onreply_route[ANSWER] {{
    if (status =~ "^2" && has_body("application/sdp")) {{
        rtpproxy_answer();
    }}
}}
"#
    )
}

fn wait_for(path: &Path, needle: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_over_udp() {
    kamailio_call(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_over_unix_socket() {
    kamailio_call(true).await;
}

async fn kamailio_call(unix: bool) {
    if !installed("kamailio")
        || !installed("sipp")
        || !Path::new(MODULES).join("rtpproxy.so").exists()
    {
        skip::skip(
            "kamailio_call",
            "kamailio (with rtpproxy.so) or sipp not installed (packages kamailio, sip-tester)",
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("rtprelay-kam-{}-{unix}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let ctl_port = free_udp_port();
    let cfg = ControlConfig {
        udp: Some(format!("127.0.0.1:{ctl_port}").parse().unwrap()),
        unix: unix.then(|| dir.join("ctl.sock").to_string_lossy().into_owned()),
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        reply_cache_s: 30,
        ..ControlConfig::default()
    };
    let backend = FakeBackend::new(30000, 64);
    let calls = backend.calls();
    let metrics = ControlMetrics::register(&Registry::new()).unwrap();
    let session = SessionConfig {
        internal: [127, 0, 0, 1].into(),
        advertise: None,
        external: None,
        timeout: Duration::from_secs(60),
        max_sessions: 100,
        media_ports: (30000, 30127),
        quotas: Default::default(),
    };
    let server = Server::bind(&cfg, session, Box::new(backend), metrics.clone())
        .await
        .unwrap();
    let task = tokio::spawn(server.serve());

    let (sip, uas, uac) = (free_udp_port(), free_udp_port(), free_udp_port());
    let cfg_path = dir.join("kamailio.cfg");
    let sock = if unix {
        format!("unix:{}", dir.join("ctl.sock").display())
    } else {
        format!("udp:127.0.0.1:{ctl_port}")
    };
    std::fs::write(&cfg_path, kamailio_cfg(sip, uas, &sock)).unwrap();
    let log = dir.join("kamailio.log");
    let _kam = spawn_group(
        Command::new("kamailio")
            .args(["-DD", "-E", "-f"])
            .arg(&cfg_path)
            .args(["-Y", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    assert!(
        wait_for(&log, "support for it enabled", Duration::from_secs(15)),
        "Kamailio did not accept the relay: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let _uas = spawn_group(
        Command::new("sipp")
            .args([
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &uas.to_string(),
                "-m",
                "1",
                "-nostdin",
            ])
            .args(["-timeout", "30s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let uac = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .args([
                "-sn",
                "uac",
                &format!("127.0.0.1:{sip}"),
                "-i",
                "127.0.0.1",
                "-p",
                &uac.to_string(),
            ])
            .args([
                "-m",
                "1",
                "-timeout",
                "30s",
                "-timeout_error",
                "-nostdin",
                "-d",
                "200",
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let kam_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        uac.status.success(),
        "sipp uac failed ({}): {}{}\nkamailio log:\n{kam_log}",
        uac.status,
        String::from_utf8_lossy(&uac.stdout),
        String::from_utf8_lossy(&uac.stderr)
    );

    // INVITE → U (create), 200 OK → L (update of leg B), BYE → D (remove).
    assert_eq!(FakeCalls::get(&calls.create), 1, "{kam_log}");
    assert!(FakeCalls::get(&calls.update) >= 1, "{kam_log}");
    assert_eq!(FakeCalls::get(&calls.remove), 1, "{kam_log}");
    // Every Kamailio worker probes the relay once.
    assert!(metrics.commands.with_label_values(&["V", "ok"]).get() >= 1);
    assert!(metrics.commands.with_label_values(&["VF", "ok"]).get() >= 1);
    assert_eq!(metrics.commands.with_label_values(&["U", "ok"]).get(), 1);
    assert_eq!(metrics.commands.with_label_values(&["L", "ok"]).get(), 1);
    assert_eq!(metrics.commands.with_label_values(&["D", "ok"]).get(), 1);
    // No call left (streams are counted per shard by the media plane, faked here).
    assert_eq!(metrics.sessions.get(), 0);
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
