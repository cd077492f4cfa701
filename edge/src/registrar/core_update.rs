//! REGISTERs the edge itself sends to the core, when no device request is there to carry the
//! change: a binding expired locally or was removed after failed keepalives, and the mode says
//! the core must hear about it (contact throttling: that contact; AoR throttling: the AoR's
//! contact once its last device is gone). The core cannot challenge the edge's own REGISTERs
//! usefully (the edge has no credentials), so the core must trust the edge's address for them;
//! if it challenges, the core binding simply runs out at its own expiry.

use bytes::{BufMut, Bytes, BytesMut};

/// A REGISTER to send to the core on the edge's own initiative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreUpdate {
    /// The AoR (`sip:user@domain`): To, From and (its domain) the Request-URI.
    pub aor: String,
    /// The core contact to update (`sip:<token>@<edge>`).
    pub contact: String,
    /// 0 removes the core binding.
    pub expires: u32,
    /// A fresh Call-ID (RFC 3261 §10.3 step 7: another Call-ID with expires 0 still removes).
    pub call_id: String,
}

impl CoreUpdate {
    /// The request bytes with the caller's Via (`SIP/2.0/UDP host:port;branch=z9hG4bK...`)
    /// and From tag. The proxy sends it in a client transaction toward the core.
    pub fn request(&self, via: &str, from_tag: &str) -> Bytes {
        let domain = super::contact::aor_domain(&self.aor);
        let mut b = BytesMut::with_capacity(512);
        let lines: [&[&str]; 9] = [
            &["REGISTER sip:", domain, " SIP/2.0"],
            &["Via: ", via],
            &["Max-Forwards: 70"],
            &["From: <", &self.aor, ">;tag=", from_tag],
            &["To: <", &self.aor, ">"],
            &["Call-ID: ", &self.call_id],
            &["CSeq: 1 REGISTER"],
            &[
                "Contact: <",
                &self.contact,
                ">;expires=",
                &self.expires.to_string(),
            ],
            &["Content-Length: 0"],
        ];
        for parts in lines {
            for p in parts {
                b.put_slice(p.as_bytes());
            }
            b.put_slice(b"\r\n");
        }
        b.put_slice(b"\r\n");
        b.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, HeaderName, Limits};

    #[test]
    fn builds_a_parseable_register() {
        let u = CoreUpdate {
            aor: "sip:alice@d.example".into(),
            contact: "sip:tok@10.0.0.1:5060".into(),
            expires: 0,
            call_id: "x1".into(),
        };
        let m = parse(
            u.request("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa", "t"),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(m.request_uri(), Some(&b"sip:d.example"[..]));
        assert_eq!(
            m.header(HeaderName::Contact),
            Some(&b"<sip:tok@10.0.0.1:5060>;expires=0"[..])
        );
        assert_eq!(m.to().unwrap().uri_raw, b"sip:alice@d.example");
    }
}
