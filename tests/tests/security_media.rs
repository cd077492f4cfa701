//! The media plane as a border (issue 9), against the real edge and rtprelay binaries.
//!
//! - RTP bleed: a NATed phone (private SDP) calls through edge + rtprelay; a stranger on another
//!   IP sprays the phone's relay port first, a sender on the phone's own IP tries after it
//!   latched; neither gets a packet of the call, the phone keeps its audio, and a phone whose NAT
//!   rebinds to a new port (same SSRC) keeps it too.
//! - One INVITE with 200 `m=` lines gets 488 and opens nothing on the relay.
//! - The relay's own quotas answer `E83` (streams of one call) and `E84` (calls of one client)
//!   while other clients and calls go on.
//!
//! SIP peers are hand-driven sockets ([`e2e::attacker`]); RTP is plain UDP with real RTP headers
//! (the relay's rebinding rule reads the SSRC).

use e2e::attacker::{request, response_to, Msg, Peer, ATTACKER_IP};
use e2e::edge::{start_or_panic, Edge, EdgeArgs};
use e2e::ports::{free_port, ACCESS_IP, CORE_IP};
use e2e::relay::{relay_or_skip, Relay};
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(3);
/// The relay's media address: one no peer uses, so no loopback coincidence hides a bug.
const RELAY_MEDIA_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// Longer than the relay's rebinding silence (2 s).
const REBIND_SILENCE: Duration = Duration::from_millis(2300);
const BURST: u16 = 20;

struct Lab {
    test: &'static str,
    _dir: WorkDir,
    edge: Edge,
    relay: Relay,
    core: Peer,
}

impl Lab {
    fn start(test: &'static str, edge_args: &[&str]) -> Option<Lab> {
        let edge_bin = edge_or_skip(test)?;
        let relay_bin = relay_or_skip(test)?;
        let dir = WorkDir::new(test);
        let relay = Relay::start_on(&relay_bin, &dir, RELAY_MEDIA_IP, &[])
            .unwrap_or_else(|e| panic!("{test}: relay: {}\n{}", e.message, e.log));
        let core = Peer::bind(CORE_IP, free_port());
        let ctl = relay.control_addr().to_string();
        let args = EdgeArgs::udp_core(core.addr)
            .extra(&["--media-mode", "always", "--relay", &ctl])
            .extra(edge_args);
        let edge = start_or_panic(&edge_bin, &dir, &args);
        Some(Lab {
            test,
            _dir: dir,
            edge,
            relay,
            core,
        })
    }

    fn fail(&mut self, what: String) -> ! {
        panic!(
            "{}: {what}\n--- edge ---\n{}\n--- relay ---\n{}",
            self.test,
            self.edge.report(),
            self.relay.report()
        )
    }

    fn expect(&mut self, peer: &Peer, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
        match peer.recv_where(T, pred) {
            Some(m) => m,
            None => self.fail(format!("{what}: nothing within {T:?}")),
        }
    }
}

/// The SDP connection address and port of a message.
fn media_of(m: &Msg) -> SocketAddr {
    let body = m.body();
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .and_then(|a| a.trim().parse::<IpAddr>().ok())
        .unwrap_or_else(|| panic!("no c= in\n{body}"));
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in\n{body}"));
    SocketAddr::new(ip, port)
}

fn sdp_with(ip: &str, ports: &[u16]) -> String {
    let mut s = format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n");
    for p in ports {
        s.push_str(&format!("m=audio {p} RTP/AVP 0\r\n"));
    }
    s
}

fn rtp_socket(ip: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind rtp");
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    s
}

/// `n` RTP packets (PCMU, 160 bytes of payload) with `ssrc`, 2 ms apart.
fn send_rtp(from: &UdpSocket, to: SocketAddr, ssrc: u32, n: u16) {
    for seq in 0..n {
        let mut p = vec![0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        from.send_to(&p, to).expect("send rtp");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SSRCs of the datagrams that arrive at each socket within `window`.
fn collect(socks: &[&UdpSocket], window: Duration) -> Vec<Vec<u32>> {
    let deadline = Instant::now() + window;
    let mut out = vec![Vec::new(); socks.len()];
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        for (i, s) in socks.iter().enumerate() {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                let ssrc = buf
                    .get(8..12)
                    .filter(|_| n >= 12)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                out[i].push(ssrc);
            }
        }
    }
    out
}

const PHONE_SSRC: u32 = 0x1111_1111;
const CORE_SSRC: u32 = 0x2222_2222;

#[test]
fn rtp_bleed_fails_for_strangers_and_a_rebinding_phone_keeps_its_audio() {
    let test = "rtp_bleed_fails_for_strangers_and_a_rebinding_phone_keeps_its_audio";
    let Some(mut lab) = Lab::start(test, &[]) else {
        return;
    };
    let sip = lab.edge.sip_addr();
    let phone = Peer::bind(ACCESS_IP, 0);
    let phone_rtp = rtp_socket(ACCESS_IP);
    let core_rtp = rtp_socket(CORE_IP);
    let stranger = rtp_socket(ATTACKER_IP);
    let neighbour = rtp_socket(ACCESS_IP);
    let rebound = rtp_socket(ACCESS_IP);
    let phone_port = phone_rtp.local_addr().expect("addr").port();
    // A phone behind NAT: its SDP names its private address.
    let cid = format!("bleed-{}", std::process::id());
    let inv = request(
        "INVITE",
        "sip:bob@example.test",
        phone.addr,
        "bleed1",
        &cid,
        "ph",
        None,
        1,
        &[
            format!("Contact: <sip:alice@{}>", phone.addr),
            "Content-Type: application/sdp".into(),
        ],
        &sdp_with("192.168.1.10", &[phone_port]),
    );
    phone.send(&inv, sip);
    let core = lab.core.sock.try_clone().expect("clone");
    let core_peer = Peer {
        addr: lab.core.addr,
        sock: core,
    };
    let got = lab.expect(&core_peer, "core: INVITE", |m| m.method() == Some("INVITE"));
    let to_relay_from_core = media_of(&got);
    if to_relay_from_core.ip() != IpAddr::V4(RELAY_MEDIA_IP) {
        lab.fail(format!("INVITE to the core not anchored:\n{}", got.text));
    }
    let core_media = core_rtp.local_addr().expect("addr");
    let ok = response_to(
        &got,
        200,
        "OK",
        Some("cr"),
        &[
            format!("Contact: <sip:bob@{}>", lab.core.addr),
            "Content-Type: application/sdp".into(),
        ],
        &sdp_with(&CORE_IP.to_string(), &[core_media.port()]),
    );
    core_peer.send(&ok, got.from);
    let ok = lab.expect(&phone, "phone: 200", |m| m.status() == Some(200));
    let to_relay_from_phone = media_of(&ok);

    // 1. A stranger on another IP sprays the phone's relay port before the phone sends.
    send_rtp(&stranger, to_relay_from_phone, 0xbad0_0001, 5);
    send_rtp(&core_rtp, to_relay_from_core, CORE_SSRC, BURST);
    let r = collect(&[&phone_rtp, &stranger], Duration::from_millis(500));
    if !r[1].is_empty() || r[0].len() != usize::from(BURST) {
        lab.fail(format!(
            "before latching: stranger got {} packets, phone {} of {BURST}",
            r[1].len(),
            r[0].len()
        ));
    }
    // 2. The phone talks: it latches; the core hears it and the phone hears the core.
    send_rtp(&phone_rtp, to_relay_from_phone, PHONE_SSRC, BURST);
    send_rtp(&core_rtp, to_relay_from_core, CORE_SSRC, BURST);
    let r = collect(
        &[&phone_rtp, &core_rtp, &stranger],
        Duration::from_millis(500),
    );
    let core_heard = r[1].iter().filter(|s| **s == PHONE_SSRC).count();
    if r[0].len() != usize::from(BURST) || core_heard != usize::from(BURST) || !r[2].is_empty() {
        lab.fail(format!(
            "after latching: phone got {}, core heard the phone {core_heard} times, stranger {}",
            r[0].len(),
            r[2].len()
        ));
    }
    // 3. A sender on the phone's own IP, other port and SSRC, while the phone talks.
    send_rtp(&neighbour, to_relay_from_phone, 0xbad0_0002, 5);
    send_rtp(&phone_rtp, to_relay_from_phone, PHONE_SSRC, 5);
    send_rtp(&core_rtp, to_relay_from_core, CORE_SSRC, BURST);
    let r = collect(
        &[&phone_rtp, &neighbour, &core_rtp],
        Duration::from_millis(500),
    );
    let core_got_neighbour = r[2].iter().filter(|s| **s == 0xbad0_0002).count();
    if r[0].len() != usize::from(BURST) || !r[1].is_empty() || core_got_neighbour != 0 {
        lab.fail(format!(
            "same IP, other port: phone got {}, neighbour {}, core relayed {core_got_neighbour} of its packets",
            r[0].len(),
            r[1].len()
        ));
    }
    // 4. The phone's NAT rebinds: after a silence, the same SSRC from a new port.
    std::thread::sleep(REBIND_SILENCE);
    send_rtp(&rebound, to_relay_from_phone, PHONE_SSRC, 5);
    send_rtp(&core_rtp, to_relay_from_core, CORE_SSRC, BURST);
    let r = collect(
        &[&rebound, &phone_rtp, &stranger],
        Duration::from_millis(500),
    );
    if r[0].len() != usize::from(BURST) || !r[1].is_empty() || !r[2].is_empty() {
        lab.fail(format!(
            "NAT rebinding: new port got {}, old port {}, stranger {}",
            r[0].len(),
            r[1].len(),
            r[2].len()
        ));
    }
    let foreign = lab
        .relay
        .metric_sum("rtprelay_drops_total", &[("reason", "foreign_source")]);
    eprintln!(
        "{test}: PASS stranger 0 of {n} packets, neighbour 0, phone {BURST}/{BURST} before and \
         after latching and after a NAT rebinding; relay dropped {foreign} foreign packets",
        n = 3 * BURST
    );
}

#[test]
fn two_hundred_m_lines_get_488_and_open_no_stream() {
    let test = "two_hundred_m_lines_get_488_and_open_no_stream";
    // 200 m= lines are ~5 KB: above the default datagram limit (513 there), so the limit is
    // raised to let the SDP itself be judged, as over TCP.
    let dir = WorkDir::new(test);
    let edge_cfg = dir.path().join("edge.toml");
    std::fs::write(&edge_cfg, "[proxy]\nmax_udp_request_bytes = 16384\n").expect("config");
    let edge_cfg = edge_cfg.display().to_string();
    let Some(mut lab) = Lab::start(test, &["--config", &edge_cfg]) else {
        return;
    };
    let sip = lab.edge.sip_addr();
    let phone = Peer::bind(ACCESS_IP, 0);
    let ports: Vec<u16> = (0..200).map(|i| 20_000 + 2 * i).collect();
    let invite = |cid: &str, ports: &[u16]| {
        request(
            "INVITE",
            "sip:bob@example.test",
            phone.addr,
            &format!("b{cid}"),
            cid,
            "ph",
            None,
            1,
            &[
                format!("Contact: <sip:alice@{}>", phone.addr),
                "Content-Type: application/sdp".into(),
            ],
            &sdp_with(&ACCESS_IP.to_string(), ports),
        )
    };
    let cid = format!("m200-{}", std::process::id());
    phone.send(&invite(&cid, &ports), sip);
    let fin = lab.expect(&phone, "phone: final to 200 m= lines", |m| {
        m.status().is_some_and(|s| s >= 400)
    });
    if fin.status() != Some(488) {
        lab.fail(format!("200 m= lines answered {}", fin.first_line()));
    }
    let cid9 = format!("m9-{}", std::process::id());
    phone.send(&invite(&cid9, &ports[..9]), sip);
    let fin = lab.expect(&phone, "phone: final to 9 m= lines", |m| {
        m.status().is_some_and(|s| s >= 400) && m.call_id() == cid9
    });
    if fin.status() != Some(488) {
        lab.fail(format!("9 m= lines answered {}", fin.first_line()));
    }
    let created = lab.relay.metric_sum("rtprelay_streams_created_total", &[]);
    if created != 0.0 {
        lab.fail(format!("{created} relay streams opened by refused INVITEs"));
    }
    // A legitimate call meanwhile: anchored.
    let cid1 = format!("m1-{}", std::process::id());
    phone.send(&invite(&cid1, &ports[..1]), sip);
    let core = lab.core.sock.try_clone().expect("clone");
    let core_peer = Peer {
        addr: lab.core.addr,
        sock: core,
    };
    let got = lab.expect(&core_peer, "core: INVITE of the legit call", |m| {
        m.method() == Some("INVITE") && m.call_id() == cid1
    });
    if media_of(&got).ip() != IpAddr::V4(RELAY_MEDIA_IP) {
        lab.fail(format!("legit call not anchored:\n{}", got.text));
    }
    let refused = lab
        .edge
        .metrics()
        .ok()
        .and_then(|s| {
            e2e::metrics::sum(
                &s,
                "edge_media_refused_total",
                &[("reason", "too_many_streams")],
            )
        })
        .unwrap_or(0.0);
    eprintln!(
        "{test}: PASS 200 and 9 m= lines refused ({refused} counted), 0 relay streams; a 1-stream call anchored"
    );
}

#[test]
fn relay_quotas_answer_e83_and_e84_and_others_go_on() {
    let test = "relay_quotas_answer_e83_and_e84_and_others_go_on";
    let Some(bin) = relay_or_skip(test) else {
        return;
    };
    let dir = WorkDir::new(test);
    let cfg = dir.path().join("rtprelay.toml");
    std::fs::write(
        &cfg,
        "[control]\nmax_streams_per_call = 4\nmax_sessions_per_client = 3\n",
    )
    .expect("config");
    let cfg = cfg.display().to_string();
    let mut relay = Relay::start_on(&bin, &dir, RELAY_MEDIA_IP, &["--config", &cfg])
        .unwrap_or_else(|e| panic!("{test}: relay: {}\n{}", e.message, e.log));
    let u = |call: &str, n: u32| format!("U {call} 192.0.2.1 {} caller;{n}", 4000 + 2 * n);
    let mut replies = Vec::new();
    for n in 1..=5 {
        replies.push(relay.command(&u("big", n)).expect("reply"));
    }
    let ok = |r: &str| !r.starts_with('E');
    if !replies[..4].iter().all(|r| ok(r)) || replies[4] != "E83" {
        panic!(
            "{test}: streams of one call: {replies:?}\n{}",
            relay.report()
        );
    }
    // Calls of this client (the test's control socket): "big" is one; two more, then E84.
    let calls: Vec<String> = ["c2", "c3", "c4"]
        .iter()
        .map(|c| relay.command(&u(c, 1)).expect("reply"))
        .collect();
    if !ok(&calls[0]) || !ok(&calls[1]) || calls[2] != "E84" {
        panic!("{test}: calls of one client: {calls:?}\n{}", relay.report());
    }
    // Another client (another source IP) still gets its calls.
    let other = UdpSocket::bind((CORE_IP, 0)).expect("bind");
    other
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    other
        .send_to(b"k1 U other 192.0.2.9 4000 x;1", relay.control_addr())
        .expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = other
        .recv_from(&mut buf)
        .expect("reply to the other client");
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    if reply.trim_end().starts_with("k1 E") {
        panic!("{test}: other client refused: {reply}");
    }
    // The quota frees with the call.
    assert_eq!(relay.command("D c2 caller").expect("D"), "0");
    let again = relay.command(&u("c4", 1)).expect("reply");
    assert!(ok(&again), "{test}: after a delete: {again}");
    let stream = relay.metric_sum(
        "rtprelay_control_quota_refused_total",
        &[("quota", "stream")],
    );
    let client = relay.metric_sum(
        "rtprelay_control_quota_refused_total",
        &[("quota", "client")],
    );
    assert_eq!((stream, client), (1.0, 1.0), "{test}: metrics");
    eprintln!(
        "{test}: PASS 5th stream of a call E83, 4th call of a client E84, other client served"
    );
}
