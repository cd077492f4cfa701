//! Core selection end to end (RFC 3263): the edge's core is a domain name resolved by DNS SRV
//! from a DNS responder on loopback (started here; nothing else is queried), the first SRV
//! target answers 503, and the request fails over to the second target; the caller gets the
//! second core's 200, never the 503.

use e2e::edge::{start_or_panic, EdgeArgs};
use e2e::ports::{free_addr, ACCESS_IP, CORE_IP};
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SRV: u16 = 33;
const A: u16 = 1;

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A one-zone authoritative responder: `_sip._udp.core.test` SRV → one.core.test (priority
/// 10, port `p1`) and two.core.test (priority 20, port `p2`), both A = CORE_IP.
fn respond(q: &[u8], p1: u16, p2: u16) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let name = labels.join(".");
    let srv = |prio: u16, port: u16, target: &str| {
        let mut r = Vec::new();
        r.extend_from_slice(&prio.to_be_bytes());
        r.extend_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&port.to_be_bytes());
        r.extend_from_slice(&encode_name(target));
        r
    };
    let answers: Option<Vec<Vec<u8>>> = match (name.as_str(), qtype) {
        ("_sip._udp.core.test", SRV) => Some(vec![
            srv(10, p1, "one.core.test"),
            srv(20, p2, "two.core.test"),
        ]),
        ("one.core.test" | "two.core.test", A) => Some(vec![CORE_IP.octets().to_vec()]),
        ("one.core.test" | "two.core.test", _) => Some(Vec::new()),
        _ => None,
    };
    let rcode: u16 = if answers.is_some() { 0 } else { 3 };
    let answers = answers.unwrap_or_default();
    let mut r = Vec::new();
    r.extend_from_slice(q.get(0..2)?);
    r.extend_from_slice(&(0x8500u16 | rcode).to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(q.get(12..at + 4)?);
    for rdata in answers {
        r.extend_from_slice(&[0xC0, 12]);
        r.extend_from_slice(&qtype.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&30u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some(r)
}

/// Runs the responder until `stop` (bounded by a 100 ms read timeout per turn).
fn dns_server(p1: u16, p2: u16, stop: Arc<AtomicBool>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if let Some(r) = respond(&buf[..n], p1, p2) {
                    let _ = sock.send_to(&r, from);
                }
            }
        }
    });
    addr
}

/// The next SIP request a fake core receives (skips anything else), within `wait`.
fn next_request(core: &UdpSocket, wait: Duration) -> Option<(String, SocketAddr)> {
    let end = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok((n, from)) = core.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("MESSAGE ") {
                return Some((text, from));
            }
        }
    }
    None
}

/// A response to `req` (its Vias, From, To with a tag, Call-ID, CSeq).
fn response(req: &str, status: &str) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for line in req.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("to:") {
            r.push_str(&format!("{line};tag=core\r\n"));
        } else if ["via:", "from:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            r.push_str(line);
            r.push_str("\r\n");
        }
    }
    r.push_str("Content-Length: 0\r\n\r\n");
    r
}

#[test]
fn srv_resolved_core_503_fails_over_to_the_next_target() {
    let test = "srv_resolved_core_503_fails_over_to_the_next_target";
    let Some(edge_bin) = edge_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let core1 = UdpSocket::bind(free_addr(CORE_IP)).unwrap();
    let core2 = UdpSocket::bind(free_addr(CORE_IP)).unwrap();
    for c in [&core1, &core2] {
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    let (p1, p2) = (
        core1.local_addr().unwrap().port(),
        core2.local_addr().unwrap().port(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let dns = dns_server(p1, p2, stop.clone());
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!("[routing]\ncore = [\"core.test\"]\ndns_servers = [\"{dns}\"]\n"),
    )
    .unwrap();
    let args = EdgeArgs::default().extra(&["--config", cfg.to_str().unwrap()]);
    let mut edge = start_or_panic(&edge_bin, &dir, &args);

    let phone = UdpSocket::bind((ACCESS_IP, 0)).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = phone.local_addr().unwrap();
    // The first resolution may still be running: retry (new transactions) for up to 5 s.
    let mut first = None;
    for i in 0..25 {
        let msg = format!(
            "MESSAGE sip:bob@core.test SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsrv{i};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@core.test>;tag=a{i}\r\nTo: <sip:bob@core.test>\r\n\
Call-ID: srv-{i}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
        );
        phone.send_to(msg.as_bytes(), edge.sip_addr()).unwrap();
        if let Some(got) = next_request(&core1, Duration::from_millis(200)) {
            first = Some(got);
            break;
        }
    }
    let (req1, from1) = first.unwrap_or_else(|| {
        panic!(
            "{test}: the SRV priority-10 target never got the MESSAGE\n{}",
            edge.report()
        )
    });
    core1
        .send_to(response(&req1, "503 Service Unavailable").as_bytes(), from1)
        .unwrap();
    let (req2, from2) = next_request(&core2, Duration::from_secs(3)).unwrap_or_else(|| {
        panic!(
            "{test}: no failover to the priority-20 target\n{}",
            edge.report()
        )
    });
    let call_id = |r: &str| {
        r.split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with("call-id:"))
            .map(str::to_owned)
    };
    assert_eq!(call_id(&req1), call_id(&req2), "{test}: the same request");
    core2
        .send_to(response(&req2, "200 OK").as_bytes(), from2)
        .unwrap();
    // The phone sees 200 and never the 503 (or the 500 it would become).
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_secs(3);
    let mut finals = Vec::new();
    while Instant::now() < end && finals.is_empty() {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if call_id(&text) == call_id(&req1) {
                finals.push(text.lines().next().unwrap_or_default().to_string());
            }
        }
    }
    assert_eq!(finals, vec!["SIP/2.0 200 OK".to_string()], "{test}");
    let metrics = edge.metrics_text().expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("edge_core_failovers_total 1")),
        "{test}: failover counted"
    );
    stop.store(true, Ordering::Relaxed);
}

/// Health by OPTIONS: with `--health-interval 1` the core receives an OPTIONS about every
/// second, each a new transaction.
#[test]
fn core_gets_health_options_every_interval() {
    let test = "core_gets_health_options_every_interval";
    let Some(edge_bin) = edge_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let core = UdpSocket::bind(free_addr(CORE_IP)).unwrap();
    core.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let args = EdgeArgs::udp_core(core.local_addr().unwrap()).extra(&["--health-interval", "1"]);
    let mut edge = start_or_panic(&edge_bin, &dir, &args);
    let mut buf = [0u8; 4096];
    let mut branches = Vec::new();
    let end = Instant::now() + Duration::from_millis(3_700);
    while Instant::now() < end {
        let Ok((n, from)) = core.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("OPTIONS ") {
            continue;
        }
        let branch = text
            .split("\r\n")
            .find(|l| l.starts_with("Via:"))
            .and_then(|v| v.split("branch=").nth(1))
            .map(|b| b.split(';').next().unwrap_or_default().to_string());
        if !branches.contains(&branch) {
            branches.push(branch);
        }
        core.send_to(response(&text, "200 OK").as_bytes(), from)
            .unwrap();
    }
    assert!(
        (2..=5).contains(&branches.len()),
        "{test}: {} probes in 3.7 s\n{}",
        branches.len(),
        edge.report()
    );
}
