//! Codec tests: every command, every error path, round trips.

use super::*;
use proptest::prelude::*;
use std::net::IpAddr;

fn parse(s: &str) -> Result<Command, ProtoError> {
    Command::parse(s.as_bytes())
}

fn code(s: &str) -> u16 {
    parse(s).expect_err(s).code().0
}

fn encode(c: &Command) -> String {
    let mut out = Vec::new();
    c.encode(&mut out);
    String::from_utf8(out).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn version_and_feature() {
    assert_eq!(parse("V"), Ok(Command::Version));
    assert_eq!(parse("v\n"), Ok(Command::Version));
    assert_eq!(parse("VF 20050322"), Ok(Command::VersionFeature(20050322)));
    assert_eq!(
        parse("vf 20040107\r\n"),
        Ok(Command::VersionFeature(20040107))
    );
    assert_eq!(code("VF"), 1);
    assert_eq!(code("VF 2004x107"), 9);
    assert_eq!(code("V 1"), 1);
    assert_eq!(code("VQ"), 2);
    assert!(feature_supported(20040107) && feature_supported(20080403));
    assert!(!feature_supported(20071116) && !feature_supported(20081224));
}

#[test]
fn update_kamailio_offer() {
    // What Kamailio's rtpproxy_offer("ai") sends for the first stream of an INVITE.
    let c = parse("UAIc0,8,101 a84b4c76e66710@pc33 192.0.2.10 49170 1928301774;1").unwrap();
    let Command::Update(u) = c else {
        panic!("not U")
    };
    assert!(u.modifiers.asymmetric);
    assert_eq!(u.modifiers.interfaces, vec![Interface::Internal]);
    assert_eq!(u.modifiers.codecs, vec![0, 8, 101]);
    assert_eq!(u.call, CallId::new("a84b4c76e66710@pc33"));
    assert_eq!(u.addr, ip("192.0.2.10"));
    assert_eq!(u.port, 49170);
    assert_eq!(u.from_tag, Tag::with_stream("1928301774", 1));
    assert_eq!(u.to_tag, None);
    assert_eq!(u.stream_number(), 1);
}

#[test]
fn update_with_branch_to_tag_and_notify() {
    let c = parse("Usz20 cid;z9hG4bK1 192.0.2.1 4000 ft;2 tt;2 /run/kam.sock nt").unwrap();
    let Command::Update(u) = c else {
        panic!("not U")
    };
    assert!(u.modifiers.symmetric);
    assert_eq!(u.modifiers.repacketize_ms, Some(20));
    assert_eq!(u.call.branch.as_deref(), Some("z9hG4bK1"));
    assert_eq!(u.to_tag, Some(Tag::with_stream("tt", 2)));
    assert_eq!(u.stream_number(), 2);
    assert_eq!(
        u.notify,
        Some(Notify {
            socket: "/run/kam.sock".into(),
            tag: Some("nt".into())
        })
    );
}

#[test]
fn lookup_needs_to_tag() {
    assert!(matches!(
        parse("L cid 192.0.2.2 5000 ft;1 tt;1"),
        Ok(Command::Lookup(_))
    ));
    assert_eq!(code("L cid 192.0.2.2 5000 ft;1"), 1);
    assert_eq!(code("U cid 192.0.2.2 5000"), 1);
    assert_eq!(code("U cid 192.0.2.2 5000 a b c d e"), 1);
}

#[test]
fn update_ipv6_and_local_address() {
    let c = parse("U6el[2001:db8::5]r10.0.0.1 cid 2001:db8::1 5000 ft").unwrap();
    let Command::Update(u) = c else {
        panic!("not U")
    };
    assert_eq!(u.addr, ip("2001:db8::1"));
    assert_eq!(u.modifiers.interfaces, vec![Interface::External]);
    assert_eq!(u.modifiers.local, Some(ip("2001:db8::5")));
    assert_eq!(u.modifiers.route_to, Some(ip("10.0.0.1")));
    // IPv6 address without the flag is accepted (rtpengine-style clients omit it).
    assert!(parse("U cid ::1 5000 ft").is_ok());
    // The flag with an IPv4 address is a family mismatch.
    assert_eq!(code("U6 cid 192.0.2.1 5000 ft"), 32);
}

#[test]
fn update_error_paths() {
    assert_eq!(code("Uq cid 192.0.2.1 5000 ft"), 2); // unknown modifier
    assert_eq!(code("Ueie cid 192.0.2.1 5000 ft"), 2); // three interfaces
    assert_eq!(code("Uc cid 192.0.2.1 5000 ft"), 2); // empty codec list
    assert_eq!(code("Uc0,,8 cid 192.0.2.1 5000 ft"), 2);
    assert_eq!(code("Uc200 cid 192.0.2.1 5000 ft"), 2); // payload type > 127
    assert_eq!(code("Uz cid 192.0.2.1 5000 ft"), 2);
    assert_eq!(code("Ul cid 192.0.2.1 5000 ft"), 2);
    assert_eq!(code("Ul[::1 cid 192.0.2.1 5000 ft"), 2);
    assert_eq!(code("Ul999.1.1.1 cid 192.0.2.1 5000 ft"), 2);
    assert_eq!(code("U cid 192.0.2.1 50x0 ft"), 5);
    assert_eq!(code("U cid 192.0.2.1 -1 ft"), 5);
    assert_eq!(code("U cid 192.0.2.1 65536 ft"), 31);
    assert_eq!(code("U cid 192.0.2.1 99999999999 ft"), 5);
    assert_eq!(code("U cid host.example 5000 ft"), 6);
    assert_eq!(code("U cid 192.0.2.1 5000 ft;x"), 7);
    assert_eq!(code("U cid 192.0.2.1 5000 ;1"), 7);
    assert_eq!(code("U ;br 192.0.2.1 5000 ft"), 11);
    assert_eq!(code("U cid; 192.0.2.1 5000 ft"), 11);
}

#[test]
fn delete_query_info_stats_deleteall() {
    assert_eq!(
        parse("Dw cid ft tt"),
        Ok(Command::Delete(Delete {
            weak: true,
            call: CallId::new("cid"),
            from_tag: Tag::new("ft"),
            to_tag: Some(Tag::new("tt")),
        }))
    );
    assert!(matches!(
        parse("D cid ft"),
        Ok(Command::Delete(Delete {
            weak: false,
            to_tag: None,
            ..
        }))
    ));
    assert_eq!(code("D cid"), 1);
    assert_eq!(code("D cid a b c"), 1);
    assert_eq!(code("Dx cid ft"), 2);
    let Ok(Command::Query(q)) = parse("Qv cid ft tt ttl packets_in") else {
        panic!()
    };
    assert!(q.verbose);
    assert_eq!(q.stats, vec!["ttl".to_string(), "packets_in".to_string()]);
    assert_eq!(code("Q cid"), 1);
    assert_eq!(code("Qb cid ft"), 2);
    assert_eq!(parse("I"), Ok(Command::Info { brief: false }));
    assert_eq!(parse("Ib"), Ok(Command::Info { brief: true }));
    assert_eq!(code("I x"), 1);
    assert_eq!(code("Iv"), 2);
    assert_eq!(
        parse("G"),
        Ok(Command::Stats {
            verbose: false,
            names: vec![]
        })
    );
    assert_eq!(
        parse("Gv nsess_created"),
        Ok(Command::Stats {
            verbose: true,
            names: vec!["nsess_created".into()]
        })
    );
    assert_eq!(parse("X"), Ok(Command::DeleteAll));
    assert_eq!(code("X 1"), 1);
    assert_eq!(code("Xa"), 2);
}

#[test]
fn media_ops_recognised() {
    for (s, kind) in [
        ("R cid ft tt", MediaOpKind::Record),
        ("N cid ft", MediaOpKind::NoRecord),
        ("P10 cid prompt 0 ft tt", MediaOpKind::Play),
        ("S cid ft", MediaOpKind::StopPlay),
        ("C cid udp:1.2.3.4:5 ft", MediaOpKind::Copy),
    ] {
        let Ok(Command::MediaOp(op)) = parse(s) else {
            panic!("{s}")
        };
        assert_eq!(op.kind, kind);
    }
}

#[test]
fn garbage_is_rejected() {
    assert_eq!(code(""), 0);
    assert_eq!(code("   \n"), 0);
    assert_eq!(code("Z"), 0);
    assert_eq!(code("é"), 10);
    assert_eq!(Command::parse(b"V\x00").unwrap_err().code().0, 10);
    assert_eq!(Command::parse(&[0xff, 0xfe]).unwrap_err().code().0, 10);
}

#[test]
fn encode_canonical_forms() {
    let u = Update {
        modifiers: Modifiers {
            asymmetric: true,
            weak: true,
            interfaces: vec![Interface::External, Interface::Internal],
            local: Some(ip("2001:db8::9")),
            repacketize_ms: Some(30),
            codecs: vec![0, 101],
            ..Default::default()
        },
        call: CallId {
            id: "c".into(),
            branch: Some("b".into()),
        },
        addr: ip("2001:db8::1"),
        port: 4000,
        from_tag: Tag::with_stream("f", 1),
        to_tag: Some(Tag::with_stream("t", 1)),
        notify: None,
    };
    assert_eq!(
        encode(&Command::Update(u.clone())),
        "Uawei6l[2001:db8::9]z30c0,101 c;b 2001:db8::1 4000 f;1 t;1"
    );
    assert_eq!(encode(&Command::VersionFeature(20040107)), "VF 20040107");
    let mut offer = Update::new(
        CallId::new("c"),
        ip("192.0.2.1"),
        4000,
        Tag::with_stream("f", 1),
    );
    offer.to_tag = Some(Tag::new("t"));
    assert_eq!(encode(&Command::Lookup(offer)), "L c 192.0.2.1 4000 f;1 t");
    assert_eq!(encode(&Command::Info { brief: true }), "Ib");
    let mut out = Vec::new();
    write_udp_command(b"123_4", &Command::Lookup(u), &mut out);
    assert!(out.starts_with(b"123_4 Lawei6"));
}

#[test]
fn replies_encode_and_parse() {
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::Port {
                port: 35000,
                addr: Some(ip("192.0.2.5")),
            },
            "35000 192.0.2.5",
        ),
        (
            Reply::Port {
                port: 35002,
                addr: Some(ip("2001:db8::2")),
            },
            "35002 2001:db8::2 6",
        ),
        (
            Reply::Port {
                port: 0,
                addr: Some(ip("0.0.0.0")),
            },
            "0 0.0.0.0",
        ),
        (Reply::Number(20040107), "20040107"),
        (Reply::OK, "0"),
        (Reply::Error(ErrorCode::SESSION_UNKNOWN), "E50"),
        (Reply::Text("60 1 2 3 4".into()), "60 1 2 3 4"),
        (
            Reply::Text("sessions created: 1\nactive sessions: 1".into()),
            "sessions created: 1\nactive sessions: 1",
        ),
    ];
    for (reply, text) in cases {
        let mut out = Vec::new();
        reply.encode(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), text);
        assert_eq!(Reply::parse(text.as_bytes()), Ok(reply));
    }
    // rtpengine's "port addr 4" form, and a bare port.
    assert_eq!(
        Reply::parse(b"30000 127.0.0.1 4\n").unwrap().port(),
        Some((30000, Some(ip("127.0.0.1"))))
    );
    assert_eq!(Reply::parse(b"30000").unwrap().port(), Some((30000, None)));
    assert_eq!(Reply::parse(b"E8").unwrap().error(), Some(ErrorCode(8)));
    assert!(Reply::parse(b"").is_err());
    assert_eq!(Reply::parse(b"E50").unwrap().port(), None);
}

#[test]
fn udp_framing() {
    let (cookie, cmd) = split_cookie(b"8731_2 V\n").unwrap();
    assert_eq!(cookie, b"8731_2");
    assert_eq!(Command::parse(cmd), Ok(Command::Version));
    assert_eq!(split_cookie(b"V"), Err(ProtoError::NoCookie));
    assert_eq!(split_cookie(b" V"), Err(ProtoError::NoCookie));
    assert_eq!(split_cookie(b"cookie   \n"), Err(ProtoError::NoCookie));
    assert!(split_cookie(&[b'x'; 200].iter().chain(b" V").copied().collect::<Vec<_>>()).is_err());
    let mut out = Vec::new();
    write_udp_reply(b"8731_2", &Reply::Number(20040107), &mut out);
    assert_eq!(out, b"8731_2 20040107\n");
    let (c, r) = split_udp_reply(&out).unwrap();
    assert_eq!((c, r), (&b"8731_2"[..], Reply::Number(20040107)));
    out.clear();
    write_stream_reply(&Reply::OK, &mut out);
    assert_eq!(out, b"0\n");
    out.clear();
    write_stream_command(&Command::DeleteAll, &mut out);
    assert_eq!(out, b"X\n");
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._@!%*+~-]{1,12}"
}

fn tag() -> impl Strategy<Value = Tag> {
    (token(), proptest::option::of(1u32..8)).prop_map(|(tag, stream)| Tag { tag, stream })
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn modifiers() -> impl Strategy<Value = Modifiers> {
    (
        any::<[bool; 4]>(),
        proptest::collection::vec(
            prop_oneof![Just(Interface::External), Just(Interface::Internal)],
            0..=2,
        ),
        proptest::option::of(addr()),
        proptest::option::of(addr()),
        proptest::option::of(0u32..1000),
        proptest::collection::vec(0u8..128, 0..4),
    )
        .prop_map(
            |(f, interfaces, local, route_to, repacketize_ms, codecs)| Modifiers {
                asymmetric: f[0],
                symmetric: f[1],
                weak: f[2],
                new_port: f[3],
                interfaces,
                local,
                route_to,
                repacketize_ms,
                codecs,
            },
        )
}

fn update() -> impl Strategy<Value = Update> {
    (
        modifiers(),
        token(),
        proptest::option::of(token()),
        addr(),
        any::<u16>(),
        tag(),
        proptest::option::of(tag()),
        proptest::option::of((token(), proptest::option::of(token()))),
    )
        .prop_map(
            |(modifiers, id, branch, addr, port, from_tag, to_tag, notify)| {
                let notify = to_tag
                    .as_ref()
                    .and(notify.map(|(socket, tag)| Notify { socket, tag }));
                Update {
                    modifiers,
                    call: CallId { id, branch },
                    addr,
                    port,
                    from_tag,
                    to_tag,
                    notify,
                }
            },
        )
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = Command::parse(&bytes);
        let _ = Reply::parse(&bytes);
        let _ = split_cookie(&bytes);
    }

    #[test]
    fn parse_never_panics_on_textlike(s in "[UuLlDQVIGX][a-z0-9,.\\[\\]:;]{0,12}( [a-z0-9.:;]{0,10}){0,8}") {
        let _ = Command::parse(s.as_bytes());
    }

    #[test]
    fn update_round_trips(u in update(), lookup in any::<bool>()) {
        if lookup && u.to_tag.is_none() {
            return Ok(());
        }
        let cmd = if lookup { Command::Lookup(u) } else { Command::Update(u) };
        let mut out = Vec::new();
        write_udp_command(b"c1", &cmd, &mut out);
        let (cookie, rest) = split_cookie(&out).unwrap();
        prop_assert_eq!(cookie, b"c1");
        prop_assert_eq!(Command::parse(rest), Ok(cmd));
    }

    #[test]
    fn other_commands_round_trip(
        call in token(), ft in tag(), tt in proptest::option::of(tag()),
        flag in any::<bool>(), stats in proptest::collection::vec(token(), 0..3),
        date in any::<u32>(),
    ) {
        let stats = if tt.is_some() { stats } else { vec![] };
        let cmds = vec![
            Command::Version,
            Command::VersionFeature(date),
            Command::Delete(Delete { weak: flag, call: CallId::new(call.clone()), from_tag: ft.clone(), to_tag: tt.clone() }),
            Command::Query(Query { verbose: flag, call: CallId::new(call), from_tag: ft, to_tag: tt, stats: stats.clone() }),
            Command::Info { brief: flag },
            Command::Stats { verbose: flag, names: stats },
            Command::DeleteAll,
        ];
        for cmd in cmds {
            let mut out = Vec::new();
            write_stream_command(&cmd, &mut out);
            prop_assert_eq!(Command::parse(&out), Ok(cmd));
        }
    }

    #[test]
    fn port_replies_round_trip(port in any::<u16>(), a in addr()) {
        let r = Reply::Port { port, addr: Some(a) };
        let mut out = Vec::new();
        write_udp_reply(b"k", &r, &mut out);
        prop_assert_eq!(split_udp_reply(&out), Ok((&b"k"[..], r)));
    }
}
