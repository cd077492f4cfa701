//! Baseline of the real-phone interop suite: unmodified baresip phones registered directly at
//! Kamailio (`tests/kamailio/interop.cfg`: digest auth, registrar with GRUU, record-routing
//! proxy), Kamailio as their outbound proxy, no edge and no relay. The same scenarios as
//! `interop_phones.rs` must pass here; if they fail there but not here, the edge or the relay is
//! at fault, not the phones, the harness or the core.
//!
//! Phones on 127.0.0.2 (alice 440 Hz, bob 1000 Hz, carol 700 Hz), Kamailio on 127.0.0.3.
//! Skips when baresip or Kamailio is not installed.

use e2e::kamailio::{Kamailio, KAMAILIO};
use e2e::phones::baresip::{self, Baresip, PhoneSpec};
use e2e::phones::calls;
use e2e::ports::PHONE_IP;
use e2e::workdir::{tail, WorkDir};
use std::time::Duration;

const DOMAIN: &str = "example.test";

fn tools(test: &str) -> bool {
    if !std::path::Path::new(KAMAILIO).is_file() {
        e2e::skip::skip(
            test,
            format!("{KAMAILIO} not found (install the kamailio package)"),
        );
        return false;
    }
    baresip::available(test)
}

/// alice, bob and carol registered at Kamailio, which is also their outbound proxy.
fn setup(dir: &WorkDir) -> (Kamailio, Vec<Baresip>) {
    // No edge in this test: the alias is unused, any address will do.
    let core = Kamailio::start_cfg(dir, "interop.cfg", &[("@EDGE_ALIAS@", "edge.invalid")]);
    let bob_uri = format!("sip:bob@{DOMAIN}");
    let specs = [
        PhoneSpec::new("alice", DOMAIN, PHONE_IP, 440.0)
            .outbound(core.sip)
            .message_to(&bob_uri),
        PhoneSpec::new("bob", DOMAIN, PHONE_IP, 1000.0).outbound(core.sip),
        PhoneSpec::new("carol", DOMAIN, PHONE_IP, 700.0).outbound(core.sip),
    ];
    let phones: Vec<Baresip> = specs
        .into_iter()
        .map(|s| Baresip::start(dir, s).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for p in &phones {
        if let Err(e) = p.wait_registered(Duration::from_secs(10)) {
            panic!("{e}\nkamailio log:\n{}", tail(&core.log, 3000));
        }
    }
    (core, phones)
}

fn check<T>(r: Result<T, String>, core: &Kamailio) -> T {
    r.unwrap_or_else(|e| panic!("{e}\n--- kamailio log:\n{}", tail(&core.log, 3000)))
}

#[test]
fn direct_phones_call_hold_transfer_message() {
    let test = "direct_phones_call_hold_transfer_message";
    if !tools(test) {
        return;
    }
    let dir = WorkDir::new(test);
    let (core, phones) = setup(&dir);
    let [alice, bob, carol] = &phones[..] else {
        unreachable!()
    };
    let bob_uri = format!("sip:bob@{DOMAIN}");
    let carol_uri = format!("sip:carol@{DOMAIN}");
    check(
        calls::call_with_audio("direct call", alice, bob, &bob_uri),
        &core,
    );
    check(
        calls::hold_resume("direct hold/resume", alice, bob, &bob_uri, None),
        &core,
    );
    check(
        calls::blind_transfer("direct transfer", alice, bob, carol, &bob_uri, &carol_uri),
        &core,
    );
    check(
        calls::message("direct MESSAGE", alice, bob, &bob_uri),
        &core,
    );
}
