//! Static routing policy: which side a request came from and where access-side requests go.
//!
//! Sources inside `routing.trusted_networks`, or whose ip:port is one of the core addresses, are
//! *core side*; everything else is *access side* (phones). The port matters: on a shared host
//! (or loopback) phones and the core may share an IP. A TCP flow the edge opened toward the core
//! has the core's address as its remote, so it classifies as core side too. Access-side requests go to the core; the core
//! is an ordered list and the first healthy entry wins. An entry that timed out, refused a
//! connection or answered 503 is skipped for [`DOWN_FOR`] (or the 503's Retry-After) before it is
//! tried again (failover, not load sharing; RFC 3263 §4.3). An entry given as a domain name
//! stands for the targets the shell resolved (SRV, then A/AAAA), in RFC 2782 order.

use super::srv::{self, Resolved};
use crate::transport::{Dest, Source};
use config::{CoreDomain, CoreEntry, IpNet, RoutingConfig, Transport};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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

/// One `routing.core` entry and where it currently points: one address, or for a domain name
/// what DNS returned, in RFC 2782 order (empty until the shell has resolved it).
struct Slot {
    entry: CoreEntry,
    targets: Vec<Dest>,
}

pub struct Policy {
    /// By configured priority, ties in list order.
    slots: Vec<Slot>,
    /// Core addresses out of rotation, and until when. Kept by address so that a re-resolution
    /// does not forget that a target is down.
    down: HashMap<(Transport, SocketAddr), Instant>,
    /// Taken out of rotation by the operator (`edgectl core disable`) until enabled again.
    disabled: std::collections::HashSet<(Transport, SocketAddr)>,
    /// When each target last went down or came back (for the operator).
    changed: HashMap<(Transport, SocketAddr), Instant>,
    trusted: Vec<IpNet>,
}

/// A core target as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreState {
    pub dest: Dest,
    /// `up`, `down` (not answering, or a 503 asked for a pause) or `disabled` (by the operator).
    pub state: &'static str,
    /// Since when (`None`: since start).
    pub since: Option<Instant>,
}

impl Policy {
    pub fn new(cfg: &RoutingConfig) -> Self {
        let slots = cfg
            .core_entries()
            .into_iter()
            .map(|entry| {
                let targets = match &entry {
                    CoreEntry::Addr(c) => vec![Dest {
                        transport: c.transport,
                        addr: c.addr,
                        flow: None,
                    }],
                    CoreEntry::Domain(_) => Vec::new(),
                };
                Slot { entry, targets }
            })
            .collect();
        Policy {
            slots,
            down: HashMap::new(),
            disabled: Default::default(),
            changed: HashMap::new(),
            trusted: cfg.trusted_networks.clone(),
        }
    }

    /// The domain-name entries the shell must resolve: (slot index, entry).
    pub fn domains(&self) -> Vec<(usize, CoreDomain)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.entry {
                CoreEntry::Domain(d) => Some((i, d.clone())),
                CoreEntry::Addr(_) => None,
            })
            .collect()
    }

    /// The shell resolved domain entry `slot` (RFC 3263 §4.2/§4.4); the targets replace the
    /// previous ones, ordered by SRV priority and weight (`pick(total)`: uniform in 0..=total).
    /// An empty result keeps the previous targets: a failed lookup must not drop a live core.
    pub fn set_resolved(
        &mut self,
        slot: usize,
        targets: Vec<Resolved>,
        pick: impl FnMut(u32) -> u32,
    ) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let CoreEntry::Domain(d) = &s.entry else {
            return;
        };
        if targets.is_empty() {
            return;
        }
        let transport = d.transport;
        s.targets = srv::order(targets, pick)
            .into_iter()
            .map(|r| Dest {
                transport,
                addr: r.addr,
                flow: None,
            })
            .collect();
        let live: Vec<Dest> = self.all().collect();
        self.down
            .retain(|(t, a), _| live.iter().any(|d| d.transport == *t && d.addr == *a));
    }

    /// Every core target in order of preference.
    fn all(&self) -> impl Iterator<Item = Dest> + '_ {
        self.slots.iter().flat_map(|s| s.targets.iter().copied())
    }

    fn is_healthy(&self, d: &Dest, now: Instant) -> bool {
        !self.disabled.contains(&(d.transport, d.addr))
            && self
                .down
                .get(&(d.transport, d.addr))
                .is_none_or(|until| now >= *until)
    }

    /// Every core target with its state, in order of preference.
    pub fn states(&self, now: Instant) -> Vec<CoreState> {
        self.all()
            .map(|d| {
                let key = (d.transport, d.addr);
                let state = if self.disabled.contains(&key) {
                    "disabled"
                } else if self.is_healthy(&d, now) {
                    "up"
                } else {
                    "down"
                };
                CoreState {
                    dest: d,
                    state,
                    since: self.changed.get(&key).copied(),
                }
            })
            .collect()
    }

    /// The operator takes the core target at `addr` out of rotation (`enabled = false`) or puts
    /// it back. False when no core target has that address.
    pub fn set_enabled(&mut self, addr: SocketAddr, enabled: bool, now: Instant) -> bool {
        let targets: Vec<Dest> = self.all().filter(|d| d.addr == addr).collect();
        for d in &targets {
            let key = (d.transport, d.addr);
            let changed = if enabled {
                self.disabled.remove(&key)
            } else {
                self.disabled.insert(key)
            };
            if changed {
                self.changed.insert(key, now);
                tracing::info!(core = %addr, enabled, "core target {} by the operator", if enabled { "enabled" } else { "disabled" });
            }
        }
        !targets.is_empty()
    }

    pub fn side(&self, src: &Source) -> Side {
        let ip = canonical(src.remote.ip());
        let trusted = self.trusted.iter().any(|n| n.contains(&ip))
            || self
                .all()
                .any(|c| canonical(c.addr.ip()) == ip && c.addr.port() == src.remote.port());
        if trusted {
            Side::Core
        } else {
            Side::Access
        }
    }

    /// The first healthy core target; if all are down, the one that comes back soonest.
    pub fn core_dest(&self, now: Instant) -> Option<Dest> {
        self.all().find(|d| self.is_healthy(d, now)).or_else(|| {
            self.all()
                .filter(|d| !self.disabled.contains(&(d.transport, d.addr)))
                .min_by_key(|d| self.down.get(&(d.transport, d.addr)).copied())
        })
    }

    /// Serial failover (RFC 3263 §4.3): the first healthy target not in `tried`. `None` when
    /// every healthy target was tried: the request's failure then goes upstream.
    pub fn next_core(&self, now: Instant, tried: &[Dest]) -> Option<Dest> {
        self.all()
            .filter(|d| self.is_healthy(d, now))
            .find(|d| !tried.iter().any(|t| same_entry(t, d)))
    }

    /// Every core target, in order of preference (for health probes).
    pub fn core_dests(&self) -> Vec<Dest> {
        self.all().collect()
    }

    /// True when `dest` is one of the core targets.
    pub fn is_core(&self, dest: &Dest) -> bool {
        self.all().any(|d| same_entry(&d, dest))
    }

    /// A request to `dest` timed out or could not be sent. True when it was up until now.
    pub fn mark_down(&mut self, dest: &Dest, now: Instant) -> bool {
        self.mark_down_for(dest, now, DOWN_FOR)
    }

    /// `dest` is out of rotation for `period` (a 503's Retry-After, RFC 3261 §21.5.4, capped at
    /// [`MAX_RETRY_AFTER`]). True when it was up until now (logged once per change).
    pub fn mark_down_for(&mut self, dest: &Dest, now: Instant, period: Duration) -> bool {
        if !self.is_core(dest) {
            return false;
        }
        let until = now + period.min(MAX_RETRY_AFTER);
        let key = (dest.transport, dest.addr);
        let newly = self.down.get(&key).is_none_or(|u| now >= *u);
        if newly {
            self.changed.insert(key, now);
            tracing::warn!(core = %dest.addr, for_s = period.min(MAX_RETRY_AFTER).as_secs(), "core target down");
        }
        self.down.insert(key, until);
        newly
    }

    /// `dest` answered: it is healthy again.
    pub fn mark_up(&mut self, dest: &Dest, now: Instant) {
        let before = self.down.len();
        self.down.retain(|(_, a), _| *a != dest.addr);
        if self.down.len() != before {
            self.changed.insert((dest.transport, dest.addr), now);
            tracing::info!(core = %dest.addr, "core target up");
        }
    }
}

/// Same core target: address and transport (the TCP flow a request went over does not matter).
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
        p.mark_up(&first, t0);
        assert_eq!(p.core_dest(t0).unwrap(), first);
    }

    #[test]
    fn operator_disables_and_enables_a_core() {
        let mut p = policy(&["10.0.0.5:5060", "10.0.0.6:5060"], &[]);
        let t0 = Instant::now();
        let a: SocketAddr = "10.0.0.5:5060".parse().unwrap();
        assert!(p.set_enabled(a, false, t0));
        assert_eq!(p.core_dest(t0).unwrap().addr.to_string(), "10.0.0.6:5060");
        let states: Vec<&str> = p.states(t0).iter().map(|s| s.state).collect();
        assert_eq!(states, ["disabled", "up"]);
        assert_eq!(p.states(t0)[0].since, Some(t0));
        // An answer does not bring a disabled core back; the operator does.
        p.mark_up(&p.states(t0)[0].dest.clone(), t0);
        assert_eq!(p.states(t0)[0].state, "disabled");
        assert!(p.set_enabled(a, true, t0));
        assert_eq!(p.core_dest(t0).unwrap().addr, a);
        assert!(!p.set_enabled("192.0.2.1:5060".parse().unwrap(), false, t0));
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

    fn resolved(port: u16, priority: u16, weight: u16) -> Resolved {
        Resolved {
            addr: std::net::SocketAddr::from(([10, 0, 1, 1], port)),
            priority,
            weight,
        }
    }

    #[test]
    fn domain_entries_take_resolved_targets_in_srv_order() {
        let mut p = policy(
            &[
                "tcp:core.example.com;priority=1",
                "10.0.0.9:5060;priority=2",
            ],
            &[],
        );
        let t0 = Instant::now();
        // Unresolved: only the static entry.
        assert_eq!(p.core_dest(t0).unwrap().addr.to_string(), "10.0.0.9:5060");
        let domains = p.domains();
        assert_eq!(domains.len(), 1);
        let (slot, d) = &domains[0];
        assert_eq!(d.name, "core.example.com");
        p.set_resolved(
            *slot,
            vec![resolved(5062, 20, 0), resolved(5061, 10, 0)],
            |_| 0,
        );
        let first = p.core_dest(t0).unwrap();
        assert_eq!(first.addr.port(), 5061, "SRV priority 10 first");
        assert_eq!(first.transport, Transport::Tcp, "the entry's transport");
        assert_eq!(p.side(&src_port("10.0.1.1", 5062)), Side::Core);
        // Down state survives a re-resolution with the same address.
        p.mark_down(&first, t0);
        p.set_resolved(
            *slot,
            vec![resolved(5061, 10, 0), resolved(5062, 20, 0)],
            |_| 0,
        );
        assert_eq!(p.core_dest(t0).unwrap().addr.port(), 5062);
        // A failed lookup (empty) keeps the previous targets.
        p.set_resolved(*slot, Vec::new(), |_| 0);
        assert_eq!(p.core_dest(t0).unwrap().addr.port(), 5062);
        // Then the static entry (priority 2) after both SRV targets.
        let both = p.core_dests();
        assert_eq!(both.len(), 3);
        assert_eq!(both[2].addr.to_string(), "10.0.0.9:5060");
        // set_resolved on a static slot is ignored.
        p.set_resolved(1, vec![resolved(1, 0, 0)], |_| 0);
        assert_eq!(p.core_dests().len(), 3);
    }
}
