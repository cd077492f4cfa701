//! The trust boundary (issue 8), played from the attacker's side over UDP: every attack is tried
//! and must fail, and the legitimate variant of each must still work.
//!
//! Peers are hand-driven sockets ([`e2e::attacker`]): phones on [`ACCESS_IP`], the core on
//! [`CORE_IP`] (answered by the test itself), the attacker on [`ATTACKER_IP`]. Counters are read
//! from `edge_security_events_total{event=...}` on the edge's `/metrics`.

use e2e::attacker::{request, response_to, tcp_accept_message, uri_of, Msg, Peer, ATTACKER_IP};
use e2e::edge::{start_or_panic, Edge, EdgeArgs};
use e2e::metrics;
use e2e::ports::{free_port, ACCESS_IP, CORE_IP};
use e2e::tools::edge_or_skip;
use e2e::workdir::WorkDir;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How long a message that should arrive may take.
const T: Duration = Duration::from_secs(3);
/// How long to listen for a message that must not arrive (several Timer A/E retransmissions).
const QUIET: Duration = Duration::from_millis(1500);

struct Lab {
    test: &'static str,
    _dir: WorkDir,
    edge: Edge,
    /// Bound to the core's TCP port when the edge listens on TCP.
    core_tcp: Option<TcpListener>,
}

impl Lab {
    /// An edge in front of a hand-driven core, with that core and an attacker; `None` (SKIP
    /// printed) without the edge binary.
    fn start(test: &'static str, tcp: bool, extra: &[&str]) -> Option<(Lab, Peer, Peer)> {
        let bin = edge_or_skip(test)?;
        let dir = WorkDir::new(test);
        let core = Peer::bind(CORE_IP, free_port());
        let core_tcp = tcp.then(|| {
            TcpListener::bind(core.addr).unwrap_or_else(|e| panic!("{test}: bind TCP core: {e}"))
        });
        let mut args = EdgeArgs::udp_core(core.addr).extra(extra);
        args.tcp = tcp;
        let edge = start_or_panic(&bin, &dir, &args);
        let lab = Lab {
            test,
            _dir: dir,
            edge,
            core_tcp,
        };
        Some((lab, core, Peer::bind(ATTACKER_IP, 0)))
    }

    fn sip(&self) -> SocketAddr {
        self.edge.sip_addr()
    }

    fn sec(&self, event: &str) -> f64 {
        self.metric("edge_security_events_total", &[("event", event)])
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let s = self
            .edge
            .metrics()
            .unwrap_or_else(|e| panic!("{}: metrics: {e}", self.test));
        metrics::sum(&s, name, labels).unwrap_or(0.0)
    }

    /// Panics with `what` and the edge's log.
    fn fail(&mut self, what: String) -> ! {
        panic!("{}: {what}\n{}", self.test, self.edge.report())
    }

    /// The next request `method` of call `cid` at `peer`, or panic.
    fn expect_req(&mut self, peer: &Peer, method: &str, cid: &str, cseq: u32, who: &str) -> Msg {
        let want = format!("{cseq} {method}");
        match peer.recv_where(T, |m| {
            m.method() == Some(method) && m.call_id() == cid && m.header("cseq") == Some(&want)
        }) {
            Some(m) => m,
            None => self.fail(format!(
                "{who} got no {method} (Call-ID {cid}) within {T:?}"
            )),
        }
    }

    /// The next final response of call `cid` at `peer` (provisionals skipped), or panic.
    fn expect_final(&mut self, peer: &Peer, cid: &str, method: &str, who: &str) -> Msg {
        match peer.recv_where(T, |m| {
            m.status().is_some_and(|s| s >= 200) && m.call_id() == cid && m.cseq_method() == method
        }) {
            Some(m) => m,
            None => self.fail(format!(
                "{who} got no final response to {method} (Call-ID {cid}) within {T:?}"
            )),
        }
    }

    /// `answerer` declines the INVITE `got` (486) and `caller` ACKs the final response it
    /// gets for `inv`: ends a test call that served its purpose.
    #[allow(clippy::too_many_arguments)]
    fn busy(
        &mut self,
        answerer: &Peer,
        got: &Msg,
        tag: &str,
        caller: &Peer,
        inv: &str,
        cid: &str,
        who: &str,
    ) {
        answerer.send(
            &response_to(got, 486, "Busy Here", Some(tag), &[], ""),
            got.from,
        );
        let fin = self.expect_final(caller, cid, "INVITE", who);
        caller.send(&ack_non2xx(inv, &fin), self.sip());
    }

    /// Nothing at all reaches `peer` during `window`.
    fn expect_silence(&mut self, peer: &Peer, window: Duration, who: &str) {
        let got = peer.drain(window);
        if let Some(m) = got.first() {
            let n = got.len();
            self.fail(format!(
                "{who} ({}) received {n} message(s), first from {}:\n{}",
                peer.addr, m.from, m.text
            ));
        }
    }

    /// Nothing of call `cid` reaches `peer` during `window` (other traffic ignored).
    fn expect_none_of(&mut self, peer: &Peer, cid: &str, window: Duration, who: &str) {
        if let Some(m) = peer.drain(window).into_iter().find(|m| m.call_id() == cid) {
            self.fail(format!(
                "{who} ({}) received, from {}:\n{}",
                peer.addr, m.from, m.text
            ));
        }
    }
}

fn uid(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// An INVITE from `phone` (its real address in Via and Contact) to `sip:bob@example.test`.
fn phone_invite(phone: &Peer, cid: &str, extra: &[String]) -> String {
    let mut h = vec![format!("Contact: <sip:alice@{}>", phone.addr)];
    h.extend_from_slice(extra);
    request(
        "INVITE",
        "sip:bob@example.test",
        phone.addr,
        &uid("br"),
        cid,
        &format!("ft-{cid}"),
        None,
        1,
        &h,
        "",
    )
}

/// The ACK for a non-2xx final response `resp` to `invite` (same branch, To from the response).
fn ack_non2xx(invite: &str, resp: &Msg) -> String {
    let inv = Msg {
        text: invite.to_string(),
        from: resp.from,
    };
    format!(
        "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        inv.request_uri().unwrap_or(""),
        inv.header("via").unwrap_or(""),
        inv.header("from").unwrap_or(""),
        resp.header("to").unwrap_or(""),
        inv.call_id()
    )
}

/// A REGISTER for `sip:alice@example.test` from `phone` with `contact` and `Expires`.
fn register(
    phone: &Peer,
    cid: &str,
    cseq: u32,
    contact: &str,
    expires: u32,
    extra: &[String],
) -> String {
    let mut s = format!(
        "REGISTER sip:example.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP {addr};branch=z9hG4bK{br};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.test>;tag=rt-{cid}\r\n\
         To: <sip:alice@example.test>\r\n\
         Call-ID: {cid}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: {contact}\r\n\
         Expires: {expires}\r\n",
        addr = phone.addr,
        br = uid("reg"),
    );
    for h in extra {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// The core's 200 to a REGISTER: its Contacts echoed with `;expires=`.
fn register_ok(reg: &Msg, expires: u32) -> String {
    let contacts: Vec<String> = reg
        .values("contact")
        .iter()
        .filter(|c| c.as_str() != "*")
        .map(|c| format!("Contact: <{}>;expires={expires}", uri_of(c)))
        .collect();
    response_to(reg, 200, "OK", Some("core-reg"), &contacts, "")
}

/// Replaces the value of URI parameter `name` inside a Route/Record-Route value.
fn with_param(route: &str, name: &str, value: Option<&str>) -> String {
    let uri = uri_of(route);
    let params: Vec<String> = uri
        .split(';')
        .enumerate()
        .filter_map(|(i, p)| {
            if i > 0 && p.split('=').next() == Some(name) {
                value.map(|v| format!("{name}={v}"))
            } else {
                Some(p.to_string())
            }
        })
        .collect();
    format!("<{}>", params.join(";"))
}

// ---- 1 ----

#[test]
fn preloaded_route_on_invite_is_removed() {
    let test = "preloaded_route_on_invite_is_removed";
    let Some((mut lab, core, a)) = Lab::start(test, false, &[]) else {
        return;
    };
    let phone = Peer::bind(ACCESS_IP, 0);
    let attacker = a.addr;
    let before = lab.sec("preloaded_route_removed");

    // Attack: a preloaded Route to the attacker, and a Request-URI naming it as well.
    let cid = uid("preload");
    let inv = phone_invite(&phone, &cid, &[format!("Route: <sip:{attacker};lr>")]).replacen(
        "sip:bob@example.test",
        &format!("sip:bob@{attacker}"),
        1,
    );
    phone.send(&inv, lab.sip());
    let got = lab.expect_req(&core, "INVITE", &cid, 1, "core");
    if got.text.contains(&attacker.to_string()) && got.has_header("route") {
        lab.fail(format!("the core got the attacker's Route:\n{}", got.text));
    }
    if got.has_header("route") {
        lab.fail(format!("the core got a Route:\n{}", got.text));
    }
    lab.expect_silence(&a, QUIET, "attacker");
    lab.busy(&core, &got, "c1", &phone, &inv, &cid, "phone");
    let after = lab.sec("preloaded_route_removed");
    assert_eq!(
        after - before,
        1.0,
        "{test}: preloaded_route_removed not counted once"
    );

    // Legit: a Route naming the edge itself is consumed, the INVITE reaches the core.
    let cid2 = uid("preload-ok");
    let sip = lab.sip();
    let inv2 = phone_invite(&phone, &cid2, &[format!("Route: <sip:{sip};lr>")]);
    phone.send(&inv2, sip);
    let got2 = lab.expect_req(&core, "INVITE", &cid2, 1, "core (legit)");
    assert!(
        !got2.has_header("route"),
        "{test}: edge's own Route not consumed:\n{}",
        got2.text
    );
    lab.busy(&core, &got2, "c2", &phone, &inv2, &cid2, "phone (legit)");
    assert_eq!(
        lab.sec("preloaded_route_removed"),
        after,
        "{test}: the edge's own Route counted"
    );
    eprintln!("{test}: PASS attacker Route removed (counted {}), own Route consumed, both reached the core", after - before);
}

// ---- 2 ----

#[test]
fn register_goes_to_core_and_forged_200_is_dropped() {
    let test = "register_goes_to_core_and_forged_200_is_dropped";
    let Some((mut lab, core, attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let phone = Peer::bind(ACCESS_IP, 0);
    let sip = lab.sip();
    let route = format!("Route: <sip:{};lr>", attacker.addr);
    let contact = format!("<sip:alice@{}>", phone.addr);
    let wrong_before = lab.sec("response_wrong_source");

    // Attack 1: REGISTER with a Route to the attacker.
    let cid = uid("reg");
    phone.send(
        &register(
            &phone,
            &cid,
            1,
            &contact,
            3600,
            std::slice::from_ref(&route),
        ),
        sip,
    );
    let reg = lab.expect_req(&core, "REGISTER", &cid, 1, "core");
    lab.expect_silence(&attacker, Duration::from_millis(500), "attacker");
    // Attack 2: the attacker answers the forwarded REGISTER (right branch) before the core.
    attacker.send(&register_ok(&reg, 3600), sip);
    if let Some(m) = phone.recv_where(QUIET, |m| m.call_id() == cid && m.status() == Some(200)) {
        lab.fail(format!(
            "the attacker's forged 200 reached the phone:\n{}",
            m.text
        ));
    }
    let wrong = lab.sec("response_wrong_source") - wrong_before;
    let bindings = lab.metric("edge_registrar_bindings", &[]);
    if wrong != 1.0 || bindings != 0.0 {
        lab.fail(format!(
            "after the forged 200: response_wrong_source +{wrong} (want +1), edge_registrar_bindings {bindings} (want 0)"
        ));
    }
    // Legit: the core's own 200 registers the phone.
    core.send(&register_ok(&reg, 3600), reg.from);
    let ok = lab.expect_final(&phone, &cid, "REGISTER", "phone");
    assert_eq!(
        ok.status(),
        Some(200),
        "{test}: phone got {}",
        ok.first_line()
    );
    let bindings = lab.metric("edge_registrar_bindings", &[]);
    assert_eq!(
        bindings, 1.0,
        "{test}: binding not saved after the core's 200"
    );

    // Attack 3: `Contact: *` + `Expires: 0` with the attacker's Route: only the core gets it.
    phone.send(
        &register(&phone, &cid, 2, "*", 0, std::slice::from_ref(&route)),
        sip,
    );
    let unreg = lab.expect_req(&core, "REGISTER", &cid, 2, "core (Contact: *)");
    if unreg.has_header("route") {
        lab.fail(format!(
            "the core got a Route on Contact: *:\n{}",
            unreg.text
        ));
    }
    lab.expect_silence(&attacker, QUIET, "attacker (Contact: *)");
    core.send(
        &response_to(&unreg, 200, "OK", Some("core-reg"), &[], ""),
        unreg.from,
    );
    let ok2 = lab.expect_final(&phone, &cid, "REGISTER", "phone (Contact: *)");
    let left = lab.metric("edge_registrar_bindings", &[]);
    eprintln!(
        "{test}: PASS Routes ignored, forged 200 dropped (response_wrong_source +{wrong}), core's 200 saved 1 binding, Contact:* answered {} (bindings now {left})",
        ok2.status().unwrap_or(0)
    );
}

// ---- 3 ----

/// Registers a phone through the edge; returns (Contact URI the core saw, Path values).
fn register_phone(lab: &mut Lab, core: &Peer, phone: &Peer) -> (String, Vec<String>) {
    let cid = uid("reg3");
    let contact = format!("<sip:alice@{}>", phone.addr);
    phone.send(&register(phone, &cid, 1, &contact, 3600, &[]), lab.sip());
    let reg = lab.expect_req(core, "REGISTER", &cid, 1, "core (REGISTER)");
    core.send(&register_ok(&reg, 3600), reg.from);
    let ok = lab.expect_final(phone, &cid, "REGISTER", "phone (REGISTER)");
    if ok.status() != Some(200) {
        lab.fail(format!("REGISTER answered {}", ok.first_line()));
    }
    let c = reg
        .values("contact")
        .first()
        .map(|c| uri_of(c).to_string())
        .unwrap_or_default();
    (c, reg.values("path"))
}

/// An INVITE from the core to `ruri` with `route` as Route set.
fn core_invite(core: &Peer, ruri: &str, route: &[String], cid: &str, extra: &[String]) -> String {
    let mut h: Vec<String> = route.iter().map(|r| format!("Route: {r}")).collect();
    h.push(format!("Contact: <sip:carol@{}>", core.addr));
    h.extend_from_slice(extra);
    request(
        "INVITE",
        ruri,
        core.addr,
        &uid("cbr"),
        cid,
        &format!("cf-{cid}"),
        None,
        1,
        &h,
        "",
    )
}

#[test]
fn redirects_from_access_not_followed_from_core_capped() {
    let test = "redirects_from_access_not_followed_from_core_capped";
    let Some((mut lab, core, attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let phone = Peer::bind(ACCESS_IP, 0);
    let sip = lab.sip();
    let (contact, path) = register_phone(&mut lab, &core, &phone);
    let not_followed = lab.sec("access_redirect_not_followed");

    // Attack: the registered phone answers the core's INVITE with 302 and 40 Contacts.
    let cid = uid("acc302");
    let inv = core_invite(&core, &contact, &path, &cid, &[]);
    core.send(&inv, sip);
    let at_phone = lab.expect_req(&phone, "INVITE", &cid, 1, "phone");
    let contacts: Vec<String> = (0..40)
        .map(|i| format!("Contact: <sip:t{i}@{}>", attacker.addr))
        .collect();
    phone.send(
        &response_to(
            &at_phone,
            302,
            "Moved Temporarily",
            Some("ph"),
            &contacts,
            "",
        ),
        at_phone.from,
    );
    let at_core = lab.expect_final(&core, &cid, "INVITE", "core");
    if at_core.status() != Some(302) {
        lab.fail(format!(
            "core got {} instead of the 302",
            at_core.first_line()
        ));
    }
    core.send(&ack_non2xx(&inv, &at_core), sip);
    lab.expect_silence(&attacker, QUIET, "attacker (302 targets)");
    let nf = lab.sec("access_redirect_not_followed") - not_followed;
    assert_eq!(
        nf, 1.0,
        "{test}: access_redirect_not_followed +{nf}, want +1"
    );

    // Legit: the core's 302 with 2 Contacts is followed to both.
    let t1 = Peer::bind(CORE_IP, free_port());
    let t2 = Peer::bind(CORE_IP, free_port());
    let cid2 = uid("core302");
    let inv2 = phone_invite(&phone, &cid2, &[]);
    phone.send(&inv2, sip);
    let got = lab.expect_req(&core, "INVITE", &cid2, 1, "core");
    let two = vec![
        format!("Contact: <sip:f1@{}>", t1.addr),
        format!("Contact: <sip:f2@{}>", t2.addr),
    ];
    core.send(
        &response_to(&got, 302, "Moved Temporarily", Some("c302"), &two, ""),
        got.from,
    );
    for (t, name) in [(&t1, "target 1"), (&t2, "target 2")] {
        let i = lab.expect_req(t, "INVITE", &cid2, 1, name);
        t.send(
            &response_to(&i, 486, "Busy Here", Some("tb"), &[], ""),
            i.from,
        );
    }
    let fin = lab.expect_final(&phone, &cid2, "INVITE", "phone (2 targets)");
    phone.send(&ack_non2xx(&inv2, &fin), sip);

    // Legit, capped: the core's 302 with 40 Contacts → only 5 tried.
    let capped = lab.sec("redirect_targets_capped");
    let cid3 = uid("core302x40");
    let inv3 = phone_invite(&phone, &cid3, &[]);
    phone.send(&inv3, sip);
    let got3 = lab.expect_req(&core, "INVITE", &cid3, 1, "core");
    let forty: Vec<String> = (0..40)
        .map(|i| format!("Contact: <sip:t{i}@{}>", t1.addr))
        .collect();
    core.send(
        &response_to(&got3, 302, "Moved Temporarily", Some("c40"), &forty, ""),
        got3.from,
    );
    let mut tried = std::collections::BTreeSet::new();
    for m in t1.drain(Duration::from_secs(2)) {
        if m.method() == Some("INVITE") && m.call_id() == cid3 {
            tried.insert(m.request_uri().unwrap_or("").to_string());
            t1.send(
                &response_to(&m, 486, "Busy Here", Some("tb"), &[], ""),
                m.from,
            );
        }
    }
    let capped = lab.sec("redirect_targets_capped") - capped;
    if tried.len() != 5 || capped != 1.0 {
        lab.fail(format!(
            "core 302 with 40 Contacts: {} distinct targets tried (want 5): {tried:?}; redirect_targets_capped +{capped} (want +1)",
            tried.len()
        ));
    }
    if let Some(fin3) = phone.recv_where(T, |m| {
        m.call_id() == cid3 && m.status().is_some_and(|s| s >= 200)
    }) {
        phone.send(&ack_non2xx(&inv3, &fin3), sip);
    }
    eprintln!("{test}: PASS phone's 302 (40 Contacts) relayed to the core, none called; core 302: 2 of 2 and 5 of 40 tried");
}

// ---- 4 ----

#[test]
fn early_rejects_are_stateless() {
    let test = "early_rejects_are_stateless";
    let Some((mut lab, core, _attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let sip = lab.sip();
    let mf0 = Peer::bind(ACCESS_IP, 0);
    let pr = Peer::bind(ACCESS_IP, 0);
    let cid_mf = uid("mf0");
    let cid_pr = uid("preq");
    // Never ACKed: a stateful 483/420 would be retransmitted by Timer G at 0.5, 1, 2, 4 s.
    mf0.send(
        &phone_invite(&mf0, &cid_mf, &[]).replacen("Max-Forwards: 70", "Max-Forwards: 0", 1),
        sip,
    );
    pr.send(
        &phone_invite(&pr, &cid_pr, &["Proxy-Require: x-evil".to_string()]),
        sip,
    );
    let first = mf0.drain(Duration::from_secs(3));
    let later = mf0.drain(Duration::from_secs(5));
    let pr_all = pr.drain(Duration::from_millis(100));
    let show = |v: &[Msg]| {
        v.iter()
            .map(|m| m.first_line().to_string())
            .collect::<Vec<_>>()
    };
    if first.len() != 1 || first.first().and_then(Msg::status) != Some(483) || !later.is_empty() {
        lab.fail(format!(
            "Max-Forwards 0: first 3 s {:?}, next 5 s {:?} (want exactly one 483)",
            show(&first),
            show(&later)
        ));
    }
    if pr_all.len() != 1 || pr_all.first().and_then(Msg::status) != Some(420) {
        lab.fail(format!(
            "Proxy-Require: in 8 s {:?} (want exactly one 420)",
            show(&pr_all)
        ));
    }
    lab.expect_none_of(
        &core,
        &cid_mf,
        Duration::from_millis(100),
        "core (Max-Forwards 0)",
    );

    // Legit: Max-Forwards 1 is forwarded with 0.
    let ok = Peer::bind(ACCESS_IP, 0);
    let cid = uid("mf1");
    let inv = phone_invite(&ok, &cid, &[]).replacen("Max-Forwards: 70", "Max-Forwards: 1", 1);
    ok.send(&inv, sip);
    let got = lab.expect_req(&core, "INVITE", &cid, 1, "core (Max-Forwards 1)");
    assert_eq!(
        got.header("max-forwards"),
        Some("0"),
        "{test}: Max-Forwards not decremented"
    );
    lab.busy(&core, &got, "c", &ok, &inv, &cid, "phone (Max-Forwards 1)");
    eprintln!("{test}: PASS 483 and 420 sent once each (no 100, no retransmission in 8 s); Max-Forwards 1 forwarded");
}

// ---- 5 ----

const IDENTITY: [&str; 3] = [
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Remote-Party-ID",
];

fn identity_headers() -> Vec<String> {
    vec![
        "P-Asserted-Identity: <sip:ceo@example.test>".to_string(),
        "P-Preferred-Identity: <sip:ceo@example.test>".to_string(),
        "Remote-Party-ID: <sip:ceo@example.test>;party=calling;privacy=off;screen=yes".to_string(),
    ]
}

#[test]
fn identity_headers_stripped_from_access_only() {
    let test = "identity_headers_stripped_from_access_only";
    let Some((mut lab, core, _attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let sip = lab.sip();
    let phone = Peer::bind(ACCESS_IP, 0);
    let before = lab.sec("identity_header_removed");
    let cid = uid("pai");
    let inv = phone_invite(&phone, &cid, &identity_headers());
    phone.send(&inv, sip);
    let got = lab.expect_req(&core, "INVITE", &cid, 1, "core");
    let leaked: Vec<&str> = IDENTITY
        .iter()
        .copied()
        .filter(|h| got.has_header(h))
        .collect();
    if !leaked.is_empty() {
        lab.fail(format!(
            "identity headers from the phone reached the core {leaked:?}:\n{}",
            got.text
        ));
    }
    lab.busy(&core, &got, "c", &phone, &inv, &cid, "phone");
    let removed = lab.sec("identity_header_removed") - before;
    assert_eq!(
        removed, 3.0,
        "{test}: identity_header_removed +{removed}, want +3"
    );

    // Legit: from the core to a phone they pass.
    let cid2 = uid("pai-core");
    let inv2 = core_invite(
        &core,
        &format!("sip:alice@{}", phone.addr),
        &[],
        &cid2,
        &identity_headers(),
    );
    core.send(&inv2, sip);
    let at_phone = lab.expect_req(&phone, "INVITE", &cid2, 1, "phone");
    let missing: Vec<&str> = IDENTITY
        .iter()
        .copied()
        .filter(|h| !at_phone.has_header(h))
        .collect();
    if !missing.is_empty() {
        lab.fail(format!(
            "the core's identity headers {missing:?} did not reach the phone:\n{}",
            at_phone.text
        ));
    }
    lab.busy(&phone, &at_phone, "p", &core, &inv2, &cid2, "core");
    assert_eq!(
        lab.sec("identity_header_removed") - before,
        3.0,
        "{test}: core's identity headers counted"
    );
    eprintln!(
        "{test}: PASS PAI/PPI/RPID removed from the phone's INVITE (+3), passed from the core's"
    );
}

// ---- 6 ----

/// A call phone → edge → core answered 200 (the core echoes the Record-Route); the phone's view.
struct Call {
    cid: String,
    to_tag: String,
    /// The phone's route set: the 200's Record-Route, reversed (RFC 3261 §12.1.2).
    routes: Vec<String>,
    /// The core's Contact.
    target: String,
}

fn call_to_core(lab: &mut Lab, core: &Peer, phone: &Peer, label: &str) -> Call {
    let cid = uid(label);
    let inv = phone_invite(phone, &cid, &[]);
    phone.send(&inv, lab.sip());
    let got = lab.expect_req(core, "INVITE", &cid, 1, "core");
    if !got.has_header("record-route") {
        lab.fail(format!(
            "INVITE reached the core without Record-Route:\n{}",
            got.text
        ));
    }
    let to_tag = format!("ct-{cid}");
    let target = format!("sip:bob@{}", core.addr);
    core.send(
        &response_to(
            &got,
            200,
            "OK",
            Some(&to_tag),
            &[format!("Contact: <{target}>")],
            "",
        ),
        got.from,
    );
    let ok = lab.expect_final(phone, &cid, "INVITE", "phone");
    if ok.status() != Some(200) {
        lab.fail(format!("call answered {}", ok.first_line()));
    }
    let mut routes = ok.values("record-route");
    routes.reverse();
    let call = Call {
        cid,
        to_tag,
        routes,
        target,
    };
    phone.send(
        &in_dialog(phone, &call, "ACK", &call.target, &call.routes, 1),
        lab.sip(),
    );
    lab.expect_req(core, "ACK", &call.cid, 1, "core (ACK)");
    call
}

fn in_dialog(
    phone: &Peer,
    call: &Call,
    method: &str,
    ruri: &str,
    routes: &[String],
    cseq: u32,
) -> String {
    let h: Vec<String> = routes.iter().map(|r| format!("Route: {r}")).collect();
    request(
        method,
        ruri,
        phone.addr,
        &uid("db"),
        &call.cid,
        &format!("ft-{}", call.cid),
        Some(&call.to_tag),
        cseq,
        &h,
        "",
    )
}

#[test]
fn in_dialog_route_token_enforced() {
    let test = "in_dialog_route_token_enforced";
    let Some((mut lab, core, attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let sip = lab.sip();
    let phone = Peer::bind(ACCESS_IP, 0);
    let call = call_to_core(&mut lab, &core, &phone, "dlg");
    let other = call_to_core(&mut lab, &core, &phone, "dlg-other");
    let ours = match call.routes.first() {
        Some(r) if r.contains("etk=") && r.contains("eh=") => r.clone(),
        _ => lab.fail(format!(
            "no Record-Route with eh/etk in the 200: {:?}",
            call.routes
        )),
    };
    let evil_uri = format!("sip:bob@{}", attacker.addr);
    let evil_hop = format!("udp:{}", attacker.addr);
    let invalid_before = lab.sec("route_token_invalid");
    let attacks: Vec<(&str, Vec<String>)> = vec![
        (
            "our Route without etk",
            vec![with_param(&ours, "etk", None)],
        ),
        (
            "our Route with eh edited to the attacker",
            vec![with_param(&ours, "eh", Some(&evil_hop))],
        ),
        (
            "our bare Route (no ftag/eh/etk)",
            vec![format!("<sip:{sip};lr>")],
        ),
        ("the Route (token) of another call", other.routes.clone()),
    ];
    let mut cseq = 2;
    for (what, routes) in &attacks {
        phone.send(
            &in_dialog(&phone, &call, "BYE", &evil_uri, routes, cseq),
            sip,
        );
        cseq += 1;
        let back = phone.drain(QUIET);
        let back: Vec<&Msg> = back.iter().filter(|m| m.call_id() == call.cid).collect();
        if back.len() != 1 || back.first().and_then(|m| m.status()) != Some(403) {
            let lines: Vec<&str> = back.iter().map(|m| m.first_line()).collect();
            lab.fail(format!(
                "BYE with {what}: phone got {lines:?} in {QUIET:?} (want exactly one 403)"
            ));
        }
        lab.expect_silence(
            &attacker,
            Duration::from_millis(100),
            &format!("attacker ({what})"),
        );
        lab.expect_none_of(
            &core,
            &call.cid,
            Duration::from_millis(100),
            &format!("core ({what})"),
        );
    }
    let invalid = lab.sec("route_token_invalid") - invalid_before;
    assert_eq!(
        invalid,
        attacks.len() as f64,
        "{test}: route_token_invalid +{invalid}"
    );

    // No Route of ours at all (only the attacker's): goes to the core, never to the attacker.
    phone.send(
        &in_dialog(
            &phone,
            &call,
            "INFO",
            &evil_uri,
            &[format!("<sip:{};lr>", attacker.addr)],
            cseq,
        ),
        sip,
    );
    let info = lab.expect_req(
        &core,
        "INFO",
        &call.cid,
        cseq,
        "core (INFO without our Route)",
    );
    core.send(&response_to(&info, 200, "OK", None, &[], ""), info.from);
    lab.expect_final(&phone, &call.cid, "INFO", "phone (INFO)");
    lab.expect_silence(&attacker, QUIET, "attacker (INFO with only its Route)");
    cseq += 1;

    // Legit: the BYE with the route set from the 200 reaches the core, our Route consumed.
    phone.send(
        &in_dialog(&phone, &call, "BYE", &call.target, &call.routes, cseq),
        sip,
    );
    let bye = lab.expect_req(&core, "BYE", &call.cid, cseq, "core (legit BYE)");
    if bye.headers("route").iter().any(|r| r.contains("etk=")) {
        lab.fail(format!("our Route not consumed:\n{}", bye.text));
    }
    core.send(&response_to(&bye, 200, "OK", None, &[], ""), bye.from);
    let ok = lab.expect_final(&phone, &call.cid, "BYE", "phone (legit BYE)");
    assert_eq!(
        ok.status(),
        Some(200),
        "{test}: legit BYE answered {}",
        ok.first_line()
    );
    eprintln!("{test}: PASS {} forged-route BYEs got one 403 each (counted), attacker-only Route went to the core, legit BYE 200", attacks.len());
}

// ---- 7 ----

#[test]
fn spoofed_responses_are_dropped() {
    let test = "spoofed_responses_are_dropped";
    let Some((mut lab, core, attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let sip = lab.sip();
    let phone = Peer::bind(ACCESS_IP, 0);
    let before = lab.sec("response_wrong_source");
    let cid = uid("spoof");
    phone.send(&phone_invite(&phone, &cid, &[]), sip);
    let got = lab.expect_req(&core, "INVITE", &cid, 1, "core");
    // From the attacker, and from the core's IP but another port.
    let evil_contact = [format!("Contact: <sip:evil@{}>", attacker.addr)];
    attacker.send(
        &response_to(&got, 200, "OK", Some("evil"), &evil_contact, ""),
        sip,
    );
    let near = Peer::bind(CORE_IP, 0);
    near.send(
        &response_to(&got, 200, "OK", Some("evil2"), &evil_contact, ""),
        sip,
    );
    if let Some(m) = phone.recv_where(QUIET, |m| {
        m.call_id() == cid && m.status().is_some_and(|s| s >= 200)
    }) {
        lab.fail(format!(
            "a spoofed final response reached the phone:\n{}",
            m.text
        ));
    }
    let wrong = lab.sec("response_wrong_source") - before;
    assert_eq!(
        wrong, 2.0,
        "{test}: response_wrong_source +{wrong}, want +2"
    );
    // Legit: the core's own 200.
    let ok_contact = [format!("Contact: <sip:bob@{}>", core.addr)];
    core.send(
        &response_to(&got, 200, "OK", Some("real"), &ok_contact, ""),
        got.from,
    );
    let ok = lab.expect_final(&phone, &cid, "INVITE", "phone");
    if ok.status() != Some(200) || ok.tag("to") != Some("real") {
        lab.fail(format!(
            "phone got {} with To tag {:?} (want the core's 200, tag real)",
            ok.first_line(),
            ok.tag("to")
        ));
    }
    eprintln!(
        "{test}: PASS 200s from {} and {} dropped (+2), the core's 200 relayed",
        attacker.addr, near.addr
    );
}

// ---- 8: torture ----

#[test]
fn torture_unclosed_contact_gets_400() {
    let test = "torture_unclosed_contact_gets_400";
    let Some((mut lab, core, _attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let sip = lab.sip();
    let phone = Peer::bind(ACCESS_IP, 0);
    let cid = uid("contact");
    let bad = phone_invite(&phone, &cid, &[]).replacen(
        &format!("Contact: <sip:alice@{}>", phone.addr),
        "Contact: <sip:x@1.2.3.4",
        1,
    );
    phone.send(&bad, sip);
    let fin = lab.expect_final(&phone, &cid, "INVITE", "phone");
    if fin.status() != Some(400) {
        lab.fail(format!(
            "Contact without '>' answered {} (want 400)",
            fin.first_line()
        ));
    }
    // Not ACKed here: the ACK of a stateless reject is ack_of_stateless_reject_is_absorbed's.
    lab.expect_none_of(&core, &cid, QUIET, "core (unclosed Contact)");
    // Legit: the same Contact closed.
    let cid2 = uid("contact-ok");
    let good = phone_invite(&phone, &cid2, &[]).replacen(
        &format!("Contact: <sip:alice@{}>", phone.addr),
        "Contact: <sip:x@1.2.3.4>",
        1,
    );
    phone.send(&good, sip);
    let got = lab.expect_req(&core, "INVITE", &cid2, 1, "core (closed Contact)");
    lab.busy(&core, &got, "c", &phone, &good, &cid2, "phone");
    eprintln!("{test}: PASS '<' without '>' → 400, closed Contact forwarded");
}

fn multipart(with_sdp: bool, phone: &Peer) -> String {
    let second = if with_sdp {
        format!(
            "Content-Type: application/sdp\r\n\r\n{}",
            e2e::attacker::sdp(phone.addr.ip(), 4000)
        )
    } else {
        "Content-Type: text/plain\r\n\r\nhello\r\n".to_string()
    };
    format!("--b1\r\nContent-Type: text/plain\r\n\r\nnote\r\n--b1\r\n{second}\r\n--b1--\r\n")
}

#[test]
fn torture_sdp_in_multipart_gets_415_when_anchoring() {
    let test = "torture_sdp_in_multipart_gets_415_when_anchoring";
    // No relay listens there: the 415 must be decided before the relay is asked.
    let relay = format!("{}:{}", CORE_IP, free_port());
    let Some((mut lab, core, _attacker)) =
        Lab::start(test, false, &["--media-mode", "always", "--relay", &relay])
    else {
        return;
    };
    let sip = lab.sip();
    let phone = Peer::bind(ACCESS_IP, 0);
    let ct = "Content-Type: multipart/mixed;boundary=b1".to_string();
    let cid = uid("mp");
    let body = multipart(true, &phone);
    let inv = request(
        "INVITE",
        "sip:bob@example.test",
        phone.addr,
        &uid("br"),
        &cid,
        &format!("ft-{cid}"),
        None,
        1,
        &[format!("Contact: <sip:alice@{}>", phone.addr), ct.clone()],
        &body,
    );
    phone.send(&inv, sip);
    let fin = lab.expect_final(&phone, &cid, "INVITE", "phone");
    if fin.status() != Some(415) {
        lab.fail(format!(
            "multipart with SDP while anchoring answered {} (want 415)",
            fin.first_line()
        ));
    }
    phone.send(&ack_non2xx(&inv, &fin), sip);
    lab.expect_none_of(&core, &cid, QUIET, "core (multipart SDP)");
    // Legit: multipart without SDP is forwarded.
    let cid2 = uid("mp-ok");
    let inv2 = request(
        "INVITE",
        "sip:bob@example.test",
        phone.addr,
        &uid("br"),
        &cid2,
        &format!("ft-{cid2}"),
        None,
        1,
        &[format!("Contact: <sip:alice@{}>", phone.addr), ct],
        &multipart(false, &phone),
    );
    phone.send(&inv2, sip);
    let got = lab.expect_req(&core, "INVITE", &cid2, 1, "core (multipart without SDP)");
    core.send(
        &response_to(&got, 486, "Busy Here", Some("c"), &[], ""),
        got.from,
    );
    if let Some(f) = phone.recv_where(T, |m| {
        m.call_id() == cid2 && m.status().is_some_and(|s| s >= 200)
    }) {
        phone.send(&ack_non2xx(&inv2, &f), sip);
    }
    eprintln!(
        "{test}: PASS SDP in multipart → 415 while anchoring, multipart without SDP forwarded"
    );
}

fn big_invite(phone: &Peer, cid: &str) -> String {
    let pad = "x".repeat(6000);
    request(
        "INVITE",
        "sip:bob@example.test",
        phone.addr,
        &uid("br"),
        cid,
        &format!("ft-{cid}"),
        None,
        1,
        &[
            format!("Contact: <sip:alice@{}>", phone.addr),
            "Content-Type: text/plain".to_string(),
        ],
        &pad,
    )
}

#[test]
fn torture_oversize_udp_request_513_or_tcp() {
    let test = "torture_oversize_udp_request_513_or_tcp";
    let Some((mut lab, core, _attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let phone = Peer::bind(ACCESS_IP, 0);
    let cid = uid("big");
    let inv = big_invite(&phone, &cid);
    phone.send(&inv, lab.sip());
    let fin = lab.expect_final(&phone, &cid, "INVITE", "phone");
    if fin.status() != Some(513) {
        lab.fail(format!(
            "6 KB INVITE without TCP answered {} (want 513)",
            fin.first_line()
        ));
    }
    phone.send(&ack_non2xx(&inv, &fin), lab.sip());
    lab.expect_none_of(
        &core,
        &cid,
        Duration::from_millis(500),
        "core (6 KB over UDP)",
    );
    drop(lab);

    // With a TCP listener: the core gets it over TCP.
    let Some((mut lab, core, _attacker)) = Lab::start(test, true, &[]) else {
        return;
    };
    let cid2 = uid("big-tcp");
    phone.send(&big_invite(&phone, &cid2), lab.sip());
    let listener = lab
        .core_tcp
        .take()
        .unwrap_or_else(|| panic!("{test}: no TCP core"));
    let got = tcp_accept_message(&listener, T);
    match got {
        Some(m) if m.call_id() == cid2 && m.method() == Some("INVITE") => {
            if !m
                .header("via")
                .is_some_and(|v| v.starts_with("SIP/2.0/TCP"))
            {
                lab.fail(format!(
                    "INVITE over TCP with a non-TCP top Via:\n{}",
                    m.first_line()
                ));
            }
        }
        Some(m) => lab.fail(format!("core got over TCP:\n{}", m.text)),
        None => lab.fail("core got nothing over TCP".to_string()),
    }
    lab.expect_none_of(
        &core,
        &cid2,
        Duration::from_millis(200),
        "core over UDP (6 KB)",
    );
    eprintln!("{test}: PASS 6 KB INVITE → 513 without TCP, over TCP to the core with it");
}

#[test]
fn torture_nated_unregistered_contact_fixed() {
    let test = "torture_nated_unregistered_contact_fixed";
    let Some((mut lab, core, _attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let sip = lab.sip();
    let phone = Peer::bind(ACCESS_IP, 0);
    let cid = uid("nat");
    let private = "192.168.1.10:5060";
    let inv = request(
        "INVITE",
        "sip:bob@example.test",
        private.parse().unwrap_or(phone.addr),
        &uid("br"),
        &cid,
        &format!("ft-{cid}"),
        None,
        1,
        &[format!("Contact: <sip:alice@{private}>")],
        "",
    );
    phone.send(&inv, sip);
    let got = lab.expect_req(&core, "INVITE", &cid, 1, "core (NATed)");
    let contact = got
        .values("contact")
        .first()
        .map(|c| uri_of(c).to_string())
        .unwrap_or_default();
    if !contact.contains(&phone.addr.to_string()) {
        lab.fail(format!(
            "NATed phone's Contact at the core is {contact:?} (want {})",
            phone.addr
        ));
    }
    lab.busy(
        &core,
        &got,
        "c",
        &phone,
        &inv,
        &cid,
        "phone (NATed, answered via rport)",
    );
    // Legit: a phone announcing its real address keeps its Contact.
    let cid2 = uid("nat-ok");
    let inv2 = phone_invite(&phone, &cid2, &[]);
    phone.send(&inv2, sip);
    let got2 = lab.expect_req(&core, "INVITE", &cid2, 1, "core (not NATed)");
    let c2 = got2
        .values("contact")
        .first()
        .map(|c| uri_of(c).to_string())
        .unwrap_or_default();
    assert_eq!(
        c2,
        format!("sip:alice@{}", phone.addr),
        "{test}: public Contact changed"
    );
    lab.busy(&core, &got2, "c", &phone, &inv2, &cid2, "phone");
    eprintln!(
        "{test}: PASS private Contact {private} → {contact} at the core; public Contact kept"
    );
}

// ---- ACK of a stateless reject ----

/// The ACK a phone sends for a stateless early reject of its INVITE (RFC 3261 §17.1.1.3; the To
/// tag is the edge's own) belongs to the edge: it must not be forwarded to the core.
#[test]
fn ack_of_stateless_reject_is_absorbed() {
    let test = "ack_of_stateless_reject_is_absorbed";
    let Some((mut lab, core, _attacker)) = Lab::start(test, false, &[]) else {
        return;
    };
    let sip = lab.sip();
    let phone = Peer::bind(ACCESS_IP, 0);
    let contact = format!("Contact: <sip:alice@{}>", phone.addr);
    let cases: Vec<(&str, String)> = vec![
        ("483 Max-Forwards 0", {
            let cid = uid("ack483");
            phone_invite(&phone, &cid, &[]).replacen("Max-Forwards: 70", "Max-Forwards: 0", 1)
        }),
        ("420 Proxy-Require", {
            let cid = uid("ack420");
            phone_invite(&phone, &cid, &["Proxy-Require: x-evil".to_string()])
        }),
        ("400 unclosed Contact", {
            let cid = uid("ack400");
            phone_invite(&phone, &cid, &[]).replacen(&contact, "Contact: <sip:x@1.2.3.4", 1)
        }),
    ];
    let mut leaked = Vec::new();
    for (what, inv) in &cases {
        let m = Msg {
            text: inv.clone(),
            from: phone.addr,
        };
        let cid = m.call_id().to_string();
        phone.send(inv, sip);
        let fin = lab.expect_final(&phone, &cid, "INVITE", what);
        phone.send(&ack_non2xx(inv, &fin), sip);
        if let Some(got) = core.recv_where(Duration::from_secs(1), |m| m.call_id() == cid) {
            leaked.push(format!(
                "{what} (answered {}): the phone's ACK reached the core as\n{}",
                fin.first_line(),
                got.text
            ));
        }
    }
    if !leaked.is_empty() {
        lab.fail(format!(
            "{} of {} ACKs of stateless rejects forwarded to the core:\n{}",
            leaked.len(),
            cases.len(),
            leaked.join("\n")
        ));
    }
    eprintln!("{test}: PASS ACKs of 483/420/400 absorbed");
}

/// What one access-side address may hold: server transactions
/// (`limits.max_transactions_per_source`: beyond it a stateless 503, the core sees nothing)
/// and bindings (`registrar.max_bindings_per_source`: beyond it 403). Other addresses are not
/// affected.
#[test]
fn per_source_limits_on_transactions_and_bindings() {
    let test = "per_source_limits_on_transactions_and_bindings";
    let cfg_dir = WorkDir::new("per_source_cfg");
    let cfg = cfg_dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        "[limits]\nmax_transactions_per_source = 5\n[registrar]\nmax_bindings_per_source = 3\n",
    )
    .expect("write edge.toml");
    let cfg_arg = cfg.display().to_string();
    let Some((mut lab, core, _attacker)) = Lab::start(test, false, &["--config", &cfg_arg]) else {
        return;
    };
    let sip = lab.sip();
    // Transactions: five INVITEs the core never answers hold five server transactions (an
    // address of its own: the harness's readiness OPTIONS holds one on ACCESS_IP).
    let phone = Peer::bind("127.0.0.8".parse().expect("ip"), 0);
    for i in 0..5 {
        let cid = uid(&format!("tx{i}"));
        phone.send(&phone_invite(&phone, &cid, &[]), sip);
        lab.expect_req(&core, "INVITE", &cid, 1, "core");
    }
    let over = uid("tx-over");
    phone.send(&phone_invite(&phone, &over, &[]), sip);
    let answers: Vec<Msg> = phone
        .drain(Duration::from_millis(800))
        .into_iter()
        .filter(|m| m.call_id() == over)
        .collect();
    if answers.len() != 1 || answers[0].status() != Some(503) {
        let got: Vec<String> = answers.iter().map(|m| m.first_line().to_string()).collect();
        lab.fail(format!(
            "6th INVITE from one source: want one stateless 503, got {got:?}"
        ));
    }
    lab.expect_none_of(&core, &over, QUIET, "core");
    // Another address is not limited.
    let other = Peer::bind("127.0.0.6".parse().expect("ip"), 0);
    let cid = uid("tx-other");
    other.send(&phone_invite(&other, &cid, &[]), sip);
    lab.expect_req(&core, "INVITE", &cid, 1, "core");
    assert_eq!(lab.sec("source_transaction_limit"), 1.0);

    // Bindings: three AoRs from one address register; the fourth gets 403 from the edge.
    let site = Peer::bind("127.0.0.7".parse().expect("ip"), 0);
    for i in 0..4 {
        let cid = uid(&format!("reg{i}"));
        let user = format!("user{i}");
        let reg = register(
            &site,
            &cid,
            1,
            &format!("<sip:{user}@{}>", site.addr),
            300,
            &[],
        )
        .replace("alice@", &format!("{user}@"));
        site.send(&reg, sip);
        if i < 3 {
            let fwd = lab.expect_req(&core, "REGISTER", &cid, 1, "core");
            core.send(&register_ok(&fwd, 300), fwd.from);
            let ok = lab.expect_final(&site, &cid, "REGISTER", "site");
            assert_eq!(ok.status(), Some(200), "{}", ok.text);
        } else {
            let r = lab.expect_final(&site, &cid, "REGISTER", "site");
            assert_eq!(r.status(), Some(403), "{}", r.text);
            lab.expect_none_of(&core, &cid, QUIET, "core");
        }
    }
    eprintln!(
        "{test}: 6th INVITE from one source answered 503 statelessly; 4th AoR from one source 403"
    );
}
