//! Issue 15 (reliability), edge restart: 200 phones register through the edge (mid-registrar in
//! mirror mode, `--store` on disk) to Kamailio 5.6 (tests/kamailio/registrar.cfg); the edge
//! gets SIGTERM right after the last 200 OK and is started again on the same store. Every one of
//! the 200 AoRs must then be reachable: a call from the core side to each AoR
//! (`sip:e2eN@example.com`, tests/kamailio/fault_core_caller.xml) must reach the phone through
//! the restarted edge and complete.
//!
//! Not covered elsewhere: registrar_store.rs only checks the store's creation and a bad path;
//! registrar_kamailio.rs (c) restarts with one binding; edge_drain.rs reloads 50 bindings and
//! reads the count from the log without calling them.
//!
//! One SIPp instance on 127.0.0.2 plays all phones on one port (one flow, 200 AoRs;
//! tests/kamailio/fault_phones_register.xml), then a SIPp callee (`uas_answer.xml`) takes that
//! port and answers every call. As in registrar_kamailio.rs (c), the calls go from the core's IP
//! straight to the new edge: its port changed, so the contacts Kamailio holds are stale, and
//! the AoRs are looked up in the edge's restored table.
//!
//! Figures to stderr, e.g. `fault_edge_restart: 200/200 AoRs reachable after restart ...`.
//! Skipped with a message when kamailio, sipp or the edge binary is missing.

use e2e::edge::{start_or_panic, Edge, EdgeArgs};
use e2e::heavy_lock;
use e2e::kamailio::{kamailio_dir, tools_or_skip, Kamailio};
use e2e::metrics;
use e2e::ports::{free_port, ACCESS_IP, CORE_IP};
use e2e::sipp::{Scenario, Sipp};
use e2e::tools::scenario;
use e2e::workdir::{tail, WorkDir};
use std::time::{Duration, Instant};

const AORS: u32 = 200;
const RATE: u32 = 50;

fn bindings(edge: &Edge) -> f64 {
    let samples = edge.metrics().unwrap_or_else(|e| panic!("/metrics: {e}"));
    metrics::sum(&samples, "edge_registrar_bindings", &[]).unwrap_or(f64::NAN)
}

#[test]
fn fault_edge_restart_200_aors_reachable_from_the_core_after_sigterm_and_restart() {
    let test = "fault_edge_restart_200_aors_reachable_from_the_core_after_sigterm_and_restart";
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let k = Kamailio::start(&dir);
    let store = dir.path().join("store").join("location.log");
    let args = EdgeArgs::udp_core(k.sip).extra(&[
        "--registrar-mode",
        "mirror",
        "--store",
        store.to_str().expect("utf-8 path"),
        // The caller sends from the core's IP on another port than Kamailio's.
        "--trusted",
        "127.0.0.3/32",
    ]);
    let mut first = start_or_panic(&tools.edge, &dir, &args);
    let phone_port = free_port();
    let limit = Duration::from_secs(40);
    let registered = Sipp::new(
        &tools.sipp,
        "phones_register",
        Scenario::File(kamailio_dir().join("fault_phones_register.xml")),
    )
    .ip(ACCESS_IP)
    .local_port(phone_port)
    .remote(first.sip_addr())
    .calls(AORS)
    .rate(RATE)
    .timeout(limit)
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"))
    .wait();
    // SIGTERM at once: no wait for a periodic fsync.
    first.terminate();
    let term_at = Instant::now();
    let status = first.wait_exit(Duration::from_secs(15));
    let stopped_in = term_at.elapsed();
    let before = registered.counts.unwrap_or_default();
    assert!(
        registered.ok() && before.successful == u64::from(AORS),
        "{test}: registration before the restart\n{}\n{}{}",
        registered.summary(),
        registered.report,
        first.report()
    );
    assert!(
        status.is_some(),
        "{test}: the edge did not exit within 15 s of SIGTERM\n{}",
        first.report()
    );
    drop(first);

    let mut second = start_or_panic(&tools.edge, &dir, &args);
    let restored = bindings(&second);
    let loaded = second
        .log_text()
        .lines()
        .find(|l| l.contains("location store loaded"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    let phone = Sipp::new(
        &tools.sipp,
        "phone",
        Scenario::File(scenario("uas_answer.xml")),
    )
    .ip(ACCESS_IP)
    .local_port(phone_port)
    .calls(AORS)
    .timeout(limit)
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"));
    let caller = Sipp::new(
        &tools.sipp,
        "caller",
        Scenario::File(kamailio_dir().join("fault_core_caller.xml")),
    )
    .ip(CORE_IP)
    .remote(second.sip_addr())
    .calls(AORS)
    .rate(RATE)
    .timeout(limit)
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"))
    .wait();
    let phone = phone.wait();
    let calls = caller.counts.unwrap_or_default();
    let answered = phone.counts.unwrap_or_default();
    eprintln!(
        "fault_edge_restart: {}/{AORS} AoRs reachable after restart (calls from the core \
         completed; phone answered {}); {}/{AORS} registered before SIGTERM, edge exit {:?} \
         {:.2} s after SIGTERM, {restored} bindings restored; log: {loaded}",
        calls.successful,
        answered.successful,
        before.successful,
        status.and_then(|s| s.code()),
        stopped_in.as_secs_f64(),
    );
    assert_eq!(
        restored,
        f64::from(AORS),
        "{test}: bindings restored from the store\n{}",
        second.report()
    );
    if let Some(msg) = e2e::sipp::failure_report(test, &[caller, phone]) {
        panic!(
            "{msg}{}\n--- kamailio log ---\n{}",
            second.report(),
            tail(&k.log, 3000)
        );
    }
    assert_eq!(calls.successful, u64::from(AORS), "{test}: calls completed");
}
