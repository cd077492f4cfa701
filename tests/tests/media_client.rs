//! The edge's relay client against rtprelay's real control server (fake media plane) on
//! loopback: U, L, D round trip; a dead relay in the set makes new calls fail over.
//!
//! Here rather than in `edge/tests/` because it links rtprelay, which the edge crate does not
//! depend on (not even for its tests). Its helpers are the edge media tests' `common`.

#[path = "../../edge/tests/common/mod.rs"]
mod common;

use config::ControlConfig;
use edge::media::{ClientConfig, ClientError, MediaMetrics, RelayHandle, Target};
use prometheus::Registry;
use rtprelay::control::fake::{FakeBackend, FakeCalls};
use rtprelay::control::proto::{CallId, Command, Delete, Reply, Tag, Update};
use rtprelay::control::server::Server;
use rtprelay::control::{ControlMetrics, SessionConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

async fn relay() -> (SocketAddr, Arc<FakeCalls>) {
    let cfg = ControlConfig {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        unix: None,
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        reply_cache_s: 30,
        ..ControlConfig::default()
    };
    let session = SessionConfig {
        internal: [127, 0, 0, 1].into(),
        advertise: None,
        external: None,
        timeout: Duration::from_secs(60),
        max_sessions: 100,
        media_ports: (30000, 30127),
        quotas: Default::default(),
    };
    let backend = FakeBackend::new(30000, 64);
    let calls = backend.calls();
    let metrics = ControlMetrics::register(&Registry::new()).unwrap();
    let server = Server::bind(&cfg, session, Box::new(backend), metrics)
        .await
        .unwrap();
    let addr = server.udp_addr().unwrap();
    tokio::spawn(server.serve());
    (addr, calls)
}

/// A loopback UDP port nobody listens on.
fn dead_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

fn config(relays: Vec<(SocketAddr, u32)>) -> ClientConfig {
    ClientConfig {
        relays,
        retransmit: Duration::from_millis(100),
        tries: 2,
        health_interval: Duration::from_secs(60),
    }
}

fn offer(call: &str) -> Command {
    Command::Update(Update::new(
        CallId::new(call),
        "192.0.2.10".parse().unwrap(),
        4000,
        Tag::with_stream("caller", 1),
    ))
}

fn answer(call: &str) -> Command {
    let mut u = Update::new(
        CallId::new(call),
        "198.51.100.7".parse().unwrap(),
        5000,
        Tag::with_stream("caller", 1),
    );
    u.to_tag = Some(Tag::with_stream("callee", 1));
    Command::Lookup(u)
}

fn delete(call: &str) -> Command {
    Command::Delete(Delete {
        weak: false,
        call: CallId::new(call),
        from_tag: Tag::new("caller"),
        to_tag: None,
    })
}

#[tokio::test]
async fn offer_answer_delete_round_trip() {
    let (addr, calls) = relay().await;
    let registry = Registry::new();
    let metrics = MediaMetrics::register(&registry).unwrap();
    let h = RelayHandle::spawn(config(vec![(addr, 1)]), Some(metrics.clone()))
        .await
        .unwrap();

    let (relay, reply) = h.command(offer("call-1"), Target::Any).await.unwrap();
    assert_eq!(relay, 0);
    let (u_port, u_addr) = reply.port().unwrap();
    assert!(u_port >= 30000);
    assert_eq!(u_addr, Some("127.0.0.1".parse().unwrap()));

    let (_, reply) = h.command(answer("call-1"), Target::Relay(0)).await.unwrap();
    let (l_port, _) = reply.port().unwrap();
    assert!(l_port >= 30000 && l_port != u_port);
    assert_eq!(FakeCalls::get(&calls.create), 1);

    let (_, reply) = h.command(delete("call-1"), Target::Relay(0)).await.unwrap();
    assert_eq!(reply, Reply::OK);
    assert_eq!(FakeCalls::get(&calls.remove), 1);
    // A second delete: the relay no longer knows the call.
    let (_, reply) = h.command(delete("call-1"), Target::Relay(0)).await.unwrap();
    assert!(reply.error().is_some());

    let h = metrics.command_seconds.with_label_values(&["U"]);
    assert_eq!(h.get_sample_count(), 1);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(text.contains("edge_relay_command_seconds_bucket{command=\"L\""));
}

#[tokio::test]
async fn dead_relay_fails_over_to_the_live_one() {
    let (live, calls) = relay().await;
    let dead = dead_addr();
    let metrics = MediaMetrics::unregistered().unwrap();
    // Weight puts the first new call on the dead relay.
    let h = RelayHandle::spawn(config(vec![(dead, 5), (live, 1)]), Some(metrics.clone()))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (relay, reply) = h.command(offer("call-2"), Target::Any).await.unwrap();
    assert_eq!(relay, 1, "answered by the live relay");
    assert!(reply.port().unwrap().0 >= 30000);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "two tries on the dead one first"
    );
    assert_eq!(metrics.failures.with_label_values(&["timeout"]).get(), 1);
    // The dead relay is now down: the next new call goes straight to the live one.
    let started = std::time::Instant::now();
    let (relay, _) = h.command(offer("call-3"), Target::Any).await.unwrap();
    assert_eq!(relay, 1);
    assert!(started.elapsed() < Duration::from_millis(150));
    assert_eq!(FakeCalls::get(&calls.create), 2);
    // A command pinned to the dead relay times out instead of moving.
    let err = h
        .command(delete("call-2"), Target::Relay(0))
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::Timeout(dead));
}

// ---- the dialog state machine driving the real relay through the client ----

use config::MediaMode;
use edge::media::{DialogConfig, MediaDialogs, Outcome, SipKind};
use edge::sdp::RewriteOptions;
use edge::sip::Method;

fn body(addr: &str, port: u16) -> Vec<u8> {
    format!("v=0\r\no=- 5 5 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\na=rtcp:{}\r\n", port + 1).into_bytes()
}

/// Send one message through the dialog machine and the relay; the rewritten body if any.
async fn message(
    d: &mut MediaDialogs,
    h: &RelayHandle,
    call: &str,
    tags: (&str, Option<&str>),
    kind: SipKind,
    sdp: Option<&[u8]>,
) -> Option<String> {
    let (held, done) = common::message(d, h, call, tags, kind, sdp).await;
    if !held {
        assert!(done.is_empty());
        return None;
    }
    match &done.first()?.outcome {
        Outcome::Rewrite(b) => Some(String::from_utf8(b.clone()).unwrap()),
        Outcome::Failed(e) => panic!("relay failed: {e}"),
    }
}

fn audio_port(sdp: &str) -> u16 {
    let line = sdp.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn dialogs() -> MediaDialogs {
    MediaDialogs::new(
        DialogConfig {
            mode: MediaMode::Always,
            rewrite: RewriteOptions::default(),
            max_duration: Duration::from_secs(3600),
            early_timeout: Duration::from_secs(200),
            relay_ips: vec!["127.0.0.1".parse().unwrap()],
            max_streams: 8,
            check_interval_s: 0,
        },
        None,
    )
}

#[tokio::test]
async fn dialogs_against_rtprelay_session_manager() {
    let (addr, calls) = relay().await;
    let h = RelayHandle::spawn(config(vec![(addr, 1)]), None)
        .await
        .unwrap();
    let mut d = dialogs();
    let req = SipKind::Request;
    let resp = |status| SipKind::Response {
        status,
        method: Method::Invite,
    };

    // Early offer; the callee re-INVITEs; BYE.
    let (a, b) = ("caller", "callee");
    let offer = message(
        &mut d,
        &h,
        "c1",
        (a, None),
        req(Method::Invite),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    assert!(offer.contains("c=IN IP4 127.0.0.1\r\n"), "{offer}");
    let answer = message(
        &mut d,
        &h,
        "c1",
        (a, Some(b)),
        resp(200),
        Some(&body("198.51.100.7", 5000)),
    )
    .await
    .unwrap();
    let (p_offer, p_answer) = (audio_port(&offer), audio_port(&answer));
    assert!(p_offer >= 30000 && p_answer >= 30000 && p_offer != p_answer);
    assert!(answer.contains(&format!("a=rtcp:{}\r\n", p_answer + 1)));
    message(&mut d, &h, "c1", (a, Some(b)), req(Method::Ack), None).await;
    let re = message(
        &mut d,
        &h,
        "c1",
        (b, Some(a)),
        req(Method::Invite),
        Some(&body("198.51.100.7", 5002)),
    )
    .await
    .unwrap();
    assert_eq!(
        audio_port(&re),
        p_answer,
        "the caller keeps sending to the same relay port"
    );
    let re_ans = message(
        &mut d,
        &h,
        "c1",
        (b, Some(a)),
        resp(200),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    assert_eq!(
        audio_port(&re_ans),
        p_offer,
        "the callee keeps sending to the same relay port"
    );
    assert_eq!(FakeCalls::get(&calls.create), 1);
    message(&mut d, &h, "c1", (b, Some(a)), req(Method::Bye), None).await;
    assert_eq!(FakeCalls::get(&calls.remove), 1);

    // Late offer: SDP in the 200, answer in the ACK; BYE from the caller.
    assert!(
        message(&mut d, &h, "c2", (a, None), req(Method::Invite), None)
            .await
            .is_none()
    );
    let offer = message(
        &mut d,
        &h,
        "c2",
        (a, Some(b)),
        resp(200),
        Some(&body("198.51.100.7", 5000)),
    )
    .await
    .unwrap();
    let answer = message(
        &mut d,
        &h,
        "c2",
        (a, Some(b)),
        req(Method::Ack),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    assert_ne!(audio_port(&offer), audio_port(&answer));
    assert_eq!(FakeCalls::get(&calls.create), 2);
    message(&mut d, &h, "c2", (a, Some(b)), req(Method::Bye), None).await;
    assert_eq!(FakeCalls::get(&calls.remove), 2);

    // CANCEL of a ringing call.
    message(
        &mut d,
        &h,
        "c3",
        (a, None),
        req(Method::Invite),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    message(&mut d, &h, "c3", (a, None), req(Method::Cancel), None).await;
    assert_eq!(FakeCalls::get(&calls.remove), 3);
    assert_eq!((d.dialogs(), d.sessions(), d.held()), (0, 0, 0));
}
