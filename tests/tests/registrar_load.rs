//! Issue 4, acceptance (a): 1,000 SIPp users refreshing every 60 s for 5 minutes through the
//! edge in AoR throttling, Kamailio 5.6 as the core registrar (tests/kamailio/registrar.cfg,
//! which logs one `REGCOUNT <AoR>` line per REGISTER it receives). With `outgoing_expires`
//! 3600 s (the default) the whole run fits in one window, so the core must receive exactly one
//! REGISTER per AoR, counted at the core, while the phones send six each.
//!
//! One SIPp instance on 127.0.0.2 plays all phones: one call per user (`-inf` users CSV
//! written into the test's work dir), 100 new users a second (the 1,000 initial
//! registrations spread over 10 s), each call sending REGISTER CSeq 1..6 one minute apart
//! (tests/kamailio/phone_refresh.xml). The figures (REGISTERs at the edge vs at the core) go to
//! stderr for the CI log. Every wait is bounded: SIPp's own `-timeout` plus the harness's kill.
//!
//! Skipped with a message when kamailio, sipp or the edge binary is missing.

use e2e::edge::{start_or_panic, Edge, EdgeArgs};
use e2e::kamailio::{kamailio_dir, tools_or_skip, Kamailio};
use e2e::metrics;
use e2e::ports::ACCESS_IP;
use e2e::sipp::{Scenario, Sipp, SippOutcome};
use e2e::workdir::{tail, WorkDir};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const USERS: u32 = 1_000;
/// New users per second: the initial registrations spread over USERS / RATE = 10 s.
const RATE: u32 = 100;
/// REGISTERs per user in phone_refresh.xml: the initial one and five refreshes 60 s apart.
const REGISTERS_PER_USER: u32 = 6;
/// SIPp's global timeout: 5 min of refreshes + 10 s of ramp-up + a generous margin. The
/// harness kills SIPp 15 s after it.
const SIPP_TIMEOUT: Duration = Duration::from_secs(420);

fn user(i: u32) -> String {
    format!("load{i:04}")
}

/// The `-inf` file: one user per call, read in order.
fn write_users_csv(dir: &WorkDir) -> PathBuf {
    let mut text = String::from("SEQUENTIAL\n");
    for i in 0..USERS {
        text += &format!("{};\n", user(i));
    }
    let path = dir.path().join("users1000.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn metric(edge: &Edge, name: &str) -> f64 {
    let samples = edge.metrics().unwrap_or_else(|e| panic!("/metrics: {e}"));
    metrics::sum(&samples, name, &[]).unwrap_or_else(|| panic!("/metrics lacks {name}"))
}

#[track_caller]
fn fail(test: &str, msg: &str, out: &SippOutcome, edge: &mut Edge, k: &Kamailio) -> ! {
    panic!(
        "{test}: {msg}\n{}\n{}{}\n--- kamailio log ---\n{}",
        out.summary(),
        out.report,
        edge.report(),
        tail(&k.log, 3000)
    );
}

#[test]
fn registrar_load_1000_users_aor_throttling_core_sees_one_register_per_aor() {
    let test = "registrar_load_1000_users_aor_throttling_core_sees_one_register_per_aor";
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    let started = Instant::now();
    let dir = WorkDir::new(test);
    let k = Kamailio::start(&dir);
    let store = dir.path().join("store").join("location.log");
    let args = EdgeArgs::udp_core(k.sip).extra(&[
        "--registrar-mode",
        "aor",
        "--store",
        store.to_str().unwrap(),
    ]);
    let mut edge = start_or_panic(&tools.edge, &dir, &args);
    let users = write_users_csv(&dir);
    let phones = Sipp::new(
        &tools.sipp,
        "phones",
        Scenario::File(kamailio_dir().join("phone_refresh.xml")),
    )
    .ip(ACCESS_IP)
    .remote(edge.sip_addr())
    .calls(USERS)
    .rate(RATE)
    .arg("-inf")
    .arg(users.to_str().unwrap())
    // Every user's call stays open for the whole run: let all of them be open at once.
    .arg("-l")
    .arg(&USERS.to_string())
    .timeout(SIPP_TIMEOUT)
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"))
    .wait();

    // Figures first, so the CI log has them even when an assertion fails.
    let seen = k.registers();
    let core_total: usize = seen.values().sum();
    let absorbed = metric(&edge, "edge_registrar_registers_absorbed_total");
    let forwarded = metric(&edge, "edge_registrar_registers_forwarded_total");
    let bindings = metric(&edge, "edge_registrar_bindings");
    let ok_calls = phones.counts.map_or(0, |c| c.successful);
    eprintln!(
        "{test}: {USERS} users x {REGISTERS_PER_USER} REGISTERs in {:.0} s; phones: {ok_calls} \
         users with every REGISTER answered 200; edge: {} REGISTERs answered \
         ({absorbed} absorbed, {forwarded} forwarded), {bindings} bindings; core: \
         {core_total} REGISTERs for {} AoRs",
        started.elapsed().as_secs_f64(),
        absorbed + forwarded,
        seen.len(),
    );

    if !phones.ok() {
        fail(
            test,
            "the phones did not all get 200s",
            &phones,
            &mut edge,
            &k,
        );
    }
    assert_eq!(
        phones.counts.map(|c| (c.successful, c.failed)),
        Some((u64::from(USERS), 0)),
        "{test}: {}",
        phones.summary()
    );
    // At the core: every AoR registered, none more than once in the 3600 s window.
    let missing: Vec<String> = (0..USERS)
        .map(|i| format!("sip:{}@example.com", user(i)))
        .filter(|aor| !seen.contains_key(aor))
        .collect();
    if !missing.is_empty() {
        fail(
            test,
            &format!(
                "{} AoRs never reached the core, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ),
            &phones,
            &mut edge,
            &k,
        );
    }
    let mut over: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    over.sort();
    if !over.is_empty() || seen.len() != USERS as usize {
        fail(
            test,
            &format!(
                "the core saw {core_total} REGISTERs for {} AoRs; more than one for {} AoRs, \
                 e.g. {:?}",
                seen.len(),
                over.len(),
                &over[..over.len().min(5)]
            ),
            &phones,
            &mut edge,
            &k,
        );
    }
    // At the edge: every REGISTER counted once, the first of each user forwarded, the
    // refreshes absorbed.
    assert_eq!(forwarded, f64::from(USERS), "{test}: forwarded");
    assert_eq!(
        absorbed,
        f64::from(USERS * (REGISTERS_PER_USER - 1)),
        "{test}: absorbed"
    );
    assert_eq!(bindings, f64::from(USERS), "{test}: bindings");
}
