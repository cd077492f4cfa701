//! Media through a NAT (issue 5): the caller sits in its own network namespace behind a NAT
//! namespace (iptables MASQUERADE to ports 20000–20099) and announces its private address in
//! SDP; the edge, rtprelay and the callee run in a third namespace. The relay must latch the
//! NAT's public port (the signalled address is private) so that the callee's echoed audio gets
//! back through the NAT to the phone. Needs root (namespaces, iptables); skips otherwise.

use e2e::netns::{output, run, spawn_in, NatAddrs, NatLab};
use e2e::tools::{edge_or_skip, rtp_call_scenario, sipp_or_skip, workspace_bin};
use e2e::workdir::WorkDir;
use std::path::Path;

use std::time::{Duration, Instant};

const CALLS: u64 = 5;
const PACKETS: u64 = 250;
const PHONE_IP: &str = "10.77.0.2";
const NAT_LAN_IP: &str = "10.77.0.1";
const NAT_WAN_IP: &str = "198.18.0.1";
const CORE_IP: &str = "198.18.0.2";

#[test]
fn audio_reaches_a_natted_phone_through_the_relay() {
    let test = "audio_reaches_a_natted_phone_through_the_relay";
    if unsafe { libc::geteuid() } != 0 {
        e2e::skip::skip(test, "needs root for network namespaces and iptables");
        return;
    }
    let (Some(edge), Some(sipp), Some(relay)) = (
        edge_or_skip(test),
        sipp_or_skip(test),
        workspace_bin("rtprelay"),
    ) else {
        return;
    };
    let dir = WorkDir::new(test);
    let lab = NatLab::build(
        "mn",
        &NatAddrs {
            phone: PHONE_IP,
            nat_lan: NAT_LAN_IP,
            nat_wan: NAT_WAN_IP,
            carrier: CORE_IP,
        },
        None,
    );
    let (p, n, c) = (lab.phone.clone(), lab.nat.clone(), lab.carrier.clone());
    // Count the RTP that makes it back to the phone's media port.
    run(&[
        "ip", "netns", "exec", &p, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "6000", "-j",
        "ACCEPT",
    ]);

    let relay_log = dir.path().join("rtprelay.log");
    let _relay = e2e::relay::spawn_in_netns(&c, &relay, CORE_IP, &relay_log);
    let edge_bin = edge.display().to_string();
    let _edge = spawn_in(
        &c,
        "edge",
        &dir.path().join("edge.log"),
        &[
            &edge_bin,
            "--listen-udp",
            &format!("{CORE_IP}:5060"),
            "--core",
            &format!("{CORE_IP}:5070"),
            "--admin",
            "127.0.0.1:9560",
            "--media-mode",
            "always",
            "--relay",
            "127.0.0.1:22222",
            // The SIPp core would count health OPTIONS as unexpected messages.
            "--health-interval",
            "0",
        ],
    );
    let sipp_bin = sipp.display().to_string();
    let _uas = spawn_in(
        &c,
        "uas",
        &dir.path().join("uas.log"),
        &[
            &sipp_bin,
            "-sn",
            "uas",
            "-i",
            CORE_IP,
            "-mi",
            CORE_IP,
            "-p",
            "5070",
            "-rtp_echo",
            "-nostdin",
            "-timeout",
            "60s",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));

    let uac_xml = rtp_call_scenario(dir.path());
    let uac_log = dir.path().join("uac.log");
    let mut uac = spawn_in(
        &p,
        "uac",
        &uac_log,
        &[
            &sipp_bin,
            "-sf",
            &uac_xml.display().to_string(),
            &format!("{CORE_IP}:5060"),
            "-i",
            PHONE_IP,
            "-mi",
            PHONE_IP,
            "-p",
            "5061",
            "-m",
            &CALLS.to_string(),
            "-r",
            "5",
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
            "-trace_err",
        ],
    );
    let started = Instant::now();
    let status = uac
        .wait_timeout(Duration::from_secs(70))
        .unwrap_or_else(|| panic!("{test}: uac did not finish"));
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    assert!(
        status.success(),
        "{test}: uac failed after {:?}: {}\nedge: {}",
        started.elapsed(),
        read(&uac_log),
        read(&dir.path().join("edge.log"))
    );
    std::thread::sleep(Duration::from_millis(500));

    // The NAT really translated the phone's media port into its public range…
    let conntrack = output(&["ip", "netns", "exec", &n, "conntrack", "-L", "-p", "udp"]);
    assert!(
        conntrack
            .lines()
            .any(|l| l.contains(&format!("src={PHONE_IP}"))
                && l.contains("sport=6000")
                && l.contains(&format!("dst={NAT_WAN_IP}"))
                && l.contains("dport=200")),
        "{test}: no NATed media flow in conntrack:\n{conntrack}"
    );
    // …the relay saw audio both ways for every call…
    let log = read(&relay_log);
    let ended: Vec<&str> = log.lines().filter(|l| l.contains("stream ended")).collect();
    assert_eq!(ended.len() as u64, CALLS, "{test}: relay log:\n{log}");
    for line in &ended {
        for field in ["a_packets_in=", "b_packets_in="] {
            let n: u64 = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(field))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(n >= PACKETS * 9 / 10, "{test}: {field}{n} in {line}");
        }
    }
    // …and the echoed audio came back through the NAT to the phone.
    let counters = output(&[
        "ip", "netns", "exec", &p, "iptables", "-L", "INPUT", "-v", "-x", "-n",
    ]);
    let back: u64 = counters
        .lines()
        .find(|l| l.contains("dpt:6000"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        back >= CALLS * PACKETS * 9 / 10,
        "{test}: only {back} RTP packets reached the phone\n{counters}"
    );
}
