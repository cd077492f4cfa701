//! The proxy's media hooks (issue 9): the stream limit, a relay outage, and the NAT state of
//! the callee's binding in `media.mode = "nat"`.

use super::*;
use crate::media::{ClientError, MediaMetrics};
use sbc_shared::proto::Command;

fn with_sdp(req: &[u8], ports: &[u16]) -> Vec<u8> {
    with_sdp_at(req, "10.1.1.1", ports)
}

fn with_sdp_at(req: &[u8], addr: &str, ports: &[u16]) -> Vec<u8> {
    let mut sdp = format!("v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n");
    for p in ports {
        sdp.push_str(&format!("m=audio {p} RTP/AVP 0\r\n"));
    }
    let text = String::from_utf8(req.to_vec()).unwrap().replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    text.into_bytes()
}

fn media_harness(f: impl FnOnce(&mut EdgeConfig)) -> (Harness, MediaMetrics) {
    let mut h = Harness::with(|_| {});
    let mm = MediaMetrics::unregistered().unwrap();
    let mut cfg = EdgeConfig::default();
    cfg.routing.core = vec![CORE.to_string()];
    cfg.routing.health_interval_s = 0;
    f(&mut cfg);
    h.proxy = Proxy::new(
        &cfg,
        vec![(Transport::Udp, EDGE.parse().unwrap())],
        h.metrics.clone(),
        Some(mm.clone()),
        h.now,
    );
    (h, mm)
}

#[test]
fn an_sdp_with_too_many_streams_gets_488_and_no_relay_command() {
    let (mut h, mm) = media_harness(|_| {});
    let ports: Vec<u16> = (0..200).map(|i| 4000 + 2 * i).collect();
    let req = with_sdp(&invite("sip:bob@example.com", "z9hG4bKm200", ""), &ports);
    let out = h.recv(PHONE, &req);
    assert!(h.proxy.take_relay_requests().is_empty(), "relay asked");
    assert!(only_to(&out, CORE).is_empty(), "forwarded");
    let finals: Vec<u16> = only_to(&out, PHONE).iter().map(|t| status(t)).collect();
    assert_eq!(finals, [100, 488]);
    assert_eq!(mm.refused.with_label_values(&["too_many_streams"]).get(), 1);
    // A normal call still asks the relay.
    let req = with_sdp(&invite("sip:bob@example.com", "z9hG4bKm2", ""), &ports[..2]);
    h.recv(PHONE, &req);
    assert_eq!(h.proxy.take_relay_requests().len(), 1, "first stream's U");
}

#[test]
fn no_relay_answering_fails_the_call_with_503_by_default() {
    let (mut h, mm) = media_harness(|_| {});
    for branch in ["z9hG4bKr1", "z9hG4bKr2"] {
        let out = h.recv(
            PHONE,
            &with_sdp(&invite("sip:bob@example.com", branch, ""), &[4000]),
        );
        assert!(only_to(&out, CORE).is_empty());
        let reqs = h.proxy.take_relay_requests();
        assert_eq!(reqs.len(), 1);
        h.proxy
            .on_relay_reply(reqs[0].id, Err(ClientError::NoRelay), h.now);
        let out = h.proxy.take_transmits();
        assert!(only_to(&out, CORE).is_empty(), "sent unanchored");
        let up = only_to(&out, PHONE);
        assert_eq!(up.len(), 1);
        assert_eq!(status(up[0]), 503, "{branch}");
    }
    assert_eq!(mm.refused.with_label_values(&["relay_failure"]).get(), 2);
}

#[test]
fn on_relay_failure_forward_sends_the_sdp_on() {
    let mut h = Harness::with(|c| c.media.on_relay_failure = config::RelayFailure::Forward);
    h.recv(
        PHONE,
        &with_sdp(&invite("sip:bob@example.com", "z9hG4bKf1", ""), &[4000]),
    );
    let reqs = h.proxy.take_relay_requests();
    h.proxy
        .on_relay_reply(reqs[0].id, Err(ClientError::NoRelay), h.now);
    let out = h.proxy.take_transmits();
    let fwd = only_to(&out, CORE);
    assert_eq!(fwd.len(), 1);
    assert!(String::from_utf8_lossy(&fwd[0].bytes).contains("c=IN IP4 10.1.1.1"));
}

/// `media.mode = "nat"`: a call from the (public) core toward a phone that registered through
/// a NAT is anchored; toward a public phone it is not.
#[test]
fn mode_nat_anchors_calls_from_the_core_to_a_nated_binding() {
    for nated in [true, false] {
        let mut h = Harness::with(|c| c.media.mode = config::MediaMode::Nat);
        let mut req =
            String::from_utf8(register(PHONE, "reg-m", 1, "z9hG4bKm1", 3600, "")).unwrap();
        if nated {
            req = req.replace(
                "Contact: <sip:bob@192.0.2.10:40000>",
                "Contact: <sip:bob@10.9.9.9:5060>",
            );
        }
        let out = h.recv(PHONE, req.as_bytes());
        let fwd = only_to(&out, CORE)[0].bytes.clone();
        let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
        h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
        let core_contact = NameAddrUri::of(&String::from_utf8(contact).unwrap());
        let inv = String::from_utf8(invite(&core_contact, "z9hG4bKcore", ""))
            .unwrap()
            .replace("10.1.1.1:5062", CORE);
        h.recv(CORE, &with_sdp_at(inv.as_bytes(), "203.0.113.50", &[4000]));
        let reqs = h.proxy.take_relay_requests();
        assert_eq!(reqs.len(), usize::from(nated), "nated={nated}: {reqs:?}");
        if let Some(r) = reqs.first() {
            assert!(
                matches!(&r.command, Command::Update(u) if u.addr.to_string() == "203.0.113.50"),
                "{r:?}"
            );
        }
    }
}

/// A confirmed call whose relay no longer knows it (`Q` answered `E50`: its media timed out,
/// or the relay restarted) is ended by the edge: a BYE to each party, as its peer would send
/// it, with a Reason; the relay state is freed (`D`).
#[test]
fn a_call_whose_relay_lost_its_media_gets_bye_both_ways() {
    use sbc_shared::proto::{ErrorCode, Reply};
    let (mut h, mm) = media_harness(|c| c.media.check_interval_s = 5);
    let port = |p: u16| {
        Ok((
            0,
            Reply::Port {
                port: p,
                addr: Some("127.0.0.1".parse().unwrap()),
            },
        ))
    };
    h.recv(
        PHONE,
        &with_sdp(&invite("sip:bob@example.com", "z9hG4bKlost", ""), &[4000]),
    );
    let u = h.proxy.take_relay_requests();
    assert!(matches!(u[0].command, Command::Update(_)));
    h.proxy.on_relay_reply(u[0].id, port(30_000), h.now);
    let out = h.proxy.take_transmits();
    let fwd = requests(&out, "INVITE")[0].bytes.clone();
    let rr = parse(&fwd)
        .header(HeaderName::RecordRoute)
        .expect("the edge record-routes")
        .to_vec();
    let ok = answer(
        &fwd,
        200,
        "bobtag",
        &[
            ("Record-Route", &rr),
            ("Contact", b"<sip:bob@10.0.0.7:5070>"),
        ],
    );
    h.recv(CORE, &with_sdp_at(&ok, "10.0.0.7", &[5000]));
    let l = h.proxy.take_relay_requests();
    assert!(matches!(l[0].command, Command::Lookup(_)));
    h.proxy.on_relay_reply(l[0].id, port(30_002), h.now);
    let out = h.proxy.take_transmits();
    assert_eq!(
        only_to(&out, PHONE).iter().map(|t| status(t)).max(),
        Some(200)
    );
    // The relay still has the call at the first check: nothing happens.
    h.advance(Duration::from_secs(5));
    let q = h.proxy.take_relay_requests();
    assert_eq!(q.len(), 1);
    assert!(
        matches!(q[0].command, Command::Query(_)),
        "{:?}",
        q[0].command
    );
    h.proxy
        .on_relay_reply(q[0].id, Ok((0, Reply::Text("55 10 10 20 0".into()))), h.now);
    assert!(h.proxy.take_transmits().is_empty());
    // At the next one it does not.
    h.advance(Duration::from_secs(5));
    let q = h.proxy.take_relay_requests();
    assert_eq!(q.len(), 1);
    h.proxy
        .on_relay_reply(q[0].id, Ok((0, Reply::Error(ErrorCode(50)))), h.now);
    let out = h.proxy.take_transmits();
    let byes = requests(&out, "BYE");
    assert_eq!(byes.len(), 2, "{out:?}");
    let to_phone = parse(&only_to(&out, PHONE)[0].bytes);
    // Its Contact as the edge fixed it (the phone is behind NAT: its source address).
    assert_eq!(
        to_phone.request_uri().unwrap(),
        b"sip:alice@192.0.2.10:40000"
    );
    assert_eq!(to_phone.from().unwrap().tag(), Some("bobtag"));
    assert_eq!(to_phone.to().unwrap().tag(), Some("a1"));
    let to_core = parse(&only_to(&out, CORE)[0].bytes);
    assert_eq!(to_core.request_uri().unwrap(), b"sip:bob@10.0.0.7:5070");
    assert_eq!(to_core.from().unwrap().tag(), Some("a1"));
    assert_eq!(to_core.cseq().unwrap().seq, 2);
    assert!(
        to_core.header(HeaderName::Route).is_none(),
        "no proxy beyond the edge"
    );
    for b in [&to_phone, &to_core] {
        assert!(b
            .header("Reason")
            .is_some_and(|r| r.starts_with(b"Q.850;cause=41")));
    }
    assert!(
        h.proxy
            .take_relay_requests()
            .iter()
            .any(|r| matches!(r.command, Command::Delete(_))),
        "the relay state is freed"
    );
    assert_eq!(mm.lost_calls.with_label_values(&["bye"]).get(), 1);
    assert_eq!(h.proxy.media().dialogs(), 0);
    // No more checks for it.
    h.advance(Duration::from_secs(10));
    assert!(h.proxy.take_relay_requests().is_empty());
}
