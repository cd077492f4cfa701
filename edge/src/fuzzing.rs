//! Fuzzing entry points: every parser of the edge that reads bytes from the network (or from
//! its location log), driven the way the edge drives it.
//!
//! The cargo-fuzz targets in `tests/fuzz/fuzz_targets/` call these functions, and the stable
//! test `tests/tests/fuzz_corpus.rs` replays every committed corpus file through them, so a
//! regression fails the build without a nightly toolchain. None of them may panic on any input;
//! the `assert!`s state invariants that must hold whatever the input (a violated one is a bug).

use crate::media::{CommandResult, RelayRequest};
use crate::metrics::Metrics;
use crate::nat::received;
use crate::proxy::route;
use crate::proxy::Proxy;
use crate::registrar::persist::{self, Clock};
use crate::sdp::{self, RewriteOptions, Sdp, StreamRewrite};
use crate::sip::{self, HeaderName, Limits, Message, NameAddr, Uri};
use crate::transport::{keepalive, tcp, Source, Transport};
use bytes::{Bytes, BytesMut};
use config::EdgeConfig;
use sbc_shared::proto::{Command, Reply};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, UNIX_EPOCH};

const EDGE_UDP: &str = "127.0.0.1:5060";
const EDGE_TCP: &str = "127.0.0.1:5061";
const CORE: &str = "10.0.0.5:5060";
const PHONE: &str = "192.0.2.10:40000";
const RELAY_IP: &str = "203.0.113.1";

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5060)))
}

/// Limits for parsing what the edge writes. The size limits are policy for what the edge
/// accepts, not a property of what it writes (a forwarded request gains a Via and a
/// Record-Route; a 400 to a request with 128 header fields copies its Vias), so they are
/// lifted: what the edge sends must be well-formed, whatever its size.
fn unlimited() -> Limits {
    Limits {
        max_message_bytes: 1 << 24,
        max_headers: 1 << 16,
    }
}

/// What the proxy sends must be SIP it can read itself.
fn assert_sendable(bytes: &[u8], what: &str) {
    if let Err(e) = sip::parse(Bytes::copy_from_slice(bytes), &unlimited()) {
        panic!(
            "{what} does not parse ({e:?}):\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Every typed accessor the proxy may call on a parsed message. Errors are fine, panics not.
fn read_everything(msg: &Message) {
    let _ = msg.start_line();
    let _ = msg.version();
    let _ = msg.reason();
    if let Some(ruri) = msg.request_uri() {
        let _ = Uri::parse(ruri).map(|u| (u.port_or_default(), u.has_lr(), u.transport_kind()));
    }
    for h in msg.headers() {
        let _ = (h.name, h.raw_name, h.value);
    }
    for v in msg.vias().flatten() {
        let _ = (
            v.transport_kind(),
            v.sent_by_port_or_default(),
            v.has_rfc3261_branch(),
            v.param("maddr"),
        );
    }
    for name in [
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Contact,
        HeaderName::From,
        HeaderName::To,
        HeaderName::Path,
    ] {
        for v in msg.values(name) {
            if let Ok(na) = NameAddr::parse(v) {
                let _ = (na.tag(), na.param("expires"), na.display_unescaped());
                let _ = na.uri().map(|u| u.param("transport"));
            }
        }
    }
    let _ = msg.cseq();
    let _ = msg.max_forwards();
    let _ = msg.call_id();
    let _ = msg.body_bytes();
}

/// A SIP datagram, as the UDP transport hands it to the proxy core: the parse and its error
/// answer, the validation, the §16.6 forward edit (Route processing, Request-URI, Max-Forwards,
/// Record-Route, received/rport, Via) and the §16.7 response edit, each re-parsed; then the
/// real [`Proxy`] fed the message from the access side and from the core, with a relay that
/// answers every media command, and its timers run. Everything the proxy sends must parse.
pub fn sip_message(data: &[u8]) {
    let limits = Limits::default();
    match sip::parse(Bytes::copy_from_slice(data), &limits) {
        Ok(msg) => {
            read_everything(&msg);
            if msg.is_request() {
                if msg.validate_request().is_ok() {
                    forward_edit(&msg);
                }
            } else if msg.validate_response().is_ok() {
                response_edit(&msg);
            }
        }
        Err(e) => {
            if let Some(partial) = e.partial() {
                read_everything(partial);
            }
            if let Some(resp) = e.response(None, Some("fuzz")) {
                assert_sendable(&resp, "error response");
            }
        }
    }
    drive_proxy(&[data]);
}

/// The forward edit of `forwarded()` in proxy/forward.rs with fixed local addresses.
fn forward_edit(msg: &Message) {
    let Some(ruri) = msg.request_uri() else {
        return;
    };
    let src = addr(PHONE);
    let is_us =
        |u: &Uri<'_>| u.host == sip::Host::V4([127, 0, 0, 1].into()) && u.port_or_default() == 5060;
    let routes: Vec<&[u8]> = msg.values(HeaderName::Route).collect();
    let p = route::process(ruri, &routes, is_us);
    let mut e = sip::Edit::new(msg);
    e.remove_all("P-Asserted-Identity");
    if p.strict {
        e.remove_all(HeaderName::Route);
        for v in p.remaining.iter().rev() {
            e.prepend(HeaderName::Route, v);
        }
    } else {
        for _ in 0..p.ours {
            e.remove_first_value(HeaderName::Route);
        }
    }
    if p.target != ruri {
        e.set_request_uri(p.target);
    }
    let mf = match msg.max_forwards() {
        Ok(Some(n)) => n.saturating_sub(1),
        _ => 70,
    };
    e.set_max_forwards(mf);
    e.prepend(
        HeaderName::RecordRoute,
        b"<sip:127.0.0.1:5060;lr;ftag=x;eh=y;etk=z>",
    );
    let (Some(top), Ok(via)) = (msg.values(HeaderName::Via).next(), msg.top_via()) else {
        return;
    };
    if let Some(stamped) = received::stamp(top, &via, src) {
        e.replace_first_value(HeaderName::Via, &stamped);
    }
    e.prepend(
        HeaderName::Via,
        b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfuzz;rport",
    );
    let out = e.finish();
    let fwd = match sip::parse(out.clone(), &unlimited()) {
        Ok(m) => m,
        Err(err) => panic!(
            "forwarded request does not parse ({err:?}):\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(
        fwd.vias().count(),
        msg.vias().count() + 1,
        "one Via added:\n{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(fwd.max_forwards().ok(), Some(Some(mf)), "Max-Forwards set");
    assert_eq!(fwd.body(), msg.body(), "body kept");
    if let Err(err) = fwd.validate_request() {
        panic!(
            "forwarded copy of a valid request is invalid ({err:?}):\n{}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// §16.7 step 3: the top Via removed before a response goes upstream.
fn response_edit(msg: &Message) {
    if msg.vias().count() < 2 {
        return;
    }
    let mut e = sip::Edit::new(msg);
    e.remove_first_value(HeaderName::Via);
    let out = e.finish();
    match sip::parse(out.clone(), &unlimited()) {
        Ok(m) => assert_eq!(m.vias().count() + 1, msg.vias().count(), "one Via removed"),
        Err(err) => panic!(
            "forwarded response does not parse ({err:?}):\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
}

fn fuzz_config() -> EdgeConfig {
    let mut cfg = EdgeConfig::default();
    cfg.routing.core = vec![CORE.to_string()];
    cfg.routing.health_interval_s = 0;
    cfg
}

thread_local! {
    /// One set of counters for every proxy of this thread: building the Prometheus registry
    /// costs more than the rest of a run, and counters do not steer the proxy.
    static METRICS: Metrics = Metrics::new();
}

fn new_proxy(cfg: &EdgeConfig, now: Instant) -> Proxy {
    let mut proxy = Proxy::new(
        cfg,
        vec![
            (Transport::Udp, addr(EDGE_UDP)),
            (Transport::Tcp, addr(EDGE_TCP)),
        ],
        METRICS.with(Metrics::clone),
        None,
        now,
    );
    proxy.set_route_key(crate::proxy::route_token::RouteKey::new([7; 32]));
    proxy
}

fn udp_source(remote: &str) -> Source {
    Source {
        transport: Transport::Udp,
        remote: addr(remote),
        local: addr(EDGE_UDP),
        flow: None,
    }
}

/// The relay's side of a media command: a port on the relay address for U and L, OK for D.
fn relay_answer(r: &RelayRequest) -> CommandResult {
    let reply = match &r.command {
        Command::Update(_) | Command::Lookup(_) => Reply::Port {
            port: 30_000,
            addr: RELAY_IP.parse().ok(),
        },
        _ => Reply::OK,
    };
    Ok((0, reply))
}

/// Takes what the proxy wants to send and answers its relay commands, until it is quiet.
fn settle(proxy: &mut Proxy, now: Instant) {
    for _ in 0..16 {
        for t in proxy.take_transmits() {
            assert_sendable(&t.bytes, "a message the proxy sends");
        }
        let _ = proxy.take_registrar_changes();
        let reqs = proxy.take_relay_requests();
        if reqs.is_empty() {
            return;
        }
        for r in reqs {
            let mut wire = Vec::new();
            r.command.encode(&mut wire);
            assert!(
                Command::parse(&wire).is_ok(),
                "relay command the relay cannot parse: {}",
                String::from_utf8_lossy(&wire)
            );
            proxy.on_relay_reply(r.id, relay_answer(&r), now);
        }
    }
}

/// Feeds each message to a fresh proxy from the phone, then from the core, then runs timers.
fn drive_proxy(messages: &[&[u8]]) {
    let cfg = fuzz_config();
    let mut now = Instant::now();
    let mut proxy = new_proxy(&cfg, now);
    for m in messages {
        for from in [PHONE, CORE] {
            proxy.on_message(Bytes::copy_from_slice(m), udp_source(from), now);
            settle(&mut proxy, now);
        }
    }
    for step in [1, 40] {
        now += Duration::from_secs(step);
        proxy.on_tick(now);
        settle(&mut proxy, now);
    }
}

/// An SDP body as the media anchoring reads it: parse, then the three rewrites the edge does
/// (relay address and ports, IPv4 and IPv6; NAT fix without ports), each parsed again and
/// checked to say what was asked.
pub fn sdp(data: &[u8]) {
    let Ok(sdp) = Sdp::parse(data) else {
        return;
    };
    let _ = (sdp.session_connection(), sdp.origin_version());
    let n = sdp.media().len();
    let v4: IpAddr = RELAY_IP.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let v6: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::from([0u16; 8]));
    let plans: [(Vec<Option<StreamRewrite>>, RewriteOptions); 4] = [
        (
            sdp.media()
                .iter()
                .map(|s| {
                    s.relayable().then_some(StreamRewrite {
                        addr: v4,
                        port: Some(30_000 + 2 * s.index as u16),
                    })
                })
                .collect(),
            RewriteOptions::default(),
        ),
        (
            (0..n)
                .map(|i| {
                    (i % 2 == 0).then_some(StreamRewrite {
                        addr: v6,
                        port: Some(40_000),
                    })
                })
                .collect(),
            RewriteOptions {
                keep_ice: true,
                bump_version: true,
            },
        ),
        (
            (0..n)
                .map(|_| {
                    Some(StreamRewrite {
                        addr: v4,
                        port: None,
                    })
                })
                .collect(),
            RewriteOptions::default(),
        ),
        (
            Vec::new(),
            RewriteOptions {
                keep_ice: true,
                bump_version: false,
            },
        ),
    ];
    for (streams, opts) in &plans {
        let out = sdp::rewrite(&sdp, streams, opts);
        let again = match Sdp::parse(&out) {
            Ok(s) => s,
            Err(e) => panic!(
                "rewritten SDP does not parse ({e}):\n{}",
                String::from_utf8_lossy(&out)
            ),
        };
        assert_eq!(again.media().len(), n, "stream count kept");
        if opts.bump_version {
            assert_eq!(
                again.origin_version(),
                sdp.origin_version().wrapping_add(1),
                "o= version bumped"
            );
        }
        for (old, new) in sdp.media().iter().zip(again.media()) {
            if old.disabled {
                continue;
            }
            match streams.get(old.index).copied().flatten() {
                Some(t) => {
                    assert_eq!(new.connection, Some(t.addr), "stream {} moved", old.index);
                    assert_eq!(new.port, t.port.unwrap_or(old.port), "stream port");
                }
                None => {
                    assert_eq!(new.connection, old.connection, "stream {} kept", old.index);
                    assert_eq!(new.port, old.port, "stream port kept");
                }
            }
        }
    }
}

/// A TCP byte stream as `transport::tcp` reads it: the bytes arrive in reads of sizes taken
/// from the input's first byte, and after each read every complete frame (and CRLF keepalive)
/// is taken off the front with [`tcp::drain_frames`]. Every frame parses as a message of its
/// own length (the framing and the parser agree on where a message ends).
pub fn stream_framing(data: &[u8]) {
    let (chunk, stream) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c % 64) + 1, rest),
        None => (1, data),
    };
    let limits = Limits {
        max_message_bytes: 4096,
        max_headers: 32,
    };
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        let closed = tcp::drain_frames(&mut buf, &limits, |f| frames.push(f)).is_err();
        for f in frames.drain(..) {
            if let tcp::Frame::Message(m) = f {
                assert!(m.len() <= limits.max_message_bytes, "frame over the limit");
                match sip::parse(m.clone(), &limits) {
                    Ok(msg) => assert!(
                        msg.body().len() + msg.blank.end as usize == m.len(),
                        "framed message and parsed message differ in length"
                    ),
                    Err(e) => assert!(
                        e.kind != sip::ParseErrorKind::ContentLength,
                        "a framed message has a bad Content-Length: {e:?}"
                    ),
                }
            }
        }
        if closed {
            return;
        }
        assert!(buf.len() <= limits.max_message_bytes, "unbounded buffer");
    }
}

/// A datagram on the SIP UDP port before the SIP parser: keepalive, STUN (answered with the
/// relay's answerer), or SIP. A STUN answer is a Binding success response that the same check
/// classifies as STUN, with the request's transaction id.
pub fn stun_sip_port(data: &[u8]) {
    if keepalive::is_datagram_keepalive(data) {
        return;
    }
    if !keepalive::is_stun(data) {
        let _ = sip::parse(Bytes::copy_from_slice(data), &Limits::default());
        return;
    }
    for src in ["198.51.100.7:40000", "[2001:db8::5]:5004"] {
        if let Some(resp) = keepalive::stun_answer(data, addr(src)) {
            assert!(keepalive::is_stun(&resp), "answer is STUN");
            assert_eq!(resp.get(0..2), Some(&[0x01, 0x01][..]), "Binding success");
            assert_eq!(resp.get(8..20), data.get(8..20), "transaction id echoed");
            assert!(keepalive::stream_front(&resp) == keepalive::StreamKeepalive::None);
        }
    }
}

/// The location log as the edge reads it at start: [`persist::load_bytes`], then the bindings
/// restored into a proxy's registrar and a request from the core routed to each AoR. What was
/// loaded survives a write and a second load unchanged.
pub fn location_log(data: &[u8]) {
    let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let clock = Clock {
        now: Instant::now(),
        wall,
    };
    let Ok(loaded) = persist::load_bytes(data, clock) else {
        return;
    };
    assert!(
        loaded.records + loaded.skipped <= data.len(),
        "counts bounded"
    );
    let text = persist::encode_all(&loaded.bindings, &clock);
    let again = match persist::load_bytes(&text, clock) {
        Ok(l) => l,
        Err(e) => panic!("re-encoded log does not load: {e}"),
    };
    assert_eq!(again.skipped, 0, "re-encoded log has no bad line");
    let mut a = loaded.bindings.clone();
    let mut b = again.bindings;
    a.sort_by(|x, y| (&x.aor, &x.contact).cmp(&(&y.aor, &y.contact)));
    b.sort_by(|x, y| (&x.aor, &x.contact).cmp(&(&y.aor, &y.contact)));
    assert_eq!(a, b, "bindings survive a write and a load");

    let cfg = fuzz_config();
    let mut proxy = new_proxy(&cfg, clock.now);
    let aors: Vec<String> = loaded
        .bindings
        .iter()
        .take(4)
        .map(|b| b.aor.clone())
        .collect();
    proxy.registrar_restore(loaded.bindings);
    for (i, aor) in aors.iter().enumerate() {
        let invite = format!(
            "INVITE {aor} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKcore{i}\r\n\
Max-Forwards: 70\r\nFrom: <sip:core@10.0.0.5>;tag=c{i}\r\nTo: <{aor}>\r\n\
Call-ID: loc{i}@core\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        proxy.on_message(Bytes::from(invite), udp_source(CORE), clock.now);
        settle(&mut proxy, clock.now);
    }
    let later = clock.now + Duration::from_secs(40);
    proxy.on_tick(later);
    settle(&mut proxy, later);
}

/// Seed inputs for the edge's targets, `(target, name, bytes)`: typical SIP traffic (UAC and
/// UAS messages of a call, REGISTER, in-dialog requests, responses), SDP offers and answers,
/// TCP streams, STUN and a location log written by the real [`persist::Store`]. Written to
/// `tests/fuzz/corpus/<target>/` by the ignored test `write_seeds` in
/// `tests/tests/fuzz_corpus.rs`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let sdps = sdp_seeds();
    for (i, body) in sdps.iter().enumerate() {
        out.push(("sdp", format!("sdp-{i:02}"), body.clone()));
    }
    let messages = sip_seeds(&sdps[0], &sdps[1]);
    for (i, m) in messages.iter().enumerate() {
        out.push(("sip_message", format!("sip-{i:02}"), m.clone()));
    }
    // Streams: a read size byte, then messages back to back with pings and stray CRLFs.
    let mut stream = vec![7u8];
    for m in messages
        .iter()
        .filter(|m| m.starts_with(b"INVITE") || m.starts_with(b"SIP/"))
    {
        stream.extend_from_slice(m);
        stream.extend_from_slice(b"\r\n\r\n");
    }
    out.push(("stream_framing", "stream-calls".into(), stream));
    for (i, m) in messages.iter().enumerate().take(6) {
        let mut s = vec![i as u8 * 11];
        s.extend_from_slice(b"\r\n");
        s.extend_from_slice(m);
        s.extend_from_slice(m);
        out.push(("stream_framing", format!("stream-{i:02}"), s));
    }
    out.push((
        "stream_framing",
        "stream-no-length".into(),
        b"\x00OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\n\r\n".to_vec(),
    ));
    for (i, s) in sbc_shared::fuzzing::stun_seeds().into_iter().enumerate() {
        out.push(("stun_sip", format!("stun-{i:02}"), s));
    }
    out.push(("stun_sip", "crlf".into(), b"\r\n\r\n".to_vec()));
    out.push(("stun_sip", "sip".into(), messages[0].clone()));
    for (i, l) in location_seeds().into_iter().enumerate() {
        out.push(("location_log", format!("log-{i:02}"), l));
    }
    out
}

fn sdp_seeds() -> Vec<Vec<u8>> {
    let s = |t: &str| t.replace('\n', "\r\n").into_bytes();
    vec![
        s(
            "v=0\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\n\
t=0 0\nm=audio 49170 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-16\na=sendrecv\n",
        ),
        s(
            "v=0\no=bob 1 7 IN IP4 10.0.0.2\ns=call\nt=0 0\nm=audio 4000 RTP/AVP 0\n\
c=IN IP4 10.0.0.2\na=rtcp:4001\nm=video 4002 RTP/AVP 96\nc=IN IP4 10.0.0.2\n\
a=rtpmap:96 H264/90000\na=rtcp:4003 IN IP4 10.0.0.2\n",
        ),
        s(
            "v=0\no=- 4611731400430051336 2 IN IP4 127.0.0.1\ns=-\nt=0 0\na=ice-lite\n\
c=IN IP4 198.51.100.1\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=rtcp-mux\na=rtcp:9 IN IP4 0.0.0.0\n\
a=ice-ufrag:abcd\na=ice-pwd:0123456789abcdef012345\na=candidate:1 1 udp 2122260223 192.168.1.5 \
54321 typ host\na=candidate:2 1 udp 1686052607 198.51.100.1 54321 typ srflx raddr 192.168.1.5 \
rport 54321\na=end-of-candidates\na=fingerprint:sha-256 AB:CD\na=setup:actpass\n",
        ),
        s(
            "v=0\no=- 5 5 IN IP6 2001:db8::10\ns=-\nc=IN IP6 2001:db8::10\nt=0 0\n\
m=audio 5004 RTP/AVP 0\nm=video 0 RTP/AVP 96\nm=application 5006 TCP/BFCP *\n\
a=setup:passive\n",
        ),
        s(
            "v=0\no=- 9 10 IN IP4 0.0.0.0\ns=hold\nc=IN IP4 0.0.0.0\nt=0 0\n\
m=audio 6000/2 RTP/AVP 18\na=sendonly\nm=image 6004 udptl t38\nc=IN IP4 203.0.113.9/127\n",
        ),
        b"v=0\no=x 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nc=IN IP4 1.2.3.4\nm=audio 1 RTP/AVP 0\n\n"
            .to_vec(),
    ]
}

fn sip_seeds(offer: &[u8], answer: &[u8]) -> Vec<Vec<u8>> {
    let with_body = |head: &str, body: &[u8]| {
        let mut m = head
            .replace('\n', "\r\n")
            .replace("{len}", &body.len().to_string())
            .into_bytes();
        m.extend_from_slice(body);
        m
    };
    let none: &[u8] = b"";
    vec![
        with_body(
            "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK74bf9;rport\n\
Max-Forwards: 70\nFrom: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\n\
To: Bob <sip:bob@example.com>\nCall-ID: 3848276298220188511@192.168.1.5\nCSeq: 1 INVITE\n\
Contact: <sip:alice@192.168.1.5:5060;transport=udp>\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\n\
Supported: timer, 100rel\nContent-Type: application/sdp\nContent-Length: {len}\n\n",
            offer,
        ),
        with_body(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge.1;rport=5060\n\
Via: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK74bf9;rport=40000;received=192.0.2.10\n\
Record-Route: <sip:127.0.0.1:5060;lr;ftag=9fxced76sl;eh=x;etk=y>\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\nTo: Bob <sip:bob@example.com>;tag=8321234356\n\
Call-ID: 3848276298220188511@192.168.1.5\nCSeq: 1 INVITE\nContact: <sip:bob@10.0.0.5:5070>\n\
Content-Type: application/sdp\nContent-Length: {len}\n\n",
            answer,
        ),
        with_body(
            "SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge.1\n\
Via: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK74bf9\nFrom: <sip:alice@example.com>;tag=a\n\
To: <sip:bob@example.com>;tag=b\nCall-ID: c@h\nCSeq: 1 INVITE\nContent-Length: {len}\n\n",
            none,
        ),
        with_body(
            "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKreg1;rport\n\
Max-Forwards: 70\nFrom: <sip:alice@example.com>;tag=r1\nTo: <sip:alice@example.com>\n\
Call-ID: reg-1@10.1.1.1\nCSeq: 2 REGISTER\n\
Contact: <sip:alice@10.1.1.1:5062;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;expires=600;q=0.7\n\
Path: <sip:p1.example.net;lr>\nSupported: path, outbound, gruu\nUser-Agent: Phone/1.0\n\
Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n\", uri=\"sip:example.com\", response=\"0123\"\n\
Content-Length: {len}\n\n",
            none,
        ),
        with_body(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge.2\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKreg1;rport=5062\nFrom: <sip:alice@example.com>;tag=r1\n\
To: <sip:alice@example.com>;tag=core\nCall-ID: reg-1@10.1.1.1\nCSeq: 2 REGISTER\n\
Contact: <sip:alice@10.1.1.1:5062;ob>;expires=3600\nDate: Sat, 13 Nov 2010 23:29:00 GMT\n\
Content-Length: {len}\n\n",
            none,
        ),
        with_body(
            "BYE sip:alice@192.168.1.5:5060 SIP/2.0\nVia: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKbye\n\
Route: <sip:127.0.0.1:5060;lr;ftag=9fxced76sl;eh=x;etk=y>,<sip:127.0.0.1:5061;transport=tcp;lr>\n\
Max-Forwards: 69\nf: Bob <sip:bob@example.com>;tag=8321234356\nt: <sip:alice@example.com>;tag=9fxced76sl\n\
i: 3848276298220188511@192.168.1.5\nCSeq: 2 BYE\nl: {len}\n\n",
            none,
        ),
        with_body(
            "ACK sip:bob@10.0.0.5:5070 SIP/2.0\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKack\n\
Route: <sip:127.0.0.1:5060;lr>\nMax-Forwards: 70\nFrom: <sip:alice@example.com>;tag=9fxced76sl\n\
To: <sip:bob@example.com>;tag=8321234356\nCall-ID: 3848276298220188511@192.168.1.5\nCSeq: 1 ACK\n\
Content-Length: {len}\n\n",
            none,
        ),
        with_body(
            "CANCEL sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK74bf9\n\
Max-Forwards: 70\nFrom: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\nTo: Bob <sip:bob@example.com>\n\
Call-ID: 3848276298220188511@192.168.1.5\nCSeq: 1 CANCEL\nReason: SIP;cause=487;text=\"x\"\n\
Content-Length: {len}\n\n",
            none,
        ),
        with_body(
            "OPTIONS sip:[2001:db8::1]:5060;transport=udp SIP/2.0\n\
v: SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKopt;rport\nMax-Forwards: 0\n\
From: sip:probe@[2001:db8::9];tag=p\nTo: sip:x@[2001:db8::1]\nCall-ID: opt@[2001:db8::9]\n\
CSeq: 9 OPTIONS\nAccept: application/sdp\nContent-Length: {len}\n\n",
            none,
        ),
        with_body(
            "MESSAGE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKm, \
SIP/2.0/UDP 10.9.9.9:5080;branch=z9hG4bKm2;received=10.9.9.8\nMax-Forwards: 70\n\
From: <sip:alice@example.com>;tag=m\nTo: <sip:bob@example.com>\nCall-ID: msg@1\nCSeq: 1 MESSAGE\n\
P-Asserted-Identity: <sip:admin@example.com>\nContent-Type: text/plain\nContent-Length: {len}\n\n",
            b"hello, bob",
        ),
        with_body(
            "INVITE sip:127.0.0.1:5060;lr SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKstrict\n\
Route: <sip:next.example.com;lr>, <sip:bob@10.1.1.1:5062>\nMax-Forwards: 10\n\
From: <sip:core@example.com>;tag=c\nTo: <sip:bob@example.com>;tag=b\nCall-ID: strict@core\n\
CSeq: 5 INVITE\nContact: <sip:core@10.0.0.5>\nContent-Type: application/sdp\nContent-Length: {len}\n\n",
            offer,
        ),
        with_body(
            "SIP/2.0 401 Unauthorized\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge.2\n\
Via: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKreg1;rport=5062\nFrom: <sip:alice@example.com>;tag=r1\n\
To: <sip:alice@example.com>;tag=core\nCall-ID: reg-1@10.1.1.1\nCSeq: 2 REGISTER\n\
WWW-Authenticate: Digest realm=\"example.com\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"\n\
Content-Length: {len}\n\n",
            none,
        ),
        with_body(
            "SUBSCRIBE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKsub\n\
Max-Forwards: 70\nFrom: <sip:alice@example.com>;tag=s\nTo: <sip:bob@example.com>\nCall-ID: sub@1\n\
CSeq: 1 SUBSCRIBE\nEvent: presence\nExpires: 3600\nContact: *\nContent-Length: {len}\n\n",
            none,
        ),
        with_body(
            "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1:5062;branch=z9hG4bKreinv\n\
Max-Forwards: 70\nFrom: <sip:alice@example.com>;tag=9fxced76sl\nTo: <sip:bob@example.com>;tag=8321234356\n\
Call-ID: 3848276298220188511@192.168.1.5\nCSeq: 3 INVITE\n\
Route: <sip:127.0.0.1:5060;lr;ftag=9fxced76sl;eh=x;etk=y>\nContent-Type: application/sdp\n\
Content-Length: {len}\n\n",
            answer,
        ),
        with_body(
            "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.1.1.1\nContent-Length: 99999\n\n",
            none,
        ),
    ]
}

fn location_seeds() -> Vec<Vec<u8>> {
    use crate::registrar::{Binding, Change};
    let clock = Clock {
        now: Instant::now(),
        wall: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    };
    let binding = |aor: &str, contact: &str, secs: u64| Binding {
        aor: aor.into(),
        contact: contact.into(),
        transport: Transport::Udp,
        source: addr("192.0.2.10:40000"),
        local: addr(EDGE_UDP),
        flow: None,
        instance: None,
        reg_id: None,
        q: None,
        expires: clock.now + Duration::from_secs(secs),
        call_id: "reg-1@10.1.1.1".into(),
        cseq: 2,
        path: Vec::new(),
        user_agent: None,
        core_contact: contact.into(),
        core_expires: clock.now + Duration::from_secs(secs),
        token: String::new(),
        gruu_params: String::new(),
        nated: false,
        challenged: false,
    };
    let mut rich = binding("sip:alice@example.com", "sip:alice@10.1.1.1:5062;ob", 600);
    rich.transport = Transport::Tcp;
    rich.source = addr("[2001:db8::7]:5062");
    rich.instance = Some("urn:uuid:00000000-0000-1000-8000-000A95A0E128".into());
    rich.reg_id = Some(1);
    rich.q = Some(700);
    rich.path = vec!["<sip:p1.example.net;lr>".into(), "<sip:p2\t%;lr>".into()];
    rich.user_agent = Some("Phone\r\n 1.0".into());
    rich.core_contact = "sip:tok123@127.0.0.1:5060".into();
    rich.token = "tok123".into();
    rich.gruu_params = ";pub-gruu=\"sip:alice@example.com;gr=x\"".into();
    rich.nated = true;
    let other = binding("sip:bob@example.com", "sip:bob@10.1.1.2", 60);
    let changes = vec![
        Change::Upsert(Box::new(rich.clone())),
        Change::Upsert(Box::new(other.clone())),
        Change::Upsert(Box::new(binding("sip:carol@example.com", "sip:c@1", 3600))),
        Change::Remove {
            aor: other.aor.clone(),
            contact: other.contact.clone(),
        },
    ];
    let dir = std::env::temp_dir().join(format!("edge-fuzz-seed-{}", std::process::id()));
    let path = dir.join("location.log");
    let mut logs = Vec::new();
    if let Ok(mut store) = persist::Store::open(&path, 0) {
        if store.append(&changes, clock).is_ok() {
            drop(store);
            if let Ok(bytes) = std::fs::read(&path) {
                let mut torn = bytes.clone();
                torn.extend_from_slice(b"U\tsip:a@d\tsip:a@3\tud");
                logs.push(bytes);
                logs.push(torn);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    logs.push(persist::encode_all(&[rich], &clock));
    logs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are what they claim to be: SDP that parses, SIP that passes validation (but
    /// for the one with a short body), a log that loads.
    #[test]
    fn seeds_are_valid_inputs() {
        let all = seeds();
        for (target, name, bytes) in &all {
            match *target {
                "sdp" => assert!(Sdp::parse(bytes).is_ok(), "{name}"),
                "sip_message" if name != "sip-14" => {
                    let m = sip::parse(Bytes::copy_from_slice(bytes), &Limits::default())
                        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
                    let v = if m.is_request() {
                        m.validate_request()
                    } else {
                        m.validate_response()
                    };
                    assert!(v.is_ok(), "{name}: {v:?}");
                }
                "location_log" => {
                    let clock = Clock {
                        now: Instant::now(),
                        wall: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                    };
                    let l = persist::load_bytes(bytes, clock).expect("loads");
                    assert!(!l.bindings.is_empty(), "{name}");
                }
                _ => {}
            }
        }
        assert!(all.iter().any(|s| s.0 == "location_log"));
        for (_, _, b) in all {
            sip_message(&b);
        }
    }
}
