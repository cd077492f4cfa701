//! Graceful drain (issue 10): SIGTERM while 200 calls with media are up. Every call ends
//! normally (its BYE through the edge, audio until then), a new INVITE gets 503 with
//! Retry-After, the edge exits 0 by itself once the last call is over, and the location store
//! it flushed reloads every binding on the next start.

use e2e::attacker::{request, Peer};
use e2e::edge::{start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::ports::{free_port, ACCESS_IP, CORE_IP};
use e2e::relay::{relay_or_skip, Relay};
use e2e::sipp::{failure_report, register_through, Scenario, Sipp};
use e2e::tools::{edge_tools_or_skip, rtp_call_scenario};
use e2e::workdir::WorkDir;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BINDINGS: u32 = 50;
const CALLS: u32 = 200;

#[test]
fn sigterm_drains_200_calls_with_media_then_exits_0_and_keeps_bindings() {
    let test = "sigterm_drains_200_calls_with_media_then_exits_0_and_keeps_bindings";
    let (Some(tools), Some(relay_bin)) = (edge_tools_or_skip(test), relay_or_skip(test)) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let relay = Relay::start(&relay_bin, &dir, &["--ports", "20000-21999"])
        .unwrap_or_else(|f| panic!("{test}: relay: {} {}", f.message, f.log));
    let core = SocketAddr::from((CORE_IP, free_port()));
    let ctl = relay.control_addr().to_string();
    let args = EdgeArgs::udp_core(core).extra(&["--media-mode", "always", "--relay", &ctl]);
    let mut edge = start_or_panic(&tools.edge, &dir, &args);
    let limit = Duration::from_secs(60);

    // Bindings first: phones register through the edge to a SIPp registrar at the core address.
    let outcomes = register_through(&tools.sipp, &dir, edge.sip_addr(), core, BINDINGS, 100);
    if let Some(msg) = failure_report(test, &outcomes) {
        panic!("{msg}{}", edge.report());
    }

    // 200 calls with 5 s of audio each, all up within 2 s; the core echoes the audio.
    let uac_xml = rtp_call_scenario(dir.path());
    let uas = Sipp::new(&tools.sipp, "uas", Scenario::Builtin("uas"))
        .ip(CORE_IP)
        .local_port(core.port())
        .calls(CALLS)
        .timeout(limit)
        .arg("-rtp_echo")
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let uac = Sipp::new(&tools.sipp, "uac", Scenario::File(uac_xml))
        .ip(ACCESS_IP)
        .remote(edge.sip_addr())
        .calls(CALLS)
        .rate(100)
        .timeout(limit)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    // Wait until every call is anchored (one relay session each), then stop the edge.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = 0.0;
    while Instant::now() < deadline {
        up = relay.metric_sum("rtprelay_sessions", &[]);
        if up >= f64::from(CALLS) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        up >= f64::from(CALLS),
        "{test}: only {up} calls up\n{}",
        edge.report()
    );
    let term_at = Instant::now();
    edge.terminate();
    std::thread::sleep(Duration::from_millis(200));

    // A new call while draining: 503 with Retry-After, nothing toward the core.
    let phone = Peer::bind(ACCESS_IP, 0);
    let cid = format!("drain-new-{}", std::process::id());
    let inv = request(
        "INVITE",
        "sip:bob@example.test",
        phone.addr,
        "drain1",
        &cid,
        "dn",
        None,
        1,
        &[format!("Contact: <sip:new@{}>", phone.addr)],
        "",
    );
    phone.send(&inv, edge.sip_addr());
    let answer = phone
        .recv_where(Duration::from_secs(3), |m| m.call_id() == cid)
        .unwrap_or_else(|| {
            panic!(
                "{test}: no answer to a new INVITE while draining\n{}",
                edge.report()
            )
        });
    assert_eq!(answer.status(), Some(503), "{test}: {}", answer.text);
    assert!(
        answer.header("retry-after").is_some(),
        "{test}: {}",
        answer.text
    );

    // Every call in progress ends normally through the draining edge.
    let outcomes = vec![uac.wait(), uas.wait()];
    if let Some(msg) = failure_report(test, &outcomes) {
        panic!("{msg}{}", edge.report());
    }
    let status = edge.wait_exit(Duration::from_secs(30));
    let drained_in = term_at.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{test}: the edge did not exit 0 after the drain\n{}",
        edge.report()
    );
    let log = edge.log_text();
    assert!(log.contains("drain complete"), "{test}: {log}");
    assert_eq!(
        relay.metric_sum("rtprelay_sessions", &[]),
        0.0,
        "{test}: relay sessions left"
    );
    // Audio until the end: each call's stream was deleted by its BYE with (nearly) all of its
    // 5 s (250 packets) each way.
    let ended = relay.ended_streams();
    assert_eq!(ended.len(), CALLS as usize, "{test}: streams ended");
    for (call, (reason, a, b)) in &ended {
        assert!(
            reason == "Deleted" && *a >= 225 && *b >= 225,
            "{test}: call {call}: {reason}, {a} and {b} packets"
        );
    }

    // The next start reloads every binding from the store the drain flushed.
    let edge2 = start_or_panic(&tools.edge, &dir, &args);
    let loaded = edge2
        .log_text()
        .lines()
        .find(|l| l.contains("location store loaded"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        loaded.contains(&format!("bindings={BINDINGS}")),
        "{test}: {loaded}"
    );
    eprintln!(
        "{test}: PASS {CALLS} calls up at SIGTERM all completed, new INVITE 503 + Retry-After, exit 0 after {drained_in:?}; restart: {}",
        loaded.trim()
    );
}
