//! Calls the edge can end by itself (sans-IO): for each confirmed, record-routed INVITE dialog
//! whose media it anchors, what it takes to send a BYE to each party — the way Kamailio's
//! dialog module ends a call whose rtpengine session timed out (`dlg_end_dlg`).
//!
//! A proxy is not a dialog party, so the edge keeps what each party expects of a request in
//! the dialog (RFC 3261 §12.2.1.1): the remote target (the party's Contact), the route set
//! between the edge and that party (Record-Route of the 2xx, split at the edge's own entries:
//! §16.6 step 4 puts each proxy's entry on top, so the entries above ours lie toward the
//! callee, nearest last, and those below toward the caller, nearest first), From/To as that
//! party would see them from its peer, and a CSeq above any the peer used (§12.2.1.1: CSeq
//! numbers grow; the edge sees every in-dialog request, since it record-routes, and keeps the
//! highest per direction). The BYE goes where the edge would send that party's in-dialog
//! requests anyway: back to where the INVITE came from (the caller's flow, through its NAT) or
//! to the branch that got the 2xx (the callee's binding, or the core).

use crate::sip::{HeaderName, Message, NameAddr, Uri};
use crate::transport::Dest;
use bytes::Bytes;
use std::collections::HashMap;

/// One party of a tracked call, as the edge addresses requests to it.
#[derive(Debug, Clone, PartialEq)]
struct Party {
    /// Its Contact URI: the Request-URI of requests to it.
    target: String,
    /// Its own From/To header value (URI and tag): the To of requests to it.
    header: String,
    /// Route set from the edge toward it (nearest first), `<uri>` values.
    routes: Vec<String>,
    /// Where the edge sends to it.
    dest: Dest,
    /// Highest CSeq number this party sent in the dialog (0: none yet).
    cseq: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    call_id: String,
    caller_tag: String,
    callee_tag: String,
    caller: Party,
    callee: Party,
}

/// Which party a BYE goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    Caller,
    Callee,
}

impl Call {
    pub fn dest(&self, to: Toward) -> Dest {
        match to {
            Toward::Caller => self.caller.dest,
            Toward::Callee => self.callee.dest,
        }
    }

    /// The BYE to party `to`, as its peer would send it (`via`: the edge's Via value;
    /// `reason`: a Reason header value, RFC 3326).
    pub fn bye(&self, to: Toward, via: &str, reason: &str) -> Bytes {
        let (dst, src) = match to {
            Toward::Caller => (&self.caller, &self.callee),
            Toward::Callee => (&self.callee, &self.caller),
        };
        let mut m = format!(
            "BYE {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n",
            dst.target
        );
        for r in &dst.routes {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        m.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nReason: {reason}\r\n\
Content-Length: 0\r\n\r\n",
            src.header,
            dst.header,
            self.call_id,
            src.cseq.saturating_add(1),
        ));
        Bytes::from(m)
    }
}

/// The tracked calls, by Call-ID (then the caller's tag).
#[derive(Default)]
pub struct Calls {
    by_id: HashMap<String, Vec<Call>>,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.by_id.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A 2xx to an initial INVITE is on its way to the caller: track the dialog. `invite` as
    /// the edge received it, `to_caller` where it came from, `to_callee` where the branch that
    /// answered went, `ours`: is this Record-Route URI the edge's own. False when the messages
    /// lack what a BYE needs (then the call is simply not tracked).
    pub fn confirmed(
        &mut self,
        invite: &Message,
        ok: &Message,
        to_caller: Dest,
        to_callee: Dest,
        ours: impl Fn(&Uri<'_>) -> bool,
    ) -> bool {
        let Some(call) = build(invite, ok, to_caller, to_callee, ours) else {
            return false;
        };
        let calls = self.by_id.entry(call.call_id.clone()).or_default();
        // A retransmitted 2xx, or another fork's 2xx: one record per caller tag and callee tag.
        if !calls
            .iter()
            .any(|c| c.caller_tag == call.caller_tag && c.callee_tag == call.callee_tag)
        {
            calls.push(call);
        }
        true
    }

    /// An in-dialog request passes the edge: its CSeq raises its sender's; a BYE ends the
    /// tracking.
    pub fn on_request(&mut self, msg: &Message) {
        let Some(calls) = msg
            .call_id()
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| self.by_id.get_mut(c))
        else {
            return;
        };
        let (Ok(from), Ok(to), Ok(cseq)) = (msg.from(), msg.to(), msg.cseq()) else {
            return;
        };
        let (Some(ft), Some(tt)) = (from.tag(), to.tag()) else {
            return;
        };
        let Some(i) = calls.iter().position(|c| {
            (c.caller_tag == ft && c.callee_tag == tt) || (c.caller_tag == tt && c.callee_tag == ft)
        }) else {
            return;
        };
        if msg.method() == Some(&crate::sip::Method::Bye) {
            calls.remove(i);
            if calls.is_empty() {
                let id = String::from_utf8_lossy(msg.call_id().unwrap_or_default()).into_owned();
                self.by_id.remove(&id);
            }
            return;
        }
        let c = &mut calls[i];
        let party = if c.caller_tag == ft {
            &mut c.caller
        } else {
            &mut c.callee
        };
        party.cseq = party.cseq.max(cseq.seq);
    }

    /// Stop tracking every dialog of call `call_id` with caller tag `caller_tag` and return
    /// them (several after a fork that answered twice).
    pub fn take(&mut self, call_id: &str, caller_tag: &str) -> Vec<Call> {
        let Some(calls) = self.by_id.get_mut(call_id) else {
            return Vec::new();
        };
        let (taken, kept): (Vec<Call>, Vec<Call>) = std::mem::take(calls)
            .into_iter()
            .partition(|c| c.caller_tag == caller_tag);
        if kept.is_empty() {
            self.by_id.remove(call_id);
        } else {
            *calls = kept;
        }
        taken
    }
}

fn build(
    invite: &Message,
    ok: &Message,
    to_caller: Dest,
    to_callee: Dest,
    ours: impl Fn(&Uri<'_>) -> bool,
) -> Option<Call> {
    let call_id = std::str::from_utf8(invite.call_id()?).ok()?.to_owned();
    let from = invite.from().ok()?;
    let to = ok.to().ok()?;
    let caller_tag = from.tag()?.to_owned();
    let callee_tag = to.tag()?.to_owned();
    let contact = |m: &Message| -> Option<String> {
        let first = m.values(HeaderName::Contact).next()?;
        let na = NameAddr::parse(first).ok()?;
        Some(String::from_utf8_lossy(na.uri_raw).into_owned())
    };
    // Record-Route of the 2xx, one entry per element, top first.
    let rr: Vec<&[u8]> = ok.values(HeaderName::RecordRoute).collect();
    let is_ours = |e: &&[u8]| {
        NameAddr::parse(e)
            .ok()
            .and_then(|na| na.uri().ok())
            .is_some_and(|u| ours(&u))
    };
    let first_ours = rr.iter().position(&is_ours);
    let last_ours = rr.iter().rposition(is_ours);
    let text = |e: &&[u8]| String::from_utf8_lossy(e).trim().to_owned();
    let (toward_callee, toward_caller) = match (first_ours, last_ours) {
        (Some(f), Some(l)) => (
            rr[..f].iter().rev().map(text).collect(),
            rr[l + 1..].iter().map(text).collect(),
        ),
        // No Record-Route at all: a callee that ignored ours (§12.1.1 says to copy it; SIPp's
        // built-in uas does not). Nobody else routes this dialog either: the edge's own
        // next hops are the parties themselves.
        _ if rr.is_empty() => (Vec::new(), Vec::new()),
        // Other proxies recorded their routes but the edge's is gone: the route set is not
        // ours to guess, and the edge will not see the in-dialog requests.
        _ => return None,
    };
    let header = |na: &NameAddr<'_>| {
        let uri = String::from_utf8_lossy(na.uri_raw);
        format!("<{uri}>{}", na.params)
    };
    Some(Call {
        call_id,
        caller: Party {
            target: contact(invite)?,
            header: header(&from),
            routes: toward_caller,
            dest: to_caller,
            cseq: invite.cseq().ok()?.seq,
        },
        callee: Party {
            target: contact(ok)?,
            header: header(&to),
            routes: toward_callee,
            dest: to_callee,
            cseq: 0,
        },
        caller_tag,
        callee_tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Host, Limits};
    use crate::transport::Transport;

    const LIMITS: Limits = Limits {
        max_message_bytes: 65_535,
        max_headers: 64,
    };

    fn dest(s: &str) -> Dest {
        Dest {
            transport: Transport::Udp,
            addr: s.parse().unwrap(),
            flow: None,
        }
    }

    fn msg(s: &str) -> Message {
        let s = s.replace("\r\n", "\n").replace('\n', "\r\n");
        parse(Bytes::from(s), &LIMITS).unwrap()
    }

    fn ours(u: &Uri<'_>) -> bool {
        matches!(u.host, Host::V4(a) if a.to_string() == "192.0.2.1")
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKa
From: \"Alice\" <sip:alice@example.com>;tag=at
To: <sip:bob@example.com>
Call-ID: c1@x
CSeq: 7 INVITE
Contact: <sip:alice@10.0.0.9:5060>
Max-Forwards: 70
Content-Length: 0

";

    // Core proxy P2 record-routed above the edge; P1 (toward the caller) below it.
    const OK: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKa
Record-Route: <sip:p2.example.com;lr>, <sip:192.0.2.1:5060;lr;etk=x>
Record-Route: <sip:p1.example.com;lr>
From: \"Alice\" <sip:alice@example.com>;tag=at
To: <sip:bob@example.com>;tag=bt
Call-ID: c1@x
CSeq: 7 INVITE
Contact: <sip:bob@203.0.113.7:5062;ob>
Content-Length: 0

";

    fn tracked() -> Calls {
        let mut calls = Calls::default();
        assert!(calls.confirmed(
            &msg(INVITE),
            &msg(OK),
            dest("198.51.100.1:40000"),
            dest("10.0.0.5:5060"),
            ours
        ));
        calls
    }

    #[test]
    fn bye_to_each_party_as_its_peer_would_send_it() {
        let mut calls = tracked();
        assert_eq!(calls.len(), 1);
        let call = calls.take("c1@x", "at").pop().unwrap();
        assert!(calls.is_empty());
        let to_callee = msg(&String::from_utf8_lossy(&call.bye(
            Toward::Callee,
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKe1",
            "Q.850;cause=41",
        )));
        assert_eq!(
            to_callee.request_uri().unwrap(),
            b"sip:bob@203.0.113.7:5062;ob"
        );
        assert_eq!(
            to_callee.values(HeaderName::Route).collect::<Vec<_>>(),
            vec![&b"<sip:p2.example.com;lr>"[..]]
        );
        assert_eq!(to_callee.from().unwrap().tag(), Some("at"));
        assert_eq!(to_callee.to().unwrap().tag(), Some("bt"));
        assert_eq!(
            to_callee.cseq().unwrap().seq,
            8,
            "above the caller's INVITE"
        );
        assert_eq!(to_callee.header(HeaderName::CallId), Some(&b"c1@x"[..]));
        assert_eq!(call.dest(Toward::Callee), dest("10.0.0.5:5060"));

        let to_caller = msg(&String::from_utf8_lossy(&call.bye(
            Toward::Caller,
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKe2",
            "Q.850;cause=41",
        )));
        assert_eq!(to_caller.request_uri().unwrap(), b"sip:alice@10.0.0.9:5060");
        assert_eq!(
            to_caller.values(HeaderName::Route).collect::<Vec<_>>(),
            vec![&b"<sip:p1.example.com;lr>"[..]]
        );
        assert_eq!(to_caller.from().unwrap().tag(), Some("bt"));
        assert_eq!(to_caller.to().unwrap().tag(), Some("at"));
        assert_eq!(to_caller.cseq().unwrap().seq, 1);
        assert_eq!(call.dest(Toward::Caller), dest("198.51.100.1:40000"));
    }

    #[test]
    fn in_dialog_requests_raise_cseq_and_bye_stops_tracking() {
        let mut calls = tracked();
        let req = |from: &str, to: &str, method: &str, seq: u32| {
            msg(&format!(
                "{method} sip:x@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKr\n\
From: <sip:a@example.com>;tag={from}\nTo: <sip:b@example.com>;tag={to}\nCall-ID: c1@x\n\
CSeq: {seq} {method}\nContent-Length: 0\n\n"
            ))
        };
        // The callee re-INVITEs with CSeq 20: a BYE to the caller must be above it.
        calls.on_request(&req("bt", "at", "INVITE", 20));
        let c = calls.by_id["c1@x"][0].clone();
        let bye = c.bye(Toward::Caller, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKq", "x");
        assert_eq!(msg(&String::from_utf8_lossy(&bye)).cseq().unwrap().seq, 21);
        // A BYE from the caller ends it.
        calls.on_request(&req("at", "bt", "BYE", 9));
        assert!(calls.is_empty());
        assert!(calls.take("c1@x", "at").is_empty());
    }

    #[test]
    fn a_2xx_without_any_record_route_is_tracked_with_empty_route_sets() {
        let mut calls = Calls::default();
        let ok: String = OK
            .lines()
            .filter(|l| !l.starts_with("Record-Route"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(calls.confirmed(
            &msg(INVITE),
            &msg(&ok),
            dest("198.51.100.1:40000"),
            dest("10.0.0.5:5060"),
            ours
        ));
        let call = calls.take("c1@x", "at").pop().unwrap();
        let bye = call.bye(Toward::Callee, "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKn", "x");
        assert!(msg(&String::from_utf8_lossy(&bye))
            .header(HeaderName::Route)
            .is_none());
    }

    #[test]
    fn a_dialog_the_edge_did_not_record_route_is_not_tracked() {
        let mut calls = Calls::default();
        let ok = OK.replace("<sip:192.0.2.1:5060;lr;etk=x>", "<sip:p3.example.com;lr>");
        assert!(!calls.confirmed(
            &msg(INVITE),
            &msg(&ok),
            dest("198.51.100.1:40000"),
            dest("10.0.0.5:5060"),
            ours
        ));
        assert!(calls.is_empty());
    }
}
