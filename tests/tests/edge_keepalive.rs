//! RFC 5626 keepalives on the SIP ports: a CRLFCRLF ping on TCP is answered with a CRLF pong
//! (§4.4.1) on the same connection, which stays usable for SIP; CRLF datagrams on UDP are
//! absorbed without an answer.

use e2e::edge::{start_or_panic, EdgeArgs};
use e2e::ports::{free_addr, ACCESS_IP, CORE_IP};
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

#[test]
fn crlf_ping_pong_on_tcp_and_silence_on_udp() {
    let test = "crlf_ping_pong_on_tcp_and_silence_on_udp";
    let Some(edge_bin) = edge_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let args = EdgeArgs {
        tcp: true,
        ..EdgeArgs::udp_core(free_addr(CORE_IP))
    };
    let edge = start_or_panic(&edge_bin, &dir, &args);

    let mut tcp = TcpStream::connect(edge.sip_addr()).expect("connect to the edge over TCP");
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for _ in 0..3 {
        tcp.write_all(b"\r\n\r\n").unwrap();
        let mut pong = [0u8; 2];
        tcp.read_exact(&mut pong).expect("pong within 3 s");
        assert_eq!(&pong, b"\r\n", "{test}: pong is a single CRLF");
    }
    // The same connection still carries SIP: an OPTIONS to the edge is answered over it.
    let options = format!(
        "OPTIONS sip:{edge} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKka1\r\n\
Max-Forwards: 70\r\nFrom: <sip:ka@test>;tag=1\r\nTo: <sip:{edge}>\r\nCall-ID: ka-1\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        edge = edge.sip_addr(),
        local = tcp.local_addr().unwrap()
    );
    tcp.write_all(options.as_bytes()).unwrap();
    let mut buf = [0u8; 2048];
    let n = tcp
        .read(&mut buf)
        .expect("OPTIONS answered over the pinged connection");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200"),
        "{test}: got {:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    let udp = UdpSocket::bind((ACCESS_IP, 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    udp.send_to(b"\r\n\r\n", edge.sip_addr()).unwrap();
    udp.send_to(b"\r\n", edge.sip_addr()).unwrap();
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "{test}: a UDP keepalive must not be answered"
    );
}
