//! RFC 5626 §4.4.2: a STUN Binding request sent to the edge's SIP UDP port is answered with a
//! Binding success response whose XOR-MAPPED-ADDRESS is the sender's address (RFC 5389 §15.2),
//! and it is not treated as SIP (the edge keeps serving SIP on the same socket).

use e2e::edge::{start_or_panic, EdgeArgs};
use e2e::ports::{free_addr, ACCESS_IP, CORE_IP};
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

fn binding_request(tid: [u8; 12]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00];
    m.extend_from_slice(&COOKIE);
    m.extend_from_slice(&tid);
    m
}

/// The XOR-MAPPED-ADDRESS (IPv4) of a Binding success response with transaction id `tid`.
fn xor_mapped(resp: &[u8], tid: [u8; 12]) -> Result<SocketAddr, String> {
    if resp.len() < 20 || resp[0..2] != [0x01, 0x01] || resp[4..8] != COOKIE {
        return Err(format!("not a Binding success response: {resp:02x?}"));
    }
    if resp[8..20] != tid {
        return Err("transaction id not echoed".into());
    }
    let mut at = 20;
    while at + 4 <= resp.len() {
        let kind = u16::from_be_bytes([resp[at], resp[at + 1]]);
        let len = u16::from_be_bytes([resp[at + 2], resp[at + 3]]) as usize;
        let value = resp
            .get(at + 4..at + 4 + len)
            .ok_or("truncated attribute")?;
        if kind == 0x0020 && len == 8 && value[1] == 0x01 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ 0x2112;
            let ip = Ipv4Addr::new(
                value[4] ^ COOKIE[0],
                value[5] ^ COOKIE[1],
                value[6] ^ COOKIE[2],
                value[7] ^ COOKIE[3],
            );
            return Ok(SocketAddr::from((ip, port)));
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    Err("no IPv4 XOR-MAPPED-ADDRESS".into())
}

#[test]
fn stun_binding_on_sip_udp_port() {
    let test = "stun_binding_on_sip_udp_port";
    let Some(edge_bin) = edge_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let edge = start_or_panic(&edge_bin, &dir, &EdgeArgs::udp_core(free_addr(CORE_IP)));

    let udp = UdpSocket::bind((ACCESS_IP, 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let me = udp.local_addr().unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..3u8 {
        let tid = [i + 1; 12];
        udp.send_to(&binding_request(tid), edge.sip_addr()).unwrap();
        let (n, from) = udp.recv_from(&mut buf).expect("STUN answer within 3 s");
        assert_eq!(from, edge.sip_addr(), "{test}: answered from the SIP port");
        assert_eq!(
            xor_mapped(&buf[..n], tid),
            Ok(me),
            "{test}: reflexive address"
        );
    }

    // SIP still works on the same socket, from the same client socket.
    let options = format!(
        "OPTIONS sip:{edge} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKstun1\r\n\
Max-Forwards: 70\r\nFrom: <sip:stun@test>;tag=1\r\nTo: <sip:{edge}>\r\nCall-ID: stun-1\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        edge = edge.sip_addr(),
    );
    udp.send_to(options.as_bytes(), edge.sip_addr()).unwrap();
    let (n, _) = udp.recv_from(&mut buf).expect("OPTIONS answered");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{test}: got {:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    let metrics = edge.metrics_text().expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("edge_stun_binding_answered_total 3")),
        "{test}: counter in /metrics"
    );
}
