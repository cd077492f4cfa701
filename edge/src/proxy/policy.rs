//! Static routing policy: which side a request came from and where access-side requests go.
//!
//! Sources inside `routing.trusted_networks`, or whose ip:port is one of the core addresses, are
//! *core side*; everything else is *access side* (phones). The port matters: on a shared host
//! (or loopback) phones and the core may share an IP. A TCP flow the edge opened toward the core
//! has the core's address as its remote, so it classifies as core side too. Access-side requests go to the core; the core
//! is an ordered list and the first healthy entry wins. An entry that timed out or refused a
//! connection is skipped for [`DOWN_FOR`] before it is tried again (failover, not load sharing).

use crate::transport::{Dest, Source};
use config::{CoreTarget, IpNet, RoutingConfig};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a core entry that failed stays out of rotation.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Access,
    Core,
}

pub struct Policy {
    core: Vec<(CoreTarget, Option<Instant>)>,
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

    /// The first healthy core entry; if all are down, the one that has been down longest.
    pub fn core_dest(&self, now: Instant) -> Option<Dest> {
        let healthy = self
            .core
            .iter()
            .find(|(_, down)| down.is_none_or(|t| now >= t + DOWN_FOR));
        let pick = healthy.or_else(|| self.core.iter().min_by_key(|(_, down)| *down));
        pick.map(|(c, _)| Dest {
            transport: c.transport,
            addr: c.addr,
            flow: None,
        })
    }

    /// A request to `dest` timed out or could not be sent.
    pub fn mark_down(&mut self, dest: &Dest, now: Instant) {
        for (c, down) in &mut self.core {
            if c.addr == dest.addr && c.transport == dest.transport {
                *down = Some(now);
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
        // Both down: the one down longest is retried.
        p.mark_down(&second, t0 + Duration::from_secs(1));
        assert_eq!(p.core_dest(t0 + Duration::from_secs(2)).unwrap(), first);
        // After DOWN_FOR the first is healthy again.
        assert_eq!(p.core_dest(t0 + DOWN_FOR).unwrap(), first);
        p.mark_up(&first);
        assert_eq!(p.core_dest(t0).unwrap(), first);
    }
}
