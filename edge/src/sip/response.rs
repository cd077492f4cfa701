//! Building a response to a request (RFC 3261 §8.2.6.2): the Vias in order, From, To (with
//! a tag added when it had none), Call-ID and CSeq are copied; nothing else.

use bytes::{BufMut, Bytes, BytesMut};

use super::header::HeaderName;
use super::message::Message;
use super::name_addr::NameAddr;

/// The response `SIP/2.0 <code> <reason>` to `req`, with `extra` fields (e.g. `("Server", ..)`,
/// `("Retry-After", ..)`) added after the copied ones, and `Content-Length: 0`.
/// Control characters in `reason` are replaced by spaces so a reason cannot inject lines.
pub fn response_to(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &[u8])],
) -> Bytes {
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(b"SIP/2.0 ");
    let code = code.clamp(100, 699);
    out.put_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    for b in reason.bytes() {
        out.put_u8(if b < 0x20 || b == 0x7f { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
    for h in req.headers() {
        let name = match h.name {
            HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq => h.name.as_str(),
            _ => continue,
        };
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(h.value);
        if h.name == HeaderName::To {
            if let Some(tag) = to_tag {
                let has_tag = NameAddr::parse(h.value).is_ok_and(|n| n.tag().is_some());
                if !has_tag {
                    out.put_slice(b";tag=");
                    out.put_slice(tag.as_bytes());
                }
            }
        }
        out.put_slice(b"\r\n");
    }
    for (name, value) in extra {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    out.freeze()
}
