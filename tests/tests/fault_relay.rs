//! Issue 15 (reliability), the relay crashes with calls up: 20 calls through the edge with
//! their media anchored on rtprelay, G.711 streaming from the callers (SIPp `rtp_stream`, looped)
//! and echoed by the callee (`-rtp_echo`). The relay is SIGKILLed and started again at once on
//! the same control and media ports (as systemd's `Restart=` would); the old calls' phones go
//! on sending to their old relay ports, which the new relay may hand out again.
//!
//! - Old calls: the new relay does not know them; the edge's check (`Q` every
//!   `media.check_interval_s` = 5 s by default) learns it and ends each call with a BYE to both
//!   parties. The callers' scenario waits for that BYE (it never hangs up itself) and the callee
//!   (SIPp's built-in `uas`) for a BYE on every call: both SIPp runs succeed only if every old
//!   call was ended on both legs. Acceptance: within the stream timeout + 5 s of the crash.
//! - New calls, placed right after the restart (5 s of audio each, echoed): each must have
//!   audio both ways — on the relay, each leg latched to its own party (not to an old call's
//!   stale stream on a re-used port) with (nearly) all packets from both.
//!
//! Figures go to stderr in one line, e.g. `fault_relay: 20/20 old calls ended by BYE both ways
//! 5.3 s after the crash; 10/10 new calls with audio`.

use e2e::edge::{start_or_panic, Edge, EdgeArgs};
use e2e::heavy_lock;
use e2e::metrics;
use e2e::ports::{ACCESS_IP, CORE_IP};
use e2e::relay::{free_media_range, relay_or_skip, Relay};
use e2e::sipp::{Scenario, Sipp, SippRun};
use e2e::tools::{edge_tools_or_skip, rtp_call_scenario, EdgeTools};
use e2e::workdir::WorkDir;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OLD_CALLS: u32 = 20;
const NEW_CALLS: u32 = 10;
/// Packets per direction of a new call: 5 s at 20 ms (a few may fall before the latch).
const NEW_CALL_PACKETS: u64 = 250;
/// The relay's stream timeout (rtprelay's `media.timeout_s` default).
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The long-call scenario streaming 1 s of A-law silence (raw) `loops` times (-1: for ever).
fn long_call_scenario(dir: &Path, loops: i32) -> PathBuf {
    let stream = dir.join("silence.alaw");
    std::fs::write(&stream, vec![0xd5u8; 8000]).expect("write stream");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/fault_relay_long_call.xml");
    let text = std::fs::read_to_string(&src).expect("fault_relay_long_call.xml");
    let out = dir.join(format!("long_call_{loops}.xml"));
    std::fs::write(
        &out,
        text.replace("@STREAM@", &format!("{},{loops}", stream.display())),
    )
    .expect("write scenario");
    out
}

/// The callee (SIPp's `uas` echoing RTP from media port `mp`, for `calls` calls) as the core,
/// and the edge anchoring media on `relay`.
fn callee_and_edge(
    tools: &EdgeTools,
    dir: &WorkDir,
    relay: &Relay,
    (calls, mp): (u32, u16),
    limit: Duration,
) -> (SippRun, Edge) {
    let callee = Sipp::new(&tools.sipp, "callee", Scenario::Builtin("uas"))
        .ip(CORE_IP)
        .calls(calls)
        .timeout(limit)
        .arg("-rtp_echo")
        .arg("-mp")
        .arg(&mp.to_string())
        .spawn(dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let control = relay.control_addr().to_string();
    let args = EdgeArgs::udp_core(callee.local_addr()).extra(&[
        "--media-mode",
        "always",
        "--relay",
        &control,
    ]);
    let edge = start_or_panic(&tools.edge, dir, &args);
    (callee, edge)
}

#[test]
fn relay_crash_ends_old_calls_by_bye_and_new_calls_have_audio() {
    let test = "fault_relay_restart";
    let (Some(tools), Some(relay_bin)) = (edge_tools_or_skip(test), relay_or_skip(test)) else {
        return;
    };
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    // 128 ports = 32 pairs per shard: the old calls take 40 of the 64 pairs, so new calls
    // after the restart land on ports that still receive the old calls' media.
    let (lo, hi) = free_media_range(128);
    let ports = format!("{lo}-{hi}");
    let mut relay = Relay::start(&relay_bin, &dir, &["--ports", &ports])
        .unwrap_or_else(|f| panic!("rtprelay: {}\n{}", f.message, f.log));
    let limit = Duration::from_secs(100);
    // SIPp binds its media port and the port 2 above (video): take them from a free block.
    let (mp, _) = free_media_range(64);
    let (mp_callee, mp_old, mp_new) = (mp, mp + 4, mp + 8);
    let (callee, mut edge) = callee_and_edge(
        &tools,
        &dir,
        &relay,
        (OLD_CALLS + NEW_CALLS, mp_callee),
        limit,
    );
    let old = Sipp::new(
        &tools.sipp,
        "old_calls",
        Scenario::File(long_call_scenario(dir.path(), -1)),
    )
    .ip(ACCESS_IP)
    .remote(edge.sip_addr())
    .calls(OLD_CALLS)
    .rate(10)
    .timeout(limit)
    .arg("-mp")
    .arg(&mp_old.to_string())
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"));
    // Every old call up, media flowing both ways through the relay.
    let streams = relay.wait_metric(
        "rtprelay_streams",
        &[],
        f64::from(OLD_CALLS),
        Duration::from_secs(20),
    );
    assert_eq!(
        streams,
        f64::from(OLD_CALLS),
        "old calls up\n{}",
        edge.report()
    );
    std::thread::sleep(Duration::from_secs(2));
    let forwarded = relay.metric_sum("rtprelay_packets_forwarded_total", &[]);
    assert!(
        forwarded > f64::from(OLD_CALLS) * 50.0,
        "media flows before the crash: {forwarded} packets"
    );

    let crash = Instant::now();
    let relay2 = relay
        .crash_and_restart(&relay_bin, &dir, &[])
        .unwrap_or_else(|f| panic!("rtprelay restart: {}\n{}", f.message, f.log));
    let new = Sipp::new(
        &tools.sipp,
        "new_calls",
        Scenario::File(rtp_call_scenario(dir.path())),
    )
    .ip(ACCESS_IP)
    .remote(edge.sip_addr())
    .calls(NEW_CALLS)
    .rate(10)
    .timeout(limit)
    .arg("-mp")
    .arg(&mp_new.to_string())
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"));

    let old = old.wait();
    let old_ended = crash.elapsed();
    let old_ok = old.counts.as_ref().map_or(0, |c| c.successful);
    let outcomes = [old, new.wait(), callee.wait()];
    if let Some(msg) = e2e::sipp::failure_report(test, &outcomes) {
        panic!("{msg}{}", edge.report());
    }
    assert!(
        old_ended <= STREAM_TIMEOUT + Duration::from_secs(5),
        "old calls ended {old_ended:?} after the crash"
    );
    let lost = metrics::sum(
        &edge.metrics().expect("edge /metrics"),
        "edge_media_lost_calls_total",
        &[("outcome", "bye")],
    )
    .unwrap_or(0.0);
    assert_eq!(lost, f64::from(OLD_CALLS), "calls ended by the edge");

    // New calls: each leg latched to its own party, with its audio.
    let ended = relay2.ended();
    let caller_media = format!("{ACCESS_IP}:{mp_new}");
    let callee_media = format!("{CORE_IP}:{mp_callee}");
    let mut with_audio = 0;
    let mut problems = Vec::new();
    for (call, s) in &ended {
        let ok = s.a_latched == caller_media
            && s.b_latched == callee_media
            && s.a_packets_in >= NEW_CALL_PACKETS * 9 / 10
            && s.b_packets_in >= NEW_CALL_PACKETS * 9 / 10;
        if ok {
            with_audio += 1;
        } else {
            problems.push(format!("{call}: {s:?}"));
        }
    }
    // What the old calls' stale media did to the new relay (the learning rule at work).
    let stale = relay2.metric_sum("rtprelay_drops_total", &[("reason", "foreign_source")]);
    let relatched = relay2.metric_sum("rtprelay_latches_total", &[("kind", "relatch")]);
    eprintln!(
        "fault_relay: {}/{OLD_CALLS} old calls ended by BYE both ways {:.1} s after the crash; \
         {with_audio}/{NEW_CALLS} new calls with audio both ways; new relay: {stale} stale \
         packets dropped, {relatched} latches taken back by the signalled party",
        old_ok,
        old_ended.as_secs_f64()
    );
    assert_eq!(
        ended.len(),
        NEW_CALLS as usize,
        "streams on the new relay: {ended:?}"
    );
    assert!(
        problems.is_empty(),
        "new calls without audio (caller {caller_media}, callee {callee_media}):\n{}",
        problems.join("\n")
    );
    assert_eq!(relay2.metric_sum("rtprelay_streams", &[]), 0.0);
}

/// Dead media on a live relay: calls whose callers stop sending after 1 s (the callee only
/// echoes) time out on the relay (`--timeout 3`); the edge's next check finds them gone and
/// ends each with a BYE to both parties, within the stream timeout + 5 s of the silence.
#[test]
fn dead_media_ends_the_call_with_bye_both_ways() {
    let test = "fault_relay_dead_media";
    let (Some(tools), Some(relay_bin)) = (edge_tools_or_skip(test), relay_or_skip(test)) else {
        return;
    };
    const CALLS: u32 = 5;
    const TIMEOUT_S: u64 = 3;
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let timeout = TIMEOUT_S.to_string();
    let relay = Relay::start(&relay_bin, &dir, &["--timeout", &timeout])
        .unwrap_or_else(|f| panic!("rtprelay: {}\n{}", f.message, f.log));
    let (mp, _) = free_media_range(64);
    let limit = Duration::from_secs(60);
    let (callee, mut edge) = callee_and_edge(&tools, &dir, &relay, (CALLS, mp), limit);
    let started = Instant::now();
    let callers = Sipp::new(
        &tools.sipp,
        "callers",
        Scenario::File(long_call_scenario(dir.path(), 1)),
    )
    .ip(ACCESS_IP)
    .remote(edge.sip_addr())
    .calls(CALLS)
    .rate(10)
    .timeout(limit)
    .arg("-mp")
    .arg(&(mp + 4).to_string())
    .spawn(&dir)
    .unwrap_or_else(|e| panic!("{e}"));
    let callers = callers.wait();
    let ended = started.elapsed();
    let outcomes = [callers, callee.wait()];
    if let Some(msg) = e2e::sipp::failure_report(test, &outcomes) {
        panic!("{msg}{}", edge.report());
    }
    // 1 s of media, the relay's timeout, then at most one check interval (5 s); plus the
    // calls' setup spread (0.5 s at 10/s) and scheduling slack.
    let bound = Duration::from_secs(1 + TIMEOUT_S + 5) + Duration::from_millis(1500);
    let timed_out = relay.metric_sum("rtprelay_timeouts_total", &[]);
    eprintln!(
        "fault_relay dead media: {CALLS}/{CALLS} calls ended by BYE both ways, the last {:.1} s \
         after the first was placed ({timed_out} streams timed out on the relay)",
        ended.as_secs_f64()
    );
    assert!(
        ended <= bound,
        "calls ended {ended:?} after they started (bound {bound:?})"
    );
    assert_eq!(
        timed_out,
        f64::from(CALLS),
        "streams timed out on the relay"
    );
    let lost = metrics::sum(
        &edge.metrics().expect("edge /metrics"),
        "edge_media_lost_calls_total",
        &[("outcome", "bye")],
    )
    .unwrap_or(0.0);
    assert_eq!(lost, f64::from(CALLS));
}
