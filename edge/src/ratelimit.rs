//! Per-source packet rate limit of the access side (the job of Kamailio's pike module), sans-IO.
//!
//! One GCRA token bucket per source IP (IPv6: per /64, what one subscriber gets), fed with every
//! packet before it is parsed: requests, responses and keepalives alike. A source over its limit
//! is *blocked*: everything from it is dropped silently for `block` (or, with a zero block, only
//! the packets over the limit are dropped). The shell calls [`RateLimiter::check`] per packet and
//! [`RateLimiter::sweep`] about once a second (releases, idle eviction); time is injected.
//!
//! Memory is bounded: at most `max_tracked` sources are kept. [`RateLimiter::sweep`] evicts the
//! idle ones (bucket full again, not blocked: forgetting them changes nothing). While the table
//! is full, sources not in it share one bucket with the default limit and are never blocked, so a
//! spoofed-source flood costs bounded memory and cannot push the proxy core past one source's
//! worth of packets.
//!
//! Why hand-written rather than the `governor` crate: the check must take an injected `Instant`
//! (governor's clock is a trait object of its own), a block time and per-network limits are not
//! governor concepts, and governor's keyed store grows until `retain_recent` is called with no
//! bound in between. GCRA itself is a dozen lines.

use config::{IpNet, LimitsConfig};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A bucket's parameters in nanoseconds; `None` where a source is not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limit {
    /// Time one packet "costs": 1 s / rate.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run: interval × burst.
    tolerance: u64,
}

impl Limit {
    fn new(rate: u32, burst: u32) -> Option<Limit> {
        if rate == 0 {
            return None;
        }
        let interval = 1_000_000_000 / u64::from(rate);
        Some(Limit {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// GCRA theoretical arrival time (ns since the limiter's epoch).
    tat: u64,
    /// Blocked until this time (ns since epoch); 0: not blocked.
    blocked_until: u64,
    /// Packets dropped during the current block.
    dropped: u32,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not limited, or within the limit: process it.
    Pass,
    /// Over the limit (or the source is blocked): drop it silently.
    Drop,
    /// Over the limit, and the source is blocked from now on: drop it, log once.
    Block,
}

/// A source whose block ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub ip: IpAddr,
    /// Packets dropped while it was blocked (the one that blocked it included).
    pub dropped: u32,
}

pub struct RateLimiter {
    epoch: Instant,
    default: Option<Limit>,
    overrides: Vec<(IpNet, Option<Limit>)>,
    /// 0: drop only what is over the limit.
    block: u64,
    max_tracked: usize,
    table: HashMap<IpAddr, Entry>,
    /// The bucket shared by sources that did not fit in the table.
    overflow: Entry,
    /// Blocks in the order they end (all last `block`, so this is insertion order).
    blocks: VecDeque<(u64, IpAddr)>,
    blocked: usize,
    released: Vec<Released>,
}

impl RateLimiter {
    pub fn new(cfg: &LimitsConfig, now: Instant) -> Self {
        RateLimiter {
            epoch: now,
            default: Limit::new(cfg.source_rate, cfg.source_burst),
            overrides: cfg
                .source_overrides
                .iter()
                .map(|o| (o.network, Limit::new(o.rate, o.burst())))
                .collect(),
            block: Duration::from_secs(cfg.source_block_s).as_nanos() as u64,
            max_tracked: cfg.max_tracked_sources.max(1),
            table: HashMap::new(),
            overflow: Entry::default(),
            blocks: VecDeque::new(),
            blocked: 0,
            released: Vec::new(),
        }
    }

    /// False when no source can ever be limited (the shell then skips the check).
    pub fn is_active(&self) -> bool {
        self.default.is_some() || self.overrides.iter().any(|(_, l)| l.is_some())
    }

    /// Sources currently blocked.
    pub fn blocked(&self) -> usize {
        self.blocked
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Accounts one packet from `ip` (an access-side source) and says what to do with it.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let ip = key(ip);
        let Some(limit) = self.limit_for(ip) else {
            return Verdict::Pass;
        };
        let now = self.nanos(now);
        if self.table.len() >= self.max_tracked && !self.table.contains_key(&ip) {
            // Shared bucket, no block: a full table must not block sources it cannot track.
            return if gcra(&mut self.overflow, limit, now) {
                Verdict::Pass
            } else {
                Verdict::Drop
            };
        }
        let e = self.table.entry(ip).or_default();
        if e.blocked_until != 0 {
            if now < e.blocked_until {
                e.dropped = e.dropped.saturating_add(1);
                return Verdict::Drop;
            }
            self.released.push(Released {
                ip,
                dropped: e.dropped,
            });
            self.blocked -= 1;
            *e = Entry::default();
        }
        if gcra(e, limit, now) {
            return Verdict::Pass;
        }
        if self.block == 0 {
            return Verdict::Drop;
        }
        e.blocked_until = now + self.block;
        e.dropped = 1;
        self.blocks.push_back((e.blocked_until, ip));
        self.blocked += 1;
        Verdict::Block
    }

    /// True while `ip` is blocked (e.g. to refuse its TCP connections).
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let now = self.nanos(now);
        self.table
            .get(&key(ip))
            .is_some_and(|e| e.blocked_until != 0 && now < e.blocked_until)
    }

    /// Ends the blocks that are over and evicts idle sources; returns the sources released
    /// since the last call (each once). Call about once a second.
    pub fn sweep(&mut self, now: Instant) -> Vec<Released> {
        let now = self.nanos(now);
        while let Some(&(until, ip)) = self.blocks.front() {
            if until > now {
                break;
            }
            self.blocks.pop_front();
            // A block already ended by check() (and maybe a newer one) has another `until`.
            if let Some(e) = self.table.get_mut(&ip) {
                if e.blocked_until == until {
                    self.released.push(Released {
                        ip,
                        dropped: e.dropped,
                    });
                    self.blocked -= 1;
                    *e = Entry::default();
                }
            }
        }
        self.table
            .retain(|_, e| e.blocked_until != 0 || e.tat > now);
        std::mem::take(&mut self.released)
    }

    fn limit_for(&self, ip: IpAddr) -> Option<Limit> {
        self.overrides
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map_or(self.default, |(_, l)| *l)
    }

    fn nanos(&self, now: Instant) -> u64 {
        // At least 1: 0 means "not blocked" in an entry.
        now.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }
}

/// One packet through a GCRA bucket: true (and the bucket charged) if within the limit.
fn gcra(e: &mut Entry, limit: Limit, now: u64) -> bool {
    let tat = e.tat.max(now) + limit.interval;
    if tat - now <= limit.tolerance {
        e.tat = tat;
        true
    } else {
        false
    }
}

/// What a source is keyed by: the IPv4 address (also when IPv4-mapped), or the IPv6 /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::SourceOverride;

    fn cfg(rate: u32, burst: u32, block_s: u64, max: usize) -> LimitsConfig {
        LimitsConfig {
            source_rate: rate,
            source_burst: burst,
            source_block_s: block_s,
            max_tracked_sources: max,
            ..LimitsConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn burst_passes_then_the_source_is_blocked_then_released_once() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(50, 100, 60, 1000), t0);
        let a = ip("192.0.2.1");
        for i in 0..100 {
            assert_eq!(l.check(a, t0), Verdict::Pass, "packet {i}");
        }
        assert_eq!(l.check(a, t0), Verdict::Block);
        assert_eq!(l.blocked(), 1);
        // Blocked: even a slow trickle is dropped for the whole block time.
        for s in 1..60 {
            assert_eq!(l.check(a, t0 + Duration::from_secs(s)), Verdict::Drop);
            assert!(l.sweep(t0 + Duration::from_secs(s)).is_empty());
        }
        assert!(l.is_blocked(a, t0 + Duration::from_secs(59)));
        // Another source is not affected.
        assert_eq!(l.check(ip("192.0.2.2"), t0), Verdict::Pass);
        let released = l.sweep(t0 + Duration::from_secs(61));
        assert_eq!(released, vec![Released { ip: a, dropped: 60 }]);
        assert_eq!(l.blocked(), 0);
        assert!(l.sweep(t0 + Duration::from_secs(62)).is_empty());
        // A fresh bucket after the block.
        for _ in 0..100 {
            assert_eq!(l.check(a, t0 + Duration::from_secs(62)), Verdict::Pass);
        }
    }

    #[test]
    fn a_source_at_its_rate_is_never_limited() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(50, 100, 60, 1000), t0);
        let a = ip("192.0.2.1");
        // 50 packets/s (one each 20 ms) for 10 minutes, plus bursts of 50 every minute.
        for i in 0..30_000u32 {
            let now = t0 + 20 * MS * i;
            assert_eq!(l.check(a, now), Verdict::Pass, "packet {i}");
        }
        let mut l = RateLimiter::new(&cfg(50, 100, 60, 1000), t0);
        for m in 0..10u32 {
            let now = t0 + Duration::from_secs(60) * m;
            for _ in 0..50 {
                assert_eq!(l.check(a, now), Verdict::Pass);
            }
        }
    }

    #[test]
    fn without_block_time_only_the_excess_is_dropped() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(10, 5, 0, 1000), t0);
        let a = ip("192.0.2.1");
        let verdicts: Vec<Verdict> = (0..7).map(|_| l.check(a, t0)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Pass; 5]);
        assert_eq!(&verdicts[5..], &[Verdict::Drop; 2]);
        assert_eq!(l.blocked(), 0);
        // One token back after 100 ms.
        assert_eq!(l.check(a, t0 + 100 * MS), Verdict::Pass);
        assert_eq!(l.check(a, t0 + 100 * MS), Verdict::Drop);
    }

    #[test]
    fn a_packet_after_the_block_ends_releases_it_and_sweep_reports_it_once() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(1, 1, 10, 1000), t0);
        let a = ip("192.0.2.1");
        assert_eq!(l.check(a, t0), Verdict::Pass);
        assert_eq!(l.check(a, t0), Verdict::Block);
        let t = t0 + Duration::from_secs(11);
        assert_eq!(l.check(a, t), Verdict::Pass);
        assert_eq!(l.check(a, t), Verdict::Block, "blocked again");
        let released = l.sweep(t);
        assert_eq!(released, vec![Released { ip: a, dropped: 1 }]);
        assert_eq!(l.blocked(), 1, "the new block stays");
        let released = l.sweep(t + Duration::from_secs(11));
        assert_eq!(released.len(), 1);
        assert_eq!(l.blocked(), 0);
    }

    #[test]
    fn overrides_by_network_first_match_wins() {
        let t0 = Instant::now();
        let mut c = cfg(1, 1, 60, 1000);
        c.source_overrides = vec![
            SourceOverride {
                network: "10.0.0.1/32".parse().unwrap(),
                rate: 0,
                burst: None,
            },
            SourceOverride {
                network: "10.0.0.0/8".parse().unwrap(),
                rate: 100,
                burst: None,
            },
        ];
        let mut l = RateLimiter::new(&c, t0);
        for _ in 0..10_000 {
            assert_eq!(l.check(ip("10.0.0.1"), t0), Verdict::Pass);
        }
        for _ in 0..200 {
            assert_eq!(l.check(ip("10.0.0.2"), t0), Verdict::Pass);
        }
        assert_eq!(l.check(ip("10.0.0.2"), t0), Verdict::Block);
        assert_eq!(l.tracked(), 1, "unlimited sources are not tracked");
        // The default still applies elsewhere; IPv4-mapped IPv6 is the same source.
        assert_eq!(l.check(ip("192.0.2.1"), t0), Verdict::Pass);
        assert_eq!(l.check(ip("::ffff:192.0.2.1"), t0), Verdict::Block);
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(1, 2, 60, 1000), t0);
        assert_eq!(l.check(ip("2001:db8:1:2::1"), t0), Verdict::Pass);
        assert_eq!(l.check(ip("2001:db8:1:2::2"), t0), Verdict::Pass);
        assert_eq!(l.check(ip("2001:db8:1:2:ffff::3"), t0), Verdict::Block);
        assert_eq!(l.check(ip("2001:db8:1:3::1"), t0), Verdict::Pass);
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_are_evicted() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(10, 3, 60, 100), t0);
        // A spoofed flood from 10,000 addresses, 5 packets each.
        let mut passed = 0;
        for i in 0..10_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            for _ in 0..5 {
                if l.check(a, t0) == Verdict::Pass {
                    passed += 1;
                }
            }
        }
        assert_eq!(l.tracked(), 100);
        assert_eq!(l.blocked(), 100);
        // The tracked ones passed their burst; the rest shared one bucket of 3.
        assert_eq!(passed, 100 * 3 + 3);
        // Sources that only sent within their limit are idle once their bucket refilled.
        let mut l = RateLimiter::new(&cfg(10, 3, 60, 100), t0);
        for i in 0..100u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(l.check(a, t0), Verdict::Pass);
        }
        assert!(l.sweep(t0 + 50 * MS).is_empty());
        assert_eq!(l.tracked(), 100, "buckets not full yet");
        l.sweep(t0 + 200 * MS);
        assert_eq!(l.tracked(), 0);
        assert_eq!(l.check(ip("192.0.2.9"), t0 + 200 * MS), Verdict::Pass);
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn rate_zero_is_off() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(&cfg(0, 0, 60, 10), t0);
        assert!(!l.is_active());
        for _ in 0..1000 {
            assert_eq!(l.check(ip("192.0.2.1"), t0), Verdict::Pass);
        }
        assert_eq!(l.tracked(), 0);
        assert!(RateLimiter::new(&cfg(50, 100, 60, 10), t0).is_active());
    }
}
