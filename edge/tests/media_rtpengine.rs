//! The dialog state machine and relay client against stock rtpengine (userspace, legacy
//! `--listen-udp` rtpproxy interface) on loopback. Skipped with a message when `rtpengine`
//! is not installed.

mod common;

#[path = "../../tests/src/skip.rs"]
mod skip;
use config::MediaMode;
use edge::media::{
    ClientConfig, DialogConfig, MediaDialogs, Outcome, RelayHandle, SipKind, Target,
};
use edge::sdp::RewriteOptions;
use edge::sip::Method;
use sbc_shared::proto::{CallId, Command, Query, Reply, Tag};
use std::net::SocketAddr;
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

/// Kills the rtpengine we started (by its own handle) when the test ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_rtpengine() -> Option<(Daemon, SocketAddr)> {
    let control = free_udp_port();
    let cli = free_udp_port();
    // A media port window of our own, away from other tests' relays.
    let min = 45000 + (std::process::id() % 200) as u16 * 50;
    let child = Process::new("rtpengine")
        .args([
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--table=-1",
            "--interface=127.0.0.1",
            &format!("--listen-udp=127.0.0.1:{control}"),
            &format!("--listen-cli=127.0.0.1:{cli}"),
            &format!("--port-min={min}"),
            &format!("--port-max={}", min + 49),
            "--delete-delay=0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(c) => Some((Daemon(c), SocketAddr::from(([127, 0, 0, 1], control)))),
        Err(e) => {
            skip::skip("media_rtpengine", format!("cannot start rtpengine ({e})"));
            None
        }
    }
}

fn body(addr: &str, port: u16) -> Vec<u8> {
    format!("v=0\r\no=- 5 5 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\n").into_bytes()
}

async fn message(
    d: &mut MediaDialogs,
    h: &RelayHandle,
    call: &str,
    tags: (&str, Option<&str>),
    kind: SipKind,
    sdp: Option<&[u8]>,
) -> Option<u16> {
    let (held, done) = common::message(d, h, call, tags, kind, sdp).await;
    if !held {
        return None;
    }
    match &done.first()?.outcome {
        Outcome::Rewrite(b) => {
            let text = String::from_utf8(b.clone()).unwrap();
            assert!(text.contains("c=IN IP4 127.0.0.1\r\n"), "{text}");
            let m = text.lines().find(|l| l.starts_with("m=audio ")).unwrap();
            Some(m.split(' ').nth(1).unwrap().parse().unwrap())
        }
        Outcome::Failed(e) => panic!("relay failed: {e}"),
    }
}

async fn known(h: &RelayHandle, call: &str) -> bool {
    let q = Command::Query(Query {
        verbose: false,
        call: CallId::new(call),
        from_tag: Tag::new("caller"),
        to_tag: None,
        stats: Vec::new(),
    });
    !matches!(
        h.command(q, Target::Relay(0)).await,
        Ok((_, Reply::Error(_)))
    )
}

#[tokio::test]
async fn dialogs_against_rtpengine() {
    let Some((_daemon, addr)) = start_rtpengine() else {
        return;
    };
    let h = RelayHandle::spawn(
        ClientConfig {
            relays: vec![(addr, 1)],
            retransmit: Duration::from_millis(100),
            tries: 3,
            health_interval: Duration::from_secs(60),
        },
        None,
    )
    .await
    .unwrap();
    // Wait for the daemon to listen.
    let mut up = false;
    for _ in 0..30 {
        if let Ok((_, Reply::Number(20040107))) =
            h.command(Command::Version, Target::Relay(0)).await
        {
            up = true;
            break;
        }
    }
    assert!(up, "rtpengine did not answer V");

    let mut d = MediaDialogs::new(
        DialogConfig {
            mode: MediaMode::Always,
            rewrite: RewriteOptions::default(),
            max_duration: Duration::from_secs(3600),
            early_timeout: Duration::from_secs(200),
            relay_ips: vec![addr.ip()],
            max_streams: 8,
            check_interval_s: 0,
        },
        None,
    );
    let req = SipKind::Request;
    let resp = |status| SipKind::Response {
        status,
        method: Method::Invite,
    };
    let (a, b) = ("caller", "callee");

    let p_offer = message(
        &mut d,
        &h,
        "e1",
        (a, None),
        req(Method::Invite),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    let p_answer = message(
        &mut d,
        &h,
        "e1",
        (a, Some(b)),
        resp(200),
        Some(&body("198.51.100.7", 5000)),
    )
    .await
    .unwrap();
    assert_ne!(p_offer, p_answer);
    // Caller re-INVITE: rtpengine keeps both ports.
    let re = message(
        &mut d,
        &h,
        "e1",
        (a, Some(b)),
        req(Method::Invite),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    let re_ans = message(
        &mut d,
        &h,
        "e1",
        (a, Some(b)),
        resp(200),
        Some(&body("198.51.100.7", 5000)),
    )
    .await
    .unwrap();
    assert_eq!((re, re_ans), (p_offer, p_answer));
    // Callee re-INVITE: answered (rtpengine's legacy interface gives the caller a new port
    // for the callee's re-offer, as it does for Kamailio; recorded, not asserted).
    assert!(message(
        &mut d,
        &h,
        "e1",
        (b, Some(a)),
        req(Method::Invite),
        Some(&body("198.51.100.7", 5002))
    )
    .await
    .is_some());
    assert!(message(
        &mut d,
        &h,
        "e1",
        (b, Some(a)),
        resp(200),
        Some(&body("192.0.2.10", 4000))
    )
    .await
    .is_some());
    assert!(known(&h, "e1").await);
    message(&mut d, &h, "e1", (b, Some(a)), req(Method::Bye), None).await;
    assert!(!known(&h, "e1").await, "BYE deleted the call on rtpengine");

    // Late offer.
    message(&mut d, &h, "e2", (a, None), req(Method::Invite), None).await;
    let o = message(
        &mut d,
        &h,
        "e2",
        (a, Some(b)),
        resp(200),
        Some(&body("198.51.100.7", 5000)),
    )
    .await
    .unwrap();
    let an = message(
        &mut d,
        &h,
        "e2",
        (a, Some(b)),
        req(Method::Ack),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    assert_ne!(o, an);
    message(&mut d, &h, "e2", (a, Some(b)), req(Method::Bye), None).await;
    assert!(!known(&h, "e2").await);

    // CANCEL.
    message(
        &mut d,
        &h,
        "e3",
        (a, None),
        req(Method::Invite),
        Some(&body("192.0.2.10", 4000)),
    )
    .await
    .unwrap();
    message(&mut d, &h, "e3", (a, None), req(Method::Cancel), None).await;
    assert!(!known(&h, "e3").await);
    assert_eq!((d.dialogs(), d.sessions(), d.held()), (0, 0, 0));
}
