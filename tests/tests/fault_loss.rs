//! Issue 15 (reliability), packet loss: 500 calls at 50 calls/s through the edge while 5 % of
//! the SIP datagrams are dropped, on both legs (phone ↔ edge and edge ↔ core) and both
//! directions. Acceptance: ≥ 99.9 % of the calls complete (SIPp successful calls).
//!
//! The whole test runs in a network namespace of its own (`fl<pid>`, deleted at the end, also on
//! panic): `lo` up, and `iptables -A INPUT -i lo -p udp -m statistic --mode random
//! --probability 0.05 -j DROP` there. On loopback every datagram crosses INPUT once, so each
//! SIP hop loses 5 % independently; the admin HTTP (TCP) is untouched. The test thread enters
//! the namespace ([`e2e::netns::in_netns`]), so the edge, the SIPp callee (core, 127.0.0.3) and
//! the SIPp callers (phones, 127.0.0.2) start there through the usual helpers, and the host's
//! loopback never sees this traffic.
//!
//! The scenarios are `bench/sipp/uac_call_lossy.xml` and `uas_answer_lossy.xml`: the plain
//! `uac_call.xml`/`uas_answer.xml` pair would count SIPp's own rigidity, not the edge (a lost
//! ACK makes the callee retransmit its 200, which the caller's BYE step takes for the BYE's
//! answer; a BYE retransmitted after the callee's call ended is absorbed, unanswered; measured
//! once with that pair: 467/500 calls, failures FailedMaxUDPRetrans 17, FailedUnexpectedMessage
//! 12, FailedRegexpDoesntMatch 4). The lossy pair behaves as RFC 3261 UAs do (see their
//! comments). SIPp's retransmission limits stay at
//! their defaults (INVITE 7, non-INVITE 5 retransmissions, as Timers B and F): at 5 % loss per
//! hop a transaction dies only if ~6 attempts in a row fail, which is not what is measured here.
//!
//! Figures to stderr, e.g. `fault_loss 0.05: 500/500 calls ok (100.00 %), ...`. Needs root
//! (namespaces, iptables); skipped with a message otherwise, or when sipp or the edge is missing.

use e2e::edge::{start_or_panic, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics;
use e2e::netns::{in_netns, output, run, Namespaces};
use e2e::ports::{free_addr, ACCESS_IP, CORE_IP};
use e2e::sipp::{Scenario, Sipp};
use e2e::tools::{edge_tools_or_skip, scenario};
use e2e::workdir::WorkDir;
use std::time::{Duration, Instant};

const CALLS: u32 = 500;
const RATE: u32 = 50;
const LOSS: &str = "0.05";

#[test]
fn fault_loss_5pct_sip_loss_999_permille_of_calls_complete() {
    let test = "fault_loss_5pct_sip_loss_999_permille_of_calls_complete";
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        e2e::skip::skip(test, "needs root for network namespaces and iptables");
        return;
    }
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let _serial = heavy_lock();
    let ns = format!("fl{}", std::process::id() % 100_000);
    // Declared before everything that runs inside: deleted last, even on panic.
    let _namespaces = Namespaces(vec![ns.clone()]);
    run(&["ip", "netns", "add", &ns]);
    run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    let dir = WorkDir::new(test);

    in_netns(&ns, || {
        let core = free_addr(CORE_IP);
        let mut edge = start_or_panic(&tools.edge, &dir, &EdgeArgs::udp_core(core));
        // Loss from here on: the edge's readiness probe ran without it.
        run(&[
            "iptables",
            "-A",
            "INPUT",
            "-i",
            "lo",
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            LOSS,
            "-j",
            "DROP",
        ]);
        let limit = Duration::from_secs(90);
        let uas = Sipp::new(
            &tools.sipp,
            "core",
            Scenario::File(scenario("uas_answer_lossy.xml")),
        )
        .ip(CORE_IP)
        .local_port(core.port())
        .calls(CALLS)
        .timeout(limit)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let uac = Sipp::new(
            &tools.sipp,
            "phones",
            Scenario::File(scenario("uac_call_lossy.xml")),
        )
        .ip(ACCESS_IP)
        .remote(edge.sip_addr())
        .calls(CALLS)
        .rate(RATE)
        .timeout(limit)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
        let phones = uac.wait();
        let elapsed = started.elapsed();
        let callee = uas.wait();

        // What the rule dropped: its packet counter (`-x`: exact numbers).
        let rules = output(&["iptables", "-L", "INPUT", "-v", "-n", "-x"]);
        let dropped: u64 = rules
            .lines()
            .find(|l| l.contains("statistic"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let samples = edge.metrics().unwrap_or_else(|e| panic!("/metrics: {e}"));
        let edge_in = metrics::sum(&samples, "edge_sip_requests_total", &[]).unwrap_or(f64::NAN);
        let edge_retrans =
            metrics::sum(&samples, "edge_sip_retransmissions_total", &[]).unwrap_or(f64::NAN);
        let counts = phones.counts.unwrap_or_default();
        let pct = 100.0 * counts.successful as f64 / f64::from(CALLS);
        eprintln!(
            "fault_loss {LOSS}: {}/{CALLS} calls ok ({pct:.2} %), {} failed {:?}, in {:.1} s at \
             {RATE}/s; {dropped} SIP datagrams dropped by the loss rule; edge: {edge_in} \
             requests, {edge_retrans} retransmissions sent; callee {:?}",
            counts.successful,
            counts.failed,
            phones.failure_kinds,
            elapsed.as_secs_f64(),
            callee.counts,
        );
        assert!(
            dropped > 0,
            "{test}: the loss rule dropped nothing:\n{rules}"
        );
        assert!(
            counts.successful * 1000 >= u64::from(CALLS) * 999,
            "{test}: {}/{CALLS} calls completed ({pct:.2} %), want ≥ 99.9 %\n{}\n{}{}",
            counts.successful,
            phones.summary(),
            phones.report,
            edge.report()
        );
    });
}
