//! Network namespaces for tests that need several hosts (phone, NAT, core): commands run with
//! checked exit status, processes started inside a namespace, namespaces deleted on drop.

use crate::process::ChildGuard;
use std::path::Path;
use std::process::{Command, Stdio};

/// The test's namespaces; deleted on drop. Declare it before the processes that run inside, so
/// they are stopped first.
pub struct Namespaces(pub Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `args` and panics with its stderr unless it succeeds.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args` and returns its stdout (whatever the exit status).
pub fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `cmd` inside namespace `ns`, output to `log`; stopped by PID when the guard drops.
pub fn spawn_in(ns: &str, name: &str, log: &Path, cmd: &[&str]) -> ChildGuard {
    let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let err = file.try_clone().unwrap_or_else(|e| panic!("dup log: {e}"));
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    ChildGuard::new(name, child)
}

/// Addresses of a [`NatLab`], each on a /24 of its link.
pub struct NatAddrs<'a> {
    pub phone: &'a str,
    pub nat_lan: &'a str,
    pub nat_wan: &'a str,
    pub carrier: &'a str,
}

/// The NAT test topology: a phone namespace behind a NAT namespace (UDP masqueraded to ports
/// 20000–20099 on its WAN side, as a home router does) in front of a carrier namespace where
/// the edge, relay and core run. One veth pair per link. Declare it before the processes that
/// run inside, so they are stopped before the namespaces go.
pub struct NatLab {
    pub phone: String,
    pub nat: String,
    pub carrier: String,
    /// The NAT's WAN-side device (in `nat`).
    pub wan_dev: String,
    /// Deleted on drop, after any field declared above has been dropped.
    pub namespaces: Namespaces,
}

impl NatLab {
    /// Builds the topology; `tag` (≤ 4 characters) keeps concurrent tests apart and
    /// `conntrack_udp_s` sets the NAT's UDP mapping timeout (binding expiry in seconds).
    pub fn build(tag: &str, a: &NatAddrs<'_>, conntrack_udp_s: Option<u32>) -> NatLab {
        let id = std::process::id() % 100_000;
        let name = |x: &str| format!("{tag}{x}{id}");
        let (p, n, c) = (name("p"), name("n"), name("c"));
        let namespaces = Namespaces(vec![p.clone(), n.clone(), c.clone()]);
        for ns in [&p, &n, &c] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (vp, vn, vw, vc) = (name("vp"), name("vn"), name("vw"), name("vc"));
        link(&p, &vp, &n, &vn);
        link(&n, &vw, &c, &vc);
        for (ns, dev, addr) in [
            (&p, &vp, a.phone),
            (&n, &vn, a.nat_lan),
            (&n, &vw, a.nat_wan),
            (&c, &vc, a.carrier),
        ] {
            address(ns, dev, &format!("{addr}/24"));
        }
        run(&["ip", "-n", &p, "route", "add", "default", "via", a.nat_lan]);
        let nat = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", n.as_str()];
            all.extend_from_slice(args);
            run(&all);
        };
        nat(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        nat(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            &vw,
            "-p",
            "udp",
            "-j",
            "MASQUERADE",
            "--to-ports",
            "20000-20099",
        ]);
        // Conntrack exists in this namespace once the nat rule is in.
        if let Some(s) = conntrack_udp_s {
            for key in [
                "nf_conntrack_udp_timeout",
                "nf_conntrack_udp_timeout_stream",
            ] {
                nat(&["sysctl", "-qw", &format!("net.netfilter.{key}={s}")]);
            }
        }
        NatLab {
            phone: p,
            nat: n,
            carrier: c,
            wan_dev: vw,
            namespaces,
        }
    }
}

/// A veth pair: `dev_a` in namespace `a`, `dev_b` in `b`.
pub fn link(a: &str, dev_a: &str, b: &str, dev_b: &str) {
    run(&[
        "ip", "link", "add", dev_a, "netns", a, "type", "veth", "peer", "name", dev_b, "netns", b,
    ]);
}

/// Adds `cidr` to `dev` in namespace `ns` and brings the device up.
pub fn address(ns: &str, dev: &str, cidr: &str) {
    run(&["ip", "-n", ns, "addr", "add", cidr, "dev", dev]);
    run(&["ip", "-n", ns, "link", "set", dev, "up"]);
}

/// Runs `f` on a new thread that has entered network namespace `ns` (setns(2) changes only the
/// calling thread's namespace): every socket it opens and every process it spawns (the edge,
/// SIPp, through the usual helpers, unchanged) lives in `ns`. A panic in `f` is re-raised here
/// with its message. Panics if the namespace cannot be entered.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            use std::os::fd::AsRawFd;
            // SAFETY: setns(2) on an open namespace file; it affects this thread only, which
            // runs `f` and ends.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
