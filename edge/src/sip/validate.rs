//! Request validation before proxying (RFC 3261 §8.2.1–§8.2.2, §16.3 steps 1–2).

use super::error::{ParseError, ParseErrorKind};
use super::header::HeaderName;
use super::lex::trim;
use super::message::Message;
use super::uri::Uri;

impl Message {
    /// Checks what a proxy needs before it can act on a request: SIP/2.0 (else 505), a
    /// Request-URI that parses (416 for a foreign scheme), and the mandatory header fields
    /// present once and well-formed: Via (all values), From, To, Call-ID, CSeq whose method
    /// equals the request method, Max-Forwards numeric if present. (Content-Length was checked
    /// by the parse.) The error's [`ParseError::can_respond`] tells whether to answer.
    pub fn validate_request(&self) -> Result<(), ParseError> {
        self.check_request().map_err(|e| {
            let respondable = self.respondable();
            e.with_respondable(respondable)
        })
    }

    fn check_request(&self) -> Result<(), ParseError> {
        let method = self
            .method()
            .ok_or(ParseError::start_line("not a request"))?;
        // SIP-Version: "SIP" is case-insensitive (§7.1, §25.1).
        if !self.version().eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::new(
                ParseErrorKind::Version,
                "Version Not Supported",
            ));
        }
        let ruri = self.request_uri().unwrap_or(&[]);
        Uri::parse(ruri).map_err(|e| match e.kind {
            ParseErrorKind::UnsupportedScheme => e,
            _ => ParseError::new(ParseErrorKind::Uri, "Bad Request (invalid Request-URI)"),
        })?;
        let mut any_via = false;
        for v in self.vias() {
            v?;
            any_via = true;
        }
        if !any_via {
            return Err(ParseError::missing("Bad Request (missing Via)"));
        }
        // §7.3.1: these may not appear more than once.
        let counts = self.count_fields([
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ]);
        let dup = [
            "Bad Request (duplicate From)",
            "Bad Request (duplicate To)",
            "Bad Request (duplicate Call-ID)",
            "Bad Request (duplicate CSeq)",
        ];
        if let Some((_, reason)) = counts.iter().zip(dup).find(|(c, _)| **c > 1) {
            return Err(ParseError::bad(reason));
        }
        self.from()?;
        self.to()?;
        let call_id = self
            .call_id()
            .ok_or(ParseError::missing("Bad Request (missing Call-ID)"))?;
        // callid = word [ "@" word ]: no white space, printable ASCII (§25.1).
        if call_id.is_empty() || !trim(call_id).iter().all(|&b| b > 0x20 && b < 0x7f) {
            return Err(ParseError::bad("Bad Request (invalid Call-ID)"));
        }
        let cseq = self.cseq()?;
        if &cseq.method != method {
            return Err(ParseError::bad("Bad Request (CSeq method mismatch)"));
        }
        self.max_forwards()?;
        // A Contact the edge cannot parse is answered here, not forwarded: the core would
        // store or route on what the edge could not read (RFC 4475 §3.1.2.x class).
        for c in self.values(HeaderName::Contact) {
            if trim(c) == b"*" {
                continue;
            }
            let na = super::NameAddr::parse(c)
                .map_err(|_| ParseError::bad("Bad Request (invalid Contact)"))?;
            na.uri()
                .map_err(|_| ParseError::bad("Bad Request (invalid Contact URI)"))?;
        }
        // Route decides where the request goes (§16.4): a value the edge cannot read would be
        // followed blindly (a strict router's last Route becomes the Request-URI).
        for r in self.values(HeaderName::Route) {
            super::NameAddr::parse(r)
                .ok()
                .and_then(|na| na.uri().ok())
                .ok_or(ParseError::bad("Bad Request (invalid Route)"))?;
        }
        Ok(())
    }

    /// The same checks for a response received from downstream (§18.1.2): Via, From, To,
    /// Call-ID and CSeq present and parsable. A failing response is dropped.
    pub fn validate_response(&self) -> Result<(), ParseError> {
        if self.is_request() {
            return Err(ParseError::start_line("not a response"));
        }
        self.top_via()?;
        self.from()?;
        self.to()?;
        self.call_id()
            .filter(|c| !c.is_empty())
            .ok_or(ParseError::missing("Bad Request (missing Call-ID)"))?;
        self.cseq()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::sip::{parse, Limits};
    use bytes::Bytes;

    /// Fuzz finding (sip_message): a Route whose URI does not parse was accepted, and as the
    /// strict router's last Route it became the Request-URI of the forwarded request.
    #[test]
    fn fuzz_route_with_unparsable_uri_is_rejected() {
        let req = |route: &str| {
            format!(
                "INVITE sip:127.0.0.1:5060;lr SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKs\r\n\
Route: <sip:next.example.com;lr>, {route}\r\nFrom: <sip:c@example.com>;tag=c\r\n\
To: <sip:b@example.com>;tag=b\r\nCall-ID: s@c\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let check = |route: &str| {
            parse(Bytes::from(req(route)), &Limits::default())
                .expect("parses")
                .validate_request()
        };
        let e = check("<sip\u{19f}ob@10.1.1.1:5062>").unwrap_err();
        assert_eq!(
            (e.status_code(), e.reason()),
            (400, "Bad Request (invalid Route)")
        );
        assert!(e.can_respond());
        assert!(check("<sip:bob@10.1.1.1:5062>").is_ok());
        assert!(check("garbage <").is_err());
    }
}
