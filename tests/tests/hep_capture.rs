//! SIP capture (`[hep]`, issue 11): one call through the edge started with `--hep-collector`;
//! a UDP socket on loopback plays the Homer collector. It must receive one HEP v3 packet per SIP
//! message the edge received or sent for the call — no more, no fewer — each with the message's
//! real source and destination ip:port, protocol type SIP, the Call-ID as correlation id, and
//! the exact bytes that were on the wire as payload.
//!
//! What was on the wire comes from SIPp's own message traces (`-trace_msg` logs every message
//! with its exact length): every message the caller (access side, one socket) sent went to the
//! edge, every one it received came from the edge, and likewise for the callee (the core). So
//! the expected captures are those traces, retransmissions included, with the addresses filled
//! in; nothing else of the call may reach the collector.

use e2e::edge::{assert_calls_ok, start_or_panic, EdgeArgs};
use e2e::metrics;
use e2e::ports::{free_addr, ACCESS_IP, CORE_IP, EDGE_IP};
use e2e::sipp::{Scenario, Sipp, Transport};
use e2e::tools::{edge_tools_or_skip, scenario};
use e2e::workdir::WorkDir;
use edge::hep;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// One message from a SIPp trace: whether SIPp sent it, and its bytes.
struct Traced {
    sent: bool,
    bytes: Vec<u8>,
}

/// Splits a `-trace_msg` log into messages. SIPp writes each as a line
/// `UDP message sent (N bytes):` or `UDP message received [N] bytes :`, a blank line, then the
/// N bytes exactly as on the wire.
fn parse_trace(log: &str) -> Vec<Traced> {
    let mut out = Vec::new();
    let b = log.as_bytes();
    let mut at = 0;
    while let Some(i) = log[at..].find(" message ") {
        let start = at + i;
        let line_end = start + log[start..].find('\n').expect("marker line ends");
        let line = &log[start..line_end];
        at = line_end;
        let sent = line.starts_with(" message sent (");
        let received = line.starts_with(" message received [");
        if !sent && !received {
            continue;
        }
        let n: usize = line
            .trim_start_matches(" message sent (")
            .trim_start_matches(" message received [")
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("no length in trace line {line:?}"));
        // The marker line, a blank line, then the message.
        let body = line_end + 2;
        let bytes = b[body..body + n].to_vec();
        at = body + n;
        out.push(Traced { sent, bytes });
    }
    out
}

/// (source, destination, payload) of one capture.
type Capture = (SocketAddr, SocketAddr, Vec<u8>);

fn first_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.lines().next().unwrap_or("").to_string()
}

fn describe(c: &[Capture]) -> String {
    c.iter()
        .map(|(s, d, p)| format!("  {s} -> {d}: {}", first_line(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn collector_gets_one_hep_packet_per_sip_message_of_a_udp_call() {
    let test = "collector_gets_one_hep_packet_per_sip_message_of_a_udp_call";
    one_call(test, Transport::Udp);
}

#[test]
fn collector_gets_one_hep_packet_per_sip_message_of_a_tcp_call() {
    let test = "collector_gets_one_hep_packet_per_sip_message_of_a_tcp_call";
    one_call(test, Transport::Tcp);
}

/// One call with `transport` on both legs, captured; see the module doc.
fn one_call(test: &str, transport: Transport) {
    let Some(tools) = edge_tools_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let collector = UdpSocket::bind(free_addr(EDGE_IP)).expect("bind collector");
    let collector_addr = collector.local_addr().unwrap();
    let sipp = |label: &str, file: &str| {
        Sipp::new(&tools.sipp, label, Scenario::File(scenario(file)))
            .transport(transport)
            .calls(1)
            .timeout(Duration::from_secs(20))
            .trace_msg(true)
    };
    let uas = sipp("core", "uas_answer.xml")
        .ip(CORE_IP)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let (scheme, proto) = match transport {
        Transport::Udp => ("udp", hep::PROTO_UDP),
        Transport::Tcp => ("tcp", hep::PROTO_TCP),
    };
    let args = EdgeArgs {
        tcp: transport == Transport::Tcp,
        cores: vec![format!("{scheme}:{}", uas.local_addr())],
        extra: Vec::new(),
    }
    .extra(&[
        "--hep-collector",
        &collector_addr.to_string(),
        "--media-mode",
        "never",
    ]);
    let mut edge = start_or_panic(&tools.edge, &dir, &args);
    let edge_addr = edge.sip_addr();
    let uac = sipp("caller", "uac_call.xml")
        .ip(ACCESS_IP)
        .remote(edge_addr)
        .spawn(&dir)
        .unwrap_or_else(|e| panic!("{e}"));
    let (uac_addr, uas_addr) = (uac.local_addr(), uas.local_addr());
    let outcomes = vec![uac.wait(), uas.wait()];
    assert_calls_ok(test, &outcomes, &mut edge);

    // Everything the collector got; every packet sent before the SIPp runs ended is queued.
    collector
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let mut got: Vec<Capture> = Vec::new();
    let mut probes = Vec::new();
    let mut total = 0;
    while let Ok((n, from)) = collector.recv_from(&mut buf) {
        total += 1;
        assert_eq!(from.ip(), EDGE_IP, "{test}: a packet from {from}");
        let d = hep::decode(&buf[..n])
            .unwrap_or_else(|e| panic!("{test}: packet {total} does not decode: {e}"));
        let line = first_line(&d.payload);
        assert_eq!(d.proto_type, hep::PROTO_TYPE_SIP, "{test}: {line}");
        assert_eq!(d.ip_family, hep::FAMILY_IPV4, "{test}: {line}");
        assert_eq!(
            d.correlation_id.as_deref(),
            hep::call_id(&d.payload),
            "{test}: the correlation id of {line} is its Call-ID"
        );
        // The harness's readiness OPTIONS come from another port of the access IP, over UDP.
        let peer = if d.src.ip() == EDGE_IP { d.dst } else { d.src };
        if peer.ip() == ACCESS_IP && peer != uac_addr {
            probes.push(line);
            continue;
        }
        assert_eq!(d.ip_proto, proto, "{test}: IP protocol of {line}");
        got.push((d.src, d.dst, d.payload));
    }
    assert!(
        probes
            .iter()
            .all(|l| l.starts_with("OPTIONS ") || l.starts_with("SIP/2.0 200")),
        "{test}: captures of other messages: {probes:?}"
    );

    // The edge's end toward the core: its listen address over UDP, the local end of the one
    // connection it opened over TCP.
    let core_side: Vec<SocketAddr> = got
        .iter()
        .filter_map(|(s, d, _)| match (*s == uas_addr, *d == uas_addr) {
            (true, _) => Some(*d),
            (_, true) => Some(*s),
            _ => None,
        })
        .collect();
    let edge_core = core_side.first().copied().unwrap_or(edge_addr);
    assert!(
        core_side.iter().all(|a| *a == edge_core) && edge_core.ip() == EDGE_IP,
        "{test}: the edge's ends toward the core: {core_side:?}"
    );
    if transport == Transport::Udp {
        assert_eq!(
            edge_core, edge_addr,
            "{test}: UDP leaves from the listen socket"
        );
    }

    // What the edge exchanged with each peer, from the peers' traces.
    let mut want: Vec<Capture> = Vec::new();
    for (o, peer, edge_end) in [
        (&outcomes[0], uac_addr, edge_addr),
        (&outcomes[1], uas_addr, edge_core),
    ] {
        let log = o.messages.as_deref().expect("trace_msg on");
        let traced = parse_trace(log);
        assert!(
            traced.len() >= 5,
            "{test}: {} trace too short:\n{log}",
            o.label
        );
        for t in traced {
            let (src, dst) = if t.sent {
                (peer, edge_end)
            } else {
                (edge_end, peer)
            };
            want.push((src, dst, t.bytes));
        }
    }
    let call_id = hep::call_id(&want[0].2).expect("the INVITE has a Call-ID");
    assert!(
        got.iter().all(|(_, _, p)| hep::call_id(p) == Some(call_id)),
        "{test}: captures of another call:\n{}",
        describe(&got)
    );
    want.sort();
    got.sort();
    assert!(
        got == want,
        "{test}: captured\n{}\nexpected (from the SIPp traces)\n{}\n{}",
        describe(&got),
        describe(&want),
        edge.report()
    );
    // The call's messages both ways on both legs: INVITE, ACK, BYE in from the caller and out
    // to the core; 180, 200, 200 back; and the edge's own 100 Trying to the caller.
    let count = |src: SocketAddr, dst: SocketAddr| {
        got.iter()
            .filter(|(s, d, _)| (*s, *d) == (src, dst))
            .count()
    };
    assert!(count(uac_addr, edge_addr) >= 3, "{test}: caller -> edge");
    assert!(count(edge_core, uas_addr) >= 3, "{test}: edge -> core");
    assert!(count(uas_addr, edge_core) >= 3, "{test}: core -> edge");
    assert!(count(edge_addr, uac_addr) >= 4, "{test}: edge -> caller");
    assert!(
        got.iter()
            .any(|(s, d, p)| (*s, *d) == (edge_core, uas_addr) && p.starts_with(b"INVITE ")),
        "{test}: no forwarded INVITE captured"
    );

    let samples = edge
        .metrics()
        .unwrap_or_else(|e| panic!("{test}: /metrics: {e}"));
    assert_eq!(
        metrics::sum(&samples, "edge_hep_sent_total", &[]),
        Some(total as f64),
        "{test}: edge_hep_sent_total counts every packet the collector got"
    );
    assert_eq!(
        metrics::sum(&samples, "edge_hep_dropped_total", &[]),
        Some(0.0),
        "{test}: nothing dropped"
    );
}
