//! `GET /ready` (readiness, apart from `/health`, liveness) follows the core: the edge in front
//! of one Kamailio core (tests/kamailio/registrar.cfg answers OPTIONS), probing it every second
//! and calling it down after 2 unanswered probes. Kamailio (its whole process group) is
//! SIGSTOPped: `/ready` turns 503 naming "no core up" while `/health` stays 200; SIGCONT: ready
//! again at the next answered probe. Media anchoring is off (`--media-mode never`), so no relay
//! is needed to be ready.

use e2e::edge::{start_or_panic, Edge, EdgeArgs};
use e2e::http;
use e2e::kamailio::{tools_or_skip, Kamailio};
use e2e::ports::{free_addr, CORE_IP};
use e2e::workdir::WorkDir;
use std::time::{Duration, Instant};

fn ready(edge: &Edge) -> http::Response {
    http::get(edge.admin_addr(), "/ready", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("GET /ready: {e}"))
}

/// Polls `/ready` until its status is `want` (bounded); the answer and how long it took.
fn wait_ready(edge: &Edge, want: u16, within: Duration) -> (http::Response, Duration) {
    let start = Instant::now();
    loop {
        let r = ready(edge);
        if r.status == want || start.elapsed() >= within {
            return (r, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ready_follows_the_core() {
    let test = "edge_ready_follows_the_core";
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let core_dir = WorkDir::new(&format!("{test}_core"));
    let mut core =
        Kamailio::start_cfg_at_in_group(&core_dir, "registrar.cfg", free_addr(CORE_IP), &[]);
    let args = EdgeArgs::udp_core(core.sip).extra(&[
        "--health-interval",
        "1",
        "--health-misses",
        "2",
        "--media-mode",
        "never",
    ]);
    let edge = start_or_panic(&tools.edge, &dir, &args);
    let (r, _) = wait_ready(&edge, 200, Duration::from_secs(5));
    assert_eq!(
        (r.status, r.body.trim()),
        (200, "ready"),
        "with the core up"
    );

    core.signal_group(libc::SIGSTOP);
    let (r, took) = wait_ready(&edge, 503, Duration::from_secs(10));
    assert_eq!(r.status, 503, "core silent for 10 s: {}", r.body);
    assert!(r.body.contains("no core up"), "{}", r.body);
    let health = http::get(edge.admin_addr(), "/health", Duration::from_secs(2)).expect("/health");
    assert_eq!(health.status, 200, "liveness is not readiness");

    core.signal_group(libc::SIGCONT);
    let (r, back) = wait_ready(&edge, 200, Duration::from_secs(10));
    assert_eq!(r.status, 200, "core back: {}", r.body);
    eprintln!(
        "edge_ready: not ready {:.1} s after the core went silent, ready {:.1} s after it came back",
        took.as_secs_f64(),
        back.as_secs_f64()
    );
}
