//! End-to-end control server test: real UDP and unix sockets on loopback, fake media plane.

use config::{ControlConfig, IpNet};
use prometheus::Registry;
use rtprelay::control::fake::{FakeBackend, FakeCalls};
use rtprelay::control::server::Server;
use rtprelay::control::{ControlMetrics, SessionConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UdpSocket, UnixStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(3);

fn session_cfg() -> SessionConfig {
    SessionConfig {
        internal: [127, 0, 0, 1].into(),
        advertise: None,
        external: None,
        timeout: Duration::from_secs(60),
        max_sessions: 100,
        media_ports: (30000, 30127),
        quotas: Default::default(),
    }
}

struct Running {
    udp: SocketAddr,
    calls: Arc<FakeCalls>,
    metrics: ControlMetrics,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(allow: Vec<IpNet>, unix: Option<PathBuf>) -> Running {
    let cfg = ControlConfig {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        unix: unix.map(|p| p.to_string_lossy().into_owned()),
        allow,
        reply_cache_s: 30,
        ..ControlConfig::default()
    };
    let backend = FakeBackend::new(30000, 64);
    let calls = backend.calls();
    let metrics = ControlMetrics::register(&Registry::new()).unwrap();
    let server = Server::bind(&cfg, session_cfg(), Box::new(backend), metrics.clone())
        .await
        .unwrap();
    let udp = server.udp_addr().unwrap();
    let task = tokio::spawn(server.serve());
    Running {
        udp,
        calls,
        metrics,
        task,
    }
}

async fn exchange(sock: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(from, to);
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn loopback() -> Vec<IpNet> {
    vec!["127.0.0.0/8".parse().unwrap()]
}

#[tokio::test]
async fn udp_commands_and_retransmission() {
    let r = start(loopback(), None).await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    assert_eq!(exchange(&c, r.udp, "1_1 V").await, "1_1 20040107\n");
    assert_eq!(exchange(&c, r.udp, "1_2 VF 20050322").await, "1_2 1\n");
    assert_eq!(
        exchange(&c, r.udp, "1_3 UAI call1 192.0.2.10 4000 caller;1").await,
        "1_3 30002 127.0.0.1\n"
    );
    // Retransmission (same cookie): the same answer, not executed again.
    assert_eq!(
        exchange(&c, r.udp, "1_3 UAI call1 192.0.2.10 4000 caller;1").await,
        "1_3 30002 127.0.0.1\n"
    );
    assert_eq!(FakeCalls::get(&r.calls.create), 1);
    assert_eq!(FakeCalls::get(&r.calls.update), 0);

    assert_eq!(
        exchange(&c, r.udp, "1_4 L call1 198.51.100.7 5000 caller;1 callee;1").await,
        "1_4 30000 127.0.0.1\n"
    );
    assert_eq!(
        exchange(&c, r.udp, "1_5 Q call1 caller callee").await,
        "1_5 60 0 0 0 0\n"
    );
    assert_eq!(
        exchange(&c, r.udp, "1_6 L nocall 198.51.100.7 5000 a;1 b;1").await,
        "1_6 0 0.0.0.0\n"
    );
    assert_eq!(exchange(&c, r.udp, "1_7 bogus").await, "1_7 E0\n");
    assert_eq!(
        exchange(&c, r.udp, "1_8 D call1 callee caller").await,
        "1_8 0\n"
    );
    assert_eq!(
        exchange(&c, r.udp, "1_9 D call1 callee caller").await,
        "1_9 E50\n"
    );
    assert_eq!(FakeCalls::get(&r.calls.remove), 1);

    assert_eq!(
        r.metrics
            .commands
            .with_label_values(&["U", "retransmit"])
            .get(),
        1
    );
    assert_eq!(r.metrics.commands.with_label_values(&["U", "ok"]).get(), 1);
    assert_eq!(
        r.metrics.commands.with_label_values(&["D", "error"]).get(),
        1
    );
    // No call left (streams are counted per shard by the media plane, faked here).
    assert_eq!(r.metrics.sessions.get(), 0);
    r.task.abort();
}

#[tokio::test]
async fn source_not_allowed_is_dropped_silently() {
    let r = start(vec!["10.0.0.0/8".parse().unwrap()], None).await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(b"2_1 V", r.udp).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(300), c.recv_from(&mut buf))
        .await
        .is_err());
    assert_eq!(r.metrics.rejected.with_label_values(&["source"]).get(), 1);
    assert_eq!(FakeCalls::get(&r.calls.create), 0);
    r.task.abort();
}

#[tokio::test]
async fn datagram_without_cookie_is_dropped() {
    let r = start(loopback(), None).await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(b"V", r.udp).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(300), c.recv_from(&mut buf))
        .await
        .is_err());
    assert_eq!(r.metrics.rejected.with_label_values(&["framing"]).get(), 1);
    // The server is still alive.
    assert_eq!(exchange(&c, r.udp, "3_1 V").await, "3_1 20040107\n");
    r.task.abort();
}

async fn read_reply(s: &mut UnixStream) -> String {
    let mut buf = [0u8; 1024];
    let n = timeout(WAIT, s.read(&mut buf))
        .await
        .expect("reply in time")
        .unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[tokio::test]
async fn unix_socket_one_shot_and_persistent() {
    let path = std::env::temp_dir().join(format!("rtprelay-control-{}.sock", std::process::id()));
    let r = start(loopback(), Some(path.clone())).await;

    // `unix:` client (Kamailio): one command without newline, read the reply, close.
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(b"U call1 192.0.2.10 4000 caller;1")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut s).await, "30002 127.0.0.1\n");
    drop(s);

    // `cunix:` client: several commands, one per line, on one connection.
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(b"V\n").await.unwrap();
    assert_eq!(read_reply(&mut s).await, "20040107\n");
    s.write_all(b"L call1 198.51.100.7 5000 caller;1 callee;1\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut s).await, "30000 127.0.0.1\n");
    // Two commands in one write: two replies, in order.
    s.write_all(b"VF 20071116\nD call1 caller callee\n")
        .await
        .unwrap();
    let mut got = String::new();
    while got.matches('\n').count() < 2 {
        got.push_str(&read_reply(&mut s).await);
    }
    assert_eq!(got, "0\n0\n");
    assert_eq!(FakeCalls::get(&r.calls.remove), 1);
    r.task.abort();
    let _ = std::fs::remove_file(&path);
}
