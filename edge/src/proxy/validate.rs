//! §16.3 request validation and the early rejects the edge answers statelessly (issue 8):
//! Max-Forwards, loops, requests for the edge itself, and the one-datagram replies.

use super::*;

impl Proxy {
    /// A response generated here, sent statelessly to the request's source.
    pub(super) fn reply_stateless(&mut self, req: &Message, src: &Source, code: u16, reason: &str) {
        self.reply_stateless_with(req, src, code, reason, &[]);
    }

    pub(super) fn reply_stateless_with(
        &mut self,
        req: &Message,
        src: &Source,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        log_reject(req, code, reason);
        let tag = self.local_tag();
        let resp = sip::response_to(req, code, reason, Some(&tag), extra);
        self.metrics.response(code, "out");
        self.send(Dest::back_to(src), resp);
    }

    /// §16.3 checks shared by stateful and stateless forwarding. Returns the error response.
    pub(super) fn check(&self, msg: &Message, loop_hash: u64) -> Option<(u16, &'static str)> {
        match msg.max_forwards() {
            Ok(Some(0)) => return Some((483, "Too Many Hops")),
            Err(_) => return Some((400, "Bad Request (invalid Max-Forwards)")),
            _ => {}
        }
        // §16.3 step 4: a Via of ours carrying this request's hash means a loop. Only Vias
        // that mention one of our sent-by strings are parsed.
        let mentions_us = |raw: &[u8]| {
            self.sent_by
                .iter()
                .any(|s| memchr::memmem::find(raw, s.as_bytes()).is_some())
        };
        let looped = msg
            .values(HeaderName::Via)
            .filter(|raw| mentions_us(raw))
            .filter_map(|raw| sip::Via::parse(raw).ok())
            .any(|v| {
                v.branch.is_some_and(|b| branch::is_loop(b, loop_hash))
                    && Host::parse(v.host)
                        .is_some_and(|h| self.locals.is_us(&h, v.sent_by_port_or_default()))
            });
        if looped {
            return Some((482, "Loop Detected"));
        }
        None
    }

    /// OPTIONS (keepalive pings) addressed to the edge itself: Request-URI is ours, no user part.
    pub(super) fn is_for_us(&self, msg: &Message) -> bool {
        msg.header(HeaderName::Route).is_none()
            && msg
                .request_uri()
                .and_then(|r| Uri::parse(r).ok())
                .is_some_and(|u| u.user.is_none() && self.locals.is_us_uri(&u))
    }
}

/// Every request the edge answers with an error itself is logged at info with its Call-ID, so
/// an operator can follow a call (`grep CALL-ID`) without a capture.
pub(super) fn log_reject(req: &Message, code: u16, reason: &str) {
    tracing::info!(
        call_id = %String::from_utf8_lossy(req.call_id().unwrap_or_default()),
        method = req.method().map(|m| m.as_str()).unwrap_or(""),
        ruri = %String::from_utf8_lossy(req.request_uri().unwrap_or_default()),
        code,
        reason,
        "rejected locally"
    );
}

/// §16.6 step 8 fields.
pub(super) fn loop_hash(msg: &Message) -> u64 {
    let from_tag = msg.from().ok().and_then(|f| f.tag()).unwrap_or("");
    let to_tag = msg.to().ok().and_then(|t| t.tag()).unwrap_or("");
    let fixed = [
        msg.request_uri().unwrap_or_default(),
        msg.call_id().unwrap_or_default(),
        from_tag.as_bytes(),
        to_tag.as_bytes(),
        msg.header(HeaderName::CSeq).unwrap_or_default(),
        msg.header(HeaderName::ProxyRequire).unwrap_or_default(),
    ];
    branch::loop_hash(fixed.into_iter().chain(msg.values(HeaderName::Route)))
}
