//! The SIPp scenarios of bench/sipp/, run against each other with no edge in between, so that a
//! failing edge test points at the edge and not at a broken scenario. Needs only SIPp.

use e2e::sipp::{assert_all_ok, Scenario, Sipp, SippOutcome, Transport};
use e2e::tools::{scenario, sipp_or_skip};
use e2e::workdir::WorkDir;
use std::path::Path;
use std::time::Duration;

fn file(name: &str) -> Scenario {
    Scenario::File(scenario(name))
}

/// Starts `server` (bound before returning), then `client` sending to it; waits for both.
fn pair(dir: &WorkDir, server: Sipp, client: Sipp) -> Vec<SippOutcome> {
    let server = server.spawn(dir).unwrap_or_else(|e| panic!("{e}"));
    let client = client
        .remote(server.local_addr())
        .spawn(dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let c = client.wait();
    let s = server.wait();
    vec![c, s]
}

fn one_call(sipp: &Path, label: &str, scen: Scenario) -> Sipp {
    Sipp::new(sipp, label, scen)
        .calls(1)
        .timeout(Duration::from_secs(20))
        .trace_msg(true)
}

/// The `branch` parameter of the top Via of each sent request `method` in a SIPp message trace.
fn sent_branches(trace: &str, method: &str) -> Vec<String> {
    trace
        .split("----------------------------------------------- ")
        .filter(|block| block.contains("message sent"))
        .filter_map(|block| {
            let mut lines = block.lines().skip_while(|l| !l.starts_with(method));
            lines.next()?;
            let via = lines.find(|l| l.starts_with("Via:"))?;
            let branch = via.split(";branch=").nth(1)?;
            Some(branch.split([';', ',']).next()?.trim().to_string())
        })
        .collect()
}

#[test]
fn direct_builtin_uac_uas_udp() {
    let Some(sipp) = sipp_or_skip("direct_builtin_uac_uas_udp") else {
        return;
    };
    let dir = WorkDir::new("direct-builtin-udp");
    let server = Sipp::new(&sipp, "uas", Scenario::Builtin("uas")).calls(50);
    let client = Sipp::new(&sipp, "uac", Scenario::Builtin("uac"))
        .calls(50)
        .rate(50);
    let out = pair(&dir, server, client);
    assert_all_ok("direct_builtin_uac_uas_udp", &out);
    assert_eq!(
        out.first().and_then(|o| o.counts).map(|c| c.successful),
        Some(50)
    );
}

#[test]
fn direct_builtin_uac_uas_tcp() {
    let Some(sipp) = sipp_or_skip("direct_builtin_uac_uas_tcp") else {
        return;
    };
    let dir = WorkDir::new("direct-builtin-tcp");
    let server = Sipp::new(&sipp, "uas", Scenario::Builtin("uas"))
        .transport(Transport::Tcp)
        .calls(50);
    let client = Sipp::new(&sipp, "uac", Scenario::Builtin("uac"))
        .transport(Transport::Tcp)
        .calls(50)
        .rate(50);
    let out = pair(&dir, server, client);
    // When the caller exits it closes its connection, and SIPp's uas counts the call still in its
    // final 4 s wait as "FailedTcpClosed". Through the edge that cannot happen (the edge holds its
    // own connection to the uas), so here only the caller must be perfect.
    let uac = out.first().unwrap_or_else(|| panic!("no outcome"));
    let uas_ok = out
        .get(1)
        .and_then(|o| o.counts)
        .is_some_and(|c| c.successful >= 49 && c.successful + c.failed == 50);
    if !uac.ok() || !uas_ok {
        assert_all_ok("direct_builtin_uac_uas_tcp", &out);
        panic!(
            "uas counts wrong: {}",
            out.get(1).map(|o| o.summary()).unwrap_or_default()
        );
    }
}

#[test]
fn direct_register() {
    let Some(sipp) = sipp_or_skip("direct_register") else {
        return;
    };
    let dir = WorkDir::new("direct-register");
    let server = one_call(&sipp, "registrar", file("uas_registrar.xml")).calls(5);
    let client = one_call(&sipp, "uac", file("uac_register.xml"))
        .calls(5)
        .rate(10);
    assert_all_ok("direct_register", &pair(&dir, server, client));
}

#[test]
fn direct_rport_call() {
    let Some(sipp) = sipp_or_skip("direct_rport_call") else {
        return;
    };
    let dir = WorkDir::new("direct-rport");
    let server = one_call(&sipp, "uas", Scenario::Builtin("uas"));
    let client = one_call(&sipp, "uac", file("uac_rport.xml"));
    let out = pair(&dir, server, client);
    assert_all_ok("direct_rport_call", &out);
    let trace = out
        .first()
        .and_then(|o| o.messages.clone())
        .unwrap_or_default();
    assert!(
        trace.contains("Via: SIP/2.0/UDP 127.0.0.1:9;"),
        "uac_rport.xml must claim port 9 in its Via:\n{trace}"
    );
}

#[test]
fn direct_call_answered() {
    let Some(sipp) = sipp_or_skip("direct_call_answered") else {
        return;
    };
    let dir = WorkDir::new("direct-answer");
    let server = one_call(&sipp, "uas", file("uas_answer.xml"));
    let client = one_call(&sipp, "uac", file("uac_call.xml"));
    assert_all_ok("direct_call_answered", &pair(&dir, server, client));
}

#[test]
fn direct_decline_603() {
    let Some(sipp) = sipp_or_skip("direct_decline_603") else {
        return;
    };
    let dir = WorkDir::new("direct-decline");
    let server = one_call(&sipp, "uas", file("uas_decline.xml"));
    let client = one_call(&sipp, "uac", file("uac_rejected.xml"));
    let out = pair(&dir, server, client);
    assert_all_ok("direct_decline_603", &out);
    let trace = out
        .first()
        .and_then(|o| o.messages.clone())
        .unwrap_or_default();
    let invite = sent_branches(&trace, "INVITE");
    assert_eq!(invite.len(), 1, "{trace}");
    assert_eq!(
        sent_branches(&trace, "ACK"),
        invite,
        "ACK for 603 must reuse the INVITE branch"
    );
}

#[test]
fn direct_cancel_with_reason() {
    let Some(sipp) = sipp_or_skip("direct_cancel_with_reason") else {
        return;
    };
    let dir = WorkDir::new("direct-cancel");
    let server = one_call(&sipp, "uas", file("uas_cancel.xml"));
    let client = one_call(&sipp, "uac", file("uac_cancel.xml"));
    let out = pair(&dir, server, client);
    assert_all_ok("direct_cancel_with_reason", &out);
    let trace = out
        .first()
        .and_then(|o| o.messages.clone())
        .unwrap_or_default();
    let invite = sent_branches(&trace, "INVITE");
    assert_eq!(invite.len(), 1, "{trace}");
    assert_eq!(
        sent_branches(&trace, "CANCEL"),
        invite,
        "CANCEL must reuse the INVITE branch"
    );
    assert_eq!(
        sent_branches(&trace, "ACK"),
        invite,
        "ACK for 487 must reuse the INVITE branch"
    );
}

#[test]
fn direct_ring_until_cancel() {
    let Some(sipp) = sipp_or_skip("direct_ring_until_cancel") else {
        return;
    };
    let dir = WorkDir::new("direct-ring-cancel");
    let server = one_call(&sipp, "uas", file("uas_ring_until_cancel.xml"));
    let client = one_call(&sipp, "uac", file("uac_cancel.xml"));
    assert_all_ok("direct_ring_until_cancel", &pair(&dir, server, client));
}

#[test]
fn direct_redirect() {
    let Some(sipp) = sipp_or_skip("direct_redirect") else {
        return;
    };
    let dir = WorkDir::new("direct-redirect");
    let server = one_call(&sipp, "core", file("core_redirect.xml"))
        .key("target1", "127.0.0.1:5999")
        .key("target2", "127.0.0.1:5998");
    let client = one_call(&sipp, "uac", file("uac_redirected.xml"));
    assert_all_ok("direct_redirect", &pair(&dir, server, client));
}

/// The CANCEL callee must fail when the Reason header is missing: otherwise the edge test that
/// relies on it could not fail.
#[test]
fn direct_cancel_without_reason_fails() {
    let Some(sipp) = sipp_or_skip("direct_cancel_without_reason_fails") else {
        return;
    };
    let dir = WorkDir::new("direct-cancel-noreason");
    let server = one_call(&sipp, "uas", file("uas_cancel.xml")).timeout(Duration::from_secs(5));
    // uas_ring_until_cancel's peer, uac_cancel, always sends Reason; strip it in a copy.
    let text = std::fs::read_to_string(scenario("uac_cancel.xml")).unwrap_or_default();
    let stripped: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("Reason:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        stripped.len() < text.len(),
        "uac_cancel.xml has no Reason header"
    );
    let copy = dir.path().join("uac_cancel_no_reason.xml");
    std::fs::write(&copy, stripped).unwrap_or_else(|e| panic!("write copy: {e}"));
    let client = one_call(&sipp, "uac", Scenario::File(copy)).timeout(Duration::from_secs(5));
    let out = pair(&dir, server, client);
    let uas = out.get(1).unwrap_or_else(|| panic!("no outcome"));
    assert!(
        !uas.ok(),
        "uas_cancel.xml accepted a CANCEL without Reason: {}",
        uas.summary()
    );
    assert!(
        uas.failure_kinds
            .iter()
            .any(|(kind, _)| kind.starts_with("FailedRegexp")),
        "uas_cancel.xml failed for another reason than the Reason check: {}",
        uas.summary()
    );
}
