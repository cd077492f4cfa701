//! Real phones through the edge: unmodified baresip phones register at Kamailio
//! (`tests/kamailio/interop.cfg`: digest auth, registrar with GRUU) through the edge's
//! mid-registrar, and call each other with audio anchored on a relay whose media address
//! (127.0.0.4) is not the phones' (127.0.0.1), so that no loopback coincidence hides a wrong
//! address in SDP.
//!
//! Phones (each plays its own tone; the far end's decoded audio is checked for it):
//! - alice 440 Hz, bob 1000 Hz, carol 700 Hz: carrier provisioning (a), AoR
//!   `sip:USER@example.test`, outbound proxy = the edge;
//! - erin 1600 Hz, frank 1900 Hz: provisioning (b), AoR `sip:USER@<edge ip:port>`, no outbound
//!   proxy;
//! - dave 1300 Hz: registered directly at Kamailio (off-net for the edge).
//!
//! Scenarios: registration (a) and (b); on-net call alice → bob (crosses the edge twice:
//! phone → edge → core → edge → phone); off-net call alice → dave; hold/resume; blind transfer
//! (bob transfers alice to carol); MESSAGE alice → bob; erin → frank (on-net, (b)); erin → bob. The full list in mirror mode,
//! registration + on-net + off-net in contact and aor modes and through rtpengine (mirror).
//! Plus a phone behind a MASQUERADE NAT (conntrack UDP timeout 10 s, edge keepalives every 5 s)
//! called after 15 s idle (root only).
//!
//! `interop_direct.rs` runs the same scenarios without the edge: the baseline. Each test runs
//! every scenario, prints `AUDIO <scenario>: ...` figures, and fails at the end listing every
//! failed scenario with the phones' events and logs, the edge's and Kamailio's log tails.
//! Skips when baresip, Kamailio or the workspace binaries are missing.

use e2e::edge::{Edge, EdgeArgs};
use e2e::heavy_lock;
use e2e::kamailio::{Kamailio, KAMAILIO};
use e2e::netns::{address, link, run, spawn_in, Namespaces, NatAddrs, NatLab};
use e2e::phones::baresip::{self, Baresip, PhoneSpec};
use e2e::phones::calls;
use e2e::ports::{EDGE_IP, PHONE_IP};
use e2e::relay::{relay_or_skip, Relay};
use e2e::rtpengine::{self, Rtpengine};
use e2e::tools::{edge_or_skip, workspace_bin};
use e2e::workdir::{tail, WorkDir};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

const DOMAIN: &str = "example.test";
/// The relay's media address: not the phones' address.
const MEDIA_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const REGISTER_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq)]
enum RelayKind {
    Rtprelay,
    Rtpengine,
}

struct Tools {
    edge: PathBuf,
    relay: PathBuf,
}

fn tools_or_skip(test: &str) -> Option<Tools> {
    if !std::path::Path::new(KAMAILIO).is_file() {
        e2e::skip::skip(
            test,
            format!("{KAMAILIO} not found (install the kamailio package)"),
        );
        return None;
    }
    if !baresip::available(test) {
        return None;
    }
    Some(Tools {
        edge: edge_or_skip(test)?,
        relay: relay_or_skip(test)?,
    })
}

/// Kamailio (interop core) + relay + edge, and the phones.
struct Stack {
    core: Kamailio,
    edge: Edge,
    relay: Option<Relay>,
    rtpengine: Option<Rtpengine>,
    phones: Vec<Baresip>,
    dir_path: PathBuf,
}

impl Stack {
    fn start(dir: &WorkDir, tools: &Tools, mode: &str, relay: RelayKind) -> Stack {
        // Phones provisioned with the edge's address as domain (b) are local users of the core
        // (a local domain in the script's checks, not an alias: see interop.cfg).
        let core = Kamailio::start_cfg(
            dir,
            "interop.cfg",
            &[("@EDGE_ALIAS@", &EDGE_IP.to_string())],
        );
        let (rtprelay, rtpengine, control) = match relay {
            RelayKind::Rtprelay => {
                let r = Relay::start_on(&tools.relay, dir, MEDIA_IP, &[])
                    .unwrap_or_else(|e| panic!("rtprelay: {} {}", e.message, e.log));
                let c = r.control_addr();
                (Some(r), None, c)
            }
            RelayKind::Rtpengine => {
                let e = Rtpengine::start(dir, MEDIA_IP.into());
                let c = e.control;
                (None, Some(e), c)
            }
        };
        let store = dir.path().join("store").join("location.log");
        let args = EdgeArgs::udp_core(core.sip).extra(&[
            "--registrar-mode",
            mode,
            "--store",
            store.to_str().expect("utf-8 path"),
            "--media-mode",
            "always",
            "--relay",
            &control.to_string(),
            "--log-level",
            "debug",
        ]);
        let edge = Edge::start(&tools.edge, dir, &args)
            .unwrap_or_else(|e| panic!("edge did not start: {e}"));
        Stack {
            core,
            edge,
            relay: rtprelay,
            rtpengine,
            phones: Vec::new(),
            dir_path: dir.path().to_path_buf(),
        }
    }

    /// A carrier-provisioned phone (a): AoR at example.test, outbound proxy = the edge.
    fn carrier_phone(&self, user: &str, hz: f64) -> PhoneSpec {
        PhoneSpec::new(user, DOMAIN, PHONE_IP, hz).outbound(self.edge.sip_addr())
    }

    fn add(&mut self, dir: &WorkDir, spec: PhoneSpec) -> usize {
        let p = Baresip::start(dir, spec).unwrap_or_else(|e| panic!("{e}"));
        self.phones.push(p);
        self.phones.len() - 1
    }

    /// Edge, Kamailio and relay log tails.
    fn report(&mut self) -> String {
        let mut r = format!(
            "{}--- kamailio log {}:\n{}\n",
            self.edge.report(),
            self.core.log.display(),
            tail(&self.core.log, 3000)
        );
        if let Some(e) = &self.rtpengine {
            r.push_str(&format!("--- rtpengine log:\n{}\n", tail(&e.log, 2000)));
        }
        r.push_str(&format!("(all logs in {})\n", self.dir_path.display()));
        r
    }
}

/// Outcome of the scenarios of one test: failures are collected, the test fails at the end.
#[derive(Default)]
struct Outcomes(Vec<(String, Result<(), String>)>);

impl Outcomes {
    fn record<T>(&mut self, name: &str, r: Result<T, String>) -> bool {
        let ok = r.is_ok();
        eprintln!("SCENARIO {name}: {}", if ok { "ok" } else { "FAILED" });
        self.0.push((name.to_string(), r.map(|_| ())));
        ok
    }

    fn finish(self, test: &str, stack: &mut Stack) {
        let failed: Vec<&(String, Result<(), String>)> =
            self.0.iter().filter(|(_, r)| r.is_err()).collect();
        if failed.is_empty() {
            return;
        }
        let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
        let mut msg = format!("{test}: failed scenarios: {}\n", names.join(", "));
        for (name, r) in failed {
            if let Err(e) = r {
                msg.push_str(&format!("\n===== {name} =====\n{e}\n"));
            }
        }
        panic!("{msg}\n===== servers =====\n{}", stack.report());
    }
}

fn register_all(out: &mut Outcomes, label: &str, phones: &[&Baresip]) -> bool {
    let mut all = true;
    for p in phones {
        all &= out.record(
            &format!("{label} register {}", p.spec.aor()),
            p.wait_registered(REGISTER_WAIT),
        );
    }
    all
}

/// Registration (a) for alice/bob/carol and (b) for erin, dave direct at the core; then the
/// scenarios of `full` (everything) or just on-net + off-net calls.
fn run_suite(test: &str, mode: &str, relay: RelayKind, full: bool) {
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    if relay == RelayKind::Rtpengine && !rtpengine::available(test) {
        return;
    }
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let mut stack = Stack::start(&dir, &tools, mode, relay);
    let bob_uri = format!("sip:bob@{DOMAIN}");
    let carol_uri = format!("sip:carol@{DOMAIN}");
    let dave_uri = format!("sip:dave@{DOMAIN}");
    let alice = stack.carrier_phone("alice", 440.0).message_to(&bob_uri);
    let bob = stack.carrier_phone("bob", 1000.0);
    let dave = PhoneSpec::new("dave", DOMAIN, PHONE_IP, 1300.0).outbound(stack.core.sip);
    let (ia, ib, id) = (
        stack.add(&dir, alice),
        stack.add(&dir, bob),
        stack.add(&dir, dave),
    );
    let ic = full.then(|| {
        let carol = stack.carrier_phone("carol", 700.0);
        stack.add(&dir, carol)
    });
    let ie = full.then(|| {
        // Provisioning (b): the edge's address is the domain, no outbound proxy.
        let edge = stack.edge.sip_addr().to_string();
        stack.add(&dir, PhoneSpec::new("erin", &edge, PHONE_IP, 1600.0))
    });
    let i_f = full.then(|| {
        let edge = stack.edge.sip_addr().to_string();
        stack.add(&dir, PhoneSpec::new("frank", &edge, PHONE_IP, 1900.0))
    });
    let mut out = Outcomes::default();
    {
        let p = &stack.phones;
        let mut via_edge = vec![&p[ia], &p[ib]];
        if let Some(ic) = ic {
            via_edge.push(&p[ic]);
        }
        let reg_a = register_all(&mut out, &format!("{mode} (a)"), &via_edge);
        let reg_b = match (ie, i_f) {
            (Some(ie), Some(i_f)) => {
                register_all(&mut out, &format!("{mode} (b)"), &[&p[ie], &p[i_f]])
            }
            _ => true,
        };
        let reg_d = register_all(&mut out, "direct", &[&p[id]]);
        let (alice, bob, dave) = (&p[ia], &p[ib], &p[id]);
        if reg_a {
            let name = format!("{mode} on-net call");
            out.record(&name, calls::call_with_audio(&name, alice, bob, &bob_uri));
            if reg_d {
                let name = format!("{mode} off-net call");
                out.record(&name, calls::call_with_audio(&name, alice, dave, &dave_uri));
                let name = format!("{mode} call from the core side");
                out.record(&name, calls::call_with_audio(&name, dave, bob, &bob_uri));
            }
        }
        if full && reg_a {
            let name = format!("{mode} hold/resume");
            let relayed = stack
                .relay
                .as_ref()
                .map(|r| move || r.metric_sum("rtprelay_packets_forwarded_total", &[]));
            let relayed = relayed.as_ref().map(|f| f as &dyn Fn() -> f64);
            out.record(
                &name,
                calls::hold_resume(&name, alice, bob, &bob_uri, relayed),
            );
            if let Some(ic) = ic {
                let name = format!("{mode} blind transfer");
                out.record(
                    &name,
                    calls::blind_transfer(&name, alice, bob, &p[ic], &bob_uri, &carol_uri),
                );
            }
            let name = format!("{mode} MESSAGE");
            out.record(&name, calls::message(&name, alice, bob, &bob_uri));
        }
        if let (Some(ie), Some(i_f), true) = (ie, i_f, reg_b) {
            // On-net between two (b) phones: also crosses the edge twice.
            let name = format!("{mode} on-net call between (b) phones");
            let uri = p[i_f].spec.aor();
            out.record(&name, calls::call_with_audio(&name, &p[ie], &p[i_f], &uri));
        }
        if let (Some(ie), true, true) = (ie, reg_a, reg_b) {
            // A (b) phone has no outbound proxy: it can only dial users at the edge's
            // address (the core knows bob under any of its local domains).
            let name = format!("{mode} call from provisioning (b)");
            let at_edge = format!("sip:bob@{}", stack.edge.sip_addr());
            out.record(&name, calls::call_with_audio(&name, &p[ie], bob, &at_edge));
        }
    }
    out.finish(test, &mut stack);
}

#[test]
fn phones_through_edge_mirror_mode() {
    run_suite(
        "phones_through_edge_mirror_mode",
        "mirror",
        RelayKind::Rtprelay,
        true,
    );
}

#[test]
fn phones_through_edge_contact_mode() {
    run_suite(
        "phones_through_edge_contact_mode",
        "contact",
        RelayKind::Rtprelay,
        false,
    );
}

#[test]
fn phones_through_edge_aor_mode() {
    run_suite(
        "phones_through_edge_aor_mode",
        "aor",
        RelayKind::Rtprelay,
        false,
    );
}

#[test]
fn phones_through_edge_and_rtpengine() {
    run_suite(
        "phones_through_edge_and_rtpengine",
        "mirror",
        RelayKind::Rtpengine,
        false,
    );
}

// ---------------------------------------------------------------------------------------------
// NAT: bob in a phone namespace behind a MASQUERADE NAT namespace; edge, relay, Kamailio and
// alice in a "core" namespace reachable from the NAT's WAN side.

const NAT_PHONE_IP: &str = "10.79.0.2";
const NAT_LAN_IP: &str = "10.79.0.1";
const NAT_WAN_IP: &str = "198.18.3.1";
const NAT_CORE_IP: &str = "198.18.3.2";
/// alice's own network (not NATed), routed by the core namespace.
const ALICE_IP: &str = "198.18.4.2";
const ALICE_GW_IP: &str = "198.18.4.1";
/// Conntrack UDP timeout in the NAT: a mapping not refreshed for this long is gone.
const CONNTRACK_S: u32 = 10;
/// Idle time between bob's registration and the call: past the conntrack timeout.
const NAT_IDLE: Duration = Duration::from_secs(15);

#[test]
fn natted_phone_reached_after_conntrack_timeout() {
    let test = "natted_phone_reached_after_conntrack_timeout";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        e2e::skip::skip(test, "needs root for network namespaces and iptables");
        return;
    }
    let Some(tools) = tools_or_skip(test) else {
        return;
    };
    if workspace_bin("rtprelay").is_none() {
        return;
    }
    let _serial = heavy_lock();
    let dir = WorkDir::new(test);
    let lab = NatLab::build(
        "ip",
        &NatAddrs {
            phone: NAT_PHONE_IP,
            nat_lan: NAT_LAN_IP,
            nat_wan: NAT_WAN_IP,
            carrier: NAT_CORE_IP,
        },
        Some(CONNTRACK_S),
    );
    let (p, n, c) = (lab.phone.clone(), lab.nat.clone(), lab.carrier.clone());
    // alice (not NATed) has a namespace of her own: in the core namespace her RTP, sent from
    // a wildcard socket to the relay's local address, would leave with the relay's own IP as
    // source and be dropped by strict-source latching.
    let id = std::process::id() % 100_000;
    let a = format!("ial{id}");
    let _alice_ns = Namespaces(vec![a.clone()]);
    run(&["ip", "netns", "add", &a]);
    run(&["ip", "-n", &a, "link", "set", "lo", "up"]);
    let (va, vca) = (format!("iva{id}"), format!("ivca{id}"));
    link(&a, &va, &c, &vca);
    address(&a, &va, &format!("{ALICE_IP}/24"));
    address(&c, &vca, &format!("{ALICE_GW_IP}/24"));
    run(&[
        "ip",
        "-n",
        &a,
        "route",
        "add",
        "default",
        "via",
        ALICE_GW_IP,
    ]);
    // Two more core-side addresses: Kamailio's (the edge tells the core from phones by source
    // IP) and the relay's media address.
    let (kam_ip, media_ip) = ("198.18.3.3", "198.18.3.4");
    for addr in [kam_ip, media_ip] {
        address(&c, "lo", &format!("{addr}/32"));
    }

    // Kamailio in the core namespace (the helper's readiness probe runs on the host, so it is
    // started here by hand).
    let kam_port = "5070";
    let text = std::fs::read_to_string(e2e::kamailio::kamailio_dir().join("interop.cfg"))
        .expect("interop.cfg");
    let cfg = text
        .replace(
            "listen=udp:127.0.0.3:@SIP_PORT@",
            &format!("listen=udp:{kam_ip}:{kam_port}"),
        )
        .replace("@EDGE_ALIAS@", NAT_CORE_IP);
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).expect("write kamailio.cfg");
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("run dir");
    let kam_log = dir.path().join("kamailio.log");
    let _kam = spawn_in(
        &c,
        "kamailio",
        &kam_log,
        &[
            KAMAILIO,
            "-f",
            cfg_path.to_str().expect("utf-8"),
            "-DD",
            "-E",
            "-m",
            "64",
            "-M",
            "8",
            "-Y",
            run_dir.to_str().expect("utf-8"),
        ],
    );
    let relay_log = dir.path().join("rtprelay.log");
    let _relay = e2e::relay::spawn_in_netns(&c, &tools.relay, media_ip, &relay_log);
    let edge_toml = dir.path().join("edge.toml");
    std::fs::write(
        &edge_toml,
        "[registrar]\nnatping_interval_s = 5\nnatping_method = \"options\"\n",
    )
    .expect("edge.toml");
    let edge_bin = tools.edge.display().to_string();
    let edge_log = dir.path().join("edge.log");
    let store = dir.path().join("location.log");
    let _edge = spawn_in(
        &c,
        "edge",
        &edge_log,
        &[
            &edge_bin,
            "--config",
            edge_toml.to_str().expect("utf-8"),
            "--listen-udp",
            &format!("{NAT_CORE_IP}:5060"),
            "--core",
            &format!("udp:{kam_ip}:{kam_port}"),
            "--admin",
            "127.0.0.1:9560",
            "--media-mode",
            "always",
            "--relay",
            "127.0.0.1:22222",
            "--registrar-mode",
            "mirror",
            "--store",
            store.to_str().expect("utf-8"),
            "--health-interval",
            "0",
            "--log-level",
            "debug",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let edge_addr: SocketAddr = format!("{NAT_CORE_IP}:5060").parse().expect("addr");
    let bob_uri = format!("sip:bob@{DOMAIN}");
    let mut bob_spec = PhoneSpec::new("bob", DOMAIN, NAT_PHONE_IP.parse().expect("ip"), 1000.0)
        .outbound(edge_addr);
    bob_spec.netns = Some(p.clone());
    bob_spec.sip_port = 5062;
    let mut alice_spec =
        PhoneSpec::new("alice", DOMAIN, ALICE_IP.parse().expect("ip"), 440.0).outbound(edge_addr);
    alice_spec.netns = Some(a.clone());
    alice_spec.sip_port = 5064;
    let servers = || {
        format!(
            "--- edge log:\n{}\n--- kamailio log:\n{}\n--- rtprelay log:\n{}\n--- NAT conntrack:\n{}",
            tail(&edge_log, 4000),
            tail(&kam_log, 2000),
            tail(&relay_log, 1500),
            e2e::netns::output(&["ip", "netns", "exec", &n, "conntrack", "-L", "-p", "udp"])
        )
    };
    let bob = Baresip::start(&dir, bob_spec).unwrap_or_else(|e| panic!("{e}\n{}", servers()));
    let alice = Baresip::start(&dir, alice_spec).unwrap_or_else(|e| panic!("{e}\n{}", servers()));
    for ph in [&bob, &alice] {
        if let Err(e) = ph.wait_registered(REGISTER_WAIT) {
            panic!("{test}: {e}\n{}", servers());
        }
    }
    eprintln!(
        "{test}: bob registered from behind the NAT; idle {NAT_IDLE:?} (conntrack timeout {CONNTRACK_S} s)"
    );
    std::thread::sleep(NAT_IDLE);
    let name = "NAT: alice calls bob after the conntrack timeout";
    if let Err(e) = calls::call_with_audio(name, &alice, &bob, &bob_uri) {
        panic!("{test}: {e}\n{}", servers());
    }
}
