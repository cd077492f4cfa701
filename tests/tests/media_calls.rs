//! Media anchoring end to end (issue 5): SIPp calls with 5 s of G.711 audio go through the edge
//! with `--media-mode always`; the edge drives a relay over the rtpproxy protocol (U on the
//! offer, L on the answer, D on BYE); the callee echoes the audio (`-rtp_echo`), so RTP crosses
//! the relay in both directions for every call. Run against our rtprelay and against stock
//! rtpengine (userspace, legacy `--listen-udp` interface). Afterwards no relay session and no
//! edge media dialog is left.

use e2e::edge::{assert_calls_ok, start_or_panic, Edge, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics;
use e2e::ports::{ACCESS_IP, CORE_IP};
use e2e::relay::{relay_or_skip, Relay};
use e2e::rtpengine::{self, Rtpengine};
use e2e::sipp::{Scenario, Sipp};
use e2e::tools::{edge_tools_or_skip, rtp_call_scenario, EdgeTools};
use e2e::workdir::WorkDir;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// 5 s of audio at 20 ms per packet.
const PACKETS_PER_DIRECTION: u64 = 250;

/// Runs `calls` calls with audio through the edge anchored on the relay at `relay`.
fn run_calls(
    test: &str,
    tools: &EdgeTools,
    dir: &WorkDir,
    relay: SocketAddr,
    calls: u32,
    rate: u32,
    extra: &[&str],
) -> Edge {
    let uac_xml = rtp_call_scenario(dir.path());
    let limit = Duration::from_secs(90);
    let uas = Sipp::new(&tools.sipp, "uas", Scenario::Builtin("uas"))
        .ip(CORE_IP)
        .calls(calls)
        .timeout(limit)
        .arg("-rtp_echo")
        .spawn(dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let relay = relay.to_string();
    let args = EdgeArgs::udp_core(uas.local_addr())
        .extra(&["--media-mode", "always", "--relay", &relay])
        .extra(extra);
    let mut edge = start_or_panic(&tools.edge, dir, &args);
    let uac = Sipp::new(&tools.sipp, "uac", Scenario::File(uac_xml))
        .ip(ACCESS_IP)
        .remote(edge.sip_addr())
        .calls(calls)
        .rate(rate)
        .timeout(limit)
        .spawn(dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let outcomes = vec![uac.wait(), uas.wait()];
    assert_calls_ok(test, &outcomes, &mut edge);
    edge
}

/// Packets each way must be (nearly) the whole 5 s of audio; a few may precede the answer.
fn assert_both_directions(test: &str, per_call: &HashMap<String, (u64, u64)>, calls: u32) {
    assert_eq!(
        per_call.len(),
        calls as usize,
        "{test}: calls seen by the relay"
    );
    for (call, (a, b)) in per_call {
        assert!(
            *a >= PACKETS_PER_DIRECTION * 9 / 10 && *b >= PACKETS_PER_DIRECTION * 9 / 10,
            "{test}: call {call}: {a} packets one way, {b} the other"
        );
    }
}

fn assert_no_media_dialogs(test: &str, edge: &Edge) {
    let samples = edge.metrics().unwrap_or_else(|e| panic!("{test}: {e}"));
    assert_eq!(metrics::sum(&samples, "edge_media_dialogs", &[]), Some(0.0));
    assert_eq!(
        metrics::sum(&samples, "edge_media_sessions", &[]),
        Some(0.0)
    );
}

#[test]
fn calls_with_audio_through_edge_and_rtprelay() {
    let test = "calls_with_audio_through_edge_and_rtprelay";
    let (Some(tools), Some(relay_bin)) = (edge_tools_or_skip(test), relay_or_skip(test)) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    // ~140 calls are up at once (25/s × 5.5 s), 4 ports each: below the ephemeral range.
    let relay = Relay::start(&relay_bin, &dir, &["--ports", "20000-21999"])
        .unwrap_or_else(|f| panic!("{test}: relay: {} {}", f.message, f.log));
    const CALLS: u32 = 200;
    let edge = run_calls(test, &tools, &dir, relay.control_addr(), CALLS, 25, &[]);

    // Every call's relay session ended by the edge's D, with audio both ways.
    let mut per_call = HashMap::new();
    for (call, (reason, a, b)) in relay.ended_streams() {
        assert_eq!(reason, "Deleted", "{test}: {call}");
        per_call.insert(call, (a, b));
    }
    assert_both_directions(test, &per_call, CALLS);
    let samples = relay.metrics().unwrap_or_else(|e| panic!("{test}: {e}"));
    for cmd in ["U", "L", "D"] {
        let ok = metrics::sum(
            &samples,
            "rtprelay_control_commands_total",
            &[("command", cmd), ("result", "ok")],
        )
        .unwrap_or(0.0);
        assert!(ok >= f64::from(CALLS), "{test}: {cmd} ok = {ok}");
    }
    assert_eq!(metrics::sum(&samples, "rtprelay_sessions", &[]), Some(0.0));
    assert_no_media_dialogs(test, &edge);
}

#[test]
fn calls_with_audio_through_edge_and_rtpengine() {
    let test = "calls_with_audio_through_edge_and_rtpengine";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    if !rtpengine::available(test) {
        return;
    }
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    // Userspace only (no kernel module here); calls deleted at once so the final stats are
    // logged.
    let engine = Rtpengine::start(&dir, [127, 0, 0, 1].into());
    let (control, log_path) = (engine.control, engine.log.clone());

    const CALLS: u32 = 40;
    // No liveness queries (`Q`): rtpengine 10.5 logs no "Final packet stats" for a call that
    // was queried, and those lines are what this test counts. (The calls themselves work with
    // the queries on: the edge's check is exercised against our relay in fault_relay.rs.)
    let edge = run_calls(
        test,
        &tools,
        &dir,
        control,
        CALLS,
        10,
        &["--media-check-interval", "0"],
    );
    std::thread::sleep(Duration::from_millis(500));

    // rtpengine logs "Final packet stats" per call: one Port line per side with "N p".
    let mut per_call: HashMap<String, (u64, u64)> = HashMap::new();
    for line in read(&log_path)
        .lines()
        .filter(|l| l.contains("--------- Port") && !l.contains("RTCP"))
    {
        let Some(call) = line.split("]: [").next().and_then(|s| s.rsplit('[').next()) else {
            continue;
        };
        let packets = line
            .split(", ")
            .find_map(|f| f.strip_suffix(" p"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let entry = per_call.entry(call.to_string()).or_default();
        if line.contains(&format!("<>       {}:", ACCESS_IP))
            || line.contains(&format!("<> {ACCESS_IP}:"))
        {
            entry.0 = packets;
        } else {
            entry.1 = packets;
        }
    }
    assert_both_directions(test, &per_call, CALLS);
    assert_no_media_dialogs(test, &edge);
}

fn read(path: &std::path::Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}
