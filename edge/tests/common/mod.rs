//! Shared by the media integration tests (`edge/tests/media_rtpengine.rs` and, by `#[path]`,
//! `tests/tests/media_client.rs`): one SIP event through [`MediaDialogs`] and a real
//! relay (via [`RelayHandle`]), until every relay command it caused has been answered.

use edge::media::{
    BodyAction, Completion, MediaDialogs, Peer, RelayHandle, RelayRequest, SipEvent, SipKind,
};

/// Sends `send` (and whatever the replies cause) to the relay; returns the completions.
pub async fn drive(
    d: &mut MediaDialogs,
    h: &RelayHandle,
    mut send: Vec<RelayRequest>,
) -> Vec<Completion> {
    let mut done = Vec::new();
    while !send.is_empty() {
        let mut next = Vec::new();
        for r in send {
            let result = h.command(r.command, r.target).await;
            let step = d.on_relay_reply(r.id, result, std::time::Instant::now());
            next.extend(step.send);
            done.extend(step.done);
        }
        send = next;
    }
    done
}

/// One message from 127.0.0.1 (not NATed): whether its body was held for the relay, and the
/// completions of everything it sent.
pub async fn message(
    d: &mut MediaDialogs,
    h: &RelayHandle,
    call: &str,
    (from, to): (&str, Option<&str>),
    kind: SipKind,
    sdp: Option<&[u8]>,
) -> (bool, Vec<Completion>) {
    let ev = SipEvent {
        call_id: call,
        from_tag: from,
        to_tag: to,
        kind,
        sdp,
        sender: Peer {
            source: "127.0.0.1".parse().unwrap(),
            nated: false,
            access: false,
        },
        target_nated: false,
    };
    let step = d.on_message(&ev, std::time::Instant::now());
    let held = matches!(step.body, BodyAction::Hold(_));
    (held, drive(d, h, step.send).await)
}
