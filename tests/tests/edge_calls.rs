//! Call load through the edge: SIPp's built-in `uac` → edge → built-in `uas`, 2,000 calls at
//! 200 calls/s with no failed call, over UDP and over TCP; then the edge's /metrics must count
//! what went through it.
//!
//! The uac is on the access side (ACCESS_IP), the uas is the core (CORE_IP). The built-in uac sends ACK and BYE to the remote host (the edge) with the edge in the
//! Request-URI; the edge forwards access-side requests to its first core, so the whole dialog
//! reaches the uas.

use e2e::edge::{assert_calls_ok, start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics::{self, Sample};
use e2e::ports::{ACCESS_IP, CORE_IP};
use e2e::sipp::{Scenario, Sipp, Transport};
use e2e::tools::edge_tools_or_skip;
use e2e::workdir::WorkDir;
use std::time::Duration;

const CALLS: u32 = 2_000;
const RATE: u32 = 200;

/// Runs the load and returns the edge's metrics afterwards.
fn load_through_edge(test: &str, transport: Transport) -> Option<Vec<Sample>> {
    let tools = edge_tools_or_skip(test)?;
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let limit = Duration::from_secs(120);
    let uas = Sipp::new(&tools.sipp, "uas", Scenario::Builtin("uas"))
        .ip(CORE_IP)
        .transport(transport)
        .calls(CALLS)
        .timeout(limit)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let (scheme, tcp) = match transport {
        Transport::Udp => ("udp", false),
        Transport::Tcp => ("tcp", true),
    };
    let args = EdgeArgs {
        tcp,
        cores: vec![format!("{scheme}:{}", uas.local_addr())],
        extra: Vec::new(),
    };
    let mut edge = start_or_panic(&tools.edge, &dir, &args);
    let uac = Sipp::new(&tools.sipp, "uac", Scenario::Builtin("uac"))
        .ip(ACCESS_IP)
        .transport(transport)
        .remote(edge.sip_addr())
        .calls(CALLS)
        .rate(RATE)
        .timeout(limit)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let outcomes = vec![uac.wait(), uas.wait()];
    assert_calls_ok(test, &outcomes, &mut edge);
    for o in &outcomes {
        let counts = o.counts.unwrap_or_default();
        assert_eq!(
            (counts.successful, counts.failed),
            (u64::from(CALLS), 0),
            "{test}: {}",
            o.summary()
        );
    }
    assert!(edge.is_running(), "{test}: edge died\n{}", edge.report());
    Some(
        edge.metrics()
            .unwrap_or_else(|e| panic!("{test}: /metrics: {e}\n{}", edge.report())),
    )
}

/// Asserts that the samples of `name` with labels `want` add up to at least `min`.
fn at_least(test: &str, samples: &[Sample], name: &str, want: &[(&str, &str)], min: f64) {
    let got = metrics::sum(samples, name, want).unwrap_or(0.0);
    if got < min {
        let dump: Vec<String> = samples
            .iter()
            .filter(|s| s.name.starts_with("edge_"))
            .map(|s| format!("  {} {:?} {}", s.name, s.labels, s.value))
            .collect();
        panic!(
            "{test}: {name}{want:?} = {got}, expected >= {min}\nall edge_* samples:\n{}",
            dump.join("\n")
        );
    }
}

#[test]
fn udp_2000_calls_then_metrics_count_them() {
    let test = "udp_2000_calls_then_metrics_count_them";
    let Some(samples) = load_through_edge(test, Transport::Udp) else {
        return;
    };
    let calls = f64::from(CALLS);
    // Every call's INVITE, ACK and BYE came in from the uac and went out to the uas
    // (retransmissions may add a few, hence "at least").
    for method in ["INVITE", "ACK", "BYE"] {
        for direction in ["in", "out"] {
            let want = [("method", method), ("direction", direction)];
            at_least(test, &samples, "edge_sip_requests_total", &want, calls);
        }
    }
    // Per call the uas sends 180 and two 200s (INVITE, BYE), all relayed to the uac; the edge
    // itself may add a 100 Trying.
    for direction in ["in", "out"] {
        let prov = [("class", "1xx"), ("direction", direction)];
        at_least(test, &samples, "edge_sip_responses_total", &prov, calls);
        let ok = [("class", "2xx"), ("direction", direction)];
        at_least(test, &samples, "edge_sip_responses_total", &ok, 2.0 * calls);
    }
    assert!(
        metrics::sum(&samples, "edge_transactions_active", &[]).is_some(),
        "{test}: no edge_transactions_active gauge"
    );
    assert!(
        metrics::sum(&samples, "edge_sip_retransmissions_total", &[]).is_some(),
        "{test}: no edge_sip_retransmissions_total counter"
    );
}

#[test]
fn tcp_2000_calls() {
    let _ = load_through_edge("tcp_2000_calls", Transport::Tcp);
}
