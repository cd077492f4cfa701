//! Messages the proxy writes itself: its Via and Record-Route values, the CANCEL for a pending
//! branch (§9.1) and the ACK for a non-2xx final response (§17.1.1.3).

use crate::sip::{HeaderName, Message};
use crate::transport::Transport;
use bytes::{BufMut, Bytes, BytesMut};

/// Our Via (§16.6 step 8). `rport` asks the next hop to answer to our source port.
pub fn via(transport: Transport, host_port: &str, branch: &str) -> String {
    let t = match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
    };
    format!("SIP/2.0/{t} {host_port};branch={branch};rport")
}

/// Our Record-Route (§16.6 step 4): loose routing (`lr`), and the transport when it is not UDP
/// so that in-dialog requests come back over the same kind of transport.
pub fn record_route(transport: Transport, host_port: &str, params: &str) -> String {
    match transport {
        Transport::Udp => format!("<sip:{host_port};lr{params}>"),
        Transport::Tcp => format!("<sip:{host_port};transport=tcp;lr{params}>"),
    }
}

/// The CANCEL for a request we sent on a branch (§9.1): same Request-URI, Call-ID, From, To,
/// CSeq number and Route set, and only our top Via (same branch, so it matches the INVITE's
/// transaction downstream). `reason` becomes the Reason header (RFC 3326).
pub fn cancel(req: &Message, reason: Option<&[u8]>) -> Option<Bytes> {
    let extra: &[(&str, &[u8])] = match reason {
        Some(r) => &[("Reason", r)],
        None => &[],
    };
    derived(req, "CANCEL", None, extra)
}

/// The ACK for a non-2xx final response to an INVITE we sent (§17.1.1.3): To from the response
/// (it carries the tag), everything else from the INVITE.
pub fn ack(req: &Message, response_to: &[u8]) -> Option<Bytes> {
    derived(req, "ACK", Some(response_to), &[])
}

fn derived(
    req: &Message,
    method: &str,
    to: Option<&[u8]>,
    extra: &[(&str, &[u8])],
) -> Option<Bytes> {
    let ruri = req.request_uri()?;
    let top_via = req.values(HeaderName::Via).next()?;
    let cseq = req.cseq().ok()?;
    let mut out = BytesMut::with_capacity(req.buf().len().min(1024) + 64);
    put_line(&mut out, &[method.as_bytes(), b" ", ruri, b" SIP/2.0"]);
    put_line(&mut out, &[b"Via: ", top_via]);
    for route in req.values(HeaderName::Route) {
        put_line(&mut out, &[b"Route: ", route]);
    }
    put_line(&mut out, &[b"Max-Forwards: 70"]);
    put_line(&mut out, &[b"From: ", req.header(HeaderName::From)?]);
    put_line(
        &mut out,
        &[b"To: ", to.or_else(|| req.header(HeaderName::To))?],
    );
    put_line(&mut out, &[b"Call-ID: ", req.call_id()?]);
    put_line(
        &mut out,
        &[
            b"CSeq: ",
            cseq.seq.to_string().as_bytes(),
            b" ",
            method.as_bytes(),
        ],
    );
    for (name, value) in extra {
        put_line(&mut out, &[name.as_bytes(), b": ", value]);
    }
    put_line(&mut out, &[b"Content-Length: 0"]);
    out.put_slice(b"\r\n");
    Some(out.freeze())
}

fn put_line(out: &mut BytesMut, parts: &[&[u8]]) {
    for p in parts {
        out.put_slice(p);
    }
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Limits};

    const INVITE: &str = "INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours.1;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKcaller;received=10.0.0.1\r\n\
Route: <sip:10.0.0.9;lr>\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
Max-Forwards: 69\r\n\
From: \"Alice\" <sip:alice@a>;tag=1\r\n\
To: <sip:bob@b>\r\n\
Call-ID: c1@a\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:alice@10.0.0.1:5062>\r\n\
Content-Length: 0\r\n\r\n";

    fn msg(s: &str) -> Message {
        let limits = Limits {
            max_message_bytes: 65535,
            max_headers: 64,
        };
        parse(Bytes::copy_from_slice(s.as_bytes()), &limits).unwrap()
    }

    #[test]
    fn cancel_copies_the_branch_and_reason() {
        let c = cancel(&msg(INVITE), Some(b"SIP;cause=487")).unwrap();
        let c = msg(std::str::from_utf8(&c).unwrap());
        assert_eq!(c.request_uri().unwrap(), b"sip:bob@10.0.0.2");
        assert_eq!(c.values(HeaderName::Via).count(), 1, "only our Via");
        assert_eq!(c.top_via().unwrap().branch, Some("z9hG4bKours.1"));
        assert_eq!(c.header(HeaderName::Route).unwrap(), b"<sip:10.0.0.9;lr>");
        assert_eq!(c.header(HeaderName::CSeq).unwrap(), b"7 CANCEL");
        assert_eq!(c.header(HeaderName::Reason).unwrap(), b"SIP;cause=487");
        assert!(c.header(HeaderName::Contact).is_none());
        assert!(c.validate_request().is_ok());
    }

    #[test]
    fn ack_takes_to_from_response() {
        let a = ack(&msg(INVITE), b"<sip:bob@b>;tag=xyz").unwrap();
        let a = msg(std::str::from_utf8(&a).unwrap());
        assert_eq!(a.to().unwrap().tag(), Some("xyz"));
        assert_eq!(a.header(HeaderName::CSeq).unwrap(), b"7 ACK");
        assert!(a.validate_request().is_ok());
    }

    #[test]
    fn own_header_values() {
        assert_eq!(
            via(Transport::Tcp, "[::1]:5060", "z9hG4bKx"),
            "SIP/2.0/TCP [::1]:5060;branch=z9hG4bKx;rport"
        );
        assert_eq!(
            record_route(Transport::Tcp, "127.0.0.1:5060", ""),
            "<sip:127.0.0.1:5060;transport=tcp;lr>"
        );
        assert_eq!(
            record_route(Transport::Udp, "127.0.0.1:5060", ""),
            "<sip:127.0.0.1:5060;lr>"
        );
    }
}
