//! Malformed messages and the outcome each must get: a response code with a reason phrase
//! naming the problem, or being dropped (no response possible or allowed).

use bytes::Bytes;
use edge::sip::{parse, HeaderName, Limits, Message, ParseError};

const BASE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

const RESPONSE: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>;tag=2\r\n\
Call-ID: c1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\
\r\n";

#[derive(Debug, Clone, Copy)]
enum Expect {
    Respond(u16, &'static str),
    Dropped,
}
use Expect::*;

/// BASE without the line starting with `prefix`.
fn without(prefix: &str) -> String {
    let mut s: String = BASE
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with(prefix))
        .collect();
    assert_ne!(s, BASE, "no line {prefix}");
    s.shrink_to_fit();
    s
}

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

fn resp_with(from: &str, to: &str) -> String {
    assert!(RESPONSE.contains(from), "{from}");
    RESPONSE.replacen(from, to, 1)
}

fn cases() -> Vec<(&'static str, String, Limits, Expect)> {
    let d = Limits::default();
    let small = Limits {
        max_message_bytes: 600,
        max_headers: 10,
    };
    let many_headers = with(
        "Content-Length: 0\r\n",
        "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nContent-Length: 0\r\n",
    );
    let big_body = format!(
        "{}{}",
        with("Content-Length: 0", "Content-Length: 700"),
        "x".repeat(700)
    );
    let big_response = format!(
        "{}{}",
        RESPONSE.replace("Content-Length: 0", "Content-Length: 700"),
        "x".repeat(700)
    );
    vec![
        (
            "missing Call-ID",
            without("Call-ID"),
            d,
            Respond(400, "missing Call-ID"),
        ),
        (
            "missing From",
            without("From"),
            d,
            Respond(400, "missing From"),
        ),
        ("missing To", without("To:"), d, Respond(400, "missing To")),
        (
            "missing CSeq",
            without("CSeq"),
            d,
            Respond(400, "missing CSeq"),
        ),
        ("missing Via", without("Via"), d, Dropped),
        (
            "CSeq not numeric",
            with("CSeq: 1 INVITE", "CSeq: abc INVITE"),
            d,
            Respond(400, "invalid CSeq"),
        ),
        (
            "CSeq without method",
            with("CSeq: 1 INVITE", "CSeq: 1"),
            d,
            Respond(400, "invalid CSeq"),
        ),
        (
            "CSeq too large",
            with("CSeq: 1 INVITE", "CSeq: 2147483648 INVITE"),
            d,
            Respond(400, "invalid CSeq"),
        ),
        (
            "CSeq method mismatch",
            with("CSeq: 1 INVITE", "CSeq: 1 BYE"),
            d,
            Respond(400, "CSeq method mismatch"),
        ),
        (
            "Max-Forwards not numeric",
            with("Max-Forwards: 70", "Max-Forwards: seventy"),
            d,
            Respond(400, "invalid Max-Forwards"),
        ),
        (
            "Max-Forwards overflow",
            with("Max-Forwards: 70", "Max-Forwards: 99999999999"),
            d,
            Respond(400, "invalid Max-Forwards"),
        ),
        (
            "SIP/3.0",
            with("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"),
            d,
            Respond(505, "Version Not Supported"),
        ),
        (
            "http Request-URI",
            with("sip:bob@example.com SIP", "http://example.com/ SIP"),
            d,
            Respond(416, "Unsupported URI Scheme"),
        ),
        (
            "bad Request-URI host",
            with("sip:bob@example.com SIP", "sip:bob@exa#mple.com SIP"),
            d,
            Respond(400, "invalid Request-URI"),
        ),
        (
            "Request-URI without scheme",
            with("sip:bob@example.com SIP", "bob@example.com SIP"),
            d,
            Respond(400, "invalid Request-URI"),
        ),
        (
            "empty tel number",
            with("sip:bob@example.com SIP", "tel: SIP"),
            d,
            Respond(400, "invalid Request-URI"),
        ),
        (
            "message too large",
            big_body,
            small,
            Respond(513, "Message Too Large"),
        ),
        (
            "too many headers",
            many_headers,
            small,
            Respond(400, "too many headers"),
        ),
        (
            "body shorter than Content-Length",
            with("Content-Length: 0", "Content-Length: 10"),
            d,
            Respond(400, "body shorter than Content-Length"),
        ),
        (
            "Content-Length not numeric",
            with("Content-Length: 0", "Content-Length: zero"),
            d,
            Respond(400, "invalid Content-Length"),
        ),
        (
            "Content-Length negative",
            with("Content-Length: 0", "Content-Length: -1"),
            d,
            Respond(400, "invalid Content-Length"),
        ),
        (
            "conflicting Content-Length",
            with("Content-Length: 0\r\n", "Content-Length: 0\r\nl: 4\r\n"),
            d,
            Respond(400, "conflicting Content-Length"),
        ),
        (
            "header line without colon",
            with("Max-Forwards: 70", "Max-Forwards 70"),
            d,
            Respond(400, "malformed header line"),
        ),
        (
            "header name with space",
            with("Max-Forwards: 70", "Max Forwards: 70"),
            d,
            Respond(400, "malformed header name"),
        ),
        (
            "empty header name",
            with("Max-Forwards: 70", ": 70"),
            d,
            Respond(400, "malformed header name"),
        ),
        (
            "header section not terminated",
            BASE.trim_end_matches("\r\n").to_string() + "\r\n",
            d,
            Respond(400, "header section not terminated"),
        ),
        (
            "continuation before first header",
            with("SIP/2.0\r\nVia", "SIP/2.0\r\n folded\r\nVia"),
            d,
            Respond(400, "continuation line"),
        ),
        (
            "duplicate Call-ID",
            with(
                "Call-ID: c1@192.0.2.1\r\n",
                "Call-ID: c1@192.0.2.1\r\ni: other\r\n",
            ),
            d,
            Respond(400, "duplicate Call-ID"),
        ),
        (
            "duplicate CSeq",
            with("CSeq: 1 INVITE\r\n", "CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n"),
            d,
            Respond(400, "duplicate CSeq"),
        ),
        (
            "Call-ID with white space",
            with("Call-ID: c1@192.0.2.1", "Call-ID: c1 @192.0.2.1"),
            d,
            Respond(400, "invalid Call-ID"),
        ),
        (
            "Contact with < and no >",
            with(
                "Content-Length: 0",
                "Contact: <sip:alice@192.0.2.1:5060\r\nContent-Length: 0",
            ),
            d,
            Respond(400, "invalid Contact"),
        ),
        (
            "Contact that is not a URI",
            with(
                "Content-Length: 0",
                "Contact: <no uri here>\r\nContent-Length: 0",
            ),
            d,
            Respond(400, "invalid Contact"),
        ),
        (
            "empty Call-ID",
            with("Call-ID: c1@192.0.2.1", "Call-ID:"),
            d,
            Respond(400, "invalid Call-ID"),
        ),
        (
            "From unterminated quote",
            with("From: <sip", "From: \"Alice <sip"),
            d,
            Respond(400, "invalid From"),
        ),
        (
            "To without closing angle",
            with("To: <sip:bob@example.com>", "To: <sip:bob@example.com"),
            d,
            Respond(400, "invalid To"),
        ),
        (
            "bad second Via",
            with(
                "Max-Forwards: 70\r\n",
                "Via: SIP/2.0/UDP host:99999\r\nMax-Forwards: 70\r\n",
            ),
            d,
            Respond(400, "invalid Via"),
        ),
        (
            "bad second Via value on one line",
            with(";branch=z9hG4bK1", ";branch=z9hG4bK1, SIP/2.0/UDP"),
            d,
            Respond(400, "invalid Via"),
        ),
        (
            "bad top Via",
            with("Via: SIP/2.0/UDP", "Via: SIP/2.0 UDP"),
            d,
            Dropped,
        ),
        (
            "top Via without host",
            with("Via: SIP/2.0/UDP 192.0.2.1:5060", "Via: SIP/2.0/UDP :5060"),
            d,
            Dropped,
        ),
        (
            "ACK missing Call-ID",
            without("Call-ID").replace("INVITE", "ACK"),
            d,
            Dropped,
        ),
        (
            "ACK with SIP/3.0",
            with("SIP/2.0\r\nVia", "SIP/3.0\r\nVia").replace("INVITE", "ACK"),
            d,
            Dropped,
        ),
        (
            "garbage start line",
            with("INVITE sip:bob@example.com SIP/2.0", "HELLO"),
            d,
            Dropped,
        ),
        (
            "HTTP request",
            with("INVITE sip:bob@example.com SIP/2.0", "GET / HTTP/1.1"),
            d,
            Dropped,
        ),
        (
            "lower-case method token with space",
            with(
                "INVITE sip:bob@example.com SIP/2.0",
                "IN VITE sip:bob@example.com SIP/2.0",
            ),
            d,
            Dropped,
        ),
        (
            "control char in Request-URI",
            with("sip:bob@example.com SIP", "sip:bob\x01@example.com SIP"),
            d,
            Dropped,
        ),
        ("empty datagram", String::new(), d, Dropped),
        ("only CRLFs", "\r\n\r\n\r\n".to_string(), d, Dropped),
        (
            "start line only, no CRLF",
            "INVITE sip:bob@example.com SIP/2.0".to_string(),
            d,
            Dropped,
        ),
        (
            "response status 4 digits",
            resp_with("200 OK", "2000 OK"),
            d,
            Dropped,
        ),
        (
            "response status out of range",
            resp_with("200 OK", "700 Odd"),
            d,
            Dropped,
        ),
        (
            "response SIP/1.0",
            resp_with("SIP/2.0 200", "SIP/1.0 200"),
            d,
            Dropped,
        ),
        (
            "response missing Via",
            RESPONSE.replace("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n", ""),
            d,
            Dropped,
        ),
        (
            "response bad CSeq",
            resp_with("CSeq: 1 INVITE", "CSeq: INVITE"),
            d,
            Dropped,
        ),
        (
            "response missing Call-ID",
            resp_with("Call-ID: c1@192.0.2.1\r\n", ""),
            d,
            Dropped,
        ),
        ("response too large", big_response, small, Dropped),
        (
            "response body short",
            resp_with("Content-Length: 0", "Content-Length: 5"),
            d,
            Dropped,
        ),
    ]
}

/// Parses and, for a message that parsed, validates; returns the error (if any) and the
/// message the response would be built from.
fn outcome(raw: &str, limits: &Limits) -> Option<(ParseError, Option<Message>)> {
    match parse(Bytes::copy_from_slice(raw.as_bytes()), limits) {
        Err(e) => Some((e, None)),
        Ok(m) => {
            let r = if m.is_request() {
                m.validate_request()
            } else {
                m.validate_response()
            };
            r.err().map(|e| (e, Some(m)))
        }
    }
}

#[test]
fn malformed_table() {
    let cases = cases();
    assert!(cases.len() >= 30);
    for (name, raw, limits, expect) in &cases {
        let Some((err, msg)) = outcome(raw, limits) else {
            panic!("{name}: accepted");
        };
        let is_response = msg.as_ref().is_some_and(|m| !m.is_request());
        match expect {
            Dropped => {
                assert!(
                    is_response || !err.can_respond(),
                    "{name}: should be dropped, got {} {}",
                    err.status_code(),
                    err.reason()
                );
                assert!(err.response(msg.as_ref(), None).is_none(), "{name}");
            }
            Respond(code, reason) => {
                assert!(
                    err.can_respond(),
                    "{name}: not respondable ({})",
                    err.reason()
                );
                assert_eq!(err.status_code(), *code, "{name}: {}", err.reason());
                assert!(
                    err.reason().contains(reason),
                    "{name}: reason {:?} lacks {:?}",
                    err.reason(),
                    reason
                );
                let resp = err
                    .response(msg.as_ref(), Some("edgetag"))
                    .unwrap_or_else(|| panic!("{name}: no response"));
                let r = parse(resp, &Limits::default())
                    .unwrap_or_else(|e| panic!("{name}: response does not parse: {e}"));
                assert_eq!(r.status(), Some(*code), "{name}");
                assert_eq!(r.reason(), err.reason().as_bytes(), "{name}");
                let req = msg.as_ref().or(err.partial()).unwrap();
                assert_eq!(
                    r.top_via().unwrap().branch,
                    req.top_via().unwrap().branch,
                    "{name}"
                );
                assert_eq!(r.header(HeaderName::CallId), req.call_id(), "{name}");
            }
        }
    }
}

#[test]
fn base_messages_are_valid() {
    assert!(outcome(BASE, &Limits::default()).is_none());
    assert!(outcome(RESPONSE, &Limits::default()).is_none());
}
