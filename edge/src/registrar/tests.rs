//! The mid-registrar driven through simulated REGISTER exchanges with a simulated core: no
//! sockets, time injected.

use super::contact::{register_contacts, Contacts};
use super::mode::{PendingId, RegisterAction, Registrar, ResponseAction, Rewrite};
use super::RegistrarMetrics;
use crate::sip::{self, response_to, HeaderName, Limits, Message};
use crate::transport::{Source, Transport};
use bytes::Bytes;
use config::{InsertionMode, RegistrarConfig, RegistrarMode};
use std::time::{Duration, Instant};

const EDGE: &str = "10.0.0.1:5060";
const PHONE_A: &str = "203.0.113.10:40000";
const PHONE_B: &str = "203.0.113.11:40001";
const AOR: &str = "sip:alice@d.example";

fn parse(b: Bytes) -> Message {
    sip::parse(b, &Limits::default()).expect("test message parses")
}

fn src(remote: &str) -> Source {
    Source {
        transport: Transport::Udp,
        remote: remote.parse().unwrap(),
        local: "198.51.100.1:5060".parse().unwrap(),
        flow: None,
    }
}

/// A REGISTER for alice from `contact` with `extra` header lines.
fn register(call_id: &str, cseq: u32, contact: &str, extra: &str) -> Message {
    let contact = if contact.is_empty() {
        String::new()
    } else {
        format!("Contact: {contact}\r\n")
    };
    parse(Bytes::from(format!(
        "REGISTER sip:d.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bK{cseq}{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@d.example>;tag=f1\r\nTo: <sip:alice@d.example>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{contact}{extra}Content-Length: 0\r\n\r\n"
    )))
}

struct H {
    r: Registrar,
    now: Instant,
}

impl H {
    fn new(mode: RegistrarMode) -> Self {
        Self::with(|c| c.mode = mode)
    }

    fn with(f: impl FnOnce(&mut RegistrarConfig)) -> Self {
        let mut cfg = RegistrarConfig {
            expires_deviation_percent: 0,
            ..RegistrarConfig::default()
        };
        f(&mut cfg);
        H {
            r: Registrar::new(&cfg, EDGE.into(), 7, RegistrarMetrics::unregistered()),
            now: Instant::now(),
        }
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    fn reg(&mut self, req: &Message, from: &str) -> RegisterAction {
        let action = self.r.on_register(req, src(from), self.now);
        if matches!(action, RegisterAction::Forward { .. }) {
            // As the proxy does once the request has left for the core.
            self.r.sent_to_core();
        }
        action
    }

    /// Expects a Forward; returns its id and the request the core would receive.
    fn forwarded(&mut self, req: &Message, from: &str) -> (PendingId, Message) {
        match self.reg(req, from) {
            RegisterAction::Forward { id, rewrite } => (id, parse(rewrite.to_bytes(req))),
            other => panic!("expected Forward, got {other:?}"),
        }
    }

    /// Expects a local answer; returns it parsed.
    fn replied(&mut self, req: &Message, from: &str) -> Message {
        match self.reg(req, from) {
            RegisterAction::Reply { status, bytes } => {
                let m = parse(bytes);
                assert_eq!(m.status(), Some(status));
                m
            }
            other => panic!("expected Reply, got {other:?}"),
        }
    }

    /// The core answers `code`; a 2xx echoes the request's Contacts (as a registrar would list
    /// the bindings it holds).
    fn core(&mut self, id: PendingId, fwd: &Message, code: u16) -> ResponseAction {
        let contacts: Vec<Vec<u8>> = fwd
            .values(HeaderName::Contact)
            .map(<[u8]>::to_vec)
            .collect();
        let extra: Vec<(&str, &[u8])> = if (200..300).contains(&code) {
            contacts.iter().map(|c| ("Contact", c.as_slice())).collect()
        } else {
            vec![]
        };
        let resp = parse(response_to(fwd, code, "x", Some("core"), &extra));
        self.r.on_core_response(id, &resp, self.now)
    }

    /// A full register → core 200 exchange; returns the forwarded request.
    fn register_ok(&mut self, req: &Message, from: &str) -> Message {
        let (id, fwd) = self.forwarded(req, from);
        let a = self.core(id, &fwd, 200);
        assert!(matches!(a, ResponseAction::Replace(_)), "{a:?}");
        fwd
    }

    fn bindings(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .r
            .location()
            .get(AOR)
            .into_iter()
            .map(|b| b.contact)
            .collect();
        v.sort();
        v
    }
}

fn contacts_of(m: &Message) -> Vec<String> {
    m.values(HeaderName::Contact)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

const CA: &str = "<sip:alice@192.168.1.5:5060>";
const CB: &str = "<sip:alice@192.168.7.7:5062>";

#[test]
fn mirror_forwards_every_register_and_mirrors_core_expires() {
    let mut h = H::new(RegistrarMode::Mirror);
    let req = register("c1", 1, &format!("{CA};expires=600"), "");
    let (id, fwd) = h.forwarded(&req, PHONE_A);
    let sent = contacts_of(&fwd);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("<sip:r") && sent[0].ends_with("@10.0.0.1:5060>;expires=600"),
        "{sent:?}"
    );
    assert!(
        h.bindings().is_empty(),
        "nothing saved before the core's 2xx"
    );
    // The core grants less than asked; the local binding mirrors it.
    let token_contact = sent[0].split(';').next().unwrap().to_string();
    let granted = format!("{token_contact};expires=300");
    let resp = parse(response_to(
        &fwd,
        200,
        "OK",
        Some("t"),
        &[("Contact", granted.as_bytes())],
    ));
    let ResponseAction::Replace(bytes) = h.r.on_core_response(id, &resp, h.now) else {
        panic!("2xx is rewritten")
    };
    let to_phone = parse(bytes);
    assert_eq!(contacts_of(&to_phone), vec![format!("{CA};expires=300")]);
    let b = &h.r.location().get(AOR)[0];
    assert_eq!(b.remaining(h.now), 300);
    assert_eq!(b.source, PHONE_A.parse().unwrap());
    assert!(b.nated);
    // A refresh on the same flow still goes to the core in mirror mode, same token.
    let (_, fwd2) = h.forwarded(&register("c1", 2, CA, "Expires: 600\r\n"), PHONE_A);
    assert!(contacts_of(&fwd2)[0].starts_with(&token_contact));
    assert_eq!(fwd2.header(HeaderName::Expires), None);
    assert_eq!(h.r.metrics().forwarded.get(), 2);
    assert_eq!(h.r.metrics().absorbed.get(), 0);
}

#[test]
fn mirror_path_insertion_keeps_contacts() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Mirror;
        c.insertion_mode = InsertionMode::Path;
    });
    let req = register("c1", 1, CA, "");
    let (id, fwd) = h.forwarded(&req, PHONE_A);
    assert_eq!(contacts_of(&fwd), vec![CA.to_string()]);
    let path = String::from_utf8_lossy(fwd.header(HeaderName::Path).unwrap()).into_owned();
    assert!(
        path.starts_with("<sip:r") && path.ends_with("@10.0.0.1:5060;lr>"),
        "{path}"
    );
    h.core(id, &fwd, 200);
    let b = &h.r.location().get(AOR)[0];
    assert_eq!(b.core_contact, "sip:alice@192.168.1.5:5060");
    assert!(path.contains(&b.token));
    assert_eq!(b.remaining(h.now), 3600, "default_expires");
}

#[test]
fn contact_throttling_absorbs_refreshes_until_core_binding_needs_refresh() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Contact;
        c.outgoing_expires = 3600;
    });
    let fwd = h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    assert!(contacts_of(&fwd)[0].ends_with(";expires=3600"));
    assert_eq!(h.r.location().get(AOR)[0].remaining(h.now), 60);
    let mut cseq = 2;
    // The phone refreshes every 50 s (before its 60 s run out).
    for _ in 0..70 {
        h.advance(50);
        let ok = h.replied(&register("c1", cseq, CA, "Expires: 60\r\n"), PHONE_A);
        assert_eq!(contacts_of(&ok), vec![format!("{CA};expires=60")]);
        cseq += 1;
    }
    // 3550 s in: the core binding has 50 s left, less than a refresh plus slack.
    h.advance(50);
    let (_, fwd) = h.forwarded(&register("c1", cseq, CA, "Expires: 60\r\n"), PHONE_A);
    assert!(contacts_of(&fwd)[0].ends_with(";expires=3600"));
    assert_eq!(h.r.metrics().absorbed.get(), 70);
    assert_eq!(h.r.metrics().forwarded.get(), 2);
}

#[test]
fn contact_throttling_sends_deregistration_to_core_at_once() {
    let mut h = H::new(RegistrarMode::Contact);
    h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.advance(10);
    let (id, fwd) = h.forwarded(&register("c1", 2, CA, "Expires: 0\r\n"), PHONE_A);
    assert!(contacts_of(&fwd)[0].ends_with(";expires=0"));
    assert_eq!(h.bindings().len(), 1, "kept until the core agrees");
    h.core(id, &fwd, 200);
    assert!(h.bindings().is_empty());
}

#[test]
fn absorption_refused_for_other_flow_call_id_cseq_or_credentials() {
    let mut h = H::new(RegistrarMode::Contact);
    h.register_ok(&register("c1", 5, CA, "Expires: 60\r\n"), PHONE_A);
    h.advance(30);
    // Another source port: a NAT rebinding or a hijacker.
    h.forwarded(&register("c1", 6, CA, "Expires: 60\r\n"), PHONE_B);
    // Another Call-ID.
    h.forwarded(&register("c2", 6, CA, "Expires: 60\r\n"), PHONE_A);
    // Not a higher CSeq (a replay).
    h.forwarded(&register("c1", 5, CA, "Expires: 60\r\n"), PHONE_A);
    // Another transport from the same address.
    let mut tcp = src(PHONE_A);
    tcp.transport = Transport::Tcp;
    assert!(matches!(
        h.r.on_register(&register("c1", 6, CA, "Expires: 60\r\n"), tcp, h.now),
        RegisterAction::Forward { .. }
    ));
    // Nothing of it changed the binding (no core 2xx).
    let b = &h.r.location().get(AOR)[0];
    assert_eq!((b.cseq, b.call_id.as_str()), (5, "c1"));
    // The genuine refresh is absorbed.
    h.replied(&register("c1", 6, CA, "Expires: 60\r\n"), PHONE_A);
}

/// OpenSIPS failure 1: a new device of an already-registered AoR got a local 200 without
/// being authenticated by the core.
#[test]
fn failure1_new_device_of_registered_aor_is_authenticated_by_core() {
    for mode in [RegistrarMode::Contact, RegistrarMode::Aor] {
        let mut h = H::new(mode);
        h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
        let req_b = register("cb", 1, CB, "Expires: 60\r\n");
        let (id, fwd) = h.forwarded(&req_b, PHONE_B);
        assert_eq!(h.core(id, &fwd, 401), ResponseAction::PassThrough);
        assert_eq!(
            h.bindings().len(),
            1,
            "{mode:?}: challenged device not saved"
        );
        let retry = register(
            "cb",
            2,
            CB,
            "Expires: 60\r\nAuthorization: Digest username=\"alice\"\r\n",
        );
        h.register_ok(&retry, PHONE_B);
        assert_eq!(h.bindings().len(), 2, "{mode:?}");
    }
}

/// OpenSIPS failure 2: a device the core rejected (wrong password) was still saved.
#[test]
fn failure2_rejected_device_is_not_saved() {
    for mode in [
        RegistrarMode::Mirror,
        RegistrarMode::Contact,
        RegistrarMode::Aor,
    ] {
        let mut h = H::new(mode);
        let (id, fwd) = h.forwarded(&register("c1", 1, CA, ""), PHONE_A);
        assert_eq!(h.core(id, &fwd, 401), ResponseAction::PassThrough);
        let bad = register(
            "c1",
            2,
            CA,
            "Authorization: Digest username=\"alice\",response=\"bad\"\r\n",
        );
        let (id, fwd) = h.forwarded(&bad, PHONE_A);
        assert_eq!(h.core(id, &fwd, 403), ResponseAction::PassThrough);
        assert!(h.bindings().is_empty(), "{mode:?}");
        // A response for an unknown or already finished id changes nothing either.
        assert_eq!(h.core(id, &fwd, 200), ResponseAction::PassThrough);
        assert!(h.bindings().is_empty(), "{mode:?}");
    }
}

/// OpenSIPS failure 3: a phone's retry carrying Authorization was absorbed and never reached
/// the core.
#[test]
fn failure3_retry_with_authorization_reaches_core() {
    let mut h = H::new(RegistrarMode::Contact);
    h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.advance(20);
    // Same flow, same Call-ID, higher CSeq — absorbable but for the credentials.
    let retry = register(
        "c1",
        2,
        CA,
        "Expires: 60\r\nProxy-Authorization: Digest username=\"alice\"\r\n",
    );
    h.forwarded(&retry, PHONE_A);

    // With absorb_authorized_refreshes, a credentialed refresh may be absorbed, but not once
    // the core challenged that Call-ID.
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Contact;
        c.absorb_authorized_refreshes = true;
    });
    h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    let auth = "Expires: 60\r\nAuthorization: Digest username=\"alice\"\r\n";
    h.replied(&register("c1", 2, CA, auth), PHONE_A);
    let (id, fwd) = h.forwarded(&register("c1", 3, CA, "Expires: 60\r\n"), PHONE_B);
    h.core(id, &fwd, 401);
    let (id, fwd) = h.forwarded(&register("c1", 4, CA, auth), PHONE_A);
    h.core(id, &fwd, 200);
    assert!(
        !h.r.location().get(AOR)[0].challenged,
        "a 2xx clears the challenge"
    );
    h.replied(&register("c1", 5, CA, auth), PHONE_A);
}

/// OpenSIPS failure 4: in AoR throttling one device's de-registration removed the whole AoR at
/// the core while other devices were still registered.
#[test]
fn failure4_aor_deregistration_of_one_device_keeps_core_binding() {
    let mut h = H::new(RegistrarMode::Aor);
    let fa = h.register_ok(&register("ca", 1, CA, "Expires: 60\r\n"), PHONE_A);
    let fb = h.register_ok(&register("cb", 1, CB, "Expires: 60\r\n"), PHONE_B);
    let core_contact = contacts_of(&fa)[0].split(';').next().unwrap().to_string();
    assert!(
        contacts_of(&fb)[0].starts_with(&core_contact),
        "one core contact per AoR"
    );
    // A leaves on its own flow: answered here, the core binding stays.
    let ok = h.replied(&register("ca", 2, CA, "Expires: 0\r\n"), PHONE_A);
    assert_eq!(contacts_of(&ok), vec![format!("{CB};expires=60")]);
    assert_eq!(h.bindings(), vec!["sip:alice@192.168.7.7:5062"]);
    // Re-register A, then A leaves from elsewhere: the core authenticates a *refresh*.
    h.register_ok(&register("ca2", 1, CA, "Expires: 60\r\n"), PHONE_A);
    let (id, fwd) = h.forwarded(&register("ca2", 2, CA, "Expires: 0\r\n"), PHONE_B);
    assert_eq!(
        contacts_of(&fwd),
        vec![format!("{core_contact};expires=3600")]
    );
    h.core(id, &fwd, 200);
    assert_eq!(h.bindings(), vec!["sip:alice@192.168.7.7:5062"]);
    // The last device leaving removes the core binding.
    let (id, fwd) = h.forwarded(&register("cb", 2, CB, "Expires: 0\r\n"), PHONE_B);
    assert_eq!(contacts_of(&fwd), vec![format!("{core_contact};expires=0")]);
    h.core(id, &fwd, 200);
    assert!(h.bindings().is_empty());
}

#[test]
fn aor_throttling_absorbs_refreshes_of_known_devices() {
    let mut h = H::new(RegistrarMode::Aor);
    h.register_ok(&register("ca", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.register_ok(&register("cb", 1, CB, "Expires: 60\r\n"), PHONE_B);
    for i in 0..10 {
        h.advance(50);
        h.replied(&register("ca", 2 + i, CA, "Expires: 60\r\n"), PHONE_A);
        h.replied(&register("cb", 2 + i, CB, "Expires: 60\r\n"), PHONE_B);
    }
    assert_eq!(h.r.metrics().absorbed.get(), 20);
    assert_eq!(h.r.metrics().forwarded.get(), 2);
}

#[test]
fn expires_policy_423_clamp_and_parameter_precedence() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Mirror;
        c.min_expires = 60;
        c.max_expires = 600;
    });
    let r = h.replied(&register("c1", 1, CA, "Expires: 30\r\n"), PHONE_A);
    assert_eq!(r.status(), Some(423));
    assert_eq!(r.header(HeaderName::MinExpires), Some(&b"60"[..]));
    // The contact parameter wins over the header, in both directions.
    let r = h.replied(
        &register("c1", 2, &format!("{CA};expires=10"), "Expires: 300\r\n"),
        PHONE_A,
    );
    assert_eq!(r.status(), Some(423));
    let (_, fwd) = h.forwarded(
        &register("c1", 3, &format!("{CA};expires=120"), "Expires: 30\r\n"),
        PHONE_A,
    );
    assert!(contacts_of(&fwd)[0].ends_with(";expires=120"));
    // Too long is lowered to max_expires.
    let (_, fwd) = h.forwarded(&register("c1", 4, CA, "Expires: 99999\r\n"), PHONE_A);
    assert!(contacts_of(&fwd)[0].ends_with(";expires=600"));
    assert_eq!(h.r.metrics().rejected.get(), 2);
}

#[test]
fn wildcard_deregistration() {
    let mut h = H::new(RegistrarMode::Contact);
    h.register_ok(&register("c1", 1, CA, ""), PHONE_A);
    h.register_ok(&register("c2", 1, CB, ""), PHONE_B);
    let r = h.replied(&register("c1", 2, "*", ""), PHONE_A);
    assert_eq!(r.status(), Some(400), "* needs Expires: 0");
    let star = register("c1", 3, "*", "Expires: 0\r\n");
    assert_eq!(register_contacts(&star).unwrap(), Contacts::Star);
    let (id, fwd) = h.forwarded(&star, PHONE_A);
    assert_eq!(contacts_of(&fwd), vec!["*"]);
    let ResponseAction::Replace(b) = h.core(id, &fwd, 200) else {
        panic!()
    };
    assert!(contacts_of(&parse(b)).is_empty());
    assert!(h.bindings().is_empty());
}

#[test]
fn query_is_forwarded_and_answered_with_local_contacts() {
    let mut h = H::new(RegistrarMode::Aor);
    h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    let (id, fwd) = h.forwarded(&register("c1", 2, "", ""), PHONE_A);
    let ResponseAction::Replace(b) = h.core(id, &fwd, 200) else {
        panic!()
    };
    assert_eq!(contacts_of(&parse(b)), vec![format!("{CA};expires=60")]);
}

#[test]
fn too_many_contacts_rejected() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Contact;
        c.max_contacts_per_aor = 1;
    });
    h.register_ok(&register("c1", 1, CA, ""), PHONE_A);
    let r = h.replied(&register("c2", 1, CB, ""), PHONE_B);
    assert_eq!(r.status(), Some(403));
    // Replacing the same contact is fine.
    h.forwarded(&register("c3", 1, CA, ""), PHONE_B);
}

#[test]
fn outgoing_expires_spread_by_seeded_deviation() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Contact;
        c.outgoing_expires = 3600;
        c.expires_deviation_percent = 10;
    });
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let contact = format!("<sip:alice@192.168.1.{i}:5060>");
        let (_, fwd) = h.forwarded(
            &register(&format!("c{i}"), 1, &contact, "Expires: 60\r\n"),
            PHONE_A,
        );
        let c = &contacts_of(&fwd)[0];
        let e: u32 = c.rsplit("expires=").next().unwrap().parse().unwrap();
        assert!((3240..=3600).contains(&e), "{e}");
        seen.insert(e);
    }
    assert!(seen.len() > 5, "spread: {seen:?}");
}

#[test]
fn gruu_from_core_reaches_the_phone_and_instance_travels() {
    let mut h = H::new(RegistrarMode::Contact);
    let c =
        format!("{CA};+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1");
    let req = register("c1", 1, &c, "Expires: 60\r\n");
    let (id, fwd) = h.forwarded(&req, PHONE_A);
    let sent = &contacts_of(&fwd)[0];
    assert!(sent.contains("+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""));
    assert!(!sent.contains("reg-id"));
    let granted = format!(
        "{sent};pub-gruu=\"sip:alice@d.example;gr=urn:uuid:00000000-0000-1000-8000-000A95A0E128\""
    );
    let resp = parse(response_to(
        &fwd,
        200,
        "OK",
        Some("t"),
        &[("Contact", granted.as_bytes())],
    ));
    let ResponseAction::Replace(b) = h.r.on_core_response(id, &resp, h.now) else {
        panic!()
    };
    let to_phone = contacts_of(&parse(b));
    assert!(to_phone[0].contains("reg-id=1"), "{to_phone:?}");
    assert!(
        to_phone[0].contains(";pub-gruu=\"sip:alice@d.example;gr=urn:uuid:"),
        "{to_phone:?}"
    );
    // An absorbed refresh answers with the GRUU too.
    let ok = h.replied(&register("c1", 2, &c, "Expires: 60\r\n"), PHONE_A);
    assert!(contacts_of(&ok)[0].contains("pub-gruu"));
}

#[test]
fn expiry_sweep_updates_core_as_mode_requires() {
    // Contact mode: the core binding outlives the local one → deregister it.
    let mut h = H::new(RegistrarMode::Contact);
    h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.advance(59);
    assert!(h.r.on_tick(h.now).is_empty());
    h.advance(1);
    let u = h.r.on_tick(h.now);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].aor.as_str(), u[0].expires), (AOR, 0));
    assert!(u[0].contact.ends_with("@10.0.0.1:5060"));
    assert!(h.bindings().is_empty());
    assert_eq!(h.r.metrics().bindings.get(), 0);

    // AoR mode: only when the last device is gone, once.
    let mut h = H::new(RegistrarMode::Aor);
    h.register_ok(&register("ca", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.advance(30);
    h.register_ok(&register("cb", 1, CB, "Expires: 60\r\n"), PHONE_B);
    h.advance(30);
    assert!(h.r.on_tick(h.now).is_empty(), "B still there");
    h.advance(30);
    assert_eq!(h.r.on_tick(h.now).len(), 1);

    // Mirror: the core's binding ends together with ours.
    let mut h = H::new(RegistrarMode::Mirror);
    h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.advance(61);
    assert!(h.r.on_tick(h.now).is_empty());
    assert!(h.bindings().is_empty());
}

#[test]
fn pending_dropped_on_failure_and_after_ttl() {
    let mut h = H::new(RegistrarMode::Contact);
    let (id, _) = h.forwarded(&register("c1", 1, CA, ""), PHONE_A);
    h.forwarded(&register("c2", 1, CB, ""), PHONE_B);
    h.r.on_core_failure(id);
    assert_eq!(h.r.pending_len(), 1);
    h.advance(65);
    h.r.on_tick(h.now);
    assert_eq!(h.r.pending_len(), 0);
}

#[test]
fn per_domain_mode_override() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Mirror;
        c.domains.insert(
            "d.example".into(),
            config::RegistrarDomain {
                mode: Some(RegistrarMode::Contact),
                ..Default::default()
            },
        );
    });
    h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.replied(&register("c1", 2, CA, "Expires: 60\r\n"), PHONE_A);
}

#[test]
fn bad_requests_answered_400_and_malformed_expires_tolerated() {
    let mut h = H::new(RegistrarMode::Mirror);
    for extra in [
        "Contact: <sip:a b@c>\r\n",
        "Contact: *\r\nExpires: soon\r\n",
    ] {
        let r = h.replied(&register("c1", 1, "", extra), PHONE_A);
        assert_eq!(r.status(), Some(400), "{extra}");
    }
    // §20.19: a malformed Expires counts as absent (default_expires).
    let (_, fwd) = h.forwarded(&register("c1", 1, CA, "Expires: soon\r\n"), PHONE_A);
    assert!(contacts_of(&fwd)[0].ends_with(";expires=3600"));
    let rw = Rewrite::default();
    let req = register("c1", 1, CA, "");
    assert_eq!(rw.to_bytes(&req), req.buf().clone());
}

#[test]
fn outbound_registration_gets_require_and_flow_timer() {
    let mut h = H::new(RegistrarMode::Contact);
    let c = format!("{CA};+sip.instance=\"<urn:uuid:1>\";reg-id=1");
    let req = register("c1", 1, &c, "Expires: 60\r\nSupported: path, outbound\r\n");
    let (id, fwd) = h.forwarded(&req, PHONE_A);
    let ResponseAction::Replace(b) = h.core(id, &fwd, 200) else {
        panic!()
    };
    let to_phone = parse(b);
    assert_eq!(to_phone.header(HeaderName::Require), Some(&b"outbound"[..]));
    assert_eq!(to_phone.header("Flow-Timer"), Some(&b"30"[..]));
    let ok = h.replied(
        &register("c1", 2, &c, "Expires: 60\r\nSupported: outbound\r\n"),
        PHONE_A,
    );
    assert_eq!(ok.header(HeaderName::Require), Some(&b"outbound"[..]));
    // Without Supported: outbound, nothing is claimed.
    let ok = h.replied(&register("c1", 3, &c, "Expires: 60\r\n"), PHONE_A);
    assert_eq!(ok.header(HeaderName::Require), None);
}

#[test]
fn expired_but_unswept_bindings_do_not_count() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Aor;
        c.max_contacts_per_aor = 1;
    });
    h.register_ok(&register("ca", 1, CA, "Expires: 60\r\n"), PHONE_A);
    h.advance(61);
    // B is not refused for A's stale binding, and A's stale refresh is not absorbed.
    h.forwarded(&register("cb", 1, CB, "Expires: 60\r\n"), PHONE_B);
    h.forwarded(&register("ca", 2, CA, "Expires: 60\r\n"), PHONE_A);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary Contact / Expires / Authorization values never panic and always give a
        /// well-formed answer or a forward whose rewrite parses.
        #[test]
        fn on_register_never_panics(
            contact in "[ -~]{0,60}",
            expires in "[0-9a-z -]{0,12}",
            mode in 0usize..3,
            cseq in 0u32..5,
            auth in any::<bool>(),
        ) {
            let mode = [RegistrarMode::Mirror, RegistrarMode::Contact, RegistrarMode::Aor][mode];
            let mut h = H::new(mode);
            h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
            let extra = format!(
                "Expires: {expires}\r\n{}",
                if auth { "Authorization: Digest x\r\n" } else { "" }
            );
            let text = format!(
                "REGISTER sip:d.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKp\r\n\
                 From: <sip:alice@d.example>;tag=f1\r\nTo: <sip:alice@d.example>\r\n\
                 Call-ID: c1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n"
            );
            let Ok(req) = sip::parse(Bytes::from(text), &Limits::default()) else {
                return Ok(());
            };
            match h.reg(&req, PHONE_A) {
                RegisterAction::Reply { bytes, .. } => {
                    prop_assert!(sip::parse(bytes, &Limits::default()).is_ok());
                }
                RegisterAction::Forward { id, rewrite } => {
                    let fwd = sip::parse(rewrite.to_bytes(&req), &Limits::default());
                    prop_assert!(fwd.is_ok());
                    let fwd = fwd.unwrap();
                    h.core(id, &fwd, 200);
                }
            }
        }
    }
}

/// Acceptance (c) without sockets: bindings survive a restart through the store and calls
/// from the core still find the phone (its flow aside) and its core contact token.
#[test]
fn restart_keeps_bindings_and_lookup() {
    use super::persist::{Clock, Store};
    let path = std::env::temp_dir()
        .join(format!("edge-registrar-restart-{}", std::process::id()))
        .join("location.log");
    let _ = std::fs::remove_file(&path);
    let mut h = H::new(RegistrarMode::Contact);
    let clock = Clock {
        now: h.now,
        wall: std::time::SystemTime::now(),
    };
    let mut store = Store::open(&path, 0).unwrap();
    let fwd = h.register_ok(&register("c1", 1, CA, "Expires: 600\r\n"), PHONE_A);
    h.register_ok(&register("c2", 1, CB, "Expires: 600\r\n"), PHONE_B);
    h.advance(10);
    h.replied(&register("c1", 2, CA, "Expires: 600\r\n"), PHONE_A);
    store.append(&h.r.take_changes(), clock).unwrap();
    drop(store);
    let token_uri = contacts_of(&fwd)[0]
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();

    // New process: another Instant base, 30 s later.
    let now2 = Instant::now() + Duration::from_secs(1000);
    let clock2 = Clock {
        now: now2,
        wall: clock.wall + Duration::from_secs(30),
    };
    let loaded = Store::load(&path, clock2).unwrap();
    let mut r2 = Registrar::new(
        &RegistrarConfig {
            mode: RegistrarMode::Contact,
            ..RegistrarConfig::default()
        },
        EDGE.into(),
        8,
        RegistrarMetrics::unregistered(),
    );
    r2.restore(loaded.bindings);
    assert_eq!(r2.metrics().bindings.get(), 2);
    let all = r2.lookup(b"sip:alice@d.example", None, now2);
    assert_eq!(all.len(), 2);
    let one = r2.lookup(token_uri.as_bytes(), None, now2);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].request_uri, "sip:alice@192.168.1.5:5060");
    assert_eq!(one[0].dest.addr, PHONE_A.parse().unwrap());
    // The refresh absorbed before the restart counts (600 s from t+10, minus 30 s of wall time).
    assert_eq!(one[0].binding.cseq, 2);
    let left = one[0].binding.remaining(now2);
    assert!((579..=581).contains(&left), "{left}");
    // And the restored binding still throttles: same flow, Call-ID, higher CSeq → absorbed.
    let req = register("c1", 3, CA, "Expires: 600\r\n");
    assert!(matches!(
        r2.on_register(&req, src(PHONE_A), now2),
        RegisterAction::Reply { status: 200, .. }
    ));
}

/// Acceptance (a) in simulated time: 1,000 phones refreshing every 60 s for two hours in AoR
/// throttling. The core gets at most one REGISTER per AoR per `outgoing_expires` window and
/// its binding never lapses while the phone is registered.
#[test]
fn thousand_phones_aor_throttling_trickle_to_core() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Aor;
        c.outgoing_expires = 3600;
        c.expires_deviation_percent = 10;
    });
    let n = 1000;
    let mut cseq = vec![0u32; n];
    let mut to_core = vec![0u32; n];
    let t0 = h.now;
    // Each phone starts at its own second within the first minute, refreshes every 60 s.
    for tick in 0..(2 * 3600) {
        for i in ((tick % 60) as usize..n).step_by(60) {
            let seq = &mut cseq[i];
            *seq += 1;
            let text = format!(
                "REGISTER sip:d.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.{}.{}:5060;branch=z9hG4bK{i}x{seq}\r\n\
                 From: <sip:u{i}@d.example>;tag=f\r\nTo: <sip:u{i}@d.example>\r\nCall-ID: call{i}\r\n\
                 CSeq: {seq} REGISTER\r\nContact: <sip:u{i}@10.1.{}.{}:5060>\r\nExpires: 120\r\n\
                 Content-Length: 0\r\n\r\n",
                i / 250, i % 250, i / 250, i % 250
            );
            let req = parse(Bytes::from(text));
            let from = format!("203.0.113.{}:{}", i / 250, 20000 + i);
            match h.reg(&req, &from) {
                RegisterAction::Reply { status, .. } => assert_eq!(status, 200),
                RegisterAction::Forward { id, rewrite } => {
                    to_core[i] += 1;
                    let fwd = parse(rewrite.to_bytes(&req));
                    h.core(id, &fwd, 200);
                }
            }
        }
        if tick % 60 == 59 {
            for b in h.r.location().all() {
                assert!(b.core_expires > h.now, "core binding lapsed for {}", b.aor);
            }
        }
        if tick % 10 == 0 {
            h.r.on_tick(h.now);
        }
        h.advance(1);
    }
    assert_eq!(h.r.location().len(), n);
    let windows = (h.now - t0).as_secs().div_ceil(3600 * 9 / 10) as u32; // deviation shortens
    let max = *to_core.iter().max().unwrap();
    let total: u32 = to_core.iter().sum();
    assert!(
        max <= windows + 1,
        "max per AoR {max} over {windows} windows"
    );
    assert!(total <= n as u32 * 3, "total {total}");
    assert_eq!(h.r.metrics().forwarded.get(), u64::from(total));
    assert_eq!(
        h.r.metrics().absorbed.get() + u64::from(total),
        u64::from(cseq.iter().sum::<u32>())
    );
}

#[test]
fn dead_keepalive_binding_updates_core() {
    use super::keepalive::Keepalive;
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Contact;
        c.natping_max_failures = 2;
    });
    h.register_ok(&register("c1", 1, CA, "Expires: 600\r\n"), PHONE_A);
    assert!(h.r.location().get(AOR)[0].nated);
    let cfg = RegistrarConfig {
        natping_max_failures: 2,
        ..RegistrarConfig::default()
    };
    let mut ka = Keepalive::new(&cfg, h.r.location().clone(), 1, h.r.metrics().clone());
    for c in h.r.take_changes() {
        ka.on_change(&c);
    }
    let mut dead = Vec::new();
    for _ in 0..100 {
        let polled = ka.poll(h.now);
        dead.extend(polled.dead);
        for p in polled.pings {
            // Never answered: each silence counts when the next ping is due.
            assert_eq!(p.dest.addr, PHONE_A.parse().unwrap());
        }
        h.advance(1);
    }
    assert_eq!(dead.len(), 1);
    let updates = h.r.remove_bindings(&dead);
    assert!(h.bindings().is_empty());
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].expires, 0);
    assert_eq!(h.r.metrics().removed_by_ping.get(), 1);
    assert_eq!(h.r.metrics().bindings.get(), 0);
    // The removal is journalled.
    assert!(h
        .r
        .take_changes()
        .iter()
        .any(|c| matches!(c, super::Change::Remove { .. })));
}

#[test]
fn token_reused_after_local_expiry() {
    for mode in [RegistrarMode::Contact, RegistrarMode::Aor] {
        let mut h = H::new(mode);
        let f1 = h.register_ok(&register("c1", 1, CA, "Expires: 60\r\n"), PHONE_A);
        h.advance(70);
        let (_, f2) = h.forwarded(&register("c2", 1, CA, "Expires: 60\r\n"), PHONE_A);
        let token = |m: &Message| contacts_of(m)[0].split(';').next().unwrap().to_string();
        assert_eq!(token(&f1), token(&f2), "{mode:?}");
    }
}

/// Memory bounds against REGISTER floods: bindings per source IP (403) and in the whole table
/// (503 with Retry-After); refreshes and removals of existing bindings always pass.
#[test]
fn binding_limits_per_source_and_global() {
    let mut h = H::with(|c| {
        c.mode = RegistrarMode::Contact;
        c.max_bindings_per_source = 2;
        c.max_bindings = 3;
    });
    let aor_reg = |user: &str, cid: &str| {
        let text = String::from_utf8(
            register(cid, 1, &format!("<sip:{user}@192.168.1.5:5060>"), "")
                .buf()
                .to_vec(),
        )
        .unwrap()
        .replace("alice@", &format!("{user}@"));
        parse(Bytes::from(text))
    };
    h.register_ok(&aor_reg("u1", "l1"), PHONE_A);
    h.register_ok(&aor_reg("u2", "l2"), PHONE_A);
    let r = h.replied(&aor_reg("u3", "l3"), PHONE_A);
    assert_eq!(r.status(), Some(403), "third binding from one source");
    assert_eq!(
        h.r.location()
            .from_source(PHONE_A.parse::<std::net::SocketAddr>().unwrap().ip()),
        2
    );
    // Another source may still register, until the table is full.
    h.register_ok(&aor_reg("u4", "l4"), PHONE_B);
    let r = h.replied(&aor_reg("u5", "l5"), PHONE_B);
    assert_eq!(r.status(), Some(503));
    assert!(r.header("Retry-After").is_some());
    // A refresh of an existing binding is not a new one.
    h.forwarded(&aor_reg("u1", "l1"), PHONE_A);
}
