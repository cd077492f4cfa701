//! Static routing policy: which side a request came from and where access-side requests go.
//!
//! Sources inside `routing.trusted_networks`, or whose ip:port is one of the core addresses, are
//! *core side*; everything else is *access side* (phones). The port matters: on a shared host
//! (or loopback) phones and the core may share an IP. A TCP flow the edge opened toward the core
//! has the core's address as its remote, so it classifies as core side too. Access-side requests go to the core; the core
//! is an ordered list and the first healthy entry wins. An entry that timed out, refused a
//! connection or answered 503 is skipped for [`DOWN_FOR`] (or the 503's Retry-After) before it is
//! tried again (failover, not load sharing; RFC 3263 §4.3).

use crate::transport::{Dest, Source};
use config::{CoreTarget, IpNet, RoutingConfig};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a core entry that failed stays out of rotation.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

/// Upper bound on a 503's Retry-After: a bogus huge value must not remove a core for good.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Access,
    Core,
}

/// One core entry and, while it is out of rotation, until when.
type Entry = (CoreTarget, Option<Instant>);

pub struct Policy {
    core: Vec<Entry>,
    trusted: Vec<IpNet>,
}

impl Policy {
    pub fn new(cfg: &RoutingConfig) -> Self {
        Policy {
            core: cfg.core_targets().into_iter().map(|c| (c, None)).collect(),
            trusted: cfg.trusted_networks.clone(),
        }
    }

    pub fn side(&self, src: &Source) -> Side {
        let ip = canonical(src.remote.ip());
        let trusted = self.trusted.iter().any(|n| n.contains(&ip))
            || self
                .core
                .iter()
                .any(|(c, _)| canonical(c.addr.ip()) == ip && c.addr.port() == src.remote.port());
        if trusted {
            Side::Core
        } else {
            Side::Access
        }
    }

    /// The first healthy core entry; if all are down, the one that comes back soonest.
    pub fn core_dest(&self, now: Instant) -> Option<Dest> {
        let healthy = self.core.iter().find(|e| is_healthy(e, now));
        let pick = healthy.or_else(|| self.core.iter().min_by_key(|(_, down)| *down));
        pick.map(|(c, _)| dest_of(c))
    }

    /// Serial failover (RFC 3263 §4.3): the first healthy entry not in `tried`. `None` when
    /// every healthy entry was tried: the request's failure then goes upstream.
    pub fn next_core(&self, now: Instant, tried: &[Dest]) -> Option<Dest> {
        self.core
            .iter()
            .filter(|e| is_healthy(e, now))
            .map(|(c, _)| dest_of(c))
            .find(|d| !tried.iter().any(|t| same_entry(t, d)))
    }

    /// Every core entry, in order of preference (for health probes).
    pub fn core_dests(&self) -> Vec<Dest> {
        self.core.iter().map(|(c, _)| dest_of(c)).collect()
    }

    /// True when `dest` is one of the core entries.
    pub fn is_core(&self, dest: &Dest) -> bool {
        self.core.iter().any(|(c, _)| same_entry(&dest_of(c), dest))
    }

    /// A request to `dest` timed out or could not be sent.
    pub fn mark_down(&mut self, dest: &Dest, now: Instant) {
        self.mark_down_for(dest, now, DOWN_FOR);
    }

    /// `dest` is out of rotation for `period` (a 503's Retry-After, RFC 3261 §21.5.4, capped at
    /// [`MAX_RETRY_AFTER`]).
    pub fn mark_down_for(&mut self, dest: &Dest, now: Instant, period: Duration) {
        let until = now + period.min(MAX_RETRY_AFTER);
        for (c, down) in &mut self.core {
            if same_entry(&dest_of(c), dest) {
                *down = Some(until);
            }
        }
    }

    /// `dest` answered: it is healthy again.
    pub fn mark_up(&mut self, dest: &Dest) {
        for (c, down) in &mut self.core {
            if c.addr == dest.addr {
                *down = None;
            }
        }
    }
}

fn is_healthy((_, down): &Entry, now: Instant) -> bool {
    down.is_none_or(|until| now >= until)
}

fn dest_of(c: &CoreTarget) -> Dest {
    Dest {
        transport: c.transport,
        addr: c.addr,
        flow: None,
    }
}

/// Same core entry: address and transport (the TCP flow a request went over does not matter).
fn same_entry(a: &Dest, b: &Dest) -> bool {
    a.addr == b.addr && a.transport == b.transport
}

/// IPv4-mapped IPv6 sources compare equal to their IPv4 form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;

    fn src(ip: &str) -> Source {
        src_port(ip, 5060)
    }

    fn src_port(ip: &str, port: u16) -> Source {
        Source {
            transport: Transport::Udp,
            remote: std::net::SocketAddr::new(ip.parse().unwrap(), port),
            local: "127.0.0.1:5060".parse().unwrap(),
            flow: None,
        }
    }

    fn policy(core: &[&str], trusted: &[&str]) -> Policy {
        Policy::new(&RoutingConfig {
            core: core.iter().map(|s| s.to_string()).collect(),
            trusted_networks: trusted.iter().map(|s| s.parse().unwrap()).collect(),
            ..RoutingConfig::default()
        })
    }

    #[test]
    fn sides() {
        let p = policy(&["10.0.0.5:5060"], &["192.168.0.0/16"]);
        assert_eq!(p.side(&src("10.0.0.5")), Side::Core);
        assert_eq!(p.side(&src("192.168.7.1")), Side::Core);
        assert_eq!(p.side(&src("::ffff:10.0.0.5")), Side::Core);
        assert_eq!(p.side(&src("10.0.0.6")), Side::Access);
        // Same IP as the core, other port: a phone on the core's host is still access side.
        assert_eq!(p.side(&src_port("10.0.0.5", 5062)), Side::Access);
        assert_eq!(p.side(&src_port("192.168.7.1", 5062)), Side::Core);
    }

    #[test]
    fn failover_and_recovery() {
        let mut p = policy(&["10.0.0.5:5060", "tcp:10.0.0.6:5060"], &[]);
        let t0 = Instant::now();
        let first = p.core_dest(t0).unwrap();
        assert_eq!(first.addr.to_string(), "10.0.0.5:5060");
        p.mark_down(&first, t0);
        let second = p.core_dest(t0).unwrap();
        assert_eq!(second.addr.to_string(), "10.0.0.6:5060");
        assert_eq!(second.transport, Transport::Tcp);
        // Both down: the one that comes back soonest is retried.
        p.mark_down(&second, t0 + Duration::from_secs(1));
        assert_eq!(p.core_dest(t0 + Duration::from_secs(2)).unwrap(), first);
        // After DOWN_FOR the first is healthy again.
        assert_eq!(p.core_dest(t0 + DOWN_FOR).unwrap(), first);
        p.mark_up(&first);
        assert_eq!(p.core_dest(t0).unwrap(), first);
    }

    #[test]
    fn priority_orders_the_core_list() {
        let mut p = policy(
            &[
                "10.0.0.5:5060;priority=10",
                "10.0.0.6:5060;priority=10",
                "10.0.0.7:5060",
            ],
            &[],
        );
        let t0 = Instant::now();
        let a = p.core_dest(t0).unwrap();
        assert_eq!(a.addr.to_string(), "10.0.0.7:5060");
        p.mark_down(&a, t0);
        // Equal priorities: list order.
        assert_eq!(p.core_dest(t0).unwrap().addr.to_string(), "10.0.0.5:5060");
        assert_eq!(p.side(&src("10.0.0.6")), Side::Core);
    }

    #[test]
    fn retry_after_and_serial_failover() {
        let mut p = policy(&["10.0.0.5:5060", "10.0.0.6:5060", "10.0.0.7:5060"], &[]);
        let t0 = Instant::now();
        let a = p.core_dest(t0).unwrap();
        // A 503 with Retry-After: 120 keeps it out for 120 s, not DOWN_FOR.
        p.mark_down_for(&a, t0, Duration::from_secs(120));
        assert_ne!(p.core_dest(t0 + DOWN_FOR).unwrap(), a);
        assert_eq!(p.core_dest(t0 + Duration::from_secs(120)).unwrap(), a);
        // Huge Retry-After values are capped.
        p.mark_down_for(&a, t0, Duration::from_secs(1 << 30));
        assert_eq!(p.core_dest(t0 + MAX_RETRY_AFTER).unwrap(), a);
        // next_core skips what this request tried and what is down.
        let b = p.next_core(t0, &[a]).unwrap();
        assert_eq!(b.addr.to_string(), "10.0.0.6:5060");
        let c = p.next_core(t0, &[a, b]).unwrap();
        assert_eq!(c.addr.to_string(), "10.0.0.7:5060");
        assert_eq!(p.next_core(t0, &[a, b, c]), None);
        p.mark_down(&c, t0);
        assert_eq!(p.next_core(t0, &[a, b]), None, "c is down");
        assert!(p.is_core(&b));
        assert!(!p.is_core(&Dest {
            transport: Transport::Tcp,
            ..b
        }));
    }
}
