//! rtprelay end to end: the real binary on loopback, driven over its UDP control socket, with
//! real UDP endpoints. Each forwarding test runs on both datapaths.

use e2e::http;
use e2e::relay::{relay_or_skip, Relay};
use e2e::workdir::WorkDir;
use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const PACKETS: u32 = 1_000;
const RTP_SIZE: usize = 172;
const WAIT: Duration = Duration::from_secs(5);

fn endpoint() -> UdpSocket {
    endpoint_on("127.0.0.1")
}

fn endpoint_on(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind endpoint");
    // Room for a whole burst: nothing may be lost in the test's own socket buffer.
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// An RTP packet (RFC 3550 §5.1, PCMU) whose payload starts with `tag` and the sequence number.
fn rtp(tag: u8, seq: u32) -> [u8; RTP_SIZE] {
    let mut p = [0xFFu8; RTP_SIZE];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    p[4..8].copy_from_slice(&(seq * 160).to_be_bytes());
    p[8..12].copy_from_slice(&[0, 0, 0, tag]);
    p[12] = tag;
    p[13..17].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Receive until `want` packets tagged `tag` arrived or `WAIT` passes. Returns the sequence
/// numbers seen, the number of packets with another tag, and the set of source addresses.
fn collect(sock: &UdpSocket, tag: u8, want: usize) -> (HashSet<u32>, usize, HashSet<SocketAddr>) {
    let deadline = Instant::now() + WAIT;
    let (mut seqs, mut other, mut from) = (HashSet::new(), 0, HashSet::new());
    let mut buf = [0u8; 2048];
    while seqs.len() < want && Instant::now() < deadline {
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            from.insert(src);
            if n == RTP_SIZE && buf[12] == tag {
                seqs.insert(u32::from_be_bytes([buf[13], buf[14], buf[15], buf[16]]));
            } else {
                other += 1;
            }
        }
    }
    (seqs, other, from)
}

/// Drain whatever arrives within `d` (for "nothing must arrive" checks).
fn drain(sock: &UdpSocket, d: Duration) -> usize {
    let deadline = Instant::now() + d;
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while Instant::now() < deadline {
        if sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

fn port_of(reply: &str) -> u16 {
    reply
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a port reply: {reply:?}"))
}

/// Start the relay with `datapath`; `None` (after printing why) when the test must be skipped.
fn start(test: &str, dir: &WorkDir, datapath: &str) -> Option<Relay> {
    let bin = relay_or_skip(test)?;
    match Relay::start(&bin, dir, &["--datapath", datapath, "--log-level", "debug"]) {
        Ok(r) => Some(r),
        Err(f) if datapath == "io_uring" && f.log.contains("io_uring datapath unavailable") => {
            e2e::skip::skip(
                test,
                format!(
                    "the relay reports that io_uring could not be set up:\n{}",
                    f.log
                ),
            );
            None
        }
        Err(f) => panic!("rtprelay did not start: {}\n{}", f.message, f.log),
    }
}

fn forwards_and_resists_hijack(datapath: &str) {
    let test = format!("relay_forwarding_{datapath}");
    let dir = WorkDir::new(&test);
    let Some(mut relay) = start(&test, &dir, datapath) else {
        return;
    };
    let log = relay.log_text();
    assert!(
        log.contains(&format!("datapath=\"{datapath}\""))
            || log.contains(&format!("datapath={datapath}")),
        "relay should log that it runs {datapath}:\n{log}"
    );
    // The attacker is another host (127.0.0.2): the strict latch accepts the signalled IP on
    // any port (NAT port changes), so an attacker must not share the party's IP.
    let (a, b, attacker) = (endpoint(), endpoint(), endpoint_on("127.0.0.2"));
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());

    // Offer from A, answer from B. U's port is where B sends, L's port where A sends.
    let u = relay
        .command(&format!("U e2e-call 127.0.0.1 {} ftag", a_addr.port()))
        .unwrap();
    let l = relay
        .command(&format!("L e2e-call 127.0.0.1 {} ftag ttag", b_addr.port()))
        .unwrap();
    let to_b_side: SocketAddr = ([127, 0, 0, 1], port_of(&u)).into();
    let to_a_side: SocketAddr = ([127, 0, 0, 1], port_of(&l)).into();
    let (lo, hi) = relay.ports();
    for p in [to_a_side.port(), to_b_side.port()] {
        assert!((lo..=hi).contains(&p), "port {p} outside {lo}-{hi}");
    }
    assert_ne!(to_a_side, to_b_side);

    // The attacker speaks first, to both relay ports (RTP Bleed style): nothing may be
    // forwarded anywhere and no latch may move.
    for seq in 0..20 {
        attacker.send_to(&rtp(0xEE, seq), to_a_side).unwrap();
        attacker.send_to(&rtp(0xEE, seq), to_b_side).unwrap();
    }
    let dropped = relay.wait_metric(
        "rtprelay_drops_total",
        &[("reason", "foreign_source")],
        40.0,
        WAIT,
    );
    assert_eq!(
        dropped,
        40.0,
        "attacker packets must be dropped as foreign_source\n{}",
        relay.report()
    );

    // 1,000 packets each way, in bursts small enough for the socket buffers.
    for seq in 0..PACKETS {
        a.send_to(&rtp(0xA1, seq), to_a_side).unwrap();
        b.send_to(&rtp(0xB2, seq), to_b_side).unwrap();
        if seq % 50 == 49 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let (at_b, other_b, from_b) = collect(&b, 0xA1, PACKETS as usize);
    let (at_a, other_a, from_a) = collect(&a, 0xB2, PACKETS as usize);
    assert_eq!(
        at_b.len(),
        PACKETS as usize,
        "A→B lost packets\n{}",
        relay.report()
    );
    assert_eq!(
        at_a.len(),
        PACKETS as usize,
        "B→A lost packets\n{}",
        relay.report()
    );
    assert_eq!(
        (other_a, other_b),
        (0, 0),
        "attacker traffic reached an endpoint"
    );
    // Symmetric RTP: each party hears the relay from the port it sends to.
    assert_eq!(from_b, HashSet::from([to_b_side]));
    assert_eq!(from_a, HashSet::from([to_a_side]));
    assert_eq!(
        drain(&attacker, Duration::from_millis(200)),
        0,
        "attacker got traffic"
    );

    // The attacker again, mid-call: still nothing, latches unchanged (A and B still hear each
    // other, the attacker hears nothing).
    for seq in 0..10 {
        attacker.send_to(&rtp(0xEE, seq), to_a_side).unwrap();
        attacker.send_to(&rtp(0xEE, seq), to_b_side).unwrap();
    }
    for seq in PACKETS..PACKETS + 10 {
        a.send_to(&rtp(0xA1, seq), to_a_side).unwrap();
        b.send_to(&rtp(0xB2, seq), to_b_side).unwrap();
    }
    let (late_b, other_b, _) = collect(&b, 0xA1, 10);
    let (late_a, other_a, _) = collect(&a, 0xB2, 10);
    assert_eq!(
        (late_a.len(), late_b.len()),
        (10, 10),
        "latch moved\n{}",
        relay.report()
    );
    assert_eq!((other_a, other_b), (0, 0));
    assert_eq!(
        drain(&attacker, Duration::from_millis(200)),
        0,
        "attacker got traffic"
    );

    // Q and /metrics agree with what was sent.
    let sent_each = f64::from(PACKETS + 10);
    let fwd = relay.wait_metric(
        "rtprelay_packets_forwarded_total",
        &[],
        2.0 * sent_each,
        WAIT,
    );
    assert_eq!(fwd, 2.0 * sent_each, "{}", relay.report());
    assert_eq!(
        relay.metric_sum("rtprelay_bytes_forwarded_total", &[]),
        2.0 * sent_each * RTP_SIZE as f64
    );
    assert_eq!(
        relay.metric_sum("rtprelay_drops_total", &[("reason", "foreign_source")]),
        60.0
    );
    assert_eq!(relay.metric_sum("rtprelay_streams", &[]), 1.0);
    assert_eq!(relay.metric_sum("rtprelay_sessions", &[]), 1.0);
    // Every pair of the range is free but the stream's two.
    let (lo, hi) = relay.ports();
    let pairs = f64::from((u32::from(hi) + 1 - u32::from(lo + (lo & 1))) / 2);
    assert_eq!(
        relay.metric_sum("rtprelay_free_port_pairs", &[]),
        pairs - 2.0,
        "{}",
        relay.report()
    );
    assert!(relay.metric_sum("rtprelay_free_buffers", &[]) > 0.0);
    assert_eq!(
        relay.metric_sum("rtprelay_build_info", &[("datapath", datapath)]),
        1.0
    );
    assert!(relay.metric_sum("process_resident_memory_bytes", &[]) > 0.0);
    assert!(relay.metric_sum("process_open_fds", &[]) > 0.0);
    // Nothing observed before the stream ends.
    assert_eq!(
        relay.metric_sum("rtprelay_stream_packet_loss_ratio_count", &[]),
        0.0
    );
    assert_eq!(
        relay.metric_sum(
            "rtprelay_control_commands_total",
            &[("command", "U"), ("result", "ok")]
        ),
        1.0
    );
    let q = relay.command("Q e2e-call ftag ttag").unwrap();
    let nums: Vec<u64> = q
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // ttl, packets from A, packets from B, relayed, dropped.
    assert_eq!(nums.len(), 5, "Q answered {q:?}");
    let n = u64::from(PACKETS + 10);
    assert_eq!(&nums[1..], &[n, n, 2 * n, 60], "Q answered {q:?}");

    // D: the stream is gone, its ports relay nothing.
    assert_eq!(relay.command("D e2e-call ftag ttag").unwrap(), "0");
    a.send_to(&rtp(0xA1, 9999), to_a_side).unwrap();
    assert_eq!(drain(&b, Duration::from_millis(200)), 0);
    assert_eq!(relay.wait_metric("rtprelay_streams", &[], 0.0, WAIT), 0.0);
    // Freed pairs wait in quarantine, which counts as free.
    assert_eq!(relay.metric_sum("rtprelay_free_port_pairs", &[]), pairs);
    // One loss and one jitter observation per direction, both lossless (A and B sent
    // 0..1010 in order; the attacker's packets are not theirs): RFC 3550 A.1 counts from
    // the second packet, so 1009 expected each.
    assert_eq!(
        relay.wait_metric("rtprelay_stream_packet_loss_ratio_count", &[], 2.0, WAIT),
        2.0,
        "{}",
        relay.report()
    );
    assert_eq!(
        relay.metric_sum("rtprelay_stream_packet_loss_ratio_bucket", &[("le", "0")]),
        2.0
    );
    assert_eq!(
        relay.metric_sum("rtprelay_stream_jitter_seconds_count", &[]),
        2.0
    );
    let ended = relay.log_text();
    let line = ended
        .lines()
        .find(|l| l.contains("stream ended") && l.contains("e2e-call"))
        .unwrap_or_else(|| panic!("no stream ended line:\n{ended}"));
    for field in [
        "a_rtp_expected=1009",
        "b_rtp_expected=1009",
        "a_rtp_lost=0",
        "b_rtp_lost=0",
        "a_jitter_us=",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(relay
        .command("Q e2e-call ftag ttag")
        .unwrap()
        .starts_with('E'));
}

#[test]
fn relay_forwarding_fallback() {
    forwards_and_resists_hijack("fallback");
}

#[test]
fn relay_forwarding_io_uring() {
    forwards_and_resists_hijack("io_uring");
}

#[test]
fn relay_retransmitted_command_runs_once() {
    let test = "relay_retransmitted_command_runs_once";
    let dir = WorkDir::new(test);
    let Some(mut relay) = start(test, &dir, "auto") else {
        return;
    };
    let t = Duration::from_secs(3);
    let first = relay
        .command_with_cookie("77_1", "U rtx-call 127.0.0.1 4000 ftag", t)
        .unwrap();
    let again = relay
        .command_with_cookie("77_1", "U rtx-call 127.0.0.1 4000 ftag", t)
        .unwrap();
    assert_eq!(first, again, "a retransmission gets the cached reply");
    // A new cookie for the same offer is a re-offer: same session, same port.
    let reoffer = relay.command("U rtx-call 127.0.0.1 4000 ftag").unwrap();
    assert_eq!(port_of(&reoffer), port_of(&first));
    let info = relay.command("I").unwrap();
    assert!(info.contains("active sessions: 1"), "I answered {info:?}");
    assert_eq!(relay.metric_sum("rtprelay_streams_created_total", &[]), 1.0);
    assert_eq!(
        relay.metric_sum(
            "rtprelay_control_commands_total",
            &[("command", "U"), ("result", "retransmit")]
        ),
        1.0
    );
    // D retransmitted: answered from the cache (0), not executed again (which would be E50).
    assert_eq!(
        relay
            .command_with_cookie("77_2", "D rtx-call ftag", t)
            .unwrap(),
        "0"
    );
    assert_eq!(
        relay
            .command_with_cookie("77_2", "D rtx-call ftag", t)
            .unwrap(),
        "0"
    );
    assert!(relay.command("D rtx-call ftag").unwrap().starts_with("E"));
    let info = relay.command("I").unwrap();
    assert!(info.contains("active sessions: 0"), "I answered {info:?}");
}

#[test]
fn relay_config_error_exits_2_naming_the_key() {
    let Some(bin) = relay_or_skip("relay_config_error_exits_2_naming_the_key") else {
        return;
    };
    let dir = WorkDir::new("relay_config_error");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[media]\nport_min = 30000\ntimeout_s = 0\n").unwrap();
    let out = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("media.timeout_s"), "{err}");
    std::fs::write(&cfg, "[media]\nport_min = \"x\"\n").unwrap();
    let out = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port_min") && err.contains("line 2"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn relay_sigterm_drains_then_exits_0_and_frees_its_ports() {
    let test = "relay_sigterm_drains_then_exits_0_and_frees_its_ports";
    let dir = WorkDir::new(test);
    let Some(mut relay) = start(test, &dir, "auto") else {
        return;
    };
    let u = relay.command("U term-call 127.0.0.1 4000 ftag").unwrap();
    let port = port_of(&u);
    let ready = http::get(relay.admin_addr(), "/ready", WAIT).expect("GET /ready");
    assert_eq!((ready.status, ready.body.trim()), (200, "ready"));
    let pid = relay.pid().expect("pid") as libc::pid_t;
    // SAFETY: a signal to the child this test started, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    // Not ready (no new calls), but alive.
    let ready = http::get(relay.admin_addr(), "/ready", WAIT).expect("GET /ready");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("draining"), "{}", ready.body);
    let health = http::get(relay.admin_addr(), "/health", WAIT).expect("GET /health");
    assert_eq!(health.status, 200);
    // Draining: a new call is refused, the call in progress is still served.
    assert_eq!(
        relay.command("U new-call 127.0.0.1 4002 ftag").unwrap(),
        "E98"
    );
    assert_eq!(
        port_of(&relay.command("U term-call 127.0.0.1 4000 ftag").unwrap()),
        port
    );
    // Its end ends the drain: the relay exits 0 by itself.
    assert_eq!(relay.command("D term-call ftag").unwrap(), "0");
    let status = relay.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the drained relay should exit cleanly\n{}",
        relay.log_text()
    );
    assert!(
        relay.log_text().contains("drain complete"),
        "{}",
        relay.log_text()
    );
    // Control and media sockets are closed with the process.
    UdpSocket::bind(relay.control_addr()).expect("control port still bound");
    UdpSocket::bind(("127.0.0.1", port)).expect("media port still bound");
}

#[test]
fn rtprelayctl_lists_sessions_and_totals() {
    let test = "rtprelayctl_lists_sessions_and_totals";
    let dir = WorkDir::new(test);
    let Some(mut relay) = start(test, &dir, "auto") else {
        return;
    };
    let Some(ctl) = e2e::tools::workspace_bin("rtprelayctl") else {
        e2e::skip::skip(
            test,
            "rtprelayctl binary not found (run `cargo build --workspace --bins`)",
        );
        return;
    };
    relay.command("U ctl-call 127.0.0.1 4000 ftag;1").unwrap();
    let run = |verb: &str| {
        let out = std::process::Command::new(&ctl)
            .args(["--control", &relay.control_addr().to_string(), verb])
            .output()
            .expect("run rtprelayctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("$ rtprelayctl {verb}\n{text}");
        assert!(
            out.status.success(),
            "{test}: {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let sessions = run("sessions");
    assert!(
        sessions.contains("active sessions: 1") && sessions.contains("ctl-call/1 ftag/NONE"),
        "{test}: {sessions}"
    );
    let totals = run("totals");
    assert!(totals.contains("nsess_active=1"), "{test}: {totals}");
    assert_eq!(run("version").trim(), "20040107");
}
