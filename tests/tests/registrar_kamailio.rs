//! The edge's mid-registrar in front of a real core registrar: Kamailio 5.6 (registrar +
//! usrloc in memory, tests/kamailio/registrar.cfg) on 127.0.0.3, SIPp phones on 127.0.0.2,
//! the edge on 127.0.0.1.
//!
//! - (a) AoR (and contact) throttling: 50 phones each send 4 REGISTERs (same flow, Call-ID, growing CSeq)
//!   within 3 s; Kamailio logs one `REGCOUNT` line per REGISTER it receives, and must see one
//!   per AoR (outgoing_expires 3600 s: one core REGISTER per AoR per window).
//! - (b) a call from the core side (SIPp → Kamailio `lookup("location")` → the edge's
//!   `sip:<token>@edge` contact) to an AoR with two registered phones rings both; one answers,
//!   the other gets CANCEL with `Reason: SIP;cause=200;text="Call completed elsewhere"`.
//! - (c) after an edge restart on the same `--store`, the binding is back and a call from the
//!   core side to the AoR reaches the phone.
//!
//! Skipped with a message when kamailio, sipp or the edge binary is missing.

use e2e::edge::{assert_calls_ok, start_or_panic, Edge, EdgeArgs};
use e2e::kamailio::{kamailio_dir, tools_or_skip, Kamailio};
use e2e::metrics;
use e2e::ports::{free_port, ACCESS_IP, CORE_IP};
use e2e::sipp::{Scenario, Sipp, SippOutcome};
use e2e::tools::{scenario, EdgeTools};
use e2e::workdir::{tail, WorkDir};
use std::time::Duration;

fn edge_args(k: &Kamailio, dir: &WorkDir, mode: &str) -> EdgeArgs {
    let store = dir.path().join("store").join("location.log");
    EdgeArgs::udp_core(k.sip).extra(&[
        "--registrar-mode",
        mode,
        "--store",
        store.to_str().unwrap(),
        // The caller of test (c) sends from the core's IP on another port.
        "--trusted",
        "127.0.0.3/32",
    ])
}

fn file(name: &str) -> Scenario {
    Scenario::File(kamailio_dir().join(name))
}

fn run(s: Sipp, dir: &WorkDir) -> e2e::sipp::SippRun {
    s.spawn(dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Registers phone `user` from `ACCESS_IP:port` through the edge.
fn register_phone(tools: &EdgeTools, dir: &WorkDir, edge: &mut Edge, user: &str, port: u16) {
    let label = format!("register_{user}_{port}");
    let out = run(
        Sipp::new(&tools.sipp, &label, file("registrar_phone_register.xml"))
            .ip(ACCESS_IP)
            .local_port(port)
            .remote(edge.sip_addr())
            .arg("-s")
            .arg(user)
            .timeout(Duration::from_secs(10)),
        dir,
    )
    .wait();
    assert_calls_ok(&label, &[out], edge);
}

fn metric(edge: &Edge, name: &str) -> f64 {
    let samples = edge.metrics().unwrap_or_else(|e| panic!("/metrics: {e}"));
    metrics::sum(&samples, name, &[]).unwrap_or_else(|| panic!("/metrics lacks {name}"))
}

fn outcomes_ok(test: &str, out: &[SippOutcome], edge: &mut Edge, k: &Kamailio) {
    if let Some(msg) = e2e::sipp::failure_report(test, out) {
        panic!(
            "{msg}{}\n--- kamailio log ---\n{}",
            edge.report(),
            tail(&k.log, 3000)
        );
    }
}

#[test]
fn registrar_aor_throttling_core_sees_one_register_per_aor() {
    throttling(
        "registrar_aor_throttling_core_sees_one_register_per_aor",
        "aor",
    );
}

/// Contact throttling behaves the same for one contact per AoR.
#[test]
fn registrar_contact_throttling_core_sees_one_register_per_contact() {
    throttling(
        "registrar_contact_throttling_core_sees_one_register_per_contact",
        "contact",
    );
}

/// 50 phones × 4 REGISTERs through the edge in `mode`: the core must see one per AoR.
fn throttling(test: &str, mode: &str) {
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    const USERS: u32 = 50;
    let dir = WorkDir::new(test);
    let k = Kamailio::start(&dir);
    let mut edge = start_or_panic(&tools.edge, &dir, &edge_args(&k, &dir, mode));
    let phones = run(
        Sipp::new(&tools.sipp, "phones", file("registrar_refresh.xml"))
            .ip(ACCESS_IP)
            .remote(edge.sip_addr())
            .calls(USERS)
            .rate(USERS)
            .timeout(Duration::from_secs(30)),
        &dir,
    )
    .wait();
    outcomes_ok(test, &[phones], &mut edge, &k);
    let seen = k.registers();
    let total: usize = seen.values().sum();
    let over: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        over.is_empty(),
        "{test}: AoRs registered more than once at the core: {over:?}"
    );
    assert_eq!(
        total,
        USERS as usize,
        "{test}: the core saw {total} REGISTERs for {USERS} AoRs ({} edge requests): {seen:?}",
        USERS * 4
    );
    assert_eq!(metric(&edge, "edge_registrar_bindings"), f64::from(USERS));
    let samples = edge.metrics().unwrap_or_else(|e| panic!("/metrics: {e}"));
    let by_mode = |m: &str| {
        metrics::sum(&samples, "edge_registrar_bindings_by_mode", &[("mode", m)]).unwrap_or(-1.0)
    };
    assert_eq!(
        (by_mode(mode), by_mode("mirror")),
        (f64::from(USERS), 0.0),
        "{test}: bindings by mode"
    );
    assert_eq!(
        metric(&edge, "edge_registrar_registers_forwarded_total"),
        f64::from(USERS)
    );
    assert_eq!(
        metric(&edge, "edge_registrar_registers_absorbed_total"),
        f64::from(USERS * 3)
    );
}

#[test]
fn registrar_call_from_core_forks_to_both_phones_and_cancels_the_other() {
    let test = "registrar_call_from_core_forks_to_both_phones_and_cancels_the_other";
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let k = Kamailio::start(&dir);
    let mut edge = start_or_panic(&tools.edge, &dir, &edge_args(&k, &dir, "aor"));
    let (pa, pb) = (free_port(), free_port());
    register_phone(&tools, &dir, &mut edge, "bob", pa);
    register_phone(&tools, &dir, &mut edge, "bob", pb);
    assert_eq!(metric(&edge, "edge_registrar_bindings"), 2.0);
    let winner = run(
        Sipp::new(
            &tools.sipp,
            "phone_a",
            Scenario::File(scenario("uas_answer.xml")),
        )
        .ip(ACCESS_IP)
        .local_port(pa),
        &dir,
    );
    let loser = run(
        Sipp::new(
            &tools.sipp,
            "phone_b",
            file("registrar_phone_cancelled.xml"),
        )
        .ip(ACCESS_IP)
        .local_port(pb),
        &dir,
    );
    let caller = run(
        Sipp::new(&tools.sipp, "caller", file("registrar_caller.xml"))
            .ip(CORE_IP)
            .remote(k.sip)
            .arg("-s")
            .arg("bob")
            .timeout(Duration::from_secs(20)),
        &dir,
    );
    let out = vec![caller.wait(), winner.wait(), loser.wait()];
    outcomes_ok(test, &out, &mut edge, &k);
}

#[test]
fn registrar_binding_survives_an_edge_restart() {
    let test = "registrar_binding_survives_an_edge_restart";
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let k = Kamailio::start(&dir);
    let args = edge_args(&k, &dir, "mirror");
    let mut first = start_or_panic(&tools.edge, &dir, &args);
    let port = free_port();
    register_phone(&tools, &dir, &mut first, "carol", port);
    assert_eq!(metric(&first, "edge_registrar_bindings"), 1.0);
    // The store is appended right after each event; give the once-a-second fsync a chance too.
    std::thread::sleep(Duration::from_millis(1200));
    drop(first);
    let mut second = start_or_panic(&tools.edge, &dir, &args);
    assert_eq!(
        metric(&second, "edge_registrar_bindings"),
        1.0,
        "{test}: binding not restored from the store"
    );
    let phone = run(
        Sipp::new(
            &tools.sipp,
            "phone",
            Scenario::File(scenario("uas_answer.xml")),
        )
        .ip(ACCESS_IP)
        .local_port(port),
        &dir,
    );
    // From the core side straight to the new edge (its port changed, so the contact Kamailio
    // holds is stale): the AoR is looked up in the restored table.
    let caller = run(
        Sipp::new(&tools.sipp, "caller", file("registrar_caller.xml"))
            .ip(CORE_IP)
            .remote(second.sip_addr())
            .arg("-s")
            .arg("carol")
            .timeout(Duration::from_secs(20)),
        &dir,
    );
    let out = vec![caller.wait(), phone.wait()];
    outcomes_ok(test, &out, &mut second, &k);
}
