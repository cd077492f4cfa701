//! Media anchoring hooks of the proxy (issue 5): every INVITE/ACK/BYE/CANCEL/UPDATE/PRACK
//! forwarded, and every response to INVITE/UPDATE/PRACK sent upstream, passes through
//! [`MediaDialogs`]; relay commands leave as [`RelayRequest`]s for the shell, and a message
//! whose SDP waits for the relay is parked until the relay answers.

use super::context::Action;
use crate::media::{BodyAction, MediaDialogs, Peer, RelayRequest};
use crate::sip::{self, Limits, Message};
use crate::transport::Source;
use bytes::Bytes;
use std::time::Instant;

/// A message waiting for the relay's answer.
pub enum Parked {
    /// A new request: its response context was created, its branches not started yet.
    Request { ctx: u64, acts: Vec<Action> },
    /// A response (or a locally generated final) on its way upstream.
    Response { ctx: u64, act: Action },
    /// An ACK (or other stateless forward) carrying SDP (late-offer answer).
    Stateless { msg: Box<Message>, src: Source },
}

/// Ask the media dialogs about `msg`; relay commands go to `out`.
pub fn step(
    dialogs: &mut MediaDialogs,
    msg: &Message,
    sender: Peer,
    target_nated: bool,
    now: Instant,
    out: &mut Vec<RelayRequest>,
) -> BodyAction {
    let Some(ev) = crate::media::sip_event(msg, sender, target_nated) else {
        return BodyAction::Unchanged;
    };
    let step = dialogs.on_message(&ev, now);
    out.extend(step.send);
    step.body
}

/// A `multipart/*` body with an `application/sdp` part (RFC 5621): media anchoring only
/// rewrites a plain SDP body.
pub fn sdp_in_multipart(msg: &Message) -> bool {
    let multipart = msg.header(sip::HeaderName::ContentType).is_some_and(|ct| {
        ct.trim_ascii_start().len() >= 10
            && ct.trim_ascii_start()[..10].eq_ignore_ascii_case(b"multipart/")
    });
    multipart
        && msg
            .body()
            .windows(15)
            .any(|w| w.eq_ignore_ascii_case(b"application/sdp"))
}

/// `msg` with another body (same Content-Type; Content-Length fixed by the serializer).
pub fn with_body(msg: &Message, body: &[u8], limits: &Limits) -> Option<Message> {
    let mut e = sip::Edit::new(msg);
    e.set_body(None, body);
    sip::parse(e.finish(), limits).ok()
}

/// The same, for serialized bytes.
pub fn bytes_with_body(bytes: &Bytes, body: &[u8], limits: &Limits) -> Bytes {
    match sip::parse(bytes.clone(), limits) {
        Ok(m) => {
            let mut e = sip::Edit::new(&m);
            e.set_body(None, body);
            e.finish()
        }
        Err(_) => bytes.clone(),
    }
}
