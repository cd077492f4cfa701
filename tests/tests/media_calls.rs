//! Media anchoring end to end (issue 5): SIPp calls with 5 s of G.711 audio go through the edge
//! with `--media-mode always`, the edge drives a real rtprelay over the rtpproxy protocol
//! (U on the offer, L on the answer, D on BYE), the callee echoes the audio (`-rtp_echo`), so
//! RTP crosses the relay in both directions for every call. Afterwards the relay holds no
//! session and the edge no media dialog.

use e2e::edge::{assert_calls_ok, start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics;
use e2e::ports::{ACCESS_IP, CORE_IP};
use e2e::relay::{relay_or_skip, Relay};
use e2e::sipp::{Scenario, Sipp};
use e2e::tools::{edge_tools_or_skip, scenario};
use e2e::workdir::WorkDir;
use std::collections::HashMap;
use std::time::Duration;

const CALLS: u32 = 200;
const RATE: u32 = 25;
/// 5 s of audio at 20 ms per packet.
const PACKETS_PER_DIRECTION: u64 = 250;

#[test]
fn calls_with_audio_through_edge_and_relay() {
    let test = "calls_with_audio_through_edge_and_relay";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let Some(relay_bin) = relay_or_skip(test) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    // ~140 calls are up at once (25/s × 5.5 s), 4 ports each: below the ephemeral range.
    let relay = Relay::start(&relay_bin, &dir, &["--ports", "20000-21999"])
        .unwrap_or_else(|f| panic!("{test}: relay: {} {}", f.message, f.log));

    // The scenario plays a pcap by relative path: give it an absolute one.
    let pcap = scenario("pcap/g711a-5s.pcap");
    let text = std::fs::read_to_string(scenario("uac_rtp.xml")).expect("uac_rtp.xml");
    let uac_xml = dir.path().join("uac_rtp.xml");
    std::fs::write(
        &uac_xml,
        text.replace("pcap/g711a-5s.pcap", &pcap.display().to_string()),
    )
    .unwrap();

    let limit = Duration::from_secs(90);
    let uas = Sipp::new(&tools.sipp, "uas", Scenario::Builtin("uas"))
        .ip(CORE_IP)
        .calls(CALLS)
        .timeout(limit)
        .arg("-rtp_echo")
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let relay_addr = relay.control_addr().to_string();
    let args = EdgeArgs::udp_core(uas.local_addr()).extra(&[
        "--media-mode",
        "always",
        "--relay",
        &relay_addr,
    ]);
    let mut edge = start_or_panic(&tools.edge, &dir, &args);
    let uac = Sipp::new(&tools.sipp, "uac", Scenario::File(uac_xml))
        .ip(ACCESS_IP)
        .remote(edge.sip_addr())
        .calls(CALLS)
        .rate(RATE)
        .timeout(limit)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let outcomes = vec![uac.wait(), uas.wait()];
    assert_calls_ok(test, &outcomes, &mut edge);

    // Every call's relay session ended by the edge's D, with audio both ways.
    let log = relay.log_text();
    let mut per_call: HashMap<String, (u64, u64)> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("stream ended")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_string())
        };
        let call = field("call_id").unwrap_or_default();
        assert_eq!(
            field("reason").as_deref(),
            Some("Deleted"),
            "{test}: {line}"
        );
        let a: u64 = field("a_packets_in")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let b: u64 = field("b_packets_in")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        per_call.insert(call, (a, b));
    }
    assert_eq!(
        per_call.len(),
        CALLS as usize,
        "{test}: sessions seen by the relay"
    );
    for (call, (a, b)) in &per_call {
        // Allow a few packets lost at the very start (before the answer reached the relay).
        assert!(
            *a >= PACKETS_PER_DIRECTION * 9 / 10 && *b >= PACKETS_PER_DIRECTION * 9 / 10,
            "{test}: call {call}: {a} packets from the caller, {b} from the callee"
        );
    }
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
    let edge_samples = edge.metrics().unwrap_or_else(|e| panic!("{test}: {e}"));
    assert_eq!(
        metrics::sum(&edge_samples, "edge_media_dialogs", &[]),
        Some(0.0)
    );
    assert_eq!(
        metrics::sum(&edge_samples, "edge_media_sessions", &[]),
        Some(0.0)
    );
}
