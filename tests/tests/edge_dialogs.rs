//! Single-call scenarios through the edge, each with SIPp peers from bench/sipp/ (validated
//! against each other without the edge in sipp_scenarios.rs, so a failure here is the edge's):
//! REGISTER forwarding, rport (RFC 3581), CANCEL with Reason (RFC 3261 9, 16.10; RFC 3326), and
//! forking by recursing on a 3xx (RFC 3261 16.7).

use e2e::edge::{assert_calls_ok, start_or_panic, Edge, EdgeArgs};
use e2e::ports::{free_port, ACCESS_IP, CORE_IP};
use e2e::sipp::{Scenario, Sipp, SippOutcome, SippRun};
use e2e::tools::{edge_tools_or_skip, scenario, EdgeTools};
use e2e::workdir::WorkDir;
use std::time::Duration;

/// A SIPp peer on the access side (phones).
fn access(tools: &EdgeTools, label: &str, file: &str) -> Sipp {
    sipp(tools, label, file).ip(ACCESS_IP)
}

/// A SIPp peer on the core side (core, registrar, fork targets).
fn core_peer(tools: &EdgeTools, label: &str, file: &str) -> Sipp {
    sipp(tools, label, file).ip(CORE_IP)
}

fn sipp(tools: &EdgeTools, label: &str, file: &str) -> Sipp {
    Sipp::new(&tools.sipp, label, Scenario::File(scenario(file)))
        .calls(1)
        .timeout(Duration::from_secs(20))
        .trace_msg(true)
}

fn builtin(tools: &EdgeTools, label: &str, name: &'static str) -> Sipp {
    Sipp::new(&tools.sipp, label, Scenario::Builtin(name))
        .ip(CORE_IP)
        .calls(1)
        .timeout(Duration::from_secs(20))
        .trace_msg(true)
}

fn spawn(dir: &WorkDir, s: Sipp) -> SippRun {
    s.spawn(dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits for the caller first (it ends the scenario), then for every server.
fn finish(caller: SippRun, servers: Vec<SippRun>) -> Vec<SippOutcome> {
    let mut out = vec![caller.wait()];
    out.extend(servers.into_iter().map(SippRun::wait));
    out
}

fn edge_with_core(tools: &EdgeTools, dir: &WorkDir, core: &SippRun, extra: &[&str]) -> Edge {
    let args = EdgeArgs::udp_core(core.local_addr()).extra(extra);
    start_or_panic(&tools.edge, dir, &args)
}

fn trace<'a>(outcomes: &'a [SippOutcome], label: &str) -> &'a str {
    outcomes
        .iter()
        .find(|o| o.label == label)
        .and_then(|o| o.messages.as_deref())
        .unwrap_or("")
}

#[test]
fn register_reaches_registrar_and_200_comes_back() {
    let test = "register_reaches_registrar_and_200_comes_back";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let registrar = spawn(
        &dir,
        core_peer(&tools, "registrar", "uas_registrar.xml").calls(3),
    );
    let mut edge = edge_with_core(&tools, &dir, &registrar, &[]);
    let ua = spawn(
        &dir,
        access(&tools, "ua", "uac_register.xml")
            .calls(3)
            .rate(10)
            .remote(edge.sip_addr()),
    );
    let out = finish(ua, vec![registrar]);
    assert_calls_ok(test, &out, &mut edge);
}

/// The caller's Via claims port 9; only answering to the real source port (RFC 3581 4) gets the
/// responses to it. The core must also see `rport=<real port>` and `received` on that Via.
#[test]
fn rport_responses_reach_the_real_source_port() {
    let test = "rport_responses_reach_the_real_source_port";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let core = spawn(&dir, builtin(&tools, "core", "uas"));
    let mut edge = edge_with_core(&tools, &dir, &core, &[]);
    let caller_port = free_port();
    let caller = spawn(
        &dir,
        access(&tools, "caller", "uac_rport.xml")
            .local_port(caller_port)
            .remote(edge.sip_addr()),
    );
    let out = finish(caller, vec![core]);
    assert_calls_ok(test, &out, &mut edge);
    let core_trace = trace(&out, "core");
    let invite_via = core_trace
        .lines()
        .find(|l| l.contains(&format!("{ACCESS_IP}:9;")))
        .unwrap_or_else(|| panic!("{test}: core saw no Via with port 9:\n{core_trace}"));
    assert!(
        invite_via.contains(&format!("rport={caller_port}")),
        "{test}: caller's Via at the core lacks rport={caller_port} (RFC 3581 4): {invite_via}"
    );
    assert!(
        invite_via.contains("received="),
        "{test}: caller's Via at the core lacks received= (RFC 3581 4): {invite_via}"
    );
}

/// CANCEL of a ringing call: the callee must get a CANCEL still carrying the caller's Reason
/// header (uas_cancel.xml fails the call otherwise), the caller gets 200 for the CANCEL and 487
/// for the INVITE, and the callee gets the ACK for its 487 from the edge.
#[test]
fn cancel_with_reason_reaches_callee() {
    let test = "cancel_with_reason_reaches_callee";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let callee = spawn(&dir, core_peer(&tools, "callee", "uas_cancel.xml"));
    let mut edge = edge_with_core(&tools, &dir, &callee, &[]);
    let caller = spawn(
        &dir,
        access(&tools, "caller", "uac_cancel.xml").remote(edge.sip_addr()),
    );
    let out = finish(caller, vec![callee]);
    assert_calls_ok(test, &out, &mut edge);
}

/// Starts two fork targets and a redirecting core listing them, then the edge in front of the
/// core; returns (edge, servers) with the servers in the order core, fork1, fork2.
fn forking_setup(
    tools: &EdgeTools,
    dir: &WorkDir,
    fork1: &str,
    fork2: &str,
    extra: &[&str],
) -> (Edge, Vec<SippRun>) {
    let f1 = spawn(dir, core_peer(tools, "fork1", fork1));
    let f2 = spawn(dir, core_peer(tools, "fork2", fork2));
    let core = spawn(
        dir,
        core_peer(tools, "core", "core_redirect.xml")
            .key("target1", &f1.local_addr().to_string())
            .key("target2", &f2.local_addr().to_string()),
    );
    let edge = edge_with_core(tools, dir, &core, extra);
    (edge, vec![core, f1, f2])
}

/// 300 with two Contacts → the edge forks to both (parallel by default); fork1 answers 486,
/// fork2 rings and answers 200 → the caller gets the 200, and its ACK and BYE reach fork2 through
/// the edge (Record-Route + Contact).
#[test]
fn fork_via_3xx_second_target_answers() {
    let test = "fork_via_3xx_second_target_answers";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let (mut edge, servers) = forking_setup(&tools, &dir, "uas_busy.xml", "uas_answer.xml", &[]);
    let caller = spawn(
        &dir,
        access(&tools, "caller", "uac_call.xml").remote(edge.sip_addr()),
    );
    let out = finish(caller, servers);
    assert_calls_ok(test, &out, &mut edge);
}

/// Same as above with `--forking sequential`: fork1 is tried alone first (486), then fork2
/// (RFC 3261 16.6: targets in order), which answers.
#[test]
fn sequential_fork_via_3xx_second_target_answers() {
    let test = "sequential_fork_via_3xx_second_target_answers";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let (mut edge, servers) = forking_setup(
        &tools,
        &dir,
        "uas_busy.xml",
        "uas_answer.xml",
        &["--forking", "sequential"],
    );
    let caller = spawn(
        &dir,
        access(&tools, "caller", "uac_call.xml").remote(edge.sip_addr()),
    );
    let out = finish(caller, servers);
    assert_calls_ok(test, &out, &mut edge);
}

/// 300 with two Contacts; fork1 declines with 603 while fork2 rings → fork2 gets a CANCEL
/// (RFC 3261 16.7 step 5) and the caller gets the 603.
#[test]
fn fork_via_3xx_decline_cancels_ringing_target() {
    let test = "fork_via_3xx_decline_cancels_ringing_target";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let (mut edge, servers) = forking_setup(
        &tools,
        &dir,
        "uas_decline.xml",
        "uas_ring_until_cancel.xml",
        &[],
    );
    let caller = spawn(
        &dir,
        access(&tools, "caller", "uac_rejected.xml").remote(edge.sip_addr()),
    );
    let out = finish(caller, servers);
    assert_calls_ok(test, &out, &mut edge);
}

/// With `--recurse-3xx false` the 300 and both of its Contacts reach the caller; the core gets
/// the edge's ACK for it.
#[test]
fn redirect_passed_through_when_recursion_disabled() {
    let test = "redirect_passed_through_when_recursion_disabled";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let core = spawn(
        &dir,
        core_peer(&tools, "core", "core_redirect.xml")
            .key("target1", "127.0.0.3:9")
            .key("target2", "127.0.0.3:9"),
    );
    let mut edge = edge_with_core(&tools, &dir, &core, &["--recurse-3xx", "false"]);
    let caller = spawn(
        &dir,
        access(&tools, "caller", "uac_redirected.xml").remote(edge.sip_addr()),
    );
    let out = finish(caller, vec![core]);
    assert_calls_ok(test, &out, &mut edge);
}

/// A call from the core side: the core (sending from the `--core` address) calls a user on the
/// access side; the edge routes it by its Request-URI (the access UA), and the dialog's ACK and
/// BYE follow Record-Route back through the edge.
#[test]
fn core_side_invite_routed_by_request_uri() {
    let test = "core_side_invite_routed_by_request_uri";
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let access_ua = spawn(&dir, access(&tools, "access_ua", "uas_answer.xml"));
    let core_port = free_port();
    let core_addr = std::net::SocketAddr::from((CORE_IP, core_port));
    let args = EdgeArgs {
        cores: vec![format!("udp:{core_addr}")],
        ..EdgeArgs::default()
    };
    let mut edge = start_or_panic(&tools.edge, &dir, &args);
    let core = spawn(
        &dir,
        core_peer(&tools, "core", "uac_call.xml")
            .local_port(core_port)
            .remote(access_ua.local_addr())
            .send_to(edge.sip_addr()),
    );
    let out = finish(core, vec![access_ua]);
    assert_calls_ok(test, &out, &mut edge);
    let ua_trace = trace(&out, "access_ua");
    assert!(
        ua_trace.contains("Record-Route:"),
        "{test}: the INVITE reached the access UA without Record-Route:\n{ua_trace}"
    );
}
