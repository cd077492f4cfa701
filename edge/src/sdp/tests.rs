use super::*;
use proptest::prelude::*;
use std::net::IpAddr;

/// `\n` → `\r\n`, so the cases read naturally and test the RFC line ending.
fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn relay(port: u16) -> Option<StreamRewrite> {
    Some(StreamRewrite {
        addr: ip("203.0.113.1"),
        port: Some(port),
    })
}

const OFFER: &str = "v=0
o=alice 2890844526 2890844526 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 49170 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=sendrecv
";

struct Case {
    name: &'static str,
    input: String,
    streams: Vec<Option<StreamRewrite>>,
    opts: RewriteOptions,
    expect: Result<String, SdpError>,
}

fn case(
    name: &'static str,
    input: &str,
    streams: Vec<Option<StreamRewrite>>,
    expect: &str,
) -> Case {
    Case {
        name,
        input: crlf(input),
        streams,
        opts: RewriteOptions::default(),
        expect: Ok(crlf(expect)),
    }
}

fn error(name: &'static str, input: &str, e: SdpError) -> Case {
    Case {
        name,
        input: crlf(input),
        streams: vec![relay(30000)],
        opts: RewriteOptions::default(),
        expect: Err(e),
    }
}

fn cases() -> Vec<Case> {
    let keep_ice = RewriteOptions {
        keep_ice: true,
        bump_version: true,
    };
    vec![
        case(
            "session c= and one audio stream",
            OFFER,
            vec![relay(30000)],
            "v=0
o=alice 2890844526 2890844527 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=sendrecv
",
        ),
        case(
            "media-level c= only",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
t=0 0
m=audio 4000 RTP/AVP 0
c=IN IP4 10.0.0.5
",
            vec![relay(30002)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
t=0 0
m=audio 30002 RTP/AVP 0
c=IN IP4 203.0.113.1
",
        ),
        case(
            "session and media c=",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
c=IN IP4 10.0.0.6
",
            vec![relay(30002)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30002 RTP/AVP 0
c=IN IP4 203.0.113.1
",
        ),
        case(
            "a=rtcp port only",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4001
",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
a=rtcp:30001
",
        ),
        case(
            "a=rtcp with address",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4011 IN IP4 10.0.0.5
",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
a=rtcp:30001 IN IP4 203.0.113.1
",
        ),
        case(
            "rtcp-mux kept, a=rtcp follows the RTP port",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/SAVPF 111
a=rtcp:4000
a=rtcp-mux
",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/SAVPF 111
a=rtcp:30000
a=rtcp-mux
",
        ),
        case(
            "ICE removed at both levels",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
a=ice-lite
a=ice-options:trickle
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=ice-ufrag:F7gI
a=ice-pwd:x9cml/YzichV2+XlhiMu8g
a=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host
a=candidate:2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 10.0.0.5 rport 4000
a=end-of-candidates
a=sendrecv
",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
a=sendrecv
",
        ),
        Case {
            name: "ICE kept per config",
            input: crlf(
                "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=ice-ufrag:F7gI
a=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host
",
            ),
            streams: vec![relay(30000)],
            opts: keep_ice,
            expect: Ok(crlf(
                "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
a=ice-ufrag:F7gI
a=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host
",
            )),
        },
        case(
            "IPv6 c= to an IPv6 relay",
            "v=0
o=- 7 7 IN IP6 2001:db8::5
s=-
c=IN IP6 2001:db8::5
t=0 0
m=audio 4000 RTP/AVP 0
",
            vec![Some(StreamRewrite {
                addr: ip("2001:db8:ffff::1"),
                port: Some(31000),
            })],
            "v=0
o=- 7 8 IN IP6 2001:db8::5
s=-
c=IN IP6 2001:db8:ffff::1
t=0 0
m=audio 31000 RTP/AVP 0
",
        ),
        case(
            "IPv4 SDP to an IPv6 relay changes the address type",
            OFFER,
            vec![Some(StreamRewrite {
                addr: ip("2001:db8:ffff::1"),
                port: Some(31000),
            })],
            "v=0
o=alice 2890844526 2890844527 IN IP4 10.0.0.5
s=-
c=IN IP6 2001:db8:ffff::1
t=0 0
m=audio 31000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=sendrecv
",
        ),
        case(
            "audio and video both relayed",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4001
m=video 4002 RTP/AVP 96
a=rtpmap:96 H264/90000
a=rtcp:4003
",
            vec![relay(30000), relay(30002)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
a=rtcp:30001
m=video 30002 RTP/AVP 96
a=rtpmap:96 H264/90000
a=rtcp:30003
",
        ),
        case(
            "disabled second stream left alone",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
m=video 0 RTP/AVP 96
a=rtcp:4003
",
            vec![relay(30000), None],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
m=video 0 RTP/AVP 96
a=rtcp:4003
",
        ),
        case(
            "a rewrite for a disabled stream is ignored",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
t=0 0
m=audio 0 RTP/AVP 0
c=IN IP4 10.0.0.5
",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
t=0 0
m=audio 0 RTP/AVP 0
c=IN IP4 10.0.0.5
",
        ),
        case(
            "unknown attributes and lines kept byte for byte",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=a  session\tname
b=AS:64
c=IN IP4 10.0.0.5
t=0 0
a=X-weird:  spaced   value
m=audio 4000 RTP/AVP 0 101
b=TIAS:64000
a=fmtp:101 0-16
a=x-vendor
a=ptime:20
",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=a  session\tname
b=AS:64
c=IN IP4 203.0.113.1
t=0 0
a=X-weird:  spaced   value
m=audio 30000 RTP/AVP 0 101
b=TIAS:64000
a=fmtp:101 0-16
a=x-vendor
a=ptime:20
",
        ),
        Case {
            name: "bare LF line endings preserved",
            input: OFFER.to_string(),
            streams: vec![relay(30000)],
            opts: RewriteOptions::default(),
            expect: Ok("v=0
o=alice 2890844526 2890844527 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=sendrecv
"
            .to_string()),
        },
        Case {
            name: "mixed endings, unterminated last line gets one before an insertion",
            input: "v=0\r\no=- 1 1 IN IP4 10.0.0.5\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 8".to_string(),
            streams: vec![relay(30000), None],
            opts: RewriteOptions::default(),
            expect: Ok("v=0\r\no=- 1 2 IN IP4 10.0.0.5\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 8\r\nc=IN IP4 10.0.0.5\r\n".to_string()),
        },
        case(
            "stream left alone keeps its old address via an inserted media c=",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
m=audio 4002 RTP/AVP 8
a=sendonly
",
            vec![relay(30000), None],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
m=audio 4002 RTP/AVP 8
c=IN IP4 10.0.0.5
a=sendonly
",
        ),
        case(
            "second stream on another relay address gets its own c= after i=",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
m=video 4002 RTP/AVP 96
i=camera
a=sendrecv
",
            vec![
                relay(30000),
                Some(StreamRewrite {
                    addr: ip("203.0.113.2"),
                    port: Some(30010),
                }),
            ],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
m=video 30010 RTP/AVP 96
i=camera
c=IN IP4 203.0.113.2
a=sendrecv
",
        ),
        case(
            "NAT fix: address only, ports and rtcp port kept",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4001 IN IP4 10.0.0.5
",
            vec![Some(StreamRewrite {
                addr: ip("198.51.100.9"),
                port: None,
            })],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 198.51.100.9
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4001 IN IP4 198.51.100.9
",
        ),
        case(
            "m= port count suffix and odd spacing kept",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000/2 RTP/AVP  0 8
",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000/2 RTP/AVP  0 8
",
        ),
        Case {
            name: "no version bump when disabled",
            input: crlf(OFFER),
            streams: vec![relay(30000)],
            opts: RewriteOptions {
                keep_ice: false,
                bump_version: false,
            },
            expect: Ok(crlf(
                "v=0
o=alice 2890844526 2890844526 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=sendrecv
",
            )),
        },
        case(
            "multicast TTL suffix and trailing blank line",
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5/127
t=0 0
m=audio 4000 RTP/AVP 0

",
            vec![relay(30000)],
            "v=0
o=- 1 2 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
",
        ),
        case(
            "hold (c=0.0.0.0) is rewritten like any address",
            "v=0
o=- 1 3 IN IP4 10.0.0.5
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 4000 RTP/AVP 0
a=sendonly
",
            vec![relay(30000)],
            "v=0
o=- 1 4 IN IP4 10.0.0.5
s=-
c=IN IP4 203.0.113.1
t=0 0
m=audio 30000 RTP/AVP 0
a=sendonly
",
        ),
        error("empty body", "", SdpError::Empty),
        error("only blank lines", "\n\n", SdpError::Empty),
        error("no v=", "o=- 1 1 IN IP4 10.0.0.5\n", SdpError::Version),
        error(
            "v=1",
            "v=1\no=- 1 1 IN IP4 10.0.0.5\n",
            SdpError::Version,
        ),
        error("no o=", "v=0\ns=-\nc=IN IP4 1.2.3.4\n", SdpError::Origin),
        error(
            "two o=",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\no=- 1 1 IN IP4 1.2.3.4\n",
            SdpError::Origin,
        ),
        error(
            "o= with five fields",
            "v=0\no=- 1 1 IN IP4\n",
            SdpError::OriginFields(2),
        ),
        error(
            "o= version not a number",
            "v=0\no=- 1 x IN IP4 1.2.3.4\n",
            SdpError::OriginFields(2),
        ),
        error(
            "c= with a host name",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 pc.example.com\nm=audio 4000 RTP/AVP 0\n",
            SdpError::ConnectionAddress(3),
        ),
        error(
            "c=IN IP4 with an IPv6 address",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 ::1\n",
            SdpError::ConnectionAddress(3),
        ),
        error(
            "c= with two fields",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN 1.2.3.4\n",
            SdpError::ConnectionFields(3),
        ),
        error(
            "two c= in one section",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nc=IN IP4 1.2.3.5\n",
            SdpError::DuplicateConnection(4),
        ),
        error(
            "m= port out of range",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0\n",
            SdpError::MediaFields(4),
        ),
        error(
            "m= without formats",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP\n",
            SdpError::MediaFields(4),
        ),
        error(
            "active stream without any c=",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 0\n",
            SdpError::MissingConnection(0),
        ),
        error(
            "a line that is not x=value",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nhello world\n",
            SdpError::Syntax(3),
        ),
        error(
            "blank line in the middle",
            "v=0\n\no=- 1 1 IN IP4 1.2.3.4\n",
            SdpError::Syntax(3),
        ),
        error(
            "a=rtcp port not a number",
            "v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 0\na=rtcp:abc\n",
            SdpError::RtcpFields(5),
        ),
    ]
}

#[test]
fn rewrite_table() {
    let all = cases();
    assert!(all.len() >= 20);
    for c in all {
        let got = Sdp::parse(c.input.as_bytes())
            .map(|sdp| String::from_utf8(rewrite(&sdp, &c.streams, &c.opts)).unwrap());
        assert_eq!(got, c.expect, "case: {}", c.name);
    }
}

#[test]
fn non_utf8_media_type_is_an_error() {
    let body =
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4 1.2.3.4\r\nm=\xff\xfe 4000 RTP/AVP 0\r\n";
    assert_eq!(Sdp::parse(body).unwrap_err(), SdpError::MediaFields(4));
}

#[test]
fn media_view() {
    let body = crlf(
        "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4000
a=rtcp-mux
a=candidate:1 1 UDP 1 10.0.0.5 4000 typ host
m=video 0 RTP/AVP 96
m=application 5000 TCP/BFCP *
c=IN IP6 2001:db8::7
a=rtcp:5001 IN IP6 2001:db8::8
",
    );
    let sdp = Sdp::parse(body.as_bytes()).unwrap();
    assert_eq!(sdp.origin_version(), 1);
    assert_eq!(sdp.session_connection().unwrap().addr, ip("10.0.0.5"));
    let m = sdp.media();
    assert_eq!(m.len(), 3);
    assert_eq!(
        (m[0].index, m[0].media, m[0].port, m[0].proto),
        (0, "audio", 4000, "RTP/AVP")
    );
    assert_eq!(m[0].connection, Some(ip("10.0.0.5")));
    assert!(!m[0].media_connection && m[0].rtcp_mux && m[0].ice && m[0].relayable());
    assert_eq!(
        m[0].rtcp,
        Some(Rtcp {
            port: 4000,
            addr: None
        })
    );
    assert!(m[1].disabled && !m[1].relayable() && !m[1].ice);
    assert_eq!(m[2].connection, Some(ip("2001:db8::7")));
    assert!(m[2].media_connection && !m[2].relayable());
    assert_eq!(
        m[2].rtcp,
        Some(Rtcp {
            port: 5001,
            addr: Some(ip("2001:db8::8"))
        })
    );
}

/// A parse → rewrite with nothing to change gives back the input except the o= version.
#[test]
fn identity_rewrite_only_bumps_version() {
    let input = crlf(OFFER);
    let sdp = Sdp::parse(input.as_bytes()).unwrap();
    let out = rewrite(&sdp, &[], &RewriteOptions::default());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        input.replace("2890844526 2890844526", "2890844526 2890844527")
    );
}

proptest! {
    /// Random byte mutations of a valid body never panic the parser or the rewriter, and
    /// whatever parses re-parses after rewriting.
    #[test]
    fn mutations_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        port in any::<u16>(),
    ) {
        let mut body = crlf(
            "v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 4000 RTP/AVP 0
a=rtcp:4001 IN IP4 10.0.0.5
a=candidate:1 1 UDP 1 10.0.0.5 4000 typ host
m=video 4002/2 RTP/AVP 96
c=IN IP6 ::1
",
        )
        .into_bytes();
        for (at, byte, op) in edits {
            let at = at % (body.len() + 1);
            match op {
                0 => body.insert(at, byte),
                1 if at < body.len() => {
                    body.remove(at);
                }
                _ if at < body.len() => body[at] = byte,
                _ => {}
            }
        }
        if let Ok(sdp) = Sdp::parse(&body) {
            let n = sdp.media().len();
            let streams = vec![Some(StreamRewrite { addr: ip("2001:db8::1"), port: Some(port) }); n];
            let out = rewrite(&sdp, &streams, &RewriteOptions::default());
            prop_assert!(Sdp::parse(&out).is_ok());
        }
    }
}
