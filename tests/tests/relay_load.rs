//! `rtpload` end to end: a small, bounded load through the rtprelay binary (both datapaths)
//! and, when installed, through rtpengine's `--listen-udp` interface — the same codec driving
//! both relays. Every packet must arrive and the report must be consistent.

use e2e::process::ChildGuard;
use e2e::relay::{relay_or_skip, Relay};
use e2e::tools::workspace_bin;
use e2e::workdir::WorkDir;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Fits the 64-port media block of the harness (4 ports per stream; 16 streams at most).
const STREAMS: u32 = 10;
const PPS: u32 = 50;
const SECONDS: u32 = 2;

fn rtpload_or_skip(test: &str) -> Option<PathBuf> {
    let found = workspace_bin("rtpload");
    if found.is_none() {
        e2e::skip::skip(
            test,
            "rtpload not found next to the test executable (run `cargo build -p bench` first)",
        );
    }
    found
}

/// One numeric field of rtpload's flat JSON report.
fn field(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"));
    json[at + key.len()..]
        .split([',', '}'])
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not a number in {json}"))
}

/// Run rtpload against `control` and return its JSON report.
fn run_load(bin: &Path, control: SocketAddr, pid: Option<u32>) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(["--control", &control.to_string()])
        .args(["-n", &STREAMS.to_string(), "-p", &PPS.to_string()])
        .args(["-d", &SECONDS.to_string(), "--json"]);
    if let Some(pid) = pid {
        cmd.args(["--relay-pid", &pid.to_string()]);
    }
    let out = cmd.output().expect("run rtpload");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rtpload failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_clean(json: &str) {
    let sent = f64::from(STREAMS * PPS * SECONDS * 2);
    assert_eq!(field(json, "streams"), f64::from(STREAMS), "{json}");
    assert_eq!(field(json, "setup_failed"), 0.0, "{json}");
    assert_eq!(field(json, "delete_failed"), 0.0, "{json}");
    assert_eq!(field(json, "sent"), sent, "{json}");
    assert_eq!(field(json, "received"), sent, "{json}");
    assert_eq!(field(json, "lost"), 0.0, "{json}");
    assert_eq!(field(json, "strays"), 0.0, "{json}");
    assert!(field(json, "latency_p50_us") > 0.0, "{json}");
}

fn through_rtprelay(datapath: &str) {
    let test = format!("relay_load_{datapath}");
    let (Some(relay_bin), Some(load)) = (relay_or_skip(&test), rtpload_or_skip(&test)) else {
        return;
    };
    // Zero loss is asserted: never share the 2 CPUs with another load test.
    let _serial = e2e::heavy_lock();
    let dir = WorkDir::new(&test);
    let relay = match Relay::start(&relay_bin, &dir, &["--datapath", datapath]) {
        Ok(r) => r,
        Err(f) if datapath == "io_uring" && f.log.contains("io_uring datapath unavailable") => {
            e2e::skip::skip(&test, format!("io_uring could not be set up:\n{}", f.log));
            return;
        }
        Err(f) => panic!("rtprelay did not start: {}\n{}", f.message, f.log),
    };
    let json = run_load(&load, relay.control_addr(), relay.pid());
    assert_clean(&json);
    // The relay agrees: it forwarded exactly what rtpload received, and D left nothing open.
    let sent = f64::from(STREAMS * PPS * SECONDS * 2);
    assert_eq!(
        relay.wait_metric(
            "rtprelay_packets_forwarded_total",
            &[],
            sent,
            Duration::from_secs(5)
        ),
        sent
    );
    assert_eq!(relay.metric_sum("rtprelay_streams", &[]), 0.0);
    assert!(json.contains("\"relay_process\":{\"pid\":"), "{json}");
    assert!(field(&json, "rss_per_stream_bytes") >= 0.0);
}

#[test]
fn relay_load_fallback() {
    through_rtprelay("fallback");
}

#[test]
fn relay_load_io_uring() {
    through_rtprelay("io_uring");
}

#[test]
fn relay_load_rtpengine() {
    let test = "relay_load_rtpengine";
    let Some(load) = rtpload_or_skip(test) else {
        return;
    };
    let _serial = e2e::heavy_lock();
    let rtpengine = Path::new("/usr/bin/rtpengine");
    if !rtpengine.is_file() {
        e2e::skip::skip(test, "/usr/bin/rtpengine not installed");
        return;
    }
    let dir = WorkDir::new(test);
    let control = e2e::ports::free_addr(std::net::Ipv4Addr::LOCALHOST);
    let (min, max) = e2e::relay::free_media_block();
    let log = dir.path().join("rtpengine.log");
    let out = std::fs::File::create(&log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(rtpengine)
        .args(["--config-file=none", "--table=-1", "--interface=127.0.0.1"])
        .arg(format!("--listen-udp={control}"))
        .args(["--foreground", "--log-stderr"])
        .arg(format!("--port-min={min}"))
        .arg(format!("--port-max={max}"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn rtpengine");
    let mut guard = ChildGuard::new("rtpengine", child);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        guard.is_running(),
        "rtpengine exited:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let json = run_load(&load, control, guard.pid());
    assert_clean(&json);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("Failed to properly parse"),
        "rtpengine could not parse our commands:\n{text}"
    );
}
