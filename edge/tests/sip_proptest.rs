//! Random mutations of valid messages (byte flips, insertions, truncations, duplicated and
//! removed lines) never panic anywhere in parse, the accessors, validation, Edit or
//! response_to. Case count: PROPTEST_CASES (CI sets 10000).

#[path = "sip_data/mod.rs"]
mod data;

use bytes::Bytes;
use edge::sip::{
    frame_len, parse, response_to, CSeq, Edit, HeaderName, Limits, Message, NameAddr, Uri, Via,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Truncate(usize),
    DuplicateLine(usize),
    RemoveLine(usize),
    SwapLines(usize, usize),
}

const PIECES: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"\r\n ",
    b",",
    b";",
    b"=",
    b"<",
    b">",
    b"\"",
    b"\\",
    b":",
    b"@",
    b"[",
    b"]",
    b"?",
    b"/",
    b"\0",
    b"\xff",
    b"\xc3\xa9",
    b"SIP/2.0",
    b"Via: ",
    b"l: 99\r\n",
    b"Content-Length: 0\r\n",
    b"9999999999",
    b"0",
    b";tag=",
    b";branch=",
    b"sip:",
    b"tel:",
    b"[::1]",
    b"\r\n\r\n",
    b";rport",
    b";lr",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        3 => (any::<usize>(), prop::sample::select(PIECES)).prop_map(|(p, s)| Mutation::Insert(p, s.to_vec())),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => any::<usize>().prop_map(Mutation::DuplicateLine),
        2 => any::<usize>().prop_map(Mutation::RemoveLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn lines(buf: &[u8]) -> Vec<Vec<u8>> {
    buf.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn apply(mut buf: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = buf.len();
    match m {
        Mutation::Flip(p, b) if n > 0 => buf[p % n] = *b,
        Mutation::Flip(..) => {}
        Mutation::Insert(p, s) => {
            let at = p % (n + 1);
            buf.splice(at..at, s.iter().copied());
        }
        Mutation::Truncate(p) => buf.truncate(p % (n + 1)),
        Mutation::DuplicateLine(i) | Mutation::RemoveLine(i) => {
            let mut ls = lines(&buf);
            if !ls.is_empty() {
                let i = i % ls.len();
                if matches!(m, Mutation::RemoveLine(_)) {
                    ls.remove(i);
                } else {
                    let l = ls[i].clone();
                    ls.insert(i, l);
                }
            }
            buf = ls.concat();
        }
        Mutation::SwapLines(a, b) => {
            let mut ls = lines(&buf);
            if !ls.is_empty() {
                let (a, b) = (a % ls.len(), b % ls.len());
                ls.swap(a, b);
            }
            buf = ls.concat();
        }
    }
    buf
}

fn touch_name_addr(v: &[u8]) {
    if let Ok(n) = NameAddr::parse(v) {
        let _ = (n.tag(), n.param("expires"), n.display_unescaped());
        if let Ok(u) = n.uri() {
            let _ = (
                u.has_lr(),
                u.transport(),
                u.port_or_default(),
                u.host.to_string(),
            );
        }
    }
}

/// Calls every accessor; the values themselves are not checked here.
fn exercise(m: &Message) {
    let _ = (
        m.buf(),
        m.is_request(),
        m.method(),
        m.status(),
        m.reason(),
        m.version(),
    );
    let _ = (
        m.start_line(),
        m.body(),
        m.body_bytes(),
        m.call_id(),
        m.header_count(),
    );
    if let Some(r) = m.request_uri() {
        if let Ok(u) = Uri::parse(r) {
            let _ = (
                u.param("user"),
                u.has_lr(),
                u.transport_kind(),
                u.host.to_string(),
            );
        }
    }
    for h in m.headers() {
        let _ = m.header(h.name);
        let _ = m.values(h.name).count();
        if let Ok(raw) = std::str::from_utf8(h.raw_name) {
            let _ = m.values(raw).count();
        }
        match h.name {
            HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute => {
                m.values(h.name).for_each(touch_name_addr)
            }
            HeaderName::Via => m.values(h.name).for_each(|v| {
                if let Ok(v) = Via::parse(v) {
                    let _ = (
                        v.sent_by_port_or_default(),
                        v.param("x"),
                        v.transport_kind(),
                    );
                }
            }),
            _ => {}
        }
    }
    let _ = (m.cseq(), m.top_via(), m.vias().count(), m.max_forwards());
    if let Ok(f) = m.from() {
        touch_name_addr(f.uri_raw);
        let _ = (f.tag(), f.uri());
    }
    let _ = m.to().map(|t| t.uri());
    let _ = m.validate_response();
    let rs = response_to(m, 400, "Bad Request", Some("t1"), &[("Server", b"x")]);
    let parsed = parse(rs, &Limits::default());
    // A response to a valid request is itself a valid response.
    if m.validate_request().is_ok() {
        let r = parsed.expect("response to a valid request parses");
        assert!(r.validate_response().is_ok());
        assert_eq!(r.vias().count(), m.vias().count());
    }
}

fn edit(m: &Message) -> Bytes {
    let mut e = Edit::new(m);
    e.prepend(
        HeaderName::Via,
        b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKprop",
    );
    e.set_max_forwards(69);
    e.prepend(HeaderName::RecordRoute, b"<sip:127.0.0.1;lr>");
    e.remove_first_value(HeaderName::Route);
    e.remove_first_value(HeaderName::Via);
    e.replace_first_value(HeaderName::Contact, b"<sip:u@127.0.0.1:5062>");
    e.set_request_uri(b"sip:core@127.0.0.1");
    e.remove_all("X-Custom-Header");
    e.insert_before(2, "X-Test", b"1");
    e.replace_at(1, b"v");
    e.remove_at(3);
    if m.body().len().is_multiple_of(2) {
        e.set_body(Some(b"application/sdp"), b"v=0\r\n");
    }
    e.finish()
}

/// The proxy's forward edit is exact on anything that parsed: the new Via on top of the
/// old ones, Max-Forwards replaced, the new Record-Route first, the body kept.
fn check_forward(m: &Message) {
    let mut e = Edit::new(m);
    e.prepend(HeaderName::Via, b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKfwd");
    e.set_max_forwards(69);
    e.prepend(HeaderName::RecordRoute, b"<sip:127.0.0.1;lr>");
    let out = e.finish();
    let big = Limits {
        max_message_bytes: 1 << 20,
        max_headers: 1000,
    };
    let f = parse(out, &big).expect("forwarded message parses");
    let vias: Vec<&[u8]> = f.values(HeaderName::Via).collect();
    let old: Vec<&[u8]> = m.values(HeaderName::Via).collect();
    assert_eq!(
        vias.first().copied(),
        Some(&b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKfwd"[..])
    );
    assert_eq!(&vias[1..], &old[..]);
    assert_eq!(f.max_forwards().ok(), Some(Some(69)));
    assert_eq!(
        f.values(HeaderName::RecordRoute).next(),
        Some(&b"<sip:127.0.0.1;lr>"[..])
    );
    assert_eq!(f.body(), m.body());
    assert_eq!(f.call_id(), m.call_id());
}

fn base() -> impl Strategy<Value = &'static str> {
    prop::sample::select(data::ALL.iter().map(|(_, s)| *s).collect::<Vec<_>>())
}

proptest! {
    #[test]
    fn mutated_messages_never_panic(
        src in base(),
        muts in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut buf = src.as_bytes().to_vec();
        for m in &muts {
            buf = apply(buf, m);
        }
        let _ = frame_len(&buf, &Limits::default());
        let small = Limits { max_message_bytes: 400, max_headers: 9 };
        let _ = frame_len(&buf, &small);
        for limits in [Limits::default(), small] {
            match parse(Bytes::from(buf.clone()), &limits) {
                Ok(m) => {
                    exercise(&m);
                    let unchanged = Edit::new(&m).finish();
                    // What parsed once still parses after a verbatim re-serialisation.
                    let again = parse(unchanged, &Limits { max_message_bytes: 1 << 20, max_headers: 1000 });
                    prop_assert!(again.is_ok(), "re-parse failed: {:?}", again.err());
                    check_forward(&m);
                    let edited = edit(&m);
                    let _ = parse(edited, &Limits::default()).map(|m2| exercise(&m2));
                }
                Err(e) => {
                    let _ = (e.status_code(), e.reason(), e.can_respond(), e.kind);
                    if let Some(p) = e.partial() {
                        exercise(p);
                        let _ = edit(p);
                    }
                    let _ = e.response(None, Some("tag"));
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = (Via::parse(&b), Uri::parse(&b), NameAddr::parse(&b), CSeq::parse(&b));
        let _ = frame_len(&b, &Limits::default());
        if let Ok(m) = parse(Bytes::from(b), &Limits::default()) {
            exercise(&m);
            let _ = edit(&m);
        }
    }

    #[test]
    fn unmutated_corpus_round_trips(src in base()) {
        let m = parse(Bytes::from_static(src.as_bytes()), &Limits::default()).unwrap();
        prop_assert_eq!(&Edit::new(&m).finish()[..], src.as_bytes());
    }
}
