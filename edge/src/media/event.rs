//! Building a [`SipEvent`] from a parsed [`Message`]: the fields media anchoring reads.

use super::dialog::{SipEvent, SipKind};
use super::policy::Peer;
use crate::sip::{HeaderName, Message, Method};

/// The [`SipEvent`] of `msg`, or `None` when media anchoring has nothing to do with it: a
/// method outside INVITE/ACK/BYE/CANCEL/UPDATE/PRACK (requests) or INVITE/UPDATE/PRACK (CSeq of
/// responses), or no Call-ID / From tag / CSeq. `sdp` is the body when Content-Type is
/// `application/sdp` (RFC 3264 §5; SDP inside multipart bodies is not looked at).
pub fn sip_event(msg: &Message, sender: Peer, target_nated: bool) -> Option<SipEvent<'_>> {
    let kind = match msg.status() {
        None => SipKind::Request(msg.method()?.clone()),
        Some(status) => SipKind::Response {
            status,
            method: msg.cseq().ok()?.method,
        },
    };
    let relevant = match &kind {
        SipKind::Request(m) => matches!(
            m,
            Method::Invite
                | Method::Ack
                | Method::Bye
                | Method::Cancel
                | Method::Update
                | Method::Prack
        ),
        SipKind::Response { method, .. } => {
            matches!(method, Method::Invite | Method::Update | Method::Prack)
        }
    };
    if !relevant {
        return None;
    }
    let call_id = std::str::from_utf8(msg.call_id()?).ok()?.trim();
    let from = msg.from().ok()?;
    let from_tag = from.tag()?;
    let to_tag = msg.to().ok().and_then(|t| t.tag());
    let is_sdp = msg.header(HeaderName::ContentType).is_some_and(|ct| {
        let mime = ct.split(|b| *b == b';').next().unwrap_or_default();
        mime.trim_ascii().eq_ignore_ascii_case(b"application/sdp")
    });
    let body = msg.body();
    Some(SipEvent {
        call_id,
        from_tag,
        to_tag,
        kind,
        sdp: (is_sdp && !body.is_empty()).then_some(body),
        sender,
        target_nated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Limits};
    use bytes::Bytes;

    fn peer() -> Peer {
        Peer {
            source: "192.0.2.1".parse().unwrap(),
            nated: true,
            access: true,
        }
    }

    fn msg(text: &str) -> Message {
        parse(Bytes::copy_from_slice(text.as_bytes()), &Limits::default()).unwrap()
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    #[test]
    fn invite_with_sdp() {
        let text = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc@10.0.0.5\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Type: Application/SDP; charset=x\r\n\
Content-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        );
        let m = msg(&text);
        let ev = sip_event(&m, peer(), false).unwrap();
        assert_eq!(ev.call_id, "abc@10.0.0.5");
        assert_eq!((ev.from_tag, ev.to_tag), ("a1", None));
        assert_eq!(ev.kind, SipKind::Request(Method::Invite));
        assert_eq!(ev.sdp, Some(SDP.as_bytes()));
        assert!(ev.sender.nated);
    }

    #[test]
    fn response_uses_cseq_method_and_other_bodies_are_not_sdp() {
        let m = msg(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b2\r\nCall-ID: abc\r\n\
CSeq: 2 UPDATE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        );
        let ev = sip_event(&m, peer(), false).unwrap();
        assert_eq!(
            ev.kind,
            SipKind::Response {
                status: 200,
                method: Method::Update
            }
        );
        assert_eq!(ev.to_tag, Some("b2"));
        assert_eq!(ev.sdp, None);
    }

    #[test]
    fn irrelevant_or_tagless_messages() {
        let options = msg(
            "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: abc\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(sip_event(&options, peer(), false).is_none());
        let no_tag = msg(
            "BYE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>\r\nTo: <sip:bob@example.com>;tag=b\r\nCall-ID: abc\r\n\
CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(sip_event(&no_tag, peer(), false).is_none());
    }
}
