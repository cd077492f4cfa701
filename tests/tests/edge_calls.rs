//! Call load through the edge: SIPp's built-in `uac` → edge → built-in `uas`, 2,000 calls at
//! 200 calls/s with no failed call, over UDP and over TCP; then the edge's /metrics must count
//! what went through it.
//!
//! The built-in uac sends ACK and BYE to the remote host (the edge) with the edge in the
//! Request-URI; the edge forwards access-side requests to its first core, so the whole dialog
//! reaches the uas.

use e2e::edge::{assert_calls_ok, start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics::{self, Sample};
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

/// The largest sample of `name` among those whose label `key` satisfies `pred` (robust to extra
/// labels and to how a direction is spelled).
fn max_where(samples: &[Sample], name: &str, key: &str, pred: impl Fn(&str) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.label(key).is_some_and(&pred))
        .map(|s| s.value)
        .fold(0.0, f64::max)
}

#[test]
fn udp_2000_calls_then_metrics_count_them() {
    let test = "udp_2000_calls_then_metrics_count_them";
    let Some(samples) = load_through_edge(test, Transport::Udp) else {
        return;
    };
    let dump = || {
        samples
            .iter()
            .filter(|s| s.name.starts_with("edge_"))
            .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let calls = f64::from(CALLS);
    // Each request method was seen at least once per call in some direction (one series per
    // method/direction; retransmissions may add a few).
    for method in ["INVITE", "ACK", "BYE"] {
        let seen = max_where(&samples, "edge_sip_requests_total", "method", |m| m == method);
        assert!(
            seen >= calls,
            "{test}: edge_sip_requests_total{{method=\"{method}\"}} max {seen} < {calls}\n{}",
            dump()
        );
    }
    // 2xx: the INVITE's 200 and the BYE's 200 per call; 1xx: at least the uas's 180 per call.
    let ok = max_where(&samples, "edge_sip_responses_total", "class", |c| {
        c.starts_with('2')
    });
    assert!(
        ok >= 2.0 * calls,
        "{test}: edge_sip_responses_total{{class=\"2xx\"}} max {ok} < {}\n{}",
        2.0 * calls,
        dump()
    );
    let prov = max_where(&samples, "edge_sip_responses_total", "class", |c| {
        c.starts_with('1')
    });
    assert!(
        prov >= calls,
        "{test}: edge_sip_responses_total{{class=\"1xx\"}} max {prov} < {calls}\n{}",
        dump()
    );
    assert!(
        metrics::sum(&samples, "edge_transactions_active", &[]).is_some(),
        "{test}: no edge_transactions_active gauge\n{}",
        dump()
    );
}

#[test]
fn tcp_2000_calls() {
    let _ = load_through_edge("tcp_2000_calls", Transport::Tcp);
}
