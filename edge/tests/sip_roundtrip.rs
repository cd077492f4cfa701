//! Round trips (parse → Edit::new → finish is byte-identical), typed accessors on valid
//! messages, and the exact output of Edit operations and response_to.

#[path = "sip_data/mod.rs"]
mod data;

use bytes::Bytes;
use edge::sip::{
    parse, response_to, Edit, HeaderName, Host, Limits, Message, Method, NameAddr, Scheme, Uri,
};

fn msg(s: &str) -> Message {
    parse(Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
        .unwrap_or_else(|e| panic!("parse failed: {e}\n{s}"))
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn corpus_round_trips_byte_identical() {
    for (name, s) in data::ALL {
        let m = msg(s);
        let out = Edit::new(&m).finish();
        assert_eq!(text(&out), *s, "round trip of {name}");
    }
}

#[test]
fn corpus_validates() {
    for (name, s) in data::ALL {
        let m = msg(s);
        if m.is_request() {
            m.validate_request()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            m.validate_response()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for v in m.vias() {
            v.unwrap_or_else(|e| panic!("{name}: via {e}"));
        }
        m.from().unwrap().uri().unwrap();
        m.to().unwrap().uri().unwrap();
    }
}

#[test]
fn invite_accessors() {
    let m = msg(data::INVITE);
    assert!(m.is_request());
    assert_eq!(m.method(), Some(&Method::Invite));
    assert_eq!(m.request_uri(), Some(&b"sip:bob@biloxi.example.com"[..]));
    assert_eq!(m.status(), None);
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.host, "pc33.atlanta.example.com");
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.branch, Some("z9hG4bK776asdhds"));
    assert_eq!(via.rport, Some(None));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Invite));
    assert_eq!(
        m.call_id(),
        Some(&b"a84b4c76e66710@pc33.atlanta.example.com"[..])
    );
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    let from = m.from().unwrap();
    assert_eq!(from.display_unescaped().unwrap(), "Alice \"Al\" Smith");
    assert_eq!(from.tag(), Some("1928301774"));
    assert_eq!(m.to().unwrap().tag(), None);
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert_eq!(m.body().len(), 134);
    assert_eq!(&m.body_bytes()[..], m.body());
    let supported: Vec<&[u8]> = m.values(HeaderName::Supported).collect();
    assert_eq!(supported, vec![&b"replaces"[..], b"timer"]);
    assert_eq!(m.header("user-agent"), Some(&b"TestPhone/1.0"[..]));
    assert_eq!(m.header(HeaderName::Route), None);
    let hdrs: Vec<_> = m.headers().collect();
    assert_eq!(hdrs.len(), 12);
    assert_eq!(hdrs[1].name, HeaderName::MaxForwards);
    assert_eq!(hdrs[1].index, 1);
}

#[test]
fn compact_forms_and_multi_values() {
    let m = msg(data::REGISTER_COMPACT);
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.call_id(), Some(&b"843817637684230@998sdasdh09"[..]));
    assert_eq!(m.top_via().unwrap().transport, "TCP");
    let contacts: Vec<NameAddr> = m
        .values(HeaderName::Contact)
        .map(|v| NameAddr::parse(v).unwrap())
        .collect();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].param("expires"), Some(Some("3600")));
    assert_eq!(contacts[1].display, Some("Carol Mobile"));
    assert_eq!(contacts[1].uri().unwrap().transport(), Some("tcp"));
    assert_eq!(m.body(), b"");
}

#[test]
fn folded_headers_and_spacing() {
    let m = msg(data::FOLDED);
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "proxy.example.com");
    assert_eq!(vias[0].branch, Some("z9hG4bKhjhs8ass877"));
    assert_eq!(vias[1].host, "pc33.example.com");
    assert_eq!(vias[2].host, "[2001:db8::9]");
    assert_eq!(vias[2].transport, "TCP");
    assert_eq!(m.cseq().unwrap().method, Method::Options);
    assert_eq!(m.call_id(), Some(&b"a84b4c76e66710"[..]));
    assert_eq!(m.from().unwrap().display, Some("Alice"));
    assert_eq!(m.max_forwards().unwrap(), Some(69));
    let subject = m.header(HeaderName::Subject).unwrap();
    assert!(subject.starts_with(b"I know you're there,\r\n"));
    assert!(subject.ends_with(b"and talk to me!"));
}

#[test]
fn ipv6_everywhere() {
    let m = msg(data::IPV6);
    let ruri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(ruri.host, Host::V6("2001:db8::10".parse().unwrap()));
    assert_eq!(ruri.port, Some(5070));
    let via = m.top_via().unwrap();
    assert_eq!(via.host, "[2001:db8::20]");
    assert_eq!(via.received, Some("[2001:db8::21]"));
    assert_eq!(via.rport, Some(Some(5062)));
    let contact = NameAddr::parse(m.header(HeaderName::Contact).unwrap()).unwrap();
    assert_eq!(contact.uri().unwrap().host.to_string(), "[2001:db8::20]");
}

#[test]
fn tel_and_addr_spec() {
    let m = msg(data::TEL_ADDR_SPEC);
    let ruri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(ruri.scheme, Scheme::Tel);
    assert_eq!(ruri.user, Some("+1-201-555-0123"));
    let from = m.from().unwrap();
    assert_eq!(from.uri_raw, b"sip:alice@example.com");
    assert_eq!(from.tag(), Some("addrspec"));
    let routes: Vec<&[u8]> = m.values(HeaderName::Route).collect();
    assert_eq!(routes.len(), 3);
    assert_eq!(m.top_via().unwrap().sent_by_port_or_default(), 5061);
}

#[test]
fn non_list_headers_not_split() {
    let m = msg(data::NOTIFY_UNKNOWN);
    let dates: Vec<&[u8]> = m.values(HeaderName::Date).collect();
    assert_eq!(dates, vec![&b"Sat, 13 Nov 2010 23:29:00 GMT"[..]]);
    assert_eq!(m.header("p-weird"), Some(&b""[..]));
    assert_eq!(m.header(HeaderName::Event), Some(&b"presence"[..]));
    let m = msg(data::MESSAGE_LOWER);
    let custom: Vec<&[u8]> = m.values("X-Custom-Header").collect();
    assert_eq!(custom, vec![&b"a"[..], b"\"b, c\"", b"<d,e>"]);
}

#[test]
fn response_accessors() {
    let m = msg(data::RESPONSE_200);
    assert!(!m.is_request());
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.reason(), b"OK");
    assert_eq!(m.method(), None);
    assert_eq!(m.vias().count(), 2);
    assert_eq!(m.values(HeaderName::RecordRoute).count(), 3);
    assert_eq!(m.to().unwrap().tag(), Some("a6c85cf"));
    assert_eq!(m.body(), b"v=0\r\ns=bob\r\n");
}

#[test]
fn datagram_body_truncated_to_content_length() {
    let s = data::TRYING.replace("Content-Length: 0", "Content-Length: 3") + "abcdef";
    let m = msg(&s);
    assert_eq!(m.body(), b"abc");
    let out = Edit::new(&m).finish();
    assert!(text(&out).ends_with("Content-Length: 3\r\n\r\nabc"));
}

#[test]
fn missing_content_length_on_datagram_is_rest() {
    let s = data::TRYING.replace("Content-Length: 0\r\n", "") + "xyz";
    let m = msg(&s);
    assert_eq!(m.body(), b"xyz");
    let out = Edit::new(&m).finish();
    assert!(text(&out).ends_with("CSeq: 314159 INVITE\r\nContent-Length: 3\r\n\r\nxyz"));
}

#[test]
fn leading_crlf_skipped() {
    let s = format!("\r\n\r\n{}", data::TRYING);
    let m = msg(&s);
    assert_eq!(m.status(), Some(100));
    assert_eq!(text(&Edit::new(&m).finish()), data::TRYING);
}

#[test]
fn edit_forward_request() {
    let m = msg(data::TEL_ADDR_SPEC);
    let mut e = Edit::new(&m);
    e.prepend(
        HeaderName::Via,
        b"SIP/2.0/UDP edge.example.com;branch=z9hG4bKe1",
    );
    let mf = m.max_forwards().unwrap().unwrap();
    e.set_max_forwards(mf - 1);
    e.prepend(HeaderName::RecordRoute, b"<sip:edge.example.com;lr>");
    assert!(e.remove_first_value(HeaderName::Route));
    e.set_request_uri(b"sip:+12015550123@core1.example.com;user=phone");
    let out = e.finish();
    let want = "INVITE sip:+12015550123@core1.example.com;user=phone SIP/2.0\r\n\
Record-Route: <sip:edge.example.com;lr>\r\n\
Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKe1\r\n\
Via: SIP/2.0/TLS ua.example.com:5061;branch=z9hG4bKtel\r\n\
Max-Forwards: 9\r\n\
From: sip:alice@example.com;tag=addrspec\r\n\
To: tel:+1-201-555-0123\r\n\
Call-ID: tel-1\r\n\
CSeq: 7 INVITE\r\n\
Route: <sip:core2.example.com;lr>\r\n\
Route: <sip:core3.example.com;lr>\r\n\
Content-Length: 0\r\n\
\r\n";
    assert_eq!(text(&out), want);
    // The output parses and validates again.
    let again = parse(out, &Limits::default()).unwrap();
    again.validate_request().unwrap();
    assert_eq!(again.top_via().unwrap().host, "edge.example.com");
}

#[test]
fn edit_forward_response_pops_top_via() {
    let m = msg(data::RESPONSE_200);
    let mut e = Edit::new(&m);
    assert!(e.remove_first_value(HeaderName::Via));
    let out = e.finish();
    let s = text(&out);
    assert!(s.starts_with(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.10;rport=5066\r\nRecord-Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>\r\n"
    ));
    // Popping again removes the now single-valued field.
    let mut e = Edit::new(&m);
    assert!(e.remove_first_value(HeaderName::Via));
    assert!(e.remove_first_value(HeaderName::Via));
    assert!(!e.remove_first_value(HeaderName::Via));
    let out = e.finish();
    assert!(!text(&out).contains("Via"));
    assert!(text(&out).starts_with("SIP/2.0 200 OK\r\nRecord-Route:"));
}

#[test]
fn edit_pops_via_in_separate_fields_and_compact() {
    let m = msg(data::REGISTER_COMPACT);
    let mut e = Edit::new(&m);
    e.remove_first_value("v");
    let out = e.finish();
    assert!(text(&out)
        .starts_with("REGISTER sip:registrar.example.com SIP/2.0\r\nmax-forwards: 70\r\n"));
}

#[test]
fn edit_replace_remove_append_body() {
    let m = msg(data::REGISTER_COMPACT);
    let mut e = Edit::new(&m);
    e.replace_first_value(
        HeaderName::Contact,
        b"<sip:carol@203.0.113.9:4000>;expires=3600",
    );
    e.remove_all(HeaderName::Supported);
    e.remove_all("expires");
    e.append("X-Edge", b"  yes ");
    e.set_body(Some(b"text/plain"), b"hi");
    let out = e.finish();
    let want = "REGISTER sip:registrar.example.com SIP/2.0\r\n\
v: SIP/2.0/TCP 192.0.2.20:5060;branch=z9hG4bKnashds7\r\n\
max-forwards: 70\r\n\
t: <sip:carol@example.com>\r\n\
f: <sip:carol@example.com>;tag=456248\r\n\
i: 843817637684230@998sdasdh09\r\n\
CSEQ: 1826 REGISTER\r\n\
m: <sip:carol@203.0.113.9:4000>;expires=3600, \"Carol Mobile\" <sip:carol@198.51.100.7;transport=tcp>;q=0.5\r\n\
l: 2\r\n\
X-Edge: yes\r\n\
Content-Type: text/plain\r\n\
\r\n\
hi";
    assert_eq!(text(&out), want);
    let again = parse(out, &Limits::default()).unwrap();
    assert_eq!(again.body(), b"hi");
}

#[test]
fn edit_body_replacement_updates_length() {
    let m = msg(data::INVITE);
    let mut e = Edit::new(&m);
    e.set_body(None, b"v=0\r\n");
    let out = e.finish();
    let s = text(&out);
    assert!(s.contains("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
    let mut e = Edit::new(&m);
    e.set_body(None, b"");
    let s = e.finish();
    assert!(text(&s).ends_with("User-Agent: TestPhone/1.0\r\nContent-Length: 0\r\n\r\n"));
}

#[test]
fn edit_prepend_without_existing_and_by_index() {
    let m = msg(data::TRYING);
    let mut e = Edit::new(&m);
    e.prepend(HeaderName::RecordRoute, b"<sip:x;lr>");
    e.insert_before(4, "Server", b"edge");
    e.replace_at(0, b"SIP/2.0/UDP changed;branch=z9hG4bKc");
    e.remove_at(3);
    let out = e.finish();
    let want = "SIP/2.0 100 Trying\r\n\
Record-Route: <sip:x;lr>\r\n\
Via: SIP/2.0/UDP changed;branch=z9hG4bKc\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Server: edge\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";
    assert_eq!(text(&out), want);
}

#[test]
fn edit_max_forwards_added_when_absent() {
    let m = msg(data::TRYING);
    let mut e = Edit::new(&m);
    e.set_max_forwards(70);
    assert!(text(&e.finish()).contains("Content-Length: 0\r\nMax-Forwards: 70\r\n\r\n"));
}

#[test]
fn response_to_copies_mandatory_headers() {
    let m = msg(data::FOLDED);
    let r = response_to(&m, 200, "OK", Some("edge42"), &[("Server", b"edge/0.1")]);
    let want = "SIP/2.0 200 OK\r\n\
Via: SIP / 2.0 / UDP\r\n  proxy.example.com:5060 ;branch=z9hG4bKhjhs8ass877\r\n\
Via: SIP/2.0/UDP pc33.example.com\t;branch=z9hG4bKa1,\r\n\tSIP/2.0/TCP [2001:db8::9];branch=z9hG4bKa2\r\n\
To: <sip:carol@chicago.example.com>;tag=edge42\r\n\
From: Alice\r\n <sip:alice@example.com> ;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 63104\r\n OPTIONS\r\n\
Server: edge/0.1\r\n\
Content-Length: 0\r\n\
\r\n";
    assert_eq!(text(&r), want);
    let parsed = parse(r, &Limits::default()).unwrap();
    parsed.validate_response().unwrap();
    assert_eq!(parsed.vias().count(), 3);
}

#[test]
fn response_to_keeps_existing_to_tag_and_sanitises_reason() {
    let m = msg(data::BYE_LF);
    let r = response_to(&m, 481, "Call\r\nX: y", Some("new"), &[]);
    let s = text(&r);
    assert!(s.starts_with("SIP/2.0 481 Call  X: y\r\n"));
    assert!(s.contains("To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"));
    assert!(!s.contains("tag=new"));
}
