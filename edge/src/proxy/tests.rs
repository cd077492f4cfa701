//! The proxy core driven through simulated exchanges: no sockets, time injected.

use super::{Proxy, HOUSEKEEPING};
use crate::metrics::Metrics;
use crate::sip::{self, HeaderName, Limits, Message};
use crate::transport::{Dest, Source, Transmit, Transport};
use bytes::Bytes;
use config::EdgeConfig;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const EDGE: &str = "127.0.0.1:5060";
const CORE: &str = "10.0.0.5:5060";
const PHONE: &str = "192.0.2.10:40000";

fn limits() -> Limits {
    Limits {
        max_message_bytes: 65535,
        max_headers: 128,
    }
}

fn parse(b: &[u8]) -> Message {
    sip::parse(Bytes::copy_from_slice(b), &limits()).expect("test message parses")
}

struct Harness {
    proxy: Proxy,
    now: Instant,
    metrics: Metrics,
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut EdgeConfig)) -> Self {
        let mut cfg = EdgeConfig::default();
        cfg.routing.core = vec![CORE.to_string()];
        // Health probes have their own tests; elsewhere they would add OPTIONS to the core.
        cfg.routing.health_interval_s = 0;
        f(&mut cfg);
        let metrics = Metrics::new();
        let now = Instant::now();
        let proxy = Proxy::new(
            &cfg,
            vec![(Transport::Udp, EDGE.parse().unwrap())],
            metrics.clone(),
            None,
            now,
        );
        Harness {
            proxy,
            now,
            metrics,
        }
    }

    fn recv(&mut self, from: &str, msg: &[u8]) -> Vec<Transmit> {
        let src = Source {
            transport: Transport::Udp,
            remote: from.parse().unwrap(),
            local: EDGE.parse().unwrap(),
            flow: None,
        };
        self.proxy
            .on_message(Bytes::copy_from_slice(msg), src, self.now);
        self.proxy.take_transmits()
    }

    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        let end = self.now + d;
        let mut out = Vec::new();
        while self.now < end {
            self.now += Duration::from_millis(100);
            self.proxy.on_tick(self.now);
            out.extend(self.proxy.take_transmits());
        }
        out
    }
}

fn invite(ruri: &str, branch: &str, extra: &str) -> Vec<u8> {
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: {branch}@phone\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@10.1.1.1:5062>\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A response to `req` as the next hop would send it (all Vias, To tag, optional extras).
fn answer(req: &[u8], code: u16, tag: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    sip::response_to(&parse(req), code, "X", Some(tag), extra).to_vec()
}

fn only_to<'a>(out: &'a [Transmit], to: &str) -> Vec<&'a Transmit> {
    let addr: SocketAddr = to.parse().unwrap();
    out.iter().filter(|t| t.dest.addr == addr).collect()
}

fn status(t: &Transmit) -> u16 {
    parse(&t.bytes).status().unwrap_or(0)
}

fn requests<'a>(out: &'a [Transmit], method: &str) -> Vec<&'a Transmit> {
    out.iter()
        .filter(|t| t.bytes.starts_with(format!("{method} ").as_bytes()))
        .collect()
}

#[test]
fn access_invite_goes_to_core_with_via_rr_and_nat_stamp() {
    let mut h = Harness::new();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKp1", ""));
    let trying = only_to(&out, PHONE);
    assert_eq!(trying.len(), 1);
    assert_eq!(status(trying[0]), 100);
    let fwd = only_to(&out, CORE);
    assert_eq!(fwd.len(), 1);
    let m = parse(&fwd[0].bytes);
    assert_eq!(m.request_uri().unwrap(), b"sip:bob@example.com");
    assert_eq!(m.max_forwards().unwrap(), Some(69));
    let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].host, "127.0.0.1");
    assert!(vias[0].branch.unwrap().starts_with("z9hG4bK"));
    // RFC 3581: the phone's real source recorded on its Via.
    assert_eq!(vias[1].received, Some("192.0.2.10"));
    assert_eq!(vias[1].rport, Some(Some(40000)));
    // Our Record-Route carries the dialog's integrity token toward the core (issue 8).
    let rr = String::from_utf8(m.header(HeaderName::RecordRoute).unwrap().to_vec()).unwrap();
    assert!(
        rr.starts_with("<sip:127.0.0.1:5060;lr;ftag=a1;eh=udp:10.0.0.5:5060;etk="),
        "{rr}"
    );
    // Unchanged headers are re-emitted byte for byte; the NATed phone's private Contact is
    // fixed to its source.
    assert_eq!(
        m.header(HeaderName::From).unwrap(),
        b"<sip:alice@example.com>;tag=a1"
    );
    assert_eq!(
        m.header(HeaderName::Contact).unwrap(),
        format!("<sip:alice@{PHONE}>").as_bytes()
    );
}

#[test]
fn responses_return_to_the_real_source_without_our_via() {
    let mut h = Harness::new();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKp2", ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(CORE, &answer(&fwd, 180, "b1", &[]));
    let up = only_to(&out, PHONE);
    assert_eq!(up.len(), 1);
    assert_eq!(status(up[0]), 180);
    let m = parse(&up[0].bytes);
    assert_eq!(m.vias().count(), 1);
    assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bKp2"));
    let out = h.recv(CORE, &answer(&fwd, 200, "b1", &[]));
    assert_eq!(status(only_to(&out, PHONE)[0]), 200);
    // A retransmitted 200 (RFC 6026 Accepted) is forwarded again, not dropped.
    let out = h.recv(CORE, &answer(&fwd, 200, "b1", &[]));
    assert_eq!(only_to(&out, PHONE).len(), 1);
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut h = Harness::new();
    let req = String::from_utf8(invite("sip:bob@example.com", "z9hG4bKmf", ""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = h.recv(PHONE, req.as_bytes());
    assert!(only_to(&out, CORE).is_empty());
    assert_eq!(status(only_to(&out, PHONE).last().unwrap()), 483);
}

#[test]
fn loop_back_to_us_gets_482_but_spiral_passes() {
    let mut h = Harness::with(|c| c.routing.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()]);
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKl1", ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    // The core sends the very same request back to us (adding its own Via): a loop.
    let text = String::from_utf8(fwd.to_vec()).unwrap();
    let via_core = |b: &str| format!("SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={b}\r\n");
    let looped = text.replacen("SIP/2.0\r\n", &via_core("z9hG4bKcore1"), 1);
    let out = h.recv(CORE, looped.as_bytes());
    assert_eq!(status(out.last().unwrap()), 482, "same request-uri: loop");
    // With another Request-URI it is a spiral, processed normally (here: to the phone).
    let spiral = text
        .replacen("SIP/2.0\r\n", &via_core("z9hG4bKcore2"), 1)
        .replace(
            "sip:bob@example.com SIP/2.0",
            "sip:bob@192.0.2.10:40000 SIP/2.0",
        );
    let out = h.recv(CORE, spiral.as_bytes());
    assert_eq!(only_to(&out, PHONE).len(), 1, "spiral forwarded");
}

#[test]
fn options_to_the_edge_is_answered_locally() {
    let mut h = Harness::new();
    let req = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:40000;branch=z9hG4bKo1\r\n\
Max-Forwards: 70\r\n\
From: <sip:ping@x>;tag=p\r\n\
To: <sip:127.0.0.1>\r\n\
Call-ID: o1\r\n\
CSeq: 5 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";
    let out = h.recv(PHONE, req.as_bytes());
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 200);
    assert!(parse(&out[0].bytes).header("Allow").is_some());
}

#[test]
fn malformed_request_gets_400_naming_the_problem() {
    let mut h = Harness::new();
    let req = String::from_utf8(invite("sip:bob@example.com", "z9hG4bKbad", ""))
        .unwrap()
        .replace("CSeq: 1 INVITE\r\n", "");
    let out = h.recv(PHONE, req.as_bytes());
    assert_eq!(out.len(), 1);
    let m = parse(&out[0].bytes);
    assert_eq!(m.status(), Some(400));
    assert!(String::from_utf8_lossy(m.reason()).contains("CSeq"));
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&h.metrics.registry.gather())
        .unwrap();
    assert!(
        text.contains("edge_sip_parse_errors_total{kind=\"request\"} 1"),
        "{text}"
    );
}

#[test]
fn garbage_and_bad_responses_are_dropped_and_counted() {
    let mut h = Harness::new();
    assert!(h.recv(PHONE, b"\x00\x01garbage\r\n\r\n").is_empty());
    assert!(h
        .recv(CORE, b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n")
        .is_empty());
    // A well-formed response that matches no transaction (RFC 6026: not forwarded).
    let stray = answer(&invite("sip:x@y", "z9hG4bKstray", ""), 200, "t", &[]);
    assert!(h.recv(CORE, &stray).is_empty());
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&h.metrics.registry.gather())
        .unwrap();
    assert!(
        text.contains("edge_sip_dropped_total{reason=\"stray_response\"} 1"),
        "{text}"
    );
    assert!(text.contains("edge_sip_parse_errors_total"), "{text}");
}

#[test]
fn cancel_is_answered_and_forwarded_with_reason() {
    let mut h = Harness::new();
    let inv = invite("sip:bob@example.com", "z9hG4bKc1", "");
    let out = h.recv(PHONE, &inv);
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    h.recv(CORE, &answer(&fwd, 180, "b", &[]));
    let cancel = "CANCEL sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKc1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: z9hG4bKc1@phone\r\n\
CSeq: 1 CANCEL\r\n\
Reason: SIP;cause=487;text=\"hung up\"\r\n\
Content-Length: 0\r\n\r\n";
    let out = h.recv(PHONE, cancel.as_bytes());
    let up = only_to(&out, PHONE);
    assert_eq!(status(up[0]), 200, "200 for the CANCEL");
    let down = requests(&out, "CANCEL");
    assert_eq!(down.len(), 1);
    let c = parse(&down[0].bytes);
    assert_eq!(
        c.header(HeaderName::Reason).unwrap(),
        b"SIP;cause=487;text=\"hung up\""
    );
    assert_eq!(
        c.top_via().unwrap().branch,
        parse(&fwd).top_via().unwrap().branch
    );
    // Downstream answers 487: it reaches the caller; the edge ACKs it hop by hop.
    let out = h.recv(CORE, &answer(&fwd, 487, "b", &[]));
    assert_eq!(status(only_to(&out, PHONE)[0]), 487);
    assert_eq!(requests(&out, "ACK").len(), 1);
}

#[test]
fn fork_by_redirect_busy_and_ok_gives_ok() {
    let mut h = Harness::new();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf1", ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(
        CORE,
        &answer(
            &fwd,
            300,
            "r",
            &[(
                "Contact",
                b"<sip:bob@10.9.0.1:5060>, <sip:bob@10.9.0.2:5060>",
            )],
        ),
    );
    let b1 = only_to(&out, "10.9.0.1:5060")[0].bytes.clone();
    let b2 = only_to(&out, "10.9.0.2:5060")[0].bytes.clone();
    assert_eq!(requests(&out, "ACK").len(), 1, "the 300 is ACKed");
    let out = h.recv("10.9.0.1:5060", &answer(&b1, 486, "x", &[]));
    assert!(
        only_to(&out, PHONE).is_empty(),
        "486 held while a branch is pending"
    );
    let out = h.recv("10.9.0.2:5060", &answer(&b2, 200, "y", &[]));
    assert_eq!(status(only_to(&out, PHONE)[0]), 200);
}

#[test]
fn fork_decline_ends_search_and_cancels_the_other() {
    let mut h = Harness::new();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf2", ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(
        CORE,
        &answer(
            &fwd,
            302,
            "r",
            &[(
                "Contact",
                b"<sip:bob@10.9.0.1:5060>, <sip:bob@10.9.0.2:5060>",
            )],
        ),
    );
    let b1 = only_to(&out, "10.9.0.1:5060")[0].bytes.clone();
    let b2 = only_to(&out, "10.9.0.2:5060")[0].bytes.clone();
    h.recv("10.9.0.2:5060", &answer(&b2, 180, "y", &[]));
    let out = h.recv("10.9.0.1:5060", &answer(&b1, 603, "x", &[]));
    let cancels = requests(&out, "CANCEL");
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].dest.addr, "10.9.0.2:5060".parse().unwrap());
    let out = h.recv("10.9.0.2:5060", &answer(&b2, 487, "y", &[]));
    assert_eq!(status(only_to(&out, PHONE)[0]), 603);
}

#[test]
fn silent_core_times_out_with_408_and_fails_over() {
    let mut h = Harness::with(|c| c.routing.core = vec![CORE.into(), "10.0.0.6:5060".into()]);
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKt1", ""));
    assert_eq!(only_to(&out, CORE).len(), 1);
    let out = h.advance(Duration::from_secs(33));
    // Timer A retransmissions toward the core, then 408 upstream after Timer B (64·T1).
    assert!(only_to(&out, CORE).len() >= 5);
    let up: Vec<u16> = only_to(&out, PHONE).iter().map(|t| status(t)).collect();
    // (repeated by Timer G while the phone does not ACK)
    assert!(!up.is_empty() && up.iter().all(|s| *s == 408), "{up:?}");
    // The next request goes to the second core.
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKt2", ""));
    assert_eq!(only_to(&out, "10.0.0.6:5060").len(), 1);
}

#[test]
fn in_dialog_request_from_core_follows_route_and_request_uri() {
    let mut h = Harness::new();
    let bye = "BYE sip:alice@192.0.2.10:40000 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKbye1\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com>;tag=b1\r\n\
To: <sip:alice@example.com>;tag=a1\r\n\
Call-ID: d1\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n";
    let out = h.recv(CORE, bye.as_bytes());
    let fwd = only_to(&out, PHONE);
    assert_eq!(fwd.len(), 1);
    let m = parse(&fwd[0].bytes);
    assert!(
        m.header(HeaderName::Route).is_none(),
        "our Route entry removed"
    );
    assert!(
        m.header(HeaderName::RecordRoute).is_none(),
        "no RR in-dialog"
    );
}

#[test]
fn strict_router_request_uri_is_restored() {
    let mut h = Harness::new();
    let req = "BYE sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKsr\r\n\
Route: <sip:alice@192.0.2.10:40000>\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com>;tag=b1\r\n\
To: <sip:alice@example.com>;tag=a1\r\n\
Call-ID: d2\r\n\
CSeq: 2 BYE\r\n\
Content-Length: 0\r\n\r\n";
    let out = h.recv(CORE, req.as_bytes());
    let fwd = only_to(&out, PHONE);
    assert_eq!(fwd.len(), 1);
    let m = parse(&fwd[0].bytes);
    assert_eq!(m.request_uri().unwrap(), b"sip:alice@192.0.2.10:40000");
    assert!(m.header(HeaderName::Route).is_none());
}

#[test]
fn retransmitted_invite_is_absorbed() {
    let mut h = Harness::new();
    let inv = invite("sip:bob@example.com", "z9hG4bKr1", "");
    h.recv(PHONE, &inv);
    let out = h.recv(PHONE, &inv);
    assert!(only_to(&out, CORE).is_empty(), "not forwarded twice");
    assert_eq!(only_to(&out, PHONE).len(), 1, "last provisional re-sent");
}

/// The Record-Route the edge put on a phone's INVITE (Call-ID `{branch}@phone`, From tag a1).
fn record_route_of_a_call(h: &mut Harness, branch: &str) -> String {
    let out = h.recv(PHONE, &invite("sip:bob@example.com", branch, ""));
    let m = parse(&only_to(&out, CORE)[0].bytes);
    String::from_utf8(m.header(HeaderName::RecordRoute).unwrap().to_vec()).unwrap()
}

fn in_dialog(method: &str, ruri: &str, call_id: &str, branch: &str, route: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch={branch}\r\n\
Route: {route}\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b1\r\n\
Call-ID: {call_id}\r\n\
CSeq: 2 {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn ack_for_2xx_is_forwarded_statelessly() {
    let mut h = Harness::new();
    let rr = record_route_of_a_call(&mut h, "z9hG4bKd3");
    let ack = in_dialog(
        "ACK",
        "sip:bob@10.9.0.2:5060",
        "z9hG4bKd3@phone",
        "z9hG4bKack1",
        &rr,
    );
    let out = h.recv(PHONE, ack.as_bytes());
    assert_eq!(only_to(&out, CORE).len(), 1);
    assert!(only_to(&out, PHONE).is_empty(), "an ACK is never answered");
    // Without a valid token the ACK goes nowhere.
    let forged = in_dialog(
        "ACK",
        "sip:bob@10.9.0.2:5060",
        "z9hG4bKd3@phone",
        "z9hG4bKack2",
        "<sip:127.0.0.1:5060;lr>",
    );
    let out = h.recv(PHONE, forged.as_bytes());
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn tcp_dest_reused_for_responses() {
    let mut h = Harness::new();
    let src = Source {
        transport: Transport::Tcp,
        remote: PHONE.parse().unwrap(),
        local: EDGE.parse().unwrap(),
        flow: Some(7),
    };
    h.proxy.on_message(
        Bytes::from(invite("sip:bob@example.com", "z9hG4bKtcp", "")),
        src,
        h.now,
    );
    let out = h.proxy.take_transmits();
    let back: Vec<&Dest> = out
        .iter()
        .map(|t| &t.dest)
        .filter(|d| d.flow == Some(7))
        .collect();
    assert_eq!(back.len(), 1, "100 Trying over the same connection");
}

/// A phone's in-dialog requests go where the edge's own Record-Route token says (the core of
/// the dialog), never where the phone's Route or Request-URI point; a missing, forged or
/// borrowed token gets 403 (issue 8).
#[test]
fn access_in_dialog_requests_follow_only_our_record_route_token() {
    let mut h = Harness::new();
    let rr = record_route_of_a_call(&mut h, "z9hG4bKd4");
    let call = "z9hG4bKd4@phone";
    // Legit: the dialog's remote target in the Request-URI, our Route: to the core.
    let out = h.recv(
        PHONE,
        in_dialog("BYE", "sip:bob@10.9.0.2:5060", call, "z9hG4bKb1", &rr).as_bytes(),
    );
    let fwd = only_to(&out, CORE);
    assert_eq!(fwd.len(), 1, "{out:?}");
    let m = parse(&fwd[0].bytes);
    assert_eq!(m.request_uri().unwrap(), b"sip:bob@10.9.0.2:5060");
    assert!(m.header(HeaderName::Route).is_none(), "our Route consumed");
    // An attacker's host after our Route, or in the Request-URI, does not change the hop.
    let with_attacker = format!("{rr}, <sip:198.51.100.66;lr>");
    let out = h.recv(
        PHONE,
        in_dialog(
            "INFO",
            "sip:x@198.51.100.66",
            call,
            "z9hG4bKb2",
            &with_attacker,
        )
        .as_bytes(),
    );
    assert_eq!(only_to(&out, CORE).len(), 1);
    assert!(only_to(&out, "198.51.100.66:5060").is_empty());
    let forbidden = |out: &[Transmit]| {
        only_to(out, PHONE).iter().any(|t| status(t) == 403) && only_to(out, CORE).is_empty()
    };
    // Forged: no token, an edited hop, another dialog's token.
    let bare = "<sip:127.0.0.1:5060;lr>".to_string();
    let edited = rr.replace("eh=udp:10.0.0.5:5060", "eh=udp:198.51.100.66:5060");
    for (i, (route, call_id)) in [(&bare, call), (&edited, call), (&rr, "other@phone")]
        .into_iter()
        .enumerate()
    {
        let out = h.recv(
            PHONE,
            in_dialog(
                "BYE",
                "sip:bob@10.9.0.2:5060",
                call_id,
                &format!("z9hG4bKf{i}"),
                route,
            )
            .as_bytes(),
        );
        assert!(forbidden(&out), "case {i}: {out:?}");
        assert!(only_to(&out, "198.51.100.66:5060").is_empty());
    }
    assert_eq!(
        h.metrics
            .security
            .with_label_values(&["route_token_invalid"])
            .get(),
        3
    );
    // No Route of ours at all (a dialog not record-routed by the edge): to the core.
    let out = h.recv(
        PHONE,
        in_dialog(
            "BYE",
            "sip:bob@198.51.100.66",
            call,
            "z9hG4bKb3",
            "<sip:198.51.100.66;lr>",
        )
        .as_bytes(),
    );
    assert_eq!(only_to(&out, CORE).len(), 1);
    assert!(only_to(&out, "198.51.100.66:5060").is_empty());
}

/// An access-side initial request goes to the core whatever Route it preloads; identity
/// headers from a phone never reach the core (issue 8).
#[test]
fn access_initial_request_ignores_preloaded_routes_and_loses_identity_headers() {
    let mut h = Harness::new();
    let extra = "Route: <sip:198.51.100.66;lr>\r\nP-Asserted-Identity: <sip:boss@example.com>\r\n\
P-Preferred-Identity: <sip:boss@example.com>\r\nRemote-Party-ID: <sip:boss@example.com>;party=calling\r\n";
    for (i, method) in ["INVITE", "REGISTER"].into_iter().enumerate() {
        let req = String::from_utf8(invite(
            "sip:bob@example.com",
            &format!("z9hG4bKpre{i}"),
            extra,
        ))
        .unwrap()
        .replace("INVITE", method);
        let out = h.recv(PHONE, req.as_bytes());
        assert!(only_to(&out, "198.51.100.66:5060").is_empty(), "{method}");
        let fwd = only_to(&out, CORE);
        assert_eq!(fwd.len(), 1, "{method}: {out:?}");
        let m = parse(&fwd[0].bytes);
        assert!(m.header(HeaderName::Route).is_none(), "{method}");
        for name in [
            "P-Asserted-Identity",
            "P-Preferred-Identity",
            "Remote-Party-ID",
        ] {
            assert!(m.header(name).is_none(), "{method}: {name} passed");
        }
    }
    let sec = |e: &str| h.metrics.security.with_label_values(&[e]).get();
    assert_eq!(sec("preloaded_route_removed"), 2);
    assert_eq!(sec("identity_header_removed"), 6);
    // From the core side the same headers pass: the core asserts identity.
    let out = h.recv(
        CORE,
        &invite(
            "sip:bob@192.0.2.10:40000",
            "z9hG4bKpai",
            "P-Asserted-Identity: <sip:boss@example.com>\r\n",
        ),
    );
    let to_phone = only_to(&out, PHONE);
    assert!(to_phone
        .iter()
        .any(|t| parse(&t.bytes).header("P-Asserted-Identity").is_some()));
}

#[test]
fn redirect_is_relayed_when_recursion_is_off() {
    let mut h = Harness::with(|c| c.proxy.recurse_3xx = false);
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKnr", ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(
        CORE,
        &answer(&fwd, 302, "r", &[("Contact", b"<sip:bob@10.9.0.1:5060>")]),
    );
    assert!(only_to(&out, "10.9.0.1:5060").is_empty());
    assert_eq!(status(only_to(&out, PHONE)[0]), 302);
}

// ---- the mid-registrar wired into the proxy (issue 4) ----

const PHONE2: &str = "192.0.2.11:40002";

fn register(
    from_phone: &str,
    call_id: &str,
    cseq: u32,
    branch: &str,
    expires: u32,
    extra: &str,
) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP {from_phone};branch={branch};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com>;tag=r{cseq}\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: <sip:bob@{from_phone}>\r\n\
Expires: {expires}\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Registers `phone` through the edge; the core answers 200 echoing the edge's contacts.
/// Returns the contact the core saw.
fn registered(h: &mut Harness, phone: &str, call_id: &str, branch: &str) -> String {
    let out = h.recv(phone, &register(phone, call_id, 1, branch, 3600, ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let m = parse(&fwd);
    let contact = String::from_utf8(m.header(HeaderName::Contact).unwrap().to_vec()).unwrap();
    let out = h.recv(
        CORE,
        &answer(&fwd, 200, "c", &[("Contact", contact.as_bytes())]),
    );
    assert_eq!(status(only_to(&out, phone)[0]), 200);
    contact
}

#[test]
fn register_is_forwarded_rewritten_and_the_core_200_saves_the_binding() {
    let mut h = Harness::new();
    let out = h.recv(PHONE, &register(PHONE, "reg-1", 1, "z9hG4bKr1", 3600, ""));
    assert!(only_to(&out, PHONE).is_empty(), "nothing answered locally");
    let fwd = only_to(&out, CORE);
    assert_eq!(fwd.len(), 1);
    let m = parse(&fwd[0].bytes);
    let contact = m.header(HeaderName::Contact).unwrap();
    let contact_s = String::from_utf8_lossy(contact).to_string();
    // Mirror/contact insertion: the core sees the edge, not the phone (§10.2 no Record-Route).
    assert!(contact_s.contains("@127.0.0.1:5060"), "{contact_s}");
    assert!(!contact_s.contains("192.0.2.10"), "{contact_s}");
    assert!(m.header(HeaderName::RecordRoute).is_none());
    assert_eq!(h.proxy.registrar().location().len(), 0, "nothing saved yet");
    let out = h.recv(
        CORE,
        &answer(&fwd[0].bytes, 200, "c", &[("Contact", contact)]),
    );
    let up = only_to(&out, PHONE);
    assert_eq!(up.len(), 1);
    assert_eq!(status(up[0]), 200);
    let r = parse(&up[0].bytes);
    let c = String::from_utf8_lossy(r.header(HeaderName::Contact).unwrap()).to_string();
    assert!(
        c.contains("sip:bob@192.0.2.10:40000"),
        "phone sees its own contact: {c}"
    );
    assert_eq!(r.vias().count(), 1, "our Via removed");
    let b = h.proxy.registrar().location().get("sip:bob@example.com");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, PHONE.parse::<SocketAddr>().unwrap());
    let changes = h.proxy.take_registrar_changes();
    assert_eq!(changes.len(), 1, "one upsert for the store");
}

#[test]
fn the_loop_sleeps_until_the_next_deadline_and_no_tick_is_needed() {
    let mut h = Harness::new();
    let t0 = h.now;
    // Idle (after the first tick ran the start-up work): only the housekeeping bound.
    h.proxy.on_tick(t0);
    assert_eq!(h.proxy.poll_timeout(t0), t0 + HOUSEKEEPING);
    // An INVITE forwarded over UDP arms Timer A at T1 (500 ms): the loop must wake then.
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKdl1", ""));
    assert_eq!(only_to(&out, CORE).len(), 1);
    let due = h.proxy.poll_timeout(t0);
    assert_eq!(due, t0 + Duration::from_millis(500));
    // Driven only at its deadlines (as the shell does), the retransmission goes out on time.
    h.now = due;
    h.proxy.on_tick(h.now);
    let again = h.proxy.take_transmits();
    assert_eq!(
        only_to(&again, CORE).len(),
        1,
        "Timer A fired at its deadline"
    );
    // Woken only at the deadlines it reports, the proxy sends the next one at 1.5 s (2·T1).
    let mut sent_at = Vec::new();
    while h.now < t0 + Duration::from_millis(1600) {
        h.now = h.proxy.poll_timeout(h.now);
        h.proxy.on_tick(h.now);
        if !only_to(&h.proxy.take_transmits(), CORE).is_empty() {
            sent_at.push(h.now - t0);
        }
    }
    assert_eq!(sent_at, vec![Duration::from_millis(1500)]);
    // Once the core answers, Timer A is gone: the next deadline is far (Timer C / housekeeping).
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    h.recv(CORE, &answer(&fwd, 180, "c", &[]));
    assert!(h.proxy.poll_timeout(h.now) >= h.now + Duration::from_millis(999));
}

#[test]
fn a_finished_non_invite_keeps_only_its_transactions_while_they_wait() {
    let mut h = Harness::new();
    let phone_reg = register(PHONE, "reg-lean", 1, "z9hG4bKlean", 3600, "");
    let out = h.recv(PHONE, &phone_reg);
    assert_eq!(h.proxy.contexts(), 1, "in progress");
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
    h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    // Answered: the context is gone at once, the two transactions wait (Timers J, K).
    assert_eq!(h.proxy.contexts(), 0);
    assert_eq!(h.proxy.transactions(), 2);
    // The phone's retransmission still gets the 200, from the server transaction alone.
    let again = h.recv(PHONE, &phone_reg);
    assert_eq!(only_to(&again, PHONE).len(), 1);
    assert_eq!(status(only_to(&again, PHONE)[0]), 200);
    assert!(only_to(&again, CORE).is_empty());
    // A retransmitted 200 from the core is absorbed by the client transaction.
    let late = h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    assert!(only_to(&late, PHONE).is_empty());
}

#[test]
fn contact_mode_refresh_on_the_same_flow_is_absorbed() {
    let mut h = Harness::with(|c| c.registrar.mode = config::RegistrarMode::Contact);
    let out = h.recv(PHONE, &register(PHONE, "reg-2", 1, "z9hG4bKr2", 60, ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let m = parse(&fwd);
    let contact = m.header(HeaderName::Contact).unwrap().to_vec();
    let c = String::from_utf8_lossy(&contact).to_string();
    // The core is asked for outgoing_expires (3600 lowered by ≤10 %), not the phone's 60.
    let e: u32 = c
        .rsplit("expires=")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .expect("expires parameter");
    assert!((3240..=3600).contains(&e), "{c}");
    h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    h.advance(Duration::from_secs(30));
    let out = h.recv(PHONE, &register(PHONE, "reg-2", 2, "z9hG4bKr3", 60, ""));
    assert!(only_to(&out, CORE).is_empty(), "refresh absorbed: {out:?}");
    assert_eq!(status(only_to(&out, PHONE)[0]), 200);
    // The same refresh from another flow is not absorbed (hijack protection).
    let out = h.recv(PHONE2, &register(PHONE, "reg-2", 3, "z9hG4bKr4", 60, ""));
    assert_eq!(only_to(&out, CORE).len(), 1, "other flow goes to the core");
}

#[test]
fn challenge_passes_through_and_saves_nothing() {
    let mut h = Harness::with(|c| c.registrar.mode = config::RegistrarMode::Aor);
    let out = h.recv(PHONE, &register(PHONE, "reg-3", 1, "z9hG4bKr5", 3600, ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let chal = br#"Digest realm="example.com", nonce="n1""#;
    let out = h.recv(
        CORE,
        &answer(&fwd, 401, "c", &[("WWW-Authenticate", &chal[..])]),
    );
    let up = only_to(&out, PHONE);
    assert_eq!(status(up[0]), 401);
    assert_eq!(
        parse(&up[0].bytes)
            .header(HeaderName::WwwAuthenticate)
            .unwrap(),
        &chal[..]
    );
    assert_eq!(h.proxy.registrar().location().len(), 0);
    // The retry with credentials reaches the core.
    let out = h.recv(
        PHONE,
        &register(
            PHONE,
            "reg-3",
            2,
            "z9hG4bKr6",
            3600,
            "Authorization: Digest username=\"bob\"\r\n",
        ),
    );
    assert_eq!(only_to(&out, CORE).len(), 1);
}

#[test]
fn core_timeout_on_register_saves_nothing() {
    let mut h = Harness::new();
    h.recv(PHONE, &register(PHONE, "reg-4", 1, "z9hG4bKr7", 3600, ""));
    let out = h.advance(Duration::from_secs(40));
    let up = only_to(&out, PHONE);
    assert_eq!(status(up.last().unwrap()), 408);
    assert_eq!(h.proxy.registrar().location().len(), 0);
    assert_eq!(h.proxy.registrar().pending_len(), 0);
}

#[test]
fn invite_from_core_forks_to_both_flows_and_cancels_the_loser() {
    let mut h = Harness::with(|c| c.registrar.mode = config::RegistrarMode::Aor);
    let c1 = registered(&mut h, PHONE, "reg-a", "z9hG4bKf1");
    let c2 = registered(&mut h, PHONE2, "reg-b", "z9hG4bKf2");
    assert_eq!(
        c1.split(';').next(),
        c2.split(';').next(),
        "AoR mode: one core contact"
    );
    assert_eq!(h.proxy.registrar().location().len(), 2);
    let core_contact = NameAddrUri::of(&c1);
    let inv = String::from_utf8(invite(&core_contact, "z9hG4bKcore", "")).unwrap();
    let inv = inv.replace("10.1.1.1:5062", CORE);
    let out = h.recv(CORE, inv.as_bytes());
    let to1 = only_to(&out, PHONE);
    let to2 = only_to(&out, PHONE2);
    assert_eq!((to1.len(), to2.len()), (1, 1), "parallel fork: {out:?}");
    let b1 = to1[0].bytes.clone();
    let b2 = to2[0].bytes.clone();
    assert_eq!(
        parse(&b1).request_uri().unwrap(),
        format!("sip:bob@{PHONE}").as_bytes()
    );
    assert_eq!(
        parse(&b2).request_uri().unwrap(),
        format!("sip:bob@{PHONE2}").as_bytes()
    );
    h.recv(PHONE, &answer(&b1, 180, "p1", &[]));
    h.recv(PHONE2, &answer(&b2, 180, "p2", &[]));
    let out = h.recv(PHONE, &answer(&b1, 200, "p1", &[]));
    assert_eq!(status(only_to(&out, CORE)[0]), 200);
    let cancels = requests(&out, "CANCEL");
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].dest.addr, PHONE2.parse::<SocketAddr>().unwrap());
    assert_eq!(
        parse(&cancels[0].bytes).header(HeaderName::Reason).unwrap(),
        b"SIP;cause=200;text=\"Call completed elsewhere\""
    );
}

#[test]
fn invite_to_an_unknown_edge_contact_gets_480() {
    let mut h = Harness::new();
    let inv = String::from_utf8(invite("sip:nobody@127.0.0.1:5060", "z9hG4bKu1", ""))
        .unwrap()
        .replace("10.1.1.1:5062", CORE);
    let out = h.recv(CORE, inv.as_bytes());
    assert_eq!(status(out.last().unwrap()), 480);
}

#[test]
fn expired_binding_in_aor_mode_deregisters_at_the_core() {
    let mut h = Harness::with(|c| {
        c.registrar.mode = config::RegistrarMode::Aor;
        c.registrar.natping_interval_s = 0;
    });
    let out = h.recv(PHONE, &register(PHONE, "reg-e", 1, "z9hG4bKe1", 60, ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
    h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    assert_eq!(h.proxy.registrar().location().len(), 1);
    let out = h.advance(Duration::from_secs(62));
    let mut regs = requests(&out, "REGISTER");
    regs.dedup_by(|a, b| a.bytes == b.bytes); // Timer E retransmissions
    assert_eq!(regs.len(), 1, "{out:?}");
    assert_eq!(regs[0].dest.addr, CORE.parse::<SocketAddr>().unwrap());
    let m = parse(&regs[0].bytes);
    assert!(String::from_utf8_lossy(m.header(HeaderName::Contact).unwrap()).ends_with("expires=0"));
    assert_eq!(h.proxy.registrar().location().len(), 0);
}

#[test]
fn nated_binding_gets_options_keepalives() {
    let mut h = Harness::with(|c| c.registrar.natping_interval_s = 10);
    // A private Contact seen from a public source: NATed.
    let req = String::from_utf8(register(PHONE, "reg-n", 1, "z9hG4bKn1", 3600, ""))
        .unwrap()
        .replace(
            "Contact: <sip:bob@192.0.2.10:40000>",
            "Contact: <sip:bob@10.9.9.9:5060>",
        );
    let out = h.recv(PHONE, req.as_bytes());
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
    h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    let out = h.advance(Duration::from_secs(12));
    let pings = requests(&out, "OPTIONS");
    assert!(!pings.is_empty(), "{out:?}");
    assert_eq!(pings[0].dest.addr, PHONE.parse::<SocketAddr>().unwrap());
    // Unanswered pings (3 by default, each timing out after 32 s) remove the binding.
    h.advance(Duration::from_secs(200));
    assert_eq!(h.proxy.registrar().location().len(), 0);
    assert!(h.proxy.registrar().metrics().removed_by_ping.get() >= 1);
}

#[test]
fn nated_phone_contacts_are_fixed_on_dialog_forming_messages() {
    let mut h = Harness::new();
    // Registered with a private Contact from a public source: NATed.
    let req = String::from_utf8(register(PHONE, "reg-x", 1, "z9hG4bKx1", 3600, ""))
        .unwrap()
        .replace(
            "Contact: <sip:bob@192.0.2.10:40000>",
            "Contact: <sip:bob@10.9.9.9:5060>",
        );
    let out = h.recv(PHONE, req.as_bytes());
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
    h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    // Its INVITE reaches the core with a Contact the core can reach (the NAT binding).
    let inv = String::from_utf8(invite("sip:alice@example.com", "z9hG4bKx2", ""))
        .unwrap()
        .replace("sip:alice@10.1.1.1:5062", "sip:bob@10.9.9.9:5060");
    let out = h.recv(PHONE, inv.as_bytes());
    let m = parse(&only_to(&out, CORE)[0].bytes);
    assert_eq!(
        m.header(HeaderName::Contact).unwrap(),
        b"<sip:bob@192.0.2.10:40000>"
    );
    // A phone that never registered through us but is visibly NATed (private Via and Contact,
    // public source) is fixed too, as Kamailio's fix_nated_contact does (issue 8).
    let out = h.recv(PHONE2, &invite("sip:alice@example.com", "z9hG4bKx3", ""));
    let m = parse(&only_to(&out, CORE)[0].bytes);
    assert_eq!(
        m.header(HeaderName::Contact).unwrap(),
        format!("<sip:alice@{PHONE2}>").as_bytes()
    );
    // One that is not NATed (Via and Contact name its source) is left alone.
    let plain = String::from_utf8(invite("sip:alice@example.com", "z9hG4bKx5", ""))
        .unwrap()
        .replace("10.1.1.1:5062", PHONE2);
    let out = h.recv(PHONE2, plain.as_bytes());
    let m = parse(&only_to(&out, CORE)[0].bytes);
    assert_eq!(
        m.header(HeaderName::Contact).unwrap(),
        format!("<sip:alice@{PHONE2}>").as_bytes()
    );
    // Its 200 to a call from the core is fixed too.
    let cc = NameAddrUri::of(std::str::from_utf8(&contact).unwrap());
    let inv = String::from_utf8(invite(&cc, "z9hG4bKx4", ""))
        .unwrap()
        .replace("10.1.1.1:5062", CORE);
    let out = h.recv(CORE, inv.as_bytes());
    let down = only_to(&out, PHONE)[0].bytes.clone();
    assert_eq!(
        parse(&down).request_uri().unwrap(),
        b"sip:bob@10.9.9.9:5060"
    );
    let ok = answer(
        &down,
        200,
        "p",
        &[("Contact", b"<sip:bob@10.9.9.9:5060>".as_slice())],
    );
    let out = h.recv(PHONE, &ok);
    let up = parse(&only_to(&out, CORE)[0].bytes);
    assert_eq!(
        up.header(HeaderName::Contact).unwrap(),
        b"<sip:bob@192.0.2.10:40000>"
    );
}

#[test]
fn path_of_the_register_becomes_the_route_toward_the_phone() {
    let mut h = Harness::new();
    let req = register(
        PHONE,
        "reg-p",
        1,
        "z9hG4bKpa1",
        3600,
        "Path: <sip:p1.example.net;lr>\r\n",
    );
    let out = h.recv(PHONE, &req);
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
    h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    let cc = NameAddrUri::of(std::str::from_utf8(&contact).unwrap());
    let inv = String::from_utf8(invite(&cc, "z9hG4bKpa2", ""))
        .unwrap()
        .replace("10.1.1.1:5062", CORE);
    let out = h.recv(CORE, inv.as_bytes());
    let down = only_to(&out, PHONE);
    assert_eq!(down.len(), 1, "sent over the binding's flow: {out:?}");
    assert_eq!(
        parse(&down[0].bytes).header(HeaderName::Route).unwrap(),
        b"<sip:p1.example.net;lr>"
    );
}

#[test]
fn answered_keepalives_keep_the_binding() {
    let mut h = Harness::with(|c| c.registrar.natping_interval_s = 10);
    let req = String::from_utf8(register(PHONE, "reg-k", 1, "z9hG4bKk1", 3600, ""))
        .unwrap()
        .replace(
            "Contact: <sip:bob@192.0.2.10:40000>",
            "Contact: <sip:bob@10.9.9.9:5060>",
        );
    let out = h.recv(PHONE, req.as_bytes());
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
    h.recv(CORE, &answer(&fwd, 200, "c", &[("Contact", &contact)]));
    let mut answered = 0;
    for _ in 0..30 {
        let out = h.advance(Duration::from_secs(10));
        let mut pings = requests(&out, "OPTIONS");
        pings.dedup_by(|a, b| a.bytes == b.bytes); // Timer E retransmissions
        for p in pings {
            // Even a 405 proves the NAT let the ping through.
            h.recv(PHONE, &answer(&p.bytes, 405, "k", &[]));
            answered += 1;
        }
    }
    assert!(
        (25..=31).contains(&answered),
        "one ping per interval: {answered}"
    );
    assert_eq!(h.proxy.registrar().location().len(), 1);
    assert_eq!(h.proxy.registrar().metrics().removed_by_ping.get(), 0);
}

/// The URI inside a Contact value `<uri>;params`.
struct NameAddrUri;
impl NameAddrUri {
    fn of(v: &str) -> String {
        let na = sip::NameAddr::parse(v.as_bytes()).unwrap();
        String::from_utf8(na.uri_raw.to_vec()).unwrap()
    }
}

// ---- core failover on 503 / transport error (RFC 3263 §4.3) ----

const CORE2: &str = "10.0.0.6:5060";

fn two_cores() -> Harness {
    Harness::with(|c| c.routing.core = vec![CORE.into(), CORE2.into()])
}

#[test]
fn core_503_fails_over_to_the_next_core_and_honours_retry_after() {
    let mut h = two_cores();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf1", ""));
    let first = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(
        CORE,
        &answer(&first, 503, "c1", &[("Retry-After", b"120 (maintenance)")]),
    );
    // The 503 is ACKed (§17.1.1.3) and the INVITE re-sent to the second core; the caller
    // hears nothing of it.
    assert_eq!(
        requests(
            &only_to(&out, CORE).into_iter().cloned().collect::<Vec<_>>(),
            "ACK"
        )
        .len(),
        1
    );
    assert!(only_to(&out, PHONE).is_empty(), "503 not relayed");
    let second = only_to(&out, CORE2);
    assert_eq!(second.len(), 1);
    let second = second[0].bytes.clone();
    let m = parse(&second);
    assert_eq!(m.method().map(|m| m.as_str()), Some("INVITE"));
    assert_eq!(m.request_uri().unwrap(), b"sip:bob@example.com");
    assert_ne!(
        m.top_via().unwrap().branch,
        parse(&first).top_via().unwrap().branch,
        "a new client transaction"
    );
    assert_eq!(h.metrics.core_failovers.get(), 1);
    let out = h.recv(CORE2, &answer(&second, 200, "c2", &[]));
    let up = only_to(&out, PHONE);
    assert_eq!(up.len(), 1);
    assert_eq!(status(up[0]), 200);
    assert!(parse(&up[0].bytes).to().unwrap().tag() == Some("c2"));
    // The first core stays out of rotation for its Retry-After (120 s), not 30 s.
    h.advance(Duration::from_secs(60));
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf2", ""));
    assert_eq!(only_to(&out, CORE2).len(), 1);
    assert!(only_to(&out, CORE).is_empty());
    h.advance(Duration::from_secs(61));
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf3", ""));
    assert_eq!(only_to(&out, CORE).len(), 1);
}

#[test]
fn every_core_503_gives_the_caller_500() {
    let mut h = two_cores();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf4", ""));
    let first = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(CORE, &answer(&first, 503, "c1", &[]));
    let second = only_to(&out, CORE2)[0].bytes.clone();
    let out = h.recv(CORE2, &answer(&second, 503, "c2", &[]));
    // No third attempt: each core was tried once. §16.7 step 6: 503 goes upstream as 500.
    assert!(requests(&out, "INVITE").is_empty());
    let up = only_to(&out, PHONE);
    assert_eq!(up.len(), 1);
    assert_eq!(status(up[0]), 500);
    assert_eq!(h.metrics.core_failovers.get(), 1);
}

#[test]
fn no_failover_after_a_relayed_provisional() {
    let mut h = two_cores();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf5", ""));
    let first = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(CORE, &answer(&first, 180, "c1", &[]));
    assert_eq!(status(only_to(&out, PHONE)[0]), 180);
    let out = h.recv(CORE, &answer(&first, 503, "c1", &[]));
    assert!(only_to(&out, CORE2).is_empty(), "the caller already rang");
    assert_eq!(status(only_to(&out, PHONE)[0]), 500);
}

#[test]
fn non_invite_503_fails_over_too() {
    let mut h = two_cores();
    let msg = "MESSAGE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKf6;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: f6@phone\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    let out = h.recv(PHONE, msg.as_bytes());
    let first = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(CORE, &answer(&first, 503, "c1", &[]));
    let second = only_to(&out, CORE2)[0].bytes.clone();
    let out = h.recv(CORE2, &answer(&second, 202, "c2", &[]));
    assert_eq!(status(only_to(&out, PHONE)[0]), 202);
}

#[test]
fn tcp_connect_failure_fails_over_at_once() {
    let mut h = Harness::with(|c| c.routing.core = vec![format!("tcp:{CORE}"), CORE2.into()]);
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKf7", ""));
    let first = only_to(&out, CORE)[0].dest;
    assert_eq!(first.transport, Transport::Tcp);
    h.proxy.on_transport_error(first, h.now);
    let out = h.proxy.take_transmits();
    assert_eq!(only_to(&out, CORE2).len(), 1, "re-sent to the second core");
    assert!(only_to(&out, PHONE).is_empty());
}

// ---- core health by OPTIONS ----

fn probed_cores() -> Harness {
    Harness::with(|c| {
        c.routing.core = vec![CORE.into(), CORE2.into()];
        c.routing.health_interval_s = 10;
    })
}

#[test]
fn health_options_go_to_every_core_each_interval() {
    let mut h = probed_cores();
    let out = h.advance(Duration::from_millis(9_900));
    assert!(
        requests(&out, "OPTIONS").is_empty(),
        "first round after one interval"
    );
    let out = h.advance(Duration::from_millis(200));
    let probes = requests(&out, "OPTIONS");
    assert_eq!(probes.len(), 2);
    assert_eq!(only_to(&out, CORE).len(), 1);
    assert_eq!(only_to(&out, CORE2).len(), 1);
    let p = parse(&probes[0].bytes);
    assert_eq!(p.request_uri().unwrap(), b"sip:10.0.0.5:5060");
    // Answered: the next round 10 s later probes both again (a new transaction each).
    let b1 = probes[0].bytes.clone();
    let b2 = probes[1].bytes.clone();
    h.recv(CORE, &answer(&b1, 200, "h1", &[]));
    h.recv(CORE2, &answer(&b2, 404, "h2", &[]));
    let out = h.advance(Duration::from_secs(10));
    let again = requests(&out, "OPTIONS");
    assert_eq!(again.len(), 2);
    assert_ne!(
        parse(&again[0].bytes).top_via().unwrap().branch,
        p.top_via().unwrap().branch
    );
}

#[test]
fn unanswered_health_probe_marks_the_core_down_and_an_answer_brings_it_back() {
    let mut h = probed_cores();
    h.advance(Duration::from_millis(10_100));
    // Only the second core answers its probes.
    let mut t = 0;
    while t < 45 {
        let out = h.advance(Duration::from_secs(1));
        for p in requests(&out, "OPTIONS") {
            if p.dest.addr.to_string() == CORE2 {
                let b = p.bytes.clone();
                h.recv(CORE2, &answer(&b, 200, "h2", &[]));
            }
        }
        t += 1;
    }
    // Timer F (32 s) expired on the first core's probe: new requests go to the second.
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKh1", ""));
    assert_eq!(
        requests(
            &only_to(&out, CORE2)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>(),
            "INVITE"
        )
        .len(),
        1
    );
    assert!(requests(
        &only_to(&out, CORE).into_iter().cloned().collect::<Vec<_>>(),
        "INVITE"
    )
    .is_empty());
    // The first core answers its next probe: back in rotation at once.
    let mut back = false;
    for _ in 0..15 {
        let out = h.advance(Duration::from_secs(1));
        for p in requests(&out, "OPTIONS") {
            if p.dest.addr.to_string() == CORE {
                let b = p.bytes.clone();
                h.recv(CORE, &answer(&b, 200, "h1", &[]));
                back = true;
            }
        }
        if back {
            break;
        }
    }
    assert!(back, "the first core is still probed while down");
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKh2", ""));
    assert_eq!(
        requests(
            &only_to(&out, CORE).into_iter().cloned().collect::<Vec<_>>(),
            "INVITE"
        )
        .len(),
        1
    );
}

/// Requests in flight to a core that stops answering its probes fail over once it is found
/// dead (misses × interval), not after Timer B; one that got a provisional stays.
#[test]
fn requests_unanswered_by_a_core_found_dead_fail_over() {
    let mut h = Harness::with(|c| {
        c.routing.core = vec![CORE.into(), CORE2.into()];
        c.routing.health_interval_s = 1;
        c.routing.health_misses = 2;
    });
    let answer_core2 = |h: &mut Harness, out: &[Transmit]| {
        for p in requests(out, "OPTIONS") {
            if p.dest.addr.to_string() == CORE2 {
                let b = p.bytes.clone();
                h.recv(CORE2, &answer(&b, 200, "h2", &[]));
            }
        }
    };
    let out = h.advance(Duration::from_millis(1_000));
    assert_eq!(requests(&out, "OPTIONS").len(), 2);
    answer_core2(&mut h, &out);
    // Two calls go to the first core; it sends 100 Trying for one of them, then dies.
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKd1", ""));
    let sent = requests(&out, "INVITE");
    assert_eq!(only_to(&out, CORE).len(), 1);
    let first = sent[0].bytes.clone();
    h.recv(PHONE, &invite("sip:carol@example.com", "z9hG4bKd2", ""));
    h.recv(CORE, &answer(&first, 100, "", &[]));
    let out = h.advance(Duration::from_millis(1_000));
    answer_core2(&mut h, &out);
    assert!(
        requests(
            &only_to(&out, CORE2)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>(),
            "INVITE"
        )
        .is_empty(),
        "one miss is not dead"
    );
    let out = h.advance(Duration::from_millis(1_000));
    let moved: Vec<Transmit> = only_to(&out, CORE2).into_iter().cloned().collect();
    let moved = requests(&moved, "INVITE");
    assert_eq!(
        moved.len(),
        1,
        "the unanswered INVITE is re-sent to the second core"
    );
    assert!(String::from_utf8_lossy(&moved[0].bytes).starts_with("INVITE sip:carol@"));
    assert_eq!(h.metrics.core_downs.with_label_values(&["probe"]).get(), 1);
    assert_eq!(h.metrics.core_failovers.get(), 1);
    // New requests go to the second core at once.
    let out = h.recv(PHONE, &invite("sip:dave@example.com", "z9hG4bKd3", ""));
    assert_eq!(only_to(&out, CORE2).len(), 1);
}

#[test]
fn health_probing_off_sends_nothing() {
    let mut h = Harness::with(|c| c.routing.health_interval_s = 0);
    let out = h.advance(Duration::from_secs(60));
    assert!(requests(&out, "OPTIONS").is_empty());
}

#[test]
fn cancel_reaches_a_branch_started_after_an_unroutable_one() {
    // 302 with an unroutable Contact first: its branch fails locally; the next one rings and
    // the caller's CANCEL must reach it (branch bookkeeping stays aligned).
    let mut h = Harness::new();
    let inv = invite("sip:bob@example.com", "z9hG4bKu1", "");
    let out = h.recv(PHONE, &inv);
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(
        CORE,
        &answer(
            &fwd,
            302,
            "r",
            &[(
                "Contact",
                b"<sip:x@nohost.example.com>, <sip:y@10.0.0.7:5060>",
            )],
        ),
    );
    let second = only_to(&out, "10.0.0.7:5060");
    assert_eq!(second.len(), 1, "the routable Contact is tried");
    let second = second[0].bytes.clone();
    h.recv("10.0.0.7:5060", &answer(&second, 180, "y", &[]));
    let cancel = "CANCEL sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKu1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: z9hG4bKu1@phone\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    let out = h.recv(PHONE, cancel.as_bytes());
    let down = requests(&out, "CANCEL");
    assert_eq!(down.len(), 1, "CANCEL sent to the ringing branch");
    assert_eq!(down[0].dest.addr.to_string(), "10.0.0.7:5060");
}

// ---- phones provisioned with the edge as outbound proxy (issue 14) ----

/// `REGISTER sip:example.test` with the edge as preloaded Route: to the core, Request-URI
/// untouched, our Route entry gone; counted as forwarded only once it left.
#[test]
fn outbound_proxy_register_in_the_carrier_domain_goes_to_the_core() {
    let mut h = Harness::new();
    let mut req = register(
        PHONE,
        "obp-1",
        1,
        "z9hG4bKobp1",
        3600,
        "Route: <sip:127.0.0.1:5060;lr>\r\n",
    );
    // The phone's REGISTER names the carrier domain, not the edge.
    let text = String::from_utf8(req)
        .unwrap()
        .replace("REGISTER sip:example.com", "REGISTER sip:example.test");
    req = text.into_bytes();
    let out = h.recv(PHONE, &req);
    assert!(only_to(&out, PHONE).is_empty(), "answered locally: {out:?}");
    let fwd = only_to(&out, CORE);
    assert_eq!(fwd.len(), 1);
    let m = parse(&fwd[0].bytes);
    assert_eq!(m.request_uri().unwrap(), b"sip:example.test");
    assert!(m.header(HeaderName::Route).is_none());
    assert_eq!(h.proxy.registrar().metrics().forwarded.get(), 1);
    // The same with an INVITE to a user of the carrier's domain (and a strict outbound proxy
    // for another phone: the UA put the target last, our URI first).
    let out = h.recv(
        PHONE,
        &invite(
            "sip:bob@example.test",
            "z9hG4bKobp2",
            "Route: <sip:127.0.0.1;lr>\r\n",
        ),
    );
    let m = parse(&only_to(&out, CORE)[0].bytes);
    assert_eq!(m.request_uri().unwrap(), b"sip:bob@example.test");
    let out = h.recv(
        PHONE,
        &invite(
            "sip:127.0.0.1",
            "z9hG4bKobp3",
            "Route: <sip:carol@example.test>\r\n",
        ),
    );
    let m = parse(&only_to(&out, CORE)[0].bytes);
    assert_eq!(m.request_uri().unwrap(), b"sip:carol@example.test");
    assert!(m.header(HeaderName::Route).is_none());
}

/// AoR = the edge's own address, outbound proxy = the edge: `REGISTER sip:EDGE` with
/// `Route: <sip:EDGE;lr>` is not a strict-router request; it goes to the core.
#[test]
fn outbound_proxy_register_to_the_edge_domain_goes_to_the_core() {
    let mut h = Harness::new();
    let text = String::from_utf8(register(
        PHONE,
        "obp-4",
        1,
        "z9hG4bKobp4",
        3600,
        "Route: <sip:127.0.0.1:5060;lr>\r\n",
    ))
    .unwrap()
    .replace("REGISTER sip:example.com", "REGISTER sip:127.0.0.1:5060");
    let out = h.recv(PHONE, text.as_bytes());
    let fwd = only_to(&out, CORE);
    assert_eq!(fwd.len(), 1, "{out:?}");
    assert_eq!(
        parse(&fwd[0].bytes).request_uri().unwrap(),
        b"sip:127.0.0.1:5060"
    );
}

/// A REGISTER the edge answers itself (no core reachable) is not counted as forwarded.
#[test]
fn register_answered_locally_is_not_counted_as_forwarded() {
    let mut h = Harness::with(|c| c.routing.core.clear());
    let out = h.recv(PHONE, &register(PHONE, "nc-1", 1, "z9hG4bKnc1", 3600, ""));
    let up = only_to(&out, PHONE);
    assert!(up.iter().any(|t| status(t) == 503), "{out:?}");
    assert_eq!(h.proxy.registrar().metrics().forwarded.get(), 0);
}

/// The core's in-dialog requests to a phone whose dialog Contact is its public GRUU (linphone
/// does this) reach the binding's flow: BYE statefully, ACK statelessly.
#[test]
fn in_dialog_requests_to_a_gruu_reach_the_binding() {
    let mut h = Harness::new();
    let instance = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"";
    let text = String::from_utf8(register(
        PHONE,
        "g-1",
        1,
        "z9hG4bKg1",
        3600,
        "Supported: gruu\r\n",
    ))
    .unwrap()
    .replace(
        &format!("Contact: <sip:bob@{PHONE}>"),
        &format!("Contact: <sip:bob@{PHONE}>;{instance}"),
    );
    let out = h.recv(PHONE, text.as_bytes());
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let m = parse(&fwd);
    let contact = String::from_utf8(m.header(HeaderName::Contact).unwrap().to_vec()).unwrap();
    // The contact the edge registered at the core: `<sip:TOKEN@edge>;+sip.instance=...`.
    let contact_uri = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let with_gruu = format!(
        "{contact};pub-gruu=\"sip:bob@example.com;gr=urn:uuid:00000000-0000-1000-8000-000a95a0e128\";temp-gruu=\"sip:tgruu.abc123@example.com;gr\""
    );
    let out = h.recv(
        CORE,
        &answer(&fwd, 200, "c", &[("Contact", with_gruu.as_bytes())]),
    );
    assert_eq!(status(only_to(&out, PHONE)[0]), 200);
    for (i, ruri) in [
        "sip:bob@example.com;gr=urn:uuid:00000000-0000-1000-8000-000a95a0e128",
        "sip:tgruu.abc123@example.com;gr",
        // A core that resolves the GRUU itself sends to the contact the edge registered.
        contact_uri.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        for method in ["BYE", "ACK"] {
            let req = format!(
                "{method} {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKgd{i}{method}\r\n\
Route: <sip:127.0.0.1:5060;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>;tag=b1\r\n\
Call-ID: gd{i}\r\n\
CSeq: 2 {method}\r\n\
Content-Length: 0\r\n\r\n"
            );
            let out = h.recv(CORE, req.as_bytes());
            let to_phone = only_to(&out, PHONE);
            assert_eq!(to_phone.len(), 1, "{method} {ruri}: {out:?}");
            let m = parse(&to_phone[0].bytes);
            assert_eq!(
                m.request_uri().unwrap(),
                format!("sip:bob@{PHONE}").as_bytes(),
                "{method} {ruri}"
            );
        }
    }
}

// ---- responses and redirects at the trust boundary (issue 8) ----

/// A 200 for a forwarded REGISTER from anywhere but the core is dropped: it would otherwise be
/// taken as the registrar's approval.
#[test]
fn response_from_another_address_is_dropped() {
    let mut h = Harness::new();
    let out = h.recv(PHONE, &register(PHONE, "rs-1", 1, "z9hG4bKrs1", 3600, ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let contact = parse(&fwd).header(HeaderName::Contact).unwrap().to_vec();
    let forged = answer(&fwd, 200, "x", &[("Contact", &contact)]);
    let out = h.recv("198.51.100.66:5060", &forged);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.proxy.registrar().location().len(), 0, "nothing saved");
    assert_eq!(
        h.metrics
            .security
            .with_label_values(&["response_wrong_source"])
            .get(),
        1
    );
    // The real core's answer still completes the registration.
    let out = h.recv(CORE, &forged);
    assert_eq!(status(only_to(&out, PHONE)[0]), 200);
    assert_eq!(h.proxy.registrar().location().len(), 1);
}

/// A registered phone answering the core's INVITE with a 302 does not make the edge call its
/// Contacts: the 302 goes to the core. A core-side 302 is followed, up to
/// `proxy.max_redirect_targets` Contacts.
#[test]
fn redirects_from_phones_are_relayed_and_core_redirects_capped() {
    let mut h = Harness::new();
    let contact = registered(&mut h, PHONE, "rd-1", "z9hG4bKrd1");
    let uri = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let out = h.recv(CORE, &invite(&uri, "z9hG4bKrd2", ""));
    let to_phone = requests(&out, "INVITE");
    assert_eq!(to_phone.len(), 1);
    let fwd = to_phone[0].bytes.clone();
    let many: Vec<String> = (0..40)
        .map(|i| format!("<sip:x{i}@198.51.100.{i}>"))
        .collect();
    let list = many.join(", ");
    let out = h.recv(
        PHONE,
        &answer(&fwd, 302, "p", &[("Contact", list.as_bytes())]),
    );
    assert!(
        requests(&out, "INVITE").is_empty(),
        "followed a phone's 302: {out:?}"
    );
    let up = only_to(&out, CORE);
    assert!(up.iter().any(|t| status(t) == 302), "{out:?}");
    let sec = |h: &Harness, e: &str| h.metrics.security.with_label_values(&[e]).get();
    assert_eq!(sec(&h, "access_redirect_not_followed"), 1);

    // From the core: 40 Contacts → 5 branches.
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKrd3", ""));
    let fwd = only_to(&out, CORE)[0].bytes.clone();
    let out = h.recv(
        CORE,
        &answer(&fwd, 302, "c", &[("Contact", list.as_bytes())]),
    );
    assert_eq!(requests(&out, "INVITE").len(), 5, "{out:?}");
    assert_eq!(sec(&h, "redirect_targets_capped"), 1);
}

/// Early rejects are stateless: one datagram, no 100 Trying first, nothing retransmitted while
/// the (spoofed) sender never ACKs.
#[test]
fn early_rejects_are_sent_once() {
    let mut h = Harness::new();
    let req = String::from_utf8(invite("sip:bob@example.com", "z9hG4bKmf0", ""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = h.recv(PHONE, req.as_bytes());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status(&out[0]), 483);
    let later = h.advance(Duration::from_secs(40));
    assert!(later.is_empty(), "retransmitted: {later:?}");
    let out = h.recv(
        PHONE,
        &invite(
            "sip:bob@example.com",
            "z9hG4bKpr0",
            "Proxy-Require: foo\r\n",
        ),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 420);
    assert_eq!(
        parse(&out[0].bytes).header("Unsupported"),
        Some(&b"foo"[..])
    );
    let out = h.recv(
        PHONE,
        in_dialog(
            "BYE",
            "sip:bob@10.9.0.2",
            "x@phone",
            "z9hG4bKft0",
            "<sip:127.0.0.1:5060;lr>",
        )
        .as_bytes(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 403);
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    assert_eq!(h.proxy.transactions(), 0, "no state kept");
}

/// SDP inside a multipart body is never forwarded unanchored: 415 naming the type we accept.
#[test]
fn sdp_in_multipart_is_refused_while_anchoring() {
    let body =
        "--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=- 1 1 IN IP4 192.168.1.10\r\n\
s=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n\r\n--b1--\r\n";
    let req = |branch: &str| {
        let head = "Content-Type: multipart/mixed;boundary=b1\r\n";
        String::from_utf8(invite("sip:bob@example.com", branch, head))
            .unwrap()
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
            )
    };
    let mut h = Harness::new();
    let out = h.recv(PHONE, req("z9hG4bKmp1").as_bytes());
    assert!(only_to(&out, CORE).is_empty(), "{out:?}");
    let r = only_to(&out, PHONE)
        .into_iter()
        .find(|t| status(t) == 415)
        .expect("415");
    assert_eq!(
        parse(&r.bytes).header("Accept"),
        Some(&b"application/sdp"[..])
    );
    // Without anchoring there is nothing to protect: forwarded.
    let mut h = Harness::with(|c| c.media.mode = config::MediaMode::Never);
    let out = h.recv(PHONE, req("z9hG4bKmp2").as_bytes());
    assert_eq!(only_to(&out, CORE).len(), 1);
}

/// A request too large for UDP (RFC 3261 §18.1.1) goes to the core over TCP, or gets 513 when
/// the edge has no TCP listener.
#[test]
fn large_request_goes_over_tcp_or_gets_513() {
    let pad = format!("X-Pad: {}\r\n", "a".repeat(6000));
    let mut h = Harness::new();
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKbig1", &pad));
    assert!(only_to(&out, CORE).is_empty(), "{out:?}");
    assert!(only_to(&out, PHONE).iter().any(|t| status(t) == 513));

    let mut cfg = EdgeConfig::default();
    cfg.routing.core = vec![CORE.to_string()];
    cfg.routing.health_interval_s = 0;
    let now = Instant::now();
    let mut proxy = Proxy::new(
        &cfg,
        vec![
            (Transport::Udp, EDGE.parse().unwrap()),
            (Transport::Tcp, EDGE.parse().unwrap()),
        ],
        Metrics::new(),
        None,
        now,
    );
    let src = Source {
        transport: Transport::Udp,
        remote: PHONE.parse().unwrap(),
        local: EDGE.parse().unwrap(),
        flow: None,
    };
    proxy.on_message(
        Bytes::from(invite("sip:bob@example.com", "z9hG4bKbig2", &pad)),
        src,
        now,
    );
    let out = proxy.take_transmits();
    let fwd = only_to(&out, CORE);
    assert_eq!(fwd.len(), 1, "{out:?}");
    assert_eq!(fwd[0].dest.transport, Transport::Tcp);
    let m = parse(&fwd[0].bytes);
    assert!(m
        .vias()
        .next()
        .unwrap()
        .unwrap()
        .transport
        .eq_ignore_ascii_case("TCP"));
}

/// One access-side source holds at most `limits.max_transactions_per_source` server
/// transactions; beyond it a stateless 503, and it recovers as its transactions end. The core
/// side is not limited.
#[test]
fn server_transactions_per_source_are_capped() {
    let mut h = Harness::with(|c| c.limits.max_transactions_per_source = 2);
    for i in 0..2 {
        let out = h.recv(
            PHONE,
            &invite("sip:bob@example.com", &format!("z9hG4bKps{i}"), ""),
        );
        assert_eq!(only_to(&out, CORE).len(), 1);
    }
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKps2", ""));
    assert!(only_to(&out, CORE).is_empty());
    let up = only_to(&out, PHONE);
    assert_eq!(up.len(), 1, "stateless: no 100 Trying");
    assert_eq!(status(up[0]), 503);
    // Another source is not affected, nor is the core.
    let out = h.recv(PHONE2, &invite("sip:bob@example.com", "z9hG4bKps3", ""));
    assert_eq!(only_to(&out, CORE).len(), 1);
    // Once the phone's calls end (Timer C cancels them, the transactions complete), it may
    // call again.
    h.advance(Duration::from_secs(240));
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKps4", ""));
    assert_eq!(only_to(&out, CORE).len(), 1, "{out:?}");
    assert_eq!(
        h.metrics
            .security
            .with_label_values(&["source_transaction_limit"])
            .get(),
        1
    );
}

/// The ACK of a stateless reject carries the edge's own To tag: absorbed, never forwarded.
#[test]
fn ack_of_a_stateless_reject_ends_at_the_edge() {
    let mut h = Harness::new();
    let req = String::from_utf8(invite("sip:bob@example.com", "z9hG4bKak0", ""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = h.recv(PHONE, req.as_bytes());
    let r = parse(&out[0].bytes);
    let to = String::from_utf8(r.header(HeaderName::To).unwrap().to_vec()).unwrap();
    let ack = req
        .replacen("INVITE sip:bob@example.com", "ACK sip:bob@example.com", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:bob@example.com>", &format!("To: {to}"))
        .replace("Max-Forwards: 0", "Max-Forwards: 70");
    let out = h.recv(PHONE, ack.as_bytes());
    assert!(out.is_empty(), "{out:?}");
    // Another To tag (a real dialog's ACK) still goes on.
    let other = ack.replace(&to, "<sip:bob@example.com>;tag=b1");
    let out = h.recv(PHONE, other.as_bytes());
    assert_eq!(only_to(&out, CORE).len(), 1);
}

#[path = "media_tests.rs"]
mod media;

#[test]
fn draining_refuses_new_dialogs_and_options_but_not_in_dialog_requests() {
    let mut h = Harness::new();
    h.proxy.drain(30);
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKd1", ""));
    let up = only_to(&out, PHONE);
    assert_eq!(up.len(), 1);
    let r = parse(&up[0].bytes);
    assert_eq!(r.status(), Some(503));
    assert_eq!(r.header("Retry-After"), Some(&b"30"[..]));
    assert!(only_to(&out, CORE).is_empty());
    let opts = String::from_utf8(invite("sip:127.0.0.1:5060", "z9hG4bKd2", ""))
        .unwrap()
        .replace("INVITE", "OPTIONS");
    let out = h.recv(PHONE, opts.as_bytes());
    assert_eq!(status(only_to(&out, PHONE)[0]), 503);
    // A BYE of a call that exists goes on (here from the core, in-dialog by its To tag).
    let bye = String::from_utf8(invite("sip:alice@192.0.2.10:40000", "z9hG4bKd3", ""))
        .unwrap()
        .replace("INVITE", "BYE")
        .replace(
            "To: <sip:bob@example.com>",
            "To: <sip:bob@example.com>;tag=b1",
        )
        .replace("10.1.1.1:5062", CORE);
    let out = h.recv(CORE, bye.as_bytes());
    assert_eq!(requests(&out, "BYE").len(), 1, "{out:?}");
    // The BYE's server and client transactions: what a drain waits for.
    assert_eq!(h.proxy.in_progress().0, 2);
}

// ---- latency and probe metrics (issue 11) ----

#[test]
fn forwarded_invite_gets_post_dial_delay_and_duration_probes_are_counted_apart() {
    let mut h = Harness::with(|c| {
        c.routing.core = vec![CORE.into(), CORE2.into()];
        c.routing.health_interval_s = 1;
    });
    let out = h.recv(PHONE, &invite("sip:bob@example.com", "z9hG4bKt1", ""));
    let fwd = requests(&out, "INVITE")[0].bytes.clone();
    h.now += Duration::from_millis(300);
    h.recv(CORE, &answer(&fwd, 180, "b1", &[]));
    h.now += Duration::from_millis(700);
    h.recv(CORE, &answer(&fwd, 200, "b1", &[]));
    let m = &h.metrics;
    assert_eq!(m.invite_pdd.get_sample_count(), 1);
    assert!((m.invite_pdd.get_sample_sum() - 0.3).abs() < 1e-9);
    let d = m.tx_duration.with_label_values(&["INVITE", "2xx"]);
    assert_eq!(d.get_sample_count(), 1);
    assert!((d.get_sample_sum() - 1.0).abs() < 1e-9);
    // Health probes: counted as probes (with their retransmissions), not as traffic.
    let requests_out = |m: &Metrics| m.requests.with_label_values(&["OPTIONS", "out"]).get();
    let out = h.advance(Duration::from_millis(100));
    let probes = requests(&out, "OPTIONS");
    assert_eq!(probes.len(), 2, "the first round, 1 s after start");
    let first = probes[0].bytes.clone();
    let to = probes[0].dest.addr.to_string();
    let out = h.advance(Duration::from_millis(600));
    assert_eq!(
        requests(&out, "OPTIONS").len(),
        2,
        "Timer E: each retransmitted once"
    );
    h.recv(&to, &answer(&first, 200, "p", &[]));
    let m = &h.metrics;
    assert_eq!(requests_out(m), 0);
    assert_eq!(m.retransmissions.get(), 0);
    assert_eq!(m.probes.with_label_values(&["core_health"]).get(), 4);
    assert_eq!(m.probe_rtt.with_label_values(&[&to]).get_sample_count(), 1);
    assert_eq!(m.core_up.with_label_values(&[CORE]).get(), 1);
    assert_eq!(m.transactions_limit.get(), 200_000);
}
