//! Interop with a real, unmodified softphone: headless `linphonec` 5.1 (Debian `linphone-cli`)
//! against Kamailio 5.6 as the carrier core (tests/kamailio/interop.cfg: digest auth, usrloc in
//! memory, GRUU on), first directly, then through the edge and rtprelay.
//!
//! linphone asks for a GRUU when it registers and then uses its pub-GRUU
//! (`sip:bob@example.test;gr=urn:uuid:...`) as the Contact of its dialogs, so the ACK and BYE
//! towards it carry the GRUU as Request-URI and only the registrar can resolve them. Every call
//! below is answered by the callee, runs ~3.5 s with each phone playing its own tone (caller
//! 440 Hz, callee 1000 Hz) and recording what it decodes; each side must have decoded at least
//! 1.5 s of the peer's tone. Calls end by BYE from the caller and from the callee, and a next
//! call must work after them: while a call linphone believes is up lingers (its BYE or the ACK
//! of its 200 was lost) it answers every new INVITE `486 Busy Here`, printing nothing. All three
//! calls of a scenario run even when one fails (a failed call is hung up on the caller's side
//! only), so the report shows whether the phones recovered.
//!
//! The direct baseline needs the core to resolve a GRUU Request-URI in in-dialog requests too
//! (`loose_route()` leaves `sip:bob@example.test;gr=...` as the next hop when no Route is left);
//! through the edge the edge is the last Route and resolves it.
//!
//! - `linphone_direct_gruu_calls`: baseline without the edge, phones registered at Kamailio.
//! - `linphone_edge_outbound_proxy`: provisioning (a), AoR `sip:USER@example.test`, outbound
//!   proxy (`reg_route`) = the edge; media anchored on rtprelay.
//! - `linphone_edge_aor_at_edge`: provisioning (b), AoR `sip:USER@EDGEIP:EDGEPORT`, no outbound
//!   proxy.
//!
//! Per call the seconds of tone decoded in each direction are printed (`eprintln!`, run with
//! `--nocapture`). A failure report carries both phones' console and SIP traces, the edge's log
//! (at `--log-level debug`) and Kamailio's routing lines. Skipped with a message when linphonec,
//! kamailio or the workspace binaries are missing.
//!
//! Environment: `E2E_LINPHONEC` (another linphonec), `E2E_INTEROP_CFG` (absolute path of another
//! core config template, to try a change without editing the shared one), `E2E_EDGE_BIN` /
//! `E2E_RTPRELAY_BIN`, `E2E_KEEP` (keep the work dir: per phone `linphonec.log` with every SIP
//! message, `linphonerc`, recordings).

use e2e::edge::{Edge, EdgeArgs};
use e2e::kamailio::{Kamailio, KAMAILIO};
use e2e::phones::audio::{tone_seconds, write_tone_wav};
use e2e::phones::linphone::{linphonec_or_skip, CallRef, Linphone, LinphoneSpec};
use e2e::ports::{free_addr, ACCESS_IP, EDGE_IP};
use e2e::relay::{relay_or_skip, Relay};
use e2e::tools::edge_or_skip;
use e2e::workdir::{tail, WorkDir};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CALLER_HZ: f64 = 440.0;
const CALLEE_HZ: f64 = 1000.0;
/// How long a call runs before the BYE.
const TALK: Duration = Duration::from_millis(3500);
/// Seconds of the peer's tone each side must have decoded.
const MIN_TONE_S: f64 = 1.5;
const STEP: Duration = Duration::from_secs(10);

struct Tools {
    linphonec: PathBuf,
    edge: Option<PathBuf>,
    relay: Option<PathBuf>,
}

fn tools_or_skip(test: &str, with_edge: bool) -> Option<Tools> {
    let linphonec = linphonec_or_skip(test)?;
    if !Path::new(KAMAILIO).is_file() {
        e2e::skip::skip(
            test,
            format!("{KAMAILIO} not found (install the kamailio package)"),
        );
        return None;
    }
    let (edge, relay) = if with_edge {
        (Some(edge_or_skip(test)?), Some(relay_or_skip(test)?))
    } else {
        (None, None)
    };
    Some(Tools {
        linphonec,
        edge,
        relay,
    })
}

/// The core's config template: `tests/kamailio/interop.cfg`, or the file named by
/// `$E2E_INTEROP_CFG` (an absolute path; to try a core change without editing the shared one).
fn core_template() -> String {
    std::env::var("E2E_INTEROP_CFG").unwrap_or_else(|_| "interop.cfg".to_string())
}

/// Who hangs up.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ByeFrom {
    Caller,
    Callee,
}

/// Everything a failure report needs besides the phones.
struct Rig {
    dir: WorkDir,
    kamailio: Kamailio,
    edge: Option<Edge>,
    relay: Option<Relay>,
    caller_wav: PathBuf,
    callee_wav: PathBuf,
}

impl Rig {
    fn start(label: &str, tools: &Tools) -> Rig {
        let dir = WorkDir::new(label);
        let caller_wav = dir.path().join("caller-440.wav");
        let callee_wav = dir.path().join("callee-1000.wav");
        write_tone_wav(&caller_wav, CALLER_HZ, 30.0, 8000).expect("caller tone");
        write_tone_wav(&callee_wav, CALLEE_HZ, 30.0, 8000).expect("callee tone");
        // Phones provisioned with the edge's address as their domain (b) are local users of the
        // core: the edge's IP is an alias (any port).
        let kamailio = Kamailio::start_cfg(
            &dir,
            &core_template(),
            &[("@EDGE_ALIAS@", &EDGE_IP.to_string())],
        );
        let (Some(edge_bin), Some(relay_bin)) = (&tools.edge, &tools.relay) else {
            return Rig {
                dir,
                kamailio,
                edge: None,
                relay: None,
                caller_wav,
                callee_wav,
            };
        };
        // Media on an address of its own, apart from the phones and the edge.
        let relay = Relay::start_on(relay_bin, &dir, MEDIA_IP, &[])
            .unwrap_or_else(|e| panic!("rtprelay did not start: {} {}", e.message, e.log));
        let store = dir.path().join("store").join("location.log");
        let control = relay.control_addr().to_string();
        let mut extra = vec![
            "--relay",
            &control,
            "--media-mode",
            "always",
            "--store",
            store.to_str().expect("utf-8 path"),
        ];
        if std::env::var_os("E2E_EDGE_LOG").is_none() {
            extra.extend(["--log-level", "debug"]);
        }
        let edge = Edge::start(
            edge_bin,
            &dir,
            &EdgeArgs::udp_core(kamailio.sip).extra(&extra),
        )
        .unwrap_or_else(|e| panic!("edge did not start: {e}"));
        Rig {
            dir,
            kamailio,
            edge: Some(edge),
            relay: Some(relay),
            caller_wav,
            callee_wav,
        }
    }

    /// Edge log, relay log and Kamailio's log, tails.
    fn report(&mut self) -> String {
        let mut out = String::new();
        if let Some(edge) = self.edge.as_mut() {
            out.push_str(&edge.report());
        }
        if let Some(relay) = self.relay.as_mut() {
            out.push_str(&relay.report());
        }
        out.push_str(&format!(
            "--- kamailio {} ---\n{}\n",
            self.kamailio.sip,
            tail(&self.kamailio.log, 3000)
        ));
        out
    }
}

/// Where rtprelay's media sockets listen: not the phones' 127.0.0.2 nor the edge's 127.0.0.1.
const MEDIA_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

/// What one call gave: seconds of the peer's tone decoded by each side (when measured), and
/// what went wrong (empty when the call passed).
struct CallOutcome {
    label: String,
    caller_heard: Option<f64>,
    callee_heard: Option<f64>,
    problems: Vec<String>,
    /// The caller's side of the call, once placed.
    caller_call: Option<CallRef>,
}

impl CallOutcome {
    fn summary(&self) -> String {
        let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.1} s"));
        let state = if self.problems.is_empty() {
            "OK".to_string()
        } else {
            let firsts: Vec<&str> = self
                .problems
                .iter()
                .map(|p| p.lines().next().unwrap_or(""))
                .collect();
            format!("FAILED: {}", firsts.join(" / "))
        };
        format!(
            "{}: callee->caller {}, caller->callee {}: {state}",
            self.label,
            secs(self.caller_heard),
            secs(self.callee_heard)
        )
    }
}

/// One call `caller` → `callee_uri`, answered by `callee`, ~3.5 s of audio, ended by
/// `bye_from`. Goes as far as it can: a lost BYE is noted and the audio still measured, so the
/// next call shows how the phones cope with it.
fn call(
    label: &str,
    caller: &mut Linphone,
    callee: &mut Linphone,
    callee_uri: &str,
    bye_from: ByeFrom,
) -> CallOutcome {
    let mut outcome = CallOutcome {
        label: label.to_string(),
        caller_heard: None,
        callee_heard: None,
        problems: Vec::new(),
        caller_call: None,
    };
    if let Err(e) = call_steps(label, caller, callee, callee_uri, bye_from, &mut outcome) {
        outcome.problems.push(e);
    }
    // A call that failed half way is hung up on the caller's side (CANCEL or BYE), so that the
    // next call starts from an idle caller; the callee keeps whatever state it was left in
    // (that is what the next call checks).
    if let Some(out) = outcome.caller_call {
        if !caller.has_ended(out) {
            let _ = caller.terminate(out);
            let _ = caller.wait_ended(out, Duration::from_secs(5));
        }
    }
    outcome
}

fn call_steps(
    label: &str,
    caller: &mut Linphone,
    callee: &mut Linphone,
    callee_uri: &str,
    bye_from: ByeFrom,
    outcome: &mut CallOutcome,
) -> Result<(), String> {
    let file = label.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let caller_rec = caller.home().join(format!("{file}-rec.wav"));
    let callee_rec = callee.home().join(format!("{file}-rec.wav"));
    caller.record_to(&caller_rec)?;
    callee.record_to(&callee_rec)?;
    let mark = callee.mark();
    let out = caller.call(callee_uri)?;
    outcome.caller_call = Some(out);
    let inc = match callee.wait_incoming(mark, STEP) {
        Ok(inc) => inc,
        Err(e) => {
            // linphone answers 486 without a console line while an earlier call is still up
            // (e.g. its BYE was lost): the caller's console and the callee's SIP trace tell.
            let caller_lines = caller.call_lines(out).join(" / ");
            let report = caller.report();
            return Err(format!(
                "{label}: the callee printed no incoming call (caller: {caller_lines}): {e}\n{report}"
            ));
        }
    };
    callee.answer(inc)?;
    if let Err(e) = caller.wait_connected(out, STEP) {
        let report = callee.report();
        return Err(format!("{label}: caller: {e}\n{report}"));
    }
    if let Err(e) = callee.wait_connected(inc, STEP) {
        let report = caller.report();
        return Err(format!("{label}: callee: {e}\n{report}"));
    }
    std::thread::sleep(TALK);
    let (ender, other, end_ref, other_ref) = match bye_from {
        ByeFrom::Caller => (&mut *caller, &mut *callee, out, inc),
        ByeFrom::Callee => (&mut *callee, &mut *caller, inc, out),
    };
    ender.terminate(end_ref)?;
    let ended = ender.wait_ended(end_ref, STEP)?;
    // The far end ends only when the BYE reached it.
    match other.wait_ended(other_ref, STEP) {
        Ok(far) => {
            for line in [&ended, &far] {
                if line.contains(" error.") {
                    let (r1, r2) = (ender.report(), other.report());
                    outcome
                        .problems
                        .push(format!("{label}: call ended in error: {line}\n{r1}\n{r2}"));
                }
            }
        }
        Err(e) => {
            let report = ender.report();
            outcome.problems.push(format!(
                "{label}: BYE from the {bye_from:?} ({}: {ended}) did not end the call at {}: {e}\n{report}",
                ender.name(),
                other.name(),
            ));
        }
    }
    // Recordings are closed when the streams stop, right after the end of the call (a side
    // whose call did not end has its recording still open: read as far as written).
    std::thread::sleep(Duration::from_millis(300));
    // A recording is only a WAV file once its call ended (linphone writes the header then).
    let measure = |rec: &Path, hz: f64, outcome: &mut CallOutcome| match tone_seconds(rec, hz) {
        Ok(s) => Some(s),
        Err(e) => {
            outcome.problems.push(format!("{label}: {e}"));
            None
        }
    };
    let caller_heard = measure(&caller_rec, CALLEE_HZ, outcome);
    let callee_heard = measure(&callee_rec, CALLER_HZ, outcome);
    outcome.caller_heard = caller_heard;
    outcome.callee_heard = callee_heard;
    let (Some(caller_heard), Some(callee_heard)) = (caller_heard, callee_heard) else {
        return Ok(());
    };
    eprintln!(
        "{label}: caller decoded {caller_heard:.1} s of the callee's {CALLEE_HZ} Hz, callee decoded {callee_heard:.1} s of the caller's {CALLER_HZ} Hz (BYE from the {bye_from:?})"
    );
    if caller_heard < MIN_TONE_S || callee_heard < MIN_TONE_S {
        let (r1, r2) = (caller.report(), callee.report());
        return Err(format!(
            "{label}: not enough audio (need {MIN_TONE_S} s each way): caller heard {caller_heard:.1} s, callee heard {callee_heard:.1} s\n{r1}\n{r2}"
        ));
    }
    Ok(())
}

/// The Contact of the callee's 2xx to INVITE in its SIP trace must be a GRUU (`;gr=`).
fn callee_contact_is_gruu(callee: &Linphone) -> Result<String, String> {
    let trace = callee.sip_trace(400);
    let answer = trace
        .lines()
        .find(|l| l.contains(" -> ") && l.contains("SIP/2.0 200") && l.contains("INVITE"))
        .ok_or_else(|| format!("no 200 to INVITE sent by {} in:\n{trace}", callee.name()))?;
    let contact = answer
        .split(" | ")
        .find(|p| p.to_ascii_lowercase().starts_with("contact:"))
        .unwrap_or("")
        .to_string();
    if contact.contains(";gr=") {
        Ok(contact)
    } else {
        Err(format!(
            "{}'s 200 OK Contact is not a GRUU: {answer}",
            callee.name()
        ))
    }
}

struct Scenario<'a> {
    test: &'a str,
    /// Builds a phone's spec from (name, user, local SIP address, tone).
    spec: &'a dyn Fn(&Rig, &str, &str, &Path) -> LinphoneSpec,
    /// Request-URI the caller dials for user `bob`.
    callee_uri: &'a dyn Fn(&Rig) -> String,
}

fn run(tools: &Tools, sc: &Scenario) {
    let _serial = e2e::heavy_lock();
    let mut rig = Rig::start(sc.test, tools);
    let caller_wav = rig.caller_wav.clone();
    let callee_wav = rig.callee_wav.clone();
    let alice_spec = (sc.spec)(&rig, "alice", "alice", &caller_wav);
    let bob_spec = (sc.spec)(&rig, "bob", "bob", &callee_wav);
    let start = |spec: &LinphoneSpec, rig: &mut Rig| {
        Linphone::start(&tools.linphonec, &rig.dir, spec).unwrap_or_else(|e| {
            panic!(
                "{}: linphonec did not start: {e}\n{}",
                sc.test,
                rig.report()
            )
        })
    };
    let mut alice = start(&alice_spec, &mut rig);
    let mut bob = start(&bob_spec, &mut rig);
    for phone in [&mut alice, &mut bob] {
        if let Err(e) = phone.wait_registered(STEP) {
            panic!("{}: {e}\n{}", sc.test, rig.report());
        }
    }
    let uri = (sc.callee_uri)(&rig);
    let plan = [
        ("call1-bye-from-caller", ByeFrom::Caller),
        ("call2-bye-from-callee", ByeFrom::Callee),
        ("call3-next-call", ByeFrom::Caller),
    ];
    let mut outcomes = Vec::new();
    for (label, bye) in plan {
        let label = format!("{} {label}", sc.test);
        outcomes.push(call(&label, &mut alice, &mut bob, &uri, bye));
    }
    let gruu = callee_contact_is_gruu(&bob);
    match &gruu {
        Ok(contact) => eprintln!("{}: callee's dialog {contact}", sc.test),
        Err(e) => eprintln!("{}: {e}", sc.test),
    }
    for o in &outcomes {
        eprintln!("SUMMARY {}", o.summary());
    }
    let mut failures: Vec<String> = outcomes.iter().flat_map(|o| o.problems.clone()).collect();
    if let Err(e) = gruu {
        failures.push(e);
    }
    if !failures.is_empty() {
        let summary: Vec<String> = outcomes.iter().map(CallOutcome::summary).collect();
        panic!(
            "{}: {} problem(s)\n{}\n\n{}\n{}",
            sc.test,
            failures.len(),
            summary.join("\n"),
            failures.join("\n\n"),
            rig.report()
        );
    }
    alice.stop(Duration::from_secs(2));
    bob.stop(Duration::from_secs(2));
}

/// Carrier provisioning: AoR in example.test, outbound proxy = the core itself (the baseline,
/// `via_edge` false) or the edge.
fn carrier_provisioned(test: &str, via_edge: bool) {
    let Some(tools) = tools_or_skip(test, via_edge) else {
        return;
    };
    let spec = move |rig: &Rig, name: &str, user: &str, wav: &Path| {
        let proxy = match &rig.edge {
            Some(e) if via_edge => e.sip_addr(),
            _ => rig.kamailio.sip,
        };
        LinphoneSpec::new(
            name,
            user,
            "example.test",
            &format!("sip:{proxy}"),
            free_addr(ACCESS_IP),
            wav,
        )
        .outbound_proxy(&format!("sip:{proxy};lr"))
    };
    let uri = |_: &Rig| "sip:bob@example.test".to_string();
    run(
        &tools,
        &Scenario {
            test,
            spec: &spec,
            callee_uri: &uri,
        },
    );
}

#[test]
fn linphone_direct_gruu_calls() {
    carrier_provisioned("linphone_direct_gruu_calls", false);
}

#[test]
fn linphone_edge_outbound_proxy() {
    carrier_provisioned("linphone_edge_outbound_proxy", true);
}

#[test]
fn linphone_edge_aor_at_edge() {
    let test = "linphone_edge_aor_at_edge";
    let Some(tools) = tools_or_skip(test, true) else {
        return;
    };
    let spec = |rig: &Rig, name: &str, user: &str, wav: &Path| {
        let e = rig.edge.as_ref().map(Edge::sip_addr).expect("edge");
        LinphoneSpec::new(
            name,
            user,
            &e.to_string(),
            &format!("sip:{e}"),
            free_addr(ACCESS_IP),
            wav,
        )
    };
    let uri = |rig: &Rig| {
        let e = rig.edge.as_ref().map(Edge::sip_addr).expect("edge");
        format!("sip:bob@{e}")
    };
    run(
        &tools,
        &Scenario {
            test,
            spec: &spec,
            callee_uri: &uri,
        },
    );
}
